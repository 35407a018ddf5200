"""Run statuses, target states, and how a target's state follows from its runs."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum


class RunStatus(str, enum.Enum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    ROLLED_BACK = "rolled_back"
    RESOLVED = "resolved"
    REFUSED = "refused"
    BUSY = "busy"


class StepStatus(str, enum.Enum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    PARTIAL = "partial"
    ROLLED_BACK = "rolled_back"


class Intent(str, enum.Enum):
    UPGRADE = "upgrade"
    DOWNGRADE = "downgrade"
    ROLLBACK = "rollback"
    RESOLVE = "resolve"


class TargetState(str, enum.Enum):
    HEALTHY = "HEALTHY"
    RUNNING = "RUNNING"
    FAILED = "FAILED"
    UNKNOWN = "UNKNOWN"


def known_status(value: str | None) -> RunStatus | None:
    """The status as dbguard writes it, or None for a value it never writes (a hand-edited row):
    such a run is UNKNOWN, the breaker open, the rollback and resolve lanes open."""
    try:
        return RunStatus(value)
    except ValueError:
        return None


# Attempts that never touched the schema say nothing about its state.
NON_CHANGING_STATUSES = frozenset({RunStatus.REFUSED, RunStatus.BUSY})


@dataclasses.dataclass(frozen=True)
class RunRecord:
    """One row of the run ledger, as plain data."""

    id: int
    intent: str
    status: str
    from_revisions: tuple[str, ...] = ()
    to_revision: str | None = None
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    heartbeat_at: dt.datetime | None = None
    host: str | None = None
    pid: int | None = None
    os_user: str | None = None
    db_user: str | None = None
    dbguard_version: str | None = None
    forced: bool = False
    error: str | None = None
    failed_step: str | None = None
    reason: str | None = None
    lock_session: str | None = None
    # The run that closed this one (a rollback, a resolve).
    resolved_by: int | None = None
    # What alembic_version said when the run ended (None: it never ended, or the row predates it).
    revisions_after: tuple[str, ...] | None = None
    # How its end state was checked (dbguard.core.verdict.SchemaCheck), and the differences from the
    # reference it knew of before it ran (carried over, never failures).
    schema_check: str | None = None
    known_drift: tuple[str, ...] = ()
    # The server sessions the run migrated on, as (session id, identity): what a rollback or a
    # takeover ends if the run's process died and left a statement running.
    sessions: tuple[tuple[str, str], ...] = ()

    @property
    def changes_state(self) -> bool:
        return self.status not in {s.value for s in NON_CHANGING_STATUSES}


@dataclasses.dataclass(frozen=True)
class StepRecord:
    run_id: int
    revision: str
    direction: str
    status: str
    started_at: dt.datetime | None = None
    duration_ms: int | None = None
    checksum: str | None = None
    error: str | None = None
    attempts: int = 1


def latest_changing_run(runs: list[RunRecord]) -> RunRecord | None:
    """The newest run that tried to change the schema; ``runs`` may come in any order."""
    candidates = [r for r in runs if r.changes_state]
    return max(candidates, key=lambda r: r.id) if candidates else None


def derive_state(last_run: RunRecord | None, lock_held_by_other: bool) -> TargetState:
    """The target's state from its latest schema-changing run and the liveness of the run lock.

    ``lock_held_by_other`` is whether some session other than the asker holds the run lock now.
    A run row that still says running while nobody holds the lock belongs to a process that died.
    """
    if lock_held_by_other:
        return TargetState.RUNNING
    if last_run is None:
        return TargetState.HEALTHY
    status = known_status(last_run.status)
    if status is None or status is RunStatus.RUNNING:
        return TargetState.UNKNOWN
    if status is RunStatus.FAILED:
        return TargetState.FAILED
    return TargetState.HEALTHY


def step_status_after_run(
    *,
    was_applied_before: bool,
    is_applied_now: bool,
    completed: bool,
    is_failing_step: bool,
    committed_work: bool,
) -> StepStatus:
    """Final status of one step, reconciled with ``alembic_version`` after the run.

    ``completed`` says the step's code returned; ``committed_work`` says some of its statements
    are live even though the step did not finish (non-transactional DDL on MySQL and SQLite).
    A step is judged by what the version table says, not by the transaction mode: an outer
    transaction can roll back a step that "completed", and ``autocommit_block`` commits early.
    """
    if is_applied_now != was_applied_before:
        return StepStatus.SUCCEEDED
    if is_failing_step:
        return StepStatus.PARTIAL if committed_work else StepStatus.FAILED
    if completed:
        return StepStatus.ROLLED_BACK
    return StepStatus.FAILED
