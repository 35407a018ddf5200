"""Helpers for the risk rule cases and the accuracy corpus: render Alembic ops offline in-process,
and judge SQL with the planner, without a database."""

from __future__ import annotations

import dataclasses
import textwrap
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from dbguard.risk.model import ColumnFacts, LockHolder, ServerInfo, TableFacts
from dbguard.risk.plan import PlanSummary, RevisionPlan, analyse


@dataclasses.dataclass
class Rev:
    revision: str
    statements: list[str]
    notes: list[str] = dataclasses.field(default_factory=list)
    error: str | None = None


class _Capture:
    def __init__(self) -> None:
        self.writes: list[str] = []

    def write(self, text: str) -> int:
        self.writes.append(text)
        return len(text)

    def flush(self) -> None:
        pass


def render_ops(code: str, engine: str) -> list[str]:
    """The SQL Alembic's offline mode writes for ``code`` (op calls), one entry per statement."""
    from alembic.operations import Operations
    from alembic.runtime.migration import MigrationContext

    buffer = _Capture()
    ctx = MigrationContext.configure(
        dialect_name="postgresql" if engine == "postgresql" else "mysql",
        opts={"as_sql": True, "output_buffer": buffer, "literal_binds": True},
    )
    exec(textwrap.dedent(code).strip(), {"op": Operations(ctx), "sa": sa})  # noqa: S102 - test data
    return buffer.writes


def version_of(text: str | None) -> tuple[int, ...] | None:
    return tuple(int(p) for p in text.split(".")) if text else None


def server_for(engine: str, version: str | None = None) -> ServerInfo:
    family = "postgresql" if engine == "postgresql" else "mysql"
    return ServerInfo(engine=family, flavor=engine, version=version_of(version))


def facts_from(data: dict[str, Any] | None) -> dict[str, TableFacts] | None:
    if data is None:
        return None
    out = {}
    for table, f in data.items():
        holders = tuple(LockHolder(session_id=str(h["session"]), state=h.get("state"), xact_age_s=h.get("age"),
                                   mode=h.get("mode"), granted=h.get("granted", True))
                        for h in f.get("holders", ()))
        # columns: {name = "type"} (nullable) or {name = {type, nullable, char_bytes}}.
        columns = {name: ColumnFacts(type=c) if isinstance(c, str) else
                   ColumnFacts(type=c["type"], nullable=c.get("nullable", True), char_bytes=c.get("char_bytes"))
                   for name, c in f.get("columns", {}).items()}
        out[table] = TableFacts(table=table, rows=f.get("rows"), size_bytes=f.get("size"),
                                data_bytes=f.get("data", f.get("size")), lock_holders=holders, columns=columns)
    return out


def statements(case: dict[str, Any], engine: str, key: str) -> list[str]:
    """``sql`` (a string or a list), ``alembic`` (op calls) or ``generate`` for the pending part;
    ``history`` / ``history_generate`` for what is already applied."""
    out: list[str] = []
    sql_key, gen_key = ("sql", "generate") if key == "pending" else ("history", "history_generate")
    value = case.get(sql_key)
    if isinstance(value, str):
        out.append(value)
    elif isinstance(value, list):
        out.extend(value)
    if key == "pending" and case.get("alembic"):
        out.extend(render_ops(case["alembic"], engine))
    gen = case.get(gen_key)
    if gen:
        out.extend(gen["sql"].format(n=n) for n in range(gen["count"]))
    return out


def judge(pending: Sequence[str], engine: str, *, history: Sequence[str] = (), facts: dict | None = None,
          version: str | None = None) -> RevisionPlan:
    return judge_all([pending], engine, history=history, facts=facts, version=version)[0][0]


def judge_all(revisions: Sequence[Sequence[str]], engine: str, *, history: Sequence[str] = (),
              facts: dict | None = None, version: str | None = None) -> tuple[tuple[RevisionPlan, ...], PlanSummary]:
    """Each entry of ``revisions`` a pending revision (r1, r2 ...), judged as one plan."""
    return analyse([Rev(f"r{n + 1}", list(sql)) for n, sql in enumerate(revisions)], server_for(engine, version),
                   history=[Rev("h", list(history))] if history else (), facts=facts_from(facts),
                   lock_timeout_ms=2000)


def revision_body(sql: Sequence[str]) -> str:
    """A revision's upgrade() running ``sql``; COMMIT ... BEGIN become an autocommit block."""
    lines, block = [], False
    for statement in sql:
        word = statement.strip().rstrip(";").upper()
        if word == "COMMIT":
            lines.append("with op.get_context().autocommit_block():")
            block = True
        elif word == "BEGIN":
            block = False
        else:
            lines.append(("    " if block else "") + f"op.execute({statement.strip().rstrip(';')!r})")
    if block and lines[-1].startswith("with "):
        lines.append("    pass")
    return "\n".join(lines) or "pass"


def case_revisions(case: dict[str, Any], engine: str) -> list[tuple[str, str]]:
    """A rule case as an Alembic chain to run: b0 its history, r1 its statements, r2 its ``later`` ones."""
    from dbguard.risk.parse import split_statements

    def split(key: str) -> list[str]:
        return [s for chunk in statements(case, engine, key) for s in split_statements(chunk)]

    revisions = [("b0", revision_body(split("history"))), ("r1", revision_body(split("pending")))]
    if case.get("later"):
        later = case["later"] if isinstance(case["later"], list) else [case["later"]]
        revisions.append(("r2", revision_body(later)))
    return revisions
