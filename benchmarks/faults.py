"""Fault injection at scale: every fault at every point, on every engine, recovered both ways, and a
randomized soak. CI runs one trial per fault and engine (tests/test_faults.py); this runs them all.

Run:  .venv/bin/python benchmarks/faults.py [--engines postgresql,mariadb,sqlite] [--soak 200] [--seed 1] [--write]

A trial: a fresh database at r1 (its schema remembered), then `dbguard upgrade head` where r2 adds two
columns with a statement between them (a server-side sleep on PostgreSQL and MariaDB; on MariaDB's
`mid-alter-copy` point r2 rebuilds a 400,000-row table with ALGORITHM=COPY instead). The fault is
delivered at the point, deterministically: the process stops itself there (DBGUARD_TEST_PAUSE_AT) or
the server shows its statement running. Then the recovery: `dbguard rollback --yes`, or `dbguard
resolve` (followed by a rollback if the schema does not check out, as a person would).

After every command, and whenever status says HEALTHY, the invariant is checked (tests/faultkit.py):
alembic_version equals what the ledger recorded, the schema equals the one the target had at those
revisions, and no statement of any run still runs. A trial that breaks it is a disagreement (goal: 0).
Recovery time is from the first recovery command's start to HEALTHY, whole processes.

Not applicable: connection faults (cut, freeze) on SQLite (no server); a mid-statement point on SQLite
(no statement runs on a server); sys.exit and os._exit happen inside the migration, their point only.
Server URLs come from DBGUARD_TEST_POSTGRES_URL / DBGUARD_TEST_MYSQL_URL (defaults: the local servers).
--write puts the matrix into the "Faults" section of docs/benchmarks.md (between its markers).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import signal
import statistics
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from docsection import machine, write_section

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.dbs import create_database, drop_database
from tests.faultkit import R1, SLEEP, running_sleep, stopped, user_tables, violations
from tests.guardrun import run_dbguard, start_dbguard
from tests.projects import make_project, wait_for
from tests.tcpproxy import Proxy

SERVERS = {
    "postgresql": os.environ.get("DBGUARD_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"),
    "mariadb": os.environ.get("DBGUARD_TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306/test"),
}
FAULTS = ("SIGKILL", "SIGTERM", "SIGINT", "SIGSTOP", "sys.exit", "os._exit", "cut", "freeze")
POINTS = ("before-step", "between-ops", "mid-statement", "mid-alter-copy", "ledger-write:step-start",
          "ledger-write:step-end", "ledger-write:run-end", "in-migration")
RECOVERIES = ("rollback", "resolve")
# Short bounds so a frozen connection ends quickly; everything else keeps dbguard's defaults.
# The risk gate is off: r2's ALGORITHM=COPY rebuild is a high finding it would refuse, and these
# trials are about faults, not about the plan.
FAST = {"DBGUARD_STATEMENT_TIMEOUT_MS": "5000", "DBGUARD_FROZEN_MARGIN_S": "2", "DBGUARD_CONNECT_TIMEOUT_S": "2",
        "DBGUARD_LEDGER_LOCK_TIMEOUT_MS": "2000", "DBGUARD_FAIL_ON": "none"}


def applies(engine: str, fault: str, point: str) -> bool:
    if fault in ("sys.exit", "os._exit"):
        return point == "in-migration"
    if point == "in-migration":
        return False
    if engine == "sqlite" and (fault in ("cut", "freeze") or point in ("mid-statement", "mid-alter-copy")):
        return False
    if point == "mid-alter-copy" and engine != "mariadb":
        return False
    # The ledger shares the path with the migration: for these faults, the same as before-step.
    return not (fault in ("cut", "freeze") and point.startswith("ledger-write"))


def revisions(engine: str, point: str, fault: str) -> list[Any]:
    if point == "mid-alter-copy":
        r1 = ("r1", ("op.execute('CREATE TABLE t (id INT PRIMARY KEY, v INT) ENGINE=InnoDB')\n"
                    "op.execute('INSERT INTO t SELECT seq, seq FROM seq_1_to_400000')"), 'op.drop_table("t")')
        r2 = ("r2", ('op.execute("ALTER TABLE t ADD COLUMN c INT, ALGORITHM=COPY")\n'
                    'op.add_column("t", sa.Column("d", sa.Integer))'), 'op.drop_column("t", "d")\nop.drop_column("t", "c")')
        return [r1, r2]
    body = 'op.add_column("t", sa.Column("c", sa.Integer))\n'
    if point == "mid-statement":
        body += f'op.execute("{SLEEP["mysql" if engine == "mariadb" else engine]}")\n'
    if fault in ("sys.exit", "os._exit"):
        call = "sys.exit(0)" if fault == "sys.exit" else "os._exit(3)"
        body += f"import os, sys\nfrom alembic import context\nif not context.is_offline_mode(): {call}\n"
    body += 'op.add_column("t", sa.Column("d", sa.Integer))'
    return [R1, ("r2", body, 'op.drop_column("t", "d")\nop.drop_column("t", "c")')]


def altering(url: str) -> bool:
    from tests.guardrun import connect

    with connect(url) as conn:
        return bool(conn.exec_driver_sql(
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE COMMAND = 'Query' AND INFO LIKE "
            f"'ALTER TABLE t ADD COLUMN c%%' AND DB = '{url.rsplit('/', 1)[1]}'").scalar())


def trial(engine: str, fault: str, point: str, recovery: str, folder: Path) -> dict[str, Any]:
    url = (f"sqlite:///{folder / 'fault.db'}" if engine == "sqlite" else
           create_database(SERVERS[engine], "mysql" if engine == "mariadb" else engine))
    proxy = None
    result: dict[str, Any] = {"engine": engine, "fault": fault, "point": point, "recovery": recovery}
    try:
        ini = make_project(folder, url, revisions(engine, point, fault))
        assert run_dbguard(ini, url, "upgrade", "r1").returncode == 0
        at = {"r1": user_tables(url)}
        env = dict(FAST)
        pause = {"before-step": "before-step:r2", "between-ops": "statement:r2#2"}.get(point, point)
        if point.startswith(("before-step", "between-ops", "ledger-write")):
            env["DBGUARD_TEST_PAUSE_AT"] = pause
        if fault in ("cut", "freeze"):
            proxy = Proxy(url)
        proc = start_dbguard(ini, proxy.url(url) if proxy else url, "upgrade", "head", env=env)
        try:
            if "DBGUARD_TEST_PAUSE_AT" in env:
                wait_for(lambda: stopped(proc.pid) or proc.poll() is not None, timeout=60, message="never paused")
            elif point == "mid-statement":
                wait_for(lambda: running_sleep(url) or proc.poll() is not None, timeout=60,
                         message="never ran its statement")
            elif point == "mid-alter-copy":
                wait_for(lambda: altering(url) or proc.poll() is not None, timeout=60, message="never ran its ALTER")
            if point in ("mid-statement", "mid-alter-copy") and proc.poll() is not None:
                raise AssertionError(f"dbguard ended (exit {proc.returncode}) before the point: "
                                     + proc.communicate()[1].strip()[-300:])
            faulted = deliver(fault, proc, proxy, ini, url)
            result["sigstop_rollback"] = faulted
            proc.communicate(timeout=120)
        finally:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGCONT)
                proc.kill()
                proc.communicate()
            if proxy is not None:
                proxy.close()
        result["exit"] = proc.returncode
        problems = violations(ini, url, at)
        started = time.monotonic()
        for command in recover_commands(recovery):
            if command_healthy(ini, url):
                break
            run_dbguard(ini, url, *command, timeout=300)
            problems += violations(ini, url, at)
        result["healthy"] = command_healthy(ini, url)
        result["recovery_s"] = time.monotonic() - started
        problems += violations(ini, url, at)
        result["violations"] = problems
    finally:
        if engine != "sqlite":
            drop_database(url)
    return result


def deliver(fault: str, proc: Any, proxy: Proxy | None, ini: Path, url: str) -> int | None:
    """Deliver the fault to a process stopped at its point (or running its statement); for SIGSTOP,
    the exit code of the rollback tried while it is stopped (4: alive, never taken over)."""
    was_stopped = stopped(proc.pid)
    if fault in ("SIGKILL", "SIGTERM", "SIGINT"):
        proc.send_signal(getattr(signal, fault))
    elif fault == "SIGSTOP":
        if not was_stopped:
            proc.send_signal(signal.SIGSTOP)
            wait_for(lambda: stopped(proc.pid), timeout=30, message="never stopped")
        code = run_dbguard(ini, url, "rollback", "--yes", timeout=300).returncode
        proc.send_signal(signal.SIGCONT)
        return code
    elif fault == "cut" and proxy is not None:
        proxy.cut()
    elif fault == "freeze" and proxy is not None:
        proxy.freeze()
    if was_stopped:
        proc.send_signal(signal.SIGCONT)
    return None


def recover_commands(recovery: str) -> list[tuple[str, ...]]:
    if recovery == "resolve":
        return [("resolve", "--reason", "checked by the fault benchmark", "--confirm-risk", "CONFIRM_RISK"),
                ("rollback", "--yes"), ("rollback", "--yes")]
    return [("rollback", "--yes"), ("rollback", "--yes")]


def command_healthy(ini: Path, url: str) -> bool:
    return run_dbguard(ini, url, "status", timeout=120).returncode == 0


def matrix(engines: list[str]) -> list[tuple[str, str, str, str]]:
    return [(e, f, p, r) for e in engines for f in FAULTS for p in POINTS for r in RECOVERIES if applies(e, f, p)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engines", default="postgresql,mariadb,sqlite")
    parser.add_argument("--soak", type=int, default=200, help="randomized trials after the matrix")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--matrix-only", action="store_true")
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    engines = args.engines.split(",")
    cells = matrix(engines)
    rng = random.Random(args.seed)
    plan = [("matrix", cell) for cell in cells]
    if not args.matrix_only:
        plan += [("soak", rng.choice(cells)) for _ in range(args.soak)]
    results: list[dict[str, Any]] = []
    started = time.monotonic()
    for i, (kind, (engine, fault, point, recovery)) in enumerate(plan, 1):
        with tempfile.TemporaryDirectory(prefix="dbguard-fault-") as folder:
            try:
                result = trial(engine, fault, point, recovery, Path(folder))
            except Exception as exc:  # noqa: BLE001 - a trial that could not run is reported, not hidden
                result = {"engine": engine, "fault": fault, "point": point, "recovery": recovery,
                          "error": f"{type(exc).__name__}: {exc}", "violations": [], "healthy": False}
        result["kind"] = kind
        results.append(result)
        flag = "DISAGREE " + "; ".join(result["violations"]) if result["violations"] else (
            result.get("error") or ("ok" if result.get("healthy") else "not healthy"))
        print(f"[{i}/{len(plan)}] {kind} {engine} {fault} @ {point} -> {recovery}: exit {result.get('exit')}, "
              f"{flag}", flush=True)
    print(f"{len(results)} trials in {time.monotonic() - started:.0f} s")
    text = report(results, engines, args)
    print(text)
    if args.write:
        write_section("faults", text)


def report(results: list[dict[str, Any]], engines: list[str], args: Any) -> str:
    rows = defaultdict(list)
    for r in results:
        rows[(r["engine"], r["fault"])].append(r)
    lines = [
        "## Faults",
        "",
        (f"`benchmarks/faults.py --soak {args.soak} --seed {args.seed}`, {machine()}, 1-minute load "
        f"{os.getloadavg()[0]:.1f} at the end. Every fault at every point where it applies, on every engine, "
        f"recovered by `dbguard rollback --yes` and by `dbguard resolve` (then a rollback where the schema does "
        f"not check out), then {args.soak} trials drawn at random from the same matrix. A disagreement is a "
        "trial after which a command exited 0 or status said HEALTHY while alembic_version, the schema or a "
        "still-running statement said otherwise. Recovery: from the first recovery command to HEALTHY, whole "
        "processes."),
        "",
        "Run: `.venv/bin/python benchmarks/faults.py --write`",
        "",
        ("| engine | fault | points | trials | disagreements | not HEALTHY after recovery | could not run | "
        "median recovery (s) |"),
        "|---|---|---|---|---|---|---|---|",
    ]
    for engine in engines:
        for fault in FAULTS:
            trials = rows.get((engine, fault), [])
            if not trials:
                continue
            recovered = [t["recovery_s"] for t in trials if "recovery_s" in t and t.get("healthy")]
            points = ", ".join(sorted({t["point"] for t in trials}))
            lines.append(
                f"| {engine} | {fault} | {points} | {len(trials)} | "
                f"{sum(1 for t in trials if t['violations'])} | "
                f"{sum(1 for t in trials if not t.get('healthy') and 'error' not in t)} | "
                f"{sum(1 for t in trials if 'error' in t)} | "
                f"{statistics.median(recovered):.2f} |" if recovered else
                f"| {engine} | {fault} | {points} | {len(trials)} | "
                f"{sum(1 for t in trials if t['violations'])} | - | {sum(1 for t in trials if 'error' in t)} | - |")
    total = len(results)
    bad = sum(1 for r in results if r["violations"])
    stop = [r.get("sigstop_rollback") for r in results if r["fault"] == "SIGSTOP"]
    lines += ["", (f"{total} trials, {bad} disagreements. A rollback tried while a deploy was stopped (SIGSTOP) "
                  f"exited {dict(Counter(stop))} (4: the stopped process is alive and never taken over)."),
              "", "Not applicable: " + "; ".join(sorted({
                  f"{f} on {e}" if e == "sqlite" and f in ("cut", "freeze") else
                  f"{f} at {p} on {e} (the ledger shares the migration's path: as before-step)"
                  if f in ("cut", "freeze") and p.startswith("ledger-write") else f"{p} on {e}"
                  for e in engines for f in FAULTS for p in POINTS
                  if not applies(e, f, p) and f not in ("sys.exit", "os._exit") and p != "in-migration"}))]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
