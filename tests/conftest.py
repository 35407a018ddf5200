"""Database fixtures for the test suite.

Servers come from the environment, else from Docker:

- ``DBGUARD_TEST_POSTGRES_URL`` / ``DBGUARD_TEST_MYSQL_URL``: admin URLs of
  running servers, pointing at an existing database (``.../test``); the user
  must be allowed to create and drop databases and to end other sessions.
  docker-compose.yml at the repository root starts matching servers.
- unset, and a Docker engine answers: testcontainers starts postgres:15 and
  mariadb:10.11 once per session (only those a selected test needs).
- neither: the tests that need the server are skipped, except with ``CI=true``
  where they fail: CI must never go green by skipping its integration tests.

Every database test gets a fresh, empty database (``dbg_<8 hex>``) that is
dropped at teardown, pass or fail.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest
from sqlalchemy.exc import SQLAlchemyError

from tests.dbs import (
    backend_of,
    cannot_run,
    check_server,
    create_database,
    drop_database,
    safe_url,
)
from tests.projects import wait_for

SERVER_ENV = {
    "postgresql": "DBGUARD_TEST_POSTGRES_URL",
    "mysql": "DBGUARD_TEST_MYSQL_URL",
}
CONTAINER_IMAGE = {
    "postgresql": "postgres:15",
    "mysql": "mariadb:10.11",
}
CONTAINER_START_TIMEOUT_S = 120

# Tests using any of these need a real server: marked integration automatically.
SERVER_FIXTURES = {"pg_server_url", "mysql_server_url", "pg_url", "mysql_url", "private_mariadb_server_url",
                   "private_mysql_url", "private_pg_server_url", "private_pg_url", "bare_mariadb_server_url",
                   "bare_mysql_url"}


def pytest_configure(config: pytest.Config) -> None:
    # dbguard keeps state (the local kill audit file) under XDG_STATE_HOME: never the user's own.
    state = Path(tempfile.mkdtemp(prefix="dbguard-test-state-"))
    os.environ["XDG_STATE_HOME"] = str(state)
    os.environ.pop("DBGUARD_AUDIT_FILE", None)
    config.add_cleanup(lambda: shutil.rmtree(state, ignore_errors=True))
    # Registered here rather than in pyproject.toml, which another change owns.
    config.addinivalue_line(
        "markers",
        "integration: needs a real PostgreSQL or MySQL/MariaDB server "
        "(DBGUARD_TEST_*_URL or a Docker engine); deselect with -m 'not integration'",
    )
    config.addinivalue_line(
        "markers", "slow: takes seconds rather than milliseconds; deselect with -m 'not slow'"
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if SERVER_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)


def unavailable(reason: str) -> NoReturn:
    """Skip the test for lack of a database, or fail it on CI."""
    cannot_run(reason)


@functools.lru_cache(maxsize=1)
def docker_unavailable_reason() -> str | None:
    """None when a Docker engine answers, else why not. Asked once per session."""
    try:
        # The SDK testcontainers itself uses, so it finds the engine (DOCKER_HOST ...) the same way.
        import docker
        from docker.errors import DockerException
    except ImportError:
        sdk_error = "the docker Python package is not installed"
    else:
        try:
            client = docker.from_env(timeout=5)
            try:
                client.ping()
                return None
            finally:
                client.close()
        except (DockerException, OSError) as exc:  # requests' errors are OSErrors
            sdk_error = str(exc)
    if shutil.which("docker"):
        try:
            probe = subprocess.run(
                ["docker", "info"], check=False, capture_output=True, text=True, timeout=15
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"docker info: {exc}"
        if probe.returncode == 0:
            return None
        lines = (probe.stderr or probe.stdout).strip().splitlines()
        return lines[-1] if lines else sdk_error
    return sdk_error


def _start_container(kind: str) -> tuple[Any, str]:
    """Start the container for ``kind``; return it and its admin URL."""
    if kind == "postgresql":
        try:
            from testcontainers.community.postgres import PostgresContainer
        except ImportError:  # testcontainers before the community/ split
            from testcontainers.postgres import PostgresContainer

        # Same settings as docker-compose.yml: 2PC tests need prepared transactions.
        container = PostgresContainer(CONTAINER_IMAGE[kind], driver="psycopg").with_command(
            "postgres -c max_prepared_transactions=10"
        )
    else:
        try:
            from testcontainers.community.mysql import MySqlContainer
        except ImportError:
            from testcontainers.mysql import MySqlContainer

        # root, because the fixtures KILL other sessions and create databases.
        container = MySqlContainer(
            CONTAINER_IMAGE[kind], dialect="pymysql", username="root", password="test", dbname="test"
        )
    container.start()
    try:
        url = container.get_connection_url()

        # The log line the container waits for can come a moment before the
        # port accepts clients.
        def reachable() -> bool:
            try:
                check_server(url)
                return True
            except SQLAlchemyError:
                return False

        wait_for(
            reachable,
            timeout=CONTAINER_START_TIMEOUT_S,
            interval=0.5,
            message=f"{CONTAINER_IMAGE[kind]} container never accepted connections",
        )
    except BaseException:
        container.stop()
        raise
    return container, url


def _server_url(kind: str) -> Iterator[str]:
    env_name = SERVER_ENV[kind]
    configured = os.environ.get(env_name, "").strip()
    if configured:
        if backend_of(configured) != kind:
            pytest.fail(f"{env_name}={safe_url(configured)} is not a {kind} URL", pytrace=False)
        try:
            check_server(configured)
        except (SQLAlchemyError, ImportError) as exc:  # ImportError: driver not installed
            # Explicitly configured: unreachable is a broken setup, never a skip.
            pytest.fail(f"{env_name}={safe_url(configured)} is set but unreachable: {exc}", pytrace=False)
        yield configured
        return

    reason = docker_unavailable_reason()
    if reason is not None:
        unavailable(f"{env_name} is not set and Docker is not available ({reason})")
    try:
        container, url = _start_container(kind)
    except Exception as exc:  # noqa: BLE001 - whatever stops the container from starting, there is no database
        unavailable(f"{env_name} is not set and starting {CONTAINER_IMAGE[kind]} failed: {exc}")
    try:
        yield url
    finally:
        container.stop()


@pytest.fixture(scope="session")
def pg_server_url() -> Iterator[str]:
    """Admin URL of the PostgreSQL server for this session (skip or fail when there is none)."""
    yield from _server_url("postgresql")


@pytest.fixture(scope="session")
def mysql_server_url() -> Iterator[str]:
    """Admin URL of the MySQL/MariaDB server for this session (skip or fail when there is none)."""
    yield from _server_url("mysql")


@pytest.fixture
def pg_url(pg_server_url: str) -> Iterator[str]:
    """URL of a fresh, empty PostgreSQL database, dropped after the test."""
    url = create_database(pg_server_url, "postgresql")
    try:
        yield url
    finally:
        drop_database(url, pg_server_url)


@pytest.fixture
def mysql_url(mysql_server_url: str) -> Iterator[str]:
    """URL of a fresh, empty MySQL/MariaDB database, dropped after the test."""
    url = create_database(mysql_server_url, "mysql")
    try:
        yield url
    finally:
        drop_database(url, mysql_server_url)


def _own_mariadb_server() -> Iterator[str]:
    from tests.private_servers import mariadb_binaries, private_mariadb

    if mariadb_binaries() is None:
        unavailable("mariadb-install-db and mariadbd are not installed: no private MariaDB server")
    with private_mariadb() as url:
        yield url


def _fresh_database(server_url: str, install_plugin: bool = True) -> Iterator[str]:
    url = create_database(server_url, "mysql")
    try:
        yield url
    finally:
        drop_database(url, server_url, install_plugin=install_plugin)


@pytest.fixture(scope="session")
def private_mariadb_server_url() -> Iterator[str]:
    """Admin URL of a MariaDB server of this test process's own, for tests that change what is
    server-wide (a plugin's absence, a global read lock) and must never do so on the shared server."""
    yield from _own_mariadb_server()


@pytest.fixture
def private_mysql_url(private_mariadb_server_url: str) -> Iterator[str]:
    """URL of a fresh, empty database on the private MariaDB server, dropped after the test."""
    yield from _fresh_database(private_mariadb_server_url)


@pytest.fixture(scope="session")
def bare_mariadb_server_url() -> Iterator[str]:
    """Admin URL of a MariaDB server of this test process's own on which metadata_lock_info is never
    installed (no test may install it here): the mode without a metadata lock source, reached without
    uninstalling anything."""
    yield from _own_mariadb_server()


@pytest.fixture
def bare_mysql_url(bare_mariadb_server_url: str) -> Iterator[str]:
    """URL of a fresh, empty database on the MariaDB server without metadata_lock_info, dropped after."""
    yield from _fresh_database(bare_mariadb_server_url, install_plugin=False)


@pytest.fixture(scope="session")
def private_pg_server_url() -> Iterator[str]:
    """Admin URL of a PostgreSQL cluster of this test process's own, for tests that watch what is
    server-wide (the scratch databases every replay sweeps) and must not see other tests' work."""
    from tests.private_servers import postgres_binaries, private_postgres

    if postgres_binaries() is None:
        unavailable("initdb and postgres are not installed: no private PostgreSQL cluster")
    with private_postgres() as url:
        yield url


@pytest.fixture
def private_pg_url(private_pg_server_url: str) -> Iterator[str]:
    """URL of a fresh, empty database on the private PostgreSQL cluster, dropped after the test."""
    url = create_database(private_pg_server_url, "postgresql")
    try:
        yield url
    finally:
        drop_database(url, private_pg_server_url)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """URL of a SQLite file (not created yet) in the test's tmp_path."""
    return f"sqlite:///{tmp_path / 'test.db'}"


_DB_URL_FIXTURE = {"sqlite": "sqlite_url", "postgresql": "pg_url", "mysql": "mysql_url"}


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgresql", id="postgresql", marks=pytest.mark.integration),
        pytest.param("mysql", id="mysql", marks=pytest.mark.integration),
    ]
)
def db_url(request: pytest.FixtureRequest) -> str:
    """A fresh database of each kind in turn: ``test_x[sqlite]``, ``[postgresql]``, ``[mysql]``."""
    return request.getfixturevalue(_DB_URL_FIXTURE[request.param])
