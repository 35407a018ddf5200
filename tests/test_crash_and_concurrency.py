"""What real processes and real sessions do to a guarded run: a dbguard killed with SIGKILL in
the middle of a step, several deploys started at once, and a migration blocked by another
session's open transaction while readers keep reading.

Every wait synchronises on an observable condition (a ledger row, a connection, a process
exit) with a deadline; slow migrations are gated on a marker file where they can be, and on a
bounded server-side sleep where the point is a statement running on the server.
"""

from __future__ import annotations

import signal
import subprocess
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa

from dbguard.settings import load_settings
from tests.dbs import backend_of
from tests.guardrun import (
    catalog,
    connect,
    database_of,
    describe,
    end_sessions,
    has_connected,
    json_out,
    ledger,
    run_dbguard,
    start_dbguard,
    table_names,
    try_ledger,
    versions,
)
from tests.projects import make_project, wait_for

pytestmark = pytest.mark.integration

RELEASE_ENV = "DBG_TEST_RELEASE_FILE"

TABLE_T = (
    "k1_t",
    """
    op.create_table("t", sa.Column("id", sa.Integer, primary_key=True), sa.Column("name", sa.String(50)))
    op.bulk_insert(sa.table("t", sa.column("id", sa.Integer), sa.column("name", sa.String)),
                   [{"id": i, "name": f"row {i}"} for i in range(1, 11)])
    """,
)

# A step that is still running on the server when its client dies: a bounded server-side sleep on
# PostgreSQL and MariaDB; on SQLite (no server) a loop inside the migration until a marker file.
SLOW_STEP = (
    "k2_slow",
    f'''
import os
import time

from alembic import context


def upgrade() -> None:
    # dbguard's pre-flight renders pending revisions offline to plan them: sleep only for real.
    if context.is_offline_mode():
        op.create_table("after_sleep", sa.Column("id", sa.Integer, primary_key=True))
        return
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        bind.exec_driver_sql("SELECT pg_sleep(30)")
    elif bind.dialect.name in ("mysql", "mariadb"):
        bind.exec_driver_sql("SELECT SLEEP(30)")
    else:
        marker = os.environ[{RELEASE_ENV!r}]
        deadline = time.monotonic() + 30
        while not os.path.exists(marker) and time.monotonic() < deadline:
            time.sleep(0.02)
    op.create_table("after_sleep", sa.Column("id", sa.Integer, primary_key=True))
''',
)

# The first step of the concurrency tests waits (inside the migration, on every engine) until the
# test releases it, so the other processes are known to overlap with it.
GATED_STEP = (
    "c1_gated",
    f'''
import os
import time

from alembic import context


def upgrade() -> None:
    # dbguard's pre-flight renders pending revisions offline to plan them: wait only for real.
    marker = None if context.is_offline_mode() else os.environ.get({RELEASE_ENV!r})
    deadline = time.monotonic() + 30
    while marker and not os.path.exists(marker) and time.monotonic() < deadline:
        time.sleep(0.02)
    op.create_table("c", sa.Column("id", sa.Integer, primary_key=True), sa.Column("name", sa.String(50)))
''',
)
CONCURRENT_REVISIONS = [
    GATED_STEP,
    ("c2_column", 'op.add_column("c", sa.Column("email", sa.String(100)))'),
    ("c3_index", 'op.create_index("ix_c_email", "c", ["email"])'),
]
CONCURRENT_HEAD = "c3_index"
OTHERS = 3


def server_url_of(db_url: str, request: pytest.FixtureRequest) -> str | None:
    kind = backend_of(db_url)
    if kind == "postgresql":
        return request.getfixturevalue("pg_server_url")
    if kind == "mysql":
        return request.getfixturevalue("mysql_server_url")
    return None


def step_running(url: str, revision: str) -> bool:
    _, steps = try_ledger(url)
    return any(s["revision"] == revision and s["status"] == "running" for s in steps)


def run_running(url: str) -> bool:
    runs, _ = try_ledger(url)
    return any(r["status"] == "running" for r in runs)


def stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.communicate(timeout=30)


# 5. SIGKILL in the middle of a slow step ----------------------------------------------------------


def test_sigkill_mid_step_leaves_state_unknown_and_refuses_the_next_upgrade(
    db_url: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    server = server_url_of(db_url, request)
    marker = tmp_path / "release"
    ini = make_project(tmp_path, db_url, [TABLE_T, SLOW_STEP])
    proc = start_dbguard(ini, db_url, "upgrade", "head", env={RELEASE_ENV: str(marker)})
    try:
        wait_for(lambda: step_running(db_url, "k2_slow") or proc.poll() is not None, timeout=60, interval=0.05,
                 message="the slow step never showed up as running in the ledger")
        assert proc.poll() is None, "dbguard ended before it could be killed mid-step"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        assert proc.returncode == -signal.SIGKILL
        proc.communicate(timeout=10)

        # The server (or the kernel, for SQLite's lock file) frees the run lock of a dead holder.
        from dbguard import api

        settings = load_settings({"config_path": ini, "url": db_url}, environ={})
        wait_for(lambda: api.status(settings).state != "RUNNING", timeout=15, interval=0.05,
                 message="the killed process's run lock was never freed")

        status = run_dbguard(ini, db_url, "--format", "json", "status")
        assert status.returncode == 3, describe(status)
        report = json_out(status)
        assert report["state"] == "UNKNOWN"
        assert report["last_run"]["status"] == "running"
        assert report["last_run"]["pid"] == proc.pid
        assert "never finished" in report["breaker_reason"]

        before = catalog(db_url)
        again = run_dbguard(ini, db_url, "upgrade", "head")
        assert again.returncode == 3, describe(again)
        assert "circuit breaker open" in again.stdout and "never finished" in again.stdout
        assert catalog(db_url) == before

        runs, steps = ledger(db_url)
        assert [r["status"] for r in runs] == ["running", "refused"]
        assert [(s["revision"], s["status"]) for s in steps] == [("k1_t", "succeeded"), ("k2_slow", "running")]
        assert versions(db_url) == ["k1_t"]
        assert "after_sleep" not in table_names(db_url)
    finally:
        stop(proc)
        marker.touch()
        if server is not None:
            # The killed client's statement still sleeps on the server: end it now.
            end_sessions(server, database_of(db_url))


# 6. several deploys at once ----------------------------------------------------------------------


def _start_first(ini: Path, url: str, marker: Path) -> subprocess.Popen[str]:
    first = start_dbguard(ini, url, "upgrade", "head", env={RELEASE_ENV: str(marker)})
    wait_for(lambda: step_running(url, "c1_gated") or first.poll() is not None, timeout=60, interval=0.05,
             message="the first upgrade never started its gated step")
    assert first.poll() is None, "the first upgrade ended early"
    assert run_running(url)
    return first


def test_concurrent_upgrades_one_applies_the_others_are_busy(db_url: str, tmp_path: Path) -> None:
    marker = tmp_path / "release"
    ini = make_project(tmp_path, db_url, CONCURRENT_REVISIONS)
    first = _start_first(ini, db_url, marker)
    others: list[subprocess.Popen[str]] = []
    try:
        # status sees the run without taking its lock.
        status = run_dbguard(ini, db_url, "--format", "json", "status")
        assert status.returncode == 4, describe(status)
        assert json_out(status)["state"] == "RUNNING"
        others = [start_dbguard(ini, db_url, "upgrade", "head") for _ in range(OTHERS)]
        results = [(p, *p.communicate(timeout=60)) for p in others]
        # They all ended while the first still held the run lock: they overlapped with it.
        assert first.poll() is None
        for proc, out, err in results:
            assert proc.returncode == 4, f"exit {proc.returncode}\n{out}\n{err}"
            assert "busy" in out and "Traceback" not in err
        marker.touch()
        out, err = first.communicate(timeout=60)
        assert first.returncode == 0, f"{out}\n{err}"
    finally:
        marker.touch()
        for proc in [first, *others]:
            stop(proc)

    runs, steps = ledger(db_url)
    assert sorted(r["status"] for r in runs) == ["busy"] * OTHERS + ["succeeded"]
    (applier,) = [r for r in runs if r["status"] == "succeeded"]
    assert applier["pid"] == first.pid
    assert [(s["run_id"], s["revision"], s["status"]) for s in steps] == [
        (applier["id"], revision, "succeeded") for revision, _ in CONCURRENT_REVISIONS
    ]
    assert versions(db_url) == [CONCURRENT_HEAD]


def test_upgrades_started_at_the_same_moment_on_a_fresh_database(db_url: str, tmp_path: Path) -> None:
    """No ledger yet: whoever wins the run lock creates it; the losers exit 4 without racing it."""
    marker = tmp_path / "release"
    ini = make_project(tmp_path, db_url, CONCURRENT_REVISIONS)
    procs = [start_dbguard(ini, db_url, "upgrade", "head", env={RELEASE_ENV: str(marker)})
             for _ in range(1 + OTHERS)]
    try:
        # The winner waits in its gated step until released: the others must all end meanwhile.
        wait_for(lambda: sum(p.poll() is not None for p in procs) >= OTHERS, timeout=60, interval=0.05,
                 message="the losing upgrades did not end while the winner held the run lock")
        assert sum(p.poll() is None for p in procs) == 1
        marker.touch()
        outputs = [(p, *p.communicate(timeout=60)) for p in procs]
    finally:
        marker.touch()
        for proc in procs:
            stop(proc)
    codes = sorted(p.returncode for p, _, _ in outputs)
    assert codes == [0] + [4] * OTHERS, "\n".join(f"exit {p.returncode}\n{out}\n{err}" for p, out, err in outputs)
    runs, steps = ledger(db_url)
    (applier,) = [r for r in runs if r["status"] == "succeeded"]
    assert [(s["run_id"], s["revision"], s["status"]) for s in steps] == [
        (applier["id"], revision, "succeeded") for revision, _ in CONCURRENT_REVISIONS
    ]
    assert versions(db_url) == [CONCURRENT_HEAD]


def test_concurrent_upgrades_with_wait_lock_all_reach_head_once(db_url: str, tmp_path: Path) -> None:
    marker = tmp_path / "release"
    ini = make_project(tmp_path, db_url, CONCURRENT_REVISIONS)
    first = _start_first(ini, db_url, marker)
    others: list[subprocess.Popen[str]] = []
    try:
        others = [start_dbguard(ini, db_url, "upgrade", "head", "--wait-lock", "30") for _ in range(OTHERS)]
        # Each has connected (its next act is asking for the run lock) while the first one is
        # held inside its gated step: they overlap. None of them may get past the lock meanwhile.
        wait_for(lambda: all(has_connected(p.pid, db_url) for p in others)
                 or any(p.poll() is not None for p in others),
                 timeout=60, interval=0.05, message="the waiting upgrades never connected")
        assert all(p.poll() is None for p in others), "a waiting upgrade ended while the lock was held"
        assert first.poll() is None
        marker.touch()
        outputs = [(p, *p.communicate(timeout=90)) for p in [first, *others]]
        for proc, out, err in outputs:
            assert proc.returncode == 0, f"pid {proc.pid}: exit {proc.returncode}\n{out}\n{err}"
    finally:
        marker.touch()
        for proc in [first, *others]:
            stop(proc)

    runs, steps = ledger(db_url)
    assert [r["status"] for r in runs] == ["succeeded"] * (1 + OTHERS), runs
    assert runs[0]["pid"] == first.pid
    assert {r["pid"] for r in runs[1:]} == {p.pid for p in others}
    # Every revision was applied exactly once, by the first run; the others found nothing to do.
    assert sorted((s["revision"], s["status"]) for s in steps) == sorted(
        (revision, "succeeded") for revision, _ in CONCURRENT_REVISIONS
    )
    assert {s["run_id"] for s in steps} == {runs[0]["id"]}
    assert all(r["to_revision"] == CONCURRENT_HEAD for r in runs)
    assert versions(db_url) == [CONCURRENT_HEAD]


# 7. a migration blocked by an open transaction -----------------------------------------------------


class Reader(threading.Thread):
    """Runs ``SELECT count(*) FROM t`` every 50 ms on a connection of its own and counts the queries
    that came back."""

    def __init__(self, url: str) -> None:
        super().__init__(name="reader", daemon=True)
        self.url = url
        self.served = 0
        self.error: BaseException | None = None
        self._halt = threading.Event()

    def run(self) -> None:
        try:
            with connect(self.url) as conn:
                # Never hang the test run, whatever happens.
                if conn.dialect.name == "postgresql":
                    conn.exec_driver_sql("SET statement_timeout = '20s'")
                else:
                    conn.exec_driver_sql("SET SESSION max_statement_time = 20")
                while not self._halt.is_set():
                    conn.execute(sa.text("SELECT count(*) FROM t")).scalar()
                    self.served += 1
                    self._halt.wait(0.05)
        except Exception as exc:  # noqa: BLE001 - reported by the test
            self.error = exc

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=30)


# The migration's own session says which lock timeout it runs with, before its ALTER queues.
SEEN_TIMEOUT = """
from alembic import context
if not context.is_offline_mode():
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        seen = bind.exec_driver_sql("SHOW lock_timeout").scalar()
    else:
        seen = bind.exec_driver_sql("SELECT @@SESSION.lock_wait_timeout").scalar()
    with open({path!r}, "a") as f:
        f.write(str(seen) + "\\n")
op.add_column("t", sa.Column("extra", sa.Integer))
"""


@pytest.mark.parametrize(
    ("kind", "lock_timeout_ms", "server_says"),
    [
        pytest.param("postgresql", 300, "300ms", id="postgresql"),
        # MariaDB's lock_wait_timeout takes whole seconds, 1 at least.
        pytest.param("mysql", 1000, "1", id="mysql"),
    ],
)
def test_blocked_migration_gives_up_and_readers_are_not_stalled(
    kind: str, lock_timeout_ms: int, server_says: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """An open transaction holds t: each try of the ALTER waits the lock timeout dbguard handed the
    server, then dbguard gives up and the readers queued behind the ALTER are served again. How long
    they stalled meanwhile is benchmarks/rollback_bench.py's business."""
    url = request.getfixturevalue({"postgresql": "pg_url", "mysql": "mysql_url"}[kind])
    retries = 2
    seen = tmp_path / "seen_lock_timeout"
    ini = make_project(tmp_path, url, [TABLE_T, ("k3_add", SEEN_TIMEOUT.format(path=str(seen)))])
    prepared = run_dbguard(ini, url, "upgrade", "k1_t")
    assert prepared.returncode == 0, describe(prepared)

    reader = Reader(url)
    with connect(url, autocommit=False) as blocker:
        # BEGIN; SELECT * FROM t; and then stay idle in transaction, holding the table's lock.
        assert len(blocker.execute(sa.text("SELECT * FROM t")).all()) == 10
        reader.start()
        try:
            wait_for(lambda: reader.served >= 3 or reader.error, timeout=15, message="the reader never got going")
            if kind == "postgresql":
                blocked = run_dbguard(ini, url, "upgrade", "head", "--lock-timeout", str(lock_timeout_ms),
                                      "--lock-retries", str(retries), timeout=120)
            else:  # the same settings through the environment
                blocked = run_dbguard(ini, url, "upgrade", "head", timeout=120, env={
                    "DBGUARD_LOCK_TIMEOUT_MS": str(lock_timeout_ms), "DBGUARD_LOCK_RETRIES": str(retries)})
            # After dbguard gave up, the reader runs again while the blocker still holds t.
            served = reader.served
            wait_for(lambda: reader.served >= served + 5 or reader.error, timeout=15,
                     message="the reader did not run after dbguard gave up")
        finally:
            reader.stop()
        assert blocker.in_transaction(), "the blocker was left alone: ending sessions is not this run's job"
        blocker.rollback()
    assert reader.error is None, reader.error

    assert blocked.returncode == 5, describe(blocked)
    assert "lock" in blocked.stdout and "tried 3 times" in blocked.stdout
    # Every try ran with the bound dbguard handed the server, and the server ended its wait.
    assert seen.read_text().split() == [server_says] * (retries + 1)
    runs, steps = ledger(url)
    assert runs[-1]["status"] == "failed" and runs[-1]["failed_step"] == "k3_add"
    (step,) = [s for s in steps if s["revision"] == "k3_add"]
    assert step["status"] == "failed"
    assert step["attempts"] == retries + 1
    assert any(words in step["error"].lower() for words in ("lock timeout", "lock wait timeout")), step
    assert versions(url) == ["k1_t"]


@pytest.mark.parametrize("kind", ["postgresql", "mysql"])
def test_blocked_step_retries_only_when_nothing_of_it_was_committed(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """A step that created a table before its ALTER hit the lock timeout: PostgreSQL rolled the
    whole step back and may try again; on MariaDB the CREATE is already live, so a retry would
    only fail on 'table already exists': the step fails at once, marked partial."""
    url = request.getfixturevalue({"postgresql": "pg_url", "mysql": "mysql_url"}[kind])
    ini = make_project(tmp_path, url, [TABLE_T, ("k4_two_ddl", """
    op.create_table("side", sa.Column("id", sa.Integer, primary_key=True))
    op.add_column("t", sa.Column("extra", sa.Integer))
    """)])
    assert run_dbguard(ini, url, "upgrade", "k1_t").returncode == 0
    with connect(url, autocommit=False) as blocker:
        blocker.execute(sa.text("SELECT * FROM t")).all()
        blocked = run_dbguard(ini, url, "upgrade", "head", "--lock-timeout", "1000" if kind == "mysql" else "300",
                              "--lock-retries", "2", timeout=120)
        blocker.rollback()
    assert blocked.returncode == 5, describe(blocked)
    _, steps = ledger(url)
    (step,) = [s for s in steps if s["revision"] == "k4_two_ddl"]
    if kind == "postgresql":
        assert (step["status"], step["attempts"]) == ("failed", 3)
        assert "side" not in table_names(url)
    else:
        assert (step["status"], step["attempts"]) == ("partial", 1)
        assert "side" in table_names(url)
    assert versions(url) == ["k1_t"]
