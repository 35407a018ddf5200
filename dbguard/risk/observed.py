"""What the server did against what the plan predicted (``plan --observe``). Pure: the observed locks
and rewrites come in as plain data; a disagreement is finding DG116, prediction-disagrees.

The plan predicts per statement (:mod:`dbguard.risk.lock_modes`); the observation is read per
revision from the server (PostgreSQL's pg_locks and relfilenode). Both sides are reduced to the
strongest table lock and whether the table was rewritten, per revision and table.

MySQL/MariaDB DDL commits on its own and lets its metadata locks go when it ends, so there the
comparison is of what the server decides instead (:func:`compare_mysql`): per table the slowest ALTER
algorithm (INSTANT < INPLACE < COPY), whether writers wait, and whether InnoDB rebuilt the table."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping

from dbguard.risk.lock_modes import pg_level
from dbguard.risk.model import Finding, Severity

__all__ = ["CODE", "NAME", "Finding", "Observation", "RevisionObservation", "TableComparison", "compare",
           "compare_mysql"]

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


# MySQL/MariaDB ALTER algorithms, slowest last; NOCOPY (MariaDB) is in place without a rebuild.
ALGORITHMS = {None: 0, "instant": 1, "nocopy": 2, "inplace": 2, "copy": 3}


@dataclasses.dataclass(frozen=True)
class TableComparison:
    """One table of one revision. PostgreSQL compares lock modes; MySQL/MariaDB (``engine`` "mysql")
    the algorithm class and write block, which ``predicted_lock``/``observed_lock`` then spell. An
    observed value of None is one the server did not show (never a disagreement); ``not_observed``
    says why the table was not observed at all."""

    table: str
    predicted_lock: str
    observed_lock: str
    predicted_rewrite: bool
    observed_rewrite: bool | None
    engine: str = "postgresql"
    predicted_algorithm: str | None = None
    observed_algorithm: str | None = None
    predicted_blocks_writes: bool | None = None
    observed_blocks_writes: bool | None = None
    not_observed: str | None = None

    @property
    def lock_agrees(self) -> bool:
        if self.not_observed:
            return True
        if self.engine == "mysql":
            same_writes = self.observed_blocks_writes is None or \
                self.observed_blocks_writes == self.predicted_blocks_writes
            return ALGORITHMS.get(self.predicted_algorithm, 0) == ALGORITHMS.get(self.observed_algorithm, 0) \
                and same_writes
        return _comparable(level_of(self.predicted_lock)) == _comparable(level_of(self.observed_lock))

    @property
    def rewrite_agrees(self) -> bool:
        return bool(self.not_observed) or self.observed_rewrite is None or \
            self.predicted_rewrite == self.observed_rewrite

    @property
    def agrees(self) -> bool:
        return self.lock_agrees and self.rewrite_agrees


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
    engine: str = "postgresql"  # "mysql": MySQL/MariaDB, compared by ALTER algorithm (compare_mysql)


def severity_of(comparison: TableComparison) -> Severity:
    """MySQL/MariaDB: see :func:`_mysql_severity`. PostgreSQL: The severity of the stronger of the two sides: a rewrite or ACCESS EXCLUSIVE blocks reads
    (high), a lock that blocks writes is medium, SHARE UPDATE EXCLUSIVE low, weaker info."""
    if comparison.engine == "mysql":
        return _mysql_severity(comparison)
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


def _mysql_severity(row: TableComparison) -> Severity:
    """The stronger side's: COPY or blocked writes high, an INPLACE rebuild medium, INPLACE alone low,
    INSTANT (or no ALTER) info."""
    def one(algorithm: str | None, blocks: bool | None, rebuilt: bool | None) -> Severity:
        level = ALGORITHMS.get(algorithm, 0)
        if level == 3 or blocks:
            return Severity.HIGH
        if level == 2:
            return Severity.MEDIUM if rebuilt else Severity.LOW
        return Severity.MEDIUM if rebuilt else Severity.INFO
    return max(one(row.predicted_algorithm, row.predicted_blocks_writes, row.predicted_rewrite),
               one(row.observed_algorithm, row.observed_blocks_writes, row.observed_rewrite))


def mysql_side(algorithm: str | None, blocks_writes: bool | None) -> str:
    """A MySQL/MariaDB side in the plan's words: "COPY, blocks writes", "INSTANT, writes go on"."""
    if algorithm is None and not blocks_writes:
        return "none"
    writes = {True: "blocks writes", False: "writes go on", None: "writes unknown"}[blocks_writes]
    return f"{algorithm.upper()}, {writes}" if algorithm else f"no ALTER, {writes}"


def compare_mysql(revision: str, predicted: Mapping[str, tuple[str | None, bool, bool]],
                  observed: Mapping[str, tuple[str | None, bool | None, bool | None]],
                  not_observed: Mapping[str, str] | None = None,
                  ignore: Iterable[str] = ()) -> tuple[tuple[TableComparison, ...], tuple[Finding, ...]]:
    """MySQL/MariaDB: per table of either side (minus ``ignore``) the predicted (algorithm, blocks
    writes, rebuilt) against the observed; a table in ``not_observed`` (a statement on it the copy
    could not stand for) keeps its prediction, never a disagreement. A difference in algorithm class,
    in write block, or in rebuild is a DG116 finding."""
    skip = {t.lower() for t in ignore}
    not_observed = not_observed or {}
    tables = sorted({t for t in (*predicted, *observed, *not_observed) if t.lower() not in skip})
    rows, findings = [], []
    for table in tables:
        p_alg, p_blocks, p_rebuilt = predicted.get(table, (None, False, False))
        o_alg, o_blocks, o_rebuilt = observed.get(table, (None, False, False))
        p_alg, o_alg = (p_alg or "").lower() or None, (o_alg or "").lower() or None
        reason = not_observed.get(table)
        row = TableComparison(table=table, predicted_lock=mysql_side(p_alg, p_blocks),
                              observed_lock="not observed" if reason else mysql_side(o_alg, o_blocks),
                              predicted_rewrite=p_rebuilt, observed_rewrite=None if reason else o_rebuilt,
                              engine="mysql", predicted_algorithm=p_alg, observed_algorithm=None if reason else o_alg,
                              predicted_blocks_writes=p_blocks, observed_blocks_writes=None if reason else o_blocks,
                              not_observed=reason)
        rows.append(row)
        if not row.agrees:
            findings.append(_finding(revision, row))
    return tuple(rows), tuple(findings)


def _finding(revision: str, row: TableComparison) -> Finding:
    said = []
    if not row.lock_agrees:
        said.append(f"the plan predicted {row.predicted_lock}, the server took {row.observed_lock}")
    if not row.rewrite_agrees:
        said.append("the plan predicted a rewrite, the server did not rewrite it" if row.predicted_rewrite
                    else "the server rewrote it, the plan did not predict a rewrite")
    return Finding(
        code=CODE, name=NAME, severity=severity_of(row).label, revision=revision,
        statement=f"{revision} on {row.table}", table=row.table, lock=row.observed_lock,
        message=f"on {row.table}: {'; '.join(said)} (observed in a scratch database)",
        alternative="trust the observed lock; report the statement so that the rule learns it",
    )
