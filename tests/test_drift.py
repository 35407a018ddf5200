"""Schema drift on real engines: no false positives, every injected drift named, scratch databases
always dropped, the CI formats, and the pre-flight of guarded runs."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from dbguard import api
from dbguard.drift.expected import SCRATCH_PREFIX
from dbguard.errors import ConfigError
from dbguard.settings import load_settings
from tests.dbs import backend_of
from tests.projects import make_project, wait_for

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_INI = ROOT / "migrations_example" / "alembic.ini"
SCHEMA_INI = Path(__file__).resolve().parent / "drift_schema" / "alembic.ini"
DBGUARD = [sys.executable, "-m", "dbguard.cli"]


def settings(ini: Path, url: str, tmp_path: Path, **more):
    return load_settings({"config_path": str(ini), "url": url, **more}, environ={}, cwd=tmp_path)


def execute(url: str, *statements: str) -> None:
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.begin() as conn:
            for statement in statements:
                conn.exec_driver_sql(statement)
    finally:
        engine.dispose()


def scratch_databases(url: str) -> set[str]:
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    pattern = SCRATCH_PREFIX.replace("_", "\\_") + "%"
    try:
        with engine.connect() as conn:
            if backend_of(url) == "postgresql":
                sql = "SELECT datname FROM pg_database WHERE datname LIKE :p"
            else:
                sql = "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE :p"
            return set(conn.execute(sa.text(sql), {"p": pattern}).scalars())
    finally:
        engine.dispose()


def owned_by(names: set[str], pid: int) -> set[str]:
    """The server scratch databases a dbguard process ``pid`` made: other tests replay on the same
    server at the same time, so a test looks only at its own processes' names."""
    return {name for name in names if name.startswith(f"{SCRATCH_PREFIX}{pid}_")}


def _stuck(proc: subprocess.Popen, url: str) -> str:
    """What a replay that never got going was doing: its stack (py-spy is not here, so its stderr after
    SIGKILL) and the server's sessions."""
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            if backend_of(url) == "postgresql":
                sessions = conn.exec_driver_sql("SELECT pid, datname, state, wait_event_type, left(query, 120) "
                                                "FROM pg_stat_activity WHERE backend_type = 'client backend'").all()
            elif backend_of(url) == "mysql":
                sessions = conn.exec_driver_sql("SELECT ID, DB, COMMAND, STATE, LEFT(INFO, 120) "
                                                "FROM information_schema.PROCESSLIST").all()
            else:
                sessions = []
    except sa.exc.DBAPIError as exc:
        sessions = [f"could not list sessions: {exc}"]
    finally:
        engine.dispose()
    proc.kill()
    _, err = proc.communicate()
    return f"sessions {sessions}; its stderr: {err[-2000:]}"


def let_go(url: str, name: str) -> bool:
    """The server has let go of a killed owner: nobody holds the scratch database's owner lock and no
    session is in it (the server notices a dead client's sessions a moment after the kill)."""
    from dbguard.dialects import for_sqlalchemy_dialect

    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            dialect = for_sqlalchemy_dialect(conn.dialect)
            held = conn.execute(sa.text(dialect.scratch_held(name).sql), dialect.scratch_held(name).params).scalar()
            users = conn.execute(sa.text(dialect.scratch_users(name).sql), dialect.scratch_users(name).params).scalar()
            return not held and not users
    finally:
        engine.dispose()


def upgrade(ini: Path, url: str, tmp_path: Path, revision: str = "head", **more):
    result = api.upgrade(settings(ini, url, tmp_path, **more), revision)
    assert result.exit_code == 0, result
    return result


def kinds(report) -> set[tuple[str, str]]:
    # SQLite's catalog keeps no foreign key names: a snapshot of it names the key by its columns.
    return {(d.kind, "audit_log.fk_audit_log_order_id_orders" if d.object == "audit_log.fk(order_id)" else d.object)
            for d in report.drifts}


# Zero false positives --------------------------------------------------------------------------


@pytest.mark.parametrize("ini", [EXAMPLE_INI, SCHEMA_INI], ids=["migrations_example", "every_type"])
def test_no_false_positives_against_models_migrations_and_snapshot(db_url, ini, tmp_path):
    upgrade(ini, db_url, tmp_path)
    s = settings(ini, db_url, tmp_path)
    for against in ("models", "migrations"):
        report = api.drift(s, against=against)
        assert report.drifts == (), (against, [d.describe() for d in report.drifts])
        assert report.exit_code == 0
    snap = tmp_path / "schema.json"
    written = api.snapshot(s, output=str(snap))
    assert written.tables == report.tables_compared
    report = api.drift(s, against=str(snap))
    assert report.drifts == () and report.exit_code == 0
    # The snapshot is what teams commit: the same schema gives the same bytes, and it has substance.
    again = tmp_path / "again.json"
    api.snapshot(s, output=str(again), live=True)
    doc = json.loads(snap.read_text())
    assert snap.read_text() == again.read_text()
    if ini == SCHEMA_INI:
        things = doc["tables"]["things"]
        assert {c["name"] for c in things["checks"]} >= {"ck_things_price_positive", "ck_things_status_known"}
        assert any(i.get("where") for i in things["indexes"]) != (backend_of(db_url) == "mysql")
        assert any(c.get("default") for c in things["columns"])
        assert any(f.get("on_delete") == "CASCADE" for f in things["foreign_keys"])
        assert doc["views"] == {} or "open_things" in doc["views"]


# Injected drift --------------------------------------------------------------------------------

PG_DDL = [
    "ALTER TABLE users ADD COLUMN nickname varchar(20)",
    "ALTER TABLE users DROP COLUMN last_login_at",
    "ALTER TABLE orders RENAME COLUMN note TO remark",
    "ALTER TABLE audit_log ALTER COLUMN action TYPE text",
    "ALTER TABLE users ALTER COLUMN name TYPE varchar(150)",
    "ALTER TABLE audit_log ALTER COLUMN at SET NOT NULL",
    "ALTER TABLE orders ALTER COLUMN total SET DEFAULT 5",
    "DROP INDEX ix_orders_user_id",
    "CREATE INDEX ix_extra ON users (name)",
    "DROP INDEX ix_orders_status_created",
    "CREATE UNIQUE INDEX ix_orders_status_created ON orders (status, created_at)",
    "ALTER TABLE audit_log DROP CONSTRAINT fk_audit_log_order_id_orders",
    "CREATE TABLE hotfix (id int)",
    "ALTER TYPE order_status RENAME VALUE 'shipped' TO 'sent'",
]
MARIA_DDL = [
    "ALTER TABLE users ADD COLUMN nickname varchar(20)",
    "ALTER TABLE users DROP COLUMN last_login_at",
    "ALTER TABLE orders RENAME COLUMN note TO remark",
    "ALTER TABLE audit_log MODIFY action TEXT NOT NULL",
    "ALTER TABLE users MODIFY name varchar(150)",
    "ALTER TABLE audit_log MODIFY at DATETIME NOT NULL DEFAULT current_timestamp()",
    "ALTER TABLE orders ALTER COLUMN total SET DEFAULT 5",
    "DROP INDEX ix_orders_status_created ON orders",
    "CREATE INDEX ix_extra ON users (name)",
    "ALTER TABLE users DROP INDEX uq_users_email, ADD INDEX uq_users_email (email)",
    "ALTER TABLE audit_log DROP FOREIGN KEY fk_audit_log_order_id_orders",
    "CREATE TABLE hotfix (id int)",
    "ALTER TABLE orders MODIFY status ENUM('pending','paid') NOT NULL DEFAULT 'pending'",
]
SQLITE_DDL = [
    "ALTER TABLE users ADD COLUMN nickname varchar(20)",
    "ALTER TABLE users DROP COLUMN last_login_at",
    "ALTER TABLE orders RENAME COLUMN note TO remark",
    "DROP INDEX ix_orders_user_id",
    "CREATE INDEX ix_extra ON users (name)",
    "DROP INDEX ix_orders_status_created",
    "CREATE UNIQUE INDEX ix_orders_status_created ON orders (status, created_at)",
    "CREATE TABLE hotfix (id int)",
    # SQLite changes a column's type or nullability, or drops a foreign key, by rebuilding the table.
    ("CREATE TABLE audit_log_new (id INTEGER NOT NULL, order_id INTEGER, action TEXT NOT NULL, "
    "at DATETIME DEFAULT (CURRENT_TIMESTAMP) NOT NULL, CONSTRAINT pk_audit_log PRIMARY KEY (id))"),
    "INSERT INTO audit_log_new SELECT id, order_id, action, at FROM audit_log",
    "DROP TABLE audit_log",
    "ALTER TABLE audit_log_new RENAME TO audit_log",
    "CREATE INDEX ix_audit_log_order_id ON audit_log (order_id)",
]

COMMON = {
    ("extra_column", "users.nickname"), ("missing_column", "users.last_login_at"),
    ("renamed_column", "orders.note"), ("extra_index", "users.ix_extra"), ("extra_table", "hotfix"),
    ("changed_column_type", "audit_log.action"), ("changed_column_nullable", "audit_log.at"),
    ("missing_foreign_key", "audit_log.fk_audit_log_order_id_orders"),
}
EXPECTED = {
    "postgresql": COMMON | {
        ("changed_column_type", "users.name"), ("changed_column_default", "orders.total"),
        ("missing_index", "orders.ix_orders_user_id"), ("changed_index_unique", "orders.ix_orders_status_created"),
        ("missing_enum_value", "enum order_status"), ("extra_enum_value", "enum order_status")},
    "mysql": COMMON | {
        ("changed_column_type", "users.name"), ("changed_column_default", "orders.total"),
        ("missing_index", "orders.ix_orders_status_created"), ("changed_index_unique", "users.uq_users_email"),
        ("missing_enum_value", "orders.status")},
    "sqlite": COMMON | {
        ("missing_index", "orders.ix_orders_user_id"), ("changed_index_unique", "orders.ix_orders_status_created")},
}


def test_every_injected_drift_is_found_and_named(db_url, tmp_path):
    engine = backend_of(db_url)
    upgrade(EXAMPLE_INI, db_url, tmp_path)
    snap = tmp_path / "schema.json"
    api.snapshot(settings(EXAMPLE_INI, db_url, tmp_path), output=str(snap), live=True)
    execute(db_url, *{"postgresql": PG_DDL, "mysql": MARIA_DDL, "sqlite": SQLITE_DDL}[engine])
    s = settings(EXAMPLE_INI, db_url, tmp_path)
    for against in ("models", "migrations", str(snap)):
        report = api.drift(s, against=against)
        # Each injected change is found under its own name, and nothing else is reported.
        found = kinds(report)
        assert found == EXPECTED[engine], (against, EXPECTED[engine] - found, found - EXPECTED[engine])
        assert report.exit_code == 1
    # --ignore and the settings' drift_ignore take objects out.
    report = api.drift(settings(EXAMPLE_INI, db_url, tmp_path, drift_ignore=("hotfix",)), against=str(snap),
                       ignore=("users.*", "enum *", "orders.status"))
    assert not {k for k in kinds(report) if k[1].startswith(("users.", "enum ")) or k[1] in ("hotfix",)}
    assert report.ignored > 0


# The CLI's way: the catalog read in a forked child ---------------------------------------------


@pytest.fixture
def forking(monkeypatch):
    """api.drift as the CLI runs it, in a process dbguard owns: against the models, the catalog is
    read in a forked child. Yields a list that records, per comparison, whether it went through
    the child's digests (True) or fell back to reading the catalog in process (False)."""
    import gc

    import dbguard
    from dbguard.drift import checks as drift_module
    from dbguard.drift import forked

    if not forked.can_fork():
        pytest.skip("this system has no fork()")
    used: list[bool] = []
    original = drift_module._models_against_prefetch

    def spy(*args):
        report = original(*args)
        used.append(report is not None)
        return report

    monkeypatch.setattr(drift_module, "_models_against_prefetch", spy)
    monkeypatch.setattr(dbguard, "OWNS_PROCESS", True)
    # On one CPU dbguard does not fork (it would not pay); the path is tested as if it would.
    available = max(2, forked.cpus())
    monkeypatch.setattr(forked, "cpus", lambda: available)
    monkeypatch.setattr(forked, "load", lambda: 0.0)  # whatever else this machine runs
    # It forks only when no other thread runs: one an earlier test left winding down must be gone.
    import threading

    wait_for(forked._alone, timeout=30, message=lambda: f"threads still running: {threading.enumerate()}")
    try:
        yield used
    finally:
        gc.unfreeze()  # what the owned process froze goes back to the collector


def _documents_fetched(monkeypatch) -> list[int]:
    """Counts the tables' documents fetched from the child: only when some table's digest differs."""
    from dbguard.drift import prefetch

    fetched: list[int] = []
    document = prefetch.LiveCatalog.document
    monkeypatch.setattr(prefetch.LiveCatalog, "document", lambda self: fetched.append(1) or document(self))
    return fetched


@pytest.mark.parametrize("ini", [EXAMPLE_INI, SCHEMA_INI], ids=["migrations_example", "every_type"])
def test_the_forked_read_finds_no_drift_where_there_is_none(db_url, ini, tmp_path, forking, monkeypatch):
    import dbguard

    upgrade(ini, db_url, tmp_path)
    s = settings(ini, db_url, tmp_path)
    fetched = _documents_fetched(monkeypatch)
    report = api.drift(s, against="models")
    assert forking == [True]
    assert report.drifts == () and report.exit_code == 0, [d.describe() for d in report.drifts]
    if ini == EXAMPLE_INI and backend_of(db_url) != "sqlite":
        # Each table digests as its catalog table does: no table is compared in full. (The every-type
        # schema's checks need sqlglot to compare, SQLite names no unique constraint: compared in full.)
        assert fetched == []
    monkeypatch.setattr(dbguard, "OWNS_PROCESS", False)
    in_process = api.drift(s, against="models")
    assert forking == [True]  # no child the second time
    assert (report.table_names, report.revisions, report.engine) == \
        (in_process.table_names, in_process.revisions, in_process.engine)
    assert len(report.table_names) >= 3


def test_the_forked_read_names_every_injected_drift(db_url, tmp_path, forking, monkeypatch):
    engine = backend_of(db_url)
    upgrade(EXAMPLE_INI, db_url, tmp_path)
    execute(db_url, *{"postgresql": PG_DDL, "mysql": MARIA_DDL, "sqlite": SQLITE_DDL}[engine])
    fetched = _documents_fetched(monkeypatch)
    report = api.drift(settings(EXAMPLE_INI, db_url, tmp_path), against="models")
    assert forking == [True] and fetched == [1]
    found = kinds(report)
    assert found == EXPECTED[engine], (EXPECTED[engine] - found, found - EXPECTED[engine])
    assert report.exit_code == 1 and report.revisions


@pytest.mark.parametrize("failure", ["the child fails", "the child read another engine",
                                     "the child read another database"])
def test_the_forked_read_falls_back_without_running_env_py_again(db_url, tmp_path, forking, monkeypatch, failure):
    from dbguard.drift import expected, prefetch

    if failure == "the child fails":
        def broken(settings, exclude):
            raise RuntimeError("no catalog")
            yield

        monkeypatch.setattr(prefetch, "_read_catalog", broken)
    else:
        original = prefetch.receive

        def elsewhere(child):
            live = original(child)
            if failure.endswith("engine"):
                live.engine = ("otherdb", False, (1,))
            else:
                live.url = "0" * 64
            return live

        monkeypatch.setattr(prefetch, "receive", elsewhere)
    env_runs = []
    read_env_models = expected.read_env_models
    monkeypatch.setattr(expected, "read_env_models", lambda *a: env_runs.append(1) or read_env_models(*a))
    monkeypatch.setattr(expected, "read_target_metadata", lambda *a: pytest.fail("env.py run a second time"))
    upgrade(EXAMPLE_INI, db_url, tmp_path)
    execute(db_url, "CREATE TABLE hotfix (id int)")
    report = api.drift(settings(EXAMPLE_INI, db_url, tmp_path), against="models")
    assert forking == [False] and env_runs == [1]
    assert kinds(report) == {("extra_table", "hotfix")} and report.exit_code == 1


@pytest.mark.parametrize("url", ["sqlite:///%(here)s/app.db", "postgresql://u:p%%40ss@h/%(name)s",
                                 "mysql+pymysql://u@h/db?charset=utf8mb4"])
def test_the_catalog_child_reads_the_url_alembic_reads_without_importing_alembic(tmp_path, url):
    from dbguard.settings import load_settings
    from dbguard.target import load_target, reading_target, url_fingerprint

    ini = tmp_path / "alembic.ini"
    ini.write_text(f"[DEFAULT]\nname = shop\n\n[alembic]\nscript_location = {tmp_path}\nsqlalchemy.url = {url}\n")
    s = load_settings({"config_path": str(ini)}, environ={}, cwd=tmp_path)
    light = reading_target(s)
    assert light._config is None  # Alembic's Config not built
    assert url_fingerprint(light.url) == url_fingerprint(load_target(s).url)
    assert url_fingerprint(light.url) != url_fingerprint(light.url.set(database="other"))


def _half_applied_project(tmp_path: Path, url: str) -> Path:
    """r1 creates t1; r2 creates t2a, adds t1.age, then fails: on MariaDB both stay (DDL commits)."""
    return make_project(tmp_path, url, [
        ("r1", "op.create_table('t1', sa.Column('id', sa.Integer, primary_key=True))"),
        ("r2", ("op.create_table('t2a', sa.Column('id', sa.Integer, primary_key=True))\n"
               "op.add_column('t1', sa.Column('age', sa.Integer))\n"
               "op.execute('SELECT * FROM no_such_table')"),
         "op.drop_column('t1', 'age')\nop.drop_table('t2a')"),
    ])


@pytest.mark.parametrize("url", ["mysql_url"])
def test_a_half_applied_mariadb_revision_is_drift(request, url, tmp_path):
    url = request.getfixturevalue(url)
    ini = _half_applied_project(tmp_path, url)
    result = api.upgrade(settings(ini, url, tmp_path), "head")
    assert result.exit_code == 5
    report = api.drift(settings(ini, url, tmp_path), against="migrations")
    assert report.revisions == ("r1",)
    assert {("extra_table", "t2a"), ("extra_column", "t1.age")} <= kinds(report)
    assert report.exit_code == 1


@pytest.mark.parametrize("url", ["mysql_url"])
def test_the_packed_mariadb_catalog_reads_what_the_plain_statements_read(request, url, tmp_path):
    """Every type, checks, comments, a view; then comments holding the packing's separators, which
    make their part fall back to the plain statement: the document is the same either way."""
    from dbguard.core.schema import never_drift
    from dbguard.db.catalog import _build_mysql, _Rows, read_document
    from dbguard.db.sql import run
    from dbguard.dialects import for_sqlalchemy_dialect

    url = request.getfixturevalue(url)
    upgrade(SCHEMA_INI, url, tmp_path)

    def both_reads() -> tuple[dict, dict]:
        engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
        try:
            with engine.connect() as conn:
                dialect = for_sqlalchemy_dialect(conn.dialect)
                assert dialect.catalog_packed() is not None
                packed = read_document(conn, dialect, never_drift("dbguard_"))
                plain = {key: _Rows(run(conn, stmt)) for key, stmt in dialect.catalog().items()}
                from dbguard.core.schema import document_without_tables

                return packed, document_without_tables(_build_mysql(dialect, plain), never_drift("dbguard_"))
        finally:
            engine.dispose()

    packed, plain = both_reads()
    assert packed == plain
    assert packed["tables"]["things"]["checks"] and packed["views"]["open_things"]
    assert packed["tables"]["accounts"]["comment"] == "people who log in"
    # Names and comments beyond ASCII, and a table without any key, come through the packed read alike.
    execute(url, "CREATE TABLE `naïve_ünits` (`größe` VARCHAR(10) COMMENT 'é ☃', `日付` DATE) COMMENT 'ü'",
            "CREATE TABLE bare (id INT)")
    packed, plain = both_reads()
    assert packed == plain
    assert [c["name"] for c in packed["tables"]["naïve_ünits"]["columns"]] == ["größe", "日付"]
    execute(url, "ALTER TABLE accounts COMMENT 'odd\x1fcomment'",
            "ALTER TABLE accounts MODIFY name VARCHAR(100) COMMENT 'odd\x1ename'")
    packed, plain = both_reads()
    assert packed == plain
    assert packed["tables"]["accounts"]["comment"] == "odd\x1fcomment"
    assert [c.get("comment") for c in packed["tables"]["accounts"]["columns"] if c["name"] == "name"] == ["odd\x1ename"]


def test_postgres_catalog_names_key_and_index_columns_by_number_right(pg_url):
    """Keys and indexes come as attribute numbers, named from the columns part: numbering gaps
    (a dropped column), key order unlike the table's, names needing quotes, INCLUDE columns,
    expressions, and foreign keys to tables the columns part does not hold (another schema with a
    same-named table here, an extension's table) are all named as the server names them."""
    from dbguard.core.schema import never_drift
    from dbguard.db.catalog import read_document
    from dbguard.dialects import for_sqlalchemy_dialect

    execute(
        pg_url,
        "CREATE SCHEMA elsewhere",
        "CREATE TABLE elsewhere.target (x int, y int, PRIMARY KEY (y, x))",
        "CREATE TABLE target (y int, x int, z int, PRIMARY KEY (x, y))",
        "CREATE TABLE ext_owned (code text PRIMARY KEY)",
        "CREATE EXTENSION IF NOT EXISTS pg_trgm",
        "ALTER EXTENSION pg_trgm ADD TABLE ext_owned",
        'CREATE TABLE t (a int, gone int, "Mixed Case" int, c text, ty int, tx int, code text, '
        'PRIMARY KEY ("Mixed Case", a), UNIQUE (c, a))',
        "ALTER TABLE t DROP COLUMN gone",
        "ALTER TABLE t ADD COLUMN late int",
        "ALTER TABLE t ADD CONSTRAINT to_elsewhere FOREIGN KEY (ty, tx) REFERENCES elsewhere.target (y, x)",
        "ALTER TABLE t ADD CONSTRAINT to_here FOREIGN KEY (tx, ty) REFERENCES target (x, y)",
        "ALTER TABLE t ADD CONSTRAINT to_extension FOREIGN KEY (code) REFERENCES ext_owned (code)",
        'CREATE INDEX ix_cover ON t (late, "Mixed Case") INCLUDE (a)',
        "CREATE INDEX ix_expr ON t (lower(c), a)",
    )
    engine = sa.create_engine(pg_url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            doc = read_document(conn, for_sqlalchemy_dialect(conn.dialect), never_drift("dbguard_"))
    finally:
        engine.dispose()
    t = doc["tables"]["t"]
    assert [c["name"] for c in t["columns"]] == ["a", "Mixed Case", "c", "ty", "tx", "code", "late"]
    assert t["primary_key"] == ["Mixed Case", "a"]
    assert [u["columns"] for u in t["uniques"]] == [["c", "a"]]
    assert {f["name"]: (f["columns"], f["ref_table"], f["ref_columns"]) for f in t["foreign_keys"]} == {
        "to_elsewhere": (["ty", "tx"], "target", ["y", "x"]),
        "to_here": (["tx", "ty"], "target", ["x", "y"]),
        "to_extension": (["code"], "ext_owned", ["code"]),
    }
    assert {i["name"]: i["columns"] for i in t["indexes"]} == {
        "ix_cover": ["late", "Mixed Case"], "ix_expr": ["lower(c)", "a"]}
    assert "ext_owned" not in doc["tables"]  # an extension's table is the extension's business
    assert doc["tables"]["target"]["primary_key"] == ["x", "y"]


# Scratch databases -----------------------------------------------------------------------------


def test_a_replay_that_fails_names_the_revision_and_the_baseline(db_url, tmp_path):
    """dagster's revisions need a running dagster instance, so its chain cannot run from an empty
    database: the line names the revision the replay stopped at and the way around it."""
    ini = make_project(tmp_path, db_url, [
        ("r1", "op.create_table('t', sa.Column('id', sa.Integer, primary_key=True))"),
        ("r2", "raise RuntimeError('currently upgrading instance not set')"),
    ])
    config = Config(str(ini))
    config.set_main_option("sqlalchemy.url", db_url.replace("%", "%%"))
    command.upgrade(config, "r1")
    command.stamp(config, "r2")
    with pytest.raises(ConfigError) as raised:
        api.drift(settings(ini, db_url, tmp_path), against="migrations")
    assert raised.value.message.startswith(
        "replaying the migrations failed: revision r2: RuntimeError: currently upgrading instance not set; where the "
        "chain cannot run from an empty database, start the replay from --baseline"), raised.value.message


def test_the_scratch_database_is_dropped_after_a_failed_replay(db_url, tmp_path):
    ini = make_project(tmp_path, db_url, [("r1", "op.execute('SELECT * FROM no_such_table')")])
    config = Config(str(ini))
    config.set_main_option("sqlalchemy.url", db_url.replace("%", "%%"))
    command.stamp(config, "r1")
    before = set() if backend_of(db_url) == "sqlite" else scratch_databases(db_url)
    lines: list[str] = []
    with pytest.raises(Exception, match="replaying the migrations failed"):
        api.drift(settings(ini, db_url, tmp_path), against="migrations", progress=lines.append)
    if backend_of(db_url) == "sqlite":
        path = Path(lines[0].rsplit(" ", 1)[-1])
        assert not path.exists() and not path.parent.exists()
    else:
        assert not owned_by(scratch_databases(db_url) - before, os.getpid())


@pytest.mark.parametrize("url", ["pg_url", "mysql_url"])
def test_the_scratch_database_is_dropped_under_a_session_holding_its_locks(request, url, tmp_path):
    """A replay interrupted mid-transaction can leave a session in the scratch database holding
    locks on its tables (MariaDB: metadata locks DROP DATABASE waits for). The drop ends it first."""
    from dbguard.drift.expected import scratch_database
    from dbguard.target import load_target, open_session

    db_url = request.getfixturevalue(url)
    ini = make_project(tmp_path, db_url, [("r1", "pass")])
    target = load_target(settings(ini, db_url, tmp_path))
    holder = None
    with open_session(target) as session:
        with scratch_database(target, session, None) as scratch:
            holder = sa.create_engine(scratch.url, poolclass=sa.pool.NullPool).connect()
            holder.exec_driver_sql("CREATE TABLE t (id int)")
            holder.commit()
            holder.exec_driver_sql("SELECT * FROM t").fetchall()  # in a transaction: its locks stay held
        assert scratch.name not in scratch_databases(db_url)
    with contextlib.suppress(Exception):
        holder.close()


def _sleepy_project(tmp_path: Path, url: str, marker: Path) -> Path:
    return make_project(tmp_path, url, [(
        "r1",
        ("op.create_table('t1', sa.Column('id', sa.Integer, primary_key=True))\n"
        f"open({str(marker)!r}, 'w').close()\n"
        "import time\n"
        "time.sleep(60)"),
    )])


@pytest.mark.slow
def test_the_scratch_database_is_dropped_after_sigint(db_url, tmp_path):
    marker = tmp_path / "replaying"
    ini = _sleepy_project(tmp_path, db_url, marker)
    config = Config(str(ini))
    config.set_main_option("sqlalchemy.url", db_url.replace("%", "%%"))
    command.stamp(config, "r1")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DBGUARD_")}
    proc = subprocess.Popen([*DBGUARD, "-c", str(ini), "--url", db_url, "drift", "--against", "migrations"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        wait_for(marker.exists, timeout=30, message="the replay never started")
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    name = next(line for line in err.splitlines() if "scratch database" in line).rsplit(" ", 1)[-1]
    if backend_of(db_url) == "sqlite":
        assert not Path(name).exists() and not Path(name).parent.exists()
    else:
        assert name.startswith(SCRATCH_PREFIX) and name not in scratch_databases(db_url)


def _waiting_replay_project(tmp_path: Path, url: str) -> tuple[Path, Path]:
    """A project stamped at r1 whose replay writes a file named by its pid in the folder returned,
    then waits while SCRATCH_TEST_WAIT is set (60 s at most)."""
    started = tmp_path / "started"
    started.mkdir()
    ini = make_project(tmp_path, url, [(
        "r1",
        ("op.create_table('t1', sa.Column('id', sa.Integer, primary_key=True))\n"
         "import os, time\n"
         f"open(os.path.join({str(started)!r}, str(os.getpid())), 'w').close()\n"
         "deadline = time.monotonic() + 60\n"
         "while os.environ.get('SCRATCH_TEST_WAIT') and time.monotonic() < deadline:\n"
         "    time.sleep(0.05)"),
    )])
    config = Config(str(ini))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    command.stamp(config, "r1")
    return ini, started


# Every replay sweeps its server's abandoned scratch databases: a test of the sweep uses a server of
# its own, where no other test's replay can be "the next replay".
_SWEPT = {"sqlite": "sqlite_url", "postgresql": "private_pg_url", "mysql": "private_mysql_url"}


@pytest.mark.slow
@pytest.mark.parametrize("engine", list(_SWEPT))
def test_a_scratch_database_left_by_a_killed_dbguard_is_dropped_by_the_next_replay(request, engine, tmp_path):
    """SIGKILL leaves no chance to drop anything: the next replay drops what the dead process left
    (its owner lock is free), never the scratch database of a replay still running elsewhere, nor
    a database or folder dbguard did not make with the same prefix."""
    db_url = request.getfixturevalue(_SWEPT[engine])
    url, backend = db_url, backend_of(db_url)
    ini, started = _waiting_replay_project(tmp_path, url)
    # SQLite's scratch databases are folders in the temporary directory: this test's own.
    temp = tmp_path / "temp"
    temp.mkdir()
    quote = '"' if backend == "postgresql" else "`"
    force = " WITH (FORCE)" if backend == "postgresql" else ""

    def databases(verb: str, names) -> None:
        admin = sa.create_engine(url, poolclass=sa.pool.NullPool, isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as conn:
                for name in names:
                    conn.exec_driver_sql(f"{verb} DATABASE {'IF EXISTS ' if verb == 'DROP' else ''}"
                                         f"{quote}{name}{quote}{force if verb == 'DROP' else ''}")
        finally:
            admin.dispose()

    def scratches() -> set[str]:
        if backend == "sqlite":
            return {entry.name for entry in temp.iterdir() if entry.name.startswith(SCRATCH_PREFIX)}
        return scratch_databases(url)

    def made_by(proc: subprocess.Popen) -> set[str]:
        # SQLite's folders are in this test's own temporary directory; a server is shared.
        found = scratches() - before
        return found if backend == "sqlite" else owned_by(found, proc.pid)

    # Not dbguard's: a server database named with the prefix, a folder without an owner file.
    not_ours = f"{SCRATCH_PREFIX}team" if backend != "sqlite" else f"{SCRATCH_PREFIX}abcd1234"
    if backend == "sqlite":
        (temp / not_ours).mkdir()
    else:
        databases("CREATE", [not_ours])
    before = scratches()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DBGUARD_")} | {"TMPDIR": str(temp)}
    cmd = [*DBGUARD, "-c", str(ini), "--url", url, "drift", "--against", "migrations"]
    procs: list[subprocess.Popen] = []

    def start(wait: bool) -> subprocess.Popen:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env={**env, "SCRATCH_TEST_WAIT": "1" if wait else ""})
        procs.append(proc)
        return proc

    def replaying(proc: subprocess.Popen) -> None:
        def started_or_failed() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"the replay exited {proc.returncode}: {proc.communicate()[1][-3000:]}")
            return (started / str(proc.pid)).exists()

        wait_for(started_or_failed, timeout=30, message=lambda: f"the replay never started: {_stuck(proc, url)}")

    try:
        killed = start(wait=True)
        replaying(killed)
        killed.send_signal(signal.SIGKILL)
        killed.wait(timeout=30)
        (left,) = made_by(killed)
        if backend != "sqlite":
            # The kernel freed the dead process's file locks; a server frees its locks once it
            # notices the closed connections.
            wait_for(lambda: let_go(url, left), timeout=30, message=f"the server kept {left}'s owner")

        running = start(wait=True)
        replaying(running)
        (own,) = made_by(running)
        assert left not in scratches()  # the dead one's is gone

        done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60, check=False)
        assert done.returncode == 1, done.stderr  # t1 was never created here: missing table
        # A live replay keeps its scratch database (another test's abandoned one may go meanwhile).
        assert own not in done.stderr and own in scratches()

        running.send_signal(signal.SIGINT)
        _, err = running.communicate(timeout=30)
        assert running.returncode == 130, err
        assert re.search(rf"dropped the scratch database (folder )?\S*{left}, left by a dbguard process that died",
                         err), err
        # Nothing of this test's is left; what is not dbguard's stays.
        assert not_ours in scratches()
        assert not any(made_by(proc) for proc in procs)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if backend != "sqlite":
            databases("DROP", {name for proc in procs for name in made_by(proc)} | {not_ours})


@pytest.mark.slow
@pytest.mark.parametrize("url", ["private_pg_url", "private_mysql_url"])
def test_an_abandoned_scratch_database_someone_is_using_is_left_alone(request, url, tmp_path):
    """The sweep ends nobody's session: a session inside an abandoned scratch database (a person
    looking at what the dead replay left) keeps it, and the next replay says it could not drop it."""
    url = request.getfixturevalue(url)
    backend = backend_of(url)
    ini, started = _waiting_replay_project(tmp_path, url)
    before = scratch_databases(url)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DBGUARD_")} | {"DBGUARD_LOCK_TIMEOUT_MS": "1000"}
    cmd = [*DBGUARD, "-c", str(ini), "--url", url, "drift", "--against", "migrations"]
    killed = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env={**env, "SCRATCH_TEST_WAIT": "1"})
    person = None
    try:
        wait_for(lambda: (started / str(killed.pid)).exists(), timeout=30, message="the replay never started")
        killed.kill()
        killed.wait(timeout=30)
        (left,) = owned_by(scratch_databases(url) - before, killed.pid)
        wait_for(lambda: let_go(url, left), timeout=30, message=f"the server kept {left}'s owner")
        person = sa.create_engine(sa.engine.make_url(url).set(database=left), poolclass=sa.pool.NullPool).connect()
        # Connected is enough on PostgreSQL; on MariaDB (whose DDL stayed: t1 exists) it holds t1's lock.
        probe = "SELECT 1" if backend == "postgresql" else "SELECT count(*) + 1 FROM t1"
        assert person.exec_driver_sql(probe).scalar() == 1

        done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60, check=False)
        assert done.returncode == 1, done.stderr
        assert f"left the abandoned scratch database {left}: a session is using it" in done.stderr
        assert left in scratch_databases(url)
        assert person.exec_driver_sql("SELECT 1").scalar() == 1  # not ended
        person.close()
        person = None

        done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60, check=False)
        assert f"dropped the scratch database {left}" in done.stderr
        assert left not in scratch_databases(url)
    finally:
        if person is not None:
            person.close()
        if killed.poll() is None:
            killed.kill()
            killed.wait()
        leftovers = owned_by(scratch_databases(url) - before, killed.pid)
        if leftovers:
            admin = sa.create_engine(url, poolclass=sa.pool.NullPool, isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                for name in leftovers:
                    quoted = f'"{name}" WITH (FORCE)' if backend == "postgresql" else f"`{name}`"
                    conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {quoted}")
            admin.dispose()


# The CLI and its formats -----------------------------------------------------------------------


def test_cli_exit_codes_and_ci_formats(db_url, tmp_path):
    import xml.etree.ElementTree as ET

    upgrade(EXAMPLE_INI, db_url, tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DBGUARD_")}
    base = [*DBGUARD, "-c", str(EXAMPLE_INI), "--url", db_url]

    def cli(*args):
        return subprocess.run([*base, *args], check=False, capture_output=True, text=True, env=env, cwd=tmp_path)

    assert cli("drift").returncode == 0
    on_table = " ON orders" if backend_of(db_url) == "mysql" else ""
    execute(db_url, "ALTER TABLE users ADD COLUMN nickname varchar(20)", f"DROP INDEX ix_orders_status_created{on_table}")
    out = cli("--format", "junit", "drift")
    assert out.returncode == 1
    suite = ET.fromstring(out.stdout).find("testsuite")
    assert suite.get("tests") == "3" and suite.get("failures") == "2"
    out = cli("--format", "github", "drift")
    assert out.returncode == 1
    # The workflow command syntax: ::level key=value,...::message, properties escaped (%, CR, LF, ':' and ',').
    command_line = re.compile(r"^::(error|warning|notice)( [a-z]+=([^,:\r\n%]|%25|%0D|%0A|%3A|%2C)*"
                              r"(,[a-z]+=([^,:\r\n%]|%25|%0D|%0A|%3A|%2C)*)*)?::[^\r\n]+$")
    lines = out.stdout.splitlines()
    assert len(lines) == 2 and all(command_line.match(line) for line in lines), lines
    out = cli("--format", "json", "drift")
    assert {d["kind"] for d in json.loads(out.stdout)["drifts"]} == {"extra_column", "missing_index"}
    out = cli("--format", "junit", "status")
    assert out.returncode == 2 and "--format junit is for drift" in out.stderr and "Traceback" not in out.stderr
    assert cli("drift", "--against", str(tmp_path / "missing.json")).returncode == 2


def test_pyproject_drift_ignore_reaches_the_cli(sqlite_url, tmp_path):
    ini = _example_copy(tmp_path)
    (ini.parent / "pyproject.toml").write_text("[tool.dbguard.drift]\nignore = ['hotfix']\n")
    upgrade(ini, sqlite_url, tmp_path)
    execute(sqlite_url, "CREATE TABLE hotfix (id int)", "CREATE TABLE other (id int)")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DBGUARD_")}
    out = subprocess.run([*DBGUARD, "-c", str(ini), "--url", sqlite_url, "--format", "json", "drift"],
                         check=False, capture_output=True, text=True, env=env, cwd=tmp_path)
    report = json.loads(out.stdout)
    assert out.returncode == 1 and report["ignored"] == 1, out.stdout + out.stderr
    assert [d["object"] for d in report["drifts"]] == ["other"]


# Pre-flight ------------------------------------------------------------------------------------


def _example_copy(tmp_path: Path) -> Path:
    target = tmp_path / "example"
    shutil.copytree(ROOT / "migrations_example", target, ignore=shutil.ignore_patterns("*.db", "__pycache__"))
    return target / "alembic.ini"


def test_env_py_failing_is_one_clear_line(db_url, tmp_path):
    """env.py is user code: its failure while dbguard reads the models (here while the catalog is
    read in a forked child) is one line naming it, exit 2, the server's own error not mistaken for it."""
    ini = _example_copy(tmp_path)
    if db_url.startswith("sqlite"):  # a read never creates the database file: it must be there
        sqlite3.connect(sa.engine.make_url(db_url).database).close()
    env_py = ini.parent / "env.py"
    env_py.write_text('raise RuntimeError("models unavailable\\nsecond line")\n' + env_py.read_text())
    env = {k: v for k, v in os.environ.items() if not k.startswith("DBGUARD_")}
    out = subprocess.run([*DBGUARD, "-c", str(ini), "--url", db_url, "drift"], capture_output=True, text=True,
                         env=env, cwd=tmp_path, check=False)
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    assert out.stderr.strip().splitlines() == [
        "dbguard: error: env.py failed while reading target_metadata: RuntimeError: models unavailable"], out.stderr


def test_a_target_metadata_list_holding_something_else_is_named_in_one_line(db_url, tmp_path):
    """dagster's env.py passes ``[SqlEventLogStorageMetadata, SqlRunStorage, SqlScheduleStorage]``: the
    second is a class that owns a MetaData, not one. drift names the item (exit 2, no "internal
    error"), and a run still succeeds, its post-flight saying why it could not compare."""
    ini = make_project(tmp_path, db_url, [
        ("r1", "op.create_table('t1', sa.Column('id', sa.Integer, primary_key=True))"),
    ])
    env_py = ini.parent / "migrations" / "env.py"
    env_py.write_text(env_py.read_text().replace("target_metadata = None", (
        "import sqlalchemy as _sa\n"
        "_events = _sa.MetaData()\n"
        "_sa.Table('t1', _events, _sa.Column('id', _sa.Integer, primary_key=True))\n"
        "class RunStorage:\n"
        "    metadata = _sa.MetaData()\n"
        "target_metadata = [_events, RunStorage]\n")))
    done = upgrade(ini, db_url, tmp_path)
    assert any("could not compare with the models" in w and "item 2 of env.py's target_metadata" in w
               for w in done.warnings), done.warnings
    env = {k: v for k, v in os.environ.items() if not k.startswith("DBGUARD_")}
    out = subprocess.run([*DBGUARD, "-c", str(ini), "--url", db_url, "drift"], capture_output=True, text=True,
                         env=env, cwd=tmp_path, check=False)
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    errors = [line for line in out.stderr.splitlines() if not line.startswith("INFO ")]  # env.py's logging
    assert errors == [(
        "dbguard: error: item 2 of env.py's target_metadata is the class env_py.RunStorage, not a sqlalchemy "
        "MetaData: nothing to compare with (alembic check fails on it too); pass the MetaData, or use "
        "--against migrations")], out.stderr


def test_a_table_two_metadata_declare_is_expected_once_or_named_when_they_disagree(db_url, tmp_path):
    """dagster's run and event-log MetaData both declare ``secondary_indexes`` (``alembic check`` refuses
    the list): declared alike it is compared once; declared differently the models contradict each
    other, and the table is named (exit 2) rather than compared with whichever came last."""
    ini = make_project(tmp_path, db_url, [
        ("r1", ("op.create_table('shared', sa.Column('id', sa.Integer, primary_key=True), sa.Column('n', sa.Integer))\n"
                "op.create_table('runs', sa.Column('id', sa.Integer, primary_key=True))")),
    ])
    env_py = ini.parent / "migrations" / "env.py"
    stock = env_py.read_text()

    def models(second_n: str) -> str:
        return ("import sqlalchemy as _sa\n"
                "_events, _runs = _sa.MetaData(), _sa.MetaData()\n"
                "_sa.Table('shared', _events, _sa.Column('id', _sa.Integer, primary_key=True),\n"
                "          _sa.Column('n', _sa.Integer))\n"
                "_sa.Table('shared', _runs, _sa.Column('id', _sa.Integer, primary_key=True),\n"
                f"          _sa.Column('n', _sa.{second_n}))\n"
                "_sa.Table('runs', _runs, _sa.Column('id', _sa.Integer, primary_key=True))\n"
                "target_metadata = [_events, _runs]\n")

    env_py.write_text(stock.replace("target_metadata = None", models("Integer")))
    upgrade(ini, db_url, tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DBGUARD_")}
    alike = subprocess.run([*DBGUARD, "-c", str(ini), "--url", db_url, "drift"], capture_output=True, text=True,
                           env=env, cwd=tmp_path, check=False)
    assert alike.returncode == 0 and "2 tables compared" in alike.stdout, alike.stdout + alike.stderr
    env_py.write_text(stock.replace("target_metadata = None", models("BigInteger")))
    for argv in (["drift"], ["--format", "json", "drift"]):
        differ = subprocess.run([*DBGUARD, "-c", str(ini), "--url", db_url, *argv], capture_output=True,
                                text=True, env=env, cwd=tmp_path, check=False)
        errors = [line for line in differ.stderr.splitlines() if not line.startswith("INFO ")]
        assert differ.returncode == 2 and len(errors) == 1, differ.stderr
        assert "declares table shared in two MetaData, differently" in errors[0], errors


def test_a_models_own_sql_construct_without_a_cache_key_draws_no_warning(db_url, tmp_path):
    """dagster's server default ``get_sql_current_timestamp()`` is a ``@compiles`` construct without
    ``inherit_cache``: SQLAlchemy warns when dbguard asks its cache key (create_all never asks)."""
    construct = (
        "import sqlalchemy as _sa\n"
        "from sqlalchemy.ext.compiler import compiles as _compiles\n"
        "class current_stamp(_sa.sql.expression.FunctionElement):\n"
        "    type = _sa.types.DateTime()\n"
        "@_compiles(current_stamp)\n"
        "def _current_stamp(element, compiler, **kw):\n"
        "    return 'CURRENT_TIMESTAMP'\n")
    table = ("_sa.Table('t1', {meta}, _sa.Column('id', _sa.Integer, primary_key=True),\n"
             "          _sa.Column('created', _sa.DateTime, server_default=current_stamp()))\n")
    ini = make_project(tmp_path, db_url, [("r1", "pass")])
    (ini.parent / "migrations" / "stamp_construct.py").write_text(construct)
    revision = next((ini.parent / "migrations" / "versions").glob("*.py"))
    folder = str(ini.parent / "migrations")
    revision.write_text(revision.read_text().replace("    pass", (
        f"    import sys; sys.path.insert(0, {folder!r})\n"
        "    from stamp_construct import _sa, current_stamp\n"
        "    op.create_table('t1', _sa.Column('id', _sa.Integer, primary_key=True),\n"
        "                    _sa.Column('created', _sa.DateTime, server_default=current_stamp()))\n"), 1))
    env_py = ini.parent / "migrations" / "env.py"
    env_py.write_text(env_py.read_text().replace("target_metadata = None", (
        f"import sys as _sys; _sys.path.insert(0, {folder!r})\n"
        "from stamp_construct import _sa, current_stamp\n"
        "target_metadata = _sa.MetaData()\n" + table.format(meta="target_metadata"))))
    env = {k: v for k, v in os.environ.items() if not k.startswith("DBGUARD_")}
    for argv in (["upgrade", "head"], ["drift"]):
        out = subprocess.run([*DBGUARD, "-c", str(ini), "--url", db_url, *argv], capture_output=True, text=True,
                             env=env, cwd=tmp_path, check=False)
        assert out.returncode == 0, out.stdout + out.stderr
        assert "Warning" not in out.stderr, out.stderr


def test_preflight_warns_or_refuses_on_drift(db_url, tmp_path):
    upgrade(EXAMPLE_INI, db_url, tmp_path)
    assert upgrade(EXAMPLE_INI, db_url, tmp_path).warnings == ()
    execute(db_url, "CREATE INDEX ix_hotfix ON users (name)")
    warned = upgrade(EXAMPLE_INI, db_url, tmp_path)
    assert len(warned.warnings) == 1 and "extra index users.ix_hotfix" in warned.warnings[0]
    refused = api.upgrade(settings(EXAMPLE_INI, db_url, tmp_path, on_drift="refuse"), "head")
    assert refused.exit_code == 3 and "extra index users.ix_hotfix" in refused.message
    refused = api.downgrade(settings(EXAMPLE_INI, db_url, tmp_path, on_drift="refuse"), "0003_last_login_status_index")
    assert refused.exit_code == 3 and "extra index users.ix_hotfix" in refused.message
    assert upgrade(EXAMPLE_INI, db_url, tmp_path, on_drift="ignore").warnings == ()
    assert upgrade(EXAMPLE_INI, db_url, tmp_path,
                   drift_ignore=("users.ix_hotfix",), on_drift="refuse").warnings == ()


def test_the_rollback_lane_shows_drift_and_never_refuses_on_it(db_url, tmp_path):
    upgrade(EXAMPLE_INI, db_url, tmp_path, "0003_last_login_status_index")
    upgrade(EXAMPLE_INI, db_url, tmp_path)
    execute(db_url, "CREATE INDEX ix_hotfix ON users (name)")
    prompts = []
    result = api.rollback(settings(EXAMPLE_INI, db_url, tmp_path, on_drift="refuse"),
                          confirm=lambda prompt: prompts.append(prompt) or prompt.token)
    assert result.exit_code == 0 and result.message.startswith("rolled back to 0003_last_login_status_index")
    assert any("extra index users.ix_hotfix" in w for w in result.warnings), result.warnings
    assert any(line.startswith("warning: schema drift") and "users.ix_hotfix" in line
               for line in prompts[0].blast_radius), prompts[0].blast_radius


def test_a_catalog_the_rollback_lane_cannot_read_never_holds_the_rollback(pg_url, tmp_path):
    """Deparsing a view waits for its lock: a session holding the view ACCESS EXCLUSIVE makes the
    pre-flight's catalog read time out. The rollback goes on and says why drift was not checked."""
    upgrade(EXAMPLE_INI, pg_url, tmp_path, "0003_last_login_status_index")
    upgrade(EXAMPLE_INI, pg_url, tmp_path)
    execute(pg_url, "CREATE VIEW active_users AS SELECT id FROM users")
    holder = sa.create_engine(pg_url, poolclass=sa.pool.NullPool).connect()
    try:
        holder.exec_driver_sql("LOCK TABLE active_users IN ACCESS EXCLUSIVE MODE")
        result = api.rollback(settings(EXAMPLE_INI, pg_url, tmp_path, lock_timeout_ms=300, on_drift="refuse"),
                              confirm=lambda prompt: prompt.token)
        assert result.exit_code == 0 and result.message.startswith("rolled back to 0003_last_login_status_index")
        assert any(w.startswith("could not check for drift before the rollback:") and "lock timeout" in w
                   for w in result.warnings), result.warnings
        # The end check could not read the schema either: it claims nothing about it, and says so.
        assert result.schema_check == "unchecked"
        assert result.schema_note.startswith("schema not checked at 0003_last_login_status_index: the catalog "
                                             "waited too long for a lock")
        assert not api.status(settings(EXAMPLE_INI, pg_url, tmp_path)).schema_verified
        assert holder.exec_driver_sql("SELECT 1").scalar() == 1  # not a blocker of the rollback: not ended
    finally:
        holder.close()


def test_drift_says_in_one_line_that_the_catalog_waited_too_long_for_a_lock(pg_url, tmp_path):
    """In process and in the CLI's forked child alike: one wait of lock_timeout_ms, exit 2."""
    from dbguard.errors import DbguardError

    upgrade(EXAMPLE_INI, pg_url, tmp_path)
    execute(pg_url, "CREATE VIEW active_users AS SELECT id FROM users")
    holder = sa.create_engine(pg_url, poolclass=sa.pool.NullPool).connect()
    try:
        holder.exec_driver_sql("LOCK TABLE active_users IN ACCESS EXCLUSIVE MODE")
        for against in ("models", "migrations"):
            with pytest.raises(DbguardError, match="^could not read the schema: the catalog waited too long for a lock"):
                api.drift(settings(EXAMPLE_INI, pg_url, tmp_path, lock_timeout_ms=300), against=against)
        env = {k: v for k, v in os.environ.items() if not k.startswith("DBGUARD_")} | {"DBGUARD_LOCK_TIMEOUT_MS": "300"}
        out = subprocess.run([*DBGUARD, "-c", str(EXAMPLE_INI), "--url", pg_url, "drift"], capture_output=True,
                             text=True, env=env, timeout=60, check=False)
        assert out.returncode == 2, out.stderr
        # (Above it, env.py's own logging, as the example's alembic.ini configures it.)
        last = out.stderr.strip().splitlines()[-1]
        assert last.startswith("dbguard: error: could not read the schema: the catalog waited too long for a lock")
        assert "Traceback" not in out.stderr
    finally:
        holder.close()
    assert not owned_by(scratch_databases(pg_url), os.getpid())


def test_a_catalog_the_upgrade_cannot_read_is_the_drift_policys_business(pg_url, tmp_path):
    """warn: the upgrade goes on and says drift was not checked; refuse: it refuses (exit 3)."""
    upgrade(EXAMPLE_INI, pg_url, tmp_path, "0003_last_login_status_index")
    execute(pg_url, "CREATE VIEW active_users AS SELECT id FROM users")
    holder = sa.create_engine(pg_url, poolclass=sa.pool.NullPool).connect()
    try:
        holder.exec_driver_sql("LOCK TABLE active_users IN ACCESS EXCLUSIVE MODE")
        strict = settings(EXAMPLE_INI, pg_url, tmp_path, lock_timeout_ms=300, on_drift="refuse")
        refused = api.upgrade(strict, "head")
        assert refused.exit_code == 3, refused
        assert ("could not check for drift before the upgrade: the catalog waited too long for a lock"
                in refused.message)
        warned = api.upgrade(settings(EXAMPLE_INI, pg_url, tmp_path, lock_timeout_ms=300), "head")
        assert warned.exit_code == 0 and warned.to_revision == "0004_audit_log_order_note", warned
        assert any(w.startswith("could not check for drift before the upgrade:") for w in warned.warnings)
    finally:
        holder.close()


@pytest.mark.parametrize("url", ["mysql_url"])
def test_the_rollback_lane_shows_what_a_half_applied_revision_left(request, url, tmp_path):
    url = request.getfixturevalue(url)
    ini = _half_applied_project(tmp_path, url)
    assert api.upgrade(settings(ini, url, tmp_path), "r1").exit_code == 0
    assert api.upgrade(settings(ini, url, tmp_path), "head").exit_code == 5
    prompts = []
    result = api.rollback(settings(ini, url, tmp_path), confirm=lambda prompt: prompts.append(prompt) or prompt.token)
    assert result.exit_code == 0, result
    shown = [line for line in prompts[0].blast_radius if line.startswith("warning: ")]
    assert len(shown) == 1 and "extra table t2a" in shown[0] and "extra column t1.age" in shown[0], shown
    assert not any("moved outside dbguard" in w for w in result.warnings), result.warnings


def test_preflight_sees_a_changed_revision_file_and_a_stamp_behind_its_back(db_url, tmp_path):
    ini = _example_copy(tmp_path)
    upgrade(ini, db_url, tmp_path)
    path = ini.parent / "versions" / "0002_orders.py"
    path.write_text(path.read_text() + "\n# edited after it ran\n")
    warned = upgrade(ini, db_url, tmp_path)
    assert any("revision 0002_orders changed since it was applied" in w for w in warned.warnings)
    refused = api.upgrade(settings(ini, db_url, tmp_path, on_drift="refuse"), "head")
    assert refused.exit_code == 3 and "0002_orders changed" in refused.message

    ini = _example_copy(tmp_path / "second")
    config = Config(str(ini))
    config.set_main_option("sqlalchemy.url", db_url.replace("%", "%%"))
    command.stamp(config, "0003_last_login_status_index", purge=True)
    refused = api.upgrade(settings(ini, db_url, tmp_path, on_drift="refuse"), "head")
    assert refused.exit_code == 3 and "alembic_version was moved outside dbguard" in refused.message


def test_post_flight_records_the_schema_and_compares_with_the_models(db_url, tmp_path):
    ini = _example_copy(tmp_path)
    upgrade(ini, db_url, tmp_path, "0003_last_login_status_index")
    models = ini.parent / "models.py"
    models.write_text(models.read_text().replace('sa.Column("action", sa.String(50)',
                                                 'sa.Column("action", sa.String(80)'))
    done = upgrade(ini, db_url, tmp_path)
    assert any("differs from the models" in w and "audit_log.action" in w for w in done.warnings)
    engine = sa.create_engine(db_url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT revisions, drift_json FROM dbguard_schemas ORDER BY id")).all()
    finally:
        engine.dispose()
    # The references: the empty database dbguard first found (its first run's pre-flight), then each
    # run's end at revisions never seen before, with what the models said beside it.
    assert [r[0] for r in rows] == ["base", "0003_last_login_status_index", "0004_audit_log_order_note"]
    assert rows[1][1] is None and "changed_column_type" in rows[2][1]


def test_the_post_flight_compares_with_the_models_the_run_saw_without_running_env_py_again(db_url, tmp_path):
    ini = make_project(tmp_path, db_url, [
        ("r1", "op.create_table('t1', sa.Column('id', sa.Integer, primary_key=True), sa.Column('n', sa.Integer))"),
    ])
    env_py = ini.parent / "migrations" / "env.py"
    runs = tmp_path / "env_runs.txt"
    env_py.write_text(env_py.read_text().replace("target_metadata = None", (
        "import sqlalchemy as _sa\n"
        "target_metadata = _sa.MetaData()\n"
        "_sa.Table('t1', target_metadata, _sa.Column('id', _sa.Integer, primary_key=True),\n"
        "          _sa.Column('n', _sa.BigInteger))\n"
        f"with open({str(runs)!r}, 'a') as _f:\n"
        "    _f.write(('offline' if context.is_offline_mode() else 'online') + '\\n')\n")))
    done = upgrade(ini, db_url, tmp_path)
    # The models say t1.n is a BIGINT: the post-flight says so, from the metadata of the run itself.
    assert any("differs from the models" in w and "t1.n" in w for w in done.warnings), done.warnings
    assert runs.read_text().split().count("online") == 1, runs.read_text()


def test_preflight_does_not_import_sqlglot_when_nothing_differs(db_url, tmp_path):
    upgrade(EXAMPLE_INI, db_url, tmp_path)
    code = ("import sys; from dbguard import api; from dbguard.settings import load_settings;"
            f"r = api.upgrade(load_settings({{'config_path': {str(EXAMPLE_INI)!r}, 'url': {db_url!r}}}, environ={{}}));"
            "assert r.exit_code == 0 and not r.warnings, r; print('sqlglot' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path,
                         timeout=120)
    assert out.stdout.strip().splitlines()[-1] == "False", out.stderr


def test_drift_against_a_snapshot_neither_runs_env_py_nor_imports_sqlglot(db_url, tmp_path):
    upgrade(EXAMPLE_INI, db_url, tmp_path)
    snap = tmp_path / "schema.json"
    api.snapshot(settings(EXAMPLE_INI, db_url, tmp_path), output=str(snap), live=True)
    code = ("import sys; from dbguard import api; from dbguard.settings import load_settings;"
            f"r = api.drift(load_settings({{'config_path': {str(EXAMPLE_INI)!r}, 'url': {db_url!r}}}, environ={{}}),"
            f" against={str(snap)!r});"
            "assert r.exit_code == 0 and not r.drifts, r; print('migrations_example_models' in sys.modules, 'sqlglot' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path)
    assert out.stdout.strip().splitlines()[-1] == "False False", out.stderr
