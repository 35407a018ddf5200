"""Results of ``dbguard fleet ...``."""

from __future__ import annotations

import dataclasses
from typing import Any

from dbguard.errors import ExitCode

# fleets ------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class FleetTargetResult:
    """One target in one fleet run (or in ``fleet status``: its live state and revisions too)."""

    name: str
    masked_url: str
    weight: float
    batch: int | None = None
    status: str | None = None  # dbguard.core.fleet.TargetStatus value
    # None: never read (the target's batch never reached its pre-flight); () is base.
    from_revisions: tuple[str, ...] | None = None
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
    # Targets this upgrade did not touch (--partial-rollout).
    left_out: tuple[str, ...] = ()


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
    # Targets the last upgrade did not touch (its batches stopped short: --partial-rollout).
    left_out: tuple[str, ...] = ()


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
