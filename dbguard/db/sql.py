"""Run a dialect's Statement on a connection."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, CursorResult

from dbguard.dialects import Statement


def run(conn: Connection, stmt: Statement | tuple[str, dict[str, Any]]) -> CursorResult:
    sql, params = stmt
    return conn.execute(sa.text(sql), params)


def inserted_id(result: CursorResult[Any]) -> int:
    """The id a single-row INSERT gave its row (the table's autoincrement primary key)."""
    key = result.inserted_primary_key
    if key is None:
        # SQLAlchemy's "no key reported": never so for the autoincrement ids of dbguard's tables.
        raise RuntimeError("the INSERT reported no primary key for the row it wrote")
    return int(key[0])


def run_statements(conn: Connection, statements: Iterable[str]) -> None:
    """Plain statements of dbguard's own making (session SETs), one after the other."""
    for statement in statements:
        conn.exec_driver_sql(statement)


@contextlib.contextmanager
def transaction(conn: Connection, commit: bool = True) -> Iterator[Connection]:
    """A real transaction on one of dbguard's autocommit connections (there, SQLAlchemy's ``begin()``
    sends no BEGIN): committed when the block ends (rolled back with ``commit=False``, or when it
    raises), and the connection back in autocommit mode afterwards."""
    conn.commit()  # ends SQLAlchemy's autobegun (autocommit) transaction
    conn.execution_options(isolation_level=conn.default_isolation_level)
    try:
        with conn.begin() as tx:
            yield conn
            if not commit:
                tx.rollback()
    finally:
        conn.execution_options(isolation_level="AUTOCOMMIT")


def run_verbatim(conn: Connection, statement: str) -> None:
    """A statement of a user's schema (a dump's, a snapshot's DDL) sent as a client sends it: the text
    as it is, no parameters (a % in a function body is not a placeholder)."""
    conn.execution_options(no_parameters=True).exec_driver_sql(statement)


def run_health_check(conn: Connection, sql: str) -> None:
    """A fleet target's ``health_sql``, in a transaction rolled back whatever it did."""
    with transaction(conn, commit=False):
        conn.execute(sa.text(sql))
