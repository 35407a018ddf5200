"""Every risk rule against its cases in tests/risk_cases/*.toml: must fire / must not fire, per
engine (PostgreSQL, MySQL 8, MariaDB), from SQL or from Alembic ops rendered offline."""

from __future__ import annotations

from pathlib import Path

import pytest

from dbguard.risk import rules
from tests.risk_support import judge, statements

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

CASES_DIR = Path(__file__).parent / "risk_cases"


def _cases() -> list:
    params = []
    for path in sorted(CASES_DIR.glob("*.toml")):
        data = tomllib.loads(path.read_text())
        for case in data["case"]:
            engine = case.get("engine", data["engine"])
            verdict = "fires" if case["fires"] else "silent"
            params.append(pytest.param(case, engine, id=f"{case['rule']}-{engine}-{verdict}-{case['name']}"))
    return params


@pytest.mark.parametrize(("case", "engine"), _cases())
def test_rule_case(case: dict, engine: str) -> None:
    plan = judge(statements(case, engine, "pending"), engine, history=statements(case, engine, "history"),
                 facts=case.get("facts"), version=case.get("version"))
    hits = [f for f in plan.findings if f.code == case["rule"]]
    detail = "\n".join(f"{f.code} {f.severity} {f.message}" for f in plan.findings) or "no findings"
    if case["fires"]:
        assert hits, f"{case['rule']} should fire; got:\n{detail}\nSQL: {[s.sql for s in plan.statements]}"
        if "severity" in case:
            assert max(h.level for h in hits).label == case["severity"], detail
    else:
        assert not hits, f"{case['rule']} should not fire; got:\n{detail}"


def test_every_rule_has_cases_that_fire_and_that_do_not() -> None:
    seen: dict[str, set[bool]] = {}
    engines: dict[str, set[str]] = {}
    for param in _cases():
        case, engine = param.values
        seen.setdefault(case["rule"], set()).add(case["fires"])
        engines.setdefault(case["rule"], set()).add("postgresql" if engine == "postgresql" else "mysql")
    for rule in rules.RULES:
        assert seen.get(rule.code) == {True, False}, f"{rule.code} needs cases that fire and that do not"
        assert engines[rule.code] == {"postgresql", "mysql"}, f"{rule.code} needs PostgreSQL and MySQL cases"


def test_rules_document_themselves() -> None:
    codes = [r.code for r in rules.RULES]
    assert len(codes) == len(set(codes))
    for rule in rules.RULES:
        doc = rule.fn.__doc__ or ""
        assert "Anti-pattern" in doc and "Best practice" in doc, rule.code
        assert rule.code.startswith("DG1") and len(rule.code) == 5
