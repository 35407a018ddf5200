"""The monitored bake: a baking batch's targets probed (health_sql, the lock queue on the batch's tables,
an HTTP endpoint) until a probe fails probe_failures times in a row, which stops the rollout as a
failed migration does. Fleets of three targets on the real servers; each fault is injected when the
stream shows the bake's first passing probe, never after a sleep."""

from __future__ import annotations

import http.server
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from dbguard.core.bake import (
    HEALTH_SQL,
    HEALTH_URL,
    LOCK_QUEUE,
    Probe,
    ProbeTally,
    Waiting,
    failing_targets,
    probe_rounds,
    queue_problem,
)
from tests.dbs import create_database, drop_database
from tests.guardrun import cli_env
from tests.projects import make_project

DBGUARD = [sys.executable, "-m", "dbguard.cli"]
SECRET = "B4ke-Pa55-71c3"


# --- the pure decisions ----------------------------------------------------------------------------


def test_a_target_fails_after_probe_failures_in_a_row_and_a_pass_starts_the_count_again() -> None:
    tally = ProbeTally(2)
    assert tally.record(Probe("a", HEALTH_SQL, False, "boom")) is None
    assert tally.record(Probe("a", HEALTH_SQL, True)) is None  # a blip
    assert tally.record(Probe("a", HEALTH_SQL, False, "boom")) is None
    assert tally.record(Probe("a", HEALTH_URL, False, "HTTP 500")) is None  # another check counts apart
    assert tally.record(Probe("a", HEALTH_SQL, False, "boom")) == "health_sql failed 2 probe(s) in a row: boom"
    one = ProbeTally(1)
    assert failing_targets(one, [Probe("a", HEALTH_SQL, True), Probe("b", LOCK_QUEUE, False, "q"),
                                 Probe("b", HEALTH_URL, False, "u")]) == {
        "b": "lock_queue failed 1 probe(s) in a row: q; health_url failed 1 probe(s) in a row: u"}
    with pytest.raises(ValueError):
        ProbeTally(0)


def test_probes_run_every_interval_while_the_bake_lasts_and_once_at_its_end() -> None:
    assert list(probe_rounds(1.0, 0.25)) == [(0.25, False), (0.5, False), (0.75, False), (1.0, True)]
    assert list(probe_rounds(0.2, 1.0)) == [(0.2, True)]  # shorter than its interval: it still looks once
    assert next(probe_rounds(86400 * 365, 0.0001)) == (0.0001, False)  # lazily: no list of them all
    with pytest.raises(ValueError):
        next(probe_rounds(1.0, 0))


def test_a_failure_in_the_last_round_fails_at_once() -> None:
    tally = ProbeTally(3)
    assert failing_targets(tally, [Probe("a", HEALTH_SQL, False, "boom")]) == {}
    assert failing_targets(tally, [Probe("a", HEALTH_SQL, False, "boom")], last=True) == {
        "a": "health_sql failed 2 probe(s) at the end of the bake: boom"}


@pytest.mark.parametrize(("url", "problem"), [
    ("http://app:8080/healthz?key=abc", None), ("https://u:p@app/ok", None),
    ("ftp://app/x", "http:// or https://"), ("http://", "no host"), ("http://[::1/x", "not a URL"),
    ("http://app:99999/", "not a URL"),
])
def test_a_health_url_is_checked_before_anything_runs(url: str, problem: str | None) -> None:
    from dbguard.core.bake import health_url_problem, probe_settings_problem

    found = health_url_problem(url)
    assert (found is None) if problem is None else (found is not None and problem in found), found
    assert probe_settings_problem(5, 2, 5, None) is None
    assert "probe_failures" in (probe_settings_problem(5, 1.5, 5, None) or "")
    assert "probe_interval_s" in (probe_settings_problem(0, 2, 5, None) or "")


def test_credentials_in_a_health_url_become_a_basic_authorization_header() -> None:
    from dbguard.run.probes import _without_credentials

    assert _without_credentials("http://app:8080/ok") == ("http://app:8080/ok", {})
    url, headers = _without_credentials("http://probe:s%40cret@app:8080/ok?x=1")
    assert url == "http://app:8080/ok?x=1" and headers == {"Authorization": "Basic cHJvYmU6c0BjcmV0"}


def test_the_queue_fails_on_long_waits_for_the_batchs_tables_only() -> None:
    waits = [Waiting("7", "public.orders", 2.5, ("3",)), Waiting("8", "other", 9.0, ("4",)),
             Waiting("9", None, None, ("3",))]
    assert queue_problem(waits, {"orders"}, 1.0) == \
        "1 session(s) waiting up to 2.5 s for a lock on public.orders behind session(s) 3"
    assert queue_problem(waits, {"orders"}, 3.0) is None
    assert queue_problem(waits, None, 1.0) is not None and "2 session(s)" in queue_problem(waits, None, 1.0)
    assert queue_problem([], None, 0) is None


# --- fleets on the servers -------------------------------------------------------------------------

REVISIONS = [("r1", "op.create_table('bake_t1', sa.Column('id', sa.Integer, primary_key=True))",
              "op.drop_table('bake_t1')")]


def execute(url: str, *sql: str) -> None:
    engine = sa.create_engine(url, poolclass=NullPool)
    try:
        with engine.begin() as conn:
            for statement in sql:
                conn.exec_driver_sql(statement)
    finally:
        engine.dispose()


class BakeFleet:
    """Three fresh databases (PostgreSQL, PostgreSQL, MariaDB), one per batch of 1,2,3."""

    def __init__(self, tmp: Path, pg_server: str, mysql_server: str) -> None:
        self.tmp = tmp
        self.urls = [create_database(pg_server, "postgresql"), create_database(pg_server, "postgresql"),
                     create_database(mysql_server, "mysql")]

    def write(self, fleet_lines: list[str], target_lines: dict[int, list[str]] | None = None) -> Path:
        ini = make_project(self.tmp, self.urls[0], REVISIONS)
        lines = ["[fleet]", 'name = "bakers"', f'alembic_config = "{ini.relative_to(self.tmp)}"',
                 "probe_interval_s = 0.2", "probe_failures = 2", *fleet_lines, ""]
        for i, url in enumerate(self.urls):
            if url.startswith("postgresql"):
                url = url.replace("postgres@", "postgres:${BAKE_PW}@")
            lines += ["[[targets]]", f'name = "t{i}"', f'url = "{url}"', *(target_lines or {}).get(i, []), ""]
        path = self.tmp / "fleet.toml"
        path.write_text("\n".join(lines))
        return path

    def start(self, path: Path, *more: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        return subprocess.Popen([*DBGUARD, "--format", "jsonl", "fleet", "upgrade", str(path), "--batches", "1,2,3",
                                 "--bake", "3", *more], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, cwd=self.tmp,
                                env=cli_env({"BAKE_PW": SECRET, **(env or {})}))

    def drop(self) -> None:
        for url in self.urls:
            drop_database(url)


@pytest.fixture
def bake_fleet(tmp_path: Path, pg_server_url: str, mysql_server_url: str) -> Iterator[BakeFleet]:
    kit = BakeFleet(tmp_path, pg_server_url, mysql_server_url)
    try:
        yield kit
    finally:
        kit.drop()


def run_until(proc: subprocess.Popen[str], on_event: Any) -> tuple[int, list[dict[str, Any]], str]:
    """The process's jsonl events as they come, each shown to ``on_event``; then its exit code and stderr."""
    events = []
    assert proc.stdout is not None
    try:
        for line in proc.stdout:
            event = json.loads(line)
            events.append(event)
            on_event(event)
        code = proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.stderr is not None
    return code, events, proc.stderr.read()


def once(action: Any, batch: int) -> Any:
    """``action`` at the first passing probe of ``batch``: the fault appears while the batch bakes."""
    done: list[bool] = []

    def on_event(event: dict[str, Any]) -> None:
        if not done and event["event"] == "probe" and event["batch"] == batch and event["ok"]:
            done.append(True)
            action()

    return on_event


def assert_stopped_by(events: list[dict[str, Any]], batch: int, check: str, code: int, err: str) -> dict[str, Any]:
    """The rollout stopped as for a failed migration, by ``probe_failures`` (2) failed probes of
    ``check`` on the target of ``batch`` in a row, in the rounds right after the fault: the next
    batch never started."""
    target, later = f"t{batch - 1}", [f"t{i}" for i in range(batch, 3)]
    assert code == 5, (code, err, events[-3:])
    probes = [e for e in events if e["event"] == "probe" and e["batch"] == batch]
    failed = [e for e in probes if not e["ok"]]
    assert [(e["target"], e["check"]) for e in failed] == [(target, check)] * 2, probes
    first_failed = failed[0]["round"]
    # No round after the second failure: the fleet stopped within two probe intervals of the fault.
    assert failed[1]["round"] == first_failed + 1 and max(e["round"] for e in probes) == first_failed + 1
    assert [e["batch"] for e in events if e["event"] == "batch_started"] == list(range(1, batch + 1))
    stopped = next(e for e in events if e["event"] == "fleet_failed")
    assert stopped["batch"] == batch and "failed while baking" in stopped["error"]
    assert stopped["blast_radius"]["failed"] == [target] and stopped["blast_radius"]["next_batch"] == [later[0]]
    assert stopped["rollback_command"].startswith("dbguard fleet rollback ")
    summary = events[-1]
    by_name = {t["name"]: t for t in summary["targets"]}
    assert by_name[target]["status"] == "failed" and f"bake: {check} failed 2 probe(s) in a row" in \
        by_name[target]["error"]
    assert all(by_name[name]["status"] == "skipped" for name in later)
    assert SECRET not in json.dumps(events) and SECRET not in err
    return summary


@pytest.mark.integration
@pytest.mark.xdist_group("fleet")
def test_a_health_sql_failing_while_its_batch_bakes_stops_the_fleet(bake_fleet: BakeFleet) -> None:
    for url in bake_fleet.urls[:2]:
        execute(url, "CREATE TABLE bake_ok (id int)", "INSERT INTO bake_ok VALUES (1)")
    # PostgreSQL divides by zero once bake_ok is empty; MariaDB's target only answers.
    path = bake_fleet.write([], {0: ['health_sql = "SELECT 1 / count(*) FROM bake_ok"'],
                                 1: ['health_sql = "SELECT 1 / count(*) FROM bake_ok"'],
                                 2: ['health_sql = "SELECT 1"']})
    seen: list[dict[int, str]] = []

    def read_then_break() -> None:
        # What `fleet status` reads while batch 2 bakes: it has passed one check, not the bake.
        seen.append(batch_states(path.parent / "fleet.fleet.db"))
        execute(bake_fleet.urls[1], "DELETE FROM bake_ok")

    code, events, err = run_until(bake_fleet.start(path), once(read_then_break, 2))
    assert_stopped_by(events, 2, HEALTH_SQL, code, err)
    assert seen == [{1: "verified", 2: "baking", 3: "planned"}]
    # Batch 1 baked clean, and was called verified only after its bake.
    kinds = [(e["event"], e.get("batch")) for e in events]
    last_probe = max(i for i, (kind, batch) in enumerate(kinds) if kind == "probe" and batch == 1)
    assert kinds.index(("batch_verified", 1)) > last_probe
    assert ("batch_verified", 2) not in kinds
    assert batch_states(path.parent / "fleet.fleet.db") == {1: "verified", 2: "failed", 3: "skipped"}


def batch_states(control: Path) -> dict[int, str]:
    """Each batch's status in the fleet's control database (a SQLite file beside the fleet file)."""
    engine = sa.create_engine(f"sqlite:///{control}", poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return dict(conn.execute(sa.text("SELECT number, status FROM dbguard_fleet_batches")).all())
    finally:
        engine.dispose()


@pytest.mark.integration
@pytest.mark.xdist_group("fleet")
def test_a_lock_queue_on_the_batchs_table_while_it_bakes_stops_the_fleet(bake_fleet: BakeFleet) -> None:
    held: list[Any] = []

    def queue_behind_a_lock() -> None:
        # An idle transaction holding the table the batch created, and a reader queued behind it.
        engine = sa.create_engine(bake_fleet.urls[0], poolclass=NullPool)
        holder = engine.connect()
        holder.exec_driver_sql("BEGIN")
        holder.exec_driver_sql("LOCK TABLE bake_t1 IN ACCESS EXCLUSIVE MODE")
        waiter = threading.Thread(target=lambda: execute(bake_fleet.urls[0], "SELECT * FROM bake_t1"), daemon=True)
        waiter.start()
        held.extend([engine, holder, waiter])

    path = bake_fleet.write([])
    try:
        code, events, err = run_until(bake_fleet.start(path, env={"DBGUARD_MAX_BLOCKING_MS": "300"}),
                                      once(queue_behind_a_lock, 1))
    finally:
        if held:
            held[1].close()  # the reader goes through, the holder's transaction ends
            held[2].join(30)
            held[0].dispose()
    summary = assert_stopped_by(events, 1, LOCK_QUEUE, code, err)
    error = {t["name"]: t for t in summary["targets"]}["t0"]["error"]
    assert "for a lock on" in error and "bake_t1" in error


class _Health(http.server.BaseHTTPRequestHandler):
    status = 200
    posted: ClassVar[list[dict[str, Any]]] = []  # each test class makes its own

    def do_GET(self) -> None:
        self.send_response(type(self).status)
        self.end_headers()

    def do_POST(self) -> None:
        type(self).posted.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.mark.integration
@pytest.mark.xdist_group("fleet")
def test_a_health_url_answering_500_while_its_batch_bakes_stops_the_fleet(bake_fleet: BakeFleet) -> None:
    handler = type("Health", (_Health,), {"status": 200, "posted": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.server_address[1]
        path = bake_fleet.write([f'health_url = "http://127.0.0.1:{port}/healthz?token=${{BAKE_PW}}"'])

        def fail_http() -> None:
            handler.status = 500

        hook = {"DBGUARD_NOTIFY_URL": f"http://127.0.0.1:{port}/hook"}
        code, events, err = run_until(bake_fleet.start(path, env=hook), once(fail_http, 1))
    finally:
        server.shutdown()
        server.server_close()
    summary = assert_stopped_by(events, 1, HEALTH_URL, code, err)
    assert "HTTP 500" in {t["name"]: t for t in summary["targets"]}["t0"]["error"]
    # The on-call hears of it: the fleet's batch failure, posted before the command ended, masked.
    (told,) = [p for p in handler.posted if p["event"] == "fleet_batch_failed"]
    assert told["batch"] == 1 and "failed while baking" in told["error"] and SECRET not in json.dumps(handler.posted)


# --- a single target: upgrade --bake -------------------------------------------------------------


def _upgrade(ini: Path, bake: str, extra_env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen([*DBGUARD, "-c", str(ini), "--format", "json", "upgrade", "--bake", bake],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=cli_env({"DBGUARD_PROBE_INTERVAL_S": "0.2", **extra_env}), cwd=ini.parent)


@pytest.mark.integration
def test_upgrade_bake_records_the_run_failed_when_its_health_sql_starts_failing(tmp_path: Path, pg_url: str) -> None:
    from tests.guardrun import try_ledger
    from tests.projects import wait_for

    execute(pg_url, "CREATE TABLE bake_ok (id int)", "INSERT INTO bake_ok VALUES (1)")
    ini = make_project(tmp_path, pg_url, REVISIONS)
    proc = _upgrade(ini, "60", {"DBGUARD_HEALTH_SQL": "SELECT 1 / count(*) FROM bake_ok"})
    try:
        # The run has succeeded and the process still runs: it bakes. Then its health check breaks.
        wait_for(lambda: _baking(pg_url) or proc.poll() is not None, timeout=60, message="the bake never began")
        assert proc.poll() is None, proc.communicate()
        execute(pg_url, "DELETE FROM bake_ok")
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 5, (out, err)
    result = json.loads(out)
    assert result["status"] == "failed" and "failed while baking" in result["message"]
    assert result["error"].startswith("bake: health_sql failed 2 probe(s) in a row: health_sql failed:")
    (run,) = [r for r in try_ledger(pg_url)[0] if r["intent"] == "upgrade"]
    assert run["status"] == "failed" and run["error"] == result["error"]
    status = subprocess.run([*DBGUARD, "-c", str(ini), "--format", "json", "status"],
                            capture_output=True, text=True, env=cli_env(), cwd=tmp_path, check=False)
    assert json.loads(status.stdout)["state"] == "FAILED", status.stdout


@pytest.mark.integration
def test_upgrade_bake_that_stays_healthy_succeeds(tmp_path: Path, mysql_url: str) -> None:
    proc = _upgrade(make_project(tmp_path, mysql_url, REVISIONS), "1", {"DBGUARD_HEALTH_SQL": "SELECT 1"})
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, (out, err)
    result = json.loads(out)
    assert result["status"] == "succeeded" and "baked 1 s: 5 probe round(s), every probe passed" in result["message"]
    assert (result["bake_s"], result["bake_rounds"]) == (1, 5)


def _baking(url: str) -> bool:
    """The upgrade's run has finished its steps and bakes: its row says running again, with an end."""
    from tests.guardrun import try_ledger

    runs = [r for r in try_ledger(url)[0] if r["intent"] == "upgrade"]
    return bool(runs) and runs[-1]["status"] == "running" and runs[-1]["finished_at"] is not None


@pytest.mark.integration
@pytest.mark.parametrize("how", ["SIGKILL", "SIGINT", "lock lost"])
def test_a_bake_cut_short_never_leaves_the_run_succeeded(tmp_path: Path, pg_url: str, how: str) -> None:
    import signal

    from tests.guardrun import try_ledger
    from tests.projects import wait_for

    ini = make_project(tmp_path, pg_url, REVISIONS)
    proc = _upgrade(ini, "120", {"DBGUARD_HEALTH_SQL": "SELECT 1", "DBGUARD_HEARTBEAT_INTERVAL_S": "0.2"})
    try:
        wait_for(lambda: _baking(pg_url) or proc.poll() is not None, timeout=60, message="the bake never began")
        assert proc.poll() is None, proc.communicate()
        if how == "lock lost":  # a DBA ends dbguard's sessions: nothing keeps other runs out any more
            execute(pg_url, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() "
                            "AND pid <> pg_backend_pid() AND application_name LIKE 'dbguard/upgrade%%'")
        else:
            proc.send_signal(getattr(signal, how))
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    (run,) = [r for r in try_ledger(pg_url)[0] if r["intent"] == "upgrade"]
    status = subprocess.run([*DBGUARD, "-c", str(ini), "--format", "json", "status"],
                            capture_output=True, text=True, env=cli_env(), cwd=ini.parent, check=False)
    state = json.loads(status.stdout)["state"]
    if how == "SIGKILL":  # nobody could write its end: a run that died, not one that succeeded
        assert proc.returncode == -9 and run["status"] == "running" and state == "UNKNOWN", (run, state)
    elif how == "SIGINT":
        assert proc.returncode == 130 and run["status"] == "failed" and state == "FAILED", (run, state, err)
        assert run["error"].startswith("bake: stopped after") and "KeyboardInterrupt" in run["error"]
    else:
        assert proc.returncode == 5 and run["status"] == "failed" and state == "FAILED", (run, state, out, err)
        assert "the run lock was lost" in json.loads(out)["message"]


@pytest.mark.integration
def test_a_target_failing_its_probes_already_is_refused_before_it_is_migrated(tmp_path: Path, pg_url: str) -> None:
    from tests.guardrun import try_ledger, versions

    ini = make_project(tmp_path, pg_url, REVISIONS)
    proc = _upgrade(ini, "30", {"DBGUARD_HEALTH_SQL": "SELECT 1/0"})
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 3, (out, err)
    assert "fails its bake probes before the upgrade (health_sql failed: division by zero" in json.loads(out)["message"]
    assert versions(pg_url) == [] and not [r for r in try_ledger(pg_url)[0] if r["status"] == "running"]


def test_bake_settings_are_checked_when_a_bake_is_asked_for_only(tmp_path: Path) -> None:
    ini = make_project(tmp_path, f"sqlite:///{tmp_path / 'app.db'}", REVISIONS)
    env = {"DBGUARD_HEALTH_URL": "ftp://nowhere", "DBGUARD_PROBE_INTERVAL_S": "0"}
    baked = subprocess.run([*DBGUARD, "-c", str(ini), "upgrade", "--bake", "5"], capture_output=True, text=True,
                           env=cli_env(env), cwd=ini.parent, check=False)
    assert baked.returncode == 2 and "--bake: probe_interval_s must be" in baked.stderr, baked.stderr
    plain = subprocess.run([*DBGUARD, "-c", str(ini), "upgrade"], capture_output=True, text=True,
                           env=cli_env(env), cwd=ini.parent, check=False)
    assert plain.returncode == 0, plain.stderr  # status, rollback, a plain upgrade: never blocked by them
