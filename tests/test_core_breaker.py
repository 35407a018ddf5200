"""The circuit breaker over every intent and state."""

import datetime as dt

import pytest

from dbguard.core import breaker
from dbguard.core.state import Intent, RunRecord, TargetState

FAILED_RUN = RunRecord(
    id=7, intent="upgrade", status="failed", failed_step="0004_audit", error="boom",
    started_at=dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc), pid=42, host="deploy-1",
)
BROKEN = [TargetState.FAILED, TargetState.UNKNOWN]
HEALTHY = [TargetState.HEALTHY, TargetState.RUNNING]


@pytest.mark.parametrize("state", BROKEN)
@pytest.mark.parametrize("intent", [Intent.UPGRADE, Intent.DOWNGRADE])
def test_building_on_a_broken_target_is_refused(intent, state):
    decision = breaker.decide(intent, state, FAILED_RUN, force=False)
    assert not decision.allowed
    assert "circuit breaker open" in decision.reason
    assert "0004_audit" in decision.reason
    assert "dbguard rollback" in decision.advice and "dbguard resolve" in decision.advice


@pytest.mark.parametrize("state", BROKEN)
@pytest.mark.parametrize("intent", [Intent.UPGRADE, Intent.DOWNGRADE])
def test_force_is_allowed_only_with_the_confirmation(intent, state):
    decision = breaker.decide(intent, state, FAILED_RUN, force=True)
    assert decision.allowed and decision.needs_confirmation


@pytest.mark.parametrize("state", BROKEN)
def test_rollback_lane_stays_open(state):
    decision = breaker.decide(Intent.ROLLBACK, state, FAILED_RUN, force=False)
    assert decision.allowed and not decision.needs_confirmation


@pytest.mark.parametrize("state", BROKEN)
def test_resolve_needs_the_confirmation(state):
    decision = breaker.decide(Intent.RESOLVE, state, FAILED_RUN, force=False)
    assert decision.allowed and decision.needs_confirmation


@pytest.mark.parametrize("state", HEALTHY)
@pytest.mark.parametrize("intent", [Intent.UPGRADE, Intent.DOWNGRADE, Intent.ROLLBACK])
@pytest.mark.parametrize("force", [False, True])
def test_healthy_target_needs_no_confirmation(intent, state, force):
    decision = breaker.decide(intent, state, None, force=force)
    assert decision.allowed and not decision.needs_confirmation


@pytest.mark.parametrize("state", HEALTHY)
def test_nothing_to_resolve_on_a_healthy_target(state):
    assert not breaker.decide(Intent.RESOLVE, state, None, force=False).allowed


def test_unknown_state_says_the_process_died():
    running = RunRecord(id=3, intent="upgrade", status="running", pid=99, host="ci-7")
    text = breaker.describe_breaker(TargetState.UNKNOWN, running)
    assert "never finished" in text and "pid 99 on ci-7" in text


@pytest.mark.parametrize(
    ("answer", "accepted"),
    [("CONFIRM_RISK", True), (" CONFIRM_RISK\n", True), ("confirm_risk", False), ("yes", False),
     ("", False), (None, False), ("CONFIRM_RISK!", False)],
)
def test_only_the_exact_token_confirms(answer, accepted):
    assert breaker.confirmation_accepted(answer) is accepted
