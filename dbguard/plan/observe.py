"""``dbguard plan --observe``: run the pending revisions in a scratch database, through the same
guarded run as ``upgrade``, and let the server say what each locked and rewrote; then set that beside
the plan's prediction (PostgreSQL; MySQL/MariaDB: what the server decides for each ALTER, asked on a
copy of its table just before it runs, dbguard.plan.observe_mysql).

The scratch database is built at the starting revision as ``drift --against migrations`` builds it
(a temporary database on the target's server, always dropped, or ``--shadow-url``). It is empty:
what a statement does to rows is not seen there, only its locks and rewrites."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable
from typing import Any

from dbguard.errors import ConfigError, DbguardError, ExitCode
from dbguard.results import PlanReport
from dbguard.risk import observed as obs
from dbguard.risk.model import Severity
from dbguard.risk.plan import with_counts


def observe(target: Any, report: PlanReport, destination: str, run: Callable[..., Any], *, session: Any = None,
            shadow_url: str | None = None, explicit: bool = True,
            announce: Callable[[str], None] = lambda line: None) -> PlanReport:
    """``report`` with what the scratch run observed beside it (PlanReport.observed) and a DG116
    finding per table where prediction and observation disagree. The scratch database is made
    through ``session`` (else one opened on the target for a live report; an offline one needs
    ``shadow_url``). One that cannot be made or brought to the starting revision raises when
    ``explicit`` (exit 2), else the report says "not observed" and keeps its exit code.

    ``run`` is the guarded run (dbguard.run.guard.guarded_run), handed in: the guard's pre-flight
    observes too (``plan_observe``), and importing it here would make an import cycle."""
    if not report.revisions:
        return dataclasses.replace(report, observed=obs.Observation(status="observed", revisions=()))
    try:
        if session is None and report.mode == "live" and not shadow_url:
            from dbguard.target import open_session

            with open_session(target) as own:
                seen = _run(target, report, destination, run, own, shadow_url, announce)
        else:
            seen = _run(target, report, destination, run, session, shadow_url, announce)
    except DbguardError as exc:
        # No scratch database (no CREATE DATABASE privilege, a replay that fails, an unreachable
        # --shadow-url): asked for, that is exit 2; as the upgrade pre-flight's extra, a note.
        if explicit:
            raise
        return _not_observed(report, str(exc))
    return _with_observation(report, seen)


def _not_observed(report: PlanReport, reason: str) -> PlanReport:
    return dataclasses.replace(report, observed=obs.Observation(status="not observed", reason=reason),
                               notes=(*report.notes, f"not observed: {reason}"))


def _run(target: Any, report: PlanReport, destination: str, guarded_run: Callable[..., Any], session: Any,
         shadow_url: str | None, announce: Callable[[str], None]) -> tuple[obs.Observation, list[tuple[obs.Finding, ...]]]:
    from dbguard.core.state import Intent, RunStatus
    from dbguard.db import connect as dbconnect
    from dbguard.db.observe import LockObserver
    from dbguard.dialects import alter_probes_of, for_sqlalchemy_dialect, lock_observation_of
    from dbguard.drift import expected
    from dbguard.plan.observe_mysql import AlterObserver
    from dbguard.target import Target

    if report.engine not in ("postgresql", "mysql"):
        raise ConfigError("observing a migration's locks needs PostgreSQL, MySQL or MariaDB")
    if session is None and not shadow_url:
        raise ConfigError("plan --offline --observe needs --shadow-url URL of an empty database to observe in "
                          "(offline, dbguard connects to no server of its own)")
    settings = target.settings
    with expected.scratch_database(target, session, shadow_url, announce) as scratch:
        engine = dbconnect.create_engine(scratch.url, settings.connect_timeout_s, settings.application)
        try:
            with dbconnect.connection(engine) as conn:
                served = for_sqlalchemy_dialect(conn.dialect)
            expected.replay_into(target, served, scratch.url, report.from_revisions, announce)
            scratch_target = Target(settings=_scratch_settings(settings, scratch.url), url=scratch.url,
                                    ledger_url=dbconnect.sync_url(scratch.url),
                                    _config=expected.config_for(target.config, scratch.url))
            observer: LockObserver | AlterObserver
            if report.engine == "mysql":
                observer = AlterObserver(alter_probes_of(served), engine, _tables_of, (settings.version_table,))
            else:
                observer = LockObserver(lock_observation_of(served), engine, _classify, obs.level_of)
            try:
                result = guarded_run(scratch_target, Intent.UPGRADE, destination, observer=observer)
            finally:
                observer.close()
        finally:
            engine.dispose()
        where = scratch.name or dbconnect.masked(scratch.url)
    if result.interrupted_by is not None:
        # Ctrl-C or SIGTERM stopped the scratch run: the command stops here, before anything else runs
        # (an upgrade's pre-flight must not go on to migrate the target).
        from dbguard.errors import Terminated

        raise Terminated() if result.interrupted_by == Terminated.signal_name else KeyboardInterrupt()
    failed: dict[str, str] = {}
    if result.status != RunStatus.SUCCEEDED.value:
        reason = (result.error or result.message or result.status).splitlines()[0][:300]
        failed[result.failed_step or ""] = reason
    revisions, findings = [], []
    for rev in report.revisions:
        seen, found = _revision(rev, observer.revisions.get(rev.revision), failed, settings.version_table,
                                report.engine == "mysql")
        revisions.append(seen)
        findings.append(found)
    return obs.Observation(status="observed", where=where, revisions=tuple(revisions), engine=report.engine), findings


def _revision(rev: Any, seen: Any, failed: dict[str, str], version_table: str,
              mysql: bool = False) -> tuple[obs.RevisionObservation, tuple[obs.Finding, ...]]:
    """One revision's comparison; a revision that failed or never ran in the scratch database is not
    observed, and its prediction stands: never a disagreement."""
    if rev.revision in failed:
        return obs.RevisionObservation(rev.revision, "not observed", reason=f"it failed in the scratch database: "
                                                                               f"{failed[rev.revision]}"), ()
    if seen is None:
        why = (f"the scratch run stopped before it ({next(iter(failed.values()))})" if failed
               else "no statement of it ran in the scratch database")
        return obs.RevisionObservation(rev.revision, "not observed", reason=why), ()
    if mysql:
        return _mysql_revision(rev, seen, version_table)
    predicted = {table: (mode, rewrite) for table, mode, rewrite in rev.table_locks}
    observed = {table: (mode, table in seen.rewritten) for table, mode in seen.locks.items()}
    observed.update({t: ("none", True) for t in seen.rewritten if t not in observed})
    tables, findings = obs.compare(rev.revision, predicted, observed, ignore=(version_table,))
    return obs.RevisionObservation(rev.revision, "observed", tables=tables, notes=tuple(seen.notes)), findings


def _mysql_revision(rev: Any, seen: Any, version_table: str) -> tuple[obs.RevisionObservation, tuple[obs.Finding, ...]]:
    """MySQL/MariaDB: per table the predicted (algorithm, blocks writes, rebuilt) against the server's."""
    predicted = {table: (algorithm, blocks, rewrite) for table, algorithm, blocks, rewrite in rev.table_algorithms}
    observed = {t: (s.algorithm, s.blocks_writes, s.rebuilt) for t, s in seen.tables.items() if not s.not_observed}
    not_observed = {t: s.not_observed for t, s in seen.tables.items() if s.not_observed}
    tables, findings = obs.compare_mysql(rev.revision, predicted, observed, not_observed, ignore=(version_table,))
    return obs.RevisionObservation(rev.revision, "observed", tables=tables, notes=tuple(seen.notes)), findings


def _with_observation(report: PlanReport, run: tuple[obs.Observation, list[tuple[obs.Finding, ...]]]) -> PlanReport:
    observation, findings = run
    weighed = [tuple(_weighed(f, report) for f in found) for found in findings]
    plans = [dataclasses.replace(rev, findings=(*rev.findings, *found)) if found else rev
             for rev, found in zip(report.revisions, weighed, strict=True)]
    disagreements = sum(1 for r in observation.revisions for t in r.tables if not t.agrees)
    observation = dataclasses.replace(observation, disagreements=disagreements)
    level = None if report.fail_on == "none" else Severity[report.fail_on.upper()]
    failing = sum(1 for r in plans for f in r.findings if level is not None and f.level >= level)
    exit_code = report.exit_code
    if failing and exit_code == ExitCode.OK:
        exit_code = ExitCode.FINDINGS
    summary = with_counts(report.summary, plans) if report.summary is not None else None
    return dataclasses.replace(report, revisions=tuple(plans), summary=summary, failing=failing,
                               exit_code=exit_code, observed=observation)


def _weighed(finding: obs.Finding, report: PlanReport) -> obs.Finding:
    """A disagreement weighed as the rules weigh a lock: by the live table's rows and size (an empty
    table's surprise is low, a small one's at most medium); offline, or for a table the live plan did
    not size, at the stronger side's severity."""
    from dbguard.risk.model import TableFacts
    from dbguard.risk.rules import weigh

    live = {t.table: t for t in getattr(report.summary, "tables", ())} if report.mode == "live" else {}
    table = live.get(finding.table or "")
    if table is None or table.new or (table.rows is None and table.size_bytes is None):
        return finding
    facts = TableFacts(table=table.table, rows=table.rows, size_bytes=table.size_bytes)
    level = weigh(Severity[finding.severity.upper()], facts)
    return dataclasses.replace(finding, severity=level.label, rows=table.rows, size_bytes=table.size_bytes)


def _scratch_settings(settings: Any, url: Any) -> Any:
    """The scratch run's settings: no gate (the plan judged already), no drift check, no retry, a
    lock wait longer than the observer's hold on an autocommit statement, no notification."""
    from dbguard.db.observe import WATCH_BOUND_S

    return settings.replace(url=url.render_as_string(hide_password=False), fail_on="none", on_drift="ignore",
                            lock_retries=0, lock_timeout_ms=int(WATCH_BOUND_S * 1000) * 3, wait_lock_s=0.0,
                            max_blocking_ms=0, notify_url=(), verify_replay=False, expected_schema=None,
                            health_sql=None, health_url=None)


def _classify(sql: str) -> tuple[str | None, str | None, bool, str]:
    """(table, index, concurrently, kind) of the statement's first operation that names one."""
    from dbguard.risk.parse import parse

    with contextlib.suppress(Exception):
        for op in parse(sql, "postgresql"):
            if op.table or op.index:
                return op.table, op.index, op.concurrently, op.kind
    return None, None, False, ""


def _tables_of(sql: str) -> tuple[str, ...]:
    """Every table a MySQL/MariaDB statement names (its own, a foreign key's parent, a reference)."""
    from dbguard.risk.parse import parse

    found: list[str] = []
    with contextlib.suppress(Exception):
        for op in parse(sql, "mysql"):
            for table in (op.table, op.ref_table, *op.references):
                if table and table not in found:
                    found.append(table)
    return tuple(found)
