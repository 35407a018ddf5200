"""Pure fleet decisions: batch parsing, canary order, blast radius arithmetic, fleet state."""

from __future__ import annotations

import pytest

from dbguard.core.fleet import (
    BatchSpecError,
    Member,
    blast_radius,
    dead_claims,
    fleet_state,
    left_out,
    order_members,
    parse_batches,
    rollback_set,
    run_to_undo,
)
from dbguard.core.state import RunRecord, TargetState


def fleet(n: int, canary: tuple[int, ...] = (), tags: dict[int, tuple[str, ...]] | None = None) -> list[Member]:
    tags = tags or {}
    return [Member(f"t{i:02d}", 1.0, (("canary",) if i in canary else ()) + tags.get(i, ())) for i in range(n)]


def names(batches: list[tuple[str, ...]]) -> list[list[str]]:
    return [list(b) for b in batches]


def test_cumulative_counts_and_shares() -> None:
    batches = parse_batches("1,25%,100%", fleet(12))
    assert [len(b) for b in batches] == [1, 2, 9]
    assert names(batches)[0] == ["t00"]
    assert sum(batches, ()) == tuple(f"t{i:02d}" for i in range(12))


def test_shares_round_up_and_never_give_an_empty_batch() -> None:
    # 10% of 5 rounds to 1, the same as the canary batch: no empty batch.
    assert [len(b) for b in parse_batches("1,10%,50%,100%", fleet(5))] == [1, 2, 2]
    assert [len(b) for b in parse_batches("10%,100%", fleet(200))] == [20, 180]
    assert [len(b) for b in parse_batches("33.3%,100%", fleet(3))] == [1, 2]
    assert [len(b) for b in parse_batches("1%", fleet(1))] == [1]


def test_canary_targets_go_first_then_file_order() -> None:
    members = fleet(6, canary=(3, 5))
    assert [m.name for m in order_members(members)] == ["t03", "t05", "t00", "t01", "t02", "t04"]
    assert names(parse_batches("1,3,100%", members)) == [["t03"], ["t05", "t00"], ["t01", "t02", "t04"]]


def test_batches_by_tag() -> None:
    members = fleet(6, canary=(4,), tags={0: ("eu",), 2: ("eu",), 4: ("eu",), 1: ("us",)})
    batches = parse_batches("tag:canary,tag:eu,tag:us,100%", members)
    # The canary is also tagged eu: already done, so not again.
    assert names(batches) == [["t04"], ["t00", "t02"], ["t01"], ["t03", "t05"]]


def test_a_rollout_stops_short_of_the_whole_fleet_only_when_asked() -> None:
    with pytest.raises(BatchSpecError, match="ends at 2 of the fleet's 5 targets: end it with 100%, or pass "
                                             "--partial-rollout"):
        parse_batches("1,2", fleet(5))
    batches = parse_batches("1,2", fleet(5), partial=True)
    assert names(batches) == [["t00"], ["t01"]]
    assert left_out(batches, fleet(5)) == ("t02", "t03", "t04")
    assert left_out(parse_batches("1,100%", fleet(5)), fleet(5)) == ()


@pytest.mark.parametrize("spec, message", [
    ("", "comma-separated"),
    ("1,,100%", "comma-separated"),
    ("0,100%", "1 target or more"),
    ("13", "only 12 targets"),
    ("3,2,100%", "cumulative"),
    ("3,3", "cumulative"),
    ("0%", "above 0%"),
    ("150%", "at most 100%"),
    ("x%", "not a percentage"),
    ("abc", "neither a number"),
    ("tag:", "name the tag"),
    ("tag:nope,100%", "no target has the tag"),
])
def test_bad_batch_specs(spec: str, message: str) -> None:
    with pytest.raises(BatchSpecError, match=message):
        parse_batches(spec, fleet(12))


def test_no_targets() -> None:
    with pytest.raises(BatchSpecError, match="no targets"):
        parse_batches("100%", [])


def test_blast_radius_shares_and_next_batch() -> None:
    weights = {"a": 10, "b": 20, "c": 30, "d": 40}
    radius = blast_radius(weights, {"a": "succeeded", "b": "failed", "c": "skipped"}, next_batch=["d"])
    assert radius.failed == ("b",)
    assert radius.failed_share == pytest.approx(0.2)
    assert radius.upgraded == ("a",)
    assert radius.upgraded_share == pytest.approx(0.1)
    assert radius.next_batch == ("d",)
    assert radius.next_share == pytest.approx(0.4)
    assert radius.not_started == ("c", "d")
    assert radius.total_weight == 100


def test_blast_radius_unknown_counts_as_failed_and_zero_weights() -> None:
    radius = blast_radius({"a": 0, "b": 0}, {"a": "unknown"})
    assert radius.failed == ("a",)
    assert radius.failed_share == 0.0
    assert radius.next_batch == ()


def test_fleet_state_reads_like_a_target() -> None:
    def run(status: str) -> RunRecord:
        return RunRecord(id=1, intent="upgrade", status=status)

    assert fleet_state(None, False) is TargetState.HEALTHY
    assert fleet_state(run("succeeded"), False) is TargetState.HEALTHY
    assert fleet_state(run("failed"), False) is TargetState.FAILED
    # A run row that says running while nobody holds the fleet lock: its coordinator died.
    assert fleet_state(run("running"), False) is TargetState.UNKNOWN
    assert fleet_state(run("running"), True) is TargetState.RUNNING
    assert fleet_state(run("rolled_back"), False) is TargetState.HEALTHY
    assert fleet_state(run("resolved"), False) is TargetState.HEALTHY


def test_rollback_set() -> None:
    outcomes = {"a": "succeeded", "b": "failed", "c": "unknown", "d": "skipped", "e": "refused",
                "f": "succeeded", "g": "rolled_back"}
    assert rollback_set(outcomes, all_upgraded=False) == ["b", "c"]
    assert rollback_set(outcomes, all_upgraded=True, moved={"f": False}) == ["a", "b", "c"]


def test_run_to_undo() -> None:
    assert run_to_undo([]) is None
    assert run_to_undo([("failed", True), ("succeeded", True)]) == 0
    assert run_to_undo([("running", True)]) == 0
    # A run that moved nothing is skipped: the last deploy is the one before it.
    assert run_to_undo([("succeeded", False), ("succeeded", True)]) == 1
    assert run_to_undo([("rolled_back", True), ("succeeded", True)]) is None
    assert run_to_undo([("resolved", True)]) is None


def test_dead_claims() -> None:
    assert dead_claims({1: "claimed", 2: "running", 3: "running", 4: "succeeded"}, held={2}) == [1, 3]


def test_the_progress_line_of_a_stopped_fleet_says_refused_or_failed_and_where() -> None:
    from dbguard.output import FleetProgress

    line = FleetProgress._line
    assert line({"event": "fleet_failed", "fleet": "f", "status": "failed", "batch": 2, "error": "t3 failed"}) == \
        "fleet f: FAILED at batch 2: t3 failed"
    assert line({"event": "fleet_failed", "fleet": "f", "status": "refused", "batch": 1, "error": "t1 not HEALTHY"}) \
        == "fleet f: REFUSED at batch 1: t1 not HEALTHY"
    assert line({"event": "fleet_failed", "fleet": "f", "status": "failed", "error": "t2: busy"}) == \
        "fleet f: FAILED: t2: busy"


def test_a_target_whose_batch_never_started_claims_no_revision() -> None:
    from dbguard.output import render
    from dbguard.results import FleetBatchResult, FleetResult, FleetTargetResult

    result = FleetResult(fleet="f", intent="upgrade", status="failed", exit_code=5, message="fleet run 1 failed",
                         batches=(FleetBatchResult(number=1, status="failed", targets=("at-base",)),
                                  FleetBatchResult(number=2, status="skipped", targets=("never-read",))),
                         targets=(FleetTargetResult(name="at-base", masked_url="sqlite://", weight=1, batch=1,
                                                    status="failed", from_revisions=(), to_revision="r2"),
                                  FleetTargetResult(name="never-read", masked_url="sqlite://", weight=1, batch=2,
                                                    status="skipped")))
    lines = render(result, "text").splitlines()
    assert any("at-base" in line and "base -> r2" in line for line in lines)
    (skipped,) = [line for line in lines if "never-read" in line]
    assert "(revisions not read)" in skipped and "base" not in skipped
