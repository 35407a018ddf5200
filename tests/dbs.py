"""Throwaway databases on real PostgreSQL and MySQL/MariaDB servers, for tests.

``create_database(server_url, engine)`` makes an empty database with a unique
name (``dbg_<8 hex>``) and returns its URL; ``drop_database(url)`` removes it,
however the test left it: open sessions, idle-in-transaction sessions holding
metadata locks, sessions of a client that was SIGKILLed in the middle of a
statement, PostgreSQL prepared transactions. Dropping twice is fine.
"""

from __future__ import annotations

import os
import re
import uuid
from pathlib import Path
from typing import NoReturn

import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.pool import NullPool

DATABASE_PREFIX = "dbg_"

# Names go into DDL unquoted-by-the-driver (CREATE/DROP DATABASE take no bind
# parameters), so refuse anything that is not a plain identifier.
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_]{1,63}$")

CONNECT_TIMEOUT_S = 5

# MySQL/MariaDB: how long DROP DATABASE may wait for a metadata lock before we
# kill the holders again and retry. The server default is a day (MariaDB) or a
# year (MySQL): a leftover session would otherwise hang the test run.
MYSQL_DROP_LOCK_WAIT_S = 10
_ER_LOCK_WAIT_TIMEOUT = 1205
_ER_NO_SUCH_THREAD = 1094
_ER_UNKNOWN_TABLE = 1109

# PostgreSQL: SQLSTATE 55006 object_in_use; a client reconnecting between the
# forced termination and the drop makes DROP ... WITH (FORCE) fail with it.
_PG_OBJECT_IN_USE = "55006"

# Which server each created database lives on, so drop_database(url) can reach
# an admin connection without the caller passing it again.
_server_of: dict[str, str] = {}


def backend_of(url: str | URL) -> str:
    """Return ``postgresql``, ``mysql`` (MySQL and MariaDB alike) or ``sqlite`` for a URL."""
    name = make_url(url).get_backend_name()
    return "mysql" if name == "mariadb" else name


def new_database_name() -> str:
    """A fresh database name, unique enough for parallel test runs on one server."""
    return f"{DATABASE_PREFIX}{uuid.uuid4().hex[:8]}"


def url_string(url: str | URL) -> str:
    """Render a URL with its password, for handing to engines and alembic.ini."""
    return make_url(url).render_as_string(hide_password=False)


def safe_url(url: str | URL) -> str:
    """Render a URL with the password masked, for messages."""
    return make_url(url).render_as_string(hide_password=True)


def admin_engine(url: str | URL) -> Engine:
    """An AUTOCOMMIT engine without a pool: CREATE/DROP DATABASE refuse to run in a transaction,
    and a pooled connection would outlive the test as one more session to clean up."""
    return sa.create_engine(
        url,
        poolclass=NullPool,
        isolation_level="AUTOCOMMIT",
        connect_args={"connect_timeout": CONNECT_TIMEOUT_S},
    )


def check_server(url: str | URL) -> None:
    """Connect once and run ``SELECT 1``; raises the driver's error when the server is unreachable."""
    engine = admin_engine(url)
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    finally:
        engine.dispose()


def create_database(server_url: str | URL, engine: str) -> str:
    """Create an empty database on the server behind ``server_url`` and return its URL.

    ``engine`` is the kind of server expected, ``postgresql`` or ``mysql``
    (``mariadb`` is accepted as a synonym); it must match the URL, which guards
    against a swapped pair of environment variables.
    """
    kind = "mysql" if engine == "mariadb" else engine
    if kind not in ("postgresql", "mysql"):
        raise ValueError(f"engine must be 'postgresql' or 'mysql', not {engine!r}")
    if backend_of(server_url) != kind:
        raise ValueError(f"{safe_url(server_url)} is not a {kind} URL")

    name = new_database_name()
    eng = admin_engine(server_url)
    try:
        with eng.connect() as conn:
            if kind == "postgresql":
                conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
            else:
                # Docker's MariaDB images still default to latin1.
                conn.exec_driver_sql(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    finally:
        eng.dispose()

    url = url_string(make_url(server_url).set(database=name))
    _server_of[url] = url_string(server_url)
    return url


def drop_database(url: str | URL, server_url: str | URL | None = None, install_plugin: bool = True) -> None:
    """Drop the database ``url`` points at, ending whatever still uses it.

    ``server_url`` is the admin connection to use; by default the one the
    database was created from, else the same server's ``postgres`` database
    (PostgreSQL) or no default database (MySQL/MariaDB). A SQLite URL removes
    the file and its journals. Idempotent: a missing database is not an error. ``install_plugin``
    lets MariaDB install metadata_lock_info to find the sessions holding locks in it (not on a server
    kept without it).
    """
    target = make_url(url)
    kind = backend_of(target)
    if kind == "sqlite":
        _drop_sqlite(target)
        return

    name = target.database
    if not name or not _SAFE_NAME.match(name):
        raise ValueError(f"refusing to drop database {name!r}: not a plain identifier")

    admin = server_url or _server_of.get(url_string(target))
    if kind == "postgresql":
        _drop_postgresql(target, name, make_url(admin) if admin else target.set(database="postgres"))
    elif kind == "mysql":
        if admin and make_url(admin).database == name:
            raise ValueError("server_url must not point at the database being dropped")
        # URL.set() ignores None, hence _replace to connect without a default database.
        _drop_mysql(name, make_url(admin) if admin else target._replace(database=None), install_plugin)
    else:
        raise ValueError(f"unsupported backend {kind!r}")


def database_exists(server_url: str | URL, name: str) -> bool:
    """Whether a database called ``name`` exists on the server (PostgreSQL or MySQL/MariaDB)."""
    eng = admin_engine(server_url)
    try:
        with eng.connect() as conn:
            return _exists(conn, backend_of(server_url), name)
    finally:
        eng.dispose()


def _exists(conn: Connection, kind: str, name: str) -> bool:
    if kind == "postgresql":
        query = "SELECT 1 FROM pg_database WHERE datname = :name"
    else:
        query = "SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = :name"
    return conn.execute(sa.text(query), {"name": name}).first() is not None


def _drop_sqlite(target: URL) -> None:
    if not target.database or target.database == ":memory:":
        return
    path = Path(target.database)
    for suffix in ("", "-journal", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


# --- PostgreSQL -------------------------------------------------------------


def _drop_postgresql(target: URL, name: str, admin: URL) -> None:
    eng = admin_engine(admin)
    try:
        with eng.connect() as conn:
            if not _exists(conn, "postgresql", name):
                return
            gids = (
                conn.execute(
                    sa.text("SELECT gid FROM pg_prepared_xacts WHERE database = :name"), {"name": name}
                )
                .scalars()
                .all()
            )
        # A prepared (2PC) transaction has no session for FORCE to terminate and
        # makes the DROP fail; it can only be rolled back from its own database.
        if gids:
            _rollback_prepared(target, list(gids))
        last_error: DBAPIError | None = None
        for _attempt in range(3):
            try:
                with eng.connect() as conn:
                    conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                return
            except DBAPIError as exc:
                if getattr(exc.orig, "sqlstate", None) != _PG_OBJECT_IN_USE:
                    raise
                last_error = exc
        assert last_error is not None
        raise last_error
    finally:
        eng.dispose()


def _rollback_prepared(target: URL, gids: list[str]) -> None:
    eng = admin_engine(target)
    try:
        with eng.connect() as conn:
            for gid in gids:
                # Utility statements take no bind parameters: quote by hand, and
                # double % because the driver still scans for placeholders.
                literal = "'" + gid.replace("'", "''").replace("%", "%%") + "'"
                try:
                    conn.exec_driver_sql(f"ROLLBACK PREPARED {literal}")
                except DBAPIError:
                    pass  # finished by someone else meanwhile
    finally:
        eng.dispose()


# --- MySQL / MariaDB --------------------------------------------------------


def _drop_mysql(name: str, admin: URL, install_plugin: bool = True) -> None:
    eng = admin_engine(admin)
    try:
        with eng.connect() as conn:
            if not _exists(conn, "mysql", name):
                return
            conn.exec_driver_sql(f"SET SESSION lock_wait_timeout = {MYSQL_DROP_LOCK_WAIT_S}")
            for attempt in (1, 2):
                _kill_sessions_using(conn, name, install_plugin)
                try:
                    conn.exec_driver_sql(f"DROP DATABASE IF EXISTS `{name}`")
                    return
                except OperationalError as exc:
                    # A session that slipped in after the kills (or a holder we
                    # could not see) timed us out: kill again, try once more.
                    if attempt == 2 or _mysql_errno(exc) != _ER_LOCK_WAIT_TIMEOUT:
                        raise
    finally:
        eng.dispose()


def _mysql_errno(exc: DBAPIError) -> int | None:
    args = getattr(exc.orig, "args", ())
    return args[0] if args and isinstance(args[0], int) else None


def _kill_sessions_using(conn: Connection, name: str, install_plugin: bool = True) -> set[int]:
    """KILL every other session that has ``name`` as its default database or holds a
    metadata lock on something in it. The latter matters most: PROCESSLIST.DB is
    only the default database and is often NULL for the very session holding
    the lock, and DROP DATABASE waits on every such lock. Returns the ids it ended."""
    ids = set(
        conn.execute(
            sa.text(
                "SELECT ID FROM information_schema.PROCESSLIST WHERE DB = :name AND ID <> CONNECTION_ID()"
            ),
            {"name": name},
        ).scalars()
    )
    ids |= _metadata_lock_holders(conn, name, install_plugin)
    for session_id in sorted(ids):
        try:
            conn.exec_driver_sql(f"KILL {int(session_id)}")
        except OperationalError as exc:
            if _mysql_errno(exc) != _ER_NO_SUCH_THREAD:  # already gone
                raise
    return {int(i) for i in ids}


def _metadata_lock_holders(conn: Connection, name: str, install_plugin: bool = True) -> set[int]:
    if conn.dialect.is_mariadb:
        return _mariadb_lock_holders(conn, name, install_plugin)
    # MySQL 8: performance_schema and its MDL instrument are on by default.
    try:
        rows = conn.execute(
            sa.text(
                "SELECT t.PROCESSLIST_ID FROM performance_schema.metadata_locks m "
                "JOIN performance_schema.threads t ON t.THREAD_ID = m.OWNER_THREAD_ID "
                "WHERE m.OBJECT_SCHEMA = :name AND t.PROCESSLIST_ID IS NOT NULL "
                "AND t.PROCESSLIST_ID <> CONNECTION_ID()"
            ),
            {"name": name},
        ).scalars()
        return set(rows)
    except DBAPIError:
        return set()


def _mariadb_lock_holders(conn: Connection, name: str, install_plugin: bool = True) -> set[int]:
    # MariaDB's performance_schema is off by default and then returns no rows
    # without an error; the metadata_lock_info plugin ships with the server.
    query = sa.text(
        "SELECT DISTINCT THREAD_ID FROM information_schema.METADATA_LOCK_INFO "
        "WHERE TABLE_SCHEMA = :name AND THREAD_ID <> CONNECTION_ID()"
    )
    try:
        return set(conn.execute(query, {"name": name}).scalars())
    except DBAPIError as exc:
        if _mysql_errno(exc) != _ER_UNKNOWN_TABLE:
            raise
    if not install_plugin:
        return set()  # the PROCESSLIST.DB match is all there is
    try:
        conn.exec_driver_sql("INSTALL SONAME 'metadata_lock_info'")
    except DBAPIError:
        pass  # no privilege, or a parallel test run installed it a moment ago
    try:
        return set(conn.execute(query, {"name": name}).scalars())
    except DBAPIError:
        # Not installable here: the PROCESSLIST.DB match is all we have.
        return set()


def cannot_run(reason: str) -> NoReturn:
    """Skip the test because this machine lacks what it needs, or fail it on CI (``CI=true``), where
    a skipped check would pass for a green one. Say in ``reason`` what is missing and how to get it."""
    import pytest

    if env_flag("CI"):
        pytest.fail(f"{reason} (CI=true: a test that cannot run is an error, not a skip)", pytrace=False)
    pytest.skip(reason)


def env_flag(name: str) -> bool:
    """Whether an environment variable is set to a true-ish value (``CI=true``, ``CI=1``)."""
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")
