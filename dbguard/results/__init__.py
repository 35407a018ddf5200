"""Typed results returned by ``dbguard.api``: plain frozen data that the output module renders.

Each command's result classes live in a submodule imported on first use (``from dbguard.results
import RunResult`` still works), so a command builds only its own: ``dbguard drift`` never builds
the guarded run's classes, a plain ``dbguard upgrade`` never builds those of other commands.
"""

from __future__ import annotations

from typing import Any

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
