"""dbguard works on the env.py users already have, unchanged: the stock ``alembic init`` templates
(generic on every engine, async on PostgreSQL and SQLite), and Alembic's cookbook env.py that
migrates on ``config.attributes["connection"]``; and it refuses, before any DDL, an env.py that
connects somewhere else than the database it locked and records in.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import alembic
import pytest
from sqlalchemy.engine import make_url

from tests.dbs import backend_of, create_database, drop_database, url_string
from tests.guardrun import (
    catalog,
    column_names,
    describe,
    json_out,
    ledger,
    run_dbguard,
    table_names,
    versions,
)
from tests.projects import make_project

pytestmark = pytest.mark.integration

TEMPLATES = Path(alembic.__file__).parent / "templates"
# The ledger, and the reference schema of the empty database dbguard first found.
LEDGER_TABLES = {"dbguard_runs", "dbguard_steps", "dbguard_schemas"}

REVISIONS = [
    ("e1_accounts", """
    op.create_table("accounts", sa.Column("id", sa.Integer, primary_key=True),
                    sa.Column("name", sa.String(50), nullable=False))
    """),
    ("e2_email", """
    op.add_column("accounts", sa.Column("email", sa.String(100)))
    op.create_index("ix_accounts_email", "accounts", ["email"])
    """),
]
HEAD = "e2_email"

# Alembic's cookbook pattern ("Sharing a Connection across one or more programmatic migration
# commands"), strict: it has no engine of its own and refuses to run without a connection.
COOKBOOK_ENV = '''\
from alembic import context

config = context.config


def run_migrations_online() -> None:
    connection = config.attributes.get("connection", None)
    if connection is None:
        raise RuntimeError("this env.py migrates only on config.attributes['connection']")
    context.configure(connection=connection, target_metadata=None)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise RuntimeError("this env.py has no offline mode")
run_migrations_online()
'''

FAILS_ON_REQUEST = ("e3_fails", '''
from alembic import context


def upgrade() -> None:
    op.create_table("audit", sa.Column("id", sa.Integer, primary_key=True))
    if context.get_x_argument(as_dictionary=True).get("fail"):
        op.execute("SELECT * FROM dbguard_test_no_such_table")
''')


def env_py(ini: Path) -> Path:
    return ini.parent / "migrations" / "env.py"


def assert_migrated(url: str) -> None:
    assert versions(url) == [HEAD]
    assert {"accounts", "alembic_version"} | LEDGER_TABLES <= table_names(url)
    assert {"id", "name", "email"} == column_names(url, "accounts")
    runs, steps = ledger(url)
    assert runs[-1]["status"] == "succeeded"
    assert [(s["revision"], s["status"]) for s in steps] == [("e1_accounts", "succeeded"), (HEAD, "succeeded")]


def test_generic_template_unchanged(db_url: str, tmp_path: Path) -> None:
    ini = make_project(tmp_path, db_url, REVISIONS, template="generic")
    assert env_py(ini).read_text() == (TEMPLATES / "generic" / "env.py").read_text(), "stock env.py"
    result = run_dbguard(ini, db_url, "upgrade", "head")
    assert result.returncode == 0, describe(result)
    assert_migrated(db_url)
    again = run_dbguard(ini, db_url, "upgrade", "head")
    assert again.returncode == 0 and "nothing to do" in again.stdout, describe(again)


@pytest.fixture(params=["postgresql", "sqlite"])
def async_url(request: pytest.FixtureRequest) -> str:
    """A fresh database reached through an async driver: asyncpg, aiosqlite."""
    if request.param == "postgresql":
        url = make_url(request.getfixturevalue("pg_url")).set(drivername="postgresql+asyncpg")
    else:
        url = make_url(request.getfixturevalue("sqlite_url")).set(drivername="sqlite+aiosqlite")
    return url_string(url)


def test_async_template_unchanged(async_url: str, tmp_path: Path) -> None:
    ini = make_project(tmp_path, async_url, REVISIONS, template="async")
    assert env_py(ini).read_text() == (TEMPLATES / "async" / "env.py").read_text(), "stock async env.py"
    result = run_dbguard(ini, async_url, "upgrade", "head")
    assert result.returncode == 0, describe(result)
    assert_migrated(async_url)
    status = run_dbguard(ini, async_url, "--format", "json", "status")
    assert status.returncode == 0, describe(status)
    assert json_out(status)["state"] == "HEALTHY"


def test_async_template_replays_into_a_shadow_url_of_an_async_driver(async_url: str, tmp_path: Path,
                                                                     request: pytest.FixtureRequest) -> None:
    """``--shadow-url`` names the async driver the async env.py needs (prefect's env.py reads its own
    URL setting, so the shadow is given in that form); dbguard's own reading of the replayed schema
    connects through the sync driver of the same engine."""
    ini = make_project(tmp_path, async_url, REVISIONS, template="async")
    assert run_dbguard(ini, async_url, "upgrade", "head").returncode == 0
    if backend_of(async_url) == "sqlite":
        shadow, server = f"sqlite+aiosqlite:///{tmp_path / 'shadow.db'}", None
    else:
        server = request.getfixturevalue("pg_server_url")
        shadow = url_string(make_url(create_database(server, "postgresql")).set(drivername="postgresql+asyncpg"))
    try:
        replayed = run_dbguard(ini, async_url, "drift", "--against", "migrations", "--shadow-url", shadow)
        assert replayed.returncode == 0, describe(replayed)
        assert "no drift" in replayed.stdout and "Traceback" not in replayed.stderr, describe(replayed)
    finally:
        if server is not None:
            drop_database(shadow, server)


# arize-phoenix's env.py builds its engine this way: AsyncEngine(engine_from_config(...)).
WRAPPED_ENGINE = """
from sqlalchemy import engine_from_config as _engine_from_config
from sqlalchemy.ext.asyncio import AsyncEngine as _AsyncEngine


def _wrapped_engine_from_config(*args, **kwargs):
    return _AsyncEngine(_engine_from_config(*args, **kwargs))
"""


def test_an_async_env_py_replays_into_the_scratch_database_dbguard_makes(async_url: str, tmp_path: Path) -> None:
    """Without --shadow-url, env.py is handed the scratch database in the target's own form, async
    driver included: an async env.py that wraps a plain engine in an AsyncEngine (arize-phoenix's)
    refuses a sync driver (async_engine_from_config would swap psycopg for its async mode, never
    pysqlite). ``plan --observe`` replays into a scratch database the same way, and reads the locks
    there on env.py's connection."""
    ini = make_project(tmp_path, async_url, REVISIONS, template="async")
    env = env_py(ini)
    env.write_text(env.read_text().replace("async_engine_from_config(", "_wrapped_engine_from_config(").replace(
        "from alembic import context\n", "from alembic import context\n" + WRAPPED_ENGINE, 1))
    assert run_dbguard(ini, async_url, "upgrade", "head").returncode == 0
    replayed = run_dbguard(ini, async_url, "drift", "--against", "migrations")
    assert replayed.returncode == 0, describe(replayed)
    assert "no drift" in replayed.stdout and "Traceback" not in replayed.stderr, describe(replayed)
    if backend_of(async_url) == "postgresql":
        assert run_dbguard(ini, async_url, "downgrade", "-1").returncode == 0
        observed = run_dbguard(ini, async_url, "--format", "json", "plan", "--observe")
        assert observed.returncode in (0, 1), describe(observed)
        seen = json_out(observed)["observed"]
        # Read on env.py's own asyncpg connection, which returns pg_class.relkind ("char") as bytes: the
        # server's locks were all dropped and every table "disagreed" (DG116) with a lock seen as none.
        assert seen["status"] == "observed" and seen["disagreements"] == 0, describe(observed)
        assert [(t["table"], t["observed_lock"]) for t in seen["revisions"][0]["tables"]] == \
            [("accounts", "ACCESS EXCLUSIVE")], describe(observed)


def test_env_py_requiring_a_connection_fails_as_under_plain_alembic(db_url: str, tmp_path: Path) -> None:
    """dbguard puts nothing into config.attributes that plain Alembic would not: an env.py that only a
    host program handing it a connection can run fails under dbguard as under ``alembic``, in one
    line, and a run that never reached a migration leaves the breaker closed."""
    ini = make_project(tmp_path, db_url, REVISIONS)
    env_py(ini).write_text(COOKBOOK_ENV)
    plain = subprocess.run([sys.executable, "-m", "alembic", "-c", str(ini), "upgrade", HEAD],
                           check=False, capture_output=True, text=True, timeout=60,
                           stdin=subprocess.DEVNULL)
    assert plain.returncode != 0 and "config.attributes['connection']" in plain.stderr

    result = run_dbguard(ini, db_url, "upgrade", HEAD)
    assert result.returncode != 0, describe(result)
    assert "config.attributes['connection']" in result.stdout + result.stderr
    assert versions(db_url) == []
    status = run_dbguard(ini, db_url, "--format", "json", "status")
    assert json_out(status)["state"] == "HEALTHY", describe(status)


@pytest.fixture
def other_url(db_url: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """Another fresh, empty database of the same kind as ``db_url``."""
    kind = backend_of(db_url)
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'other.db'}"
        return
    server = request.getfixturevalue("pg_server_url" if kind == "postgresql" else "mysql_server_url")
    url = create_database(server, kind)
    try:
        yield url
    finally:
        drop_database(url, server)


def test_env_py_connecting_elsewhere_is_refused_before_any_ddl(db_url: str, other_url: str, tmp_path: Path) -> None:
    ini = make_project(tmp_path, db_url, REVISIONS)
    stock = env_py(ini).read_text()
    needle = "config.get_section(config.config_ini_section, {})"
    assert stock.count(needle) == 1
    # env.py ignores sqlalchemy.url and --url and hard-codes another database.
    env_py(ini).write_text(stock.replace(needle, f"{{'sqlalchemy.url': {other_url!r}}}"))

    result = run_dbguard(ini, db_url, "upgrade", "head")
    assert result.returncode == 2, describe(result)
    output = result.stdout + result.stderr
    assert "Traceback" not in output
    assert "env.py connected to another server or database" in output
    assert "before any DDL" in output

    # Nothing was created in either database; only dbguard's ledger exists in the target.
    assert table_names(other_url) == set()
    assert table_names(db_url) == LEDGER_TABLES
    runs, steps = ledger(db_url)
    assert [r["status"] for r in runs] == ["refused"] and steps == []
    # A configuration error is no failed migration: the breaker stays closed.
    status = run_dbguard(ini, db_url, "--format", "json", "status")
    assert status.returncode == 0 and json_out(status)["state"] == "HEALTHY", describe(status)
    assert catalog(db_url)["alembic_version"] == []


def test_env_py_with_one_outer_transaction(db_url: str, tmp_path: Path) -> None:
    """env.py's ``engine.begin()`` runs every step in one transaction of its own (Alembic then ignores
    transaction_per_migration): on SQLite that transaction holds the write lock through the run, so
    dbguard's ledger writes must wait for it instead of failing (or retrying) the migration."""
    ini = make_project(tmp_path, db_url, [*REVISIONS, FAILS_ON_REQUEST])
    stock = env_py(ini).read_text()
    needle = "with connectable.connect() as connection:"
    assert stock.count(needle) == 1
    env_py(ini).write_text(stock.replace(needle, "with connectable.begin() as connection:"))

    result = run_dbguard(ini, db_url, "upgrade", HEAD)
    assert result.returncode == 0, describe(result)
    assert_migrated(db_url)
    runs, steps = ledger(db_url)
    assert all(s["attempts"] == 1 for s in steps), "no retry: nothing waited for a lock of the schema"

    failed = run_dbguard(ini, db_url, "-x", "fail=1", "upgrade", "head")
    assert failed.returncode == 5, describe(failed)
    runs, steps = ledger(db_url)
    assert runs[-1]["status"] == "failed" and runs[-1]["failed_step"] == "e3_fails"
    assert steps[-1]["revision"] == "e3_fails" and steps[-1]["attempts"] == 1
    assert versions(db_url) == [HEAD]


def test_a_replay_never_runs_in_the_database_env_py_hard_codes(db_url: str, tmp_path: Path) -> None:
    """`drift --against migrations` hands env.py the scratch database in sqlalchemy.url; an env.py that
    hard-codes the checked database instead is stopped before its first statement there."""
    ini = make_project(tmp_path, db_url, REVISIONS)
    assert run_dbguard(ini, db_url, "upgrade", HEAD).returncode == 0
    stock = env_py(ini).read_text()
    needle = "config.get_section(config.config_ini_section, {})"
    env_py(ini).write_text(stock.replace(needle, f"{{'sqlalchemy.url': {db_url!r}}}"))
    before, heads = catalog(db_url), versions(db_url)

    result = run_dbguard(ini, db_url, "drift", "--against", "migrations")
    assert result.returncode == 2, describe(result)
    assert "instead of the scratch database" in result.stderr and "Traceback" not in result.stderr
    assert catalog(db_url) == before and versions(db_url) == heads == [HEAD]
