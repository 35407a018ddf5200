"""Predicted vs observed locks: every PostgreSQL and MariaDB rule case and corpus revision through `plan --observe`.

Run:  .venv/bin/python benchmarks/risk_observe.py [--server-url URL] [--mysql-url URL] [--engine E] [--write]

Each rule case of tests/risk_cases/postgresql.toml whose server version is absent or 15.x becomes a
small project: a base revision holding its `history`, a pending one holding its statements (an
autocommit block where the SQL has COMMIT ... BEGIN) and a second for `later`. Each revision of
tests/risk_corpus is observed alone, from the revision before it. Each case of tests/risk_cases/mysql.toml
without a MySQL 8 version runs the same way on MariaDB (judged as MariaDB: a mariadb:// URL), where
the comparison is of the ALTER algorithm, the write block and the rebuild. Every one runs as
`dbguard plan --offline --from BASE --observe --shadow-url FRESH_DB`, one process, in a fresh
database dropped afterwards. The table says per case and table the predicted and the observed
strongest lock and rewrite, and whether they agree. Then the whole `plan --observe` process is timed
for 30 pending revisions on a chain of 30 applied ones (scratch database built and dropped).
--write puts the result into docs/benchmarks.md (section "risk-observe").
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import tomllib
from docsection import machine, server_version, write_section

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
CASES = ROOT / "tests" / "risk_cases" / "postgresql.toml"
MYSQL_CASES = ROOT / "tests" / "risk_cases" / "mysql.toml"
CORPUS = ROOT / "tests" / "risk_corpus"
DEFAULT_SERVER = os.environ.get("DBGUARD_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
DEFAULT_MYSQL = os.environ.get("DBGUARD_TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306/test")


def _dbguard(ini: Path, url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "dbguard.cli", "-c", str(ini), "--url", url, *args],
                          capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL, timeout=300,
                          check=False)


def _observe(ini: Path, url: str, base: str, destination: str = "head", target: str | None = None) -> dict[str, Any]:
    """``target``: the URL the offline plan judges (mariadb:// for MariaDB); ``url`` is observed in."""
    done = _dbguard(ini, target or url, "--format", "json", "plan", destination, "--offline", "--from", base,
                    "--observe", "--shadow-url", url, "--fail-on", "none")
    if done.returncode not in (0, 1):
        return {"error": (done.stderr.strip().splitlines() or ["?"])[-1][:200]}
    return json.loads(done.stdout)


def _rows(name: str, doc: dict[str, Any]) -> list[tuple[str, ...]]:
    if "error" in doc:
        return [(name, "", "", "", "", f"not observed: {doc['error']}")]
    rows = []
    for rev in (doc.get("observed") or {}).get("revisions", []):
        label = name if rev["revision"] == "r1" or name.endswith(rev["revision"]) else f"{name} ({rev['revision']})"
        if rev["status"] != "observed":
            rows.append((label, "", "", "", "", f"not observed: {rev['reason']}"[:120]))
            continue
        for t in rev["tables"]:
            if t.get("not_observed"):
                rows.append((label, t["table"], t["predicted_lock"], "", f"{_yn(t['predicted_rewrite'])}/",
                             f"not observed: {t['not_observed']}"[:120]))
                continue
            rewrite_agrees = t["observed_rewrite"] is None or t["predicted_rewrite"] == t["observed_rewrite"]
            agree = ("yes" if t["predicted_lock"] == t["observed_lock"] or _reads_only(t) else "no") \
                if rewrite_agrees else "no"
            rows.append((label, t["table"], t["predicted_lock"], t["observed_lock"],
                         f"{_yn(t['predicted_rewrite'])}/{_yn(t['observed_rewrite'])}", agree))
        if not rev["tables"]:
            rows.append((label, "", "", "", "", "yes (no table locked)"))
    return rows


def _reads_only(t: dict[str, Any]) -> bool:
    return {t["predicted_lock"], t["observed_lock"]} <= {"none", "ACCESS SHARE"}


def _yn(flag: bool | None) -> str:
    return "?" if flag is None else "yes" if flag else "no"


def rule_cases(server: str, work: Path, engine: str = "postgresql") -> list[tuple[str, ...]]:
    """Each case of the engine's file (``engine`` postgresql or mariadb) that runs on that server."""
    import sqlalchemy as sa

    from tests.dbs import create_database, drop_database
    from tests.projects import make_project
    from tests.risk_support import case_revisions

    data = tomllib.loads((CASES if engine == "postgresql" else MYSQL_CASES).read_text())
    family = "postgresql" if engine == "postgresql" else "mysql"
    rows: list[tuple[str, ...]] = []
    for n, case in enumerate(data["case"]):
        version = str(case.get("version") or "")
        if engine == "postgresql" and version and not version.startswith("15"):
            continue
        if engine == "mariadb" and (version.startswith("8") or case.get("engine", data["engine"]) not in
                                    ("mysql", "mariadb")):
            continue
        revisions = case_revisions(case, engine)
        url = create_database(server, family)
        target = sa.make_url(url).set(drivername="mariadb+pymysql").render_as_string(hide_password=False) \
            if engine == "mariadb" else url
        try:
            ini = make_project(work / f"{engine}-case{n}", target, revisions)
            rows += _rows(f"{case['rule']} {case['name']}", _observe(ini, url, "b0", target=target))
        finally:
            drop_database(url, server)
    return rows


def corpus(server: str, work: Path) -> list[tuple[str, ...]]:
    """Each corpus revision alone, in a copy of the corpus: a revision that cannot run anywhere
    (CONCURRENTLY in a transaction) is made a no-op there once observed failing, so that the
    revisions after it can still be replayed to."""
    import shutil

    import sqlalchemy as sa

    from tests.dbs import create_database, drop_database

    copy = work / "corpus"
    shutil.copytree(CORPUS, copy)
    order = sorted(p.stem for p in (copy / "versions").glob("*.py"))
    rows: list[tuple[str, ...]] = []
    for before, revision in itertools.pairwise(order):
        url = create_database(server, "postgresql")
        try:
            # The corpus's revision ids are longer than alembic_version's 32 characters (it is rendered
            # offline only): a wider version table, which Alembic then finds and keeps.
            engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
            with engine.begin() as conn:
                conn.exec_driver_sql("CREATE TABLE alembic_version (version_num VARCHAR(128) PRIMARY KEY)")
            engine.dispose()
            found = _rows(f"corpus {revision}", _observe(copy / "alembic.ini", url, before, revision))
        finally:
            drop_database(url, server)
        rows += found
        if any("failed in the scratch database" in r[5] for r in found):
            path = copy / "versions" / f"{revision}.py"
            path.write_text(path.read_text() + "\n\ndef upgrade() -> None:  # benchmark: cannot run anywhere\n    pass\n")
    return rows


def timing(server: str, work: Path, repeat: int = 3) -> list[float]:
    """Whole ``dbguard plan --observe`` processes: 30 pending revisions on 30 applied ones."""
    from tests.dbs import create_database, drop_database
    from tests.projects import make_project

    applied = [(f"a{i:02d}", (f"op.create_table('t{i:02d}', sa.Column('id', sa.Integer, primary_key=True), "
                             f"sa.Column('n', sa.Integer))")) for i in range(30)]
    pending = [(f"p{i:02d}", f"op.add_column('t{i:02d}', sa.Column('note', sa.Text, nullable=True))")
               for i in range(30)]
    url = create_database(server, "postgresql")
    try:
        ini = make_project(work / "timing", url, applied + pending)
        if _dbguard(ini, url, "upgrade", "a29").returncode != 0:
            raise SystemExit("the timing chain did not apply")
        spent = []
        for _ in range(repeat):
            started = time.perf_counter()
            done = _dbguard(ini, url, "plan", "--observe", "--fail-on", "none")
            spent.append(time.perf_counter() - started)
            if done.returncode != 0:
                raise SystemExit(f"plan --observe failed: {done.stderr[-400:]}")
        return spent
    finally:
        drop_database(url, server)


def _table(rows: list[tuple[str, ...]], lock: str) -> tuple[str, list[str]]:
    """(the agreement line, the markdown table) of ``rows``."""
    counted = [r for r in rows if r[5] in ("yes", "no") or r[5].startswith("yes")]
    agree = sum(1 for r in counted if r[5].startswith("yes"))
    line = (f"Agree: {agree} of {len(counted)} table rows; {len(rows) - len(counted)} row(s) not observed "
            "(failed on the empty database, nothing to observe, or a table the copy cannot stand for).")
    table = [f"| case | table | predicted {lock} | observed {lock} | rewrite predicted/observed | agree |",
             "|---|---|---|---|---|---|"]
    table += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return line, table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server-url", default=DEFAULT_SERVER, help="an admin URL of a PostgreSQL 15 server")
    parser.add_argument("--mysql-url", default=DEFAULT_MYSQL, help="an admin URL of a MariaDB server")
    parser.add_argument("--engine", choices=("all", "postgresql", "mariadb"), default="all")
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    if args.write and args.engine != "all":
        raise SystemExit("--write needs every engine (--engine all): the section holds them all")
    text: list[str] = ["## Predicted vs observed locks (plan --observe)", ""]
    with tempfile.TemporaryDirectory(prefix="dbguard-observe-") as folder:
        work = Path(folder)
        if args.engine in ("all", "postgresql"):
            rows = rule_cases(args.server_url, work) + corpus(args.server_url, work)
            spent = timing(args.server_url, work)
            line, table = _table(rows, "lock")
            text += [
                (f"`python benchmarks/risk_observe.py --write`, {machine()}; {server_version(args.server_url)}; "
                 f"1-minute load average {os.getloadavg()[0]:.1f} at the end. Every PostgreSQL rule case (server "
                 "version absent or 15.x) and every revision of tests/risk_corpus, observed in a fresh empty database "
                 "by `plan --offline --from BASE --observe --shadow-url`. An ACCESS SHARE the plan does not predict "
                 "counts as agreeing (plain reads)."),
                "", line, "", *table, "",
                (f"`plan --observe`, 30 pending revisions on a chain of 30 applied ones, whole process (scratch "
                 f"database built and dropped), {len(spent)} runs: median {statistics.median(spent):.2f} s, "
                 f"min {min(spent):.2f} s, max {max(spent):.2f} s (goal: under 5 s)."),
                "",
            ]
        if args.engine in ("all", "mariadb"):
            line, table = _table(rule_cases(args.mysql_url, work, "mariadb"), "algorithm")
            text += [
                "### MariaDB",
                "",
                (f"{server_version(args.mysql_url)}. Every rule case of tests/risk_cases/mysql.toml without a MySQL 8 "
                 "version, judged as MariaDB (a mariadb:// target URL) and observed the same way: each ALTER asked "
                 "of the server on an empty copy of its table just before it runs (INSTANT, then INPLACE with "
                 "LOCK=NONE, then with LOCK=SHARED, else COPY; a new InnoDB table id is a rebuild). A table with foreign keys, or one a "
                 "foreign key statement names, is not observed (a copy has no foreign keys)."),
                "", line, "", *table, "",
            ]
    print("\n".join(text).rstrip())
    if args.write:
        write_section("risk-observe", "\n".join(text).rstrip())


if __name__ == "__main__":
    main()
