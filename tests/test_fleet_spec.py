"""The fleet file, and fleet commands on SQLite targets (no server needed): resolve, formats."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from dbguard.errors import ConfigError
from dbguard.fleet.spec import load_fleet
from tests.guardrun import cli_env
from tests.projects import make_project

DBGUARD = [sys.executable, "-m", "dbguard.cli"]


def write(tmp: Path, text: str) -> Path:
    (tmp / "alembic.ini").write_text("[alembic]\nscript_location = migrations\n")
    path = tmp / "fleet.toml"
    path.write_text(text)
    return path


def test_env_references_are_expanded_and_masked(tmp_path: Path) -> None:
    path = write(tmp_path, """
[fleet]
alembic_config = "alembic.ini"
batches = "1,100%"
worker_timeout_s = 45

[[targets]]
name = "eu-1"
url = "postgresql+psycopg://app:${EU_PW}@db1/app"
weight = 3
tags = ["canary", "eu"]
health_sql = "SELECT 1"

[[targets]]
name = "us-1"
url = "postgresql+psycopg://app:${US_PW}@db2/app"
""")
    spec = load_fleet(path, environ={"EU_PW": "eu-secret", "US_PW": "us-secret"})
    assert spec.name == "fleet"
    eu = spec.target("eu-1")
    assert eu.url == "postgresql+psycopg://app:eu-secret@db1/app"
    assert eu.masked_url == "postgresql+psycopg://app:***@db1/app"
    assert eu.weight == 3 and eu.tags == ("canary", "eu") and eu.health_sql == "SELECT 1"
    assert spec.target("us-1").weight == 1
    assert spec.warnings == ()
    assert spec.control_url == f"sqlite:///{tmp_path / 'fleet.fleet.db'}"
    assert "eu-secret" not in repr(spec)
    assert spec.mask("failed: us-secret") == "failed: ***"
    assert spec.worker_timeout_s == 45


def test_inline_password_is_accepted_with_a_warning(tmp_path: Path) -> None:
    path = write(tmp_path, """
[fleet]
alembic_config = "alembic.ini"
[[targets]]
name = "a"
url = "postgresql://app:hunter22@db/app"
""")
    spec = load_fleet(path, environ={})
    assert len(spec.warnings) == 1 and "inline password" in spec.warnings[0]
    assert "hunter22" not in spec.warnings[0]
    assert spec.mask("hunter22") == "***"


def test_a_target_or_control_url_that_does_not_parse_is_refused_without_its_password(tmp_path: Path) -> None:
    """A literal password (no ${VAR}) in a mistyped URL: the masking patterns need scheme://."""
    for body in ('[[targets]]\nname = "a"\nurl = "postgres//app:Hunter2typo@db/app"\n',
                 ('[fleet]\ncontrol_url = "postgresql:/ctl:Hunter2typo@db/ctl"\n'
                  '[[targets]]\nname = "a"\nurl = "sqlite:///x.db"\n')):
        path = write(tmp_path, '[fleet]\nalembic_config = "alembic.ini"\n' + body.replace("[fleet]\n", ""))
        with pytest.raises(ConfigError, match="not a database URL") as raised:
            load_fleet(path, environ={})
        assert "Hunter2typo" not in raised.value.message and "***@db/" in raised.value.message


@pytest.mark.parametrize("body, message", [
    ('[[targets]]\nname = "a"\nurl = "postgresql://u:${NOPE}@h/d"\n', "NOPE is not set"),
    ('[[targets]]\nname = "a"\n', "needs a url"),
    ('[[targets]]\nurl = "sqlite:///x.db"\n', "needs a name"),
    ('[[targets]]\nname = "a"\nurl = "sqlite:///x.db"\n[[targets]]\nname = "a"\nurl = "sqlite:///y.db"\n', "twice"),
    ('[[targets]]\nname = "a"\nurl = "sqlite:///x.db"\nweight = -1\n', "weight"),
    ('[[targets]]\nname = "a"\nurl = "sqlite:///x.db"\ncolour = "red"\n', "unknown key"),
    ('[[targets]]\nname = "a"\nurl = "sqlite:///x.db"\nalembic_config = "missing.ini"\n', "no Alembic configuration"),
    ("", r"no \[\[targets"),
    ("[[targets]\n", "not valid TOML"),
    ('worker_timeout_s = 0\n[[targets]]\nname = "a"\nurl = "sqlite:///x.db"\n', "worker_timeout_s must be"),
    ('probe_interval_s = 0\n[[targets]]\nname = "a"\nurl = "sqlite:///x.db"\n', "probe_interval_s must be"),
    ('probe_failures = 1.5\n[[targets]]\nname = "a"\nurl = "sqlite:///x.db"\n', "probe_failures must be a whole"),
    ('[[targets]]\nname = "a"\nurl = "sqlite:///x.db"\nhealth_url = "ftp://h/x"\n', "health_url must be an http"),
])
def test_bad_fleet_files(tmp_path: Path, body: str, message: str) -> None:
    path = write(tmp_path, '[fleet]\nalembic_config = "alembic.ini"\n' + body)
    with pytest.raises(ConfigError, match=message):
        load_fleet(path, environ={})


def test_fleet_wide_probes_are_each_targets_unless_it_names_its_own(tmp_path: Path) -> None:
    path = write(tmp_path, """
[fleet]
alembic_config = "alembic.ini"
health_sql = "SELECT 1"
health_url = "http://app:8080/healthz?key=${PROBE_KEY}"
probe_interval_s = 0.5
probe_failures = 3

[[targets]]
name = "a"
url = "sqlite:///a.db"

[[targets]]
name = "b"
url = "sqlite:///b.db"
health_sql = "SELECT count(*) FROM orders"
health_url = "https://b.example/ok"
""")
    spec = load_fleet(path, environ={"PROBE_KEY": "k3y-s3cret"})
    a, b = spec.targets
    assert (a.health_sql, a.health_url) == ("SELECT 1", "http://app:8080/healthz?key=k3y-s3cret")
    assert (b.health_sql, b.health_url) == ("SELECT count(*) FROM orders", "https://b.example/ok")
    assert (spec.probe_interval_s, spec.probe_failures, spec.probe_timeout_s) == (0.5, 3, 5.0)
    assert "k3y-s3cret" in spec.secrets and "k3y-s3cret" not in repr(a)


def _sqlite_fleet(tmp: Path, fail_in: str | None = None) -> Path:
    fail = ""
    if fail_in:
        fail = f"\nif op.get_bind().engine.url.database.endswith({fail_in!r}):\n    raise RuntimeError('rigged')"
    ini = make_project(tmp, f"sqlite:///{tmp / 'a.db'}", [
        ("r1", "op.create_table('t1', sa.Column('id', sa.Integer, primary_key=True))", "op.drop_table('t1')"),
        ("r2", "op.create_table('t2', sa.Column('id', sa.Integer, primary_key=True))" + fail, "op.drop_table('t2')"),
    ])
    lines = ["[fleet]", f'alembic_config = "{ini.relative_to(tmp)}"', ""]
    for name in ("a", "b", "c"):
        lines += ["[[targets]]", f'name = "{name}"', f'url = "sqlite:///{tmp / (name + ".db")}"', ""]
    path = tmp / "fleet.toml"
    path.write_text("\n".join(lines))
    return path


def dg(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*DBGUARD, *args], stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120,
                          env=cli_env(), cwd=tmp, check=False)


def test_jsonl_is_for_fleet_commands_only(tmp_path: Path) -> None:
    proc = dg(tmp_path, "--format", "jsonl", "status")
    assert proc.returncode == 2 and "--format jsonl streams progress events of fleet" in proc.stderr


def test_a_typed_config_or_url_is_refused_by_fleet_commands_not_ignored(tmp_path: Path) -> None:
    fleet = _sqlite_fleet(tmp_path)
    for typed, named in ((["-c", "other.ini"], "-c/--config does not apply"),
                         (["--url", "sqlite:///other.db"], "--url does not apply"),
                         (["-c", "other.ini", "--url", "sqlite:///other.db"], "-c/--config and --url do not apply")):
        proc = dg(tmp_path, *typed, "fleet", "validate", str(fleet))
        assert proc.returncode == 2 and named in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
        assert not (tmp_path / "other.db").exists()
    # Set in the environment (a shell profile), they are simply not used: the fleet file decides.
    for name in ("a", "b", "c"):  # validate reads the targets: their files must be there
        sqlite3.connect(tmp_path / f"{name}.db").close()
    proc = subprocess.run([*DBGUARD, "fleet", "validate", str(fleet)], stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=120, cwd=tmp_path, check=False,
                          env=cli_env({"DBGUARD_CONFIG": "other.ini", "DBGUARD_URL": "sqlite:///other.db"}))
    assert proc.returncode == 0, proc.stderr


@pytest.mark.slow
def test_a_batch_that_breaks_while_it_bakes_stops_the_next_one(tmp_path: Path) -> None:
    import sqlite3

    path = _sqlite_fleet(tmp_path)
    path.write_text(path.read_text().replace('name = "a"', 'name = "a"\nhealth_sql = "SELECT 1 FROM probe"'))
    with sqlite3.connect(tmp_path / "a.db") as db:
        db.execute("CREATE TABLE probe (id INTEGER)")
    up = subprocess.Popen([*DBGUARD, "--format", "jsonl", "fleet", "upgrade", str(path), "--batches", "1,100%",
                           "--bake", "3"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, env=cli_env(), cwd=tmp_path)
    try:
        events = []
        for line in up.stdout:  # the JSON lines arrive as they happen: wait for the bake to begin
            events.append(json.loads(line))
            if events[-1]["event"] == "baking":
                break
        assert events[-1] == {**events[-1], "event": "baking", "batch": 1}, events
        with sqlite3.connect(tmp_path / "a.db") as db:  # the canary breaks while it bakes
            db.execute("DROP TABLE probe")
        rest, err = up.communicate(timeout=120)
    finally:
        up.kill()
    assert up.returncode == 5, rest + err
    failed = [json.loads(line) for line in rest.splitlines() if '"fleet_failed"' in line]
    # Probed every 5 s (the default), a 3 s bake still looks once, at its end: that one failure fails it.
    assert failed and "batch 1 failed while baking: a: health_sql failed 1 probe(s) at the end of the bake" \
        in failed[0]["error"], failed
    # Batch 2 never started: b and c are still at base.
    for name in ("b", "c"):
        with sqlite3.connect(tmp_path / f"{name}.db") as db:
            assert not db.execute("SELECT name FROM sqlite_master WHERE name = 't1'").fetchall()


@pytest.mark.slow
def test_failed_fleet_is_resolved_with_the_typed_confirmation(tmp_path: Path) -> None:
    path = _sqlite_fleet(tmp_path, fail_in="b.db")
    up = dg(tmp_path, "fleet", "upgrade", str(path), "--batches", "1,2,100%", "--parallel", "2")
    assert up.returncode == 5, up.stdout + up.stderr
    assert "blast radius" in up.stdout and "dbguard fleet rollback" in up.stdout
    assert dg(tmp_path, "fleet", "status", str(path)).returncode == 3
    refused = dg(tmp_path, "fleet", "resolve", str(path), "--reason", "fixed b by hand", "--confirm-risk", "yes")
    assert refused.returncode == 3 and "CONFIRM_RISK" in refused.stdout, refused.stdout + refused.stderr
    done = dg(tmp_path, "fleet", "resolve", str(path), "--reason", "fixed b by hand", "--confirm-risk", "CONFIRM_RISK")
    assert done.returncode == 0, done.stdout + done.stderr
    status = dg(tmp_path, "--format", "json", "fleet", "status", str(path))
    report = json.loads(status.stdout)
    assert status.returncode == 0 and report["state"] == "HEALTHY"
    # The fleet is healthy again, but target b keeps its own breaker: it still says FAILED. The rollout
    # never reached c, whose SQLite file was never made: status says so instead of creating it.
    states = {t["name"]: t["state"] for t in report["targets"]}
    assert states == {"a": "HEALTHY", "b": "FAILED", "c": "UNREACHABLE"}
    assert "no SQLite database at" in next(t["error"] for t in report["targets"] if t["name"] == "c")
    assert not (tmp_path / "c.db").exists()
    # The next rollout stops at b's pre-flight without touching it.
    again = dg(tmp_path, "fleet", "upgrade", str(path), "--batches", "1,2,100%")
    assert again.returncode == 3 and "pre-flight" in again.stdout, again.stdout


def test_batches_short_of_the_fleet_need_partial_rollout_and_name_who_was_left(tmp_path: Path) -> None:
    path = _sqlite_fleet(tmp_path)
    refused = dg(tmp_path, "fleet", "upgrade", str(path), "--batches", "1,2")
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "ends at 2 of the fleet's 3 targets" in refused.stderr and "--partial-rollout" in refused.stderr
    assert not (tmp_path / "a.db").exists()  # nothing was touched
    validated = dg(tmp_path, "fleet", "validate", str(path), "--batches", "1")
    assert validated.returncode == 2 and "--partial-rollout" in validated.stderr
    done = dg(tmp_path, "--format", "json", "fleet", "upgrade", str(path), "--batches", "1,2", "--partial-rollout")
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout)
    assert result["left_out"] == ["c"] and "left at their revisions (--partial-rollout): c" in result["message"]
    status = dg(tmp_path, "fleet", "status", str(path))
    assert "left out:  c (not part of the last rollout" in status.stdout, status.stdout
    assert not (tmp_path / "c.db").exists()


def test_fleet_rollback_never_sends_a_target_to_base_whose_starting_revisions_were_not_read(tmp_path: Path) -> None:
    """A target row whose from_revisions nobody recorded (NULL) is refused by name before anything runs:
    "back to base" would downgrade every revision it has."""
    from dbguard.db.fleet_control import Control
    from dbguard.fleet import rollout

    path = write(tmp_path, f"""
[fleet]
name = "f"
alembic_config = "alembic.ini"

[[targets]]
name = "read"
url = "sqlite:///{tmp_path / 'a.db'}"

[[targets]]
name = "unread"
url = "sqlite:///{tmp_path / 'b.db'}"
""")
    spec = load_fleet(path, environ={})
    with Control(spec.control_url, spec.secrets) as control:
        control.ensure_tables()
        run_id = control.insert_run(**rollout._base_row(spec, control, "upgrade", "head", "1"), status="failed")
        control.insert_batch(run_id=run_id, number=1, size=2, status="failed")
        control.insert_targets([
            {"run_id": run_id, "batch": 1, "position": 0, "target": "read", "masked_url": "a", "weight": 1,
             "status": "failed", "from_revisions": ("r1",)},
            {"run_id": run_id, "batch": 1, "position": 1, "target": "unread", "masked_url": "b", "weight": 1,
             "status": "failed", "from_revisions": None}])
        control.conn.commit()
    asked: list[object] = []
    result = rollout.rollback(spec, confirm=lambda prompt: asked.append(prompt) or "yes")
    assert result.exit_code == 3 and "no starting revisions were recorded for unread" in result.message, result
    assert asked == []  # refused before the prompt: nothing was offered, nothing ran
