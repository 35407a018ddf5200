"""dbguard on the Alembic migrations that real open-source projects ship inside their PyPI packages.

Run:  python benchmarks/real_projects.py [--projects mlflow,optuna,jupyterhub,dagster,buildbot,airflow]
                                         [--engines postgresql,mysql,sqlite] [--json PATH] [--write]

Not part of CI: it installs third-party packages. The script creates its own venv (default
/tmp/dbguard-real-projects-venv, reused when present; `--venv`, `--reinstall`), installs there dbguard
from this checkout (`pip install -e`, with the PostgreSQL and MySQL drivers) and the chosen projects,
then re-runs itself in that venv. For each project and engine it creates two empty databases (`dbgrp_*`
on the servers, files for SQLite) and lets the project build its schema its own way (mlflow:
`SqlAlchemyStore(uri, artifact_root)`, create_all of the initial models then `upgrade head`; optuna:
`RDBStorage(url)`, create_all then `stamp head`; jupyterhub: `orm.new_session_factory(url)`, `stamp head`
then create_all; dagster: its run, event-log and schedule storages, SQLite its run storage's file; buildbot:
`buildbot create-master --db URL`; airflow: `airflow db migrate`, with AIRFLOW__DATABASE__SQL_ALCHEMY_CONN
the database's URL, psycopg2 and mysqlclient, and a replay into a `--shadow-url` database those settings
name too). dagster, buildbot and airflow run only when named in --projects. An alembic.ini in a temporary folder points `script_location` at the migrations
folder inside the installed package (which is never modified) and `sqlalchemy.url` at the database;
dagster's env.py runs only when dagster hands it a connection, so its alembic.ini points at a wrapper
env.py written beside it (below) and `version_locations` at dagster's folder.

On the first database, as whole processes: plain `alembic current`, then `dbguard status`,
`drift --against models` and `drift --against migrations` on the schema as the project built it,
`upgrade head`, `downgrade -1` (after a failed one, exit 5, `rollback --yes`: the way dbguard offers back),
`upgrade head`, both drift checks again, and a last `status`. `drift --against migrations` gets `--baseline`
/ `--baseline-revision` where this dbguard has them and the project has one (`--baseline mlflow=SPEC`,
`--baseline-revision mlflow=REV` on this command line override the defaults below; a replay that fails
because the chain is brownfield is marked so). On the second, identical database, plain Alembic:
`current`, `check`, `upgrade head`, `downgrade -1`, `upgrade head`, `check`. Each command's exit code,
first lines of output and wall time are recorded (full output under --workdir); every difference the
drift checks report is listed beside what `alembic check` detected.

Prints a table, writes the JSON report (default benchmarks/results/real_projects.json) and a Markdown
section beside it (real_projects.md); `--write` also puts that section into docs/benchmarks.md. Server
URLs come from DBGUARD_TEST_POSTGRES_URL / DBGUARD_TEST_MYSQL_URL (defaults: the local servers). Every
database it creates is dropped at the end, also on failure or Ctrl-C. Projects and engines run one after
another, never in parallel.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import hashlib
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_VENV = Path(os.environ.get("DBGUARD_REAL_PROJECTS_VENV", "/tmp/dbguard-real-projects-venv"))
DEFAULT_JSON = ROOT / "benchmarks" / "results" / "real_projects.json"
SERVERS = {
    "postgresql": os.environ.get("DBGUARD_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"),
    "mysql": os.environ.get("DBGUARD_TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306/test"),
}
ENGINES = ("postgresql", "mysql", "sqlite")
HEAD_LINES = 12  # lines of stdout and of stderr kept per command
LINE_CHARS = 600  # a longer line (alembic check's operation list) is cut there


@dataclasses.dataclass(frozen=True)
class Project:
    name: str
    pip: tuple[str, ...]  # what to pip-install
    dist: str  # the distribution whose version is reported
    package: str  # top-level import package
    migrations: str  # the migrations folder, relative to the package folder
    engines: tuple[str, ...]
    init: str  # Python run as `python -c INIT URL WORKDIR`: how the project builds a new database
    init_doc: str
    baseline: str | None = None  # default `--baseline` for drift --against migrations
    baseline_revision: str | None = None
    baseline_note: str = ""
    env_py: str | None = None  # a wrapper env.py to run the package's revisions with, when its own cannot
    default: bool = True  # run when --projects is not given
    # The SQLAlchemy driver per engine where the project needs its own (airflow: psycopg2, whose binds its
    # chain relies on, and mysqlclient, which its settings import for MySQL).
    drivers: tuple[tuple[str, str], ...] = ()
    # Environment variables env.py takes the database URL from instead of sqlalchemy.url (each process
    # gets its database's URL there), and one that names a home folder of its own per database.
    url_env: tuple[str, ...] = ()
    home_env: str | None = None


# dagster's env.py takes its connection from config.attributes (dagster hands it one) and lists the class
# SqlRunStorage where RunStorageSqlMetadata is meant; this one opens the connection from sqlalchemy.url,
# lists the three MetaData and runs dagster's own run_migrations_online/offline.
DAGSTER_ENV_PY = """\
import sqlalchemy as sa
from alembic import context
from dagster._core.storage.event_log import SqlEventLogStorageMetadata
from dagster._core.storage.runs.schema import RunStorageSqlMetadata
from dagster._core.storage.schedules.schema import ScheduleStorageSqlMetadata
from dagster._core.storage.sql import run_migrations_offline, run_migrations_online

config = context.config
target_metadata = [SqlEventLogStorageMetadata, RunStorageSqlMetadata, ScheduleStorageSqlMetadata]
engine = sa.create_engine(config.get_main_option("sqlalchemy.url"), poolclass=sa.pool.NullPool)
if context.is_offline_mode():
    config.attributes["connection"] = engine
    run_migrations_offline(context, config, target_metadata)
else:
    with engine.connect() as connection:
        config.attributes["connection"] = connection
        run_migrations_online(context, config, target_metadata)
        connection.commit()
"""

PROJECTS: dict[str, Project] = {
    p.name: p
    for p in (
        Project(
            name="mlflow", pip=("mlflow",), dist="mlflow", package="mlflow",
            migrations="store/db_migrations", engines=ENGINES,
            init=("import sys\nfrom mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore\n"
                  "SqlAlchemyStore(sys.argv[1], sys.argv[2])\n"),
            init_doc="`SqlAlchemyStore(uri, artifact_root)`: create_all of `initial_models`, then `upgrade head`",
            # The chain is brownfield: its first revision alters tables that initial_models creates.
            baseline="mlflow.store.tracking.dbmodels.initial_models:Base.metadata",
            baseline_note="initial_models (created before the first revision)",
        ),
        Project(
            name="optuna", pip=("optuna",), dist="optuna", package="optuna",
            migrations="storages/_rdb/alembic", engines=ENGINES,
            init="import sys, optuna\noptuna.storages.RDBStorage(sys.argv[1])\n",
            init_doc="`RDBStorage(url)`: create_all of the models, then `stamp head`",
        ),
        Project(
            name="jupyterhub", pip=("jupyterhub",), dist="jupyterhub", package="jupyterhub",
            migrations="alembic", engines=ENGINES,
            init="import sys\nfrom jupyterhub import orm\norm.new_session_factory(sys.argv[1])\n",
            init_doc="`orm.new_session_factory(url)`: `stamp head` of the empty database, then create_all",
            # The first revision (19c0846f6344, "base revision for 0.5") is empty and 0.5's create_all
            # schema is not in the package: a new database is create_all of today's models stamped at
            # head, and that is the baseline that stands for head.
            baseline="jupyterhub.orm:Base.metadata", baseline_revision="head",
            baseline_note="today's models at head (create_all then stamp, as jupyterhub builds a new database)",
        ),
        Project(
            name="dagster", pip=("dagster", "dagster-postgres", "dagster-mysql"), dist="dagster",
            package="dagster", migrations="_core/storage/alembic", engines=ENGINES, env_py=DAGSTER_ENV_PY,
            default=False,
            # dagster's own URLs: psycopg2 and mysql-connector; SQLite keeps each storage in a file of its own.
            init=("import os, shutil, sys, tempfile\nurl = sys.argv[1]\n"
                  "if url.startswith('sqlite'):\n"
                  "    from dagster._core.storage.runs import SqliteRunStorage\n"
                  "    folder = tempfile.mkdtemp()\n"
                  "    SqliteRunStorage.from_local(folder).dispose()\n"
                  "    shutil.copy(os.path.join(folder, 'runs.db'), url[len('sqlite:///'):])\n"
                  "elif url.startswith('postgresql'):\n"
                  "    from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage, PostgresScheduleStorage\n"
                  "    url = 'postgresql' + url[url.index('://'):]\n"
                  "    PostgresRunStorage(url); PostgresEventLogStorage(url); PostgresScheduleStorage(url)\n"
                  "else:\n"
                  "    from dagster_mysql import MySQLEventLogStorage, MySQLRunStorage, MySQLScheduleStorage\n"
                  "    url = 'mysql+mysqlconnector' + url[url.index('://'):]\n"
                  "    MySQLRunStorage(url); MySQLEventLogStorage(url); MySQLScheduleStorage(url)\n"),
            init_doc="its run, event-log and schedule storages on one database (SQLite: the run storage's `runs.db`)",
        ),
        Project(
            name="airflow", pip=("apache-airflow-core", "psycopg2-binary", "mysqlclient", "asyncpg", "aiomysql",
                                 "aiosqlite"),
            dist="apache-airflow-core", package="airflow", migrations="migrations", engines=ENGINES, default=False,
            # env.py builds its engine from airflow's settings: the URL goes in AIRFLOW__DATABASE__SQL_ALCHEMY_CONN
            # (a replay's too: --shadow-url, below). mysqlclient needs libmariadb-dev (or libmysqlclient-dev).
            drivers=(("postgresql", "postgresql+psycopg2"), ("mysql", "mysql+mysqldb")),
            url_env=("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",), home_env="AIRFLOW_HOME",
            init=("import os, subprocess, sys\n"
                  "subprocess.run([os.path.join(os.path.dirname(sys.executable), 'airflow'), 'db', 'migrate'],"
                  " check=True)\n"),
            init_doc="`airflow db migrate`: create_all of its models, then `stamp head`",
        ),
        Project(
            name="buildbot", pip=("buildbot",), dist="buildbot", package="buildbot",
            migrations="db/migrations", engines=ENGINES, default=False,
            init=("import os, subprocess, sys\nfrom urllib.parse import urlparse\n"
                  "subprocess.run([os.path.join(os.path.dirname(sys.executable), 'buildbot'), 'create-master',"
                  " '--db', sys.argv[1], os.path.join(urlparse(sys.argv[2]).path, 'master')], check=True)\n"),
            init_doc="`buildbot create-master --db URL`: create_all of its model, then `stamp head`",
            baseline="buildbot.db.model:Model.metadata", baseline_revision="head",
            baseline_note="today's model at head (create_all then stamp, as buildbot builds a new database)",
        ),
    )
}

# Plain Alembic on the second database, dbguard (and one plain `alembic current`) on the first. The
# schema is compared with the models (and the migrations) twice: as the project built it, and at the end,
# after the downgrade and upgrade (a failed downgrade on MySQL/SQLite leaves its DDL half-done).
PLAIN_STEPS = (
    ("current", ["current"]),
    ("check (as built)", ["check"]),
    ("upgrade head", ["upgrade", "head"]),
    ("downgrade -1", ["downgrade", "-1"]),
    ("upgrade head (again)", ["upgrade", "head"]),
    ("check (end)", ["check"]),
)
DRIFT_MODELS = ["--format", "json", "drift", "--against", "models"]
DRIFT_MIGRATIONS = ["--format", "json", "drift", "--against", "migrations"]
# (step, tool, argv after the global options)
GUARD_STEPS = (
    ("current", "alembic", ["current"]),
    ("status", "dbguard", ["status"]),
    ("drift --against models (as built)", "dbguard", DRIFT_MODELS),
    ("drift --against migrations (as built)", "dbguard", DRIFT_MIGRATIONS),
    ("upgrade head", "dbguard", ["upgrade", "head"]),
    ("downgrade -1", "dbguard", ["downgrade", "-1"]),
    ("upgrade head (again)", "dbguard", ["upgrade", "head"]),
    ("drift --against models (end)", "dbguard", DRIFT_MODELS),
    ("drift --against migrations (end)", "dbguard", DRIFT_MIGRATIONS),
    ("status (end)", "dbguard", ["status"]),
)
# Only after a `downgrade -1` that failed (exit 5): the emergency lane back to the last verified state.
RECOVERY_STEP = ("rollback --yes (recovery)", "dbguard", ["rollback", "--yes"])
# The comparisons in the summary table: (column, plain step, dbguard step)
COLUMNS = (
    ("current", "current", "current"),
    ("status", None, "status"),
    ("check / drift models, as built", "check (as built)", "drift --against models (as built)"),
    ("drift migrations, as built", None, "drift --against migrations (as built)"),
    ("upgrade head", "upgrade head", "upgrade head"),
    ("downgrade -1", "downgrade -1", "downgrade -1"),
    ("rollback after exit 5", None, "rollback --yes (recovery)"),
    ("upgrade head again", "upgrade head (again)", "upgrade head (again)"),
    ("check / drift models, end", "check (end)", "drift --against models (end)"),
    ("drift migrations, end", None, "drift --against migrations (end)"),
    ("status at end", None, "status (end)"),
)


# --------------------------------------------------------------------------------------------------
# The venv


def in_venv(venv: Path) -> bool:
    return Path(sys.prefix).resolve() == venv.resolve()


def ensure_venv(venv: Path, projects: list[Project], reinstall: bool) -> None:
    """Create the venv when missing and install what is not there yet; a marker file remembers what was."""
    python = venv / "bin" / "python"
    if not python.exists():
        print(f"creating venv {venv}", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "--upgrade", "pip"], check=True)
    marker = venv / ".dbguard-real-projects.json"
    done: list[str] = json.loads(marker.read_text()) if marker.exists() and not reinstall else []
    wanted = [f"-e {ROOT}[postgresql,mysql]"] + [spec for p in projects for spec in p.pip]
    missing = [spec for spec in wanted if spec not in done]
    if not missing:
        return
    print(f"installing into {venv}: {', '.join(missing)}", file=sys.stderr)
    started = time.perf_counter()
    argv = [str(python), "-m", "pip", "install", "-q"]
    for spec in missing:
        argv += shlex.split(spec)
    subprocess.run(argv, check=True)
    print(f"installed in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    marker.write_text(json.dumps(sorted(set(done) | set(missing)), indent=1))


# --------------------------------------------------------------------------------------------------
# Databases


class Database:
    """An empty database named dbgrp_*, dropped by drop()."""

    def __init__(self, engine: str, folder: Path, label: str, driver: str | None = None) -> None:
        import sqlalchemy as sa

        self.engine, self.folder = engine, folder
        self.name = f"dbgrp_{label}_{uuid.uuid4().hex[:8]}"
        self.admin = None
        if engine == "sqlite":
            self.url = f"sqlite:///{folder / (self.name + '.sqlite')}"
            return
        server = sa.engine.make_url(SERVERS[engine])
        self.admin = sa.create_engine(server, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
        with self.admin.connect() as conn:
            conn.exec_driver_sql(f"CREATE DATABASE {self.name}")
        url = server.set(database=self.name)
        self.url = (url.set(drivername=driver) if driver else url).render_as_string(hide_password=False)

    def drop(self) -> None:
        if self.admin is None:
            for path in self.folder.glob(self.name + ".sqlite*"):
                path.unlink()
            return
        suffix = " WITH (FORCE)" if self.engine == "postgresql" else ""
        with self.admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {self.name}{suffix}")
        self.admin.dispose()


def masked(url: str) -> str:
    import sqlalchemy as sa

    return sa.engine.make_url(url).render_as_string(hide_password=True)


def server_label(engine: str) -> str:
    from docsection import server_version

    if engine == "sqlite":
        import sqlite3

        return f"SQLite {sqlite3.sqlite_version}"
    try:
        return server_version(SERVERS[engine])
    except Exception as exc:  # noqa: BLE001 - reported, the engine is then skipped
        return f"unreachable ({type(exc).__name__})"


# --------------------------------------------------------------------------------------------------
# Processes


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.pop("DBGUARD_URL", None)
    env.update({
        "NO_COLOR": "1",
        "PYTHONUNBUFFERED": "1",
        # No telemetry or update checks from the projects: there is no network but the registries.
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "1",
    })
    return env


def project_env(project: Project, url: str, home: Path) -> dict[str, str]:
    """What a process of ``project`` on the database at ``url`` needs in its environment."""
    env = {name: url for name in project.url_env}
    if project.home_env:
        home.mkdir(parents=True, exist_ok=True)
        env[project.home_env] = str(home)
    return env


def run(argv: list[str], cwd: Path, timeout: float, log: Path, env: dict[str, str] | None = None) -> dict[str, Any]:
    """One whole process: exit code, wall time, first lines of stdout and stderr (full text in ``log``)."""
    started = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=cwd, env={**child_env(), **(env or {})}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    timed_out = False
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
    except BaseException:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise
    elapsed = time.perf_counter() - started
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text(f"$ {shlex.join(argv)}\n# exit {proc.returncode}, {elapsed:.2f} s\n"
                   f"--- stdout\n{out}\n--- stderr\n{err}\n")

    def head(text: str) -> list[str]:
        return [line[:LINE_CHARS] for line in text.splitlines() if line.strip()][:HEAD_LINES]

    return {
        "argv": argv, "exit_code": proc.returncode, "seconds": round(elapsed, 3), "timed_out": timed_out,
        "stdout": head(out), "stderr": head(err), "message": message_of(argv, proc.returncode, out, err),
        "log": str(log), "_out": out, "_err": err,
    }


EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt|Failure|Mismatch)\b")


def message_of(argv: list[str], code: int, out: str, err: str) -> str:
    """The one line that says what happened: dbguard's own line, Alembic's FAILED line or the exception."""
    lines = [line.strip() for line in (err + "\n" + out).splitlines() if line.strip()]
    if Path(argv[0]).name == "dbguard":
        try:
            doc = json.loads(out)
        except ValueError:
            doc = None
        if isinstance(doc, dict) and doc.get("error"):
            return str(doc["error"])[:LINE_CHARS]
        if isinstance(doc, dict) and "drifts" in doc:
            return f"{len(doc['drifts'])} differences, {doc.get('tables_compared')} tables compared"
        if "status" in argv:
            state = [line for line in lines if line.startswith(("state:", "breaker:"))]
            if state:
                return "; ".join(" ".join(line.split()) for line in state)[:LINE_CHARS]
        ordered = [line.strip() for line in (out + "\n" + err).splitlines() if line.strip()]
        for line in ordered:  # the report on stdout before the progress lines on stderr
            if line.startswith("dbguard:") and "replaying migrations into" not in line:
                return line[:LINE_CHARS]
    if code == 0:
        # The last line: a project that logs to stdout (airflow) writes its log lines before Alembic's answer.
        plain = [line for line in out.splitlines() if line.strip()]
        return (plain[-1] if plain else "").strip()[:LINE_CHARS]
    for line in lines:
        if line.startswith("FAILED:"):
            return line[:200] + ("..." if len(line) > 200 else "")
    errs = [line.strip() for line in err.splitlines() if EXCEPTION_LINE.match(line.strip())]
    if errs:
        return errs[-1][:LINE_CHARS]
    return (lines[-1] if lines else "").strip()[:LINE_CHARS]


def alembic_ini(folder: Path, script_location: Path, url: str, env_py: str | None = None) -> Path:
    """A stock alembic.ini (logging sections included: optuna's and jupyterhub's env.py call fileConfig).
    With ``env_py``, script_location is a folder beside it holding that env.py, and version_locations
    the package's revisions."""
    folder.mkdir(parents=True, exist_ok=True)
    ini = folder / "alembic.ini"
    location = f"script_location = {script_location}\n"
    if env_py is not None:
        (folder / "env").mkdir(exist_ok=True)
        (folder / "env" / "env.py").write_text(env_py)
        location = f"script_location = {folder / 'env'}\nversion_locations = {script_location / 'versions'}\n"
    ini.write_text(
        "[alembic]\n"
        f"{location}"
        f"sqlalchemy.url = {url.replace('%', '%%')}\n\n"
        "[loggers]\nkeys = root,sqlalchemy,alembic\n\n"
        "[handlers]\nkeys = console\n\n"
        "[formatters]\nkeys = generic\n\n"
        "[logger_root]\nlevel = WARN\nhandlers = console\nqualname =\n\n"
        "[logger_sqlalchemy]\nlevel = WARN\nhandlers =\nqualname = sqlalchemy.engine\n\n"
        "[logger_alembic]\nlevel = INFO\nhandlers =\nqualname = alembic\n\n"
        "[handler_console]\nclass = StreamHandler\nargs = (sys.stderr,)\nlevel = NOTSET\nformatter = generic\n\n"
        "[formatter_generic]\nformat = %(levelname)-5.5s [%(name)s] %(message)s\ndatefmt = %H:%M:%S\n"
    )
    return ini


# --------------------------------------------------------------------------------------------------
# One project on one engine


def migrations_folder(project: Project) -> Path:
    import importlib.util

    spec = importlib.util.find_spec(project.package)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"{project.package} is not installed in {sys.prefix}")
    return Path(next(iter(spec.submodule_search_locations))) / project.migrations


def describe(project: Project) -> dict[str, Any]:
    from importlib.metadata import version

    from alembic.config import Config
    from alembic.script import ScriptDirectory

    folder = migrations_folder(project)
    config = Config()
    config.set_main_option("script_location", str(folder))
    script = ScriptDirectory.from_config(config)
    revisions = list(script.walk_revisions())
    return {
        "version": version(project.dist), "migrations": str(folder),
        "revisions": len(revisions), "heads": list(script.get_heads()), "bases": list(script.get_bases()),
        "init": project.init_doc, "baseline": project.baseline_note or None,
        "alembic": version("alembic"), "sqlalchemy": version("sqlalchemy"),
    }


def drift_items(result: dict[str, Any]) -> list[dict[str, Any]]:
    try:
        doc = json.loads(result["_out"])
    except ValueError:
        return []
    return list(doc.get("drifts") or []) if isinstance(doc, dict) else []


CHECK_OP = re.compile(r"\('((?:add|remove|modify)_\w+)',")


def check_items(result: dict[str, Any]) -> list[str]:
    """What `alembic check` detected: Alembic's log lines where env.py set up logging, else the operations
    named in its FAILED line (kind and table/column or index name)."""
    found = [line.split("] ", 1)[-1].strip() for line in result["_err"].splitlines()
             if "[alembic.autogenerate" in line and "Detected" in line]
    if found:
        return found
    failed = next((line for line in (result["_err"] + "\n" + result["_out"]).splitlines()
                   if line.startswith("FAILED:") or "New upgrade operations detected" in line), "")
    matches = list(CHECK_OP.finditer(failed))
    for match, after in zip(matches, matches[1:] + [None]):
        kind = match.group(1)
        tail = failed[match.end():after.start() if after else len(failed)][:2000]
        column = re.match(r" None, '([^']*)', '([^']*)'", tail)
        if column:
            found.append(f"{kind} {column.group(1)}.{column.group(2)}")
            continue
        named = re.match(r" (\w+)\(('([^']*)'|None)?", tail)
        table = re.search(r"table=(?:<(\w+)>|Table\('([^']*)')", tail)
        name = named.group(3) if named else None
        where = (table.group(1) or table.group(2)) if table else None
        found.append(" ".join(x for x in (kind, name, f"on {where}" if where and where != name else None) if x))
    return found


def baseline_args(project: Project, args: argparse.Namespace, drift_help: str) -> tuple[list[str], str]:
    """The --baseline/--baseline-revision options to pass, and why (or why not)."""
    baseline = args.baseline.get(project.name, project.baseline)
    revision = args.baseline_revision.get(project.name, project.baseline_revision)
    if not baseline and not revision:
        return [], "no baseline configured"
    if "--baseline" not in drift_help:
        return [], "this dbguard has no --baseline"
    extra: list[str] = []
    if baseline:
        extra += ["--baseline", baseline]
    if revision:
        if "--baseline-revision" not in drift_help:
            return extra, "this dbguard has no --baseline-revision"
        extra += ["--baseline-revision", revision]
    return extra, "passed"


def run_one(project: Project, engine: str, args: argparse.Namespace, work: Path, drift_help: str) -> dict[str, Any]:
    bin_dir = Path(sys.executable).parent
    folder = migrations_folder(project)
    row: dict[str, Any] = {"project": project.name, "engine": engine, "server": args.servers[engine]}
    tag = f"{project.name}-{engine}"
    logs = work / "logs" / tag
    databases: list[Database] = []
    driver = dict(project.drivers).get(engine)
    try:
        guarded = Database(engine, work, "g", driver)
        databases.append(guarded)
        plain = Database(engine, work, "p", driver)
        databases.append(plain)
        row["databases"] = {"dbguard": masked(guarded.url), "alembic": masked(plain.url)}
        envs = {db.url: project_env(project, db.url, work / f"{db.name}-home") for db in (guarded, plain)}
        init = {}
        for label, db in (("dbguard", guarded), ("alembic", plain)):
            artifacts = work / f"{db.name}-artifacts"
            artifacts.mkdir(parents=True, exist_ok=True)
            result = run([sys.executable, "-c", project.init, db.url, artifacts.as_uri()], work,
                         args.timeout, logs / f"init-{label}.log", envs[db.url])
            init[label] = result
            print(f"  init {label}: exit {result['exit_code']} in {result['seconds']:.1f} s", file=sys.stderr)
        row["init"] = init
        if any(r["exit_code"] != 0 for r in init.values()):
            row["skipped"] = "the project could not create its schema: " + "; ".join(
                f"{k}: {r['message']}" for k, r in init.items() if r["exit_code"] != 0)
            return row

        plain_ini = alembic_ini(work / f"{tag}-alembic", folder, plain.url, project.env_py)
        guarded_ini = alembic_ini(work / f"{tag}-dbguard", folder, guarded.url, project.env_py)

        row["alembic"] = {}
        for step, argv in PLAIN_STEPS:
            result = run([str(bin_dir / "alembic"), "-c", str(plain_ini), *argv], plain_ini.parent,
                         args.timeout, logs / f"alembic-{step.replace(' ', '_')}.log", envs[plain.url])
            if step.startswith("check"):
                result["detected"] = check_items(result)
            row["alembic"][step] = result
            print(f"  alembic {step}: exit {result['exit_code']} ({result['seconds']:.1f} s) {result['message'][:140]}",
                  file=sys.stderr)

        row["dbguard"] = {}
        extra, why = baseline_args(project, args, drift_help)
        row["baseline"] = {"args": extra, "why": why}
        steps = list(GUARD_STEPS)
        while steps:
            step, tool, argv = steps.pop(0)
            argv = list(argv)
            env = envs[guarded.url]
            if step.startswith("drift --against migrations"):
                argv += extra
                if project.url_env:
                    # env.py connects where the project's settings say, not to sqlalchemy.url: the replay
                    # goes to an empty database of its own that those settings name too.
                    shadow = Database(engine, work, "s", driver)
                    databases.append(shadow)
                    argv += ["--shadow-url", shadow.url]
                    env = project_env(project, shadow.url, work / f"{shadow.name}-home")
            result = run([str(bin_dir / tool), "-c", str(guarded_ini), *argv], guarded_ini.parent,
                         args.timeout, logs / f"dbguard-{step.replace(' ', '_')}.log", env)
            if step.startswith("drift"):
                result["drifts"] = drift_items(result)
            if step.startswith("drift --against migrations"):
                # dbguard names a chain whose first revision needs tables it does not create.
                result["brownfield"] = result["exit_code"] == 2 and "brownfield" in result["message"]
            result["tool"] = tool
            row["dbguard"][step] = result
            print(f"  {tool} {step}: exit {result['exit_code']} ({result['seconds']:.1f} s) {result['message'][:140]}",
                  file=sys.stderr)
            if step == "downgrade -1" and result["exit_code"] == 5:
                # The run failed and the breaker is open: the next upgrade would be refused (exit 3).
                # The way out dbguard offers is the emergency lane; record it, then go on.
                steps.insert(0, RECOVERY_STEP)
        return row
    finally:
        for db in databases:
            try:
                db.drop()
            except Exception as exc:  # noqa: BLE001 - said, and the next database is still dropped
                print(f"  could not drop {db.name}: {exc}", file=sys.stderr)
        row["load"] = round(os.getloadavg()[0], 2)


# --------------------------------------------------------------------------------------------------
# Report


def cell(result: dict[str, Any] | None) -> str:
    if result is None:
        return "–"
    text = f"{result['exit_code']} ({result['seconds']:.1f} s)"
    if "drifts" in result and result["exit_code"] in (0, 1):
        text += f", {len(result['drifts'])} diff."
    if "detected" in result and result["exit_code"] in (0, 255):
        text += f", {len(result['detected'])} ops"
    return text


def summary_table(rows: list[dict[str, Any]], versions: dict[str, dict[str, Any]]) -> str:
    head = ["project", "engine", "init (s)"] + [c for c, _, _ in COLUMNS] + ["load"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        name = f"{row['project']} {versions.get(row['project'], {}).get('version', '')}".strip()
        if "skipped" in row or "dbguard" not in row:
            lines.append(f"| {name} | {row['engine']} | {row.get('skipped', 'not run')} |"
                         + " |" * (len(head) - 3))
            continue
        init = max(r["seconds"] for r in row["init"].values())
        cells = [name, row["engine"], f"{init:.1f}"]
        for _, plain_step, guard_step in COLUMNS:
            a = row["alembic"].get(plain_step) if plain_step else None
            d = row["dbguard"].get(guard_step)
            cells.append(f"{cell(a)} / {cell(d)}" if plain_step else cell(d))
        cells.append(f"{row['load']:.1f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def baselines(rows: list[dict[str, Any]], versions: dict[str, dict[str, Any]]) -> list[str]:
    out = []
    for name, v in versions.items():
        used = next((r["baseline"] for r in rows if r["project"] == name and "baseline" in r), None)
        brownfield = any(r.get("dbguard", {}).get(step, {}).get("brownfield") for r in rows if r["project"] == name
                         for step in ("drift --against migrations (as built)", "drift --against migrations (end)"))
        args = " ".join(used["args"]) if used and used["args"] else "none"
        why = used["why"] if used else "not run"
        out.append(f"- {name}: {args} ({why}; {v.get('baseline') or 'the chain starts from an empty database'})"
                   + ("; the replay failed as brownfield" if brownfield else ""))
    return out


def failures(rows: list[dict[str, Any]]) -> list[str]:
    out = []
    for row in rows:
        where = f"{row['project']} / {row['engine']}"
        if "skipped" in row:
            out.append(f"- {where}: {row['skipped']}")
            continue
        for step, result in row.get("dbguard", {}).items():
            if result["exit_code"] not in (0, 1):
                out.append(f"- {where}, `{result['tool']} {step}` exit {result['exit_code']}: {result['message']}")
        for step, result in row.get("alembic", {}).items():
            if result["exit_code"] != 0 and not step.startswith("check"):
                out.append(f"- {where}, `alembic {step}` exit {result['exit_code']}: {result['message']}")
    return out


def _drift_line(d: dict[str, Any]) -> str:
    return (f"{d.get('severity')} {d.get('kind')} `{d.get('object')}`: "
            f"expected {d.get('expected')!s}, found {d.get('actual')!s}")


def differences(rows: list[dict[str, Any]]) -> list[str]:
    """Every difference found as built; at the end, only what changed since."""
    out = []
    for row in rows:
        where = f"{row['project']} / {row['engine']}"
        for kind in ("drift --against models", "drift --against migrations"):
            built = row.get("dbguard", {}).get(f"{kind} (as built)")
            end = row.get("dbguard", {}).get(f"{kind} (end)")
            if built is not None and built.get("drifts"):
                out.append(f"- {where}, `{kind}` as built ({len(built['drifts'])}):")
                out.extend(f"  - {_drift_line(d)}" for d in built["drifts"])
            if end is not None and end.get("drifts") is not None and end["exit_code"] in (0, 1):
                before = {_drift_line(d) for d in (built or {}).get("drifts") or []}
                after = {_drift_line(d) for d in end["drifts"]}
                if before != after:
                    out.append(f"- {where}, `{kind}` at the end: {len(after)} "
                               f"({len(after - before)} new, {len(before - after)} gone):")
                    out.extend(f"  - new: {line}" for line in sorted(after - before))
                    out.extend(f"  - gone: {line}" for line in sorted(before - after))
        for step in ("check (as built)", "check (end)"):
            check = row.get("alembic", {}).get(step)
            if check and check.get("detected"):
                out.append(f"- {where}, `alembic {step}` on the second database ({len(check['detected'])}):")
                out.extend(f"  - {line}" for line in check["detected"])
    return out


def markdown(report: dict[str, Any]) -> str:
    rows, versions = report["runs"], report["projects"]
    projects = "; ".join(
        f"{name} {v['version']} ({v['revisions']} revisions in `{v['migrations'].split('site-packages/')[-1]}`; "
        f"new database: {v['init']})" for name, v in versions.items())
    servers = ", ".join(f"{e}: {s}" for e, s in report["servers"].items())
    lib = next(iter(versions.values()), {})
    text = [
        "## Real projects",
        "",
        (f"`python benchmarks/real_projects.py{report['argv']}`; {report['machine']}; {servers}; "
        f"Alembic {lib.get('alembic', '?')}, SQLAlchemy {lib.get('sqlalchemy', '?')}; dbguard at "
        f"{report['dbguard_checkout']['commit'][:10]}"
        + (f" with uncommitted changes in {len(report['dbguard_checkout']['uncommitted_files'])} files of "
           "dbguard/" if report["dbguard_checkout"]["uncommitted_files"] else "") + "; "
        f"1-minute load average {report['load_start']:.1f} at the start, {report['load_end']:.1f} at the end "
        "(the \"load\" column, taken after each row). Not part of CI."),
        "",
        (f"Projects: {projects}. Each project built two identical databases its own way; plain Alembic ran "
        "on one and dbguard on the other, each command a whole process. Cells: exit code (wall time); "
        "\"a / d\" is plain Alembic / dbguard on the same step (`alembic check` against "
        "`dbguard drift --against models`, with the number of operations / differences each found). "
        "dbguard exits: 0 done, 1 drift found, 2 could not do its job, 3 refused (breaker open), "
        "5 run failed; Alembic: 0, 1 on an error, 255 when `check` finds operations."),
        "",
        summary_table(rows, versions),
        "",
        ("`drift --against migrations` baseline per project (`--baseline PROJECT=SPEC`, `--baseline-revision "
         "PROJECT=REV` on the command line):"),
        "",
        *baselines(rows, versions),
        "",
        "Failures (exit 2 or more) with their one-line message:",
        "",
        *(failures(rows) or ["- none"]),
        "",
        "Differences reported:",
        "",
        *(differences(rows) or ["- none"]),
    ]
    return "\n".join(text)


def printable_table(rows: list[dict[str, Any]]) -> str:
    lines = [f"{'project':<11} {'engine':<11} {'step':<28} {'alembic':>12} {'dbguard':>12}  message (dbguard, else alembic)"]
    steps = [("init", "init", "init")] + [(c, a, d) for c, a, d in COLUMNS]
    for row in rows:
        if "skipped" in row:
            lines.append(f"{row['project']:<11} {row['engine']:<11} skipped: {row['skipped']}")
            continue
        for label, plain_step, guard_step in steps:
            if label == "init":
                a, d = row["init"].get("alembic"), row["init"].get("dbguard")
            else:
                a = row["alembic"].get(plain_step) if plain_step else None
                d = row["dbguard"].get(guard_step)
            fmt = (lambda r: f"{r['exit_code']} {r['seconds']:6.1f}s" if r else "–")
            msg = (d or a or {}).get("message", "")
            lines.append(f"{row['project']:<11} {row['engine']:<11} {label:<28} {fmt(a):>12} {fmt(d):>12}  {msg[:110]}")
    return "\n".join(lines)


def strip_private(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: strip_private(v) for k, v in obj.items() if not str(k).startswith("_")}
    if isinstance(obj, list):
        return [strip_private(v) for v in obj]
    return obj


# --------------------------------------------------------------------------------------------------


def checkout_state() -> dict[str, Any]:
    """The commit dbguard was installed from, and whether its package had uncommitted changes (the
    install is editable: the run used the working tree as it was)."""
    def git(*argv: str) -> str:
        done = subprocess.run(["git", "-C", str(ROOT), *argv], capture_output=True, text=True, check=False)
        return done.stdout.strip()

    changed = [line[3:] for line in git("status", "--porcelain", "--", "dbguard").splitlines()]
    return {"commit": git("rev-parse", "HEAD"), "uncommitted_files": changed}


def pairs(values: list[str]) -> dict[str, str]:
    out = {}
    for value in values:
        if "=" not in value:
            raise SystemExit(f"expected PROJECT=VALUE, got {value!r}")
        key, _, rest = value.partition("=")
        out[key.strip()] = rest.strip()
    return out


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--projects", default=",".join(p.name for p in PROJECTS.values() if p.default),
                        help=f"comma-separated: {', '.join(PROJECTS)} (default: those before dagster)")
    parser.add_argument("--engines", default=",".join(ENGINES), help="comma-separated: postgresql,mysql,sqlite")
    parser.add_argument("--venv", type=Path, default=DEFAULT_VENV)
    parser.add_argument("--reinstall", action="store_true", help="pip-install everything again")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="the JSON report (Markdown beside it)")
    parser.add_argument("--write", action="store_true", help="also put the section into docs/benchmarks.md")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per command before it is killed")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="where ini files, SQLite files and full logs go (default: a new temporary folder)")
    parser.add_argument("--baseline", action="append", default=[], metavar="PROJECT=SPEC",
                        help="`drift --against migrations --baseline SPEC` for PROJECT (module:attr, file.sql or "
                             "snapshot.json), used where dbguard has the flag; PROJECT= turns a default off")
    parser.add_argument("--baseline-revision", action="append", default=[], metavar="PROJECT=REV",
                        help="`--baseline-revision REV` for PROJECT, used where dbguard has the flag")
    args = parser.parse_args()
    args.baseline = pairs(args.baseline)
    args.baseline_revision = pairs(args.baseline_revision)
    unknown = set(args.projects.split(",")) - set(PROJECTS)
    if unknown:
        parser.error(f"unknown project(s) {', '.join(sorted(unknown))}; known: {', '.join(PROJECTS)}")
    bad = set(args.engines.split(",")) - set(ENGINES)
    if bad:
        parser.error(f"unknown engine(s) {', '.join(sorted(bad))}")
    return args


def main() -> None:
    args = parse_args()
    chosen = [PROJECTS[name] for name in args.projects.split(",")]
    if not in_venv(args.venv):
        ensure_venv(args.venv, chosen, args.reinstall)
        python = str(args.venv / "bin" / "python")
        os.execv(python, [python, str(Path(__file__).resolve()), *sys.argv[1:]])

    from docsection import machine, write_section

    args.servers = {engine: server_label(engine) for engine in args.engines.split(",")}
    load_start = os.getloadavg()[0]
    drift_help = subprocess.run([str(Path(sys.executable).parent / "dbguard"), "drift", "--help"],
                                capture_output=True, text=True, env=child_env(), check=False).stdout
    versions = {p.name: describe(p) for p in chosen}
    rows: list[dict[str, Any]] = []
    own_workdir = args.workdir is None
    work = Path(tempfile.mkdtemp(prefix="dbguard-real-projects-")) if own_workdir else args.workdir
    work.mkdir(parents=True, exist_ok=True)
    print(f"work folder (ini files, SQLite files, full logs): {work}", file=sys.stderr)
    started = dt.datetime.now(dt.timezone.utc)
    for project in chosen:
        for engine in args.engines.split(","):
            if engine not in project.engines:
                continue
            if args.servers[engine].startswith("unreachable"):
                rows.append({"project": project.name, "engine": engine, "skipped": args.servers[engine]})
                continue
            print(f"{project.name} {versions[project.name]['version']} on {engine}", file=sys.stderr)
            rows.append(run_one(project, engine, args, work, drift_help))

    argv = "".join(f" {shlex.quote(a)}" for a in sys.argv[1:])
    report = {
        "started": started.isoformat(timespec="seconds"), "argv": argv, "machine": machine(),
        "servers": args.servers, "load_start": round(load_start, 2), "load_end": round(os.getloadavg()[0], 2),
        "dbguard_has_baseline": "--baseline" in drift_help, "projects": versions, "runs": strip_private(rows),
        "workdir": str(work), "dbguard_checkout": checkout_state(),
        "sha256_of_script": hashlib.sha256(Path(__file__).read_bytes()).hexdigest(),
    }
    print(printable_table(rows))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=1, default=str) + "\n")
    section = markdown(report)
    md = args.json.with_suffix(".md")
    md.write_text(section + "\n")
    print(f"\nJSON: {args.json}\nMarkdown: {md}", file=sys.stderr)
    if args.write:
        write_section("real-projects", section)
        print("docs/benchmarks.md: section real-projects written", file=sys.stderr)


if __name__ == "__main__":
    main()
