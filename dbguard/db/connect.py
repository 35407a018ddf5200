"""Engines for dbguard's own connections, with connection errors turned into one clear line."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection, Engine
from sqlalchemy.pool import NullPool

from dbguard.errors import ConfigError, ConnectError
from dbguard.masking import mask, mask_url_text

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
        raise ConfigError(f"not a database URL: {mask_url_text(url)}") from None


def sync_url(url: URL) -> URL:
    # The driver as the URL spells it: get_driver_name() loads the dialect, and a misspelt one
    # (mysq://) must reach create_engine's one-line error, not escape from here.
    driver = _SYNC_DRIVERS.get((url.get_backend_name(), url.drivername.partition("+")[2]))
    return url.set(drivername=f"{url.get_backend_name()}+{driver}") if driver else url


def unknown_database(url: URL) -> str:
    """The line for a URL whose database SQLAlchemy has no dialect for (alembic init's placeholder
    ``driver://user:pass@localhost/dbname`` left in alembic.ini, a typo in the scheme)."""
    # Heroku-style postgres:// is the common one: SQLAlchemy 1.4 dropped that alias.
    hint = " (SQLAlchemy spells it postgresql://)" if url.get_backend_name() == "postgres" else ""
    return f"{masked(url)}: SQLAlchemy knows no database {url.drivername!r}{hint}"


def masked(url: URL) -> str:
    return url.render_as_string(hide_password=True)


# How long connecting may take by default (the connect_timeout_s setting), greeting and
# authentication included: libpq counts the whole set-up; for PyMySQL, which counts only the TCP
# connect, dbguard bounds the handshake itself (deadline.bounded_pymysql_handshake).
CONNECT_TIMEOUT_S = 10.0


def _connect_args(url: URL, timeout_s: float) -> dict[str, object]:
    if url.get_backend_name() == "sqlite" or "connect_timeout" in url.query:
        return {}
    # libpq takes whole seconds, at least 2; PyMySQL a number of seconds.
    return {"connect_timeout": max(2, round(timeout_s))}


# The package each SQLAlchemy driver name needs, and the extra of dbguard that brings it.
_DRIVER_PACKAGES = {
    "psycopg": ("psycopg[binary]", "dbguard[postgresql]"),
    "psycopg2": ("psycopg2-binary", None),
    "asyncpg": ("asyncpg", None),
    "pg8000": ("pg8000", None),
    "pymysql": ("PyMySQL", "dbguard[mysql]"),
    "mysqldb": ("mysqlclient", None),
    "mariadbconnector": ("mariadb", None),
    "mysqlconnector": ("mysql-connector-python", None),
    "aiomysql": ("aiomysql", None),
    "asyncmy": ("asyncmy", None),
}


def driver_advice(url: URL) -> str:
    """What to install for the driver the URL names (a URL without one gets SQLAlchemy's default)."""
    try:
        driver = url.get_driver_name()
    except Exception:  # noqa: BLE001 - an unknown backend has no default driver to name
        driver = url.drivername.partition("+")[2]
    package, extra = _DRIVER_PACKAGES.get(driver, (None, None))
    if package is None:
        return f"install the driver package for {url.drivername}"
    advice = f"pip install {package}" + (f" (or {extra})" if extra else "")
    if extra is None:
        backend = url.get_backend_name()
        ours = {"postgresql": "postgresql+psycopg", "mysql": "mysql+pymysql", "mariadb": "mariadb+pymysql"}.get(backend)
        if ours:
            advice += f", or name the driver dbguard's extra installs: {ours}://..."
    return advice


def create_engine(url: URL, connect_timeout_s: float = CONNECT_TIMEOUT_S, application: str | None = None) -> Engine:
    """dbguard's own engine; its connections carry ``application`` (see dbguard.core.appname) where the
    engine has an application name, over any the URL gives: other tools show them as dbguard's.
    Synchronous whatever driver the URL names: an async one (``--shadow-url postgresql+asyncpg://``,
    as an async env.py needs) is swapped for the sync driver of its engine."""
    url = sync_url(url)
    try:
        engine = sa.create_engine(url, poolclass=NullPool, connect_args=_connect_args(url, connect_timeout_s))
        if application:
            _name_connections(engine, application)
        if engine.dialect.driver == "pymysql":
            from dbguard.db.deadline import bounded_pymysql_handshake

            sa.event.listen(engine, "do_connect", bounded_pymysql_handshake(connect_timeout_s))
        return engine
    except sa.exc.NoSuchModuleError:
        raise ConfigError(unknown_database(url)) from None
    except ModuleNotFoundError as exc:
        raise ConfigError(f"no driver for {masked(url)}: {exc}; {driver_advice(url)}") from None


def _name_connections(engine: Engine, application: str) -> None:
    from dbguard.dialects import for_sqlalchemy_dialect

    try:
        named = for_sqlalchemy_dialect(engine.dialect).application_connect_args(application)
    except ConfigError:  # an engine dbguard does not serve: said where it is first used
        return
    if named:
        def name(sa_dialect: object, conn_rec: object, cargs: object, cparams: dict[str, object]) -> None:
            cparams.update(named)

        sa.event.listen(engine, "do_connect", name)


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
