"""Results of ``dbguard drift``, ``snapshot`` and ``plan``."""

from __future__ import annotations

import dataclasses
from typing import Any

from dbguard.errors import ExitCode


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
    # ``plan --observe``: a :class:`dbguard.risk.observed.Observation` (per revision, predicted against
    # observed lock and rewrite per table, or "not observed" and why); None without --observe.
    observed: Any = None

    @property
    def findings(self) -> tuple[Any, ...]:
        return tuple(f for r in self.revisions for f in r.findings)
