"""Where "expected" comes from: env.py's target_metadata, migrations replayed in a scratch
database, or a snapshot file. Each gives a :class:`dbguard.core.schema.Schema` for the live engine.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import secrets
import signal
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from dbguard.core.schema import (
    Check,
    Column,
    ForeignKey,
    Index,
    Schema,
    Table,
    Unique,
    canonical,
    draws_from_sequence,
    excluded,
    gc_paused,
    index_key,
    mysql_key_prefix,
    normalize_type,
    parts_digest,
    split_index_key,
    without_gc,
)
from dbguard.dialects import Dialect, for_sqlalchemy_dialect, scratch_server_of, session_control_of
from dbguard.drift.env_filters import EnvFilters
from dbguard.errors import ConfigError, DbguardError
from dbguard.migrations import internals

SCRATCH_PREFIX = "dbguard_shadow_"


# Models ---------------------------------------------------------------------------------------


class NoTargetMetadata(ConfigError):
    """env.py gives no models to compare with (the stock template's ``target_metadata = None``)."""


def read_target_metadata(config: Any, script: Any) -> list[Any]:
    """env.py's ``target_metadata`` (a list of MetaData), read by running env.py with a work
    function that only looks at the context's options: no migration runs, nothing is written."""
    return read_env_models(config, script)[0]


def read_env_models(config: Any, script: Any) -> tuple[list[Any], Any | None, EnvFilters | None]:
    """:func:`read_target_metadata`, the SQLAlchemy dialect of the connection env.py opened (None
    when it opened none: initialised by the server it connected to), and env.py's include_name and
    include_object hooks. The revision files are imported first, as ``alembic check`` loads its
    revision map before it compares: models that only the revisions import are then in the metadata."""
    from alembic.runtime.environment import EnvironmentContext

    found: list[Any] = []
    dialects: list[Any] = []
    filters: list[EnvFilters | None] = []

    def fn(rev: Any, context: Any) -> list[Any]:
        internals.import_revision_modules(script)
        found.append(context.opts.get("target_metadata"))
        filters.append(EnvFilters.of(context.opts))
        if context.connection is not None:
            dialects.append(context.connection.dialect)
        return []

    try:
        # Importing thousands of models builds a big heap that lives as long as the process: no
        # full collections while it grows, and frozen once built.
        with gc_paused(freeze=True), EnvironmentContext(config, script, fn=fn, dont_mutate=True):
            script.run_env()
    except DbguardError:
        raise
    except Exception as exc:  # noqa: BLE001 - env.py is user code: one line, exit 2
        # The driver's error, first line, without SQLAlchemy's wrapping and link.
        from dbguard.db.connect import first_line

        raise ConfigError(f"env.py failed while reading target_metadata: "
                          f"{type(getattr(exc, 'orig', None) or exc).__name__}: {first_line(exc)}") from None
    return metadata_list(found[0] if found else None), (dialects[0] if dialects else None), \
        (filters[0] if filters else None)


def metadata_list(meta: Any) -> list[Any]:
    """env.py's ``target_metadata`` (a MetaData, or a list of them) as a list. Anything else in it
    (a class that owns a MetaData, a Table) is env.py's mistake, named in one line: ``alembic check``
    fails on it too, and comparing with only the rest would report that part's tables as extra."""
    if meta is None:
        raise NoTargetMetadata("env.py passes no target_metadata to context.configure(): nothing to compare "
                               "with; use --against migrations or a snapshot file")
    many = isinstance(meta, (list, tuple))
    items = list(meta) if many else [meta]
    for position, item in enumerate(items, 1):
        if not isinstance(item, sa.MetaData):
            what = (f"the class {item.__module__}.{item.__qualname__}" if isinstance(item, type)
                    else f"a {type(item).__module__}.{type(item).__qualname__}")
            where = f"item {position} of env.py's target_metadata" if many else "env.py's target_metadata"
            raise ConfigError(f"{where} is {what}, not a sqlalchemy MetaData: nothing to compare with (alembic "
                              "check fails on it too); pass the MetaData, or use --against migrations")
    return items


def _constraint_name(constraint: Any, sa_dialect: Any = None, limit: int | None = None) -> str | None:
    """The name ``create_all`` gives ``constraint`` (an index too); with ``sa_dialect``, a naming
    convention's name cut to the engine's limit (``limit``: its :func:`_name_limit`, when known) as
    SQLAlchemy cuts it."""
    name = constraint.name
    if limit is not None and isinstance(name, str) and len(name) <= limit:
        return str(name)  # the common case: a given name that fits
    if internals.unnamed(name):
        table = getattr(constraint, "table", None)
        if table is None:
            return None
        try:
            name = internals.convention_name(constraint, table)
        except Exception:  # noqa: BLE001 - a convention that cannot be applied leaves the name to the server
            return None
        if internals.unnamed(name):
            return None
    if sa_dialect is not None and len(name) > (_name_limit(sa_dialect) if limit is None else limit):
        return internals.ddl_name(name, sa_dialect, isinstance(constraint, sa.Index))
    return str(name)


def _name_limit(sa_dialect: Any) -> int:
    return min(sa_dialect.max_identifier_length, sa_dialect.max_index_name_length or 1 << 16,
               sa_dialect.max_constraint_name_length or 1 << 16)


def _without_unnamed_repeats(items: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """``(name, *definition)`` tuples without repeats: the same item twice, or an unnamed one whose
    definition another item has."""
    named = {item[1:] for item in items if item[0] is not None}
    kept: list[tuple[Any, ...]] = []
    kept_definitions: set[tuple[Any, ...]] = set()
    for item in items:
        definition = item[1:]
        if item in kept or (item[0] is None and (definition in named or definition in kept_definitions)):
            continue
        kept_definitions.add(definition)
        kept.append(item)
    return kept


def _compile(element: Any, sa_dialect: Any) -> str:
    return str(element.compile(dialect=sa_dialect, compile_kwargs={"literal_binds": True}))


def _ddl_compile(element: Any, sa_dialect: Any) -> str:
    """An expression of one table as CREATE TABLE/INDEX write it (a check, an index key or
    predicate, a computed column): its columns without their table, which the server would drop."""
    return str(element.compile(dialect=sa_dialect, compile_kwargs={"literal_binds": True, "include_table": False}))


# A column type's own collation (and MySQL character set) as SQLAlchemy writes them after the type:
# the catalog keeps the collation apart from the type.
_TYPE_COLLATION = re.compile(r'^(.*?)(?:\s+CHARACTER SET\s+\w+)?(?:\s+COLLATE\s+("(?:[^"]|"")*"|`[^`]*`|\w+))?$',
                             re.DOTALL)


def _split_collation(type_text: str) -> tuple[str, str | None]:
    if " COLLATE " not in type_text and " CHARACTER SET " not in type_text:
        return type_text, None
    m = _TYPE_COLLATION.match(type_text)
    if m is None:
        return type_text, None
    collation = m.group(2)
    if collation and collation[0] in '"`':
        collation = collation[1:-1].replace('""', '"')
    return m.group(1), collation


_ORDER_MODIFIERS = {sa.sql.operators.desc_op: "desc", sa.sql.operators.asc_op: "asc",
                    sa.sql.operators.nulls_first_op: "first", sa.sql.operators.nulls_last_op: "last"}


_CONSTANTS = (sa.sql.elements.True_, sa.sql.elements.False_, sa.sql.elements.Null)
_PLAIN_FUNCTIONS = (sa.sql.functions.AnsiFunction, sa.sql.functions.now)


def _compile_cached(element: Any, sa_dialect: Any, cache: dict[Any, str]) -> str:
    """:func:`_compile`, once per distinct expression: thousands of columns share a handful of
    defaults (``func.now()``, ``true()``). Keyed by SQLAlchemy's cache key (the statement's shape)
    plus the literal values it binds; an element without a cache key is compiled every time."""
    if isinstance(element, _CONSTANTS) or (isinstance(element, _PLAIN_FUNCTIONS) and not element.clauses.clauses):
        # true(), false(), null(), now(), current_timestamp(), func.name(): alike by class, name and
        # package. SQLAlchemy's cache key, built on first use, costs more than the rest of a column's
        # conversion. Other functions (a sequence's next_value()) carry more state: the cache key.
        plain: Any = (type(element), getattr(element, "name", None), tuple(getattr(element, "packagenames", ())))
        text = cache.get(plain)
        if text is None:
            text = cache[plain] = _compile(element, sa_dialect)
        return text
    try:
        key = internals.cache_key(element)
    except Exception:  # noqa: BLE001 - not cacheable: compile it
        key = None
    if key is None:
        return _compile(element, sa_dialect)
    full = (key.key, tuple((type(b.effective_value), repr(b.effective_value)) for b in key.bindparams))
    text = cache.get(full)
    if text is None:
        text = cache[full] = _compile(element, sa_dialect)
    return text


def _type_text(type_: Any, sa_dialect: Any, cache: dict[Any, str] | None = None) -> str:
    """The type as this dialect's DDL spells it. With ``cache``: once per distinct type, keyed by
    its class and its whole state (the same class and state compile alike; state that does not
    repr stably only costs a cache miss)."""
    key: tuple[Any, ...] | None = None
    if cache is not None:
        state = vars(type_)
        if "dispatch" in state:
            # A Boolean's or Enum's event dispatcher: one per instance, never in the DDL.
            state = {name: value for name, value in state.items() if name != "dispatch"}
        try:
            # Plain values (lengths, flags, names): hashed as they are, with their types.
            key = (type(type_), tuple(state.items()), tuple(map(type, state.values())))
            text = cache.get(key)
        except TypeError:  # a list or a dict in the state (Enum): its repr, sorted
            try:
                key = (type(type_), repr(sorted(state.items())))
                text = cache.get(key)
            except Exception:  # noqa: BLE001 - no usable key: compile it
                key, text = None, None
        if text is not None:
            return text
    try:
        text = type_.compile(dialect=sa_dialect)
    except Exception:  # noqa: BLE001 - a type this dialect cannot render: its generic name
        text = str(type_)
    if cache is not None and key is not None:  # key is only ever set with a cache
        cache[key] = text
    return text


def _default_text(column: Any, sa_dialect: Any, cache: dict[Any, str] | None = None) -> str | None:
    default = column.server_default
    if default is None:
        return None
    arg = getattr(default, "arg", None)
    if arg is None:
        return None
    if isinstance(arg, str):
        return "'" + arg.replace("'", "''") + "'"
    if isinstance(arg, sa.TextClause):
        return arg.text
    return _compile(arg, sa_dialect) if cache is None else _compile_cached(arg, sa_dialect, cache)


# A models table as plain tuples: name, columns, primary key, uniques, checks, indexes, foreign
# keys, comment (see _TableConverter.parts).
_TableParts = tuple[str, list[tuple[Any, ...]], tuple[str, ...], list[tuple[Any, ...]], list[tuple[Any, ...]],
                    list[tuple[Any, ...]], list[tuple[Any, ...]], "str | None"]


class _TableConverter:
    """Models tables as neutral :class:`Table` objects for one live engine, with the caches that
    make thousands of alike columns cheap; collects the native enums the columns use."""

    def __init__(self, sa_dialect: Any, dialect: Dialect) -> None:
        self.sa_dialect, self.dialect, self.engine = sa_dialect, dialect, dialect.name
        self.rowid_engine = dialect.catalog_style == "sqlite_pragma"
        self.compiled: dict[Any, str] = {}
        self.type_texts: dict[Any, str] = {}
        self.native_enums = sa_dialect.supports_native_enum and not dialect.unique_constraints_are_indexes
        self.family = _family_key(dialect)
        self.comments = sa_dialect.supports_comments
        self.enums: dict[str, tuple[str, ...]] = {}
        # MySQL's table options as SQLAlchemy keeps them: keyword arguments named after the dialect.
        self.options_dialect = sa_dialect.name if self.family == "mysql" else None
        self.key_order = dialect.keeps_index_order(tuple(sa_dialect.server_version_info or ()))
        self.name_limit = _name_limit(sa_dialect)
        self.identities = self.family == "postgresql" and bool(getattr(sa_dialect, "supports_identity_columns", False))

    def convert(self, table: Any) -> Table:
        name, columns, pk, uniques, checks, indexes, fks, comment = self.parts(table)
        return Table(name=name, columns=tuple(Column(*c) for c in columns), primary_key=pk,
                     uniques=tuple(Unique(*u) for u in uniques), checks=tuple(Check(*c) for c in checks),
                     indexes=tuple(Index(*i) for i in indexes), foreign_keys=tuple(ForeignKey(*f) for f in fks),
                     comment=comment)

    def digest(self, table: Any) -> bytes | None:
        """The table's :func:`dbguard.core.schema.model_table_digest`, without building its objects."""
        return parts_digest(*self.parts(table))

    def parts(self, table: Any) -> _TableParts:
        """The table as plain tuples in the fields' order of Column, Unique, Check, Index and
        ForeignKey: :meth:`convert` builds the objects, :meth:`digest` needs none."""
        sa_dialect, dialect, engine, rowid_engine = self.sa_dialect, self.dialect, self.engine, self.rowid_engine
        compiled, type_texts, native_enums, family = self.compiled, self.type_texts, self.native_enums, self.family
        comments, enum_or_array, sequence_type, name_limit = self.comments, (sa.Enum, sa.ARRAY), sa.Sequence, self.name_limit
        auto = table.autoincrement_column
        # A column of the table's own collation has none of its own in MySQL's catalog.
        # table.kwargs would build the dialect's argument registry for every table that has none.
        options, named = table.dialect_options, self.options_dialect
        table_options = _mysql_table_options(options, named)
        table_collation = table_options.get("collate") if table_options else None
        columns = []
        for col in table.columns:
            col_type = col.type
            # The collation is the one the DDL writes (a variant's for this dialect), apart from the type.
            type_text, collation = _split_collation(_type_text(col_type, sa_dialect, type_texts))
            if native_enums and isinstance(col_type, enum_or_array):
                self._note_enums_of(col_type)
            autoincrement = (col is auto and not isinstance(col.default, sequence_type)) or col.identity is not None
            computed = _ddl_compile(col.computed.sqltext, sa_dialect) if col.computed is not None else None
            default = None if computed else _default_text(col, sa_dialect, compiled)
            on_update = None
            if default is not None:
                if named:
                    default, on_update = _split_on_update(default)
                elif family == "postgresql" and draws_from_sequence(default):
                    # As the catalog reads it: a column drawing from a sequence increments by itself.
                    autoincrement, default = True, None
            identity = _identity_text(col.identity) if self.identities and col.identity is not None else None
            columns.append((
                str(col.name), normalize_type(engine, type_text), bool(col.nullable), default,
                autoincrement and not rowid_engine, None if collation == table_collation else collation,
                col.comment if comments else None, computed, on_update, identity,
            ))
        # Plain str, not SQLAlchemy's quoted_name: these tuples are digested with marshal.
        pk = tuple(str(c.name) for c in table.primary_key.columns)
        uniques: list[tuple[Any, ...]] = []
        checks: list[tuple[Any, ...]] = []
        fks: list[tuple[Any, ...]] = []
        indexes: list[tuple[Any, ...]] = []
        # A CHECK given to a column (``mapped_column(CheckConstraint(...))``) is the column's, not in
        # table.constraints; create_all writes it in the column's definition, and the server keeps it as
        # the table's.
        column_checks = [c for col in table.columns for c in col.constraints if isinstance(c, sa.CheckConstraint)]
        for constraint in (*table.constraints, *column_checks) if column_checks else table.constraints:
            if not _ddl_applies(constraint, sa_dialect):
                continue
            if isinstance(constraint, sa.UniqueConstraint):
                cols = tuple(str(c.name) for c in constraint.columns)
                if dialect.unique_constraints_are_indexes:
                    indexes.append((_constraint_name(constraint, sa_dialect, name_limit), cols, True, None, None, (),
                                    False))
                else:
                    uniques.append((_constraint_name(constraint, sa_dialect, name_limit), cols,
                                    _nulls_not_distinct(constraint, family)))
            elif isinstance(constraint, sa.CheckConstraint):
                # A Boolean's or Enum's own CHECK exists only where the engine lacks the native type.
                if internals.created_on(constraint, sa_dialect):
                    checks.append((_constraint_name(constraint, sa_dialect, name_limit),
                                   _ddl_compile(constraint.sqltext, sa_dialect)))
            elif isinstance(constraint, sa.ForeignKeyConstraint):
                ref = constraint.elements[0].column.table
                fks.append((_constraint_name(constraint, sa_dialect, name_limit), tuple(str(c.name) for c in constraint.columns),
                            str(ref.name), tuple(str(e.column.name) for e in constraint.elements),
                            _action(constraint.ondelete, dialect), _action(constraint.onupdate, dialect)))
        # A constraint declared twice (an inline ForeignKey beside a named ForeignKeyConstraint, a
        # CheckConstraint a revision file attaches again) is one constraint to compare.
        checks, fks = _without_unnamed_repeats(checks), _without_unnamed_repeats(fks)
        for index in table.indexes:
            if not _ddl_applies(index, sa_dialect):
                continue
            opts = index.dialect_options
            # PostgreSQL's operator classes, by column name (or an expression's label), as the DDL writes them.
            ops = (opts["postgresql"].get("ops") or {}) if family == "postgresql" and "postgresql" in opts else {}
            parts = []
            for expr in index.expressions:
                if isinstance(expr, sa.Column):
                    length = self._key_prefix(index, expr)
                    parts.append(expr.name + (f"({length})" if length else "") + _opclass(ops, expr))
                elif isinstance(expr, str):
                    parts.append(expr)
                else:
                    parts.append(self._index_key(index, expr) + _opclass(ops, expr))
            where = None
            method = None
            include: tuple[str, ...] = ()
            for key in ("postgresql", "sqlite"):
                if key in opts and opts[key].get("where") is not None:
                    where = _ddl_compile(opts[key]["where"], sa_dialect) if key == family else where
            if family == "postgresql":
                method = opts["postgresql"].get("using") if "postgresql" in opts else None
                method = None if method in (None, False, "", "btree") else str(method)
                include = tuple(str(getattr(c, "name", c)) for c in
                                ((opts["postgresql"].get("include") or ()) if "postgresql" in opts else ()))
            elif dialect.unique_constraints_are_indexes and "mysql" in opts:
                prefix = opts["mysql"].get("prefix")
                method = prefix.lower() if prefix else None
            indexes.append((_constraint_name(index, sa_dialect, name_limit), tuple(parts), bool(index.unique), where, method,
                            include, _nulls_not_distinct(index, family)))
        # An index declared twice (a column's index=True and a table's Index() of the same name under a
        # naming convention) is one index: SQLAlchemy keeps both objects, the database one.
        indexes = _without_unnamed_repeats(indexes)
        if fks and dialect.fk_creates_index:
            # InnoDB adds an index for a foreign key unless one starts with its columns.
            leading = [pk] + [tuple(split_index_key(p)[0].split("(")[0] for p in ix[1]) for ix in indexes]
            for fk in fks:
                width = len(fk[1])
                if not any(cols[:width] == fk[1] for cols in leading):
                    indexes.append((fk[0], fk[1], False, None, None, (), False))
                    leading.append(fk[1])
        if rowid_engine and len(pk) == 1:
            columns = [(c[0], c[1], c[2], c[3], True, *c[5:]) if c[0] == pk[0] and c[1] == "integer" else c
                       for c in columns]
        comment = table.comment
        if comment is None and table_options:
            comment = table_options.get("comment")  # mysql_comment: the table's comment, given as an option
        return (str(table.name), columns, pk, uniques, checks, indexes, fks,
                comment if sa_dialect.supports_comments else None)

    def _key_prefix(self, index: Any, column: Any) -> int | None:
        """The MySQL prefix length of ``column`` in ``index`` as the catalog will show it."""
        if not self.dialect.unique_constraints_are_indexes:
            return None
        length = _mysql_length(index, column.name)
        if not length:
            return None
        type_text = _split_collation(_type_text(column.type, self.sa_dialect, self.type_texts))[0]
        return mysql_key_prefix(normalize_type(self.engine, type_text), length)

    def _index_key(self, index: Any, expr: Any) -> str:
        """A key part that is not a bare column: ``t.c.a.desc()``, ``func.lower(t.c.b)``, ``text("a DESC")``,
        written as the catalog readers write it (:func:`dbguard.core.schema.index_key`)."""
        direction = nulls = None
        while isinstance(expr, sa.sql.expression.UnaryExpression) and expr.modifier in _ORDER_MODIFIERS:
            word = _ORDER_MODIFIERS[expr.modifier]
            if word in ("asc", "desc"):
                direction = direction or word
            else:
                nulls = nulls or word
            expr = expr.element
        if isinstance(expr, sa.Column):
            length = self._key_prefix(index, expr)
            text = expr.name + (f"({length})" if length else "")
        else:
            text = _ddl_compile(expr, self.sa_dialect)
        text, descending, nulls_first = split_index_key(text)
        if not self.key_order:  # a server that takes DESC and builds the index ascending
            return text
        return index_key(text, descending if direction is None else direction == "desc",
                         nulls_first if nulls is None else nulls == "first")

    def collect_enums(self, table: Any) -> None:
        """The native enums of a table's columns, without converting the table."""
        if self.native_enums:
            for col in table.columns:
                self._note_enums_of(col.type)

    def _note_enums_of(self, col_type: Any) -> None:
        """A column's native enum, also as the items of an ARRAY: create_all creates its type too."""
        while isinstance(col_type, sa.ARRAY):
            col_type = col_type.item_type
        if isinstance(col_type, sa.Enum):
            self._note_enum(col_type)

    def _note_enum(self, enum_type: Any) -> None:
        if enum_type.native_enum and enum_type.name:
            self.enums[enum_type.name] = tuple(enum_type.enums)


def _model_tables(metadatas: list[Any], converter: _TableConverter, exclude: tuple[str, ...] = ()) -> list[Any]:
    """The models' tables in the connection's default schema, without those matching ``exclude``.
    Not sorted_tables: its dependency sort is quadratic in tables, and the order is canonical()'s anyway.

    A table that several MetaData of target_metadata declare (dagster's run and event-log storages
    both declare ``secondary_indexes``; ``alembic check`` refuses any such list) is expected once when
    they declare it alike on this engine. Declared differently, the models contradict each other and
    no comparison could be right: it is named, exit 2."""
    # A table named in the connection's own schema (arize-phoenix's MetaData(schema=...), its env.py
    # then on that search_path) is one of the default schema's: the catalog reads that schema.
    own = _own_schema(converter.sa_dialect)
    tables = [table for metadata in metadatas for table in metadata.tables.values()
              if table.schema is None or table.schema == own]
    if not tables:
        elsewhere = sorted({str(t.schema) for metadata in metadatas for t in metadata.tables.values()
                            if t.schema is not None and t.schema != own})
        if elsewhere:
            # Tables in other schemas are left out as alembic check leaves them out; but with none left,
            # "no drift" would be said of a comparison that compared nothing.
            raise ConfigError(f"env.py's models declare their tables in schema {', '.join(elsewhere)}, and dbguard "
                              f"compares its connection's schema {own}: put its connection in that schema (on "
                              f"PostgreSQL its search_path, e.g. PGOPTIONS='-c search_path={elsewhere[0]}')")
    if exclude:
        tables = [table for table in tables if not excluded(table.name, exclude)]
    if len(metadatas) < 2:
        return tables
    first: dict[str, Any] = {}
    unique: list[Any] = []
    for table in tables:
        other = first.setdefault(table.name, table)
        if other is table:
            unique.append(table)
        elif converter.convert(other) != converter.convert(table):
            raise ConfigError(f"env.py's target_metadata declares table {table.name} in two MetaData, "
                              f"differently on {converter.sa_dialect.name}: nothing to compare it with "
                              "(keep one declaration)")
    return unique


def _own_schema(sa_dialect: Any) -> str | None:
    """The schema the connection works in (PostgreSQL's current_schema() when it connected, MySQL's
    database), None for a dialect that never connected."""
    return getattr(sa_dialect, "default_schema_name", None)


def _model_sequences(metadatas: list[Any], sa_dialect: Any) -> tuple[str, ...] | None:
    if not sa_dialect.supports_sequences:
        return None
    own = _own_schema(sa_dialect)
    return tuple(sorted({seq.name for metadata in metadatas for seq in internals.sequences(metadata)
                         if (seq.schema is None or seq.schema == own) and not getattr(seq, "optional", False)}))


@without_gc
def schema_from_metadata(metadatas: list[Any], sa_dialect: Any, dialect: Dialect,
                         only: Iterable[str] | None = None) -> Schema:
    """The neutral model of what ``metadata.create_all`` would build on this engine (``only``:
    just these tables, with every enum and sequence).

    Types are compiled with the live engine's SQLAlchemy dialect, then spelt the catalog's way.
    """
    converter = _TableConverter(sa_dialect, dialect)
    wanted = None if only is None else set(only)
    tables = [converter.convert(table) for table in _model_tables(metadatas, converter)
              if wanted is None or table.name in wanted]
    if wanted is not None:
        # The enums come from the columns of every table, not only of those converted.
        for table in _model_tables(metadatas, converter):
            if table.name not in wanted:
                converter.collect_enums(table)
    return canonical(Schema(engine=dialect.name, tables=tuple(tables), enums=tuple(converter.enums.items()),
                            views=None, sequences=_model_sequences(metadatas, sa_dialect), origin="models"))


@dataclasses.dataclass(frozen=True)
class ModelDigests:
    """Each models table's digest (:func:`dbguard.core.schema.model_table_digest`), and what the
    models hold besides tables."""

    engine: str
    tables: dict[str, bytes | None]
    enums: tuple[tuple[str, tuple[str, ...]], ...]
    sequences: tuple[str, ...] | None

    def schema_without_tables(self) -> Schema:
        return Schema(engine=self.engine, tables=(), enums=self.enums, views=None, sequences=self.sequences,
                      origin="models")


@without_gc
def model_digests(metadatas: list[Any], sa_dialect: Any, dialect: Dialect,
                  exclude: tuple[str, ...] = ()) -> ModelDigests:
    """The models' tables digested for comparing with a catalog's digests; no converted object is
    kept. (Converting half of them in a forked child was measured slower: after the fork, both
    processes copy every page of the models' heap they touch.)"""
    converter = _TableConverter(sa_dialect, dialect)
    digests = {t.name: converter.digest(t) for t in _model_tables(metadatas, converter, exclude)}
    return ModelDigests(engine=dialect.name, tables=digests, enums=tuple(sorted(converter.enums.items())),
                        sequences=_model_sequences(metadatas, sa_dialect))


# A MySQL default that carries its column's ON UPDATE (``server_default=text("CURRENT_TIMESTAMP ON UPDATE
# CURRENT_TIMESTAMP")``, the way SQLAlchemy lets a model say it): the catalog keeps the two apart.
_ON_UPDATE = re.compile(r"^(.*?)\s+ON\s+UPDATE\s+(.+)$", re.IGNORECASE | re.DOTALL)


def _split_on_update(default: str) -> tuple[str | None, str | None]:
    m = _ON_UPDATE.match(default)
    return (default, None) if m is None else (m.group(1).strip() or None, m.group(2).strip())


def _mysql_table_options(options: Any, named: str | None) -> dict[str, Any]:
    """A table's MySQL options (``mysql_collate``, ``mysql_comment``), the live dialect's own name first."""
    if not named:
        return {}
    for key in (named, "mysql"):
        found = options.get(key)  # get, not []: [] builds the dialect's argument registry for the table
        if found:
            return dict(found)
    return {}


def _identity_text(identity: Any) -> str:
    """An Identity as the catalog reader writes it: ALWAYS or BY DEFAULT, then its START and INCREMENT
    where they are not the sequence's own defaults."""
    increment = identity.increment if identity.increment is not None else 1
    text = "ALWAYS" if identity.always else "BY DEFAULT"
    if identity.start is not None and identity.start != (1 if increment > 0 else -1):
        text += f" START {identity.start}"
    if increment != 1:
        text += f" INCREMENT {increment}"
    return text


def _opclass(ops: dict[str, Any], expr: Any) -> str:
    key = getattr(expr, "key", None)
    return f" {ops[key]}" if ops and isinstance(key, str) and key in ops else ""


def _nulls_not_distinct(item: Any, family: str) -> bool:
    options = item.dialect_options
    return family == "postgresql" and "postgresql" in options and bool(options["postgresql"].get("nulls_not_distinct"))


def _ddl_applies(item: Any, sa_dialect: Any) -> bool:
    """``Index(...).ddl_if(dialect=...)``: an index or constraint built on some engines only."""
    names = internals.ddl_if_dialects(item)
    return names is None or sa_dialect.name in names


def _family_key(dialect: Dialect) -> str:
    return {"pg_catalog": "postgresql", "information_schema": "mysql", "sqlite_pragma": "sqlite"}[
        dialect.catalog_style]


def _mysql_length(index: Any, column: str) -> int | None:
    length = index.dialect_options["mysql"].get("length") if "mysql" in index.dialect_options else None
    if isinstance(length, dict):
        return length.get(column)
    return length


def _action(value: str | None, dialect: Dialect) -> str | None:
    if value is None:
        return None
    value = value.upper()
    if value == "NO ACTION" or (value == "RESTRICT" and dialect.unique_constraints_are_indexes):
        return None
    return value


# The models' schema shared by the targets of a fleet rollout (None: every call reads env.py). It
# depends on the scripts, the config file, -x and the engine, never on the database, so a fleet
# worker computes it once per revision set instead of once per target. Failures are shared too.
MODELS_CACHE: dict[tuple[Any, ...], Any] | None = None


def models_schema(target: Any, session: Any, exclude: tuple[str, ...],
                  seen_metadata: tuple[Any, ...] | None = None) -> Schema:
    """The models' schema on this session's engine. ``seen_metadata``: (env.py's target_metadata,)
    as a guarded run already got it from configure(); None: env.py is run to read it."""
    if seen_metadata is not None:
        return schema_from_metadata(metadata_list(seen_metadata[0]), session.conn.dialect,
                                    session.dialect).without_tables(exclude)
    cache, key = MODELS_CACHE, None
    if cache is not None:
        config, sa_dialect = target.config, session.conn.dialect
        key = (str(getattr(config, "toml_file_name", None)), str(config.config_file_name), config.config_ini_section,
               tuple(getattr(config.cmd_opts, "x", None) or ()), sa_dialect.name,
               tuple(sa_dialect.server_version_info or ()))
        if key in cache:
            found = cache[key]
            if isinstance(found, Exception):
                raise found
            return found.without_tables(exclude)  # type: ignore[no-any-return]
    try:
        metadatas = read_target_metadata(target.config, target.script())
        schema = schema_from_metadata(metadatas, session.conn.dialect, session.dialect)
    except ConfigError as exc:
        if cache is not None and key is not None and isinstance(exc, NoTargetMetadata):
            cache[key] = exc  # the scripts' answer, the same for every target (not a connection problem)
        raise
    if cache is not None and key is not None:
        cache[key] = schema
    return schema.without_tables(exclude)


# Snapshot -------------------------------------------------------------------------------------


# Migrations replayed in a scratch database ----------------------------------------------------


def _owned_signals() -> tuple[signal.Signals, ...]:
    """The signals dbguard may handle: SIGINT and SIGTERM in a process of its own (the CLI, a fleet
    worker); none in a host application, whose handlers are its own."""
    import dbguard

    return (signal.SIGINT, signal.SIGTERM) if dbguard.OWNS_PROCESS else ()


@contextlib.contextmanager
def _interrupt_as_exception() -> Iterator[None]:
    """SIGINT and SIGTERM raise KeyboardInterrupt here, so ``finally`` blocks always run."""
    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = {}
    for sig in _owned_signals():
        with contextlib.suppress(ValueError):  # not the main thread: leave the handlers alone
            previous[sig] = signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@contextlib.contextmanager
def _shielded() -> Iterator[None]:
    """Hold SIGINT/SIGTERM while the scratch database is dropped; deliver them afterwards."""
    pending: list[int] = []
    previous = {}
    for sig in _owned_signals():
        with contextlib.suppress(ValueError):
            previous[sig] = signal.signal(sig, lambda signum, frame: pending.append(signum))
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
        if pending:
            raise KeyboardInterrupt


@dataclasses.dataclass
class Scratch:
    url: sa.engine.URL
    name: str
    created: bool


def scratch_name() -> str:
    return f"{SCRATCH_PREFIX}{os.getpid()}_{secrets.token_hex(4)}"


# Only names scratch_name() makes are ever swept: a shadow database a team named with the same
# prefix (and passes as --shadow-url) is theirs.
_SCRATCH_NAME = re.compile(re.escape(SCRATCH_PREFIX) + r"[0-9]+_[0-9a-f]{8}")


# A scratch file's folder is mkdtemp's: the prefix and eight characters of its alphabet.
_SCRATCH_FOLDER = re.compile(re.escape(SCRATCH_PREFIX) + r"[a-z0-9_]{8}")
_OWNER_FILE = "owner.lock"


def _hold_scratch_folder(folder: Path) -> Any:
    """Lock a file in the folder for as long as this process uses it (the kernel frees the lock
    when the process dies). Locked under another name first, then renamed: an owner file that a
    sweep can see is always one that was locked."""
    from dbguard.db.runlock import FileRunLock

    pending = folder / f".{_OWNER_FILE}"
    owner = FileRunLock(pending)
    owner.try_acquire()
    os.rename(pending, folder / _OWNER_FILE)
    return owner


def _remove_scratch_folder(folder: Path) -> None:
    for leftover in folder.glob("*"):
        with contextlib.suppress(OSError):
            leftover.unlink()
    with contextlib.suppress(OSError):
        os.rmdir(folder)


def drop_abandoned_scratch_folders(own: Path, announce: Callable[[str], None]) -> list[str]:
    """SQLite's side of :func:`drop_abandoned_scratch`: remove the scratch folders beside ``own``
    whose owner file nobody holds a lock on."""
    from dbguard.db.runlock import FileRunLock

    dropped = []
    for folder in own.parent.iterdir():
        if folder == own or not _SCRATCH_FOLDER.fullmatch(folder.name) or not (folder / _OWNER_FILE).is_file():
            continue
        try:
            if FileRunLock(folder / _OWNER_FILE).holder() is not None:
                continue
        except OSError:
            continue
        _remove_scratch_folder(folder)
        if folder.exists():
            announce(f"could not remove the abandoned scratch database folder {folder}")
            continue
        dropped.append(str(folder))
        announce(f"dropped the scratch database folder {folder}, left by a dbguard process that died")
    return dropped


def drop_abandoned_scratch(session: Any, own: str, announce: Callable[[str], None]) -> list[str]:
    """Drop the scratch databases whose dbguard died without dropping them (SIGKILL, a lost
    host): those whose owner lock no session on the server holds. The owner takes its lock before
    it creates the database and drops the database before it lets go, so a scratch database that
    exists with its lock free has no owner. Returns the names dropped."""
    from dbguard.db import connect as dbconnect
    from dbguard.db.sql import run

    dialect = scratch_server_of(session.dialect)
    dropped: list[str] = []
    try:
        names = [name for (name,) in run(session.conn, dialect.list_scratch_databases(SCRATCH_PREFIX)).fetchall()]
    except sa.exc.DBAPIError as exc:
        # Housekeeping: never a reason for the replay itself to fail.
        announce(f"could not look for abandoned scratch databases: {dbconnect.first_line(exc)}")
        return dropped
    for name in names:
        if name == own or not _SCRATCH_NAME.fullmatch(name):
            continue
        try:
            if run(session.conn, dialect.scratch_held(name)).scalar():
                continue
            # Nobody's sessions are ended for it: a person looking into it keeps it.
            if run(session.conn, dialect.scratch_users(name)).scalar():
                announce(f"left the abandoned scratch database {name}: a session is using it")
                continue
            drop_scratch(session, name, force=False)
        except sa.exc.DBAPIError as exc:
            announce(f"could not drop the abandoned scratch database {name}: {dbconnect.first_line(exc)}")
            continue
        dropped.append(name)
        announce(f"dropped the scratch database {name}, left by a dbguard process that died")
    return dropped


@contextlib.contextmanager
def scratch_database(target: Any, session: Any, shadow_url: str | None,
                     announce: Callable[[str], None] = lambda line: None) -> Iterator[Scratch]:
    """A database to replay migrations into: ``shadow_url`` as given (emptied first is the user's
    job), or a temporary one on the same server (a temporary file for SQLite) that is dropped
    whatever happens: failed replay, exception, Ctrl-C or SIGTERM."""
    from dbguard.db import connect as dbconnect

    if shadow_url:
        yield Scratch(url=dbconnect.parse_url(shadow_url), name="", created=False)
        return
    dialect = session.dialect
    name = scratch_name()
    if dialect.scratch_database_kind == "file":
        folder = Path(tempfile.mkdtemp(prefix=SCRATCH_PREFIX))
        path = folder / f"{name}.sqlite"
        owner = None
        try:
            owner = _hold_scratch_folder(folder)
            drop_abandoned_scratch_folders(folder, announce)
            announce(f"replaying migrations into scratch database {path}")
            with _interrupt_as_exception():
                # The target's own URL, driver included: env.py is handed it as sqlalchemy.url, and an
                # async env.py needs its async driver (dbguard's own engines swap in the sync one).
                yield Scratch(url=target.url.set(database=str(path)), name=str(path), created=True)
        finally:
            with _shielded():
                _remove_scratch_folder(folder)
                if owner is not None:
                    owner.release()
        return
    from dbguard.db.sql import run

    scratch_server = scratch_server_of(dialect)
    created = held = False
    try:
        with _interrupt_as_exception():
            # Held before the database exists and let go after it is gone: see drop_abandoned_scratch.
            held = bool(run(session.conn, scratch_server.hold_scratch(name)).scalar())
            drop_abandoned_scratch(session, name, announce)
            try:
                run(session.conn, scratch_server.create_scratch_database(name))
            except sa.exc.DBAPIError as exc:
                raise ConfigError(
                    f"cannot create a scratch database on {target.masked_url}: {dbconnect.first_line(exc)}; "
                    "grant the right to create databases, or pass --shadow-url URL of an empty database"
                ) from None
            created = True
            announce(f"replaying migrations into scratch database {name}")
            yield Scratch(url=target.url.set(database=name), name=name, created=True)
    finally:
        with _shielded():
            if created:
                drop_scratch(session, name)
            if held:
                with contextlib.suppress(sa.exc.DBAPIError):
                    run(session.conn, scratch_server.release_scratch(name))


def drop_scratch(session: Any, name: str, force: bool = True) -> None:
    """Drop a scratch database. ``force``: end the sessions still in it first (our own replay's);
    without, as for a database a dead dbguard left, none is ended (PostgreSQL refuses to drop a
    database someone is connected to; MariaDB waits for their locks, up to the lock timeout)."""
    from dbguard.db.sql import run

    dialect = scratch_server_of(session.dialect)
    sessions = dialect.scratch_sessions(name) if force else None
    if sessions is not None:
        with contextlib.suppress(Exception):
            for (session_id,) in run(session.conn, sessions).fetchall():
                with contextlib.suppress(Exception):
                    run(session.conn, session_control_of(dialect).terminate_session(str(session_id), ""))
    run(session.conn, dialect.drop_scratch_database(name, force))


def migrations_document(target: Any, session: Any, heads: tuple[str, ...], shadow_url: str | None,
                        exclude: tuple[str, ...], announce: Callable[[str], None] = lambda line: None) -> dict[str, Any]:
    """Replay the migrations up to ``heads`` into a scratch database and read it back as a snapshot
    document. A brownfield chain's baseline (``replay_baseline``) is created there first."""
    from dbguard.db import connect as dbconnect
    from dbguard.db.catalog import read_document

    with scratch_database(target, session, shadow_url, announce) as scratch:
        replay_into(target, session.dialect, scratch.url, heads, announce)
        engine = dbconnect.create_engine(scratch.url, target.settings.connect_timeout_s, target.settings.application)
        try:
            with dbconnect.connection(engine) as conn:
                return read_document(conn, for_sqlalchemy_dialect(conn.dialect), exclude)
        finally:
            engine.dispose()


def replay_into(target: Any, dialect: Dialect, url: sa.engine.URL, heads: tuple[str, ...],
                announce: Callable[[str], None] = lambda line: None) -> None:
    """Bring the (empty) database at ``url`` to ``heads`` with the project's migrations: the baseline
    first (``replay_baseline``), then plain ``alembic upgrade`` per head. A failure is one line, exit 2."""
    from alembic import command

    from dbguard.db import connect as dbconnect
    from dbguard.drift import baseline as baselines

    chosen = baselines.from_settings(target.settings)
    config = _config_for(target.config, url)
    tracker = None
    try:
        after: tuple[str, ...] = ()
        if chosen is not None:
            after = baselines.apply(chosen, url, target.settings)
            announce(f"created the baseline {chosen.spec}" + (f" (at {' '.join(after)})" if after else ""))
        with _replay_hooks(config, url) as tracker:
            if after:
                command.stamp(config, list(after) if len(after) > 1 else after[0])
            for head in heads or ():
                command.upgrade(config, head)
    except (DbguardError, KeyboardInterrupt):
        raise
    except Exception as exc:  # noqa: BLE001 - the project's migrations: one line, exit 2
        line = f"{type(getattr(exc, 'orig', None) or exc).__name__}: {dbconnect.first_line(exc)}"
        failed = getattr(getattr(tracker, "current", None), "revision", None)
        if failed:  # the revision whose upgrade() failed (none: env.py or the baseline's stamp)
            line = f"revision {failed}: {line}"
        if chosen is None and dialect.is_missing_table(exc):
            raise ConfigError(
                f"replaying the migrations failed: {line}; the chain looks brownfield (its first revision "
                "expects tables it does not create): pass --baseline module:MetaData, a schema-only .sql dump "
                "or a snapshot .json (setting replay_baseline), with --baseline-revision REV if it stands "
                "for a later revision"
            ) from None
        if chosen is None and failed:
            line += ("; where the chain cannot run from an empty database, start the replay from --baseline "
                     "(setting replay_baseline) with --baseline-revision REV")
        raise ConfigError(f"replaying the migrations failed: {line}") from None


def config_for(config: Any, url: sa.engine.URL) -> Any:
    """A copy of the Alembic Config that points env.py at ``url``."""
    return _config_for(config, url)


@contextlib.contextmanager
def _replay_hooks(config: Any, url: sa.engine.URL) -> Iterator[Any]:
    """env.py migrates the scratch database on a connection of its own (from the sqlalchemy.url of
    ``config``, as under plain Alembic); whatever it connects to must be that database, never the
    one being checked (an env.py that ignores sqlalchemy.url would replay into it)."""
    from dbguard.db.sql import run
    from dbguard.migrations import bridge

    def verify(connection: Any) -> None:
        dialect = for_sqlalchemy_dialect(connection.dialect)
        database = run(connection, dialect.current_database()).scalar()
        wanted = url.database or ""
        if database is None or dialect.normalize_database(str(database)) != dialect.normalize_database(wanted):
            raise ConfigError(
                f"env.py connected to {database} instead of the scratch database {wanted} it was given in "
                "sqlalchemy.url; nothing was replayed into it. Make env.py use config's sqlalchemy.url"
            )

    hooks = bridge.RunHooks(tracker=bridge.StepTracker(), session_statements=[], verify_connection=verify)
    with bridge.configure_hook():
        config.attributes["dbguard"] = hooks
        try:
            yield hooks.tracker
        finally:
            config.attributes.pop("dbguard", None)


def _config_for(config: Any, url: sa.engine.URL) -> Any:
    """A copy of the Alembic Config that points env.py at ``url``."""
    from alembic.config import Config

    more = {"toml_file": config.toml_file_name} if getattr(config, "toml_file_name", None) else {}
    copy = Config(file_=config.config_file_name, ini_section=config.config_ini_section,
                  cmd_opts=config.cmd_opts, **more)
    copy.set_main_option("sqlalchemy.url", url.render_as_string(hide_password=False).replace("%", "%%"))
    return copy
