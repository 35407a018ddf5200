"""The emergency lane on real PostgreSQL and MariaDB: `dbguard rollback` clears its own way back to
the last good revision, where plain `alembic downgrade` waits behind the same application session;
a half-applied MariaDB revision is undone op by op; the lane asks before it acts, reports instead
of ending sessions when told to, and never moves forward.

Waits are on observable conditions (a session shows as waiting, a ledger row, a process exit) with
deadlines; how long the lane takes against plain Alembic is benchmarks/rollback_bench.py's business.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.lanekit import (
    AppSession,
    Cleanup,
    Server,
    catalog,
    columns,
    dbguard,
    describe,
    example_ini,
    indexes,
    json_out,
    ledger,
    rows,
    table_names,
    versions,
)
from tests.projects import make_project

pytestmark = pytest.mark.integration

GOOD = "0002_orders"
APPLIED_BEFORE_FAILURE = "0003_last_login_status_index"
ENGINES = [pytest.param("postgresql", id="postgresql"), pytest.param("mysql", id="mysql")]


def _urls(request: pytest.FixtureRequest, engine: str) -> tuple[str, str]:
    """(a fresh database, its server's admin URL)."""
    if engine == "postgresql":
        return request.getfixturevalue("pg_url"), request.getfixturevalue("pg_server_url")
    return request.getfixturevalue("mysql_url"), request.getfixturevalue("mysql_server_url")


def _state(ini: Path) -> dict:
    proc = dbguard(ini, "--format", "json", "status")
    return json_out(proc)


@pytest.mark.slow
@pytest.mark.parametrize("engine", ENGINES)
def test_incident_drill_rollback_clears_its_way(engine: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """The rollback ends the application session its downgrade waits for (plain `alembic downgrade`
    waits behind it for as long as it stays: benchmarks/rollback_bench.py times both)."""
    url, _server_url = _urls(request, engine)
    cleanup = Cleanup()
    try:
        guarded = example_ini(tmp_path / "guarded", url)
        server = cleanup.add(Server(url))

        # 0002 good, then a deploy whose 0004 fails after 0003 went in.
        assert (p := dbguard(guarded, "upgrade", GOOD)).returncode == 0, describe(p)
        p = dbguard(guarded, "-x", "fail=1", "upgrade", "head")
        assert p.returncode == 5, describe(p)
        assert versions(url) == [APPLIED_BEFORE_FAILURE]
        if engine == "mysql":  # 0004 half-applied: its DDL before the failure stayed
            assert "audit_log" in table_names(url) and "note" in columns(url, "orders")
        app = cleanup.add(AppSession(url, "users"))
        p = dbguard(guarded, "upgrade", "head")
        assert p.returncode == 3, describe(p)

        p = dbguard(guarded, "--format", "json", "rollback", "--yes")
        assert p.returncode == 0, describe(p)

        # dbguard's database: back at 0002, nothing of 0003/0004 live, the blocker ended and audited.
        result = json_out(p)
        assert not server.alive(app.id)
        assert versions(url) == [GOOD]
        assert "audit_log" not in table_names(url)
        assert "last_login_at" not in columns(url, "users")
        assert "note" not in columns(url, "orders")
        assert "ix_orders_status_created" not in indexes(url, "orders")
        assert _state(guarded)["state"] == "HEALTHY"
        runs, _steps = ledger(url)
        failed = [r for r in runs if r["intent"] == "upgrade" and r["failed_step"]]
        assert [r["status"] for r in failed] == ["rolled_back"]
        assert runs[-1]["intent"] == "rollback" and runs[-1]["status"] == "succeeded"
        kills = rows(url, "SELECT victim_session, action, outcome, run_id FROM dbguard_kills")
        assert [k["victim_session"] for k in kills] == [app.id], kills
        assert kills[0]["run_id"] == runs[-1]["id"]
        # The output lists what was ended and how long each phase took.
        assert [e["session"]["session_id"] for e in result["ended_sessions"]] == [app.id], result
        assert [name for name, _ms in result["phases"]][-1] == "total"
    finally:
        cleanup.close()


# A small project: t, then t.c, then a revision that fails. --------------------------------------

T = ("r1_t", 'op.create_table("t", sa.Column("id", sa.Integer, primary_key=True), sa.Column("name", sa.String(20)))',
     'op.drop_table("t")')
T_C = ("r2_t_c", 'op.add_column("t", sa.Column("c", sa.Integer))', 'op.drop_column("t", "c")')
FAILS = ("r3_fails", 'op.execute("SELECT * FROM dbguard_missing_table")', "pass")
QUICK = {"DBGUARD_LOCK_TIMEOUT_MS": "1000"}


def _kills(url: str) -> int:
    if "dbguard_kills" not in table_names(url):
        return 0
    return int(rows(url, "SELECT COUNT(*) AS n FROM dbguard_kills")[0]["n"])


def _failed_deploy(tmp_path: Path, url: str) -> Path:
    """r1 deployed; then a deploy of r2 (applied) and r3 (failed). The rollback's target is r1."""
    ini = make_project(tmp_path, url, [T, T_C, FAILS])
    assert (p := dbguard(ini, "upgrade", T[0])).returncode == 0, describe(p)
    assert (p := dbguard(ini, "upgrade", "head")).returncode == 5, describe(p)
    assert versions(url) == [T_C[0]]
    return ini


@pytest.mark.slow
@pytest.mark.parametrize("engine", ENGINES)
def test_rollback_asks_first_never_moves_forward_and_reports_when_told(
        engine: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """One failed deploy, one application session on t, three ways the lane holds back (one setup,
    to keep the suite fast)."""
    url, _server_url = _urls(request, engine)
    ini = _failed_deploy(tmp_path, url)
    cleanup = Cleanup()
    try:
        server = cleanup.add(Server(url))
        app = cleanup.add(AppSession(url, "t"))
        before = catalog(url)
        runs_before, _ = ledger(url)

        # No terminal and no --yes: refused, and nothing changed (the blocker is not touched either).
        p = dbguard(ini, "rollback")
        assert p.returncode == 3, describe(p)
        assert "--yes" in p.stderr
        assert "r1_t" in p.stderr  # the plan it showed names the target
        assert catalog(url) == before and versions(url) == [T_C[0]]
        assert server.alive(app.id)
        runs, _ = ledger(url)
        assert [r["status"] for r in runs[len(runs_before):]] == ["refused"]
        assert runs[len(runs_before) - 1]["status"] == "failed"
        assert _kills(url) == 0

        # A rollback never moves forward: r3 is above where the database is.
        p = dbguard(ini, "rollback", "--yes", "--to", FAILS[0])
        assert p.returncode == 2, describe(p)
        lines = [line for line in p.stderr.splitlines() if line.strip()]
        assert lines and "never moves forward" in lines[-1], p.stderr
        assert "use `dbguard upgrade`" in lines[-1]
        assert catalog(url) == before and versions(url) == [T_C[0]]
        assert server.alive(app.id)

        # --no-kill-blockers: the blocker is only reported; the run fails once its budget is spent.
        p = dbguard(ini, "rollback", "--yes", "--no-kill-blockers", "--budget", "3", env=QUICK)
        assert p.returncode == 5, describe(p)
        assert app.id in p.stdout + p.stderr  # the blocker is named
        assert "--no-kill-blockers" in p.stdout + p.stderr
        assert server.alive(app.id)
        assert versions(url) == [T_C[0]] and "c" in columns(url, "t")
        assert _kills(url) == 0
        runs, steps = ledger(url)
        assert runs[-1]["intent"] == "rollback" and runs[-1]["status"] == "failed"
        # Each try waited the lock timeout the server was given and ended on it, the last one on the
        # budget if it was still waiting when the budget was spent.
        (step,) = [s for s in steps if s["run_id"] == runs[-1]["id"]]
        assert step["status"] == "failed" and step["attempts"] >= 1
        assert any(words in step["error"].lower() for words in ("lock timeout", "lock wait timeout",
                                                                "time budget (3 s) was spent")), step

        # A statement still waiting when the budget is spent is cancelled: the budget bounds the run,
        # not only when the next try may start (here the lock wait handed over is far longer).
        p = dbguard(ini, "rollback", "--yes", "--no-kill-blockers", "--budget", "1", "--lock-timeout", "120000")
        assert p.returncode == 5, describe(p)
        assert server.alive(app.id) and versions(url) == [T_C[0]] and "c" in columns(url, "t")
        runs, _ = ledger(url)
        assert runs[-1]["status"] == "failed" and runs[-1]["error_class"] == "BudgetSpent", runs[-1]
        assert "time budget (1 s) was spent" in runs[-1]["error"], runs[-1]
    finally:
        cleanup.close()


# MariaDB: a revision left half-applied ---------------------------------------------------------

PARTIAL = (
    "r2_partial",
    """
    op.create_table("t2", sa.Column("id", sa.Integer, primary_key=True))
    op.add_column("t", sa.Column("c1", sa.Integer))
    op.execute("SELECT * FROM dbguard_missing_table")
    op.add_column("t", sa.Column("c2", sa.Integer))
    """,
    """
    op.drop_column("t", "c2")
    op.drop_column("t", "c1")
    op.drop_table("t2")
    """,
)


def test_mariadb_partial_revision_is_undone_op_by_op(mysql_url: str, tmp_path: Path) -> None:
    ini = make_project(tmp_path, mysql_url, [T, PARTIAL])
    assert (p := dbguard(ini, "upgrade", T[0])).returncode == 0, describe(p)
    good = catalog(mysql_url)
    assert (p := dbguard(ini, "upgrade", "head")).returncode == 5, describe(p)
    runs, steps = ledger(mysql_url)
    assert [(s["revision"], s["status"]) for s in steps if s["run_id"] == runs[-1]["id"]] == [
        ("r2_partial", "partial")]
    assert versions(mysql_url) == [T[0]]
    assert "t2" in table_names(mysql_url) and "c1" in columns(mysql_url, "t")  # half of r2 is live
    # Plain `alembic downgrade` cannot undo it: alembic_version says r1, so there is nothing to run.

    p = dbguard(ini, "rollback", "--yes")
    assert p.returncode == 0, describe(p)
    assert versions(mysql_url) == [T[0]]
    assert catalog(mysql_url) == good  # nothing of r2 left: no t2, no t.c1
    runs, steps = ledger(mysql_url)
    repair = [s for s in steps if s["run_id"] == runs[-1]["id"]]
    assert [(s["revision"], s["direction"], s["status"]) for s in repair] == [("r2_partial", "down", "succeeded")]
    notes = json.loads(repair[0]["notes"])
    assert notes["applied"] == ["DropColumn(t.c1)", "DropTable(t2)"]
    assert notes["already_undone"] == ["DropColumn(t.c2)"]
    assert [r["status"] for r in runs if r["intent"] == "upgrade"] == ["succeeded", "rolled_back"]
    assert json_out(dbguard(ini, "--format", "json", "status"))["state"] == "HEALTHY"


def test_mariadb_partial_revision_that_cannot_be_checked_is_refused_before_anything_runs(
        mysql_url: str, tmp_path: Path) -> None:
    """An operation of the downgrade that cannot be checked refuses the undo up front (exit 3), as it
    refuses the re-run of a failed downgrade: found half-way, it stopped a repair that had already
    applied the operations before it (airflow's undo added a temporary column its upgrade never
    reached, then stopped at the UPDATE that fills it)."""
    downgrade = 'op.add_column("t", sa.Column("c_tmp", sa.Integer))\nop.execute("DROP TABLE t2")\nop.drop_column("t", "c1")'
    unclear = (PARTIAL[0], PARTIAL[1], downgrade)
    ini = make_project(tmp_path, mysql_url, [T, unclear])
    assert (p := dbguard(ini, "upgrade", T[0])).returncode == 0, describe(p)
    assert (p := dbguard(ini, "upgrade", "head")).returncode == 5, describe(p)
    left = catalog(mysql_url)
    p = dbguard(ini, "rollback", "--yes")
    assert p.returncode == 3, describe(p)
    assert "ExecuteSQL" in p.stdout + p.stderr and "r2_partial" in p.stdout + p.stderr
    # Nothing ran: the database is as the failed upgrade left it (no c_tmp, t2 and c1 still there).
    assert catalog(mysql_url) == left and "c_tmp" not in columns(mysql_url, "t")
    runs, _ = ledger(mysql_url)
    assert runs[-1]["intent"] == "rollback" and runs[-1]["status"] == "refused"


# A downgrade of several revisions that fails part way ----------------------------------------------

# r2's downgrade drops its column, then fails: MariaDB and SQLite keep the drop (the step is partial),
# PostgreSQL rolls it back.
DOWN_FAILS = ("r2_t_c", 'op.add_column("t", sa.Column("c", sa.Integer))',
              'op.drop_column("t", "c"); op.execute("SELECT * FROM dbguard_missing_table")')
T_D = ("r3_t_d", 'op.add_column("t", sa.Column("d", sa.Integer))', 'op.drop_column("t", "d")')


def test_a_downgrade_that_failed_part_way_has_a_way_out_that_works(db_url: str, tmp_path: Path) -> None:
    """`downgrade base` from r3 fails at r2 after undoing r3: the last verified state (r3) is above the
    database, and a rollback never moves forward. The way out status names is a rollback that stays at
    r2, puts back what r2's failed downgrade undid, checks the schema, and closes the breaker; an
    upgrade then goes back up. It used to name a rollback to r3 that exited 2 ("never moves forward")
    while the breaker refused the upgrade: no way out but a hand repair."""
    ini = make_project(tmp_path, db_url, [T, DOWN_FAILS, T_D])
    assert (p := dbguard(ini, "upgrade", DOWN_FAILS[0])).returncode == 0, describe(p)
    at_r2 = catalog(db_url)
    assert (p := dbguard(ini, "upgrade", "head")).returncode == 0, describe(p)
    down = dbguard(ini, "downgrade", "base")
    assert down.returncode == 5, describe(down)
    assert versions(db_url) == [DOWN_FAILS[0]] and "d" not in columns(db_url, "t")

    status = dbguard(ini, "--format", "json", "status")
    assert status.returncode == 3, describe(status)
    advice = json_out(status)["advice"]
    assert "`dbguard rollback`" in advice and DOWN_FAILS[0] in advice and f"`dbguard upgrade {T_D[0]}`" in advice

    back = dbguard(ini, "rollback", "--yes")
    assert back.returncode == 0, describe(back)
    assert versions(db_url) == [DOWN_FAILS[0]]
    assert catalog(db_url) == at_r2  # c is back where the failed step had dropped it
    assert "alembic_version and schema checked" in back.stdout, describe(back)  # against run 1's reference
    after = json_out(dbguard(ini, "--format", "json", "status"))
    assert after["state"] == "HEALTHY", after
    runs, _ = ledger(db_url)
    assert [r["status"] for r in runs if r["intent"] == "downgrade"] == ["rolled_back"]
    assert (p := dbguard(ini, "upgrade", "head")).returncode == 0, describe(p)
    assert versions(db_url) == [T_D[0]] and "d" in columns(db_url, "t")
