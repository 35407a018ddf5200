"""The env.py and schema patterns of real projects (tests/env_patterns/, one folder each) run under
dbguard as under plain Alembic, on real databases: an env.py that takes the connection attribute for
an Engine or opens its own from ``.engine``, models that only the revision files import, brownfield
chains replayed from each kind of baseline, Alembic's pyproject template; the multidb template is
refused in one line."""

from __future__ import annotations

import inspect
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command as alembic_command
from alembic.config import Config
from sqlalchemy.engine import make_url

from tests.dbs import backend_of, url_string
from tests.guardrun import connect, describe, json_out, run_dbguard, table_names, versions
from tests.projects import make_project

PATTERNS = Path(__file__).parent / "env_patterns"


def pattern_project(tmp_path: Path, pattern: str, url: str, versions_from: str | None = None) -> Path:
    """The pattern's script directory, unchanged, under an alembic.ini of the test's own."""
    root = tmp_path / "project"
    shutil.copytree(PATTERNS / pattern, root / "migrations")
    if versions_from is not None:
        shutil.copytree(PATTERNS / versions_from / "versions", root / "migrations" / "versions")
    ini = root / "alembic.ini"
    ini.write_text(f"[alembic]\nscript_location = %(here)s/migrations\n"
                   f"sqlalchemy.url = {url_string(url).replace('%', '%%')}\n", encoding="utf-8")
    return ini


def plain_alembic(ini: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "alembic", "-c", str(ini), *args], check=False,
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)


LOCK_TIMEOUT = {"DBGUARD_LOCK_TIMEOUT_MS": "3000"}
SEEN_LOCK_WAIT = {"postgresql": "3s", "mysql": "3", "sqlite": "none"}


@pytest.mark.parametrize("pattern", ["engine_attribute", "engine_of_connection"])
def test_env_py_that_opens_its_own_connection_runs_every_command(pattern: str, db_url: str, tmp_path: Path) -> None:
    ini = pattern_project(tmp_path, pattern, db_url,
                          versions_from="engine_attribute" if pattern != "engine_attribute" else None)
    up = run_dbguard(ini, db_url, "upgrade", "head", env=LOCK_TIMEOUT)
    assert up.returncode == 0, describe(up)
    assert versions(db_url) == ["p2_items"]
    # The bounded lock wait reached the connection env.py opened itself.
    with connect(db_url) as conn:
        seen = conn.execute(sa.text("SELECT lock_wait FROM settings_seen")).scalar()
    assert seen == SEEN_LOCK_WAIT[backend_of(db_url)]

    down = run_dbguard(ini, db_url, "downgrade", "-1")
    assert down.returncode == 0, describe(down)
    assert versions(db_url) == ["p1_settings_seen"] and "items" not in table_names(db_url)
    replayed = run_dbguard(ini, db_url, "drift", "--against", "migrations")
    assert replayed.returncode == 0, describe(replayed)
    status = run_dbguard(ini, db_url, "--format", "json", "status")
    assert status.returncode == 0 and json_out(status)["state"] == "HEALTHY", describe(status)


def test_models_imported_only_by_the_revisions(db_url: str, tmp_path: Path) -> None:
    ini = pattern_project(tmp_path, "models_in_revisions", db_url)
    seen = tmp_path / "seen.txt"
    assert run_dbguard(ini, db_url, "upgrade", "m1_accounts").returncode == 0
    up = run_dbguard(ini, db_url, "upgrade", "head", env={"PATTERN_SEEN_FILE": str(seen)})
    assert up.returncode == 0, describe(up)
    # env.py's migrating run saw no model module, as under plain Alembic (the risk plan's offline
    # render runs in a forked child of its own), and the render ran env.py once for the applied and
    # the pending revisions together (a second run in one process finds the first one's imports).
    lines = seen.read_text().splitlines()
    assert "offline=False tables_imported=False" in lines and "offline=False tables_imported=True" not in lines
    if backend_of(db_url) != "sqlite":  # the risk rules (and their render) are for PostgreSQL and MySQL
        assert lines.count("offline=True tables_imported=False") == 1 and len(lines) == 2, lines
    plain_seen = tmp_path / "plain.txt"
    plain = subprocess.run([sys.executable, "-m", "alembic", "-c", str(ini), "current"], check=False,
                           capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
                           env={**os.environ, "PATTERN_SEEN_FILE": str(plain_seen)})
    assert plain.returncode == 0, plain.stderr
    assert plain_seen.read_text().splitlines() == ["offline=False tables_imported=False"]

    # The models the revisions import are seen: the one change made to the database is all that differs.
    with connect(db_url) as conn:
        conn.execute(sa.text("ALTER TABLE invoices ADD COLUMN memo VARCHAR(20)"))
    found = run_dbguard(ini, db_url, "--format", "json", "drift", "--against", "models")
    assert found.returncode == 1, describe(found)
    assert [(d["kind"], d["object"]) for d in json_out(found)["drifts"]] == [("extra_column", "invoices.memo")]


# Brownfield chains ------------------------------------------------------------------------------


def _legacy_database(url: str) -> None:
    """The database as the project's first release made it: create_all of its legacy models."""
    sys.path.insert(0, str(PATTERNS / "brownfield"))
    try:
        import legacy_models
    finally:
        sys.path.remove(str(PATTERNS / "brownfield"))
    engine = sa.create_engine(sync(url))
    try:
        with engine.begin() as conn:
            legacy_models.metadata.create_all(conn)
    finally:
        engine.dispose()


def sync(url: str) -> str:
    from tests.guardrun import sync_url

    return sync_url(url)


def _dump(url: str, path: Path) -> None:
    target = sa.engine.make_url(sync(url))
    kind = backend_of(url)
    if kind == "postgresql":
        out = subprocess.run(["pg_dump", "--schema-only", "-h", target.host or "127.0.0.1", "-p",
                              str(target.port or 5432), "-U", target.username or "postgres", target.database or ""],
                             check=True, capture_output=True, text=True, timeout=60).stdout
    elif kind == "mysql":
        out = subprocess.run(["mariadb-dump", "--no-data", "-h", target.host or "127.0.0.1", "-P",
                              str(target.port or 3306), "-u", target.username or "root", target.database or ""],
                             check=True, capture_output=True, text=True, timeout=60).stdout
    else:
        with sqlite3.connect(target.database or "") as conn:
            out = "".join(f"{sql};\n" for (sql,) in conn.execute(
                "SELECT sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY rowid"))
    path.write_text(out, encoding="utf-8")


def _project_database(ini: Path) -> None:
    """The project's own upgrade of its legacy database, with plain Alembic."""
    alembic_command.upgrade(Config(str(ini)), "head")


BASELINES = ["object", "callable", "sql", "snapshot", "head"]


@pytest.mark.parametrize("kind", BASELINES)
def test_a_brownfield_chain_replays_from_its_baseline(kind: str, db_url: str, tmp_path: Path) -> None:
    ini = pattern_project(tmp_path, "brownfield", db_url)
    _legacy_database(db_url)
    args: list[str] = []
    env: dict[str, str] = {"PYTHONPATH": str(ini.parent / "migrations")}
    with_baseline = env
    if kind == "object":
        with_baseline = {**env, "DBGUARD_REPLAY_BASELINE": "legacy_models:metadata"}  # a setting, not a flag
    elif kind == "callable":
        args = ["--baseline", "legacy_models:create"]
    elif kind == "sql":
        _dump(db_url, tmp_path / "legacy.sql")
        args = ["--baseline", str(tmp_path / "legacy.sql")]
    elif kind == "snapshot":
        live = run_dbguard(ini, db_url, "snapshot", "--live", "-o", str(tmp_path / "legacy.json"))
        assert live.returncode == 0, describe(live)
        args = ["--baseline", str(tmp_path / "legacy.json")]
    else:  # create_all of today's models stands for head: nothing is replayed after it
        args = ["--baseline", "current_models:metadata", "--baseline-revision", "head"]
    _project_database(ini)

    if kind == "object":  # the same for every kind: asked once per engine
        without = run_dbguard(ini, db_url, "drift", "--against", "migrations", env=env)
        assert without.returncode == 2 and "brownfield" in without.stdout + without.stderr, describe(without)
        assert "--baseline" in without.stdout + without.stderr

    # One replay shows both: the project's database differs from the replay by the one change made
    # to it afterwards, and by nothing else.
    with connect(db_url) as conn:
        conn.execute(sa.text("ALTER TABLE orders ADD COLUMN note VARCHAR(20)"))
    found = run_dbguard(ini, db_url, "--format", "json", "drift", "--against", "migrations", *args,
                        env=with_baseline)
    assert found.returncode == 1, describe(found)
    assert [(d["kind"], d["object"]) for d in json_out(found)["drifts"]] == [("extra_column", "orders.note")]


def test_a_snapshot_replays_from_a_baseline_and_a_dump_with_a_meta_command_is_refused(sqlite_url: str,
                                                                                   tmp_path: Path) -> None:
    ini = pattern_project(tmp_path, "brownfield", sqlite_url)
    env = {"PYTHONPATH": str(ini.parent / "migrations")}
    sqlite3.connect(sa.engine.make_url(sqlite_url).database or "").close()  # snapshot reads no database it must create
    out = tmp_path / "head.json"
    snap = run_dbguard(ini, sqlite_url, "snapshot", "head", "-o", str(out), "--baseline", "legacy_models:metadata",
                       env=env)
    assert snap.returncode == 0, describe(snap)
    assert '"orders"' in out.read_text() and '"email"' in out.read_text()

    dump = tmp_path / "bad.sql"
    dump.write_text("CREATE TABLE users (id INTEGER PRIMARY KEY, name VARCHAR(80) NOT NULL);\n\\connect other\n")
    refused = run_dbguard(ini, sqlite_url, "snapshot", "head", "--baseline", str(dump), env=env)
    assert refused.returncode == 2, describe(refused)
    assert "line 2" in refused.stderr and "meta-command" in refused.stderr


# Stock templates ------------------------------------------------------------------------------------

CREATE_T = "op.create_table('t', sa.Column('id', sa.Integer, primary_key=True))"


def test_the_multidb_template_is_refused_in_one_line(sqlite_url: str, tmp_path: Path) -> None:
    ini = make_project(tmp_path, sqlite_url, [("r1", CREATE_T, "op.drop_table('t')")], template="multidb")
    result = run_dbguard(ini, sqlite_url, "upgrade", "head")
    assert result.returncode == 2, describe(result)
    assert "several databases" in result.stderr and len(result.stderr.strip().splitlines()) == 1


@pytest.mark.skipif("toml_file" not in inspect.signature(Config).parameters,
                    reason="Alembic before 1.16 has no pyproject templates")
def test_the_pyproject_template_unchanged(db_url: str, tmp_path: Path) -> None:
    ini = make_project(tmp_path, db_url, [("r1", CREATE_T, "op.drop_table('t')")], template="pyproject")
    up = run_dbguard(ini, db_url, "upgrade", "head")
    assert up.returncode == 0, describe(up)
    assert versions(db_url) == ["r1"]
    status = run_dbguard(ini, db_url, "--format", "json", "status")
    assert status.returncode == 0 and json_out(status)["state"] == "HEALTHY", describe(status)


def test_env_py_that_sets_its_version_folders_when_it_runs(db_url: str, tmp_path: Path) -> None:
    """alembic.ini names no version folder with revisions in it; env.py sets
    ``context.script.version_locations`` to its dialect's folder. Alembic reads the revisions after
    env.py began; dbguard plans before its run, and plans the revisions of the folder env.py picks."""
    ini = pattern_project(tmp_path, "versions_per_dialect", db_url)
    family = backend_of(db_url)
    for step, expected in (("upgrade", [f"{family}_2_items_name"]), ("downgrade", [])):
        plain = plain_alembic(ini, step, "head" if step == "upgrade" else "base")
        assert plain.returncode == 0, plain.stderr
        assert versions(db_url) == expected
    up = run_dbguard(ini, db_url, "upgrade", "head")
    assert up.returncode == 0, describe(up)
    assert versions(db_url) == [f"{family}_2_items_name"]
    down = run_dbguard(ini, db_url, "downgrade", "-1")
    assert down.returncode == 0, describe(down)
    assert versions(db_url) == [f"{family}_1_items"]
    if family != "sqlite":  # the risk plan judges PostgreSQL and MySQL/MariaDB
        plan = run_dbguard(ini, db_url, "plan")
        assert plan.returncode == 0 and f"{family}_2_items_name" in plan.stdout, describe(plan)
    assert run_dbguard(ini, db_url, "upgrade", "head").returncode == 0
    replayed = run_dbguard(ini, db_url, "drift", "--against", "migrations")
    assert replayed.returncode == 0, describe(replayed)
    status = run_dbguard(ini, db_url, "--format", "json", "status")
    assert json_out(status)["state"] == "HEALTHY", describe(status)


def test_env_py_that_fails_before_it_sets_its_version_folders(sqlite_url: str, tmp_path: Path) -> None:
    """Such an env.py that fails (a host program's event loop it expects, say) is one line, exit 2, as
    under plain Alembic, and nothing is written."""
    ini = pattern_project(tmp_path, "versions_per_dialect", sqlite_url)
    env_py = ini.parent / "migrations" / "env.py"
    env_py.write_text("raise RuntimeError('needs its host program')\n" + env_py.read_text(), encoding="utf-8")
    up = run_dbguard(ini, sqlite_url, "upgrade", "head")
    assert up.returncode == 2, describe(up)
    assert "version_locations" in up.stderr and "needs its host program" in up.stderr, describe(up)
    assert len(up.stderr.strip().splitlines()) == 1 and "Traceback" not in up.stderr


def test_env_py_that_sets_its_version_folders_plans_offline_without_a_database(db_url: str, tmp_path: Path) -> None:
    """``plan --offline`` touches no database: env.py's version folders are read from its offline
    branch, as ``alembic upgrade --sql`` runs it, so a URL whose server cannot be reached is no matter."""
    family = backend_of(db_url)
    if family == "sqlite":
        pytest.skip("the risk plan judges PostgreSQL and MySQL/MariaDB")
    unreachable = url_string(make_url(db_url).set(host="127.0.0.1", port=1))
    ini = pattern_project(tmp_path, "versions_per_dialect", unreachable)
    plan = run_dbguard(ini, unreachable, "plan", "--offline", "--from", f"{family}_1_items")
    # 1 on PostgreSQL: its CREATE INDEX on a table of unknown size is a finding; 2 would be "could not plan".
    assert plan.returncode in (0, 1), describe(plan)
    assert f"{family}_2_items_name" in plan.stdout, describe(plan)


def test_env_py_include_hooks_leave_objects_out_of_drift_as_alembic_check_does(db_url: str, tmp_path: Path) -> None:
    ini = pattern_project(tmp_path, "include_filters", db_url)
    assert run_dbguard(ini, db_url, "upgrade", "f1_items").returncode == 0
    with connect(db_url) as conn:
        conn.execute(sa.text("CREATE INDEX ix_manual_items_id_name ON items (id, name)"))
        conn.execute(sa.text("CREATE TABLE othertool_jobs (id INTEGER PRIMARY KEY)"))
        conn.execute(sa.text("CREATE TABLE legacy_audit (id INTEGER PRIMARY KEY)"))
    # The post-flight's comparison with the models leaves them out too: no warning about them.
    up = run_dbguard(ini, db_url, "--format", "json", "upgrade", "head")
    assert up.returncode == 0, describe(up)
    assert not any(word in " ".join(json_out(up)["warnings"]) for word in ("ix_manual", "othertool", "legacy")), up.stdout
    binary = {"postgresql": "BYTEA", "mysql": "BLOB", "sqlite": "BLOB"}[make_url(db_url).get_backend_name()]
    with connect(db_url) as conn:
        # Drift the hooks do not cover, on an object they are asked about: still reported.
        conn.execute(sa.text("ALTER TABLE items ADD COLUMN memo VARCHAR(20)"))
        # What the hooks judge by its reflected type and columns: left out, as alembic check does.
        conn.execute(sa.text(f"ALTER TABLE items ADD COLUMN attachment {binary}"))
        conn.execute(sa.text("CREATE INDEX dba_items_note ON items (note)"))
    found = run_dbguard(ini, db_url, "--format", "json", "drift", "--against", "models")
    assert found.returncode == 1, describe(found)
    report = json_out(found)
    assert [(d["kind"], d["object"]) for d in report["drifts"]] == [("extra_column", "items.memo")], report
    assert report["ignored"] == 5, report
    # Plain alembic check leaves out the same objects: only the column is a difference to it.
    check = plain_alembic(ini, "check")
    assert check.returncode != 0 and "memo" in check.stdout + check.stderr
    assert not any(word in check.stdout + check.stderr
                   for word in ("ix_manual", "othertool", "legacy_audit", "attachment", "dba_items_note"))


def test_env_py_that_keeps_its_version_table_in_a_schema_of_its_own(pg_url: str, tmp_path: Path) -> None:
    """Alembic finds the version table in the schema env.py names; dbguard reads its own connection's
    schema. Apart, each would see another revision: dbguard refuses before running anything (the run
    used to migrate, then fail its end check and open the breaker). With dbguard's connection in that
    schema (its search_path), every command works, and the models' tables named in it are compared."""
    ini = pattern_project(tmp_path, "version_table_schema", pg_url)
    app = {"APP_SCHEMA": "app"}
    plain = subprocess.run([sys.executable, "-m", "alembic", "-c", str(ini), "upgrade", "s1_items"], check=False,
                           capture_output=True, text=True, timeout=120, env={**os.environ, **app})
    assert plain.returncode == 0, plain.stderr

    refused = run_dbguard(ini, pg_url, "upgrade", "head", env=app)
    assert refused.returncode == 2, describe(refused)
    assert "app.alembic_version" in refused.stdout and "search_path" in refused.stdout, describe(refused)
    with connect(pg_url) as conn:
        assert conn.execute(sa.text("SELECT version_num FROM app.alembic_version")).scalar() == "s1_items"
        assert conn.execute(sa.text("SELECT to_regclass('app.items')")).scalar() is not None
    status = run_dbguard(ini, pg_url, "--format", "json", "status", env=app)
    assert json_out(status)["state"] == "HEALTHY", describe(status)  # refused, not failed: the breaker is shut
    # The database looks empty to dbguard in its schema: status says where the version table is.
    assert json_out(status)["revisions"] == [] and any("schema app has one" in n for n in json_out(status)["notes"]), \
        describe(status)
    # And drift does not say "no drift" of models whose every table is in that other schema.
    unread = run_dbguard(ini, pg_url, "drift", "--against", "models", env=app)
    assert unread.returncode == 2 and "schema app" in unread.stderr, describe(unread)

    inside = {**app, "PGOPTIONS": "-c search_path=app"}
    up = run_dbguard(ini, pg_url, "upgrade", "head", env=inside)
    assert up.returncode == 0, describe(up)
    status = run_dbguard(ini, pg_url, "--format", "json", "status", env=inside)
    assert (json_out(status)["state"], json_out(status)["revisions"]) == ("HEALTHY", ["s2_items_note"]), describe(status)
    models = run_dbguard(ini, pg_url, "--format", "json", "drift", "--against", "models", env=inside)
    assert models.returncode == 0 and json_out(models)["tables_compared"] >= 1, describe(models)
    with connect(pg_url) as conn:
        conn.execute(sa.text("ALTER TABLE app.items ADD COLUMN memo VARCHAR(20)"))
    found = run_dbguard(ini, pg_url, "--format", "json", "drift", "--against", "models", env=inside)
    assert [(d["kind"], d["object"]) for d in json_out(found)["drifts"]] == [("extra_column", "items.memo")], \
        describe(found)
    with connect(pg_url) as conn:
        conn.execute(sa.text("ALTER TABLE app.items DROP COLUMN memo"))
    replayed = run_dbguard(ini, pg_url, "drift", "--against", "migrations", env=inside)
    assert replayed.returncode == 0 and "no drift" in replayed.stdout, describe(replayed)
    down = run_dbguard(ini, pg_url, "downgrade", "-1", env=inside)
    assert down.returncode == 0, describe(down)
    with connect(pg_url) as conn:
        assert conn.execute(sa.text("SELECT version_num FROM app.alembic_version")).scalar() == "s1_items"


def test_machine_formats_keep_stdout_for_the_document_alone(db_url: str, tmp_path: Path) -> None:
    """env.py's logging handler on stdout, a write to file descriptor 1 and the migrations' print():
    Alembic puts them on stdout, where a ``--format json`` consumer expects dbguard's document alone.
    They go to stderr instead, in every command that runs env.py; text keeps Alembic's stdout."""
    ini = pattern_project(tmp_path, "stdout_writers", db_url)
    plain = plain_alembic(ini, "upgrade", "s1_items")
    assert plain.returncode == 0, plain.stderr
    # The pattern: all three land on stdout under plain Alembic.
    assert all(mark in plain.stdout for mark in ("PROJECT-LOG", "PROJECT-FD1", "PROJECT-PRINT")), plain.stdout

    def document(*args: str, code: int = 0) -> Any:
        proc = run_dbguard(ini, db_url, "--format", "json", *args)
        assert proc.returncode == code, describe(proc)
        return json_out(proc), proc.stderr

    if backend_of(db_url) != "sqlite":  # the plan renders the pending revision: env.py runs offline
        plan, _ = document("plan")
        assert [r["revision"] for r in plan["revisions"]] == ["s2_items_note"], plan
    up, stderr = document("upgrade", "head")
    assert up["status"] == "succeeded", up
    assert all(mark in stderr for mark in ("PROJECT-LOG", "PROJECT-FD1", "PROJECT-PRINT")), stderr
    down, stderr = document("downgrade", "-1")
    assert down["status"] == "succeeded" and "PROJECT-PRINT" in stderr, down
    again = run_dbguard(ini, db_url, "upgrade", "head")  # text: stdout as Alembic has it
    assert again.returncode == 0 and "PROJECT-PRINT" in again.stdout, describe(again)
    status, _ = document("status")
    assert status["state"] == "HEALTHY", status
    for against in ("models", "migrations"):
        found, _ = document("drift", "--against", against)
        assert found["drifts"] == [], found
    annotations = run_dbguard(ini, db_url, "--format", "github", "drift", "--against", "migrations")
    assert annotations.returncode == 0, describe(annotations)
    assert "PROJECT-" not in annotations.stdout and "PROJECT-PRINT" in annotations.stderr, describe(annotations)
