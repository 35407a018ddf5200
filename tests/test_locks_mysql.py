"""`dbguard locks` and `dbguard locks kill` on a real MariaDB (MySQL 8 shares the code; its SQL is
checked in test_locks_sql.py), with real sessions holding real metadata locks."""

from __future__ import annotations

import contextlib
import json
import uuid

import pytest
import sqlalchemy as sa

from dbguard import api, output
from dbguard.core.breaker import CONFIRM_TOKEN
from dbguard.core.sessionview import SessionFilter
from dbguard.db import lock_graph as dblocks
from dbguard.dialects.mysql import MysqlDialect, run_lock_name
from dbguard.errors import ConfigError, ExitCode
from dbguard.settings import load_settings
from tests.dbs import admin_engine, create_database, drop_database
from tests.lockscene import (
    INNODB_POLL_S,
    Background,
    Scene,
    connect,
    dbguard,
    execute,
    kill_stopped_before_its_signal,
    session_id,
    write_ini,
)
from tests.projects import wait_for

pytestmark = pytest.mark.integration


def _plugin_installed(conn) -> bool:
    return bool(execute(conn, "SELECT COUNT(*) FROM information_schema.PLUGINS "
                              "WHERE PLUGIN_NAME = 'METADATA_LOCK_INFO' AND PLUGIN_STATUS = 'ACTIVE'")[0][0])


def _install_plugin(conn) -> None:
    """Install metadata_lock_info if absent; never uninstalled on the shared server, where other tests
    (and parallel runs) rely on it. The tests of its absence use a private server."""
    if not _plugin_installed(conn):
        with contextlib.suppress(Exception):  # a parallel test installed it a moment ago
            execute(conn, "INSTALL SONAME 'metadata_lock_info'")
    assert _plugin_installed(conn)


def _scene(url):
    s = Scene(url)
    if "mariadb" not in execute(s.admin, "SELECT VERSION()")[0][0].lower():
        s.close()
        pytest.skip("these sessions exercise MariaDB's sources; MySQL 8 is covered by its SQL text")
    execute(s.admin, "CREATE TABLE t (id INT PRIMARY KEY) ENGINE=InnoDB")
    execute(s.admin, "INSERT INTO t VALUES (1)")
    return s


@pytest.fixture
def scene(mysql_url):
    s = _scene(mysql_url)
    try:
        _install_plugin(s.admin)
        yield s
    finally:
        s.close()


@pytest.fixture
def bare_scene(private_mysql_url):
    """A scene on the private MariaDB server, where metadata_lock_info is not installed."""
    s = _scene(private_mysql_url)
    try:
        if _plugin_installed(s.admin):  # a drop on this private server installed it: nobody else is here
            execute(s.admin, "UNINSTALL SONAME 'metadata_lock_info'")
        yield s
    finally:
        s.close()


@pytest.fixture
def ini(tmp_path):
    return write_ini(tmp_path)


def settings(ini, url, **more):
    return load_settings({"config_path": str(ini), "url": url, **more}, environ={})


def database_of(url):
    return sa.engine.make_url(url).database


def kills(url):
    engine = admin_engine(url)
    try:
        with engine.connect() as conn:
            if not sa.inspect(conn).has_table("dbguard_kills"):
                return []
            return [dict(r) for r in conn.execute(sa.text("SELECT * FROM dbguard_kills ORDER BY id")).mappings()]
    finally:
        engine.dispose()


def test_tree_from_metadata_lock_info(scene, ini, mysql_url):
    a, x, b, _, _ = scene.chain()
    ia, ix, ib = session_id(a), session_id(x), session_id(b)
    tree = api.locks(settings(ini, mysql_url))
    db = database_of(mysql_url)
    assert tree.source == "metadata_lock_info" and not tree.approximate
    assert tree.roots == (ia,)
    by_id = {s.session_id: s for s in tree.sessions}
    assert set(by_id) == {ia, ix, ib}
    assert tree.sessions[0].session_id == ia
    assert by_id[ia].state == "idle in transaction" and by_id[ia].database == db
    assert any(lk.granted and lk.mode == "SHARED_READ" and lk.table == f"{db}.t" for lk in by_id[ia].locks)
    assert by_id[ix].state == "waiting" and by_id[ix].blocked_by == (ia,)
    assert any(not lk.granted and lk.mode == "EXCLUSIVE" for lk in by_id[ix].locks)
    assert by_id[ib].blocked_by == (ix,)
    assert api.locks(settings(ini, mysql_url), table="t").roots == (ia,)
    with pytest.raises(ConfigError, match="no table nope"):
        api.locks(settings(ini, mysql_url), table="nope")


def test_heuristic_fallback_is_labelled_approximate_and_plugin_installs_on_request(bare_scene, ini,
                                                                                     private_mysql_url):
    scene, mysql_url = bare_scene, private_mysql_url
    a, x, _b, _, _ = scene.chain()
    out = dbguard(ini, mysql_url, "--format", "json", "locks")
    assert out.returncode == 1, out.stderr  # somebody waits
    data = json.loads(out.stdout)
    assert data["source"] == "heuristic"
    assert data["approximate"] is True
    assert any(w.startswith("approximate") for w in data["warnings"])
    assert any("--install-plugin" in w for w in data["warnings"])
    assert sum("metadata_lock_info" in w for w in data["warnings"]) == 1, data["warnings"]  # said once
    assert session_id(a) in data["roots"] and session_id(x) not in data["roots"]
    text = dbguard(ini, mysql_url, "locks")
    assert "(APPROXIMATE)" in text.stdout and "warning: approximate" in text.stdout
    # --roots under the heuristic: a guessed blocker's database is its default database (here this one).
    proposed = dbguard(ini, mysql_url, "--format", "json", "locks", "kill", "--roots", "--dry-run")
    assert proposed.returncode == 0, proposed.stderr
    mine = [o for o in json.loads(proposed.stdout)["outcomes"] if o["session"]["session_id"] == session_id(a)]
    assert mine[0]["outcome"] == "would terminate" and scene.alive(a)
    # Never silently: only --install-plugin installs it.
    assert not _plugin_installed(scene.admin)
    installed = dbguard(ini, mysql_url, "--format", "json", "locks", "--install-plugin")
    assert installed.returncode == 1, installed.stderr  # somebody waits
    data = json.loads(installed.stdout)
    assert data["source"] == "metadata_lock_info" and data["roots"] == [session_id(a)]


def test_kill_roots_dry_run_then_no_token_then_token(scene, ini, mysql_url):
    a, x, _b, x_job, b_job = scene.chain()
    dry = dbguard(ini, mysql_url, "locks", "kill", "--roots", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "would terminate" in dry.stdout and scene.alive(a) and kills(mysql_url) == []
    refused = dbguard(ini, mysql_url, "locks", "kill", "--roots")
    assert refused.returncode == 3 and CONFIRM_TOKEN in refused.stderr
    assert scene.alive(a) and scene.is_waiting(session_id(x)) and kills(mysql_url) == []
    done = dbguard(ini, mysql_url, "locks", "kill", "--roots", "--confirm-risk", CONFIRM_TOKEN)
    assert done.returncode == 0, done.stderr
    x_job.join(10)
    b_job.join(10)
    assert x_job.error is None and b_job.error is None
    assert not scene.alive(a) and scene.alive(x)
    (row,) = kills(mysql_url)
    assert row["victim_session"] == session_id(a) and row["action"] == "terminate"
    assert row["outcome"] == "terminated" and row["victim_user"] == "root"
    assert row["victim_state"] == "idle in transaction" and "SELECT" not in (row["victim_query"] or "")


def test_kill_in_process_frees_the_ddl(scene, ini, mysql_url):
    a, _x, _b, x_job, b_job = scene.chain()
    report = api.locks_kill(settings(ini, mysql_url), roots=True, confirm=lambda p: CONFIRM_TOKEN)
    x_job.join(10)
    b_job.join(10)
    assert [(o.session.session_id, o.outcome) for o in report.outcomes] == [(session_id(a), "terminated")]
    assert x_job.error is None and b_job.error is None


def test_running_blocker_is_cancelled_then_terminated_after_grace(scene, ini, mysql_url):
    # KILL QUERY ends the statement but not the transaction: the metadata lock stays until KILL.
    holder = scene.open()
    execute(holder, "BEGIN")
    execute(holder, "SELECT * FROM t")
    scene.jobs.append(Background(holder, "SELECT SLEEP(20)"))
    wait_for(lambda: execute(scene.admin, f"SELECT COMMAND FROM information_schema.PROCESSLIST "
                                          f"WHERE ID = {session_id(holder)}")[0][0] == "Query",
             message="sleeper never started")
    x, x_job = scene.background("ALTER TABLE t ADD COLUMN c_y INT")
    scene.wait_waiting(x)
    report = api.locks_kill(settings(ini, mysql_url, kill_grace_ms=300), roots=True, confirm=lambda p: CONFIRM_TOKEN)
    (o,) = report.outcomes
    # KILL QUERY left the lock held through the grace period, so the session was then ended.
    assert o.action == "cancel_then_terminate" and o.outcome == "terminated", o
    x_job.join(10)
    assert x_job.error is None and not scene.alive(holder)


def test_a_statement_whose_cancel_frees_its_locks_is_only_cancelled(scene, ini, mysql_url):
    """A locking read in autocommit mode: KILL QUERY ends its transaction and its locks. INNODB_TRX,
    which says whether the session is still in a transaction, is a cache that polling faster than
    every 100 ms never refreshes: the session must still be seen free within the grace period."""
    holder = scene.open()
    scene.jobs.append(Background(holder, "SELECT id FROM t WHERE SLEEP(20) = 0 FOR UPDATE"))
    wait_for(lambda: execute(scene.admin, f"SELECT COUNT(*) FROM information_schema.INNODB_TRX "
                                          f"WHERE trx_mysql_thread_id = {session_id(holder)}")[0][0] == 1,
             message="the locking read never started its transaction", interval=0.15)
    x, x_job = scene.background("ALTER TABLE t ADD COLUMN c_y INT")
    scene.wait_waiting(x)
    report = api.locks_kill(settings(ini, mysql_url, kill_grace_ms=5000), roots=True,
                            confirm=lambda p: CONFIRM_TOKEN)
    (o,) = report.outcomes
    assert (o.action, o.outcome) == ("cancel", "cancelled"), o
    x_job.join(10)
    assert x_job.error is None and scene.alive(holder)


def test_policy_refuses_protected_role_own_run_and_other_database(scene, ini, mysql_url):
    a, _x, _b, _, _ = scene.chain()
    protected = dbguard(ini, mysql_url, "locks", "kill", "--roots", "--confirm-risk", CONFIRM_TOKEN,
                        extra_env={"DBGUARD_PROTECTED_ROLES": "root"})
    assert protected.returncode == 3, protected.stderr
    assert "role root is protected" in protected.stdout and scene.alive(a)
    # A dbguard run in progress holds the run lock: its session is dbguard's own.
    holder = scene.open()
    name = run_lock_name(database_of(mysql_url), "dbguard_")
    assert execute(holder, f"SELECT GET_LOCK('{name}', 0)")[0][0] == 1
    own = dbguard(ini, mysql_url, "locks", "kill", "--pid", session_id(holder), "--confirm-risk", CONFIRM_TOKEN)
    assert own.returncode == 3 and "dbguard's own session" in own.stdout and scene.alive(holder)
    # A session whose locks are in another schema, although its default database is this one.
    foreign = scene.open()
    execute(foreign, "BEGIN")
    execute(foreign, "SELECT COUNT(*) FROM mysql.db")
    out = dbguard(ini, mysql_url, "--format", "json", "locks", "kill", "--pid", session_id(foreign),
                  "--confirm-risk", CONFIRM_TOKEN)
    assert out.returncode == 1, out.stderr  # a --pid of another database
    (outcome,) = json.loads(out.stdout)["outcomes"]
    assert outcome["code"] == "other_database" and outcome["outcome"] == "refused" and scene.alive(foreign)
    assert kills(mysql_url) == []


def test_root_blockers_of_table_for_an_invisible_ddl(scene, mysql_url):
    a, x, _b, _, _ = scene.chain()
    dialect = MysqlDialect(mariadb=True)
    engine = admin_engine(mysql_url)
    with engine.connect() as conn:
        tables = dblocks.tables_in_statement("ALTER TABLE t ADD COLUMN c_q INT", dialect, database_of(mysql_url))
        assert tables == ((database_of(mysql_url), "t"),)
        roots = dblocks.root_blockers_of_table(conn, dialect, *tables[0], waiting_session_id=session_id(x))
    engine.dispose()
    assert [r.session_id for r in roots] == [session_id(a)]
    assert roots[0].identity and roots[0].database == database_of(mysql_url)


@pytest.fixture
def low_user(mysql_url):
    name = f"dbg_lp_{uuid.uuid4().hex[:8]}"
    engine = admin_engine(mysql_url)
    with engine.connect() as conn:
        conn.execute(sa.text(f"CREATE USER '{name}'@'%'"))
        conn.execute(sa.text(f"GRANT ALL ON `{database_of(mysql_url)}`.* TO '{name}'@'%'"))
    yield name
    with engine.connect() as conn:
        for (sid,) in conn.execute(sa.text(f"SELECT ID FROM information_schema.PROCESSLIST WHERE USER = '{name}'")):
            conn.execute(sa.text(f"KILL {int(sid)}"))
        conn.execute(sa.text(f"DROP USER IF EXISTS '{name}'@'%'"))
    engine.dispose()


def test_missing_privileges_are_named(scene, ini, mysql_url, low_user):
    a, _x, _b, _, _ = scene.chain()
    low_url = sa.engine.make_url(mysql_url).set(username=low_user).render_as_string(hide_password=False)
    seen = dbguard(ini, low_url, "locks")
    assert seen.returncode == 2 and seen.stdout == ""
    assert f"GRANT PROCESS ON *.* TO '{low_user}'@'%';" in seen.stderr
    execute(scene.admin, f"GRANT PROCESS ON *.* TO '{low_user}'@'%'")
    listed = dbguard(ini, low_url, "--format", "json", "locks")
    assert listed.returncode == 1 and json.loads(listed.stdout)["roots"] == [session_id(a)]
    killed = dbguard(ini, low_url, "locks", "kill", "--roots", "--confirm-risk", CONFIRM_TOKEN)
    assert killed.returncode == 2
    assert f"GRANT CONNECTION ADMIN ON *.* TO '{low_user}'@'%';" in killed.stderr
    assert scene.alive(a)


def test_the_audit_record_comes_before_the_signal_and_a_user_who_cannot_write_it_ends_nobody(
        scene, ini, mysql_url, low_user):
    """MariaDB: a user with CONNECTION ADMIN but only SELECT on dbguard_kills ends nobody (grant named,
    its dry run exits as the command would); once it may write the table, the record of intent is
    there before the signal (the kill stops itself between the two) and completed after."""
    from dbguard.db.ledger import KillLedger

    engine = admin_engine(mysql_url)
    with engine.connect() as conn:
        KillLedger(conn, "dbguard_").ensure_table()
        conn.commit()
    engine.dispose()
    database = database_of(mysql_url)
    execute(scene.admin, f"REVOKE ALL PRIVILEGES ON `{database}`.* FROM '{low_user}'@'%'")
    execute(scene.admin, f"GRANT SELECT ON `{database}`.* TO '{low_user}'@'%'")
    execute(scene.admin, f"GRANT PROCESS, CONNECTION ADMIN ON *.* TO '{low_user}'@'%'")
    a = scene.idle_reader("t")
    victim = session_id(a)
    low_url = sa.engine.make_url(mysql_url).set(username=low_user).render_as_string(hide_password=False)
    dry = dbguard(ini, low_url, "locks", "kill", "--pid", victim, "--dry-run")
    assert dry.returncode == 2 and "dbguard_kills" in dry.stdout and "INSERT" in dry.stdout, dry
    refused = dbguard(ini, low_url, "locks", "kill", "--pid", victim, "--confirm-risk", CONFIRM_TOKEN)
    assert refused.returncode == 2 and "nobody was ended" in refused.stderr and "GRANT" in refused.stderr, refused
    assert scene.alive(a) and kills(mysql_url) == []

    execute(scene.admin, f"GRANT INSERT, UPDATE ON `{database}`.`dbguard_kills` TO '{low_user}'@'%'")
    with kill_stopped_before_its_signal(ini, low_url, victim, "--reason", "incident 42",
                                        "--confirm-risk", CONFIRM_TOKEN):
        [intent] = kills(mysql_url)
        assert (intent["victim_session"], intent["outcome"], intent["reason"]) == (victim, "signalling", "incident 42")
        assert scene.alive(a)
    [done] = kills(mysql_url)
    assert (done["id"], done["outcome"]) == (intent["id"], "terminated") and not scene.alive(a)


def test_a_user_ends_its_own_sessions_without_connection_admin(scene, ini, mysql_url, low_user):
    """CURRENT_USER() says 'name@%', PROCESSLIST.USER says 'name': the user's own idle transaction is
    its own to end (as the server's KILL rule has it), without CONNECTION ADMIN."""
    execute(scene.admin, f"GRANT PROCESS ON *.* TO '{low_user}'@'%'")
    low_url = sa.engine.make_url(mysql_url).set(username=low_user).render_as_string(hide_password=False)
    mine = Scene(low_url)
    try:
        holder = mine.idle_reader("t")
        x, x_job = scene.background("ALTER TABLE t ADD COLUMN c_own INT")
        scene.wait_waiting(x)
        done = dbguard(ini, low_url, "locks", "kill", "--pid", session_id(holder), "--confirm-risk", CONFIRM_TOKEN)
        assert done.returncode == 0 and "terminated" in done.stdout, done
        assert not mine.alive(holder)
        x_job.join()
        assert x_job.error is None
    finally:
        mine.close()


def test_table_names_resolve_in_this_database_quoted_parts_may_hold_dots(scene, ini, mysql_url):
    execute(scene.admin, "CREATE TABLE `my.t` (id INT PRIMARY KEY) ENGINE=InnoDB")
    reader = scene.idle_reader("`my.t`")
    y, _y_job = scene.background("ALTER TABLE `my.t` ADD COLUMN c INT")
    scene.wait_waiting(y)
    dotted = dbguard(ini, mysql_url, "--format", "json", "locks", "--table", "`my.t`")
    assert json.loads(dotted.stdout)["roots"] == [session_id(reader)], dotted.stdout
    qualified = dbguard(ini, mysql_url, "--format", "json", "locks", "--table", f"{database_of(mysql_url)}.`my.t`")
    assert json.loads(qualified.stdout)["roots"] == [session_id(reader)], qualified.stdout
    plain = dbguard(ini, mysql_url, "--format", "json", "locks", "--table", "t")
    assert json.loads(plain.stdout)["roots"] == [], plain.stdout
    for name, said in (("nosuch", "no table nosuch"), ("", "a table name is needed")):
        out = dbguard(ini, mysql_url, "locks", "--table", name)
        assert out.returncode == 2 and said in out.stderr and out.stderr.count("\n") == 1, out


def test_a_lock_holder_asleep_in_its_transaction_is_idle_in_transaction_as_on_postgresql(scene, mysql_url):
    """The plan's lock contention finding (DG113) names a holder's state in one vocabulary."""
    reader = scene.idle_reader("t")
    engine = admin_engine(mysql_url)
    try:
        with engine.connect() as conn:
            sql, params = MysqlDialect(mariadb=True).table_lock_holders(["t"], "metadata_lock_info")
            rows = conn.execute(sa.text(sql), params).all()
    finally:
        engine.dispose()
    assert [(str(r[1]), r[3]) for r in rows] == [(session_id(reader), "idle in transaction")], rows


def test_holders_nobody_waits_for_yet_are_listed_and_can_be_ended(scene, ini, mysql_url):
    holder = scene.idle_reader("t")
    seen = dbguard(ini, mysql_url, "--format", "json", "locks", "--table", "t")
    assert seen.returncode == 0, seen.stderr
    tree = json.loads(seen.stdout)
    assert tree["holders"] == [session_id(holder)] and tree["roots"] == [], tree
    done = dbguard(ini, mysql_url, "locks", "kill", "--holding", "t", "--confirm-risk", CONFIRM_TOKEN)
    assert done.returncode == 0 and "terminated" in done.stdout and not scene.alive(holder), done


@pytest.fixture
def private_scene(private_mysql_url):
    """A scene on the private MariaDB server with metadata_lock_info: for locks that are server-wide
    (a global read lock, a backup stage), never taken on the shared server."""
    s = _scene(private_mysql_url)
    try:
        _install_plugin(s.admin)
        yield s
    finally:
        s.close()


def test_a_global_read_lock_and_a_backup_stage_are_roots(private_scene, ini, private_mysql_url):
    """FLUSH TABLES WITH READ LOCK and BACKUP STAGE hold backup locks on the whole server (MariaDB lists
    them as MDL_BACKUP_FTWRL2, MDL_BACKUP_WAIT_DDL ...), not table locks: their holder is the root of
    every session waiting for a backup lock, and is named with the lock it holds."""
    scene, url = private_scene, private_mysql_url
    holder = scene.open()
    execute(holder, "FLUSH TABLES WITH READ LOCK")
    writer, _ = scene.background("INSERT INTO t VALUES (2)")
    scene.wait_waiting(writer)
    tree = api.locks(settings(ini, url))
    by_id = {s.session_id: s for s in tree.sessions}
    assert tree.roots == (session_id(holder),), tree
    assert by_id[session_id(writer)].blocked_by == (session_id(holder),)
    assert by_id[session_id(holder)].state == "idle"  # no transaction: only the server-wide lock
    assert any(lk.locktype == "server" and "FTWRL" in lk.mode and lk.granted for lk in by_id[session_id(holder)].locks)
    assert api.locks(settings(ini, url), table="t").roots == (session_id(holder),)
    text = dbguard(ini, url, "locks")
    assert text.returncode == 1 and "on server" in text.stdout, text.stdout
    execute(holder, "UNLOCK TABLES")
    wait_for(lambda: not scene.is_waiting(session_id(writer)), message="the INSERT never ran")

    stage = scene.open()
    execute(stage, "BACKUP STAGE START")
    execute(stage, "BACKUP STAGE BLOCK_DDL")
    alter, _ = scene.background("ALTER TABLE t ADD COLUMN c INT")
    scene.wait_waiting(alter)
    tree = api.locks(settings(ini, url))
    by_id = {s.session_id: s for s in tree.sessions}
    assert tree.roots == (session_id(stage),), tree
    assert by_id[session_id(alter)].blocked_by == (session_id(stage),)
    execute(stage, "BACKUP STAGE END")


def _audit_lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_global_read_lock_holder_is_ended_its_audit_first_in_the_local_file_then_in_the_ledger(
        private_scene, ini, private_mysql_url, tmp_path, monkeypatch):
    """The very blocker holds FLUSH TABLES WITH READ LOCK, so the server takes no write, the audit's
    neither: the intent goes to the local file (on disk before the signal: the kill stops itself
    between the two), the idle holder is terminated, and the record is copied into dbguard_kills at
    once (the server takes writes again), once, whatever command comes next."""
    scene, url = private_scene, private_mysql_url
    audit = tmp_path / "state" / "kills.jsonl"
    monkeypatch.setenv("DBGUARD_AUDIT_FILE", str(audit))
    holder = scene.open()
    execute(holder, "FLUSH TABLES WITH READ LOCK")
    writer, job = scene.background("INSERT INTO t VALUES (2)")
    scene.wait_waiting(writer)
    victim = session_id(holder)

    dry = dbguard(ini, url, "--format", "json", "locks", "kill", "--roots", "--dry-run")
    planned = json.loads(dry.stdout)
    assert dry.returncode == 0 and [o["session"]["session_id"] for o in planned["outcomes"]] == [victim], dry
    assert planned["outcomes"][0]["action"] == "terminate"  # idle, no transaction: a cancel does nothing
    assert kills(url) == [] and not audit.exists()

    with kill_stopped_before_its_signal(ini, url, victim, "--confirm-risk", CONFIRM_TOKEN):
        [intent] = _audit_lines(audit)
        assert intent["type"] == "intent" and intent["row"]["victim_session"] == victim
        assert intent["row"]["outcome"] == "signalling" and intent["row"]["database_name"] == database_of(url)
        assert "@" in intent["target"] and "unix_socket" in intent["target"]
        assert scene.alive(holder) and kills(url) == []
    job.join()
    assert job.error is None and not scene.alive(holder)
    _intent, outcome, copied = _audit_lines(audit)
    assert (outcome["type"], outcome["outcome"], outcome["action"]) == ("outcome", "terminated", "terminate")
    [row] = kills(url)
    assert (row["victim_session"], row["outcome"], row["action"]) == (victim, "terminated", "terminate")
    assert (copied["type"], copied["id"], copied["ledger_id"]) == ("copied", intent["id"], row["id"])

    again = dbguard(ini, url, "locks")
    assert again.returncode == 0, again
    assert len(kills(url)) == 1 and len(_audit_lines(audit)) == 3


def test_a_backup_stage_holder_is_ended_by_roots_and_the_output_says_where_the_audit_went(
        private_scene, ini, private_mysql_url, tmp_path, monkeypatch):
    """BACKUP STAGE BLOCK_COMMIT: a write inside a transaction still works (a rolled-back probe would
    pass), a commit does not; each record's own write, which may not wait, sends it to the local file."""
    from dbguard.db.ledger import KillLedger

    scene, url = private_scene, private_mysql_url
    engine = admin_engine(url)
    with engine.connect() as conn:
        KillLedger(conn, "dbguard_").ensure_table()
        conn.commit()
    engine.dispose()
    audit = tmp_path / "kills.jsonl"
    monkeypatch.setenv("DBGUARD_AUDIT_FILE", str(audit))
    stage = scene.open()
    for step in ("START", "FLUSH", "BLOCK_DDL", "BLOCK_COMMIT"):
        execute(stage, f"BACKUP STAGE {step}")
    writer, job = scene.background("INSERT INTO t VALUES (3)")
    scene.wait_waiting(writer)

    done = dbguard(ini, url, "--format", "json", "locks", "kill", "--roots", "--confirm-risk", CONFIRM_TOKEN)
    assert done.returncode == 0, done
    report = json.loads(done.stdout)
    [ended] = report["outcomes"]
    assert (ended["session"]["session_id"], ended["outcome"]) == (session_id(stage), "terminated")
    assert report["audit_file"] == str(audit) and report["audit_pending"] == 0
    assert str(audit) in report["audit_note"] and "copied into dbguard_kills" in report["audit_note"]
    job.join()
    assert job.error is None
    [row] = kills(url)
    assert ended["audit_id"] == row["id"] and row["outcome"] == "terminated"
    assert [line["type"] for line in _audit_lines(audit)] == ["intent", "outcome", "copied"]
    text = dbguard(ini, url, "locks", "kill", "--roots", "--confirm-risk", CONFIRM_TOKEN)
    assert text.returncode == 0 and "nothing to end" in text.stdout, text
    assert len(kills(url)) == 1


def test_a_global_read_lock_outlives_its_cancelled_statement_so_its_holder_is_terminated(
        private_scene, ini, private_mysql_url, tmp_path, monkeypatch):
    """KILL QUERY stops the holder's statement; its global read lock stays (no transaction, no table
    lock): the grace period ends with a terminate, not with 'cancelled'."""
    scene, url = private_scene, private_mysql_url
    monkeypatch.setenv("DBGUARD_AUDIT_FILE", str(tmp_path / "kills.jsonl"))
    holder = scene.open()
    execute(holder, "FLUSH TABLES WITH READ LOCK")
    busy = Background(holder, "SELECT SLEEP(30)")
    scene.jobs.append(busy)
    wait_for(lambda: execute(scene.admin, f"SELECT COMMAND FROM information_schema.PROCESSLIST "
                                          f"WHERE ID = {session_id(holder)}")[0][0] == "Query",
             message="the holder's statement never started")
    done = dbguard(ini, url, "--format", "json", "locks", "kill", "--pid", session_id(holder),
                   "--confirm-risk", CONFIRM_TOKEN, extra_env={"DBGUARD_KILL_GRACE_MS": "200"})
    assert done.returncode == 0, done
    [ended] = json.loads(done.stdout)["outcomes"]
    assert (ended["action"], ended["outcome"]) == ("cancel_then_terminate", "terminated"), ended
    assert not scene.alive(holder)
    [row] = kills(url)
    assert (row["action"], row["outcome"]) == ("cancel_then_terminate", "terminated")


@pytest.fixture(params=["metadata_lock_info", "heuristic"])
def source_scene(request):
    """A scene on the shared server with metadata_lock_info, and one on the server that never has it."""
    url = request.getfixturevalue("mysql_url" if request.param == "metadata_lock_info" else "bare_mysql_url")
    s = _scene(url)
    try:
        if request.param == "metadata_lock_info":
            _install_plugin(s.admin)
        assert _plugin_installed(s.admin) == (request.param == "metadata_lock_info")
        yield s, url, request.param
    finally:
        s.close()


def test_a_row_lock_wait_is_read_from_innodb_with_or_without_a_metadata_lock_source(source_scene, ini):
    """A session waiting for a row another transaction holds (PROCESSLIST says 'Updating', no metadata
    lock conflicts) is an edge read from INNODB_LOCK_WAITS, with its table, index and row: `locks --table t`
    lists it, `kill --blocking t` proposes the holder, `--roots` terminates it and the UPDATE goes on."""
    scene, url, source = source_scene
    db = database_of(url)
    holder = scene.open()
    execute(holder, "BEGIN")
    execute(holder, "SELECT * FROM t WHERE id = 1 FOR UPDATE")
    waiter, job = scene.background("UPDATE t SET id = 1 WHERE id = 1")
    scene.wait_row_waiting(waiter)
    hid, wid = session_id(holder), session_id(waiter)

    tree = api.locks(settings(ini, url), table="t")
    by_id = {s.session_id: s for s in tree.sessions}
    assert tree.source == source and tree.roots == (hid,) and hid in tree.holders, tree
    assert by_id[wid].blocked_by == (hid,) and by_id[wid].guessed_blockers == ()
    assert by_id[wid].state == "waiting" and by_id[wid].wait_s is not None
    row = [lk for lk in by_id[wid].locks if lk.locktype == "row"]
    assert [(lk.mode, lk.granted, lk.table, lk.object) for lk in row] == [
        ("X", False, f"{db}.t", "row 1 in index PRIMARY")], by_id[wid].locks
    assert any(lk.locktype == "row" and lk.granted and lk.object == "row 1 in index PRIMARY"
               for lk in by_id[hid].locks), by_id[hid].locks
    assert by_id[hid].database == db and by_id[hid].state == "idle in transaction"
    assert f"holds X on row 1 in index PRIMARY of {db}.t" in output.render(tree)

    dry = api.locks_kill(settings(ini, url), blocking="t", dry_run=True)
    assert [(o.session.session_id, o.action) for o in dry.outcomes] == [(hid, "terminate")], dry
    done = api.locks_kill(settings(ini, url), roots=True, confirm=lambda p: CONFIRM_TOKEN)
    assert [(o.session.session_id, o.outcome) for o in done.outcomes] == [(hid, "terminated")], done
    job.join(10)
    assert job.error is None and not scene.alive(holder)


def test_without_a_lock_source_guesses_are_marked_and_a_session_of_unknown_database_is_ended_only_by_pid(
        bare_mysql_url, bare_mariadb_server_url, ini):
    """No metadata_lock_info: the ALTER's blockers are guessed from open transactions, and said to be
    guesses. A transaction whose default database is another is no blocker here and is never ended,
    even by --pid (exit 1); one with no default database is 'database unknown': a guessed root that
    --roots does not propose, ended by --pid once the dry run and the confirmation have named it so."""
    scene = _scene(bare_mysql_url)
    other_url = create_database(bare_mariadb_server_url, "mysql")
    try:
        assert not _plugin_installed(scene.admin)
        db, other_db = database_of(bare_mysql_url), database_of(other_url)
        execute(scene.admin, f"CREATE TABLE `{other_db}`.x (id INT PRIMARY KEY) ENGINE=InnoDB")
        elsewhere = connect(other_url)  # its default database is the other one
        bystander = connect(sa.engine.make_url(bare_mysql_url).set(database="")
                            .render_as_string(hide_password=False))  # no default database
        scene.conns += [elsewhere, bystander]
        for conn in (elsewhere, bystander):
            execute(conn, "BEGIN")
            execute(conn, f"SELECT * FROM `{other_db}`.x")
        blocker = scene.idle_reader("t")
        ie, ib, ia = session_id(elsewhere), session_id(bystander), session_id(blocker)
        wait_for(lambda: {str(r[0]) for r in execute(scene.admin, "SELECT trx_mysql_thread_id FROM "
                                                                  "information_schema.INNODB_TRX")} >= {ie, ib, ia},
                 interval=INNODB_POLL_S, message="the open transactions never showed in INNODB_TRX")
        x, x_job = scene.background("ALTER TABLE t ADD COLUMN c_x INT")
        scene.wait_waiting(x)
        s = settings(ini, bare_mysql_url)

        tree = api.locks(s)
        by_id = {t.session_id: t for t in tree.sessions}
        assert tree.source == "heuristic" and tree.approximate
        assert tree.roots == (ia, ib), tree  # the real blocker first; the other database's is none
        assert ie not in by_id
        assert by_id[ia].database == db and by_id[ib].database is None
        assert set(by_id[session_id(x)].guessed_blockers) == set(by_id[session_id(x)].blocked_by) == {ia, ib}
        text = output.render(tree)
        assert any(line.strip().startswith(f"ROOT {ib} ") and "[database unknown]" in line
                   for line in text.splitlines()), text
        assert f"{ia} (guessed)" in text, text
        data = json.loads(output.to_json(tree))
        xs = next(t for t in data["sessions"] if t["session_id"] == session_id(x))
        assert set(xs["guessed_blockers"]) == {ia, ib}
        assert next(t for t in data["sessions"] if t["session_id"] == ib)["database"] is None

        roots = api.locks_kill(s, roots=True, dry_run=True)
        assert [o.session.session_id for o in roots.outcomes] == [ia] and roots.exit_code == ExitCode.OK, roots
        assert any("database unknown" in w and ib in w for w in roots.warnings), roots.warnings

        other = api.locks_kill(s, pids=[ie], confirm=lambda p: CONFIRM_TOKEN)
        assert other.exit_code == ExitCode.FINDINGS, other
        assert [(o.code, o.outcome) for o in other.outcomes] == [("other_database", "refused")]
        assert other.outcomes[0].session.database == other_db and scene.alive(elsewhere)

        named = api.locks_kill(s, pids=[ib], dry_run=True)
        assert named.exit_code == ExitCode.OK and "database unknown" in output.render(named), output.render(named)
        unconfirmed = api.locks_kill(s, pids=[ib], confirm=lambda p: None)
        assert unconfirmed.exit_code == ExitCode.REFUSED and scene.alive(bystander)
        prompts: list[str] = []

        def confirm(prompt):
            prompts.append(output.render_prompt(prompt))
            return CONFIRM_TOKEN

        done = api.locks_kill(s, pids=[ib], confirm=confirm)
        assert [o.outcome for o in done.outcomes] == ["terminated"] and not scene.alive(bystander), done
        assert f"session {ib} " in prompts[0] and "database unknown" in prompts[0], prompts

        ended = api.locks_kill(s, roots=True, confirm=lambda p: CONFIRM_TOKEN)
        assert [(o.session.session_id, o.outcome) for o in ended.outcomes] == [(ia, "terminated")], ended
        x_job.join(10)
        assert x_job.error is None and scene.alive(elsewhere)
        assert [r["victim_session"] for r in kills(bare_mysql_url)] == [ib, ia]
    finally:
        scene.close()
        drop_database(other_url, bare_mariadb_server_url, install_plugin=False)


# --- the figures a DBA decides by, and the filters (issue 21) -----------------------------------------


def _processlist(admin, ids):
    """id -> (TIME_MS / 1000, COMMAND, STATE, DB, USER) as PROCESSLIST says now."""
    rows = execute(admin, "SELECT ID, TIME_MS / 1000, COMMAND, STATE, DB, USER FROM information_schema.PROCESSLIST "
                          f"WHERE ID IN ({', '.join(ids)})")
    return {str(r[0]): (float(r[1]), r[2], r[3], r[4], r[5]) for r in rows}


def test_figures_of_a_chain_are_processlists_at_the_same_moment(scene, ini, mysql_url):
    a, x, b, _, _ = scene.chain()
    ids = [session_id(c) for c in (a, x, b)]
    ia, ix, ib = ids
    before = _processlist(scene.admin, ids)
    done = dbguard(ini, mysql_url, "--format", "json", "locks")
    after = _processlist(scene.admin, ids)
    assert done.returncode == 1, done.stderr
    assert before[ia][1] == "Sleep" and all("metadata lock" in before[i][2] for i in (ix, ib)), before
    by_id = {s["session_id"]: s for s in json.loads(done.stdout)["sessions"]}
    tol = 0.002  # the figures are rounded to the millisecond

    def within(value, sid):
        return before[sid][0] - tol <= value <= after[sid][0] + tol

    # A sleeps in its transaction: its Sleep time is its idle time; the waiters' statements run as they wait.
    assert within(by_id[ia]["idle_s"], ia) and by_id[ia]["busy_s"] is None and by_id[ia]["wait_s"] is None
    for sid in (ix, ib):
        assert by_id[sid]["idle_s"] is None
        assert within(by_id[sid]["wait_s"], sid) and within(by_id[sid]["busy_s"], sid), by_id[sid]
    # A -> X -> B, each edge read from metadata_lock_info: A blocks X directly and B through X.
    assert [(by_id[i]["blocks_direct"], by_id[i]["blocks_total"]) for i in ids] == [(1, 2), (1, 1), (0, 0)]
    db = database_of(mysql_url)
    assert {before[i][3] for i in ids} == {db}
    assert {(s["database"], s["default_database"]) for s in by_id.values()} == {(db, db)}
    text = output.render(api.locks(settings(ini, mysql_url)))
    root = next(line for line in text.splitlines() if f"ROOT {ia} " in line)
    assert f"db {db}" in root and " idle " in root and "blocks 1 (2 in all)" in root, root


def test_filters_narrow_locks_and_locks_kill(scene, ini, mysql_url):
    a, x, b, _, _ = scene.chain()
    ia, ix, ib = (session_id(c) for c in (a, x, b))
    s = settings(ini, mysql_url)
    user = _processlist(scene.admin, [ia])[ia][4]
    db = database_of(mysql_url)

    def shown(**given):
        tree = api.locks(s, filters=SessionFilter(**given))
        return {t.session_id for t in tree.sessions}, tree.warnings

    everyone = {ia, ix, ib}
    assert shown()[0] == everyone
    assert shown(min_idle_s=0)[0] == {ia} and shown(min_idle_s=3600)[0] == set()
    assert shown(min_busy_s=0)[0] == {ix, ib} and shown(min_busy_s=3600)[0] == set()
    assert shown(min_wait_s=0)[0] == {ix, ib} and shown(min_wait_s=3600)[0] == set()
    assert shown(user=user)[0] == everyone and shown(user="nobody")[0] == set()
    assert shown(default_database=db)[0] == everyone and shown(default_database="elsewhere")[0] == set()
    # What MariaDB cannot show is said, once.
    found, warnings = shown(application="app_a")
    assert found == set() and [w for w in warnings if "no application name" in w] == [
        "mariadb sessions have no application name: --app app_a matches none"]
    found, warnings = shown(match_query=r"^ALTER TABLE t\b")
    assert found == {ix} and sum("no query for an idle transaction" in w for w in warnings) == 1
    # locks kill: the filters narrow who is chosen; the policy still judges the rest.
    report = api.locks_kill(s, roots=True, dry_run=True, filters=SessionFilter(min_busy_s=0))
    assert report.outcomes == ()
    done = dbguard(ini, mysql_url, "--format", "json", "locks", "kill", "--roots", "--dry-run", "--min-idle", "0",
                   "--user", user)
    assert done.returncode == 0, done.stderr
    assert [o["session"]["session_id"] for o in json.loads(done.stdout)["outcomes"]] == [ia]
