"""Notifications: which outcome raises which event (pure, no database), and real runs on PostgreSQL
and a real ``locks kill`` on MariaDB POSTing to a local HTTP server; an endpoint that fails or hangs
is a warning of the result, never a change of its exit code."""

from __future__ import annotations

import http.server
import json
import socket
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dbguard import api
from dbguard.core import notify as decide
from dbguard.core.breaker import CONFIRM_TOKEN
from dbguard.errors import ExitCode
from dbguard.settings import load_settings
from tests.guardrun import with_credentials
from tests.lockscene import Scene, execute, write_ini
from tests.projects import make_project, wait_for

# --- the decision, without a database ------------------------------------------------------------


def _events(intent: str, status: str, prior: str | None = None, drift: str | None = None, ended: int = 0):
    return decide.run_events(decide.RunFacts(intent=intent, status=status, prior_state=prior, drift=drift,
                                             ended_sessions=ended))


@pytest.mark.parametrize(("intent", "status", "prior", "expected"), [
    ("upgrade", "failed", "HEALTHY", ("run_failed",)),
    ("upgrade", "refused", "FAILED", ("breaker_open",)),
    ("upgrade", "refused", "UNKNOWN", ("breaker_open",)),
    ("upgrade", "refused", "HEALTHY", ()),  # a risk or drift policy said no: the answer, not news
    ("upgrade", "succeeded", "HEALTHY", ()),
    ("upgrade", "succeeded", "FAILED", ("run_succeeded_after_failure",)),  # forced past the breaker
    ("rollback", "rolled_back", "FAILED", ("run_succeeded_after_failure",)),
    ("rollback", "rolled_back", "HEALTHY", ()),
    ("rollback", "failed", "UNKNOWN", ("run_failed",)),
    ("resolve", "resolved", None, ("run_succeeded_after_failure",)),
    ("upgrade", "busy", None, ()),
])
def test_which_event_a_run_raises(intent, status, prior, expected) -> None:
    assert _events(intent, status, prior) == expected


def test_drift_and_ended_sessions_come_before_the_outcome_and_the_rollback_lane_drift_is_not_news() -> None:
    assert _events("upgrade", "failed", "HEALTHY", drift="table t: column c") == ("drift_found", "run_failed")
    assert _events("downgrade", "succeeded", "HEALTHY", drift="x") == ("drift_found",)
    assert _events("rollback", "rolled_back", "FAILED", drift="leftovers", ended=2) == (
        "sessions_ended", "run_succeeded_after_failure")
    assert decide.kill_events(["terminated", "refused"]) == ("sessions_ended",)
    assert decide.kill_events(["refused", "not ended: confirmation missing"]) == ()
    assert decide.fleet_events({"event": "fleet_failed", "status": "failed"}) == ("fleet_batch_failed",)
    assert decide.fleet_events({"event": "fleet_failed", "status": "refused"}) == ()
    assert decide.fleet_events({"event": "batch_verified"}) == ()


def test_retries_are_for_no_answer_and_server_errors_and_the_budget_is_bounded() -> None:
    assert decide.retryable(None) and decide.retryable(500) and decide.retryable(503)
    assert not decide.retryable(400) and not decide.retryable(404)
    assert decide.budget_s(0.5, 2) == pytest.approx(0.5 * 3 + 0.2 + 0.4)
    assert decide.budget_s(5, 0) == 5


def test_slack_body_has_text_and_blocks() -> None:
    event = decide.body("run_failed", at="2026-01-01T00:00:00+00:00", version="0.1.0",
                        database="postgresql://app:***@db/app", run_id=7, status="failed", message="boom",
                        revisions=["r2"])
    slack = decide.slack_body(event)
    assert "run failed" in slack["text"] and "postgresql://app:***@db/app" in slack["text"] and "boom" in slack["text"]
    assert slack["blocks"][0]["type"] == "section" and "run_id: 7" in slack["blocks"][1]["elements"][0]["text"]


def test_settings_take_a_list_of_urls_as_the_other_list_settings_do(tmp_path: Path) -> None:
    env = load_settings({}, environ={"DBGUARD_NOTIFY_URL": "http://a.example/x, https://b.example/y"}, cwd=tmp_path)
    assert env.notify_url == ("http://a.example/x", "https://b.example/y") and env.notify_format == "json"
    (tmp_path / "pyproject.toml").write_text('[tool.dbguard]\nnotify_url = ["https://c.example/z"]\n'
                                             'notify_format = "slack"\nnotify_timeout_s = 1.5\n')
    toml = load_settings({}, environ={}, cwd=tmp_path)
    assert (toml.notify_url, toml.notify_format, toml.notify_timeout_s) == (("https://c.example/z",), "slack", 1.5)
    # A wrong one never blocks a command (least of all the rollback lane): it is a warning when sending.
    from dbguard import notify

    xml = load_settings({"notify_format": "xml", "notify_url": "http://a.example/x"}, environ={}, cwd=tmp_path)
    (said,) = notify.announce(xml, lambda: [{"event": "run_failed"}])
    assert said.startswith("notifications not sent: notify_format must be json or slack, got 'xml'; recorded in ")
    ftp = load_settings({"notify_url": "ftp://user:Secret123@host/x"}, environ={}, cwd=tmp_path)
    (said,) = notify.announce(ftp, lambda: [{"event": "run_failed"}])
    assert "http:// or https://" in said and "Secret123" not in said


# --- a local endpoint -----------------------------------------------------------------------------


class Endpoint:
    """An HTTP server on 127.0.0.1 that records every POST and answers with ``status``."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.bodies: list[dict[str, Any]] = []
        received = self.bodies
        endpoint = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                received.append(json.loads(self.rfile.read(length)))
                self.send_response(endpoint.status)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/T0/B0/webhook-secret-path"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def events(self) -> list[str]:
        return [b.get("event", "slack") for b in self.bodies]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def endpoint() -> Iterator[Endpoint]:
    e = Endpoint()
    try:
        yield e
    finally:
        e.close()


@pytest.fixture
def hanging_url() -> Iterator[str]:
    """A server that accepts connections (the kernel does, from its backlog) and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/hook"
    finally:
        sock.close()


def _failing_project(tmp_path: Path, url: str, canary: str) -> Path:
    r1 = ("r1", 'op.create_table("t", sa.Column("id", sa.Integer, primary_key=True))', 'op.drop_table("t")')
    r2 = ("r2", f'raise RuntimeError("the migration broke, password {canary}")', "pass")
    return make_project(tmp_path, url, [r1, r2])


def _settings(ini: Path, url: str, **more: Any):
    return load_settings({"config_path": str(ini), "url": url, **more}, environ={})


# --- real runs ------------------------------------------------------------------------------------


def test_failed_run_then_open_breaker_then_rollback_notify_masked(pg_url: str, tmp_path: Path,
                                                                   endpoint: Endpoint) -> None:
    canary = f"Canary{uuid.uuid4().hex[:12]}"
    secret_url = with_credentials(pg_url, password=canary)  # the test server trusts any password
    ini = _failing_project(tmp_path, secret_url, canary)
    settings = _settings(ini, secret_url, notify_url=endpoint.url)

    failed = api.upgrade(settings)
    assert failed.exit_code == ExitCode.RUN_FAILED and not failed.warnings
    wait_for(lambda: endpoint.events() == ["run_failed"], message=lambda: str(endpoint.events()))
    body = endpoint.bodies[0]
    assert body["run_id"] == failed.run_id and body["status"] == "failed" and body["intent"] == "upgrade"
    assert body["dbguard_version"] and body["at"] and body["prior_state"] == "HEALTHY"
    assert body["failed_step"] == "r2" and body["to_revision"] == "r2" and body["revisions"] == ["r2"]
    assert "***" in body["database"] and "the migration broke" in body["error"]

    refused = api.upgrade(settings)
    assert refused.exit_code == ExitCode.REFUSED
    wait_for(lambda: endpoint.events() == ["run_failed", "breaker_open"], message=lambda: str(endpoint.events()))
    assert endpoint.bodies[1]["prior_state"] == "FAILED" and "circuit breaker open" in endpoint.bodies[1]["message"]

    back = api.rollback(settings, confirm=lambda prompt: "yes")
    assert back.exit_code == ExitCode.OK, back.message
    wait_for(lambda: endpoint.events()[-1:] == ["run_succeeded_after_failure"], message=lambda: str(endpoint.events()))
    assert endpoint.bodies[-1]["run_id"] == back.run_id and endpoint.bodies[-1]["status"] == "succeeded"
    # No body carries the URL's password, in any form.
    assert canary not in json.dumps(endpoint.bodies) and canary.lower() not in json.dumps(endpoint.bodies).lower()


def test_slack_format(pg_url: str, tmp_path: Path, endpoint: Endpoint) -> None:
    ini = _failing_project(tmp_path, pg_url, "nothing-secret")
    result = api.upgrade(_settings(ini, pg_url, notify_url=endpoint.url, notify_format="slack"))
    assert result.exit_code == ExitCode.RUN_FAILED
    wait_for(lambda: endpoint.bodies, message="no POST")
    (slack,) = endpoint.bodies
    assert set(slack) == {"text", "blocks"} and "run failed" in slack["text"] and "the migration broke" in slack["text"]


def test_a_hanging_endpoint_is_a_warning_after_its_timeout_and_the_exit_code_stays(
        pg_url: str, tmp_path: Path, hanging_url: str) -> None:
    ini = _failing_project(tmp_path, pg_url, "nothing-secret")
    # Its own record file: every test of this process shares the default one.
    audit = str(tmp_path / "state" / "kills.jsonl")
    result = api.upgrade(_settings(ini, pg_url, notify_url=hanging_url, notify_timeout_s=0.5, notify_retries=1,
                                   audit_file=audit))
    assert result.exit_code == ExitCode.RUN_FAILED and result.status == "failed"
    (warning,) = result.warnings
    assert warning.startswith("notification run_failed to http://127.0.0.1:") and "not sent" in warning
    assert "no answer within 0.5 s (2 attempts)" in warning and "/hook" not in warning
    # Recorded where it can be found once the terminal is gone.
    from dbguard import notify

    where = notify.record_path(_settings(ini, pg_url, audit_file=audit))
    recorded = where.read_text().splitlines()
    assert len(recorded) == 1 and "no answer within 0.5 s" in json.loads(recorded[0])["failure"]
    assert warning.endswith(f"recorded in {where}")


def test_a_server_error_is_retried_a_bounded_number_of_times(pg_url: str, tmp_path: Path,
                                                             endpoint: Endpoint) -> None:
    endpoint.status = 500
    ini = _failing_project(tmp_path, pg_url, "nothing-secret")
    result = api.upgrade(_settings(ini, pg_url, notify_url=endpoint.url, notify_retries=2))
    assert result.exit_code == ExitCode.RUN_FAILED
    assert len(endpoint.bodies) == 3 and set(endpoint.events()) == {"run_failed"}
    (warning,) = result.warnings
    assert "HTTP 500 (3 attempts)" in warning and "webhook-secret-path" not in warning


def test_locks_kill_on_mariadb_sends_sessions_ended(mysql_url: str, tmp_path: Path, endpoint: Endpoint) -> None:
    scene = Scene(mysql_url)
    try:
        execute(scene.admin, "CREATE TABLE t (id INT PRIMARY KEY) ENGINE=InnoDB")
        a, _x, _b, x_job, b_job = scene.chain()
        report = api.locks_kill(_settings(write_ini(tmp_path), mysql_url, notify_url=endpoint.url), roots=True,
                                confirm=lambda prompt: CONFIRM_TOKEN)
        x_job.join(10)
        b_job.join(10)
        assert report.exit_code == ExitCode.OK and not report.warnings
        wait_for(lambda: endpoint.events() == ["sessions_ended"], message=lambda: str(endpoint.events()))
        (body,) = endpoint.bodies
        assert [s["session_id"] for s in body["sessions"]] == [str(a.thread_id())]
        assert body["sessions"][0]["outcome"] == "terminated" and body["selection"]
    finally:
        scene.close()


def test_a_failed_fleet_batch_sends_fleet_batch_failed(monkeypatch: pytest.MonkeyPatch, endpoint: Endpoint) -> None:
    """The hook around the rollout (its batches are test_fleet.py's): the ``fleet_failed`` event it
    streams becomes ``fleet_batch_failed``, with the jsonl event's fields and the fleet's secrets masked."""
    from types import SimpleNamespace

    from dbguard.fleet import rollout
    from dbguard.results import FleetResult

    secret = f"Canary{uuid.uuid4().hex[:12]}"
    monkeypatch.setattr(api, "_fleet", lambda path, control: SimpleNamespace(worker_timeout_s=300, secrets=(secret,)))
    seen: list[dict[str, Any]] = []

    def fake_upgrade(spec: Any, options: Any, confirm: Any, progress: Any, pool: Any) -> FleetResult:
        progress({"event": "batch_started", "fleet": "shop", "run_id": 3, "batch": 2})
        progress({"event": "fleet_failed", "fleet": "shop", "run_id": 3, "at": "2026-01-01T00:00:00+00:00",
                  "status": "failed", "batch": 2, "error": f"db02: postgresql://app:{secret}@db02/app failed",
                  "blast_radius": {"failed": ["db02"]}, "rollback_command": "dbguard fleet rollback f.yaml"})
        return FleetResult(fleet="shop", intent="upgrade", status="failed", exit_code=ExitCode.RUN_FAILED,
                           message="batch 2 failed", run_id=3)

    monkeypatch.setattr(rollout, "upgrade", fake_upgrade)
    monkeypatch.setenv("DBGUARD_NOTIFY_URL", endpoint.url)
    result = api.fleet_upgrade("fleet.yaml", "head", progress=seen.append)
    assert result.exit_code == ExitCode.RUN_FAILED and not result.warnings
    assert [e["event"] for e in seen] == ["batch_started", "fleet_failed"]  # the caller's stream is untouched
    (body,) = endpoint.bodies
    assert body["event"] == "fleet_batch_failed" and body["fleet"] == "shop" and body["batch"] == 2
    assert body["run_id"] == 3 and body["status"] == "failed" and body["revisions"] == ["head"]
    assert body["blast_radius"] == {"failed": ["db02"]} and body["rollback_command"].startswith("dbguard fleet")
    assert secret not in json.dumps(body) and "***" in body["error"]


def test_nothing_about_a_notification_raises(tmp_path: Path) -> None:
    from dbguard import notify

    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nobody listens there: connection refused
    settings = load_settings({"notify_url": f"http://127.0.0.1:{port}/x", "notify_retries": 0}, environ={}, cwd=tmp_path)

    def broken() -> list[dict[str, Any]]:
        raise ValueError("a bug, password=Hunter2Secret")

    (bug,) = notify.announce(settings, broken)
    assert bug.startswith("notifications not sent: ValueError") and "Hunter2Secret" not in bug
    event = decide.body("run_failed", at="now", version="0", database=None, run_id=1, status="failed", message="m")
    (refused,) = notify.announce(settings, lambda: [event])
    assert refused.startswith(f"notification run_failed to http://127.0.0.1:{port} not sent:") and "(1 attempt)" in refused
    assert notify.announce(settings.replace(notify_url=()), broken) == ()
