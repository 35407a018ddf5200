"""Observing what MariaDB decides for a migration statement on a copy of its table: the rewriting and
the engine SQL without a server, then the observations on a real MariaDB."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.pool import NullPool

from dbguard.db.connect import connection
from dbguard.dialects.mysql import MysqlDialect
from dbguard.dialects.mysql_copy import CopyProbe, copy_probe, masked, probe_statement
from dbguard.plan.observe_mysql import COPY_PREFIX, MysqlObservation, observe

# --- the rewriting, no server ------------------------------------------------------------------


@pytest.mark.parametrize(("statement", "table", "operations"), [
    ("ALTER TABLE t ADD COLUMN c INT", "t", "ADD COLUMN c INT"),
    ("alter table `we``ird.t` add column c int;", "we`ird.t", "add column c int"),
    ("ALTER TABLE shop.t DROP INDEX ix", "shop.t", "DROP INDEX ix"),
    ("  ALTER TABLE `shop` . `t`\n  MODIFY a BIGINT ;  ", "shop.t", "MODIFY a BIGINT"),
    ("ALTER TABLE t RENAME COLUMN a TO b", "t", "RENAME COLUMN a TO b"),
])
def test_alter_table_name_and_operations(statement, table, operations):
    assert copy_probe(statement) == CopyProbe("alter", table, operations)


def test_a_quoted_name_keeps_its_dots():
    assert copy_probe("ALTER TABLE `a.b` FORCE").name == ("a.b",)
    assert copy_probe("ALTER TABLE `db` . `t` FORCE").name == ("db", "t")


def test_only_the_table_name_after_alter_table_is_replaced():
    probe = copy_probe("ALTER TABLE `t` ADD COLUMN t INT COMMENT 't'")
    assert probe_statement("cp", probe.operations or "", "ALGORITHM=INSTANT") == \
        "ALTER TABLE `cp` ADD COLUMN t INT COMMENT 't', ALGORITHM=INSTANT"
    assert probe_statement("cp", "ADD INDEX ix (a);", "ALGORITHM=INPLACE, LOCK=NONE") == \
        "ALTER TABLE `cp` ADD INDEX ix (a), ALGORITHM=INPLACE, LOCK=NONE"
    assert probe_statement("c`p", "FORCE", None) == "ALTER TABLE `c``p` FORCE"


def test_algorithm_and_lock_named_by_the_statement_are_read_not_added():
    probe = copy_probe("ALTER TABLE t ADD COLUMN c INT, ALGORITHM = inplace, LOCK=SHARED")
    assert (probe.algorithm, probe.lock) == ("inplace", "shared")
    # A column called algorithm is not a clause; nor is a string.
    assert copy_probe("ALTER TABLE t ADD COLUMN algorithm INT DEFAULT 'ALGORITHM=COPY'").algorithm is None


def test_create_and_drop_index_become_alter_table_operations():
    assert copy_probe("CREATE UNIQUE INDEX ix_a ON shop.`t` (a, b(10)) COMMENT 'x'") == \
        CopyProbe("alter", "shop.t", "ADD UNIQUE INDEX ix_a (a, b(10)) COMMENT 'x'")
    assert copy_probe("CREATE INDEX ix USING BTREE ON t (a) ALGORITHM=INPLACE LOCK=NONE") == \
        CopyProbe("alter", "t", "ADD INDEX ix USING BTREE (a), ALGORITHM=INPLACE, LOCK=NONE", "inplace", "none")
    assert copy_probe("DROP INDEX `ix` ON t") == CopyProbe("alter", "t", "DROP INDEX `ix`")
    assert copy_probe("DROP INDEX ix ON t LOCK=EXCLUSIVE") == \
        CopyProbe("alter", "t", "DROP INDEX ix, LOCK=EXCLUSIVE", None, "exclusive")


@pytest.mark.parametrize(("statement", "why"), [
    ("ALTER TABLE c ADD CONSTRAINT fk FOREIGN KEY (p) REFERENCES p (id)", "foreign keys are not copied"),
    ("ALTER TABLE c DROP FOREIGN KEY fk", "foreign keys are not copied"),
    ("ALTER TABLE t RENAME TO u", "renames the table"),
    ("ALTER TABLE t EXCHANGE PARTITION p0 WITH TABLE u", "reaches beyond the table"),
    ("ALTER TABLE t ADD COLUMN c INT /*! , ALGORITHM=COPY */", "holds a comment"),
    ("ALTER TABLE t ADD COLUMN c INT -- note", "holds a comment"),
    ("ALTER TABLE t ADD COLUMN c INT; DROP TABLE t", "holds more than one statement"),
    ("ALTER TABLE IF EXISTS t ADD COLUMN c INT", "not a statement this observer knows"),
    ("ALTER ONLINE TABLE t ADD COLUMN c INT", "not a statement this observer knows"),
    ("GRANT ALL ON *.* TO x", "not a statement this observer knows"),
])
def test_what_a_copy_cannot_stand_for_is_refused_with_a_reason(statement, why):
    assert copy_probe(statement).refused == why


def test_keywords_inside_strings_are_not_keywords():
    assert copy_probe("ALTER TABLE t ADD COLUMN c VARCHAR(9) DEFAULT 'a;b -- REFERENCES'").refused is None
    assert masked("a 'it''s' `x``y` \"q\\\"\"") == "a 'xxxxx' `xxxx` \"xxx\""


@pytest.mark.parametrize(("statement", "kind", "table"), [
    ("CREATE TABLE IF NOT EXISTS `shop`.orders (id INT)", "create_table", "shop.orders"),
    ("DROP TABLE legacy", "drop_table", "legacy"),
    ("RENAME TABLE a TO b", "rename_table", "a"),
    ("UPDATE LOW_PRIORITY t SET a = 1", "dml", "t"),
    ("DELETE FROM `t` WHERE a = 1", "dml", "t"),
    ("INSERT INTO shop.t (a) VALUES (1)", "dml", "shop.t"),
])
def test_other_statements_are_sorted_by_kind(statement, kind, table):
    assert copy_probe(statement) == CopyProbe(kind, table)


def test_engine_sql_of_the_probe_mariadb_and_mysql8():
    maria, mysql8 = MysqlDialect(mariadb=True), MysqlDialect(mariadb=False)
    assert maria.copy_table_like("cp", ("sh`op", "t.x")).sql == "CREATE TABLE `cp` LIKE `sh``op`.`t.x`"
    fks = maria.foreign_keys_of(("t",))
    assert "REFERENTIAL_CONSTRAINTS" in fks.sql and fks.params == {"schema": None, "table": "t"}
    assert maria.drop_table_copy("cp").sql == "DROP TABLE IF EXISTS `cp`"
    assert maria.innodb_table_id("cp") == (
        "SELECT TABLE_ID FROM information_schema.INNODB_SYS_TABLES WHERE NAME = CONCAT(DATABASE(), '/', :table)",
        {"table": "cp"})
    assert mysql8.innodb_table_id("cp").sql == \
        "SELECT TABLE_ID FROM information_schema.INNODB_TABLES WHERE NAME = CONCAT(DATABASE(), '/', :table)"
    assert "METADATA_LOCK_INFO WHERE THREAD_ID = CONNECTION_ID()" in maria.own_metadata_locks("metadata_lock_info").sql
    own = mysql8.own_metadata_locks("performance_schema").sql
    assert "performance_schema.metadata_locks" in own and "t.PROCESSLIST_ID = CONNECTION_ID()" in own
    assert "LOCK_STATUS = 'GRANTED'" in own
    assert maria.mdl_source_absent("metadata_lock_info") == "metadata_lock_info plugin not installed"


# --- on a real MariaDB ----------------------------------------------------------------------------


@pytest.fixture
def conn(mysql_url: str) -> Iterator[Connection]:
    engine = sa.create_engine(mysql_url, poolclass=NullPool)
    with connection(engine) as c:  # autocommit, as dbguard's own connections are
        if not c.dialect.is_mariadb:
            pytest.skip("the table id and metadata lock checks here are MariaDB's")
        c.exec_driver_sql("CREATE TABLE t (id INT PRIMARY KEY, a INT, s VARCHAR(50), KEY ix_s (s)) "
                          "CHARACTER SET utf8mb4")
        c.exec_driver_sql("INSERT INTO t VALUES (1, NULL, 'x'), (2, 2, 'y')")
        yield c
    engine.dispose()


def _shape(c: Connection) -> tuple[object, ...]:
    """The real table's columns, indexes and InnoDB table id: none may change."""
    columns = c.exec_driver_sql("SHOW CREATE TABLE t").one()[1]
    table_id = c.exec_driver_sql(
        "SELECT TABLE_ID FROM information_schema.INNODB_SYS_TABLES WHERE NAME = CONCAT(DATABASE(), '/t')").scalar()
    return columns, table_id


def _copies(c: Connection) -> list[str]:
    return list(c.exec_driver_sql(
        "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() "
        f"AND TABLE_NAME LIKE '{COPY_PREFIX}%%'").scalars())


@pytest.mark.parametrize(("statement", "algorithm", "blocks", "rebuilt"), [
    ("ALTER TABLE t ADD COLUMN c INT", "instant", False, False),
    ("ALTER TABLE `t` MODIFY a BIGINT", "copy", True, True),
    ("ALTER TABLE t ADD INDEX ix_a (a)", "inplace", False, False),
    ("CREATE INDEX ix_a ON t (a)", "inplace", False, False),
    ("DROP INDEX ix_s ON t", "inplace", False, False),
    ("ALTER TABLE t MODIFY s VARCHAR(100)", "copy", True, True),  # 200 -> 400 bytes: a two-byte length
    ("ALTER TABLE t ADD COLUMN c INT, ALGORITHM=COPY", "copy", True, True),  # as written
    # INPLACE with writers waiting is not a COPY: the first FULLTEXT index (its hidden FTS_DOC_ID column
    # rebuilds the table), an AUTO_INCREMENT column.
    ("ALTER TABLE t ADD FULLTEXT INDEX ft_s (s)", "inplace", True, True),
    ("ALTER TABLE t ADD COLUMN n INT NOT NULL AUTO_INCREMENT UNIQUE", "inplace", True, True),
    # A named LOCK without ALGORITHM: the server still picks the algorithm.
    ("ALTER TABLE t ADD INDEX ix_a (a), LOCK=SHARED", "inplace", True, False),
])
def test_alter_is_observed_on_a_copy_and_the_real_table_is_untouched(conn, statement, algorithm, blocks, rebuilt):
    before = _shape(conn)
    seen = observe(conn, statement)
    assert seen == MysqlObservation(statement, "t", algorithm, blocks, rebuilt,
                                    note="probed on an empty copy of the table")
    assert _shape(conn) == before
    assert _copies(conn) == []


def test_a_failing_statement_is_not_observed_and_leaves_no_copy(conn):
    before = _shape(conn)
    seen = observe(conn, "ALTER TABLE t DROP INDEX no_such_index")
    assert seen.algorithm is None and seen.not_observed is not None
    assert seen.not_observed.startswith("the statement fails on a copy: (1091")
    assert _copies(conn) == [] and _shape(conn) == before
    assert observe(conn, "ALTER TABLE missing ADD COLUMN c INT").not_observed.startswith("cannot copy the table")
    assert _copies(conn) == []


def test_a_foreign_key_statement_is_not_observed(conn):
    seen = observe(conn, "ALTER TABLE t ADD CONSTRAINT fk FOREIGN KEY (a) REFERENCES t (id)")
    assert seen.not_observed == "foreign keys are not copied" and _copies(conn) == []


def test_a_table_with_foreign_keys_is_not_probed_on_a_copy(conn):
    # On the real child table MODIFY a BIGINT fails (1832); a copy without the key would say COPY.
    conn.exec_driver_sql("CREATE TABLE child (id INT PRIMARY KEY, t_id INT, FOREIGN KEY (t_id) REFERENCES t (id))")
    for table in ("child", "t"):
        seen = observe(conn, f"ALTER TABLE {table} ADD COLUMN z INT")
        assert seen.not_observed == "the table has foreign keys, which a copy lacks"
    assert _copies(conn) == []


def test_create_and_drop_table_need_no_probe(conn):
    assert observe(conn, "CREATE TABLE n (id INT)").blocks_writes is False
    dropped = observe(conn, "DROP TABLE t")
    assert dropped.blocks_writes is True and dropped.note and dropped.note.startswith("drop")
    assert _copies(conn) == [] and conn.exec_driver_sql("SELECT COUNT(*) FROM t").scalar() == 2


@pytest.fixture
def mdl_conn(private_mysql_url: str) -> Iterator[Connection]:
    """A connection to a database on this process's own MariaDB with metadata_lock_info installed for
    the test, and the server's plugin state as it was afterwards (its fixture exists for such changes)."""
    engine = sa.create_engine(private_mysql_url, poolclass=NullPool)
    ready = MysqlDialect(mariadb=True).mdl_source_ready("metadata_lock_info").sql
    try:
        with connection(engine) as c:
            installed_here = not c.exec_driver_sql(ready).scalar()
            if installed_here:
                c.exec_driver_sql("INSTALL SONAME 'metadata_lock_info'")
            try:
                c.exec_driver_sql("CREATE TABLE t (id INT PRIMARY KEY, a INT)")
                c.exec_driver_sql("INSERT INTO t VALUES (1, NULL)")
                yield c
            finally:
                if installed_here:
                    c.exec_driver_sql("UNINSTALL SONAME 'metadata_lock_info'")
    finally:
        engine.dispose()


@pytest.mark.parametrize("statement", ["UPDATE t SET a = 5 WHERE id = 1", "DELETE FROM t WHERE id = 1",
                                       "INSERT INTO t VALUES (2, 2)"])
def test_dml_shows_the_metadata_locks_it_keeps_and_is_rolled_back(mdl_conn, statement):
    seen = observe(mdl_conn, statement)
    assert seen.metadata_locks == (("t", "MDL_SHARED_WRITE"),) and seen.not_observed is None
    assert seen.table == "t" and seen.algorithm is None
    assert mdl_conn.exec_driver_sql("SELECT id, a FROM t").all() == [(1, None)]  # rolled back
    assert mdl_conn.get_execution_options()["isolation_level"] == "AUTOCOMMIT"


def test_failing_dml_is_not_observed(mdl_conn):
    seen = observe(mdl_conn, "INSERT INTO t VALUES (1, 1)")
    assert seen.not_observed and seen.not_observed.startswith("the statement fails on the scratch database: (1062")


def test_dml_without_metadata_lock_info_is_not_observed_and_nothing_is_installed(bare_mysql_url):
    engine = sa.create_engine(bare_mysql_url, poolclass=NullPool)
    try:
        with connection(engine) as c:
            c.exec_driver_sql("CREATE TABLE t (id INT PRIMARY KEY, a INT)")
            seen = observe(c, "UPDATE t SET a = 1")
            assert seen.not_observed == "metadata_lock_info plugin not installed" and seen.metadata_locks == ()
            assert c.exec_driver_sql("SELECT COUNT(*) FROM information_schema.PLUGINS "
                                     "WHERE PLUGIN_NAME = 'METADATA_LOCK_INFO'").scalar() == 0
    finally:
        engine.dispose()
