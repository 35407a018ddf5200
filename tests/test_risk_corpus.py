"""The accuracy corpus (tests/risk_corpus): 35 realistic revisions judged as one offline plan from
0001_base; every revision gets exactly its expected findings, on PostgreSQL and MySQL. Needs no
database. The same corpus goes through squawk and alembic-guard in benchmarks/risk_peers.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from dbguard import api
from dbguard.settings import load_settings

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

CORPUS = Path(__file__).parent / "risk_corpus"
URLS = {"postgresql": "postgresql+psycopg://corpus@localhost/corpus", "mysql": "mysql+pymysql://corpus@localhost/corpus"}
EXPECTED = tomllib.loads((CORPUS / "expected.toml").read_text())["revisions"]


@pytest.fixture(scope="module", params=["postgresql", "mysql"])
def judged(request: pytest.FixtureRequest) -> tuple[str, dict[str, list[str]]]:
    settings = load_settings({"config_path": str(CORPUS / "alembic.ini"), "url": URLS[request.param]})
    report = api.plan(settings, "head", offline=True, from_revision="0001_base")
    return request.param, {r.revision: sorted({f.code for f in r.findings}) for r in report.revisions}


def test_corpus_is_big_enough() -> None:
    assert len(EXPECTED) >= 25
    assert len(list((CORPUS / "versions").glob("0*.py"))) == len(EXPECTED) + 1  # + 0001_base


def test_every_revision_gets_exactly_its_findings(judged: tuple[str, dict[str, list[str]]]) -> None:
    engine, got = judged
    assert set(got) == set(EXPECTED)
    wrong = []
    for revision, expected in EXPECTED.items():
        want = expected[engine]
        if want == "skip":
            continue
        if got[revision] != sorted(want):
            wrong.append(f"{revision}: expected {sorted(want)}, got {got[revision]}")
    assert not wrong, "\n".join(wrong)


def test_offline_plan_of_the_example_needs_no_database() -> None:
    """`dbguard plan --offline --from REV` on migrations_example: no database (the URL's host does
    not exist). How long it takes is benchmarks/risk_peers.py's business."""
    settings = load_settings({"config_path": str(Path(__file__).parent.parent / "migrations_example" / "alembic.ini"),
                              "url": "postgresql+psycopg://nobody@invalid.invalid:1/none"})
    report = api.plan(settings, "head", offline=True, from_revision="0002_orders")
    assert [r.revision for r in report.revisions] == ["0003_last_login_status_index", "0004_audit_log_order_note"]
    # the orders index of 0003, of unknown size; built while the ADD COLUMN before it keeps users locked
    assert [f.code for f in report.findings] == ["DG102", "DG115"]
    assert report.mode == "offline"
