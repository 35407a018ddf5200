"""`dbguard plan --observe` (PostgreSQL): the pending revisions run in a scratch database through the
guarded run, and the locks and rewrites the server reports stand beside the plan's prediction.

The comparison is pure and tested first; then one real chain observes each kind of statement (in a
transaction, in an autocommit block, on two tables), a statement the parser cannot classify (DG116),
a revision that fails on the empty scratch database (not observed, no disagreement), and the
scratch database dropped whatever happened."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from dbguard.risk import observed as obs
from tests.guardrun import connect, describe, json_out, run_dbguard
from tests.projects import make_project

# --- the comparison, without a database ---------------------------------------------------------------


def test_agreeing_sides_give_no_finding_and_read_each_spelling() -> None:
    rows, findings = obs.compare(
        "r1",
        {"t": ("ACCESS EXCLUSIVE", True), "p": ("SHARE ROW EXCLUSIVE on p", False), "alembic_version": ("none", False)},
        {"t": ("AccessExclusiveLock", True), "p": ("ShareRowExclusiveLock", False),
         "alembic_version": ("RowExclusiveLock", False)},
        ignore=("alembic_version",))
    assert findings == ()
    assert [(r.table, r.predicted_lock, r.observed_lock, r.agrees) for r in rows] == [
        ("p", "SHARE ROW EXCLUSIVE", "SHARE ROW EXCLUSIVE", True), ("t", "ACCESS EXCLUSIVE", "ACCESS EXCLUSIVE", True)]


def test_a_plain_read_is_no_disagreement() -> None:
    # The plan does not predict the reads a statement makes (ACCESS SHARE conflicts only with ACCESS EXCLUSIVE).
    _, findings = obs.compare("r1", {}, {"p": ("AccessShareLock", False)})
    assert findings == ()
    _, findings = obs.compare("r1", {"t": ("ROW EXCLUSIVE + row locks", False)}, {"t": ("RowExclusiveLock", False)})
    assert findings == ()


@pytest.mark.parametrize(("predicted", "observed", "severity"), [
    (("none", False), ("ShareUpdateExclusiveLock", False), "low"),
    (("SHARE", False), ("ShareRowExclusiveLock", False), "medium"),
    (("none", False), ("AccessExclusiveLock", False), "high"),
    (("ACCESS EXCLUSIVE", False), ("ShareLock", False), "high"),  # the stronger side's severity
    (("ACCESS EXCLUSIVE", False), ("AccessExclusiveLock", True), "high"),  # an unpredicted rewrite
    (("ACCESS EXCLUSIVE", True), ("AccessExclusiveLock", False), "high"),
    (("ROW SHARE", False), ("RowExclusiveLock", False), "info"),
])
def test_a_disagreement_is_dg116_at_the_stronger_sides_severity(predicted: tuple[str, bool],
                                                                 observed: tuple[str, bool], severity: str) -> None:
    rows, findings = obs.compare("r9", {"t": predicted}, {"t": observed})
    assert len(findings) == 1 and not rows[0].agrees
    finding = findings[0]
    assert (finding.code, finding.name, finding.severity, finding.revision, finding.table) == (
        "DG116", "prediction-disagrees", severity, "r9", "t")
    assert "t" in finding.message


def test_a_table_on_one_side_only_is_compared_with_none() -> None:
    rows, findings = obs.compare("r1", {"t": ("SHARE", False)}, {})
    assert rows[0].observed_lock == "none" and findings[0].severity == "medium"
    assert "predicted SHARE, the server took none" in findings[0].message


# --- a real chain on PostgreSQL ----------------------------------------------------------------------------

CHAIN = [
    ("b0", ("op.create_table('parent', sa.Column('id', sa.Integer, primary_key=True))\n"
           "op.create_table('child', sa.Column('id', sa.Integer, primary_key=True), sa.Column('pid', sa.Integer), "
           "sa.Column('n', sa.Integer))")),
    ("r1", "op.add_column('child', sa.Column('note', sa.Text, nullable=True))"),
    ("r2", "op.alter_column('child', 'n', type_=sa.BigInteger(), existing_type=sa.Integer())"),
    ("r3", "op.create_index('ix_child_n', 'child', ['n'])"),
    ("r4", ("with op.get_context().autocommit_block():\n"
           "    op.create_index('ix_child_pid', 'child', ['pid'], postgresql_concurrently=True)")),
    ("r5", "op.create_foreign_key('fk_child_parent', 'child', 'parent', ['pid'], ['id'])"),
    # Not understood by the parser (predicted: no lock); the server takes SHARE UPDATE EXCLUSIVE.
    ("r6", "op.execute('ALTER TABLE child ALTER COLUMN n SET STATISTICS 100')"),
    # Fails on the empty scratch database: not observed, and the run stops there.
    ("r7", "op.execute('SELECT 1/0')"),
    ("r8", "op.add_column('child', sa.Column('z', sa.Text, nullable=True))"),
]

EXPECTED = {  # revision -> {table: (lock, rewrite)}, as both the plan and the server have it
    "r1": {"child": ("ACCESS EXCLUSIVE", False)},
    "r2": {"child": ("ACCESS EXCLUSIVE", True)},
    "r3": {"child": ("SHARE", False)},
    "r4": {"child": ("SHARE UPDATE EXCLUSIVE", False)},
    "r5": {"child": ("SHARE ROW EXCLUSIVE", False), "parent": ("SHARE ROW EXCLUSIVE", False)},
}


def _scratch_databases(server_url: str, name: str) -> list[str]:
    with connect(server_url) as conn:
        return [r[0] for r in conn.execute(sa.text("SELECT datname FROM pg_database WHERE datname = :n"), {"n": name})]


@pytest.mark.integration
def test_observe_a_chain_on_postgresql(pg_url: str, pg_server_url: str, tmp_path: Path) -> None:
    ini = make_project(tmp_path, pg_url, CHAIN)
    assert run_dbguard(ini, None, "upgrade", "b0").returncode == 0

    done = run_dbguard(ini, None, "--format", "json", "plan", "--observe")
    doc = json_out(done)
    assert done.returncode == 0, describe(done)  # DG116 here is low: under fail_on high
    observation = doc["observed"]
    assert observation["status"] == "observed", observation
    by_revision = {r["revision"]: r for r in observation["revisions"]}
    for revision, tables in EXPECTED.items():
        seen = by_revision[revision]
        assert seen["status"] == "observed", seen
        got = {t["table"]: (t["observed_lock"], t["observed_rewrite"]) for t in seen["tables"]}
        predicted = {t["table"]: (t["predicted_lock"], t["predicted_rewrite"]) for t in seen["tables"]}
        assert got == tables, (revision, seen)
        assert predicted == tables, (revision, seen)
    codes = {r["revision"]: [f["code"] for f in r["findings"]] for r in doc["revisions"]}
    assert all("DG116" not in codes[r] for r in EXPECTED), codes

    # A statement the parser does not understand: the server's lock disagrees with "none".
    r6 = by_revision["r6"]["tables"]
    assert [(t["table"], t["predicted_lock"], t["observed_lock"]) for t in r6] == [
        ("child", "none", "SHARE UPDATE EXCLUSIVE")]
    dg116 = [f for r in doc["revisions"] for f in r["findings"] if f["code"] == "DG116"]
    assert [(f["revision"], f["table"], f["severity"]) for f in dg116] == [("r6", "child", "low")]
    assert observation["disagreements"] == 1
    # The summary counts what the scratch run found with the rest.
    every = [f["severity"] for r in doc["revisions"] for f in r["findings"]]
    assert doc["summary"]["findings"] == {s: every.count(s) for s in set(every)}

    # The revision that fails on the empty database is not observed, and never a disagreement.
    assert by_revision["r7"]["status"] == "not observed"
    assert "division by zero" in by_revision["r7"]["reason"]
    assert by_revision["r8"]["status"] == "not observed" and by_revision["r8"]["tables"] == []
    assert "DG116" not in codes["r7"] + codes["r8"]

    # The scratch database is gone; the target is where it was.
    assert observation["where"].startswith("dbguard_shadow_")
    assert _scratch_databases(pg_server_url, observation["where"]) == []
    with connect(pg_url) as conn:
        assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar() == "b0"

    # The text form sets observed beside predicted; --fail-on low makes DG116 fail the plan.
    text = run_dbguard(ini, None, "plan", "--observe", "--fail-on", "low")
    assert text.returncode == 1, describe(text)
    assert "child: predicted SHARE UPDATE EXCLUSIVE, observed SHARE UPDATE EXCLUSIVE; rewrite no/no: agrees" \
        in text.stdout
    assert "DISAGREES (DG116)" in text.stdout and "r7: not observed: it failed in the scratch database" in text.stdout


@pytest.mark.integration
def test_offline_observe_in_a_shadow_database(pg_url: str, pg_server_url: str, tmp_path: Path) -> None:
    """``plan --offline --observe --shadow-url``: the target is never touched, the shadow is."""
    ini = make_project(tmp_path, "postgresql+psycopg://nobody@invalid.invalid:1/none", CHAIN[:4])
    missing = run_dbguard(ini, None, "plan", "--offline", "--from", "b0", "--observe")
    assert missing.returncode == 2 and "--shadow-url" in missing.stderr, describe(missing)

    done = run_dbguard(ini, None, "--format", "json", "plan", "--offline", "--from", "b0", "--observe",
                       "--shadow-url", pg_url)
    doc = json_out(done)
    # Offline, size unknown: DG102 (high) fails the plan as without --observe; the observation agrees.
    assert done.returncode == 1 and doc["observed"]["disagreements"] == 0, describe(done)
    seen = {r["revision"]: {t["table"]: (t["observed_lock"], t["observed_rewrite"]) for t in r["tables"]}
            for r in doc["observed"]["revisions"]}
    assert seen == {r: EXPECTED[r] for r in ("r1", "r2", "r3")}


@pytest.mark.integration
def test_no_scratch_database_without_create_database(pg_url: str, pg_server_url: str, tmp_path: Path) -> None:
    """Without CREATE DATABASE an explicit --observe exits 2; asked for as an extra, the plan says
    "not observed" and keeps its exit code."""
    from dbguard.plan import observe, planner
    from dbguard.run.guard import guarded_run
    from dbguard.settings import Settings
    from dbguard.target import load_target, open_session

    role = f"dbguard_nocreate_{uuid.uuid4().hex[:8]}"
    with connect(pg_server_url) as conn:
        conn.exec_driver_sql(f"CREATE ROLE {role} LOGIN NOCREATEDB")
    try:
        limited = sa.make_url(pg_url).set(username=role, password=None).render_as_string(hide_password=False)
        ini = make_project(tmp_path, pg_url, CHAIN[:2])
        assert run_dbguard(ini, None, "upgrade", "b0").returncode == 0
        with connect(pg_url) as conn:  # a reader of the target: the plan reads alembic_version
            conn.exec_driver_sql(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}")
        refused = run_dbguard(ini, limited, "plan", "--observe")
        assert refused.returncode == 2, describe(refused)
        assert "cannot create a scratch database" in refused.stderr and "Traceback" not in refused.stderr

        target = load_target(Settings(config_path=ini, url=limited))
        report = planner.plan(target)
        with open_session(target) as session:
            quiet = observe.observe(target, report, "head", guarded_run, session=session,
                                    explicit=False)
        assert quiet.observed.status == "not observed" and "cannot create a scratch database" in quiet.observed.reason
        assert quiet.exit_code == report.exit_code
    finally:
        with connect(pg_url) as conn:
            conn.exec_driver_sql(f"DROP OWNED BY {role}")
        with connect(pg_server_url) as conn:
            conn.exec_driver_sql(f"DROP ROLE IF EXISTS {role}")


@pytest.mark.integration
def test_upgrade_observes_in_its_pre_flight_with_plan_observe(pg_url: str, tmp_path: Path) -> None:
    """``plan_observe = true``: a disagreement gates the upgrade like any finding."""
    ini = make_project(tmp_path, pg_url, [CHAIN[0], CHAIN[6]])  # r6: predicted none, observed SHARE UPDATE EXCLUSIVE
    assert run_dbguard(ini, None, "upgrade", "b0").returncode == 0
    (ini.parent / "pyproject.toml").write_text('[tool.dbguard]\nfail_on = "low"\nplan_observe = true\n')
    refused = run_dbguard(ini, None, "upgrade")
    assert refused.returncode == 3, describe(refused)
    assert "DG116" in refused.stdout
    with connect(pg_url) as conn:
        assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar() == "b0"

    (ini.parent / "pyproject.toml").write_text('[tool.dbguard]\nfail_on = "low"\n')
    done = run_dbguard(ini, None, "upgrade")
    assert done.returncode == 0, describe(done)


def test_a_disagreement_is_weighed_by_the_live_tables_rows_and_size() -> None:
    from dbguard.errors import ExitCode
    from dbguard.plan.observe import _weighed
    from dbguard.results import PlanReport
    from dbguard.risk.plan import PlanSummary, TableSummary

    _, (finding,) = obs.compare("r1", {"t": ("none", False)}, {"t": ("ACCESS EXCLUSIVE", False)})
    assert finding.severity == "high"

    def report(mode: str, rows: int | None, size: int | None) -> PlanReport:
        table = TableSummary(table="t", new=False, rows=rows, size_bytes=size, strongest_lock="none", blocks="nothing")
        summary = PlanSummary(tables=(table,), rows_under_exclusive_lock=0, tables_of_unknown_size=0, destructive=(),
                              worst_hold_s=None, worst_hold="none", worst_hold_at=None, findings={}, max_severity=None)
        return PlanReport(mode=mode, server="PostgreSQL 15", engine="postgresql", from_revisions=(), to_revision="r1",
                          revisions=(), summary=summary, fail_on="high", failing=0, exit_code=ExitCode.OK)

    assert _weighed(finding, report("live", 0, 0)).severity == "low"  # an empty table: nobody waits long
    assert _weighed(finding, report("live", 500, 64 * 1024)).severity == "medium"
    assert _weighed(finding, report("live", 5_000_000, 2 << 30)).severity == "high"
    assert _weighed(finding, report("offline", None, None)).severity == "high"  # no facts: the stronger side's


@pytest.mark.integration
@pytest.mark.parametrize("command", ["plan", "upgrade"])
def test_ctrl_c_during_the_observation_stops_the_command_before_the_target_is_touched(
        command: str, pg_url: str, pg_server_url: str, tmp_path: Path) -> None:
    """The scratch run records its interruption as any run does; the command must stop, not read it as
    a failed revision (and an upgrade's pre-flight must not go on to migrate the target)."""
    import signal
    import subprocess

    from tests.guardrun import cli_env
    from tests.guardrun import command as dbguard_command
    from tests.projects import wait_for

    ini = make_project(tmp_path, pg_url, [CHAIN[0], ("r1", "op.execute('SELECT pg_sleep(60)')")])
    assert run_dbguard(ini, None, "upgrade", "b0").returncode == 0
    (ini.parent / "pyproject.toml").write_text('[tool.dbguard]\nplan_observe = true\nfail_on = "critical"\n')
    args = ["plan", "--observe"] if command == "plan" else ["upgrade"]
    proc = subprocess.Popen(dbguard_command(ini, None, args), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=cli_env(), cwd=ini.parent)

    # Each test's own scratch database: its migration is the only one sleeping as this project's r1 does.
    marker = f"SELECT pg_sleep(60) -- {uuid.uuid4().hex}"
    revision = next((ini.parent / "migrations" / "versions").glob("r1*.py"))
    revision.write_text(revision.read_text().replace("SELECT pg_sleep(60)", marker))
    scratch: list[str] = []

    def sleeping_in_a_scratch_database() -> bool:
        with connect(pg_server_url) as conn:
            scratch[:] = [r[0] for r in conn.execute(sa.text(
                "SELECT datname FROM pg_stat_activity WHERE datname LIKE 'dbguard_shadow_%' AND query = :q"),
                {"q": marker})]
        return bool(scratch)

    try:
        wait_for(lambda: sleeping_in_a_scratch_database() or proc.poll() is not None, timeout=60,
                 message="the observation never reached the sleep")
        assert proc.poll() is None, proc.communicate()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, (out, err)
    with connect(pg_url) as conn:
        assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar() == "b0"
    assert _scratch_databases(pg_server_url, scratch[0]) == []
