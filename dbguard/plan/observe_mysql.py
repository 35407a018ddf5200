"""What MariaDB/MySQL decides for one migration statement, seen on a scratch database without running it
on the real table: the ALTER algorithm the server accepts (INSTANT, INPLACE without a write lock, or
COPY), whether it rebuilds the table, and the metadata locks a DML statement keeps until commit.

An ALTER is tried on an empty copy of its table (``CREATE TABLE ... LIKE``), asked for the least
disruptive way first; the server's refusal (1845/1846) says that way is not possible, its acceptance
that it is. What the copy cannot show: foreign keys (LIKE copies none, so a table with any is not
probed), and failures that depend on rows (a NOT NULL over existing NULLs).
"""

from __future__ import annotations

import contextlib
import dataclasses
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from dbguard.db.connect import first_line
from dbguard.db.sql import run, run_verbatim, transaction
from dbguard.dialects import AlterProbes, alter_probes_of
from dbguard.dialects.mysql import from_sqlalchemy
from dbguard.dialects.mysql_copy import (
    NAMED_LOCK_CLAUSES,
    PROBE_CLAUSES,
    CopyProbe,
    copy_probe,
    probe_statement,
)
from dbguard.risk.observed import ALGORITHMS

COPY_PREFIX = "_dbguard_probe_"

# What a statement that needs no probe does, whatever the table (kind -> algorithm, blocks writes,
# rebuilt, why). Each takes an exclusive metadata lock on the names it touches.
_FIXED = {
    "create_table": (None, False, False, "new table: an exclusive metadata lock on a name nobody uses yet"),
    "drop_table": (None, True, None, ("drop: an exclusive metadata lock; waits for every open transaction "
                                      "that touched the table, and everything queues behind it")),
    "rename_table": (None, True, False, "rename: metadata only, under an exclusive metadata lock on both names"),
}


@dataclass(frozen=True)
class MysqlObservation:
    """What the server decided for ``statement``. ``algorithm``: ``instant``, ``inplace``, ``copy``
    (or ``nocopy``, a statement naming it), None when there is none or it was not seen;
    ``blocks_writes``: whether other sessions' writes wait while it runs; ``rebuilt``: whether InnoDB
    made a new table (new table id); ``metadata_locks``: (table, mode) a DML statement holds until
    commit; ``not_observed``: why nothing was observed; ``note``: where a fixed answer comes from."""

    statement: str
    table: str | None
    algorithm: str | None = None
    blocks_writes: bool | None = None
    rebuilt: bool | None = None
    metadata_locks: tuple[tuple[str, str], ...] = ()
    not_observed: str | None = None
    note: str | None = None


def observe(conn: Connection, statement: str, dialect: AlterProbes | None = None) -> MysqlObservation:
    """Observe ``statement`` on ``conn``, an autocommit connection (``dbguard.db.connect.connect``'s
    kind) to a scratch MariaDB/MySQL database
    holding the statement's table. DDL runs on a copy of the table only (dropped before returning);
    DML runs on the scratch table inside a transaction that is rolled back."""
    if conn.get_execution_options().get("isolation_level") != "AUTOCOMMIT":
        # The DML probe opens and rolls back a transaction of its own; the caller's must not be open.
        raise ValueError("observe needs an autocommit connection")
    dialect = dialect or alter_probes_of(from_sqlalchemy(conn.dialect))
    probe = copy_probe(statement)
    if probe.refused:
        return MysqlObservation(statement, probe.table, not_observed=probe.refused)
    if probe.kind == "alter":
        return _observe_alter(conn, dialect, statement, probe)
    if probe.kind == "dml":
        return _observe_dml(conn, dialect, statement, probe)
    algorithm, blocks, rebuilt, why = _FIXED[probe.kind]
    return MysqlObservation(statement, probe.table, algorithm, blocks, rebuilt, note=why)


def _observe_alter(conn: Connection, dialect: AlterProbes, statement: str, probe: CopyProbe) -> MysqlObservation:
    assert probe.table is not None and probe.operations is not None  # an alter probe names both
    if run(conn, dialect.foreign_keys_of(probe.name)).scalar():
        return MysqlObservation(statement, probe.table, not_observed="the table has foreign keys, which a copy lacks")
    copy = f"{COPY_PREFIX}{uuid.uuid4().hex[:12]}"
    try:
        try:
            run(conn, dialect.copy_table_like(copy, probe.name))
        except sa.exc.DBAPIError as exc:
            return MysqlObservation(statement, probe.table, not_observed=f"cannot copy the table: {first_line(exc)}")
        before = run(conn, dialect.innodb_table_id(copy)).scalar()
        if probe.algorithm:
            # The statement says how: observe it as written and report what it names.
            tries: tuple[tuple[str | None, str | None, str | None], ...] = ((probe.algorithm, probe.lock, None),)
        elif probe.lock:
            tries = tuple((algorithm, probe.lock, clause) for algorithm, clause in NAMED_LOCK_CLAUSES)
        else:
            tries = PROBE_CLAUSES
        for algorithm, lock, clause in tries:
            try:
                run_verbatim(conn, probe_statement(copy, probe.operations, clause))
            except sa.exc.DBAPIError as exc:
                if dialect.is_algorithm_refused(exc) and clause is not None:
                    continue
                return MysqlObservation(statement, probe.table,
                                        not_observed=f"the statement fails on a copy: {first_line(exc)}")
            after = run(conn, dialect.innodb_table_id(copy)).scalar()
            if algorithm == "default":
                algorithm = None
            rebuilt = None if before is None or after is None else before != after
            return MysqlObservation(statement, probe.table, algorithm, _blocks_writes(algorithm, lock),
                                    rebuilt, note="probed on an empty copy of the table")
        raise AssertionError("the last probe has no clause the server could refuse")
    finally:
        run(conn, dialect.drop_table_copy(copy))


def _blocks_writes(algorithm: str | None, lock: str | None) -> bool | None:
    """Whether writers wait for the whole ALTER: LOCK says so where named; INSTANT only touches
    metadata, COPY always blocks them; INPLACE without LOCK=NONE may or may not."""
    if lock in ("none", "shared", "exclusive"):
        return lock != "none"
    if algorithm in ("instant", "copy"):
        return algorithm == "copy"
    return None


def _observe_dml(conn: Connection, dialect: AlterProbes, statement: str, probe: CopyProbe) -> MysqlObservation:
    source = dialect.mdl_sources()[0]
    if not run(conn, dialect.mdl_source_ready(source)).scalar():
        # Never installed here: installing a server plugin is the DBA's call (dbguard locks --install-plugin).
        return MysqlObservation(statement, probe.table, not_observed=dialect.mdl_source_absent(source))
    with transaction(conn, commit=False):
        try:
            run_verbatim(conn, statement)
        except sa.exc.DBAPIError as exc:
            return MysqlObservation(statement, probe.table,
                                    not_observed=f"the statement fails on the scratch database: {first_line(exc)}")
        # Right after the statement, before the rollback: DML keeps its metadata locks until commit.
        locks = tuple((str(table), str(mode)) for table, mode in run(conn, dialect.own_metadata_locks(source)))
    return MysqlObservation(statement, probe.table, metadata_locks=locks,
                            note="metadata locks held until the transaction ends (run on the scratch, rolled back)")


# --- ``plan --observe`` on MariaDB/MySQL: every statement of the scratch run, probed before it runs ----

# How long a probe waits for a lock the migration's own open transaction holds (its row locks, its
# metadata locks) before it gives up: the migration waits for the probe, so a wait would be a hang.
_PROBE_LOCK_WAIT_MS = 1000


@dataclass
class TableSeen:
    """One table over one revision: the slowest algorithm the server accepted, whether writers waited,
    whether InnoDB rebuilt it (None: not seen), or why it was not observed."""

    algorithm: str | None = None
    blocks_writes: bool | None = False
    rebuilt: bool | None = False
    not_observed: str | None = None


@dataclass
class RevisionSeen:
    revision: str
    tables: dict[str, TableSeen] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


class AlterObserver:
    """The MySQL/MariaDB observer of the scratch run (the cursor listeners' ``before``/``after``, as
    dbguard.db.observe.LockObserver's): DDL commits on its own and holds its metadata locks only while
    it runs, so each statement is asked of the server on a second, autocommit connection BEFORE it
    runs (:func:`observe`): the real statement then runs as the migration has it.

    ``tables_of(sql)`` names every table a statement touches (dbguard.risk.parse), to leave them all
    "not observed" when the copy cannot stand for it (a foreign key reaches its parent too)."""

    def __init__(self, dialect: AlterProbes, engine: sa.engine.Engine, tables_of: Callable[[str], tuple[str, ...]],
                 ignore: tuple[str, ...] = ()) -> None:
        self.dialect = dialect
        self.revisions: dict[str, RevisionSeen] = {}
        self._engine, self._tables_of = engine, tables_of
        self._ignore = {t.lower() for t in ignore}
        self._conn: Connection | None = None

    def before(self, conn: Any, statement: str, revision: str) -> None:
        seen = self.revisions.setdefault(revision, RevisionSeen(revision))
        try:
            tables = [t for t in self._tables_of(statement) if t.lower() not in self._ignore]
            if not tables:
                return  # Alembic's own reads and version row, SET, SELECT: no table of the migration's
            self._take(seen, observe(self._probe(), statement, self.dialect), tables)
        except Exception as exc:  # noqa: BLE001 - observing must never fail the migration
            for table in self._tables_of(statement):
                seen.tables.setdefault(table, TableSeen()).not_observed = f"not probed: {first_line(exc)}"

    def after(self, conn: Any, statement: str, revision: str) -> None:
        """Nothing: the probe ran before the statement, on a connection of its own."""

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None

    def _probe(self) -> Connection:
        if self._conn is None:
            from dbguard.db import connect as dbconnect

            conn = dbconnect.connect(self._engine)  # autocommit, as observe() requires
            for sql in self.dialect.session_timeouts(_PROBE_LOCK_WAIT_MS, 0):
                run_verbatim(conn, sql)
            self._conn = conn
        return self._conn

    @staticmethod
    def _take(seen: RevisionSeen, found: MysqlObservation, tables: list[str]) -> None:
        if found.not_observed and found.metadata_locks == () and _is_dml(found):
            # DML's own effect is known (no ALTER, writes go on); only its metadata locks were not seen.
            seen.notes.append(f"{found.table}: metadata locks of DML not observed: {found.not_observed}")
            seen.tables.setdefault(found.table or tables[0], TableSeen())
            return
        if found.not_observed:
            for table in {found.table or tables[0], *tables}:
                seen.tables.setdefault(table, TableSeen()).not_observed = found.not_observed
            return
        entry = seen.tables.setdefault(found.table or tables[0], TableSeen())
        if _is_dml(found):
            held = ", ".join(f"{t} {m}" for t, m in found.metadata_locks)
            seen.notes.append(f"{found.table}: DML keeps until commit: {held or 'no metadata lock'}")
            # No ALTER, no rebuild; writers wait only behind a metadata lock that forbids them.
            found = dataclasses.replace(found, rebuilt=False, blocks_writes=any(
                t == found.table and _forbids_writes(m) for t, m in found.metadata_locks))
        if ALGORITHMS.get(found.algorithm, 0) > ALGORITHMS.get(entry.algorithm, 0):
            entry.algorithm = found.algorithm
        entry.blocks_writes = _either(entry.blocks_writes, found.blocks_writes)
        entry.rebuilt = _either(entry.rebuilt, found.rebuilt)



def _either(seen: bool | None, found: bool | None) -> bool | None:
    """True when either statement did it; unknown (None) only when neither did and one is unknown."""
    if seen or found:
        return True
    return None if seen is None or found is None else False


def _forbids_writes(mode: str) -> bool:
    # MDL_SHARED_NO_WRITE, MDL_SHARED_NO_READ_WRITE, MDL_EXCLUSIVE; DML's MDL_SHARED_WRITE lets writers in.
    return "NO_WRITE" in mode or "NO_READ_WRITE" in mode or mode.endswith("_EXCLUSIVE")


def _is_dml(found: MysqlObservation) -> bool:
    return copy_probe(found.statement).kind == "dml"
