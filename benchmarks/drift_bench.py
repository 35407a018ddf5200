"""Drift detection at scale: dbguard's comparison against `alembic check` (compare_metadata).

Run:  .venv/bin/python benchmarks/drift_bench.py [--pg 200,1000,3000] [--mariadb 200,1000] [--runs 3] [--write]

For each engine and N it creates a scratch database (always dropped), builds N tables of 8 columns
(PK, 2 indexes, a FK to the previous table, server defaults) from generated models, stamps it, and
measures in the same run:
  - in-process, model import excluded: Alembic's compare_metadata vs dbguard's models_drift
    (catalog read in a thread + models conversion + diff);
  - whole processes: `alembic check` vs `dbguard drift --against models`;
  - `dbguard drift --against schema.json` (a snapshot written beforehand), end to end.
Prints medians, ratios and the per-table cost; --write replaces the "Drift" section of
docs/benchmarks.md. Server URLs come from DBGUARD_TEST_POSTGRES_URL / DBGUARD_TEST_MYSQL_URL
(defaults: the local servers). Targets: in-process >= 10x, whole process >= 4x, snapshot < 2 s at
3000 PostgreSQL tables and < 1 s at 1000 MariaDB tables.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import sqlalchemy as sa
from docsection import machine, server_version
from sqlalchemy.pool import NullPool

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
RUNS = 3
# Cells of at most SMALL_N tables take at least SMALL_RUNS rounds (each costs under 2 s).
SMALL_N, SMALL_RUNS = 200, 15
URLS = {
    "postgresql": os.environ.get("DBGUARD_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"),
    "mariadb": os.environ.get("DBGUARD_TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306/test"),
}

MODELS = '''
import sqlalchemy as sa

metadata = sa.MetaData()
N = {n}
for i in range(N):
    cols = [
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("code", sa.String(20), nullable=False, server_default="x"),
        sa.Column("amount", sa.Numeric(12, 2), nullable=False, server_default=sa.text("0")),
        sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.Column("created_at", sa.DateTime, nullable=False, server_default=sa.func.now()),
        sa.Column("note", sa.Text),
    ]
    if i:
        cols.append(sa.Column("parent_id", sa.Integer, sa.ForeignKey(f"t{{i - 1}}.id", ondelete="CASCADE")))
    else:
        cols.append(sa.Column("parent_id", sa.Integer))
    sa.Table(f"t{{i}}", metadata, *cols,
             sa.Index(f"ix_t{{i}}_name", "name"), sa.Index(f"ix_t{{i}}_parent_id", "parent_id"))
'''

ENV = '''
import os, sys
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from alembic import context
from sqlalchemy import engine_from_config, pool
import bench_models
config = context.config
target_metadata = bench_models.metadata
connectable = engine_from_config(config.get_section(config.config_ini_section, {{}}), prefix="sqlalchemy.",
                                 poolclass=pool.NullPool)
with connectable.connect() as connection:
    context.configure(connection=connection, target_metadata=target_metadata)
    with context.begin_transaction():
        context.run_migrations()
'''

# What any comparison with env.py's models pays in a fresh process before it compares anything:
# the interpreter, SQLAlchemy, the driver, Alembic's context (env.py imports it) and the models,
# with the collector off and the heap frozen before exit (its best case: the interpreter's last
# collection would walk all of it once more). `alembic check` / this is the highest whole-process
# ratio any such tool can reach.
FLOOR = ("import gc, sys; gc.disable(); sys.path.insert(0, {folder!r}); import sqlalchemy, {driver}; "
         "from alembic import context; import bench_models; gc.freeze()")
# The same without Alembic: what even a tool that skipped env.py and imported the models module
# directly would pay. `alembic check` / this bounds any tool that compares with SQLAlchemy models.
MODELS_FLOOR = ("import gc, sys; gc.disable(); sys.path.insert(0, {folder!r}); import sqlalchemy, {driver}; "
                "import bench_models; gc.freeze()")
# The floor and one connection to the database, as env.py opens it: no check of a live database can
# skip it (PyMySQL 2.2 builds a TLS context, reading the system's CA bundle, for each connection).
CONNECTED_FLOOR = ("import gc, sys; gc.disable(); sys.path.insert(0, {folder!r}); import sqlalchemy, {driver}; "
                   "from alembic import context; import bench_models; "
                   "sqlalchemy.create_engine({url!r}, poolclass=sqlalchemy.pool.NullPool).connect().close(); "
                   "gc.freeze()")
DRIVERS = {"postgresql": "psycopg", "mariadb": "pymysql"}

REVISION = '''
revision = "0001"
down_revision = None
branch_labels = None
depends_on = None
def upgrade():
    pass
def downgrade():
    pass
'''


def _project(folder: Path, n: int, url: str) -> Path:
    (folder / "versions").mkdir(parents=True)
    (folder / "bench_models.py").write_text(MODELS.format(n=n))
    (folder / "env.py").write_text(ENV.format())
    (folder / "versions" / "0001_all.py").write_text(REVISION)
    ini = folder / "alembic.ini"
    ini.write_text(f"[alembic]\nscript_location = {folder}\nsqlalchemy.url = {url.replace('%', '%%')}\n")
    return ini


@contextlib.contextmanager
def scratch(engine_name: str):
    server = sa.engine.make_url(URLS[engine_name])
    name = f"dbguard_bench_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(server, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    quote = '"' if engine_name == "postgresql" else "`"
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {quote}{name}{quote}")
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            force = " WITH (FORCE)" if engine_name == "postgresql" else ""
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {quote}{name}{quote}{force}")
        admin.dispose()


def create_tables(engine: sa.Engine, metadata: sa.MetaData, chunk: int = 500) -> None:
    """create_all in chunks of tables, one transaction each: 3000 tables with their indexes in one
    PostgreSQL transaction run out of lock slots (max_locks_per_transaction 64)."""
    tables = metadata.sorted_tables
    for start in range(0, len(tables), chunk):
        with engine.begin() as conn:
            metadata.create_all(conn, tables=tables[start:start + chunk])


def _medians_alternating(commands: dict[str, tuple[list[str], tuple[int, ...]]], runs: int) -> dict[str, float]:
    """Each command once per round, round after round (a busy machine slows all of them alike);
    the median wall time of each."""
    times: dict[str, list[float]] = {key: [] for key in commands}
    for _ in range(runs):
        for key, (cmd, ok) in commands.items():
            started = time.perf_counter()
            done = subprocess.run(cmd, capture_output=True, text=True, check=False)
            times[key].append(time.perf_counter() - started)
            if done.returncode not in ok:
                raise RuntimeError(f"{' '.join(cmd[:4])}... exited {done.returncode}: {done.stderr[-500:]}")
    return {key: statistics.median(values) for key, values in times.items()}


def measure(engine_name: str, n: int, runs: int) -> dict[str, float]:
    from alembic import command
    from alembic.autogenerate import compare_metadata
    from alembic.config import Config
    from alembic.migration import MigrationContext

    from dbguard.core.schema import never_drift
    from dbguard.dialects import for_sqlalchemy_dialect
    from dbguard.drift.checks import models_drift

    with tempfile.TemporaryDirectory() as tmp, scratch(engine_name) as url:
        ini = _project(Path(tmp), n, url)
        sys.path.insert(0, tmp)
        sys.modules.pop("bench_models", None)
        # The previous cell's models are garbage by now: collected before, not during, this import.
        gc.collect()
        t0 = time.perf_counter()
        models = importlib.import_module("bench_models")
        import_s = time.perf_counter() - t0
        # Neither tool's in-process time includes collecting the models' heap: both run with it frozen.
        gc.collect()
        gc.freeze()
        sys.path.remove(tmp)
        engine = sa.create_engine(url, poolclass=NullPool)
        try:
            create_tables(engine, models.metadata)
            command.stamp(Config(str(ini)), "head")
            result: dict[str, float] = {"models_import": import_s}
            alembic_runs, dbguard_runs = [], []
            with engine.connect() as conn:
                dialect = for_sqlalchemy_dialect(conn.dialect)
                for _ in range(runs):
                    started = time.perf_counter()
                    found = compare_metadata(MigrationContext.configure(conn), models.metadata)
                    alembic_runs.append(time.perf_counter() - started)
                    started = time.perf_counter()
                    drifts = models_drift(conn, dialect, [models.metadata], never_drift("dbguard_"))
                    dbguard_runs.append(time.perf_counter() - started)
                    conn.rollback()
                assert not drifts, drifts[:5]
                result["alembic_found"] = len(found)
            result["inproc_alembic"] = statistics.median(alembic_runs)
            result["inproc_dbguard"] = statistics.median(dbguard_runs)
            snap = Path(tmp) / "schema.json"
            dbguard = [PYTHON, "-m", "dbguard.cli", "-c", str(ini)]
            subprocess.run([*dbguard, "snapshot", "--live", "-o", str(snap)], check=True, capture_output=True)
            result.update(_medians_alternating({
                "proc_alembic": ([PYTHON, "-m", "alembic", "-c", str(ini), "check"], (0, 1, 255)),
                "proc_dbguard": ([*dbguard, "drift", "--against", "models"], (0,)),
                "proc_snapshot": ([*dbguard, "drift", "--against", str(snap)], (0,)),
                "proc_floor": ([PYTHON, "-c", FLOOR.format(folder=tmp, driver=DRIVERS[engine_name])], (0,)),
                "proc_models_floor": ([PYTHON, "-c", MODELS_FLOOR.format(folder=tmp, driver=DRIVERS[engine_name])],
                                      (0,)),
                "proc_connected_floor": ([PYTHON, "-c", CONNECTED_FLOOR.format(folder=tmp, url=url,
                                                                                driver=DRIVERS[engine_name])], (0,)),
            }, runs))
            result["load"] = os.getloadavg()[0]
            return result
        finally:
            engine.dispose()
            gc.unfreeze()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pg", default="200,1000,3000")
    parser.add_argument("--mariadb", default="200,1000")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    global RUNS
    RUNS = args.runs
    # As pip installs it: dbguard's bytecode compiled (alembic's and SQLAlchemy's came compiled in
    # their wheels). With PYTHONDONTWRITEBYTECODE set, an editable checkout is otherwise compiled
    # from source in every process.
    subprocess.run([PYTHON, "-m", "compileall", "-q", str(ROOT / "dbguard")], check=True)
    plan = [("postgresql", int(n)) for n in args.pg.split(",") if n] + \
           [("mariadb", int(n)) for n in args.mariadb.split(",") if n]
    rows = []
    for engine_name, n in plan:
        print(f"{engine_name} N={n} ...", flush=True)
        # A small schema's whole process is a few hundred ms, where this VM's noise is tens: more rounds.
        r = measure(engine_name, n, max(args.runs, SMALL_RUNS) if n <= SMALL_N else args.runs)
        rows.append((engine_name, n, r))
        print(f"  {r}", flush=True)
    table = table_text(rows)
    print(table)
    if args.write:
        write(table, [r["load"] for _, _, r in rows])


def table_text(rows: list[tuple[str, int, dict[str, float]]]) -> str:
    header = ("| engine | N | compare_metadata (s) | dbguard compare (s) | ratio | per table (ms) a / d | "
              "`alembic check` (s) | `dbguard drift --against models` (s) | ratio | floor (s) | ratio bound | "
              "dbguard / floor | connected floor (s) | dbguard / connected floor | models-only floor (s) | its bound | "
              "`dbguard drift --against schema.json` (s) | snapshot per table (ms) | models import (s) | load |")
    lines = [header, "|" + "---|" * 20]
    for engine_name, n, r in rows:
        lines.append(
            f"| {engine_name} | {n} | {r['inproc_alembic']:.2f} | {r['inproc_dbguard']:.3f} | "
            f"{r['inproc_alembic'] / r['inproc_dbguard']:.1f}x | "
            f"{r['inproc_alembic'] / n * 1000:.2f} / {r['inproc_dbguard'] / n * 1000:.3f} | "
            f"{r['proc_alembic']:.2f} | {r['proc_dbguard']:.2f} | {r['proc_alembic'] / r['proc_dbguard']:.2f}x | "
            f"{r['proc_floor']:.2f} | {r['proc_alembic'] / r['proc_floor']:.2f}x | "
            f"{r['proc_dbguard'] / r['proc_floor']:.2f} | "
            f"{r['proc_connected_floor']:.2f} | {r['proc_dbguard'] / r['proc_connected_floor']:.2f} | "
            f"{r['proc_models_floor']:.2f} | {r['proc_alembic'] / r['proc_models_floor']:.2f}x | "
            f"{r['proc_snapshot']:.2f} | {r['proc_snapshot'] / n * 1000:.2f} | {r['models_import']:.2f} | "
            f"{r['load']:.1f} |")
    return "\n".join(lines)


MARK_START, MARK_END = "<!-- drift:start -->", "<!-- drift:end -->"


def write(table: str, loads: list[float], path: Path = ROOT / "docs" / "benchmarks.md") -> None:
    versions = ", ".join(f"{e} {server_version(URLS[e])}" for e in URLS)
    section = (
        f"{MARK_START}\n## Drift\n\n"
        f"`benchmarks/drift_bench.py`, {machine()}; {versions}. Median of {RUNS} per cell ({SMALL_RUNS} up to "
        f"{SMALL_N} tables), the tools alternating in the same run; tables of 8 columns with a PK, 2 indexes, a FK and server defaults. "
        "\"dbguard compare\" is `dbguard.drift.checks.models_drift` in-process: the catalog read and its tables "
        "digested (in a thread) while the models' tables are digested, then objects and the diff for the tables "
        "whose digests differ; model import excluded as for compare_metadata, the models' heap "
        "frozen for both so that neither pays the collector for it. "
        "\"models import\" is the import of the models module alone, in the benchmark's process. Whole-process columns include interpreter "
        "start and the model import; dbguard's bytecode compiled, as an install has it; the `dbguard drift` "
        "process reads the catalog in a forked child while env.py imports the models and compares table "
        "digests first (`dbguard/drift/prefetch.py`). \"floor\" is a process "
        "that only starts Python and imports SQLAlchemy, the driver, Alembic's context and the models, with the "
        "collector off and the heap frozen before exit: what any tool comparing with env.py's models pays before "
        "comparing anything; "
        "\"ratio bound\" (`alembic check` / floor) is the highest whole-process ratio such a tool can reach. "
        "\"connected floor\" is the floor and one connection to the database, opened as env.py opens it: no "
        "check of a live database can skip it (PyMySQL 2.2 builds a TLS context from the system's CA bundle for "
        "each connection). "
        "\"models-only floor\" leaves out Alembic too (Python, SQLAlchemy, the driver and the models module): "
        "even a tool that skipped env.py and imported the models directly pays it; \"its bound\" is "
        "`alembic check` / that. "
        "1-minute load average "
        f"{min(loads):.1f}-{max(loads):.1f} while measuring (the \"load\" column, taken at the end of each row).\n\n"
        f"Run: `.venv/bin/python benchmarks/drift_bench.py --write`\n\n{table}\n{MARK_END}\n"
    )
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    if MARK_START in text and MARK_END in text:
        start, end = text.index(MARK_START), text.index(MARK_END) + len(MARK_END) + 1
    elif "## Drift\n" in text:
        # The section as first written, without markers: up to the next section or marker.
        start = text.index("## Drift\n")
        ends = [i + 1 for i in (text.find("\n## ", start), text.find("\n<!-- ", start)) if i >= 0]
        end = min(ends) if ends else len(text)
    else:
        start = end = len(text)
        section = "\n" + section
    rest = text[end:].lstrip("\n")
    path.write_text(text[:start] + section + ("\n" + rest if rest else ""))


if __name__ == "__main__":
    main()
