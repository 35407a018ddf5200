"""Refuse cleanly before touching anything: the run lock whatever the prefix, connection set-up,
input, privileges and odd ledgers. Each case is reproduced on the engines where it applies."""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import alembic
import pytest
import sqlalchemy as sa

from dbguard import api
from dbguard.db.connect import _connect_args
from dbguard.db.runlock import FileRunLock
from dbguard.dialects.mysql import run_lock_name
from dbguard.dialects.postgresql import advisory_key
from tests.dbs import backend_of
from tests.faultkit import ALL, R1, SERVERS, finish, project, settings, stopped
from tests.guardrun import (
    DBGUARD,
    cli_env,
    connect,
    database_of,
    mysql_user,
    pg_role,
    run_dbguard,
    start_dbguard,
    table_names,
    versions,
    with_credentials,
)
from tests.projects import make_project, wait_for

integration = pytest.mark.integration



# One run lock per database --------------------------------------------------------------------------------


@integration
@pytest.mark.parametrize("fixture", ALL)
def test_deployers_with_different_table_prefixes_exclude_each_other(fixture: str, request: pytest.FixtureRequest,
                                                                    tmp_path: Path) -> None:
    url = request.getfixturevalue(fixture)
    ini, _ = project(tmp_path, url, sleep=False)
    proc = start_dbguard(ini, url, "upgrade", "head", env={"DBGUARD_TEST_PAUSE_AT": "before-step:r2"})
    try:
        wait_for(lambda: stopped(proc.pid), timeout=60, message="the run never reached the point")
        other = api.upgrade(settings(ini, url, table_prefix="other_"), "head")
        assert other.exit_code == 4, other
        assert "busy" in other.message
        proc.send_signal(signal.SIGCONT)
        code, output = finish(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert code == 0, output
    assert versions(url) == ["r2"]


def _hold_prefix_lock(url: str, conn: sa.Connection | None, tmp_path: Path) -> FileRunLock | None:
    """Take the lock an older dbguard took, keyed by table_prefix, as that version would."""
    if backend_of(url) == "sqlite":
        lock = FileRunLock(Path(f"{sa.engine.make_url(url).database}.dbguard_lock"))
        assert lock.try_acquire()
        return lock
    assert conn is not None
    if backend_of(url) == "postgresql":
        assert conn.execute(sa.text("SELECT pg_try_advisory_lock(:k)"), {"k": advisory_key("dbguard_")}).scalar()
    else:
        name = run_lock_name(sa.engine.make_url(url).database or "", "dbguard_")
        assert conn.execute(sa.text("SELECT GET_LOCK(:n, 0)"), {"n": name}).scalar() == 1
    return None


@integration
@pytest.mark.parametrize("fixture", ALL)
def test_a_deployer_on_the_previous_version_excludes_this_one(fixture: str, request: pytest.FixtureRequest,
                                                              tmp_path: Path) -> None:
    url = request.getfixturevalue(fixture)
    ini, _ = project(tmp_path, url, sleep=False)
    with connect(url) as conn:
        file_lock = _hold_prefix_lock(url, conn if backend_of(url) != "sqlite" else None, tmp_path)
        try:
            busy = run_dbguard(ini, url, "upgrade", "head")
            assert busy.returncode == 4, busy.stdout + busy.stderr
        finally:
            if file_lock is not None:
                file_lock.release()
    assert versions(url) == ["r1"]
    assert run_dbguard(ini, url, "upgrade", "head").returncode == 0
    assert versions(url) == ["r2"]


# Connection set-up is bounded, greeting and authentication included -------------------------------------


@contextlib.contextmanager
def _silent_server() -> Iterator[tuple[int, list[socket.socket]]]:
    """A listener on 127.0.0.1 that accepts connections and never says a word."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.05)  # closing a socket does not wake accept(): the thread looks at `done`
    accepted: list[socket.socket] = []
    done = threading.Event()

    def serve() -> None:
        while not done.is_set():
            try:
                accepted.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1], accepted
    finally:
        done.set()
        thread.join(timeout=30)
        assert not thread.is_alive(), "the silent server did not stop"  # later tests fork: no stray threads
        listener.close()
        for conn in accepted:
            conn.close()


@pytest.mark.parametrize("scheme", ["postgresql+psycopg", "mysql+pymysql"])
def test_a_server_that_accepts_and_never_answers_gives_up_at_the_connect_timeout(scheme: str, tmp_path: Path) -> None:
    ini = make_project(tmp_path, "sqlite:///unused.db", [R1])
    with _silent_server() as (port, accepted):
        done = run_dbguard(ini, f"{scheme}://someone@127.0.0.1:{port}/app", "status",
                           env={"DBGUARD_CONNECT_TIMEOUT_S": "2"})
        assert accepted, "dbguard never connected"
    assert done.returncode == 2, done.stdout + done.stderr
    line, = done.stderr.strip().splitlines()
    assert line.startswith(f"dbguard: error: cannot connect to {scheme}://someone@127.0.0.1:{port}/app"), line
    # The bound dbguard set: libpq's connect_timeout (whole seconds), or dbguard's own handshake deadline.
    if scheme.startswith("postgresql"):
        assert _connect_args(sa.engine.make_url(f"{scheme}://h/app"), 2.0) == {"connect_timeout": 2}
        assert "timeout expired" in line
    else:
        assert "no answer from the server within 2 s of connecting (connect_timeout_s)" in line


# Input validated before anything is written --------------------------------------------------------------


def _fleet_command(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*DBGUARD, "fleet", *args], capture_output=True, text=True, timeout=120, cwd=folder,
                          env=cli_env(), stdin=subprocess.DEVNULL, check=False)


def _sqlite_project(tmp_path: Path) -> Path:
    return make_project(tmp_path, f"sqlite:///{tmp_path / 'app.db'}", [R1, ("r2", "pass", "pass")])


def test_json_errors_are_one_document_on_stdout(tmp_path: Path) -> None:
    ini = _sqlite_project(tmp_path)
    for args in (["--format", "json", "status", "--wait"], ["status", "--format", "json"],
                 ["--format", "json", "upgrade", "nosuchrev"], ["--format", "json", "upgrade", "--wait-lock", "x"]):
        done = run_dbguard(tmp_path / ("missing.ini" if args[-1] == "json" else "alembic.ini"), None, *args)
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        document = json.loads(done.stdout)
        assert document["exit_code"] == 2 and document["error"], document
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
        assert document["error"] in done.stderr
    assert ini.exists()


def test_an_empty_url_is_refused_never_replaced_by_alembic_ini(tmp_path: Path) -> None:
    ini = _sqlite_project(tmp_path)
    typed = run_dbguard(ini, "", "upgrade")
    from_env = run_dbguard(ini, None, "upgrade", env={"DBGUARD_URL": ""})
    for done in (typed, from_env):
        assert done.returncode == 2, done.stderr
        assert "the database URL is empty" in done.stderr
    assert not (tmp_path / "app.db").exists()


@pytest.mark.parametrize("args,env", [
    (["upgrade", "--wait-lock", "nan"], {}),
    (["upgrade", "--wait-lock", "inf"], {}),
    (["upgrade", "--lock-timeout", "-5"], {}),
    (["upgrade"], {"DBGUARD_ZOMBIE_AFTER_S": "nan"}),
    (["upgrade"], {"DBGUARD_HEARTBEAT_INTERVAL_S": "0"}),
])
def test_non_finite_and_out_of_range_numbers_are_refused(args: list[str], env: dict[str, str], tmp_path: Path) -> None:
    ini = _sqlite_project(tmp_path)
    done = run_dbguard(ini, None, *args, env=env)
    assert done.returncode == 2, done.stderr
    assert ("must be" in done.stderr or "is not a finite number" in done.stderr), done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert not (tmp_path / "app.db").exists()


@pytest.mark.parametrize("weight", ["nan", "inf", "-1"])
def test_a_fleet_weight_must_be_a_finite_number(weight: str, tmp_path: Path) -> None:
    ini = _sqlite_project(tmp_path)
    fleet = tmp_path / "fleet.toml"
    fleet.write_text(f'[fleet]\nalembic_config = "{ini}"\n[[targets]]\nname = "a"\n'
                     f'url = "sqlite:///{tmp_path / "a.db"}"\nweight = {weight}\n')
    done = _fleet_command(tmp_path, "validate", str(fleet))
    assert done.returncode == 2, done.stdout + done.stderr
    assert "weight must be a finite number of 0 or more" in done.stderr


def test_relative_revisions_as_in_alembic(tmp_path: Path) -> None:
    ini = _sqlite_project(tmp_path)
    url = f"sqlite:///{tmp_path / 'app.db'}"
    assert run_dbguard(ini, None, "upgrade", "+1").returncode == 0
    assert versions(url) == ["r1"]
    assert run_dbguard(ini, None, "upgrade").returncode == 0
    down = run_dbguard(ini, None, "downgrade", "-1", "--wait-lock", "1")
    assert down.returncode == 0, down.stderr
    assert versions(url) == ["r1"]


def test_a_read_never_creates_a_missing_sqlite_file(tmp_path: Path) -> None:
    ini = _sqlite_project(tmp_path)
    for args in (["status"], ["history"], ["current"]):
        done = run_dbguard(ini, None, *args)
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        assert f"no SQLite database at {tmp_path / 'app.db'}" in done.stderr
    fleet = tmp_path / "fleet.toml"
    fleet.write_text(f'[fleet]\nalembic_config = "{ini}"\n[[targets]]\nname = "a"\n'
                     f'url = "sqlite:///{tmp_path / "a.db"}"\n')
    validated = _fleet_command(tmp_path, "validate", str(fleet))
    assert validated.returncode == 2 and "no SQLite database" in validated.stdout + validated.stderr
    assert not (tmp_path / "app.db").exists() and not (tmp_path / "a.db").exists()
    assert run_dbguard(ini, None, "upgrade").returncode == 0  # a write creates it, as Alembic would
    assert run_dbguard(ini, None, "status").returncode == 0


@pytest.mark.parametrize("url,package", [("mysql://u@127.0.0.1/app", "mysqlclient"),
                                         ("mariadb://u@127.0.0.1/app", "mysqlclient"),
                                         ("mariadb+mariadbconnector://u@127.0.0.1/app", "pip install mariadb")])
def test_the_driver_advice_names_the_package_the_url_needs(url: str, package: str, tmp_path: Path) -> None:
    pytest.importorskip("pymysql")
    for module in ("MySQLdb", "mariadb"):
        try:
            __import__(module)
        except ImportError:
            continue
        pytest.skip(f"{module} is installed here: the advice is not needed")  # not in dbguard's test extra
    ini = _sqlite_project(tmp_path)
    done = run_dbguard(ini, url, "status")
    assert done.returncode == 2
    assert package in done.stderr and "+pymysql://" in done.stderr, done.stderr


@pytest.mark.parametrize("command", [("status",), ("upgrade", "head"), ("drift",), ("plan",)])
def test_a_misspelt_database_kind_is_one_line_with_the_password_masked(command: tuple[str, ...],
                                                                       tmp_path: Path) -> None:
    """``mysq://`` or ``postgres://``: SQLAlchemy has no such dialect. One line naming it, exit 2, for
    reads and runs alike (the sync-driver swap of dbguard's own URL asked SQLAlchemy for the URL's
    default driver first, and its NoSuchModuleError escaped as an unexpected error)."""
    ini = _sqlite_project(tmp_path)
    for url, kind in (("mysq://root:S3cretPW@db/app", "mysq"), ("postgres://root:S3cretPW@db/app", "postgres")):
        done = run_dbguard(ini, url, *command)
        assert done.returncode == 2, (url, done.stdout, done.stderr)
        assert f"SQLAlchemy knows no database '{kind}'" in done.stderr, done.stderr
        assert "S3cretPW" not in done.stdout + done.stderr and len(done.stderr.strip().splitlines()) == 1
        assert ("postgresql://" in done.stderr) == (kind == "postgres"), done.stderr


@integration
@pytest.mark.skipif(not (Path(alembic.__file__).parent / "templates" / "pyproject").is_dir(),
                    reason="Alembic before 1.16 (the floors job runs 1.10) has no pyproject template")
@pytest.mark.parametrize("template", ["pyproject", "pyproject_async"])
def test_alembic_pyproject_templates_run(template: str, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'app.db'}"
    if template.endswith("async"):
        pytest.importorskip("aiosqlite")
        url = f"sqlite+aiosqlite:///{tmp_path / 'app.db'}"
    ini = make_project(tmp_path, url, [R1], template=template)
    assert "script_location" not in ini.read_text()
    done = run_dbguard(ini, None, "upgrade")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "t" in table_names(f"sqlite:///{tmp_path / 'app.db'}")
    assert run_dbguard(ini, None, "status").returncode == 0


@integration
@pytest.mark.parametrize("fixture", ALL)
def test_an_unknown_revision_or_a_broken_revision_file_creates_nothing(fixture: str, request: pytest.FixtureRequest,
                                                                       tmp_path: Path) -> None:
    url = request.getfixturevalue(fixture)
    ini = make_project(tmp_path, url, [R1])
    unknown = run_dbguard(ini, url, "upgrade", "nosuchrev")
    assert unknown.returncode == 2, unknown.stderr
    assert "nosuchrev" in unknown.stderr and len(unknown.stderr.strip().splitlines()) == 1
    broken = next(tmp_path.rglob("versions/*.py"))
    broken.write_text(broken.read_text() + "\ndef oops(:\n")
    syntax = run_dbguard(ini, url, "upgrade")
    assert syntax.returncode == 2, syntax.stderr
    assert "SyntaxError" in syntax.stderr and len(syntax.stderr.strip().splitlines()) == 1
    # The project's file, named: not an internal error of dbguard's (that label sends people to the wrong
    # place), whether the file is cut short anywhere (a function) or in the middle of an expression.
    assert "internal error" not in syntax.stderr and broken.name in syntax.stderr, syntax.stderr
    broken.write_text(broken.read_text().replace("\ndef oops(:\n", "\nx = (\n"))
    unclosed = run_dbguard(ini, url, "upgrade")
    assert unclosed.returncode == 2, unclosed.stderr
    where = f"({broken}, line {len(broken.read_text().splitlines())})"
    expected = f"dbguard: error: cannot read the revision files {where}: SyntaxError: '(' was never closed"
    assert unclosed.stderr.strip().splitlines() == [expected], unclosed.stderr
    assert not {name for name in table_names(url) if name.startswith("dbguard_")}


# Privileges checked before the first migration statement ---------------------------------------------------

U = ("r2", 'op.create_table("u", sa.Column("id", sa.Integer, primary_key=True))', 'op.drop_table("u")')


def _grants_from(message: str) -> str:
    return message.split("Grant it with: ", 1)[1].strip()


@integration
def test_postgresql_a_role_that_cannot_update_the_ledger_is_refused_before_migrating(
        pg_url: str, pg_server_url: str, tmp_path: Path) -> None:
    ini = make_project(tmp_path, pg_url, [R1, U])
    assert api.upgrade(settings(ini, pg_url), "r1").exit_code == 0  # the ledger, owned by the admin
    with pg_role(pg_server_url) as role, connect(pg_url) as admin:
        admin.exec_driver_sql(f'GRANT CREATE, USAGE ON SCHEMA public TO "{role}"')
        admin.exec_driver_sql(f'GRANT SELECT, INSERT ON ALL TABLES IN SCHEMA public TO "{role}"')
        admin.exec_driver_sql(f'GRANT UPDATE, DELETE ON alembic_version TO "{role}"')
        admin.exec_driver_sql(f'GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO "{role}"')
        url = with_credentials(pg_url, username=role)
        refused = run_dbguard(ini, url, "upgrade")
        assert refused.returncode == 2, refused.stdout + refused.stderr
        line, = refused.stderr.strip().splitlines()
        assert f"database user {role} lacks UPDATE on public.dbguard_runs" in line, line
        assert "nothing was changed" in line
        assert versions(pg_url) == ["r1"] and "u" not in table_names(pg_url)
        # The grant it names is SQL PostgreSQL accepts, and enough.
        admin.exec_driver_sql(_grants_from(line))
        done = run_dbguard(ini, url, "upgrade")
        assert done.returncode == 0, done.stdout + done.stderr
        admin.exec_driver_sql(f'DROP OWNED BY "{role}"')
    assert versions(pg_url) == ["r2"]


@integration
def test_mysql_the_old_grant_list_is_refused_before_the_ledger_is_half_created(
        mysql_url: str, mysql_server_url: str, tmp_path: Path) -> None:
    database = database_of(mysql_url)
    with mysql_user(mysql_server_url, database, "Pw-1234567", grants="CREATE, SELECT, INSERT, UPDATE, DROP") as user:
        url = with_credentials(mysql_url, username=user, password="Pw-1234567")
        ini = make_project(tmp_path, url, [R1, U])
        refused = run_dbguard(ini, url, "upgrade")
        assert refused.returncode == 2, refused.stdout + refused.stderr
        line, = refused.stderr.strip().splitlines()
        assert f"lacks ALTER, INDEX on {database}" in line, line
        assert f"GRANT ALTER, INDEX ON `{database}`.* TO '{user}'@'%';" in line
        assert table_names(mysql_url) == set()
        with connect(mysql_server_url) as admin:
            admin.execute(sa.text(_grants_from(line)))
        done = run_dbguard(ini, url, "upgrade")
        assert done.returncode == 0, done.stdout + done.stderr
    assert versions(mysql_url) == ["r2"]


@integration
@pytest.mark.parametrize("fixture", SERVERS)
def test_exactly_the_readme_grant_list_runs_the_whole_cycle(fixture: str, request: pytest.FixtureRequest,
                                                            tmp_path: Path) -> None:
    url = request.getfixturevalue(fixture)
    server = request.getfixturevalue("pg_server_url" if backend_of(url) == "postgresql" else "mysql_server_url")
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    if backend_of(url) == "postgresql":
        grant = "GRANT CREATE ON SCHEMA public TO deployer;"
        assert f"`{grant}`" in readme
        users = pg_role(server)
    else:
        grant = "GRANT CREATE, ALTER, INDEX, SELECT, INSERT, UPDATE ON app.* TO 'deployer'@'%';"
        assert f"`{grant}`" in readme
        users = mysql_user(server, database_of(url), "Pw-1234567", grants="USAGE")
    with users as user:
        with connect(url if backend_of(url) == "postgresql" else server) as admin:
            if backend_of(url) == "postgresql":
                admin.exec_driver_sql(grant.replace("deployer", f'"{user}"'))
            else:  # what the README names, plus what the migrations need: DROP for this project's downgrade,
                # DELETE for Alembic's own row in alembic_version when it goes back to base
                admin.execute(sa.text(grant.replace("app.*", f"`{database_of(url)}`.*")
                                      .replace("'deployer'", f"'{user}'")))
                admin.execute(sa.text(f"GRANT DROP, DELETE ON `{database_of(url)}`.* TO '{user}'@'%'"))
        as_user = with_credentials(url, username=user, password=None if backend_of(url) == "postgresql"
                                   else "Pw-1234567")
        ini = make_project(tmp_path, as_user, [R1, U])
        try:
            for args in (["upgrade"], ["status"], ["rollback", "--yes"], ["status"], ["upgrade"], ["history"]):
                done = run_dbguard(ini, as_user, *args)
                assert done.returncode == 0, (args, done.stdout, done.stderr)
            assert versions(url) == ["r2"]
        finally:
            if backend_of(url) == "postgresql":  # the role owns the tables: drop them so it can go
                with connect(url) as admin:
                    admin.exec_driver_sql(f'DROP OWNED BY "{user}"')


# Ledger integrity --------------------------------------------------------------------------------------------


def _confirmed(prompt: object) -> str:
    return "CONFIRM_RISK"


@integration
@pytest.mark.parametrize("fixture", ALL)
@pytest.mark.parametrize("value,way_out", [("garbage", "rollback"), ("FAILED", "resolve")])
def test_a_status_dbguard_never_writes_is_unknown_and_the_lanes_stay_open(
        fixture: str, value: str, way_out: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    url = request.getfixturevalue(fixture)
    ini, _ = project(tmp_path, url, sleep=False)
    with connect(url) as conn:
        conn.execute(sa.text("UPDATE dbguard_runs SET status = :v"), {"v": value})
    seen = api.status(settings(ini, url))
    assert (seen.state, seen.exit_code) == ("UNKNOWN", 3)
    assert f"has the status {value!r}, which dbguard never writes" in (seen.breaker_reason or "")
    assert "process died" not in (seen.breaker_reason or "")
    assert api.upgrade(settings(ini, url), "head").exit_code == 3
    if way_out == "rollback":
        done = api.rollback(settings(ini, url), confirm=lambda prompt: prompt.token)
    else:
        done = api.resolve(settings(ini, url), "checked by hand", confirm=_confirmed)
    assert done.exit_code == 0, done
    assert api.status(settings(ini, url)).state == "HEALTHY"


@integration
@pytest.mark.parametrize("fixture", ALL)
def test_a_deleted_run_is_found_by_the_chain_and_opens_the_breaker_until_resolved(
        fixture: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    url = request.getfixturevalue(fixture)
    ini, _ = project(tmp_path, url, sleep=False)
    assert api.upgrade(settings(ini, url), "head").exit_code == 0
    assert api.rollback(settings(ini, url), confirm=lambda prompt: prompt.token).exit_code == 0
    with connect(url) as conn:
        ids = [row[0] for row in conn.execute(sa.text("SELECT id FROM dbguard_runs ORDER BY id"))]
        conn.execute(sa.text("DELETE FROM dbguard_runs WHERE id = :id"), {"id": ids[-2]})
    seen = api.status(settings(ini, url))
    assert (seen.state, seen.exit_code) == ("FAILED", 3), seen
    assert f"run {ids[-2]} is missing from dbguard_runs" in (seen.breaker_reason or "")
    assert api.upgrade(settings(ini, url), "head").exit_code == 3
    assert api.resolve(settings(ini, url), "the deleted run was a test", confirm=_confirmed).exit_code == 0
    assert api.status(settings(ini, url)).state == "HEALTHY"


@integration
@pytest.mark.parametrize("fixture", ALL)
def test_dropped_ledger_tables_are_a_lost_ledger_never_silently_recreated(
        fixture: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    url = request.getfixturevalue(fixture)
    ini, _ = project(tmp_path, url, sleep=False)
    with connect(url) as conn:
        conn.exec_driver_sql("DROP TABLE dbguard_runs")
    seen = api.status(settings(ini, url))
    assert (seen.state, seen.exit_code) == ("FAILED", 3), seen
    assert "dbguard's ledger is lost: dbguard_runs is missing" in (seen.breaker_reason or "")
    refused = api.upgrade(settings(ini, url), "head")
    assert refused.exit_code == 3 and "ledger is lost" in refused.message
    assert "dbguard_runs" not in table_names(url) and versions(url) == ["r1"]
    done = api.resolve(settings(ini, url), "ledger dropped by a cleanup script", confirm=_confirmed, accept_schema=True)
    assert done.exit_code == 0, done
    assert api.status(settings(ini, url)).state == "HEALTHY"
    assert api.upgrade(settings(ini, url), "head").exit_code == 0


@integration
@pytest.mark.parametrize("fixture", ALL)
def test_a_hand_moved_alembic_version_is_reported_by_status_and_follows_on_drift(
        fixture: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    url = request.getfixturevalue(fixture)
    ini, _ = project(tmp_path, url, sleep=False)
    with connect(url) as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = 'r2'")
    seen = api.status(settings(ini, url))
    assert seen.exit_code == 0 and not seen.schema_verified
    assert seen.findings == ("alembic_version was moved outside dbguard: run 1 left r1, the database says r2",)
    text = run_dbguard(ini, url, "status")
    assert "not verified: alembic_version was moved outside dbguard" in text.stdout
    refusing = api.status(settings(ini, url, on_drift="refuse"))
    assert refusing.exit_code == 3 and "on_drift = refuse: alembic_version was moved" in (refusing.breaker_reason or "")
