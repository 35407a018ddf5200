"""dbguard's sessions carry their command and run in PostgreSQL's application_name, so a DBA's tools
show a running migration as dbguard's: `dbguard/upgrade/run-<id>`, on the migration's session and on
dbguard's own. The unit tests need no server; the upgrade waits on a lock the test holds while the test
reads pg_stat_activity, and goes through once the test lets go.
"""

from __future__ import annotations

from dbguard.core.appname import MAX_BYTES, application_name, with_run
from dbguard.dialects.mysql import MysqlDialect
from dbguard.dialects.postgresql import PostgresqlDialect
from dbguard.dialects.sqlite import SqliteDialect


def test_the_name_says_command_and_run() -> None:
    assert application_name() == "dbguard"
    assert application_name("upgrade") == "dbguard/upgrade"
    assert application_name("locks kill") == "dbguard/locks-kill"
    assert application_name("upgrade", 17) == "dbguard/upgrade/run-17"
    assert with_run("dbguard/upgrade", 17) == "dbguard/upgrade/run-17"
    assert with_run("dbguard/upgrade/run-3", 17) == "dbguard/upgrade/run-17"


def test_a_long_name_is_cut_to_what_postgresql_keeps_but_never_its_run_id() -> None:
    name = application_name("x" * 100, 123456789)
    assert len(name.encode()) == MAX_BYTES
    assert name.endswith("/run-123456789")
    assert len(application_name("é" * 100).encode()) <= MAX_BYTES
    assert application_name("é" * 100).encode().decode() == application_name("é" * 100)


def test_only_postgresql_names_its_sessions() -> None:
    pg = PostgresqlDialect()
    assert pg.application_connect_args("dbguard/upgrade") == {"application_name": "dbguard/upgrade"}
    assert pg.set_application_name("dbguard/upgrade/run-1") == ["SET application_name = 'dbguard/upgrade/run-1'"]
    assert pg.set_application_name("it's") == ["SET application_name = 'it''s'"]
    for other in (MysqlDialect(mariadb=True), MysqlDialect(mariadb=False), SqliteDialect()):
        assert other.application_connect_args("dbguard") == {}
        assert other.set_application_name("dbguard") == []

