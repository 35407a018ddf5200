"""Fleet rollouts end to end, on real databases: 12 targets (PostgreSQL and MariaDB) per test.

Every dbguard here is a real process (``python -m dbguard.cli``); the tests read the control
database and each target's ledger on connections of their own. PostgreSQL targets carry a
password by ``${VAR}`` reference (trust auth accepts any), and no output, log or control-database
column may ever show it.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from tests.dbs import create_database, drop_database
from tests.guardrun import cli_env, ledger, versions
from tests.projects import make_project, wait_for

# Twelve databases and a dozen processes each: one such test at a time per run, so two of them in
# parallel workers never compete for the servers' connections.
pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.xdist_group("fleet")]

DBGUARD = [sys.executable, "-m", "dbguard.cli"]
SECRET = "Fl33t-Pa55-9f2c"
N_PG, N_MYSQL = 8, 4


def revisions(slow_s: float = 0.0, slow_only: str | None = None, fail_in: str | None = None) -> list[tuple[str, str, str]]:
    """r1..r3, a table each; r2 can sleep (everywhere, or only in the database named ``slow_only``),
    or fail in the database named ``fail_in`` (a division by zero, after its table was created)."""
    sleep = ""
    if fail_in:
        sleep = ("op.create_table('fleet_t2', sa.Column('id', sa.Integer, primary_key=True))\n"
                 f"if op.get_bind().engine.url.database == {fail_in!r}:\n"
                 "    op.execute('SELECT 1/0 FROM fleet_t2 UNION ALL SELECT 1/0')\n")
    if slow_s:
        cond = f" and bind.engine.url.database == {slow_only!r}" if slow_only else ""
        sleep = (f"bind = op.get_bind()\n"
                 f"if bind.dialect.name == 'postgresql'{cond}:\n    op.execute('SELECT pg_sleep({slow_s})')\n"
                 f"elif bind.dialect.name in ('mysql', 'mariadb'){cond}:\n    op.execute('SELECT SLEEP({slow_s})')\n")
    out = []
    for i in (1, 2, 3):
        body = f"op.create_table('fleet_t{i}', sa.Column('id', sa.Integer, primary_key=True))"
        if i == 2 and fail_in:
            body = sleep
        elif i == 2 and sleep:
            body = sleep + body
        out.append((f"r{i}", body, f"op.drop_table('fleet_t{i}')"))
    return out


class Fleet:
    """12 fresh databases, a stock Alembic project, and a fleet file naming them in order."""

    def __init__(self, tmp: Path, pg_server: str, mysql_server: str) -> None:
        self.tmp = tmp
        self.pg_server, self.mysql_server = pg_server, mysql_server
        self.urls: list[str] = []
        self.outputs: list[str] = []
        self.control_url: str | None = None

    def create(self) -> None:
        # Position 1 is MariaDB so the second batch of 1,25%,100% mixes engines.
        kinds = ["postgresql", "mysql"] + ["postgresql"] * (N_PG - 1) + ["mysql"] * (N_MYSQL - 1)
        for kind in kinds:
            self.urls.append(create_database(self.pg_server if kind == "postgresql" else self.mysql_server, kind))

    def drop(self) -> None:
        for url in self.urls:
            drop_database(url)
        if self.control_url:
            drop_database(self.control_url)

    def names(self) -> list[str]:
        return [f"db{i:02d}" for i in range(len(self.urls))]

    def database(self, i: int) -> str:
        return sa.engine.make_url(self.urls[i]).database or ""

    def write(self, revs: list[tuple[str, str, str]], control_url: str | None = None,
              health_sql: str = "SELECT 1") -> Path:
        ini = make_project(self.tmp, self.urls[0], revs)
        lines = ["[fleet]", 'name = "tenants"', f'alembic_config = "{ini.relative_to(self.tmp)}"']
        if control_url:
            lines.append('control_url = "${FLEET_CONTROL_URL}"')
        lines.append("")
        for i, url in enumerate(self.urls):
            if url.startswith("postgresql"):
                url = url.replace("postgres@", "postgres:${TENANT_PW}@")
            lines += ["[[targets]]", f'name = "{self.names()[i]}"', f'url = "{url}"', f"weight = {i + 1}",
                      f'health_sql = "{health_sql}"']
            lines.append("")
        path = self.tmp / "fleet.toml"
        path.write_text("\n".join(lines))
        return path

    def env(self) -> dict[str, str]:
        extra = {"TENANT_PW": SECRET, "DBGUARD_HEARTBEAT_INTERVAL_S": "0.5"}
        if self.control_url:
            extra["FLEET_CONTROL_URL"] = self.control_url.replace("postgres@", "postgres:${TENANT_PW}@").replace(
                "${TENANT_PW}", SECRET)
        return cli_env(extra)

    def run(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([*DBGUARD, *args], stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=timeout, env=self.env(), cwd=self.tmp, check=False)
        self.outputs += [proc.stdout, proc.stderr]
        return proc

    def start(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen([*DBGUARD, *args], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=self.env(), cwd=self.tmp)

    def finish(self, proc: subprocess.Popen[str], timeout: float = 180) -> tuple[int, str, str]:
        out, err = proc.communicate(timeout=timeout)
        self.outputs += [out, err]
        return proc.returncode, out, err

    def control_rows(self, table: str) -> list[dict[str, Any]]:
        url = self.control_url or f"sqlite:///{self.tmp / 'fleet.fleet.db'}"
        engine = sa.create_engine(url, poolclass=NullPool)
        try:
            with engine.connect() as conn:
                if not sa.inspect(conn).has_table(f"dbguard_fleet_{table}"):
                    return []
                return [dict(r) for r in conn.execute(sa.text(f"SELECT * FROM dbguard_fleet_{table} ORDER BY id"))
                        .mappings()]
        finally:
            engine.dispose()

    def assert_no_secret(self) -> None:
        for text in self.outputs:
            assert SECRET not in text, text
        for table in ("runs", "batches", "targets"):
            for row in self.control_rows(table):
                assert SECRET not in json.dumps(row, default=str), (table, row)
        for url in self.urls:
            runs, steps = ledger(url)
            assert SECRET not in json.dumps([runs, steps], default=str)


def sleeping(urls: list[str]) -> bool:
    """Whether a migration's sleep (r2's pg_sleep / SLEEP) runs on the server in one of these databases:
    the moment a process killed now leaves a target mid-statement."""
    for url in urls:
        name = sa.engine.make_url(url).database
        if url.startswith("postgresql"):
            sql = ("SELECT count(*) FROM pg_stat_activity WHERE datname = :name AND state = 'active' "
                   "AND query LIKE 'SELECT pg_sleep%'")
        else:
            sql = ("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE DB = :name AND COMMAND = 'Query' "
                   "AND INFO LIKE 'SELECT SLEEP%'")
        engine = sa.create_engine(url, poolclass=NullPool)
        try:
            with engine.connect() as conn:
                if conn.execute(sa.text(sql), {"name": name}).scalar():
                    return True
        finally:
            engine.dispose()
    return False


def describe(proc: subprocess.CompletedProcess[str]) -> str:
    return f"exit {proc.returncode}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr[-4000:]}"


@pytest.fixture
def fleet(tmp_path: Path, pg_server_url: str, mysql_server_url: str) -> Iterator[Fleet]:
    kit = Fleet(tmp_path, pg_server_url, mysql_server_url)
    try:
        kit.create()
        yield kit
    finally:
        kit.drop()


def upgrade_runs(url: str) -> list[dict[str, Any]]:
    runs, _ = ledger(url)
    return [r for r in runs if r["intent"] == "upgrade" and r["status"] not in ("refused", "busy")]


def test_failed_batch_stops_the_rollout_and_rollback_restores_the_fleet(fleet: Fleet) -> None:
    # Target db02 is in the second batch of 1,25%,100% (1, then 3 cumulative of 12): its r2 fails.
    path = fleet.write(revisions(fail_in=fleet.database(2)))

    proc = fleet.run("--format", "jsonl", "fleet", "upgrade", str(path), "--batches", "1,25%,100%",
                     "--parallel", "4")
    assert proc.returncode == 5, describe(proc)
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    kinds = [e["event"] for e in events]
    assert kinds[0] == "fleet_started" and kinds[-1] == "summary"
    assert [e["batch"] for e in events if e["event"] == "batch_started"] == [1, 2]
    assert [e["batch"] for e in events if e["event"] == "batch_verified"] == [1]
    failed = next(e for e in events if e["event"] == "fleet_failed")
    assert failed["blast_radius"]["failed"] == ["db02"]
    assert failed["blast_radius"]["next_batch"] == fleet.names()[3:]
    assert failed["rollback_command"].startswith("dbguard fleet rollback ")
    summary = events[-1]
    by_name = {t["name"]: t for t in summary["targets"]}
    assert by_name["db00"]["status"] == "succeeded"
    assert by_name["db01"]["status"] == "succeeded"  # MariaDB, in flight with the failure: finished
    assert by_name["db02"]["status"] == "failed"
    assert all(by_name[n]["status"] == "skipped" for n in fleet.names()[3:])
    assert [b["status"] for b in summary["batches"]] == ["verified", "failed", "skipped"]
    # Read at its pre-flight: at base. Never pre-flighted: no revision is claimed for it.
    assert by_name["db02"]["from_revisions"] == []
    assert all(by_name[n]["from_revisions"] is None for n in fleet.names()[3:])

    # What the databases say: batch 1 and db01 at r3, db02 stopped at r1, batch 3 untouched.
    assert versions(fleet.urls[0]) == ["r3"] and versions(fleet.urls[1]) == ["r3"]
    assert versions(fleet.urls[2]) == ["r1"]
    for url in fleet.urls[3:]:
        assert versions(url) == [] and upgrade_runs(url) == []

    status = fleet.run("--format", "json", "fleet", "status", str(path))
    assert status.returncode == 3, describe(status)
    report = json.loads(status.stdout)
    assert report["state"] == "FAILED"
    radius = report["blast_radius"]
    assert radius["failed"] == ["db02"]
    assert radius["failed_share"] == pytest.approx(3 / sum(range(1, 13)))
    assert radius["upgraded"] == ["db00", "db01"]
    text = fleet.run("fleet", "status", str(path))
    assert "blast radius" in text.stdout and "db02" in text.stdout and "fleet rollback" in text.stdout

    again = fleet.run("fleet", "upgrade", str(path), "--batches", "1,25%,100%")
    assert again.returncode == 3, describe(again)
    assert "circuit breaker open" in again.stdout
    forced = fleet.run("fleet", "upgrade", str(path), "--force", "--confirm-risk", "nope")
    assert forced.returncode == 3 and "blast radius" in forced.stderr, describe(forced)

    back = fleet.run("fleet", "rollback", str(path), "--all-upgraded", "--yes")
    assert back.returncode == 0, describe(back)
    for url in fleet.urls:
        assert versions(url) == [], url
    healthy = fleet.run("--format", "json", "fleet", "status", str(path))
    assert healthy.returncode == 0, describe(healthy)
    assert json.loads(healthy.stdout)["state"] == "HEALTHY"
    assert all(t["state"] == "HEALTHY" for t in json.loads(healthy.stdout)["targets"])

    fleet.assert_no_secret()


def _target_rows(fleet: Fleet) -> list[dict[str, Any]]:
    try:
        return fleet.control_rows("targets")
    except sa.exc.OperationalError:  # the coordinator is creating the file
        return []


def test_sigkill_mid_batch_leaves_the_fleet_unknown_until_rolled_back(fleet: Fleet) -> None:
    path = fleet.write(revisions(slow_s=3))
    proc = fleet.start("fleet", "upgrade", str(path), "--batches", "1,100%", "--parallel", "4")
    try:
        wait_for(lambda: sum(1 for r in _target_rows(fleet) if r["batch"] == 2 and r["status"] == "running") >= 2,
                 timeout=60, message="batch 2 never started")
        wait_for(lambda: sleeping(fleet.urls[1:]), timeout=60, message="no target of batch 2 reached r2's sleep")
        proc.send_signal(signal.SIGKILL)
    finally:
        fleet.finish(proc)

    status = fleet.run("--format", "json", "fleet", "status", str(path))
    assert status.returncode == 3, describe(status)
    assert json.loads(status.stdout)["state"] == "UNKNOWN"
    refused = fleet.run("fleet", "upgrade", str(path))
    assert refused.returncode == 3 and "never finished" in refused.stdout, describe(refused)
    not_typed = fleet.run("fleet", "resolve", str(path), "--reason", "checked")
    assert not_typed.returncode == 3, describe(not_typed)

    # The rollback waits for targets still finishing in orphaned workers, then returns every one.
    back = fleet.run("fleet", "rollback", str(path), "--all-upgraded", "--yes")
    assert back.returncode == 0, describe(back)
    for url in fleet.urls:
        assert versions(url) == [], url
    healthy = fleet.run("--format", "json", "fleet", "status", str(path))
    assert healthy.returncode == 0 and json.loads(healthy.stdout)["state"] == "HEALTHY", describe(healthy)
    fleet.assert_no_secret()


def test_two_fleet_upgrades_at_once_one_runs_the_other_exits_4(fleet: Fleet) -> None:
    path = fleet.write(revisions(slow_s=1.5))
    first = fleet.start("fleet", "upgrade", str(path), "--batches", "1,100%", "--parallel", "4")
    second = fleet.start("fleet", "upgrade", str(path), "--batches", "1,100%", "--parallel", "4")
    codes = sorted([fleet.finish(first)[0], fleet.finish(second)[0]])
    assert codes == [0, 4], fleet.outputs[-4:]
    assert any("busy: another dbguard fleet run holds the fleet lock" in o for o in fleet.outputs)
    for url in fleet.urls:
        assert versions(url) == ["r3"] and len(upgrade_runs(url)) == 1
    # Nothing to resolve while HEALTHY.
    nothing = fleet.run("fleet", "resolve", str(path), "--reason", "x", "--confirm-risk", "CONFIRM_RISK")
    assert nothing.returncode == 3 and "nothing to resolve" in nothing.stdout, describe(nothing)


def test_distributed_batch_nobody_claims_fails_after_the_worker_timeout(fleet: Fleet) -> None:
    fleet.control_url = create_database(fleet.pg_server, "postgresql")
    path = fleet.write(revisions(slow_s=3, slow_only=fleet.database(0)), control_url=fleet.control_url)
    control = fleet.env()["FLEET_CONTROL_URL"]

    # No worker at all: the published batch is given up after the timeout, never waited for forever.
    lonely = fleet.run("--format", "json", "fleet", "upgrade", str(path), "--distributed", "--batches", "1,100%",
                       "--worker-timeout", "2", timeout=60)
    assert lonely.returncode == 3, describe(lonely)
    result = json.loads(lonely.stdout)
    assert result["status"] == "refused"
    assert "batch 1: no worker claimed a target of it in 2 s" in result["message"]
    assert "start `dbguard fleet worker --control-url postgresql" in result["message"]
    assert [t["status"] for t in result["targets"]] == ["skipped"] * len(fleet.urls)
    for url in fleet.urls:
        assert versions(url) == [] and upgrade_runs(url) == [], url
    # Nothing ran: the fleet's breaker stays closed.
    status = fleet.run("--format", "json", "fleet", "status", str(path))
    assert status.returncode == 0 and json.loads(status.stdout)["state"] == "HEALTHY", describe(status)

    # A claim that is alive is waited for however long its target takes (db00 sleeps 3 s > 2 s).
    worker = fleet.start("fleet", "worker", "--control-url", control, "--once", "--poll", "0.05", str(path))
    try:
        served = fleet.run("--format", "json", "fleet", "upgrade", str(path), "--distributed", "--batches",
                           "1,100%", "--worker-timeout", "2", timeout=120)
        assert served.returncode == 0, describe(served)
    finally:
        if worker.poll() is None:
            worker.terminate()
        fleet.finish(worker)
    for url in fleet.urls:
        assert versions(url) == ["r3"], url
    fleet.assert_no_secret()


def test_workers_and_coordinator_create_the_control_tables_at_once(pg_server_url: str) -> None:
    # Workers and the coordinator start together on a fresh control database: every one of them
    # creates the tables (concurrent CREATE TABLEs used to fail in all sessions but one).
    from dbguard.db.fleet_control import Control

    url = create_database(pg_server_url, "postgresql")
    try:
        controls = [Control(url) for _ in range(4)]
        barrier = threading.Barrier(len(controls))
        errors: list[BaseException] = []

        def create(control: Control) -> None:
            barrier.wait()
            try:
                control.ensure_tables()
            except BaseException as exc:  # noqa: BLE001 - collected for the assertion
                errors.append(exc)

        threads = [threading.Thread(target=create, args=(c,)) for c in controls]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        for control in controls:
            assert control._tables_exist()
            control.close()
        assert errors == []
    finally:
        drop_database(url)


def test_workers_take_nothing_of_a_dead_run_that_still_says_running(pg_server_url: str) -> None:
    # Run 1's coordinator died mid-batch (it still says running, a target pending in an open batch);
    # another session holds the fleet lock now (a fleet rollback, or a forced upgrade: run 2).
    from dbguard.db.fleet_control import Control, utcnow
    from dbguard.fleet.worker import run_worker

    url = create_database(pg_server_url, "postgresql")
    try:
        with Control(url) as control, Control(url) as other:
            control.ensure_tables()

            def published(lock_session: str) -> int:
                run_id = control.insert_run(fleet="f", intent="upgrade", status="running", started_at=utcnow(),
                                            lock_session=lock_session)
                control.insert_batch(run_id=run_id, number=1, size=1, status="open")
                control.insert_targets([{"run_id": run_id, "batch": 1, "position": 0, "target": "a",
                                         "status": "pending"}])
                return run_id

            dead = published("1")
            lock = other.lock("f")
            assert lock.try_acquire()
            # While only the dead run says running, a worker claims nothing of it.
            polls = iter(range(20))
            done = run_worker(url, None, once=False, poll_s=0.01, flags={}, progress=lambda event: None,
                              stop=lambda: next(polls, None) is None)
            assert done["claimed"] == 0
            assert {r["status"] for r in control.targets_of(dead)} == {"pending"}
            # The live run's claims come from that run only, never from the dead one's open batch.
            live = published(str(other.session_id))
            claim = control.claim("f", "w", live)
            assert claim is not None and claim["run_id"] == live
            control.release_claim(int(claim["id"]))
            assert control.claim("f", "w", live) is None
            assert {r["status"] for r in control.targets_of(dead)} == {"pending"}
            lock.release()
    finally:
        drop_database(url)


def _rollout_state(fleet: Fleet, procs: list[subprocess.Popen[str]]) -> str:
    """What a stuck distributed rollout looked like: the control rows, who had exited and how."""
    runs = [(r["id"], r["status"], r["error"]) for r in fleet.control_rows("runs")]
    batches = [(b["number"], b["status"], b["error"]) for b in fleet.control_rows("batches")]
    targets = [(t["target"], t["batch"], t["status"], t["worker"], t["error"]) for t in fleet.control_rows("targets")]
    exits = [(p.pid, p.poll()) for p in procs]
    return f"runs {runs}; batches {batches}; targets {targets}; processes (pid, exit) {exits}"


def test_three_workers_share_a_distributed_rollout(fleet: Fleet) -> None:
    fleet.control_url = create_database(fleet.pg_server, "postgresql")
    slow = 6  # in the third batch: its worker is killed mid-target
    path = fleet.write(revisions(slow_s=20, slow_only=fleet.database(slow)), control_url=fleet.control_url)
    control = fleet.env()["FLEET_CONTROL_URL"]
    workers = [fleet.start("fleet", "worker", "--control-url", control, "--once", "--poll", "0.05", str(path))
               for _ in range(3)]
    coordinator = fleet.start("fleet", "upgrade", str(path), "--distributed", "--batches", "1,25%,100%",
                              "--worker-timeout", "30")

    def slow_target_running() -> dict[str, Any] | None:
        if coordinator.poll() is not None:  # it gave up (or failed): say why at once
            raise AssertionError(f"the coordinator exited before the slow target started: "
                                 f"{_rollout_state(fleet, [coordinator, *workers])}")
        return next((r for r in fleet.control_rows("targets")
                     if r["target"] == f"db{slow:02d}" and r["status"] == "running"), None)

    try:
        row = wait_for(slow_target_running, timeout=90,
                       message=lambda: f"the slow target never started: {_rollout_state(fleet, [coordinator, *workers])}")
        pid = int(row["worker"].rsplit(":", 1)[1])
        victim = next(w for w in workers if w.pid == pid)
        wait_for(lambda: sleeping([fleet.urls[slow]]), timeout=60, message="the slow target never reached its sleep")
        victim.send_signal(signal.SIGKILL)
        code, out, err = fleet.finish(coordinator, timeout=120)
    finally:
        for proc in [coordinator, *workers]:
            if proc.poll() is None:
                proc.kill()
            fleet.finish(proc)
    assert code == 5, f"{out}\n{err}"

    targets = {r["target"]: r for r in fleet.control_rows("targets")}
    batches = {b["number"]: b for b in fleet.control_rows("batches")}
    assert targets[f"db{slow:02d}"]["status"] == "unknown"
    assert batches[1]["status"] == batches[2]["status"] == "verified"
    assert fleet.control_rows("runs")[-1]["status"] == "failed"
    # Three workers shared it.
    assert len({r["worker"] for r in targets.values() if r["worker"]}) >= 2
    # The barrier: nothing of batch k+1 started before batch k was verified.
    for k in (1, 2):
        later = [r["started_at"] for r in targets.values() if r["batch"] == k + 1 and r["started_at"]]
        assert later and min(later) >= batches[k]["verified_at"], (k, later, batches[k])
    # Exactly once: one upgrade run per started target, none for the others; the dead one is
    # UNKNOWN in its own ledger and never ran again.
    for i, url in enumerate(fleet.urls):
        name = f"db{i:02d}"
        runs = upgrade_runs(url)
        if targets[name]["status"] in ("succeeded", "unknown", "failed"):
            assert len(runs) == 1, (name, runs)
        else:
            assert targets[name]["status"] == "skipped" and runs == [], (name, runs)
    status = fleet.run("--format", "json", "fleet", "status", str(path))
    assert status.returncode == 3 and json.loads(status.stdout)["state"] == "FAILED", describe(status)
    dead = next(t for t in json.loads(status.stdout)["targets"] if t["name"] == f"db{slow:02d}")
    assert dead["state"] in ("UNKNOWN", "RUNNING")  # its migration session may outlive the worker briefly
    fleet.assert_no_secret()
