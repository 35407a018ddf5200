"""A canary sweep: distinct secrets planted in every place dbguard reads from (URL password, a -x
secret, revision literals, an exception raised by a revision) must appear in no byte of any output,
in no column of any dbguard table, and only in ``--sql``, whose SQL is for execution.

The full sweep of every command in every format, fleets and locks included, is benchmarks' work to
come; this is the part that runs in CI on each engine."""

from __future__ import annotations

import contextlib
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.dbs import backend_of
from tests.guardrun import cli_env, connect, database_of, mysql_user, run_dbguard, with_credentials
from tests.lockscene import execute, session_id
from tests.projects import wait_for

pytestmark = pytest.mark.integration


def _canary(kind: str) -> str:
    return f"Canary{kind}{uuid.uuid4().hex[:10]}"


def _revisions(engine: str, nested: str, err: str, dsn: str, log: str) -> list[tuple[str, str, str]]:
    r1 = ("r1", 'op.create_table("t", sa.Column("id", sa.Integer, primary_key=True))', 'op.drop_table("t")')
    if engine == "postgresql":  # a password literal nested in a literal, in a block that never runs it
        body = (f'op.execute("DO $$BEGIN IF false THEN EXECUTE \'ALTER ROLE nobody PASSWORD \'\'{nested}\'\'\'; '
                f'END IF; END$$")')
    else:
        body = f'op.execute("SELECT \'CREATE USER x IDENTIFIED BY \'\'{nested}\'\'\'")'
    # A log line of a revision, shown by Alembic's own handler on stderr.
    body += (f"\nimport logging\nlogging.getLogger(\"alembic.runtime.migration\").info(\"reaching %s\", "
             f"\"postgresql://app:{log}@replica.internal/app\")")
    r2 = ("r2", body + '\nop.add_column("t", sa.Column("c", sa.Integer))', 'op.drop_column("t", "c")')
    raising = ("from alembic import context\nif not context.is_offline_mode():\n"
               f"    raise RuntimeError('cannot reach postgresql://app:{err}@db.internal/app (password={dsn})')")
    r3 = ("r3", raising, "pass")
    return [r1, r2, r3]


@contextlib.contextmanager
def _url_with_password(url: str, request: pytest.FixtureRequest, password: str) -> Iterator[str]:
    if backend_of(url) == "postgresql":  # the test server trusts every login: any password is accepted
        yield with_credentials(url, password=password)
        return
    server = request.getfixturevalue("mysql_server_url")
    with mysql_user(server, database_of(url), password) as user:
        yield with_credentials(url, username=user, password=password)


def _dbguard_rows(url: str) -> str:
    with connect(url) as conn:
        names = [n for n in sa.inspect(conn).get_table_names() if n.startswith("dbguard_")]
        rows = [repr(tuple(row)) for name in names for row in conn.exec_driver_sql(f"SELECT * FROM {name}")]
    return "\n".join(rows)


@pytest.mark.parametrize("fixture", [pytest.param("pg_url", id="postgresql"), pytest.param("mysql_url", id="mysql")])
def test_no_canary_leaves_dbguard_except_in_the_sql_for_execution(fixture: str, request: pytest.FixtureRequest,
                                                                  tmp_path: Path) -> None:
    from tests.projects import make_project

    url = request.getfixturevalue(fixture)
    engine = backend_of(url)
    canaries = {kind: _canary(kind) for kind in ("Url", "X", "Nested", "Err", "Dsn", "Log")}
    with _url_with_password(url, request, canaries["Url"]) as secret_url:
        ini = make_project(tmp_path, url, _revisions(engine, canaries["Nested"], canaries["Err"], canaries["Dsn"],
                                              canaries["Log"]))
        # The URL reaches dbguard through the environment, the -x secret through its own argv only.
        env = {"DBGUARD_URL": secret_url}
        x = ["-x", f"api_token={canaries['X']}"]
        outputs = []
        snapshot = tmp_path / "snapshot.json"
        formats = [[], ["--format", "json"], ["--format", "github"], ["--format", "junit"]]
        for args in ([*f, "plan"] for f in formats), (["upgrade", "r2"], ["snapshot", "--live", "-o",
                     str(snapshot)]), ([*f, "drift"] for f in formats), (
                     ["upgrade"], ["status"], ["--format", "json", "status"], ["--format", "json", "history"],
                     ["history"], ["resolve", "--reason", "checked", "--confirm-risk", "CONFIRM_RISK"],
                     ["--format", "json", "downgrade", "r1"], ["upgrade", "r2"], ["rollback", "--yes"],
                     ["--format", "json", "upgrade"], ["current"]):
            for command in args:
                done = run_dbguard(ini, None, *x, *command, env=env)
                outputs.append((command, done.returncode, done.stdout + done.stderr))
        sql = run_dbguard(ini, url, "upgrade", "r2", "--sql")
        everything = ("\n".join(text for _, _, text in outputs) + _dbguard_rows(url)
                      + (snapshot.read_text() if snapshot.exists() else ""))
    codes = {" ".join(a): (c, text[-600:]) for a, c, text in outputs}
    for command in ("snapshot --live -o " + str(snapshot), "--format json downgrade r1",
                    "resolve --reason checked --confirm-risk CONFIRM_RISK"):
        assert codes[command][0] == 0, (command, codes[command])
    assert [code for args, code, _ in outputs if args == ["upgrade"]] == [5], outputs  # r3 failed, recorded
    leaked = {kind: c for kind, c in canaries.items() if c in everything}
    assert not leaked, (leaked, [o for o in outputs if any(c in o[2] for c in leaked.values())])
    assert "reaching postgresql://app:***@replica.internal/app" in everything  # the log line was shown, masked
    # The SQL for execution keeps its literal, and says so on stderr.
    assert canaries["Nested"] in sql.stdout, sql.stdout
    assert "sets a password and is printed unmasked" in sql.stderr


def test_a_password_too_short_to_mask_in_free_text_is_pointed_out(pg_url: str, tmp_path: Path) -> None:
    from tests.projects import make_project

    url = with_credentials(pg_url, password="abc")  # the test server trusts every login
    ini = make_project(tmp_path, url, [("r1", "pass", "pass")])
    assert run_dbguard(ini, url, "upgrade").returncode == 0
    seen = run_dbguard(ini, url, "status")
    assert seen.returncode == 0, seen.stderr
    assert "note:      the database URL's password is shorter than 4 characters" in seen.stdout


def _sqlite_rows(path: Path) -> str:
    import sqlite3

    if not path.exists():
        return ""
    with contextlib.closing(sqlite3.connect(path)) as conn:
        names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return "\n".join(repr(row) for name in names for row in conn.execute(f'SELECT * FROM "{name}"'))


def _command_lines_while_running(argv: list[str], cwd: Path, env: dict[str, str]) -> tuple[int, str, list[str]]:
    """Run ``argv``; its exit code, its output, and the command line of every process it started."""
    import subprocess

    def children_of(pid: int) -> set[int]:
        found, todo = set(), [pid]
        parents = {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError, IndexError, ValueError):
                parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        while todo:
            parent = todo.pop()
            for child, ppid in parents.items():
                if ppid == parent and child not in found:
                    found.add(child)
                    todo.append(child)
        return found

    seen: dict[int, str] = {}
    out, err = cwd / "sampled.out", cwd / "sampled.err"
    with out.open("w") as stdout, err.open("w") as stderr:
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr)
        try:
            while proc.poll() is None:
                for child in children_of(proc.pid) - set(seen):
                    with contextlib.suppress(OSError):
                        seen[child] = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ").decode()
                time.sleep(0.01)  # a polling interval: the pool's processes live as long as the rollout
        finally:
            proc.wait(timeout=120)
    return proc.returncode, out.read_text() + err.read_text(), [line for line in seen.values() if line]


def test_locks_fleets_and_the_force_prompt_leak_no_canary(pg_url: str, tmp_path: Path) -> None:
    """PostgreSQL: a lock holder's query cut inside a password literal, `locks` and `locks kill` in both
    formats (and the kill audit), every fleet command with a ${VAR} password, the --force prompt."""
    from dbguard.core.breaker import CONFIRM_TOKEN
    from tests.lockscene import Scene
    from tests.projects import make_project

    canaries = {kind: _canary(kind) for kind in ("Url", "Fleet", "Err")}
    lock_secret = uuid.uuid4().hex * 2  # shown only in part if truncation came before masking
    url = with_credentials(pg_url, password=canaries["Url"])
    failing = ("r2", f"raise RuntimeError('vault said: password={canaries['Err']}')", "pass")
    table = 'op.create_table("t", sa.Column("id", sa.Integer, primary_key=True))'
    ini = make_project(tmp_path, pg_url, [("r1", table, 'op.drop_table("t")'), failing])
    env = {"DBGUARD_URL": url}
    outputs: list[tuple[list[str], int, str]] = []

    def run(*args: str, extra: dict[str, str] | None = None, config: bool = True) -> int:
        if config:
            done = run_dbguard(ini, None, *args, env={**env, **(extra or {})})
        else:
            import subprocess
            import sys

            from tests.guardrun import cli_env
            done = subprocess.run([sys.executable, "-m", "dbguard.cli", *args], capture_output=True, text=True,
                                  timeout=120, env=cli_env(extra), cwd=tmp_path, stdin=subprocess.DEVNULL,
                                  check=False)
        outputs.append((list(args), done.returncode, done.stdout + done.stderr))
        return done.returncode

    assert run("upgrade", "r1") == 0
    scene = Scene(pg_url)
    try:
        holder = scene.open("app_a")
        execute(holder, "BEGIN")
        pad = "x" * (200 - len("SELECT * FROM t /*  */ WHERE 'ALTER ROLE r PASSWORD ''") - 10)
        execute(holder, f"SELECT * FROM t /* {pad} */ WHERE 'ALTER ROLE r PASSWORD ''{lock_secret}''' "
                "IS NOT NULL")
        waiter, _job = scene.background("ALTER TABLE t ADD COLUMN z INT")
        wait_for(lambda: scene.is_waiting(session_id(waiter)), timeout=30, message="the ALTER never queued")
        for args in (["locks"], ["--format", "json", "locks"]):
            assert run(*args) == 0
        assert run("--format", "json", "locks", "kill", "--roots", "--confirm-risk", CONFIRM_TOKEN) == 0
    finally:
        scene.close()
    fleet = tmp_path / "fleet.toml"
    fleet_url = with_credentials(pg_url, password="${FLEET_PW}")
    fleet.write_text(f'[fleet]\nalembic_config = "{ini}"\ncontrol_url = "sqlite:///{tmp_path / "control.db"}"\n'
                     f'[[targets]]\nname = "one"\nurl = "{fleet_url}"\n')
    fleet_env = {"FLEET_PW": canaries["Fleet"]}
    run("fleet", "validate", str(fleet), extra=fleet_env, config=False)
    # The rollout's own processes (its worker pool) carry no secret on their command lines.
    code, text, command_lines = _command_lines_while_running(
        [sys.executable, "-m", "dbguard.cli", "--format", "jsonl", "fleet", "upgrade", str(fleet)], cwd=tmp_path,
        env=cli_env(fleet_env))
    assert code == 5 and any("multiprocessing" in line for line in command_lines), (code, command_lines)
    outputs.append((["--format", "jsonl", "fleet", "upgrade"], code, text + "\n".join(command_lines)))
    for args in (["fleet", "upgrade", str(fleet)], ["fleet", "status", str(fleet)],
                 ["--format", "json", "fleet", "status", str(fleet)], ["fleet", "rollback", str(fleet), "--yes"]):
        run(*args, extra=fleet_env, config=False)
    assert run("upgrade") == 5  # r2 fails: the breaker opens
    assert run("upgrade", "--force", "--confirm-risk", "WRONG") == 3  # the prompt shows the blast radius
    everything = "\n".join(text for _, _, text in outputs) + _dbguard_rows(pg_url) + _sqlite_rows(
        tmp_path / "control.db")
    assert "blast radius" in everything.lower() or "CONFIRM_RISK" in everything
    leaked = {kind: c for kind, c in canaries.items() if c in everything}
    assert not leaked, (leaked, [o for o in outputs if any(c in o[2] for c in leaked.values())])
    assert lock_secret[:8] not in everything, [o for o in outputs if lock_secret[:8] in o[2]]
    assert any("PASSWORD ''***" in text for args, _, text in outputs if "locks" in args), "the query was not shown"


@pytest.mark.parametrize("fixture", [pytest.param("pg_url", id="postgresql"), pytest.param("mysql_url", id="mysql")])
def test_the_statement_a_watchdog_cancelled_is_stored_masked(fixture: str, request: pytest.FixtureRequest,
                                                             tmp_path: Path) -> None:
    """The step's notes keep the statement the watchdog cancelled: its password literal is masked
    before the note is written, the note stays JSON, and the output shows no secret either."""
    import json

    from tests.lanekit import AppSession, Cleanup, Reader, dbguard, ledger, start_dbguard
    from tests.projects import make_project

    url = request.getfixturevalue(fixture)
    secret = _canary("Watch")
    table = ("w1", 'op.create_table("t1", sa.Column("id", sa.Integer, primary_key=True))', 'op.drop_table("t1")')
    alter = ("w2", f"op.execute(\"ALTER TABLE t1 ADD COLUMN c INT /* ALTER ROLE r PASSWORD '{secret}' */\")",
             'op.drop_column("t1", "c")')
    ini = make_project(tmp_path, url, [table, alter])
    assert dbguard(ini, "upgrade", "w1").returncode == 0
    cleanup = Cleanup()
    try:
        cleanup.add(AppSession(url, "t1"))  # holds the table: the ALTER queues behind it
        reader = cleanup.add(Reader(url, "t1"))  # and queues behind the ALTER: the watchdog's cue
        run = cleanup.add(start_dbguard(ini, "upgrade", env={"DBGUARD_MAX_BLOCKING_MS": "500",
                                                             "DBGUARD_LOCK_TIMEOUT_MS": "5000",
                                                             "DBGUARD_LOCK_RETRIES": "0"}))
        out, err = run.communicate(timeout=120)
        reader.stop()
    finally:
        cleanup.close()
    assert run.returncode == 5 and "blocking traffic" in out + err, out + err
    runs, steps = ledger(url)
    step = next(s for s in steps if s["run_id"] == runs[-1]["id"] and s["revision"] == "w2")
    notes = json.loads(step["notes"])  # still JSON
    assert notes and "PASSWORD '***'" in notes[0]["statement"], notes
    assert secret not in out + err + _dbguard_rows(url)
