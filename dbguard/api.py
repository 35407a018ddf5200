"""One function per command. Each takes Settings and returns a result; none prints or exits.

Heavy imports (Alembic, SQLAlchemy) happen inside the functions, so ``dbguard --help`` stays fast.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dbguard.errors import ConfigError, ExitCode
from dbguard.settings import Settings

if TYPE_CHECKING:
    from collections.abc import Callable, Generator

    from dbguard.core.sessionview import SessionFilter
    from dbguard.results import (
        Confirm,
        DriftReport,
        FleetResult,
        FleetStatusReport,
        FleetValidateReport,
        FleetWorkerResult,
        HistoryReport,
        KillReport,
        LockSnapshot,
        LockTree,
        OfflineSqlResult,
        PlanReport,
        RevisionsReport,
        RunResult,
        SnapshotResult,
        StatusReport,
    )


def upgrade(
    settings: Settings,
    revision: str = "head",
    *,
    sql: bool = False,
    force: bool = False,
    confirm: Confirm | None = None,
    bake_s: float = 0.0,
) -> RunResult | OfflineSqlResult:
    """Guarded ``alembic upgrade``: refuses while the last run failed or died, records every step.

    ``confirm`` is asked for the risk token when ``force`` meets an open circuit breaker.
    With ``sql``, nothing is touched: the result holds the SQL Alembic's offline mode renders.
    ``bake_s``: after a run that succeeded, the target is probed for this long (``health_sql``,
    ``health_url``, the lock queue on the run's tables) with the run lock still held; a probe failing
    ``probe_failures`` times in a row records the run FAILED (exit 5).
    """
    from dbguard.core.state import Intent
    from dbguard.run.guard import guarded_run
    from dbguard.target import load_target

    settings = _named(settings, "upgrade")
    if bake_s > 0:
        from dbguard.core.bake import probe_settings_problem

        problem = probe_settings_problem(settings.probe_interval_s, settings.probe_failures,
                                         settings.probe_timeout_s, settings.health_url)
        if problem:
            raise ConfigError(f"--bake: {problem}")
    target = load_target(settings)
    if sql:
        return _offline(target, "upgrade", revision)
    return _notified(target, guarded_run(target, Intent.UPGRADE, revision, force=force, confirm=confirm,
                                         bake_s=bake_s))


def downgrade(
    settings: Settings,
    revision: str,
    *,
    sql: bool = False,
    force: bool = False,
    confirm: Confirm | None = None,
) -> RunResult | OfflineSqlResult:
    """Guarded, planned ``alembic downgrade`` (not the emergency lane)."""
    from dbguard.core.state import Intent
    from dbguard.run.guard import guarded_run
    from dbguard.target import load_target

    settings = _named(settings, "downgrade")
    target = load_target(settings)
    if sql:
        return _offline(target, "downgrade", revision)
    return _notified(target, guarded_run(target, Intent.DOWNGRADE, revision, force=force, confirm=confirm))


def _offline(target: object, verb: str, revision: str) -> OfflineSqlResult:
    import io

    from alembic import command
    from alembic.util import CommandError

    from dbguard.masking import holds_password
    from dbguard.results import OfflineSqlResult

    config = target.config  # type: ignore[attr-defined]
    buffer, saved = io.StringIO(), config.output_buffer
    config.output_buffer = buffer
    try:
        getattr(command, verb)(config, revision, sql=True)
    except CommandError as exc:
        raise ConfigError(f"cannot render {verb} {revision}: {exc}") from None
    finally:
        config.output_buffer = saved
    # The SQL is for execution: returned as it is, never masked; whether it sets a password is said.
    sql = buffer.getvalue()
    return OfflineSqlResult(sql=sql, sets_password=holds_password(sql))


def rollback(
    settings: Settings,
    to: str | None = None,
    *,
    kill_blockers: bool = True,
    confirm: Confirm | None = None,
    install_plugin: bool = False,
) -> RunResult:
    """The emergency lane: back to the last known-good revision, open while the breaker is open.

    Clears its own way: sessions whose locks block the downgrade are ended under the kill policy
    (with an audit row each) unless ``kill_blockers`` is false. ``confirm`` gets the plan and
    answers with its token (``yes``) or None; without it the rollback is refused.
    """
    from dbguard.rollback import lane
    from dbguard.target import load_target

    target = load_target(_named(settings, "rollback"))
    return _notified(target, lane.rollback(target, to, kill_blockers=kill_blockers, confirm=confirm,
                                           install_plugin=install_plugin))


def cancel(thread: threading.Thread | None = None) -> int:
    """Ask the guarded runs in progress in this process (``upgrade``, ``downgrade``, ``rollback``) to
    stop, from any thread; with ``thread``, only the run on that thread. Returns how many were asked.

    Each stops as it would on SIGINT: its statement in flight is cancelled on the server and
    confirmed ended, the run is recorded interrupted (``dbguard.errors.Cancelled``), and its call
    returns the failed run's result. A run asked before its run row exists (waiting for the run lock,
    in its pre-flight) records nothing and its call raises ``Cancelled``; one whose migrations have
    all run finishes. A migration's own Python code between two statements is not interrupted: the
    run stops at its next statement. On SQLite, which has no server to cancel a statement on, the
    statement in flight finishes first.
    """
    from dbguard.run import cancel as cancellation

    return cancellation.cancel(thread)


def resolve(
    settings: Settings, reason: str, revision: str | None = None, *, confirm: Confirm | None = None,
    accept_schema: bool = False,
) -> RunResult:
    """Mark a FAILED/UNKNOWN run as repaired by hand, after the typed risk confirmation, once
    alembic_version and the live schema match the reference at those revisions (differences known
    before aside), or, when asked, store the live schema as that reference instead.

    ``accept_schema`` asks for the latter."""
    from dbguard.run import guard
    from dbguard.target import load_target

    target = load_target(_named(settings, "resolve"))
    return _notified(target, guard.resolve(target, reason, revision, confirm, accept_schema=accept_schema))


def status(settings: Settings, *, metrics: bool = False) -> StatusReport:
    """State, current revisions, the last run and why the breaker is open; never takes the run lock.

    ``metrics`` also reads the last run's steps and the kill audit's counts (``--format prometheus``)."""
    from dbguard.run import status as state_of

    settings = _named(settings, "status")
    return state_of.report(settings, metrics=metrics)


def history(settings: Settings, limit: int = 20) -> HistoryReport:
    """The ledger's runs, newest first, with their steps."""
    from dbguard.db.ledger import Ledger
    from dbguard.results import HistoryEntry, HistoryReport
    from dbguard.target import load_target, open_session

    settings = _named(settings, "history")
    target = load_target(settings)
    with open_session(target) as session:
        ledger = Ledger(session.conn, settings.table_prefix)
        if not ledger.exists():
            return HistoryReport(runs=())
        runs = ledger.recent_runs(limit=limit)
        steps = ledger.steps_of([r.id for r in runs])
    return HistoryReport(runs=tuple(HistoryEntry(run=r, steps=tuple(steps.get(r.id, ()))) for r in runs))


def current(settings: Settings) -> RevisionsReport:
    """The revisions in the database's version table (Alembic's ``current``), read on dbguard's connection."""
    from dbguard.db.ledger import read_version_heads
    from dbguard.results import RevisionsReport
    from dbguard.target import load_target, open_session

    settings = _named(settings, "current")
    target = load_target(settings)
    with open_session(target) as session:
        return RevisionsReport(kind="current", revisions=read_version_heads(session.conn, target.version_table))


def heads(settings: Settings) -> RevisionsReport:
    """The head revisions of the script directory (Alembic's ``heads``); needs no database."""
    from dbguard.results import RevisionsReport
    from dbguard.target import load_config, load_script

    script = load_script(load_config(settings), settings)
    return RevisionsReport(kind="heads", revisions=tuple(sorted(script.get_heads())))


def locks(settings: Settings, table: str | None = None, *, install_plugin: bool = False,
          fail_after_s: float = 0.0, filters: SessionFilter | None = None) -> LockTree:
    """The wait-for tree of the target database, root blockers first.

    Needs only the URL (alembic.ini is optional). ``table`` narrows it to the sessions waiting for one
    table and their blockers, and lists every session holding a lock on it (``holders``); ``install_plugin`` lets MariaDB install ``metadata_lock_info``. Exit
    code 1 when some shown session has waited longer than ``fail_after_s`` (0: any waiter), else 0.
    ``filters`` narrow the sessions shown (each one's figures and blocked counts stay those of the
    whole tree); a negative number or a bad regular expression in them is a ConfigError (exit 2).
    Raises PrivilegeError (exit 2), naming the grant, when dbguard's role cannot see other sessions.
    """
    from dbguard.locks import killer as lockcmd
    from dbguard.target import load_target

    settings = _named(settings, "locks")
    return lockcmd.show(load_target(settings, url_is_enough=True), table, install_plugin, fail_after_s, filters)


def locks_watch(settings: Settings, interval_s: float | None, table: str | None = None, *,
                install_plugin: bool = False, fail_after_s: float = 0.0,
                filters: SessionFilter | None = None) -> Generator[LockSnapshot, None, None]:
    """The wait-for tree again every ``interval_s`` seconds, as numbered, timed snapshots, on one session.

    The session is opened and its rights checked once; each refresh reads the tree again on it
    (``table``, ``filters`` and ``fail_after_s`` apply to each, as in ``locks``; each snapshot's
    tree carries its own exit code). It goes on until the caller stops iterating (``close()`` ends
    the session at once); with ``interval_s`` None it yields one snapshot. A connection lost on the
    way raises ConnectError (exit 2).
    """
    from dbguard.locks import killer as lockcmd
    from dbguard.target import load_target

    settings = _named(settings, "locks")
    return lockcmd.watch(load_target(settings, url_is_enough=True), interval_s, table, install_plugin,
                         fail_after_s, filters)


def locks_kill(
    settings: Settings,
    *,
    pids: tuple[int, ...] = (),
    blocking: str | None = None,
    roots: bool = False,
    min_age_s: float | None = None,
    dry_run: bool = False,
    install_plugin: bool = False,
    confirm: Confirm | None = None,
    reason: str | None = None,
    holding: str | None = None,
    filters: SessionFilter | None = None,
) -> KillReport:
    """End chosen blockers under the kill policy, after the typed confirmation; every end audited.

    The chosen: ``pids``, the roots blocking the table ``blocking``, every session holding a lock on
    the table ``holding`` (waited for or not: a DDL on it would wait for each), or all ``roots``;
    ``filters`` narrow them (one named in ``pids`` that fails them is refused, code ``filtered_out``).

    Every chosen session is judged by the kill policy (never dbguard's own, another database's,
    replication, background workers, protected roles/applications); ``confirm`` is asked for the
    risk token after seeing exactly who would be ended. Each one's ``dbguard_kills`` record (with
    ``reason``, masked) is written before it is signalled and completed after; a user who could not
    write it ends nobody (``PrivilegeError``, naming the grant). When the server takes no writes (a
    global read lock, a backup stage, a read-only database) a record goes first to the local audit
    file (``audit_file``) and is copied into ``dbguard_kills`` once it does; the report's
    ``audit_file``, ``audit_note`` and ``audit_pending`` say so.
    """
    from dbguard.locks import killer as lockcmd
    from dbguard.target import load_target

    target = load_target(_named(settings, "locks kill"), url_is_enough=True)
    report = lockcmd.kill(target, pids=pids, blocking=blocking, roots=roots, min_age_s=min_age_s,
                          dry_run=dry_run, install_plugin=install_plugin, confirm=confirm, reason=reason,
                          holding=holding, filters=filters)
    if report.dry_run or not target.settings.notify_url:
        return report
    from dbguard import notify
    from dbguard.notify import events

    failed = notify.announce(target.settings, lambda: events.of_kill(report, target.masked_url), target.secrets)
    return dataclasses.replace(report, warnings=(*report.warnings, *failed)) if failed else report


def drift(settings: Settings, against: str = "models", ignore: tuple[str, ...] = (),
          shadow_url: str | None = None, progress: Callable[[str], None] | None = None) -> DriftReport:
    """The live schema against the expected one: env.py's target_metadata (models), the migrations
    replayed in a scratch database that is always dropped, or a snapshot file; exit code 1 when drift
    is found."""
    from dbguard.drift import checks as drift_check

    settings = _named(settings, "drift")
    return drift_check.check(settings, against, tuple(ignore), shadow_url, progress or (lambda line: None))


def snapshot(settings: Settings, revision: str = "head", output: str | None = None, *, live: bool = False,
             shadow_url: str | None = None, progress: Callable[[str], None] | None = None) -> SnapshotResult:
    """Write the expected schema at a revision (the migrations replayed up to it), or the live one, as
    stable, sorted JSON."""
    from dbguard.drift import checks as drift_check

    settings = _named(settings, "snapshot")
    return drift_check.snapshot(settings, revision, output, live, shadow_url, progress or (lambda line: None))


def plan(settings: Settings, revision: str = "head", *, offline: bool = False, from_revision: str | None = None,
         fail_on: str | None = None, observe: bool = False, shadow_url: str | None = None,
         progress: Callable[[str], None] | None = None) -> PlanReport:
    """The pending revisions' statements, the lock each takes, risk findings and blast radius,
    without running them.

    Live by default (reads alembic_version and the tables' rows, size and
    lock holders; takes no lock); ``offline`` with ``from_revision`` needs no database. Exit code 1
    when a finding reaches ``fail_on`` (default: the ``fail_on`` setting, ``high``).

    ``observe`` (PostgreSQL): the pending revisions also run, guarded as by ``upgrade``, in a scratch
    database at the starting revision (``shadow_url``, else a temporary one on the same server,
    always dropped); the report's ``observed`` sets the locks and rewrites the server saw beside the
    prediction, and a disagreement is finding DG116. Exit 2 when the scratch database cannot be made."""
    from dbguard.plan import planner
    from dbguard.target import load_target

    settings = _named(settings, "plan")
    target = load_target(settings)
    report = planner.plan(target, revision, offline=offline, from_revision=from_revision, fail_on=fail_on)
    if not observe:
        return report
    from dbguard.plan import observe as observing
    from dbguard.run.guard import guarded_run

    return observing.observe(target, report, revision, guarded_run, shadow_url=shadow_url,
                             announce=progress or (lambda line: None))


# fleets --------------------------------------------------------------------------------------------
# A fleet command takes the fleet file instead of Settings: each target gets its own Settings from
# its alembic.ini and URL, plus ``flags`` (load_settings flags every target shares: x_args,
# lock_timeout_ms ...). Progress goes to ``progress`` as plain event dicts; nothing is printed.


def _fleet(fleet_file: str | Path, control_url: str | None) -> Any:
    from dbguard.fleet.spec import load_fleet

    return load_fleet(fleet_file, control_url=control_url)


def fleet_validate(fleet_file: str | Path, *, control_url: str | None = None, batches: str | None = None,
                   flags: Mapping[str, Any] | None = None, partial_rollout: bool = False) -> FleetValidateReport:
    """Parse the fleet file, expand ``${VAR}`` references, connect to each target (engine, version,
    revisions, state; URLs masked) and show the batches; exit code 2 when a target is unreachable."""
    from dbguard.fleet import rollout

    return rollout.validate(_fleet(fleet_file, control_url), flags=dict(flags or {}), batches=batches,
                            partial_rollout=partial_rollout)


def fleet_upgrade(fleet_file: str | Path, revision: str = "head", *, batches: str | None = None, parallel: int = 4,
                  bake_s: float = 0.0, force: bool = False, confirm: Confirm | None = None, wait_lock_s: float = 0.0,
                  distributed: bool = False, control_url: str | None = None, flags: Mapping[str, Any] | None = None,
                  progress: Callable[[dict[str, Any]], None] | None = None, pool: Any = None,
                  worker_timeout_s: float | None = None, partial_rollout: bool = False) -> FleetResult:
    """Batched rollout: canary first, each batch pre-flighted (every target HEALTHY), its targets
    upgraded in parallel worker processes through the guarded upgrade, verified, baked; the first
    failure stops every later batch.

    ``distributed`` publishes each batch for ``fleet worker``
    processes on a PostgreSQL control database instead of running it here; a batch nobody claims
    anything of for ``worker_timeout_s`` (default: the fleet file's, else 300) fails. ``pool`` lends a
    process pool (tests share one); by default one of ``parallel`` processes is made."""
    from dbguard.fleet import rollout

    spec = _fleet(fleet_file, control_url)
    if worker_timeout_s is not None and worker_timeout_s <= 0:
        raise ConfigError("--worker-timeout must be above 0 seconds")
    options = rollout.UpgradeOptions(revision=revision, batches=batches, parallel=parallel, bake_s=bake_s,
                                     force=force, wait_lock_s=wait_lock_s, distributed=distributed,
                                     flags=dict(flags or {}),
                                     worker_timeout_s=worker_timeout_s or spec.worker_timeout_s,
                                     partial_rollout=partial_rollout)
    from dbguard.settings import load_settings

    # A fleet has no alembic.ini of its own: its notifications follow the command's own settings
    # (flags, DBGUARD_NOTIFY_URL, the working directory's files), read before anything runs.
    own = load_settings({k: v for k, v in (flags or {}).items() if k != "x_args"})
    failures: list[dict[str, Any]] = []

    def watching(event: dict[str, Any]) -> None:
        if own.notify_url and event.get("event") == "fleet_failed":
            failures.append(event)
        if progress is not None:
            progress(event)

    result = rollout.upgrade(spec, options, confirm=confirm, progress=watching, pool=pool)
    if not failures:
        return result
    from dbguard import notify
    from dbguard.notify import events

    failed = notify.announce(own, lambda: [body for event in failures for body in events.of_fleet(event, revision)],
                             spec.secrets)
    return dataclasses.replace(result, warnings=(*result.warnings, *failed)) if failed else result


def fleet_status(fleet_file: str | Path, *, control_url: str | None = None,
                 flags: Mapping[str, Any] | None = None) -> FleetStatusReport:
    """The fleet state, the last fleet run batch by batch, each target's state and revisions;
    exit code 3 while FAILED/UNKNOWN, 4 while a fleet run holds the fleet lock."""
    from dbguard.fleet import rollout

    return rollout.status(_fleet(fleet_file, control_url), flags=dict(flags or {}))


def fleet_rollback(fleet_file: str | Path, *, all_upgraded: bool = False,
                   confirm: Confirm | None = None, parallel: int = 4, wait_lock_s: float = 0.0,
                   control_url: str | None = None, flags: Mapping[str, Any] | None = None,
                   progress: Callable[[dict[str, Any]], None] | None = None, pool: Any = None) -> FleetResult:
    """The fleet's open lane: the broken targets of the last fleet upgrade (or every target it
    upgraded) back to their recorded from-revisions via ``dbguard rollback``, in parallel.

    ``all_upgraded`` takes every target it upgraded."""
    from dbguard.fleet import rollout

    return rollout.rollback(_fleet(fleet_file, control_url), all_upgraded=all_upgraded, confirm=confirm,
                            parallel=parallel, wait_lock_s=wait_lock_s, flags=dict(flags or {}), progress=progress,
                            pool=pool)


def fleet_resolve(fleet_file: str | Path, reason: str, *, confirm: Confirm | None = None,
                  control_url: str | None = None, wait_lock_s: float = 0.0) -> FleetResult:
    """Mark the FAILED/UNKNOWN fleet run as repaired by hand, after the typed risk confirmation."""
    from dbguard.fleet import rollout

    return rollout.resolve(_fleet(fleet_file, control_url), reason, confirm=confirm, wait_lock_s=wait_lock_s)


def fleet_worker(control_url: str, fleet_file: str | Path | None = None, *, once: bool = False, poll_s: float = 0.2,
                 flags: Mapping[str, Any] | None = None,
                 progress: Callable[[dict[str, Any]], None] | None = None) -> FleetWorkerResult:
    """Claim targets of the open batch of a distributed rollout from a PostgreSQL control database
    (``SELECT ... FOR UPDATE SKIP LOCKED``), run each here, record the outcome.

    Without ``fleet_file``, the path the coordinator recorded is used. ``once``: exit when that run ends."""
    from dbguard.fleet import worker
    from dbguard.fleet.spec import load_fleet

    spec = load_fleet(fleet_file, control_url=control_url) if fleet_file is not None else None
    done = worker.run_worker(control_url, spec, once=once, poll_s=poll_s, flags=dict(flags or {}),
                             progress=progress or (lambda event: None),
                             load_spec=lambda path: load_fleet(path, control_url=control_url))
    from dbguard.results import FleetWorkerResult

    return FleetWorkerResult(worker=worker.worker_name(), claimed=done["claimed"], succeeded=done["succeeded"],
                             failed=done["failed"], refused=done["refused"], duration_ms=done["elapsed_ms"],
                             exit_code=ExitCode.RUN_FAILED if done["failed"] else ExitCode.OK)


def _notified(target: Any, result: RunResult) -> RunResult:
    """The run's events sent to ``notify_url`` once its facts are recorded (the run lock is released
    by then); one not sent is a warning of the result, never a change of its exit code."""
    if not target.settings.notify_url:
        return result
    from dbguard import notify
    from dbguard.notify import events

    failed = notify.announce(target.settings, lambda: events.of_run(result, target.masked_url), target.secrets)
    return dataclasses.replace(result, warnings=(*result.warnings, *failed)) if failed else result


def _named(settings: Settings, command: str) -> Settings:
    """The settings with the name of the command for dbguard's sessions (unless a host named them)."""
    from dbguard.core.appname import PREFIX, application_name

    if settings.application != PREFIX:
        return settings
    return settings.replace(application=application_name(command))
