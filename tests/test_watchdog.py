"""The watchdog on real PostgreSQL and MariaDB: a long transaction holds a table, a migration's
ALTER queues behind it, and a reader queries the table every 50 ms. Guarded, the watchdog cancels
the ALTER once the reader has waited behind it longer than max_blocking_ms (the server's own account
of the wait, recorded in the ledger), the step fails as "blocking traffic" after its retries, and the
ledger keeps the queue it saw. How long the reader stalls, guarded and under plain Alembic, is
benchmarks/rollback_bench.py's business.

Waits are on observable conditions (a session waits for a lock, a process exits) with deadlines.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.dbs import create_database, drop_database
from tests.lanekit import (
    AppSession,
    Background,
    Cleanup,
    Reader,
    Server,
    columns,
    connect,
    dbguard,
    describe,
    ledger,
    start_dbguard,
    wait_waiting,
)
from tests.projects import make_project, wait_for

pytestmark = pytest.mark.integration

MAX_BLOCKING_MS = 1000
GUARD_ENV = {"DBGUARD_LOCK_TIMEOUT_MS": "5000", "DBGUARD_MAX_BLOCKING_MS": str(MAX_BLOCKING_MS),
             "DBGUARD_LOCK_RETRIES": "2"}

T1 = ("w1_t1", """
op.create_table("t1", sa.Column("id", sa.Integer, primary_key=True))
op.bulk_insert(sa.table("t1", sa.column("id", sa.Integer)), [{"id": i} for i in range(1, 101)])
""", 'op.drop_table("t1")')
ADD = ("w2_add", 'op.add_column("t1", sa.Column("c", sa.Integer))', 'op.drop_column("t1", "c")')


def _url(request: pytest.FixtureRequest, engine: str) -> str:
    return request.getfixturevalue("pg_url" if engine == "postgresql" else "mysql_url")


def _finish(proc: subprocess.Popen[str], timeout: float = 60) -> tuple[int, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out + err


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["postgresql", "mysql"])
def test_watchdog_cancels_the_ddl_that_queues_readers(engine: str, request: pytest.FixtureRequest,
                                                       tmp_path: Path) -> None:
    url = _url(request, engine)
    ini = make_project(tmp_path, url, [T1, ADD])
    assert (p := dbguard(ini, "upgrade", T1[0])).returncode == 0, describe(p)
    cleanup = Cleanup()
    try:
        server = cleanup.add(Server(url))
        # The blocker never lets go; the watchdog cancels the ALTER every time the reader queues too long.
        blocker = cleanup.add(AppSession(url, "t1"))
        reader = cleanup.add(Reader(url, "t1"))
        run = cleanup.add(start_dbguard(ini, "upgrade", "head", env=GUARD_ENV))
        code, output = _finish(run)
        # Once dbguard gave up, the reader is served again, the blocker still open.
        served = reader.queries
        wait_for(lambda: reader.queries > served + 2, timeout=30, message="the reader is still queued")
        reader.stop()
        assert code == 5, output
        assert "blocking traffic" in output
        assert server.alive(blocker.id)
        runs, steps = ledger(url)
        step = next(s for s in steps if s["run_id"] == runs[-1]["id"] and s["revision"] == ADD[0])
        assert step["attempts"] == 3 and step["status"] == "failed"
        assert "blocking traffic" in step["error"]
        notes = json.loads(step["notes"])
        # Each cancellation came once the server said the reader had waited longer than the bound.
        assert len(notes) == 3 and all(n["oldest_ms"] > MAX_BLOCKING_MS for n in notes)
        assert all(reader.id in n["sessions"] for n in notes), notes
        assert "c" not in columns(url, "t1")
    finally:
        cleanup.close()


def test_watchdog_ignores_waiters_in_another_database(mysql_url: str, mysql_server_url: str,
                                                      tmp_path: Path) -> None:
    """MariaDB lists a waiter's statement, not its table's database: a session queued on a table of
    the same name in another database (another tenant) must not make the watchdog cancel this run."""
    other = create_database(mysql_server_url, "mysql")
    cleanup = Cleanup()
    try:
        with connect(other) as conn:
            conn.exec_driver_sql("CREATE TABLE t1 (id INT PRIMARY KEY)")
        server = cleanup.add(Server(other))
        app = AppSession(other, "t1")
        waiter = cleanup.add(Background(other, "ALTER TABLE t1 ADD COLUMN x INT"))
        cleanup.add(app)  # closed first: the ALTER then goes through
        wait_waiting(server, like="alter table t1")
        slow = ("w2_slow", 'op.execute("SELECT SLEEP(2), (SELECT COUNT(*) FROM t1)")', "pass")
        ini = make_project(tmp_path, mysql_url, [T1, slow])
        p = dbguard(ini, "upgrade", "head", env={"DBGUARD_MAX_BLOCKING_MS": "300", "DBGUARD_LOCK_RETRIES": "0"})
        assert p.returncode == 0, describe(p)
        assert waiter.id in server.waiting_sessions()  # it was queued there all along
    finally:
        cleanup.close()
        drop_database(other, mysql_server_url)
