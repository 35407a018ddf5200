"""`dbguard locks` on MariaDB names dbguard's sessions after their run, from the ids the ledger records
(the server has no application name to show), and `--default-database` narrows the tree where the
only database a session tells is PROCESSLIST.DB (no metadata lock source).

The names are read, never judged by: the kill policy sees what the server says. The unit tests need
no server; the upgrade waits on a lock the test holds while the test reads the tree, and goes through
once the test lets go.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa

from dbguard import api, output
from dbguard.core.appname import ledger_names
from dbguard.core.sessionview import SessionFilter
from dbguard.core.state import RunRecord, RunStatus
from dbguard.db.ledger import Ledger, utcnow
from dbguard.settings import load_settings
from tests.dbs import create_database, drop_database
from tests.lanekit import AppSession, Cleanup, Server, execute, ledger, start_dbguard, wait_waiting
from tests.lockscene import INNODB_POLL_S, Scene, connect, dbguard, session_id, write_ini
from tests.projects import make_project, wait_for

ADD = ("a1_add", 'op.add_column("t1", sa.Column("c", sa.Integer))', 'op.drop_column("t1", "c")')


def _run(run_id: int, status: str = RunStatus.RUNNING.value, sessions: tuple[tuple[str, str], ...] = (),
         lock_session: str | None = None, intent: str = "upgrade") -> RunRecord:
    return RunRecord(id=run_id, intent=intent, status=status, sessions=sessions, lock_session=lock_session)


def test_only_a_running_runs_confirmed_sessions_and_its_lock_holder_are_named() -> None:
    running = _run(7, sessions=(("10", "u|h:1"), ("11", "u|h:2")), lock_session="9")
    assert ledger_names([running], "9", {("10", "u|h:1"), ("11", "u|h:2")}) == {
        "9": "dbguard/upgrade/run-7", "10": "dbguard/upgrade/run-7", "11": "dbguard/upgrade/run-7"}
    # Gone, or its id now another connection's (the server did not confirm the identity): no name.
    assert ledger_names([running], None, {("10", "u|h:1"), ("11", "u|h:3")}) == {"10": "dbguard/upgrade/run-7"}
    # Somebody else holds the run lock: the run's recorded lock session is not named for it.
    assert ledger_names([running], "12", set()) == {}
    for status in RunStatus:
        if status is not RunStatus.RUNNING:
            assert ledger_names([_run(7, status.value, (("10", "u|h:1"),), "9")], "9", {("10", "u|h:1")}) == {}


def test_the_newest_running_run_names_an_id_two_runs_recorded() -> None:
    dead = _run(3, sessions=(("10", "u|h:1"),), lock_session="9", intent="rollback")
    alive = _run(5, sessions=(("10", "u|h:1"),), lock_session="9")
    for runs in ([dead, alive], [alive, dead]):
        assert ledger_names(runs, "9", {("10", "u|h:1")}) == {"9": "dbguard/upgrade/run-5",
                                                              "10": "dbguard/upgrade/run-5"}


def _mariadb(url: str) -> None:
    conn = connect(url)
    try:
        if "mariadb" not in execute(conn, "SELECT VERSION()")[0][0].lower():
            pytest.skip("these sessions exercise MariaDB's; MySQL 8 shares the code")
    finally:
        conn.close()


def _settings(ini: Path, url: str, **more: object):
    return load_settings({"config_path": str(ini), "url": url, **more}, environ={})


def _has_ledger(url: str) -> bool:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return sa.inspect(conn).has_table("dbguard_runs")
    finally:
        engine.dispose()


@pytest.mark.integration
def test_a_running_upgrade_on_mariadb_is_named_after_its_run(mysql_url: str, tmp_path: Path) -> None:
    """A real upgrade held mid-migration: `locks --format json` names its waiting migration session
    (and text says where the name comes from); `locks kill` names its sessions too, judged as the policy
    always judged them: protected_applications cannot protect a MariaDB session (the server shows no
    application), and the run lock's holder is dbguard's own, never ended."""
    _mariadb(mysql_url)
    ini = make_project(tmp_path, mysql_url, [ADD])
    cleanup = Cleanup()
    try:
        server = cleanup.add(Server(mysql_url))
        execute(server.conn, "CREATE TABLE t1 (id integer PRIMARY KEY) ENGINE=InnoDB")
        holder = cleanup.add(AppSession(mysql_url, "t1"))
        run = start_dbguard(ini, "upgrade", "head", env={"DBGUARD_LOCK_TIMEOUT_MS": "30000",
                                                         "DBGUARD_MAX_BLOCKING_MS": "60000"})
        try:
            (waiting,) = wait_waiting(server, like="ALTER TABLE")
            runs, _ = ledger(mysql_url)
            (running,) = [r for r in runs if r["status"] == RunStatus.RUNNING.value]
            expected = f"dbguard/upgrade/run-{running['id']}"
            lock_session = str(running["lock_session"])

            shown = dbguard(ini, mysql_url, "--format", "json", "locks")
            assert shown.returncode == 1, shown.stderr  # somebody waits
            by_id = {s["session_id"]: s for s in json.loads(shown.stdout)["sessions"]}
            assert by_id[waiting]["ledger_application"] == expected and by_id[waiting]["application"] is None
            assert by_id[holder.id]["ledger_application"] is None, by_id  # the application's own session
            text = output.render(api.locks(_settings(ini, mysql_url)))
            assert f"({expected}, per dbguard's ledger)" in text, text

            guarded = _settings(ini, mysql_url, protected_applications=("dbguard*",))
            dry = api.locks_kill(guarded, pids=[waiting, lock_session], dry_run=True)
            verdicts = {o.session.session_id: (o.code, o.session.ledger_application) for o in dry.outcomes}
            assert verdicts == {waiting: ("ok", expected), lock_session: ("own_session", expected)}, dry
            holder.commit()
            out, err = run.communicate(timeout=60)
        finally:
            if run.poll() is None:
                run.kill()
                run.communicate()
        assert run.returncode == 0, out + err
        # The run is over: nobody is named after it, even a session still listed under one of its ids.
        (done,) = ledger(mysql_url)[0]
        assert done["status"] == RunStatus.SUCCEEDED.value and json.loads(done["sessions"])
        assert not [s for s in api.locks(_settings(ini, mysql_url)).sessions if s.ledger_application]
    finally:
        cleanup.close()


@pytest.mark.integration
def test_a_finished_runs_ids_and_a_reused_id_are_not_named_and_no_ledger_is_no_name(
        mysql_url: str, tmp_path: Path) -> None:
    """No ledger: no names, no warning, and `locks` creates none. Then rows written by hand: a
    session listed by a finished run, or by a running run under another identity (its id reused by
    another connection), is not named; listed under its own identity by a running run, it is. A
    ledger locked by another session is not waited for."""
    _mariadb(mysql_url)
    ini = write_ini(tmp_path)
    s = _settings(ini, mysql_url)
    scene = Scene(mysql_url)
    try:
        execute(scene.admin, "CREATE TABLE t (id INT PRIMARY KEY) ENGINE=InnoDB")
        _, x, _, _, _ = scene.chain()
        ix = session_id(x)
        tree = api.locks(s)
        assert ix in {t.session_id for t in tree.sessions}
        assert not [t for t in tree.sessions if t.ledger_application], tree
        assert not [w for w in tree.warnings if "ledger" in w], tree.warnings
        assert not _has_ledger(mysql_url)

        identity = execute(scene.admin, f"SELECT CONCAT_WS('|', USER, HOST) FROM information_schema.PROCESSLIST "
                                        f"WHERE ID = {int(ix)}")[0][0]
        engine = sa.create_engine(mysql_url)
        try:
            with engine.connect() as conn:
                store = Ledger(conn, "dbguard_")
                store.ensure_tables()

                def add(status: str, listed: str) -> int:
                    return store.insert_run(intent="upgrade", status=status, started_at=utcnow(), forced=False,
                                            sessions=((ix, listed),), lock_session="1")

                add(RunStatus.SUCCEEDED.value, identity)
                add(RunStatus.FAILED.value, identity)
                add(RunStatus.RUNNING.value, identity.rsplit(":", 1)[0] + ":1")  # another port: another connection
                conn.commit()

                def name_of_x() -> str | None:
                    return next(t.ledger_application for t in api.locks(s).sessions if t.session_id == ix)

                assert name_of_x() is None
                confirmed = add(RunStatus.RUNNING.value, identity)
                conn.commit()
                assert name_of_x() == f"dbguard/upgrade/run-{confirmed}"
                # A ledger locked by somebody else is not waited for: the tree comes without names, saying so.
                locker = scene.open()
                execute(locker, "LOCK TABLES dbguard_runs WRITE")
                tree = api.locks(s)
                execute(locker, "UNLOCK TABLES")
                assert ix in {t.session_id for t in tree.sessions}
                assert not [t for t in tree.sessions if t.ledger_application], tree
                assert [w for w in tree.warnings if w.startswith("dbguard's ledger could not be read")], tree.warnings
        finally:
            engine.dispose()
    finally:
        scene.close()


@pytest.mark.integration
def test_default_database_narrows_to_processlist_db_without_a_metadata_lock_source(
        bare_mysql_url: str, bare_mariadb_server_url: str, tmp_path: Path) -> None:
    """No metadata_lock_info (approximate): a session's database is its PROCESSLIST.DB, and
    `--default-database X` keeps exactly the sessions whose PROCESSLIST.DB is X."""
    _mariadb(bare_mysql_url)
    scene = Scene(bare_mysql_url)
    other_url = create_database(bare_mariadb_server_url, "mysql")
    try:
        db, other_db = sa.engine.make_url(bare_mysql_url).database, sa.engine.make_url(other_url).database
        execute(scene.admin, "CREATE TABLE t (id INT PRIMARY KEY) ENGINE=InnoDB")
        reader = scene.idle_reader("t")  # PROCESSLIST.DB = db
        nowhere = connect(sa.engine.make_url(bare_mysql_url).set(database="")
                          .render_as_string(hide_password=False))  # no default database
        scene.conns.append(nowhere)
        execute(nowhere, "BEGIN")
        execute(nowhere, f"SELECT * FROM `{db}`.t")
        ids = {session_id(reader), session_id(nowhere)}
        wait_for(lambda: {str(r[0]) for r in execute(scene.admin, "SELECT trx_mysql_thread_id FROM "
                                                                  "information_schema.INNODB_TRX")} >= ids,
                 interval=INNODB_POLL_S, message="the open transactions never showed in INNODB_TRX")
        alter, _ = scene.background("ALTER TABLE t ADD COLUMN c INT")
        scene.wait_waiting(alter)
        s = _settings(write_ini(tmp_path), bare_mysql_url)

        tree = api.locks(s)
        assert tree.source == "heuristic" and tree.approximate, tree
        listed = {t.session_id for t in tree.sessions}
        assert listed >= {session_id(reader), session_id(nowhere), session_id(alter)}, tree
        rows = execute(scene.admin, "SELECT ID, DB FROM information_schema.PROCESSLIST "
                                    f"WHERE ID IN ({', '.join(sorted(listed))})")
        processlist_db = {str(r[0]): r[1] for r in rows}
        assert {t.session_id: t.default_database for t in tree.sessions} == processlist_db

        narrowed = api.locks(s, filters=SessionFilter(default_database=db))
        assert {t.session_id for t in narrowed.sessions} == {i for i, d in processlist_db.items() if d == db}
        assert {session_id(reader), session_id(alter)} <= {t.session_id for t in narrowed.sessions}
        assert session_id(nowhere) not in {t.session_id for t in narrowed.sessions}
        assert narrowed.hidden == len(listed) - len(narrowed.sessions) > 0
        assert narrowed.filters == f"--default-database {db}"
        assert api.locks(s, filters=SessionFilter(default_database=other_db)).sessions == ()
    finally:
        scene.close()
        drop_database(other_url, bare_mariadb_server_url, install_plugin=False)


def test_a_url_without_alembic_ini_builds_no_config_until_one_is_asked_for(tmp_path: Path) -> None:
    """`dbguard --url URL locks kill` needs no Alembic: not importing it shortens the start while a
    DDL queues. A Config asked for later is the one a URL alone always gave."""
    from dbguard.target import load_target

    url = "postgresql+psycopg://bob:p%25ss@db.example:5432/shop"
    settings = load_settings({"config_path": str(tmp_path / "alembic.ini"), "url": url}, environ={})
    target = load_target(settings, url_is_enough=True)
    assert target._config is None and target.url.password == "p%ss" and target.url.database == "shop"
    assert target.config.get_main_option("sqlalchemy.url") == url and target._config is not None
