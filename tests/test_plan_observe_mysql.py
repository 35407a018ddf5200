"""`dbguard plan --observe` on MariaDB: each ALTER of the scratch run is asked of the server on an
empty copy of its table just before it runs (INSTANT, then INPLACE with LOCK=NONE, else COPY; a new
InnoDB table id is a rebuild), and set beside the plan's predicted algorithm, write block and rebuild.

The comparison is pure and tested first; then one real chain on MariaDB."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from dbguard.plan.observe_mysql import COPY_PREFIX
from dbguard.risk import observed as obs
from tests.guardrun import connect, describe, json_out, run_dbguard
from tests.projects import make_project

# --- the comparison, without a database ---------------------------------------------------------------


def test_agreeing_algorithms_give_no_finding_and_case_does_not_matter() -> None:
    rows, findings = obs.compare_mysql(
        "r1", {"t": ("COPY", True, True), "u": ("INSTANT", False, False), "v": (None, False, False)},
        {"t": ("copy", True, True), "u": ("instant", False, False), "v": (None, False, False)})
    assert findings == () and all(r.agrees for r in rows)
    assert [(r.table, r.predicted_lock, r.observed_lock) for r in rows] == [
        ("t", "COPY, blocks writes", "COPY, blocks writes"), ("u", "INSTANT, writes go on", "INSTANT, writes go on"),
        ("v", "none", "none")]


def test_what_the_server_did_not_show_is_no_disagreement() -> None:
    # INPLACE as the statement wrote it (no LOCK clause): whether writers wait is not known; a rebuild unseen.
    _, findings = obs.compare_mysql("r1", {"t": ("INPLACE", True, False)}, {"t": ("inplace", None, None)})
    assert findings == ()
    rows, findings = obs.compare_mysql("r1", {"c": ("COPY", True, True), "p": ("INPLACE", False, False)}, {},
                                       {"c": "foreign keys are not copied", "p": "foreign keys are not copied"})
    assert findings == () and [r.observed_lock for r in rows] == ["not observed", "not observed"]
    assert rows[0].not_observed == "foreign keys are not copied"


def test_nocopy_is_in_place_without_a_rebuild() -> None:
    _, findings = obs.compare_mysql("r1", {"t": ("INPLACE", False, False)}, {"t": ("nocopy", False, False)})
    assert findings == ()


@pytest.mark.parametrize(("predicted", "observed", "severity"), [
    (("INSTANT", False, False), ("copy", True, True), "high"),
    (("COPY", True, True), ("instant", False, False), "high"),  # the stronger side's severity
    (("INPLACE", False, False), ("inplace", True, False), "high"),  # writes blocked
    (("INPLACE", False, False), ("inplace", False, True), "medium"),  # an unpredicted rebuild
    (("INPLACE", False, True), ("inplace", False, False), "medium"),
    (("INSTANT", False, False), ("inplace", False, False), "low"),
    ((None, False, False), ("instant", False, False), "info"),
])
def test_a_disagreement_is_dg116_at_the_stronger_sides_severity(predicted: tuple[str | None, bool, bool],
                                                                 observed: tuple[str, bool, bool],
                                                                 severity: str) -> None:
    rows, findings = obs.compare_mysql("r9", {"t": predicted}, {"t": observed})
    assert len(findings) == 1 and not rows[0].agrees
    finding = findings[0]
    assert (finding.code, finding.severity, finding.revision, finding.table) == ("DG116", severity, "r9", "t")


def test_the_version_table_is_ignored() -> None:
    rows, _ = obs.compare_mysql("r1", {}, {"alembic_version": (None, False, False)}, ignore=("alembic_version",))
    assert rows == ()


# --- a real chain on MariaDB ---------------------------------------------------------------------------

CHAIN = [
    ("b0", ("op.create_table('parent', sa.Column('id', sa.Integer, primary_key=True))\n"
           "op.create_table('t', sa.Column('id', sa.Integer, primary_key=True), sa.Column('a', sa.Integer), "
           "sa.Column('s', sa.String(50)))\n"
           "op.create_table('child', sa.Column('id', sa.Integer, primary_key=True), "
           "sa.Column('pid', sa.Integer, sa.ForeignKey('parent.id')))")),
    ("r1", "op.add_column('t', sa.Column('note', sa.Integer, nullable=True))"),
    ("r2", "op.alter_column('t', 'a', type_=sa.BigInteger(), existing_type=sa.Integer())"),
    ("r3", "op.create_index('ix_t_s', 't', ['s'])"),
    ("r4", "op.add_column('child', sa.Column('z', sa.Integer, nullable=True))"),
    ("r5", "op.execute(\"UPDATE t SET s = 'x' WHERE id = 1\")"),
]

EXPECTED = {  # revision -> {table: (algorithm, blocks writes, rebuilt)}, as both the plan and the server have it
    "r1": {"t": ("instant", False, False)},
    "r2": {"t": ("copy", True, True)},
    "r3": {"t": ("inplace", False, False)},
    "r5": {"t": (None, False, False)},
}


@pytest.mark.integration
def test_observe_a_chain_on_mariadb(mysql_url: str, mysql_server_url: str, tmp_path: Path) -> None:
    ini = make_project(tmp_path, mysql_url, CHAIN)
    assert run_dbguard(ini, None, "upgrade", "b0").returncode == 0, "b0"
    with connect(mysql_url) as conn:
        if not conn.dialect.is_mariadb:
            pytest.skip("the InnoDB table id read here is MariaDB's")

    done = run_dbguard(ini, None, "--format", "json", "plan", "--observe", "--fail-on", "none")
    doc = json_out(done)
    assert done.returncode == 0, describe(done)
    observation = doc["observed"]
    assert observation["status"] == "observed", observation
    by_revision = {r["revision"]: r for r in observation["revisions"]}
    for revision, tables in EXPECTED.items():
        seen = by_revision[revision]
        assert seen["status"] == "observed", seen
        got = {t["table"]: (t["observed_algorithm"], t["observed_blocks_writes"], t["observed_rewrite"])
               for t in seen["tables"]}
        predicted = {t["table"]: (t["predicted_algorithm"], t["predicted_blocks_writes"], t["predicted_rewrite"])
                     for t in seen["tables"]}
        assert got == tables, (revision, seen)
        assert predicted == tables, (revision, seen)
    # A table with a foreign key is not probed on a copy: not observed, never a disagreement.
    r4 = by_revision["r4"]["tables"]
    assert [(t["table"], t["not_observed"]) for t in r4] == [
        ("child", "the table has foreign keys, which a copy lacks")]
    assert observation["disagreements"] == 0
    assert not [f for r in doc["revisions"] for f in r["findings"] if f["code"] == "DG116"]

    # The scratch database and every probe copy are gone; the target is where it was.
    assert observation["where"].startswith("dbguard_shadow_")
    with connect(mysql_server_url) as conn:
        left = conn.execute(sa.text("SELECT TABLE_SCHEMA, TABLE_NAME FROM information_schema.TABLES "
                                    "WHERE TABLE_SCHEMA = :s OR TABLE_NAME LIKE :p"),
                            {"s": observation["where"], "p": f"{COPY_PREFIX}%"}).all()
        assert left == []
        assert conn.execute(sa.text("SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = :s"),
                            {"s": observation["where"]}).scalar() == 0
    with connect(mysql_url) as conn:
        assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar() == "b0"

    text = run_dbguard(ini, None, "plan", "--observe", "--fail-on", "none")
    assert text.returncode == 0, describe(text)
    assert "t: predicted COPY, blocks writes, observed COPY, blocks writes; rebuilt yes/yes: agrees" in text.stdout
    assert "child: predicted INSTANT, writes go on; rebuilt no: not observed: the table has foreign keys" \
        in text.stdout


def test_the_plan_predicts_per_table_the_slowest_algorithm_a_write_block_and_a_rebuild() -> None:
    from tests.risk_support import judge

    plan = judge(["CREATE TABLE n (id INT PRIMARY KEY)", "ALTER TABLE t ADD COLUMN c INT",
                  "ALTER TABLE t MODIFY a BIGINT", "CREATE INDEX ix_u ON u (a)"], "mariadb",
                 history=["CREATE TABLE t (id INT PRIMARY KEY, a INT)", "CREATE TABLE u (id INT PRIMARY KEY, a INT)"])
    assert plan.table_algorithms == (("n", None, False, False), ("t", "COPY", True, True),
                                     ("u", "INPLACE", False, False))
    assert judge(["ALTER TABLE t ADD COLUMN c INT"], "postgresql",
                 history=["CREATE TABLE t (id INT)"]).table_algorithms == ()
