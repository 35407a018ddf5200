"""Fault injection, shared by tests/test_faults.py (one trial per fault and engine, in CI) and
benchmarks/faults.py (the whole matrix and a randomized soak): a project whose second revision can
be interrupted anywhere, the ways to reach a point, and the invariant that must hold afterwards."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from dbguard import api
from dbguard.dialects import for_sqlalchemy_dialect
from dbguard.settings import load_settings
from tests.dbs import backend_of
from tests.guardrun import catalog, cli_env, command, connect, ledger, versions
from tests.projects import make_project

SLEEP = {"postgresql": "SELECT pg_sleep(60)", "mysql": "SELECT SLEEP(60)"}
# The engines a trial runs on, as parameters naming the database fixtures.
SERVERS = [pytest.param("pg_url", id="postgresql"), pytest.param("mysql_url", id="mysql")]
ALL = [pytest.param("sqlite_url", id="sqlite"), *SERVERS]

R1 = ("r1", 'op.create_table("t", sa.Column("id", sa.Integer, primary_key=True))', 'op.drop_table("t")')


def r2(engine: str, seen: Path | None = None, sleep: bool = True) -> tuple[str, str, str]:
    """Two DDL operations with a long statement between them (a server), or a plain pair (SQLite);
    its downgrade undoes each operation, so a half-applied r2 can be repaired. ``seen`` gets the
    migration session's client_connection_check_interval (PostgreSQL)."""
    body = 'op.add_column("t", sa.Column("c", sa.Integer))\n'
    if seen is not None:
        body += ("from alembic import context\nif not context.is_offline_mode():\n"
                 f"    open({str(seen)!r}, 'w').write(op.get_bind().exec_driver_sql("
                 "'SHOW client_connection_check_interval').scalar())\n")
    if engine in SLEEP and sleep:
        body += f'op.execute("{SLEEP[engine]}")\n'
    body += 'op.add_column("t", sa.Column("d", sa.Integer))'
    return ("r2", body, 'op.drop_column("t", "d")\nop.drop_column("t", "c")')


def settings(ini: Path, url: str, **more: Any):
    return load_settings({"config_path": str(ini), "url": url, **more}, environ={})


def stopped(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "T"
    except OSError:
        return False


def user_tables(url: str) -> dict[str, Any]:
    """The schema as a test sees it, dbguard's own tables left out."""
    tables = catalog(url)["tables"]
    return {name: t for name, t in tables.items() if not name.startswith("dbguard_")}


def running_statements(url: str) -> list[str]:
    """Recorded sessions of any run that still run a statement."""
    runs, _ = ledger(url)
    found = []
    with connect(url) as conn:
        dialect = for_sqlalchemy_dialect(conn.dialect)
        if dialect.run_lock_kind != "sql":
            return []
        for run in runs:
            for recorded in json.loads(run["sessions"] or "[]"):
                statement = dialect.session_command(str(recorded["id"]), recorded["identity"])
                if dialect.is_running(conn.execute(sa.text(statement.sql), statement.params).scalar()):
                    found.append(str(recorded["id"]))
    return found


def violations(ini: Path, url: str, at: dict[str, dict[str, Any]]) -> list[str]:
    """What breaks the invariant: HEALTHY means alembic_version is what the ledger recorded, the schema
    is the one the target had at those revisions (``at``: revision -> schema seen there), and nothing
    of any run still runs on the server."""
    if api.status(settings(ini, url)).state != "HEALTHY":
        return []
    found = [f"statement still running in session {s}" for s in running_statements(url)]
    runs, _ = ledger(url)
    last = [r for r in runs if r["status"] not in ("refused", "busy")][-1]
    recorded = sorted((last["revisions_after"] or "").split())
    if versions(url) != recorded:
        found.append(f"alembic_version {versions(url)} but the ledger recorded {recorded}")
    revision = " ".join(versions(url))
    if revision in at and user_tables(url) != at[revision]:
        found.append(f"the schema at {revision or 'base'} is not the one the target had there")
    return found


def invariant(ini: Path, url: str, at: dict[str, dict[str, Any]]) -> None:
    assert violations(ini, url, at) == []


def project(tmp_path: Path, url: str, seen: Path | None = None,
            sleep: bool = True) -> tuple[Path, dict[str, dict[str, Any]]]:
    """r1 applied (its schema remembered), r2 pending."""
    engine = backend_of(url)
    ini = make_project(tmp_path, url, [R1, r2(engine, seen, sleep)])
    assert api.upgrade(settings(ini, url), "r1").exit_code == 0
    return ini, {"r1": user_tables(url)}


def running_sleep(url: str) -> bool:
    with connect(url) as conn:
        if backend_of(url) == "postgresql":
            sql = "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE 'SELECT pg_sleep%%'"
        else:
            sql = "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE COMMAND = 'Query' AND INFO LIKE 'SELECT SLEEP%%'"
        return bool(conn.exec_driver_sql(sql + f" AND {'datname' if backend_of(url) == 'postgresql' else 'DB'} = "
                                         f"'{sa.engine.make_url(url).database}'").scalar())


# A job a shell started in the background (a CI runner) inherits SIGINT ignored; dbguard must stop on
# it all the same. The process under test is started that way, whatever this test process inherited.
_IGNORING_SIGINT = ("import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_IGN); "
                    "os.execv(sys.executable, [sys.executable, '-m', 'dbguard.cli', *sys.argv[1:]])")


def start_ignoring_sigint(ini: Path, url: str, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    arguments = command(ini, url, args)[3:]  # after ``python -m dbguard.cli``
    return subprocess.Popen([sys.executable, "-c", _IGNORING_SIGINT, *arguments], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env(env),
                            cwd=ini.parent)


def finish(proc: subprocess.Popen[str]) -> tuple[int, str]:
    out, err = proc.communicate(timeout=120)
    return proc.returncode, out + err


def recover(ini: Path, url: str) -> Any:
    done = api.rollback(settings(ini, url), confirm=lambda prompt: prompt.token)
    assert done.exit_code == 0, done
    assert api.status(settings(ini, url)).state == "HEALTHY"
    return done


