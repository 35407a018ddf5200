"""`dbguard locks --watch`: the cost of one refresh with 90 sessions open, on real PostgreSQL and MariaDB.

Run:  .venv/bin/python benchmarks/watch_refresh.py [--engines postgresql,mysql] [--sessions 90] [--refreshes 200]
      [--oneshots 5] [--write]

The scene, on a fresh database per engine, --sessions client sessions in all: CHAINS tables each with
a chain (a transaction idle after reading the table, an ALTER TABLE queued behind it, a reader queued
behind the ALTER); a quarter of the rest idle in a transaction holding a row lock nobody waits for;
the others idle. Timed:

1. One refresh of a watch: the next snapshot of the watch on its already open session (the run-lock
   holder, one inspect_locks, the filters) plus rendering it as a text frame and as a jsonl line;
   the interval's sleep is not counted. The first snapshot (connecting, checking rights) is shown
   apart and left out. Median and p95 of --refreshes. Target: under 50 ms.
2. For comparison, a whole `dbguard locks` process, start to exit (median of --oneshots).

Server URLs come from DBGUARD_TEST_POSTGRES_URL / DBGUARD_TEST_MYSQL_URL (defaults: the local
servers). Each database is created for the measurement and dropped after it, every session of the
scene ended first. --write puts the results into the "watch-refresh" section of docs/benchmarks.md
(between its markers, nothing else touched).
"""

from __future__ import annotations

import argparse
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

from dbguard import output
from dbguard.locks import killer
from dbguard.settings import load_settings
from dbguard.target import load_target
from tests import lockscene
from tests.dbs import create_database, drop_database
from tests.lockscene import Scene, execute, write_ini

SERVERS = {
    "postgresql": os.environ.get("DBGUARD_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"),
    "mysql": os.environ.get("DBGUARD_TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306/test"),
}
NAMES = {"postgresql": "PostgreSQL", "mysql": "MariaDB"}
CHAINS = 10
TARGET_MS = 50.0
# The scene's queued ALTERs must outlast the measurement (the scene's default bound is 30 s).
lockscene.DDL_WAIT_S = 600


def build_scene(url: str, sessions: int) -> Scene:
    """CHAINS chains of three, a quarter of the rest holding a row lock, the others idle."""
    if sessions < CHAINS * 3:
        raise SystemExit(f"--sessions must be at least {CHAINS * 3}: {CHAINS} chains of three")
    scene = Scene(url)
    try:
        for i in range(CHAINS):
            execute(scene.admin, f"CREATE TABLE t{i} (id INT PRIMARY KEY)")
            execute(scene.admin, f"INSERT INTO t{i} VALUES (1)")
        execute(scene.admin, "CREATE TABLE h (id INT PRIMARY KEY, v INT)")
        rest = sessions - CHAINS * 3
        holders = rest // 4
        if holders:
            execute(scene.admin, "INSERT INTO h VALUES " + ", ".join(f"({k}, 0)" for k in range(holders)))
        for i in range(CHAINS):
            scene.chain(f"t{i}")
        for k in range(holders):
            conn = scene.open("holder")
            execute(conn, "BEGIN")
            execute(conn, f"UPDATE h SET v = v + 1 WHERE id = {k}")
        for _ in range(rest - holders):
            scene.open("idle")
    except BaseException:
        scene.close()
        raise
    return scene


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def measure(engine: str, folder: Path, sessions: int, refreshes: int, oneshots: int) -> dict[str, float | str]:
    url = create_database(SERVERS[engine], engine)
    scene = None
    try:
        folder.mkdir(parents=True)
        ini = write_ini(folder)
        scene = build_scene(url, sessions)
        target = load_target(load_settings({"config_path": str(ini), "url": url}, environ={}), url_is_enough=True)
        # The interval's sleep is the watch's idle time, not its cost: left out.
        watch = killer.watch(target, 1.0, sleep=lambda _s: None)
        try:
            started = time.perf_counter()
            first = next(watch)
            first_ms = (time.perf_counter() - started) * 1000
            if len(first.tree.roots) != CHAINS or len(first.tree.sessions) != CHAINS * 3:
                raise SystemExit(f"{engine}: the watch saw {len(first.tree.roots)} roots and "
                                 f"{len(first.tree.sessions)} sessions, not the scene's {CHAINS} chains of three")
            times = []
            for _ in range(refreshes):
                started = time.perf_counter()
                snapshot = next(watch)
                output.render_frame(snapshot, in_place=True)
                output.render(snapshot, "jsonl")
                times.append((time.perf_counter() - started) * 1000)
        finally:
            watch.close()
        env = {**os.environ, "DBGUARD_URL": url}
        walls = []
        for _ in range(oneshots):
            started = time.perf_counter()
            proc = subprocess.run([sys.executable, "-m", "dbguard", "-c", str(ini), "locks"], env=env,
                                  capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
                                  check=False)
            walls.append(time.perf_counter() - started)
            if proc.returncode != 1:  # the chains wait: exit 1
                raise SystemExit(f"dbguard locks: exit {proc.returncode}\n{proc.stdout[-1500:]}{proc.stderr[-1500:]}")
        return {"source": first.tree.source, "first_ms": first_ms, "median_ms": statistics.median(times),
                "p95_ms": percentile(times, 0.95), "max_ms": max(times), "oneshot_s": statistics.median(walls)}
    finally:
        if scene is not None:
            scene.close()
        drop_database(url, SERVERS[engine])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engines", default="postgresql,mysql")
    parser.add_argument("--sessions", type=int, default=90, help="client sessions of the scene")
    parser.add_argument("--refreshes", type=int, default=200, help="timed refreshes per engine")
    parser.add_argument("--oneshots", type=int, default=5, help="whole `dbguard locks` processes per engine")
    parser.add_argument("--write", action="store_true", help="put the results into docs/benchmarks.md")
    args = parser.parse_args()
    rows, versions, verdicts = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for engine in [e for e in args.engines.split(",") if e]:
            versions.append(f"{NAMES[engine]} {server_version(SERVERS[engine]).removeprefix('PostgreSQL ')}")
            r = measure(engine, Path(tmp) / engine, args.sessions, args.refreshes, args.oneshots)
            ok = float(r["p95_ms"]) < TARGET_MS
            verdicts.append(ok)
            print(f"{engine}: refresh median {r['median_ms']:.1f} ms, p95 {r['p95_ms']:.1f} ms; one-shot "
                  f"{r['oneshot_s']:.2f} s", file=sys.stderr)
            rows.append(f"| {NAMES[engine]} ({r['source']}) | {r['median_ms']:.1f} | {r['p95_ms']:.1f} | "
                        f"{r['max_ms']:.1f} | {r['first_ms']:.0f} | {r['oneshot_s']:.2f} | "
                        f"{'met' if ok else 'NOT met'} |")
    text = "\n".join([
        "## Watch refresh",
        "",
        (f"`.venv/bin/python benchmarks/watch_refresh.py --write`; {machine()}; 1-minute load "
         f"{os.getloadavg()[0]:.1f} at the end; {', '.join(versions)}."),
        "",
        (f"**One refresh of `dbguard locks --watch`** with {args.sessions} client sessions open: {CHAINS} "
         "chains of three (a transaction idle after reading a table, an ALTER TABLE queued behind it, a reader "
         "queued behind the ALTER), a quarter of the rest idle in a transaction holding a row lock, the others "
         "idle. A refresh is the next snapshot on the watch's open session (run-lock holder, the lock tree) "
         f"plus rendering it as a text frame and a jsonl line; median, p95 and max of {args.refreshes}. The "
         "first snapshot (connecting, checking rights) is apart; the last column is a whole `dbguard locks` "
         f"process, start to exit, median of {args.oneshots}. Target: p95 under {TARGET_MS:g} ms."),
        "",
        ("| engine (lock source) | refresh median (ms) | p95 (ms) | max (ms) | first snapshot (ms) | "
         "`dbguard locks` process (s) | target |"),
        "|---|---|---|---|---|---|---|",
        *rows,
    ])
    print(text)
    if args.write:
        write_section("watch-refresh", text)
    if not all(verdicts):
        sys.exit(1)


if __name__ == "__main__":
    main()
