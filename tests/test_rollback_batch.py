"""The rollback's repair of a half-done revision written with ``op.batch_alter_table`` (as mlflow
writes almost every revision), on real MariaDB and PostgreSQL: batch operations are checked against
the live schema like the others, and a downgrade that failed half-way is taken back to the verified
state it started from (its undone part re-applied, alembic_version kept), never further down.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.lanekit import catalog, columns, dbguard, describe, indexes, json_out, ledger, rows, versions
from tests.projects import make_project

pytestmark = pytest.mark.integration

PARENT = ("r1_parent",
          """
          op.create_table("parent", sa.Column("id", sa.Integer, primary_key=True))
          op.create_table("t", sa.Column("id", sa.Integer, primary_key=True), sa.Column("name", sa.String(20)))
          """,
          'op.drop_table("t")\nop.drop_table("parent")')

# Two columns, an index on each, a foreign key on c1 (which uses ix_t_c1 as its index on MariaDB).
# The downgrade drops the index of c2, c2, then the index the foreign key still needs, before the
# key: MariaDB refuses with error 1553 after the first two went in, as in mlflow's dc11669786a5.
# The last statement fails on every engine, so PostgreSQL's downgrade fails too.
BATCH = ("r2_batch",
         """
         with op.batch_alter_table("t") as batch_op:
             batch_op.add_column(sa.Column("c1", sa.Integer))
             batch_op.add_column(sa.Column("c2", sa.Integer))
             batch_op.create_index("ix_t_c1", ["c1"])
             batch_op.create_index("ix_t_c2", ["c2"])
             batch_op.create_foreign_key("fk_t_c1", "parent", ["c1"], ["id"])
         """,
         """
         with op.batch_alter_table("t") as batch_op:
             batch_op.drop_index("ix_t_c2")
             batch_op.drop_column("c2")
             batch_op.drop_index("ix_t_c1")
             batch_op.drop_constraint("fk_t_c1", type_="foreignkey")
             batch_op.drop_column("c1")
         op.execute("SELECT * FROM dbguard_missing_table")
         """)


def _status(ini: Path) -> dict:
    return json_out(dbguard(ini, "--format", "json", "status"))


def _schema(url: str, engine: str) -> dict:
    """The catalog as the inspector reads it and, on MariaDB, as the server writes each table's DDL
    (column order, index and key definitions, exactly)."""
    found = {"catalog": catalog(url)}
    if engine == "mysql":
        found["ddl"] = {t: rows(url, f"SHOW CREATE TABLE {t}")[0]["Create Table"] for t in ("parent", "t")}
    return found


@pytest.mark.parametrize("engine", ["mysql", "postgresql"])
def test_a_failed_batch_downgrade_is_rolled_back_to_the_verified_state(
        engine: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    url = request.getfixturevalue("mysql_url" if engine == "mysql" else "pg_url")
    ini = make_project(tmp_path, url, [PARENT, BATCH])
    assert (p := dbguard(ini, "upgrade", "head")).returncode == 0, describe(p)
    verified = _schema(url, engine)

    p = dbguard(ini, "downgrade", "-1")
    assert p.returncode == 5, describe(p)
    assert versions(url) == [BATCH[0]]
    if engine == "mysql":  # DDL commits as it goes: ix_t_c2 and c2 are gone, the rest stayed
        assert "1553" in p.stdout + p.stderr, describe(p)
        assert "c2" not in columns(url, "t") and "ix_t_c2" not in indexes(url, "t")
        assert "c1" in columns(url, "t") and "ix_t_c1" in indexes(url, "t")
    else:  # transactional DDL: nothing of the downgrade stayed
        assert _schema(url, engine) == verified

    p = dbguard(ini, "rollback", "--yes")
    assert p.returncode == 0, describe(p)
    assert versions(url) == [BATCH[0]]
    assert _schema(url, engine) == verified
    runs, steps = ledger(url)
    assert runs[-1]["intent"] == "rollback" and runs[-1]["status"] == "succeeded"
    assert runs[-1]["schema_check"] == "verified", runs[-1]
    repair = [s for s in steps if s["run_id"] == runs[-1]["id"]]
    if engine == "mysql":
        assert f"re-apply what the failed downgrade of {BATCH[0]} undid" in p.stderr, describe(p)
        assert "finish the half-done downgrade" not in p.stderr
        assert [(s["revision"], s["direction"], s["status"]) for s in repair] == [(BATCH[0], "up", "succeeded")]
        notes = json.loads(repair[0]["notes"])
        assert notes["applied"] == ["AddColumn(t.c2)", "CreateIndex(t.ix_t_c2)"], notes
        assert notes["already_done"] == ["AddColumn(t.c1)", "CreateIndex(t.ix_t_c1)",
                                         "CreateForeignKey(t.fk_t_c1)"], notes
    else:  # a clean no-op: nothing to repair, nothing to move
        assert repair == []
    assert [r["status"] for r in runs if r["intent"] == "downgrade"] == ["rolled_back"]
    status = _status(ini)
    assert status["state"] == "HEALTHY" and status["schema_verified"] is True, status

    p = dbguard(ini, "--format", "json", "upgrade", "head")
    assert p.returncode == 0, describe(p)
    assert json_out(p)["steps"] == []
    assert versions(url) == [BATCH[0]] and _schema(url, engine) == verified


# Upgrade: c1 and its index in one batch, then a failure, then c2 and its index in a second batch
# that never ran. The downgrade undoes all of it in one batch, c2's part first.
BATCH_HALF_UP = ("r2_batch_half",
                 """
                 with op.batch_alter_table("t") as batch_op:
                     batch_op.add_column(sa.Column("c1", sa.Integer))
                     batch_op.create_index("ix_t_c1", ["c1"])
                 op.execute("SELECT * FROM dbguard_missing_table")
                 with op.batch_alter_table("t") as batch_op:
                     batch_op.add_column(sa.Column("c2", sa.Integer))
                     batch_op.create_index("ix_t_c2", ["c2"])
                 """,
                 """
                 with op.batch_alter_table("t") as batch_op:
                     batch_op.drop_index("ix_t_c2")
                     batch_op.drop_column("c2")
                     batch_op.drop_index("ix_t_c1")
                     batch_op.drop_column("c1")
                 """)


def test_mariadb_half_applied_batch_upgrade_is_undone_op_by_op(mysql_url: str, tmp_path: Path) -> None:
    ini = make_project(tmp_path, mysql_url, [PARENT, BATCH_HALF_UP])
    assert (p := dbguard(ini, "upgrade", PARENT[0])).returncode == 0, describe(p)
    good = catalog(mysql_url)
    assert (p := dbguard(ini, "upgrade", "head")).returncode == 5, describe(p)
    assert versions(mysql_url) == [PARENT[0]]
    assert "c1" in columns(mysql_url, "t") and "ix_t_c1" in indexes(mysql_url, "t")

    p = dbguard(ini, "rollback", "--yes")
    assert p.returncode == 0, describe(p)
    assert versions(mysql_url) == [PARENT[0]]
    assert catalog(mysql_url) == good
    runs, steps = ledger(mysql_url)
    (repair,) = [s for s in steps if s["run_id"] == runs[-1]["id"]]
    assert (repair["direction"], repair["status"]) == ("down", "succeeded")
    notes = json.loads(repair["notes"])
    assert notes["applied"] == ["DropIndex(t.ix_t_c1)", "DropColumn(t.c1)"], notes
    assert notes["already_undone"] == ["DropIndex(t.ix_t_c2)", "DropColumn(t.c2)"], notes
    assert _status(ini)["state"] == "HEALTHY"


# The upgrade sets data as well: an UPDATE that no check can tell done or not.
WITH_DATA = ("r2_with_data",
             """
             with op.batch_alter_table("t") as batch_op:
                 batch_op.add_column(sa.Column("c1", sa.Integer))
                 batch_op.add_column(sa.Column("c2", sa.Integer))
                 batch_op.create_index("ix_t_c2", ["c2"])
             op.execute("UPDATE t SET c1 = 0")
             """,
             """
             with op.batch_alter_table("t") as batch_op:
                 batch_op.drop_index("ix_t_c2")
                 batch_op.drop_column("c2")
             op.execute("SELECT * FROM dbguard_missing_table")
             """)


def test_mariadb_failed_downgrade_whose_upgrade_cannot_be_checked_is_refused(mysql_url: str, tmp_path: Path) -> None:
    ini = make_project(tmp_path, mysql_url, [PARENT, WITH_DATA])
    assert (p := dbguard(ini, "upgrade", "head")).returncode == 0, describe(p)
    assert (p := dbguard(ini, "downgrade", "-1")).returncode == 5, describe(p)
    left = catalog(mysql_url)
    assert "c2" not in columns(mysql_url, "t") and "c1" in columns(mysql_url, "t")

    p = dbguard(ini, "rollback", "--yes")
    assert p.returncode == 3, describe(p)
    (line,) = [x for x in p.stdout.splitlines() if x.startswith("dbguard: refused")]
    assert "ExecuteSQL(UPDATE t SET c1 = 0)" in line and WITH_DATA[0] in line, line
    assert "by hand" in line and "dbguard resolve" in line, line
    # Nothing ran: not re-applied, not downgraded further.
    assert catalog(mysql_url) == left and versions(mysql_url) == [WITH_DATA[0]]
    runs, _ = ledger(mysql_url)
    assert runs[-1]["intent"] == "rollback" and runs[-1]["status"] == "refused"
    assert [r["status"] for r in runs if r["intent"] == "downgrade"] == ["failed"]
    assert dbguard(ini, "status").returncode == 3  # the breaker stays open


# SQLite recreates the table for a batch that drops a column: one copy of the whole table, which no
# operation-by-operation check can vouch for.
ON_SQLITE = ("r2_sqlite",
             """
             with op.batch_alter_table("t") as batch_op:
                 batch_op.add_column(sa.Column("c1", sa.Integer))
             op.execute("SELECT * FROM dbguard_missing_table")
             with op.batch_alter_table("t") as batch_op:
                 batch_op.add_column(sa.Column("c2", sa.Integer))
             """,
             """
             with op.batch_alter_table("t") as batch_op:
                 batch_op.drop_column("c2")
                 batch_op.drop_column("c1")
             """)


def test_sqlite_batch_that_would_recreate_its_table_is_not_repaired(sqlite_url: str, tmp_path: Path) -> None:
    ini = make_project(tmp_path, sqlite_url, [PARENT, ON_SQLITE])
    assert (p := dbguard(ini, "upgrade", PARENT[0])).returncode == 0, describe(p)
    assert (p := dbguard(ini, "upgrade", "head")).returncode == 5, describe(p)
    left = catalog(sqlite_url)
    assert "c1" in columns(sqlite_url, "t")

    p = dbguard(ini, "rollback", "--yes")
    assert p.returncode == 3, describe(p)  # refused before anything runs, as a redo is
    assert "batch_alter_table(t) would recreate the table (sqlite" in p.stdout + p.stderr, describe(p)
    assert catalog(sqlite_url) == left and versions(sqlite_url) == [PARENT[0]]
