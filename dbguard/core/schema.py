"""The neutral schema model and ``diff(expected, actual) -> list[Drift]``.

Pure data and pure functions: no SQLAlchemy, no I/O. Both sides of a comparison are built by
someone else (the catalog reader, the models converter, a snapshot file) for one engine, whose name
travels with the schema as data. Values are kept as the source gave them (types already mapped to
a canonical spelling); defaults and expressions are compared raw first and normalised only when the
raw text differs, so comparing a schema with itself never imports sqlglot.
"""

from __future__ import annotations

import contextlib
import dataclasses
import decimal
import fnmatch
import functools
import gc
import hashlib
import json
import marshal
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

import dbguard

# 2: identity options and ON UPDATE of columns, INCLUDE and NULLS NOT DISTINCT of indexes and
# uniques, PostgreSQL index keys with their collation and operator class, SPATIAL keys without SUB_PART.
SNAPSHOT_FORMAT = 2
_F = TypeVar("_F", bound=Callable[..., Any])


_gc_lock = threading.Lock()
_gc_pauses = 0
_gc_was_enabled = False
_gc_freeze = False


@contextlib.contextmanager
def gc_paused(freeze: bool = False) -> Iterator[None]:
    """No cyclic garbage collection inside: building tens of thousands of small objects next to a
    big heap (a models module of thousands of tables) otherwise triggers full collections that
    walk that heap again and again, and cost more than the building. Nests, also across threads
    (the catalog is read in one while env.py imports the models in another): the collector comes
    back when the last pause ends.

    ``freeze``: what exists when the last pause ends is frozen (``gc.freeze()``): for the models'
    heap, which lives as long as the process anyway; the first collection after re-enabling would
    otherwise walk all of it once more (0.3 s at 1000 tables). Only in a process dbguard owns
    (``dbguard.OWNS_PROCESS``): in a host application the pause is all there is."""
    global _gc_pauses, _gc_was_enabled, _gc_freeze
    with _gc_lock:
        if _gc_pauses == 0:
            _gc_was_enabled = gc.isenabled()
            gc.disable()
        _gc_pauses += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_pauses -= 1
            _gc_freeze = _gc_freeze or freeze
            if _gc_pauses == 0:
                if _gc_freeze:
                    if dbguard.OWNS_PROCESS:
                        gc.freeze()
                    _gc_freeze = False
                if _gc_was_enabled:
                    gc.enable()


def without_gc(fn: _F) -> _F:
    @functools.wraps(fn)
    def inner(*args: Any, **kwargs: Any) -> Any:
        with gc_paused():
            return fn(*args, **kwargs)

    return inner  # type: ignore[return-value]

# Severity of a drift: an "error" breaks code that relies on the schema; a "warning" does not.
ERROR = "error"
WARNING = "warning"


@dataclasses.dataclass(frozen=True)
class Column:
    name: str
    type: str
    nullable: bool = True
    default: str | None = None
    autoincrement: bool = False
    collation: str | None = None
    comment: str | None = None
    generated: str | None = None
    # MySQL/MariaDB's ON UPDATE expression (``ON UPDATE CURRENT_TIMESTAMP``), apart from the default.
    on_update: str | None = None
    # PostgreSQL's identity column: ALWAYS or BY DEFAULT, then START and INCREMENT where not 1.
    identity: str | None = None


@dataclasses.dataclass(frozen=True)
class Index:
    name: str | None
    columns: tuple[str, ...]  # column names, or expressions
    unique: bool = False
    where: str | None = None
    method: str | None = None  # None is the engine's default (btree)
    include: tuple[str, ...] = ()  # PostgreSQL's INCLUDE columns, stored beside the key
    nulls_not_distinct: bool = False  # PostgreSQL 15's UNIQUE NULLS NOT DISTINCT


@dataclasses.dataclass(frozen=True)
class Unique:
    name: str | None
    columns: tuple[str, ...]
    nulls_not_distinct: bool = False


@dataclasses.dataclass(frozen=True)
class Check:
    name: str | None
    expression: str


@dataclasses.dataclass(frozen=True)
class ForeignKey:
    name: str | None
    columns: tuple[str, ...]
    ref_table: str
    ref_columns: tuple[str, ...]
    on_delete: str | None = None  # None is NO ACTION
    on_update: str | None = None


@dataclasses.dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[Column, ...] = ()
    primary_key: tuple[str, ...] = ()
    uniques: tuple[Unique, ...] = ()
    checks: tuple[Check, ...] = ()
    indexes: tuple[Index, ...] = ()
    foreign_keys: tuple[ForeignKey, ...] = ()
    comment: str | None = None

    def column(self, name: str) -> Column | None:
        for col in self.columns:
            if col.name == name:
                return col
        return None


@dataclasses.dataclass(frozen=True)
class Schema:
    """One database schema as seen on one engine.

    ``origin`` says where it came from: "catalog" (read from a live database, also through a
    snapshot or a replay) or "models" (SQLAlchemy MetaData). Models know nothing of views, so
    ``views`` is None there: unknown, not empty.
    """

    engine: str
    tables: tuple[Table, ...] = ()
    enums: tuple[tuple[str, tuple[str, ...]], ...] = ()
    views: tuple[tuple[str, str], ...] | None = ()
    sequences: tuple[str, ...] | None = ()
    origin: str = "catalog"

    def table(self, name: str) -> Table | None:
        for table in self.tables:
            if table.name == name:
                return table
        return None

    def without_tables(self, patterns: Iterable[str]) -> Schema:
        pats = tuple(patterns)
        return dataclasses.replace(
            self, tables=tuple(t for t in self.tables if not any(fnmatch.fnmatchcase(t.name, p) for p in pats))
        )


@dataclasses.dataclass(frozen=True)
class Drift:
    kind: str  # e.g. missing_column, changed_column_type, extra_index, missing_enum_value
    table: str | None  # the table it belongs to; None for enums, views, sequences
    object: str  # dotted path: "orders", "orders.total", "orders.ix_orders_total", "enum status"
    expected: str | None
    actual: str | None
    severity: str = ERROR

    def describe(self) -> str:
        words = self.kind.replace("_", " ")
        if self.expected is not None and self.actual is not None:
            return f"{words} {self.object}: expected {self.expected}, found {self.actual}"
        if self.expected is not None:
            return f"{words} {self.object} (expected {self.expected})"
        if self.actual is not None:
            return f"{words} {self.object} (found {self.actual})"
        return f"{words} {self.object}"


# JSON -----------------------------------------------------------------------------------------


def _drop_defaults(obj: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for field in dataclasses.fields(obj):
        value = getattr(obj, field.name)
        if value == field.default and field.name not in ("name", "type", "columns", "expression"):
            continue
        if isinstance(value, tuple):
            value = [_drop_defaults(v) if dataclasses.is_dataclass(v) else v for v in value]
        out[field.name] = value
    return out


def _sort_key(item: Any) -> tuple[str, str]:
    name = getattr(item, "name", None)
    return (name or "", repr(item))  # frozen dataclasses: repr is deterministic


def _canonical_items(items: tuple[Any, ...]) -> tuple[Any, ...]:
    """``items`` sorted by :func:`_sort_key`; by name alone when the names are distinct (the same
    order, without a repr per item); the very same tuple when already in order."""
    if len(items) < 2:
        return items
    names = [item.name for item in items]
    if None not in names and len(set(names)) == len(names):
        ordered = sorted(items, key=lambda item: item.name)
    else:
        ordered = sorted(items, key=_sort_key)
    return items if all(a is b for a, b in zip(ordered, items)) else tuple(ordered)


def _canonical_table(t: Table) -> Table:
    uniques, checks = _canonical_items(t.uniques), _canonical_items(t.checks)
    indexes, fks = _canonical_items(t.indexes), _canonical_items(t.foreign_keys)
    if uniques is t.uniques and checks is t.checks and indexes is t.indexes and fks is t.foreign_keys:
        return t
    return dataclasses.replace(t, uniques=uniques, checks=checks, indexes=indexes, foreign_keys=fks)


def canonical(schema: Schema) -> Schema:
    """The same schema with every collection in a stable order (columns keep their position)."""
    tables = tuple(sorted((_canonical_table(t) for t in schema.tables), key=lambda t: t.name))
    return dataclasses.replace(
        schema,
        tables=tables,
        enums=tuple(sorted(schema.enums)),
        views=None if schema.views is None else tuple(sorted(schema.views)),
        sequences=None if schema.sequences is None else tuple(sorted(schema.sequences)),
    )


def to_dict(schema: Schema) -> dict[str, Any]:
    schema = canonical(schema)
    doc: dict[str, Any] = {"format": SNAPSHOT_FORMAT, "engine": schema.engine, "origin": schema.origin}
    doc["tables"] = {t.name: {k: v for k, v in _drop_defaults(t).items() if k != "name"} for t in schema.tables}
    doc["enums"] = {name: list(values) for name, values in schema.enums}
    doc["views"] = None if schema.views is None else dict(schema.views)
    doc["sequences"] = None if schema.sequences is None else list(schema.sequences)
    return doc


def to_json(schema: Schema, indent: int | None = 2) -> str:
    """Stable, sorted, diff-friendly JSON: the same schema always gives the same bytes."""
    if indent is None:
        return json.dumps(to_dict(schema), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return json.dumps(to_dict(schema), sort_keys=True, indent=indent, ensure_ascii=False) + "\n"


def schema_hash(schema: Schema) -> str:
    return hashlib.sha256(to_json(schema, indent=None).encode()).hexdigest()


_FIELDS: dict[type, frozenset[str]] = {}


def _build(cls: type, data: dict[str, Any]) -> Any:
    # The snapshot form drops fields at their default and writes tuples as lists; keys this
    # version does not know are left out.
    known = _FIELDS.get(cls)
    if known is None:
        known = _FIELDS[cls] = frozenset(f.name for f in dataclasses.fields(cls))
    return cls(**{k: tuple(v) if type(v) is list else v for k, v in data.items() if k in known})


def _sorted_items(items: list[dict[str, Any]], cls: type) -> list[dict[str, Any]]:
    """Items of one table in :func:`canonical`'s order, on their snapshot form: by name, and by the
    object's repr when names tie (unnamed items; rare, so only they become objects)."""
    if len(items) < 2:
        return items
    names = [item["name"] for item in items]
    if None not in names and len(set(names)) == len(names):
        return sorted(items, key=lambda item: item["name"])
    return sorted(items, key=lambda item: (item["name"] or "", repr(_build(cls, item))))


_ITEM_CLASSES = (("uniques", Unique), ("checks", Check), ("indexes", Index), ("foreign_keys", ForeignKey))


def canonical_table_document(data: dict[str, Any]) -> dict[str, Any]:
    """One table's snapshot form in canonical order, empty collections left out, as :func:`to_dict`
    writes it; catalog readers build this straight from their rows."""
    for key, cls in _ITEM_CLASSES:
        items = data.get(key)
        if items:
            data[key] = _sorted_items(items, cls)
        elif key in data:
            del data[key]
    if not data.get("primary_key"):
        data.pop("primary_key", None)
    if data.get("comment") is None:
        data.pop("comment", None)
    data.setdefault("columns", [])
    return data


def table_from_dict(name: str, data: dict[str, Any]) -> Table:
    return Table(
        name=name,
        columns=tuple(_build(Column, c) for c in data.get("columns", ())),
        primary_key=tuple(data.get("primary_key", ())),
        uniques=tuple(_build(Unique, u) for u in _sorted_items(list(data.get("uniques", ())), Unique)),
        checks=tuple(_build(Check, c) for c in _sorted_items(list(data.get("checks", ())), Check)),
        indexes=tuple(_build(Index, i) for i in _sorted_items(list(data.get("indexes", ())), Index)),
        foreign_keys=tuple(_build(ForeignKey, f) for f in _sorted_items(list(data.get("foreign_keys", ())),
                                                                       ForeignKey)),
        comment=data.get("comment"),
    )


def check_document(doc: Any) -> dict[str, Any]:
    if not isinstance(doc, dict) or "tables" not in doc or "engine" not in doc:
        raise ValueError("not a dbguard schema snapshot (no 'engine' and 'tables')")
    if doc.get("format", SNAPSHOT_FORMAT) > SNAPSHOT_FORMAT:
        raise ValueError(f"snapshot format {doc['format']} is newer than this dbguard understands")
    return doc


@without_gc
def from_dict(doc: dict[str, Any], only: Iterable[str] | None = None) -> Schema:
    """The schema a snapshot document describes (``only``: just these of its tables), in canonical order."""
    check_document(doc)
    names = sorted(doc["tables"]) if only is None else sorted(set(only) & doc["tables"].keys())
    views = doc.get("views", {})
    sequences = doc.get("sequences", [])
    return Schema(
        engine=doc["engine"],
        tables=tuple(table_from_dict(name, doc["tables"][name]) for name in names),
        enums=tuple(sorted((k, tuple(v)) for k, v in doc.get("enums", {}).items())),
        views=None if views is None else tuple(sorted(views.items())),
        sequences=None if sequences is None else tuple(sorted(sequences)),
        origin=doc.get("origin", "catalog"),
    )


def from_json(text: str) -> Schema:
    return from_dict(json.loads(text))


def never_drift(prefix: str, version_table: str = "alembic_version") -> tuple[str, ...]:
    """Table patterns that are never drift: dbguard's ledger and Alembic's version table."""
    return (f"{prefix}*", version_table)


def excluded(name: str, patterns: Iterable[str]) -> bool:
    """Whether a table name matches one of the fnmatch ``patterns``."""
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def document_without_tables(doc: dict[str, Any], patterns: Iterable[str]) -> dict[str, Any]:
    pats = tuple(patterns)
    if not pats:
        return doc
    tables = {n: t for n, t in doc["tables"].items() if not any(fnmatch.fnmatchcase(n, p) for p in pats)}
    return {**doc, "tables": tables}


def document_json(doc: dict[str, Any], indent: int | None = 2) -> str:
    """:func:`to_json` of a snapshot document: the same bytes as for the schema it describes."""
    if indent is None:
        return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return json.dumps(doc, sort_keys=True, indent=indent, ensure_ascii=False) + "\n"


def document_hash(doc: dict[str, Any]) -> str:
    """:func:`schema_hash` of the schema a canonical snapshot document describes, without building it."""
    return hashlib.sha256(document_json(doc, indent=None).encode()).hexdigest()


@without_gc
def diff_documents(expected: dict[str, Any], actual: dict[str, Any]) -> list[Drift]:
    """:func:`diff` of two snapshot documents. Tables whose documents are equal have nothing to
    report, so only the others become objects and are compared. Documents of two formats are
    compared on what the older one records (see :func:`comparable`)."""
    expected, actual = comparable(expected, actual)
    exp_tables, act_tables = expected["tables"], actual["tables"]
    differing = [n for n in exp_tables.keys() | act_tables.keys() if exp_tables.get(n) != act_tables.get(n)]
    return diff(from_dict(expected, differing), from_dict(actual, differing))


_NEXTVAL = re.compile(r"^nextval\(", re.IGNORECASE)


def draws_from_sequence(default: str | None) -> bool:
    """A PostgreSQL default ``nextval(...)``: the column numbers itself (serial), read and expected as
    autoincrement with no default, on both sides of a comparison."""
    return default is not None and _NEXTVAL.match(default) is not None


def document_format(doc: dict[str, Any]) -> int:
    return int(doc.get("format") or 1)


def comparable(expected: dict[str, Any], actual: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Both documents as the older one's format records a schema: a reference stored, or a snapshot
    written, by a dbguard that read less of the catalog says nothing of what it did not read, so
    that is no difference."""
    if min(document_format(expected), document_format(actual)) >= SNAPSHOT_FORMAT:
        return expected, actual
    return _as_format_1(expected), _as_format_1(actual)


_SUB_PART = re.compile(r"\(\d+\)(?=( DESC)?$)")


def _pg_key_as_format_1(text: str, columns: set[str]) -> str:
    """A PostgreSQL key part as format 1 wrote it: format 2 writes what follows a key (``code COLLATE
    "C" varchar_pattern_ops``, ``lower(name) text_pattern_ops``, an operator class's parameters), format
    1 the column's plain name or the expression alone; the order (DESC, NULLS) stays."""
    key, descending, nulls_first = split_index_key(text)
    head = key.split(" ", 1)[0]
    if head in columns:
        key = head
    elif ")" in key and not key.endswith(")"):  # an expression, then its operator class
        key = key[:key.rindex(")") + 1]
    return index_key(key, descending, nulls_first)


def _as_format_1(doc: dict[str, Any]) -> dict[str, Any]:
    family = engine_family(doc.get("engine", ""))
    postgresql = family == "postgresql"
    tables = {}
    for name, table in doc["tables"].items():
        table = dict(table)
        # SQLite: format 1 read no expression of a generated column whose type holds a comma.
        dropped = ("on_update", "identity")
        table["columns"] = [{k: v for k, v in c.items()
                             if k not in dropped and not (k == "generated" and family == "sqlite"
                                                          and "," in str(c.get("type", "")))}
                            for c in table.get("columns", ())]
        column_names = {str(c.get("name")) for c in table["columns"]}
        table["uniques"] = [{k: v for k, v in u.items() if k != "nulls_not_distinct"}
                            for u in table.get("uniques", ())]
        indexes = []
        for ix in table.get("indexes", ()):
            ix = {k: v for k, v in ix.items() if k not in ("include", "nulls_not_distinct")}
            keys = list(ix.get("columns", ()))
            if postgresql:
                keys = [_pg_key_as_format_1(k, column_names) for k in keys]
            elif str(ix.get("method") or "").lower() == "spatial":
                keys = [_SUB_PART.sub("", k) for k in keys]
            indexes.append({**ix, "columns": keys})
        table["indexes"] = indexes
        tables[name] = table
    return {**doc, "format": 1, "tables": tables}


# Normalisation --------------------------------------------------------------------------------

# Canonical type spellings per engine family: aliases on the left, what the catalog says on the right.
_PG_ALIASES = {
    "int": "integer", "int4": "integer", "serial": "integer", "serial4": "integer",
    "int8": "bigint", "bigserial": "bigint", "serial8": "bigint",
    "int2": "smallint", "smallserial": "smallint", "serial2": "smallint",
    "float8": "double precision", "float": "double precision", "double": "double precision",
    "float4": "real", "bool": "boolean", "decimal": "numeric",
    "varchar": "character varying", "char": "character", "bpchar": "character",
}
_MYSQL_ALIASES = {
    "integer": "int", "bool": "tinyint(1)", "boolean": "tinyint(1)", "numeric": "decimal(10,0)",
    "real": "double", "double precision": "double", "character varying": "varchar", "character": "char",
    "decimal": "decimal(10,0)", "dec": "decimal(10,0)",
}
# Display widths the catalog shows and the type does not depend on (YEAR has only 4 since MySQL 5.7.5).
_MYSQL_INT_WIDTH = re.compile(r"^(tinyint|smallint|mediumint|int|bigint|year)\(\d+\)")
_MYSQL_FLOAT_BITS = re.compile(r"^float\((\d+)\)(.*)$")
_SPACES = re.compile(r"\s+")
_PG_TYPE = re.compile(r"^([a-z_][a-z0-9_ .]*?)(\([^)]*\))?((?: with| without) time zone)?((?:\[\d*\])*)$")
_QUOTED = re.compile(r"('(?:[^']|'')*')")


# An index key part's order, after its column or expression: [ASC|DESC] [NULLS FIRST|LAST].
_KEY_ORDER = re.compile(r"^(.*?)(?:\s+(ASC|DESC))?(?:\s+NULLS\s+(FIRST|LAST))?\s*$", re.IGNORECASE | re.DOTALL)


def index_key(text: str, descending: bool = False, nulls_first: bool | None = None) -> str:
    """An index key part as every source writes it: the column (or expression), `` DESC`` when
    descending, then ``NULLS FIRST``/``NULLS LAST`` only where it is not the default for the
    direction (PostgreSQL's: last ascending, first descending). Ascending keys stay bare, so the
    snapshots of indexes without an order are what they were."""
    part = text + " DESC" if descending else text
    if nulls_first is not None and nulls_first != descending:
        part += " NULLS FIRST" if nulls_first else " NULLS LAST"
    return part


def split_index_key(text: str) -> tuple[str, bool, bool | None]:
    """An index key part's column or expression, whether it is descending, and where its NULLs go
    (None: the default for the direction): the inverse of :func:`index_key`."""
    m = _KEY_ORDER.match(text)
    if m is None or (m.group(2) is None and m.group(3) is None):
        return text, False, None
    descending = (m.group(2) or "").upper() == "DESC"
    nulls_first = None if m.group(3) is None else m.group(3).upper() == "FIRST"
    return m.group(1), descending, None if nulls_first == descending else nulls_first


def _lower_outside_quotes(text: str) -> str:
    return "".join(part if part.startswith("'") else part.lower() for part in _QUOTED.split(text))


@functools.lru_cache(maxsize=4096)
def normalize_type(engine: str, raw: str) -> str:
    """One spelling per type, so ``int4``/``INTEGER``/``serial`` or ``int(11)``/``INTEGER`` meet."""
    text = _lower_outside_quotes(_SPACES.sub(" ", raw.strip()))
    text = re.sub(r"\s*,\s*", ",", text)
    text = re.sub(r"\s*\(\s*", "(", text).replace(" )", ")")
    family = engine_family(engine)
    if family == "postgresql":
        m = _PG_TYPE.match(text.replace('"', ""))
        if not m:
            return text
        base, params, zone, array = m.group(1).strip(), m.group(2) or "", m.group(3) or "", m.group(4) or ""
        if base in ("timestamptz", "timetz"):
            base, zone = base[:-2], " with time zone"
        if base in ("timestamp", "time") and not zone:
            zone = " without time zone"
        if base == "float" and params:
            digits = params[1:-1]
            if digits.isdigit():
                base, params = ("real" if int(digits) <= 24 else "double precision"), ""
        # PostgreSQL keeps no array dimensions or sizes: INTEGER[][] and INTEGER[3] are integer[].
        return f"{_PG_ALIASES.get(base, base)}{params}{zone}{'[]' if array else ''}"
    if family == "mysql":
        text = text.replace("`", "")
        if text in ("tinyint(1)", "bool", "boolean"):
            return "tinyint(1)"
        text = _MYSQL_INT_WIDTH.sub(r"\1", text)
        bits = _MYSQL_FLOAT_BITS.match(text)
        if bits:  # FLOAT(p) is a FLOAT up to 24 bits of precision, a DOUBLE above: the catalog says which
            text = ("float" if int(bits.group(1)) <= 24 else "double") + bits.group(2)
        base, paren, rest = text.partition("(")
        if base in _MYSQL_ALIASES and not paren:
            return _MYSQL_ALIASES[base]
        if base in ("numeric", "dec"):
            base = "decimal"
        if base.startswith("integer"):
            base = "int" + base[len("integer"):]
        if base == "decimal" and paren and "," not in rest:
            rest = rest.rstrip(")") + ",0)"
        if base in _MYSQL_ALIASES and base not in ("decimal",) and paren:
            base = _MYSQL_ALIASES[base]
        return f"{base}{paren}{rest}"
    return text  # SQLite keeps the declared type


def engine_family(engine: str) -> str:
    return "mysql" if engine in ("mysql", "mariadb") else engine


_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
# A literal with a PostgreSQL cast to a plain type name: 'x'::character varying, '0'::numeric(10,2).
_CAST_LITERAL = re.compile(r"^('(?:[^']|'')*'|[+-]?[\d.]+)::[a-z_][a-z0-9_ ]*(\([\d, ]*\))?(\[\])*$",
                           re.IGNORECASE)
_FAST_NOW = {"now()", "current_timestamp", "current_timestamp()", "localtimestamp", "transaction_timestamp()"}


def _quick(text: str) -> str | None:
    """The normal form of the common easy cases, without sqlglot; None when the case is not easy."""
    value = text.strip()
    while value.startswith("(") and value.endswith(")") and _balanced(value[1:-1]):
        value = value[1:-1].strip()
    low = value.lower()
    if low in _FAST_NOW:
        return "CURRENT_TIMESTAMP"
    if low in ("true", "false"):
        return "1" if low == "true" else "0"
    if low == "null":
        return "NULL"
    if _NUMBER.match(value):
        return _number(value)
    if len(value) >= 2 and value[0] == "'" and value[-1] == "'" and "'" not in value[1:-1].replace("''", ""):
        inner = value[1:-1]
        return _number(inner) if _NUMBER.match(inner) else value
    cast = _CAST_LITERAL.match(value)
    if cast:  # casts are dropped, as sqlglot's path does: the literal decides
        return _quick(cast.group(1))
    return None


# PostgreSQL interval units: (months, days, microseconds) per unit.
_INTERVAL_UNITS: dict[str, tuple[int, int, int]] = {}
for _names, _value in (
        (("microsecond", "microseconds", "us", "usec", "usecs"), (0, 0, 1)),
        (("millisecond", "milliseconds", "ms", "msec", "msecs"), (0, 0, 1000)),
        (("second", "seconds", "sec", "secs", "s"), (0, 0, 1_000_000)),
        (("minute", "minutes", "min", "mins", "m"), (0, 0, 60_000_000)),
        (("hour", "hours", "hr", "hrs", "h"), (0, 0, 3_600_000_000)),
        (("day", "days", "d"), (0, 1, 0)),
        (("week", "weeks", "w"), (0, 7, 0)),
        (("month", "months", "mon", "mons"), (1, 0, 0)),
        (("year", "years", "yr", "yrs", "y"), (12, 0, 0))):
    for _name in _names:
        _INTERVAL_UNITS[_name] = _value
_INTERVAL_PART = re.compile(r"([+-]?\d+(?:\.\d*)?)\s*([a-z]+)|([+-]?)(\d+):(\d+)(?::(\d+(?:\.\d*)?))?|([+-]?\d+(?:\.\d*)?)")


def interval_value(text: str | None) -> tuple[int, int, int] | None:
    """A PostgreSQL interval literal as (months, days, microseconds), the three fields the server keeps:
    ``'0'`` and ``'00:00:00'::interval`` are both (0, 0, 0), ``'1 day 02:00:00'`` is (0, 1, 7200000000).
    The forms the server writes and the usual ones written in models: unit pairs, ``[H]H:MM[:SS.f]``, a
    bare number of seconds. None for anything else (ISO 8601, ``ago``, a cast to another type)."""
    quick = _quick(text) if text is not None else None
    if quick is None:
        return None
    if len(quick) >= 2 and quick[0] == "'" and quick[-1] == "'":
        quick = quick[1:-1]
    body = quick.strip().lower()
    if not body:
        return None
    months = days = micros = 0
    position = 0
    for match in _INTERVAL_PART.finditer(body):
        if body[position:match.start()].strip():
            return None
        position = match.end()
        number, unit, sign, hours, minutes, seconds, bare = match.groups()
        if unit is not None:
            if unit not in _INTERVAL_UNITS:
                return None
            value = decimal.Decimal(number)
            unit_months, unit_days, unit_micros = _INTERVAL_UNITS[unit]
            whole = int(value)
            fraction = value - whole
            months += whole * unit_months
            days += whole * unit_days
            micros += int(value * unit_micros)
            # As the server spreads a fraction: of a month over 30 days, of a day over 24 hours.
            spread_days = fraction * unit_months * 30
            days += int(spread_days)
            micros += int((spread_days - int(spread_days) + fraction * unit_days) * 86_400_000_000)
        elif hours is not None:
            clock = (int(hours) * 3600 + int(minutes) * 60) * 1_000_000
            clock += int(decimal.Decimal(seconds or "0") * 1_000_000)
            micros += -clock if sign == "-" else clock
        else:
            micros += int(decimal.Decimal(bare) * 1_000_000)
    if body[position:].strip():
        return None
    return months, days, micros


def _same_default(engine: str, type_text: str, a: str | None, b: str | None) -> bool:
    """Two column defaults alike (:func:`same_expression`), or, on PostgreSQL, the same value of the
    column's type written two ways: the server keeps an interval ``'0'`` as ``'00:00:00'::interval``,
    a boolean ``'false'`` as ``false``, and a jsonb literal as jsonb prints it (keys reordered)."""
    if same_expression(engine, a, b):
        return True
    if engine != "postgresql":
        return False
    if type_text.startswith("interval"):
        value = interval_value(a)
        return value is not None and value == interval_value(b)
    if type_text == "boolean":
        flag = _pg_boolean(a)
        return flag is not None and flag == _pg_boolean(b)
    if type_text == "jsonb":
        document = _json_literal(a)
        return document is not None and document == _json_literal(b)
    return False


# The spellings a PostgreSQL boolean takes as input (boolin), lower case, after _quick.
_PG_BOOLEAN_INPUT = {"'t'": "1", "'true'": "1", "'y'": "1", "'yes'": "1", "'on'": "1", "1": "1", "'1'": "1",
                     "'f'": "0", "'false'": "0", "'n'": "0", "'no'": "0", "'off'": "0", "0": "0", "'0'": "0"}


def _pg_boolean(text: str | None) -> str | None:
    quick = _quick(text) if text is not None else None
    return None if quick is None else _PG_BOOLEAN_INPUT.get(quick.strip().lower())


def _json_literal(text: str | None) -> str | None:
    """A string literal's JSON document in one spelling (keys sorted, no spaces), None if it is none."""
    quick = _quick(text) if text is not None else None
    if quick is None or len(quick) < 2 or quick[0] != "'" or quick[-1] != "'":
        return None
    try:
        return json.dumps(json.loads(quick[1:-1].replace("''", "'")), sort_keys=True, separators=(",", ":"))
    except ValueError:
        return None


def _balanced(text: str) -> bool:
    depth = 0
    quoted = False
    for ch in text:
        if ch == "'":
            quoted = not quoted
        elif not quoted:
            if ch == "(":
                depth += 1
            elif ch == ")":
                depth -= 1
                if depth < 0:
                    return False
    return depth == 0 and not quoted


def _number(text: str) -> str:
    try:
        value = decimal.Decimal(text)
    except decimal.InvalidOperation:
        return text
    if value == value.to_integral_value():
        return str(value.quantize(decimal.Decimal(1)))
    return format(value.normalize(), "f")


_SQLGLOT_DIALECT = {"postgresql": "postgres", "mysql": "mysql", "mariadb": "mysql", "sqlite": "sqlite"}


def pg_text_array(text: str) -> str | None:
    """A one-dimensional PostgreSQL array literal (``'{a, b}'``, the path of ``#>>``) as the server writes
    it back (``{a,b}``): whitespace around unquoted elements dropped, quotes only where array_out puts
    them. None when ``text`` is not such a literal."""
    body = text.strip()
    if len(body) < 2 or body[0] != "{" or body[-1] != "}":
        return None
    body = body[1:-1]
    if not body.strip():
        return "{}"
    elements: list[str] = []
    i, n = 0, len(body)
    while True:
        while i < n and body[i].isspace():
            i += 1
        if i < n and body[i] == '"':
            i += 1
            chars = []
            while i < n and body[i] != '"':
                if body[i] == "\\" and i + 1 < n:
                    i += 1
                chars.append(body[i])
                i += 1
            if i >= n:
                return None
            i += 1
            elements.append("".join(chars))
            while i < n and body[i].isspace():
                i += 1
        else:
            start = i
            while i < n and body[i] != ",":
                if body[i] in '{}"\\':
                    return None  # nested or escaped: left as written
                i += 1
            element = body[start:i].strip()
            if not element or element.upper() == "NULL":
                return None  # NULL elements are not a path's; compared as written
            elements.append(element)
        if i >= n:
            break
        if body[i] != ",":
            return None
        i += 1

    def out(element: str) -> str:
        if element == "" or element.upper() == "NULL" or any(c in element for c in '{},"\\') \
                or any(c.isspace() for c in element):
            return '"' + element.replace("\\", "\\\\").replace('"', '\\"') + '"'
        return element

    return "{" + ",".join(out(e) for e in elements) + "}"


@functools.lru_cache(maxsize=8192)
def normalize_expression(engine: str, text: str | None, unqualified: bool = False) -> str | None:
    """A normal form of a default or an expression: casts and parentheses dropped, ``now()`` and
    ``CURRENT_TIMESTAMP`` alike, ``true`` is ``1``, ``'0'``/``0.0000`` are ``0``, ``x = ANY (ARRAY[..])``
    is ``x IN (..)``. Parsed with sqlglot, imported on first use only.

    ``unqualified``: columns lose their table (``orders.status`` is ``status``), for the expressions
    of one table (checks, index keys and predicates), where a qualifier can only name that table:
    SQLAlchemy writes one where the server keeps none."""
    if text is None:
        return None
    quick = _quick(text)
    if quick is not None:
        return quick
    import sqlglot
    from sqlglot import exp

    try:
        tree = sqlglot.parse_one(text, read=_SQLGLOT_DIALECT.get(engine, engine))
    except Exception:  # noqa: BLE001 - an unparsable expression is compared as plain text
        return _SPACES.sub(" ", text.strip()).lower()

    json_operators: tuple[type, ...] = (exp.JSONExtract, exp.JSONExtractScalar, exp.JSONBExtract,
                                         exp.JSONBExtractScalar) if engine == "postgresql" else ()

    def simplify(node: exp.Expression) -> exp.Expression:
        if isinstance(node, (exp.Cast, exp.Paren)):
            inner: exp.Expression = node.this
            return inner
        if isinstance(node, exp.Boolean):
            return exp.Literal.number(1 if node.this else 0)
        if isinstance(node, exp.Literal):
            if _NUMBER.match(str(node.this)):
                return exp.Literal.number(_number(str(node.this)))
            return node
        if isinstance(node, exp.Identifier):
            return exp.Identifier(this=str(node.this).lower(), quoted=False)
        if unqualified and isinstance(node, exp.Column) and node.args.get("table") is not None:
            return exp.Column(this=node.this)
        if isinstance(node, (exp.EQ, exp.NEQ)) and isinstance(node.expression, exp.Any):
            inner = node.expression.this
            while isinstance(inner, (exp.Paren, exp.Cast)):
                inner = inner.this
            if isinstance(inner, exp.Array):
                result: exp.Expression = exp.In(this=node.this, expressions=list(inner.expressions))
                return exp.Not(this=result) if isinstance(node, exp.NEQ) else result
        if isinstance(node, exp.Anonymous) and str(node.this).lower() == "now" and not node.expressions:
            return exp.CurrentTimestamp()
        if json_operators and isinstance(node, json_operators):
            operand: exp.Expression = _pg_json_operand(node)
            return operand
        return node

    previous = None
    # Transforming can expose new casts and parentheses (a cast around a parenthesis), so repeat.
    for _ in range(5):
        tree = tree.transform(simplify)
        rendered = tree.sql()
        if rendered == previous:
            break
        previous = rendered
    return tree.sql()


def _pg_json_operand(node: Any) -> Any:
    """``->``, ``->>``, ``#>``, ``#>>`` with their right operand in one form. sqlglot reads
    ``doc ->> 'id'`` as a JSON path (``$.id``) but ``doc ->> 'id'::text``, as the server writes it
    back, as a string; and the server writes an array path ``'{a, b}'`` as ``'{a,b}'``."""
    from sqlglot import exp

    operand = node.expression
    replacement: exp.Expression | None = None
    if isinstance(operand, exp.JSONPath):
        parts = [p for p in operand.expressions if not isinstance(p, exp.JSONPathRoot)]
        if len(parts) == 1 and isinstance(parts[0], exp.JSONPathKey) and isinstance(parts[0].this, str):
            replacement = exp.Literal.string(parts[0].this)
        elif len(parts) == 1 and isinstance(parts[0], exp.JSONPathSubscript) and isinstance(parts[0].this, int):
            replacement = exp.Literal.number(parts[0].this)
    elif isinstance(operand, exp.Literal) and operand.is_string:
        array = pg_text_array(str(operand.this))
        if array is not None and array != operand.this:
            replacement = exp.Literal.string(array)
    if replacement is None:
        return node
    copy = node.copy()
    copy.set("expression", replacement)
    return copy


def same_expression(engine: str, a: str | None, b: str | None, unqualified: bool = False) -> bool:
    if a == b:
        return True
    if a is None or b is None:
        return False
    return normalize_expression(engine, a, unqualified) == normalize_expression(engine, b, unqualified)


def same_table_expression(engine: str, a: str | None, b: str | None) -> bool:
    """:func:`same_expression` for an expression of one table: a check, an index key or predicate."""
    return same_expression(engine, a, b, True)


# Diff -----------------------------------------------------------------------------------------


def _cols(items: Sequence[str]) -> str:
    return "(" + ", ".join(items) + ")"


def _same_columns(engine: str, a: Sequence[str], b: Sequence[str]) -> bool:
    return len(a) == len(b) and all(x == y or _same_key(engine, x, y) for x, y in zip(a, b))


def _same_key(engine: str, a: str, b: str) -> bool:
    # The order is compared apart: sqlglot reads "lower(title) DESC" as an alias named DESC.
    (ea, *order_a), (eb, *order_b) = split_index_key(a), split_index_key(b)
    return order_a == order_b and same_table_expression(engine, ea, eb)


def _match(
    expected: Sequence[Any], actual: Sequence[Any], same_signature: Any
) -> tuple[list[tuple[Any, Any]], list[Any], list[Any]]:
    """Pair named items by name; unnamed expected items (and leftovers) by signature."""
    pairs: list[tuple[Any, Any]] = []
    left = list(actual)
    missing = []
    by_name = {a.name: a for a in actual if a.name}
    pending = []
    for e in expected:
        a = by_name.get(e.name) if e.name else None
        if a is not None and a in left:
            pairs.append((e, a))
            left.remove(a)
        else:
            pending.append(e)
    for e in pending:
        found = next((a for a in left if same_signature(e, a)), None)
        if found is None:
            missing.append(e)
        else:
            pairs.append((e, found))
            left.remove(found)
    return pairs, missing, left


def _unique_text(u: Unique) -> str:
    return ("NULLS NOT DISTINCT " if u.nulls_not_distinct else "") + _cols(u.columns)


def _index_text(ix: Index) -> str:
    text = ("UNIQUE " if ix.unique else "") + ("NULLS NOT DISTINCT " if ix.nulls_not_distinct else "")
    text += _cols(ix.columns)
    if ix.method:
        text += f" USING {ix.method}"
    if ix.include:
        text += f" INCLUDE {_cols(ix.include)}"
    if ix.where:
        text += f" WHERE {ix.where}"
    return text


def _fk_text(fk: ForeignKey) -> str:
    text = f"{_cols(fk.columns)} -> {fk.ref_table}{_cols(fk.ref_columns)}"
    if fk.on_delete:
        text += f" ON DELETE {fk.on_delete}"
    if fk.on_update:
        text += f" ON UPDATE {fk.on_update}"
    return text


def _column_text(col: Column) -> str:
    return col.type + ("" if col.nullable else " NOT NULL")


def _enum_values(type_text: str) -> list[str] | None:
    if not type_text.startswith("enum("):
        return None
    return [v.replace("''", "'") for v in re.findall(r"'((?:[^']|'')*)'", type_text)]


# MySQL and MariaDB create BLOB(n) as the smallest BLOB type that holds n bytes and TEXT(n) as the
# smallest TEXT type that holds n characters of the column's character set (1 to 4 bytes each); the
# catalog shows that type and forgets n (BLOB(65536) is MEDIUMBLOB).
_MYSQL_SIZED_LOB = re.compile(r"^(blob|text)\((\d+)\)$")
_MYSQL_LOB_LIMITS = ((255, "tiny"), (65535, ""), (16777215, "medium"))


def _mysql_lob(kind: str, size: int) -> str:
    return next((prefix + kind for limit, prefix in _MYSQL_LOB_LIMITS if size <= limit), "long" + kind)


# MySQL/MariaDB key prefixes: only string columns take one, and one that covers the whole declared
# length of a CHAR/VARCHAR/BINARY/VARBINARY is the whole column (the catalog keeps no SUB_PART);
# MariaDB builds a prefix given on a DATETIME or an INT as the whole column too.
_MYSQL_SIZED_STRING = re.compile(r"^(?:var)?(?:char|binary)\((\d+)\)")
_MYSQL_PREFIXED = re.compile(r"^(?:(?:tiny|medium|long)?(?:text|blob)|(?:var)?(?:char|binary))\b")


def mysql_key_prefix(column_type: str, length: int | None) -> int | None:
    """The prefix length the catalog shows for a key part of a column of the normalised
    ``column_type`` declared with ``length`` (``mysql_length``): None where it is the whole column."""
    if not length or not _MYSQL_PREFIXED.match(column_type):
        return None
    sized = _MYSQL_SIZED_STRING.match(column_type)
    return None if sized and length >= int(sized.group(1)) else length


def same_type(engine: str, expected: str, actual: str) -> bool:
    """Whether a column of the normalised type ``expected`` can read as ``actual`` in the catalog."""
    if expected == actual:
        return True
    sized = _MYSQL_SIZED_LOB.match(expected) if engine_family(engine) == "mysql" else None
    if sized is None:
        return False
    kind, size = sized.group(1), int(sized.group(2))
    widths = (1,) if kind == "blob" else (1, 2, 3, 4)
    return actual in {_mysql_lob(kind, size * width) for width in widths}


def _diff_columns(engine: str, exp_t: Table, act_t: Table, compare_collation: bool) -> list[Drift]:
    out: list[Drift] = []
    t = exp_t.name
    # PostgreSQL's catalog names a column's collation only where it is not its type's default, which
    # only a COLLATE gives: one the models do not ask for is drift there too.
    compare_collation = compare_collation or engine == "postgresql"
    act_by = {c.name: c for c in act_t.columns}
    exp_by = {c.name: c for c in exp_t.columns}
    missing = [c for c in exp_t.columns if c.name not in act_by]
    extra = [c for c in act_t.columns if c.name not in exp_by]
    # A column that vanished while one of the very same shape appeared was renamed.
    for m in list(missing):
        twins = [x for x in extra if (x.type, x.nullable, x.default) == (m.type, m.nullable, m.default)]
        if len(twins) == 1:
            out.append(Drift("renamed_column", t, f"{t}.{m.name}", m.name, twins[0].name))
            missing.remove(m)
            extra.remove(twins[0])
    out += [Drift("missing_column", t, f"{t}.{c.name}", _column_text(c), None) for c in missing]
    out += [Drift("extra_column", t, f"{t}.{c.name}", None, _column_text(c), WARNING if c.nullable else ERROR)
            for c in extra]
    for e in exp_t.columns:
        a = act_by.get(e.name)
        if a is None:
            continue
        obj = f"{t}.{e.name}"
        if not same_type(engine, e.type, a.type):
            ev, av = _enum_values(e.type), _enum_values(a.type)
            if ev is not None and av is not None:
                out += [Drift("missing_enum_value", t, obj, v, None) for v in ev if v not in av]
                out += [Drift("extra_enum_value", t, obj, None, v, WARNING) for v in av if v not in ev]
                if set(ev) == set(av):
                    out.append(Drift("changed_enum_order", t, obj, e.type, a.type, WARNING))
            else:
                out.append(Drift("changed_column_type", t, obj, e.type, a.type))
        if e.nullable != a.nullable:
            out.append(Drift("changed_column_nullable", t, obj, "NULL" if e.nullable else "NOT NULL",
                             "NULL" if a.nullable else "NOT NULL"))
        if e.autoincrement != a.autoincrement:
            out.append(Drift("changed_column_autoincrement", t, obj, str(e.autoincrement).lower(),
                             str(a.autoincrement).lower()))
        elif not e.autoincrement and not _same_default(engine, e.type, e.default, a.default):
            out.append(Drift("changed_column_default", t, obj, e.default, a.default, WARNING))
        if not same_expression(engine, e.generated, a.generated):
            out.append(Drift("changed_column_generated", t, obj, e.generated, a.generated))
        if not same_expression(engine, e.on_update, a.on_update):
            out.append(Drift("changed_column_on_update", t, obj, e.on_update, a.on_update))
        if e.identity != a.identity:
            out.append(Drift("changed_column_identity", t, obj, e.identity, a.identity))
        if e.collation != a.collation and (compare_collation or (e.collation and a.collation)):
            out.append(Drift("changed_column_collation", t, obj, e.collation, a.collation, WARNING))
        if (e.comment or None) != (a.comment or None):
            out.append(Drift("changed_column_comment", t, obj, e.comment, a.comment, WARNING))
    return out


def _diff_table(engine: str, e: Table, a: Table, from_catalog: bool) -> list[Drift]:
    t = e.name
    out = _diff_columns(engine, e, a, from_catalog)
    if e.primary_key != a.primary_key:
        out.append(Drift("changed_primary_key", t, f"{t}.primary_key", _cols(e.primary_key), _cols(a.primary_key)))
    if (e.comment or None) != (a.comment or None):
        out.append(Drift("changed_table_comment", t, t, e.comment, a.comment, WARNING))

    # Unique constraints.
    pairs, missing, extra = _match(e.uniques, a.uniques, lambda x, y: x.columns == y.columns)
    out += [Drift("missing_unique", t, f"{t}.{u.name or _cols(u.columns)}", _cols(u.columns), None) for u in missing]
    out += [Drift("extra_unique", t, f"{t}.{u.name or _cols(u.columns)}", None, _cols(u.columns), WARNING)
            for u in extra]
    for x, y in pairs:
        if x.columns != y.columns or x.nulls_not_distinct != y.nulls_not_distinct:
            out.append(Drift("changed_unique", t, f"{t}.{x.name}", _unique_text(x), _unique_text(y)))

    # Indexes: by name, unnamed ones by their columns.
    def index_sig(x: Index, y: Index) -> bool:
        return _same_columns(engine, x.columns, y.columns) and x.unique == y.unique

    pairs, missing, extra = _match(e.indexes, a.indexes, index_sig)
    out += [Drift("missing_index", t, f"{t}.{i.name or _cols(i.columns)}", _index_text(i), None) for i in missing]
    out += [Drift("extra_index", t, f"{t}.{i.name or _cols(i.columns)}", None, _index_text(i), WARNING)
            for i in extra]
    for x, y in pairs:
        obj = f"{t}.{x.name or y.name}"
        if x.name and y.name and x.name != y.name:
            # Paired by what it indexes, under another name: a later drop_index("x") would fail.
            out.append(Drift("renamed_index", t, f"{t}.{x.name}", x.name, y.name))
        if x.unique != y.unique:
            out.append(Drift("changed_index_unique", t, obj, _index_text(x), _index_text(y)))
        elif (not _same_columns(engine, x.columns, y.columns) or x.method != y.method
              or not same_table_expression(engine, x.where, y.where) or x.include != y.include
              or x.nulls_not_distinct != y.nulls_not_distinct):
            out.append(Drift("changed_index", t, obj, _index_text(x), _index_text(y)))

    # Check constraints: by name when both are named, else by their expression.
    def check_sig(x: Check, y: Check) -> bool:
        return same_table_expression(engine, x.expression, y.expression)

    exp_checks = e.checks if from_catalog else tuple(dataclasses.replace(c, name=None) for c in e.checks)
    pairs, missing, extra = _match(exp_checks, a.checks, check_sig)
    out += [Drift("missing_check", t, f"{t}.{c.name or 'check'}", c.expression, None) for c in missing]
    out += [Drift("extra_check", t, f"{t}.{c.name or 'check'}", None, c.expression, WARNING) for c in extra]
    for x, y in pairs:
        if not check_sig(x, y):
            out.append(Drift("changed_check", t, f"{t}.{x.name}", x.expression, y.expression))

    # Foreign keys: by what they link; names differ between engines' defaults.
    def fk_sig(x: ForeignKey, y: ForeignKey) -> bool:
        return (x.columns, x.ref_table, x.ref_columns) == (y.columns, y.ref_table, y.ref_columns)

    exp_fks = tuple(dataclasses.replace(f, name=None) for f in e.foreign_keys)
    act_fks = tuple(dataclasses.replace(f, name=None) for f in a.foreign_keys)
    names = {(f.columns, f.ref_table, f.ref_columns): f.name for f in (*e.foreign_keys, *a.foreign_keys)}
    pairs, missing, extra = _match(exp_fks, act_fks, fk_sig)

    def fk_obj(f: ForeignKey) -> str:
        return f"{t}.{names.get((f.columns, f.ref_table, f.ref_columns)) or 'fk' + _cols(f.columns)}"

    out += [Drift("missing_foreign_key", t, fk_obj(f), _fk_text(f), None) for f in missing]
    out += [Drift("extra_foreign_key", t, fk_obj(f), None, _fk_text(f), WARNING) for f in extra]
    for x, y in pairs:
        if (x.on_delete, x.on_update) != (y.on_delete, y.on_update):
            out.append(Drift("changed_foreign_key", t, fk_obj(x), _fk_text(x), _fk_text(y)))
    return out


@without_gc
def diff(expected: Schema, actual: Schema) -> list[Drift]:
    """What differs between what the schema should be and what it is, in a stable order."""
    engine = actual.engine
    from_catalog = expected.origin == "catalog"
    out: list[Drift] = []
    exp_tables = {t.name: t for t in expected.tables}
    act_tables = {t.name: t for t in actual.tables}
    for name in sorted(exp_tables.keys() - act_tables.keys()):
        out.append(Drift("missing_table", name, name, "table", None))
    for name in sorted(act_tables.keys() - exp_tables.keys()):
        out.append(Drift("extra_table", name, name, None, "table", WARNING))
    for name in sorted(exp_tables.keys() & act_tables.keys()):
        out += _diff_table(engine, exp_tables[name], act_tables[name], from_catalog)

    exp_enums, act_enums = dict(expected.enums), dict(actual.enums)
    for name in sorted(exp_enums.keys() - act_enums.keys()):
        out.append(Drift("missing_enum", None, f"enum {name}", ", ".join(exp_enums[name]), None))
    for name in sorted(act_enums.keys() - exp_enums.keys()):
        out.append(Drift("extra_enum", None, f"enum {name}", None, ", ".join(act_enums[name]), WARNING))
    for name in sorted(exp_enums.keys() & act_enums.keys()):
        ev, av = exp_enums[name], act_enums[name]
        out += [Drift("missing_enum_value", None, f"enum {name}", v, None) for v in ev if v not in av]
        out += [Drift("extra_enum_value", None, f"enum {name}", None, v, WARNING) for v in av if v not in ev]
        if set(ev) == set(av) and ev != av:
            out.append(Drift("changed_enum_order", None, f"enum {name}", ", ".join(ev), ", ".join(av), WARNING))

    if expected.views is not None and actual.views is not None:
        ev_, av_ = dict(expected.views), dict(actual.views)
        out += [Drift("missing_view", None, f"view {n}", "view", None) for n in sorted(ev_.keys() - av_.keys())]
        out += [Drift("extra_view", None, f"view {n}", None, "view", WARNING) for n in sorted(av_.keys() - ev_.keys())]
        for n in sorted(ev_.keys() & av_.keys()):
            if from_catalog and not same_expression(engine, ev_[n], av_[n]):
                out.append(Drift("changed_view", None, f"view {n}", ev_[n], av_[n], WARNING))
    if expected.sequences is not None and actual.sequences is not None:
        es, as_ = set(expected.sequences), set(actual.sequences)
        out += [Drift("missing_sequence", None, f"sequence {n}", "sequence", None) for n in sorted(es - as_)]
        out += [Drift("extra_sequence", None, f"sequence {n}", None, "sequence", WARNING) for n in sorted(as_ - es)]
    return out


# Models against a catalog document: tables whose comparison keys are equal are left out. A key
# holds everything diff() looks at, defaults in their sqlglot-free normal form (else raw), the
# names diff() ignores (foreign keys', checks' on the models side) left out; where diff() pairs
# items by name, unnamed or duplicate items give no key, and the table is compared in full.


@functools.lru_cache(maxsize=16384)
def _qk(text: str | None) -> str | None:
    # Memoised: a schema repeats a handful of defaults ('x', 0, true, now()) over thousands of columns.
    if text is None:
        return None
    quick = _quick(text)
    return text if quick is None else quick


def _items_key(named: list[tuple[Any, ...]]) -> tuple[Any, ...] | None:
    names = [item[0] for item in named]
    if None in names or len(set(names)) != len(names):
        return None
    return tuple(sorted(named))


def _fks_key(fks: list[tuple[Any, ...]]) -> tuple[Any, ...] | None:
    signatures = {fk[:3] for fk in fks}
    return tuple(sorted(fks)) if len(signatures) == len(fks) else None


def _table_key(columns: tuple[Any, ...], primary_key: tuple[str, ...], uniques: tuple[Any, ...] | None,
               checks: tuple[Any, ...], indexes: tuple[Any, ...] | None, fks: tuple[Any, ...] | None,
               comment: str | None) -> tuple[Any, ...] | None:
    if uniques is None or indexes is None or fks is None:
        return None
    return (columns, primary_key, uniques, checks, indexes, fks, comment or None)


def _model_key(t: Table) -> tuple[Any, ...] | None:
    return _table_key(
        tuple((c.name, c.type, c.nullable, _qk(c.default), c.autoincrement, c.collation, c.comment or None,
               _qk(c.generated), _qk(c.on_update), c.identity) for c in t.columns),
        tuple(t.primary_key),
        _items_key([(u.name, tuple(u.columns), u.nulls_not_distinct) for u in t.uniques]),
        tuple(sorted(_qk(c.expression) or "" for c in t.checks)),
        _items_key([(i.name, tuple(i.columns), i.unique, _qk(i.where), i.method, tuple(i.include), i.nulls_not_distinct)
                    for i in t.indexes]),
        _fks_key([(tuple(f.columns), f.ref_table, tuple(f.ref_columns), f.on_delete, f.on_update)
                  for f in t.foreign_keys]),
        t.comment,
    )


def _document_key(data: dict[str, Any]) -> tuple[Any, ...] | None:
    return _table_key(
        tuple((c["name"], c["type"], c.get("nullable", True), _qk(c.get("default")), c.get("autoincrement", False),
               c.get("collation"), c.get("comment") or None, _qk(c.get("generated")), _qk(c.get("on_update")),
               c.get("identity"))
              for c in data.get("columns", ())),
        tuple(data.get("primary_key", ())),
        _items_key([(u["name"], tuple(u["columns"]), u.get("nulls_not_distinct", False))
                    for u in data.get("uniques", ())]),
        tuple(sorted(_qk(c["expression"]) or "" for c in data.get("checks", ()))),
        _items_key([(i["name"], tuple(i["columns"]), i.get("unique", False), _qk(i.get("where")), i.get("method"),
                     tuple(i.get("include", ())), i.get("nulls_not_distinct", False))
                    for i in data.get("indexes", ())]),
        _fks_key([(tuple(f["columns"]), f["ref_table"], tuple(f["ref_columns"]), f.get("on_delete"),
                   f.get("on_update")) for f in data.get("foreign_keys", ())]),
        data.get("comment"),
    )


def _digest(key: tuple[Any, ...] | None) -> bytes | None:
    # A table's key as 16 bytes that cross a pipe: equal keys give equal digests. marshal format 2
    # writes no back-references, so its bytes depend on the values only. Keys equal only by
    # Python's rules (1 == True) digest apart, which costs a full comparison, never a miss.
    if key is None:
        return None
    try:
        data = marshal.dumps(key, 2)
    except ValueError:  # a str subclass (SQLAlchemy's quoted_name) somewhere: plain values, same bytes
        data = marshal.dumps(_plain(key), 2)
    return hashlib.blake2b(data, digest_size=16).digest()


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return tuple(_plain(v) for v in value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return int(value)
    return value


def model_table_digest(t: Table) -> bytes | None:
    """A models table's digest, equal to :func:`document_table_digest` of the same table read from
    a catalog; None when the table can only be compared in full."""
    return _digest(_model_key(t))


def parts_digest(name: str, columns: Sequence[tuple[Any, ...]], primary_key: tuple[str, ...],
                 uniques: Sequence[tuple[Any, ...]], checks: Sequence[tuple[Any, ...]],
                 indexes: Sequence[tuple[Any, ...]], fks: Sequence[tuple[Any, ...]], comment: str | None) -> bytes | None:
    """:func:`model_table_digest` of the Table these tuples (in the fields' order of Column,
    Unique, Check, Index and ForeignKey) would build, without building it."""
    return _digest(_table_key(
        tuple((c[0], c[1], c[2], _qk(c[3]), c[4], c[5], c[6] or None, _qk(c[7]), _qk(c[8]), c[9]) for c in columns),
        primary_key,
        _items_key([(u[0], u[1], u[2]) for u in uniques]),
        tuple(sorted(_qk(c[1]) or "" for c in checks)),
        _items_key([(i[0], i[1], i[2], _qk(i[3]), i[4], i[5], i[6]) for i in indexes]),
        _fks_key([f[1:] for f in fks]),
        comment,
    ))


def document_table_digest(data: dict[str, Any]) -> bytes | None:
    return _digest(_document_key(data))


def differing_tables(expected: dict[str, bytes | None], actual: dict[str, bytes | None]) -> set[str]:
    """The tables to compare in full: on one side only, or without equal digests."""
    differing = expected.keys() ^ actual.keys()
    differing.update(name for name, digest in expected.items()
                     if name in actual and (digest is None or actual[name] != digest))
    return differing


@without_gc
def diff_models(expected: Schema, actual: dict[str, Any]) -> list[Drift]:
    """:func:`diff` of a models schema and a catalog document, the same drifts in the same order.
    Tables whose keys are equal have nothing to report: only the others become objects and are
    compared (most tables, when nothing drifted)."""
    if expected.origin != "models":
        return diff(expected, from_dict(actual))
    act_tables = actual["tables"]
    differing = act_tables.keys() - {t.name for t in expected.tables}
    for t in expected.tables:
        data = act_tables.get(t.name)
        key = None if data is None else _model_key(t)
        if key is None or key != _document_key(data):
            differing.add(t.name)
    reduced = dataclasses.replace(expected, tables=tuple(t for t in expected.tables if t.name in differing))
    return diff(reduced, from_dict(actual, differing))


def ignored(drift: Drift, patterns: Iterable[str]) -> bool:
    """Whether a drift concerns an object matched by one of ``patterns`` (fnmatch on the table,
    the dotted object, or the bare name of an enum/view/sequence)."""
    bare = drift.object.split(" ", 1)[-1]
    candidates = [c for c in (drift.table, drift.object, bare) if c]
    return any(fnmatch.fnmatchcase(c, p) for p in patterns for c in candidates)


def filter_drift(drifts: Iterable[Drift], patterns: Sequence[str]) -> list[Drift]:
    return [d for d in drifts if not ignored(d, patterns)] if patterns else list(drifts)
