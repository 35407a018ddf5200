"""Each engine's exact SQL, checked without a server (MySQL 8 has no server here at all)."""

import types

import pytest

from dbguard.dialects import for_sqlalchemy_dialect
from dbguard.dialects.mysql import MysqlDialect, run_lock_name, whole_seconds
from dbguard.dialects.postgresql import PostgresqlDialect, advisory_key


def test_postgres_timeouts():
    assert PostgresqlDialect().session_timeouts(2000, 60_000) == [
        "SET lock_timeout = '2000ms'", "SET statement_timeout = '60000ms'"]
    assert PostgresqlDialect().session_timeouts(200, 0) == ["SET lock_timeout = '200ms'"]


@pytest.mark.parametrize(("ms", "seconds"), [(1, 1), (200, 1), (1000, 1), (1001, 2), (2000, 2), (2500, 3)])
def test_mysql_lock_wait_rounds_up_to_whole_seconds_never_zero(ms, seconds):
    assert whole_seconds(ms) == seconds


def test_mariadb_and_mysql8_bound_statements_differently():
    maria = MysqlDialect(mariadb=True).session_timeouts(2000, 1500)
    mysql8 = MysqlDialect(mariadb=False).session_timeouts(2000, 1500)
    assert maria == ["SET SESSION lock_wait_timeout = 2", "SET SESSION innodb_lock_wait_timeout = 2",
                     "SET SESSION max_statement_time = 1.500"]
    assert mysql8 == ["SET SESSION lock_wait_timeout = 2", "SET SESSION innodb_lock_wait_timeout = 2",
                      "SET SESSION max_execution_time = 1500"]


def test_mysql_run_lock_is_keyed_by_database_and_fits_64_chars():
    assert run_lock_name("shop", "dbguard_") == "shop.dbguard_run"
    long = run_lock_name("d" * 64, "dbguard_")
    assert len(long) <= 64
    assert long != run_lock_name("d" * 63 + "e", "dbguard_")
    stmt = MysqlDialect(mariadb=True).try_run_lock("shop", "dbguard_")
    assert stmt.sql == "SELECT GET_LOCK(:name, 0)" and stmt.params == {"name": "shop.dbguard_run"}
    assert MysqlDialect(mariadb=False).run_lock_holder("shop", "dbguard_").sql == "SELECT IS_USED_LOCK(:name)"


def test_postgres_run_lock_probe_matches_the_advisory_key_halves():
    key = advisory_key("dbguard_")
    assert -(2**63) <= key < 2**63
    probe = PostgresqlDialect().run_lock_holder("db", "dbguard_")
    unsigned = key & 0xFFFFFFFFFFFFFFFF
    assert probe.params == {"hi": unsigned >> 32, "lo": unsigned & 0xFFFFFFFF}
    assert "pg_locks" in probe.sql and "objsubid = 1" in probe.sql
    assert advisory_key("other_") != key


@pytest.mark.parametrize(
    ("name", "mariadb", "expected"),
    [("postgresql", False, "postgresql"), ("mysql", False, "mysql"), ("mysql", True, "mariadb"),
     ("mariadb", True, "mariadb"), ("sqlite", False, "sqlite")],
)
def test_dialect_chosen_by_sqlalchemy_name_and_server_flavour(name, mariadb, expected):
    fake = types.SimpleNamespace(name=name, is_mariadb=mariadb)
    assert for_sqlalchemy_dialect(fake).name == expected


def test_unsupported_engine_is_a_config_error():
    from dbguard.errors import ConfigError

    with pytest.raises(ConfigError, match="oracle"):
        for_sqlalchemy_dialect(types.SimpleNamespace(name="oracle"))


def test_lock_timeout_errors_are_recognised_per_engine():
    class PgError(Exception):
        sqlstate = "55P03"

    class Wrapped(Exception):
        def __init__(self, orig):
            self.orig = orig

    assert PostgresqlDialect().is_lock_timeout(Wrapped(PgError()))
    assert MysqlDialect(True).is_lock_timeout(Wrapped(Exception(1205, "Lock wait timeout exceeded")))
    assert not MysqlDialect(True).is_lock_timeout(Wrapped(Exception(1146, "no table")))


def test_scratch_owner_locks_are_server_wide_and_only_dbguards_names_are_swept():
    from dbguard.dialects.postgresql import scratch_key
    from dbguard.drift.expected import _SCRATCH_NAME, SCRATCH_PREFIX, scratch_name

    name = scratch_name()
    assert _SCRATCH_NAME.fullmatch(name)
    for other in (f"{SCRATCH_PREFIX}team", f"{SCRATCH_PREFIX}ci_db", f"{SCRATCH_PREFIX}12_abcdef01x", "shadow"):
        assert not _SCRATCH_NAME.fullmatch(other), other
    pg = PostgresqlDialect()
    assert pg.hold_scratch(name).params == {"key": scratch_key(name)} != {"key": advisory_key(name)}
    held = pg.scratch_held(name)
    # Every database's advisory locks: the owner held its lock from the database it worked in.
    assert "l.database" not in held.sql and "pg_locks" in held.sql
    assert held.params["hi"] << 32 | held.params["lo"] == scratch_key(name) & 0xFFFFFFFFFFFFFFFF
    for dialect in (MysqlDialect(mariadb=True), MysqlDialect(mariadb=False)):
        lock = f"dbguard-scratch:{name}"
        assert dialect.hold_scratch(name) == ("SELECT GET_LOCK(:name, 0)", {"name": lock})
        assert dialect.scratch_held(name) == ("SELECT IS_USED_LOCK(:name) IS NOT NULL", {"name": lock})
        assert dialect.release_scratch(name) == ("SELECT RELEASE_LOCK(:name)", {"name": lock})
        assert len(lock) <= 64


def test_an_abandoned_scratch_database_is_dropped_without_ending_anybodys_session():
    pg = PostgresqlDialect()
    assert pg.drop_scratch_database("dbguard_shadow_1_0a1b2c3d").sql == (
        'DROP DATABASE IF EXISTS "dbguard_shadow_1_0a1b2c3d" WITH (FORCE)')
    assert pg.drop_scratch_database("dbguard_shadow_1_0a1b2c3d", force=False).sql == (
        'DROP DATABASE IF EXISTS "dbguard_shadow_1_0a1b2c3d"')
    assert pg.scratch_users("x") == ("SELECT count(*) FROM pg_catalog.pg_stat_activity WHERE datname = :name",
                                     {"name": "x"})
    for dialect in (MysqlDialect(mariadb=True), MysqlDialect(mariadb=False)):
        assert dialect.scratch_users("x") == (
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE DB = :name", {"name": "x"})


def test_only_postgresql_relaxes_the_commits_of_migrations_and_their_journal():
    assert PostgresqlDialect.migration_commit_statements == ("SET synchronous_commit = off",)
    assert PostgresqlDialect.flushed_commit_statements == ("RESET synchronous_commit",)
    from dbguard.dialects.sqlite import SqliteDialect

    for other in (MysqlDialect, SqliteDialect):
        assert other.migration_commit_statements == () and other.flushed_commit_statements == ()
