"""Pure decisions of the emergency lane, in milliseconds: where a rollback goes (core/lanes.py),
whether a run-lock holder is a zombie (core/zombie.py), and when the watchdog cancels (core/watchdog.py)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools

import pytest

from dbguard.core import lanes, watchdog, zombie
from dbguard.core.state import RunRecord

# lanes.rollback_target --------------------------------------------------------------------------


def run(id: int, intent: str, status: str, frm: tuple[str, ...] = (), to: str | None = None,
        after: tuple[str, ...] | None = None, check: str | None = None) -> RunRecord:
    return RunRecord(id=id, intent=intent, status=status, from_revisions=frm, to_revision=to,
                     revisions_after=after, schema_check=check)


def test_no_runs_nothing_to_roll_back() -> None:
    picked = lanes.rollback_target([])
    assert picked.revisions is None and picked.undoes == ()
    assert "no run" in picked.reason


def test_only_refused_and_busy_runs_count_as_no_runs() -> None:
    picked = lanes.rollback_target([run(1, "upgrade", "refused", ("a",), "b"), run(2, "upgrade", "busy", ("a",), "b")])
    assert picked.revisions is None


@pytest.mark.parametrize("status", ["failed", "running"])
def test_failed_or_dead_run_goes_back_to_the_last_verified_state(status: str) -> None:
    ok = run(1, "upgrade", "succeeded", (), "a", after=("a",), check="verified")
    bad = run(2, "upgrade", status, ("a",), "c")
    picked = lanes.rollback_target([ok, bad])
    assert picked.revisions == ("a",)
    assert picked.undoes == (bad,) and picked.checkpoint == ok
    assert "run 1" in picked.reason and "run 2" in picked.reason


def test_failed_first_deploy_goes_back_to_base() -> None:
    picked = lanes.rollback_target([run(1, "upgrade", "failed", (), "b")])
    assert picked.revisions == ()  # base, which is a target, not "nothing to roll back"


def test_without_a_verified_state_the_ledger_s_first_run_is_where_it_started() -> None:
    runs = [run(1, "upgrade", "failed", ("a",), "c"), run(2, "rollback", "failed", ("b",), "a")]
    picked = lanes.rollback_target(runs)
    assert picked.revisions == ("a",) and picked.undoes == (runs[1], runs[0]) and picked.checkpoint is None


def test_refusals_after_a_failure_do_not_hide_it() -> None:
    bad = run(2, "upgrade", "failed", ("a",), "c")
    runs = [run(1, "upgrade", "succeeded", (), "a"), bad, run(3, "upgrade", "refused", ("b",), "c"),
            run(4, "rollback", "refused", ("b",), "a"), run(5, "rollback", "busy", ("b",), "a")]
    assert lanes.rollback_target(runs).undoes == (bad,)


def test_a_run_whose_schema_check_failed_is_no_checkpoint() -> None:
    """A "succeeded" status is not enough once the end checks exist: the check must have passed."""
    good = run(1, "upgrade", "succeeded", (), "a", after=("a",), check="first")
    differs = run(2, "rollback", "failed", ("b",), "a", after=("a",), check="differs")
    unchecked = run(3, "upgrade", "succeeded", ("a",), "b", after=("b",), check="unchecked")
    bad = run(4, "upgrade", "failed", ("b",), "c")
    picked = lanes.rollback_target([good, differs, unchecked, bad])
    assert picked.revisions == ("a",) and picked.checkpoint == good
    assert picked.undoes == (bad, differs)


def test_runs_may_come_in_any_order() -> None:
    runs = [run(1, "upgrade", "succeeded", (), "a"), run(2, "upgrade", "succeeded", ("a",), "b"),
            run(3, "upgrade", "failed", ("b",), "c")]
    for order in itertools.permutations(runs):
        assert lanes.rollback_target(list(order)).revisions == ("b",)


def test_healthy_undoes_the_last_deploy() -> None:
    runs = [run(1, "upgrade", "succeeded", (), "a"), run(2, "upgrade", "succeeded", ("a",), "b")]
    picked = lanes.rollback_target(runs)
    assert picked.revisions == ("a",) and picked.undoes == (runs[1],)
    assert "last deploy" in picked.reason


def test_a_no_op_upgrade_is_not_a_deploy() -> None:
    deploy = run(2, "upgrade", "succeeded", ("a",), "b")
    runs = [run(1, "upgrade", "succeeded", (), "a"), deploy, run(3, "upgrade", "succeeded", ("b",), "b")]
    assert lanes.rollback_target(runs).undoes == (deploy,)


@pytest.mark.parametrize("intent", ["rollback", "downgrade"])
def test_nothing_to_undo_after_a_rollback_or_downgrade(intent: str) -> None:
    """A second rollback must not undo the deploy before the one already undone."""
    runs = [run(1, "upgrade", "succeeded", (), "a"), run(2, "upgrade", "rolled_back", ("a",), "b"),
            run(3, intent, "succeeded", ("b",), "a")]
    picked = lanes.rollback_target(runs)
    assert picked.revisions is None
    assert "since the last rollback or downgrade" in picked.reason


def test_a_failed_rollback_is_followed_by_another_to_the_same_state() -> None:
    """upgrade-fail, rollback-fail, downgrade-fail: the way out is still the last verified state,
    never the starting point of the last failed run."""
    runs = [run(1, "upgrade", "succeeded", (), "a"), run(2, "upgrade", "failed", ("a",), "c"),
            run(3, "rollback", "failed", ("b",), "a"), run(4, "downgrade", "failed", ("b",), "a")]
    picked = lanes.rollback_target(runs)
    assert picked.revisions == ("a",) and picked.undoes == (runs[3], runs[2], runs[1])
    assert picked.checkpoint == runs[0]


def test_revisions_after_say_where_a_run_ended() -> None:
    runs = [run(1, "upgrade", "succeeded", (), "head", after=("r3",), check="verified"),
            run(2, "upgrade", "failed", ("r3",), "r5")]
    assert lanes.rollback_target(runs).revisions == ("r3",)


def test_a_downgrade_that_failed_part_way_stays_where_it_stopped() -> None:
    """The last verified state (r3) is above the database the failed downgrade left at r2: a rollback
    never moves forward, so it stays at r2 (repairing the failed step there)."""
    good = run(1, "upgrade", "succeeded", ("r1",), "r3", after=("r3",), check="verified")
    bad = run(2, "downgrade", "failed", ("r3",), "base", after=("r2",))
    picked = lanes.rollback_target([good, bad], heads_now=("r2",))
    assert picked.revisions == ("r2",) and picked.undoes == (bad,) and picked.above == "r3"
    assert "never moves forward" in picked.reason and "run 2" in picked.reason
    # The same read from the revision graph, where the lane has one.
    assert lanes.rollback_target([good, bad], ("r2",), forward=lambda revs: revs == ("r3",)).revisions == ("r2",)
    assert lanes.rollback_target([good, bad], ("r2",), forward=lambda revs: False).revisions == ("r3",)
    # Without knowing where the database is, the verified state as before.
    assert lanes.rollback_target([good, bad]).revisions == ("r3",)


def test_a_downgrade_that_failed_at_its_first_step_goes_back_to_the_verified_state() -> None:
    good = run(1, "upgrade", "succeeded", ("r1",), "r3", after=("r3",), check="verified")
    bad = run(2, "downgrade", "failed", ("r3",), "base", after=("r3",))
    picked = lanes.rollback_target([good, bad], heads_now=("r3",))
    assert picked.revisions == ("r3",) and picked.checkpoint == good and picked.above is None


def test_the_ledger_alone_says_nothing_once_an_upgrade_ran_since_the_verified_state() -> None:
    """A forced upgrade after the failed downgrade may have gone anywhere: only the graph can tell."""
    good = run(1, "upgrade", "succeeded", ("r1",), "r3", after=("r3",), check="verified")
    runs = [good, run(2, "downgrade", "failed", ("r3",), "base", after=("r1",)),
            run(3, "upgrade", "failed", ("r1",), "r5", after=("r4",))]
    assert lanes.rollback_target(runs, heads_now=("r4",)).revisions == ("r3",)


def test_a_failed_first_run_that_was_a_downgrade_stays_where_it_stopped() -> None:
    picked = lanes.rollback_target([run(1, "downgrade", "failed", ("r3",), "base", after=("r2",))], ("r2",))
    assert picked.revisions == ("r2",) and picked.above == "r3"


def test_several_heads_are_kept() -> None:
    picked = lanes.rollback_target([run(1, "upgrade", "failed", ("x1", "y1"), "x2 y1")])
    assert picked.revisions == ("x1", "y1")


@pytest.mark.parametrize(("target", "now", "ok"), [
    (set(), {"a", "b"}, True),            # to base: only removes
    ({"a"}, {"a", "b"}, True),            # one step down
    ({"a", "b"}, {"a", "b"}, True),       # already there: nothing to do, not forward
    ({"a", "b", "c"}, {"a", "b"}, False),  # would apply c
    ({"x"}, {"a", "b"}, False),           # another branch
])
def test_never_forward(target: set[str], now: set[str], ok: bool) -> None:
    assert lanes.never_forward(target, now) is ok


# zombie.judge -----------------------------------------------------------------------------------

NOW = dt.datetime(2026, 1, 1, 12, 0, 0, tzinfo=dt.timezone.utc)
STALE_AFTER = 30.0


def holder(silent_s: float | None, *, same_host: bool = True, alive: bool | None = True,
           idle_s: float | None = None, started_silent_s: float | None = None) -> zombie.Holder:
    def ago(s: float | None) -> dt.datetime | None:
        return None if s is None else NOW - dt.timedelta(seconds=s)

    return zombie.Holder(heartbeat_at=ago(silent_s), started_at=ago(started_silent_s), same_host=same_host,
                         process_alive=alive, session_idle_s=idle_s)


def test_unknown_holder_is_never_taken_over() -> None:
    verdict = zombie.judge(None, NOW, STALE_AFTER)
    assert not verdict.zombie and "not a dbguard run" in verdict.reason


def test_holder_without_any_sign_of_life_is_not_judged() -> None:
    assert not zombie.judge(holder(None, alive=False), NOW, STALE_AFTER).zombie


@pytest.mark.parametrize("h", [
    holder(1, alive=False),                           # its process just died: the server frees the lock
    holder(1, same_host=False, alive=None, idle_s=999),
    holder(STALE_AFTER, alive=False, idle_s=999),     # exactly at the limit is still fresh
    holder(STALE_AFTER, same_host=False, alive=None, idle_s=999),
], ids=["process-gone", "other-host-idle", "limit-same-host", "limit-other-host"])
def test_fresh_heartbeat_is_never_a_zombie(h: zombie.Holder) -> None:
    verdict = zombie.judge(h, NOW, STALE_AFTER)
    assert not verdict.zombie
    assert "fresh" in verdict.reason


def test_stale_and_process_gone_is_a_zombie() -> None:
    verdict = zombie.judge(holder(31, alive=False), NOW, STALE_AFTER)
    assert verdict.zombie and "process is gone" in verdict.reason


def test_on_another_host_stale_and_session_idle_since_is_a_zombie() -> None:
    """Where the process cannot be seen: its session idle since before the heartbeat was due."""
    verdict = zombie.judge(holder(60, same_host=False, alive=None, idle_s=30), NOW, STALE_AFTER)
    assert verdict.zombie and "idle" in verdict.reason


@pytest.mark.parametrize("state", ["T", "S", "R", None])
def test_on_its_own_host_a_process_that_exists_is_alive_however_silent(state: str | None) -> None:
    """SIGSTOPped (T), swapped out or slow: it may resume and commit, so it is never taken over,
    whatever its heartbeat and its session say; the reason names its pid, host and state."""
    h = dataclasses.replace(holder(3600, alive=True, idle_s=3600), pid=4242, host="deploy-1", process_state=state)
    verdict = zombie.judge(h, NOW, STALE_AFTER)
    assert not verdict.zombie
    assert "process 4242 on deploy-1 is alive" in verdict.reason
    assert ("state T, stopped" in verdict.reason) is (state == "T")


@pytest.mark.parametrize("h", [
    holder(60, same_host=False, alive=None, idle_s=None),  # another host, slow: never
    holder(600, same_host=False, alive=None, idle_s=1),
], ids=["other-host-busy", "other-host-recent"])
def test_stale_but_maybe_working_is_never_taken_over(h: zombie.Holder) -> None:
    verdict = zombie.judge(h, NOW, STALE_AFTER)
    assert not verdict.zombie and "may still be working" in verdict.reason


def test_other_host_process_state_is_never_trusted() -> None:
    """On another host dbguard cannot see the process: a 'gone' there must not count."""
    assert not zombie.judge(holder(60, same_host=False, alive=False), NOW, STALE_AFTER).zombie


def test_started_at_stands_in_for_a_missing_heartbeat() -> None:
    assert zombie.judge(holder(None, alive=False, started_silent_s=40), NOW, STALE_AFTER).zombie
    assert not zombie.judge(holder(None, alive=False, started_silent_s=5), NOW, STALE_AFTER).zombie


# watchdog ---------------------------------------------------------------------------------------

W = watchdog.Waiter


def test_waiting_on_without_tables_keeps_everyone() -> None:
    waiters = [W("1", 10, "SELECT * FROM a"), W("2", 20, None)]
    assert watchdog.waiting_on(waiters, []) == waiters
    assert watchdog.waiting_on(waiters, ["."]) == waiters  # nothing usable in the name


@pytest.mark.parametrize(("statement", "kept"), [
    ("SELECT count(*) FROM t1", True),
    ("select * from `T1` where id = 1", True),
    ('SELECT * FROM "t1"', True),
    ("SELECT * FROM app.t1 JOIN u ON true", True),
    ("UPDATE t1 SET x = 1", True),
    ("SELECT * FROM t10", False),
    ("SELECT * FROM xt1", False),
    ("SELECT * FROM t1_old", False),
    ("SELECT * FROM $t1", False),
    ("SELECT * FROM other", False),
    (None, True),  # a waiter whose statement is unknown may be ours: kept
])
def test_waiting_on_matches_whole_table_names(statement: str | None, kept: bool) -> None:
    waiter = W("7", 100, statement)
    assert (watchdog.waiting_on([waiter], ["app.t1"]) == [waiter]) is kept


def test_waiting_on_escapes_table_names() -> None:
    """A name is matched literally: ``t+1`` must not act as a pattern that matches ``tt1``."""
    kept, other = W("1", 5, "SELECT * FROM `t+1`"), W("2", 5, "SELECT * FROM tt1")
    assert watchdog.waiting_on([kept, other], ["db.`t+1`"]) == [kept]


def test_sample_and_should_cancel() -> None:
    empty = watchdog.sample([])
    assert empty == watchdog.QueueSample(0, 0, ())
    assert not watchdog.should_cancel(empty, 0)
    queue = watchdog.sample([W("1", 200), W("2", 1600), W("3", -5)])
    assert queue == watchdog.QueueSample(3, 1600, ("1", "2", "3"))
    assert watchdog.should_cancel(queue, 1500)
    assert not watchdog.should_cancel(queue, 1600)  # strictly longer than allowed
    assert not watchdog.should_cancel(watchdog.sample([W("1", -5)]), 0)  # clock skew is no wait
