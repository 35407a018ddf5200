"""Zombie takeover on real PostgreSQL and MariaDB. A dbguard run stopped with SIGSTOP in the middle
of a step (its heartbeat goes stale, its process is still there) holds the run lock. On its own host
a process that exists is alive: `dbguard rollback` exits 4 naming its pid, host and state. Where the
process cannot be seen (another host: here the run row is made to say so), a stale heartbeat and an
idle lock session make it a zombie: the rollback ends every session the run recorded and its lock's,
audited, takes the lock and returns the schema to the revision before it; when the stopped process
resumes, it finds its run taken over, says so on its row and exits 5.

Waits are on ledger rows, server sessions and the heartbeat's age on the server's clock, each with
a deadline; the stopped process is SIGKILLed in a finally (SIGKILL works on stopped processes).
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from tests.lanekit import (
    Cleanup,
    Server,
    columns,
    dbguard,
    describe,
    json_out,
    ledger,
    rows,
    start_dbguard,
    versions,
)
from tests.projects import make_project, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ZOMBIE_ENV = {"DBGUARD_HEARTBEAT_INTERVAL_S": "0.2", "DBGUARD_ZOMBIE_AFTER_S": "1.5"}
SLEEP = {"postgresql": "SELECT pg_sleep(20)", "mysql": "SELECT SLEEP(20)"}
NOW = {"postgresql": "SELECT (clock_timestamp() AT TIME ZONE 'UTC') AS now",
       "mysql": "SELECT UTC_TIMESTAMP(6) AS now"}
T = ("z1_t", 'op.create_table("t", sa.Column("id", sa.Integer, primary_key=True))', 'op.drop_table("t")')


def _slow(engine: str) -> tuple[str, str, str]:
    return ("z2_slow", f'op.add_column("t", sa.Column("c", sa.Integer))\nop.execute("{SLEEP[engine]}")',
            'op.drop_column("t", "c")')


def _heartbeat_age_s(url: str, engine: str, run_id: int) -> float:
    now = rows(url, NOW[engine])[0]["now"]
    beat = rows(url, f"SELECT heartbeat_at FROM dbguard_runs WHERE id = {run_id}")[0]["heartbeat_at"]
    return (now - beat).total_seconds()


def _who_is_there(server: Server, engine: str, run: dict) -> str:
    """What to read when the deploy's lock session is not there: the server's sessions and the ledger."""
    sessions = (server.rows("SELECT pid, datname, state, left(query, 80) FROM pg_stat_activity")
                if engine == "postgresql" else
                server.rows("SELECT ID, DB, COMMAND, STATE, LEFT(INFO, 80) FROM information_schema.PROCESSLIST"))
    runs = server.rows("SELECT id, intent, status, lock_session, error FROM dbguard_runs")
    return f"lock session {run['lock_session']} gone; sessions: {sessions}; runs: {runs}"


@pytest.mark.parametrize("engine", ["postgresql", "mysql"])
def test_a_stopped_run_is_alive_and_a_zombie_elsewhere_is_taken_over(engine: str, request: pytest.FixtureRequest,
                                                                       tmp_path: Path) -> None:
    url = request.getfixturevalue("pg_url" if engine == "postgresql" else "mysql_url")
    ini = make_project(tmp_path, url, [T, _slow(engine)])
    assert (p := dbguard(ini, "upgrade", T[0])).returncode == 0, describe(p)
    cleanup = Cleanup()
    try:
        server = cleanup.add(Server(url))
        deploy = cleanup.add(start_dbguard(ini, "upgrade", "head", env=ZOMBIE_ENV))

        def step_running() -> dict | None:
            if deploy.poll() is not None:
                raise AssertionError(f"the deploy ended early: {deploy.communicate()}")
            runs, steps = ledger(url)
            running = [s for s in steps if s["revision"] == "z2_slow" and s["status"] == "running"]
            return runs[-1] if running else None

        run = wait_for(step_running, timeout=30, interval=0.05, message="the slow step never started")
        sleeper = wait_for(lambda: server.rows(_sessions_running(engine, server.database, "sleep")), timeout=10,
                           message="the slow step's statement never ran")[0][0]

        # Alive and heartbeating: never taken over, however often asked.
        p = dbguard(ini, "rollback", "--yes", env=ZOMBIE_ENV)
        assert p.returncode == 4, describe(p)
        assert f"its process {deploy.pid} on" in p.stdout + p.stderr and "is alive" in p.stdout + p.stderr
        assert deploy.poll() is None and server.alive(str(sleeper))
        assert run["lock_session"] and server.alive(run["lock_session"]), _who_is_there(server, engine, run)

        # Stopped: its heartbeat goes stale while it still holds the run lock; on its own host it is alive.
        deploy.send_signal(signal.SIGSTOP)
        wait_for(lambda: _heartbeat_age_s(url, engine, run["id"]) > 2.0, timeout=15, interval=0.1,
                 message="the heartbeat never went stale")
        p = dbguard(ini, "rollback", "--yes", env=ZOMBIE_ENV)
        assert p.returncode == 4, describe(p)
        assert f"its process {deploy.pid} on" in p.stdout and "(state T, stopped)" in p.stdout, describe(p)
        # Nothing changed: (z2 still runs in its transaction; PostgreSQL's catalog would wait for t's lock)
        assert server.alive(run["lock_session"]) and server.alive(str(sleeper)) and versions(url) == [T[0]]

        # Where the process cannot be seen, the same silence makes it a zombie.
        server.rows(f"UPDATE dbguard_runs SET host = 'elsewhere' WHERE id = {run['id']}")
        p = dbguard(ini, "--format", "json", "rollback", "--yes", env=ZOMBIE_ENV)
        assert p.returncode == 0, describe(p)
        result = json_out(p)
        ended = {e["session"]["session_id"] for e in result["ended_sessions"]}
        # Every session it recorded (the one running z2's sleep) and its lock's, audited.
        assert {str(sleeper), run["lock_session"]} <= ended, result["ended_sessions"]
        assert not server.alive(run["lock_session"]) and not server.alive(str(sleeper))
        kills = rows(url, "SELECT victim_session, outcome FROM dbguard_kills")
        assert {str(sleeper), run["lock_session"]} <= {k["victim_session"] for k in kills}, kills
        assert versions(url) == [T[0]] and "c" not in columns(url, "t")
        assert server.rows("SELECT COUNT(*) FROM t")[0][0] == 0  # nothing of the dead step holds t
        runs, _ = ledger(url)
        takeover = runs[-1]
        assert takeover["intent"] == "rollback" and takeover["status"] == "succeeded"
        assert json_out(dbguard(ini, "--format", "json", "status"))["state"] == "HEALTHY"

        # It resumes: it cannot commit anything any more, and says it was taken over.
        deploy.send_signal(signal.SIGCONT)
        out, err = deploy.communicate(timeout=60)
        assert deploy.returncode == 5, (out, err)
        assert f"taken over by run {takeover['id']}" in out + err and "Traceback" not in err, (out, err)
        runs, _ = ledger(url)
        old = next(r for r in runs if r["id"] == run["id"])
        assert old["status"] == "rolled_back" and f"taken over by run {takeover['id']}" in old["error"]
        assert versions(url) == [T[0]] and "c" not in columns(url, "t")
        assert json_out(dbguard(ini, "--format", "json", "status"))["state"] == "HEALTHY"
    finally:
        cleanup.close()


def _sessions_running(engine: str, database: str, word: str) -> str:
    if engine == "postgresql":
        return (f"SELECT pid FROM pg_stat_activity WHERE datname = '{database}' AND state = 'active' "
                f"AND query ILIKE '%{word}%' AND pid <> pg_backend_pid()")
    return (f"SELECT ID FROM information_schema.PROCESSLIST WHERE DB = '{database}' AND COMMAND = 'Query' "
            f"AND INFO LIKE '%{word}%' AND ID <> CONNECTION_ID()")
