"""A canary sweep: distinct secrets planted in every place dbguard reads from (URL passwords, fleet
${VAR} values, the control URL, a -x secret, revision literals and log lines, exceptions raised by
revisions, a team's own pattern, lock holders' queries cut mid-literal) must appear in no byte of any
command's output in any format, in no column of any dbguard table on the target or control database,
in no snapshot file and on no command line of a process dbguard starts; only in ``--sql``, whose SQL
is for execution."""

from __future__ import annotations

import contextlib
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.dbs import backend_of, create_database, drop_database
from tests.guardrun import cli_env, connect, database_of, mysql_user, run_dbguard, with_credentials
from tests.lockscene import execute, session_id
from tests.projects import wait_for

pytestmark = pytest.mark.integration


def _canary(kind: str) -> str:
    return f"Canary{kind}{uuid.uuid4().hex[:10]}"


def _revisions(engine: str, nested: str, err: str, dsn: str, log: str, team: str) -> list[tuple[str, str, str]]:
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
               f"    raise RuntimeError('ticket {team}: cannot reach postgresql://app:{err}@db.internal/app "
               f"(password={dsn})')")
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
    canaries = {kind: _canary(kind) for kind in ("Url", "X", "Nested", "Err", "Dsn", "Log", "Team")}
    with _url_with_password(url, request, canaries["Url"]) as secret_url:
        ini = make_project(tmp_path, url, _revisions(engine, canaries["Nested"], canaries["Err"], canaries["Dsn"],
                                              canaries["Log"], canaries["Team"]))
        # The URL reaches dbguard through the environment, the -x secret through its own argv only; a
        # team's own pattern masks what no built-in pattern knows.
        env = {"DBGUARD_URL": secret_url, "DBGUARD_MASK_PATTERNS": "CanaryTeam[0-9a-f]{10}"}
        x = ["-x", f"api_token={canaries['X']}"]
        outputs = []
        snapshot = tmp_path / "snapshot.json"
        resolve = ["resolve", "--reason", "checked", "--confirm-risk", "CONFIRM_RISK"]
        formats = [[], ["--format", "json"], ["--format", "github"], ["--format", "junit"]]
        for args in ([*f, "plan"] for f in formats), (["upgrade", "r2"], ["snapshot", "--live", "-o",
                     str(snapshot)]), ([*f, "drift"] for f in formats), (
                     ["upgrade"], ["status"], ["--format", "json", "status"], ["--format", "json", "history"],
                     ["history"], resolve,
                     ["--format", "json", "downgrade", "r1"], ["upgrade", "r2"], ["rollback", "--yes"],
                     ["--format", "json", "upgrade"], ["--format", "json", *resolve],
                     ["--format", "json", "rollback", "--yes"], ["current"]):
            for command in args:
                done = run_dbguard(ini, None, *x, *command, env=env)
                outputs.append((command, done.returncode, done.stdout + done.stderr))
        sql = run_dbguard(ini, url, "upgrade", "r2", "--sql")
        everything = ("\n".join(text for _, _, text in outputs) + _dbguard_rows(url)
                      + (snapshot.read_text() if snapshot.exists() else ""))
    codes = {" ".join(a): (c, text[-600:]) for a, c, text in outputs}
    for command in ("snapshot --live -o " + str(snapshot), "--format json downgrade r1",
                    "resolve --reason checked --confirm-risk CONFIRM_RISK",
                    "--format json resolve --reason checked --confirm-risk CONFIRM_RISK"):
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


def _command_lines_while_running(argv: list[str], cwd: Path, env: dict[str, str]) -> tuple[int, str, list[str]]:
    """Run ``argv``; its exit code, its output, and the command line of every process it started."""
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


def test_locks_fleets_and_the_force_prompt_leak_no_canary(pg_url: str, pg_server_url: str, tmp_path: Path) -> None:
    """PostgreSQL: a lock holder's query cut inside a password literal, `locks` and `locks kill` in both
    formats (and the kill audit), every fleet command with a ${VAR} password, the --force prompt."""
    from dbguard.core.breaker import CONFIRM_TOKEN
    from tests.lockscene import Scene
    from tests.projects import make_project

    canaries = {kind: _canary(kind) for kind in ("Url", "Fleet", "Control", "Err")}
    lock_secret = uuid.uuid4().hex * 2  # shown only in part if truncation came before masking
    url = with_credentials(pg_url, password=canaries["Url"])
    failing = ("r3", f"raise RuntimeError('vault said: password={canaries['Err']}')", "pass")
    table = 'op.create_table("t", sa.Column("id", sa.Integer, primary_key=True))'
    column = ("r2", 'op.add_column("t", sa.Column("c", sa.Integer))', 'op.drop_column("t", "c")')
    ini = make_project(tmp_path, pg_url, [("r1", table, 'op.drop_table("t")'), column, failing])
    env = {"DBGUARD_URL": url}
    outputs: list[tuple[list[str], int, str]] = []

    def run(*args: str, extra: dict[str, str] | None = None, config: bool = True) -> int:
        if config:
            done = run_dbguard(ini, None, *args, env={**env, **(extra or {})})
        else:
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
        # A pass phrase: the query is cut at the end of a word, here inside the literal, after its first
        # word (the secret's first 8 characters).
        pad = "x" * (200 - len("SELECT * FROM t /*  */ WHERE 'ALTER ROLE r PASSWORD ''") - 12)
        execute(holder, f"SELECT * FROM t /* {pad} */ WHERE 'ALTER ROLE r PASSWORD ''{lock_secret[:8]} "
                        f"{lock_secret}''' IS NOT NULL")
        waiter, _job = scene.background("ALTER TABLE t ADD COLUMN z INT")
        wait_for(lambda: scene.is_waiting(session_id(waiter)), timeout=30, message="the ALTER never queued")
        for args in (["locks"], ["--format", "json", "locks"]):
            assert run(*args) == 1  # somebody waits
        assert run("--format", "json", "locks", "kill", "--roots", "--confirm-risk", CONFIRM_TOKEN) == 0
    finally:
        scene.close()
    fleet = tmp_path / "fleet.toml"
    fleet_url = with_credentials(pg_url, password="${FLEET_PW}")
    fleet.write_text(f'[fleet]\nalembic_config = "{ini}"\n[[targets]]\nname = "one"\nurl = "{fleet_url}"\n')
    # A PostgreSQL control database (a distributed rollout needs one), reached through the environment.
    control = create_database(pg_server_url, "postgresql")
    fleet_env = {"FLEET_PW": canaries["Fleet"],
                 "DBGUARD_FLEET_CONTROL_URL": with_credentials(control, password=canaries["Control"])}
    try:
        for args in (["fleet", "validate", str(fleet)], ["--format", "json", "fleet", "validate", str(fleet)]):
            run(*args, extra=fleet_env, config=False)
        # The rollout's own processes (its worker pool) carry no secret on their command lines.
        code, text, command_lines = _command_lines_while_running(
            [sys.executable, "-m", "dbguard.cli", "--format", "jsonl", "fleet", "upgrade", str(fleet)],
            cwd=tmp_path, env=cli_env(fleet_env))
        assert code == 5 and any("multiprocessing" in line for line in command_lines), (code, command_lines)
        outputs.append((["--format", "jsonl", "fleet", "upgrade"], code, text + "\n".join(command_lines)))
        rollback = ["fleet", "rollback", str(fleet), "--yes"]
        resolve = ["fleet", "resolve", str(fleet), "--reason", "repaired", "--confirm-risk", CONFIRM_TOKEN]
        assert run("fleet", "upgrade", str(fleet), extra=fleet_env, config=False) == 3  # the fleet's breaker
        assert run("--format", "json", *rollback, extra=fleet_env, config=False) == 0, outputs[-1]
        # A distributed rollout: a worker elsewhere claims the target, moves it to r2 and fails at r3.
        worker = subprocess.Popen([sys.executable, "-m", "dbguard.cli", "--format", "jsonl", "fleet", "worker",
                                   "--once", "--poll", "0.05", str(fleet)], cwd=tmp_path, env=cli_env(fleet_env),
                                  stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert run("fleet", "upgrade", str(fleet), "--distributed", "--worker-timeout", "60", extra=fleet_env,
                       config=False) == 5, outputs[-1]
        finally:
            out, err = worker.communicate(timeout=120)
        outputs.append((["fleet", "worker"], worker.returncode, out + err))
        assert '"event"' in out, (out, err)  # the worker did take part
        for args in (["fleet", "status", str(fleet)], ["--format", "json", "fleet", "status", str(fleet)]):
            run(*args, extra=fleet_env, config=False)
        assert run("--format", "json", *resolve, extra=fleet_env, config=False) == 0, outputs[-1]
        for args in (rollback, resolve):  # refusals now: nothing since the resolve, nothing to resolve
            run(*args, extra=fleet_env, config=False)
        control_rows = _dbguard_rows(control)
    finally:
        drop_database(control)
    assert run("upgrade") == 3  # the target's own breaker, open since r3 failed
    assert run("upgrade", "--force", "--confirm-risk", "WRONG") == 3  # the prompt shows the blast radius
    everything = "\n".join(text for _, _, text in outputs) + _dbguard_rows(pg_url) + control_rows
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


def test_a_running_holder_query_on_mariadb_leaks_no_canary(mysql_url: str, tmp_path: Path) -> None:
    """MariaDB shows a running statement's text: a holder's query cut inside each engine-specific
    password form, in `locks` (text, json) and `locks kill` (text), and the kill audit row."""
    from dbguard.core.breaker import CONFIRM_TOKEN
    from tests.lockscene import Background, Scene, dbguard, write_ini

    scene = Scene(mysql_url)
    if "mariadb" not in execute(scene.admin, "SELECT VERSION()")[0][0].lower():
        scene.close()
        pytest.skip("a running statement's text comes from MariaDB's processlist here")
    def short() -> str:  # short canaries, so every form fits in the 200 characters `locks` shows
        return f"Cn{uuid.uuid4().hex[:10]}"

    forms = {f"IDENTIFIED WITH x BY '{short()}'", f"USING PASSWORD('{short()}')",
             f"SET PASSWORD = PASSWORD('{short()}')"}
    # A pass phrase straddling the 200-character cut: queries are cut at the end of a word, so only its
    # first word (the secret's first 8 characters) is in the query shown, inside the open literal.
    cut = uuid.uuid4().hex * 4
    outputs = []
    try:
        execute(scene.admin, "CREATE TABLE t (id INT PRIMARY KEY)")
        execute(scene.admin, "INSERT INTO t VALUES (1)")
        if not execute(scene.admin, "SELECT COUNT(*) FROM information_schema.PLUGINS "
                                    "WHERE PLUGIN_NAME = 'METADATA_LOCK_INFO' AND PLUGIN_STATUS = 'ACTIVE'")[0][0]:
            with contextlib.suppress(Exception):  # never uninstalled: other tests on this server rely on it
                execute(scene.admin, "INSTALL SONAME 'metadata_lock_info'")
        literals = " ".join(f"'{form.replace(chr(39), chr(39) * 2)}'," for form in sorted(forms))
        head = f"SELECT SLEEP(20), CONCAT({literals} "
        opening = "'IDENTIFIED BY ''"
        pad = f"/* {'x' * (200 - len(head) - len(opening) - 24)} */ "
        assert len(head + pad + opening) < 190, "the cut literal must start before the cut"
        holder = scene.open("app_a")
        scene.jobs.append(Background(holder, f"{head}{pad}{opening}{cut[:8]} {cut}''') FROM t"))
        wait_for(lambda: execute(scene.admin, "SELECT COMMAND FROM information_schema.PROCESSLIST "
                                              f"WHERE ID = {session_id(holder)}")[0][0] == "Query",
                 message="the holder's statement never started")
        waiter, _job = scene.background("ALTER TABLE t ADD COLUMN z INT")
        scene.wait_waiting(waiter)
        ini = write_ini(tmp_path)
        for args in (["locks"], ["--format", "json", "locks"], ["locks", "kill", "--roots", "--confirm-risk",
                                                                  CONFIRM_TOKEN]):
            done = dbguard(ini, mysql_url, *args, extra_env={"DBGUARD_KILL_GRACE_MS": "300"})
            outputs.append((args, done.returncode, done.stdout + done.stderr))
        _job.join()
    finally:
        scene.close()
    assert [code for _, code, _ in outputs] == [1, 1, 0], outputs  # locks: somebody waits
    everything = "\n".join(text for _, _, text in outputs) + _dbguard_rows(mysql_url)
    secrets = [form.split("'")[1] for form in forms] + [cut[:8]]
    assert not [s for s in secrets if s in everything], outputs
    # The holder was ended: by its cancel (which frees an autocommit statement's lock), else terminated.
    assert "IDENTIFIED BY ''***" in everything and re.search(r"\b(cancelled|terminated)\b", outputs[2][2]), outputs


_ENV_WITH_ITS_OWN_PASSWORD = '''import os

import sqlalchemy as sa
from alembic import context

config = context.config
url = sa.engine.make_url(config.get_main_option("sqlalchemy.url"))
if context.is_offline_mode():
    context.configure(url=url, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    # The password comes from a vault (here: the environment), never from dbguard's own settings.
    engine = sa.create_engine(url.set(password=os.environ["APP_DB_PASSWORD"]), poolclass=sa.pool.NullPool)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=None)
        with context.begin_transaction():
            context.run_migrations()
'''


def test_the_password_of_the_connection_env_py_builds_is_masked_in_free_text(pg_url: str, tmp_path: Path) -> None:
    """env.py builds its own URL from a vault: dbguard learns that password from the connection env.py
    hands to Alembic, and masks it even where no pattern would find it (a bare word in an error)."""
    from tests.projects import make_project

    secret = _canary("EnvPy")
    failing = ("r2", "import os\nraise RuntimeError('login app/' + os.environ['APP_DB_PASSWORD'] + ' rejected')",
               "pass")
    table = ("r1", 'op.create_table("t", sa.Column("id", sa.Integer, primary_key=True))', 'op.drop_table("t")')
    ini = make_project(tmp_path, pg_url, [table, failing])  # the test server trusts every password
    (ini.parent / "migrations" / "env.py").write_text(_ENV_WITH_ITS_OWN_PASSWORD)
    outputs = []
    for args in (["upgrade"], ["--format", "json", "upgrade"], ["status"], ["--format", "json", "history"]):
        done = run_dbguard(ini, pg_url, *args, env={"APP_DB_PASSWORD": secret})
        outputs.append(done.stdout + done.stderr)
    assert "login app/*** rejected" in outputs[0], outputs[0]  # the error was shown, masked
    assert secret not in "\n".join(outputs) + _dbguard_rows(pg_url), outputs
