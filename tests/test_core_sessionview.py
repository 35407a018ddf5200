"""The lock tree's blocked counts and its filters: pure functions, no database."""

import pytest

from dbguard.core.sessionview import Seen, SessionFilter, blocked_counts, matches


def test_counts_of_a_chain_with_soft_blocks():
    # A -> X -> B, and B also lists A (pg_blocking_pids names sessions queued ahead too).
    counts = blocked_counts({"X": ("A",), "B": ("A", "X"), "A": ()})
    assert counts == {"A": (2, 2), "X": (1, 1), "B": (0, 0)}


def test_total_counts_each_session_once_through_every_path():
    # A blocks X and Y; both block Z; Z blocks W.
    counts = blocked_counts({"X": ("A",), "Y": ("A",), "Z": ("X", "Y"), "W": ("Z",)})
    assert counts["A"] == (2, 4)
    assert counts["X"] == (1, 2) and counts["Y"] == (1, 2) and counts["Z"] == (1, 1) and counts["W"] == (0, 0)


def test_a_cycle_never_counts_a_session_as_its_own_victim():
    counts = blocked_counts({"A": ("B",), "B": ("A",), "C": ("B",), "D": ("D",)})
    assert counts["A"] == (1, 2)  # B, and C behind B; not A itself
    assert counts["B"] == (2, 2)  # A and C
    assert counts["D"] == (0, 0)  # a self-edge is no victim


def test_no_filter_lets_everybody_through():
    f = SessionFilter()
    assert not f.active and f.describe() == "" and f.problems() == []
    assert matches(Seen(), f)


@pytest.mark.parametrize(("field", "bound", "flag"), [("idle_s", "min_idle_s", "--min-idle"),
                                                       ("busy_s", "min_busy_s", "--min-busy"),
                                                       ("wait_s", "min_wait_s", "--min-wait")])
def test_minimum_figures(field, bound, flag):
    f = SessionFilter(**{bound: 5.0})
    assert f.active and f.describe() == f"{flag} 5"
    assert matches(Seen(**{field: 5.0}), f) and matches(Seen(**{field: 12.5}), f)
    assert not matches(Seen(**{field: 4.99}), f)
    assert not matches(Seen(), f)  # the figure does not apply to it (not idle, not running, not waiting)


def test_names_are_exact():
    f = SessionFilter(user="bob", application="billing", default_database="shop")
    seen = Seen(user="bob", application="billing", default_database="shop")
    assert matches(seen, f)
    assert not matches(Seen(user="bobby", application="billing", default_database="shop"), f)
    assert not matches(Seen(user="bob", application=None, default_database="shop"), f)
    assert not matches(Seen(user="bob", application="billing", default_database=None), f)


def test_match_query_searches_the_shown_query():
    f = SessionFilter(match_query=r"^UPDATE\s+orders")
    assert matches(Seen(query="UPDATE orders SET x = 1"), f)
    assert not matches(Seen(query="update orders SET x = 1"), f)  # case-sensitive, as pt-kill's
    assert not matches(Seen(query=None), f)  # an idle MariaDB transaction shows no query


def test_every_filter_set_must_hold():
    f = SessionFilter(min_idle_s=1, user="bob")
    assert matches(Seen(user="bob", idle_s=2), f)
    assert not matches(Seen(user="bob", busy_s=2), f)
    assert not matches(Seen(user="eve", idle_s=2), f)
    assert f.describe() == "--min-idle 1 --user bob"


def test_problems_name_each_bad_value():
    f = SessionFilter(min_idle_s=-1, min_wait_s=float("nan"), match_query="(")
    problems = f.problems()
    assert len(problems) == 3
    assert problems[0].startswith("--min-idle -1:") and "--min-wait nan" in problems[1]
    assert problems[2].startswith("--match-query '(': not a regular expression")
