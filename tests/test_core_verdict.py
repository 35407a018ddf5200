"""The end check's decisions (dbguard.core.verdict) and the advice status gives (core.lanes.way_out),
without a database."""

from __future__ import annotations

import pytest

from dbguard.core import lanes
from dbguard.core.schema import Drift
from dbguard.core.state import RunRecord
from dbguard.core.verdict import SchemaCheck, difference_key, judge_end, what_was_checked

HOTFIX = Drift("extra_column", "t", "t.hotfix", None, "integer")
LEFTOVER = Drift("extra_table", "t2", "t2", None, None)


def test_equal_to_the_reference_is_verified() -> None:
    verdict = judge_end(("r2",), ("r2",), [], known=())
    assert verdict.check is SchemaCheck.VERIFIED and verdict.passed and not verdict.carried


def test_known_differences_are_carried_and_new_ones_fail() -> None:
    verdict = judge_end(("r2",), ("r2",), [HOTFIX, LEFTOVER], known={difference_key(HOTFIX)})
    assert verdict.check is SchemaCheck.DIFFERS and not verdict.passed
    assert verdict.carried == (HOTFIX.describe(),)
    assert verdict.failures == (f"schema differs from the reference at r2: {LEFTOVER.describe()}",)


def test_all_known_is_verified_with_the_drift_carried() -> None:
    verdict = judge_end(("r2",), ("r2",), [HOTFIX], known={difference_key(HOTFIX)})
    assert verdict.check is SchemaCheck.VERIFIED and verdict.carried == (HOTFIX.describe(),)


def test_alembic_version_other_than_recorded_fails_whatever_the_schema() -> None:
    for differences in ([], None):
        verdict = judge_end(("r3",), ("r2",), differences, known=())
        assert verdict.check is SchemaCheck.DIFFERS
        assert verdict.failures[0] == "alembic_version says r2, the run recorded r3"


def test_base_is_the_empty_version_table() -> None:
    assert judge_end(("base",), (), [], known=()).passed
    assert judge_end((), ("base",), [], known=()).passed
    assert judge_end(("b", "a"), ("a", "b"), [], known=()).passed


def test_no_reference_is_a_first_run_that_says_so() -> None:
    verdict = judge_end(("r2",), ("r2",), None, known=())
    assert verdict.check is SchemaCheck.FIRST and verdict.passed
    assert verdict.note is not None and "first run at r2, nothing to compare with" in verdict.note


def test_an_unreadable_catalog_claims_nothing_about_the_schema() -> None:
    verdict = judge_end(("r2",), ("r2",), None, known=(), unreadable="the catalog waited too long for a lock")
    assert verdict.check is SchemaCheck.UNCHECKED and verdict.passed
    assert verdict.note == "schema not checked at r2: the catalog waited too long for a lock"


# status's advice -----------------------------------------------------------------------------------------


def run(id: int, intent: str, status: str, frm: tuple[str, ...] = (), to: str | None = None,
        after: tuple[str, ...] | None = None, check: str | None = None) -> RunRecord:
    return RunRecord(id=id, intent=intent, status=status, from_revisions=frm, to_revision=to,
                     revisions_after=after, schema_check=check)


def test_after_a_failed_upgrade_the_way_out_is_a_rollback_to_the_last_verified_state() -> None:
    runs = [run(1, "upgrade", "succeeded", (), "r1", ("r1",), "verified"),
            run(2, "upgrade", "failed", ("r1",), "r3", ("r2",))]
    assert "roll back to r1 with `dbguard rollback`" in lanes.way_out(runs)


def test_at_the_target_with_a_differing_schema_the_way_out_is_resolve_not_another_rollback() -> None:
    runs = [run(1, "upgrade", "succeeded", (), "r1", ("r1",), "verified"),
            run(2, "upgrade", "failed", ("r1",), "r2", ("r1",)),
            run(3, "rollback", "failed", ("r1",), "r1", ("r1",), "differs")]
    advice = lanes.way_out(runs)
    assert "dbguard rollback`" not in advice
    assert "dbguard resolve --reason TEXT" in advice and "--accept-schema" in advice


def test_a_rollback_that_failed_elsewhere_is_followed_by_another() -> None:
    runs = [run(1, "upgrade", "succeeded", (), "r1", ("r1",), "verified"),
            run(2, "upgrade", "failed", ("r1",), "r4", ("r3",)),
            run(3, "rollback", "failed", ("r3",), "r1", ("r2",))]
    assert "roll back to r1" in lanes.way_out(runs)


def test_after_a_downgrade_that_moved_down_the_way_out_goes_back_up_not_a_rollback() -> None:
    """airflow's downgrade -1 on MariaDB ran its step, then failed the end check (the schema differs from
    the reference below): the last verified state is above, the rollback never moves forward and would
    stay where the schema already differs, so status names the repair and resolve."""
    runs = [run(1, "upgrade", "succeeded", ("r1",), "r2", ("r2",), "verified"),
            run(2, "downgrade", "failed", ("r2",), "r1", ("r1",), "differs")]
    advice = lanes.way_out(runs, ("r1",))
    assert "dbguard rollback`" not in advice, advice
    assert "dbguard resolve --accept-schema --reason TEXT" in advice and "at r1" in advice, advice
    # A downgrade that failed before alembic_version moved is put back by the rollback (its "redo").
    runs[1] = run(2, "downgrade", "failed", ("r2",), "r1", ("r2",))
    assert "roll back to r2 with `dbguard rollback`" in lanes.way_out(runs, ("r2",))


def test_after_a_downgrade_that_failed_part_way_the_way_out_is_a_rollback_that_stays_and_an_upgrade() -> None:
    runs = [run(1, "upgrade", "succeeded", ("r1",), "r3", ("r3",), "verified"),
            run(2, "downgrade", "failed", ("r3",), "base", ("r2",))]
    advice = lanes.way_out(runs, ("r2",))
    assert "`dbguard rollback`" in advice and "stays at r2" in advice and "`dbguard upgrade r3`" in advice
    assert "roll back to r3" not in advice


@pytest.mark.parametrize(("check", "claim"), [
    ("verified", "alembic_version and schema checked"),
    ("accepted", "alembic_version and schema checked"),
    ("first", "no reference schema there to compare with"),
    ("unchecked", "the schema was not"),
])
def test_a_run_claims_the_schema_checked_only_where_it_was_compared(check: str, claim: str) -> None:
    assert claim in what_was_checked(check)
