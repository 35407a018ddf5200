"""Engines for dbguard's own connections, with connection errors turned into one clear line."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection, Engine
from sqlalchemy.pool import NullPool

from dbguard.errors import ConfigError, ConnectError
from dbguard.masking import mask

# dbguard's own connections are synchronous, also when env.py migrates through an async driver.
_SYNC_DRIVERS = {
    ("postgresql", "asyncpg"): "psycopg",
    ("postgresql", "psycopg_async"): "psycopg",
    ("mysql", "aiomysql"): "pymysql",
    ("mysql", "asyncmy"): "pymysql",
    ("mariadb", "aiomysql"): "pymysql",
    ("mariadb", "asyncmy"): "pymysql",
    ("sqlite", "aiosqlite"): "pysqlite",
}


def parse_url(url: str) -> URL:
    try:
        return sa.engine.make_url(url)
    except (sa.exc.ArgumentError, ValueError):
        raise ConfigError(f"not a database URL: {mask(url)}") from None


def sync_url(url: URL) -> URL:
    driver = _SYNC_DRIVERS.get((url.get_backend_name(), url.get_driver_name()))
    return url.set(drivername=f"{url.get_backend_name()}+{driver}") if driver else url


def masked(url: URL) -> str:
    return url.render_as_string(hide_password=True)


# How long connecting may take by default (the connect_timeout_s setting). libpq counts the whole
# set-up (TCP, startup, authentication); PyMySQL only the TCP connect.
CONNECT_TIMEOUT_S = 10.0


def _connect_args(url: URL, timeout_s: float) -> dict[str, object]:
    if url.get_backend_name() == "sqlite" or "connect_timeout" in url.query:
        return {}
    # libpq takes whole seconds, at least 2; PyMySQL a number of seconds.
    return {"connect_timeout": max(2, round(timeout_s))}


def create_engine(url: URL, connect_timeout_s: float = CONNECT_TIMEOUT_S) -> Engine:
    try:
        return sa.create_engine(url, poolclass=NullPool, connect_args=_connect_args(url, connect_timeout_s))
    except (sa.exc.NoSuchModuleError, ModuleNotFoundError) as exc:
        raise ConfigError(f"no driver for {masked(url)}: {exc}; install dbguard's extra for this engine") from None


def first_line(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    text = str(orig).strip() or orig.__class__.__name__
    return text.splitlines()[0].strip()


def connect(engine: Engine, autocommit: bool = True) -> Connection:
    """A connection, or a ConnectError naming the (masked) URL and the server's reason."""
    try:
        conn = engine.connect()
    except (sa.exc.OperationalError, sa.exc.InterfaceError, sa.exc.DatabaseError) as exc:
        raise ConnectError(
            f"cannot connect to {masked(engine.url)}: {mask(first_line(exc), [engine.url.password])}"
        ) from None
    if autocommit:
        conn = conn.execution_options(isolation_level="AUTOCOMMIT")
    return conn


@contextlib.contextmanager
def connection(engine: Engine, autocommit: bool = True) -> Iterator[Connection]:
    conn = connect(engine, autocommit)
    try:
        yield conn
    finally:
        with contextlib.suppress(Exception):
            conn.close()
