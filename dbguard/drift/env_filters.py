"""env.py's ``include_name`` and ``include_object`` hooks, applied to drift against the models as
``alembic check`` applies them: a table, column, index or constraint that env.py leaves out of the
comparison (a project's hand-made indexes, tables another tool owns) is not drift.

Alembic hands the hooks SQLAlchemy objects: the models' own where the models have the object, and a
reflected one where only the database has it. dbguard reads the catalog without reflecting, so a
database-only object is a stand-in built from the catalog's description: a Table with its columns,
each typed by the dialect's own names for catalog types (as reflection types them), its indexes and
constraints on their columns. A column whose type the dialect does not name is shown twice, untyped
and as a string, and left out only if the hook leaves out both; a hook that fails on a stand-in, or
on anything, leaves the difference reported: a filter is never a reason to hide drift it could not judge.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from dbguard.core.schema import Drift

# Drift kinds by the object Alembic's hooks name (enums, views, sequences and CHECK constraints are
# not compared by Alembic's autogenerate: no hook is asked about them).
_TYPES = {"table": "table", "column": "column", "index": "index", "unique": "unique_constraint",
          "foreign_key": "foreign_key_constraint"}
_TABLE_LEVEL = ("changed_primary_key", "changed_table_comment")


@dataclasses.dataclass(frozen=True)
class EnvFilters:
    """The hooks env.py passed to ``context.configure()`` (None where it passed none)."""

    include_name: Callable[..., Any] | None = None
    include_object: Callable[..., Any] | None = None

    @classmethod
    def of(cls, opts: dict[str, Any]) -> EnvFilters | None:
        found = cls(opts.get("include_name"), opts.get("include_object"))
        return found if found.include_name or found.include_object else None


def left_out(drifts: Sequence[Drift], filters: EnvFilters | None, metadatas: Sequence[Any],
             live: Mapping[str, Any] | None = None, sa_dialect: Any = None) -> list[Drift]:
    """The drifts whose object (or whose table) env.py's hooks leave out of the comparison.
    ``live``: the catalog's document (its tables and enums describe database-only objects);
    ``sa_dialect``: the SQLAlchemy dialect whose type names type their columns."""
    if filters is None or not drifts:
        return []
    # The default schema's tables first; one the models name in a schema (the connection's own, see
    # dbguard.drift.expected._model_tables) where no unqualified table has its name.
    tables = {t.name: t for m in metadatas for t in m.tables.values() if t.schema is None}
    own = getattr(sa_dialect, "default_schema_name", None)
    for m in metadatas:
        for t in m.tables.values():
            if t.schema is not None and t.schema == own:
                tables.setdefault(t.name, t)
    judge = _Judge(filters, tables, _LiveObjects(live, sa_dialect))
    return [d for d in drifts if d.table is not None and not judge.included(d)]


def kept(drifts: Sequence[Drift], filters: EnvFilters | None, metadatas: Sequence[Any],
         live: Mapping[str, Any] | None = None, sa_dialect: Any = None) -> list[Drift]:
    """The drifts env.py's hooks keep in the comparison (all but :func:`left_out`)."""
    out = {id(d) for d in left_out(drifts, filters, metadatas, live, sa_dialect)}
    return [d for d in drifts if id(d) not in out]


class _Judge:
    def __init__(self, filters: EnvFilters, tables: dict[str, Any], live: _LiveObjects) -> None:
        self.filters, self.tables, self.live = filters, tables, live
        self.table_verdicts: dict[tuple[str, bool], bool] = {}

    def included(self, drift: Drift) -> bool:
        table_name = drift.table or ""
        if not self._table_included(table_name, reflected=drift.kind != "missing_table"):
            return False
        kind, _, rest = drift.kind.partition("_")
        if drift.kind in _TABLE_LEVEL or rest == "table":
            return True
        base = next((key for key in _TYPES if rest == key or rest.startswith(key + "_")), None)
        if base is None:  # a CHECK constraint: only its table's verdict applies
            return True
        name = drift.object[len(table_name) + 1:] if drift.object.startswith(table_name + ".") else drift.object
        type_ = _TYPES[base]
        model_table = self.tables.get(table_name)
        model_object = _model_object(model_table, base, name) if kind != "extra" else None
        if kind != "missing" and not self._name_included(name, type_, table_name):
            return False
        lives = [None] if kind == "missing" else self.live.objects(table_name, base, name)
        if model_object is not None:
            return any(self._object_included(model_object, name, type_, False, live) for live in lives)
        if lives[0] is not None:
            return any(self._object_included(live, name, type_, True, None) for live in lives)
        return True

    def _table_included(self, name: str, reflected: bool) -> bool:
        key = (name, reflected)
        if key not in self.table_verdicts:
            model_table = self.tables.get(name)
            verdict = True
            live = self.live.table(name) if reflected else None
            if reflected and not self._name_included(name, "table", None):
                verdict = False
            elif model_table is not None:
                verdict = self._object_included(model_table, name, "table", False, live)
            elif reflected:
                verdict = self._object_included(live, name, "table", True, None)
            self.table_verdicts[key] = verdict
        return self.table_verdicts[key]

    def _name_included(self, name: str, type_: str, table: str | None) -> bool:
        hook = self.filters.include_name
        if hook is None:
            return True
        parents = {"schema_name": None} if table is None else \
            {"schema_name": None, "table_name": table, "schema_qualified_table_name": table}
        return _asked(hook, name, type_, parents)

    def _object_included(self, obj: Any, name: str, type_: str, reflected: bool, compare_to: Any) -> bool:
        hook = self.filters.include_object
        return True if hook is None else _asked(hook, obj, name, type_, reflected, compare_to)


def _asked(hook: Callable[..., Any], *args: Any) -> bool:
    try:
        return bool(hook(*args))
    except Exception:  # noqa: BLE001 - env.py's hook failed on what it was shown: the difference stays
        return True


def _model_object(table: Any, base: str, name: str) -> Any | None:
    if table is None:
        return None
    if base == "column":
        return table.c.get(name)
    if base == "index":
        return next((i for i in table.indexes if i.name == name), None)
    kind = sa.UniqueConstraint if base == "unique" else sa.ForeignKeyConstraint
    return next((c for c in table.constraints if isinstance(c, kind) and c.name == name), None)


class _LiveObjects:
    """Database-only objects as reflection would show them, built from the catalog's document."""

    def __init__(self, live: Mapping[str, Any] | None, sa_dialect: Any) -> None:
        self.documents: Mapping[str, Any] = (live or {}).get("tables") or {}
        self.enums: Mapping[str, Any] = (live or {}).get("enums") or {}
        self.type_names: Mapping[str, Any] = getattr(sa_dialect, "ischema_names", None) or {}
        self.built: dict[str, tuple[Any, set[str]]] = {}

    def table(self, name: str) -> Any:
        return self._built(name)[0]

    def objects(self, table_name: str, base: str, name: str) -> list[Any]:
        """The stand-ins of one object: one, or two for a column of a type the dialect does not name
        (untyped and a string: what is not known cannot decide)."""
        table, untyped = self._built(table_name)
        found = _model_object(table, base, name)
        if found is None or (base == "column" and name in untyped):
            return [_stand_in(table_name, base, name, t) for t in _STAND_IN_TYPES]
        return [found]

    def _built(self, name: str) -> tuple[Any, set[str]]:
        if name not in self.built:
            self.built[name] = self._build(name)
        return self.built[name]

    def _build(self, name: str) -> tuple[Any, set[str]]:
        from dbguard.core.schema import table_from_dict

        document = self.documents.get(name)
        if document is None:
            return sa.Table(name, sa.MetaData()), set()
        described = table_from_dict(name, document)
        untyped: set[str] = set()
        columns = []
        for column in described.columns:
            column_type = live_type(column.type, self.type_names, self.enums)
            if column_type is None:
                untyped.add(column.name)
            columns.append(sa.Column(column.name, column_type if column_type is not None else sa.types.NullType(),
                                     nullable=column.nullable, primary_key=column.name in described.primary_key))
        table = sa.Table(name, sa.MetaData(), *columns)
        for unique in described.uniques:
            if all(c in table.c for c in unique.columns):
                table.append_constraint(sa.UniqueConstraint(*unique.columns, name=unique.name))
        for fk in described.foreign_keys:
            if all(c in table.c for c in fk.columns):
                table.append_constraint(sa.ForeignKeyConstraint(
                    list(fk.columns), [f"{fk.ref_table}.{c}" for c in fk.ref_columns], name=fk.name,
                    ondelete=fk.on_delete, onupdate=fk.on_update))
        for index in described.indexes:
            # An expression key is not a column of the stand-in: the index shows its plain columns.
            keys = [table.c[c] for c in index.columns if c in table.c]
            if keys:
                sa.Index(index.name, *keys, unique=index.unique)
        return table, untyped


_ARGUMENTS = re.compile(r"\(([^()]*)\)")
_QUOTED = re.compile(r"'((?:[^']|'')*)'")


def live_type(text: str, type_names: Mapping[str, Any], enums: Mapping[str, Any] | None = None) -> Any | None:
    """The SQLAlchemy type a reflection of the catalog's ``text`` gives (its class, and the length,
    precision or values it carries), by the dialect's ``ischema_names``; None when it names none."""
    spelled = text.strip()
    if spelled.endswith("[]"):  # a PostgreSQL array of the element type
        item = live_type(spelled[:-2], type_names, enums)
        array = type_names.get("_array")
        return None if item is None or array is None else _made(array, item)
    if enums and spelled in enums:  # a PostgreSQL enum type, by its name
        from sqlalchemy.dialects.postgresql import ENUM

        return ENUM(*enums[spelled], name=spelled, create_type=False)
    found = _ARGUMENTS.search(spelled)
    words = _ARGUMENTS.sub("", spelled).lower().split()
    unsigned = "unsigned" in words
    words = [w for w in words if w not in ("unsigned", "zerofill")]
    cls = None
    while words and cls is None:  # 'interval day' is an interval, 'timestamp(3) with time zone' a timestamp
        key = " ".join(words)
        cls = type_names.get(key) or type_names.get(key.upper())
        words.pop()
    if cls is None:
        return None
    arguments = found.group(1) if found else ""
    if key in ("enum", "set"):
        return _made(cls, *(v.replace("''", "'") for v in _QUOTED.findall(arguments)))
    numbers = [int(n) for n in re.findall(r"\d+", arguments)]
    options: dict[str, Any] = {"unsigned": True} if unsigned else {}
    if isinstance(cls, type) and issubclass(cls, sa.types.String) and numbers:
        options["length"] = numbers[0]
    elif isinstance(cls, type) and issubclass(cls, sa.types.Numeric) and numbers:
        options["precision"] = numbers[0]
        if len(numbers) > 1:
            options["scale"] = numbers[1]
    return _made(cls, **options)


def _made(cls: Any, *args: Any, **options: Any) -> Any | None:
    """``cls(*args, **options)``, else with fewer of them, else None."""
    for attempt in ((args, options), (args, {}), ((), {})):
        try:
            return cls(*attempt[0], **attempt[1])
        except Exception:  # noqa: BLE001,S112 - a dialect type that takes other arguments: try plainer
            continue
    return None


# Two types a column's stand-in is shown with when the dialect names none for it (see _LiveObjects).
_STAND_IN_TYPES = (sa.types.NullType, sa.types.String)


def _stand_in(table_name: str, base: str, name: str, column_type: Any = sa.types.NullType) -> Any:
    """The database's object as far as its name goes (a column on a Table of its name)."""
    if base == "column":
        column = sa.Column(name, column_type())
        sa.Table(table_name, sa.MetaData()).append_column(column)
        return column
    if base == "index":
        return sa.Index(name)
    if base == "unique":
        return sa.UniqueConstraint(name=name)
    return sa.ForeignKeyConstraint([], [], name=name)
