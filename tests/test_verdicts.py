"""Verified verdicts on real PostgreSQL, MariaDB and SQLite: a run ends HEALTHY (exit 0) only when
alembic_version says what it recorded and the live schema equals the reference schema stored at
those revisions, whatever on_drift says; the rollback lane always has a way out (the last state
whose checks passed, however many failed runs followed it), partial steps repaired in both
directions; and what cannot be undone is named, never passed for a success.

The runs are in process (``dbguard.api``) where the command line adds nothing; the ledger, the
version table and the catalog are read on connections of the test's own.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa

from dbguard import api
from dbguard.core.breaker import CONFIRM_TOKEN
from dbguard.settings import load_settings
from tests.dbs import backend_of
from tests.guardrun import (
    column_names,
    connect,
    describe,
    json_out,
    ledger,
    run_dbguard,
    table_names,
    versions,
)
from tests.projects import make_project, render_revision

T = ("r1_t", 'op.create_table("t", sa.Column("id", sa.Integer, primary_key=True), sa.Column("name", sa.String(20)))',
     'op.drop_table("t")')
FAILS = ("r9_fails", 'op.execute("SELECT * FROM dbguard_missing_table")', "pass")


def settings(ini: Path, url: str, *x: str, **more):
    return load_settings({"config_path": str(ini), "url": url, "x_args": x, "lock_timeout_ms": 1000,
                          "retry_backoff_ms": 50, "retry_backoff_max_ms": 100, **more}, environ={})


def yes(prompt) -> str:
    return prompt.token


def confirmed(_prompt) -> str:
    return CONFIRM_TOKEN


def runs_of(url: str) -> list[dict]:
    return [r for r in ledger(url)[0] if r["status"] not in ("refused", "busy")]


def execute(url: str, *statements: str) -> None:
    with connect(url) as conn:
        for statement in statements:
            conn.exec_driver_sql(statement)


# a no-op downgrade() of a half-applied revision -----------------------------------------------------------

HALF = ("r2_half", """
op.create_table("t2", sa.Column("id", sa.Integer, primary_key=True))
op.add_column("t", sa.Column("c", sa.Integer))
op.execute("SELECT * FROM dbguard_missing_table")
""", "pass")


def test_a_no_op_downgrade_never_passes_for_a_rollback(db_url: str, tmp_path: Path) -> None:
    """MariaDB and SQLite keep what r2 did before it failed; r2's downgrade() is `pass`. The
    rollback's repair finds nothing to run, and its end check names what is still live instead of
    calling it HEALTHY. PostgreSQL rolled r2 back whole: the rollback verifies and succeeds."""
    ini = make_project(tmp_path, db_url, [T, HALF])
    assert api.upgrade(settings(ini, db_url), "r1_t").exit_code == 0
    failed = api.upgrade(settings(ini, db_url))
    assert failed.exit_code == 5 and versions(db_url) == ["r1_t"]

    p = run_dbguard(ini, db_url, "--format", "json", "rollback", "--yes")
    result = json_out(p)
    if backend_of(db_url) == "postgresql":
        assert p.returncode == 0, describe(p)
        assert result["schema_check"] == "verified"
        assert json_out(run_dbguard(ini, db_url, "--format", "json", "status"))["state"] == "HEALTHY"
        return
    assert p.returncode == 5, describe(p)
    assert "t2" in result["error"] and "t.c" in result["error"], result["error"]
    assert result["schema_check"] == "differs"
    status = run_dbguard(ini, db_url, "--format", "json", "status")
    assert status.returncode == 3, describe(status)
    report = json_out(status)
    assert report["state"] == "FAILED"
    # Another rollback cannot remove what no downgrade created: the advice is the repair and resolve.
    assert "resolve" in report["advice"] and "dbguard rollback`" not in report["advice"], report["advice"]

    # The repair by hand, then resolve: checked against the reference at r1, HEALTHY and verified.
    execute(db_url, "DROP TABLE t2", "ALTER TABLE t DROP COLUMN c")
    done = api.resolve(settings(ini, db_url), "dropped r2's leftovers", confirm=confirmed)
    assert done.exit_code == 0, done
    assert done.schema_check == "verified"
    after = json_out(run_dbguard(ini, db_url, "--format", "json", "status"))
    assert after["state"] == "HEALTHY" and after["schema_verified"] is True


# a failed rollback, then another one; a partial down-step finished --------------------------------------

CHAIN = [
    T,
    ("r2_c", 'op.add_column("t", sa.Column("c", sa.Integer))', """
import os
op.create_table("marker", sa.Column("id", sa.Integer, primary_key=True))
if os.environ.get("DBGUARD_TEST_FAIL_DOWN"):
    op.execute("SELECT * FROM dbguard_missing_table")
op.drop_table("marker")
op.drop_column("t", "c")
"""),
    ("r3_t3", 'op.create_table("t3", sa.Column("id", sa.Integer, primary_key=True))', 'op.drop_table("t3")'),
    FAILS,
]


def test_a_failed_rollback_is_followed_by_one_that_reaches_the_last_verified_state(
        db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """upgrade fails, the rollback fails half-way through r2's downgrade (on MariaDB and SQLite its
    first DDL stays: a partial down-step), a second rollback finishes r2's downgrade op by op and
    reaches r1, the last verified state; every failed run is then rolled back."""
    ini = make_project(tmp_path, db_url, CHAIN)
    assert api.upgrade(settings(ini, db_url), "r1_t").exit_code == 0
    assert api.upgrade(settings(ini, db_url)).exit_code == 5
    assert versions(db_url) == ["r3_t3"]

    monkeypatch.setenv("DBGUARD_TEST_FAIL_DOWN", "1")
    first = api.rollback(settings(ini, db_url), confirm=yes)
    monkeypatch.delenv("DBGUARD_TEST_FAIL_DOWN")
    assert first.exit_code == 5, first
    assert versions(db_url) == ["r2_c"]  # r3 went down; r2's downgrade failed
    partial = backend_of(db_url) != "postgresql"
    assert ("marker" in table_names(db_url)) is partial

    second = api.rollback(settings(ini, db_url), confirm=yes)
    assert second.exit_code == 0, second
    assert second.schema_check == "verified"
    # Phases are each one's own duration, the total the whole.
    phases = dict(second.phases)
    assert list(phases) == ["run lock", "pre-flight", "downgrade", "total"]
    assert sum(ms for name, ms in second.phases if name != "total") <= phases["total"]
    assert versions(db_url) == ["r1_t"]
    assert "c" not in column_names(db_url, "t") and {"marker", "t3"}.isdisjoint(table_names(db_url))
    runs = runs_of(db_url)
    assert [(r["intent"], r["status"]) for r in runs] == [
        ("upgrade", "succeeded"), ("upgrade", "rolled_back"), ("rollback", "rolled_back"), ("rollback", "succeeded")]
    assert runs[-1]["to_revision"] == "r1_t" and runs[-1]["revisions_after"] == "r1_t"
    if partial:
        steps = [s for s in ledger(db_url)[1] if s["run_id"] == runs[-1]["id"]]
        assert steps[0]["revision"] == "r2_c" and steps[0]["status"] == "succeeded"
        assert json.loads(steps[0]["notes"])["repaired"] == "finished a half-done downgrade"
    assert api.status(settings(ini, db_url)).schema_verified


def test_rollback_to_base_through_a_partial_down_step(db_url: str, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    ini = make_project(tmp_path, db_url, CHAIN[:3])
    assert api.upgrade(settings(ini, db_url)).exit_code == 0
    monkeypatch.setenv("DBGUARD_TEST_FAIL_DOWN", "1")
    failed = api.rollback(settings(ini, db_url), "base", confirm=yes)
    monkeypatch.delenv("DBGUARD_TEST_FAIL_DOWN")
    assert failed.exit_code == 5 and versions(db_url) == ["r2_c"]
    done = api.rollback(settings(ini, db_url), "base", confirm=yes)
    assert done.exit_code == 0, done
    assert done.schema_check == "verified"  # against the empty schema dbguard first found
    assert versions(db_url) == []
    assert {t for t in table_names(db_url) if not t.startswith("dbguard_")} <= {"alembic_version"}


# merge and empty revisions ---------------------------------------------------------------------------------


def test_merge_and_empty_revisions_in_a_rolled_back_range_are_no_failures(db_url: str, tmp_path: Path) -> None:
    ini = make_project(tmp_path, db_url, [T])
    versions_dir = ini.parent / "migrations" / "versions"
    (versions_dir / "r2a.py").write_text(render_revision(
        "r2a", "r1_t", 'op.create_table("a", sa.Column("id", sa.Integer, primary_key=True))', 'op.drop_table("a")'))
    (versions_dir / "r2b.py").write_text(render_revision(
        "r2b", "r1_t", 'op.create_table("b", sa.Column("id", sa.Integer, primary_key=True))', 'op.drop_table("b")'))
    (versions_dir / "r3_merge.py").write_text(render_revision("r3_merge", ("r2a", "r2b")))
    (versions_dir / "r4_empty.py").write_text(render_revision("r4_empty", "r3_merge"))
    (versions_dir / "r5_fails.py").write_text(render_revision("r5_fails", "r4_empty", FAILS[1]))
    assert api.upgrade(settings(ini, db_url), "r1_t").exit_code == 0
    assert api.upgrade(settings(ini, db_url)).exit_code == 5
    assert versions(db_url) == ["r4_empty"]
    done = api.rollback(settings(ini, db_url), confirm=yes)
    assert done.exit_code == 0, done
    assert done.schema_check == "verified" and versions(db_url) == ["r1_t"]
    assert {"a", "b"}.isdisjoint(table_names(db_url))
    # Forward again through the merge, and down one: a merge or an empty revision is no failure.
    again = api.upgrade(settings(ini, db_url), "r4_empty")
    assert again.exit_code == 0 and again.schema_check == "first", again
    down = api.downgrade(settings(ini, db_url), "r3_merge")
    assert down.exit_code == 0 and down.schema_check == "first", down


# drift a DBA added before the run --------------------------------------------------------------------------


def test_drift_added_by_hand_before_the_run_is_carried_over_not_a_failure(db_url: str, tmp_path: Path) -> None:
    t2 = 'op.create_table("t2", sa.Column("id", sa.Integer, primary_key=True))'
    ini = make_project(tmp_path, db_url, [T, ("r2_t2", t2, 'op.drop_table("t2")')])
    assert api.upgrade(settings(ini, db_url), "r1_t").exit_code == 0
    assert api.upgrade(settings(ini, db_url), "r2_t2").exit_code == 0
    assert api.downgrade(settings(ini, db_url), "r1_t").exit_code == 0  # r2's reference is stored now
    execute(db_url, "ALTER TABLE t ADD COLUMN hotfix INTEGER")

    up = api.upgrade(settings(ini, db_url))
    assert up.exit_code == 0, up
    assert up.schema_check == "verified"
    assert any("t.hotfix" in w for w in up.preflight)
    assert any("known before the run" in w and "t.hotfix" in w for w in up.warnings), up.warnings
    # The same with on_drift = ignore: nothing said before the run, the end check still made.
    down = api.downgrade(settings(ini, db_url, on_drift="ignore"), "r1_t")
    assert down.exit_code == 0 and down.schema_check == "verified" and down.preflight == ()
    # A difference the run itself brings is a failure: r2's reference has no column t2.x.
    execute(db_url, "CREATE TABLE t2_template (id INTEGER)")  # unrelated, known before the run
    versions_dir = ini.parent / "migrations" / "versions"
    source = (versions_dir / "r2_t2.py").read_text()
    (versions_dir / "r2_t2.py").write_text(source.replace(t2, t2[:-1] + ', sa.Column("x", sa.Integer))'))
    differs = api.upgrade(settings(ini, db_url))
    assert differs.exit_code == 5, differs
    assert differs.schema_check == "differs" and "t2.x" in differs.error
    assert "t2_template" not in differs.error and "hotfix" not in differs.error
    # What the pre-flight found stays in the result of a run that failed.
    assert any("t2_template" in w for w in differs.preflight) and any("t2_template" in w for w in differs.warnings)
    assert api.status(settings(ini, db_url)).state == "FAILED"


# resolve checks too; --accept-schema stores the live schema ---------------------------------------------


def test_resolve_checks_the_schema_and_accept_schema_makes_the_live_one_the_reference(db_url: str,
                                                                                    tmp_path: Path) -> None:
    ini = make_project(tmp_path, db_url, [T, HALF])
    assert api.upgrade(settings(ini, db_url), "r1_t").exit_code == 0
    assert api.upgrade(settings(ini, db_url)).exit_code == 5
    if backend_of(db_url) == "postgresql":  # nothing of r2 stayed: leave something the way a person might
        execute(db_url, "CREATE TABLE t2 (id INTEGER PRIMARY KEY)")

    refused = run_dbguard(ini, db_url, "resolve", "--reason", "looked at it", "--confirm-risk", CONFIRM_TOKEN)
    assert refused.returncode == 5, describe(refused)
    assert "t2" in refused.stdout and "--accept-schema" in refused.stdout
    assert json_out(run_dbguard(ini, db_url, "--format", "json", "status"))["state"] == "FAILED"

    wrong = run_dbguard(ini, db_url, "resolve", "--reason", "keep t2", "--accept-schema", "--confirm-risk", "no")
    assert wrong.returncode == 3, describe(wrong)
    accepted = run_dbguard(ini, db_url, "--format", "json", "resolve", "--reason", "keep t2", "--accept-schema",
                           "--confirm-risk", CONFIRM_TOKEN)
    assert accepted.returncode == 0, describe(accepted)
    assert json_out(accepted)["schema_check"] == "accepted"
    assert [r["status"] for r in runs_of(db_url)][-3:] == ["resolved", "resolved", "succeeded"]
    # The accepted schema is the reference at r1 now: the next run checks against it and passes.
    again = api.upgrade(settings(ini, db_url), "r1_t")
    assert again.exit_code == 0 and again.schema_check == "verified", again


def test_an_accepted_schema_holds_at_the_revisions_whose_references_are_older(db_url: str, tmp_path: Path) -> None:
    """resolve --accept-schema makes the live schema the reference at r2; the reference at r1 was stored
    before, without what was accepted. A downgrade to r1 carried the accepted table over as known
    drift instead of failing its end check on it (airflow: after a round trip through its chain,
    whose schema differs from create_all's, every downgrade -1 failed on the accepted differences)."""
    c = ("r2_t_c", 'op.add_column("t", sa.Column("c", sa.Integer))', 'op.drop_column("t", "c")')
    ini = make_project(tmp_path, db_url, [T, c, FAILS])
    assert api.upgrade(settings(ini, db_url), "r1_t").exit_code == 0
    assert api.upgrade(settings(ini, db_url), "r2_t_c").exit_code == 0
    assert api.upgrade(settings(ini, db_url)).exit_code == 5
    execute(db_url, "CREATE TABLE kept_by_hand (id INTEGER PRIMARY KEY)")  # a person's repair, kept
    accepted = run_dbguard(ini, db_url, "resolve", "--reason", "keep it", "--accept-schema",
                           "--confirm-risk", CONFIRM_TOKEN)
    assert accepted.returncode == 0, describe(accepted)

    down = api.downgrade(settings(ini, db_url), "r1_t")
    assert down.exit_code == 0, down
    assert down.schema_check == "verified"
    assert any("known before the run" in w and "kept_by_hand" in w for w in down.warnings), down.warnings
    # Only what was accepted is carried: a difference the run itself brings still fails it.
    up = api.upgrade(settings(ini, db_url), "r2_t_c")
    assert up.exit_code == 0 and up.schema_check == "verified", up
    versions_dir = ini.parent / "migrations" / "versions"
    source = (versions_dir / "r2_t_c.py").read_text()
    (versions_dir / "r2_t_c.py").write_text(source.replace('op.drop_column("t", "c")',
                                                           'op.drop_column("t", "c")\n    op.add_column("t", sa.Column("d", sa.Integer))'))
    differs = api.downgrade(settings(ini, db_url), "r1_t")
    assert differs.exit_code == 5 and "t.d" in differs.error and "kept_by_hand" not in differs.error, differs


# first run at new revisions ------------------------------------------------------------------------------


def test_a_first_run_is_healthy_unverified_until_a_later_run_matches(db_url: str, tmp_path: Path) -> None:
    ini = make_project(tmp_path, db_url, [T])
    first = run_dbguard(ini, db_url, "upgrade")
    assert first.returncode == 0, describe(first)
    assert "schema: first run at r1_t, nothing to compare with" in first.stdout
    status = json_out(run_dbguard(ini, db_url, "--format", "json", "status"))
    assert status["state"] == "HEALTHY" and status["schema_verified"] is False
    assert status["last_run"]["schema_check"] == "first"
    again = api.upgrade(settings(ini, db_url))
    assert again.exit_code == 0 and again.schema_check == "verified"
    assert api.status(settings(ini, db_url)).schema_verified
    # Changed by hand after the last run: the next run's pre-flight says so; its end carries it.
    with connect(db_url) as conn:
        conn.execute(sa.text("CREATE TABLE handmade (id INTEGER)"))
    carried = api.upgrade(settings(ini, db_url))
    assert carried.exit_code == 0 and any("handmade" in w for w in carried.warnings)


def test_status_reads_the_live_schema_before_it_calls_it_verified(db_url: str, tmp_path: Path) -> None:
    ini = make_project(tmp_path, db_url, [T])
    assert api.upgrade(settings(ini, db_url)).exit_code == 0
    assert api.upgrade(settings(ini, db_url)).schema_check == "verified"
    assert api.status(settings(ini, db_url)).schema_verified
    # Changed by hand after the last run, which verified it: status no longer vouches for it.
    execute(db_url, "CREATE TABLE handmade (id INTEGER)")
    seen = api.status(settings(ini, db_url))
    assert seen.state == "HEALTHY" and seen.exit_code == 0 and not seen.schema_verified
    (finding,) = seen.findings
    assert finding.startswith("the live schema differs from the reference at r1_t (1 difference(s)): "
                              "extra table handmade"), finding
    text = run_dbguard(ini, db_url, "status")
    assert text.returncode == 0 and "HEALTHY (not verified: the live schema differs" in text.stdout, describe(text)
    assert api.status(settings(ini, db_url, on_drift="refuse")).exit_code == 3
    # drift_ignore leaves it out, as a run's end check does; put back, verified again.
    assert api.status(settings(ini, db_url, drift_ignore=["handmade"])).schema_verified
    execute(db_url, "DROP TABLE handmade")
    assert api.status(settings(ini, db_url)).schema_verified


def test_status_claims_nothing_of_a_schema_it_could_not_read(pg_url: str, tmp_path: Path) -> None:
    view = ("r1_v", 'op.execute("CREATE VIEW dbg_status_v AS SELECT 1 AS x")', 'op.execute("DROP VIEW dbg_status_v")')
    ini = make_project(tmp_path, pg_url, [view])
    assert api.upgrade(settings(ini, pg_url)).exit_code == 0
    assert api.upgrade(settings(ini, pg_url)).schema_check == "verified"
    holder = sa.create_engine(pg_url, poolclass=sa.pool.NullPool).connect()
    try:
        # Deparsing the view waits for this lock: status waits lock_timeout_ms, then says so.
        holder.exec_driver_sql("BEGIN")
        holder.exec_driver_sql("LOCK TABLE dbg_status_v IN ACCESS EXCLUSIVE MODE")
        seen = api.status(settings(ini, pg_url, lock_timeout_ms=300))
        assert seen.state == "HEALTHY" and seen.exit_code == 0 and not seen.schema_verified and not seen.findings
        assert seen.schema_unchecked.startswith("the catalog waited too long for a lock"), seen.schema_unchecked
    finally:
        holder.close()
    assert api.status(settings(ini, pg_url)).schema_verified


FORMAT_1_FEATURES = {
    # What format 1 did not record: identity options, INCLUDE, operator classes; ON UPDATE, SPATIAL keys' SUB_PART.
    "pg_url": (("CREATE TABLE f1 (id integer GENERATED ALWAYS AS IDENTITY (START WITH 10) PRIMARY KEY, "
               "code varchar(20)); CREATE INDEX ix_f1_code ON f1 (code varchar_pattern_ops) INCLUDE (id)"),
               {"ix_f1_code": ["code"]}),
    "mysql_url": (("CREATE TABLE f1 (id integer PRIMARY KEY, g geometry NOT NULL, "
                  "at timestamp NOT NULL DEFAULT current_timestamp() ON UPDATE current_timestamp(), "
                  "SPATIAL INDEX sx_f1_g (g))"), {"sx_f1_g": ["g(32)"]}),
}


@pytest.mark.parametrize("url_fixture", sorted(FORMAT_1_FEATURES))
def test_a_reference_an_older_dbguard_stored_still_verifies_and_is_replaced(
        url_fixture: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    from dbguard.core.schema import SNAPSHOT_FORMAT
    from dbguard.db.ledger import SchemaStore
    from dbguard.drift.checks import pack, unpack

    url = request.getfixturevalue(url_fixture)
    ddl, keys = FORMAT_1_FEATURES[url_fixture]
    body = "\n".join(f"op.execute({statement!r})" for statement in ddl.split("; "))
    ini = make_project(tmp_path, url, [("r1_f", body, 'op.execute("DROP TABLE f1")')])
    assert api.upgrade(settings(ini, url)).exit_code == 0
    with connect(url) as conn:
        store = SchemaStore(conn, "dbguard_")
        new = json.loads(unpack(store.schema_text(store.latest(["r1_f"])[0])))
        # The reference as the previous format wrote it, by the previous release.
        old = json.loads(json.dumps(new))
        old["format"] = 1
        for column in old["tables"]["f1"]["columns"]:
            column.pop("identity", None)
            column.pop("on_update", None)
        for index in old["tables"]["f1"]["indexes"]:
            index.pop("include", None)
            index["columns"] = keys.get(index["name"], index["columns"])
        store.store(["r1_f"], "format-1-hash", pack(json.dumps(old, sort_keys=True)), None)
        conn.commit()
    again = api.upgrade(settings(ini, url))
    assert again.exit_code == 0 and again.schema_check == "verified", again
    with connect(url) as conn:
        store = SchemaStore(conn, "dbguard_")
        assert json.loads(unpack(store.schema_text(store.latest(["r1_f"])[0])))["format"] == SNAPSHOT_FORMAT
    assert api.status(settings(ini, url)).schema_verified


def test_a_downgrade_that_moved_down_then_failed_its_check_names_a_way_out_that_works(db_url: str,
                                                                                       tmp_path: Path) -> None:
    """A downgrade() that leaves part of its upgrade() behind (airflow's chain on MariaDB leaves other
    collations and a TIMESTAMP without its fraction) runs its step, moves alembic_version down and fails
    the end check. The last verified state is above it: status must not name `rollback`, which never
    moves forward (exit 2); the resolve it names returns to HEALTHY (a forced upgrade back would meet the
    index this downgrade left; airflow's upgrade runs over what its downgrade left)."""
    ini = make_project(tmp_path, db_url, [
        ("r1", "op.create_table('t', sa.Column('id', sa.Integer, primary_key=True), sa.Column('a', sa.Integer))",
         "op.drop_table('t')"),
        ("r2", "op.create_index('ix_t_a', 't', ['a'])", "pass"),  # the downgrade forgets the index
    ])
    assert run_dbguard(ini, db_url, "upgrade", "r1").returncode == 0
    assert run_dbguard(ini, db_url, "upgrade", "r2").returncode == 0
    down = run_dbguard(ini, db_url, "downgrade", "-1")
    assert down.returncode == 5, describe(down)
    status = json_out(run_dbguard(ini, db_url, "--format", "json", "status"))
    assert status["state"] == "FAILED" and status["revisions"] == ["r1"], status
    assert "dbguard rollback`" not in status["advice"] and "resolve --accept-schema" in status["advice"], status
    # Never forward, and where the downgrade stopped there is nothing to undo: refused, nothing run.
    refused = run_dbguard(ini, db_url, "rollback", "--yes")
    assert refused.returncode == 3 and "nothing for a rollback to do" in refused.stdout + refused.stderr, \
        describe(refused)
    assert versions(db_url) == ["r1"]
    accepted = run_dbguard(ini, db_url, "resolve", "--accept-schema", "--reason", "the index stays",
                           "--confirm-risk", CONFIRM_TOKEN)
    assert accepted.returncode == 0, describe(accepted)
    status = json_out(run_dbguard(ini, db_url, "--format", "json", "status"))
    assert (status["state"], status["revisions"]) == ("HEALTHY", ["r1"]), status


def test_status_of_a_user_the_catalog_hides_tables_from_claims_nothing(mysql_url: str, mysql_server_url: str,
                                                                      tmp_path: Path) -> None:
    """MariaDB's information_schema lists only the tables a user holds a privilege on: a monitoring user
    who may read alembic_version and the ledger sees the application's tables missing. That is no
    difference: status says the schema was not compared."""
    from sqlalchemy.engine import make_url

    from tests.guardrun import admin_engine, mysql_user

    ini = make_project(tmp_path, mysql_url, [T])
    assert api.upgrade(settings(ini, mysql_url)).exit_code == 0
    assert api.upgrade(settings(ini, mysql_url)).schema_check == "verified"
    database = make_url(mysql_url).database
    with mysql_user(mysql_server_url, database, "monitor-pw-1", grants="USAGE") as name:
        admin = admin_engine(mysql_server_url)
        try:
            with admin.connect() as conn:
                for table in ("alembic_version", "dbguard_runs", "dbguard_steps", "dbguard_schemas"):
                    conn.execute(sa.text(f"GRANT SELECT ON `{database}`.`{table}` TO '{name}'@'%'"))
        finally:
            admin.dispose()
        monitor = make_url(mysql_url).set(username=name, password="monitor-pw-1").render_as_string(hide_password=False)
        seen = api.status(settings(ini, monitor, on_drift="refuse"))
    assert seen.state == "HEALTHY" and seen.exit_code == 0 and not seen.findings and not seen.schema_verified, seen
    assert seen.schema_unchecked.startswith("this user cannot see table(s) t in the catalog"), seen.schema_unchecked
    # Dropped for real, the table is a difference the deployer's status names.
    execute(mysql_url, "DROP TABLE t")
    assert api.status(settings(ini, mysql_url)).findings[0].startswith("the live schema differs")


def test_a_rollback_where_the_downgrade_stopped_runs_once_the_schema_was_repaired_by_hand(
        db_url: str, tmp_path: Path) -> None:
    """The refusal above reads the schema: repaired by hand since, the rollback runs its check and
    closes the breaker."""
    ini = make_project(tmp_path, db_url, [
        ("r1", "op.create_table('t', sa.Column('id', sa.Integer, primary_key=True), sa.Column('a', sa.Integer))",
         "op.drop_table('t')"),
        ("r2", "op.create_index('ix_t_a', 't', ['a'])", "pass"),
    ])
    assert run_dbguard(ini, db_url, "upgrade", "r1").returncode == 0
    assert run_dbguard(ini, db_url, "upgrade", "r2").returncode == 0
    assert run_dbguard(ini, db_url, "downgrade", "-1").returncode == 5
    drop = "DROP INDEX ix_t_a ON t" if backend_of(db_url) == "mysql" else "DROP INDEX ix_t_a"
    execute(db_url, drop)
    back = run_dbguard(ini, db_url, "rollback", "--yes")
    assert back.returncode == 0, describe(back)
    status = json_out(run_dbguard(ini, db_url, "--format", "json", "status"))
    assert (status["state"], status["revisions"]) == ("HEALTHY", ["r1"]), status
