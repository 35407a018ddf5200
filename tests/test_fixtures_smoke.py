"""The test fixtures themselves: fresh databases, robust drops, stock projects."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import alembic
import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from tests.dbs import (
    _kill_sessions_using,
    admin_engine,
    backend_of,
    create_database,
    database_exists,
    drop_database,
)
from tests.projects import make_project, render_revision, wait_for


@pytest.fixture
def engine_for() -> Iterator[Callable[..., sa.Engine]]:
    """Make engines that are disposed after the test, so no pooled session outlives it."""
    engines: list[sa.Engine] = []

    def make(url: str, **kwargs: object) -> sa.Engine:
        engine = sa.create_engine(url, **kwargs)
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        engine.dispose()


def test_fresh_database_is_empty_and_writable(db_url: str, engine_for) -> None:
    engine = engine_for(db_url)
    with engine.begin() as conn:
        assert sa.inspect(conn).get_table_names() == []
        conn.execute(sa.text("CREATE TABLE smoke (id INTEGER PRIMARY KEY, name VARCHAR(20))"))
        conn.execute(sa.text("INSERT INTO smoke (id, name) VALUES (1, 'one')"))
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT name FROM smoke")).scalar_one() == "one"
    if backend_of(db_url) != "sqlite":
        assert make_url(db_url).database.startswith("dbg_")


def test_each_test_gets_its_own_database(pg_url: str, mysql_url: str, pg_server_url: str) -> None:
    assert make_url(pg_url).database != make_url(pg_server_url).database
    assert database_exists(pg_server_url, make_url(pg_url).database)
    assert make_url(mysql_url).database.startswith("dbg_")


def _hold_open_transaction(conn: sa.Connection, table: str) -> None:
    # Reading a table inside a transaction keeps its lock (PostgreSQL
    # AccessShareLock, MySQL shared metadata lock) until the transaction ends.
    conn.execute(sa.text(f"SELECT * FROM {table}")).all()
    assert conn.in_transaction()


def test_drop_postgresql_database_with_open_session(pg_server_url: str, engine_for) -> None:
    url = create_database(pg_server_url, "postgresql")
    name = make_url(url).database
    try:
        engine = engine_for(url)
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE t (id integer)"))
        holder = engine.connect()
        _hold_open_transaction(holder, "t")
        idle = engine.connect()  # a plain idle session as well

        drop_database(url)

        assert not database_exists(pg_server_url, name)
        with pytest.raises(DBAPIError):
            holder.execute(sa.text("SELECT 1"))
        drop_database(url)  # idempotent
        for conn in (holder, idle):
            conn.invalidate()
    finally:
        drop_database(url, pg_server_url)


@pytest.mark.parametrize("holder_default_db", ["same", "other"])
def test_drop_mysql_database_with_metadata_lock(
    mysql_server_url: str, holder_default_db: str, engine_for
) -> None:
    url = create_database(mysql_server_url, "mysql")
    name = make_url(url).database
    try:
        with engine_for(url).begin() as conn:
            conn.execute(sa.text("CREATE TABLE t (id INTEGER)"))
        # "other": the holder's PROCESSLIST.DB is not the dropped database, so
        # only the metadata-lock lookup can find it.
        holder_url = url if holder_default_db == "same" else mysql_server_url
        holder = engine_for(holder_url).connect()
        _hold_open_transaction(holder, f"`{name}`.t")

        holder_id = holder.exec_driver_sql("SELECT CONNECTION_ID()").scalar()
        # The holder is found before the DROP, so the DROP never waits on its lock.
        with engine_for(mysql_server_url).connect() as admin:
            assert holder_id in _kill_sessions_using(admin, name)
        drop_database(url)

        assert not database_exists(mysql_server_url, name)
        with pytest.raises(DBAPIError):
            holder.execute(sa.text("SELECT 1"))
        holder.invalidate()
        drop_database(url)  # idempotent
    finally:
        drop_database(url, mysql_server_url)


_SIGKILLED_CLIENT = textwrap.dedent(
    """
    import sys
    import sqlalchemy as sa

    url, table, sleep_sql = sys.argv[1:4]
    with sa.create_engine(url).connect() as conn:
        conn.execute(sa.text("SELECT * FROM " + table)).all()  # lock held from here on
        conn.execute(sa.text(sleep_sql))
    """
)


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.parametrize("kind", ["postgresql", "mysql"])
def test_drop_database_after_client_was_sigkilled_mid_statement(
    request: pytest.FixtureRequest, kind: str
) -> None:
    """A client killed by SIGKILL leaves its session running the statement it
    sent, with its transaction's locks; the drop must end it, not wait."""
    server_url = request.getfixturevalue("pg_server_url" if kind == "postgresql" else "mysql_server_url")
    url = create_database(server_url, kind)
    name = make_url(url).database
    if kind == "postgresql":
        sleep_sql = "SELECT pg_sleep(600)"
        running = sa.text(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = :name AND state = 'active' AND query = :sql"
        )
    else:
        sleep_sql = "SELECT SLEEP(600)"
        running = sa.text(
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST "
            "WHERE DB = :name AND COMMAND = 'Query' AND INFO = :sql"
        )
    admin = admin_engine(server_url)
    client = None
    try:
        with admin_engine(url).connect() as conn:
            conn.execute(sa.text("CREATE TABLE t (id INTEGER)"))
        client = subprocess.Popen([sys.executable, "-c", _SIGKILLED_CLIENT, url, "t", sleep_sql])

        def session_sleeping() -> bool:
            assert client.poll() is None, f"client exited early with {client.returncode}"
            with admin.connect() as conn:
                return conn.execute(running, {"name": name, "sql": sleep_sql}).scalar_one() == 1

        wait_for(session_sleeping, timeout=30, message="the client's session never started sleeping")
        client.kill()
        client.wait(timeout=10)
        # The server has not noticed: the orphaned session still sleeps, locks held.
        with admin.connect() as conn:
            assert conn.execute(running, {"name": name, "sql": sleep_sql}).scalar_one() == 1

        drop_database(url)
        assert not database_exists(server_url, name)
    finally:
        if client is not None and client.poll() is None:
            client.kill()
            client.wait(timeout=10)
        admin.dispose()
        drop_database(url, server_url)


_REVISIONS = [
    (
        "0001",
        "op.create_table('t1', sa.Column('id', sa.Integer, primary_key=True))",
        "op.drop_table('t1')",
    ),
    (
        "0002",
        """
        def upgrade() -> None:
            op.add_column('t1', sa.Column('name', sa.String(50)))


        def downgrade() -> None:
            op.drop_column('t1', 'name')
        """,
    ),
]


def test_make_project_runs_with_plain_alembic(db_url: str, tmp_path: Path, engine_for) -> None:
    ini = make_project(tmp_path, db_url, _REVISIONS)
    assert ini.name == "alembic.ini"
    assert (ini.parent / "migrations" / "env.py").exists()
    config = Config(ini)

    command.upgrade(config, "head")

    engine = engine_for(db_url)
    with engine.connect() as conn:
        inspector = sa.inspect(conn)
        assert set(inspector.get_table_names()) == {"alembic_version", "t1"}
        assert [c["name"] for c in inspector.get_columns("t1")] == ["id", "name"]
        assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar_one() == "0002"

    command.downgrade(config, "base")

    with engine.connect() as conn:
        assert sa.inspect(conn).get_table_names() == ["alembic_version"]


@pytest.mark.skipif(not (Path(alembic.__file__).parent / "templates" / "pyproject").is_dir(),
                    reason="Alembic before 1.16 (the floors job runs 1.10) has no pyproject template")
def test_make_project_pyproject_template(sqlite_url: str, tmp_path: Path) -> None:
    ini = make_project(tmp_path, sqlite_url, _REVISIONS[:1], template="pyproject")
    toml = ini.parent / "pyproject.toml"
    assert 'script_location = "%(here)s/migrations"' in toml.read_text()
    command.upgrade(Config(ini, toml_file=toml), "head")
    engine = sa.create_engine(sqlite_url)
    try:
        with engine.connect() as conn:
            assert "t1" in sa.inspect(conn).get_table_names()
    finally:
        engine.dispose()


def test_make_project_copes_with_percent_in_url(tmp_path: Path) -> None:
    url = "postgresql+psycopg://user:p%40ss%25@127.0.0.1:5432/db"
    ini = make_project(tmp_path, url)
    assert Config(ini).get_main_option("sqlalchemy.url") == url


def test_render_revision_is_valid_python(tmp_path: Path) -> None:
    path = tmp_path / "0002.py"
    path.write_text(render_revision("0002", "0001", "op.execute('SELECT 1')\nop.execute('SELECT 2')", ""))
    spec = importlib.util.spec_from_file_location("rev_0002", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.revision == "0002"
    assert module.down_revision == "0001"
    assert callable(module.upgrade) and callable(module.downgrade)


def test_wait_for_returns_the_value_or_raises_with_message() -> None:
    calls = iter([0, 0, 7])
    assert wait_for(lambda: next(calls), timeout=5, interval=0) == 7
    with pytest.raises(AssertionError, match="the thing never happened"):
        wait_for(lambda: False, timeout=0.05, message="the thing never happened")


def test_create_database_refuses_a_mismatched_url() -> None:
    with pytest.raises(ValueError, match="not a postgresql URL"):
        create_database("mysql+pymysql://root@127.0.0.1/test", "postgresql")
