"""What the server did against what the plan predicted (``plan --observe``). Pure: the observed locks
and rewrites come in as plain data; a disagreement is finding DG116, prediction-disagrees.

The plan predicts per statement (:mod:`dbguard.risk.lock_modes`); the observation is read per
revision from the server (PostgreSQL's pg_locks and relfilenode). Both sides are reduced to the
strongest table lock and whether the table was rewritten, per revision and table."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping

from dbguard.risk.lock_modes import pg_level
from dbguard.risk.model import Finding, Severity

__all__ = ["CODE", "NAME", "Finding", "Observation", "RevisionObservation", "TableComparison", "compare"]

CODE, NAME = "DG116", "prediction-disagrees"

# PostgreSQL's table lock modes by level (lock_modes.pg_level), in the plan's words.
PG_MODES = {0: "none", 1: "ACCESS SHARE", 2: "ROW SHARE", 3: "ROW EXCLUSIVE", 4: "SHARE UPDATE EXCLUSIVE",
            5: "SHARE", 6: "SHARE ROW EXCLUSIVE", 7: "EXCLUSIVE", 8: "ACCESS EXCLUSIVE"}


def level_of(mode: str | None) -> int:
    """0 for no lock, else pg_level's; a mode it cannot read counts as no lock."""
    if not mode or mode == "none":
        return 0
    return pg_level(mode) or 0


def mode_name(mode: str | None) -> str:
    """A mode in the plan's words, from either side's spelling ("ShareLock", "SHARE ROW EXCLUSIVE on p")."""
    return PG_MODES[level_of(mode)]


def strongest(modes: Iterable[str | None]) -> str:
    return PG_MODES[max((level_of(m) for m in modes), default=0)]


def _comparable(level: int) -> int:
    # A plain read (ACCESS SHARE) conflicts only with ACCESS EXCLUSIVE and the plan does not predict
    # the reads a statement makes (a foreign key's lookups, a data migration's SELECT): taken as none.
    return 0 if level == 1 else level


@dataclasses.dataclass(frozen=True)
class TableComparison:
    table: str
    predicted_lock: str
    observed_lock: str
    predicted_rewrite: bool
    observed_rewrite: bool

    @property
    def lock_agrees(self) -> bool:
        return _comparable(level_of(self.predicted_lock)) == _comparable(level_of(self.observed_lock))

    @property
    def agrees(self) -> bool:
        return self.lock_agrees and self.predicted_rewrite == self.observed_rewrite


@dataclasses.dataclass(frozen=True)
class RevisionObservation:
    """One pending revision as the scratch run saw it: ``status`` is "observed" or "not observed";
    a revision not observed keeps its prediction and has no disagreement."""

    revision: str
    status: str
    reason: str | None = None
    tables: tuple[TableComparison, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def observed(self) -> bool:
        return self.status == "observed"


@dataclasses.dataclass(frozen=True)
class Observation:
    """``plan --observe``: where it ran and, per pending revision, predicted against observed."""

    status: str  # "observed", or "not observed" with ``reason`` (no scratch database, not PostgreSQL)
    reason: str | None = None
    where: str | None = None  # the scratch database, masked
    revisions: tuple[RevisionObservation, ...] = ()
    disagreements: int = 0


def severity_of(comparison: TableComparison) -> Severity:
    """The severity of the stronger of the two sides: a rewrite or ACCESS EXCLUSIVE blocks reads
    (high), a lock that blocks writes is medium, SHARE UPDATE EXCLUSIVE low, weaker info."""
    if comparison.predicted_rewrite != comparison.observed_rewrite:
        return Severity.HIGH
    level = max(level_of(comparison.predicted_lock), level_of(comparison.observed_lock))
    if level >= 8:
        return Severity.HIGH
    if level >= 5:
        return Severity.MEDIUM
    if level == 4:
        return Severity.LOW
    return Severity.INFO


def compare(revision: str, predicted: Mapping[str, tuple[str, bool]], observed: Mapping[str, tuple[str, bool]],
            ignore: Iterable[str] = ()) -> tuple[tuple[TableComparison, ...], tuple[Finding, ...]]:
    """Per table of either side (minus ``ignore``: Alembic's version table), the predicted and the
    observed (strongest lock, rewritten); a table on which they differ is a DG116 finding."""
    skip = {t.lower() for t in ignore}
    tables = sorted({t for t in (*predicted, *observed) if t.lower() not in skip})
    rows, findings = [], []
    for table in tables:
        p_lock, p_rewrite = predicted.get(table, ("none", False))
        o_lock, o_rewrite = observed.get(table, ("none", False))
        row = TableComparison(table=table, predicted_lock=mode_name(p_lock), observed_lock=mode_name(o_lock),
                              predicted_rewrite=p_rewrite, observed_rewrite=o_rewrite)
        rows.append(row)
        if not row.agrees:
            findings.append(_finding(revision, row))
    return tuple(rows), tuple(findings)


def _finding(revision: str, row: TableComparison) -> Finding:
    said = []
    if not row.lock_agrees:
        said.append(f"the plan predicted {row.predicted_lock}, the server took {row.observed_lock}")
    if row.predicted_rewrite != row.observed_rewrite:
        said.append("the plan predicted a rewrite, the server did not rewrite it" if row.predicted_rewrite
                    else "the server rewrote it, the plan did not predict a rewrite")
    return Finding(
        code=CODE, name=NAME, severity=severity_of(row).label, revision=revision,
        statement=f"{revision} on {row.table}", table=row.table, lock=row.observed_lock,
        message=f"on {row.table}: {'; '.join(said)} (observed in a scratch database)",
        alternative="trust the observed lock; report the statement so that the rule learns it",
    )
