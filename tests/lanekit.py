"""Helpers for the emergency-lane and watchdog tests: the example project on a real server, plain
Alembic as a process, an application session, a reader that measures its stalls, and the catalog
and ledger read on connections of their own.

Everything waits on an observable condition with a deadline (``wait_for``); every process and
session a helper starts is ended by ``Cleanup.close()``, whatever the test did.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from tests.dbs import backend_of, url_string
from tests.guardrun import connect, describe, json_out  # noqa: F401 - the lane tests import them from here
from tests.projects import wait_for

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_DIR = ROOT / "migrations_example"
ALEMBIC = [sys.executable, "-m", "alembic"]
DBGUARD = [sys.executable, "-m", "dbguard.cli"]
# Short retry waits: the suite must stay fast on 2 cores.
FAST_ENV = {"DBGUARD_RETRY_BACKOFF_MS": "50", "DBGUARD_RETRY_BACKOFF_MAX_MS": "200",
            "DBGUARD_HEARTBEAT_INTERVAL_S": "0.5"}


def _env(extra: dict[str, str] | None = None, fast: bool = True) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DBGUARD_")}
    env.update(FAST_ENV if fast else {})
    env.update(extra or {})
    return env


def dbguard(ini: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 120,
            fast: bool = True) -> subprocess.CompletedProcess[str]:
    """``dbguard -c ini ARGS`` with no terminal attached (stdin /dev/null); global options first in ARGS."""
    return subprocess.run([*DBGUARD, "-c", str(ini), *args], check=False, stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=timeout, env=_env(env, fast), cwd=ini.parent)


def start_dbguard(ini: Path, *args: str, env: dict[str, str] | None = None,
                  fast: bool = True) -> subprocess.Popen[str]:
    return subprocess.Popen([*DBGUARD, "-c", str(ini), *args], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=_env(env, fast), cwd=ini.parent)




def example_ini(folder: Path, url: str) -> Path:
    """A copy of migrations_example/alembic.ini pointing at ``url``, for dbguard and plain alembic alike."""
    folder.mkdir(parents=True, exist_ok=True)
    text = (EXAMPLE_DIR / "alembic.ini").read_text()
    text = re.sub(r"^script_location\s*=.*$", f"script_location = {EXAMPLE_DIR.as_posix()}", text,
                  count=1, flags=re.MULTILINE)
    escaped = url_string(url).replace("%", "%%")
    text, count = re.subn(r"^sqlalchemy\.url\s*=.*$", lambda _m: f"sqlalchemy.url = {escaped}", text,
                          count=1, flags=re.MULTILINE)
    assert count == 1
    ini = folder / "alembic.ini"
    ini.write_text(text)
    return ini


def alembic(ini: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """The real alembic CLI (``alembic -c ini ARGS``), no DBGUARD_* in its environment."""
    return subprocess.run([*ALEMBIC, "-c", str(ini), *args], check=False, capture_output=True, text=True,
                          timeout=timeout,
                          env=_env(fast=False), stdin=subprocess.DEVNULL, cwd=ini.parent)


def start_alembic(ini: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([*ALEMBIC, "-c", str(ini), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=_env(fast=False), stdin=subprocess.DEVNULL, cwd=ini.parent)


def kill(proc: subprocess.Popen[str] | None) -> None:
    """SIGKILL a child (stopped ones too) and reap it."""
    if proc is None:
        return
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGKILL)
    with contextlib.suppress(Exception):
        proc.communicate(timeout=10)


def raw_connect(url: str, application: str | None = None) -> Any:
    """A plain autocommit driver connection (psycopg / PyMySQL): an application's session."""
    u = make_url(url)
    if u.get_backend_name() == "postgresql":
        import psycopg

        return psycopg.connect(host=u.host, port=u.port or 5432, user=u.username, password=u.password or None,
                               dbname=u.database, autocommit=True, application_name=application or "")
    import pymysql

    return pymysql.connect(host=u.host, port=u.port or 3306, user=u.username, password=u.password or "",
                           database=u.database, autocommit=True)


def session_id(conn: Any) -> str:
    return str(conn.thread_id()) if hasattr(conn, "thread_id") else str(conn.info.backend_pid)


def execute(conn: Any, sql: str) -> list[Any]:
    if hasattr(conn, "thread_id"):
        with conn.cursor() as cur:
            cur.execute(sql)
            return list(cur.fetchall())
    cur = conn.execute(sql)
    return list(cur.fetchall()) if cur.description else []


def database_of(url: str) -> str:
    name = make_url(url).database
    assert name
    return name


class Server:
    """An admin connection to the server behind a test database: who is waiting, who is alive."""

    def __init__(self, url: str) -> None:
        self.url, self.kind, self.database = url, backend_of(url), database_of(url)
        self.conn = raw_connect(url)
        # Bounded: a test that reads a locked table fails instead of hanging the suite.
        execute(self.conn, "SET lock_timeout = '5s'" if self.kind == "postgresql"
                          else "SET SESSION lock_wait_timeout = 5")

    def rows(self, sql: str) -> list[Any]:
        return execute(self.conn, sql)

    def waiting_sessions(self, database: str | None = None, like: str | None = None) -> list[str]:
        """Ids of sessions of ``database`` waiting for a lock, optionally whose statement matches ``like``."""
        db = database or self.database
        if self.kind == "postgresql":
            sql = (f"SELECT pid, query FROM pg_stat_activity WHERE datname = '{db}' "
                   "AND wait_event_type = 'Lock'")
        else:
            sql = ("SELECT ID, INFO FROM information_schema.PROCESSLIST "
                   f"WHERE DB = '{db}' AND STATE LIKE 'Waiting for%lock%'")
        return [str(r[0]) for r in self.rows(sql) if like is None or like.lower() in (r[1] or "").lower()]

    def alive(self, session_id: str) -> bool:
        if self.kind == "postgresql":
            return bool(self.rows(f"SELECT 1 FROM pg_stat_activity WHERE pid = {int(session_id)}"))
        return bool(self.rows(f"SELECT 1 FROM information_schema.PROCESSLIST WHERE ID = {int(session_id)}"))

    def end(self, session_id: str) -> None:
        with contextlib.suppress(Exception):
            if self.kind == "postgresql":
                self.rows(f"SELECT pg_terminate_backend({int(session_id)})")
            else:
                self.rows(f"KILL {int(session_id)}")

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.conn.close()


class AppSession:
    """An application session: ``BEGIN; SELECT * FROM table`` and then idle in its transaction."""

    def __init__(self, url: str, table: str) -> None:
        self.conn = raw_connect(url, application="app")
        self.id = session_id(self.conn)
        execute(self.conn, "BEGIN")
        execute(self.conn, f"SELECT * FROM {table}")

    def commit(self) -> None:
        execute(self.conn, "COMMIT")

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.conn.close()


class Reader:
    """Runs ``SELECT count(*) FROM table`` every ``every_s`` on its own connection, in a thread, and
    keeps the longest time one query took (its worst stall)."""

    def __init__(self, url: str, table: str, every_s: float = 0.05) -> None:
        self.conn = raw_connect(url, application="reader")
        self.id = session_id(self.conn)
        self.sql, self.every_s = f"SELECT count(*) FROM {table}", every_s
        self.worst_s = 0.0
        self.queries = 0
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        try:
            while not self._stop.is_set():
                started = time.monotonic()
                execute(self.conn, self.sql)
                self.worst_s = max(self.worst_s, time.monotonic() - started)
                self.queries += 1
                self._stop.wait(self.every_s)
        except BaseException as exc:  # noqa: BLE001 - kept for the test to report
            self.error = exc

    def stop(self) -> float:
        self._stop.set()
        self._thread.join(30)
        assert not self._thread.is_alive(), "the reader is still stuck in a query"
        assert self.error is None, f"the reader failed: {self.error}"
        return self.worst_s

    def close(self) -> None:
        self._stop.set()
        with contextlib.suppress(Exception):
            self.conn.close()


class Background:
    """A statement run in a thread on a connection of its own (say, an ALTER that will queue)."""

    def __init__(self, url: str, sql: str) -> None:
        self.conn = raw_connect(url)
        self.id = session_id(self.conn)
        # Bounded, so a broken test never hangs the suite.
        execute(self.conn, "SET lock_timeout = '30s'" if backend_of(url) == "postgresql"
                else "SET SESSION lock_wait_timeout = 30")
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(sql,), daemon=True)
        self._thread.start()

    def _run(self, sql: str) -> None:
        try:
            execute(self.conn, sql)
        except BaseException as exc:  # noqa: BLE001 - kept for the test
            self.error = exc

    def close(self) -> None:
        self._thread.join(30)
        with contextlib.suppress(Exception):
            self.conn.close()


class Cleanup:
    """Everything a test started, ended in reverse order: processes SIGKILLed, sessions closed."""

    def __init__(self) -> None:
        self._items: list[Any] = []

    def add(self, item: Any) -> Any:
        self._items.append(item)
        return item

    def close(self) -> None:
        for item in reversed(self._items):
            with contextlib.suppress(Exception):
                if isinstance(item, subprocess.Popen):
                    kill(item)
                else:
                    item.close()


def table_names(url: str) -> set[str]:
    with connect(url) as conn:
        return set(sa.inspect(conn).get_table_names())


def columns(url: str, table: str) -> set[str]:
    with connect(url) as conn:
        return {c["name"] for c in sa.inspect(conn).get_columns(table)}


def indexes(url: str, table: str) -> set[str]:
    with connect(url) as conn:
        return {i["name"] for i in sa.inspect(conn).get_indexes(table)}


def versions(url: str) -> list[str]:
    with connect(url) as conn:
        if not sa.inspect(conn).has_table("alembic_version"):
            return []
        return sorted(conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalars())


def ledger(url: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Every run row and every step row, oldest first."""
    return (rows(url, "SELECT * FROM dbguard_runs ORDER BY id"),
            rows(url, "SELECT * FROM dbguard_steps ORDER BY id"))


def catalog(url: str, skip_prefix: str = "dbguard_") -> dict[str, Any]:
    """Tables with their columns, indexes, foreign keys and unique constraints, minus the ledger."""
    with connect(url) as conn:
        inspector = sa.inspect(conn)
        return {
            name: {
                "columns": sorted((c["name"], str(c["type"]), bool(c["nullable"])) for c in inspector.get_columns(name)),
                "indexes": sorted((i["name"] or "", tuple(map(str, i["column_names"])))
                                  for i in inspector.get_indexes(name)),
                "fks": sorted((fk["name"] or "", fk["referred_table"]) for fk in inspector.get_foreign_keys(name)),
                "uniques": sorted(u["name"] or "" for u in inspector.get_unique_constraints(name)),
            }
            for name in sorted(inspector.get_table_names()) if not name.startswith(skip_prefix)
        }


def rows(url: str, sql: str) -> list[dict[str, Any]]:
    with connect(url) as conn:
        return [dict(r) for r in conn.execute(sa.text(sql)).mappings()]


def wait_waiting(server: Server, database: str | None = None, like: str | None = None,
                 timeout: float = 20) -> list[str]:
    return wait_for(lambda: server.waiting_sessions(database, like), timeout=timeout, interval=0.05,
                    message=f"no session of {database or server.database} waits for a lock ({like or 'any'})")
