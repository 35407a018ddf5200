"""The guarded upgrade end to end, on SQLite, PostgreSQL and MariaDB: the ledger of a good run,
a failing run recorded with a masked error, the circuit breaker refusing the next upgrade
without touching the schema, and ``--force`` with its typed confirmation.

dbguard runs as a subprocess with no terminal attached, as in a deploy pipeline; the tests read
the ledger and the catalog on connections of their own.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

import dbguard
from tests.dbs import backend_of
from tests.guardrun import (
    all_text,
    catalog,
    column_names,
    database_of,
    describe,
    json_out,
    ledger,
    mysql_user,
    run_dbguard,
    sha256_of,
    table_names,
    versions,
    with_credentials,
)
from tests.projects import make_project

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[1]
EXAMPLE_INI = REPO / "migrations_example" / "alembic.ini"
EXAMPLE_VERSIONS = REPO / "migrations_example" / "versions"
EXAMPLE_REVISIONS = [
    "0001_users",
    "0002_orders",
    "0003_last_login_status_index",
    "0004_audit_log_order_note",
]

ITEMS = (
    "r1_items",
    """
    op.create_table(
        "items",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(50), nullable=False),
    )
    op.create_index("ix_items_name", "items", ["name"])
    """,
)


def failing_revision(leaky_text: str) -> tuple[str, str]:
    """Creates a table, adds a column, then fails with an error whose text holds ``leaky_text``
    (a URL with a password): the table name in 'no such table' errors is echoed by every engine."""
    return (
        "r2_fails",
        f'''
def upgrade() -> None:
    op.create_table("extra", sa.Column("id", sa.Integer, primary_key=True))
    op.add_column("items", sa.Column("note", sa.String(50), nullable=True))
    bind = op.get_bind()
    missing = bind.dialect.identifier_preparer.quote_identifier({leaky_text!r})
    bind.exec_driver_sql("SELECT * FROM " + missing)
''',
    )


FAILS_ON_REQUEST = (
    "r2_guarded",
    '''
from alembic import context


def upgrade() -> None:
    # Fails before any DDL when asked to (-x fail=1), so a forced re-run can succeed on
    # every engine, transactional DDL or not.
    if context.get_x_argument(as_dictionary=True).get("fail"):
        op.execute("SELECT * FROM dbguard_test_no_such_table")
    op.create_table("extra", sa.Column("id", sa.Integer, primary_key=True))
''',
)


def new_password() -> str:
    # Unique per test, so a hit can only come from this test's own leak; with characters a URL
    # must percent-encode (and alembic.ini must escape), as real passwords have.
    return f"S3c:r@t%{uuid.uuid4().hex[:10]}"


@pytest.fixture
def password() -> str:
    return new_password()


@pytest.fixture
def secret_url(db_url: str, password: str, request: pytest.FixtureRequest) -> Iterator[str]:
    """``db_url`` reached with a password: PostgreSQL's trust authentication on the test server
    accepts any password; on MariaDB a user with that password and all rights on the database.
    SQLite URLs carry no password: there the secret only shows up in the error text."""
    kind = backend_of(db_url)
    if kind == "postgresql":
        yield with_credentials(db_url, password=password)
    elif kind == "mysql":
        server = request.getfixturevalue("mysql_server_url")
        with mysql_user(server, database_of(db_url), password) as user:
            yield with_credentials(db_url, username=user, password=password)
    else:
        yield db_url


def step_rows(steps: list[dict], run_id: int) -> list[dict]:
    return [s for s in steps if s["run_id"] == run_id]


# 1. a successful multi-step upgrade ---------------------------------------------------------


def test_successful_upgrade_records_run_steps_and_checksums(db_url: str, tmp_path: Path) -> None:
    result = run_dbguard(EXAMPLE_INI, db_url, "upgrade", "head", cwd=tmp_path)
    assert result.returncode == 0, describe(result)
    assert "Traceback" not in result.stderr

    runs, steps = ledger(db_url)
    assert len(runs) == 1, runs
    run = runs[0]
    assert run["intent"] == "upgrade"
    assert run["status"] == "succeeded"
    assert not run["from_revisions"]
    assert run["to_revision"] == EXAMPLE_REVISIONS[-1]
    assert not run["forced"]
    assert run["error"] is None and run["failed_step"] is None
    assert run["finished_at"] is not None and run["finished_at"] >= run["started_at"]
    assert run["heartbeat_at"] is not None and run["heartbeat_at"] >= run["started_at"]
    assert isinstance(run["pid"], int) and run["host"] and run["os_user"]
    assert run["dbguard_version"] == dbguard.__version__
    if backend_of(db_url) != "sqlite":
        assert run["db_user"], "a server's ledger names the database user"

    assert [s["revision"] for s in steps] == EXAMPLE_REVISIONS
    for step in steps:
        assert step["run_id"] == run["id"]
        assert step["direction"] == "up"
        assert step["status"] == "succeeded"
        assert step["attempts"] == 1
        assert step["duration_ms"] is not None and step["duration_ms"] >= 0
        assert step["started_at"] is not None
        (path,) = EXAMPLE_VERSIONS.glob(f"{step['revision']}.py")
        assert step["checksum"] == sha256_of(path), f"sha256 of {path.name}"
    assert versions(db_url) == [EXAMPLE_REVISIONS[-1]]

    history = run_dbguard(EXAMPLE_INI, db_url, "--format", "json", "history", cwd=tmp_path)
    assert history.returncode == 0, describe(history)
    (entry,) = json_out(history)["runs"]
    assert entry["run"]["id"] == run["id"] and entry["run"]["status"] == "succeeded"
    assert [(s["revision"], s["status"], s["checksum"]) for s in entry["steps"]] == [
        (s["revision"], "succeeded", s["checksum"]) for s in steps
    ]

    status = run_dbguard(EXAMPLE_INI, db_url, "--format", "json", "status", cwd=tmp_path)
    assert status.returncode == 0, describe(status)
    report = json_out(status)
    assert report["state"] == "HEALTHY"
    assert report["revisions"] == [EXAMPLE_REVISIONS[-1]]
    last = report["last_run"]
    assert last["id"] == run["id"] and last["intent"] == "upgrade" and last["status"] == "succeeded"
    assert last["from_revisions"] == [] and last["to_revision"] == EXAMPLE_REVISIONS[-1]
    assert last["failed_step"] is None and last["error"] is None
    assert last["started_at"] and last["finished_at"]


# 2 + 3. a failing revision, its masked error, and the breaker ---------------------------------


def test_failing_revision_is_recorded_masked_and_blocks_the_next_upgrade(
    secret_url: str, password: str, tmp_path: Path
) -> None:
    kind = backend_of(secret_url)
    leaky = f"postgresql://deployer:{quote(password, safe='')}@db.internal/prod"
    ini = make_project(tmp_path, secret_url, [ITEMS, failing_revision(leaky)])
    outputs = []

    def cli(*args: str):
        result = run_dbguard(ini, secret_url, *args)
        outputs.append(result)
        assert "Traceback" not in result.stdout + result.stderr, describe(result)
        return result

    failed = cli("upgrade", "head")
    assert failed.returncode == 5, describe(failed)
    assert "r2_fails" in failed.stdout

    runs, steps = ledger(secret_url)
    assert len(runs) == 1, runs
    run = runs[0]
    assert run["status"] == "failed"
    assert run["failed_step"] == "r2_fails"
    assert run["error_class"] and run["error"]
    assert "***" in run["error"], f"the URL's password is masked, not dropped: {run['error']!r}"
    assert "db.internal/prod" in run["error"], "the rest of the error is kept"
    assert run["finished_at"] is not None

    by_revision = {s["revision"]: s for s in step_rows(steps, run["id"])}
    assert by_revision["r1_items"]["status"] == "succeeded"
    # PostgreSQL rolls the failing step back whole; MariaDB and SQLite keep its first DDL.
    expected = "failed" if kind == "postgresql" else "partial"
    assert by_revision["r2_fails"]["status"] == expected
    assert by_revision["r2_fails"]["error"] and "***" in by_revision["r2_fails"]["error"]
    assert by_revision["r2_fails"]["checksum"] == sha256_of(ini.parent / "migrations" / "versions" / "r2_fails.py")

    assert versions(secret_url) == ["r1_items"]
    if kind == "postgresql":
        assert "extra" not in table_names(secret_url)
        assert "note" not in column_names(secret_url, "items")
    else:
        assert "extra" in table_names(secret_url), "non-transactional DDL stays half-applied"
        assert "note" in column_names(secret_url, "items")

    status = cli("--format", "json", "status")
    assert status.returncode == 3, describe(status)
    report = json_out(status)
    assert report["state"] == "FAILED"
    assert report["revisions"] == ["r1_items"]
    assert report["last_run"]["id"] == run["id"]
    assert report["last_run"]["failed_step"] == "r2_fails"
    assert "***" in report["last_run"]["error"]

    # 3. The breaker is open: nothing more runs, and the schema is exactly as the failure left it.
    before = catalog(secret_url)
    again = cli("upgrade", "head")
    assert again.returncode == 3, describe(again)
    assert "circuit breaker open" in again.stdout and "r2_fails" in again.stdout
    assert "resolve" in again.stdout, "the refusal says what to do"
    down = cli("downgrade", "base")
    assert down.returncode == 3, describe(down)
    assert catalog(secret_url) == before

    runs, steps = ledger(secret_url)
    assert [r["status"] for r in runs] == ["failed", "refused", "refused"]
    assert len(steps) == 2, "a refused run has no steps"

    assert cli("history").returncode == 0

    # The password appears nowhere: not in any output, not in any ledger column.
    # Not even its unique tail: no partial masking.
    for secret in (password, quote(password, safe=""), password[-10:]):
        for result in outputs:
            assert secret not in result.stdout, describe(result)
            assert secret not in result.stderr, describe(result)
        assert secret not in all_text(runs) + all_text(steps)


# 4. --force and its typed confirmation ----------------------------------------------------------


def test_force_needs_the_typed_confirmation(db_url: str, tmp_path: Path) -> None:
    ini = make_project(tmp_path, db_url, [ITEMS, FAILS_ON_REQUEST])
    failed = run_dbguard(ini, db_url, "-x", "fail=1", "upgrade", "head")
    assert failed.returncode == 5, describe(failed)
    before = catalog(db_url)
    assert before["alembic_version"] == ["r1_items"]

    # No terminal and no token: refused, and told how to proceed.
    no_token = run_dbguard(ini, db_url, "upgrade", "head", "--force")
    assert no_token.returncode == 3, describe(no_token)
    assert "--confirm-risk CONFIRM_RISK" in no_token.stderr
    assert "blast radius" in no_token.stderr and "r2_guarded" in no_token.stderr
    assert catalog(db_url) == before

    wrong = run_dbguard(ini, db_url, "upgrade", "head", "--force", "--confirm-risk", "confirm_risk")
    assert wrong.returncode == 3, describe(wrong)
    assert "risk confirmation missing or wrong" in wrong.stdout
    assert catalog(db_url) == before

    forced = run_dbguard(ini, db_url, "upgrade", "head", "--force", "--confirm-risk", "CONFIRM_RISK")
    assert forced.returncode == 0, describe(forced)
    assert "forced" in forced.stdout
    assert versions(db_url) == ["r2_guarded"]
    assert "extra" in table_names(db_url)

    runs, steps = ledger(db_url)
    assert [r["status"] for r in runs] == ["failed"] + ["refused"] * 2 + ["succeeded"]
    last = runs[-1]
    assert bool(last["forced"]) is True
    assert [(s["revision"], s["status"]) for s in step_rows(steps, last["id"])] == [("r2_guarded", "succeeded")]
    assert not any(bool(r["forced"]) for r in runs[:1]), "the failed run was not forced"

    status = run_dbguard(ini, db_url, "--format", "json", "status")
    assert status.returncode == 0, describe(status)
    report = json_out(status)
    assert report["state"] == "HEALTHY"
    assert report["last_run"]["id"] == last["id"] and report["last_run"]["forced"] is True


def test_postgresql_steps_commit_unflushed_and_the_verdict_waits_for_the_flush(pg_url, tmp_path):
    """What keeps a long chain near plain Alembic's single commit, and what makes it safe: the steps and
    their journal rows commit without waiting for the WAL flush, the run's verdict (written after
    them, on a session whose commits wait again) with it. A trigger on the ledger reads the setting of
    the session that wrote each row."""
    from tests.guardrun import connect

    seen = ("op.execute(\"CREATE TABLE seen (what text, sync text)\")\n"
            "op.execute(\"INSERT INTO seen VALUES ('step', current_setting('synchronous_commit'))\")")
    ini = make_project(tmp_path, pg_url, [("r1", seen), ("r2", "pass")])
    assert run_dbguard(ini, pg_url, "upgrade", "r1").returncode == 0  # the ledger exists from here on
    with connect(pg_url) as conn:
        conn.exec_driver_sql(
            "CREATE TABLE ledger_writes (what text, sync text);"
            "CREATE FUNCTION note_write() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "INSERT INTO ledger_writes VALUES (TG_TABLE_NAME || ' ' || TG_OP || ' ' || NEW.status, "
            "current_setting('synchronous_commit')); RETURN NEW; END $$;"
            "CREATE TRIGGER note_steps BEFORE INSERT OR UPDATE ON dbguard_steps FOR EACH ROW EXECUTE FUNCTION note_write();"
            "CREATE TRIGGER note_runs BEFORE INSERT OR UPDATE ON dbguard_runs FOR EACH ROW EXECUTE FUNCTION note_write();")
    up = run_dbguard(ini, pg_url, "upgrade", "head")
    assert up.returncode == 0, describe(up)
    with connect(pg_url) as conn:
        assert conn.exec_driver_sql("SELECT sync FROM seen").scalar() == "off"
        writes = conn.exec_driver_sql("SELECT what, sync FROM ledger_writes").all()
    steps = {sync for what, sync in writes if what.startswith("dbguard_steps")}
    verdicts = [sync for what, sync in writes if what == "dbguard_runs UPDATE succeeded"]
    assert steps == {"off"}, writes
    assert verdicts and verdicts[-1] == "on", writes
