"""Prediction equals observation, one rule case per rule and engine: for each rule of
tests/risk_cases/postgresql.toml (PostgreSQL 15) and tests/risk_cases/mysql.toml (MariaDB), the first
case that runs on an empty database becomes a project (a base revision holding its ``history``, a
pending one its statements, a second its ``later``), and ``plan --offline --observe --shadow-url``
must find, per table, the predicted lock and rewrite (MariaDB: algorithm, write block, rebuild) as
observed, or the table not observed with a reason.

Cases with live ``facts`` are skipped (the scratch database is empty), and so are those of another
server version (a PostgreSQL one not 15.x, a MySQL 8 one)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from dbguard import api
from dbguard.output import to_json
from dbguard.settings import Settings
from tests.dbs import create_database, drop_database
from tests.projects import make_project
from tests.risk_support import case_revisions

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

CASES = Path(__file__).parent / "risk_cases"
ENGINES = {"postgresql": ("postgresql.toml", "pg_server_url"), "mariadb": ("mysql.toml", "mysql_server_url")}

# (engine, case name) -> why its prediction and observation are known to differ.
KNOWN: dict[tuple[str, str], str] = {}


def _runs_here(case: dict[str, Any], engine: str, default: str) -> bool:
    if case.get("facts"):
        return False
    version = str(case.get("version") or "")
    if engine == "postgresql":
        return not version or version.startswith("15")
    # MariaDB: the file's default engine "mysql" means both, unless a MySQL 8 version says otherwise.
    return case.get("engine", default) in ("mysql", "mariadb") and not version.startswith("8")


def _by_rule(engine: str) -> dict[str, list[dict[str, Any]]]:
    data = tomllib.loads((CASES / ENGINES[engine][0]).read_text())
    rules: dict[str, list[dict[str, Any]]] = {}
    for case in data["case"]:
        if _runs_here(case, engine, data["engine"]):
            rules.setdefault(case["rule"], []).append(case)
    return rules


def _observe(case: dict[str, Any], engine: str, server: str, work: Path) -> dict[str, Any]:
    """The ``observed`` part of the case's plan, as JSON has it."""
    family = "postgresql" if engine == "postgresql" else "mysql"
    revisions = case_revisions(case, engine)
    url = create_database(server, family)
    try:
        # Offline, the plan judges the server the target URL names: mariadb:// for MariaDB's rules.
        named = sa.make_url(url).set(drivername="mariadb+pymysql") if engine == "mariadb" else sa.make_url(url)
        ini = make_project(work, named.render_as_string(hide_password=False), revisions)
        report = api.plan(Settings(config_path=ini), offline=True, from_revision="b0", fail_on="none",
                          observe=True, shadow_url=url)
    finally:
        drop_database(url, server)
    observed: dict[str, Any] = json.loads(to_json(report))["observed"]  # the JSON form, as CI reads it
    return observed


def _problems(observed: dict[str, Any]) -> tuple[bool, list[str]]:
    """(whether the pending revision ran, what disagrees)."""
    revisions = observed["revisions"]
    if not revisions or revisions[0]["status"] != "observed":
        return False, []
    said = []
    for rev in revisions:
        if rev["status"] != "observed":
            continue  # ``later`` may fail where the case expects it to (data it needs)
        for t in rev["tables"]:
            if t.get("not_observed"):
                continue
            agrees = t["predicted_lock"] == t["observed_lock"] or \
                {t["predicted_lock"], t["observed_lock"]} <= {"none", "ACCESS SHARE"}
            if not agrees or t["predicted_rewrite"] != t["observed_rewrite"] and t["observed_rewrite"] is not None:
                said.append(f"{rev['revision']} {t['table']}: predicted {t['predicted_lock']} "
                            f"rewrite {t['predicted_rewrite']}, observed {t['observed_lock']} "
                            f"rewrite {t['observed_rewrite']}")
    return True, said


@pytest.mark.integration
@pytest.mark.parametrize("engine", list(ENGINES))
def test_each_rule_predicts_what_the_server_does(engine: str, request: pytest.FixtureRequest,
                                                 tmp_path: Path) -> None:
    server = request.getfixturevalue(ENGINES[engine][1])
    if engine == "mariadb":
        with sa.create_engine(server, poolclass=sa.pool.NullPool).connect() as conn:
            if not conn.dialect.is_mariadb:
                pytest.skip("the MySQL cases here are MariaDB's")
    problems, unrun = [], []
    for rule, cases in sorted(_by_rule(engine).items()):
        for n, case in enumerate(cases):
            ran, said = _problems(_observe(case, engine, server, tmp_path / f"{rule}-{n}"))
            if not ran:
                continue  # fails on an empty database: the rule's next case
            if said and (engine, case["name"]) not in KNOWN:
                problems.append(f"{rule} {case['name']!r}: " + "; ".join(said))
            break
        else:
            unrun.append(rule)
    assert not problems, "\n".join(problems)
    assert not unrun, f"no case of these rules runs on an empty database: {unrun}"
