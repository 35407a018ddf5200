"""dbguard's own statements meet locks as migration statements do: a bounded wait (the lock timeout
dbguard hands the server), tries again after a backoff, and one line when it gives up. Real
sessions hold real locks on the ledger's tables."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from dbguard.db.waits import with_lock_retries
from dbguard.dialects import for_sqlalchemy_dialect
from dbguard.target import bound_lock_waits
from tests.dbs import backend_of
from tests.guardrun import connect, describe, ledger, run_dbguard
from tests.projects import make_project

pytestmark = pytest.mark.integration

# MariaDB's lock_wait_timeout takes whole seconds: 1 s is its shortest bound.
BOUND_MS = {"postgresql": 200, "mysql": 1000}


def _hold_ledger(conn: sa.Connection) -> None:
    """Take a lock on dbguard_runs that every reader of it must wait for, and keep it."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("BEGIN")
        conn.exec_driver_sql("LOCK TABLE dbguard_runs IN ACCESS EXCLUSIVE MODE")
    else:
        conn.exec_driver_sql("LOCK TABLES dbguard_runs WRITE")


def _release(conn: sa.Connection) -> None:
    conn.exec_driver_sql("COMMIT" if conn.dialect.name == "postgresql" else "UNLOCK TABLES")


@pytest.fixture(params=["pg_url", "mysql_url"], ids=["postgresql", "mysql"])
def ledger_url(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, Path]:
    url = request.getfixturevalue(request.param)
    ini = make_project(tmp_path, url, [("r1", "op.create_table('t', sa.Column('id', sa.Integer, primary_key=True))")])
    done = run_dbguard(ini, url, "upgrade", "head")
    assert done.returncode == 0, describe(done)
    return url, ini


def test_a_statement_is_tried_again_after_its_lock_wait_and_then_succeeds(ledger_url):
    url, _ini = ledger_url
    bound = BOUND_MS[backend_of(url)]
    with connect(url) as holder, connect(url) as mine:
        bound_lock_waits(mine, for_sqlalchemy_dialect(mine.dialect), bound)
        _hold_ledger(holder)
        backoffs: list[float] = []

        def backoff(seconds: float) -> None:
            # The first read timed out on the server: the holder lets go before the next try.
            backoffs.append(seconds)
            _release(holder)

        count = with_lock_retries(mine, lambda: mine.exec_driver_sql("SELECT count(*) FROM dbguard_runs").scalar(),
                                  "the test's read", sleep=backoff)
        assert count == 1 and len(backoffs) == 1 and backoffs[0] > 0


def test_a_ledger_that_stays_locked_gives_up_in_one_line(ledger_url):
    url, ini = ledger_url
    bound = BOUND_MS[backend_of(url)]
    with connect(url) as holder:
        _hold_ledger(holder)
        try:
            proc = run_dbguard(ini, url, "upgrade", "head", env={"DBGUARD_LEDGER_LOCK_TIMEOUT_MS": str(bound)})
        finally:
            _release(holder)
    assert proc.returncode == 2, describe(proc)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, describe(proc)
    assert "dbguard's ledger waited too long for a lock, 3 times" in lines[0], describe(proc)
    runs, _ = ledger(url)
    assert [r["status"] for r in runs] == ["succeeded"]  # nothing recorded, nothing run


def test_the_bound_is_what_dbguard_hands_the_server(ledger_url):
    url, _ini = ledger_url
    bound = BOUND_MS[backend_of(url)]
    with connect(url) as conn:
        bound_lock_waits(conn, for_sqlalchemy_dialect(conn.dialect), bound)
        if conn.dialect.name == "postgresql":
            assert conn.exec_driver_sql("SHOW lock_timeout").scalar() == f"{bound}ms"
        else:
            got = conn.exec_driver_sql("SELECT @@SESSION.lock_wait_timeout, @@SESSION.innodb_lock_wait_timeout").one()
            assert tuple(int(v) for v in got) == (bound // 1000, bound // 1000)
