"""`dbguard locks` and `dbguard locks kill` on a real PostgreSQL, with real sessions holding real locks."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import uuid

import pytest
import sqlalchemy as sa

from dbguard import api, output
from dbguard.core.breaker import CONFIRM_TOKEN
from dbguard.core.sessionview import SessionFilter
from dbguard.core.victims import KillPolicy
from dbguard.db import lock_graph as dblocks
from dbguard.dialects.postgresql import PostgresqlDialect, advisory_key
from dbguard.errors import ConfigError, ExitCode
from dbguard.settings import load_settings
from tests.dbs import admin_engine, cannot_run
from tests.lockscene import (
    Background,
    Scene,
    dbguard,
    execute,
    kill_stopped_before_its_signal,
    session_id,
    write_ini,
)
from tests.projects import wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def scene(pg_url):
    s = Scene(pg_url)
    execute(s.admin, "CREATE TABLE t (id int PRIMARY KEY)")
    execute(s.admin, "INSERT INTO t VALUES (1)")
    yield s
    s.close()


@pytest.fixture
def ini(tmp_path):
    return write_ini(tmp_path)


def settings(ini, url, **more):
    return load_settings({"config_path": str(ini), "url": url, **more}, environ={})


def kills(url):
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            if not sa.inspect(conn).has_table("dbguard_kills"):
                return []
            return [dict(r) for r in conn.execute(sa.text("SELECT * FROM dbguard_kills ORDER BY id")).mappings()]
    finally:
        engine.dispose()


def test_tree_of_a_reader_blocking_an_alter_blocking_a_reader(scene, ini, pg_url):
    a, x, b, _, _ = scene.chain()
    pa, px, pb = session_id(a), session_id(x), session_id(b)
    tree = api.locks(settings(ini, pg_url))
    assert tree.roots == (pa,)
    by_id = {s.session_id: s for s in tree.sessions}
    assert set(by_id) == {pa, px, pb}
    assert tree.sessions[0].session_id == pa and tree.sessions[0].is_root
    assert by_id[pa].state == "idle in transaction" and by_id[pa].application == "app_a"
    assert by_id[pa].xact_age_s is not None and by_id[pa].client and by_id[pa].user == "postgres"
    assert any(lk.granted and lk.mode == "AccessShareLock" and lk.table == "public.t" for lk in by_id[pa].locks)
    assert by_id[px].state == "waiting" and by_id[px].blocked_by == (pa,)
    assert any(not lk.granted and lk.mode == "AccessExclusiveLock" for lk in by_id[px].locks)
    assert "ALTER TABLE t" in by_id[px].query
    # B queues behind X (and PostgreSQL lists A too): the only root is still A.
    assert px in by_id[pb].blocked_by and not by_id[pb].is_root and not by_id[px].is_root
    # --table narrows; another table has no waiters.
    assert api.locks(settings(ini, pg_url), table="public.t").roots == (pa,)
    execute(scene.admin, "CREATE TABLE other (id int)")
    assert api.locks(settings(ini, pg_url), table="other").sessions == ()  # nobody waits for it
    with pytest.raises(ConfigError, match="no table nope"):
        api.locks(settings(ini, pg_url), table="nope")


def test_chain_a_x_b_through_the_cli(scene, ini, pg_url):
    a, _x, _b, _, _ = scene.chain()
    done = dbguard(ini, pg_url, "--format", "json", "locks")
    assert done.returncode == 1, done.stderr  # somebody waits
    data = json.loads(done.stdout)
    assert data["roots"] == [session_id(a)]
    assert next(s["session_id"] for s in data["sessions"]) == session_id(a)
    text = dbguard(ini, pg_url, "locks", "--table", "t")
    assert text.returncode == 1 and f"ROOT {session_id(a)}" in text.stdout and "WAITS FOR AccessExclusiveLock" in text.stdout


def test_root_blockers_of_session_is_exactly_a(scene, pg_url):
    a, x, b, _, _ = scene.chain()
    dialect = PostgresqlDialect()
    engine = admin_engine(pg_url)
    with engine.connect() as conn:
        for waiter in (x, b):
            roots = dblocks.root_blockers_of_session(conn, dialect, session_id(waiter))
            assert [r.session_id for r in roots] == [session_id(a)]
            assert roots[0].identity
        assert dblocks.root_blockers_of_session(conn, dialect, session_id(a)) == []
    engine.dispose()


def test_kill_roots_dry_run_then_no_token_then_token(scene, ini, pg_url):
    a, x, b, x_job, b_job = scene.chain()
    dry = dbguard(ini, pg_url, "locks", "kill", "--roots", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "would terminate" in dry.stdout and scene.alive(a) and kills(pg_url) == []

    refused = dbguard(ini, pg_url, "locks", "kill", "--roots")
    assert refused.returncode == 3, refused.stderr
    assert CONFIRM_TOKEN in refused.stderr and f"session {session_id(a)}" in refused.stderr
    wrong = dbguard(ini, pg_url, "locks", "kill", "--roots", "--confirm-risk", "yes")
    assert wrong.returncode == 3
    assert scene.alive(a) and scene.is_waiting(session_id(x)) and kills(pg_url) == []

    done = dbguard(ini, pg_url, "locks", "kill", "--roots", "--confirm-risk", CONFIRM_TOKEN)
    assert done.returncode == 0, done.stderr
    assert "terminated" in done.stdout
    x_job.join(10)
    b_job.join(10)
    assert x_job.error is None and b_job.error is None
    assert not scene.alive(a) and scene.alive(x) and scene.alive(b)
    rows = kills(pg_url)
    assert len(rows) == 1
    row = rows[0]
    assert row["victim_session"] == session_id(a) and row["action"] == "terminate"
    assert row["outcome"] == "terminated" and row["victim_user"] == "postgres"
    assert row["victim_application"] == "app_a" and row["victim_state"] == "idle in transaction"
    assert "SELECT * FROM t" in row["victim_query"] and row["killed_by_db_user"] == "postgres"
    assert row["victim_xact_age_s"] > 0 and row["killed_at"] is not None


def test_kill_in_process_frees_the_ddl(scene, ini, pg_url):
    a, _x, _b, x_job, b_job = scene.chain()
    report = api.locks_kill(settings(ini, pg_url), roots=True, confirm=lambda prompt: CONFIRM_TOKEN)
    x_job.join(10)
    b_job.join(10)
    assert [o.session.session_id for o in report.outcomes] == [session_id(a)]
    assert report.outcomes[0].outcome == "terminated" and report.outcomes[0].audit_id
    assert x_job.error is None and b_job.error is None


def test_policy_refuses_protected_role_own_run_and_other_database(scene, ini, pg_url, pg_server_url):
    a, _x, _b, _, _ = scene.chain()
    protected = dbguard(ini, pg_url, "locks", "kill", "--roots", "--confirm-risk", CONFIRM_TOKEN,
                        extra_env={"DBGUARD_PROTECTED_ROLES": "replicator, postgres"})
    assert protected.returncode == 3, protected.stderr  # the policy refused a chosen session
    assert "role postgres is protected" in protected.stdout and scene.alive(a)

    # A dbguard run in progress: the session holding the run lock is dbguard's own.
    holder = scene.open()
    assert execute(holder, f"SELECT pg_try_advisory_lock({advisory_key('dbguard_')})")[0][0] is True
    own = dbguard(ini, pg_url, "locks", "kill", "--pid", session_id(holder), "--confirm-risk", CONFIRM_TOKEN)
    assert own.returncode == 3, own.stderr  # refused by the policy
    assert "dbguard's own session" in own.stdout and scene.alive(holder)

    # A session of another database on the same server.
    other = Scene(pg_server_url)
    try:
        foreign = other.idle_reader("pg_class", application="elsewhere")
        out = dbguard(ini, pg_url, "--format", "json", "locks", "kill", "--pid", session_id(foreign),
                      "--confirm-risk", CONFIRM_TOKEN)
        assert out.returncode == 1, out.stderr  # a --pid of another database
        outcome = json.loads(out.stdout)["outcomes"][0]
        assert outcome["code"] == "other_database" and outcome["outcome"] == "refused"
        assert other.alive(foreign)
    finally:
        other.close()
    assert kills(pg_url) == []


class _Recorded:
    """An audit that keeps its records in a list."""

    def __init__(self):
        self.rows = []

    def intend(self, session, action):
        self.rows.append((session.session_id, action, "signalling"))
        return len(self.rows)

    def complete(self, record_id, action, outcome):
        self.rows[record_id - 1] = (self.rows[record_id - 1][0], action, outcome)


def test_end_sessions_refuses_own_session_and_guards_id_reuse(scene, pg_url):
    a, x, _b, _, _ = scene.chain()
    dialect = PostgresqlDialect()
    engine = admin_engine(pg_url)
    with engine.connect() as conn:
        own = str(conn.execute(sa.text("SELECT pg_backend_pid()")).scalar())
        roots = dblocks.root_blockers_of_session(conn, dialect, session_id(x))
        me = dataclasses.replace(roots[0], session_id=own)
        policy = KillPolicy(database=pg_url.rsplit("/", 1)[1], own_session_ids=frozenset({own}), db_user="postgres",
                            can_end_privileged=True)
        audited = _Recorded()
        out = dblocks.end_sessions(conn, dialect, [me], policy, audited)
        assert out[0].code == "own_session" and out[0].outcome == "refused" and audited.rows == []
        # Same pid, another backend_start: the pid was "reused", so nothing is signalled or recorded.
        stale = dataclasses.replace(roots[0], identity="2001-01-01T00:00:00+00:00")
        out = dblocks.end_sessions(conn, dialect, [stale], policy, audited)
        assert out[0].outcome == "gone before it was ended" and audited.rows == [] and scene.alive(a)
    engine.dispose()


def test_running_blocker_in_a_transaction_is_cancelled(scene, ini, pg_url):
    # PostgreSQL aborts the transaction on the cancel's error and releases its locks at once (it then
    # sits "idle in transaction (aborted)" holding nothing), so the cancel alone frees the DDL.
    holder = scene.open("busy")
    execute(holder, "BEGIN")
    execute(holder, "SELECT * FROM t")
    scene.jobs.append(Background(holder, "SELECT pg_sleep(20)"))
    wait_for(lambda: execute(scene.admin, f"SELECT state FROM pg_stat_activity WHERE pid = {session_id(holder)}")
             [0][0] == "active", message="sleeper never became active")
    x, x_job = scene.background("ALTER TABLE t ADD COLUMN c_y INT")
    scene.wait_waiting(x)
    report = api.locks_kill(settings(ini, pg_url, kill_grace_ms=300), roots=True, confirm=lambda p: CONFIRM_TOKEN)
    (o,) = report.outcomes
    assert o.action == "cancel" and o.outcome == "cancelled", o
    x_job.join(10)
    assert x_job.error is None and scene.alive(holder)
    assert execute(scene.admin, f"SELECT state FROM pg_stat_activity WHERE pid = {session_id(holder)}")[0][0] == \
        "idle in transaction (aborted)"
    assert [r["action"] for r in kills(pg_url)] == ["cancel"]


def test_running_autocommit_blocker_is_only_cancelled(scene, ini, pg_url):
    holder, _busy = scene.background("SELECT pg_sleep(20) FROM t", application="report")
    wait_for(lambda: execute(scene.admin, f"SELECT state FROM pg_stat_activity WHERE pid = {session_id(holder)}")
             [0][0] == "active", message="sleeper never became active")
    x, x_job = scene.background("ALTER TABLE t ADD COLUMN c_z INT")
    scene.wait_waiting(x)
    report = api.locks_kill(settings(ini, pg_url), pids=(int(session_id(holder)),), confirm=lambda p: CONFIRM_TOKEN)
    (o,) = report.outcomes
    assert o.outcome == "cancelled" and o.action == "cancel", o
    x_job.join(10)
    assert x_job.error is None and scene.alive(holder)


def test_prepared_transaction_blocker(scene, ini, pg_url):
    if execute(scene.admin, "SHOW max_prepared_transactions")[0][0] == "0":
        cannot_run("max_prepared_transactions is 0 on this server: scripts/ci-servers raises it (ALTER SYSTEM "
                   "and a restart)")
    gid = f"dbg_{uuid.uuid4().hex[:8]}"
    p = scene.open()
    execute(p, "BEGIN")
    execute(p, "SELECT * FROM t")
    execute(p, f"PREPARE TRANSACTION '{gid}'")
    try:
        x, _x_job = scene.background("ALTER TABLE t ADD COLUMN c_p INT")
        scene.wait_waiting(x)
        tree = api.locks(settings(ini, pg_url))
        assert tree.roots == (f"prepared:{gid}",)
        root = tree.sessions[0]
        assert root.kind == "prepared" and root.gid == gid and root.free_with == f"ROLLBACK PREPARED '{gid}'"
        assert any(lk.table == "public.t" for lk in root.locks)
        engine = admin_engine(pg_url)
        with engine.connect() as conn:
            found = dblocks.root_blockers_of_session(conn, PostgresqlDialect(), session_id(x))
        engine.dispose()
        assert [r.gid for r in found] == [gid]
        text = dbguard(ini, pg_url, "locks")
        assert f"ROLLBACK PREPARED '{gid}' frees it" in text.stdout
        out = dbguard(ini, pg_url, "locks", "kill", "--roots", "--confirm-risk", CONFIRM_TOKEN)
        assert out.returncode == 3, out.stderr  # the policy refuses the prepared transaction
        assert "no session to end" in out.stdout and "nothing to end" in out.stdout
        assert scene.is_waiting(session_id(x)) and kills(pg_url) == []
    finally:
        with contextlib.suppress(Exception):
            execute(scene.admin, f"ROLLBACK PREPARED '{gid}'")


@pytest.fixture
def roles(pg_server_url, pg_url):
    """Two plain roles: ``low`` (runs dbguard, no grants) and ``app`` (holds the blocking lock)."""
    names = {k: f"dbg_{k}_{uuid.uuid4().hex[:8]}" for k in ("low", "app")}
    engine = admin_engine(pg_server_url)
    with engine.connect() as conn:
        for name in names.values():
            conn.execute(sa.text(f'CREATE ROLE "{name}" LOGIN'))
    yield names
    with engine.connect() as conn:
        for name in names.values():
            conn.execute(sa.text(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{name}'"))
    db_engine = admin_engine(pg_url)
    with db_engine.connect() as conn:
        for name in names.values():
            conn.execute(sa.text(f'DROP OWNED BY "{name}"'))
    db_engine.dispose()
    with engine.connect() as conn:
        for name in names.values():
            conn.execute(sa.text(f'DROP ROLE IF EXISTS "{name}"'))
    engine.dispose()


def as_role(url, role):
    return sa.engine.make_url(url).set(username=role).render_as_string(hide_password=False)


def test_missing_privileges_are_named(scene, ini, pg_url, roles):
    low, app = roles["low"], roles["app"]
    execute(scene.admin, f'GRANT SELECT ON t TO "{app}"')
    holder = Scene(as_role(pg_url, app))
    try:
        a = holder.idle_reader("t", application="app_role")
        su = scene.idle_reader("t")  # a superuser's reader, also a root
        x, _x_job = scene.background("ALTER TABLE t ADD COLUMN c_r INT")
        scene.wait_waiting(x)
        seen = dbguard(ini, as_role(pg_url, low), "locks")
        assert seen.returncode == 2
        assert f'GRANT pg_read_all_stats TO "{low}";' in seen.stderr and seen.stdout == ""
        execute(scene.admin, f'GRANT pg_read_all_stats TO "{low}"')
        listed = dbguard(ini, as_role(pg_url, low), "--format", "json", "locks")
        assert listed.returncode == 1 and set(json.loads(listed.stdout)["roots"]) == {session_id(a), session_id(su)}
        killed = dbguard(ini, as_role(pg_url, low), "locks", "kill", "--roots", "--confirm-risk", CONFIRM_TOKEN)
        assert killed.returncode == 2
        assert f'GRANT pg_signal_backend TO "{low}";' in killed.stderr
        assert holder.alive(a)
        # A superuser's session is reported, not attacked, by a role that is not superuser.
        execute(scene.admin, f'GRANT pg_signal_backend TO "{low}"')
        # The audit table comes first: a role that cannot create it ends nobody.
        no_ledger = dbguard(ini, as_role(pg_url, low), "locks", "kill", "--roots", "--confirm-risk", CONFIRM_TOKEN)
        assert no_ledger.returncode == 2
        assert f'GRANT CREATE ON SCHEMA "public" TO "{low}";' in no_ledger.stderr
        assert holder.alive(a) and scene.alive(su)
        execute(scene.admin, f'GRANT CREATE ON SCHEMA public TO "{low}"')
        out = dbguard(ini, as_role(pg_url, low), "--format", "json", "locks", "kill", "--roots",
                      "--confirm-risk", CONFIRM_TOKEN)
        assert out.returncode == 3, out.stderr  # one ended, one refused by the policy
        codes = {o["session"]["session_id"]: (o["code"], o["outcome"]) for o in json.loads(out.stdout)["outcomes"]}
        assert codes[session_id(su)] == ("privileged_session", "refused")
        assert codes[session_id(a)] == ("ok", "terminated")
        assert scene.alive(su) and not holder.alive(a)
    finally:
        holder.close()


def test_a_missing_kill_grant_never_stops_the_rollback_it_names_the_grant_and_the_blocker(
        scene, pg_url, roles, tmp_path):
    """The kill policy's privilege (pg_signal_backend) is not the ledger's: the rollback goes ahead,
    ends what it may, and reports the blocker it could not end with the grant that would have."""
    from tests.guardrun import run_dbguard
    from tests.projects import make_project

    low, app = roles["low"], roles["app"]
    execute(scene.admin, f'GRANT CREATE, USAGE ON SCHEMA public TO "{low}"')
    url = as_role(pg_url, low)
    ini = make_project(tmp_path, url, [("r1", 'op.create_table("u", sa.Column("id", sa.Integer, primary_key=True))',
                                        'op.drop_table("u")')])
    assert run_dbguard(ini, url, "upgrade").returncode == 0
    execute(scene.admin, f'GRANT SELECT ON u TO "{app}"')
    holder = Scene(as_role(pg_url, app))
    try:
        blocker = holder.idle_reader("u", application="app_role")
        done = run_dbguard(ini, url, "rollback", "--yes", "--budget", "3")
        output = done.stdout + done.stderr
        assert done.returncode != 2, output  # not a refusal: it ran
        assert f'GRANT pg_signal_backend TO "{low}";' in output, output
        assert session_id(blocker) in output, output
        assert holder.alive(blocker)
        seen = json.loads(run_dbguard(ini, url, "--format", "json", "history").stdout)
        assert seen["runs"][0]["run"]["intent"] == "rollback", seen
    finally:
        holder.close()


def test_the_audit_record_is_written_before_the_signal_and_completed_after(scene, ini, pg_url):
    """The kill stops itself between writing the record and sending the signal: the record is there,
    saying so, while the victim still lives."""
    a = scene.idle_reader("t")
    victim = session_id(a)
    with kill_stopped_before_its_signal(ini, pg_url, victim, "--confirm-risk", CONFIRM_TOKEN):
        [intent] = kills(pg_url)
        assert (intent["victim_session"], intent["action"], intent["outcome"]) == (victim, "terminate", "signalling")
        assert f"locks kill --pid {victim}" in intent["reason"]  # the command line, by default
        assert scene.alive(a)
    [done] = kills(pg_url)
    assert (done["id"], done["outcome"]) == (intent["id"], "terminated")
    assert not scene.alive(a)


def test_a_killer_that_cannot_write_the_audit_ends_nobody(scene, ini, pg_url, roles, tmp_path):
    """A role with the right to signal but not to write dbguard_kills: `locks kill` (and its dry run)
    exit 2 naming the grant, nobody is ended; the rollback goes on, reports its blocker and the grant."""
    from dbguard.db.ledger import KillLedger
    from tests.guardrun import run_dbguard
    from tests.projects import make_project

    low, app = roles["low"], roles["app"]
    engine = admin_engine(pg_url)  # the audit table exists, made by a superuser: `low` may read it only
    with engine.connect() as conn:
        KillLedger(conn, "dbguard_").ensure_table()
        conn.commit()
    engine.dispose()
    for grant in (f'GRANT pg_signal_backend, pg_read_all_stats TO "{low}"', f'GRANT SELECT ON dbguard_kills TO "{low}"',
                  f'GRANT SELECT ON t TO "{app}"', f'GRANT CREATE, USAGE ON SCHEMA public TO "{low}"'):
        execute(scene.admin, grant)
    holder = Scene(as_role(pg_url, app))
    try:
        a = holder.idle_reader("t", application="app_role")
        victim = session_id(a)
        low_url = as_role(pg_url, low)
        grant = f'GRANT INSERT, UPDATE ON "public"."dbguard_kills" TO "{low}";'
        dry = dbguard(ini, low_url, "locks", "kill", "--pid", victim, "--dry-run")
        assert dry.returncode == 2 and grant in dry.stdout + dry.stderr, dry.stdout[:700]
        killed = dbguard(ini, low_url, "locks", "kill", "--pid", victim, "--confirm-risk", CONFIRM_TOKEN)
        assert killed.returncode == 2 and grant in killed.stderr and "nobody was ended" in killed.stderr, killed
        assert "Traceback" not in killed.stderr and holder.alive(a) and kills(pg_url) == []
        # UPDATE matters too: the record is completed after the signal.
        execute(scene.admin, f'GRANT INSERT ON dbguard_kills TO "{low}"')
        killed = dbguard(ini, low_url, "locks", "kill", "--pid", victim, "--confirm-risk", CONFIRM_TOKEN)
        assert killed.returncode == 2 and "UPDATE" in killed.stderr and holder.alive(a), killed

        # The rollback: its ledger is writable, the audit is not; it runs, ends nobody, names the grant.
        project = make_project(tmp_path, low_url, [("r1", 'op.add_column("t", sa.Column("c_r", sa.Integer))',
                                                    'op.drop_column("t", "c_r")')], name="app")
        holder.close()
        execute(scene.admin, f'ALTER TABLE t OWNER TO "{low}"')
        holder = Scene(as_role(pg_url, app))
        assert run_dbguard(project, low_url, "upgrade").returncode == 0
        blocker = holder.idle_reader("t", application="app_role")
        done = run_dbguard(project, low_url, "rollback", "--yes", "--budget", "2")
        output = done.stdout + done.stderr
        assert done.returncode == 5, output  # it ran, and failed on the lock it could not clear
        assert session_id(blocker) in output and "dbguard_kills" in output and "UPDATE" in output, output
        assert holder.alive(blocker) and kills(pg_url) == []
    finally:
        holder.close()


def test_locks_needs_only_a_url(scene, tmp_path, pg_url):
    import os
    import subprocess
    import sys

    a = scene.idle_reader("t")
    x, _x_job = scene.background("ALTER TABLE t ADD COLUMN c_u INT")
    scene.wait_waiting(x)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DBGUARD_")}

    def dbguard_here(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "dbguard.cli", *args], cwd=tmp_path, env=env, text=True,
                              capture_output=True, timeout=60, stdin=subprocess.DEVNULL, check=False)

    assert not (tmp_path / "alembic.ini").exists()
    seen = dbguard_here("--url", pg_url, "--format", "json", "locks")
    assert seen.returncode == 1 and json.loads(seen.stdout)["roots"] == [session_id(a)], seen.stderr
    dry = dbguard_here("--url", pg_url, "locks", "kill", "--roots", "--dry-run")
    assert dry.returncode == 0 and session_id(a) in dry.stdout, dry
    nothing = dbguard_here("locks")
    assert nothing.returncode == 2 and "no database URL" in nothing.stderr, nothing.stderr


def test_exit_codes_of_locks_and_locks_kill(scene, ini, pg_url):
    """`locks` 1 while somebody waits longer than --fail-after (0: anybody), with each wait timed by the
    server; `locks kill` 1 for a --pid that names nobody, 2 for one no session can have, 3 when the
    policy refuses one, 0 when every chosen session was ended; a dry run exits as the command would."""
    a, x, _b, _x_job, _b_job = scene.chain()
    seen = dbguard(ini, pg_url, "--format", "json", "locks")
    assert seen.returncode == 1, seen.stderr
    waits = {s["session_id"]: s["wait_s"] for s in json.loads(seen.stdout)["sessions"]}
    assert waits[session_id(a)] is None and waits[session_id(x)] is not None and waits[session_id(x)] >= 0
    assert "waiting " in dbguard(ini, pg_url, "locks").stdout
    patient = dbguard(ini, pg_url, "locks", "--fail-after", "3600")
    assert patient.returncode == 0, patient.stderr

    ghost = dbguard(ini, pg_url, "locks", "kill", "--pid", "2147483000", "--confirm-risk", CONFIRM_TOKEN)
    assert ghost.returncode == 1 and "no such session" in ghost.stdout, ghost
    huge = dbguard(ini, pg_url, "locks", "kill", "--pid", "3000000000", "--dry-run")
    assert huge.returncode == 2 and huge.stderr.count("\n") == 1 and "2147483647" in huge.stderr, huge
    protected = dbguard(ini, pg_url, "locks", "kill", "--pid", session_id(a), "--dry-run",
                        extra_env={"DBGUARD_PROTECTED_APPLICATIONS": "app_a"})
    assert protected.returncode == 3 and "protected_application" in protected.stdout + protected.stderr, protected
    dry = dbguard(ini, pg_url, "locks", "kill", "--pid", session_id(a), "--dry-run")
    assert dry.returncode == 0 and "would terminate" in dry.stdout and "(terminate)" not in dry.stdout, dry
    done = dbguard(ini, pg_url, "locks", "kill", "--pid", session_id(a), "--confirm-risk", CONFIRM_TOKEN)
    assert done.returncode == 0 and not scene.alive(a), done


def test_table_names_resolve_as_the_server_resolves_them(scene, ini, pg_url):
    """`--blocking t` is the table search_path finds (public.t), not other_schema.t; a quoted name may
    hold a dot; a name that names no table, or none at all, is said (exit 2)."""
    execute(scene.admin, "CREATE SCHEMA other_schema")
    execute(scene.admin, "CREATE TABLE other_schema.t (id int)")
    execute(scene.admin, 'CREATE TABLE "my.t" (id int)')
    reader = scene.idle_reader("other_schema.t")
    x, _x_job = scene.background("ALTER TABLE other_schema.t ADD COLUMN c INT")
    scene.wait_waiting(x)
    proposed = dbguard(ini, pg_url, "--format", "json", "locks", "kill", "--blocking", "t", "--dry-run")
    assert proposed.returncode == 0 and json.loads(proposed.stdout)["outcomes"] == [], proposed.stdout
    other = dbguard(ini, pg_url, "--format", "json", "locks", "kill", "--blocking", "other_schema.t", "--dry-run")
    assert [o["session"]["session_id"] for o in json.loads(other.stdout)["outcomes"]] == [session_id(reader)], other
    dotted_reader = scene.idle_reader('"my.t"')
    y, _y_job = scene.background('ALTER TABLE "my.t" ADD COLUMN c INT')
    scene.wait_waiting(y)
    dotted = dbguard(ini, pg_url, "--format", "json", "locks", "--table", '"my.t"')
    assert json.loads(dotted.stdout)["roots"] == [session_id(dotted_reader)], dotted.stdout
    for name, said in (("nosuch", "no table nosuch"), ("", "a table name is needed")):
        out = dbguard(ini, pg_url, "locks", "--table", name)
        assert out.returncode == 2 and said in out.stderr and out.stderr.count("\n") == 1, out


def test_holders_nobody_waits_for_yet_are_listed_and_can_be_ended(scene, ini, pg_url):
    """After a failed upgrade nobody waits: `locks --table t` still names who holds t, and
    `locks kill --holding t` ends them under the policy (a dry run first)."""
    holder = scene.idle_reader("t")
    bystander = scene.idle_reader("pg_class")
    seen = dbguard(ini, pg_url, "--format", "json", "locks", "--table", "t")
    assert seen.returncode == 0, seen.stderr  # nobody waits
    tree = json.loads(seen.stdout)
    assert tree["holders"] == [session_id(holder)] and tree["roots"] == [], tree
    assert "HOLDS" in dbguard(ini, pg_url, "locks", "--table", "t").stdout
    dry = dbguard(ini, pg_url, "--format", "json", "locks", "kill", "--holding", "t", "--dry-run")
    assert [o["session"]["session_id"] for o in json.loads(dry.stdout)["outcomes"]] == [session_id(holder)], dry
    done = dbguard(ini, pg_url, "locks", "kill", "--holding", "t", "--confirm-risk", CONFIRM_TOKEN)
    assert done.returncode == 0 and not scene.alive(holder) and scene.alive(bystander), done
    both = dbguard(ini, pg_url, "locks", "kill", "--holding", "t", "--roots", "--dry-run")
    assert both.returncode == 2 and "exactly one of" in both.stderr, both


def test_a_row_lock_chain_is_found_by_its_table(scene, ini, pg_url):
    """A session waiting for a row waits on the holder's transaction id, which names no table:
    `locks --table t` still finds it, through the tuple lock it holds meanwhile, the second waiter
    (queued on that tuple) too, and `kill --blocking t` proposes the holder."""
    holder = scene.open("app_holder")
    execute(holder, "BEGIN")
    execute(holder, "UPDATE t SET id = 1 WHERE id = 1")
    first, _ = scene.background("UPDATE t SET id = 1 WHERE id = 1", application="app_w1")
    scene.wait_waiting(first)
    second, _ = scene.background("UPDATE t SET id = 1 WHERE id = 1", application="app_w2")
    scene.wait_waiting(second)

    tree = api.locks(settings(ini, pg_url), table="t")
    by_id = {s.session_id: s for s in tree.sessions}
    assert tree.roots == (session_id(holder),), tree
    assert {session_id(first), session_id(second)} <= set(by_id)
    for waiter in (first, second):
        assert any(not lk.granted and lk.table == "public.t" for lk in by_id[session_id(waiter)].locks)
    dry = dbguard(ini, pg_url, "--format", "json", "locks", "kill", "--blocking", "t", "--dry-run")
    assert [o["session"]["session_id"] for o in json.loads(dry.stdout)["outcomes"]] == [session_id(holder)], dry


def test_a_read_only_database_takes_the_audit_in_the_local_file_and_the_next_command_copies_it(
        scene, ini, pg_url, tmp_path, monkeypatch):
    """default_transaction_read_only: no write of the audit can succeed, the signal can; the intent
    goes to the local file first, the output says so and that it waits to be copied, and the first
    dbguard command after the database takes writes again copies it, once."""
    audit = tmp_path / "kills.jsonl"
    monkeypatch.setenv("DBGUARD_AUDIT_FILE", str(audit))
    database = sa.engine.make_url(pg_url).database
    execute(scene.admin, f'ALTER DATABASE "{database}" SET default_transaction_read_only = on')
    reader = scene.idle_reader("t")
    done = dbguard(ini, pg_url, "locks", "kill", "--pid", session_id(reader), "--confirm-risk", CONFIRM_TOKEN)
    assert done.returncode == 0 and "terminated" in done.stdout, done
    assert f"went first to {audit}" in done.stdout and "read-only" in done.stdout, done.stdout
    assert "not yet copied into dbguard_kills" in done.stdout and not scene.alive(reader)
    assert kills(pg_url) == []
    lines = [json.loads(line) for line in audit.read_text().splitlines()]
    assert [(line["type"], line.get("outcome")) for line in lines] == [("intent", None), ("outcome", "terminated")]

    execute(scene.admin, f'ALTER DATABASE "{database}" RESET default_transaction_read_only')
    for _ in range(2):
        assert dbguard(ini, pg_url, "locks").returncode == 0
        [row] = kills(pg_url)
        assert (row["victim_session"], row["outcome"]) == (session_id(reader), "terminated")


def test_advisory_and_object_locks_show_what_they_lock_and_their_holder_is_ended(scene, ini, pg_url):
    """pg_advisory_lock(42) and pg_advisory_xact_lock(1, 2) waits show their keys on both sides (text and
    JSON), a lock on the database object (COMMENT ON DATABASE) shows the database, and `kill --roots`
    ends the holders, which frees the waiters."""
    from dbguard import output

    database = sa.engine.make_url(pg_url).database
    holder = scene.open("app_adv")
    execute(holder, "SELECT pg_advisory_lock(42)")
    execute(holder, "BEGIN")
    execute(holder, "SELECT pg_advisory_xact_lock(1, 2)")
    one, one_job = scene.background("SELECT pg_advisory_lock(42)", application="app_w1")
    two, two_job = scene.background("SELECT pg_advisory_xact_lock(1, 2)", application="app_w2")
    commenter = scene.open("app_comment")
    execute(commenter, "BEGIN")
    execute(commenter, f"COMMENT ON DATABASE \"{database}\" IS 'held'")
    other, other_job = scene.background(f"COMMENT ON DATABASE \"{database}\" IS 'waits'", application="app_w3")
    for waiter in (one, two, other):
        scene.wait_waiting(waiter)

    tree = api.locks(settings(ini, pg_url))
    by_id = {s.session_id: s for s in tree.sessions}
    ph, p1, p2, pc, p3 = map(session_id, (holder, one, two, commenter, other))
    assert set(tree.roots) == {ph, pc}, tree
    assert by_id[p1].blocked_by == (ph,) and by_id[p2].blocked_by == (ph,) and by_id[p3].blocked_by == (pc,)
    held = {(lk.locktype, lk.object) for lk in by_id[ph].locks if lk.granted}
    assert {("advisory", "advisory 42"), ("advisory", "advisory (1, 2)")} <= held, by_id[ph].locks
    assert [(lk.object, lk.granted) for lk in by_id[p1].locks] == [("advisory 42", False)]
    assert [(lk.object, lk.granted) for lk in by_id[p2].locks] == [("advisory (1, 2)", False)]
    assert [(lk.locktype, lk.object) for lk in by_id[p3].locks if not lk.granted] == [
        ("object", f"database {database}")]
    assert any(lk.granted and lk.object == f"database {database}" for lk in by_id[pc].locks)
    text = output.render(tree)
    assert "holds ExclusiveLock on advisory 42" in text and "WAITS FOR ExclusiveLock on advisory (1, 2)" in text
    assert f"WAITS FOR ShareUpdateExclusiveLock on database {database}" in text, text
    seen = dbguard(ini, pg_url, "--format", "json", "locks")
    sessions = {s["session_id"]: s for s in json.loads(seen.stdout)["sessions"]}
    assert {"mode": "ExclusiveLock", "granted": False, "table": None, "locktype": "advisory",
            "object": "advisory 42"} in sessions[p1]["locks"], seen.stdout

    report = api.locks_kill(settings(ini, pg_url), roots=True, confirm=lambda p: CONFIRM_TOKEN)
    assert sorted((o.session.session_id, o.outcome) for o in report.outcomes) == sorted(
        [(ph, "terminated"), (pc, "terminated")]), report
    for job in (one_job, two_job, other_job):
        job.join(10)
        assert job.error is None


# --- the figures a DBA decides by, and the filters (issue 21) -----------------------------------------


def _server_figures(admin, pids):
    """pid -> (idle s, running s, wait s, blocking pids, database) as pg_stat_activity and pg_locks say now."""
    rows = execute(admin, "SELECT a.pid, "
                          "CASE WHEN a.state LIKE 'idle in transaction%' "
                          "THEN EXTRACT(EPOCH FROM clock_timestamp() - a.state_change)::float8 END, "
                          "CASE WHEN a.state = 'active' THEN EXTRACT(EPOCH FROM clock_timestamp() - a.query_start)::float8 END, "
                          "(SELECT EXTRACT(EPOCH FROM clock_timestamp() - min(l.waitstart))::float8 "
                          " FROM pg_locks l WHERE l.pid = a.pid AND NOT l.granted), "
                          "pg_blocking_pids(a.pid), a.datname "
                          f"FROM pg_stat_activity a WHERE a.pid IN ({', '.join(pids)})")
    return {str(r[0]): (r[1], r[2], r[3], [str(p) for p in r[4]], r[5]) for r in rows}


def test_figures_of_a_chain_are_the_servers_at_the_same_moment(scene, ini, pg_url):
    a, x, b, _, _ = scene.chain()
    ids = [session_id(c) for c in (a, x, b)]
    pa, px, pb = ids
    # waitstart is set a moment after a wait begins.
    wait_for(lambda: all(f[2] is not None for p, f in _server_figures(scene.admin, ids).items() if p != pa),
             message="waitstart never set")
    before = _server_figures(scene.admin, ids)
    done = dbguard(ini, pg_url, "--format", "json", "locks")
    after = _server_figures(scene.admin, ids)
    assert done.returncode == 1, done.stderr
    by_id = {s["session_id"]: s for s in json.loads(done.stdout)["sessions"]}
    tol = 0.002  # the figures are rounded to the millisecond

    def within(value, index, pid):
        return before[pid][index] - tol <= value <= after[pid][index] + tol

    assert within(by_id[pa]["idle_s"], 0, pa) and by_id[pa]["busy_s"] is None and by_id[pa]["wait_s"] is None
    for pid in (px, pb):
        assert by_id[pid]["idle_s"] is None
        assert within(by_id[pid]["busy_s"], 1, pid) and within(by_id[pid]["wait_s"], 2, pid), by_id[pid]
    # Blocked counts: direct from pg_blocking_pids (B lists the ALTER, and A where the server says so).
    direct = {pid: sum(pid in before[o][3] for o in ids) for pid in ids}
    assert direct[px] == 1 and direct[pb] == 0
    assert [(by_id[p]["blocks_direct"], by_id[p]["blocks_total"]) for p in ids] == [
        (direct[pa], 2), (1, 1), (0, 0)]
    database = before[pa][4]
    assert {(s["database"], s["default_database"]) for s in by_id.values()} == {(database, database)}
    # The same figures, compact, on each session's line of the text output.
    text = output.render(api.locks(settings(ini, pg_url)))
    lines = {pid: next(line for line in text.splitlines() if line.lstrip().lstrip("ROT└ ").startswith(pid + " "))
             for pid in ids}
    blocks = f"blocks {direct[pa]}" + ("" if direct[pa] == 2 else " (2 in all)")
    assert f"db {database}" in lines[pa] and " idle " in lines[pa] and blocks in lines[pa], lines[pa]
    assert " waits " in lines[px] and "blocks 1" in lines[px] and " busy " not in lines[px], lines[px]
    assert "blocks" not in lines[pb], lines[pb]


def test_filters_narrow_locks_and_locks_kill(scene, ini, pg_url):
    a, x, b, _, _ = scene.chain()
    pa, px, pb = (session_id(c) for c in (a, x, b))
    s = settings(ini, pg_url)
    database = sa.engine.make_url(pg_url).database

    def shown(**given):
        tree = api.locks(s, filters=SessionFilter(**given))
        return {t.session_id for t in tree.sessions}

    everyone = {pa, px, pb}
    assert shown() == everyone
    assert shown(min_idle_s=0) == {pa} and shown(min_idle_s=3600) == set()
    assert shown(min_busy_s=0) == {px, pb} and shown(min_busy_s=3600) == set()
    assert shown(min_wait_s=0) == {px, pb} and shown(min_wait_s=3600) == set()
    assert shown(user="postgres") == everyone and shown(user="nobody") == set()
    assert shown(application="app_a") == {pa} and shown(application="app_b") == {pb}
    assert shown(match_query=r"^ALTER TABLE t\b") == {px}
    assert shown(default_database=database) == everyone and shown(default_database="elsewhere") == set()
    # A filtered tree says so, and keeps each session's counts of the whole tree.
    tree = api.locks(s, filters=SessionFilter(application="app_a"))
    assert tree.roots == (pa,) and tree.hidden == 2 and tree.sessions[0].blocks_total == 2
    assert "filters: --app app_a (2 session(s) of the tree hidden)" in output.render(tree)
    # locks kill: the filters narrow who is chosen; the policy still judges the rest.
    def kill(roots=False, pids=(), **given):
        return api.locks_kill(s, dry_run=True, roots=roots, pids=pids, filters=SessionFilter(**given))

    assert [o.session.session_id for o in kill(roots=True, min_idle_s=0).outcomes] == [pa]
    assert kill(roots=True, min_idle_s=3600).outcomes == () and kill(roots=True, application="app_b").outcomes == ()
    named = kill(pids=(int(px),), application="app_a")
    assert [(o.code, o.outcome) for o in named.outcomes] == [("filtered_out", "refused")]
    assert named.exit_code == ExitCode.REFUSED
    done = dbguard(ini, pg_url, "--format", "json", "locks", "kill", "--roots", "--dry-run", "--app", "app_a",
                   "--min-idle", "0", "--match-query", "SELECT")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert [o["session"]["session_id"] for o in report["outcomes"]] == [pa]
    assert report["filters"] == "--min-idle 0 --app app_a --match-query SELECT"
