"""What MariaDB/MySQL decides for one migration statement, seen on a scratch database without running it
on the real table: the ALTER algorithm the server accepts (INSTANT, INPLACE without a write lock, or
COPY), whether it rebuilds the table, and the metadata locks a DML statement keeps until commit.

An ALTER is tried on an empty copy of its table (``CREATE TABLE ... LIKE``), asked for the least
disruptive way first; the server's refusal (1845/1846) says that way is not possible, its acceptance
that it is. What the copy cannot show: foreign keys (LIKE copies none, so a table with any is not
probed), and failures that depend on rows (a NOT NULL over existing NULLs).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from dbguard.db.connect import first_line
from dbguard.db.sql import run, run_verbatim, transaction
from dbguard.dialects import AlterProbes, alter_probes_of
from dbguard.dialects.mysql import (
    PROBE_CLAUSES,
    CopyProbe,
    copy_probe,
    from_sqlalchemy,
    probe_statement,
)

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
        if probe.algorithm or probe.lock:
            # The statement says how: observe it as written and report what it names.
            tries: tuple[tuple[str | None, str | None, str | None], ...] = ((probe.algorithm, probe.lock, None),)
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
