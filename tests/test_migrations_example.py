"""migrations_example/ works with plain Alembic on every engine, and its demo failure fails as documented."""

from __future__ import annotations

import argparse
import importlib.util
import io
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext

from tests.dbs import backend_of

EXAMPLE_INI = Path(__file__).resolve().parent.parent / "migrations_example" / "alembic.ini"
HEAD = "0004_audit_log_order_note"
BEFORE_FAILURE = "0003_last_login_status_index"
APP_TABLES = {"users", "orders", "audit_log"}


def example_config(url: str, *x_args: str, output: io.StringIO | None = None) -> Config:
    """The example's alembic.ini pointed at ``url`` (never its demo.db), with ``-x`` arguments."""
    config = Config(EXAMPLE_INI, output_buffer=output, cmd_opts=argparse.Namespace(x=list(x_args)))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def snapshot(url: str) -> dict[str, object]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            inspector = sa.inspect(conn)
            tables = set(inspector.get_table_names())
            versions = (
                conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalars().all()
                if "alembic_version" in tables
                else []
            )
            orders_columns = (
                {c["name"] for c in inspector.get_columns("orders")} if "orders" in tables else set()
            )
            enum_types = (
                conn.execute(sa.text("SELECT typname FROM pg_type WHERE typname = 'order_status'")).all()
                if conn.dialect.name == "postgresql"
                else []
            )
        return {"tables": tables, "versions": versions, "orders_columns": orders_columns, "enum": enum_types}
    finally:
        engine.dispose()


def model_drift(url: str) -> list[object]:
    spec = importlib.util.spec_from_file_location("example_models_under_test", EXAMPLE_INI.parent / "models.py")
    models = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(models)

    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return compare_metadata(MigrationContext.configure(conn), models.metadata)
    finally:
        engine.dispose()


def test_upgrade_downgrade_upgrade(db_url: str) -> None:
    config = example_config(db_url)

    command.upgrade(config, "head")
    state = snapshot(db_url)
    assert state["tables"] == APP_TABLES | {"alembic_version"}
    assert state["versions"] == [HEAD]
    # models.py is the head schema: what `alembic check` compares finds nothing.
    assert model_drift(db_url) == []

    command.downgrade(config, "base")
    state = snapshot(db_url)
    assert state["tables"] == {"alembic_version"}
    assert state["versions"] == []
    assert state["enum"] == []  # 0002's downgrade dropped the PostgreSQL type

    command.upgrade(config, "head")
    assert snapshot(db_url)["versions"] == [HEAD]


def test_fail_flag_fails_half_way(db_url: str) -> None:
    command.upgrade(example_config(db_url), BEFORE_FAILURE)

    with pytest.raises(sa.exc.DBAPIError, match="dbguard_example_missing_table"):
        command.upgrade(example_config(db_url, "fail=1"), "head")

    state = snapshot(db_url)
    assert state["versions"] == [BEFORE_FAILURE]
    if backend_of(db_url) == "postgresql":
        # Transactional DDL: the failed revision left nothing.
        assert "audit_log" not in state["tables"]
        assert "note" not in state["orders_columns"]
    else:
        # MySQL/MariaDB and SQLite keep what ran before the failure.
        assert "audit_log" in state["tables"]
        assert "note" in state["orders_columns"]


@pytest.mark.parametrize("value", ["0", "false", "no", ""])
def test_fail_flag_false_values_do_not_fail(sqlite_url: str, value: str) -> None:
    command.upgrade(example_config(sqlite_url, f"fail={value}"), "head")
    assert snapshot(sqlite_url)["versions"] == [HEAD]


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+psycopg://postgres@127.0.0.1:5432/offline",
        "mysql+pymysql://root@127.0.0.1:3306/offline",
        "sqlite:///offline.db",
    ],
    ids=["postgresql", "mysql", "sqlite"],
)
def test_offline_sql(url: str) -> None:
    """--sql needs no server: dbguard plans from it, so every revision must render offline."""
    upgrade_sql = io.StringIO()
    command.upgrade(example_config(url, output=upgrade_sql), "head", sql=True)
    downgrade_sql = io.StringIO()
    command.downgrade(example_config(url, output=downgrade_sql), f"{HEAD}:base", sql=True)
    failing_sql = io.StringIO()
    command.upgrade(example_config(url, "fail=1", output=failing_sql), f"{BEFORE_FAILURE}:head", sql=True)

    for table in APP_TABLES:
        assert f"CREATE TABLE {table}" in upgrade_sql.getvalue()
        assert f"DROP TABLE {table}" in downgrade_sql.getvalue()
    assert "dbguard_example_missing_table" not in upgrade_sql.getvalue()
    assert "SELECT * FROM dbguard_example_missing_table" in failing_sql.getvalue()
    assert ("DROP TYPE IF EXISTS order_status" in downgrade_sql.getvalue()) == url.startswith("postgresql")
