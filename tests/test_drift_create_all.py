"""Drift against models on a database that ``metadata.create_all()`` built and nobody touched: nothing
differs, on every engine and against every source (models, replayed migrations, a snapshot). Each
real change made to such a database afterwards is found under its own name.

The models hold what used to be false alarms: ``Float(53)``/``Double`` where MariaDB says ``double``,
CHECKs built from SQLAlchemy expressions (SQLAlchemy qualifies their columns), the CHECK of a
``Boolean``/``Enum(create_constraint=True)`` that only some engines get, DESC and mixed index keys,
a collation given through a MySQL variant of the column's type, MariaDB's BLOB(n)/TEXT(n), which
the catalog shows as the sized type made of them, and a key prefix as long as its VARCHAR."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from dbguard import api
from dbguard.core import schema as model
from dbguard.db.catalog import read_document
from dbguard.dialects import for_sqlalchemy_dialect
from dbguard.drift.checks import models_drift
from dbguard.drift.expected import schema_from_metadata
from tests.dbs import backend_of
from tests.projects import make_project
from tests.test_drift import execute as _execute
from tests.test_drift import settings as _settings

MODELS = '''
import sqlalchemy as sa
from sqlalchemy.dialects import mysql

metadata = sa.MetaData(naming_convention={
    "ix": "ix_%(column_0_label)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s",
})

orders = sa.Table(
    "orders", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("status", sa.String(10), nullable=False, server_default="new"),
    # MariaDB stores FLOAT(p) as float up to 24 bits of precision, as double above.
    sa.Column("total", sa.Float(53)),
    sa.Column("ratio", sa.Float(precision=53)),
    sa.Column("share", sa.Double),
    sa.Column("score", sa.Double().with_variant(mysql.DOUBLE(), "mysql", "mariadb")),
    sa.Column("small", sa.Float(24)),
    sa.Column("a", sa.Integer),
    sa.Column("b", sa.Integer),
    sa.Column("code", sa.String(50)
              .with_variant(mysql.VARCHAR(50, collation="utf8mb4_bin"), "mysql", "mariadb")
              .with_variant(sa.String(50, collation="C"), "postgresql")),
    # A CHECK where the engine has no native boolean (MariaDB, SQLite), none on PostgreSQL.
    sa.Column("paid", sa.Boolean(create_constraint=True, name="paid_bool"), nullable=False,
              server_default=sa.false()),
    # A native enum on PostgreSQL and MariaDB (no CHECK), a CHECK on SQLite.
    sa.Column("mood", sa.Enum("happy", "sad", name="mood", create_constraint=True)),
    # Never native: a CHECK everywhere, PostgreSQL too.
    sa.Column("kind", sa.Enum("retail", "trade", name="order_kind", native_enum=False, create_constraint=True)),
    sa.Column("account_id", sa.Integer, sa.ForeignKey("accounts.id")),
)
# Built from expressions: SQLAlchemy compiles these as orders.status IN (...), the servers keep status.
orders.append_constraint(sa.CheckConstraint(orders.c.status.in_(["new", "paid"]), name="status_known"))
orders.append_constraint(sa.CheckConstraint(orders.c.total >= 0, name="total_positive"))
sa.Index("ix_orders_a_desc", orders.c.a.desc())
sa.Index("ix_orders_a_b", orders.c.a, orders.c.b.desc())
sa.Index("ix_orders_b", orders.c.b)
# An InnoDB foreign key index can be one whose first key is descending.
sa.Index("ix_orders_account_desc", orders.c.account_id.desc(), orders.c.a)
sa.Index("ix_orders_lower_code", sa.func.lower(orders.c.code).desc(), orders.c.a).ddl_if(
    dialect=("postgresql", "sqlite"))
sa.Index("ix_orders_b_nulls", orders.c.b.desc().nulls_last(), orders.c.a.nulls_first()).ddl_if(
    dialect="postgresql")

accounts = sa.Table(
    "accounts", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    # The table's own collation, given again on a column: the catalog says the column has none of its own.
    sa.Column("login", sa.String(20).with_variant(mysql.VARCHAR(20, collation="utf8mb4_bin"), "mysql", "mariadb")),
    sa.Column("name", sa.String(20)),
    mysql_collate="utf8mb4_bin", mariadb_collate="utf8mb4_bin",
)

# MariaDB creates BLOB(n) as the smallest BLOB type holding n bytes (BLOB(65536) is MEDIUMBLOB, as
# buildbot's logchunks.content) and TEXT(n) as the smallest TEXT type holding n characters.
chunks = sa.Table(
    "chunks", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("content", sa.LargeBinary(65536)),
    sa.Column("tiny", sa.LargeBinary(200)),
    sa.Column("note", sa.Text().with_variant(sa.Text(20000), "mysql", "mariadb")),  # utf8mb4: MEDIUMTEXT
    sa.Column("short_note", sa.Text().with_variant(sa.Text(60), "mysql", "mariadb")),  # utf8mb4: TINYTEXT
    sa.Column("label", sa.String(32)),
    mysql_charset="utf8mb4", mariadb_charset="utf8mb4",
)
# A key prefix as long as the VARCHAR is the whole column: the catalog keeps none (dagster's
# idx_bulk_actions on key VARCHAR(32), mysql_length=32); a shorter one stays.
sa.Index("ix_chunks_label_whole", chunks.c.label, mysql_length=32, mariadb_length=32)
sa.Index("ix_chunks_label_part", chunks.c.label, chunks.c.id, mysql_length={"label": 8}, mariadb_length={"label": 8})

# The naming convention's index name is longer than PostgreSQL and MariaDB allow: SQLAlchemy cuts it.
sa.Table(
    "order_line_items_with_a_rather_long_name", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("warehouse_location_identifier", sa.Integer, index=True),
)
'''

ENV_MODELS = '''
import importlib.util as _util
_spec = _util.spec_from_file_location("dbguard_create_all_models", {path!r})
_models = _util.module_from_spec(_spec)
_spec.loader.exec_module(_models)
target_metadata = _models.metadata
'''


def _project_with_models(url: str, tmp_path: Path, revision: str, models_text: str) -> Path:
    """An Alembic project of one revision whose env.py's target_metadata is ``models_text``'s
    ``metadata``, upgraded to head."""
    ini = make_project(tmp_path, url, [("r1", revision)])
    models = ini.parent / "create_all_models.py"
    models.write_text(textwrap.dedent(models_text))
    env_py = ini.parent / "migrations" / "env.py"
    env_py.write_text(env_py.read_text().replace("target_metadata = None", ENV_MODELS.format(path=str(models))))
    command.upgrade(Config(str(ini)), "head")
    return ini


def _project(url: str, tmp_path: Path) -> Path:
    """An Alembic project whose one revision is ``target_metadata.create_all()``, upgraded to head."""
    return _project_with_models(url, tmp_path, 'op.get_context().opts["target_metadata"].create_all(op.get_bind())',
                                MODELS)


def _found(settings, against: str) -> set[tuple[str, str]]:
    report = api.drift(settings, against=against)
    assert report.exit_code == (1 if report.drifts else 0)
    return {(d.kind, d.object) for d in report.drifts}


def _models_in_process(url: str, ini: Path) -> tuple[list[model.Drift], list[model.Drift]]:
    """The models against the catalog as the drift command compares them in process (table digests
    first) and as a fleet's worker does (the models' schema against the catalog's document)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("dbguard_create_all_models_here", ini.parent / "create_all_models.py")
    assert spec is not None and spec.loader is not None
    models = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(models)
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            dialect = for_sqlalchemy_dialect(conn.dialect)
            by_digests = models_drift(conn, dialect, [models.metadata], ("alembic_version",))
            expected = schema_from_metadata([models.metadata], conn.dialect, dialect)
            document = model.document_without_tables(read_document(conn, dialect), ("alembic_version",))
            return by_digests, model.diff_models(expected, document)
    finally:
        engine.dispose()


def _snapshot(settings, path: Path, live: bool = False) -> str:
    api.snapshot(settings, output=str(path), live=live)
    return str(path)


def test_a_database_create_all_built_has_no_drift_from_its_models(db_url, tmp_path):
    ini = _project(db_url, tmp_path)
    s = _settings(ini, db_url, tmp_path)
    for against in ("models", "migrations", _snapshot(s, tmp_path / "replayed.json")):
        assert _found(s, against) == set(), against
    by_digests, by_document = _models_in_process(db_url, ini)
    assert by_digests == [] and by_document == [], [d.describe() for d in by_digests + by_document]
    # The CLI's way: the catalog read (and digested) in a forked child.
    cli = subprocess.run([sys.executable, "-m", "dbguard.cli", "-c", str(ini), "--url", db_url, "drift"],
                         check=False, capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert cli.returncode == 0, cli.stdout + cli.stderr
    # The readers keep each key's order: the snapshot says which keys descend.
    doc = read_document_of(db_url)
    indexes = {ix["name"]: ix["columns"] for ix in doc["tables"]["orders"]["indexes"]}
    assert indexes["ix_orders_a_desc"] == ["a DESC"]
    assert indexes["ix_orders_a_b"] == ["a", "b DESC"]
    assert indexes["ix_orders_b"] == ["b"]
    if backend_of(db_url) == "postgresql":
        assert indexes["ix_orders_b_nulls"] == ["b DESC NULLS LAST", "a NULLS FIRST"]
        assert indexes["ix_orders_lower_code"][0].endswith(" DESC")


def read_document_of(url: str) -> dict:
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            return read_document(conn, for_sqlalchemy_dialect(conn.dialect))
    finally:
        engine.dispose()


@pytest.mark.parametrize("url", ["pg_url", "mysql_url"])
def test_float_53_is_a_double_and_float_24_is_not(request, url, tmp_path):
    url = request.getfixturevalue(url)
    ini = _project(url, tmp_path)
    s = _settings(ini, url, tmp_path)
    double = "double precision" if backend_of(url) == "postgresql" else "DOUBLE"
    _execute(url, f"ALTER TABLE orders {'ALTER COLUMN small TYPE' if double != 'DOUBLE' else 'MODIFY small'} {double}")
    for against in ("models", "migrations"):
        assert _found(s, against) == {("changed_column_type", "orders.small")}, against


def test_a_key_prefix_covering_the_whole_varchar_is_the_whole_column(mysql_url, tmp_path):
    _project(mysql_url, tmp_path)
    indexes = {ix["name"]: ix["columns"] for ix in read_document_of(mysql_url)["tables"]["chunks"]["indexes"]}
    assert indexes["ix_chunks_label_whole"] == ["label"] and indexes["ix_chunks_label_part"] == ["label(8)", "id"]


def test_a_sized_blob_or_text_is_the_type_mariadb_made_of_it_and_a_changed_one_is_found(mysql_url, tmp_path):
    ini = _project(mysql_url, tmp_path)
    s = _settings(ini, mysql_url, tmp_path)
    columns = {c["name"]: c["type"] for c in read_document_of(mysql_url)["tables"]["chunks"]["columns"]}
    assert [columns[c] for c in ("content", "tiny", "note", "short_note")] == [
        "mediumblob", "tinyblob", "mediumtext", "tinytext"]
    _execute(mysql_url, "ALTER TABLE chunks MODIFY content LONGBLOB", "ALTER TABLE chunks MODIFY note LONGTEXT")
    for against in ("models", "migrations"):
        assert _found(s, against) == {("changed_column_type", "chunks.content"),
                                      ("changed_column_type", "chunks.note")}, against


def _check_statements(name: str, expression: str) -> list[str]:
    return [f"ALTER TABLE orders DROP CONSTRAINT {name}",
            f"ALTER TABLE orders ADD CONSTRAINT {name} CHECK ({expression})"]


@pytest.mark.parametrize("url", ["pg_url", "mysql_url"])
def test_a_check_built_from_an_expression_matches_and_a_changed_one_is_found(request, url, tmp_path):
    url = request.getfixturevalue(url)
    ini = _project(url, tmp_path)
    s = _settings(ini, url, tmp_path)
    _execute(url, *_check_statements("ck_orders_status_known", "status IN ('new', 'paid', 'void')"))
    # The models' checks are matched by what they say (their names are the server's business)...
    assert _found(s, "models") == {("missing_check", "orders.check"),
                                   ("extra_check", "orders.ck_orders_status_known")}
    # ... a replay's by name.
    assert _found(s, "migrations") == {("changed_check", "orders.ck_orders_status_known")}


@pytest.mark.parametrize("url", ["pg_url", "mysql_url"])
def test_the_checks_of_booleans_and_enums_are_expected_where_sqlalchemy_creates_them(request, url, tmp_path):
    url = request.getfixturevalue(url)
    ini = _project(url, tmp_path)
    s = _settings(ini, url, tmp_path)
    checks = {c["name"] for c in read_document_of(url)["tables"]["orders"]["checks"]}
    if backend_of(url) == "postgresql":
        # Native boolean and enum: no CHECK for paid or mood; the non-native enum has its own.
        assert checks == {"ck_orders_status_known", "ck_orders_total_positive", "ck_orders_order_kind"}
    else:
        # No native boolean: a CHECK for paid; a native ENUM for mood.
        assert checks == {"ck_orders_status_known", "ck_orders_total_positive", "ck_orders_order_kind",
                          "ck_orders_paid_bool"}
    dropped = ["ck_orders_order_kind"] + (["ck_orders_paid_bool"] if backend_of(url) == "mysql" else [])
    _execute(url, *(f"ALTER TABLE orders DROP CONSTRAINT {name}" for name in dropped))
    assert _found(s, "models") == {("missing_check", "orders.check")}
    missing = [d for d in api.drift(s, against="models").drifts if d.kind == "missing_check"]
    assert len(missing) == len(dropped), [d.describe() for d in missing]
    assert _found(s, "migrations") == {("missing_check", f"orders.{name}") for name in dropped}


def _reindex(engine: str, name: str, columns: str) -> list[str]:
    drop = f"DROP INDEX {name}" + (" ON orders" if engine == "mysql" else "")
    return [drop, f"CREATE INDEX {name} ON orders ({columns})"]


def test_descending_index_keys_are_read_and_a_changed_order_is_found(db_url, tmp_path):
    ini = _project(db_url, tmp_path)
    s = _settings(ini, db_url, tmp_path)
    engine = backend_of(db_url)
    _execute(db_url, *_reindex(engine, "ix_orders_a_desc", "a"), *_reindex(engine, "ix_orders_a_b", "a DESC, b"))
    expected = {("changed_index", "orders.ix_orders_a_desc"), ("changed_index", "orders.ix_orders_a_b")}
    if engine == "postgresql":
        # NULLS LAST is PostgreSQL's default for an ascending key, not for a descending one.
        _execute(db_url, *_reindex(engine, "ix_orders_b_nulls", "b DESC NULLS FIRST, a NULLS FIRST"))
        expected.add(("changed_index", "orders.ix_orders_b_nulls"))
    for against in ("models", "migrations"):
        assert _found(s, against) == expected, against
    report = api.drift(s, against="models")
    changed = next(d for d in report.drifts if d.object == "orders.ix_orders_a_b")
    assert (changed.expected, changed.actual) == ("(a, b DESC)", "(a DESC, b)")


@pytest.mark.parametrize("url", ["pg_url", "mysql_url"])
def test_a_collation_given_through_a_variant_is_the_columns_and_a_changed_one_is_found(request, url, tmp_path):
    url = request.getfixturevalue(url)
    ini = _project(url, tmp_path)
    s = _settings(ini, url, tmp_path)
    columns = {c["name"]: c for c in read_document_of(url)["tables"]["orders"]["columns"]}
    other = {"postgresql": ('ALTER TABLE orders ALTER COLUMN code TYPE varchar(50) COLLATE "POSIX"', "C", "POSIX"),
             "mysql": ("ALTER TABLE orders MODIFY code VARCHAR(50) COLLATE utf8mb4_unicode_ci", "utf8mb4_bin",
                       "utf8mb4_unicode_ci")}[backend_of(url)]
    assert columns["code"]["type"] in ("character varying(50)", "varchar(50)")
    assert columns["code"]["collation"] == other[1]
    _execute(url, other[0])
    for against in ("models", "migrations"):
        report = api.drift(s, against=against)
        assert [(d.kind, d.object, d.expected, d.actual) for d in report.drifts] == [
            ("changed_column_collation", "orders.code", other[1], other[2])], against


def _rename(engine: str, old: str, new: str) -> str:
    if engine == "mysql":
        return f"ALTER TABLE orders RENAME INDEX {old} TO {new}"
    if engine == "postgresql":
        return f"ALTER INDEX {old} RENAME TO {new}"
    return f"DROP INDEX {old}; CREATE INDEX {new} ON orders (b)"


def test_a_renamed_index_is_found_under_its_own_kind(db_url, tmp_path):
    ini = _project(db_url, tmp_path)
    s = _settings(ini, db_url, tmp_path)
    engine = backend_of(db_url)
    replayed = _snapshot(s, tmp_path / "replayed.json")
    for statement in _rename(engine, "ix_orders_b", "ix_orders_b_old").split("; "):
        _execute(db_url, statement)
    for against in ("models", "migrations", replayed):
        report = api.drift(s, against=against)
        assert [(d.kind, d.object, d.expected, d.actual, d.severity) for d in report.drifts] == [
            ("renamed_index", "orders.ix_orders_b", "ix_orders_b", "ix_orders_b_old", model.ERROR)], against
        assert report.exit_code == 1
        assert report.drifts[0].describe() == (
            "renamed index orders.ix_orders_b: expected ix_orders_b, found ix_orders_b_old")
    # The other way round: the renamed schema is the reference, and the live index gets its name back.
    renamed = _snapshot(s, tmp_path / "renamed.json", live=True)
    for statement in _rename(engine, "ix_orders_b_old", "ix_orders_b").split("; "):
        _execute(db_url, statement)
    assert _found(s, renamed) == {("renamed_index", "orders.ix_orders_b_old")}
    assert _found(s, "models") == set()


@pytest.mark.parametrize("url", ["pg_url", "mysql_url"])
def test_enum_values_nullability_and_defaults_that_changed_are_still_found(request, url, tmp_path):
    url = request.getfixturevalue(url)
    ini = _project(url, tmp_path)
    s = _settings(ini, url, tmp_path)
    if backend_of(url) == "postgresql":
        _execute(url, "ALTER TYPE mood ADD VALUE 'meh'",
                 "ALTER TABLE orders ALTER COLUMN status DROP NOT NULL",
                 "ALTER TABLE orders ALTER COLUMN status SET DEFAULT 'open'")
        enum = ("extra_enum_value", "enum mood")
    else:
        _execute(url, "ALTER TABLE orders MODIFY mood ENUM('happy')",
                 "ALTER TABLE orders MODIFY status VARCHAR(10) NULL DEFAULT 'open'")
        enum = ("missing_enum_value", "orders.mood")
    expected = {enum, ("changed_column_nullable", "orders.status"), ("changed_column_default", "orders.status")}
    for against in ("models", "migrations"):
        assert _found(s, against) == expected, against


# The models' side on its own, for each engine's SQLAlchemy dialect, without a server ---------------


def _converted(dialect_name: str, version: tuple[int, ...] = ()) -> dict[str, model.Table]:
    import importlib.util
    import tempfile

    from sqlalchemy.dialects import registry

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "models.py"
        path.write_text(textwrap.dedent(MODELS))
        spec = importlib.util.spec_from_file_location("dbguard_create_all_models_offline", path)
        assert spec is not None and spec.loader is not None
        models = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(models)
    sa_dialect = registry.load("mysql" if dialect_name == "mariadb" else dialect_name)()
    if dialect_name == "mariadb":
        sa_dialect.is_mariadb = True
    sa_dialect.server_version_info = version or None
    schema = schema_from_metadata([models.metadata], sa_dialect, for_sqlalchemy_dialect(sa_dialect))
    return {t.name: t for t in schema.tables}


@pytest.mark.parametrize(("dialect_name", "typed"), [
    ("postgresql", {"ck_orders_order_kind"}),
    ("mariadb", {"ck_orders_order_kind", "ck_orders_paid_bool"}),
    ("sqlite", {"ck_orders_order_kind", "ck_orders_paid_bool", "ck_orders_mood"}),
])
def test_the_models_expect_a_types_check_only_where_sqlalchemy_creates_it(dialect_name, typed):
    orders = _converted(dialect_name)["orders"]
    assert {c.name for c in orders.checks} == typed | {"ck_orders_status_known", "ck_orders_total_positive"}
    # Written as CREATE TABLE writes them: without the table.
    assert "status IN ('new', 'paid')" in {c.expression for c in orders.checks}


def test_the_models_collation_is_the_one_the_ddl_writes():
    maria = _converted("mariadb")
    code = maria["orders"].column("code")
    assert code is not None and (code.type, code.collation) == ("varchar(50)", "utf8mb4_bin")
    login = maria["accounts"].column("login")  # the table's own collation: none of its own, as the catalog says
    assert login is not None and (login.type, login.collation) == ("varchar(20)", None)
    pg = _converted("postgresql")["orders"].column("code")
    assert pg is not None and (pg.type, pg.collation) == ("character varying(50)", "C")


def test_the_models_index_keys_carry_their_order_unless_the_server_drops_it():
    keys = {ix.name: ix.columns for ix in _converted("postgresql")["orders"].indexes}
    assert keys["ix_orders_a_desc"] == ("a DESC",) and keys["ix_orders_a_b"] == ("a", "b DESC")
    assert keys["ix_orders_b_nulls"] == ("b DESC NULLS LAST", "a NULLS FIRST")
    assert keys["ix_orders_lower_code"] == ("lower(code) DESC", "a")
    assert {ix.name: ix.columns for ix in _converted("mariadb", (10, 11, 19))["orders"].indexes}[
        "ix_orders_a_b"] == ("a", "b DESC")
    # MariaDB before 10.8 takes DESC and builds the key ascending: so does the expected schema.
    assert {ix.name: ix.columns for ix in _converted("mariadb", (10, 6, 21))["orders"].indexes}[
        "ix_orders_a_b"] == ("a", "b")


def test_a_convention_name_too_long_for_the_engine_is_cut_as_sqlalchemy_cuts_it():
    from sqlalchemy.dialects import postgresql
    from sqlalchemy.schema import CreateIndex

    metadata = sa.MetaData(naming_convention={"ix": "ix_%(column_0_label)s"})
    table = sa.Table("t" * 40, metadata, sa.Column("c" * 40, sa.Integer, index=True))
    sa_dialect = postgresql.dialect()
    (index,) = schema_from_metadata([metadata], sa_dialect, for_sqlalchemy_dialect(sa_dialect)).tables[0].indexes
    assert index.name is not None and len(index.name) < 63
    assert f"CREATE INDEX {index.name} ON" in str(CreateIndex(next(iter(table.indexes))).compile(dialect=sa_dialect))


def _dialect_types_models(kind: str) -> sa.MetaData:
    """Each engine's own types and the constraint and index options create_all writes for it."""
    from sqlalchemy.dialects import mysql as my
    from sqlalchemy.dialects import postgresql as pg

    metadata = sa.MetaData()
    sa.Table("parent", metadata, sa.Column("id", sa.Integer, primary_key=True))
    fk = sa.ForeignKeyConstraint(["pid"], ["parent.id"], name="fk_kinds_parent", ondelete="SET NULL",
                                 onupdate="CASCADE", **({"deferrable": True, "initially": "DEFERRED"}
                                                        if kind == "postgresql" else {}))
    if kind == "postgresql":
        sa.Table("kinds", metadata,
                 sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
                 sa.Column("iv", sa.Interval), sa.Column("arr", pg.ARRAY(sa.Integer)), sa.Column("inet", pg.INET),
                 sa.Column("cidr", pg.CIDR), sa.Column("mac", pg.MACADDR), sa.Column("tsv", pg.TSVECTOR),
                 sa.Column("money", pg.MONEY), sa.Column("bits", pg.BIT(3)), sa.Column("ts", sa.DateTime(timezone=True)),
                 sa.Column("tm", sa.Time(timezone=True)), sa.Column("dbl", sa.Double), sa.Column("r", sa.REAL),
                 sa.Column("uuid", sa.Uuid), sa.Column("ch", sa.CHAR(3)), sa.Column("uni", sa.UnicodeText),
                 sa.Column("bin", sa.LargeBinary), sa.Column("pid", sa.Integer), sa.Column("a", sa.Integer),
                 sa.Column("b", sa.String(20)), fk, sa.UniqueConstraint("a", "b", name="uq_kinds_a_b"),
                 sa.Index("ix_kinds_incl", "a", postgresql_include=["b"]),
                 sa.Index("ix_kinds_gin", "tsv", postgresql_using="gin"),
                 sa.Index("ix_kinds_lower", sa.func.lower(sa.column("b"))))
    else:
        sa.Table("kinds", metadata,
                 sa.Column("id", sa.Integer, primary_key=True), sa.Column("ti", my.TINYINT),
                 sa.Column("mi", my.MEDIUMINT), sa.Column("ui", my.INTEGER(unsigned=True)), sa.Column("mt", my.MEDIUMTEXT),
                 sa.Column("lt", my.LONGTEXT), sa.Column("st", my.SET("a", "b")), sa.Column("yr", my.YEAR),
                 sa.Column("bit", my.BIT(3)), sa.Column("dt", my.DATETIME(fsp=6)), sa.Column("bl", my.LONGBLOB),
                 sa.Column("body", sa.Text), sa.Column("b", sa.String(200)), sa.Column("pid", sa.Integer), fk,
                 sa.Index("ix_kinds_prefix", "b", mysql_length=10),
                 sa.Index("ix_kinds_ft", "body", mysql_prefix="FULLTEXT"))
    return metadata


@pytest.mark.parametrize("url", ["pg_url", "mysql_url"])
def test_each_engines_own_types_and_options_have_no_drift_from_their_models(request, url, tmp_path):
    """ARRAY, INET, TSVECTOR, MONEY, INTERVAL, a deferrable foreign key, INCLUDE and GIN indexes on
    PostgreSQL; TINYINT, MEDIUMINT, unsigned, SET, YEAR (which MariaDB shows as year(4)), BIT, LONGBLOB,
    a prefix index and FULLTEXT on MariaDB: nothing differs; a changed one is found."""
    url = request.getfixturevalue(url)
    kind = backend_of(url)
    metadata = _dialect_types_models(kind)
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.begin() as conn:
            metadata.create_all(conn)
        with engine.connect() as conn:
            dialect = for_sqlalchemy_dialect(conn.dialect)
            assert models_drift(conn, dialect, [metadata], model.never_drift("dbguard_")) == []
            conn.exec_driver_sql("ALTER TABLE kinds ADD COLUMN extra INTEGER")
            conn.commit()
            found = models_drift(conn, dialect, [metadata], model.never_drift("dbguard_"))
        assert [(d.kind, d.object) for d in found] == [("extra_column", "kinds.extra")]
    finally:
        engine.dispose()


ENV_DIALECT_MODELS = '''
from tests.test_drift_create_all import _dialect_types_models
target_metadata = _dialect_types_models({kind!r})
'''


@pytest.mark.parametrize("url", ["pg_url", "mysql_url"])
def test_each_engines_own_types_replayed_from_autogenerated_migrations_have_no_drift(request, url, tmp_path):
    """The same schema as a project builds it: a revision autogenerated from the models, the database
    made by ``create_all`` and stamped. The replayed migrations, the models and the live catalog agree;
    a changed index is found against the migrations under its own name."""
    url = request.getfixturevalue(url)
    kind = backend_of(url)
    ini = make_project(tmp_path, url, [])
    env_py = ini.parent / "migrations" / "env.py"
    env_py.write_text(env_py.read_text().replace("target_metadata = None", ENV_DIALECT_MODELS.format(kind=kind)))
    config = Config(str(ini))
    command.revision(config, message="kinds", autogenerate=True, rev_id="a1")
    rendered = next((ini.parent / "migrations" / "versions").glob("a1_*.py")).read_text()
    assert "op.create_table('kinds'" in rendered and "op.create_index('ix_kinds_" in rendered
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.begin() as conn:
            _dialect_types_models(kind).create_all(conn)
    finally:
        engine.dispose()
    command.stamp(config, "head")
    s = _settings(ini, url, tmp_path)
    assert _found(s, "models") == set()
    assert _found(s, "migrations") == set()
    _execute(url, "DROP INDEX ix_kinds_prefix ON kinds" if kind == "mysql" else "DROP INDEX ix_kinds_incl")
    assert _found(s, "migrations") == {("missing_index", "kinds.ix_kinds_prefix" if kind == "mysql"
                                        else "kinds.ix_kinds_incl")}


TWICE_MODELS = '''
import sqlalchemy as sa

metadata = sa.MetaData(naming_convention={"ix": "ix_%(table_name)s__%(column_0_N_name)s"})
# The column's index=True and the table's Index() name the same index on the same column (prefect's
# artifact.key): SQLAlchemy keeps two Index objects, the database has one.
artifacts = sa.Table(
    "artifacts", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("key", sa.String(40), index=True),
    sa.Column("kind", sa.String(40)),
    sa.Index("ix_artifacts__key", "key"),
)
'''

TWICE_REVISION = ('op.create_table("artifacts", sa.Column("id", sa.Integer, primary_key=True), '
                  'sa.Column("key", sa.String(40)), sa.Column("kind", sa.String(40))); '
                  'op.create_index("ix_artifacts__key", "artifacts", ["key"])')


def test_an_index_the_models_declare_twice_is_expected_once(db_url, tmp_path):
    ini = _project_with_models(db_url, tmp_path, TWICE_REVISION, TWICE_MODELS)
    s = _settings(ini, db_url, tmp_path)
    assert _found(s, "models") == set()
    # A real difference in that index is still found.
    _execute(db_url, "DROP INDEX ix_artifacts__key" + (" ON artifacts" if backend_of(db_url) == "mysql" else ""))
    assert _found(s, "models") == {("missing_index", "artifacts.ix_artifacts__key")}


UNCACHED_MODELS = '''
import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles

metadata = sa.MetaData()


class Zero(sa.sql.expression.ColumnElement):
    """A project's own construct without inherit_cache (prefect's GenerateUUID): SQLAlchemy warns
    when its cache key is asked for."""
    type = sa.Integer()


@compiles(Zero)
def _zero(element, compiler, **kw):
    return "0"


counters = sa.Table(
    "counters", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("n", sa.Integer, nullable=False, server_default=Zero()),
)
'''


def test_a_models_default_sqlalchemy_cannot_cache_adds_no_warning(db_url, tmp_path):
    create = ('op.create_table("counters", sa.Column("id", sa.Integer, primary_key=True), '
              'sa.Column("n", sa.Integer, nullable=False, server_default="0"))')
    ini = _project_with_models(db_url, tmp_path, create, UNCACHED_MODELS)
    cli = subprocess.run([sys.executable, "-m", "dbguard.cli", "-c", str(ini), "--url", db_url, "drift"],
                         check=False, capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert cli.returncode == 0, cli.stdout + cli.stderr
    assert "SAWarning" not in cli.stderr and "inherit_cache" not in cli.stderr, cli.stderr


INTERVAL_MODELS = '''
import datetime
import sqlalchemy as sa

metadata = sa.MetaData()
# prefect's flow_run.total_run_time: the server keeps '0' as '00:00:00'::interval.
runs = sa.Table(
    "runs", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("total_run_time", sa.Interval, nullable=False, server_default="0"),
    sa.Column("grace", sa.Interval, nullable=False, server_default="1 day 2 hours"),
)
'''


def test_an_interval_default_the_server_rewrites_is_no_drift(pg_url, tmp_path):
    create = ('op.create_table("runs", sa.Column("id", sa.Integer, primary_key=True), '
              'sa.Column("total_run_time", sa.Interval, nullable=False, server_default="0"), '
              'sa.Column("grace", sa.Interval, nullable=False, server_default="1 day 2 hours"))')
    ini = _project_with_models(pg_url, tmp_path, create, INTERVAL_MODELS)
    s = _settings(ini, pg_url, tmp_path)
    assert _found(s, "models") == set()
    _execute(pg_url, "ALTER TABLE runs ALTER COLUMN grace SET DEFAULT '1 day 3 hours'")
    assert _found(s, "models") == {("changed_column_default", "runs.grace")}


COLUMN_CHECK_MODELS = '''
import sqlalchemy as sa

metadata = sa.MetaData(naming_convention={"ck": "ck_%(table_name)s_%(constraint_name)s"})
# arize-phoenix declares its CHECKs on the column (mapped_column(CheckConstraint(...))): SQLAlchemy keeps
# them in column.constraints, not table.constraints; its migrations create them as the table's.
evaluators = sa.Table(
    "evaluators", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("kind", sa.String(10), sa.CheckConstraint("kind IN ('LLM', 'CODE')", name="valid_kind"), nullable=False),
)
'''


def test_a_check_the_models_give_a_column_is_expected(db_url, tmp_path):
    create = ('op.create_table("evaluators", sa.Column("id", sa.Integer, primary_key=True), '
              'sa.Column("kind", sa.String(10), nullable=False), '
              'sa.CheckConstraint("kind IN (\'LLM\', \'CODE\')", name="valid_kind"))')  # under env.py's convention
    ini = _project_with_models(db_url, tmp_path, create, COLUMN_CHECK_MODELS)
    s = _settings(ini, db_url, tmp_path)
    assert _found(s, "models") == set()  # was: extra_check evaluators.ck_evaluators_valid_kind
    if backend_of(db_url) == "sqlite":
        return  # SQLite drops no constraint in place
    _execute(db_url, "ALTER TABLE evaluators DROP CONSTRAINT ck_evaluators_valid_kind")
    assert _found(s, "models") == {("missing_check", "evaluators.check")}  # models CHECKs pair by expression


JSON_MODELS = '''
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

metadata = sa.MetaData()
# arize-phoenix's agent_session_messages and spans: PostgreSQL writes the JSON operators' right operand
# back with a cast ('id'::text, '{session,id}'::text[] without the space), a boolean default 'false' as
# false, and a jsonb default as jsonb prints it (keys by length).
messages = sa.Table(
    "messages", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("message", postgresql.JSONB, nullable=False),
    sa.Column("message_id", sa.String, sa.Computed("CAST(message ->> 'id' AS VARCHAR)", persisted=True)),
    sa.Column("compact", sa.Boolean, sa.Computed(
        "coalesce(CAST(message #>> '{metadata, phoenix, compact}' AS BOOLEAN), false)", persisted=True)),
    sa.Column("first", postgresql.JSONB, sa.Computed("message -> 0 -> 'a'", persisted=True)),
    sa.Column("is_first_party", sa.Boolean, nullable=False, server_default="false"),
    sa.Column("mapping", postgresql.JSONB, nullable=False,
              server_default='{"literal_mapping": {}, "path_mapping": {"a": [1, 2]}}'),
    sa.Index("ix_messages_session", sa.column("message", postgresql.JSONB)[["session", "id"]].as_string(),
             postgresql_where=sa.column("message", postgresql.JSONB)[["session", "id"]].as_string().is_not(None)),
)
'''


def test_json_operators_and_defaults_the_server_writes_back_are_no_drift(pg_url, tmp_path):
    create = ('op.create_table("messages", sa.Column("id", sa.Integer, primary_key=True), '
              'sa.Column("message", sa.dialects.postgresql.JSONB, nullable=False), '
              'sa.Column("message_id", sa.String, sa.Computed("CAST(message ->> \'id\' AS VARCHAR)", persisted=True)), '
              'sa.Column("compact", sa.Boolean, sa.Computed('
              '"coalesce(CAST(message #>> \'{metadata, phoenix, compact}\' AS BOOLEAN), false)", persisted=True)), '
              'sa.Column("first", sa.dialects.postgresql.JSONB, sa.Computed("message -> 0 -> \'a\'", persisted=True)), '
              'sa.Column("is_first_party", sa.Boolean, nullable=False, server_default="false"), '
              'sa.Column("mapping", sa.dialects.postgresql.JSONB, nullable=False, '
              'server_default=\'{"literal_mapping": {}, "path_mapping": {"a": [1, 2]}}\')); '
              'op.execute("CREATE INDEX ix_messages_session ON messages ((CAST(message #>> \'{session, id}\' AS VARCHAR)))'
              ' WHERE CAST((message #>> \'{session, id}\') AS VARCHAR) IS NOT NULL")')
    ini = _project_with_models(pg_url, tmp_path, create, JSON_MODELS)
    s = _settings(ini, pg_url, tmp_path)
    assert _found(s, "models") == set()
    # Other paths, another boolean and another document are still found.
    _execute(pg_url, "DROP INDEX ix_messages_session",
             "CREATE INDEX ix_messages_session ON messages ((CAST(message #>> '{session, key}' AS VARCHAR)))"
             " WHERE CAST((message #>> '{session, key}') AS VARCHAR) IS NOT NULL",
             "ALTER TABLE messages ALTER COLUMN is_first_party SET DEFAULT 'true'",
             """ALTER TABLE messages ALTER COLUMN mapping SET DEFAULT '{"literal_mapping": {}, "path_mapping": {"a": [2, 1]}}'""",
             "ALTER TABLE messages DROP COLUMN message_id",
             "ALTER TABLE messages ADD COLUMN message_id VARCHAR GENERATED ALWAYS AS (message ->> 'key') STORED")
    assert _found(s, "models") == {("changed_index", "messages.ix_messages_session"),
                                   ("changed_column_default", "messages.is_first_party"),
                                   ("changed_column_default", "messages.mapping"),
                                   ("changed_column_generated", "messages.message_id")}
