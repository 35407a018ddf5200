"""Risk rules vs peers: the accuracy corpus (tests/risk_corpus) through dbguard, squawk and alembic-guard.

Run:  .venv/bin/python benchmarks/risk_peers.py [--peers-venv /tmp/peers-venv] [--write]

The peers are not project dependencies: install them into a scratch virtualenv first
(`python -m venv /tmp/peers-venv && /tmp/peers-venv/bin/pip install squawk-cli alembic-guard`).
Each revision's PostgreSQL SQL comes from Alembic's offline mode, one file per revision wrapped in
BEGIN/COMMIT as dbguard runs it (autocommit_block's COMMIT/BEGIN inside); squawk lints each file,
alembic-guard the revision files; dbguard judges the whole plan from 0001_base offline. A tool
"flags" a revision when it reports anything; expected.toml says which revisions are risky.
--write puts the table into docs/benchmarks.md (section "Risk rules vs peers").
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import tomllib
from docsection import machine, write_section

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
CORPUS = ROOT / "tests" / "risk_corpus"
URL = "postgresql+psycopg://corpus@localhost/corpus"
# squawk's style rules say nothing about locks or breakage; shown apart so the comparison is fair.
SQUAWK_STYLE = ("prefer-bigint-over-int", "prefer-bigint-over-smallint", "prefer-identity", "prefer-text-field",
                "prefer-timestamp-tz", "prefer-robust-stmts")
# dbguard sets lock_timeout and statement_timeout on every migration statement itself.
SQUAWK_TIMEOUTS = ("require-lock-timeout", "require-statement-timeout")


def render_sql() -> dict[str, str]:
    import argparse as ap

    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from dbguard.migrations import bridge
    from dbguard.risk.plan import statements_of

    config = Config(str(CORPUS / "alembic.ini"), cmd_opts=ap.Namespace(x=None))
    config.set_main_option("sqlalchemy.url", URL)
    script = ScriptDirectory.from_config(config)
    out = {}
    for rev in bridge.offline_sql(script, config, (), "head"):
        body = "\n".join(s.rstrip(";") + ";" for s in statements_of(rev.statements))
        out[rev.revision] = f"BEGIN;\n{body}\nCOMMIT;\n"
    return out


def run_dbguard() -> tuple[dict[str, list[str]], float]:
    from dbguard import api
    from dbguard.settings import load_settings

    started = time.perf_counter()
    report = api.plan(load_settings({"config_path": str(CORPUS / "alembic.ini"), "url": URL}), "head",
                      offline=True, from_revision="0001_base")
    elapsed = time.perf_counter() - started
    return {r.revision: sorted({f.code for f in r.findings}) for r in report.revisions}, elapsed


def run_squawk(venv: Path, sql: dict[str, str], folder: Path) -> tuple[dict[str, list[str]], str]:
    exe = venv / "bin" / "squawk"
    version = subprocess.run([str(exe), "--version"], capture_output=True, text=True, check=False).stdout.strip()
    found: dict[str, list[str]] = {}
    for revision, text in sql.items():
        path = folder / f"{revision}.sql"
        path.write_text(text)
        done = subprocess.run([str(exe), "--reporter", "json", str(path)], capture_output=True, text=True, check=False)
        try:
            items = json.loads(done.stdout or "[]")
        except ValueError:
            items = [{"rule_name": f"(unparsed output: {done.stdout[:80]!r})"}]
        found[revision] = sorted({i.get("rule_name") or i.get("rule") or "?" for i in items})
    return found, version


def run_alembic_guard(venv: Path) -> tuple[dict[str, list[str]], str]:
    exe = venv / "bin" / "alembic-guard"
    version = subprocess.run([str(exe), "--version"], capture_output=True, text=True, check=False).stdout.strip()
    done = subprocess.run([str(exe), "--format", "json", str(CORPUS / "versions")], capture_output=True, text=True,
                          check=False, cwd=CORPUS)
    data = json.loads(done.stdout)
    items = data if isinstance(data, list) else data.get("findings") or data.get("results") or []
    found: dict[str, list[str]] = {}
    for item in items:
        name = Path(item.get("file") or item.get("path") or "").stem
        rule = item.get("rule") or item.get("id") or item.get("rule_id") or "?"
        found.setdefault(name, []).append(str(rule))
    return {k: sorted(set(v)) for k, v in found.items()}, version


def score(flags: dict[str, bool], expected: dict[str, dict]) -> tuple[list[str], list[str]]:
    misses = [r for r, e in expected.items() if e["risky"] and not flags.get(r)]
    alarms = [r for r, e in expected.items() if not e["risky"] and flags.get(r)]
    return misses, alarms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peers-venv", default="/tmp/peers-venv", type=Path)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    expected = tomllib.loads((CORPUS / "expected.toml").read_text())["revisions"]
    sql = {r: s for r, s in render_sql().items() if r in expected}
    dbguard, seconds = run_dbguard()
    with tempfile.TemporaryDirectory() as folder:
        squawk, squawk_version = run_squawk(args.peers_venv, sql, Path(folder))
    guard, guard_version = run_alembic_guard(args.peers_venv)

    def cell(codes: list[str]) -> str:
        return ", ".join(codes) if codes else "–"

    rows = ["| revision | risky | dbguard | squawk | alembic-guard |", "|---|---|---|---|---|"]
    tools: dict[str, dict[str, bool]] = {"dbguard": {}, "squawk (defaults)": {},
                                         "squawk (no style or timeout-setting rules)": {}, "alembic-guard": {}}
    for revision, exp in expected.items():
        sq = squawk.get(revision, [])
        sq_core = [r for r in sq if r not in SQUAWK_STYLE + SQUAWK_TIMEOUTS]
        ag = guard.get(revision, [])
        tools["dbguard"][revision] = bool(dbguard.get(revision))
        tools["squawk (defaults)"][revision] = bool(sq)
        tools["squawk (no style or timeout-setting rules)"][revision] = bool(sq_core)
        tools["alembic-guard"][revision] = bool(ag)
        rows.append(f"| {revision} | {'yes' if exp['risky'] else 'no'} | {cell(dbguard.get(revision, []))} | "
                    f"{cell(sq)} | {cell(ag)} |")
    summary = ["| tool | flagged risky revisions (of " + str(sum(e["risky"] for e in expected.values())) +
               ") | misses | false alarms |", "|---|---|---|---|"]
    for tool, flags in tools.items():
        misses, alarms = score(flags, expected)
        caught = sum(1 for r, e in expected.items() if e["risky"] and flags.get(r))
        summary.append(f"| {tool} | {caught} | {len(misses)}: {', '.join(m[:4] for m in misses) or '–'} | "
                       f"{len(alarms)}: {', '.join(a[:4] for a in alarms) or '–'} |")
    text = "\n".join([
        "## Risk rules vs peers",
        "",
        (f"`python benchmarks/risk_peers.py --write`, {machine()}; 1-minute load average "
         f"{os.getloadavg()[0]:.1f} at the end. The {len(expected)} revisions of tests/risk_corpus after "
        f"0001_base, PostgreSQL. dbguard judged them offline as one plan in {seconds * 1000:.0f} ms "
        f"(`plan --offline --from 0001_base`); {squawk_version} linted each revision's SQL (Alembic offline "
        f"mode, one file per revision, BEGIN/COMMIT as run); {guard_version} read the revision files. A "
        "revision counts as flagged when the tool reports anything; \"risky\" is the corpus's verdict "
        "(tests/risk_corpus/expected.toml). The second squawk row leaves out its style rules "
        f"({', '.join(SQUAWK_STYLE)}) and the timeout-setting rules ({', '.join(SQUAWK_TIMEOUTS)}), which dbguard "
        "satisfies itself on every statement it runs."),
        "",
        *summary,
        "",
        ("Where they differ: squawk's `require-lock-timeout` is satisfied by `SET lock_timeout = 0` (0026 turns the "
        "timeout off); neither peer looks at DML (0028 deletes every row) or at how many relations one "
        "transaction locks (0029), nor at how long a lock is held: a VALIDATE or a backfill in the "
        "transaction that took ACCESS EXCLUSIVE keeps it through the scan (0033, 0034; squawk flags 0033 only "
        "for the missing NOT VALID of its first statement); both judge one revision at a time, so the index on "
        "a table created by the "
        "previous revision of the same plan (0007) looks blocking, and both flag any type change (0020 widens a "
        "varchar, which PostgreSQL does without a rewrite) and any SET NOT NULL (0015 follows a validated CHECK, "
        "so PostgreSQL 12+ skips the scan). Caveat: the corpus was written together with dbguard's rules, so "
        "it shows the cases dbguard was built for; the peers' per-revision findings are in the table for anyone "
        "to judge. Offline, dbguard does not know table sizes (every existing table is \"of unknown size\"); "
        "with a database it weighs each finding by the live rows and size (tests/test_plan.py)."),
        "",
        *rows,
        "",
    ])
    print(text)
    if args.write:
        write_section("risk-peers", text)


if __name__ == "__main__":
    main()
