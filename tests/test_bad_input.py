"""Bad input gets one clear line on stderr and exit 2, never a traceback, and never a password."""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.dbs import backend_of
from tests.guardrun import (
    database_of,
    describe,
    json_out,
    mysql_user,
    pg_role,
    run_dbguard,
    table_names,
    with_credentials,
)
from tests.projects import make_project

REVISIONS = [("b1_t", 'op.create_table("t", sa.Column("id", sa.Integer, primary_key=True))')]


def assert_one_clear_line(result: subprocess.CompletedProcess[str], *needles: str) -> str:
    assert result.returncode == 2, describe(result)
    assert "Traceback" not in result.stdout + result.stderr, describe(result)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, describe(result)
    (line,) = lines
    assert line.startswith("dbguard: error: "), line
    for needle in needles:
        assert needle in line, f"{needle!r} not in {line!r}"
    # --format json: the error is also one JSON document on stdout.
    assert result.stdout == "" or json.loads(result.stdout)["exit_code"] == 2, describe(result)
    return line


def test_missing_alembic_ini(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "alembic.ini"
    for args in (["upgrade", "head"], ["status"]):
        result = run_dbguard(missing, f"sqlite:///{tmp_path / 'x.db'}", *args, cwd=tmp_path)
        assert_one_clear_line(result, "no Alembic configuration", str(missing))
    assert not (tmp_path / "x.db").exists()


@pytest.mark.integration
def test_unknown_revision(db_url: str, tmp_path: Path) -> None:
    ini = make_project(tmp_path, db_url, REVISIONS)
    assert_one_clear_line(run_dbguard(ini, db_url, "upgrade", "nosuchrev"), "nosuchrev")
    assert_one_clear_line(run_dbguard(ini, db_url, "downgrade", "nosuchrev"), "nosuchrev")
    # Nothing ran and the breaker stays closed.
    assert "t" not in table_names(db_url)
    status = run_dbguard(ini, db_url, "--format", "json", "status")
    assert status.returncode == 0 and json_out(status)["state"] == "HEALTHY", describe(status)


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("postgresql+psycopg://postgres:{pw}@127.0.0.1:1/test", id="postgresql"),
        pytest.param("mysql+pymysql://root:{pw}@127.0.0.1:1/test", id="mysql"),
        pytest.param("sqlite:///{tmp}/no/such/folder/x.db", id="sqlite"),
    ],
)
def test_unreachable_database(url: str, tmp_path: Path) -> None:
    password = f"Unreach{uuid.uuid4().hex[:8]}"
    url = url.format(pw=password, tmp=tmp_path)
    ini = make_project(tmp_path, url, REVISIONS)
    # drift: its catalog is read in a forked child while env.py runs; both fail, the message is dbguard's own.
    for args in (["upgrade", "head"], ["drift"]):
        result = run_dbguard(ini, url, *args, timeout=60)
        # A read of a SQLite file that is not there says so (it never creates one).
        missing = backend_of(url) == "sqlite" and args == ["drift"]
        line = assert_one_clear_line(result, "no SQLite database at" if missing else "cannot connect to")
        assert password not in result.stdout + result.stderr
        if backend_of(url) != "sqlite":
            assert "127.0.0.1:1" in line and "***" in line, line


@pytest.mark.integration
def test_wrong_password_is_refused_and_never_shown(mysql_url: str, mysql_server_url: str, tmp_path: Path) -> None:
    # PostgreSQL's trust authentication on the test server accepts any password: use MariaDB.
    right = f"Right{uuid.uuid4().hex[:10]}"
    wrong = f"Wrong{uuid.uuid4().hex[:10]}"
    with mysql_user(mysql_server_url, database_of(mysql_url), right) as user:
        url = with_credentials(mysql_url, username=user, password=wrong)
        ini = make_project(tmp_path, url, REVISIONS)
        for args in (["upgrade", "head"], ["--format", "json", "status"], ["drift"]):
            result = run_dbguard(ini, url, *args)
            assert_one_clear_line(result, "cannot connect to", "Access denied", user, "(using password: YES)")
            for secret in (wrong, right):
                assert secret not in result.stdout + result.stderr, describe(result)
        # The right password works, as a control.
        good = run_dbguard(ini, with_credentials(mysql_url, username=user, password=right), "upgrade", "head")
        assert good.returncode == 0, describe(good)
        assert right not in good.stdout + good.stderr


@pytest.mark.parametrize("template", [
    "postgres//app:{pw}@db.internal/app",  # the scheme's colon forgotten
    "postgresql+psycopg:/app:{pw}@db.internal/app",  # one slash
    "app:{pw}@db.internal/app",  # no scheme at all
    "mysql+pymysql//app:{pw}:tail@db.internal/app?charset=utf8mb4",  # a ':' inside the password
    "postgresql+psycopg://app:{pw}@db.internal:notaport/app",  # well-formed but for the port
])
def test_a_url_that_does_not_parse_is_refused_without_its_password(sqlite_url: str, tmp_path: Path,
                                                                    template: str) -> None:
    """The masking patterns need ``scheme://user:password@``; a mistyped URL is refused before any
    connection, and its password stays out of the message given by --url, DBGUARD_URL or alembic.ini."""
    password = f"Typo{uuid.uuid4().hex[:10]}"
    bad = template.format(pw=password)
    ini = make_project(tmp_path, sqlite_url, REVISIONS)
    runs = [run_dbguard(ini, bad, "status"), run_dbguard(ini, bad, "--format", "json", "upgrade", "head"),
            run_dbguard(ini, None, "status", env={"DBGUARD_URL": bad})]
    assert f"sqlalchemy.url = {sqlite_url}\n" in ini.read_text()
    ini.write_text(ini.read_text().replace(f"sqlalchemy.url = {sqlite_url}", f"sqlalchemy.url = {bad}"))
    runs.append(run_dbguard(ini, None, "drift"))
    for result in runs:
        line = assert_one_clear_line(result, "not a database URL: ", "@db.internal", "***")
        assert password not in result.stdout + result.stderr, line


def test_alembic_inits_placeholder_url_is_one_clear_line(sqlite_url: str, tmp_path: Path) -> None:
    """``alembic init`` writes ``driver://user:pass@localhost/dbname``; a project that ships its
    alembic.ini that way (buildbot's) and a mistyped scheme name the database SQLAlchemy does not
    know, on every command (naming the default driver used to escape as NoSuchModuleError)."""
    ini = make_project(tmp_path, sqlite_url, REVISIONS)
    assert f"sqlalchemy.url = {sqlite_url}\n" in ini.read_text()
    ini.write_text(ini.read_text().replace(f"sqlalchemy.url = {sqlite_url}",
                                           "sqlalchemy.url = driver://user:pass@localhost/dbname"))
    for args in (["status"], ["upgrade", "head"], ["drift"], ["plan"], ["--format", "json", "history"]):
        result = run_dbguard(ini, None, *args)
        assert_one_clear_line(result, "driver://user:***@localhost/dbname: SQLAlchemy knows no database 'driver'")
    result = run_dbguard(ini, "postgresq+psycopg://app:Typo9pw@db/app", "status")
    line = assert_one_clear_line(result, "SQLAlchemy knows no database 'postgresq+psycopg'")
    assert "Typo9pw" not in line


def test_masking_keeps_the_mysql_access_denied_clue() -> None:
    from dbguard.masking import mask

    text = "(1045, \"Access denied for user 'app'@'10.0.0.1' (using password: YES)\")"
    assert mask(text) == text
    assert "hunter2pw" not in mask("password: hunter2pw) and password=YEShunter2pw")


@pytest.mark.integration
def test_postgresql_user_without_create_on_schema(pg_url: str, pg_server_url: str, tmp_path: Path) -> None:
    # PostgreSQL 15 no longer lets PUBLIC create in schema public: a plain login role cannot.
    with pg_role(pg_server_url) as role:
        url = with_credentials(pg_url, username=role)
        ini = make_project(tmp_path, url, REVISIONS)
        result = run_dbguard(ini, url, "upgrade", "head")
        assert_one_clear_line(result, role, "ledger", f'GRANT CREATE ON SCHEMA "public" TO "{role}"')
    assert table_names(pg_url) == set()


@pytest.mark.integration
def test_mysql_user_with_select_only(mysql_url: str, mysql_server_url: str, tmp_path: Path) -> None:
    password = f"Sel{uuid.uuid4().hex[:10]}"
    database = database_of(mysql_url)
    with mysql_user(mysql_server_url, database, password, grants="SELECT") as user:
        url = with_credentials(mysql_url, username=user, password=password)
        ini = make_project(tmp_path, url, REVISIONS)
        result = run_dbguard(ini, url, "upgrade", "head")
        assert_one_clear_line(result, user, "ledger", "nothing was changed",
                              f"GRANT CREATE, ALTER, INDEX, INSERT, UPDATE ON `{database}`.* TO '{user}'@'%';")
        assert password not in result.stdout + result.stderr
    assert table_names(mysql_url) == set()
