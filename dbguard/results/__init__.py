"""Typed results returned by ``dbguard.api``: plain frozen data that the output module renders.

Each command's result classes live in a submodule imported on first use (``from dbguard.results
import RunResult`` still works), so a command builds only its own: ``dbguard drift`` never builds
the guarded run's classes, a plain ``dbguard upgrade`` never builds those of other commands.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what type checkers see; at run time each submodule loads on first use
    from dbguard.results.checks import DriftReport, PlanReport, SnapshotResult
    from dbguard.results.fleet import (
        FleetBatchResult,
        FleetResult,
        FleetRunInfo,
        FleetStatusReport,
        FleetTargetCheck,
        FleetTargetResult,
        FleetValidateReport,
        FleetWorkerResult,
    )
    from dbguard.results.locks import KillOutcome, KillReport, LockRef, LockSession, LockSnapshot, LockTree
    from dbguard.results.runs import (
        HistoryEntry,
        HistoryReport,
        OfflineSqlResult,
        RevisionsReport,
        RiskPrompt,
        RunResult,
        StatusReport,
        StepResult,
    )

__all__ = [
    "Confirm", "DriftReport", "FleetBatchResult", "FleetResult", "FleetRunInfo", "FleetStatusReport", "FleetTargetCheck",
    "FleetTargetResult", "FleetValidateReport", "FleetWorkerResult", "HistoryEntry", "HistoryReport", "KillOutcome",
    "KillReport", "LockRef", "LockSession", "LockSnapshot", "LockTree", "OfflineSqlResult", "PlanReport", "RevisionsReport",
    "RiskPrompt", "RunResult", "SnapshotResult", "StatusReport", "StepResult",
]

# Every confirmation dbguard asks for: shown a prompt, the caller answers with its token (the typed
# CONFIRM_RISK, or "yes" for a rollback's plan), or None to refuse.
Confirm = Callable[["RiskPrompt"], "str | None"]

_ELSEWHERE = {
    "StepResult": "runs",
    "RunResult": "runs",
    "StatusReport": "runs",
    "HistoryEntry": "runs",
    "HistoryReport": "runs",
    "RevisionsReport": "runs",
    "OfflineSqlResult": "runs",
    "RiskPrompt": "runs",
    "LockRef": "locks",
    "LockSession": "locks",
    "LockTree": "locks",
    "LockSnapshot": "locks",
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
