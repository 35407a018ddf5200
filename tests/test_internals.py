"""Each private Alembic or SQLAlchemy name dbguard uses (dbguard/migrations/internals.py) still does
what dbguard relies on, with the installed versions: the newest in the main run, the lowest that
pyproject.toml allows in the floors job of .ci/run."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.config import Config
from alembic.script import ScriptDirectory

from dbguard.migrations import internals
from tests.projects import make_project


def test_migration_steps_resolve_as_the_alembic_command_does(tmp_path: Path) -> None:
    ini = make_project(tmp_path, f"sqlite:///{tmp_path / 'app.db'}", [("r1", "pass", "pass"), ("r2", "pass", "pass")])
    script = ScriptDirectory.from_config(Config(str(ini)))
    up = [step.revision.revision for step in internals.migration_steps(script, "up", "head", ())]
    assert up == ["r1", "r2"]
    assert [s.revision.revision for s in internals.migration_steps(script, "up", "+1", ("r1",))] == ["r2"]
    down = [step.revision.revision for step in internals.migration_steps(script, "down", "base", ("r2",))]
    assert down == ["r2", "r1"]


def test_the_op_proxy_is_bound_to_one_operations_instance_and_unbound() -> None:
    from alembic import op
    from alembic.operations import Operations
    from alembic.runtime.migration import MigrationContext

    context = MigrationContext.configure(dialect_name="sqlite", opts={"as_sql": True})
    operations = Operations(context)
    internals.bind_op_proxy(operations)
    try:
        assert op.get_context() is context
    finally:
        internals.unbind_op_proxy(operations)
    with pytest.raises((NameError, AttributeError)):  # no proxy any more: the revision's op is unbound
        op.get_context()


def test_config_attributes_can_be_swapped_and_restored() -> None:
    config = Config()
    original = config.attributes
    internals.replace_config_attributes(config, {"connection": "stand-in"})
    assert config.attributes == {"connection": "stand-in"}
    internals.replace_config_attributes(config, original)
    assert config.attributes is original


def test_constraint_names_unnamed_and_by_convention() -> None:
    metadata = sa.MetaData(naming_convention={"uq": "uq_%(table_name)s_%(column_0_name)s"})
    plain = sa.MetaData()
    named = sa.Table("t", metadata, sa.Column("a", sa.Integer), sa.UniqueConstraint("a"))
    bare = sa.Table("t", plain, sa.Column("a", sa.Integer), sa.UniqueConstraint("a"),
                    sa.UniqueConstraint("a", name="uq_given"))
    (by_convention,) = [c for c in named.constraints if isinstance(c, sa.UniqueConstraint)]
    unnamed, given = sorted((c for c in bare.constraints if isinstance(c, sa.UniqueConstraint)),
                            key=lambda c: str(c.name))
    assert internals.unnamed(None) and internals.unnamed(unnamed.name) and not internals.unnamed(given.name)
    assert internals.convention_name(by_convention, named) == "uq_t_a"
    assert internals.unnamed(internals.convention_name(unnamed, bare))


def test_cache_keys_sequences_and_ddl_if() -> None:
    one = internals.cache_key(sa.func.coalesce(sa.column("x"), sa.literal(1)))
    two = internals.cache_key(sa.func.coalesce(sa.column("x"), sa.literal(1)))
    other = internals.cache_key(sa.func.lower(sa.column("x")))
    assert one is not None and one == two and one != other
    metadata = sa.MetaData()
    sa.Sequence("alone_seq", metadata=metadata)
    table = sa.Table("t", metadata, sa.Column("id", sa.Integer, sa.Sequence("id_seq"), primary_key=True),
                     sa.Column("a", sa.Integer))
    assert {s.name for s in internals.sequences(metadata)} == {"alone_seq", "id_seq"}
    only_pg = sa.Index("ix_pg", table.c.a).ddl_if(dialect="postgresql")
    assert internals.ddl_if_dialects(only_pg) == ("postgresql",)
    assert internals.ddl_if_dialects(sa.Index("ix_all", table.c.a)) is None
