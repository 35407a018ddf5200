"""Read a live database's whole schema into the neutral model, with a handful of set-based queries.

The SQL comes from the engine's dialect module (``dialect.catalog()``); this module runs it and
builds :class:`dbguard.core.schema.Schema`. Which builder to use is the dialect's ``catalog_style``
capability, never the engine's name. Nothing here imports sqlglot: a schema read twice from the
same server compares (and hashes) equal without normalising any expression.
"""

from __future__ import annotations

import fnmatch
import json
import re
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from sqlalchemy.engine import Connection

from dbguard.core.schema import (
    Check,
    Column,
    ForeignKey,
    Index,
    Schema,
    Table,
    Unique,
    canonical,
    normalize_type,
)
from dbguard.db.sql import run


def never_drift(prefix: str, version_table: str = "alembic_version") -> tuple[str, ...]:
    """Table patterns that are never drift: dbguard's ledger and Alembic's version table."""
    return (f"{prefix}*", version_table)


def read_schema(conn: Connection, dialect: Any, exclude: Iterable[str] = ()) -> Schema:
    """The schema of the database ``conn`` is connected to (PostgreSQL: its current schema)."""
    statements = dialect.catalog()
    rows = {key: [dict(r) for r in run(conn, stmt).mappings()] for key, stmt in statements.items()}
    builder = _BUILDERS[dialect.catalog_style]
    schema = builder(dialect, rows)
    patterns = tuple(exclude)
    if patterns:
        schema = schema.without_tables(patterns)
    return canonical(schema)


def _excluded(name: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


class _TableBuilder:
    def __init__(self, name: str) -> None:
        self.name = name
        self.comment: str | None = None
        self.columns: list[Column] = []
        self.primary_key: tuple[str, ...] = ()
        self.uniques: list[Unique] = []
        self.checks: list[Check] = []
        self.indexes: list[Index] = []
        self.foreign_keys: list[ForeignKey] = []

    def build(self) -> Table:
        return Table(
            name=self.name, columns=tuple(self.columns), primary_key=self.primary_key,
            uniques=tuple(self.uniques), checks=tuple(self.checks), indexes=tuple(self.indexes),
            foreign_keys=tuple(self.foreign_keys), comment=self.comment or None,
        )


# PostgreSQL -----------------------------------------------------------------------------------

_PG_ACTIONS = {"a": None, "r": "RESTRICT", "c": "CASCADE", "n": "SET NULL", "d": "SET DEFAULT"}
_NEXTVAL = re.compile(r"^nextval\(", re.IGNORECASE)


def _pg_check(definition: str) -> str:
    text = definition.strip()
    if text.upper().startswith("CHECK "):
        text = text[6:].strip()
    if text.upper().endswith(" NOT VALID"):
        text = text[:-10].strip()
    if text.startswith("(") and text.endswith(")"):
        text = text[1:-1]
    return text


def _build_pg(dialect: Any, rows: dict[str, list[dict[str, Any]]]) -> Schema:
    engine = dialect.name
    tables: dict[str, _TableBuilder] = {}
    for r in rows["columns"]:
        tb = tables.get(r["table_name"])
        if tb is None:
            tb = tables[r["table_name"]] = _TableBuilder(r["table_name"])
            tb.comment = r["table_comment"]
        if r["column_name"] is None:
            continue
        default = r["default_expr"]
        generated = None
        if r["generated"]:
            generated, default = default, None
        autoincrement = bool(r["identity"])
        if default is not None and _NEXTVAL.match(default):
            autoincrement, default = True, None
        tb.columns.append(Column(
            name=r["column_name"], type=normalize_type(engine, r["type"]), nullable=not r["not_null"],
            default=default, autoincrement=autoincrement, collation=r["collation"], comment=r["comment"],
            generated=generated,
        ))
    for r in rows["constraints"]:
        tb = tables.get(r["table_name"])
        if tb is None:
            continue
        kind, cols = r["type"], tuple(r["columns"] or ())
        if kind == "p":
            tb.primary_key = cols
        elif kind == "u":
            tb.uniques.append(Unique(name=r["name"], columns=cols))
        elif kind == "c":
            tb.checks.append(Check(name=r["name"], expression=_pg_check(r["definition"])))
        elif kind == "f":
            tb.foreign_keys.append(ForeignKey(
                name=r["name"], columns=cols, ref_table=r["ref_table"], ref_columns=tuple(r["ref_columns"] or ()),
                on_delete=_PG_ACTIONS.get(r["on_delete"]), on_update=_PG_ACTIONS.get(r["on_update"]),
            ))
    for r in rows["indexes"]:
        tb = tables.get(r["table_name"])
        if tb is None:
            continue
        columns = tuple(_unquote_pg(c) for c in (r["columns"] or ()))
        tb.indexes.append(Index(
            name=r["name"], columns=columns, unique=bool(r["is_unique"]), where=r["predicate"],
            method=None if r["method"] == "btree" else r["method"],
        ))
    enums, views, sequences = [], [], []
    for r in rows["objects"]:
        if r["kind"] == "enum":
            enums.append((r["name"], tuple(json.loads(r["detail"]))))
        elif r["kind"] == "view":
            views.append((r["name"], (r["detail"] or "").strip()))
        else:
            sequences.append(r["name"])
    return Schema(engine=engine, tables=tuple(t.build() for t in tables.values()), enums=tuple(enums),
                  views=tuple(views), sequences=tuple(sequences))


def _unquote_pg(text: str) -> str:
    if len(text) > 1 and text[0] == '"' and text[-1] == '"' and '"' not in text[1:-1].replace('""', ""):
        return text[1:-1].replace('""', '"')
    return text


# MySQL 8 and MariaDB --------------------------------------------------------------------------

_MYSQL_ACTIONS = {"NO ACTION": None, "RESTRICT": None, "CASCADE": "CASCADE", "SET NULL": "SET NULL",
                  "SET DEFAULT": "SET DEFAULT"}
_JSON_VALID = re.compile(r"^json_valid\(`?([^`]+)`?\)$", re.IGNORECASE)
_MYSQL_NOW = re.compile(r"^(current_timestamp|now)(\(\d*\))?$", re.IGNORECASE)


def _mysql_default(dialect: Any, raw: Any, extra: str) -> str | None:
    if raw is None:
        return None
    text = str(raw)
    if dialect.column_default_quoted:
        return None if text == "NULL" else text
    # MySQL 8: literals come bare; expressions are marked DEFAULT_GENERATED (CURRENT_TIMESTAMP is not).
    if "DEFAULT_GENERATED" in extra.upper() or _MYSQL_NOW.match(text):
        return text
    return "'" + text.replace("'", "''") + "'"


def _build_mysql(dialect: Any, rows: dict[str, list[dict[str, Any]]]) -> Schema:
    engine = dialect.name
    tables: dict[str, _TableBuilder] = {}
    table_collation: dict[str, str | None] = {}
    for r in rows["columns"]:
        name = r["table_name"]
        tb = tables.get(name)
        if tb is None:
            tb = tables[name] = _TableBuilder(name)
            tb.comment = r["table_comment"] or None
            table_collation[name] = r["table_collation"]
        extra = r["extra"] or ""
        generated = r["generated"] or None
        default = None if generated else _mysql_default(dialect, r["default_expr"], extra)
        collation = r["collation"]
        tb.columns.append(Column(
            name=r["column_name"], type=normalize_type(engine, r["type"]), nullable=r["is_nullable"] == "YES",
            default=default, autoincrement="auto_increment" in extra.lower(),
            collation=None if collation == table_collation[name] else collation,
            comment=r["comment"] or None, generated=generated,
        ))
    indexes: dict[tuple[str, str], dict[str, Any]] = {}
    for r in rows["indexes"]:
        key = (r["table_name"], r["name"])
        ix = indexes.setdefault(key, {"unique": not int(r["non_unique"]), "method": r["method"], "columns": []})
        if r["column_name"] is None:
            part = r["expression"] or ""
        else:
            part = r["column_name"] + (f"({r['sub_part']})" if r["sub_part"] else "")
        ix["columns"].append(part)
    for (table, name), ix in indexes.items():
        tb = tables.get(table)
        if tb is None:
            continue
        if name == "PRIMARY":
            tb.primary_key = tuple(ix["columns"])
            continue
        method = (ix["method"] or "BTREE").lower()
        tb.indexes.append(Index(name=name, columns=tuple(ix["columns"]), unique=ix["unique"],
                                method=None if method == "btree" else method))
    fks: dict[tuple[str, str], dict[str, Any]] = {}
    for r in rows["foreign_keys"]:
        fk = fks.setdefault((r["table_name"], r["name"]), {"cols": [], "refs": [], **r})
        fk["cols"].append(r["column_name"])
        fk["refs"].append(r["ref_column"])
    for (table, name), fk in fks.items():
        tb = tables.get(table)
        if tb is not None:
            tb.foreign_keys.append(ForeignKey(
                name=name, columns=tuple(fk["cols"]), ref_table=fk["ref_table"], ref_columns=tuple(fk["refs"]),
                on_delete=_MYSQL_ACTIONS.get(fk["on_delete"]), on_update=_MYSQL_ACTIONS.get(fk["on_update"]),
            ))
    for r in rows["checks"]:
        tb = tables.get(r["table_name"])
        if tb is None:
            continue
        expression = (r["expression"] or "").strip()
        match = _JSON_VALID.match(expression)
        if dialect.json_is_checked_longtext and match and r["level"] == "Column" and match.group(1) == r["name"]:
            # MariaDB's JSON: LONGTEXT with its own json_valid() check. Show it as the JSON it was declared.
            tb.columns = [Column(**{**c.__dict__, "type": "json", "collation": None})
                          if c.name == r["name"] and c.type == "longtext" else c for c in tb.columns]
            continue
        tb.checks.append(Check(name=r["name"], expression=expression))
    views, sequences = [], []
    for r in rows["objects"]:
        if r["kind"] == "view":
            # The server writes every name qualified with the database's: not part of the definition.
            detail = (r["detail"] or "").replace(f"`{r['db']}`.", "").strip()
            views.append((r["name"], detail))
        else:
            sequences.append(r["name"])
    # A JSON column's collation (utf8mb4_bin) is part of the type, not a choice.
    return Schema(engine=engine, tables=tuple(t.build() for t in tables.values()),
                  views=tuple(views), sequences=tuple(sequences))


# SQLite ---------------------------------------------------------------------------------------

_SQLITE_ACTIONS = {"NO ACTION": None, "RESTRICT": "RESTRICT", "CASCADE": "CASCADE", "SET NULL": "SET NULL",
                   "SET DEFAULT": "SET DEFAULT"}


def _scan_parens(text: str, start: int) -> int:
    """Index just past the parenthesis group opening at ``text[start]``."""
    depth = 0
    i = start
    quote = None
    while i < len(text):
        ch = text[i]
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"`[":
            quote = "]" if ch == "[" else ch
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return len(text)


def _split_top(text: str) -> list[str]:
    parts, depth, quote, current = [], 0, None, []
    for ch in text:
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"`[":
            quote = "]" if ch == "[" else ch
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append("".join(current).strip())
            current = []
            continue
        current.append(ch)
    if "".join(current).strip():
        parts.append("".join(current).strip())
    return parts


_CHECK = re.compile(r"(?:\bCONSTRAINT\s+(\"[^\"]+\"|`[^`]+`|\[[^\]]+\]|\w+)\s+)?\bCHECK\s*\(", re.IGNORECASE)
_COLUMN_DEF = re.compile(r"^(\"[^\"]+\"|`[^`]+`|\[[^\]]+\]|\w+)")


def _sqlite_checks(table_sql: str) -> list[Check]:
    """CHECK constraints from the CREATE TABLE text (SQLite keeps no catalog of them)."""
    checks = []
    open_at = table_sql.find("(")
    body = table_sql[open_at + 1:_scan_parens(table_sql, open_at) - 1] if open_at >= 0 else ""
    for part in _split_top(body):
        for m in _CHECK.finditer(part):
            if _in_quotes(part, m.start()):
                continue
            start = m.end() - 1
            end = _scan_parens(part, start)
            name = m.group(1).strip('"`[]') if m.group(1) else None
            checks.append(Check(name=name, expression=part[start + 1:end - 1].strip()))
    return checks


def _in_quotes(text: str, pos: int) -> bool:
    return text[:pos].count("'") % 2 == 1


def _sqlite_index_parts(index_sql: str | None) -> tuple[list[str], str | None]:
    """Key parts and WHERE predicate of a CREATE INDEX statement."""
    if not index_sql:
        return [], None
    m = re.search(r"\bON\s+(\"[^\"]+\"|`[^`]+`|\[[^\]]+\]|\w+)\s*\(", index_sql, re.IGNORECASE)
    if not m:
        return [], None
    start = m.end() - 1
    end = _scan_parens(index_sql, start)
    parts = _split_top(index_sql[start + 1:end - 1])
    rest = index_sql[end:].strip()
    where = rest[5:].strip() if rest.upper().startswith("WHERE") else None
    return parts, where


def _build_sqlite(dialect: Any, rows: dict[str, list[dict[str, Any]]]) -> Schema:
    engine = dialect.name
    tables: dict[str, _TableBuilder] = {}
    pks: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for r in rows["columns"]:
        name = r["table_name"]
        tb = tables.get(name)
        if tb is None:
            tb = tables[name] = _TableBuilder(name)
            tb.checks = _sqlite_checks(r["table_sql"] or "")
        if r["pk"]:
            pks[name].append((r["pk"], r["column_name"]))
        generated = None
        if r["hidden"] in (2, 3):
            generated = _sqlite_generated(r["table_sql"] or "", r["column_name"])
        tb.columns.append(Column(
            name=r["column_name"], type=normalize_type(engine, r["type"] or ""), nullable=not r["not_null"],
            default=r["default_expr"], generated=generated,
        ))
    for name, tb in tables.items():
        tb.primary_key = tuple(col for _, col in sorted(pks.get(name, [])))
        finish_sqlite_table(tb)
    indexes: dict[tuple[str, str], dict[str, Any]] = {}
    for r in rows["indexes"]:
        ix = indexes.setdefault((r["table_name"], r["name"]), {"parts": [], **r})
        ix["parts"].append((r["cid"], r["column_name"]))
    for (table, name), ix in indexes.items():
        tb = tables.get(table)
        if tb is None or ix["origin"] == "pk":
            continue
        sql_parts, where = _sqlite_index_parts(ix["index_sql"])
        columns = []
        for i, (cid, column) in enumerate(ix["parts"]):
            if column is None:  # an expression (cid -2)
                column = sql_parts[i] if i < len(sql_parts) else "?"
            columns.append(column)
        if ix["origin"] == "u":
            tb.uniques.append(Unique(name=None if name.startswith("sqlite_autoindex_") else name,
                                     columns=tuple(columns)))
        else:
            tb.indexes.append(Index(name=name, columns=tuple(columns), unique=bool(ix["is_unique"]), where=where))
    fks: dict[tuple[str, int], dict[str, Any]] = {}
    for r in rows["foreign_keys"]:
        fk = fks.setdefault((r["table_name"], r["id"]), {"cols": [], "refs": [], **r})
        fk["cols"].append(r["column_name"])
        fk["refs"].append(r["ref_column"])
    for (table, _), fk in fks.items():
        tb = tables.get(table)
        if tb is None:
            continue
        refs = fk["refs"]
        if any(ref is None for ref in refs):  # REFERENCES t without columns: its primary key
            target = tables.get(fk["ref_table"])
            refs = list(target.primary_key) if target else refs
        tb.foreign_keys.append(ForeignKey(
            name=None, columns=tuple(fk["cols"]), ref_table=fk["ref_table"], ref_columns=tuple(refs),
            on_delete=_SQLITE_ACTIONS.get(fk["on_delete"]), on_update=_SQLITE_ACTIONS.get(fk["on_update"]),
        ))
    views = [(r["name"], (r["detail"] or "").strip()) for r in rows["objects"]]
    return Schema(engine=engine, tables=tuple(t.build() for t in tables.values()), views=tuple(views),
                  sequences=())


def finish_sqlite_table(tb: Any) -> None:
    """A single-column INTEGER primary key is SQLite's rowid: it increments by itself."""
    if len(tb.primary_key) == 1:
        tb.columns = [Column(**{**c.__dict__, "autoincrement": True})
                      if c.name == tb.primary_key[0] and c.type == "integer" else c for c in tb.columns]


def _sqlite_generated(table_sql: str, column: str) -> str | None:
    m = re.search(rf"\b{re.escape(column)}\b[^,]*?\bAS\s*\(", table_sql, re.IGNORECASE)
    if not m:
        return None
    start = m.end() - 1
    return table_sql[start + 1:_scan_parens(table_sql, start) - 1].strip()


_BUILDERS = {"pg_catalog": _build_pg, "information_schema": _build_mysql, "sqlite_pragma": _build_sqlite}
