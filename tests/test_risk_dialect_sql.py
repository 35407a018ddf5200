"""The live-facts SQL of each engine, as text (MySQL 8 has no server here: its variants are checked
only this way), and the parsing of what the servers answer."""

from __future__ import annotations

from types import SimpleNamespace

from dbguard.db.facts import server_info, version_tuple
from dbguard.dialects.mysql import MysqlDialect
from dbguard.dialects.postgresql import PostgresqlDialect
from dbguard.dialects.sqlite import SqliteDialect


def test_postgresql_facts_sql() -> None:
    d = PostgresqlDialect()
    assert d.risk_engine == "postgresql"
    sql, params = d.table_facts(["orders", "users"])
    assert "c.reltuples::bigint" in sql and "pg_total_relation_size(c.oid)" in sql and "pg_relation_size(c.oid)" in sql
    assert "c.relname IN (:t0, :t1)" in sql and params == {"t0": "orders", "t1": "users"}
    holders, _ = d.table_lock_holders(["orders"], "pg_locks")
    assert "l.granted" in holders and "pg_backend_pid()" in holders and "pg_stat_activity" in holders
    assert "max_locks_per_transaction" in d.server_facts().sql
    columns, params = d.table_columns(["orders"])
    assert "format_type(a.atttypid, a.atttypmod)" in columns and "NOT a.attnotnull" in columns
    assert "NOT a.attisdropped" in columns and params == {"t0": "orders"}


def test_mysql8_and_mariadb_facts_sql_differ() -> None:
    mysql, maria = MysqlDialect(mariadb=False), MysqlDialect(mariadb=True)
    assert mysql.risk_engine == maria.risk_engine == "mysql"
    # MySQL 8 caches TABLES statistics (information_schema_stats_expiry, a day by default); MariaDB does not.
    assert mysql.table_facts_prelude() == ["SET SESSION information_schema_stats_expiry = 0"]
    assert maria.table_facts_prelude() == []
    sql, params = mysql.table_facts(["orders"])
    assert "TABLE_ROWS" in sql and "DATA_LENGTH + INDEX_LENGTH" in sql and params == {"t0": "orders"}
    assert mysql.lock_holder_sources() == ("performance_schema",)
    assert maria.lock_holder_sources() == ("metadata_lock_info",)
    my_sql = mysql.table_lock_holders(["orders"], "performance_schema").sql
    assert "performance_schema.metadata_locks" in my_sql and "LOCK_STATUS = 'GRANTED'" in my_sql
    assert "CONNECTION_ID()" in my_sql
    maria_sql = maria.table_lock_holders(["orders"], "metadata_lock_info").sql
    assert "METADATA_LOCK_INFO" in maria_sql and "'Table metadata lock'" in maria_sql
    assert "cached" in mysql.rows_source and "cached" not in maria.rows_source
    columns, params = maria.table_columns(["orders"])
    assert "COLUMN_TYPE" in columns and "IS_NULLABLE = 'YES'" in columns and params == {"t0": "orders"}
    assert "CHARACTER_OCTET_LENGTH DIV NULLIF(CHARACTER_MAXIMUM_LENGTH, 0)" in columns


def test_sqlite_has_no_risk_engine() -> None:
    assert SqliteDialect.risk_engine is None


class _Conn:
    def __init__(self, row: tuple) -> None:
        self.row = row

    def execute(self, *args: object) -> SimpleNamespace:
        return SimpleNamespace(one=lambda: self.row)


def test_server_info_from_answers() -> None:
    assert version_tuple("10.11.19-MariaDB-log") == (10, 11, 19)
    assert version_tuple("8.4.3") == (8, 4, 3)
    pg = server_info(_Conn((150018, "PostgreSQL 15.18 on x86_64", 128)), PostgresqlDialect())
    assert (pg.engine, pg.flavor, pg.version, pg.lock_slots) == ("postgresql", "postgresql", (15, 18), 128)
    maria = server_info(_Conn((None, "10.11.19-MariaDB", None)), MysqlDialect(mariadb=False))
    assert (maria.engine, maria.flavor, maria.version) == ("mysql", "mariadb", (10, 11, 19))
    mysql = server_info(_Conn((None, "8.0.36", None)), MysqlDialect(mariadb=False))
    assert (mysql.flavor, mysql.version, mysql.lock_slots) == ("mysql", (8, 0, 36), 64)
