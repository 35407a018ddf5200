"""Each engine's catalog SQL, checked without a server (MySQL 8 has no server here at all)."""

from __future__ import annotations

from dbguard.core.schema import from_dict
from dbguard.db.catalog import _build_mysql, _Rows
from dbguard.dialects.mysql import MysqlDialect
from dbguard.dialects.postgresql import PostgresqlDialect
from dbguard.dialects.sqlite import SqliteDialect


def _rows_of(keys: list[str], dicts: list[dict]) -> _Rows:
    """Catalog rows given as dicts, in the shape the catalog reader builds from a result."""
    rows = _Rows.__new__(_Rows)
    rows.at = {key: i for i, key in enumerate(keys)}
    rows.rows = [tuple(d.get(key) for key in rows.at) for d in dicts]
    return rows


def test_every_engine_reads_the_whole_schema_in_a_handful_of_set_based_queries():
    for dialect in (PostgresqlDialect(), MysqlDialect(mariadb=True), MysqlDialect(mariadb=False), SqliteDialect()):
        statements = dialect.catalog()
        assert 4 <= len(statements) <= 7
        for stmt in statements.values():
            # Never one query per table: no table name is bound into any of them.
            assert stmt.params == {}


def test_postgres_catalog_reads_the_current_schema_only_and_skips_extension_objects():
    cat = PostgresqlDialect().catalog()
    assert all("current_schema()" in s.sql for s in cat.values())
    assert "deptype = 'e'" in cat["columns"].sql
    assert "pg_get_indexdef(x.indexrelid, k, true)" in cat["indexes"].sql
    assert "con.conindid = x.indexrelid" in cat["indexes"].sql  # constraint-backed indexes come as constraints
    assert "deptype IN ('a', 'i', 'e')" in cat["objects"].sql  # serial/identity sequences are columns' business


def test_mariadb_and_mysql8_catalog_variants():
    maria, mysql8 = MysqlDialect(mariadb=True), MysqlDialect(mariadb=False)
    assert "NULL AS expression" in maria.catalog_indexes().sql
    assert "EXPRESSION AS expression" in mysql8.catalog_indexes().sql
    # MariaDB fills an information_schema view once per row of another it is joined with: no joins.
    for key, stmt in maria.catalog().items():
        assert " JOIN " not in stmt.sql.upper(), key
        assert "TABLE_SCHEMA = DATABASE()" in stmt.sql or "CONSTRAINT_SCHEMA = DATABASE()" in stmt.sql, key
    assert maria.catalog_checks().sql == (
        "SELECT TABLE_NAME AS table_name, CONSTRAINT_NAME AS name, CHECK_CLAUSE AS expression, "
        "LEVEL AS level FROM information_schema.CHECK_CONSTRAINTS WHERE CONSTRAINT_SCHEMA = DATABASE()")
    assert mysql8.catalog_checks().sql == (
        "SELECT tc.TABLE_NAME AS table_name, cc.CONSTRAINT_NAME AS name, cc.CHECK_CLAUSE AS expression, "
        "'Table' AS level FROM information_schema.TABLE_CONSTRAINTS tc "
        "JOIN information_schema.CHECK_CONSTRAINTS cc ON cc.CONSTRAINT_SCHEMA = tc.CONSTRAINT_SCHEMA "
        "AND cc.CONSTRAINT_NAME = tc.CONSTRAINT_NAME "
        "WHERE tc.TABLE_SCHEMA = DATABASE() AND tc.CONSTRAINT_TYPE = 'CHECK'")
    assert "'SEQUENCE'" in maria.catalog_tables().sql  # MySQL 8 has none: the filter finds nothing there
    assert maria.column_default_quoted and not mysql8.column_default_quoted
    assert maria.json_is_checked_longtext and not mysql8.json_is_checked_longtext
    assert maria.drop_scratch_database("dbguard_shadow_1").sql == "DROP DATABASE IF EXISTS `dbguard_shadow_1`"


KEYS = {
    "tables": ("table_name", "kind", "table_comment", "table_collation"),
    "columns": ("table_name", "column_name", "type", "is_nullable", "default_expr", "extra", "collation", "comment",
                "generated"),
    "indexes": ("table_name", "name", "non_unique", "column_name", "sub_part", "method", "expression", "key_order"),
    "foreign_keys": ("table_name", "name", "column_name", "ref_table", "ref_column"),
    "fk_rules": ("table_name", "name", "on_delete", "on_update"),
    "checks": ("table_name", "name", "expression", "level"),
    "objects": ("kind", "name", "detail", "db"),
}


def _mysql_rows(default, extra, type_="varchar(10)"):
    return {
        "tables": [{"table_name": "t", "kind": "BASE TABLE", "table_comment": "", "table_collation": "utf8mb4_general_ci"}],
        "columns": [{"table_name": "t", "column_name": "c", "type": type_, "is_nullable": "YES",
                     "default_expr": default, "extra": extra, "collation": "utf8mb4_general_ci", "comment": "",
                     "generated": None}],
        "indexes": [], "foreign_keys": [], "fk_rules": [], "checks": [], "objects": [],
    }


def _build(dialect, rows):
    return from_dict(_build_mysql(dialect, {key: _rows_of(KEYS[key], dicts) for key, dicts in rows.items()}))


def test_mysql8_bare_literal_defaults_are_quoted_like_mariadb_shows_them():
    mysql8, maria = MysqlDialect(mariadb=False), MysqlDialect(mariadb=True)
    col = _build(mysql8, _mysql_rows("x", "")).tables[0].columns[0]
    assert col.default == "'x'"
    col = _build(maria, _mysql_rows("'x'", "")).tables[0].columns[0]
    assert col.default == "'x'"
    col = _build(mysql8, _mysql_rows("CURRENT_TIMESTAMP", "DEFAULT_GENERATED", "datetime")).tables[0].columns[0]
    assert col.default == "CURRENT_TIMESTAMP"
    col = _build(mysql8, _mysql_rows("(now() + interval 1 day)", "DEFAULT_GENERATED", "datetime"))
    assert col.tables[0].columns[0].default == "(now() + interval 1 day)"
    # MariaDB writes an explicit NULL default as the word NULL.
    assert _build(maria, _mysql_rows("NULL", "")).tables[0].columns[0].default is None


def test_mariadb_json_is_longtext_with_its_own_check():
    rows = _mysql_rows(None, "", "longtext")
    rows["checks"] = [{"table_name": "t", "name": "c", "expression": "json_valid(`c`)", "level": "Column"}]
    table = _build(MysqlDialect(mariadb=True), rows).tables[0]
    assert table.columns[0].type == "json" and table.checks == ()


def test_mariadb_reads_the_whole_catalog_packed_in_one_statement_and_unpacks_it_to_the_plain_rows():
    from dbguard.db.catalog import unpack

    maria, mysql8 = MysqlDialect(mariadb=True), MysqlDialect(mariadb=False)
    packed = maria.catalog_packed()
    assert packed is not None and mysql8.catalog_packed() is None
    assert PostgresqlDialect().catalog_packed() is None and SqliteDialect().catalog_packed() is None
    assert packed.sql.startswith("SET STATEMENT group_concat_max_len = 4294967295 FOR SELECT ")
    assert packed.params == {} and " JOIN " not in packed.sql.upper()
    # One part per plain statement, in the same order, each with the plain rows' labels.
    parts = packed.sql.split(" UNION ALL ")
    assert [p.split("'")[1] for p in parts] == list(maria.catalog())
    for key in maria.catalog():
        labels = [label for label, _ in maria.catalog_packed_fields(key)]
        assert labels == _plain_labels(maria.catalog()[key].sql), key
    assert "GROUP_CONCAT" not in maria.catalog_columns().sql and "GROUP_CONCAT" not in mysql8.catalog_columns().sql

    fields = maria.catalog_packed_fields("columns")
    items = (["t", "a", "int(11)", "NO", "", "auto_increment", "", "", ""],
             ["t", "b", "varchar(4)", "YES", "='NULL'", "", "utf8mb4_bin", "note", ""])
    text = "\x1f".join("\x1e".join(f) for f in items)
    res = unpack(text, 2, fields)
    assert res is not None
    assert [dict(zip(res.at, r)) for r in res.rows] == [
        {"table_name": "t", "column_name": "a", "type": "int(11)", "is_nullable": "NO", "default_expr": None,
         "extra": "auto_increment", "collation": None, "comment": None, "generated": None},
        {"table_name": "t", "column_name": "b", "type": "varchar(4)", "is_nullable": "YES", "default_expr": "'NULL'",
         "extra": None, "collation": "utf8mb4_bin", "comment": "note", "generated": None},
    ]
    # A value holding a separator, a GROUP_CONCAT cut short, or NULL for rows that exist: the
    # counts do not match, and the part is read plain.
    for n, bad in ((2, text.replace("note", "no\x1fte")), (2, text.replace("note", "no\x1ete")), (3, text),
                   (2, None), (2, text[:-20])):
        assert unpack(bad, n, fields) is None
    empty = unpack(None, 0, maria.catalog_packed_fields("checks"))
    assert empty is not None and empty.rows == []
    ix = "\x1f".join("\x1e".join(f) for f in (["t", "PRIMARY", "0", "=id", "", "BTREE", "", "A"],
                                               ["t", "ix_a", "1", "=a", "10", "BTREE", "", "D"]))
    res = unpack(ix, 2, maria.catalog_packed_fields("indexes"))
    assert res is not None
    assert [dict(zip(res.at, r)) for r in res.rows] == [
        {"table_name": "t", "name": "PRIMARY", "non_unique": "0", "column_name": "id", "sub_part": None,
         "method": "BTREE", "expression": None, "key_order": "A"},
        {"table_name": "t", "name": "ix_a", "non_unique": "1", "column_name": "a", "sub_part": "10",
         "method": "BTREE", "expression": None, "key_order": "D"},
    ]


def _plain_labels(sql: str) -> list[str]:
    """The ``AS label`` names of a plain catalog statement's select list, in order."""
    import re

    select = sql.split(" FROM ", 1)[0]
    return re.findall(r" AS (\w+)", select)


def test_postgres_key_numbers_a_columns_part_does_not_hold_mean_the_schema_changed_under_the_read():
    import pytest

    from dbguard.db.catalog import CatalogChanged, _build_pg

    columns = _rows_of(
        ["table_name", "table_comment", "column_name", "position", "type", "not_null", "default_expr",
         "identity", "generated", "collation", "comment"],
        [{"table_name": "t", "column_name": "id", "position": 1, "type": "integer", "not_null": True,
          "identity": "", "generated": ""}])
    empty = _rows_of(["kind", "name", "detail"], [])
    indexes = _rows_of(["table_name", "name", "is_unique", "method", "predicate", "column_numbers", "columns"], [])

    def constraints(numbers):
        return _rows_of(["table_name", "name", "type", "column_numbers", "ref_table", "ref_column_numbers",
                         "ref_columns", "on_delete", "on_update", "definition"],
                        [{"table_name": "t", "name": "t_pkey", "type": "p", "column_numbers": numbers}])

    rows = {"columns": columns, "indexes": indexes, "objects": empty}
    doc = _build_pg(PostgresqlDialect(), {**rows, "constraints": constraints([1])})
    assert doc["tables"]["t"]["primary_key"] == ["id"]
    with pytest.raises(CatalogChanged):
        _build_pg(PostgresqlDialect(), {**rows, "constraints": constraints([1, 2])})
