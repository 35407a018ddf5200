"""The emergency lane and the watchdog, timed on real PostgreSQL and MariaDB with default settings.

Run:  .venv/bin/python benchmarks/rollback_bench.py [--engines postgresql,mysql] [--runs 5] [--stall-runs 3] [--write]

1. Rollback: migrations_example at 0002, then `-x fail=1 upgrade head` fails (0003 applied, 0004
   failed; half-applied on MariaDB); an application session holds `BEGIN; SELECT * FROM users` idle.
   Timed: the whole `dbguard rollback --yes` process, start to exit (it must end the blocker to get
   through). Median of --runs, each on a fresh database. Target: under 3 s.
2. Reader stall: a table of 100 rows; a transaction reads it and stays open; the next revision's
   `ALTER TABLE t1 ADD COLUMN` queues behind it; a reader runs `SELECT count(*) FROM t1` every 50 ms.
   The transaction commits HOLD_S after the ALTER was first seen waiting. The same scene is run by
   `dbguard upgrade head` and by plain `alembic upgrade head`, one after the other in the same run;
   the reader's longest query is its worst stall. Worst over --stall-runs. Target (guarded): within
   1.5 x max_blocking_ms.

No DBGUARD_* variable reaches the measured processes: these are dbguard's defaults. Server URLs come
from DBGUARD_TEST_POSTGRES_URL / DBGUARD_TEST_MYSQL_URL (defaults: the local servers). Every
database is created for one measurement and dropped after it. --write puts the results into the
"Rollback and watchdog" section of docs/benchmarks.md (between its markers, nothing else touched).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from docsection import machine, server_version, write_section

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dbguard.settings import Settings
from tests.dbs import create_database, drop_database
from tests.lanekit import (
    AppSession,
    Cleanup,
    Reader,
    Server,
    alembic,
    dbguard,
    example_ini,
    start_alembic,
    start_dbguard,
    wait_waiting,
)
from tests.projects import make_project

SERVERS = {
    "postgresql": os.environ.get("DBGUARD_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"),
    "mysql": os.environ.get("DBGUARD_TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306/test"),
}
NAMES = {"postgresql": "PostgreSQL", "mysql": "MariaDB"}
DEFAULTS = Settings()
ROLLBACK_TARGET_S = 3.0
STALL_TARGET_MS = 1.5 * DEFAULTS.max_blocking_ms
HOLD_S = 5.0
T1 = ("w1_t1", """
op.create_table("t1", sa.Column("id", sa.Integer, primary_key=True))
op.bulk_insert(sa.table("t1", sa.column("id", sa.Integer)), [{"id": i} for i in range(1, 101)])
""", 'op.drop_table("t1")')
ADD = ("w2_add", 'op.add_column("t1", sa.Column("c", sa.Integer))', 'op.drop_column("t1", "c")')


def check(proc: subprocess.CompletedProcess[str], code: int, what: str) -> None:
    if proc.returncode != code:
        raise SystemExit(f"{what}: exit {proc.returncode}, expected {code}\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")


def one_rollback(engine: str, folder: Path) -> tuple[float, int]:
    """(wall seconds of `dbguard rollback --yes`, dbguard's own total in ms)."""
    url = create_database(SERVERS[engine], engine)
    cleanup = Cleanup()
    try:
        ini = example_ini(folder, url)
        check(dbguard(ini, "upgrade", "0002_orders", fast=False), 0, "upgrade 0002")
        check(dbguard(ini, "-x", "fail=1", "upgrade", "head", fast=False), 5, "the failing deploy")
        server = cleanup.add(Server(url))
        app = cleanup.add(AppSession(url, "users"))
        started = time.perf_counter()
        proc = dbguard(ini, "--format", "json", "rollback", "--yes", fast=False)
        wall = time.perf_counter() - started
        check(proc, 0, "rollback")
        if server.alive(app.id):
            raise SystemExit("the rollback succeeded but the blocker is alive: nothing was measured")
        phases = dict(json.loads(proc.stdout).get("phases") or [])
        return wall, int(phases.get("total", -1))
    finally:
        cleanup.close()
        drop_database(url, SERVERS[engine])


def one_stall(engine: str, folder: Path, guarded: bool) -> tuple[float, str]:
    """(the reader's worst stall in ms, what the migration printed last)."""
    url = create_database(SERVERS[engine], engine)
    cleanup = Cleanup()
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            ini = make_project(folder, url, [T1, ADD], name=f"stall_{'g' if guarded else 'p'}_{time.monotonic_ns()}")
        check(alembic(ini, "upgrade", T1[0]), 0, "upgrade w1")
        server = cleanup.add(Server(url))
        blocker = cleanup.add(AppSession(url, "t1"))
        reader = cleanup.add(Reader(url, "t1"))
        proc = cleanup.add(start_dbguard(ini, "upgrade", "head", fast=False) if guarded
                           else start_alembic(ini, "upgrade", "head"))
        wait_waiting(server, like="alter table")
        time.sleep(HOLD_S)  # the blocking transaction's length is the scene
        blocker.commit()
        out, err = proc.communicate(timeout=120)
        worst = reader.stop() * 1000
        if proc.returncode != 0:
            raise SystemExit(f"{'dbguard' if guarded else 'alembic'} upgrade failed: {out[-1500:]}{err[-1500:]}")
        return worst, (out.strip().splitlines() or [""])[0]
    finally:
        cleanup.close()
        drop_database(url, SERVERS[engine])


def engine_version(engine: str) -> str:
    return server_version(SERVERS[engine]).removeprefix("PostgreSQL ")


def require_mdl_source(engine: str) -> None:
    """MariaDB finds blockers exactly only through metadata_lock_info; without it the kill policy
    refuses sessions whose locks' database it cannot tell, and the rollback would measure nothing."""
    if engine != "mysql":
        return
    import sqlalchemy as sa

    engine_ = sa.create_engine(SERVERS[engine], poolclass=sa.pool.NullPool)
    try:
        with engine_.connect() as conn:
            version = str(conn.exec_driver_sql("SELECT version()").scalar())
            active = conn.exec_driver_sql("SELECT COUNT(*) FROM information_schema.PLUGINS WHERE "
                                          "PLUGIN_NAME = 'METADATA_LOCK_INFO' AND PLUGIN_STATUS = 'ACTIVE'").scalar()
    finally:
        engine_.dispose()
    if "mariadb" in version.lower() and not active:
        raise SystemExit("MariaDB without the metadata_lock_info plugin: run INSTALL SONAME 'metadata_lock_info' "
                         "first (what `dbguard rollback --install-plugin` does)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engines", default="postgresql,mysql")
    parser.add_argument("--runs", type=int, default=5, help="rollbacks per engine (median)")
    parser.add_argument("--stall-runs", type=int, default=3, help="guarded/plain pairs per engine (worst)")
    parser.add_argument("--write", action="store_true", help="put the results into docs/benchmarks.md")
    args = parser.parse_args()
    engines = [e for e in args.engines.split(",") if e]
    rollback_rows, stall_rows, versions, verdicts = [], [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for engine in engines:
            require_mdl_source(engine)
            versions.append(f"{NAMES[engine]} {engine_version(engine)}")
            samples = [one_rollback(engine, folder / f"rb{i}") for i in range(args.runs)]
            walls = sorted(s[0] for s in samples)
            median = statistics.median(walls)
            inside = statistics.median(s[1] for s in samples)
            ok = median < ROLLBACK_TARGET_S
            verdicts.append(ok)
            print(f"{engine} rollback: {', '.join(f'{w:.2f}' for w in walls)} s; median {median:.2f} s",
                  file=sys.stderr)
            rollback_rows.append(f"| {NAMES[engine]} | {median:.2f} | {walls[0]:.2f}–{walls[-1]:.2f} | "
                                 f"{inside / 1000:.2f} | {'met' if ok else 'NOT met'} |")

            guarded, plain = [], []
            for _ in range(args.stall_runs):
                guarded.append(one_stall(engine, folder, guarded=True)[0])
                plain.append(one_stall(engine, folder, guarded=False)[0])
                print(f"{engine} stall: guarded {guarded[-1]:.0f} ms, plain alembic {plain[-1]:.0f} ms",
                      file=sys.stderr)
            ok = max(guarded) <= STALL_TARGET_MS
            verdicts.append(ok)
            stall_rows.append(f"| {NAMES[engine]} | {max(guarded):.0f} ({statistics.median(guarded):.0f}) | "
                              f"{max(plain):.0f} ({statistics.median(plain):.0f}) | "
                              f"{max(plain) / max(guarded):.1f}x | {'met' if ok else 'NOT met'} |")

    s = DEFAULTS
    text = "\n".join([
        "## Rollback and watchdog",
        "",
        (f"`.venv/bin/python benchmarks/rollback_bench.py --write`; {machine()}; {', '.join(versions)}. "
        f"Default settings: lock_timeout_ms {s.lock_timeout_ms}, max_blocking_ms {s.max_blocking_ms}, "
        f"watchdog_interval_ms {s.watchdog_interval_ms}, lock_retries {s.lock_retries}, "
        f"retry_backoff_ms {s.retry_backoff_ms}, rollback_budget_s {s.rollback_budget_s:g}."),
        "",
        (f"**`dbguard rollback --yes` with one idle-in-transaction blocker** (migrations_example: 0004 failed "
        f"after 0003; the blocker read `users`). Whole process, start to exit; median of {args.runs}, a fresh "
        f"database each. Target: under {ROLLBACK_TARGET_S:g} s."),
        "",
        "| engine | median (s) | min–max (s) | dbguard's own total, median (s) | target |",
        "|---|---|---|---|---|",
        *rollback_rows,
        "",
        (f"**Reader's worst stall during a contended migration** (`ALTER TABLE t1 ADD COLUMN` queued behind a "
        f"transaction that commits {HOLD_S:g} s after the ALTER queued; a reader queries t1 every 50 ms). "
        f"Worst (median) over {args.stall_runs} runs of each, alternating, in the same run. "
        f"Target: guarded within 1.5 x max_blocking_ms = {STALL_TARGET_MS:.0f} ms."),
        "",
        "| engine | `dbguard upgrade` worst stall, ms | plain `alembic upgrade` worst stall, ms | ratio | target |",
        "|---|---|---|---|---|",
        *stall_rows,
        "",
        ("The interpreter start and imports are part of the rollback's wall time (dbguard's own total is "
        "the second figure). Guarded, the reader waits at most about max_blocking_ms plus one watchdog "
        "interval and the cancel: the watchdog cancels the queued ALTER, which is retried after a backoff "
        "and goes through once the transaction has committed."),
    ])
    print(text)
    if args.write:
        write_section("rollback", text)
    if not all(verdicts):
        sys.exit(1)


if __name__ == "__main__":
    main()
