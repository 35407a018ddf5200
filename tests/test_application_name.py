"""dbguard's sessions carry their command and run in PostgreSQL's application_name, so a DBA's tools
show a running migration as dbguard's: `dbguard/upgrade/run-<id>`, on the migration's session and on
dbguard's own. The unit tests need no server; the upgrade waits on a lock the test holds while the test
reads pg_stat_activity, and goes through once the test lets go.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dbguard.core.appname import MAX_BYTES, application_name, with_run
from dbguard.core.state import RunStatus
from dbguard.dialects.mysql import MysqlDialect
from dbguard.dialects.postgresql import PostgresqlDialect
from dbguard.dialects.sqlite import SqliteDialect
from tests.lanekit import AppSession, Cleanup, Server, execute, ledger, start_dbguard, wait_waiting
from tests.projects import make_project, wait_for


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


ADD = ("a1_add", 'op.add_column("t1", sa.Column("c", sa.Integer))', 'op.drop_column("t1", "c")')


@pytest.mark.integration
def test_a_running_upgrade_shows_its_run_in_pg_stat_activity(pg_url: str, tmp_path: Path) -> None:
    # env.py's URL names an application of its own: the migration's session is the run's all the same.
    sep = "&" if "?" in pg_url else "?"
    ini = make_project(tmp_path, f"{pg_url}{sep}application_name=envpy", [ADD])
    cleanup = Cleanup()
    try:
        server = cleanup.add(Server(pg_url))
        execute(server.conn, "CREATE TABLE t1 (id integer PRIMARY KEY)")
        holder = cleanup.add(AppSession(pg_url, "t1"))
        run = start_dbguard(ini, "upgrade", "head", env={"DBGUARD_LOCK_TIMEOUT_MS": "30000",
                                                         "DBGUARD_MAX_BLOCKING_MS": "60000"})
        try:
            (waiting,) = wait_waiting(server, like="ALTER TABLE")
            runs, _ = ledger(pg_url)
            (running,) = [r for r in runs if r["status"] == RunStatus.RUNNING.value]
            assert waiting in {s["id"] for s in json.loads(running["sessions"])}
            named = {str(pid): app for pid, app in server.rows(
                f"SELECT pid, application_name FROM pg_stat_activity WHERE datname = '{server.database}'")}
            expected = f"dbguard/upgrade/run-{running['id']}"
            assert named[waiting] == expected, named
            # dbguard's own session (ledger, run lock) and the monitor's carry the run too.
            others = [pid for pid, app in named.items() if app == expected and pid != waiting]
            assert others, named
            assert not [app for app in named.values() if app.startswith("dbguard") and app != expected], named
            holder.commit()
            out, err = run.communicate(timeout=60)
        finally:
            if run.poll() is None:
                run.kill()
                run.communicate()
        assert run.returncode == 0, out + err
        wait_for(lambda: not server.rows(
            f"SELECT 1 FROM pg_stat_activity WHERE datname = '{server.database}' AND application_name LIKE 'dbguard%'"),
            message="dbguard's sessions outlived its process")
    finally:
        cleanup.close()
