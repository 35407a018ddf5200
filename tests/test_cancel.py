"""``dbguard.api.cancel()``: a host application stops a guarded run from another thread, and the run
ends as on SIGINT: its statement cancelled on the server, the run recorded interrupted."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from dbguard import api
from dbguard.results import RunResult
from dbguard.settings import load_settings
from tests.dbs import backend_of
from tests.guardrun import connect, ledger, table_names, versions
from tests.projects import make_project, wait_for

_SLEEP = {"postgresql": "SELECT pg_sleep(60)", "mysql": "SELECT SLEEP(60)"}
_AFTER = ("r2", "op.create_table('after_cancel', sa.Column('id', sa.Integer, primary_key=True))",
          "op.drop_table('after_cancel')")


def _running(url: str, statement: str) -> bool:
    query = ("SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query = :q"
             if backend_of(url) == "postgresql" else
             "SELECT count(*) FROM information_schema.PROCESSLIST WHERE INFO = :q")
    with connect(url) as conn:
        return bool(conn.execute(sa.text(query), {"q": statement}).scalar())


def _upgrade_in_a_thread(ini: Path) -> tuple[threading.Thread, dict[str, Any]]:
    settings = load_settings({"config_path": str(ini)}, environ={})
    outcome: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: outcome.update(result=api.upgrade(settings, "head")))
    thread.start()
    return thread, outcome


def _assert_stopped_by_cancel(url: str, thread: threading.Thread, outcome: dict[str, Any]) -> RunResult:
    thread.join(timeout=120)
    assert not thread.is_alive(), "the run did not stop"
    result = outcome["result"]
    assert isinstance(result, RunResult)
    assert (result.status, result.exit_code, result.failed_step) == ("failed", 5, "r1"), result
    assert "interrupted by dbguard.api.cancel()" in (result.error or ""), result.error
    runs, _steps = ledger(url)
    assert (runs[-1]["status"], runs[-1]["error_class"]) == ("failed", "Cancelled")
    assert versions(url) == []
    assert "after_cancel" not in table_names(url)
    assert api.cancel() == 0  # nothing left in progress
    return result


@pytest.mark.integration
@pytest.mark.parametrize("url_fixture", ["pg_url", "mysql_url"])
def test_cancel_ends_the_statement_on_the_server_and_records_the_run(
        request: pytest.FixtureRequest, tmp_path: Path, url_fixture: str) -> None:
    url = request.getfixturevalue(url_fixture)
    sleep = _SLEEP[backend_of(url)]
    ini = make_project(tmp_path, url, [("r1", f"op.execute({sleep!r})", "pass"), _AFTER])
    thread, outcome = _upgrade_in_a_thread(ini)
    try:
        wait_for(lambda: _running(url, sleep), timeout=60, message=f"{sleep} never ran")
        assert api.cancel(threading.current_thread()) == 0  # no run on this thread
        assert api.cancel(thread) == 1
    finally:
        api.cancel()
        thread.join(timeout=120)
    result = _assert_stopped_by_cancel(url, thread, outcome)
    assert "its statement ended on the server" in (result.error or ""), result.error
    assert not _running(url, sleep)


def test_cancel_stops_a_migration_at_its_next_statement(tmp_path: Path) -> None:
    """SQLite has no server to cancel on: a migration issuing statement after statement stops at the next."""
    url = f"sqlite:///{tmp_path / 'app.db'}"
    started = tmp_path / "started"
    body = (f"import pathlib\npathlib.Path({str(started)!r}).touch()\n"
            "for _ in range(10_000_000):\n    op.execute('SELECT 1')")
    ini = make_project(tmp_path, url, [("r1", body, "pass"), _AFTER])
    thread, outcome = _upgrade_in_a_thread(ini)
    try:
        wait_for(started.exists, timeout=60, message="the migration never started")
        assert api.cancel() == 1
    finally:
        api.cancel()
        thread.join(timeout=120)
    _assert_stopped_by_cancel(url, thread, outcome)


def test_cancel_while_waiting_for_the_run_lock_records_nothing(tmp_path: Path) -> None:
    """A run asked to stop before its run row exists raises Cancelled in its thread and leaves no row."""
    from dbguard.db.runlock import FileRunLock
    from dbguard.errors import Cancelled

    url = f"sqlite:///{tmp_path / 'app.db'}"
    ini = make_project(tmp_path, url, [_AFTER])
    settings = load_settings({"config_path": str(ini), "wait_lock_s": 120}, environ={})
    assert api.upgrade(settings, "base").exit_code == 0  # the ledger exists, nothing applied
    before = ledger(url)[0]
    other_run = FileRunLock(Path(f"{tmp_path / 'app.db'}.dbguard.lock"))
    assert other_run.try_acquire()
    outcome: dict[str, Any] = {}

    def upgrade() -> None:
        try:
            outcome["result"] = api.upgrade(settings, "head")
        except BaseException as exc:  # noqa: BLE001 - the test looks at what was raised
            outcome["raised"] = exc

    thread = threading.Thread(target=upgrade)
    thread.start()
    try:
        wait_for(lambda: api.cancel(thread) == 1, timeout=60, message="the run never started waiting")
        thread.join(timeout=60)
    finally:
        other_run.release()
        api.cancel()
        thread.join(timeout=60)
    assert isinstance(outcome.get("raised"), Cancelled), outcome
    assert ledger(url)[0] == before and versions(url) == []
