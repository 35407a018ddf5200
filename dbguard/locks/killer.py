"""``dbguard locks`` and ``dbguard locks kill`` on a loaded target: open dbguard's session, check the
rights, build the tree, choose the sessions, judge them, confirm, end them with audit.

``dbguard.api.locks`` / ``dbguard.api.locks_kill`` are the public entry points.
"""

from __future__ import annotations

import dataclasses
import os
import socket
from collections.abc import Sequence
from typing import Any

from dbguard.core import breaker
from dbguard.core import victims as policy_mod
from dbguard.core.victims import KillPolicy
from dbguard.db import lock_graph as dblocks
from dbguard.db.ledger import KillLedger, utcnow
from dbguard.dialects import Dialect
from dbguard.errors import ConfigError, ExitCode, PrivilegeError
from dbguard.masking import mask
from dbguard.results import Confirm, KillOutcome, KillReport, LockSession, LockTree, RiskPrompt
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
    return KillPolicy(
        database=session.database,
        own_session_ids=frozenset(own),
        db_user=session.db_user,
        protected_roles=settings.protected_roles,
        protected_applications=settings.protected_applications,
        min_age_s=min_age_s,
        can_end_privileged=rights.superuser,
        can_end_other_roles=rights.can_signal_others,
        signal_grant=rights.signal_grant,
    )


def own_sessions(session: Session, target: Target) -> set[str]:
    """dbguard's own session, and the session holding the run lock (a dbguard run in progress)."""
    from dbguard.target import make_lock

    ids = {session.session_id} if session.session_id else set()
    holder = make_lock(session, target).holder()
    if holder:
        ids.add(str(holder))
    return ids


def show(target: Target, table: str | None = None, install_plugin: bool = False) -> LockTree:
    with open_session(target) as session:
        _require_server(session)
        rights = dblocks.lock_rights(session.conn, session.dialect, session.db_user)
        dblocks.require_read(rights, session.db_user)
        return dblocks.inspect_locks(session.conn, session.dialect, session.database, table=table,
                                     own_session_ids=own_sessions(session, target),
                                     install_plugin=install_plugin, secrets=target.secrets)


def _selection(pids: Sequence[int | str], blocking: str | None, roots: bool) -> str:
    chosen = [bool(pids), blocking is not None, roots]
    if sum(chosen) != 1:
        raise ConfigError("choose the sessions to end with exactly one of --pid N (repeatable), "
                          "--blocking TABLE or --roots")
    if pids:
        return " ".join(f"--pid {p}" for p in pids)
    return f"--blocking {blocking}" if blocking is not None else "--roots"


def _not_found(session_id: str, database: str) -> KillOutcome:
    ghost = LockSession(session_id=session_id, kind="client", user=None, application=None, client=None,
                        database=None, state="unknown", xact_age_s=None, query=None)
    return KillOutcome(session=ghost, action="none", code=NOT_FOUND, reason=f"no such session on the server of "
                       f"{database}", outcome="refused")


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
) -> KillReport:
    settings = target.settings
    selection = _selection(pids, blocking, roots)
    with open_session(target) as session:
        _require_server(session)
        conn, dialect, database = session.conn, session.dialect, session.database
        rights = dblocks.lock_rights(conn, dialect, session.db_user)
        dblocks.require_read(rights, session.db_user)
        own = own_sessions(session, target)
        tree = dblocks.inspect_locks(conn, dialect, database, table=blocking, own_session_ids=own,
                                     install_plugin=install_plugin, secrets=target.secrets)
        explicit = [str(p) for p in pids]
        missing: list[str] = []
        if explicit:
            in_tree = {s.session_id: s for s in tree.sessions}
            wanted = [i for i in explicit if i not in in_tree]
            extra = dblocks.session_snapshot(conn, dialect, database, wanted, secrets=target.secrets) if wanted else {}
            chosen = []
            for i in dict.fromkeys(explicit):
                found = in_tree.get(i) or extra.get(i)
                if found is None:
                    missing.append(i)
                else:
                    chosen.append(found)
        else:
            chosen = [s for s in tree.sessions if s.is_root]
        policy = kill_policy(session, settings, own, rights, min_age_s)
        plan = dblocks.end_sessions(conn, dialect, chosen, policy, None, dry_run=True, explicit_ids=explicit)
        plan += tuple(_not_found(i, database) for i in missing)
        common: dict[str, Any] = {"database": database, "selection": selection, "warnings": tree.warnings,
                                  "source": tree.source, "approximate": tree.approximate}
        allowed = [o for o in plan if o.code == policy_mod.OK]
        if dry_run:
            return KillReport(dry_run=True, outcomes=plan, exit_code=ExitCode.OK,
                              message=f"dry run: {len(allowed)} session(s) would be ended; nothing was ended",
                              **common)
        grants = sorted({o.grant for o in plan if o.code == policy_mod.MISSING_GRANT and o.grant})
        if grants:
            raise PrivilegeError(f"{session.db_user} may not end other roles' sessions: {' '.join(grants)}")
        if not allowed:
            return KillReport(dry_run=False, outcomes=plan, exit_code=ExitCode.OK,
                              message="nothing to end: no chosen session may be ended under the policy"
                              if plan else "nothing to end: no session blocks anybody here", **common)
        # The audit table must be writable before anybody is ended: no kill goes unrecorded.
        ledger = KillLedger(conn, settings.table_prefix)
        ensure_audit_table(ledger, dialect, session.db_user, database)
        prompt = RiskPrompt(
            title=f"end {len(allowed)} session(s) in database {database}",
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
                           target.secrets)
        done = dblocks.end_sessions(conn, dialect, [o.session for o in allowed], policy, audit,
                                    grace_ms=settings.kill_grace_ms, explicit_ids=explicit)
    by_id = {o.session.session_id: o for o in done}
    outcomes = tuple(by_id.get(o.session.session_id, o) if o.code == policy_mod.OK else o for o in plan)
    failed = [o for o in done if o.outcome.startswith("failed")]
    ended = [o for o in done if o.outcome in ("terminated", "cancelled", "terminate signalled; session still present")]
    if failed:
        grants = sorted({o.grant for o in failed if o.grant})
        return KillReport(dry_run=False, outcomes=outcomes, exit_code=ExitCode.USAGE,
                          message=f"{len(failed)} session(s) could not be ended: permission denied"
                                  + (f"; {' '.join(grants)}" if grants else ""), **common)
    return KillReport(dry_run=False, outcomes=outcomes, exit_code=ExitCode.OK,
                      message=f"ended {len(ended)} session(s)", **common)


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


def make_audit(ledger: KillLedger, database: str, db_user: str | None, command: str,
               secrets: Sequence[str | None], run_id: int | None = None) -> dblocks.Audit:
    """An ``audit(session, action, outcome)`` writing one ``dbguard_kills`` row, for :func:`end_sessions`."""
    from dbguard.target import os_user

    def audit(s: LockSession, action: str, outcome: str) -> int:
        return ledger.record(
            killed_at=utcnow(),
            database_name=database,
            run_id=run_id,
            killed_by_db_user=db_user,
            killed_by_os_user=os_user(),
            killed_by_host=socket.gethostname(),
            killed_by_pid=os.getpid(),
            command=mask(command, secrets),
            victim_session=s.session_id,
            victim_user=s.user,
            victim_application=s.application,
            victim_client=s.client,
            victim_state=s.state,
            victim_query=mask(s.query, secrets) if s.query else None,
            victim_xact_age_s=s.xact_age_s,
            action=action,
            outcome=outcome,
            reason=None,
        )

    return audit
