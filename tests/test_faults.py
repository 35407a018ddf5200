"""Faults injected into real dbguard processes on real PostgreSQL, MariaDB and SQLite, one trial per
fault and engine at the point where the fault matters most (benchmarks/faults.py runs the whole
fault x point x engine matrix and a randomized soak).

Each point is reached deterministically: the process under test stops itself there
(``DBGUARD_TEST_PAUSE_AT``, see dbguard/faultpoints.py) or the test waits until the server shows
its statement running; then the fault is delivered. After recovery one invariant must hold:
whenever a command exited 0 or status says HEALTHY, alembic_version equals what the ledger recorded,
the live schema equals the schema the target had at those revisions, and no statement of any run
still runs on the server.

Not applicable, and why: a takeover needs a run lock held by a process that cannot be seen (see
test_zombie.py, which makes the run row say another host); connection faults need a server (see the
proxy tests).
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest

from dbguard import api
from tests.dbs import backend_of
from tests.faultkit import (
    ALL,
    R1,
    SERVERS,
    finish,
    invariant,
    project,
    recover,
    running_sleep,
    settings,
    start_ignoring_sigint,
    stopped,
    user_tables,
)
from tests.guardrun import connect, ledger, start_dbguard, versions
from tests.projects import make_project, wait_for

pytestmark = pytest.mark.integration



# SIGKILL mid-statement: the statement must not outlive its run -------------------------------------------


@pytest.mark.parametrize("fixture", SERVERS)
def test_sigkill_mid_statement_leaves_no_statement_running_after_the_rollback(
        fixture: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    url = request.getfixturevalue(fixture)
    seen = tmp_path / "seen" if backend_of(url) == "postgresql" else None
    ini, at = project(tmp_path, url, seen)
    proc = start_dbguard(ini, url, "upgrade", "head")
    try:
        wait_for(lambda: running_sleep(url), timeout=60, message="r2's statement never ran")
        proc.kill()
        proc.wait(timeout=30)
        if seen is not None:
            # PostgreSQL: the session looks for its dead client this often, and ends the statement.
            assert seen.read_text() == "500ms"
        invariant(ini, url, at)
        assert api.status(settings(ini, url)).state == "UNKNOWN"
        done = recover(ini, url)
        if backend_of(url) == "mysql":  # MariaDB runs a dead client's statement on: the rollback ended it
            (orphan,) = [o for o in done.ended_sessions if o.code == "orphan"]
            # Cancelled first (the dead client's session may then go by itself), confirmed either way.
            assert orphan.action.startswith("cancel") and orphan.outcome in ("cancelled", "terminated"), orphan
            with connect(url) as conn:
                audit = conn.exec_driver_sql("SELECT action, outcome FROM dbguard_kills ORDER BY id").all()
            # Each signal audited before it was sent, its outcome written once the server confirmed it.
            assert [a[0] for a in audit] == orphan.action.replace("cancel_then_terminate", "cancel terminate").split()
            assert {a[1] for a in audit} == {orphan.outcome}
        invariant(ini, url, at)
        steps = ledger(url)[1]
        assert "running" not in {s["status"] for s in steps}
    finally:
        if proc.poll() is None:
            proc.kill()


# SIGTERM and SIGINT: recorded failed with the step, the statement cancelled first ------------------------


@pytest.mark.parametrize("fixture", SERVERS)
def test_sigterm_mid_statement_cancels_it_and_records_the_run_failed(
        fixture: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    url = request.getfixturevalue(fixture)
    ini, at = project(tmp_path, url)
    proc = start_dbguard(ini, url, "upgrade", "head")
    wait_for(lambda: running_sleep(url), timeout=60, message="r2's statement never ran")
    proc.send_signal(signal.SIGTERM)
    code, output = finish(proc)
    assert code == 5, output
    assert "interrupted by SIGTERM; its statement ended on the server" in output
    assert not running_sleep(url)
    run = ledger(url)[0][-1]
    assert run["status"] == "failed" and run["failed_step"] == "r2"
    invariant(ini, url, at)
    recover(ini, url)
    invariant(ini, url, at)


@pytest.mark.parametrize("fixture", ALL)
def test_sigint_between_two_operations_is_recorded_failed(fixture: str, request: pytest.FixtureRequest,
                                                          tmp_path: Path) -> None:
    url = request.getfixturevalue(fixture)
    ini, at = project(tmp_path, url, sleep=False)
    # Before r2's second statement: c is live on MariaDB and SQLite, in an open transaction on PostgreSQL.
    proc = start_ignoring_sigint(ini, url, "upgrade", "head", env={"DBGUARD_TEST_PAUSE_AT": "statement:r2#2"})
    try:
        wait_for(lambda: stopped(proc.pid), timeout=60, message="the run never reached the point")
        proc.send_signal(signal.SIGINT)
        proc.send_signal(signal.SIGCONT)
        code, output = finish(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert code == 5, output
    assert "interrupted by SIGINT" in output
    run = ledger(url)[0][-1]
    assert run["status"] == "failed" and run["failed_step"] == "r2"
    invariant(ini, url, at)
    recover(ini, url)
    invariant(ini, url, at)


@pytest.mark.parametrize("fixture", ALL)
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_while_env_py_imports_the_project_leaves_the_breaker_closed(
        fixture: str, sig: signal.Signals, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """Ctrl-C while env.py is still importing the project (seconds for prefect or zenml), before any
    revision began: nothing was migrated, the run is recorded refused, the command exits 130 as
    commands that change nothing do, and the next upgrade is not refused."""
    url = request.getfixturevalue(fixture)
    ini, at = project(tmp_path, url, sleep=False)
    marker = tmp_path / "env_py_importing"
    env_py = ini.parent / "migrations" / "env.py"
    stock = env_py.read_text()
    # Online only: the risk plan's offline render runs env.py too, before the run.
    env_py.write_text("import os, pathlib, time\nfrom alembic import context as _context\n"
                      f"if os.environ.get('PAUSE_ENV_PY') and not _context.is_offline_mode():\n"
                      f"    pathlib.Path({str(marker)!r}).write_text('x')\n    time.sleep(60)\n" + stock)
    proc = start_dbguard(ini, url, "upgrade", "head", env={"PAUSE_ENV_PY": "1"})
    try:
        wait_for(marker.exists, timeout=60, message="env.py never ran")
        proc.send_signal(sig)
        code, output = finish(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert code == 130, output
    assert "Traceback" not in output, output
    run = ledger(url)[0][-1]
    assert run["status"] == "refused" and "before any revision ran" in run["error"], run
    invariant(ini, url, at)
    assert api.status(settings(ini, url)).state == "HEALTHY"
    assert api.upgrade(settings(ini, url), "head").exit_code == 0


# SIGSTOP: a stopped deploy is alive; the rollback does not take it over ----------------------------------


@pytest.mark.parametrize("fixture", ALL)
def test_a_stopped_deploy_is_not_taken_over_and_finishes_when_resumed(fixture: str, request: pytest.FixtureRequest,
                                                                      tmp_path: Path) -> None:
    url = request.getfixturevalue(fixture)
    ini, at = project(tmp_path, url, sleep=False)
    env = {"DBGUARD_TEST_PAUSE_AT": "before-step:r2", "DBGUARD_ZOMBIE_AFTER_S": "0.1"}
    proc = start_dbguard(ini, url, "upgrade", "head", env=env)
    try:
        wait_for(lambda: stopped(proc.pid), timeout=60, message="the run never reached the point")
        busy = api.rollback(settings(ini, url, zombie_after_s=0.1), confirm=lambda prompt: prompt.token)
        assert busy.exit_code == 4, busy
        assert f"its process {proc.pid} on" in busy.message and "state T, stopped" in busy.message
        proc.send_signal(signal.SIGCONT)
        code, output = finish(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert code == 0, output
    assert versions(url) == ["r2"]
    invariant(ini, url, at)


# sys.exit() and os._exit() inside a migration -----------------------------------------------------------------


def _exiting_project(tmp_path: Path, url: str, call: str) -> tuple[Path, dict[str, dict[str, Any]]]:
    """r2 creates a table, then exits the process: sys.exit() in any mode (the plan renders r2 offline
    first, and must survive it), os._exit() only in the real run (nothing survives it)."""
    guard = "if not context.is_offline_mode(): " if "_exit" in call else ""
    body = ('op.create_table("x", sa.Column("id", sa.Integer, primary_key=True))\n'
            f"import os, sys\nfrom alembic import context\n{guard}{call}")
    ini = make_project(tmp_path, url, [R1, ("r2", body, 'op.drop_table("x")')])
    assert api.upgrade(settings(ini, url), "r1").exit_code == 0
    return ini, {"r1": user_tables(url)}


@pytest.mark.parametrize("fixture", ALL)
def test_sys_exit_in_a_migration_is_a_failed_run(fixture: str, request: pytest.FixtureRequest,
                                                 tmp_path: Path) -> None:
    url = request.getfixturevalue(fixture)
    ini, at = _exiting_project(tmp_path, url, "sys.exit(0)")
    proc = start_dbguard(ini, url, "upgrade", "head")
    code, output = finish(proc)
    assert code == 5, output
    assert "the migration called sys.exit(0)" in output
    run = ledger(url)[0][-1]
    assert run["status"] == "failed" and run["failed_step"] == "r2"
    recover(ini, url)
    invariant(ini, url, at)


@pytest.mark.parametrize("fixture", [pytest.param("sqlite_url", id="sqlite"), pytest.param("mysql_url", id="mysql")])
def test_os_exit_in_a_migration_is_unknown_and_its_step_is_named(fixture: str, request: pytest.FixtureRequest,
                                                                 tmp_path: Path) -> None:
    url = request.getfixturevalue(fixture)
    ini, at = _exiting_project(tmp_path, url, "os._exit(3)")
    code, output = finish(start_dbguard(ini, url, "upgrade", "head"))
    assert code == 3, output
    status = api.status(settings(ini, url))
    assert status.state == "UNKNOWN" and status.last_run.failed_step == "r2", status
    recover(ini, url)
    invariant(ini, url, at)
    assert "running" not in {s["status"] for s in ledger(url)[1]}


# SIGKILL during a ledger write ------------------------------------------------------------------------------------


@pytest.mark.parametrize("fixture", [pytest.param("pg_url", id="postgresql")])
def test_sigkill_during_a_ledger_write(fixture: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    url = request.getfixturevalue(fixture)
    ini, at = project(tmp_path, url, sleep=False)
    proc = start_dbguard(ini, url, "upgrade", "head", env={"DBGUARD_TEST_PAUSE_AT": "ledger-write:step-end"})
    try:
        wait_for(lambda: stopped(proc.pid), timeout=60, message="the run never reached the point")
        proc.kill()
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert api.status(settings(ini, url)).state == "UNKNOWN"
    invariant(ini, url, at)
    recover(ini, url)
    invariant(ini, url, at)


# A connection that stops answering mid-statement ---------------------------------------------------------


@pytest.mark.parametrize("fixture", [pytest.param("pg_url", id="postgresql")])
def test_a_frozen_connection_ends_in_bounded_time_and_the_rollback_ends_its_orphan(
        fixture: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """A proxy that keeps every socket open and forwards nothing (the kernel acknowledges, so TCP
    keepalives see nothing wrong): the statement's deadline (statement_timeout_ms + frozen_margin_s)
    shuts its socket, dbguard's own statements have theirs, and the process ends on its own. The run is
    recorded FAILED or left UNKNOWN; a rollback on a working path ends what the server still holds."""
    from tests.tcpproxy import Proxy

    url = request.getfixturevalue(fixture)
    ini, at = project(tmp_path, url)
    proxy = Proxy(url)
    env = {"DBGUARD_STATEMENT_TIMEOUT_MS": "2000", "DBGUARD_FROZEN_MARGIN_S": "1",
           "DBGUARD_LEDGER_LOCK_TIMEOUT_MS": "1000", "DBGUARD_CONNECT_TIMEOUT_S": "2"}
    proc = start_dbguard(ini, proxy.url(url), "upgrade", "head", env=env)
    try:
        wait_for(lambda: running_sleep(url), timeout=60, message="r2's statement never ran")
        proxy.freeze()
        code, output = finish(proc)  # the harness's timeout guards a hang; the deadlines end it
    finally:
        proxy.close()
        if proc.poll() is None:
            proc.kill()
    assert code in (2, 5), output
    run = ledger(url)[0][-1]
    assert run["status"] in ("running", "failed"), run
    if run["status"] == "failed":
        assert "no answer from the server within 3 s" in run["error"]
    recover(ini, url)
    invariant(ini, url, at)


@pytest.mark.integration
def test_a_connection_that_freezes_between_statements_cannot_hold_the_commit_or_rollback(
        pg_url: str, tmp_path: Path) -> None:
    """Frozen while the run waits before its step: what hangs then is no statement but the ROLLBACK or
    COMMIT env.py's connection sends on its way out (no execute event); it has the same deadline."""
    from tests.tcpproxy import Proxy

    ini, at = project(tmp_path, pg_url, sleep=False)
    proxy = Proxy(pg_url)
    env = {"DBGUARD_STATEMENT_TIMEOUT_MS": "2000", "DBGUARD_FROZEN_MARGIN_S": "1", "DBGUARD_TEST_PAUSE_AT":
           "before-step:r2", "DBGUARD_LEDGER_LOCK_TIMEOUT_MS": "1000", "DBGUARD_CONNECT_TIMEOUT_S": "2"}
    proc = start_dbguard(ini, proxy.url(pg_url), "upgrade", "head", env=env)
    try:
        wait_for(lambda: stopped(proc.pid), timeout=60, message="the run never reached the point")
        proxy.freeze()
        proc.send_signal(signal.SIGCONT)
        code, output = finish(proc)  # the harness's timeout guards a hang; the deadlines end it
    finally:
        proxy.close()
        if proc.poll() is None:
            proc.kill()
    assert code == 2, output
    assert "lost the database mid-run (no answer from the server within 3 s (" in output, output
    assert "Traceback" not in output and "PendingRollbackError" not in output
    recover(ini, pg_url)
    invariant(ini, pg_url, at)
