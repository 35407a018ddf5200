"""Typed results returned by ``dbguard.api``: plain frozen data that the output module renders.

The results of a guarded run live here; those of other commands live in submodules and are
imported on first use (``from dbguard.results import LockTree`` still works), so a plain
``dbguard upgrade`` does not pay for building every command's result classes.
"""

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


_ELSEWHERE = {
    "LockRef": "locks",
    "LockSession": "locks",
    "LockTree": "locks",
    "KillOutcome": "locks",
    "KillReport": "locks",
    "DriftReport": "checks",
    "SnapshotResult": "checks",
    "PlanReport": "checks",
    "FleetTargetResult": "fleet",
    "FleetBatchResult": "fleet",
    "FleetRunInfo": "fleet",
    "FleetResult": "fleet",
    "FleetStatusReport": "fleet",
    "FleetTargetCheck": "fleet",
    "FleetValidateReport": "fleet",
    "FleetWorkerResult": "fleet",
}


def __getattr__(name: str) -> Any:
    module = _ELSEWHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'dbguard.results' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"dbguard.results.{module}"), name)
    globals()[name] = value
    return value
