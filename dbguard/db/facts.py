"""Read the live facts the risk rules weigh: the server, and rows, size, columns and lock holders per
table.

Every SQL text comes from the dialect; this module only runs it and shapes plain data.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa

from dbguard.db.sql import run
from dbguard.dialects import RiskFacts
from dbguard.risk.model import ColumnFacts, LockHolder, ServerInfo, TableFacts


def version_tuple(text: str | None) -> tuple[int, ...] | None:
    m = re.match(r"\s*(?:PostgreSQL\s+)?(\d+)\.(\d+)(?:\.(\d+))?", text or "")
    if not m:
        return None
    return tuple(int(g) for g in m.groups() if g is not None)


def server_info(conn: Any, dialect: RiskFacts) -> ServerInfo:
    number, text, slots = run(conn, dialect.server_facts()).one()
    if number:  # PostgreSQL server_version_num: 150018 is 15.18
        version: tuple[int, ...] | None = (int(number) // 10000, int(number) % 10000)
    else:
        version = version_tuple(text)
    flavor = dialect.name
    if text and "mariadb" in str(text).lower():
        flavor = "mariadb"
    short = f"{flavor} {'.'.join(map(str, version))}" if version else str(text)
    return ServerInfo(engine=dialect.risk_engine, flavor=flavor, version=version, version_text=short,
                      lock_slots=int(slots) if slots else 64)


def table_facts(conn: Any, dialect: RiskFacts, tables: Iterable[str]) -> tuple[dict[str, TableFacts], list[str]]:
    """Facts of every named table (missing ones with ``exists=False``) and notes on what could not
    be read."""
    names = sorted({t for t in tables if t})
    notes: list[str] = []
    if not names:
        return {}, notes
    for statement in dialect.table_facts_prelude():
        try:
            conn.exec_driver_sql(statement)
        except sa.exc.DBAPIError:
            notes.append(f"could not run {statement!r}: row counts may be cached")
    found: dict[str, tuple[int | None, int | None, int | None]] = {}
    for name, rows, total, data in run(conn, dialect.table_facts(names)).all():
        rows = None if rows is None or int(rows) < 0 else int(rows)
        found[str(name).lower()] = (rows, None if total is None else int(total), None if data is None else int(data))
    columns: dict[str, dict[str, ColumnFacts]] = {}
    for table, column, type_text, nullable, char_bytes in run(conn, dialect.table_columns(names)).all():
        columns.setdefault(str(table).lower(), {})[str(column).lower()] = ColumnFacts(
            type=str(type_text), nullable=bool(nullable), char_bytes=int(char_bytes) if char_bytes else None)
    holders = _lock_holders(conn, dialect, names, notes)
    facts = {}
    for name in names:
        if name in found:
            rows, total, data = found[name]
            facts[name] = TableFacts(table=name, rows=rows, size_bytes=total, data_bytes=data,
                                     rows_source=dialect.rows_source, lock_holders=tuple(holders.get(name, ())),
                                     columns=columns.get(name, {}))
        else:
            facts[name] = TableFacts(table=name, exists=False, rows=0, size_bytes=0, data_bytes=0)
    return facts, notes


def index_tables(conn: Any, dialect: RiskFacts, indexes: Iterable[str]) -> dict[str, str]:
    """The table of each named index in the live catalog (an index no table or several tables hold
    is left out: its table stays unknown)."""
    names = sorted({i for i in indexes if i})
    if not names:
        return {}
    found: dict[str, set[str]] = {}
    for index, table in run(conn, dialect.index_tables(names)).all():
        found.setdefault(str(index).lower(), set()).add(str(table).lower())
    return {index: next(iter(tables)) for index, tables in found.items() if len(tables) == 1}


def _lock_holders(conn: Any, dialect: RiskFacts, names: list[str], notes: list[str]) -> dict[str, list[LockHolder]]:
    out: dict[str, list[LockHolder]] = {}
    for source in dialect.lock_holder_sources():
        try:
            if not run(conn, dialect.lock_holder_source_ready(source)).scalar():
                continue
            rows = run(conn, dialect.table_lock_holders(names, source)).all()
        except sa.exc.DBAPIError as exc:
            notes.append(f"sessions holding locks not read from {source}: {str(exc.orig).splitlines()[0][:120]}")
            continue
        seen: dict[tuple[str, str], int] = {}
        for table, session, mode, state, age, query, granted in rows:
            key = (str(table).lower(), str(session))
            holders = out.setdefault(key[0], [])
            if key in seen:
                # One session, several locks on the table: all of them, for DG113's conflict check.
                first = holders[seen[key]]
                if mode and mode not in (first.mode or "").split(", "):
                    first = dataclasses.replace(first, mode=f"{first.mode}, {mode}" if first.mode else mode)
                holders[seen[key]] = dataclasses.replace(first, granted=first.granted and bool(granted))
                continue
            seen[key] = len(holders)
            holders.append(LockHolder(
                session_id=key[1], mode=mode, state=state, xact_age_s=None if age is None else float(age),
                query=query, granted=bool(granted)))
        return out
    if dialect.lock_holder_sources():
        notes.append("sessions holding locks unknown: no metadata lock source is available "
                     "(MariaDB: INSTALL SONAME 'metadata_lock_info'; MySQL: performance_schema)")
    else:
        notes.append("sessions holding locks unknown on this engine")
    return out
