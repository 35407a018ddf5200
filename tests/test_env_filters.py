"""env.py's include hooks applied to drift (dbguard.drift.env_filters), without a database: what a hook
judges by the name and kind of an object is left out; a database-only object is shown as reflection
would show it (from the catalog's document: its type by the dialect's type names, an index's columns);
what dbguard cannot know (a type the dialect does not name, no document) cannot hide a difference; a
failing hook leaves the difference."""

import pytest
import sqlalchemy as sa

from dbguard.core.schema import Drift
from dbguard.drift.env_filters import EnvFilters, left_out

METADATA = sa.MetaData()
sa.Table("items", METADATA, sa.Column("id", sa.Integer, primary_key=True), sa.Column("name", sa.String(20)),
         sa.Index("ix_items_name", "name"))

EXTRA_COLUMN = Drift("extra_column", "items", "items.memo", None, "varchar(20)")
EXTRA_INDEX = Drift("extra_index", "items", "items.ix_manual_memo", None, "(memo)")
CHANGED_COLUMN = Drift("changed_column_type", "items", "items.name", "varchar(20)", "varchar(40)")
MISSING_INDEX = Drift("missing_index", "items", "items.ix_items_name", "(name)", None)
EXTRA_TABLE = Drift("extra_table", "legacy", "legacy", None, None)
DRIFTS = [EXTRA_COLUMN, EXTRA_INDEX, CHANGED_COLUMN, MISSING_INDEX, EXTRA_TABLE]


def _out(**hooks: object) -> list[Drift]:
    return left_out(DRIFTS, EnvFilters.of(hooks), [METADATA])


def test_no_hooks_leave_nothing_out() -> None:
    assert EnvFilters.of({}) is None
    assert left_out(DRIFTS, None, [METADATA]) == []


def test_hooks_that_judge_by_name_and_kind_leave_those_objects_out() -> None:
    def include_object(obj, name, type_, reflected, compare_to):
        return not (type_ == "index" and name.startswith("ix_manual_")) and name != "memo"

    def include_name(name, type_, parents):
        return not (type_ == "table" and name == "legacy")

    assert _out(include_object=include_object, include_name=include_name) == [EXTRA_COLUMN, EXTRA_INDEX, EXTRA_TABLE]


def test_the_models_own_object_is_shown_for_what_the_models_declare() -> None:
    seen = []

    def include_object(obj, name, type_, reflected, compare_to):
        seen.append((type(obj).__name__, name, reflected, compare_to is None))
        return not (name == "ix_items_name" and obj.table is not None and obj.table.name == "items")

    assert _out(include_object=include_object) == [MISSING_INDEX]
    assert ("Index", "ix_items_name", False, True) in seen


def test_a_hook_that_judges_a_database_only_column_by_its_type_leaves_it_reported() -> None:
    # A common hook: skip reflected columns whose type SQLAlchemy could not reflect. dbguard's stand-in
    # has no reflected type, so the hook cannot tell: the difference stays.
    def include_object(obj, name, type_, reflected, compare_to):
        column = obj if reflected else compare_to
        return not (type_ == "column" and column is not None and isinstance(column.type, sa.types.NullType))

    assert _out(include_object=include_object) == []


def test_a_failing_hook_leaves_the_difference_reported() -> None:
    def include_object(obj, name, type_, reflected, compare_to):
        return obj.info["managed"]  # KeyError on every object

    assert _out(include_object=include_object) == []


LIVE = {"tables": {"items": {
    "columns": [{"name": "id", "type": "integer", "nullable": False}, {"name": "name", "type": "character varying(40)"},
                {"name": "memo", "type": "character varying(20)"}, {"name": "shape", "type": "geometry(Point,4326)"}],
    "primary_key": ["id"],
    "indexes": [{"name": "ix_items_name", "columns": ["name"]}, {"name": "ix_manual_memo", "columns": ["memo"]}]}}}
EXTRA_SHAPE = Drift("extra_column", "items", "items.shape", None, "geometry(Point,4326)")


def test_a_database_only_object_is_shown_as_reflection_would_show_it() -> None:
    from sqlalchemy.dialects import postgresql

    seen: dict[str, object] = {}

    def include_object(obj, name, type_, reflected, compare_to):
        seen[name] = obj if reflected else compare_to
        if type_ == "column" and reflected and isinstance(obj.type, sa.String) and obj.type.length == 20:
            return False  # judged by the reflected type and its length
        return not (type_ == "index" and reflected and [c.name for c in obj.columns] == ["memo"])

    out = left_out(DRIFTS, EnvFilters.of({"include_object": include_object}), [METADATA], LIVE, postgresql.dialect())
    assert out == [EXTRA_COLUMN, EXTRA_INDEX]
    changed = seen["name"]
    assert isinstance(changed, sa.Column) and changed.type.length == 40 and changed.table.name == "items"


def test_a_column_of_a_type_the_dialect_does_not_name_is_judged_untyped_and_as_a_string() -> None:
    from sqlalchemy.dialects import postgresql

    def skips_untyped(obj, name, type_, reflected, compare_to):
        return not (type_ == "column" and reflected and isinstance(obj.type, sa.types.NullType))

    def skips_every_column(obj, name, type_, reflected, compare_to):
        return type_ != "column"

    for hook, out in ((skips_untyped, []), (skips_every_column, [EXTRA_SHAPE])):
        assert left_out([EXTRA_SHAPE], EnvFilters.of({"include_object": hook}), [METADATA], LIVE,
                        postgresql.dialect()) == out


@pytest.mark.parametrize(("dialect", "text", "expected"), [
    ("postgresql", "character varying(20)", ("VARCHAR", 20)),
    ("postgresql", "timestamp(3) with time zone", ("TIMESTAMP", None)),
    ("postgresql", "interval day", ("INTERVAL", None)),
    ("postgresql", "numeric(10,2)", ("NUMERIC", (10, 2))),
    ("postgresql", "bytea", ("BYTEA", None)),
    ("postgresql", "text[]", ("ARRAY", None)),
    ("postgresql", "status", ("ENUM", ("new", "paid"))),
    ("postgresql", "geometry(Point,4326)", None),
    ("mysql", "varchar(20)", ("VARCHAR", 20)),
    ("mysql", "bigint unsigned", ("BIGINT", None)),
    ("mysql", "enum('a','it''s')", ("ENUM", ("a", "it's"))),
    ("mysql", "decimal(10,2)", ("DECIMAL", (10, 2))),
    ("mysql", "double", ("DOUBLE", None)),
    ("mysql", "mediumblob", ("MEDIUMBLOB", None)),
    ("sqlite", "VARCHAR(20)", ("VARCHAR", 20)),
    ("sqlite", "BLOB", ("BLOB", None)),
])
def test_catalog_type_text_becomes_the_dialects_reflected_type(dialect: str, text: str, expected: object) -> None:
    import importlib

    from dbguard.drift.env_filters import live_type

    sa_dialect = importlib.import_module(f"sqlalchemy.dialects.{dialect}").dialect()
    made = live_type(text, sa_dialect.ischema_names, {"status": ["new", "paid"]})
    if expected is None:
        assert made is None
        return
    name, detail = expected
    assert type(made).__name__ == name, made
    if isinstance(detail, int):
        assert made.length == detail
    elif name in ("NUMERIC", "DECIMAL"):
        assert (made.precision, made.scale) == detail
    elif name == "ENUM":
        assert tuple(made.enums) == detail
    if text == "bigint unsigned":
        assert made.unsigned


def test_a_models_table_in_another_schema_is_not_the_database_only_table_of_its_name() -> None:
    from sqlalchemy.dialects import postgresql

    metadata = sa.MetaData()
    sa.Table("events", metadata, sa.Column("id", sa.Integer, primary_key=True), schema="audit")
    dialect = postgresql.dialect()
    dialect.default_schema_name = "public"
    extra = Drift("extra_table", "events", "events", None, "table")

    def include_object(obj, name, type_, reflected, compare_to):
        return not (type_ == "table" and obj.schema == "audit")

    assert left_out([extra], EnvFilters.of({"include_object": include_object}), [metadata], None, dialect) == []
