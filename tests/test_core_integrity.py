"""Pure decisions of the refusals: the ledger's integrity, unknown statuses, privilege grants."""

from __future__ import annotations

from types import SimpleNamespace

from dbguard.core import lanes
from dbguard.core.breaker import describe_breaker
from dbguard.core.integrity import deleted_runs, ledger_problem, lost_tables
from dbguard.core.state import RunRecord, TargetState, derive_state
from dbguard.dialects import mysql, postgresql


def test_a_database_without_dbguard_tables_is_a_first_use() -> None:
    assert lost_tables("dbguard_", set()) is None
    assert lost_tables("dbguard_", {"kills"}) is None  # `locks kill` where nothing was deployed
    assert lost_tables("dbguard_", {"runs", "steps"}) is None


def test_missing_run_tables_beside_other_dbguard_tables_are_a_lost_ledger() -> None:
    assert lost_tables("dbguard_", {"steps", "schemas"}) == (
        "dbguard's ledger is lost: dbguard_runs is missing while dbguard_steps, dbguard_schemas exist")
    assert lost_tables("x_", {"runs"}) == "dbguard's ledger is lost: x_steps is missing while x_runs exists"


def test_a_run_named_by_its_successor_and_gone_is_deleted() -> None:
    links = [(1, None), (2, 1), (4, 3), (5, 4), (7, 5)]  # 6: an id a rolled-back insert used up
    assert deleted_runs(links, None) == (3,)
    assert deleted_runs(links, 4) == ()  # a resolve after run 4 recorded it
    assert deleted_runs([(1, None), (2, None)], None) == ()  # rows from before the chain
    assert "run 3 is missing from dbguard_runs" in (ledger_problem("dbguard_", {"runs", "steps"}, links, None) or "")


def _run(status: str) -> RunRecord:
    return RunRecord(id=9, intent="upgrade", status=status, from_revisions=("a",), to_revision="b")


def test_a_status_dbguard_never_writes_is_unknown_and_named() -> None:
    for status in ("garbage", "FAILED", ""):
        run = _run(status)
        assert derive_state(run, lock_held_by_other=False) is TargetState.UNKNOWN
        assert f"has the status {status!r}, which dbguard never writes" in describe_breaker(TargetState.UNKNOWN, run)
        assert lanes.did_not_finish(run)
    assert derive_state(_run("succeeded"), lock_held_by_other=False) is TargetState.HEALTHY


def test_postgresql_grants_name_what_is_missing_in_sql_postgresql_accepts() -> None:
    row = SimpleNamespace(schema_name="public", can_create=False, name="dbguard_runs", present=True,
                          can_select=True, can_insert=True, can_update=False, owns=False,
                          id_sequence="public.dbguard_runs_id_seq", can_use_sequence=False)
    absent = SimpleNamespace(schema_name="public", can_create=False, name="dbguard_kills", present=False,
                             can_select=True, can_insert=True, can_update=True, owns=True, id_sequence=None,
                             can_use_sequence=True)
    missing, grants = postgresql.missing_ledger_privileges([row, absent], 'dep"loy', complete=True)
    assert missing == ["UPDATE on public.dbguard_runs", "USAGE on public.dbguard_runs_id_seq",
                       "CREATE on schema public"]
    assert grants == ('GRANT UPDATE ON "public"."dbguard_runs" TO "dep""loy"; '
                      'GRANT USAGE ON SEQUENCE public.dbguard_runs_id_seq TO "dep""loy"; '
                      'GRANT CREATE ON SCHEMA "public" TO "dep""loy";')
    missing, grants = postgresql.missing_ledger_privileges([row], "d", complete=False)
    assert 'ALTER TABLE "public"."dbguard_runs" OWNER TO "d";' in grants


def test_mysql_grants_quote_the_account_and_need_alter_and_index() -> None:
    rows = [("USAGE",), ("CREATE",), ("SELECT",), ("INSERT",), ("UPDATE",)]
    missing, grant = mysql.missing_ledger_privileges(rows, "rs_dml@%", "app")
    assert missing == ["ALTER, INDEX on app"]
    assert grant == "GRANT ALTER, INDEX ON `app`.* TO 'rs_dml'@'%';"
    assert mysql.missing_ledger_privileges([(p,) for p in mysql.LEDGER_PRIVILEGES], "u@h", "app") == ([], "")
