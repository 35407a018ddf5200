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


def test_a_deferred_revision_map_plans_without_importing_and_imports_on_use(tmp_path: Path) -> None:
    marker = tmp_path / "imported.txt"
    ini = make_project(tmp_path, f"sqlite:///{tmp_path / 'app.db'}", [
        ("r1", "pass", "pass"), ("r2", "pass", "pass")])
    versions_dir = ini.parent / "migrations" / "versions"
    for path in versions_dir.glob("*.py"):
        path.write_text(path.read_text() + f"\nopen({str(marker)!r}, 'a').write({path.stem!r} + '\\n')\n")
    script = ScriptDirectory.from_config(Config(str(ini)))
    internals.defer_revision_imports(script)
    steps = list(internals.migration_steps(script, "up", "head", ()))
    assert [s.revision.revision for s in steps] == ["r1", "r2"] and [s.doc for s in steps] == ["r1", "r2"]
    assert not marker.exists()  # planned, documented, nothing imported
    internals.import_revision_modules(script)
    assert sorted(marker.read_text().split()) == sorted(p.stem for p in versions_dir.glob("*.py"))
    assert callable(script.get_revision("r2").module.upgrade)


def test_a_revision_with_computed_identifiers_is_imported_as_alembic_would(tmp_path: Path) -> None:
    ini = make_project(tmp_path, f"sqlite:///{tmp_path / 'app.db'}", [("r1", "pass", "pass")])
    (path,) = (ini.parent / "migrations" / "versions").glob("*.py")
    path.write_text(path.read_text().replace("revision = 'r1'", "revision = 'r' + '1'"))
    script = ScriptDirectory.from_config(Config(str(ini)))
    internals.defer_revision_imports(script)
    assert not isinstance(script.get_revision("r1").module, internals.DeferredRevisionModule)


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


def test_the_checks_of_types_follow_sqlalchemys_rule_per_engine() -> None:
    from sqlalchemy.dialects import mysql, postgresql, sqlite
    from sqlalchemy.schema import CreateTable

    metadata = sa.MetaData()
    table = sa.Table("t", metadata, sa.Column("flag", sa.Boolean(create_constraint=True, name="ck_flag")),
                     sa.Column("mood", sa.Enum("a", "b", name="ck_mood", create_constraint=True)),
                     sa.Column("kind", sa.Enum("x", name="ck_kind", native_enum=False, create_constraint=True)),
                     sa.CheckConstraint("flag IS NOT NULL", name="ck_plain"))
    for sa_dialect in (postgresql.dialect(), mysql.dialect(), sqlite.dialect()):
        created = {c.name for c in table.constraints if isinstance(c, sa.CheckConstraint)
                   and internals.created_on(c, sa_dialect)}
        ddl = str(CreateTable(table).compile(dialect=sa_dialect))
        assert created == {name for name in ("ck_flag", "ck_mood", "ck_kind", "ck_plain")
                           if f"CONSTRAINT {name} CHECK" in ddl}, ddl
        assert "ck_kind" in created and "ck_plain" in created
        assert ("ck_flag" in created) is not sa_dialect.supports_native_boolean


def test_names_longer_than_the_engine_allows_are_cut_as_create_all_cuts_them() -> None:
    from sqlalchemy.dialects import postgresql
    from sqlalchemy.schema import CreateIndex

    metadata = sa.MetaData(naming_convention={"ix": "ix_%(column_0_label)s"})
    table = sa.Table("t" * 40, metadata, sa.Column("c" * 40, sa.Integer, index=True))
    (index,) = table.indexes
    name = internals.convention_name(index, table)
    cut = internals.ddl_name(name, postgresql.dialect(), index=True)
    assert len(cut) <= 63 and cut != name
    assert f"CREATE INDEX {cut} ON" in str(CreateIndex(index).compile(dialect=postgresql.dialect()))
    assert internals.ddl_name("ix_short", postgresql.dialect(), index=True) == "ix_short"


@pytest.mark.parametrize(("dialect", "recreate", "drop", "recreates"), [
    ("sqlite", "auto", False, False),  # add_column and create_index: plain ALTERs on SQLite too
    ("sqlite", "auto", True, True),    # drop_column: SQLite copies the table
    ("mysql", "auto", True, False),
    ("mysql", "always", False, True),
])
def test_batch_mode_says_whether_it_recreates_and_its_queue_can_be_emptied(
        dialect: str, recreate: str, drop: bool, recreates: bool) -> None:
    import contextlib
    import io

    from alembic.operations import Operations
    from alembic.runtime.migration import MigrationContext

    out = io.StringIO()
    context = MigrationContext.configure(dialect_name=dialect, opts={"as_sql": True, "output_buffer": out})
    operations = Operations(context)
    # Where it would recreate, the repair refuses: its exception ends the block before the flush.
    with contextlib.suppress(RuntimeError), \
            operations.batch_alter_table("t", recreate=recreate) as batch_op:
        batch_op.add_column(sa.Column("c", sa.Integer))
        batch_op.create_index("ix_t_c", ["c"])
        if drop:
            batch_op.drop_column("d")
        assert not out.getvalue()  # queued, not run
        assert internals.batch_recreates(batch_op) is recreates
        if recreates:
            raise RuntimeError("refused")
        internals.drop_batch_queue(batch_op)
        assert not internals.batch_recreates(batch_op)
    assert out.getvalue() == ""  # the flush ran nothing
    if not recreates:  # left alone, the same block's flush emits its ALTERs
        with operations.batch_alter_table("t") as batch_op:
            batch_op.add_column(sa.Column("c", sa.Integer))
        assert "ALTER TABLE t ADD" in out.getvalue()
