"""Typed results returned by ``dbguard.api``: plain frozen data that the output module renders."""

from __future__ import annotations

import dataclasses
from typing import Any

from dbguard.core.state import RunRecord, StepRecord
from dbguard.errors import ExitCode


@dataclasses.dataclass(frozen=True)
class StepResult:
    revision: str
    direction: str
    status: str
    duration_ms: int | None = None
    attempts: int = 1
    checksum: str | None = None
    error: str | None = None


@dataclasses.dataclass(frozen=True)
class RunResult:
    """The outcome of a run that tried to change a target: upgrade, downgrade, resolve."""

    intent: str
    status: str
    exit_code: ExitCode
    message: str
    run_id: int | None = None
    from_revisions: tuple[str, ...] = ()
    to_revision: str | None = None
    steps: tuple[StepResult, ...] = ()
    forced: bool = False
    error: str | None = None
    failed_step: str | None = None
    advice: str | None = None
    lock_waits_retried: int = 0
    duration_ms: int | None = None
    # Pre- and post-flight findings that did not stop the run (drift, changed revision files ...).
    warnings: tuple[str, ...] = ()
    # The pre-flight's risk plan of the pending revisions (a PlanReport), when one was made.
    plan: Any = None
    # The rollback lane: sessions it ended (KillOutcome), and how long each phase took (name, ms).
    ended_sessions: tuple = ()
    phases: tuple[tuple[str, int], ...] = ()


@dataclasses.dataclass(frozen=True)
class StatusReport:
    state: str
    exit_code: ExitCode
    revisions: tuple[str, ...]
    last_run: RunRecord | None
    breaker_reason: str | None = None
    advice: str | None = None
    lock_holder: str | None = None
    ledger_exists: bool = True


@dataclasses.dataclass(frozen=True)
class HistoryEntry:
    run: RunRecord
    steps: tuple[StepRecord, ...]


@dataclasses.dataclass(frozen=True)
class HistoryReport:
    runs: tuple[HistoryEntry, ...]
    exit_code: ExitCode = ExitCode.OK


@dataclasses.dataclass(frozen=True)
class RevisionsReport:
    """``current`` (what the database says) or ``heads`` (what the scripts say)."""

    kind: str
    revisions: tuple[str, ...]
    exit_code: ExitCode = ExitCode.OK


@dataclasses.dataclass(frozen=True)
class OfflineSqlResult:
    """``--sql``: Alembic wrote the SQL to standard output; nothing touched the database."""

    exit_code: ExitCode = ExitCode.OK


@dataclasses.dataclass(frozen=True)
class RiskPrompt:
    """What a person must read before typing the risk token."""

    title: str
    blast_radius: tuple[str, ...]
    token: str


@dataclasses.dataclass(frozen=True)
class LockRef:
    """A lock a session holds (granted) or waits for, on a table when it is a table lock."""

    mode: str
    granted: bool
    table: str | None = None
    locktype: str = "relation"


@dataclasses.dataclass(frozen=True)
class LockSession:
    """One session in the wait-for tree (or a prepared transaction: kind ``prepared``, id ``prepared:<gid>``)."""

    session_id: str
    kind: str
    user: str | None
    application: str | None
    client: str | None
    # The database its locks belong to (MySQL: the lock's schema); None when the source cannot tell.
    database: str | None
    state: str
    xact_age_s: float | None
    query: str | None
    blocked_by: tuple[str, ...] = ()
    is_root: bool = False
    depth: int = 0
    locks: tuple[LockRef, ...] = ()
    privileged: bool = False
    # Opaque: compared again right before ending the session, so a reused id is never hit.
    identity: str | None = None
    gid: str | None = None
    free_with: str | None = None


@dataclasses.dataclass(frozen=True)
class LockTree:
    """``dbguard locks``: who blocks whom in the target database, root blockers first."""

    engine: str
    database: str
    source: str
    approximate: bool
    sessions: tuple[LockSession, ...]
    roots: tuple[str, ...]
    table: str | None = None
    warnings: tuple[str, ...] = ()
    exit_code: ExitCode = ExitCode.OK


@dataclasses.dataclass(frozen=True)
class KillOutcome:
    """What happened (or would happen) to one chosen session."""

    session: LockSession
    action: str
    code: str
    reason: str
    outcome: str
    grant: str | None = None
    duration_ms: int | None = None
    audit_id: int | None = None


@dataclasses.dataclass(frozen=True)
class KillReport:
    """``dbguard locks kill``: the chosen sessions, the policy's verdicts and the outcomes."""

    database: str
    selection: str
    dry_run: bool
    outcomes: tuple[KillOutcome, ...]
    exit_code: ExitCode = ExitCode.OK
    message: str = ""
    warnings: tuple[str, ...] = ()
    source: str = ""
    approximate: bool = False


@dataclasses.dataclass(frozen=True)
class DriftReport:
    """``dbguard drift``: the live schema against an expected one."""

    against: str  # "models", "migrations", or the snapshot file
    engine: str
    revisions: tuple[str, ...]
    drifts: tuple  # of dbguard.core.schema.Drift
    tables_compared: int
    table_names: tuple[str, ...] = ()
    ignored: int = 0
    exit_code: ExitCode = ExitCode.OK
    duration_ms: int | None = None


@dataclasses.dataclass(frozen=True)
class SnapshotResult:
    """``dbguard snapshot``: the expected schema written to a file (or standard output)."""

    path: str | None
    revisions: tuple[str, ...]
    engine: str
    tables: int
    schema_hash: str
    text: str = ""  # the JSON, when written to standard output
    exit_code: ExitCode = ExitCode.OK


@dataclasses.dataclass(frozen=True)
class PlanReport:
    """``dbguard plan`` (and the upgrade pre-flight): per pending revision its statements, the lock
    each takes and the risk findings, plus a summary. ``revisions`` holds
    :class:`dbguard.risk.plan.RevisionPlan`, ``summary`` a :class:`dbguard.risk.plan.PlanSummary`."""

    mode: str  # live | offline
    server: str
    engine: str
    from_revisions: tuple[str, ...]
    to_revision: str
    revisions: tuple[Any, ...]
    summary: Any
    fail_on: str
    failing: int
    notes: tuple[str, ...] = ()
    complete: bool = True
    exit_code: ExitCode = ExitCode.OK

    @property
    def findings(self) -> tuple[Any, ...]:
        return tuple(f for r in self.revisions for f in r.findings)


# fleets ------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class FleetTargetResult:
    """One target in one fleet run (or in ``fleet status``: its live state and revisions too)."""

    name: str
    masked_url: str
    weight: float
    batch: int | None = None
    status: str | None = None  # dbguard.core.fleet.TargetStatus value
    from_revisions: tuple[str, ...] = ()
    to_revision: str | None = None
    run_id: int | None = None  # the target's own ledger run
    message: str | None = None
    error: str | None = None
    duration_ms: int | None = None
    started_at: Any = None
    finished_at: Any = None
    verified_at: Any = None
    state: str | None = None  # live: HEALTHY, RUNNING, FAILED, UNKNOWN
    revisions: tuple[str, ...] = ()  # live
    tags: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class FleetBatchResult:
    number: int
    status: str  # dbguard.core.fleet.BatchStatus value
    targets: tuple[str, ...]
    opened_at: Any = None
    finished_at: Any = None
    verified_at: Any = None


@dataclasses.dataclass(frozen=True)
class FleetRunInfo:
    id: int
    intent: str
    status: str
    revision: str | None
    started_at: Any = None
    finished_at: Any = None
    host: str | None = None
    pid: int | None = None
    os_user: str | None = None
    forced: bool = False
    distributed: bool = False
    error: str | None = None
    reason: str | None = None
    failed_batch: int | None = None


@dataclasses.dataclass(frozen=True)
class FleetResult:
    """``fleet upgrade``, ``fleet rollback``, ``fleet resolve``: what happened, batch by batch."""

    fleet: str
    intent: str
    status: str
    exit_code: ExitCode
    message: str
    run_id: int | None = None
    revision: str | None = None
    batches: tuple[FleetBatchResult, ...] = ()
    targets: tuple[FleetTargetResult, ...] = ()
    # dbguard.core.fleet.BlastRadius when the rollout stopped (or the breaker is open).
    blast_radius: Any = None
    rollback_command: str | None = None
    advice: str | None = None
    warnings: tuple[str, ...] = ()
    forced: bool = False
    distributed: bool = False
    duration_ms: int | None = None


@dataclasses.dataclass(frozen=True)
class FleetStatusReport:
    fleet: str
    state: str
    exit_code: ExitCode
    control: str  # masked URL of the control database
    last_run: FleetRunInfo | None = None
    batches: tuple[FleetBatchResult, ...] = ()
    targets: tuple[FleetTargetResult, ...] = ()
    blast_radius: Any = None
    rollback_command: str | None = None
    breaker_reason: str | None = None
    advice: str | None = None
    lock_holder: str | None = None


@dataclasses.dataclass(frozen=True)
class FleetTargetCheck:
    name: str
    masked_url: str
    weight: float
    tags: tuple[str, ...]
    alembic_config: str
    ok: bool
    engine: str | None = None
    server_version: str | None = None
    revisions: tuple[str, ...] = ()
    state: str | None = None
    error: str | None = None


@dataclasses.dataclass(frozen=True)
class FleetValidateReport:
    fleet: str
    path: str
    control: str
    batches: tuple[tuple[str, ...], ...]
    targets: tuple[FleetTargetCheck, ...]
    warnings: tuple[str, ...] = ()
    exit_code: ExitCode = ExitCode.OK


@dataclasses.dataclass(frozen=True)
class FleetWorkerResult:
    worker: str
    claimed: int
    succeeded: int
    failed: int
    refused: int
    duration_ms: int
    exit_code: ExitCode = ExitCode.OK
