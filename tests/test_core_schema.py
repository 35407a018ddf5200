"""The neutral schema model and its diff, without a database."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

from dbguard import output
from dbguard.core.schema import (
    Check,
    Column,
    Drift,
    ForeignKey,
    Index,
    Schema,
    Table,
    Unique,
    diff,
    diff_models,
    differing_tables,
    document_table_digest,
    filter_drift,
    from_dict,
    from_json,
    model_table_digest,
    mysql_key_prefix,
    normalize_expression,
    normalize_type,
    same_expression,
    same_type,
    schema_hash,
    to_json,
)
from dbguard.errors import ExitCode
from dbguard.results import DriftReport


@pytest.mark.parametrize(("engine", "a", "b"), [
    ("postgresql", "int4", "INTEGER"),
    ("postgresql", "serial", "integer"),
    ("postgresql", "VARCHAR(50)", "character varying(50)"),
    ("postgresql", "NUMERIC(10, 2)", "numeric(10,2)"),
    ("postgresql", "TIMESTAMP", "timestamp without time zone"),
    ("postgresql", "TIMESTAMP(3) WITHOUT TIME ZONE", "timestamp(3) without time zone"),
    ("postgresql", "timestamptz", "timestamp with time zone"),
    ("postgresql", "FLOAT", "double precision"),
    ("postgresql", "FLOAT(24)", "real"),
    ("postgresql", "VARCHAR(20)[]", "character varying(20)[]"),
    ("postgresql", "BOOL", "boolean"),
    ("mariadb", "int(11)", "INTEGER"),
    ("mariadb", "bigint(20) unsigned", "BIGINT UNSIGNED"),
    ("mariadb", "BOOL", "tinyint(1)"),
    ("mariadb", "NUMERIC", "decimal(10,0)"),
    ("mariadb", "DECIMAL(10, 2)", "decimal(10,2)"),
    ("mysql", "INTEGER", "int"),
    ("sqlite", "VARCHAR(50)", "varchar(50)"),
])
def test_equal_types_normalise_alike(engine, a, b):
    assert normalize_type(engine, a) == normalize_type(engine, b)


@pytest.mark.parametrize(("engine", "a", "b"), [
    ("postgresql", "VARCHAR(50)", "VARCHAR(60)"),
    ("postgresql", "integer", "bigint"),
    ("postgresql", "timestamp", "timestamptz"),
    ("mariadb", "tinyint(1)", "tinyint(4)"),
    ("mariadb", "enum('a','b')", "enum('a','B')"),
])
def test_different_types_stay_different(engine, a, b):
    assert normalize_type(engine, a) != normalize_type(engine, b)


@pytest.mark.parametrize(("column_type", "length", "shown"), [
    ("varchar(32)", 32, None),  # the whole column
    ("varchar(32)", 40, None),
    ("varchar(255)", 64, 64),
    ("char(10)", 4, 4),
    ("varbinary(16)", 16, None),
    ("text", 64, 64),  # TEXT and BLOB keys always have a prefix
    ("mediumblob", 255, 255),
    ("datetime(6)", 8, None),  # MariaDB builds a prefix on a non-string as the whole column
    ("int", 4, None),
    ("varchar(32)", None, None),
])
def test_a_mysql_key_prefix_is_shown_only_where_it_is_shorter_than_the_string(column_type, length, shown):
    assert mysql_key_prefix(column_type, length) == shown


@pytest.mark.parametrize(("engine", "expected", "actual", "same"), [
    # MariaDB/MySQL: BLOB(n) is the smallest BLOB type of n bytes, TEXT(n) of n characters (1-4 bytes).
    ("mariadb", "blob(65536)", "mediumblob", True),
    ("mariadb", "blob(65535)", "blob", True),
    ("mariadb", "blob(255)", "tinyblob", True),
    ("mysql", "blob(16777216)", "longblob", True),
    ("mariadb", "blob(65536)", "longblob", False),
    ("mariadb", "blob(65536)", "blob", False),
    ("mariadb", "text(100)", "tinytext", True),  # 100 characters of 1 to 4 bytes: TINYTEXT or TEXT
    ("mariadb", "text(100)", "text", True),
    ("mariadb", "text(60)", "text", False),  # 240 bytes at most: always TINYTEXT
    ("mariadb", "text(20000)", "mediumtext", True),
    ("mariadb", "text(20000)", "longtext", False),
    ("mariadb", "text(20000)", "tinytext", False),
    ("postgresql", "blob(65536)", "mediumblob", False),
    ("sqlite", "BLOB(65536)", "mediumblob", False),
])
def test_a_sized_lob_is_the_type_the_server_made_of_it(engine, expected, actual, same):
    assert same_type(engine, normalize_type(engine, expected), normalize_type(engine, actual)) is same


@pytest.mark.parametrize(("engine", "a", "b"), [
    ("postgresql", "now()", "CURRENT_TIMESTAMP"),
    ("mariadb", "current_timestamp()", "now()"),
    ("sqlite", "CURRENT_TIMESTAMP", "(CURRENT_TIMESTAMP)"),
    ("postgresql", "true", "1"),
    ("mariadb", "1", "true"),
    ("postgresql", "'x'::character varying", "'x'"),
    ("postgresql", "'{}'::jsonb", "'{}'"),
    ("mariadb", "0.0000", "0"),
    ("mariadb", "'0'", "0"),
    ("postgresql", "1.50", "'1.5'"),
    ("postgresql", "(price >= (0)::numeric)", "price >= 0"),
    ("postgresql", "((status)::text = ANY ((ARRAY['a'::character varying, 'b'::character varying])::text[]))",
     "status IN ('a', 'b')"),
    ("mariadb", "`status` in ('a','b')", "status IN ('a', 'b')"),
    ("postgresql", "lower((title)::text)", "lower(title)"),
    ("postgresql", "status::text = 'new'::text", "status = 'new'"),
])
def test_equal_expressions_compare_equal(engine, a, b):
    assert same_expression(engine, a, b)


@pytest.mark.parametrize(("a", "b"), [("'x'", "'y'"), ("0", "1"), ("now()", "'now'"), ("price >= 0", "price > 0")])
def test_different_expressions_stay_different(a, b):
    assert not same_expression("postgresql", a, b)


@pytest.mark.parametrize("text", [
    "'x'::character varying", "'{}'::jsonb", "'0'::numeric", "'1.50'::numeric(10,2)", "'-1'::integer",
    "'it''s'::text", "'a'::character varying(20)[]", "'2020-01-01 00:00:00'::timestamp without time zone",
    "('x'::text)", "1.5::double precision",
])
def test_the_cast_fast_path_agrees_with_sqlglot(text):
    from dbguard.core import schema

    fast = schema._quick(text)
    assert fast is not None
    schema.normalize_expression.cache_clear()
    original = schema._quick
    try:
        schema._quick = lambda value: None  # force the sqlglot path
        assert schema.normalize_expression("postgresql", text) == fast
    finally:
        schema._quick = original
        schema.normalize_expression.cache_clear()


def test_easy_defaults_never_import_sqlglot():
    code = ("import sys; from dbguard.core.schema import same_expression as s;"
            "assert s('mariadb', 'current_timestamp()', 'now()') and s('postgresql', \"'x'\", \"'x'\");"
            "assert s('mariadb', '0.0000', '0') and s('postgresql', 'true', '1');"
            "assert s('postgresql', \"'x'::character varying\", \"'x'\");"
            "assert s('postgresql', \"'0'::numeric(10, 2)\", '0.00');"
            "print('sqlglot' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def _users(**changes) -> Table:
    base = {
        "name": "users",
        "columns": (Column("id", "integer", False, autoincrement=True),
                    Column("email", "character varying(255)", False),
                    Column("name", "character varying(100)"), Column("created_at", "timestamp", False, "now()")),
        "primary_key": ("id",),
        "uniques": (Unique("uq_users_email", ("email",)),),
        "checks": (Check("ck_users_email", "length(email) > 3"),),
        "indexes": (Index("ix_users_name", ("name",)),),
    }
    base.update(changes)
    return Table(**base)


def _orders(**changes) -> Table:
    base = {
        "name": "orders",
        "columns": (Column("id", "integer", False, autoincrement=True), Column("user_id", "integer", False),
                    Column("status", "order_status", False, "'new'::order_status")),
        "primary_key": ("id",),
        "foreign_keys": (ForeignKey("fk_orders_user", ("user_id",), "users", ("id",), on_delete="CASCADE"),),
        "indexes": (Index("ix_orders_user_id", ("user_id",)), Index("ix_lower", ("lower(status)",), where="id > 0")),
    }
    base.update(changes)
    return Table(**base)


def _schema(users=None, orders=None, enums=(("order_status", ("new", "paid")),), **kw) -> Schema:
    return Schema("postgresql", (users or _users(), orders or _orders()), enums=enums, **kw)


def kinds(drifts):
    return {(d.kind, d.object) for d in drifts}


def test_a_schema_equals_itself_and_json_round_trips():
    s = _schema(views=(("v", "select 1"),), sequences=("seq",))
    assert diff(s, s) == []
    again = from_json(to_json(s))
    assert again == from_json(to_json(again))
    assert diff(s, again) == []
    assert schema_hash(s) == schema_hash(again)
    assert to_json(s) == to_json(again)
    assert json.loads(to_json(s))["tables"]["users"]["primary_key"] == ["id"]


def test_snapshot_json_is_sorted_and_stable_whatever_the_input_order():
    a = _schema()
    b = Schema("postgresql", tuple(reversed(a.tables)), enums=a.enums)
    assert to_json(a) == to_json(b)
    assert list(json.loads(to_json(a))["tables"]) == ["orders", "users"]


def test_every_injected_kind_is_named():
    cols = _users().columns
    actual = _schema(
        users=_users(
            columns=(cols[0], Column("email", "character varying(200)", False), Column("full_name", "character varying(100)"),
                     Column("created_at", "timestamp", True, "'2020-01-01'"), Column("age", "integer")),
            uniques=(), indexes=(Index("ix_users_name", ("name",), unique=True), Index("ix_extra", ("email",))),
            checks=(),
        ),
        orders=_orders(foreign_keys=(), indexes=(Index("ix_lower", ("lower(status)",), where="id > 0"),),
                       columns=_orders().columns[:2] + (Column("status", "text", False),)),
        enums=(("order_status", ("new",)), ("extra_enum", ("x",))),
    )
    found = kinds(diff(_schema(), actual))
    assert ("renamed_column", "users.name") in found
    assert ("extra_column", "users.age") in found
    assert ("changed_column_type", "users.email") in found
    assert ("changed_column_nullable", "users.created_at") in found
    assert ("changed_column_default", "users.created_at") in found
    assert ("missing_unique", "users.uq_users_email") in found
    assert ("missing_check", "users.ck_users_email") in found
    assert ("changed_index_unique", "users.ix_users_name") in found
    assert ("extra_index", "users.ix_extra") in found
    assert ("missing_index", "orders.ix_orders_user_id") in found
    assert ("missing_foreign_key", "orders.fk_orders_user") in found
    assert ("changed_column_type", "orders.status") in found
    assert ("missing_enum_value", "enum order_status") in found
    assert ("extra_enum", "enum extra_enum") in found


def test_missing_and_extra_tables_and_columns():
    expected = _schema()
    actual = Schema("postgresql", (_users(columns=_users().columns[:3]), Table("hotfix")), enums=expected.enums)
    found = kinds(diff(expected, actual))
    assert found == {("missing_table", "orders"), ("extra_table", "hotfix"), ("missing_column", "users.created_at")}


def test_mysql_enum_values_are_named():
    t = Table("t", (Column("s", "enum('a','b','c')", False),))
    u = Table("t", (Column("s", "enum('a','b')", False),))
    found = diff(Schema("mariadb", (t,)), Schema("mariadb", (u,)))
    assert [(d.kind, d.expected) for d in found] == [("missing_enum_value", "c")]


def test_unnamed_constraints_match_by_shape_and_models_ignore_views():
    models = Schema("postgresql", (_users(uniques=(Unique(None, ("email",)),),
                                          checks=(Check(None, "length(email) > 3"),)), _orders()),
                    enums=_schema().enums, views=None, origin="models")
    live = _schema(users=_users(uniques=(Unique("users_email_key", ("email",)),),
                                checks=(Check("users_email_check", "(length((email)::text) > 3)"),)),
                   views=(("v", "select 1"),))
    assert diff(models, live) == []


def _variants():
    """Model/live pairs: equal, equal but spelt differently, and each kind of difference."""
    base = _schema()
    cols = _users().columns
    live_variants = [
        base,
        _schema(users=_users(columns=cols[:3] + (Column("created_at", "timestamp", False, "CURRENT_TIMESTAMP"),))),
        _schema(users=_users(columns=cols[:3] + (Column("created_at", "timestamp", False, "'2020-01-01'"),))),
        _schema(users=_users(columns=cols[:2] + (Column("full_name", "character varying(100)"),) + cols[3:])),
        _schema(users=_users(columns=cols + (Column("age", "integer"),))),
        _schema(users=_users(uniques=(Unique("users_email_key", ("email",)),))),
        _schema(users=_users(uniques=())),
        _schema(users=_users(checks=(Check("users_email_check", "(length((email)::text) > 3)"),))),
        _schema(users=_users(checks=(Check("ck_users_email", "length(email) > 4"),))),
        _schema(users=_users(indexes=(Index("ix_users_name", ("name",), unique=True),))),
        _schema(users=_users(indexes=(Index("ix_users_name", ("name",)), Index("ix_extra", ("email",))))),
        _schema(orders=_orders(foreign_keys=(ForeignKey("orders_user_id_fkey", ("user_id",), "users", ("id",),
                                                        on_delete="CASCADE"),))),
        _schema(orders=_orders(foreign_keys=(ForeignKey("fk_orders_user", ("user_id",), "users", ("id",)),))),
        _schema(orders=_orders(foreign_keys=())),
        _schema(orders=_orders(indexes=(Index("ix_lower", ("lower(status)",), where="id > 1"),))),
        _schema(enums=(("order_status", ("new",)),)),
        Schema("postgresql", (_users(), Table("hotfix", (Column("id", "integer"),))), enums=base.enums),
    ]
    models_variants = [
        dataclasses.replace(base, origin="models", views=None),
        dataclasses.replace(_schema(users=_users(uniques=(Unique(None, ("email",)),),
                                                 checks=(Check(None, "length(email) > 3"),))),
                            origin="models", views=None),
        dataclasses.replace(_schema(users=_users(columns=cols[:3] + (Column("created_at", "timestamp", False,
                                                                            "now()"),))), origin="models"),
    ]
    return [(m, a) for m in models_variants for a in live_variants]


@pytest.mark.parametrize(("models", "live"), _variants())
def test_models_against_a_document_find_what_the_full_diff_finds(models, live):
    assert diff_models(models, json.loads(to_json(live))) == diff(models, live)


@pytest.mark.parametrize(("models", "live"), _variants())
def test_table_digests_never_hide_a_drift(models, live):
    """The CLI compares digests first and only the tables whose digests differ in full: every
    table with a drift must be among them, and equal tables digest alike."""
    doc = json.loads(to_json(live))
    differing = differing_tables({t.name: model_table_digest(t) for t in models.tables},
                                 {name: document_table_digest(data) for name, data in doc["tables"].items()})
    drifted = {d.table for d in diff(models, live) if d.table}
    assert drifted <= differing
    if models.tables == live.tables:
        assert all(model_table_digest(t) is not None for t in models.tables)  # comparable by digest
    reduced = dataclasses.replace(models, tables=tuple(t for t in models.tables if t.name in differing))
    assert diff(reduced, from_dict(doc, differing)) == diff(models, live)


@pytest.mark.parametrize("dialect_name", ["postgresql", "mysql", "mariadb", "sqlite"])
def test_a_models_table_digests_alike_from_its_parts_and_from_its_object(dialect_name):
    """The CLI digests the models' tables without building their objects: the same digest."""
    import importlib.util
    from pathlib import Path

    from sqlalchemy.dialects import registry

    from dbguard.dialects import for_sqlalchemy_dialect
    from dbguard.drift.expected import _TableConverter, model_digests

    path = Path(__file__).parent / "drift_schema" / "drift_models.py"
    spec = importlib.util.spec_from_file_location("drift_models_digest", path)
    models = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(models)
    sa_dialect = registry.load("mysql" if dialect_name == "mariadb" else dialect_name)()
    if dialect_name == "mariadb":
        sa_dialect.is_mariadb = True
    dialect = for_sqlalchemy_dialect(sa_dialect)
    converter = _TableConverter(sa_dialect, dialect)
    digests = model_digests([models.metadata], sa_dialect, dialect)
    assert set(digests.tables) == set(models.metadata.tables)
    for table in models.metadata.tables.values():
        assert converter.digest(table) == model_table_digest(converter.convert(table)) == digests.tables[table.name]


def test_digests_see_through_str_subclasses():
    class Quoted(str):
        pass

    plain = Table("t", (Column("id", "integer", False),), ("id",))
    quoted = Table(Quoted("t"), (Column(Quoted("id"), "integer", False),), (Quoted("id"),))
    assert model_table_digest(quoted) == model_table_digest(plain) is not None
    assert model_table_digest(dataclasses.replace(plain, primary_key=())) != model_table_digest(plain)


def test_ignore_patterns():
    drifts = [Drift("extra_table", "part_2024", "part_2024", None, "table"),
              Drift("extra_index", "users", "users.ix_tmp", None, "x"),
              Drift("missing_column", "users", "users.x", "int", None),
              Drift("extra_enum", None, "enum legacy", None, "a")]
    assert filter_drift(drifts, ["part_*", "users.ix_*", "legacy"]) == [drifts[2]]


def _report(drifts):
    return DriftReport(against="models", engine="postgresql", revisions=("r1",), drifts=tuple(drifts),
                       tables_compared=3, table_names=("orders", "users", "zeta"),
                       exit_code=ExitCode.FINDINGS if drifts else ExitCode.OK, duration_ms=12)


DRIFTS = [Drift("missing_column", "users", "users.age", "integer", None),
          Drift("extra_index", "users", "users.ix_a,b", None, "(a, b)", "warning"),
          Drift("changed_column_default", "orders", "orders.total", "0", "5: 100%\nx", "warning"),
          Drift("missing_enum_value", None, "enum mood", "meh", None)]


def test_junit_parses_and_counts_one_testcase_per_table():
    root = ET.fromstring(output.render(_report(DRIFTS), "junit"))
    suite = root.find("testsuite")
    cases = suite.findall("testcase")
    assert [c.get("name") for c in cases] == ["(schema)", "orders", "users", "zeta"]
    assert suite.get("tests") == "4" and suite.get("failures") == "3" and root.get("failures") == "3"
    failed = {c.get("name"): c.find("failure") for c in cases}
    assert failed["zeta"] is None
    assert failed["users"].get("message") == "2 differences"
    assert "users.age" in failed["users"].text
    clean = ET.fromstring(output.render(_report([]), "junit"))
    assert clean.find("testsuite").get("failures") == "0" and len(clean.find("testsuite")) == 3


GITHUB = re.compile(r"^::(error|warning|notice)( title=[^:,\r\n]*)?::[^\r\n]*$")


def test_github_annotations_follow_the_workflow_command_syntax():
    lines = output.render(_report(DRIFTS), "github").splitlines()
    assert len(lines) == 4
    assert all(GITHUB.match(line) for line in lines), lines
    assert lines[0].startswith("::error title=schema drift%3A missing column::missing column users.age")
    assert lines[1].startswith("::warning ")
    assert "100%25%0Ax" in lines[2]  # % and newlines escaped in the message
    assert all(GITHUB.match(line) for line in output.render(_report([]), "github").splitlines())


def test_json_round_trips():
    doc = json.loads(output.render(_report(DRIFTS), "json"))
    assert doc["exit_code"] == 1 and len(doc["drifts"]) == 4
    assert [Drift(**d) for d in doc["drifts"]] == DRIFTS


def test_text_groups_by_table():
    text = output.render(_report(DRIFTS), "text")
    assert text.splitlines()[0].startswith("dbguard: drift found: 4 differences")
    assert "\norders:\n  warning changed column default orders.total" in text
    assert output.render(_report([]), "text").startswith("dbguard: no drift: 3 tables compared with models")


def test_normalize_expression_is_cached():
    normalize_expression.cache_clear()
    normalize_expression("postgresql", "lower((x)::text)")
    normalize_expression("postgresql", "lower((x)::text)")
    assert normalize_expression.cache_info().hits == 1


def test_the_models_default_cache_never_mixes_up_two_defaults() -> None:
    import sqlalchemy as sa
    from sqlalchemy.dialects import postgresql

    from dbguard.drift.expected import _compile_cached

    cache: dict = {}
    defaults = (sa.func.now(), sa.func.pg_catalog.now(), sa.func.current_timestamp(), sa.true(), sa.false(),
                sa.null(), sa.func.coalesce(1, 2), sa.func.coalesce(1, 3), sa.Sequence("s1").next_value(),
                sa.Sequence("s2").next_value(), sa.func.gen_random_uuid(), sa.func.now(), sa.true())
    texts = [_compile_cached(d, postgresql.dialect(), cache) for d in defaults]
    assert texts == ["now()", "pg_catalog.now()", "CURRENT_TIMESTAMP", "true", "false", "NULL",
                     "coalesce(1, 2)", "coalesce(1, 3)", "nextval('s1')", "nextval('s2')", "gen_random_uuid()",
                     "now()", "true"]
    assert len(cache) == 11  # the repeated now() and true() were compiled once


def test_the_heap_is_frozen_only_in_a_process_dbguard_owns(monkeypatch: pytest.MonkeyPatch) -> None:
    import gc

    import dbguard
    from dbguard.core.schema import gc_paused

    gc.unfreeze()
    try:
        kept = [[] for _ in range(100)]
        monkeypatch.setattr(dbguard, "OWNS_PROCESS", False)  # dbguard.api inside a host application
        with gc_paused(freeze=True):
            assert not gc.isenabled()
        assert gc.get_freeze_count() == 0 and gc.isenabled()
        monkeypatch.setattr(dbguard, "OWNS_PROCESS", True)  # the CLI, a fleet worker
        with gc_paused(freeze=True):
            pass
        assert gc.get_freeze_count() > len(kept)
    finally:
        gc.unfreeze()


@pytest.mark.parametrize(("a", "b", "same"), [
    ("float(53)", "double", True), ("FLOAT(25)", "double", True), ("float(24)", "float", True),
    ("float(1)", "float", True), ("float(24)", "double", False), ("float(53) unsigned", "double unsigned", True),
    ("DOUBLE", "double", True), ("float(10,2)", "float(10,2)", True), ("float(10,2)", "double", False),
])
def test_mariadb_float_precision_is_a_float_up_to_24_bits_and_a_double_above(a, b, same):
    for engine in ("mariadb", "mysql"):
        assert (normalize_type(engine, a) == normalize_type(engine, b)) is same


@pytest.mark.parametrize(("engine", "models", "catalog"), [
    ("postgresql", "orders.status IN ('new', 'paid')",
     "(status)::text = ANY ((ARRAY['new'::character varying, 'paid'::character varying])::text[])"),
    ("mariadb", "orders.status IN ('new', 'paid')", "`status` in ('new','paid')"),
    ("sqlite", "orders.total >= 0", "total >= 0"),
    ("postgresql", '"orders"."total" >= 0', "total >= (0)::double precision"),
])
def test_a_checks_table_qualifier_is_no_difference(engine, models, catalog):
    models_table = Table("orders", checks=(Check(None, models),))
    live_table = Table("orders", checks=(Check("ck", catalog),))
    assert diff(Schema(engine, (models_table,), origin="models"), Schema(engine, (live_table,))) == []
    # Other expressions keep theirs: a view may join two tables.
    assert not same_expression(engine, "a.x = 1", "b.x = 1")


def test_a_checks_qualifier_does_not_hide_a_changed_check():
    models_table = Table("orders", checks=(Check("ck", "orders.status IN ('new', 'paid')"),))
    live_table = Table("orders", checks=(Check("ck", "status IN ('new', 'paid', 'void')"),))
    found = diff(Schema("postgresql", (models_table,)), Schema("postgresql", (live_table,)))
    assert kinds(found) == {("changed_check", "orders.ck")}


def test_index_keys_carry_their_order_and_compare_by_it():
    from dbguard.core.schema import index_key, split_index_key

    assert index_key("a") == "a" and index_key("a", True) == "a DESC" and index_key("a", True, True) == "a DESC"
    assert index_key("a", True, False) == "a DESC NULLS LAST" and index_key("a", False, True) == "a NULLS FIRST"
    assert index_key("a", False, False) == "a"
    for text in ("a", "a DESC", "a DESC NULLS LAST", "a NULLS FIRST", "lower(title) DESC", "a(10) DESC"):
        assert index_key(*split_index_key(text)) == text
    assert split_index_key("a desc nulls first") == ("a", True, None)
    assert split_index_key("a ASC NULLS LAST") == ("a", False, None)
    assert split_index_key("desc_col") == ("desc_col", False, None)

    def table(*indexes: Index) -> Table:
        return Table("t", indexes=indexes)

    ix = Index("ix", ("a", "b DESC"))
    assert diff(Schema("sqlite", (table(ix),)), Schema("sqlite", (table(ix),))) == []
    flipped = diff(Schema("sqlite", (table(ix),)), Schema("sqlite", (table(Index("ix", ("a DESC", "b"))),)))
    assert [(d.kind, d.expected, d.actual) for d in flipped] == [("changed_index", "(a, b DESC)", "(a DESC, b)")]
    # An expression's order is compared apart from the expression (sqlglot reads "x DESC" as an alias).
    expression = Index("ix", ("lower(title) DESC",))
    assert diff(Schema("postgresql", (table(expression),)),
                Schema("postgresql", (table(Index("ix", ("lower((title)::text) DESC",))),))) == []
    assert kinds(diff(Schema("postgresql", (table(expression),)),
                      Schema("postgresql", (table(Index("ix", ("lower((title)::text)",))),)))) == {
        ("changed_index", "t.ix")}


def test_an_index_under_another_name_is_renamed_in_either_direction():
    old, new = Index("ix_old", ("a", "b DESC")), Index("ix_new", ("a", "b DESC"))
    for origin in ("models", "catalog"):
        found = diff(Schema("postgresql", (Table("t", indexes=(new,)),), origin=origin),
                     Schema("postgresql", (Table("t", indexes=(old,)),)))
        assert [(d.kind, d.object, d.expected, d.actual) for d in found] == [
            ("renamed_index", "t.ix_new", "ix_new", "ix_old")]
        assert found[0].describe() == "renamed index t.ix_new: expected ix_new, found ix_old"
    back = diff(Schema("postgresql", (Table("t", indexes=(old,)),)), Schema("postgresql", (Table("t", indexes=(new,)),)))
    assert kinds(back) == {("renamed_index", "t.ix_old")}
    # Another shape is no rename: a missing index and an extra one; an unnamed one has no name to differ.
    other = Index("ix_other", ("a",))
    assert kinds(diff(Schema("postgresql", (Table("t", indexes=(new,)),)),
                      Schema("postgresql", (Table("t", indexes=(other,)),)))) == {
        ("missing_index", "t.ix_new"), ("extra_index", "t.ix_other")}
    assert diff(Schema("mariadb", (Table("t", indexes=(Index(None, ("a",), unique=True),)),), origin="models"),
                Schema("mariadb", (Table("t", indexes=(Index("a", ("a",), unique=True),)),))) == []
    # The fast comparison of a models table with a catalog document sees the rename too.
    doc = json.loads(to_json(Schema("postgresql", (Table("t", indexes=(old,)),))))
    assert kinds(diff_models(Schema("postgresql", (Table("t", indexes=(new,)),), origin="models"), doc)) == {
        ("renamed_index", "t.ix_new")}


def test_table_qualified_checks_never_import_sqlglot_when_the_texts_are_equal():
    code = ("import sys; from dbguard.core.schema import diff, Schema, Table, Check, Index;"
            "t = Table('t', checks=(Check(None, 'orders.x > 0'),), indexes=(Index('ix', ('a DESC', 'lower(b)')),));"
            "assert diff(Schema('postgresql', (t,), origin='models'), Schema('postgresql', (t,))) == [];"
            "print('sqlglot' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", out.stderr


def test_a_constraint_the_models_declare_twice_is_expected_once() -> None:
    """An inline ForeignKey beside a named ForeignKeyConstraint on the same columns, and a
    CheckConstraint a revision file attaches to a model's table a second time, are one constraint."""
    import sqlalchemy as sa
    from sqlalchemy.dialects import postgresql

    from dbguard.dialects import for_sqlalchemy_dialect
    from dbguard.drift.expected import schema_from_metadata

    metadata = sa.MetaData()
    sa.Table("parents", metadata, sa.Column("id", sa.Integer, primary_key=True))
    children = sa.Table(
        "children", metadata,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("parent_id", sa.Integer, sa.ForeignKey("parents.id", ondelete="CASCADE")),
        sa.Column("status", sa.String(10)),
        sa.ForeignKeyConstraint(["parent_id"], ["parents.id"], name="fk_children_parent", ondelete="CASCADE"),
        sa.CheckConstraint("status IN ('a', 'b')", name="ck_status"),
    )
    children.append_constraint(sa.CheckConstraint("status IN ('a', 'b')", name="ck_status"))
    schema = schema_from_metadata([metadata], postgresql.dialect(), for_sqlalchemy_dialect(postgresql.dialect()))
    table = schema.table("children")
    assert table is not None
    assert [fk.name for fk in table.foreign_keys] == ["fk_children_parent"]
    assert [c.name for c in table.checks] == ["ck_status"]


def test_interval_defaults_compare_by_value_on_postgresql() -> None:
    """The server keeps an interval default as it reads it: '0' is '00:00:00'::interval, '1 day 2 hours'
    is '1 day 02:00:00'::interval (prefect's total_run_time). Other types, engines and values still differ."""
    from dbguard.core.schema import interval_value

    assert interval_value("'0'") == interval_value("'00:00:00'::interval") == (0, 0, 0)
    assert interval_value("'1 day 2 hours'") == interval_value("'1 day 02:00:00'::interval") == (0, 1, 7_200_000_000)
    assert interval_value("'1.5 days'") == (0, 1, 43_200_000_000)
    assert interval_value("'1 year 2 mons'") == interval_value("'14 months'") == (14, 0, 0)
    assert interval_value("'-01:00:00'::interval") == (0, 0, -3_600_000_000)
    assert interval_value("'P1D'") is None and interval_value("now()") is None and interval_value("'1 day ago'") is None

    def changed(engine: str, type_: str, expected: str, actual: str) -> set[tuple[str, str]]:
        return kinds(diff(Schema(engine, (Table("t", columns=(Column("d", type_, True, expected),)),), origin="models"),
                          Schema(engine, (Table("t", columns=(Column("d", type_, True, actual),)),))))

    assert changed("postgresql", "interval", "'0'", "'00:00:00'::interval") == set()
    assert changed("postgresql", "interval", "'1 hour'", "'01:00:00'::interval") == set()
    assert changed("postgresql", "interval", "'1 hour'", "'00:00:00'::interval") == {("changed_column_default", "t.d")}
    assert changed("postgresql", "varchar", "'0'", "'00:00:00'::character varying") == {("changed_column_default", "t.d")}


def _format_pair() -> tuple[dict, dict]:
    """One PostgreSQL and one MariaDB table as format 1 recorded them, and as format 2 reads them."""
    from dbguard.core.schema import SNAPSHOT_FORMAT

    new = {"format": SNAPSHOT_FORMAT, "engine": "postgresql", "origin": "catalog", "enums": {}, "views": {},
           "sequences": [], "tables": {"t": {
               "columns": [{"name": "id", "type": "integer", "nullable": False, "autoincrement": True,
                            "identity": "ALWAYS START 10"},
                           {"name": "code", "type": "character varying(20)", "collation": "C"}],
               "primary_key": ["id"],
               "uniques": [{"name": "uq_t_code", "columns": ["code"], "nulls_not_distinct": True}],
               "indexes": [{"name": "ix_t_code", "columns": ['code COLLATE "C" varchar_pattern_ops DESC'],
                            "include": ["id"]}]}}}
    old = json.loads(json.dumps(new))
    old["format"] = 1
    table = old["tables"]["t"]
    del table["columns"][0]["identity"], table["uniques"][0]["nulls_not_distinct"], table["indexes"][0]["include"]
    table["indexes"][0]["columns"] = ["code DESC"]
    return old, new


def test_a_reference_of_an_older_format_is_compared_on_what_it_records() -> None:
    from dbguard.core.schema import diff_documents

    old, new = _format_pair()
    assert diff_documents(old, new) == [] and diff_documents(new, old) == []
    # What format 1 records is still compared.
    changed = json.loads(json.dumps(new))
    changed["tables"]["t"]["columns"][1]["type"] = "text"
    assert [d.kind for d in diff_documents(old, changed)] == ["changed_column_type"]
    # Two documents of the new format compare all of it.
    dropped = json.loads(json.dumps(new))
    del dropped["tables"]["t"]["indexes"][0]["include"]
    assert [d.kind for d in diff_documents(new, dropped)] == ["changed_index"]


def test_a_spatial_keys_sub_part_of_format_1_is_no_difference() -> None:
    from dbguard.core.schema import SNAPSHOT_FORMAT, diff_documents

    def doc(fmt: int, key: str) -> dict:
        return {"format": fmt, "engine": "mariadb", "origin": "catalog", "enums": {}, "views": None,
                "sequences": None, "tables": {"places": {
                    "columns": [{"name": "g", "type": "geometry", "nullable": False}],
                    "indexes": [{"name": "sx_g", "columns": [key], "method": "spatial"}]}}}

    assert diff_documents(doc(1, "g(32)"), doc(SNAPSHOT_FORMAT, "g")) == []


def test_boolean_and_jsonb_defaults_compare_by_value_on_postgresql() -> None:
    """The server keeps a boolean default 'false' as false and a jsonb default as jsonb prints it, its
    keys reordered (arize-phoenix's is_first_party and input_mapping). Other values, types and engines
    still differ."""
    def changed(engine: str, type_: str, expected: str, actual: str) -> set[tuple[str, str]]:
        return kinds(diff(Schema(engine, (Table("t", columns=(Column("d", type_, True, expected),)),), origin="models"),
                          Schema(engine, (Table("t", columns=(Column("d", type_, True, actual),)),))))

    assert changed("postgresql", "boolean", "'false'", "false") == set()
    assert changed("postgresql", "boolean", "'on'", "true") == set()
    assert changed("postgresql", "boolean", "'false'", "true") == {("changed_column_default", "t.d")}
    mapping = '\'{"literal_mapping": {}, "path_mapping": {}}\''
    assert changed("postgresql", "jsonb", mapping, '\'{"path_mapping": {}, "literal_mapping": {}}\'::jsonb') == set()
    assert changed("postgresql", "jsonb", "'[1, 2]'", "'[2, 1]'::jsonb") == {("changed_column_default", "t.d")}
    assert changed("postgresql", "jsonb", "'1'", "'true'::jsonb") == {("changed_column_default", "t.d")}
    # json keeps its text as written: another spelling there is the server's own text, not rewritten.
    assert changed("postgresql", "json", mapping, '\'{"path_mapping": {}, "literal_mapping": {}}\'::json') == \
        {("changed_column_default", "t.d")}
    assert changed("sqlite", "boolean", "'false'", "0") == {("changed_column_default", "t.d")}


def test_postgresql_json_operators_normalise_their_right_operand() -> None:
    """The server writes ``->>``'s key back cast (``'id'::text``), which sqlglot reads as a string where it
    reads the uncast key as a JSON path, and an array path ``'{a, b}'`` as ``'{a,b}'``."""
    from dbguard.core.schema import pg_text_array, same_expression

    pg = "postgresql"
    assert same_expression(pg, "CAST(message ->> 'id' AS VARCHAR)", "((message ->> 'id'::text))::character varying")
    assert same_expression(pg, "doc -> 0 -> 'a'", "((doc -> 0) -> 'a'::text)")
    assert same_expression(pg, "doc #>> '{session, id}'", "(doc #>> '{session,id}'::text[])")
    assert not same_expression(pg, "doc ->> 'id'", "(doc ->> 'key'::text)")
    assert not same_expression(pg, "doc #>> '{session, id}'", "(doc #>> '{session,key}'::text[])")
    assert pg_text_array("{a, b}") == "{a,b}"
    assert pg_text_array('{ "a" , "b c", "x\\"y" }') == '{a,"b c","x\\"y"}'
    assert pg_text_array("{}") == "{}"
    assert pg_text_array("{a,{b}}") is None and pg_text_array("a") is None and pg_text_array("{a,NULL}") is None


def test_format_1_keys_and_sqlite_generated_columns_it_could_not_read_are_no_difference() -> None:
    from dbguard.core.schema import SNAPSHOT_FORMAT, diff_documents

    def pg(fmt: int, key: str) -> dict:
        return {"format": fmt, "engine": "postgresql", "origin": "catalog", "enums": {}, "views": {},
                "sequences": [], "tables": {"t": {"columns": [{"name": "t", "type": "text"}],
                                                  "indexes": [{"name": "ix", "columns": [key], "method": "gist"}]}}}

    assert diff_documents(pg(1, "t"), pg(SNAPSHOT_FORMAT, "t gist_trgm_ops (siglen='32')")) == []
    assert diff_documents(pg(1, "lower(t) DESC"), pg(SNAPSHOT_FORMAT, "lower(t) text_pattern_ops DESC")) == []
    assert [d.kind for d in diff_documents(pg(1, "t"), pg(SNAPSHOT_FORMAT, "lower(t)"))] == ["changed_index"]

    def lite(fmt: int, generated: str | None) -> dict:
        column = {"name": "total", "type": "NUMERIC(12, 2)", **({"generated": generated} if generated else {})}
        return {"format": fmt, "engine": "sqlite", "origin": "catalog", "enums": {}, "views": None,
                "sequences": None, "tables": {"t": {"columns": [column]}}}

    assert diff_documents(lite(1, None), lite(SNAPSHOT_FORMAT, "price * 2")) == []
