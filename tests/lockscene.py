"""Real sessions holding real locks, for the lock-killer tests.

A scene opens raw driver connections (psycopg / PyMySQL) to a test database: an idle-in-transaction
reader A, a DDL X that queues behind A (in a thread), a reader B that queues behind X. Tests wait for
conditions (a session shows as waiting), never for a guessed time. ``close()`` ends everything.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

from tests.projects import wait_for

DDL_WAIT_S = 30  # bounded, so a broken test never hangs the suite
# MariaDB refreshes INNODB_TRX / INNODB_LOCKS / INNODB_LOCK_WAITS only after 100 ms without a read.
INNODB_POLL_S = 0.15


def connect(url: str, application: str | None = None) -> Any:
    u = make_url(url)
    if u.get_backend_name() == "postgresql":
        import psycopg

        conn = psycopg.connect(host=u.host, port=u.port or 5432, user=u.username, password=u.password or None,
                               dbname=u.database, autocommit=True, application_name=application or "")
        return conn
    import pymysql

    return pymysql.connect(host=u.host, port=u.port or 3306, user=u.username, password=u.password or "",
                           database=u.database, autocommit=True, unix_socket=u.query.get("unix_socket"))


def session_id(conn: Any) -> str:
    if hasattr(conn, "thread_id"):
        return str(conn.thread_id())
    return str(conn.info.backend_pid)


def execute(conn: Any, sql: str) -> Any:
    if hasattr(conn, "thread_id"):
        with conn.cursor() as cur:
            cur.execute(sql)
            return cur.fetchall()
    cur = conn.execute(sql)
    return cur.fetchall() if cur.description else None


class Background:
    """A statement running in a thread on its own connection; records when it finished and how."""

    def __init__(self, conn: Any, sql: str) -> None:
        self.conn, self.sql = conn, sql
        self.error: BaseException | None = None
        self.finished_at: float | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            execute(self.conn, self.sql)
        except BaseException as exc:  # noqa: BLE001 - kept for the test to inspect
            self.error = exc
        finally:
            self.finished_at = time.monotonic()

    def join(self, timeout: float = DDL_WAIT_S) -> None:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), f"still running after {timeout}s: {self.sql}"


class Scene:
    def __init__(self, url: str) -> None:
        self.url = url
        self.mysql = make_url(url).get_backend_name() != "postgresql"
        self.conns: list[Any] = []
        self.jobs: list[Background] = []
        self.admin = self.open()

    def open(self, application: str | None = None) -> Any:
        conn = connect(self.url, application)
        self.conns.append(conn)
        if self.mysql:
            execute(conn, f"SET SESSION lock_wait_timeout = {DDL_WAIT_S}")
        else:
            execute(conn, f"SET lock_timeout = '{DDL_WAIT_S}s'")
        return conn

    def idle_reader(self, table: str = "t", application: str | None = "app_a") -> Any:
        conn = self.open(application)
        execute(conn, "BEGIN")
        execute(conn, f"SELECT * FROM {table}")
        return conn

    def background(self, sql: str, application: str | None = None) -> tuple[Any, Background]:
        conn = self.open(application)
        job = Background(conn, sql)
        self.jobs.append(job)
        return conn, job

    def is_waiting(self, sid: str) -> bool:
        if self.mysql:
            rows = execute(self.admin, f"SELECT STATE FROM information_schema.PROCESSLIST WHERE ID = {int(sid)}")
            return bool(rows) and "lock" in (rows[0][0] or "").lower() and rows[0][0].startswith("Waiting")
        rows = execute(self.admin, f"SELECT wait_event_type FROM pg_stat_activity WHERE pid = {int(sid)}")
        return bool(rows) and rows[0][0] == "Lock"

    def wait_waiting(self, conn: Any, timeout: float = 10) -> None:
        sid = session_id(conn)
        wait_for(lambda: self.is_waiting(sid), timeout=timeout, message=f"session {sid} never waited for a lock")

    def wait_row_waiting(self, conn: Any, timeout: float = 10) -> None:
        """MariaDB: until the session waits for an InnoDB row lock (PROCESSLIST does not say so).
        The INNODB_* tables are one cache, refreshed only when nobody has read it for 100 ms: polled
        faster, it never changes (seen: a committed transaction still listed 3 s later)."""
        sid = int(session_id(conn))
        wait_for(lambda: execute(self.admin, "SELECT COUNT(*) FROM information_schema.INNODB_LOCK_WAITS w "
                                             "JOIN information_schema.INNODB_TRX t ON t.trx_id = w.requesting_trx_id "
                                             f"WHERE t.trx_mysql_thread_id = {sid}")[0][0] > 0,
                 timeout=timeout, interval=INNODB_POLL_S, message=f"session {sid} never waited for a row lock")

    def alive(self, conn: Any) -> bool:
        sid = int(session_id(conn))
        if self.mysql:
            return bool(execute(self.admin, f"SELECT 1 FROM information_schema.PROCESSLIST WHERE ID = {sid}"))
        return bool(execute(self.admin, f"SELECT 1 FROM pg_stat_activity WHERE pid = {sid}"))

    def chain(self, table: str = "t") -> tuple[Any, Any, Any, Background, Background]:
        """A (idle in transaction, read) -> X (ALTER, waiting) -> B (read, waiting behind X)."""
        a = self.idle_reader(table)
        x, x_job = self.background(f"ALTER TABLE {table} ADD COLUMN c_x INT", application="app_x")
        self.wait_waiting(x)
        b, b_job = self.background(f"SELECT * FROM {table}", application="app_b")
        self.wait_waiting(b)
        return a, x, b, x_job, b_job

    def close(self) -> None:
        for conn in self.conns[1:]:
            with contextlib.suppress(Exception):
                execute(self.admin, f"{'KILL' if self.mysql else 'SELECT pg_terminate_backend'}"
                                    f"{' ' if self.mysql else '('}{int(session_id(conn))}{'' if self.mysql else ')'}")
        for job in self.jobs:
            job.thread.join(5)
        for conn in self.conns:
            with contextlib.suppress(Exception):
                conn.close()


def write_ini(folder: Path) -> Path:
    """A minimal alembic.ini: ``dbguard locks`` needs only the URL (given by DBGUARD_URL)."""
    (folder / "scripts").mkdir(exist_ok=True)
    ini = folder / "alembic.ini"
    ini.write_text("[alembic]\nscript_location = scripts\n")
    return ini


def dbguard(ini: Path, url: str, *args: str, timeout: float = 60, extra_env: dict[str, str] | None = None
            ) -> subprocess.CompletedProcess:
    env = {**os.environ, "DBGUARD_URL": url, **(extra_env or {})}
    return subprocess.run([sys.executable, "-m", "dbguard.cli", "-c", str(ini), *args], check=False, capture_output=True,
                          text=True, timeout=timeout, env=env, stdin=subprocess.DEVNULL)


@contextlib.contextmanager
def kill_stopped_before_its_signal(ini: Path, url: str, victim: str, *args: str) -> Iterator[None]:
    """`dbguard locks kill --pid victim ARGS`, stopped between writing the victim's audit record and
    signalling it (faultpoint ``kill-signal``) while the block runs, then let go; it must exit 0."""
    import signal

    from tests.faultkit import stopped

    env = {**os.environ, "DBGUARD_URL": url, "DBGUARD_TEST_PAUSE_AT": f"kill-signal:{victim}"}
    proc = subprocess.Popen([sys.executable, "-m", "dbguard.cli", "-c", str(ini), "locks", "kill", "--pid", victim,
                             *args], env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: stopped(proc.pid) or proc.poll() is not None, timeout=60, message="never reached the signal")
        assert proc.poll() is None, proc.communicate()
        yield
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGCONT)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, out + err
