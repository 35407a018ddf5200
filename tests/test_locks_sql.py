"""The lock killer's SQL per engine (MySQL 8 has no server here: its SQL is checked as text), the
statement parser, and the settings it reads; no database."""

from __future__ import annotations

import pytest

from dbguard.db.lock_graph import statement_kind, tables_in_statement
from dbguard.dialects.mysql import MysqlDialect, account
from dbguard.dialects.postgresql import PostgresqlDialect
from dbguard.settings import load_settings

MYSQL8 = MysqlDialect(mariadb=False)
MARIADB = MysqlDialect(mariadb=True)
PG = PostgresqlDialect()


def test_mysql8_reads_performance_schema_metadata_locks_by_the_locks_schema():
    assert MYSQL8.mdl_sources() == ("performance_schema", "heuristic")
    assert MYSQL8.install_mdl_plugin() is None
    assert MYSQL8.mdl_pending_visible("performance_schema")
    stmt = MYSQL8.mdl_rows("performance_schema", "shop")
    assert stmt.sql == (
        "SELECT t.PROCESSLIST_ID, ml.OBJECT_SCHEMA, ml.OBJECT_NAME, ml.LOCK_TYPE, ml.LOCK_STATUS = 'GRANTED' "
        "FROM performance_schema.metadata_locks ml "
        "JOIN performance_schema.threads t ON t.THREAD_ID = ml.OWNER_THREAD_ID "
        "WHERE ml.OBJECT_TYPE = 'TABLE' AND ml.OBJECT_SCHEMA = :db "
        "AND ml.LOCK_STATUS IN ('GRANTED', 'PENDING') AND t.PROCESSLIST_ID IS NOT NULL"
    )
    assert stmt.params == {"db": "shop"}
    # performance_schema off, or the mdl instrument off, returns no rows without an error: ask first.
    ready = MYSQL8.mdl_source_ready("performance_schema").sql
    assert "wait/lock/metadata/sql/mdl" in ready and "@@performance_schema = 1" in ready


def test_mariadb_reads_metadata_lock_info_and_installs_it_only_on_request():
    assert MARIADB.mdl_sources() == ("metadata_lock_info", "heuristic")
    assert MARIADB.install_mdl_plugin().sql == "INSTALL SONAME 'metadata_lock_info'"
    assert not MARIADB.mdl_pending_visible("metadata_lock_info")
    stmt = MARIADB.mdl_rows("metadata_lock_info", "shop")
    assert stmt.sql == ("SELECT THREAD_ID, TABLE_SCHEMA, TABLE_NAME, LOCK_MODE, 1 "
                        "FROM information_schema.METADATA_LOCK_INFO "
                        "WHERE LOCK_TYPE = 'Table metadata lock' AND TABLE_SCHEMA = :db")
    assert "PLUGIN_NAME = 'METADATA_LOCK_INFO'" in MARIADB.mdl_source_ready("metadata_lock_info").sql
    with pytest.raises(ValueError):
        MARIADB.mdl_rows("heuristic", "shop")


@pytest.mark.parametrize("dialect", [MYSQL8, MARIADB], ids=["mysql8", "mariadb"])
def test_mysql_kill_statements_and_identity_guard(dialect):
    assert dialect.cancel_session("42", "x").sql == "KILL QUERY 42"
    assert dialect.terminate_session("42", "x").sql == "KILL CONNECTION 42"
    with pytest.raises(ValueError):
        dialect.terminate_session("42; DROP TABLE t", "x")
    # The same user and host; the same transaction where the snapshot saw one (INNODB_TRX lags).
    alive = dialect.session_alive("42", "root|h:1|")
    assert alive.params == {"id": 42, "who": "root|h:1", "trx": ""}
    assert "CONCAT_WS('|', p.USER, p.HOST) = :who" in alive.sql and ":trx = ''" in alive.sql
    assert dialect.session_alive("42", "app|h:2|2026-12-06 10:00:00").params == {
        "id": 42, "who": "app|h:2", "trx": "2026-12-06 10:00:00"}
    assert "CONCAT_WS('|', p.USER, p.HOST" in dialect.lock_sessions().sql
    assert "INNODB_TRX" in dialect.read_privilege_probe().sql
    assert "NOT IN ('Sleep', 'Killed')" in dialect.session_blocking("42", "i").sql


def test_mysql_grants_named_per_server():
    assert account("bob@10.0.0.%") == "'bob'@'10.0.0.%'"
    assert MARIADB.read_grant_hint("bob@%") == "GRANT PROCESS ON *.* TO 'bob'@'%';"
    assert MARIADB.signal_grant_hint("bob@%") == "GRANT CONNECTION ADMIN ON *.* TO 'bob'@'%';"
    assert MYSQL8.read_grant_hint("bob@%") == ("GRANT PROCESS ON *.* TO 'bob'@'%'; "
                                               "GRANT SELECT ON performance_schema.* TO 'bob'@'%';")
    assert MYSQL8.signal_grant_hint("bob@%") == "GRANT CONNECTION_ADMIN ON *.* TO 'bob'@'%';"
    assert MYSQL8.signal_privileges == {"CONNECTION_ADMIN", "SUPER"}
    assert MARIADB.signal_privileges == {"CONNECTION ADMIN", "SUPER"}


def test_postgres_lock_sql():
    assert PG.lock_graph == "blocking_pids"
    sessions = PG.lock_sessions(200, [7])
    assert "pg_catalog.pg_blocking_pids(pid)" in sessions.sql and sessions.params == {"query_chars": 200,
                                                                                        "extra": [7]}
    roots = PG.root_blockers("99")
    assert "WITH RECURSIVE" in roots.sql and "NOT nb = ANY(up.path)" in roots.sql
    assert roots.params == {"pid": 99, "max_depth": 32}
    term = PG.terminate_session("99", "2024-01-01T00:00:00+00:00")
    assert term.sql == ("SELECT pg_catalog.pg_terminate_backend(pid) FROM pg_catalog.pg_stat_activity "
                        "WHERE pid = :pid AND backend_start = CAST(:started AS timestamptz)")
    assert "pg_cancel_backend" in PG.cancel_session("99", "x").sql
    assert PG.free_prepared_hint("it's") == "ROLLBACK PREPARED 'it''s'"
    assert PG.read_grant_hint("bob") == 'GRANT pg_read_all_stats TO "bob";'
    assert PG.signal_grant_hint("bob") == 'GRANT pg_signal_backend TO "bob";'
    assert "pg_prepared_xacts" in PG.prepared_transactions().sql


@pytest.mark.parametrize(("sql", "dialect", "default", "tables"), [
    ("ALTER TABLE t ADD COLUMN c INT", MARIADB, "shop", (("shop", "t"),)),
    ("ALTER TABLE `other`.`t` ADD COLUMN c INT", MARIADB, "shop", (("other", "t"),)),
    ("alter table public.users add column age int", PG, None, (("public", "users"),)),
    ("CREATE INDEX ix ON orders (a)", PG, "public", (("public", "orders"),)),
    ("WITH x AS (SELECT 1) SELECT * FROM x JOIN t ON true", PG, "public", (("public", "t"),)),
    ("RENAME TABLE a TO b", MARIADB, "shop", (("shop", "a"), ("shop", "b"))),
    ("DROP TABLE IF EXISTS shop.t", MARIADB, None, (("shop", "t"),)),
])
def test_tables_in_statement(sql, dialect, default, tables):
    assert tables_in_statement(sql, dialect, default) == tables


def test_statement_kind():
    assert statement_kind("  ALTER TABLE t ADD x int") == "alter"
    assert statement_kind("/* app */ select 1") == "select"
    assert statement_kind("CREATE UNIQUE INDEX i ON t (a)") == "create index"
    assert statement_kind("LOCK TABLES t WRITE") == "lock tables write"
    assert statement_kind(None) is None


def test_protected_lists_come_from_files_and_env(tmp_path):
    ini = tmp_path / "alembic.ini"
    ini.write_text("[alembic]\nscript_location = s\n[dbguard]\nprotected_roles = replicator, svc_*\n"
                   "kill_grace_ms = 500\n")
    (tmp_path / "pyproject.toml").write_text('[tool.dbguard]\nprotected_applications = ["pgbouncer", "etl-*"]\n')
    s = load_settings({"config_path": str(ini)}, environ={}, cwd=tmp_path)
    assert s.protected_roles == ("replicator", "svc_*")
    assert s.protected_applications == ("pgbouncer", "etl-*")
    assert s.kill_grace_ms == 500
    s = load_settings({"config_path": str(ini)}, environ={"DBGUARD_PROTECTED_APPLICATIONS": "a,b"}, cwd=tmp_path)
    assert s.protected_applications == ("a", "b")


def test_an_idle_mariadb_session_holding_a_table_lock_is_idle_in_transaction() -> None:
    """INNODB_TRX is a cache refreshed at most every 100 ms: a transaction begun just before the read
    is missing from it. A table metadata lock read from a lock source says it is there all the same."""
    from dbguard.db.lock_graph import _mysql_state

    assert _mysql_state("Sleep", "", None, holds_table_lock=True) == "idle in transaction"
    assert _mysql_state("Sleep", "", 0.2) == "idle in transaction"
    assert _mysql_state("Sleep", "", None) == "idle"
    assert _mysql_state("Query", "Waiting for table metadata lock", None, holds_table_lock=True) == "waiting"


@pytest.mark.parametrize("dialect", [MYSQL8, MARIADB], ids=["mysql8", "mariadb"])
def test_mysql_table_names_resolve_in_the_target_database(dialect):
    from dbguard.dialects.mysql import split_qualified_name

    assert split_qualified_name("`d`.`a``b`") == ["d", "a`b"] and split_qualified_name("`my.t`") == ["my.t"]
    assert dialect.resolve_table("t", "app").params == {"schema": "app", "table": "t"}
    assert dialect.resolve_table("other.`my.t`", "app").params == {"schema": "other", "table": "my.t"}
    assert dialect.resolve_table("a.b.c", "app").params["table"] == ""  # names nothing
    assert "information_schema.TABLES" in dialect.resolve_table("t", "app").sql


def test_server_wide_lock_holders_are_read_from_each_source() -> None:
    """MySQL 8 (from its documentation): FLUSH TABLES WITH READ LOCK holds GLOBAL SHARED, LOCK INSTANCE
    FOR BACKUP holds BACKUP LOCK SHARED (statements take only INTENTION_EXCLUSIVE ones in passing);
    MariaDB lists the backup locks of FTWRL and BACKUP STAGE, not those every statement takes."""
    mysql8 = MYSQL8.server_lock_holders("performance_schema").sql
    assert "ml.OBJECT_TYPE = 'GLOBAL' AND ml.LOCK_TYPE = 'SHARED'" in mysql8
    assert "ml.OBJECT_TYPE = 'BACKUP LOCK' AND ml.LOCK_TYPE = 'SHARED'" in mysql8
    assert "LOCK_STATUS = 'GRANTED'" in mysql8
    mariadb = MARIADB.server_lock_holders("metadata_lock_info").sql
    assert "'MDL_BACKUP_FTWRL2'" in mariadb and "'MDL_BACKUP_BLOCK_DDL'" in mariadb
    assert "MDL_BACKUP_DML'" not in mariadb and "'MDL_BACKUP_DDL'" not in mariadb
    for dialect in (MYSQL8, MARIADB):
        assert dialect.waits_for_server_lock("Waiting for global read lock")
        assert dialect.waits_for_server_lock("Waiting for backup lock")
        assert not dialect.waits_for_server_lock("Waiting for table metadata lock")


def test_a_server_wide_lock_still_held_after_a_cancel_counts_as_holding_locks() -> None:
    """An idle holder of the global read lock or a backup stage has no transaction and no table lock;
    what it holds is still a reason to go on to terminate; a GET_LOCK or a passing backup lock is not."""
    mariadb = MARIADB.session_holds_locks("42", "metadata_lock_info").sql
    assert "LOCK_TYPE NOT IN ('User lock', 'Backup lock') OR (LOCK_TYPE = 'Backup lock'" in mariadb
    assert "'MDL_BACKUP_FTWRL2'" in mariadb and "'MDL_BACKUP_WAIT_COMMIT'" in mariadb
    mysql8 = MYSQL8.session_holds_locks("42", "performance_schema").sql
    assert "ml.OBJECT_TYPE = 'BACKUP LOCK' AND ml.LOCK_TYPE = 'SHARED'" in mysql8


def test_whether_the_server_takes_writes_is_asked_without_waiting() -> None:
    """MariaDB: lock_wait_timeout 0 fails a wait for a backup lock at once; MySQL 8's least is 1 s;
    PostgreSQL has no server-wide write lock, a read-only database refuses at once."""
    assert MARIADB.write_probe_timeouts() == ["SET SESSION lock_wait_timeout = 0"]
    assert MYSQL8.write_probe_timeouts() == ["SET SESSION lock_wait_timeout = 1"]
    assert PG.write_probe_timeouts() == ["SET lock_timeout = '500ms'"]


def test_row_lock_waits_are_read_from_each_engine() -> None:
    """MariaDB 10.11: INNODB_LOCK_WAITS joined with INNODB_LOCKS (what is waited for, what blocks) and
    INNODB_TRX (whose transaction). MySQL 8 (from its documentation; INNODB_LOCK_WAITS is gone there):
    performance_schema.data_lock_waits joined with data_locks on the requesting and blocking lock and
    transaction ids, each lock's THREAD_ID giving its session through performance_schema.threads.
    Both name the lock's table as `db`.`t`, so one reader serves both."""
    mariadb = MARIADB.row_lock_waits().sql
    assert "FROM information_schema.INNODB_LOCK_WAITS w" in mariadb
    assert "JOIN information_schema.INNODB_LOCKS rl ON rl.lock_id = w.requested_lock_id" in mariadb
    assert "JOIN information_schema.INNODB_LOCKS bl ON bl.lock_id = w.blocking_lock_id" in mariadb
    assert "JOIN information_schema.INNODB_TRX bt ON bt.trx_id = w.blocking_trx_id" in mariadb
    assert mariadb.startswith("SELECT rt.trx_mysql_thread_id, bt.trx_mysql_thread_id, rl.lock_table, rl.lock_index, "
                              "rl.lock_data, rl.lock_mode, rl.lock_type, bl.lock_mode, ")
    # A blocker queued ahead for the same row has its own request pending: its lock is not granted.
    assert "bt.trx_requested_lock_id <> w.blocking_lock_id" in mariadb
    mysql8 = MYSQL8.row_lock_waits().sql
    # MySQL 8 (from its documentation): the waiting and the blocking lock of each wait, matched on
    # engine, lock id and transaction; their threads mapped to the PROCESSLIST ids KILL takes.
    for clause in ("FROM performance_schema.data_lock_waits w",
                   "r.ENGINE_LOCK_ID = w.REQUESTING_ENGINE_LOCK_ID",
                   "r.ENGINE_TRANSACTION_ID = w.REQUESTING_ENGINE_TRANSACTION_ID",
                   "b.ENGINE_LOCK_ID = w.BLOCKING_ENGINE_LOCK_ID",
                   "b.ENGINE_TRANSACTION_ID = w.BLOCKING_ENGINE_TRANSACTION_ID",
                   "JOIN performance_schema.threads rt ON rt.THREAD_ID = r.THREAD_ID",
                   "JOIN performance_schema.threads bt ON bt.THREAD_ID = b.THREAD_ID",
                   "rt.PROCESSLIST_ID IS NOT NULL AND bt.PROCESSLIST_ID IS NOT NULL"):
        assert clause in mysql8, clause
    assert mysql8.startswith("SELECT rt.PROCESSLIST_ID, bt.PROCESSLIST_ID, ")
    assert "INNODB_" not in mysql8  # gone from MySQL 8's information_schema
    for dialect in (MYSQL8, MARIADB):
        assert dialect.row_lock_table("`shop`.`t`") == ("shop", "t")
        assert dialect.row_lock_table("`my.db`.`a``b`") == ("my.db", "a`b")
        assert dialect.row_lock_table("`shop`.`t` /* Partition `p0` */") == ("shop", "t")
        assert dialect.row_lock_table("t") is None and dialect.row_lock_table("`a`.`b`.`c`") is None


def test_mysql8_lock_instance_for_backup_holds_a_server_wide_lock() -> None:
    """MySQL 8 (docs): LOCK INSTANCE FOR BACKUP shows in metadata_locks as OBJECT_TYPE 'BACKUP LOCK',
    LOCK_TYPE 'SHARED' (DDL waits for it in state 'Waiting for backup lock'): its holder is a root
    blocker on every database, named with that lock."""
    holders = MYSQL8.server_lock_holders("performance_schema").sql
    assert "CONCAT(ml.OBJECT_TYPE, ' ', ml.LOCK_TYPE)" in holders  # shown as "BACKUP LOCK SHARED"
    assert "(ml.OBJECT_TYPE = 'BACKUP LOCK' AND ml.LOCK_TYPE = 'SHARED')" in holders
    assert "t.THREAD_ID = ml.OWNER_THREAD_ID" in holders and "t.PROCESSLIST_ID IS NOT NULL" in holders
    assert MYSQL8.waits_for_server_lock("Waiting for backup lock")
    # The backup lock a session holds is no reason to count it as holding table locks.
    assert "'BACKUP LOCK'" in MYSQL8.session_holds_locks("7", "performance_schema").sql


def test_a_query_is_cut_at_the_end_of_a_word_then_masked():
    from dbguard.db.lock_graph import QUERY_CHARS, _short

    words = "SELECT " + ", ".join(f"column_{i}" for i in range(60))
    shown = _short(words, [])
    assert shown is not None and len(shown) <= QUERY_CHARS and shown.endswith("…")
    assert words.startswith(shown[:-1].rstrip()) and words[len(shown[:-1].rstrip())] in ", "  # a whole word
    # A secret that would straddle the limit is dropped whole, never half shown.
    secret = "hunter2secretpw"
    query = "SELECT 1 /* " + "x " * ((QUERY_CHARS - 20) // 2) + secret + " */"
    assert secret not in (_short(query, [secret]) or "") and "hunter" not in (_short(query, [secret]) or "")
    # One token longer than the limit is cut where it must be; short queries are only put on one line.
    assert len(_short("x" * 500, []) or "") == QUERY_CHARS
    assert _short("SELECT\n  1", []) == "SELECT 1" and _short(None, []) is None
