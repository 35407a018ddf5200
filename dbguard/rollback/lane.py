"""The emergency lane: ``dbguard rollback``, open while the breaker is open.

Back to the last known-good revision with bounded lock waits. While a statement waits on a lock,
the run monitor hands the wait to the blocker clearer, which finds the root blockers (the lock
killer's functions) and ends them under the kill policy, with an audit row each; lock timeouts are
retried until the time budget is spent. A zombie holding the run lock (stale heartbeat and visibly
dead) is ended the same way. A revision left half-done is first completed op by op towards the
target: the live part of a failed upgrade undone, a failed downgrade finished or, when the target
still has the revision, what it undid re-applied.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dbguard.core import breaker, lanes, zombie
from dbguard.core.state import Intent, RunRecord, RunStatus, StepStatus, derive_state
from dbguard.core.verdict import what_was_checked
from dbguard.db import connect as dbconnect
from dbguard.db.ledger import KillLedger, from_db_time, read_version_heads, utcnow
from dbguard.db.lock_graph import Audit
from dbguard.db.runlock import acquire
from dbguard.db.sql import run, run_statements
from dbguard.errors import ConfigError, ExitCode
from dbguard.locks import killer as locks_api
from dbguard.masking import mask
from dbguard.migrations import bridge
from dbguard.results import Confirm, KillOutcome, LockSession, RiskPrompt, RunResult, StepResult
from dbguard.run import guard, verify
from dbguard.target import Target


class RepairFailed(Exception):
    def __init__(self, revision: str, message: str) -> None:
        super().__init__(message)
        self.revision, self.message = revision, message


@dataclasses.dataclass
class _Clearing:
    """What the blocker clearer did during one rollback (filled from the monitor thread)."""

    kill: bool
    # MariaDB: install the metadata_lock_info plugin so blockers can be found exactly (asked for, never silent).
    install_plugin: bool = False
    outcomes: list[KillOutcome] = dataclasses.field(default_factory=list)
    reported: dict[str, Any] = dataclasses.field(default_factory=dict)
    first_wait: float | None = None
    # Sessions the kill policy refused to end (a missing grant, a protected role): asked once, reported once.
    refused: set[str] = dataclasses.field(default_factory=set)
    # Why the kill audit cannot be written (the grants): blockers are then reported, never ended.
    audit_denied: str | None = None


def _make_clearer(target: Target, session: Any, policy: Any, run_id: int, clearing: _Clearing,
                  own: set[str]) -> Callable[[Any, str, str | None], None]:
    """Called by the monitor thread, on its connection, while the migration's session waits."""
    from dbguard.db import lock_graph as dblocks

    dialect, database = session.dialect, session.database

    def clear(conn: Any, waiting_id: str, statement: str | None) -> None:
        if clearing.first_wait is None:
            clearing.first_wait = time.monotonic()
        if dialect.lock_graph == "blocking_pids":
            roots = dblocks.root_blockers_of_session(conn, dialect, waiting_id, secrets=target.secrets)
        else:
            roots = []
            for schema, table in dblocks.tables_in_statement(statement or "", dialect, default_schema=database):
                roots += dblocks.root_blockers_of_table(conn, dialect, schema or database, table,
                                                        waiting_session_id=waiting_id,
                                                        own_session_ids={*own, waiting_id},
                                                        install_plugin=clearing.install_plugin,
                                                        secrets=target.secrets)
        roots = [r for r in roots if r.session_id not in own and r.session_id != waiting_id
                 and r.session_id not in clearing.refused]
        if not roots:
            return
        if not clearing.kill or clearing.audit_denied:
            for r in roots:
                clearing.reported.setdefault(r.session_id, r)
            return
        audit = locks_api.make_audit(KillLedger(conn, target.settings.table_prefix), database, session.db_user,
                                     f"dbguard rollback (run {run_id})", target.secrets, run_id=run_id,
                                     reason=f"blocked rollback run {run_id}")
        outcomes = dblocks.end_sessions(conn, dialect, roots, policy, audit, grace_ms=target.settings.kill_grace_ms)
        clearing.refused.update(o.session.session_id for o in outcomes if o.outcome == "refused")
        clearing.outcomes.extend(outcomes)

    return clear


# The run lock, and zombies holding it --------------------------------------------------------------


def _take_over(runner: Any, wait_s: float) -> tuple[bool, str | None, list[KillOutcome]]:
    """Take the run lock, ending its holder if that holder is a zombie. Returns (taken, why not, ended)."""
    if acquire(runner.lock, wait_s, runner.cancellation.check):
        return True, None, []
    session, target, ledger = runner.session, runner.target, runner.ledger
    holder_id = runner.lock.holder()
    if holder_id is None:  # freed meanwhile
        return acquire(runner.lock, 1.0), None, []
    if not ledger.exists():
        return False, f"session {holder_id} holds the run lock and no ledger says which run it is", []
    running = [r for r in ledger.recent_runs(limit=20) if r.status == RunStatus.RUNNING.value]
    holder_run = next((r for r in running if r.lock_session == holder_id), None)
    verdict = zombie.judge(_describe_holder(runner, holder_run, holder_id), _server_now(session),
                           target.settings.zombie_after_s)
    if not verdict.zombie:
        return False, f"run {holder_run.id if holder_run else '?'} holds the run lock: {verdict.reason}", []
    # Every session the old run migrated on first, then the lock's: it must not commit later.
    ended = end_recorded(runner, [holder_run] if holder_run else [], f"zombie takeover ({verdict.reason})")
    still = [o for o in ended if o.outcome == "still running"]
    if still:
        return False, (f"a session of the zombie run could not be ended ({', '.join(o.session.session_id for o in still)}"
                       f"; {still[0].reason}): it may still commit"), ended
    at_holder = _end_holder(runner, holder_id, holder_run, verdict.reason)
    ended += at_holder
    if acquire(runner.lock, 5.0):
        return True, None, ended
    why = next((o.reason for o in at_holder if o.reason.startswith("not ended:")), verdict.reason)
    return False, f"the zombie holding the run lock could not be ended ({why})", ended


def end_recorded(runner: Any, runs: list[RunRecord], why: str, run_id: int | None = None) -> list[KillOutcome]:
    """End every session the given (dead, failed or taken over) runs recorded that the server still
    has: a running statement cancelled first, then the session ended (an open transaction of a dead
    run would keep its locks). dbguard's own orphaned work, so not the kill policy's call; each
    signal is audited before it is sent; the server must confirm each gone within the budget."""
    from dbguard.db import orphans

    session, target = runner.session, runner.target
    if session.dialect.run_lock_kind != "sql":
        return []
    denied = locks_api.audit_not_writable(session, target.settings)
    budget = target.settings.rollback_budget_s
    outcomes: list[KillOutcome] = []
    for dead in runs:
        audit = locks_api.make_audit(KillLedger(session.conn, target.settings.table_prefix), session.database,
                                     session.db_user, " ".join(sys.argv), target.secrets, run_id=run_id,
                                     reason=f"dbguard's own session of run {dead.id}: {why}")
        for session_id, identity in dead.sessions:
            recorded = orphans.RecordedSession(session_id, identity)
            state = orphans.command(session.conn, session.dialect, recorded)
            if state is None:
                continue
            victim = LockSession(session_id=session_id, kind="dbguard", user=None, application=None, client=None,
                                 database=session.database, state=state, xact_age_s=None, query=None,
                                 identity=identity)
            if denied:  # never signalled unrecorded: it runs on, and the caller says why
                outcomes.append(KillOutcome(session=victim, action="none", code="orphan",
                                            reason=f"not ended: {denied}", outcome="still running"))
                continue
            records: list[tuple[int | str, str]] = []

            def before_signal(_recorded: Any, action: str, victim: LockSession = victim,
                              records: list[tuple[int | str, str]] = records, audit: Audit = audit) -> None:
                records.append((audit.intend(victim, action), action))

            ended = orphans.end(session.conn, session.dialect, recorded, target.settings.kill_grace_ms / 1000,
                                budget, before_signal)
            for record_id, action in records:
                audit.complete(record_id, action, ended.outcome)
            outcomes.append(KillOutcome(session=victim, action=ended.action, code="orphan",
                                        reason=f"left by run {dead.id}", outcome=ended.outcome))
    return outcomes


def _server_now(session: Any) -> Any:
    return from_db_time(run(session.conn, session.dialect.utc_now()).scalar())


def local_process(pid: int, not_after: Any) -> str | None:
    """The state letter (/proc/<pid>/stat) of process ``pid`` on this host if it exists and started no
    later than ``not_after`` (an aware datetime: the run's start; a later process reuses the pid);
    None when there is no such process. Where /proc is missing, a signal-0 probe says only "exists"."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return "?"
    fields = stat.rsplit(")", 1)[1].split()
    state, started_ticks = fields[0], int(fields[19])
    if state in ("Z", "X"):
        return None
    if not_after is not None:
        boot = next(int(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                    if line.startswith("btime "))
        started = boot + started_ticks / os.sysconf("SC_CLK_TCK")
        if started > not_after.timestamp() + 1:  # ticks and the ledger's clock: a second of slack
            return None
    return state


def _describe_holder(runner: Any, holder_run: RunRecord | None, holder_id: str) -> zombie.Holder | None:
    if holder_run is None:
        return None
    same_host = holder_run.host == socket.gethostname()
    alive = state = None
    if same_host and holder_run.pid:
        state = local_process(holder_run.pid, holder_run.started_at)
        alive = state is not None
    idle_s = None
    idle_sql = runner.session.dialect.session_idle_seconds(holder_id)
    if idle_sql is not None and runner.session.dialect.run_lock_kind == "sql":
        with contextlib.suppress(Exception):
            value = run(runner.session.conn, idle_sql).scalar()
            idle_s = None if value is None else float(value)
    return zombie.Holder(heartbeat_at=holder_run.heartbeat_at, started_at=holder_run.started_at,
                         same_host=same_host, process_alive=alive, session_idle_s=idle_s,
                         pid=holder_run.pid, host=holder_run.host, process_state=state)


def _end_holder(runner: Any, holder_id: str, holder_run: RunRecord | None, reason: str) -> list[KillOutcome]:
    from dbguard.db import lock_graph as dblocks

    session, target = runner.session, runner.target
    if session.dialect.run_lock_kind == "file":
        # The lock is the zombie process's own (SQLite): only ending the process frees it.
        import signal as _signal

        if holder_run is not None and holder_run.pid and holder_run.host == socket.gethostname():
            with contextlib.suppress(ProcessLookupError):
                os.kill(holder_run.pid, _signal.SIGKILL)
        return []
    own = {session.session_id} if session.session_id else set()
    found = dblocks.session_snapshot(session.conn, session.dialect, session.database, [holder_id],
                                     secrets=target.secrets)
    if holder_id not in found:
        return []
    # It holds this database's run lock, so it belongs here, though MariaDB lists no table lock of it
    # (GET_LOCK is no metadata lock on a table) and the snapshot would call it another database's.
    holder = dataclasses.replace(found[holder_id], database=session.database)
    denied = locks_api.audit_not_writable(session, target.settings)
    if denied:  # not ended unrecorded: the takeover fails and says why
        return [KillOutcome(session=holder, action="none", code="orphan", reason=f"not ended: {denied}",
                            outcome="refused")]
    policy = locks_api.kill_policy(session, target.settings, own)
    audit = locks_api.make_audit(KillLedger(session.conn, target.settings.table_prefix), session.database,
                                 session.db_user, f"dbguard rollback: zombie takeover ({reason})", target.secrets,
                                 run_id=holder_run.id if holder_run else None)
    return list(dblocks.end_sessions(session.conn, session.dialect, [holder], policy, audit,
                                     grace_ms=target.settings.kill_grace_ms, explicit_ids=[holder_id]))


# The lane ---------------------------------------------------------------------------------------


def rollback(target: Target, to: str | None = None, *, kill_blockers: bool = True,
             confirm: Confirm | None = None, install_plugin: bool = False) -> RunResult:
    started = time.monotonic()
    phases: list[tuple[str, int]] = []
    with guard.open_runner(target) as runner:
        taken, why, takeover = _take_over(runner, target.settings.wait_lock_s)
        if not taken:
            result = guard._busy(runner, Intent.ROLLBACK, to or "")
            return dataclasses.replace(result, message=f"busy: {why}", ended_sessions=tuple(takeover))
        phases.append(("run lock", _ms(started)))
        return guard.annotated(runner, _locked_rollback(
            runner, to, _Clearing(kill=kill_blockers, install_plugin=install_plugin), confirm, phases, started,
            takeover))


def _ms(since: float) -> int:
    return int((time.monotonic() - since) * 1000)


def _drift_preflight(runner: Any, heads: tuple[str, ...], last: RunRecord | None) -> tuple[str, ...]:
    """The drift pre-flight of the rollback lane: what it finds (the leftovers of a half-applied
    revision, a hotfix, a changed revision file) is shown, never a reason to refuse, and a catalog
    it cannot read (a lock wait that timed out) never holds the way out either."""
    from dbguard.drift import checks as drift

    try:
        runner.drift_check = drift.guard_preflight(runner.session, runner.target, runner.script, heads, last,
                                                   Intent.ROLLBACK.value)
    except Exception as exc:  # noqa: BLE001 - the rollback goes on; the reason is shown with it
        with contextlib.suppress(Exception):
            runner.session.conn.rollback()
        reason = mask(dbconnect.first_line(exc), runner.target.secrets)
        runner.drift_check = drift.GuardCheck(warnings=(f"could not check for drift before the rollback: {reason}",))
    return tuple(runner.drift_check.warnings)


def _locked_rollback(runner: Any, to: str | None, clearing: _Clearing, confirm: Confirm | None,
                     phases: list[tuple[str, int]], started: float, takeover: list[KillOutcome]) -> RunResult:
    target, session, ledger, script = runner.target, runner.session, runner.ledger, runner.script
    runner.ensure_ledger()
    heads = read_version_heads(session.conn, target.version_table)
    runs = ledger.recent_runs(limit=200, changing_only=True)
    last = runs[0] if runs else None
    state = derive_state(last, lock_held_by_other=False)
    runner.prior_state = state.value
    decision = breaker.decide(Intent.ROLLBACK, state, last, force=False)
    assert decision.allowed  # the emergency lane is always open

    applied_now = bridge.applied_set(script, heads)
    picked = lanes.rollback_target(runs, heads, forward=lambda revisions: not lanes.never_forward(
        bridge.applied_set(script, revisions), applied_now))
    if to is not None:
        try:
            revisions = tuple(sorted(r.revision for r in script.get_revisions(to) if r is not None))
        except Exception as exc:  # noqa: BLE001 - Alembic raises several kinds for a bad revision
            raise ConfigError(f"cannot roll back to {to!r}: {exc}") from None
        picked = dataclasses.replace(picked, revisions=revisions, reason=f"--to {to}")
    if picked.revisions is None:
        row = runner.base_row(Intent.ROLLBACK, heads, None)
        run_id = runner.record_refusal(row, picked.reason)
        return RunResult(intent="rollback", status=RunStatus.REFUSED.value, exit_code=ExitCode.REFUSED,
                         message=f"refused: nothing to roll back: {picked.reason}", run_id=run_id,
                         advice="name the revision with `dbguard rollback --to REV`")
    target_revs = picked.revisions
    if not lanes.never_forward(bridge.applied_set(script, target_revs), applied_now):
        raise ConfigError(f"a rollback never moves forward: {' '.join(target_revs) or 'base'} is not below "
                          f"{' '.join(heads) or 'base'}; use `dbguard upgrade` for that")
    if len(target_revs) > 1:
        raise ConfigError(f"the last good state has several heads ({' '.join(target_revs)}); name one with --to REV")
    destination = target_revs[0] if target_revs else "base"
    planned, _final = guard._plan(runner, Intent.DOWNGRADE, destination, heads)
    partials = partial_steps(ledger, picked.undoes, applied_now, bridge.applied_set(script, target_revs))
    finished = {p.revision for p in partials if p.repair == "finish"}
    unclear = _unclear_repair(runner, partials)
    if unclear is not None:
        # Nothing ran: the database stays where the failed run left it, not moved anywhere else.
        run_id = runner.record_refusal(runner.base_row(Intent.ROLLBACK, heads, " ".join(target_revs) or "base"),
                                       unclear)
        return RunResult(intent="rollback", status=RunStatus.REFUSED.value, exit_code=ExitCode.REFUSED,
                         message=f"refused: {unclear}", run_id=run_id, from_revisions=heads,
                         to_revision=" ".join(target_revs) or "base")

    if (not planned and not partials and last is not None and last.schema_check == "differs"
            and tuple(sorted(heads)) == tuple(sorted(target_revs)) and _still_differs(runner, heads)):
        # Nothing to downgrade or repair: the rollback would only repeat the check that fails. (Repaired by
        # hand since, the schema matches again: the rollback runs its check and closes the breaker.)
        where = " ".join(heads) or "base"
        why = (f"nothing for a rollback to do: the database is at {where}, where run {last.id} stopped, and its "
               "schema differs from the reference there (a rollback cannot remove what no downgrade created)")
        run_id = runner.record_refusal(runner.base_row(Intent.ROLLBACK, heads, where), why)
        return RunResult(intent="rollback", status=RunStatus.REFUSED.value, exit_code=ExitCode.REFUSED,
                         message=f"refused: {why}", run_id=run_id, from_revisions=heads, to_revision=where,
                         advice=lanes.way_out(runs, heads))
    lines = [(f"target: {' '.join(target_revs) or 'base'} ({picked.reason}); the database is at "
              f"{' '.join(heads) or 'base'}")]
    lines += [f"warning: {w}" for w in _drift_preflight(runner, heads, last)]
    runner.start_reference(heads, last)
    runner.known_drift = runner.known_drift | verify.known_since(picked.undoes)
    left_behind = _left_behind(runner, picked.undoes)
    for dead, session_id, session_state in left_behind:
        lines.append(f"end run {dead.id}'s session {session_id} ({session_state}): dbguard's own orphaned "
                     "work, ended whatever --no-kill-blockers says")
    for partial in partials:
        lines.append({
            "finish": f"finish the half-done downgrade of {partial.revision}, each operation checked first",
            "redo": f"re-apply what the failed downgrade of {partial.revision} undid, each operation of its "
                    f"upgrade checked first; alembic_version stays at {partial.revision}",
        }.get(partial.repair, f"undo what is live of the half-applied revision {partial.revision}, each "
                              "operation checked first"))
    lines += ([f"downgrade {p.revision}" for p in planned if p.revision not in finished]
              or (["no downgrade step"] if not partials else []))
    lines.append(f"then check alembic_version and the schema against the reference at {' '.join(target_revs) or 'base'}")
    if session.dialect.lock_graph is not None and clearing.kill:
        clearing.audit_denied = locks_api.audit_not_writable(session, target.settings)
    if session.dialect.lock_graph is None:
        lines.append(f"{session.dialect.name} has no other sessions to end: lock waits are bounded by the timeout")
    elif clearing.audit_denied:
        lines.append(f"sessions blocking the rollback will be reported, not ended: {clearing.audit_denied}")
    elif clearing.kill:
        lines.append("sessions blocking the rollback will be ended under the kill policy (audited)")
    else:
        lines.append("sessions blocking the rollback will be reported, not ended (--no-kill-blockers)")
    row = runner.base_row(Intent.ROLLBACK, heads, " ".join(target_revs) or "base")
    prompt = RiskPrompt(title=f"roll back {session.database} to {' '.join(target_revs) or 'base'}",
                        blast_radius=tuple(lines), token=breaker.YES_TOKEN)
    if confirm is None or not breaker.said_yes(confirm(prompt)):
        run_id = runner.record_refusal(row, "rollback not confirmed")
        return RunResult(intent="rollback", status=RunStatus.REFUSED.value, exit_code=ExitCode.REFUSED,
                         message="refused: the rollback was not confirmed", run_id=run_id,
                         advice="answer yes at the prompt, or pass --yes where no terminal is attached")
    phases.append(("pre-flight", _ms(started)))

    runner.cancellation.check()  # a host's cancel before the run row: nothing is recorded
    run_id = ledger.insert_run(**row, status=RunStatus.RUNNING.value, heartbeat_at=utcnow(),
                               known_drift=runner.known_drift)
    runner.name_run(run_id, Intent.ROLLBACK)
    if left_behind:
        with guard._closing_run(runner, run_id):
            orphaned = end_recorded(runner, list(picked.undoes), "its run is over: nothing of it may run on",
                                    run_id=run_id)
        takeover = [*takeover, *orphaned]
        still = [o for o in orphaned if o.outcome == "still running"]
        if still:
            how = (still[0].reason if still[0].reason.startswith("not ended:")
                   else f"within {target.settings.rollback_budget_s:g} s")
            why = (f"a session of an earlier run ({', '.join(o.session.session_id for o in still)}) could not be "
                   f"ended ({how}): nothing was rolled back")
            heads_now = read_version_heads(session.conn, target.version_table)
            ledger.update_run(run_id, status=RunStatus.FAILED.value, finished_at=utcnow(),
                              error_class="dbguard.OrphanedStatement", error=why, revisions_after=heads_now)
            return RunResult(intent="rollback", status=RunStatus.FAILED.value, exit_code=ExitCode.RUN_FAILED,
                             message=f"run {run_id} failed: {why}", run_id=run_id, from_revisions=heads,
                             to_revision=row["to_revision"], error=why, ended_sessions=tuple(takeover),
                             advice="end it on the server (it is dbguard's own), then roll back again")
    own = {session.session_id} if session.session_id else set()
    clearer = None
    if session.dialect.lock_graph is not None:
        policy = locks_api.kill_policy(session, target.settings, own)
        clearer = _make_clearer(target, session, policy, run_id, clearing, own)
    repaired: list[StepResult] = []
    deadline = time.monotonic() + target.settings.rollback_budget_s

    def repair_first(hooks: Any, monitor: Any) -> None:
        for partial in partials:
            runner.schema_touched = True
            repaired.append(_repair(runner, partial, hooks, monitor, run_id, deadline))

    execution = guard.ExecutionPolicy(max_retries=10**6, deadline=deadline, clearer=clearer, before=repair_first)
    with guard._closing_run(runner, run_id):
        try:
            result = guard._execute(runner, Intent.DOWNGRADE, destination, heads, row, run_id, execution)
        except RepairFailed as exc:
            result = _repair_failed(runner, run_id, heads, row, exc, repaired)
    phases.append(("downgrade", _ms(started)))
    result = dataclasses.replace(result, intent="rollback", steps=tuple(repaired) + result.steps)
    ended = tuple(takeover) + tuple(clearing.outcomes)
    if result.status == RunStatus.SUCCEEDED.value:
        for undone in picked.undoes:
            ledger.update_run(undone.id, status=RunStatus.ROLLED_BACK.value, resolved_by=run_id)
        ledger.close_running_steps([r.id for r in picked.undoes])
        heads_now = read_version_heads(session.conn, target.version_table)
        message = (f"rolled back to {' '.join(heads_now) or 'base'}, {what_was_checked(result.schema_check)}"
                   + (f"; ended {len(clearing.outcomes)} blocking session(s)" if clearing.outcomes else ""))
        result = dataclasses.replace(result, message=message, advice=None)
    elif clearing.refused:
        kept = [o for o in clearing.outcomes if o.outcome == "refused"]
        grants = sorted({o.grant for o in kept if o.grant})
        result = dataclasses.replace(result, advice=(
            "blocked by session(s) " + ", ".join(sorted({o.session.session_id for o in kept}))
            + " that dbguard may not end: " + (f"grant it the right ({' '.join(grants)}) or " if grants else "")
            + "end them yourself (`dbguard locks kill`), then roll back again"))
    elif clearing.reported and clearing.audit_denied:
        result = dataclasses.replace(result, advice=(
            "blocked by session(s) " + ", ".join(sorted(clearing.reported)) + ", not ended: "
            + clearing.audit_denied))
    elif clearing.reported:
        # Named by id: once the rollback has given up nobody waits, so --roots would find nobody.
        pids = " ".join(f"--pid {sid}" for sid in sorted(clearing.reported))
        result = dataclasses.replace(result, advice=(
            "blocked by session(s) " + ", ".join(sorted(clearing.reported))
            + f"; rerun without --no-kill-blockers to end them, or `dbguard locks kill {pids}`"))
    phases.append(("total", _ms(started)))
    return dataclasses.replace(result, ended_sessions=ended, phases=durations(phases))


def _still_differs(runner: Any, heads: tuple[str, ...]) -> bool:
    """The live schema, read now, differs from the reference at ``heads`` (not read: False)."""
    from dbguard.run.verify import live_against_reference

    live = live_against_reference(runner.session, runner.target, heads)
    return live is not None and bool(live.differences)


def durations(marks: list[tuple[str, int]]) -> tuple[tuple[str, int], ...]:
    """Each phase's own duration from marks taken since the start (ms); "total" stays the whole."""
    out, previous = [], 0
    for name, at in marks:
        out.append((name, at if name == "total" else at - previous))
        previous = at
    return tuple(out)


def _left_behind(runner: Any, runs: tuple[RunRecord, ...]) -> list[tuple[RunRecord, str, str]]:
    """(run, session, its state) of every recorded session of these runs the server still has."""
    from dbguard.db import orphans

    session = runner.session
    if session.dialect.run_lock_kind != "sql":
        return []
    found = []
    for dead in runs:
        for session_id, identity in dead.sessions:
            state = orphans.command(session.conn, session.dialect, orphans.RecordedSession(session_id, identity))
            if state is not None:
                found.append((dead, session_id, state))
    return found


@dataclasses.dataclass(frozen=True)
class Partial:
    """A step a run being undone left half-done, and how the rollback completes it
    (core.lanes.partial_repair): "undo", "finish" or "redo"."""

    revision: str
    repair: str


def partial_steps(ledger: Any, undone: tuple[RunRecord, ...], applied_now: set[str],
                  applied_at_target: set[str]) -> list[Partial]:
    """What the runs being undone left half-done, newest first. A revision's newest step decides: a
    partial or dead step that a later repair completed needs nothing more."""
    if not undone:
        return []
    steps = ledger.steps_of([r.id for r in undone])
    newest: dict[str, Any] = {}
    for step in sorted((s for run_steps in steps.values() for s in run_steps),
                       key=lambda s: (s.run_id, s.started_at is not None, s.started_at or 0)):
        newest[step.revision] = step
    found = []
    for revision, step in newest.items():
        if step.status not in (StepStatus.PARTIAL.value, StepStatus.RUNNING.value):
            continue
        repair = lanes.partial_repair(revision in applied_now, revision in applied_at_target)
        found.append((step.run_id, Partial(revision, repair)))
    return [p for _run, p in sorted(found, key=lambda item: item[0], reverse=True)]


def _unclear_repair(runner: Any, partials: list[Partial]) -> str | None:
    """Why a half-done revision cannot be repaired op by op (an operation of the migration the repair
    runs that cannot be checked), found before anything runs; None when every one can be."""
    from dbguard.rollback import repair

    for partial in partials:
        why = repair.unclear_operation(runner.target.config, runner.script, partial.revision,
                                       runner.session.conn.dialect.name, runner.target.version_table,
                                       partial.repair)
        if why is not None:
            return mask(why, runner.target.secrets)
    return None


def _repair(runner: Any, partial: Partial, hooks: Any, monitor: Any, run_id: int, deadline: float) -> StepResult:
    """Undo the live part of a half-applied upgrade, finish a half-done downgrade, or re-apply what a
    failed downgrade undid, on dbguard's own connection, every operation checked against the live
    schema first, lock waits bounded."""
    import json

    from dbguard.rollback import repair

    session, ledger = runner.session, runner.ledger
    revision = partial.revision
    direction = "up" if partial.repair == "redo" else "down"
    started_at, started = utcnow(), time.monotonic()
    step_id = ledger.insert_step(run_id=run_id, revision=revision, direction=direction,
                                 status=StepStatus.RUNNING.value, started_at=started_at,
                                 checksum=bridge.checksum(runner.script.get_revision(revision).path), attempts=1)
    engine = dbconnect.create_engine(runner.target.ledger_url, runner.target.settings.connect_timeout_s,
                                     runner.target.settings.application)
    attempts = 0
    log = repair.RepairLog()  # across attempts: what one attempt applied stays applied
    try:
        while True:
            attempts += 1
            conn = dbconnect.connect(engine, autocommit=False)
            runner.guard_migration_socket(conn)
            try:
                run_statements(conn, hooks.session_statements)
                monitor.session_id = str(run(conn, session.dialect.session_id()).scalar())
                runner.record_session(conn, monitor.session_id, run_id)
                conn.commit()
                if session.dialect.concurrent_ledger_writes:
                    monitor.start()
                monitor.step(revision, True)
                complete = {"finish": repair.finish_downgrade, "redo": repair.redo_upgrade}.get(
                    partial.repair, repair.undo_partial)
                complete(conn, runner.target.config, runner.script, revision, runner.target.version_table, log=log)
                break
            except repair.RepairError as exc:
                # Operations it applied before stopping are live: the next rollback goes on from there.
                status = StepStatus.PARTIAL if log.applied else StepStatus.FAILED
                ledger.update_step(step_id, status=status.value, error=exc.message, attempts=attempts,
                                   duration_ms=_ms(started))
                raise RepairFailed(revision, exc.message) from None
            except Exception as exc:  # noqa: BLE001 - a lock wait is retried within the budget; the rest fails
                timed_out = session.dialect.is_lock_timeout(exc) or monitor.take_fired() is not None
                if timed_out and time.monotonic() < deadline:
                    continue
                text = mask(dbconnect.first_line(exc), runner.target.secrets)
                status = StepStatus.PARTIAL if log.applied else StepStatus.FAILED
                ledger.update_step(step_id, status=status.value, error=text, attempts=attempts,
                                   duration_ms=_ms(started))
                raise RepairFailed(revision, text) from None
            finally:
                monitor.step(None, False)
                with contextlib.suppress(Exception):
                    conn.close()
    finally:
        engine.dispose()
    what = {"finish": "finished a half-done downgrade",
            "redo": "re-applied what a failed downgrade undid"}.get(partial.repair,
                                                                   "undid the live part of a half-applied upgrade")
    skipped = "already_done" if partial.repair == "redo" else "already_undone"
    notes = json.dumps({"repaired": what, "applied": log.applied, skipped: log.skipped})
    ledger.update_step(step_id, status=StepStatus.SUCCEEDED.value, attempts=attempts, duration_ms=_ms(started),
                       notes=notes)
    return StepResult(revision=revision, direction=direction, status=StepStatus.SUCCEEDED.value,
                      duration_ms=_ms(started), attempts=attempts, error=None)


def _repair_failed(runner: Any, run_id: int, heads: tuple[str, ...], row: dict[str, Any],
                   exc: Any, repaired: list[StepResult]) -> RunResult:
    heads_now = read_version_heads(runner.session.conn, runner.target.version_table)
    runner.ledger.update_run(run_id, status=RunStatus.FAILED.value, finished_at=utcnow(),
                             error_class="dbguard.RepairFailed", error=exc.message, failed_step=exc.revision,
                             revisions_after=heads_now)
    return RunResult(intent="rollback", status=RunStatus.FAILED.value, exit_code=ExitCode.RUN_FAILED,
                     message=f"run {run_id} failed repairing {exc.revision}: {exc.message}", run_id=run_id,
                     from_revisions=heads, to_revision=row["to_revision"], error=exc.message,
                     failed_step=exc.revision, preflight=runner.preflight_findings(),
                     warnings=runner.preflight_findings())
