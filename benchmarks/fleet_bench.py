"""A fleet rollout against plain Alembic run serially and in parallel, on the same 200 PostgreSQL databases.

Run:  .venv/bin/python benchmarks/fleet_bench.py [--targets 200] [--revisions 5] [--parallel 8] [--write]

Creates N empty databases on the local PostgreSQL server (DBGUARD_TEST_POSTGRES_URL, default
postgresql+psycopg://postgres@127.0.0.1:5432/test) and one stock `alembic init` project of 5
revisions (a table and an index each). Then, in the same run:

1. the loop: `for ini in ...; do alembic -c "$ini" upgrade head; done` in bash, one alembic.ini per
   target (the stock env.py reads sqlalchemy.url from it);
2. the parallel loop: `xargs -P 8 -I{} alembic -c {} upgrade head` over the same alembic.ini files, what
   a team without dbguard would write (no ledger, no lock, no verification, no stop on failure);
3. `dbguard fleet upgrade fleet.toml --parallel 8 --batches 1,10%,50%,100%` with every guarantee on
   (fleet lock, control database on SQLite, per-target pre-flight, guarded upgrade with run lock,
   ledger, drift and risk pre-flight and post-flight, per-batch verification with health_sql).
The databases are dropped and created again, empty, before each.

Prints the wall times, the ratios and the per-target figures; --write puts them into
docs/benchmarks.md between <!-- fleet:start --> and <!-- fleet:end -->. Every database is
dropped at the end, whatever happened. Goals: the fleet at least 3x faster than the serial loop and
at least 1.5x faster than the parallel one.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from docsection import machine, write_section

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
SERVER = os.environ.get("DBGUARD_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
BATCHES = "1,10%,50%,100%"


def make_project(folder: Path, revisions: int) -> Path:
    ini = folder / "alembic.ini"
    command.init(Config(str(ini)), str(folder / "migrations"), template="generic")
    versions = folder / "migrations" / "versions"
    previous = None
    for n in range(1, revisions + 1):
        rev = f"f{n:02d}"
        (versions / f"{rev}.py").write_text(
            f'revision = "{rev}"\ndown_revision = {previous!r}\n'
            "from alembic import op\nimport sqlalchemy as sa\n\n"
            "def upgrade():\n"
            f'    op.create_table("fleet_{n}", sa.Column("id", sa.Integer, primary_key=True),\n'
            f'                    sa.Column("name", sa.String(50)), sa.Column("n", sa.Integer))\n'
            f'    op.create_index("ix_fleet_{n}_n", "fleet_{n}", ["n"])\n\n'
            f'def downgrade():\n    op.drop_table("fleet_{n}")\n'
        )
        previous = rev
    return ini


class Databases:
    def __init__(self, count: int) -> None:
        self.server = sa.engine.make_url(SERVER)
        self.names = [f"dgfleet_{uuid.uuid4().hex[:6]}_{i:03d}" for i in range(count)]
        self.admin = sa.create_engine(self.server, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)

    def url(self, name: str) -> str:
        return self.server.set(database=name).render_as_string(hide_password=False)

    def _each(self, sql: str) -> None:
        def one(chunk: list[str]) -> None:
            with self.admin.connect() as conn:
                for name in chunk:
                    conn.exec_driver_sql(sql.format(name=name))

        chunks = [self.names[i::4] for i in range(4)]
        with ThreadPoolExecutor(4) as threads:
            list(threads.map(one, chunks))

    def create(self) -> None:
        self._each('CREATE DATABASE "{name}"')

    def drop(self) -> None:
        self._each('DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def at_head(self, head: str) -> int:
        ok = 0
        for name in self.names:
            engine = sa.create_engine(self.url(name), poolclass=sa.pool.NullPool)
            with engine.connect() as conn:
                found = conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
            engine.dispose()
            ok += found == head
        return ok


def target_inis(folder: Path, dbs: Databases, ini: Path) -> list[Path]:
    inis = []
    for name in dbs.names:
        path = folder / "targets" / f"{name}.ini"
        path.parent.mkdir(exist_ok=True)
        text = ini.read_text().replace("%(here)s/migrations", str(folder / "migrations"))
        lines = [f"sqlalchemy.url = {dbs.url(name)}" if line.startswith("sqlalchemy.url") else line
                 for line in text.splitlines()]
        path.write_text("\n".join(lines) + "\n")
        inis.append(path)
    return inis


def run_loop(folder: Path, inis: list[Path]) -> float:
    script = folder / "loop.sh"
    script.write_text("set -e\nfor ini in " + " ".join(str(p) for p in inis)
                      + f'; do\n  "{BIN / "alembic"}" -c "$ini" upgrade head\ndone\n')
    started = time.perf_counter()
    subprocess.run(["bash", str(script)], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def run_xargs(folder: Path, inis: list[Path], parallel: int) -> float:
    listing = folder / "inis.txt"
    listing.write_text("".join(f"{p}\n" for p in inis))
    started = time.perf_counter()
    subprocess.run(["bash", "-c", f'xargs -P {parallel} -I{{}} "{BIN / "alembic"}" -c {{}} upgrade head < "{listing}"'],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def run_fleet(folder: Path, dbs: Databases, ini: Path, parallel: int) -> tuple[float, dict]:
    lines = ["[fleet]", 'name = "bench"', f'alembic_config = "{ini}"', f'batches = "{BATCHES}"', ""]
    for name in dbs.names:
        lines += ["[[targets]]", f'name = "{name}"', f'url = "{dbs.url(name)}"', 'health_sql = "SELECT 1"', ""]
    fleet = folder / "fleet.toml"
    fleet.write_text("\n".join(lines))
    env = {k: v for k, v in os.environ.items() if not k.startswith("DBGUARD_")}
    started = time.perf_counter()
    proc = subprocess.run([str(BIN / "dbguard"), "--format", "json", "fleet", "upgrade", str(fleet),
                           "--parallel", str(parallel)], capture_output=True, text=True, env=env, cwd=folder,
                          check=False)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        raise SystemExit(f"fleet upgrade exited {proc.returncode}")
    return wall, json.loads(proc.stdout)


def target_seconds(summary: dict) -> list[float]:
    out = []
    for t in summary["targets"]:
        if t["started_at"] and t["finished_at"]:
            out.append((dt.datetime.fromisoformat(t["finished_at"]) - dt.datetime.fromisoformat(t["started_at"]))
                       .total_seconds())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", type=int, default=200)
    parser.add_argument("--revisions", type=int, default=5)
    parser.add_argument("--parallel", type=int, default=8)
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="dbguard-fleet-bench-") as tmp:
        folder = Path(tmp)
        ini = make_project(folder, args.revisions)
        head = f"f{args.revisions:02d}"
        dbs = Databases(args.targets)
        try:
            t0 = time.perf_counter()
            dbs.create()
            print(f"created {args.targets} databases in {time.perf_counter() - t0:.1f} s", flush=True)
            inis = target_inis(folder, dbs, ini)
            loads = [os.getloadavg()[0]]
            loop_s = run_loop(folder, inis)
            loop_ok = dbs.at_head(head)
            print(f"loop: {loop_s:.1f} s, {loop_ok}/{args.targets} at {head}", flush=True)
            dbs.drop()
            dbs.create()
            loads.append(os.getloadavg()[0])
            xargs_s = run_xargs(folder, inis, args.parallel)
            xargs_ok = dbs.at_head(head)
            print(f"xargs -P {args.parallel}: {xargs_s:.1f} s, {xargs_ok}/{args.targets} at {head}", flush=True)
            dbs.drop()
            dbs.create()
            loads.append(os.getloadavg()[0])
            fleet_s, summary = run_fleet(folder, dbs, ini, args.parallel)
            loads.append(os.getloadavg()[0])
            fleet_ok = dbs.at_head(head)
            print(f"fleet: {fleet_s:.1f} s, {fleet_ok}/{args.targets} at {head}", flush=True)
        finally:
            dbs.drop()
            dbs.admin.dispose()

    per = target_seconds(summary)
    ratio = loop_s / fleet_s
    mean_target = sum(per) / len(per)
    outside = fleet_s - sum(per) / args.parallel
    rows = [
        ("targets x revisions", f"{args.targets} x {args.revisions}"),
        ("shell loop of `alembic upgrade head`", f"{loop_s:.1f} s ({loop_s / args.targets * 1000:.0f} ms per target)"),
        (f"`dbguard fleet upgrade --parallel {args.parallel} --batches {BATCHES}`",
         f"{fleet_s:.1f} s ({fleet_s / args.targets * 1000:.0f} ms per target, wall)"),
        (f"`xargs -P {args.parallel}` of `alembic upgrade head` (no guarantee)",
         f"{xargs_s:.1f} s ({xargs_s / args.targets * 1000:.0f} ms per target, wall)"),
        ("speed-up (loop / fleet)", f"{ratio:.2f}x (goal: 3x or more){'' if ratio >= 3 else ' -- MISSED'}"),
        (f"speed-up (xargs -P {args.parallel} / fleet)",
         f"{xargs_s / fleet_s:.2f}x (goal: 1.5x or more){'' if xargs_s / fleet_s >= 1.5 else ' -- MISSED'}"),
        (f"one guarded upgrade in a warm worker ({args.parallel} at a time on {os.cpu_count()} cores, mean)",
         f"{mean_target * 1000:.0f} ms"),
        ("per-target overhead of the orchestration (start-up, pre-flight, verification, batch barriers)",
         f"{outside / args.targets * 1000:.0f} ms ({outside:.1f} s of the wall time outside target runs)"),
        ("all targets at head", (f"loop {loop_ok}/{args.targets}, xargs {xargs_ok}/{args.targets}, "
                                f"fleet {fleet_ok}/{args.targets}")),
        ("load average (1 min) before the loop / before xargs / before the fleet / after",
         " / ".join(f"{x:.1f}" for x in loads)),
    ]
    table = "\n".join(["| measure | result |", "|---|---|"] + [f"| {a} | {b} |" for a, b in rows])
    section = (f"## Fleet\n\n`python benchmarks/fleet_bench.py --write` ({machine()}; PostgreSQL on the same "
               f"machine). Every guarantee on: fleet lock and control database, per-target pre-flight, guarded "
               f"upgrade (run lock, ledger, drift and risk pre-flight, post-flight), verification with "
               f"health_sql after each batch. Other work shared the machine: the load average is in the "
               f"table; a busier machine slows the single-process loop more than the parallel runs.\n\n{table}\n")
    print(section)
    if args.write:
        write_section("fleet", section)
        print("wrote docs/benchmarks.md")


if __name__ == "__main__":
    main()
