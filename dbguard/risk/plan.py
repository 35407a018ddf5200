"""Judge the statements of pending revisions: parse, follow what the plan creates, take locks,
run the rules. Pure: the SQL, the history and the live facts come in as plain data."""

from __future__ import annotations

import contextlib
import dataclasses
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol, cast

from dbguard.errors import StatementParseError
from dbguard.risk import rules as rules_mod
from dbguard.risk.lock_modes import describe_hold, estimate_hold, lock_for, locked_tables, pg_level
from dbguard.risk.model import Context, Finding, Hit, LockInfo, Op, ServerInfo, Severity, Step, TableFacts
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
    # Per table the revision locks: (table, its strongest lock's mode, whether a statement rewrites it),
    # what ``plan --observe`` compares with the server's.
    table_locks: tuple[tuple[str, str, bool], ...] = ()
    # MySQL/MariaDB: per table (table, its slowest ALTER algorithm: INSTANT < INPLACE < COPY, or None,
    # whether a statement blocks writes, whether one rebuilds it), what ``plan --observe`` compares there.
    table_algorithms: tuple[tuple[str, str | None, bool, bool], ...] = ()


@dataclasses.dataclass(frozen=True)
class TableSummary:
    table: str
    new: bool
    rows: int | None
    size_bytes: int | None
    strongest_lock: str
    blocks: str
    rows_source: str = ""
    # The statements that take the strongest lock ("revision #n"), in plan order.
    taken_by: tuple[str, ...] = ()


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
    # What lets a statement name every table it locks: an index's table, a foreign key's tables.
    index_tables: dict[str, str] = dataclasses.field(default_factory=dict)
    foreign_keys: dict[str, tuple[str, str]] = dataclasses.field(default_factory=dict)
    parents: dict[str, frozenset[str]] = dataclasses.field(default_factory=dict)
    char_bytes: dict[tuple[str, str], int] = dataclasses.field(default_factory=dict)
    view_sources: dict[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)
    fulltext_tables: set[str] = dataclasses.field(default_factory=set)

    def live(self, facts: Mapping[str, TableFacts]) -> None:
        """The live catalog's columns replace what the history says of a table: it is what the
        statements will meet (history misses hand changes and types Alembic's SQL leaves out)."""
        for table, tf in facts.items():
            if not tf.exists or not tf.columns:
                continue
            self.columns[table] = {name: col.type for name, col in tf.columns.items()}
            self.not_null = {key for key in self.not_null if key[0] != table}
            self.not_null.update((table, name) for name, col in tf.columns.items() if not col.nullable)
            self.char_bytes.update(((table, name), col.char_bytes) for name, col in tf.columns.items()
                                   if col.char_bytes)

    def resolve(self, op: Op) -> Op:
        """``op`` with its table filled in where the statement names only an index (DROP INDEX x)."""
        if op.kind == "drop_index" and op.table is None and op.index in self.index_tables:
            return dataclasses.replace(op, table=self.index_tables[op.index])
        return op

    def apply(self, op: Op, in_plan: bool) -> None:
        t = op.table
        if op.kind == "create_table" and t:
            self.tables.add(t)
            if in_plan:
                self.created.add(t)
            self.columns[t] = {c: ty for c, ty, _ in op.columns if ty}
            self.not_null.update((t, c) for c, _, nullable in op.columns if not nullable)
            if op.references:
                self.parents[t] = frozenset(op.references)
        elif op.kind == "drop_table" and t:
            self.tables.discard(t)
            self.created.discard(t)
            self.columns.pop(t, None)
            self.parents.pop(t, None)
        elif op.kind == "rename_table" and t and op.new_name:
            for group in (self.tables, self.created):
                if t in group:
                    group.discard(t)
                    group.add(op.new_name)
            if t in self.columns:
                self.columns[op.new_name] = self.columns.pop(t)
            if t in self.parents:
                self.parents[op.new_name] = self.parents.pop(t)
            for index, table in list(self.index_tables.items()):
                if table == t:
                    self.index_tables[index] = op.new_name
        elif op.kind == "create_index" and t and op.index:
            self.index_tables[op.index] = t
            if op.index_kind == "fulltext":
                self.fulltext_tables.add(t)
        elif op.kind == "create_view" and t:
            self.view_sources[t] = op.references
            if t not in self.tables:  # a new view: nobody reads it yet (OR REPLACE keeps an old one's readers)
                self.tables.add(t)
                if in_plan:
                    self.created.add(t)
        elif op.kind == "drop_index" and op.index:
            self.index_tables.pop(op.index, None)
        elif op.kind == "add_constraint" and op.constraint == "foreign_key" and t and op.ref_table:
            self.foreign_keys[op.constraint_name or ""] = (t, op.ref_table)
            self.parents[t] = self.parents.get(t, frozenset()) | {op.ref_table}
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
        elif op.kind == "drop_constraint" and t and (op.constraint_name or "") in self.foreign_keys:
            _, ref = self.foreign_keys.pop(op.constraint_name or "")
            if not any(child == t and parent == ref for child, parent in self.foreign_keys.values()):
                self.parents[t] = self.parents.get(t, frozenset()) - {ref}
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


def _state_after(history: Sequence[RevisionSql], engine: str, version_table: str,
                 index_tables: Mapping[str, str] | None = None) -> _State:
    """What the applied revisions made (their tables count as existing). They are not judged, only
    read: one statement sqlglot cannot read must not stop every later plan."""
    state = _State()
    state.index_tables.update(index_tables or {})
    for rev in history:
        for statement in statements_of(rev.statements, version_table):
            with contextlib.suppress(StatementParseError):
                for op in parse(statement, engine):
                    state.apply(state.resolve(op), in_plan=False)
    return state


def tables_touched(pending: Sequence[RevisionSql], engine: str, version_table: str = "alembic_version",
                   history: Sequence[RevisionSql] = (), index_tables: Mapping[str, str] | None = None) -> set[str]:
    """Every table a statement of ``pending`` locks, for the live facts to read: those it names, and
    those ``history`` (or the live catalog's ``index_tables``) tells (an index's table, a dropped
    table's parents)."""
    state = _state_after(history, engine, version_table, index_tables)
    tables: set[str] = set()
    for rev in pending:
        for statement in statements_of(rev.statements, version_table):
            for op in _parse_pending(statement, engine, rev.revision):
                op = state.resolve(op)
                tables.update(t for t in (op.table, op.ref_table, *op.references) if t)
                if op.kind == "refresh_view" and op.table:
                    tables.update(state.view_sources.get(op.table, ()))
                if op.kind == "drop_table" and op.table:
                    tables.update(state.parents.get(op.table, ()))
                if op.kind == "validate_constraint" and (op.constraint_name or "") in state.foreign_keys:
                    tables.add(state.foreign_keys[op.constraint_name or ""][1])
                state.apply(op, in_plan=True)
    return tables


def indexes_without_table(pending: Sequence[RevisionSql], engine: str, version_table: str = "alembic_version",
                          history: Sequence[RevisionSql] = ()) -> set[str]:
    """Indexes a pending statement drops whose table neither the statement, ``history`` nor the plan
    names (PostgreSQL's DROP INDEX names the index alone): for the live catalog to tell."""
    state = _state_after(history, engine, version_table)
    unknown: set[str] = set()
    for rev in pending:
        for statement in statements_of(rev.statements, version_table):
            with contextlib.suppress(StatementParseError):
                for op in parse(statement, engine):
                    op = state.resolve(op)
                    if op.kind == "drop_index" and op.table is None and op.index:
                        unknown.add(op.index)
                    state.apply(op, in_plan=True)
    return unknown


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
    index_tables: Mapping[str, str] | None = None,
    one_transaction: bool = False,
) -> tuple[tuple[RevisionPlan, ...], PlanSummary]:
    """Plans of the ``pending`` revisions, judged after ``history`` (the revisions already applied,
    whose tables count as existing), with live ``facts`` per table when known and the live catalog's
    ``index_tables`` (index -> table) for indexes the history does not place. ``one_transaction``:
    env.py runs the whole upgrade in one transaction, so locks are held across revisions too."""
    engine = server.engine
    # What a statement of the history sqlglot cannot read made counts as existing where the live facts say so.
    state = _state_after(history, engine, version_table, index_tables)
    if facts is not None:
        state.live(facts)
    existing_before = frozenset(state.tables)

    plans: list[RevisionPlan] = []
    table_locks: dict[str, _TableLocks] = {}
    destructive: list[str] = []
    worst = _Worst()
    tx_ctx = Context(server=server, lock_timeout_ms=lock_timeout_ms)
    # The steps of the transaction open now: a revision's (the whole run's with ``one_transaction``),
    # or one statement of an autocommit block.
    tx_steps: list[Step] = []
    for rev in pending:
        in_tx = True
        statements: list[StatementPlan] = []
        findings: dict[tuple[str, int, str | None], Finding] = {}
        rev_ops: list[tuple[Op, LockInfo]] = []
        rev_tables: dict[str, tuple[LockInfo, bool]] = {}
        rev_algorithms: dict[str, tuple[str | None, bool, bool]] = {}
        if not one_transaction:
            tx_steps = []

        for index, sql in enumerate(statements_of(rev.statements, version_table)):
            ops = _parse_pending(sql, engine, rev.revision)
            kinds, notes = [], []
            strongest: tuple[LockInfo, float | None, str | None] | None = None
            for op in ops:
                op = state.resolve(op)
                kinds.append(op.kind)
                if op.note and op.kind in ("unknown", "rewrite_table"):
                    notes.append(op.note)
                if op.kind in ("commit", "begin"):
                    # COMMIT ... BEGIN around an autocommit_block: every lock taken so far is released.
                    _end_transaction(tx_steps, findings, rev.revision, tx_ctx, facts, worst)
                    in_tx = op.kind == "begin"
                    continue
                ctx = Context(server=server, created_in_plan=frozenset(state.created),
                              existing=existing_before, in_transaction=in_tx, columns=state.columns,
                              not_null_checks=frozenset(state.not_null_checks),
                              not_null_columns=frozenset(state.not_null), lock_timeout_ms=lock_timeout_ms,
                              foreign_keys=state.foreign_keys, parents=state.parents, char_bytes=state.char_bytes,
                              view_sources=state.view_sources, fulltext_tables=frozenset(state.fulltext_tables))
                lock = lock_for(op, ctx)
                table_facts = facts.get(op.table) if facts is not None and op.table else None
                new = ctx.is_new(op.table)
                hold = estimate_hold(lock, table_facts.rows if table_facts else None,
                                     table_facts.size_bytes if table_facts else None, new_table=new)
                if strongest is None or _rank(lock) > _rank(strongest[0]):
                    strongest = (lock, hold, op.table)
                locked = locked_tables(op, lock, ctx)
                for tl in locked:
                    entry = table_locks.setdefault(tl.table, _TableLocks(lock=tl.lock))
                    entry.take(tl.lock, tl.new, f"{rev.revision} #{index + 1}")
                    seen, rewritten = rev_tables.get(tl.table, (tl.lock, False))
                    stronger = (pg_level(tl.lock.mode) or 0, _rank(tl.lock)) > (pg_level(seen.mode) or 0, _rank(seen))
                    # A relation the statement creates is written, not rewritten: no old copy to replace
                    # (a populated materialized view is long, which DG115 judges, but no rewrite).
                    made_here = tl.new and op.kind in ("create_table", "create_view")
                    rev_tables[tl.table] = (tl.lock if stronger else seen,
                                            rewritten or (tl.lock.work == "rewrite" and not made_here))
                    if engine == "mysql":
                        # A table this statement creates: its exclusive metadata lock keeps out no writer.
                        blocks_none = op.kind == "create_table" and tl.new
                        rev_algorithms[tl.table] = _slower(rev_algorithms.get(tl.table),
                                                           _NO_ALTER if blocks_none else tl.lock)
                tx_steps.append(Step(index=index, sql=sql, op=op, lock=lock, tables=locked, hold_s=hold,
                                     facts=table_facts, revision=rev.revision))
                if (lock.blocks_reads or lock.blocks_writes) and not (hold is None and new):
                    worst.seen(hold, f"{rev.revision} #{index + 1}: {_short(sql)}", lock.work)
                for r in rules_mod.RULES:
                    if r.scope != "statement":
                        continue
                    hit = r.fn(op, lock, ctx, table_facts)
                    if hit is None:
                        continue
                    _keep(findings, _finding(r, hit, rev.revision, index, sql, lock, hold, facts))
                    if r.code == "DG107":
                        destructive.append(f"{rev.revision}: {hit.message}")
                for r in rules_mod.RULES:
                    if r.scope != "statement" or not r.every_table or facts is None:
                        continue
                    for tl in locked:
                        other = facts.get(tl.table)
                        if tl.table == op.table or other is None:
                            continue
                        hit = r.fn(dataclasses.replace(op, table=tl.table), tl.lock, ctx, other)
                        if hit is not None:
                            _keep(findings, _finding(r, hit, rev.revision, index, sql, tl.lock, hold, facts))
                if in_tx:
                    rev_ops.append((op, lock))
                state.apply(op, in_plan=True)
            if not in_tx:
                # A statement of an autocommit block commits on its own.
                _end_transaction(tx_steps, findings, rev.revision, tx_ctx, facts, worst)
            # The statement's strongest lock, not the last op's (``lock`` and ``hold`` above).
            top_lock, top_hold, top_table = strongest if strongest else (None, None, None)
            statements.append(StatementPlan(
                index=index + 1, sql=sql, kinds=tuple(kinds),
                table=top_table or next((o.table for o in ops if o.table), None),
                lock=top_lock.describe if top_lock else "none", blocks=top_lock.blocks if top_lock else "nothing",
                hold_s=top_hold, hold=describe_hold(top_hold, top_lock.work) if top_lock else "none",
                autocommit=not in_tx, notes=tuple(notes)))
        # dbguard runs each revision in a transaction of its own, unless env.py holds one around them all:
        # then what this revision's statements keep waiting is judged now, the transaction goes on.
        _end_transaction(tx_steps, findings, rev.revision, tx_ctx, facts, worst, commit=not one_transaction)
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
                                  notes=rev_notes, doc=doc, path=path, rendered=rev.error is None,
                                  table_locks=tuple((t, lock.mode, rw) for t, (lock, rw) in sorted(rev_tables.items())),
                                  table_algorithms=tuple((t, *v) for t, v in sorted(rev_algorithms.items()))))

    summary = _summary(plans, table_locks, facts, destructive, worst.worst, worst.unknown)
    return tuple(plans), summary


@dataclasses.dataclass
class _TableLocks:
    """The strongest lock the plan takes on one table, and the statements that take it."""

    lock: LockInfo
    new: bool = False
    taken_by: list[str] = dataclasses.field(default_factory=list)

    def take(self, lock: LockInfo, new: bool, where: str) -> None:
        self.new = self.new or new
        if not self.taken_by or _rank(lock) > _rank(self.lock):
            self.lock, self.taken_by = lock, [where]
        elif _rank(lock) == _rank(self.lock) and where not in self.taken_by:
            self.taken_by.append(where)


def _keep(findings: dict[tuple[str, int, str | None], Finding], finding: Finding) -> None:
    """One finding per rule, statement and table: the most severe."""
    key = (finding.code, finding.statement_index or 0, finding.table)
    if key not in findings or findings[key].level < finding.level:
        findings[key] = finding


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


@dataclasses.dataclass
class _Worst:
    """The longest hold of a lock that blocks reads or writes, and whether one is of unknown length."""

    worst: tuple[float, str, str] | None = None
    unknown: bool = False

    def seen(self, hold: float | None, at: str, work: str) -> None:
        if hold is None:
            self.unknown = True
        elif self.worst is None or hold > self.worst[0]:
            self.worst = (hold, at, work)


def _end_transaction(steps: list[Step], findings: dict[tuple[str, int, str | None], Finding], revision: str,
                     ctx: Context, facts: Mapping[str, TableFacts] | None, worst: _Worst, commit: bool = True) -> None:
    """The transaction of ``steps`` commits: judge it with the transaction rules, and start anew.
    Without ``commit`` (a transaction around several revisions, at the end of one): judge what
    ``revision``'s statements hold, and keep the steps."""
    if not steps:
        return
    for r in rules_mod.RULES:
        if r.scope == "transaction":
            for hit in cast("list[Hit]", r.fn(steps, ctx)):
                if hit.at_revision not in (None, revision):
                    continue  # judged with its own revision, earlier
                finding = _tx_finding(r, hit, revision, steps, facts)
                _keep(findings, finding)
                # A lock held through a long statement is held at least that long.
                worst.seen(finding.hold_s, f"{revision} #{finding.statement_index}: {_short(finding.statement)} "
                           f"(the lock #{finding.taken_at} took on {finding.table} is held through it)",
                           "held across the transaction")
    if commit:
        steps.clear()


def _tx_finding(r: rules_mod.Rule, hit: Hit, revision: str, steps: Sequence[Step],
                facts: Mapping[str, TableFacts] | None) -> Finding:
    """A transaction rule's finding, on the statement ``hit.at`` names, with the lock held across it."""
    step = next((s for s in steps if s.index == hit.at and s.revision in (hit.at_revision or s.revision, "")),
                steps[-1])
    lock = hit.lock or step.lock
    tf = facts.get(hit.table) if facts is not None and hit.table else None
    return Finding(
        code=r.code, name=r.name, severity=hit.severity.label, revision=revision, statement=step.sql,
        message=hit.message, alternative=hit.alternative, table=hit.table, rows=tf.rows if tf else None,
        size_bytes=tf.size_bytes if tf else None, lock=lock.describe, blocks=lock.blocks, hold_s=step.hold_s,
        hold=describe_hold(step.hold_s, step.lock.work), statement_index=step.index + 1,
        taken_at=hit.taken_at + 1 if hit.taken_at is not None else None, taken_by=hit.taken_by)


_ALGORITHM_ORDER = {None: 0, "INSTANT": 1, "INPLACE": 2, "COPY": 3}
_NO_ALTER = LockInfo(mode="none", blocks_reads=False, blocks_writes=False, work="none")


def _slower(seen: tuple[str | None, bool, bool] | None, lock: LockInfo) -> tuple[str | None, bool, bool]:
    """A table's (algorithm, blocks writes, rebuilt) over a revision: the slowest algorithm, and either
    statement's write block or rebuild (MySQL/MariaDB)."""
    algorithm = (lock.algorithm or "").upper() or None
    if seen is None:
        return algorithm, lock.blocks_writes, lock.work == "rewrite"
    slower = algorithm if _ALGORITHM_ORDER.get(algorithm, 0) > _ALGORITHM_ORDER.get(seen[0], 0) else seen[0]
    return slower, seen[1] or lock.blocks_writes, seen[2] or lock.work == "rewrite"


def _summary(plans: Sequence[RevisionPlan], table_locks: Mapping[str, _TableLocks],
             facts: Mapping[str, TableFacts] | None, destructive: list[str], worst: tuple[float, str, str] | None,
             unknown_hold: bool) -> PlanSummary:
    tables, rows_locked, unknown = [], 0, 0
    for name in sorted(table_locks):
        entry = table_locks[name]
        lock, new = entry.lock, entry.new
        tf = facts.get(name) if facts is not None else None
        tables.append(TableSummary(table=name, new=new, rows=tf.rows if tf else None,
                                   size_bytes=tf.size_bytes if tf else None, strongest_lock=lock.mode,
                                   blocks=lock.blocks, rows_source=tf.rows_source if tf else "",
                                   taken_by=tuple(entry.taken_by)))
        if (lock.blocks_reads or lock.blocks_writes) and not new:
            if tf is not None and tf.rows is not None:
                rows_locked += tf.rows
            elif tf is None or not tf.empty:
                unknown += 1
    counts, top = count_findings(plans)
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


def count_findings(plans: Sequence[RevisionPlan]) -> tuple[dict[str, int], Severity | None]:
    """The findings of ``plans`` by severity, and the highest severity among them."""
    counts: dict[str, int] = {}
    top: Severity | None = None
    for plan in plans:
        for f in plan.findings:
            counts[f.severity] = counts.get(f.severity, 0) + 1
            top = f.level if top is None or f.level > top else top
    return counts, top


def with_counts(summary: PlanSummary, plans: Sequence[RevisionPlan]) -> PlanSummary:
    """``summary`` counting the findings of ``plans`` (findings added after the plan, such as what a
    scratch run observed, are counted with the rest)."""
    counts, top = count_findings(plans)
    return dataclasses.replace(summary, findings=counts, max_severity=top.label if top is not None else None)
