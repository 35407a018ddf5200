"""The run state machine and step reconciliation, exhaustively, without a database."""

import itertools

import pytest

from dbguard.core.state import (
    RunRecord,
    RunStatus,
    StepStatus,
    TargetState,
    derive_state,
    latest_changing_run,
    step_status_after_run,
)


def run(id_: int, status: str, intent: str = "upgrade") -> RunRecord:
    return RunRecord(id=id_, intent=intent, status=status)


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("running", TargetState.UNKNOWN),
        ("failed", TargetState.FAILED),
        ("succeeded", TargetState.HEALTHY),
        ("rolled_back", TargetState.HEALTHY),
        ("resolved", TargetState.HEALTHY),
    ],
)
def test_state_follows_the_last_changing_run_when_nobody_holds_the_lock(status, expected):
    assert derive_state(run(1, status), lock_held_by_other=False) is expected


@pytest.mark.parametrize("status", [s.value for s in RunStatus])
def test_a_held_lock_means_running_whatever_the_ledger_says(status):
    assert derive_state(run(1, status), lock_held_by_other=True) is TargetState.RUNNING


def test_no_run_is_healthy():
    assert derive_state(None, lock_held_by_other=False) is TargetState.HEALTHY


def test_refused_and_busy_attempts_never_change_the_state():
    runs = [run(1, "failed"), run(2, "refused"), run(3, "busy"), run(4, "refused")]
    assert latest_changing_run(runs).id == 1
    assert derive_state(latest_changing_run(runs), False) is TargetState.FAILED


def test_latest_changing_run_ignores_order_and_handles_no_candidates():
    assert latest_changing_run([run(5, "succeeded"), run(9, "failed"), run(7, "succeeded")]).id == 9
    assert latest_changing_run([run(1, "busy")]) is None
    assert latest_changing_run([]) is None


def test_step_that_moved_the_version_table_succeeded_whatever_else():
    for completed, failing, committed in itertools.product([True, False], repeat=3):
        status = step_status_after_run(
            was_applied_before=False, is_applied_now=True,
            completed=completed, is_failing_step=failing, committed_work=committed,
        )
        assert status is StepStatus.SUCCEEDED


@pytest.mark.parametrize(
    ("completed", "failing", "committed", "expected"),
    [
        # the failing step: partial when some of its DDL is live (MySQL, SQLite), else failed
        (False, True, True, StepStatus.PARTIAL),
        (False, True, False, StepStatus.FAILED),
        # a step whose code returned but whose transaction was rolled back by a later failure
        (True, False, False, StepStatus.ROLLED_BACK),
        (True, False, True, StepStatus.ROLLED_BACK),
        (False, False, False, StepStatus.FAILED),
    ],
)
def test_step_not_reflected_in_the_version_table(completed, failing, committed, expected):
    status = step_status_after_run(
        was_applied_before=False, is_applied_now=False,
        completed=completed, is_failing_step=failing, committed_work=committed,
    )
    assert status is expected
