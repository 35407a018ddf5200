"""Helpers for the end-to-end tests: run the dbguard CLI as a subprocess, read the ledger and the
catalog directly, create and drop throwaway database users.

Everything here reads the database on connections of its own, never through dbguard, so a test
checks what dbguard wrote rather than what dbguard says it wrote.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from tests.dbs import admin_engine, backend_of, url_string

DBGUARD = [sys.executable, "-m", "dbguard.cli"]

# Short waits everywhere: the suite must stay fast on 2 cores.
FAST_ENV = {
    "DBGUARD_RETRY_BACKOFF_MS": "50",
    "DBGUARD_RETRY_BACKOFF_MAX_MS": "200",
    "DBGUARD_HEARTBEAT_INTERVAL_S": "0.5",
}

# dbguard's own connections are synchronous; so are the tests' reads.
_SYNC_DRIVERS = {"asyncpg": "psycopg", "psycopg_async": "psycopg", "aiosqlite": "pysqlite",
                 "aiomysql": "pymysql", "asyncmy": "pymysql"}


def sync_url(url: str) -> str:
    parsed = make_url(url)
    driver = _SYNC_DRIVERS.get(parsed.get_driver_name())
    if driver:
        parsed = parsed.set(drivername=f"{parsed.get_backend_name()}+{driver}")
    return url_string(parsed)


def cli_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a dbguard subprocess: no stray DBGUARD_* from the caller, fast retries."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DBGUARD_")}
    env.update(FAST_ENV)
    env.update(extra or {})
    return env


def command(ini: Path | str, url: str | None, args: Sequence[str]) -> list[str]:
    cmd = [*DBGUARD, "-c", str(ini)]
    if url is not None:
        cmd += ["--url", url]
    return cmd + list(args)


def run_dbguard(ini: Path | str, url: str | None, *args: str, env: dict[str, str] | None = None,
            timeout: float = 120, cwd: Path | str | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``dbguard -c ini --url url ARGS...`` with no terminal attached (stdin is /dev/null).

    Global options (``-x``, ``--format``) go first in ``args``, as on the command line.
    """
    return subprocess.run(
        command(ini, url, args),
        check=False,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=cli_env(env),
        cwd=cwd or Path(ini).parent,
    )


def start_dbguard(ini: Path | str, url: str | None, *args: str, env: dict[str, str] | None = None,
                  cwd: Path | str | None = None) -> subprocess.Popen[str]:
    """Start dbguard in the background; read its output with ``communicate()``."""
    return subprocess.Popen(
        command(ini, url, args),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(env),
        cwd=cwd or Path(ini).parent,
    )


def describe(proc: subprocess.CompletedProcess[str]) -> str:
    return f"exit {proc.returncode}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"


def json_out(proc: subprocess.CompletedProcess[str]) -> Any:
    """The one JSON document a ``--format json`` command prints on stdout."""
    try:
        return json.loads(proc.stdout)
    except ValueError as exc:
        raise AssertionError(f"stdout is not one JSON document ({exc}):\n{describe(proc)}") from None


def sha256_of(path: Path | str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@contextlib.contextmanager
def connect(url: str, autocommit: bool = True) -> Iterator[sa.Connection]:
    engine = sa.create_engine(sync_url(url), poolclass=NullPool)
    try:
        conn = engine.connect()
        if autocommit:
            conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        try:
            yield conn
        finally:
            conn.close()
    finally:
        engine.dispose()


def ledger(url: str, prefix: str = "dbguard_") -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Every run row and every step row, oldest first, as plain dicts; empty before the ledger exists."""
    with connect(url) as conn:
        if not sa.inspect(conn).has_table(f"{prefix}runs"):
            return [], []
        runs = [dict(r) for r in conn.execute(sa.text(f"SELECT * FROM {prefix}runs ORDER BY id")).mappings()]
        steps = [dict(r) for r in conn.execute(sa.text(f"SELECT * FROM {prefix}steps ORDER BY id")).mappings()]
    return runs, steps


def try_ledger(url: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``ledger`` for polling while dbguard may be creating it: errors read as 'nothing yet'."""
    try:
        return ledger(url)
    except sa.exc.DBAPIError:
        return [], []


def versions(url: str) -> list[str]:
    with connect(url) as conn:
        if not sa.inspect(conn).has_table("alembic_version"):
            return []
        return sorted(conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalars())


def catalog(url: str) -> dict[str, Any]:
    """Tables, columns, primary keys, foreign keys and indexes (SQLAlchemy inspector), plus
    alembic_version: enough to prove that a refused command changed nothing."""
    with connect(url) as conn:
        inspector = sa.inspect(conn)
        tables: dict[str, Any] = {}
        for name in sorted(inspector.get_table_names()):
            tables[name] = {
                "columns": [(c["name"], str(c["type"]), bool(c["nullable"]), str(c.get("default")))
                            for c in inspector.get_columns(name)],
                "pk": sorted(inspector.get_pk_constraint(name).get("constrained_columns") or []),
                "fks": sorted((tuple(fk["constrained_columns"]), fk["referred_table"])
                              for fk in inspector.get_foreign_keys(name)),
                "indexes": sorted((i["name"] or "", tuple(str(c) for c in i["column_names"]), bool(i["unique"]))
                                  for i in inspector.get_indexes(name)),
            }
        version_rows: list[str] = []
        if "alembic_version" in tables:
            version_rows = sorted(conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalars())
    return {"tables": tables, "alembic_version": version_rows}


def table_names(url: str) -> set[str]:
    with connect(url) as conn:
        return set(sa.inspect(conn).get_table_names())


def column_names(url: str, table: str) -> set[str]:
    with connect(url) as conn:
        return {c["name"] for c in sa.inspect(conn).get_columns(table)}


def all_text(rows: Sequence[dict[str, Any]]) -> str:
    """Every value of every row, as one string to search for secrets."""
    return "\n".join(str(value) for row in rows for value in row.values())


# Sessions -------------------------------------------------------------------------------------


def end_sessions(server_url: str, database: str) -> None:
    """End every session on ``database`` (a killed client's statement still running, say) and wait
    until they are gone, so no server-side statement outlives its test."""
    from tests.projects import wait_for

    kind = backend_of(server_url)
    engine = admin_engine(server_url)
    try:
        with engine.connect() as conn:
            if kind == "postgresql":
                query = ("SELECT pid FROM pg_stat_activity WHERE datname = :db AND pid <> pg_backend_pid()")
                for pid in conn.execute(sa.text(query), {"db": database}).scalars():
                    conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            else:
                query = ("SELECT ID FROM information_schema.PROCESSLIST "
                         "WHERE DB = :db AND ID <> CONNECTION_ID()")
                for session_id in conn.execute(sa.text(query), {"db": database}).scalars():
                    with contextlib.suppress(sa.exc.DBAPIError):  # gone meanwhile
                        conn.exec_driver_sql(f"KILL {int(session_id)}")

            def gone() -> bool:
                return not conn.execute(sa.text(query), {"db": database}).first()

            wait_for(gone, timeout=15, interval=0.05, message=f"sessions on {database} never ended")
    finally:
        engine.dispose()


def new_user_name(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


@contextlib.contextmanager
def mysql_user(server_url: str, database: str, password: str, grants: str = "ALL PRIVILEGES") -> Iterator[str]:
    """A MariaDB/MySQL user with ``password`` and ``grants`` on ``database``; dropped afterwards."""
    name = new_user_name("dbg_pw_")
    engine = admin_engine(server_url)
    try:
        with engine.connect() as conn:
            conn.execute(sa.text(f"CREATE USER '{name}'@'%' IDENTIFIED BY :pw"), {"pw": password})
            conn.execute(sa.text(f"GRANT {grants} ON `{database}`.* TO '{name}'@'%'"))
        yield name
    finally:
        try:
            with engine.connect() as conn:
                ids = conn.execute(sa.text("SELECT ID FROM information_schema.PROCESSLIST WHERE USER = :u"),
                                   {"u": name}).scalars().all()
                for session_id in ids:
                    with contextlib.suppress(sa.exc.DBAPIError):
                        conn.exec_driver_sql(f"KILL {int(session_id)}")
                conn.execute(sa.text(f"DROP USER IF EXISTS '{name}'@'%'"))
        finally:
            engine.dispose()


@contextlib.contextmanager
def pg_role(server_url: str) -> Iterator[str]:
    """A PostgreSQL role that may log in and nothing more; dropped afterwards."""
    name = new_user_name("dbg_role_")
    engine = admin_engine(server_url)
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql(f'CREATE ROLE "{name}" LOGIN')
        yield name
    finally:
        try:
            with engine.connect() as conn:
                conn.execute(sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = :u"),
                             {"u": name})
                conn.exec_driver_sql(f'DROP ROLE IF EXISTS "{name}"')
        finally:
            engine.dispose()


def with_credentials(url: str, username: str | None = None, password: str | None = None) -> str:
    parsed = make_url(url)
    if username is not None:
        parsed = parsed.set(username=username)
    if password is not None:
        parsed = parsed.set(password=password)
    return url_string(parsed)


def database_of(url: str) -> str:
    name = make_url(url).database
    assert name, url
    return name


# Processes ------------------------------------------------------------------------------------


def has_connected(pid: int, url: str) -> bool:
    """Whether process ``pid`` has opened its connection to the database: a socket for a server,
    the database file for SQLite (Linux /proc). dbguard takes the run lock right after connecting."""
    fd_dir = Path(f"/proc/{pid}/fd")
    try:
        names = os.listdir(fd_dir)
    except OSError:  # the process is gone
        return False
    targets = []
    for name in names:
        with contextlib.suppress(OSError):  # closed meanwhile
            targets.append(os.readlink(fd_dir / name))
    if backend_of(url) == "sqlite":
        database = os.path.realpath(make_url(url).database or "")
        return database in targets
    return any(t.startswith("socket:") for t in targets)
