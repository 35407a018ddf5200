"""What `dbguard upgrade head` costs over `alembic upgrade head` on the same project and database.

Run:  .venv/bin/python benchmarks/overhead.py [--engines postgresql,mysql,sqlite] [--runs 15] [--write]

Both tools run as whole processes, alternately, in the same run, on one stock `alembic init`
project of 70 revisions (a table, a foreign key to the previous one and an index each): a no-op
upgrade (already at head) and the 70-revision upgrade into a fresh database, the latter also with
`fail_on = none` (no risk plan: the offline render of every pending revision is skipped). Prints
medians, the ratio and the added milliseconds;
--write puts the table into docs/benchmarks.md. Server URLs come from DBGUARD_TEST_POSTGRES_URL /
DBGUARD_TEST_MYSQL_URL (defaults: the local servers). Targets (PostgreSQL): no-op under 1.3x and
under 150 ms added; the full chain at most 1.5x.
"""

from __future__ import annotations

import argparse
import compileall
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from docsection import machine, server_version, write_section

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
SERVERS = {
    "postgresql": os.environ.get("DBGUARD_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"),
    "mysql": os.environ.get("DBGUARD_TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306/test"),
}
REVISIONS = 70


def make_project(folder: Path) -> Path:
    ini = folder / "alembic.ini"
    command.init(Config(str(ini)), str(folder / "migrations"), template="generic")
    versions = folder / "migrations" / "versions"
    previous = None
    for n in range(1, REVISIONS + 1):
        rev = f"r{n:02d}"
        (versions / f"{rev}.py").write_text(
            f'revision = "{rev}"\ndown_revision = {previous!r}\n'
            "from alembic import op\nimport sqlalchemy as sa\n\n"
            "def upgrade():\n"
            f'    op.create_table("bench_{n}", sa.Column("id", sa.Integer, primary_key=True),\n'
            f'                    sa.Column("name", sa.String(50)), sa.Column("n", sa.Integer),\n'
            + (f'                    sa.Column("prev_id", sa.Integer, sa.ForeignKey("bench_{n - 1}.id")),\n'
               if n > 1 else '') +
            f'                    )\n'
            f'    op.create_index("ix_bench_{n}_n", "bench_{n}", ["n"])\n\n'
            f'def downgrade():\n    op.drop_table("bench_{n}")\n'
        )
        previous = rev
    return ini


def server_name(engine: str) -> str:
    """The engine as the server names itself: a MySQL URL may reach MariaDB."""
    if engine != "mysql":
        return engine
    return "mariadb" if "mariadb" in server_version(SERVERS[engine]).lower() else "mysql"


class Database:
    """A fresh database per measurement, always dropped."""

    def __init__(self, engine: str, folder: Path) -> None:
        self.engine, self.folder = engine, folder
        self.name = f"dgbench_{uuid.uuid4().hex[:8]}"
        if engine == "sqlite":
            self.url = f"sqlite:///{folder / (self.name + '.db')}"
            return
        server = sa.engine.make_url(SERVERS[engine])
        self.admin = sa.create_engine(server, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
        with self.admin.connect() as conn:
            conn.exec_driver_sql(f"CREATE DATABASE {self.name}")
        self.url = server.set(database=self.name).render_as_string(hide_password=False)

    def drop(self) -> None:
        if self.engine == "sqlite":
            for path in self.folder.glob(self.name + ".db*"):
                path.unlink()
            return
        suffix = " WITH (FORCE)" if self.engine == "postgresql" else ""
        with self.admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {self.name}{suffix}")
        self.admin.dispose()


def timed(argv: list[str], ini: Path, url: str, extra_env: dict[str, str] | None = None) -> float:
    env = {**os.environ, "DBGUARD_URL": url, **(extra_env or {})}
    started = time.perf_counter()
    done = subprocess.run(argv + ["-c", str(ini), *(["--url", url] if "dbguard" in argv[0] else []),
                                  "upgrade", "head"], capture_output=True, text=True, env=env, check=False)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{argv[0]} failed: {done.stderr[-500:]}")
    return elapsed


def set_url(ini: Path, url: str) -> None:
    text = ini.read_text().splitlines()
    text = [f"sqlalchemy.url = {url}" if line.startswith("sqlalchemy.url") else line for line in text]
    ini.write_text("\n".join(text) + "\n")


def measure(engine: str, runs: int, folder: Path) -> dict[str, float]:
    ini = make_project(folder)
    alembic, dbguard = [str(BIN / "alembic")], [str(BIN / "dbguard")]
    result: dict[str, float] = {}

    db = Database(engine, folder)
    try:
        set_url(ini, db.url)
        timed(dbguard, ini, db.url)  # reach head once; both tools then have nothing to do
        noop_a, noop_d = [], []
        for _ in range(runs):
            noop_a.append(timed(alembic, ini, db.url))
            noop_d.append(timed(dbguard, ini, db.url))
    finally:
        db.drop()
    result["noop_alembic"], result["noop_dbguard"] = statistics.median(noop_a), statistics.median(noop_d)

    full_a: list[float] = []
    full_d: list[float] = []
    full_n: list[float] = []
    rules_off = {"DBGUARD_FAIL_ON": "none"}
    for _ in range(max(3, runs // 3)):
        for tool, store, extra in ((alembic, full_a, None), (dbguard, full_d, None), (dbguard, full_n, rules_off)):
            db = Database(engine, folder)
            try:
                set_url(ini, db.url)
                store.append(timed(tool, ini, db.url, extra))
            finally:
                db.drop()
    result["full_alembic"], result["full_dbguard"] = statistics.median(full_a), statistics.median(full_d)
    result["fullnone_alembic"], result["fullnone_dbguard"] = result["full_alembic"], statistics.median(full_n)
    return result


# Where a guarded upgrade's time goes: each phase's wall time, measured by wrapping dbguard's own
# functions in a child process (measurement only; dbguard itself has no such hooks).
_PHASES = {
    "risk plan: offline render (forked child)": ("dbguard.plan.planner", "_rendered"),
    "risk plan: parse with sqlglot (import included)": ("dbguard.risk.plan", "tables_touched"),
    "risk plan: live facts": ("dbguard.db.facts", "table_facts"),
    "risk plan: rules": ("dbguard.risk.plan", "analyse"),
    "drift pre-flight": ("dbguard.drift.checks", "guard_preflight"),
    "migrations (env.py, steps, step journal)": ("dbguard.migrations.bridge", "run_migrations"),
    "step journal: a row as each step starts and ends (inside the migrations)": ("dbguard.run.guard",
                                                                                "_StepJournal._write"),
    "post-flight (verdict, schema stored)": ("dbguard.run.guard", "_post_flight"),
    "the guarded run, all of it": ("dbguard.run.guard", "_locked_run"),
    "the command (dbguard.api.upgrade: the guard's imports, connecting, the run lock, the guarded run)":
        ("dbguard.api", "upgrade"),
}
# The same measure of plain Alembic: its command, env.py and the steps included.
_ALEMBIC_PHASES = {"alembic: env.py and the steps": ("alembic.script.base", "ScriptDirectory.run_env"),
                   "alembic: the command (CommandLine.run_cmd)": ("alembic.config", "CommandLine.run_cmd")}
_PHASE_RUNNER = """
import importlib, json, sys, time, functools, atexit
started = time.perf_counter()
spent = {}
def wrap(module, name, label):
    mod = importlib.import_module(module)
    if "." in name:  # a method: wrapped on its class
        owner, name = name.split(".")
        mod = getattr(mod, owner)
    fn = getattr(mod, name)
    @functools.wraps(fn)
    def timed(*a, **k):
        t = time.perf_counter()
        try:
            return fn(*a, **k)
        finally:
            spent[label] = spent.get(label, 0.0) + time.perf_counter() - t
    setattr(mod, name, timed)
for label, (module, name) in json.loads(sys.argv[1]).items():
    wrap(module, name, label)
atexit.register(lambda: print(json.dumps({**spent, "process (after interpreter start)": time.perf_counter() - started}),
                              file=sys.stderr))
tool = sys.argv[2]
sys.argv = [tool, *sys.argv[3:]]
if tool == "alembic":
    from alembic.config import main
else:
    from dbguard.cli import main
main()
"""


def phases(runs: int, folder: Path) -> dict[str, float]:
    """Median wall time per phase of `dbguard upgrade head` of the whole chain on PostgreSQL."""
    import json

    ini = make_project(folder)
    samples: dict[str, list[float]] = {}
    for _ in range(runs):
        db = Database("postgresql", folder)
        try:
            set_url(ini, db.url)
            done = subprocess.run([sys.executable, "-c", _PHASE_RUNNER, json.dumps(_PHASES), "dbguard", "-c", str(ini),
                                   "upgrade", "head"], capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise SystemExit(f"dbguard failed: {done.stderr[-500:]}")
            for label, value in json.loads(done.stderr.strip().splitlines()[-1]).items():
                samples.setdefault(label, []).append(value)
        finally:
            db.drop()
        db = Database("postgresql", folder)
        try:
            set_url(ini, db.url)
            done = subprocess.run([sys.executable, "-c", _PHASE_RUNNER, json.dumps(_ALEMBIC_PHASES), "alembic", "-c",
                                   str(ini), "upgrade", "head"], capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise SystemExit(f"alembic failed: {done.stderr[-500:]}")
            for label, value in json.loads(done.stderr.strip().splitlines()[-1]).items():
                label = label if label.startswith("alembic") else f"alembic: {label}"
                samples.setdefault(label, []).append(value)
        finally:
            db.drop()
    return {label: statistics.median(values) for label, values in samples.items()}


def phase_table(spent: dict[str, float]) -> str:
    lines = ["| phase | ms (median) |", "|---|---|"]
    for label in [*_PHASES, "process (after interpreter start)", *_ALEMBIC_PHASES,
                  "alembic: process (after interpreter start)"]:
        if label in spent:
            lines.append(f"| {label} | {spent[label] * 1000:.0f} |")
    return "\n".join(lines)


def attribution(spent: dict[str, float]) -> str:
    """The added time of the whole process split into the parts the phases measure, each against
    what plain Alembic spends on the same part."""
    get = lambda prefix: next((v for k, v in spent.items() if k.startswith(prefix)), 0.0)
    plan = sum(v for k, v in spent.items() if k.startswith("risk plan"))
    migrations, alembic_env = get("migrations"), get("alembic: env.py")
    guarded, command = get("the guarded run"), get("the command")
    alembic_command, process, alembic_process = get("alembic: the command"), get("process"), get("alembic: process")
    checks = get("drift pre-flight") + get("post-flight")
    rows = [
        ("risk plan (render, parse, facts, rules)", plan),
        ("migrations beyond Alembic's env.py and steps", migrations - alembic_env),
        ("  of which the step journal's rows", get("step journal")),
        ("drift pre-flight and post-flight", checks),
        ("rest of the guarded run (ledger, breaker, run row)", guarded - plan - migrations - checks),
        (("the command outside the guarded run, beyond Alembic's outside env.py (the guard's imports, "
         "connecting, the run lock)"), (command - guarded) - (alembic_command - alembic_env)),
        ("before the command, beyond Alembic's (imports, CLI, settings)",
         (process - command) - (alembic_process - alembic_command)),
    ]
    total = process - alembic_process
    lines = ["| part of the added time | ms |", "|---|---|"]
    lines += [f"| {label} | {value * 1000:.0f} |" for label, value in rows]
    lines.append(f"| added in all (process against process) | {total * 1000:.0f} |")
    return "\n".join(lines)


def table(results: dict[str, dict[str, float]]) -> str:
    lines = [
        "| engine | run | alembic (s) | dbguard (s) | ratio | added (ms) |",
        "|---|---|---|---|---|---|",
    ]
    for engine, r in results.items():
        for kind, label in (("noop", "no-op (at head)"), ("full", f"{REVISIONS} revisions, fresh database"),
                            ("fullnone", f"{REVISIONS} revisions, fail_on = none")):
            a, d = r[f"{kind}_alembic"], r[f"{kind}_dbguard"]
            lines.append(f"| {engine} | {label} | {a:.3f} | {d:.3f} | {d / a:.2f}x | {(d - a) * 1000:.0f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engines", default="postgresql,mysql,sqlite")
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--write", action="store_true", help="put the results into docs/benchmarks.md")
    parser.add_argument("--phases", type=int, default=5, metavar="N",
                        help="also time the phases of the PostgreSQL chain's upgrade, N runs (0: not)")
    args = parser.parse_args()
    # An installed dbguard comes byte-compiled (pip compiles wheels on install), as Alembic and
    # SQLAlchemy here do; an editable checkout under PYTHONDONTWRITEBYTECODE=1 would be recompiled
    # from source in every process and measure the compiler, not dbguard.
    compileall.compile_dir(str(ROOT / "dbguard"), quiet=1)
    results = {}
    for engine in args.engines.split(","):
        with tempfile.TemporaryDirectory() as folder:
            results[server_name(engine)] = measure(engine, args.runs, Path(folder))
            print(f"{engine}: {results[server_name(engine)]}", file=sys.stderr)
    text = table(results)
    print(text)
    if "postgresql" in results:
        r = results["postgresql"]
        added = (r["noop_dbguard"] - r["noop_alembic"]) * 1000
        ratio = r["noop_dbguard"] / r["noop_alembic"]
        verdict = "met" if ratio < 1.3 and added < 150 else "NOT met"
        print(f"\nPostgreSQL no-op: {ratio:.2f}x, +{added:.0f} ms (target < 1.3x and < 150 ms: {verdict})")
        full = r["full_dbguard"] / r["full_alembic"]
        print(f"PostgreSQL {REVISIONS} revisions: {full:.2f}x (target at most 1.5x: "
              f"{'met' if full <= 1.5 else 'NOT met'})")
    breakdown = ""
    if args.phases and "postgresql" in args.engines.split(","):
        with tempfile.TemporaryDirectory() as folder:
            spent = phases(args.phases, Path(folder))
        breakdown = (f"\n\nWhere the PostgreSQL {REVISIONS}-revision upgrade's time goes (median of {args.phases} "
                     "runs; phases nest: the risk plan's parts are inside the guarded run, the migrations inside "
                     "it too):\n\n" + phase_table(spent) + "\n\nThe added time, part by part (from the "
                     "medians above; the lines before the last add up to it):\n\n" + attribution(spent))
        print(breakdown)
    if args.write:
        write_section("overhead", f"## Overhead of `dbguard upgrade head` over `alembic upgrade head`\n\n"
              f"`python benchmarks/overhead.py --write`; {machine()}; median of {args.runs} alternating "
              f"process runs (no-op) and of {max(3, args.runs // 3)} ({REVISIONS} revisions).\n\n{text}"
              f"{breakdown}\n")


if __name__ == "__main__":
    main()
