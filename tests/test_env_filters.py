"""env.py's include hooks applied to drift (dbguard.drift.env_filters), without a database: what a hook
judges by the name and kind of an object is left out; what it judges by what dbguard cannot know of a
database-only object (its reflected type) stays reported; a failing hook leaves the difference."""

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
