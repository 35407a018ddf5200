"""``--format prometheus``: the text exposition format of ``status`` and ``fleet status``, parsed back
with prometheus_client's own parser. The renderer is pure (results in, text out); the integration
tests run real upgrades on PostgreSQL and MariaDB and read the metrics of a real process."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from dbguard import masking, output
from dbguard.core.state import RunRecord, StepRecord
from dbguard.errors import ExitCode
from dbguard.results import FleetBatchResult, FleetStatusReport, FleetTargetResult, StatusReport
from tests.guardrun import cli_env, describe, run_dbguard, with_credentials
from tests.projects import make_project

CANARY = "Canary-Pw-7f3a"
STATES = {"HEALTHY", "RUNNING", "FAILED", "UNKNOWN"}


def _families(text: str) -> dict[str, Any]:
    return {f.name: f for f in text_string_to_metric_families(text)}


def _value(families: dict[str, Any], name: str, **labels: str) -> float:
    family = families[name.removesuffix("_total")]
    found = [s.value for s in family.samples if all(s.labels.get(k) == v for k, v in labels.items())]
    assert len(found) == 1, (name, labels, family.samples)
    return float(found[0])


def _states(families: dict[str, Any], target: str) -> dict[str, float]:
    return {s.labels["state"]: s.value for s in families["dbguard_state"].samples if s.labels["target"] == target}


def _run(status: str = "succeeded", **more: Any) -> RunRecord:
    start = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
    times = {"started_at": start, "finished_at": start + dt.timedelta(seconds=1.5)}
    return RunRecord(id=7, intent="upgrade", status=status, to_revision="r2", **{**times, **more})


def _steps(*attempts: int) -> tuple[StepRecord, ...]:
    return tuple(StepRecord(run_id=7, revision=f"r{i}", direction="up", status="succeeded", attempts=n)
                 for i, n in enumerate(attempts, start=1))


# --- the renderer, without a database ---------------------------------------------------------------


def test_status_metrics_have_help_type_and_one_series_per_state() -> None:
    report = StatusReport(state="HEALTHY", exit_code=ExitCode.OK, revisions=("r2",),
                          last_run=_run(schema_check="verified", known_drift=("a", "b")),
                          masked_url="postgresql+psycopg://app:***@db.example:5433/orders",
                          last_run_steps=_steps(1, 3), sessions_ended=(("terminated", 2), ("cancelled", 1)))
    text = output.render(report, "prometheus")
    for line in text.splitlines():
        assert line.startswith(("# HELP dbguard_", "# TYPE dbguard_", "dbguard_")), line
    names = {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")}
    assert names == {line.split()[2] for line in text.splitlines() if line.startswith("# HELP")}
    families = _families(text)
    assert _states(families, "db.example:5433/orders") == {s: float(s == "HEALTHY") for s in STATES}
    labels = {"target": "db.example:5433/orders", "database": "orders"}
    assert _value(families, "dbguard_last_run_duration_seconds", **labels) == 1.5
    assert _value(families, "dbguard_last_run_steps", **labels) == 2
    assert _value(families, "dbguard_last_run_retries", **labels) == 2
    assert _value(families, "dbguard_last_run_drift_differences", **labels) == 2
    assert families["dbguard_sessions_ended"].type == "counter"
    assert _value(families, "dbguard_sessions_ended_total", outcome="terminated", **labels) == 2
    assert _value(families, "dbguard_sessions_ended_total", outcome="cancelled", **labels) == 1


def test_what_the_ledger_does_not_say_is_left_out_not_invented() -> None:
    # No run yet, an audit this user may not read, a run that predates schema checks.
    fresh = output.render(StatusReport(state="HEALTHY", exit_code=ExitCode.OK, revisions=(), last_run=None,
                                       masked_url="mysql+pymysql://root@127.0.0.1/test"), "prometheus")
    assert set(_families(fresh)) == {"dbguard_state"}
    old = output.render(StatusReport(state="FAILED", exit_code=ExitCode.REFUSED, revisions=(),
                                     last_run=_run("failed", finished_at=None), masked_url="sqlite:///app.db",
                                     last_run_steps=_steps(1)), "prometheus")
    families = _families(old)
    assert "dbguard_last_run_duration_seconds" not in families  # a run that never ended has no duration
    assert "dbguard_last_run_drift_differences" not in families and "dbguard_sessions_ended" not in families
    assert _states(families, "app.db") == {s: float(s == "FAILED") for s in STATES}


def test_label_values_are_escaped_and_masked() -> None:
    awkward = 'we"ird\\name\nnext'
    report = FleetStatusReport(
        fleet="tenants", state="FAILED", exit_code=ExitCode.REFUSED, control="sqlite:///c.db",
        batches=(FleetBatchResult(number=1, status="failed", targets=(awkward, f"leak-{CANARY}")),),
        targets=(FleetTargetResult(name=awkward, masked_url="postgresql://u:***@h/d1", weight=1, batch=1,
                                   status="failed", state="FAILED", duration_ms=2500),
                 FleetTargetResult(name=f"leak-{CANARY}", masked_url="mysql://u:***@h/d2", weight=1, batch=1,
                                   status="succeeded", state=None)))
    masking.activate(masking.Masker([CANARY]))
    try:
        text = output.render(report, "prometheus")
    finally:
        masking.activate(masking.Masker())
    assert CANARY not in text
    assert 'target="we\\"ird\\\\name\\nnext"' in text, text
    families = _families(text)
    assert _states(families, awkward)["FAILED"] == 1
    assert _states(families, "leak-***") == {**{s: 0.0 for s in STATES}, output.UNREACHABLE: 1.0}
    assert _value(families, "dbguard_fleet_state", state="FAILED") == 1
    assert _value(families, "dbguard_fleet_target_duration_seconds", target=awkward, database="d1") == 2.5
    assert _value(families, "dbguard_fleet_batch_state", batch="1", status="failed") == 1
    assert _value(families, "dbguard_fleet_batch_targets", batch="1", status="failed") == 1
    assert _value(families, "dbguard_fleet_batch_targets", batch="1", status="succeeded") == 1
    assert _value(families, "dbguard_fleet_batch_targets", batch="1", status="skipped") == 0


def test_only_status_and_fleet_status_accept_the_format(tmp_path: Path) -> None:
    ini = make_project(tmp_path, f"sqlite:///{tmp_path / 'app.db'}")
    for args in (["--format", "prometheus", "history"], ["--format", "prometheus", "fleet", "upgrade", "f.toml"],
                 ["plan", "--format", "prometheus"], ["--format", "prometheus", "locks", "kill", "1"]):
        refused = run_dbguard(ini, None, *args)
        assert refused.returncode == 2 and refused.stderr.count("\n") == 1 and not refused.stdout, describe(refused)
    assert run_dbguard(ini, None, "upgrade").returncode == 0
    quiet = run_dbguard(ini, None, "-q", "status", "--format", "prometheus")  # -q keeps a machine format
    assert quiet.returncode == 0 and _states(_families(quiet.stdout), str(tmp_path / "app.db"))["HEALTHY"] == 1


# --- real servers ---------------------------------------------------------------------------------


def _revisions(fail_second: bool = False) -> list[tuple[str, str, str]]:
    second = "op.execute('SELECT * FROM m_no_such_table')" if fail_second \
        else "op.create_table('m_t2', sa.Column('id', sa.Integer, primary_key=True))"
    return [("r1", "op.create_table('m_t1', sa.Column('id', sa.Integer, primary_key=True))", "op.drop_table('m_t1')"),
            ("r2", second, "op.drop_table('m_t2')")]


def _target(url: str) -> str:
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    return f"{parsed.host}:{parsed.port}/{parsed.database}" if parsed.port else f"{parsed.host}/{parsed.database}"


@pytest.mark.integration
@pytest.mark.parametrize("fail", [False, True], ids=["succeeded", "failed"])
@pytest.mark.parametrize("server", ["pg_url", "mysql_url"], ids=["postgresql", "mysql"])
def test_status_metrics_after_a_guarded_upgrade(request: pytest.FixtureRequest, tmp_path: Path, server: str,
                                                fail: bool) -> None:
    url = request.getfixturevalue(server)
    if server == "pg_url":  # trust accepts any password: the canary must not reach a label
        url = with_credentials(url, password=CANARY)
    ini = make_project(tmp_path, url, _revisions(fail_second=fail))
    done = run_dbguard(ini, url, "upgrade", "head")
    assert done.returncode == (5 if fail else 0), describe(done)
    status = run_dbguard(ini, url, "--format", "prometheus", "status")
    assert status.returncode == (3 if fail else 0), describe(status)
    assert CANARY not in status.stdout + status.stderr
    families = _families(status.stdout)
    target = _target(url)
    labels = {"target": target, "database": target.rpartition("/")[2]}
    want = "FAILED" if fail else "HEALTHY"
    assert _states(families, target) == {s: float(s == want) for s in STATES}, status.stdout
    assert _value(families, "dbguard_last_run_duration_seconds", **labels) > 0
    assert _value(families, "dbguard_last_run_steps", **labels) == 2  # r1 and r2, whatever became of r2
    assert _value(families, "dbguard_last_run_retries", **labels) == 0
    # No session was ever ended here: the audit reads zero.
    assert _value(families, "dbguard_sessions_ended_total", outcome="terminated", **labels) == 0


@pytest.mark.integration
def test_fleet_status_metrics_show_every_target(tmp_path: Path, pg_url: str, mysql_url: str) -> None:
    ini = make_project(tmp_path, pg_url, _revisions())
    lines = ["[fleet]", 'name = "pair"', f'alembic_config = "{ini.relative_to(tmp_path)}"', ""]
    for name, url in (("pg", pg_url), ("maria", mysql_url)):
        lines += ["[[targets]]", f'name = "{name}"', f'url = "{url}"', "weight = 1", ""]
    path = tmp_path / "fleet.toml"
    path.write_text("\n".join(lines))

    def dbguard(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "dbguard.cli", *args], capture_output=True, text=True,
                              cwd=tmp_path, env=cli_env(), stdin=subprocess.DEVNULL, timeout=180, check=False)

    up = dbguard("fleet", "upgrade", str(path), "--batches", "1,100%")
    assert up.returncode == 0, describe(up)
    status = dbguard("--format", "prometheus", "fleet", "status", str(path))
    assert status.returncode == 0, describe(status)
    families = _families(status.stdout)
    assert _value(families, "dbguard_fleet_state", fleet="pair", state="HEALTHY") == 1
    for name in ("pg", "maria"):
        assert _states(families, name)["HEALTHY"] == 1, status.stdout
        assert _value(families, "dbguard_fleet_target_duration_seconds", target=name) > 0
    for batch in ("1", "2"):
        assert _value(families, "dbguard_fleet_batch_state", batch=batch, status="verified") == 1
        assert _value(families, "dbguard_fleet_batch_targets", batch=batch, status="succeeded") == 1
