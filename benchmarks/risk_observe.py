"""Predicted vs observed locks: every PostgreSQL rule case and corpus revision through `plan --observe`.

Run:  .venv/bin/python benchmarks/risk_observe.py [--server-url URL] [--write]

Each rule case of tests/risk_cases/postgresql.toml whose server version is absent or 15.x becomes a
small project: a base revision holding its `history`, a pending one holding its statements (an
autocommit block where the SQL has COMMIT ... BEGIN) and a second for `later`. Each revision of
tests/risk_corpus is observed alone, from the revision before it. Every one runs as
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
CORPUS = ROOT / "tests" / "risk_corpus"
DEFAULT_SERVER = os.environ.get("DBGUARD_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def _dbguard(ini: Path, url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "dbguard.cli", "-c", str(ini), "--url", url, *args],
                          capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL, timeout=300,
                          check=False)


def _body(statements: list[str]) -> str:
    """A revision's upgrade() running ``statements``; COMMIT ... BEGIN become an autocommit block."""
    lines, block = [], False
    for sql in statements:
        word = sql.strip().rstrip(";").upper()
        if word == "COMMIT":
            lines.append("with op.get_context().autocommit_block():")
            block = True
        elif word == "BEGIN":
            block = False
        else:
            lines.append(("    " if block else "") + f"op.execute({sql.strip().rstrip(';')!r})")
    if block and lines[-1].startswith("with "):
        lines.append("    pass")
    return "\n".join(lines) or "pass"


def _observe(ini: Path, url: str, base: str, destination: str = "head") -> dict[str, Any]:
    done = _dbguard(ini, url, "--format", "json", "plan", destination, "--offline", "--from", base, "--observe",
                    "--shadow-url", url, "--fail-on", "none")
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
            agree = ("yes" if t["predicted_lock"] == t["observed_lock"] or _reads_only(t) else "no") \
                if t["predicted_rewrite"] == t["observed_rewrite"] else "no"
            rows.append((label, t["table"], t["predicted_lock"], t["observed_lock"],
                         f"{_yn(t['predicted_rewrite'])}/{_yn(t['observed_rewrite'])}", agree))
        if not rev["tables"]:
            rows.append((label, "", "", "", "", "yes (no table locked)"))
    return rows


def _reads_only(t: dict[str, Any]) -> bool:
    return {t["predicted_lock"], t["observed_lock"]} <= {"none", "ACCESS SHARE"}


def _yn(flag: bool) -> str:
    return "yes" if flag else "no"


def rule_cases(server: str, work: Path) -> list[tuple[str, ...]]:
    from dbguard.risk.parse import split_statements
    from tests.dbs import create_database, drop_database
    from tests.projects import make_project
    from tests.risk_support import statements

    cases = tomllib.loads(CASES.read_text())["case"]
    rows: list[tuple[str, ...]] = []
    for n, case in enumerate(cases):
        if case.get("version") and not str(case["version"]).startswith("15"):
            continue
        history = [s for chunk in statements(case, "postgresql", "history") for s in split_statements(chunk)]
        pending = [s for chunk in statements(case, "postgresql", "pending") for s in split_statements(chunk)]
        revisions = [("b0", _body(history)), ("r1", _body(pending))]
        if case.get("later"):
            later = case["later"] if isinstance(case["later"], list) else [case["later"]]
            revisions.append(("r2", _body(later)))
        url = create_database(server, "postgresql")
        try:
            ini = make_project(work / f"case{n}", url, revisions)
            rows += _rows(f"{case['rule']} {case['name']}", _observe(ini, url, "b0"))
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server-url", default=DEFAULT_SERVER, help="an admin URL of a PostgreSQL 15 server")
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dbguard-observe-") as folder:
        work = Path(folder)
        rows = rule_cases(args.server_url, work) + corpus(args.server_url, work)
        spent = timing(args.server_url, work)
    counted = [r for r in rows if r[5] in ("yes", "no") or r[5].startswith("yes")]
    agree = sum(1 for r in counted if r[5].startswith("yes"))
    not_observed = len(rows) - len(counted)
    table = ["| case | table | predicted lock | observed lock | rewrite predicted/observed | agree |",
             "|---|---|---|---|---|---|"]
    table += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    text = "\n".join([
        "## Predicted vs observed locks (plan --observe)",
        "",
        (f"`python benchmarks/risk_observe.py --write`, {machine()}; {server_version(args.server_url)}; 1-minute load "
        f"average {os.getloadavg()[0]:.1f} at the end. Every PostgreSQL rule case (server version absent or 15.x) "
        "and every revision of tests/risk_corpus, observed in a fresh empty database by "
        "`plan --offline --from BASE --observe --shadow-url`. An ACCESS SHARE the plan does not predict counts "
        "as agreeing (plain reads)."),
        "",
        (f"Agree: {agree} of {len(counted)} table rows; {not_observed} row(s) not observed (failed on the empty "
        "database, or nothing to observe)."),
        "",
        *table,
        "",
        (f"`plan --observe`, 30 pending revisions on a chain of 30 applied ones, whole process (scratch database "
        f"built and dropped), {len(spent)} runs: median {statistics.median(spent):.2f} s, "
        f"min {min(spent):.2f} s, max {max(spent):.2f} s (goal: under 5 s)."),
    ])
    print(text)
    if args.write:
        write_section("risk-observe", text)


if __name__ == "__main__":
    main()
