"""`dbguard plan` end to end: the offline CLI (no database, exit codes, formats), live facts that
raise a finding's risk on a 200,000-row table (PostgreSQL, MariaDB), the upgrade pre-flight that
refuses a risky plan, and the intercepted `upgrade --force` over a FAILED state."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.guardrun import connect, describe, json_out, run_dbguard, table_names, versions
from tests.lanekit import alembic, example_ini
from tests.projects import make_project

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_INI = ROOT / "migrations_example" / "alembic.ini"
NO_DB = "postgresql+psycopg://nobody@invalid.invalid:1/none"


# offline: no database at all ------------------------------------------------------------------------


def test_offline_plan_exit_codes_and_formats() -> None:
    found = run_dbguard(EXAMPLE_INI, NO_DB, "plan", "--offline", "--from", "0002_orders")
    assert found.returncode == 1, describe(found)
    assert "DG102 index-not-concurrent" in found.stdout and "orders: size unknown" in found.stdout
    assert "expected worst lock hold" in found.stdout

    relaxed = run_dbguard(EXAMPLE_INI, NO_DB, "plan", "--offline", "--from", "0002_orders", "--fail-on", "critical")
    assert relaxed.returncode == 0, describe(relaxed)

    gh = run_dbguard(EXAMPLE_INI, NO_DB, "--format", "github", "plan", "--offline", "--from", "0002_orders")
    assert gh.returncode == 1
    assert gh.stdout.startswith("::error file=") and "title=DG102 index-not-concurrent (high) in 0003" in gh.stdout

    doc = json_out(run_dbguard(EXAMPLE_INI, NO_DB, "--format", "json", "plan", "--offline", "--from", "base"))
    assert doc["mode"] == "offline" and doc["failing"] == 0  # from base every table is new
    assert doc["revisions"][0]["revision"] == "0001_users"

    for args in (("plan", "--offline"), ("plan", "nope", "--offline", "--from", "base"),
                 ("plan", "--offline", "--from", "nope")):
        bad = run_dbguard(EXAMPLE_INI, NO_DB, *args)
        assert bad.returncode == 2, describe(bad)
        assert "Traceback" not in bad.stderr


def test_fail_on_from_pyproject(tmp_path: Path) -> None:
    ini = example_ini(tmp_path, NO_DB)
    (tmp_path / "pyproject.toml").write_text('[tool.dbguard]\nfail_on = "critical"\n')
    assert run_dbguard(ini, None, "plan", "--offline", "--from", "0002_orders").returncode == 0
    assert run_dbguard(ini, None, "plan", "--offline", "--from", "0002_orders", "--fail-on", "high").returncode == 1


# live facts ------------------------------------------------------------------------------------------

TYPE_CHANGE = [
    ("r1", ("op.create_table('items', sa.Column('id', sa.Integer, primary_key=True), sa.Column('n', sa.Integer), "
            "sa.Column('label', sa.String(40)))")),
    ("r2", "op.alter_column('items', 'n', type_=sa.BigInteger(), existing_type=sa.Integer())"),
]


def _fill(url: str, kind: str, rows: int = 200_000) -> None:
    with connect(url) as conn:
        if kind == "postgresql":
            conn.exec_driver_sql(f"INSERT INTO items (n, label) SELECT g, 'label ' || g FROM generate_series(1, {rows}) g")
            conn.exec_driver_sql("ANALYZE items")
            return
        conn.exec_driver_sql("INSERT INTO items (n, label) VALUES (1, 'label 1')")
        count = 1
        while count < rows:  # INSERT ... SELECT doubling: 18 statements for 200,000 rows
            step = min(count, rows - count)
            conn.exec_driver_sql(f"INSERT INTO items (n, label) SELECT n + {count}, label FROM items "
                                 f"ORDER BY n LIMIT {step}")
            count += step
        conn.exec_driver_sql("ANALYZE TABLE items")


def _finding(doc: dict, code: str) -> dict:
    hits = [f for r in doc["revisions"] for f in r["findings"] if f["code"] == code]
    assert len(hits) == 1, doc
    return hits[0]


@pytest.mark.parametrize("kind", ["postgresql", "mysql"])
def test_live_rows_raise_the_risk_of_the_same_statement(kind: str, request: pytest.FixtureRequest,
                                                        tmp_path: Path) -> None:
    url = request.getfixturevalue("pg_url" if kind == "postgresql" else "mysql_url")
    ini = make_project(tmp_path, url, TYPE_CHANGE)
    assert run_dbguard(ini, None, "upgrade", "r1").returncode == 0

    empty = _finding(json_out(run_dbguard(ini, None, "--format", "json", "plan")), "DG101")
    assert empty["severity"] == "low" and empty["table"] == "items"
    assert empty["rows"] == 0 or empty["rows"] is None

    _fill(url, kind)
    text = run_dbguard(ini, None, "plan")
    assert text.returncode == 1, describe(text)
    big = _finding(json_out(run_dbguard(ini, None, "--format", "json", "plan")), "DG101")
    assert big["severity"] == "high"
    assert 150_000 <= big["rows"] <= 250_000, big  # MariaDB's count is InnoDB's estimate
    assert big["size_bytes"] > 4 * 1024 * 1024 and big["hold_s"] is not None
    rows_text = f"~{big['rows']:,} rows"
    assert rows_text in text.stdout and "MiB" in text.stdout, text.stdout
    algorithm = "ALGORITHM=COPY" if kind == "mysql" else "ACCESS EXCLUSIVE"
    assert algorithm in text.stdout

    # The upgrade pre-flight refuses the same plan, and nothing changes.
    refused = run_dbguard(ini, None, "upgrade")
    assert refused.returncode == 3, describe(refused)
    assert "risk finding" in refused.stdout and "DG101" in refused.stdout
    assert versions(url) == ["r1"]

    # --force asks for the token after the blast radius; with it, the run goes ahead, marked forced.
    unconfirmed = run_dbguard(ini, None, "upgrade", "--force")
    assert unconfirmed.returncode == 3 and "with 1 risk finding(s) at or above high" in unconfirmed.stderr
    assert "DG101 table-rewrite" in unconfirmed.stderr and versions(url) == ["r1"]
    done = run_dbguard(ini, None, "upgrade", "--force", "--confirm-risk", "CONFIRM_RISK")
    assert done.returncode == 0, describe(done)
    assert versions(url) == ["r2"] and "forced" in done.stdout and "warning: risk DG101" in done.stdout

    # A plain `alembic stamp` behind dbguard's back: the plan says alembic_version moved.
    stamped = alembic(ini, "stamp", "r1")
    assert stamped.returncode == 0, stamped.stderr
    moved = run_dbguard(ini, None, "plan")
    assert "alembic_version was moved outside dbguard" in moved.stdout, describe(moved)


# live column types and nullability -------------------------------------------------------------------

PEOPLE = ("op.create_table('people', sa.Column('id', sa.Integer, primary_key=True), "
          "sa.Column('name', sa.String(20)), sa.Column('code', sa.String(20)), sa.Column('email', sa.String(100)))")


@pytest.mark.parametrize("kind", ["postgresql", "mysql"])
def test_live_column_types_and_nullability_judge_type_changes(kind: str, request: pytest.FixtureRequest,
                                                              tmp_path: Path) -> None:
    url = request.getfixturevalue("pg_url" if kind == "postgresql" else "mysql_url")
    # Neither alter_column names the old type (no existing_type): only the live catalog knows it.
    # MariaDB utf8mb4: varchar(60) is 240 bytes, still under the 255 of a one-byte length.
    wider = 500 if kind == "postgresql" else 60
    changes = (f"op.alter_column('people', 'name', type_=sa.String({wider}))\n"
               "op.alter_column('people', 'code', type_=sa.String(10))\n"
               "op.alter_column('people', 'email', nullable=False, existing_type=sa.String(100))")
    ini = make_project(tmp_path, url, [("r1", PEOPLE), ("r2", changes)])
    assert run_dbguard(ini, None, "upgrade", "r1").returncode == 0
    with connect(url) as conn:  # made NOT NULL by hand: the history still says nullable
        conn.exec_driver_sql("ALTER TABLE people ALTER COLUMN email SET NOT NULL" if kind == "postgresql"
                             else "ALTER TABLE people MODIFY email VARCHAR(100) NOT NULL")

    doc = json_out(run_dbguard(ini, None, "--format", "json", "plan"))
    found = {(f["code"], f["statement_index"]) for r in doc["revisions"] for f in r["findings"]}
    assert ("DG108", 2) in found, found  # varchar(20) -> varchar(10)
    assert not {hit for hit in found if hit[1] in (1, 3)}, found  # widening; NOT NULL already
    # Offline, the history says email is nullable: SET NOT NULL is judged as a change.
    offline = json_out(run_dbguard(ini, None, "--format", "json", "plan", "--offline", "--from", "r1"))
    codes = {(f["code"], f["statement_index"]) for r in offline["revisions"] for f in r["findings"]}
    assert ("DG104" if kind == "postgresql" else "DG101", 3) in codes, codes


def test_the_live_catalog_names_the_table_of_an_index_the_history_never_made(pg_url: str, tmp_path: Path) -> None:
    ini = make_project(tmp_path, pg_url, [("r1", PEOPLE), ("r2", "op.drop_index('ix_people_legacy')")])
    assert run_dbguard(ini, None, "upgrade", "r1").returncode == 0
    with connect(pg_url) as conn:  # made by hand (a brownfield index): no revision knows its table
        conn.exec_driver_sql("CREATE INDEX ix_people_legacy ON people (code)")

    doc = json_out(run_dbguard(ini, None, "--format", "json", "plan"))
    (dropped,) = [f for r in doc["revisions"] for f in r["findings"] if f["code"] == "DG102"]
    assert dropped["table"] == "people" and "table of index" not in dropped["message"], dropped
    assert any(t["table"] == "people" and t["strongest_lock"] == "ACCESS EXCLUSIVE" for t in doc["summary"]["tables"]), \
        doc["summary"]
    offline = json_out(run_dbguard(ini, None, "--format", "json", "plan", "--offline", "--from", "r1"))
    (unplaced,) = [f for r in offline["revisions"] for f in r["findings"] if f["code"] == "DG102"]
    assert "table of index ix_people_legacy unknown" in unplaced["message"], unplaced


def test_an_env_py_holding_one_transaction_around_the_run_holds_locks_across_revisions(pg_url: str,
                                                                                      tmp_path: Path) -> None:
    ini = make_project(tmp_path, pg_url, [
        ("r1", PEOPLE),
        ("r2", "op.add_column('people', sa.Column('plan', sa.Text(), nullable=True))"),
        ("r3", "op.execute(\"UPDATE people SET plan = 'free'\")"),
    ])
    assert run_dbguard(ini, None, "upgrade", "r1").returncode == 0

    def judged() -> tuple[set[tuple[str, str]], list[str]]:
        doc = json_out(run_dbguard(ini, None, "--format", "json", "plan"))
        return {(f["code"], r["revision"]) for r in doc["revisions"] for f in r["findings"]}, doc["notes"]

    found, notes = judged()
    assert ("DG115", "r3") not in found, found  # each revision commits: r2's lock is gone before r3
    env_py = ini.parent / "migrations" / "env.py"
    env_py.write_text(env_py.read_text().replace("with connectable.connect() as connection:",
                                                 "with connectable.begin() as connection:"))
    found, notes = judged()
    assert ("DG115", "r3") in found, found
    assert any("env.py runs the whole upgrade in one transaction (line" in n for n in notes), notes

    # What the plan assumes, as the server does it: r3 fails, and r2 (run before it, in the same
    # transaction) is rolled back with it.
    (ini.parent / "migrations" / "versions" / "r3.py").write_text(
        (ini.parent / "migrations" / "versions" / "r3.py").read_text().replace("UPDATE people SET plan = 'free'",
                                                                                "SELECT 1/0"))
    assert run_dbguard(ini, None, "upgrade", "head").returncode == 5
    with connect(pg_url) as conn:
        columns = {r[0] for r in conn.exec_driver_sql(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'people'")}
    assert "plan" not in columns and versions(pg_url) == ["r1"], columns


# a statement sqlglot cannot parse --------------------------------------------------------------------

# Unbalanced: sqlglot cannot parse it and no fallback pattern reads it. The revision creates a table
# first, so a run that started anyway would leave it behind.
UNPARSABLE = "UPDATE items SET label = 'x' WHERE id IN (1, 2"


@pytest.mark.integration
@pytest.mark.parametrize("kind", ["postgresql", "mysql"])
def test_a_statement_sqlglot_cannot_parse_stops_plan_and_upgrade(kind: str, request: pytest.FixtureRequest,
                                                                 tmp_path: Path) -> None:
    url = request.getfixturevalue("pg_url" if kind == "postgresql" else "mysql_url")
    ini = make_project(tmp_path, url, [TYPE_CHANGE[0], (
        "r2", f"op.create_table('gadgets', sa.Column('id', sa.Integer, primary_key=True))\nop.execute({UNPARSABLE!r})")])
    assert run_dbguard(ini, None, "upgrade", "r1").returncode == 0
    before = table_names(url)

    for args in (("plan",), ("upgrade",)):
        stopped = run_dbguard(ini, None, *args)
        assert stopped.returncode == 2, describe(stopped)
        named = [line for line in stopped.stderr.splitlines() if UNPARSABLE in line]
        assert len(named) == 1, describe(stopped)
        assert named[0].startswith("dbguard: error: revision r2: sqlglot ") and "cannot parse" in named[0]
        assert "fail_on = none" in named[0] and "Traceback" not in stopped.stderr
        # Stopped before the run: nothing of r2 is live, and no warning says it went ahead unplanned.
        assert versions(url) == ["r1"] and table_names(url) == before, describe(stopped)
        assert "no risk plan" not in stopped.stdout + stopped.stderr


# A stored routine whose body is a compound statement, created, called and dropped by the migration as
# airflow's mysql_drop_foreignkey_if_exists does (MySQL), or in SQL-standard form (PostgreSQL 14+): the
# semicolons inside BEGIN ... END end the body's statements, not the definition.
MYSQL_PROCEDURE = ("CREATE PROCEDURE dg_drop_fk_if_exists() BEGIN IF EXISTS (SELECT 1 FROM "
                   "information_schema.TABLE_CONSTRAINTS WHERE CONSTRAINT_SCHEMA = DATABASE() AND "
                   "CONSTRAINT_NAME = 'fk_gone') THEN ALTER TABLE items DROP FOREIGN KEY fk_gone; "
                   "ELSE SELECT 1; END IF; END")
ROUTINE = {
    "mysql": (MYSQL_PROCEDURE, "CALL dg_drop_fk_if_exists()", "DROP PROCEDURE dg_drop_fk_if_exists"),
    "postgresql": ("CREATE FUNCTION dg_one() RETURNS integer LANGUAGE SQL BEGIN ATOMIC SELECT 1; END",
                   "SELECT dg_one()", "DROP FUNCTION dg_one()"),
}


@pytest.mark.integration
@pytest.mark.parametrize("kind", ["postgresql", "mysql"])
def test_a_stored_routine_with_a_compound_body_is_planned_whole(kind: str, request: pytest.FixtureRequest,
                                                                 tmp_path: Path) -> None:
    """The plan cut the definition at its first inner semicolon and stopped with exit 2 on the piece
    sqlglot could not read ("ELSE SELECT 1"), where plain Alembic runs the revision."""
    url = request.getfixturevalue("pg_url" if kind == "postgresql" else "mysql_url")
    body = "\n".join(f"op.execute({statement!r})" for statement in ROUTINE[kind])
    ini = make_project(tmp_path, url, [TYPE_CHANGE[0], ("r2", body)])
    assert run_dbguard(ini, None, "upgrade", "r1").returncode == 0
    plan = run_dbguard(ini, None, "--format", "json", "plan")
    assert plan.returncode == 0, describe(plan)
    (revision,) = json_out(plan)["revisions"]
    # One statement each: the definition whole (its end included), the call, the drop.
    assert [s["sql"] for s in revision["statements"]] == list(ROUTINE[kind]), revision
    up = run_dbguard(ini, None, "upgrade", "head")
    assert up.returncode == 0, describe(up)
    assert versions(url) == ["r2"]


# the intercepted force -------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["postgresql", "mysql"])
def test_forced_upgrade_over_failed_state_shows_blast_radius_first(kind: str, request: pytest.FixtureRequest,
                                                                   tmp_path: Path) -> None:
    url = request.getfixturevalue("pg_url" if kind == "postgresql" else "mysql_url")
    ini = example_ini(tmp_path, url)
    failed = run_dbguard(ini, None, "-x", "fail=1", "upgrade", "head")
    assert failed.returncode == 5, describe(failed)
    before_versions, before_tables = versions(url), table_names(url)

    for extra in ((), ("--confirm-risk", "confirm_risk"), ("--confirm-risk", "yes")):
        forced = run_dbguard(ini, None, "upgrade", "--force", *extra)
        assert forced.returncode == 3, describe(forced)
        err = forced.stderr
        assert "blast radius:" in err
        assert "failed at step 0004_audit_log_order_note" in err or "failed step 0004_audit_log_order_note" in err
        assert "would run: 0004_audit_log_order_note (up)" in err
        assert "plan of the pending revisions" in err and "revision 0004_audit_log_order_note" in err
        assert "table orders" in err  # the pending plan's summary: tables hit, with rows and size
        # the blast radius comes before the question
        assert err.index("blast radius:") < err.index("Type CONFIRM_RISK to proceed")
        assert versions(url) == before_versions and table_names(url) == before_tables

    if kind == "mysql":
        # MariaDB kept audit_log and orders.note (DDL is not transactional): the prompt says they are
        # live, and the plan says re-running 0004 will fail on them.
        assert "live now from 0004_audit_log_order_note: table audit_log, column orders.note" in err
        assert "DG114 creates-what-exists" in err
        # resolve asks for the same token: its blast radius says the same before asking
        resolve = run_dbguard(ini, None, "resolve", "--reason", "test")
        assert resolve.returncode == 3, describe(resolve)
        assert "live now from 0004_audit_log_order_note: table audit_log" in resolve.stderr
    else:
        # PostgreSQL rolled 0004 back; with the exact token the forced run goes ahead (without -x fail=1).
        assert "nothing 0004_audit_log_order_note creates is live" in err
        done = run_dbguard(ini, None, "upgrade", "--force", "--confirm-risk", "CONFIRM_RISK")
        assert done.returncode == 0, describe(done)
        assert versions(url) == ["0004_audit_log_order_note"]


def test_sqlite_plan_and_upgrade_skip_the_rules(sqlite_url: str, tmp_path: Path) -> None:
    ini = make_project(tmp_path, sqlite_url, [TYPE_CHANGE[0], ("r2", "op.add_column('items', sa.Column('x', sa.Text))")])
    assert run_dbguard(ini, None, "upgrade", "r1").returncode == 0
    planned = run_dbguard(ini, None, "plan")
    assert planned.returncode == 0 and "risk rules judge PostgreSQL and MySQL/MariaDB" in planned.stdout
    assert run_dbguard(ini, None, "upgrade").returncode == 0


def test_no_pending_revision_costs_no_plan(pg_url: str, tmp_path: Path) -> None:
    """The pre-flight plan is skipped when nothing is pending: a no-op upgrade never imports sqlglot
    (about 150 ms) or the planner, which keeps the foundation's overhead target."""
    import subprocess

    from tests.guardrun import cli_env, command

    ini = make_project(tmp_path, pg_url, TYPE_CHANGE[:1])
    assert run_dbguard(ini, None, "upgrade").returncode == 0
    cmd = command(ini, None, ["upgrade"])
    done = subprocess.run([cmd[0], "-X", "importtime", *cmd[1:]], capture_output=True, text=True, env=cli_env(),
                          cwd=tmp_path, check=False, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    imported = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if "import time:" in line}
    assert "sqlglot" not in imported and "dbguard.plan.planner" not in imported and "dbguard.risk.parse" not in imported


def test_offline_plan_says_where_offline_sql_differs(tmp_path: Path) -> None:
    ini = make_project(tmp_path, NO_DB, [
        ("d1", "op.create_table('t', sa.Column('id', sa.Integer, primary_key=True), sa.Column('n', sa.Integer))"),
        ("d2", ("rows = op.get_bind().execute(sa.text('SELECT count(*) FROM t')).scalar()\n"
                "op.create_index('ix_t_n', 't', ['n'])")),
        ("d3", "if not op.get_context().as_sql:\n    op.execute('UPDATE t SET n = 0')\nop.drop_column('t', 'n')"),
    ])
    planned = run_dbguard(ini, None, "plan", "--offline", "--from", "d1")
    assert planned.returncode == 2, describe(planned)  # d2 could not be planned (and d3's finding is medium)
    assert "uses op.get_bind()" in planned.stdout and "could not be rendered offline" in planned.stdout
    assert "DG107 destructive" in planned.stdout
