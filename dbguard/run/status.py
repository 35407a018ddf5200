"""`dbguard status`: the target's state as its ledger and the database say, never taking the run lock."""

from __future__ import annotations

import dataclasses
from typing import Any

from dbguard.core.integrity import LEDGER_LOSS_ADVICE
from dbguard.errors import ExitCode
from dbguard.results import StatusReport
from dbguard.settings import Settings


def report(settings: Settings, metrics: bool = False, check_schema: bool = True) -> StatusReport:
    """State, current revisions, the last run and why the breaker is open; never takes the run lock.
    ``metrics`` reads what only metrics show as well: the last run's steps, the kill audit's counts.
    ``check_schema``: a HEALTHY target's live schema is read and compared with the reference stored
    at its revisions, so "verified" speaks of the schema as it is now, not as the last run left it."""
    from dbguard.core import breaker
    from dbguard.core.state import TargetState, derive_state
    from dbguard.db.ledger import Ledger, read_version_heads
    from dbguard.results import StatusReport
    from dbguard.run.guard import make_lock
    from dbguard.target import load_target, open_session

    target = load_target(settings)
    with open_session(target) as session:
        ledger = Ledger(session.conn, settings.table_prefix)
        holder = make_lock(session, target).holder()
        held_by_other = holder is not None and holder != session.session_id
        revisions = read_version_heads(session.conn, target.version_table)
        elsewhere = _version_table_elsewhere(session, target.version_table) if not revisions else ()
        problem = ledger.problem()
        exists = ledger.exists()
        runs = ledger.recent_runs(limit=200, changing_only=True) if exists else []
        has_steps = exists and not (problem and ledger.steps.name in problem)
        read_steps = has_steps and runs and (metrics or runs[0].status == "running")
        last_steps = tuple(ledger.steps_of([runs[0].id])[runs[0].id]) if read_steps else ()
        dying_step = next((step.revision for step in reversed(last_steps) if step.status == "running"), None) \
            if runs and runs[0].status == "running" else None
        ended = _sessions_ended(session, settings.table_prefix) if metrics else None
        last = runs[0] if runs else None
        state = derive_state(last, held_by_other)
        live = None
        if check_schema and state is TargetState.HEALTHY and last is not None and not problem:
            from dbguard.run.verify import live_against_reference

            live = live_against_reference(session, target, revisions)
    seen: dict[str, Any] = {"masked_url": target.masked_url, "last_run_steps": last_steps, "sessions_ended": ended} if metrics \
        else {}
    if problem and state is not TargetState.RUNNING:
        return StatusReport(state=TargetState.FAILED.value, exit_code=ExitCode.REFUSED, revisions=revisions,
                            last_run=last, breaker_reason=f"circuit breaker open: {problem}",
                            advice=LEDGER_LOSS_ADVICE, ledger_exists=exists, **seen)
    from dbguard.drift.checks import heads_moved

    schema_finding = live.finding if live is not None else None
    findings = tuple(f for f in (heads_moved(last, revisions) if state is TargetState.HEALTHY else None,
                                 schema_finding) if f)
    if state is TargetState.UNKNOWN and last is not None and last.failed_step is None and dying_step:
        # A process that died left its step running: that is the step it failed at.
        last = dataclasses.replace(last, failed_step=dying_step)
    reason = advice = None
    exit_code = ExitCode.OK
    if state in (TargetState.FAILED, TargetState.UNKNOWN):
        from dbguard.core.lanes import way_out

        exit_code = ExitCode.REFUSED
        reason = f"circuit breaker open: {breaker.describe_breaker(state, last)}"
        advice = way_out(runs, revisions)
    elif state is TargetState.RUNNING:
        exit_code = ExitCode.BUSY
    elif findings and settings.on_drift == "refuse":
        exit_code = ExitCode.REFUSED
        reason = f"on_drift = refuse: {findings[0]}"
        advice = ("an upgrade refuses until the ledger and alembic_version agree: `dbguard resolve` records the change"
                  if findings[0] != schema_finding else
                  "an upgrade refuses while the schema differs from its reference: repair it, or record it as the "
                  "reference with `dbguard resolve --accept-schema --reason TEXT`")
    return StatusReport(
        state=state.value,
        exit_code=exit_code,
        revisions=revisions,
        last_run=last,
        breaker_reason=reason,
        advice=advice,
        lock_holder=holder if held_by_other else None,
        ledger_exists=exists,
        schema_verified=state is TargetState.HEALTHY and last is not None and last.schema_check == "verified"
        and not findings and (not check_schema or (live is not None and live.unchecked is None)),
        findings=findings,
        schema_unchecked=_unchecked(live, check_schema and state is TargetState.HEALTHY and last is not None
                                    and last.schema_check == "verified" and not findings, revisions),
        notes=_short_secret_notes(target) + elsewhere,
        **seen,
    )


def _unchecked(live: Any, asked: bool, revisions: tuple[str, ...]) -> str | None:
    """Why the live schema of a target whose last run verified it was not compared now (None: it was,
    or there is no such claim to back)."""
    if not asked:
        return None
    if live is None:
        return f"no reference schema is stored at {' '.join(revisions) or 'base'}"
    return str(live.unchecked) if live.unchecked else None


def _sessions_ended(session: Any, prefix: str) -> tuple[tuple[str, int], ...] | None:
    """The kill audit's counts of ended sessions; None when this user may not read it (a metric left
    out says less than a wrong zero)."""
    import sqlalchemy as sa

    from dbguard.db.ledger import KillLedger
    from dbguard.errors import DbguardError

    try:
        return tuple(KillLedger(session.conn, prefix).ended_counts().items())
    except (sa.exc.DBAPIError, DbguardError):
        return None


def _version_table_elsewhere(session: Any, table: str) -> tuple[str, ...]:
    """A note when the database looks empty to dbguard but another schema holds the version table: an
    env.py that keeps it there (``version_table_schema``) migrates a database that status would call
    base."""
    from dbguard.db.sql import run

    query = session.dialect.version_table_elsewhere(table)
    if query is None:
        return ()
    schemas = [str(name) for (name,) in run(session.conn, query).fetchall()]
    if not schemas:
        return ()
    own = session.conn.dialect.default_schema_name
    note = (f"no {table} in schema {own}, where dbguard reads it, but schema {', '.join(schemas)} has one: if env.py "
            f"keeps it there (version_table_schema), put dbguard's connection in that schema (its search_path, "
            f"e.g. PGOPTIONS='-c search_path={schemas[0]}')")
    return (note,)


def _short_secret_notes(target: Any) -> tuple[str, ...]:
    from dbguard.masking import short_secret_note

    note = short_secret_note([target.url.password], "the database URL's password")
    return (note,) if note else ()
