"""``dbguard locks`` and ``dbguard locks kill`` on a loaded target: open dbguard's session, check the
rights, build the tree, choose the sessions, judge them, confirm, end them with audit.

``dbguard.api.locks`` / ``dbguard.api.locks_kill`` are the public entry points.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import time
from collections.abc import Callable, Generator, Sequence
from typing import Any

from sqlalchemy.exc import DBAPIError

from dbguard.core import breaker, sessionview
from dbguard.core import victims as policy_mod
from dbguard.core.sessionview import SessionFilter
from dbguard.core.victims import KillPolicy
from dbguard.db import audit_file
from dbguard.db import lock_graph as dblocks
from dbguard.db.connect import first_line
from dbguard.db.ledger import KillLedger, utcnow
from dbguard.db.waits import single_attempt
from dbguard.dialects import Dialect, SessionControl, session_control_of
from dbguard.errors import ConfigError, ConnectError, ExitCode, PrivilegeError
from dbguard.masking import Masker, active, mask
from dbguard.results import Confirm, KillOutcome, KillReport, LockSession, LockSnapshot, LockTree, RiskPrompt
from dbguard.settings import Settings
from dbguard.target import Session, Target, open_session

NOT_FOUND = "not_found"


def _require_server(session: Session) -> None:
    if session.dialect.lock_graph is None:
        raise ConfigError(f"{session.dialect.name} has no sessions or locks to inspect: dbguard locks needs a "
                          "server (PostgreSQL, MySQL, MariaDB)")


def kill_policy(session: Session, settings: Settings, own: set[str], rights: Any = None,
                min_age_s: float | None = None) -> KillPolicy:
    """Who may be ended in this session's database, as this user, and what protects the rest: the one
    policy of `locks kill` and of the rollback's blocker clearing."""
    if rights is None:
        rights = dblocks.lock_rights(session.conn, session.dialect, session.db_user)
    control = session_control_of(session.dialect)
    return KillPolicy(
        database=session.database,
        own_session_ids=frozenset(own),
        db_user=session.db_user,
        session_user=control.session_user_name(session.db_user) if session.db_user else None,
        protected_roles=settings.protected_roles,
        protected_applications=settings.protected_applications,
        min_age_s=min_age_s,
        can_end_privileged=rights.superuser,
        can_end_other_roles=rights.can_signal_others,
        signal_grant=rights.signal_grant,
    )


def run_lock_holder(session: Session, target: Target) -> str | None:
    """The session holding the target's run lock (a dbguard run in progress), if any."""
    from dbguard.target import make_lock

    holder = make_lock(session, target).holder()
    return str(holder) if holder else None


def own_sessions(session: Session, target: Target) -> set[str]:
    """dbguard's own session, and the session holding the run lock (a dbguard run in progress)."""
    return _own(session, run_lock_holder(session, target))


def _own(session: Session, holder: str | None) -> set[str]:
    return {i for i in (session.session_id, holder) if i}


def ledger_names(session: Session, target: Target, holder: str | None) -> tuple[dict[str, str], tuple[str, ...]]:
    """Where the server has no application names: session id -> ``dbguard/<intent>/run-<id>`` for the
    sessions the ledger ties to a running run (its recorded sessions the server confirms unchanged,
    and the run lock's holder), and a warning when the ledger could not be read. No ledger, no names;
    the ledger is only read, never created."""
    control = session_control_of(session.dialect)
    if control.session_applications:
        return {}, ()  # the server shows the names dbguard's sessions carry
    from sqlalchemy.exc import DBAPIError

    from dbguard.core.appname import ledger_names as names_of
    from dbguard.db import orphans
    from dbguard.db.connect import first_line
    from dbguard.db.ledger import Ledger
    from dbguard.db.waits import LockWaitError

    ledger = Ledger(session.conn, target.settings.table_prefix)
    try:
        # A name is not worth a wait: a ledger table locked by somebody else fails the read at once.
        with audit_file.probing_writes(session.conn, control, session.lock_timeout_ms), single_attempt(ledger):
            if not ledger.exists():
                return {}, ()
            runs = ledger.running_runs()
        same = {pair for r in runs for pair in r.sessions
                if orphans.command(session.conn, session.dialect, orphans.RecordedSession(*pair)) is not None}
    except (DBAPIError, LockWaitError) as exc:  # a label is no reason to show no tree: said, and left out
        if session.conn.in_transaction():
            session.conn.rollback()
        said = f"dbguard's ledger could not be read ({first_line(exc)}): no session is named after its dbguard run"
        return {}, (said,)
    return names_of(runs, holder, same), ()


def named(sessions: Sequence[LockSession], names: dict[str, str]) -> tuple[LockSession, ...]:
    """The sessions, those in ``names`` with their ledger's name."""
    return tuple(dataclasses.replace(s, ledger_application=names[s.session_id]) if s.session_id in names else s
                 for s in sessions)


def _with_names(session: Session, target: Target, tree: LockTree, holder: str | None) -> tuple[LockTree, dict[str, str]]:
    names, said = ledger_names(session, target, holder)
    return dataclasses.replace(tree, sessions=named(tree.sessions, names), warnings=tree.warnings + said), names


FILTERED_OUT = "filtered_out"


def check_filters(filters: SessionFilter | None) -> SessionFilter:
    """The filters, or a ConfigError (exit 2) naming the first value no filter takes."""
    filters = filters or SessionFilter()
    problems = filters.problems()
    if problems:
        raise ConfigError(problems[0])
    return filters


def seen(s: LockSession) -> sessionview.Seen:
    """How the filters see a session of the tree."""
    return sessionview.Seen(user=s.user, application=s.application, default_database=s.default_database,
                            query=s.query, idle_s=s.idle_s, busy_s=s.busy_s, wait_s=s.wait_s)


def filter_warnings(control: SessionControl, filters: SessionFilter) -> tuple[str, ...]:
    """What a filter cannot see on this engine, said once when it is used."""
    said = []
    if filters.application is not None and not control.session_applications:
        said.append(f"{control.name} sessions have no application name: --app {filters.application} matches none")
    if filters.match_query is not None and not control.idle_query_shown:
        said.append(f"{control.name} shows no query for an idle transaction: --match-query never matches one")
    return tuple(said)


def narrow(tree: LockTree, filters: SessionFilter, control: SessionControl) -> LockTree:
    """The tree showing only the sessions that pass ``filters`` (their figures, blocked counts
    included, are those of the whole tree)."""
    if not filters.active:
        return tree
    shown = tuple(s for s in tree.sessions if sessionview.matches(seen(s), filters))
    ids = {s.session_id for s in shown}
    return dataclasses.replace(tree, sessions=shown, roots=tuple(r for r in tree.roots if r in ids),
                               holders=tuple(h for h in tree.holders if h in ids),
                               warnings=tree.warnings + filter_warnings(control, filters),
                               filters=filters.describe(), hidden=len(tree.sessions) - len(shown))


def show(target: Target, table: str | None = None, install_plugin: bool = False,
         fail_after_s: float = 0.0, filters: SessionFilter | None = None) -> LockTree:
    filters = check_filters(filters)
    with open_session(target) as session:
        _require_readable(session)
        return _tree(session, target, table, install_plugin, fail_after_s, filters)


def _require_readable(session: Session) -> None:
    _require_server(session)
    rights = dblocks.lock_rights(session.conn, session.dialect, session.db_user)
    dblocks.require_read(rights, session.db_user)


def _tree(session: Session, target: Target, table: str | None, install_plugin: bool, fail_after_s: float,
          filters: SessionFilter) -> LockTree:
    """One reading of the tree on an open session, named from the ledger, narrowed, with its verdict.
    The run lock's holder is asked each time: a run may start or end between two refreshes of a watch."""
    holder = run_lock_holder(session, target)
    tree = dblocks.inspect_locks(session.conn, session.dialect, session.database, table=table,
                                 own_session_ids=_own(session, holder),
                                 install_plugin=install_plugin, secrets=target.secrets)
    tree, _ = _with_names(session, target, tree, holder)
    tree = narrow(tree, filters, session_control_of(session.dialect))
    return dataclasses.replace(tree, exit_code=ExitCode.FINDINGS if waited_too_long(tree, fail_after_s)
                               else ExitCode.OK)


def watch(target: Target, interval_s: float | None, table: str | None = None, install_plugin: bool = False,
          fail_after_s: float = 0.0, filters: SessionFilter | None = None,
          sleep: Callable[[float], None] = time.sleep) -> Generator[LockSnapshot, None, None]:
    """Snapshots of the tree every ``interval_s`` on one session (opened, and its rights checked, once),
    until the caller stops iterating; with ``interval_s`` None, one snapshot. The wait between two
    is ``sleep`` (SIGINT interrupts ``time.sleep`` at once). A connection lost on the way is a
    ConnectError naming the database, not the driver's traceback."""
    filters = check_filters(filters)
    with open_session(target) as session:
        _require_readable(session)
        seq = 0
        while True:
            started = time.monotonic()
            seq += 1
            taken_at = utcnow()
            try:
                tree = _tree(session, target, table, install_plugin, fail_after_s, filters)
            except DBAPIError as exc:
                if not exc.connection_invalidated:
                    raise
                raise ConnectError(f"lost the connection to database {session.database} after {seq - 1} "
                                   f"snapshot(s): {mask(first_line(exc), target.secrets)}") from None
            yield LockSnapshot(seq=seq, taken_at=taken_at, tree=tree, interval_s=interval_s)
            if interval_s is None:
                return
            # The interval is from one reading to the next, whatever the caller did in between.
            sleep(max(0.0, interval_s - (time.monotonic() - started)))


def waited_too_long(tree: LockTree, fail_after_s: float) -> bool:
    """Whether some session of the tree has waited longer than ``fail_after_s`` (0: any waiter; a wait
    the server does not time counts as too long)."""
    return any(s.blocked_by and (fail_after_s <= 0 or s.wait_s is None or s.wait_s > fail_after_s)
               for s in tree.sessions)


def _selection(pids: Sequence[int | str], blocking: str | None, roots: bool, holding: str | None = None) -> str:
    chosen = [bool(pids), blocking is not None, roots, holding is not None]
    if sum(chosen) != 1:
        raise ConfigError("choose the sessions to end with exactly one of --pid N (repeatable), "
                          "--blocking TABLE, --holding TABLE or --roots")
    if pids:
        return " ".join(f"--pid {p}" for p in pids)
    if holding is not None:
        return f"--holding {holding}"
    return f"--blocking {blocking}" if blocking is not None else "--roots"


def _not_found(session_id: str, database: str) -> KillOutcome:
    ghost = LockSession(session_id=session_id, kind="client", user=None, application=None, client=None,
                        database=None, state="unknown", xact_age_s=None, query=None)
    return KillOutcome(session=ghost, action="none", code=NOT_FOUND, reason=f"no such session on the server of "
                       f"{database}", outcome="refused")


def _filtered_out(s: LockSession, filters: SessionFilter) -> KillOutcome:
    return KillOutcome(session=s, action="none", code=FILTERED_OUT, outcome="refused",
                       reason=f"it does not match the filters ({filters.describe()})")


def _exit_code(plan: Sequence[KillOutcome], explicit: Sequence[str], database: str) -> ExitCode:
    """1 when a session named by --pid does not exist or is in another database, else 3 when the
    policy refused any chosen session, else 0: 1 wins over 3, which wins over 0."""
    named = set(explicit)
    if any(o.session.session_id in named
           and (o.code in (NOT_FOUND, policy_mod.OTHER_DATABASE) or o.session.database not in (None, "", database))
           for o in plan):
        return ExitCode.FINDINGS
    if any(o.code != policy_mod.OK for o in plan):
        return ExitCode.REFUSED
    return ExitCode.OK


def _checked_ids(pids: Sequence[int | str], dialect: SessionControl) -> list[str]:
    """The --pid values as session ids; one outside what the engine's ids can be is a usage error."""
    ids = []
    for pid in pids:
        text = str(pid).strip()
        if not text.isdigit() or not 1 <= int(text) <= dialect.max_session_id:
            raise ConfigError(f"--pid {pid}: not a {dialect.name} session id (1 to {dialect.max_session_id})")
        ids.append(str(int(text)))
    return ids


def kill(
    target: Target,
    *,
    pids: Sequence[int | str] = (),
    blocking: str | None = None,
    roots: bool = False,
    min_age_s: float | None = None,
    dry_run: bool = False,
    install_plugin: bool = False,
    confirm: Confirm | None = None,
    command: str | None = None,
    reason: str | None = None,
    holding: str | None = None,
    filters: SessionFilter | None = None,
) -> KillReport:
    settings = target.settings
    selection = _selection(pids, blocking, roots, holding)
    filters = check_filters(filters)
    with open_session(target) as session:
        _require_server(session)
        conn, dialect, database = session.conn, session.dialect, session.database
        rights = dblocks.lock_rights(conn, dialect, session.db_user)
        dblocks.require_read(rights, session.db_user)
        holder = run_lock_holder(session, target)
        own = _own(session, holder)
        tree = dblocks.inspect_locks(conn, dialect, database, table=holding if holding is not None else blocking,
                                     own_session_ids=own, install_plugin=install_plugin, secrets=target.secrets)
        # Named for the reader only: the policy below judges each session by what the server says.
        tree, names = _with_names(session, target, tree, holder)
        explicit = _checked_ids(pids, session_control_of(dialect))
        missing: list[str] = []
        if explicit:
            in_tree = {s.session_id: s for s in tree.sessions}
            wanted = [i for i in explicit if i not in in_tree]
            extra = dblocks.session_snapshot(conn, dialect, database, wanted, secrets=target.secrets) if wanted else {}
            extra = {i: named([s], names)[0] for i, s in extra.items()}
            chosen = []
            for i in dict.fromkeys(explicit):
                found = in_tree.get(i) or extra.get(i)
                if found is None:
                    missing.append(i)
                else:
                    chosen.append(found)
        elif holding is not None:
            chosen = [s for s in tree.sessions if s.session_id in tree.holders]
        else:
            chosen = [s for s in tree.sessions if s.is_root]
        warnings = tree.warnings
        if not explicit:
            # A guess of unknown database is never proposed: only --pid ends it, once named so.
            unknown = [s.session_id for s in chosen if policy_mod.database_unknown(dblocks.candidate(s))]
            chosen = [s for s in chosen if s.session_id not in unknown]
            if unknown:
                said = f"not proposed, database unknown: session(s) {', '.join(unknown)}; after checking one, " \
                       "end it with locks kill --pid N"
                warnings += (said,)
        # The filters narrow who is chosen; a session named by --pid that fails them is refused, saying so.
        filtered_out: list[LockSession] = []
        if filters.active:
            warnings += filter_warnings(session_control_of(dialect), filters)
            filtered_out = [s for s in chosen if not sessionview.matches(seen(s), filters)]
            chosen = [s for s in chosen if s not in filtered_out]
        policy = kill_policy(session, settings, own, rights, min_age_s)
        plan = dblocks.end_sessions(conn, dialect, chosen, policy, None, dry_run=True, explicit_ids=explicit)
        plan += tuple(_filtered_out(s, filters) for s in filtered_out if s.session_id in explicit)
        plan += tuple(_not_found(i, database) for i in missing)
        common: dict[str, Any] = {"database": database, "selection": selection, "warnings": warnings,
                                  "source": tree.source, "approximate": tree.approximate,
                                  "filters": filters.describe()}
        allowed = [o for o in plan if o.code == policy_mod.OK]
        # What the real command would refuse for: a missing signal grant, an audit it cannot write
        # (no session is signalled unrecorded). Checked before anybody is ended.
        grants = sorted({o.grant for o in plan if o.code == policy_mod.MISSING_GRANT and o.grant})
        ledger = KillLedger(conn, settings.table_prefix)
        local = LocalAudit.of(session, target)
        # Whether the server takes the audit's writes now: when the very blocker holds a global read
        # lock or a backup stage (or the database is read-only), the audit goes to the local file first.
        no_writes = audit_writes_refused(session, ledger, local, create=not dry_run) if allowed and not grants else None
        denied = (f"{session.db_user} may not end other roles' sessions: {' '.join(grants)}" if grants
                  else audit_not_writable(session, settings, no_writes) if allowed else None)
        verdict = _exit_code(plan, explicit, database)
        if no_writes:
            common["audit_file"] = str(local.file.path)
            common["audit_note"] = (f"the server takes no writes now ({no_writes}): each record goes first to "
                                    f"{local.file.path}, then into {ledger.table.name} once the server takes writes")
        if dry_run:
            message = f"dry run: {len(allowed)} session(s) would be ended; nothing was ended"
            if denied:
                return KillReport(dry_run=True, outcomes=plan, exit_code=ExitCode.USAGE,
                                  message=f"{message}; the command would end nobody: {denied}", **common)
            return KillReport(dry_run=True, outcomes=plan, exit_code=verdict, message=message, **common)
        if denied:
            raise PrivilegeError(f"nobody was ended: {denied}")
        if not allowed:
            return KillReport(dry_run=False, outcomes=plan, exit_code=verdict,
                              message="nothing to end: no chosen session may be ended under the policy"
                              if plan else "nothing to end: no session blocks anybody here", **common)
        if not no_writes:
            ensure_audit_table(ledger, dialect, session.db_user, database)
        prompt = RiskPrompt(
            title=f"end {len(allowed)} session(s) in database {database}"
                  + (f" (the audit goes first to {local.file.path}: the server takes no writes now)" if no_writes else ""),
            blast_radius=(), victims=tuple(allowed),
            token=breaker.CONFIRM_TOKEN,
        )
        answer = confirm(prompt) if confirm is not None else None
        if not breaker.confirmation_accepted(answer):
            refused = tuple(dataclasses.replace(o, outcome="not ended: confirmation missing") if o in allowed else o
                            for o in plan)
            return KillReport(dry_run=False, outcomes=refused, exit_code=ExitCode.REFUSED,
                              message=f"refused: risk confirmation missing or wrong (type {breaker.CONFIRM_TOKEN} "
                                      f"to proceed); nothing was ended", **common)
        audit = make_audit(ledger, database, session.db_user, command or f"dbguard locks kill {selection}",
                           target.secrets, reason=reason, local=local)
        done = dblocks.end_sessions(conn, dialect, [o.session for o in allowed], policy, audit,
                                    grace_ms=settings.kill_grace_ms, explicit_ids=explicit)
        if audit.file_records:
            # Ending a global read lock's holder lets the server take writes at once: copy now.
            copy = copy_local_audit(session, ledger, local, audit.file_records)
            done = tuple(_with_ledger_id(o, copy.copied) for o in done)
            common.update(audit_file=str(local.file.path), audit_pending=copy.pending,
                          audit_note=_local_audit_note(local, ledger, audit, copy))
        else:  # every record went into the ledger after all
            common.pop("audit_file", None)
            common.pop("audit_note", None)
    by_id = {o.session.session_id: o for o in done}
    outcomes = tuple(by_id.get(o.session.session_id, o) if o.code == policy_mod.OK else o for o in plan)
    failed = [o for o in done if o.outcome.startswith(("failed", "not ended"))]
    ended = [o for o in done if o.outcome in ("terminated", "cancelled", "terminate signalled; session still present")]
    if failed:
        grants = sorted({o.grant for o in failed if o.grant})
        return KillReport(dry_run=False, outcomes=outcomes, exit_code=ExitCode.USAGE,
                          message=f"{len(failed)} session(s) could not be ended ({failed[0].outcome})"
                                  + (f"; {' '.join(grants)}" if grants else "")
                                  + (f"; ended {len(ended)} other(s)" if ended else ""), **common)
    return KillReport(dry_run=False, outcomes=outcomes, exit_code=verdict,
                      message=f"ended {len(ended)} session(s)", **common)


def _with_ledger_id(outcome: KillOutcome, copied: dict[str, int]) -> KillOutcome:
    """The outcome naming its dbguard_kills row once its record was copied there from the file."""
    if isinstance(outcome.audit_id, str) and outcome.audit_id in copied:
        return dataclasses.replace(outcome, audit_id=copied[outcome.audit_id])
    return outcome


def _local_audit_note(local: LocalAudit, ledger: KillLedger, audit: _AuditTrail,
                      copy: audit_file.CopyResult) -> str:
    said = (f"the server took no writes ({audit.refused_because}), so {len(audit.file_records)} audit record(s) "
            f"went first to {local.file.path}, before the signal")
    if copy.pending == 0:
        return f"{said}; copied into {ledger.table.name} since"
    why = "the server still takes no writes" if copy.error in (None, audit.refused_because) else copy.error
    return (f"{said}; {copy.pending} not yet copied into {ledger.table.name} ({why}): the next dbguard command "
            "on this target copies them")


def ensure_audit_table(ledger: KillLedger, dialect: Dialect, db_user: str | None, database: str) -> None:
    """Create ``dbguard_kills`` if needed; a role that cannot gets the grant named (exit 2)."""
    from sqlalchemy.exc import DBAPIError

    try:
        ledger.ensure_table()
    except DBAPIError as exc:
        if not dialect.is_privilege_error(exc):
            raise
        hint = dialect.ledger_grant_hint(db_user or "CURRENT_USER", database)
        raise PrivilegeError(f"{db_user} cannot create the audit table {ledger.table.name}, so nobody was "
                             f"ended: {hint}") from None


@dataclasses.dataclass(frozen=True)
class LocalAudit:
    """Where a kill's audit goes first when the server accepts no writes, and for which target."""

    file: audit_file.AuditFile
    target: str
    dialect: SessionControl
    # The lock bound of dbguard's session, set again after each probing write.
    restore_ms: int

    @classmethod
    def of(cls, session: Session, target: Target) -> LocalAudit:
        masker = active()
        path = audit_file.audit_path(target.settings.audit_file, target.settings.config_path)
        return cls(audit_file.AuditFile(path, Masker([*masker.known, *target.secrets], masker.patterns)),
                   audit_file.target_key(target.url), session_control_of(session.dialect), session.lock_timeout_ms)


class _AuditTrail:
    """``dbguard_kills`` rows: one per session about to be ended, written before its signal. With a
    ``local`` audit, a record the server will not take now (it would wait for a global read lock or
    a backup stage, or the database is read-only) goes to the local file instead, durably, and is
    completed there; the file's records are copied into ``dbguard_kills`` when the server takes them."""

    def __init__(self, ledger: KillLedger, database: str, db_user: str | None, command: str, reason: str | None,
                 secrets: Sequence[str | None], run_id: int | None, local: LocalAudit | None = None) -> None:
        self._ledger, self._database, self._db_user, self._run_id = ledger, database, db_user, run_id
        self._command = mask(command, secrets)
        self._reason = mask(reason, secrets) if reason else self._command
        self._secrets = secrets
        self._local = local
        # Records written to the local file, and why the server did not take them.
        self.file_records: list[str] = []
        self.refused_because: str | None = None

    def intend(self, session: LockSession, action: str) -> int | str:
        row = self._row(session, action)
        local = self._local
        if local is None:
            return self._ledger.record(**row)
        try:
            # Never waits: a server that takes no writes is told at once, and the file takes the record.
            with audit_file.probing_writes(self._ledger.conn, local.dialect, local.restore_ms), \
                    single_attempt(self._ledger):
                return self._ledger.record(**row)
        except Exception as exc:
            why = audit_file.writes_refused(exc, local.dialect)
            if why is None:
                raise
            self.refused_because = why
        record_id = audit_file.intend(local.file, local.target, row)
        self.file_records.append(record_id)
        return record_id

    def complete(self, record_id: int | str, action: str, outcome: str) -> None:
        if isinstance(record_id, str):
            assert self._local is not None  # only a local audit hands out text ids
            audit_file.complete(self._local.file, record_id, action, outcome)
            return
        self._ledger.update(record_id, action=action, outcome=outcome)

    def _row(self, session: LockSession, action: str) -> dict[str, Any]:
        from dbguard.target import os_user

        s = session
        return {
            "killed_at": utcnow(),
            "database_name": self._database,
            "run_id": self._run_id,
            "killed_by_db_user": self._db_user,
            "killed_by_os_user": os_user(),
            "killed_by_host": socket.gethostname(),
            "killed_by_pid": os.getpid(),
            "command": self._command,
            "victim_session": s.session_id,
            "victim_user": s.user,
            "victim_application": s.application,
            "victim_client": s.client,
            "victim_state": s.state,
            "victim_query": mask(s.query, self._secrets) if s.query else None,
            "victim_xact_age_s": s.xact_age_s,
            "action": action,
            "outcome": dblocks.SIGNALLING,
            "reason": self._reason,
        }


def make_audit(ledger: KillLedger, database: str, db_user: str | None, command: str,
               secrets: Sequence[str | None], run_id: int | None = None, reason: str | None = None,
               local: LocalAudit | None = None) -> _AuditTrail:
    """The audit :func:`dbguard.db.lock_graph.end_sessions` writes before each signal and completes
    after; ``reason`` (default: the command line) is stored with each record, masked. With ``local``,
    a record the server takes no write for now goes to the local audit file first."""
    return _AuditTrail(ledger, database, db_user, command, reason, secrets, run_id, local)


def audit_writes_refused(session: Session, ledger: KillLedger, local: LocalAudit, create: bool = True) -> str | None:
    """Why the server takes no write of the audit now (a global read lock, a backup stage, a
    read-only database), told at once by a write that may not wait; None when it does, or when
    the write failed for another reason (the privilege checks say that one). ``create``: where the
    audit table is missing, creating it is the write (a dry run creates nothing, and cannot tell).
    The answer comes before any signal; each record's own write decides where that record goes."""
    try:
        with audit_file.probing_writes(session.conn, local.dialect, local.restore_ms), single_attempt(ledger):
            if ledger.exists():
                ledger.may_write(session.dialect.is_privilege_error)  # rolled back
            elif create:
                ledger.ensure_table()
    except Exception as exc:  # noqa: BLE001 - any other failure is the privilege checks' to name
        return audit_file.writes_refused(exc, local.dialect)
    return None


def copy_local_audit(session: Session, ledger: KillLedger, local: LocalAudit,
                     wanted: Sequence[str] = ()) -> audit_file.CopyResult:
    """Copy this target's records from the local audit file into ``dbguard_kills``, never waiting."""
    return audit_file.copy_pending(session.conn, local.dialect, ledger, local.file, local.target,
                                   local.restore_ms, wanted)


def audit_not_writable(session: Session, settings: Settings, writes_refused: str | None = None) -> str | None:
    """Why this user could not write the kill audit (the grants that would let it, or what stopped the
    check), or None when it can: checked before anybody is ended, since no session is signalled
    unrecorded."""
    from dbguard.db.connect import first_line
    from dbguard.db.ledger import missing_privileges

    table = f"{settings.table_prefix}kills"
    try:
        found = missing_privileges(session.conn, session.dialect, session.db_user, session.database, [table])
        if found is None:
            return None
        # The catalog's answer may leave out grants the server honours (MySQL: a table's own grants):
        # where the table exists, writing it is tried, and rolled back.
        # (Not while the server takes no writes: then only the catalog's answer is there to go by.)
        ledger = KillLedger(session.conn, settings.table_prefix)
        if writes_refused is None and ledger.exists() and ledger.may_write(session.dialect.is_privilege_error):
            return None
    except Exception as exc:  # noqa: BLE001 - a check that could not be made ends nobody either
        return f"writing the audit table {table} could not be checked ({first_line(exc)}), so nobody is ended"
    missing, grants = found
    return (f"{session.db_user} lacks {'; '.join(missing)} for the audit table {table} (no session is ended "
            f"unrecorded); grant it with: {grants}")
