"""Judge the statements of pending revisions: parse, follow what the plan creates, take locks,
run the rules. Pure: the SQL, the history and the live facts come in as plain data."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol

from dbguard.errors import StatementParseError
from dbguard.risk import rules as rules_mod
from dbguard.risk.lock_modes import describe_hold, estimate_hold, lock_for
from dbguard.risk.model import Context, Finding, LockInfo, Op, ServerInfo, Severity, TableFacts
from dbguard.risk.parse import parse, split_statements


class RevisionSql(Protocol):
    # Read-only, so that a revision holding lists (alembic_bridge.RenderedRevision) is one.
    @property
    def revision(self) -> str: ...
    @property
    def statements(self) -> Sequence[str]: ...
    @property
    def notes(self) -> Sequence[str]: ...
    @property
    def error(self) -> str | None: ...


@dataclasses.dataclass(frozen=True)
class StatementPlan:
    index: int
    sql: str
    kinds: tuple[str, ...]
    table: str | None
    lock: str
    blocks: str
    hold_s: float | None
    hold: str
    autocommit: bool = False
    notes: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class RevisionPlan:
    revision: str
    statements: tuple[StatementPlan, ...]
    findings: tuple[Finding, ...]
    notes: tuple[str, ...] = ()
    doc: str | None = None
    path: str | None = None
    rendered: bool = True


@dataclasses.dataclass(frozen=True)
class TableSummary:
    table: str
    new: bool
    rows: int | None
    size_bytes: int | None
    strongest_lock: str
    blocks: str
    rows_source: str = ""


@dataclasses.dataclass(frozen=True)
class PlanSummary:
    tables: tuple[TableSummary, ...]
    rows_under_exclusive_lock: int
    tables_of_unknown_size: int
    destructive: tuple[str, ...]
    worst_hold_s: float | None
    worst_hold: str
    worst_hold_at: str | None
    findings: Mapping[str, int]
    max_severity: str | None


@dataclasses.dataclass
class _State:
    tables: set[str] = dataclasses.field(default_factory=set)
    created: set[str] = dataclasses.field(default_factory=set)
    columns: dict[str, dict[str, str]] = dataclasses.field(default_factory=dict)
    not_null_checks: set[tuple[str, str]] = dataclasses.field(default_factory=set)
    not_null: set[tuple[str, str]] = dataclasses.field(default_factory=set)
    pending_checks: dict[str, tuple[str, str]] = dataclasses.field(default_factory=dict)

    def apply(self, op: Op, in_plan: bool) -> None:
        t = op.table
        if op.kind == "create_table" and t:
            self.tables.add(t)
            if in_plan:
                self.created.add(t)
            self.columns[t] = {c: ty for c, ty, _ in op.columns if ty}
            self.not_null.update((t, c) for c, _, nullable in op.columns if not nullable)
        elif op.kind == "drop_table" and t:
            self.tables.discard(t)
            self.created.discard(t)
            self.columns.pop(t, None)
        elif op.kind == "rename_table" and t and op.new_name:
            for group in (self.tables, self.created):
                if t in group:
                    group.discard(t)
                    group.add(op.new_name)
            if t in self.columns:
                self.columns[op.new_name] = self.columns.pop(t)
        elif op.kind in ("add_column", "alter_type") and t and op.column and op.type:
            self.columns.setdefault(t, {})[op.column] = op.type
            if op.nullable is not None:
                (self.not_null.discard if op.nullable else self.not_null.add)((t, op.column))
        elif op.kind in ("set_not_null", "drop_not_null") and t and op.column:
            (self.not_null.add if op.kind == "set_not_null" else self.not_null.discard)((t, op.column))
        elif op.kind == "rename_column" and t and op.column and op.new_name:
            cols = self.columns.get(t, {})
            if op.column in cols:
                cols[op.new_name] = cols.pop(op.column)
        elif op.kind == "drop_column" and t and op.column:
            self.columns.get(t, {}).pop(op.column, None)
        elif op.kind == "add_constraint" and op.constraint == "check" and t and op.check_not_null_of:
            if op.not_valid:
                self.pending_checks[op.constraint_name or ""] = (t, op.check_not_null_of)
            else:
                self.not_null_checks.add((t, op.check_not_null_of))
        elif op.kind == "validate_constraint" and (op.constraint_name or "") in self.pending_checks:
            self.not_null_checks.add(self.pending_checks.pop(op.constraint_name or ""))


def _version_statement(version_table: str) -> re.Pattern[str]:
    name = re.escape(version_table)
    return re.compile(rf"^\s*(INSERT\s+INTO|UPDATE|DELETE\s+FROM|CREATE\s+TABLE)\s+[`\"]?{name}[`\"]?\b",
                      re.IGNORECASE)


def statements_of(raw: Iterable[str], version_table: str = "alembic_version") -> list[str]:
    """Alembic's writes split into statements, without its own version-table bookkeeping."""
    skip = _version_statement(version_table)
    out = []
    for chunk in raw:
        for statement in split_statements(chunk):
            if not skip.match(statement):
                out.append(statement)
    return out


def tables_touched(pending: Sequence[RevisionSql], engine: str, version_table: str = "alembic_version") -> set[str]:
    """Every table a statement of ``pending`` names, for the live facts to read."""
    tables: set[str] = set()
    for rev in pending:
        for statement in statements_of(rev.statements, version_table):
            for op in _parse_pending(statement, engine, rev.revision):
                tables.update(t for t in (op.table, op.ref_table, *op.references) if t)
    return tables


def _parse_pending(sql: str, engine: str, revision: str) -> list[Op]:
    """A pending statement's operations; one sqlglot cannot read stops the plan, naming its revision."""
    try:
        return parse(sql, engine)
    except StatementParseError as exc:
        raise exc.in_revision(revision) from None


def analyse(
    pending: Sequence[RevisionSql],
    server: ServerInfo,
    *,
    history: Sequence[RevisionSql] = (),
    facts: Mapping[str, TableFacts] | None = None,
    lock_timeout_ms: int | None = None,
    version_table: str = "alembic_version",
    docs: Mapping[str, tuple[str | None, str | None]] | None = None,
) -> tuple[tuple[RevisionPlan, ...], PlanSummary]:
    """Plans of the ``pending`` revisions, judged after ``history`` (the revisions already applied,
    whose tables count as existing), with live ``facts`` per table when known."""
    engine = server.engine
    state = _State()
    for rev in history:
        for statement in statements_of(rev.statements, version_table):
            try:
                ops = parse(statement, engine)
            except StatementParseError:
                # Applied revisions are not judged, only read for the tables they made: one statement
                # sqlglot cannot read must not stop every later plan. What it made counts as existing
                # where the live facts say so.
                continue
            for op in ops:
                state.apply(op, in_plan=False)
    existing_before = frozenset(state.tables)

    plans: list[RevisionPlan] = []
    table_locks: dict[str, tuple[LockInfo, bool]] = {}
    destructive: list[str] = []
    worst: tuple[float, str, str] | None = None
    unknown_hold = False
    for rev in pending:
        in_tx = True
        statements: list[StatementPlan] = []
        findings: dict[tuple[str, int, str | None], Finding] = {}
        rev_ops: list[tuple[Op, LockInfo]] = []
        for index, sql in enumerate(statements_of(rev.statements, version_table)):
            ops = _parse_pending(sql, engine, rev.revision)
            kinds, notes = [], []
            strongest: tuple[LockInfo, float | None, str | None] | None = None
            for op in ops:
                kinds.append(op.kind)
                if op.note and op.kind in ("unknown", "rewrite_table"):
                    notes.append(op.note)
                if op.kind == "commit":
                    in_tx = False
                    continue
                if op.kind == "begin":
                    in_tx = True
                    continue
                ctx = Context(server=server, created_in_plan=frozenset(state.created),
                              existing=existing_before, in_transaction=in_tx, columns=state.columns,
                              not_null_checks=frozenset(state.not_null_checks),
                              not_null_columns=frozenset(state.not_null), lock_timeout_ms=lock_timeout_ms)
                lock = lock_for(op, ctx)
                table_facts = facts.get(op.table) if facts is not None and op.table else None
                new = ctx.is_new(op.table)
                hold = estimate_hold(lock, table_facts.rows if table_facts else None,
                                     table_facts.size_bytes if table_facts else None, new_table=new)
                if strongest is None or _rank(lock) > _rank(strongest[0]):
                    strongest = (lock, hold, op.table)
                if op.table and lock.work != "none":
                    prev = table_locks.get(op.table)
                    if prev is None or _rank(lock) > _rank(prev[0]):
                        table_locks[op.table] = (lock, new)
                if lock.blocks_reads or lock.blocks_writes:
                    if hold is None and not new:
                        unknown_hold = True
                    elif hold is not None and (worst is None or hold > worst[0]):
                        worst = (hold, f"{rev.revision} #{index + 1}: {_short(sql)}", lock.work)
                for r in rules_mod.RULES:
                    if r.scope != "statement":
                        continue
                    hit = r.fn(op, lock, ctx, table_facts)
                    if hit is None:
                        continue
                    finding = _finding(r, hit, rev.revision, index, sql, lock, hold, facts)
                    key = (r.code, index, finding.table)
                    if key not in findings or findings[key].level < finding.level:
                        findings[key] = finding
                    if r.code == "DG107":
                        destructive.append(f"{rev.revision}: {hit.message}")
                if in_tx:
                    rev_ops.append((op, lock))
                state.apply(op, in_plan=True)
            # The statement's strongest lock, not the last op's (``lock`` and ``hold`` above).
            top_lock, top_hold, top_table = strongest if strongest else (None, None, None)
            statements.append(StatementPlan(
                index=index + 1, sql=sql, kinds=tuple(kinds),
                table=top_table or next((o.table for o in ops if o.table), None),
                lock=top_lock.describe if top_lock else "none", blocks=top_lock.blocks if top_lock else "nothing",
                hold_s=top_hold, hold=describe_hold(top_hold, top_lock.work) if top_lock else "none",
                autocommit=not in_tx, notes=tuple(notes)))
        ctx = Context(server=server, lock_timeout_ms=lock_timeout_ms)
        for r in rules_mod.RULES:
            if r.scope == "revision":
                hit = r.fn(rev_ops, ctx)
                if hit is not None:
                    findings[(r.code, -1, None)] = Finding(
                        code=r.code, name=r.name, severity=hit.severity.label, revision=rev.revision,
                        statement=f"{len(rev_ops)} operations in one transaction", message=hit.message,
                        alternative=hit.alternative)
        doc, path = (docs or {}).get(rev.revision, (None, None))
        rev_notes = tuple(rev.notes) + ((f"could not be rendered offline: {rev.error}",) if rev.error else ())
        ordered = sorted(findings.values(), key=lambda f: (f.statement_index or 0, -f.level, f.code))
        plans.append(RevisionPlan(revision=rev.revision, statements=tuple(statements), findings=tuple(ordered),
                                  notes=rev_notes, doc=doc, path=path, rendered=rev.error is None))

    summary = _summary(plans, table_locks, facts, destructive, worst, unknown_hold)
    return tuple(plans), summary


def _rank(lock: LockInfo) -> tuple[int, int]:
    work = {"none": 0, "instant": 1, "dml": 2, "scan": 3, "index": 4, "rewrite": 5}[lock.work]
    return (2 if lock.blocks_reads else 1 if lock.blocks_writes else 0, work)


def _short(sql: str, limit: int = 80) -> str:
    flat = " ".join(sql.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def _finding(r: rules_mod.Rule, hit: object, revision: str, index: int, sql: str, lock: LockInfo,
             hold: float | None, facts: Mapping[str, TableFacts] | None) -> Finding:
    table = getattr(hit, "table", None)
    tf = facts.get(table) if facts is not None and table else None
    return Finding(
        code=r.code, name=r.name, severity=hit.severity.label, revision=revision,  # type: ignore[attr-defined]
        statement=sql, message=hit.message, alternative=hit.alternative,  # type: ignore[attr-defined]
        table=table, rows=tf.rows if tf else None, size_bytes=tf.size_bytes if tf else None,
        lock=lock.describe, blocks=lock.blocks, hold_s=hold, hold=describe_hold(hold, lock.work),
        statement_index=index + 1,
    )


def _summary(plans: Sequence[RevisionPlan], table_locks: Mapping[str, tuple[LockInfo, bool]],
             facts: Mapping[str, TableFacts] | None, destructive: list[str], worst: tuple[float, str, str] | None,
             unknown_hold: bool) -> PlanSummary:
    tables, rows_locked, unknown = [], 0, 0
    for name in sorted(table_locks):
        lock, new = table_locks[name]
        tf = facts.get(name) if facts is not None else None
        tables.append(TableSummary(table=name, new=new, rows=tf.rows if tf else None,
                                   size_bytes=tf.size_bytes if tf else None, strongest_lock=lock.mode,
                                   blocks=lock.blocks, rows_source=tf.rows_source if tf else ""))
        if (lock.blocks_reads or lock.blocks_writes) and not new:
            if tf is not None and tf.rows is not None:
                rows_locked += tf.rows
            elif tf is None or not tf.empty:
                unknown += 1
    counts: dict[str, int] = {}
    top: Severity | None = None
    for plan in plans:
        for f in plan.findings:
            counts[f.severity] = counts.get(f.severity, 0) + 1
            top = f.level if top is None or f.level > top else top
    if unknown_hold:
        known = f"; longest known: {describe_hold(worst[0], worst[2])}" if worst is not None else ""
        worst_text = f"unknown: it scales with tables of unknown size{known}"
    elif worst is not None:
        worst_text = describe_hold(worst[0], worst[2])
    else:
        worst_text = "none"
    return PlanSummary(tables=tuple(tables), rows_under_exclusive_lock=rows_locked, tables_of_unknown_size=unknown,
                       destructive=tuple(destructive), worst_hold_s=worst[0] if worst else None,
                       worst_hold=worst_text, worst_hold_at=worst[1] if worst else None, findings=counts,
                       max_severity=top.label if top is not None else None)
