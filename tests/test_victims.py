"""The kill policy (a pure function) exhaustively, and the wait-for graph helpers; no database."""

from __future__ import annotations

import itertools

import pytest

from dbguard.core import victims as v
from dbguard.core import waitfor as w
from dbguard.core.victims import Action, Activity, Candidate, KillPolicy, Kind, judge, judge_one

DB = "shop"
IDLE = {Activity.IDLE_IN_TRANSACTION.value, Activity.IDLE_IN_TRANSACTION_ABORTED.value, Activity.IDLE.value}


def _policy(**over):
    base = {"database": DB, "own_session_ids": frozenset({"1"}), "db_user": "dba",
            "protected_roles": ("replicator", "svc_*"), "protected_applications": ("pgbouncer", "etl-*"),
            "can_end_privileged": False, "can_end_other_roles": True, "signal_grant": "GRANT pg_signal_backend"}
    base.update(over)
    return KillPolicy(**base)


DIMENSIONS = {
    "session_id": ["1", "2"],
    "kind": [k.value for k in Kind],
    "database": [DB, "other", None],
    "explicit": [False, True],
    "user": ["app", "replicator", "svc_api", "dba"],
    "application": [None, "web", "pgbouncer", "etl-nightly"],
    "privileged": [False, True],
    "activity": [a.value for a in Activity],
    "xact_age_s": [None, 5.0, 120.0],
}
POLICIES = {
    "min_age_s": [None, 60.0],
    "can_end_privileged": [False, True],
    "can_end_other_roles": [True, False],
}


def _expected_allowed(c: Candidate, p: KillPolicy) -> bool:
    """The safety property, written independently of the rule order in judge_one."""
    return (
        c.session_id not in p.own_session_ids
        and c.kind == Kind.CLIENT.value
        and (c.database == p.database or (c.database is None and c.explicit))
        and c.user not in ("replicator", "svc_api")
        and c.application not in ("pgbouncer", "etl-nightly")
        and (not c.privileged or p.can_end_privileged)
        and (p.min_age_s is None or (c.xact_age_s is not None and c.xact_age_s >= p.min_age_s))
        and (p.can_end_other_roles or c.user == p.db_user)
    )


def test_policy_exhaustively():
    policies = [_policy(**dict(zip(POLICIES, combo))) for combo in itertools.product(*POLICIES.values())]
    candidates = [Candidate(**dict(zip(DIMENSIONS, combo))) for combo in itertools.product(*DIMENSIONS.values())]
    checked = 0
    for p in policies:
        verdicts = judge(candidates, p)
        assert len(verdicts) == len(candidates)
        for c, verdict in zip(candidates, verdicts):
            assert verdict.session_id == c.session_id
            allowed = _expected_allowed(c, p)
            assert verdict.allowed is allowed, (c, p, verdict)
            if allowed:
                assert verdict.code == v.OK
                want = Action.TERMINATE if c.activity in IDLE else Action.CANCEL_THEN_TERMINATE
                assert verdict.action is want, (c, verdict)
            else:
                assert verdict.action is Action.NONE and verdict.code != v.OK and verdict.reason
            checked += 1
    assert checked > 100_000


GOOD = Candidate(session_id="7", user="app", application="web", database=DB,
                 activity=Activity.IDLE_IN_TRANSACTION.value, xact_age_s=300.0)


@pytest.mark.parametrize(("change", "code"), [
    ({"session_id": "1"}, v.OWN_SESSION),
    ({"kind": Kind.PREPARED.value}, v.PREPARED),
    ({"kind": Kind.REPLICATION.value}, v.REPLICATION),
    ({"kind": Kind.BACKGROUND.value}, v.BACKGROUND),
    ({"kind": Kind.AUTOVACUUM.value}, v.AUTOVACUUM),
    ({"kind": Kind.AUTOVACUUM_WRAPAROUND.value}, v.WRAPAROUND),
    ({"database": "other"}, v.OTHER_DATABASE),
    ({"database": ""}, v.OTHER_DATABASE),
    ({"database": None}, v.UNKNOWN_DATABASE),
    ({"user": "replicator"}, v.PROTECTED_ROLE),
    ({"user": "svc_billing"}, v.PROTECTED_ROLE),
    ({"application": "pgbouncer"}, v.PROTECTED_APPLICATION),
    ({"application": "etl-hourly"}, v.PROTECTED_APPLICATION),
    ({"privileged": True}, v.PRIVILEGED),
])
def test_each_rule_refuses_with_its_code(change, code):
    c = Candidate(**{**GOOD.__dict__, **change})
    verdict = judge_one(c, _policy())
    assert not verdict.allowed and verdict.code == code


def test_own_session_wins_over_everything_and_other_database_over_explicit():
    own = Candidate(**{**GOOD.__dict__, "session_id": "1", "explicit": True})
    assert judge_one(own, _policy(can_end_privileged=True)).code == v.OWN_SESSION
    other = Candidate(**{**GOOD.__dict__, "database": "other", "explicit": True})
    assert judge_one(other, _policy()).code == v.OTHER_DATABASE
    unknown = Candidate(**{**GOOD.__dict__, "database": None, "explicit": True})
    assert judge_one(unknown, _policy()).allowed


def test_a_session_of_unknown_database_is_never_proposed_and_its_verdict_says_so_when_named():
    """The approximate MySQL source cannot tell some sessions' database: no selector proposes them,
    and the verdict that --pid gets names it 'database unknown' (the dry run and the prompt show it)."""
    unknown = Candidate(**{**GOOD.__dict__, "database": None})
    assert v.database_unknown(unknown) and not v.database_unknown(GOOD)
    assert not v.database_unknown(Candidate(**{**GOOD.__dict__, "database": None, "kind": Kind.PREPARED.value}))
    assert judge_one(unknown, _policy()).code == v.UNKNOWN_DATABASE
    named = judge_one(Candidate(**{**unknown.__dict__, "explicit": True}), _policy())
    assert named.allowed and named.reason.startswith("database unknown, named with --pid: ")
    assert "database unknown" not in judge_one(GOOD, _policy()).reason
    # Read from a lock source: it holds nothing here, which says so (not "another database ()").
    nothing_here = judge_one(Candidate(**{**GOOD.__dict__, "database": ""}), _policy())
    assert nothing_here.code == v.OTHER_DATABASE and "holds no lock in database" in nothing_here.reason


def test_age_and_grant_rules():
    young = Candidate(**{**GOOD.__dict__, "xact_age_s": 5.0})
    assert judge_one(young, _policy(min_age_s=60)).code == v.TOO_YOUNG
    assert judge_one(Candidate(**{**GOOD.__dict__, "xact_age_s": None}), _policy(min_age_s=1)).code == v.AGE_UNKNOWN
    assert judge_one(young, _policy()).allowed
    verdict = judge_one(GOOD, _policy(can_end_other_roles=False))
    assert verdict.code == v.MISSING_GRANT and verdict.grant == "GRANT pg_signal_backend"
    mine = Candidate(**{**GOOD.__dict__, "user": "dba"})
    assert judge_one(mine, _policy(can_end_other_roles=False)).allowed
    su = Candidate(**{**GOOD.__dict__, "privileged": True})
    assert judge_one(su, _policy(can_end_privileged=True)).allowed


def test_how_to_end_follows_what_the_session_does():
    for activity, action in [("idle in transaction", Action.TERMINATE), ("idle in transaction (aborted)",
                             Action.TERMINATE), ("idle", Action.TERMINATE), ("active", Action.CANCEL_THEN_TERMINATE),
                             ("waiting", Action.CANCEL_THEN_TERMINATE), ("unknown", Action.CANCEL_THEN_TERMINATE)]:
        assert judge_one(Candidate(**{**GOOD.__dict__, "activity": activity}), _policy()).action is action


# --- wait-for graph -----------------------------------------------------------------------------------


def test_chain_a_x_b_has_exactly_one_root():
    # PostgreSQL lists both A and the queued X for B.
    edges = {"X": ("A",), "B": ("A", "X"), "A": ()}
    assert w.roots(edges) == ["A"]
    assert w.root_blockers_of("B", edges) == ["A"]
    assert w.root_blockers_of("X", edges) == ["A"]
    assert w.tree_order(["A", "X", "B"], edges, ["A"]) == [("A", 0), ("X", 1), ("B", 2)]
    assert set(w.closure(["B"], edges)) == {"A", "B", "X"}


def test_cycles_have_no_root_and_do_not_loop():
    edges = {"A": ("B",), "B": ("A",)}
    assert w.roots(edges) == []
    assert set(w.closure(["A"], edges)) == {"A", "B"}
    assert [n for n, _ in w.tree_order(["A", "B"], edges, [])] == ["A", "B"]


def test_metadata_lock_edges_for_the_chain():
    rows = [
        w.MdlRow("A", "shop", "t", "SHARED_READ", True),
        w.MdlRow("X", "shop", "t", "SHARED_UPGRADABLE", True),  # ALTER holds SU while it waits for X
        w.MdlRow("X", "shop", "t", "EXCLUSIVE", False),
        w.MdlRow("B", "shop", "t", "SHARED_READ", False),
        w.MdlRow("C", "shop", "u", "SHARED_WRITE", True),  # another table: unrelated
    ]
    edges = w.mdl_wait_for(rows)
    assert edges == {"X": ("A",), "B": ("X",)}
    assert w.roots(edges, waiting={"X", "B"}) == ["A"]


@pytest.mark.parametrize(("held", "granted", "wanted", "blocks"), [
    ("MDL_SHARED_READ", True, "EXCLUSIVE", True),
    ("SHARED_READ", True, "SHARED_READ", False),
    ("SHARED_READ", True, "SHARED_WRITE", False),
    ("SHARED_WRITE", True, "SHARED_NO_WRITE", True),
    ("SHARED_UPGRADABLE", True, "SHARED_UPGRADABLE", True),
    ("EXCLUSIVE", True, "SHARED_READ", True),
    ("INTENTION_EXCLUSIVE", True, "EXCLUSIVE", False),
    ("EXCLUSIVE", False, "SHARED_READ", True),  # a pending exclusive goes first
    ("EXCLUSIVE", False, "EXCLUSIVE", False),
    ("SHARED_READ", False, "EXCLUSIVE", False),
    ("SHARED_READ", True, "UNKNOWN", True),
    ("nonsense", True, "SHARED_READ", True),
])
def test_mdl_compatibility(held, granted, wanted, blocks):
    assert w.mdl_blocks(held, granted, wanted) is blocks


def test_statement_modes():
    assert w.statement_mdl_mode("alter") == "EXCLUSIVE"
    assert w.statement_mdl_mode("create index") == "EXCLUSIVE"
    assert w.statement_mdl_mode("select") == "SHARED_READ"
    assert w.statement_mdl_mode("update") == "SHARED_WRITE"
    assert w.statement_mdl_mode("lock tables write") == "SHARED_NO_READ_WRITE"
    assert w.statement_mdl_mode(None) == w.UNKNOWN_MODE


def test_own_user_is_the_name_sessions_show_not_the_account():
    """MySQL/MariaDB: CURRENT_USER() is 'deployer@%', PROCESSLIST.USER 'deployer'; the server lets a user
    end threads of its own name without any privilege, and so does the policy."""
    from dbguard.dialects.mysql import MysqlDialect
    from dbguard.dialects.postgresql import PostgresqlDialect

    mariadb = MysqlDialect(mariadb=True)
    assert mariadb.session_user_name("deployer@%") == "deployer"
    assert mariadb.session_user_name("odd@name@10.0.0.%") == "odd@name"
    assert PostgresqlDialect().session_user_name("odd@name") == "odd@name"
    mine = Candidate(**{**GOOD.__dict__, "user": "deployer"})
    policy = _policy(can_end_other_roles=False, db_user="deployer@%", session_user="deployer")
    assert judge_one(mine, policy).allowed
    assert judge_one(Candidate(**{**GOOD.__dict__, "user": "other"}), policy).code == v.MISSING_GRANT
    assert judge_one(mine, _policy(can_end_other_roles=False, db_user="deployer@%")).code == v.MISSING_GRANT
