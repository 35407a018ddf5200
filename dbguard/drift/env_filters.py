"""env.py's ``include_name`` and ``include_object`` hooks, applied to drift against the models as
``alembic check`` applies them: a table, column, index or constraint that env.py leaves out of the
comparison (a project's hand-made indexes, tables another tool owns) is not drift.

Alembic hands the hooks SQLAlchemy objects: the models' own where the models have the object, and a
reflected one where only the database has it. dbguard reads the catalog without reflecting, so a
database-only object is a bare stand-in with the object's name (a Table, a Column on a Table of its
table's name, an Index or a constraint). A hook that fails on a stand-in, or on anything, leaves the difference
reported: a filter is never a reason to hide drift it could not judge.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
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


def left_out(drifts: Sequence[Drift], filters: EnvFilters | None, metadatas: Sequence[Any]) -> list[Drift]:
    """The drifts whose object (or whose table) env.py's hooks leave out of the comparison."""
    if filters is None or not drifts:
        return []
    # The default schema's tables first; one the models name in a schema (the connection's own, see
    # dbguard.drift.expected._model_tables) where no unqualified table has its name.
    tables = {t.name: t for m in metadatas for t in m.tables.values() if t.schema is None}
    for m in metadatas:
        for t in m.tables.values():
            tables.setdefault(t.name, t)
    judge = _Judge(filters, tables)
    return [d for d in drifts if d.table is not None and not judge.included(d)]


def kept(drifts: Sequence[Drift], filters: EnvFilters | None, metadatas: Sequence[Any]) -> list[Drift]:
    """The drifts env.py's hooks keep in the comparison (all but :func:`left_out`)."""
    out = {id(d) for d in left_out(drifts, filters, metadatas)}
    return [d for d in drifts if id(d) not in out]


class _Judge:
    def __init__(self, filters: EnvFilters, tables: dict[str, Any]) -> None:
        self.filters, self.tables = filters, tables
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
        # The stand-in knows a column's name, not its type: it is shown twice, with two types, and the
        # difference is left out only if the hook leaves out both (it judged by what is known).
        lives = [None] if kind == "missing" else [_stand_in(table_name, base, name, t) for t in _STAND_IN_TYPES]
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
            if reflected and not self._name_included(name, "table", None):
                verdict = False
            elif model_table is not None:
                verdict = self._object_included(model_table, name, "table", False,
                                                sa.Table(name, sa.MetaData()) if reflected else None)
            elif reflected:
                verdict = self._object_included(sa.Table(name, sa.MetaData()), name, "table", True, None)
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


# Two types a database-only column's stand-in is shown with (see _Judge.included).
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
