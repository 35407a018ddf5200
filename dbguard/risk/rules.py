"""The risk rules. Each is a small pure function with a stable code.

A statement rule takes ``(op, lock, ctx, facts)``: the parsed operation, the lock it takes
(:func:`dbguard.risk.lock_modes.lock_for`), the plan context and the live facts of its table (None when
unknown, e.g. ``plan --offline``), and returns a :class:`Hit` or None. A revision rule takes every
``(op, lock)`` of one revision's transaction and the context. A transaction rule takes the
:class:`Step` s of one transaction (a revision, or one statement of an autocommit block) and the
context, and returns a list of hits, each naming its statement (``at``). Codes never change meaning; a retired
rule keeps its code unused.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

from dbguard.risk import safe_forms
from dbguard.risk.lock_modes import conflicting_holders, old_type, type_change
from dbguard.risk.model import Context, Hit, LockInfo, Op, Severity, Step, TableFacts, TableLock

S = Severity


@dataclasses.dataclass(frozen=True)
class Rule:
    code: str
    name: str
    scope: str  # "statement", "revision" or "transaction"
    fn: Callable[..., Hit | None]
    # A statement rule also judging every other table the statement locks (an FK's referenced table),
    # called with that table as the op's and its lock.
    every_table: bool = False

    @property
    def summary(self) -> str:
        return (self.fn.__doc__ or "").strip().splitlines()[0]


RULES: list[Rule] = []


def rule(code: str, name: str, scope: str = "statement",
         every_table: bool = False) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def register(fn: Callable[..., Any]) -> Callable[..., Any]:
        RULES.append(Rule(code, name, scope, fn, every_table))
        return fn

    return register


def weigh(base: Severity, facts: TableFacts | None) -> Severity:
    """Scale a size-dependent risk by the live table: unknown size keeps ``base``; an empty table
    is low; a small one at most medium."""
    if facts is None:
        return base
    if facts.empty:
        return min(base, S.LOW)
    if facts.small:
        return min(base, S.MEDIUM)
    return base


def _existing(op: Op, ctx: Context) -> bool:
    """The statement hits a table that holds data already (not one this plan created)."""
    return op.table is not None and not ctx.is_new(op.table)


def _size(facts: TableFacts | None) -> str:
    if facts is None:
        return "of unknown size"
    if not facts.exists:
        return "not found in the database"
    rows = "unknown rows" if facts.rows is None else f"~{facts.rows:,} rows"
    size = "" if facts.size_bytes is None else f", {facts.size_bytes / 1048576:.1f} MiB"
    return f"{rows}{size}"


@rule("DG101", "table-rewrite")
def table_rewrite(op: Op, lock: LockInfo, ctx: Context, facts: TableFacts | None) -> Hit | None:
    """The statement rewrites or copies the whole table while holding its lock.

    Anti-pattern (PostgreSQL: a volatile default rewrites every row under ACCESS EXCLUSIVE;
    MySQL: a type change is ALGORITHM=COPY and blocks writes)::

        ALTER TABLE orders ADD COLUMN token uuid DEFAULT gen_random_uuid();
        ALTER TABLE orders MODIFY total DECIMAL(12,2) NOT NULL;

    Best practice (add the column without the volatile default, fill it in batches, then set the
    default for new rows; for type changes, add a new column, dual-write, backfill, swap)::

        ALTER TABLE orders ADD COLUMN token uuid;
        UPDATE orders SET token = gen_random_uuid() WHERE id BETWEEN 1 AND 10000;  -- batches
        ALTER TABLE orders ALTER COLUMN token SET DEFAULT gen_random_uuid();
    """
    if lock.work != "rewrite" or not _existing(op, ctx):
        return None
    if op.kind == "add_constraint" and op.constraint in ("foreign_key", "check"):
        return None  # DG105 says it, with the better alternative
    if op.kind == "refresh_view":
        return _refresh_blocks_readers(op, lock, facts)
    if op.kind == "create_view":
        return None  # writes a view of its own; what its query reads for that long is DG115's
    if op.kind == "create_index":
        return None  # a FULLTEXT index's rebuild: DG102 says it, with the index
    online = not lock.blocks_writes
    why = {"add_column": "the new column's value is computed for every row",
           "alter_type": "the column's type changes", "rewrite_table": "the statement rebuilds the table",
           "set_not_null": "NOT NULL is checked by rebuilding the table"}.get(op.kind, "the table is rebuilt")
    base = S.MEDIUM if online else S.HIGH
    alg = f" (ALGORITHM={lock.algorithm})" if lock.algorithm else ""
    return Hit(
        weigh(base, facts),
        f"rewrites {op.table} ({_size(facts)}){alg}: {why}; "
        + ("concurrent writes continue but the rebuild takes I/O and time" if online
           else f"{lock.blocks} are blocked until it is done"),
        safe_forms.rewrite(op, lock, ctx),
        op.table,
    )


def _refresh_blocks_readers(op: Op, lock: LockInfo, facts: TableFacts | None) -> Hit | None:
    """REFRESH MATERIALIZED VIEW rebuilds the view under ACCESS EXCLUSIVE: every reader waits for the
    whole rebuild. CONCURRENTLY (which needs a unique index on the view) lets them read the old rows."""
    if not lock.blocks_reads:
        return None
    return Hit(weigh(S.HIGH, facts),
               f"rebuilds the materialized view {op.table} ({_size(facts)}) under ACCESS EXCLUSIVE: its readers "
               "wait until the rebuild is done",
               "with op.get_context().autocommit_block():\n"
               f"    op.execute('REFRESH MATERIALIZED VIEW CONCURRENTLY {op.table}')  # needs a unique index on it",
               op.table)


@rule("DG102", "index-not-concurrent")
def index_not_concurrent(op: Op, lock: LockInfo, ctx: Context, facts: TableFacts | None) -> Hit | None:
    """An index is built on an existing table while writes are blocked.

    Anti-pattern (PostgreSQL: CREATE INDEX holds SHARE, blocking every INSERT/UPDATE/DELETE for
    the whole build)::

        op.create_index("ix_orders_status", "orders", ["status"])

    Best practice (outside the migration's transaction)::

        with op.get_context().autocommit_block():
            op.create_index("ix_orders_status", "orders", ["status"], postgresql_concurrently=True)
    """
    if op.kind == "create_index" and lock.blocks_writes and _existing(op, ctx):
        what = "FULLTEXT/SPATIAL index" if op.index_kind else "index"
        rebuild = " (the table's first FULLTEXT index rebuilds it: InnoDB adds its FTS_DOC_ID column)" \
            if lock.work == "rewrite" else ""
        return Hit(
            weigh(S.HIGH, facts),
            f"builds {what} {op.index or ''} on {op.table} ({_size(facts)}) holding {lock.mode}{rebuild}: "
            f"{lock.blocks} wait for the whole build",
            safe_forms.index(op, lock, ctx),
            op.table,
        )
    # DROP INDEX names only the index: the plan finds its table from the CREATE INDEX before it.
    if op.kind == "drop_index" and lock.blocks_reads and not op.concurrently and ctx.server.concurrent_index \
            and (op.table is None or _existing(op, ctx)):
        where = f"{op.table} ({_size(facts)})" if op.table else f"its table (table of index {op.index} unknown)"
        return Hit(S.LOW, f"drops index {op.index} with {lock.mode} on {where}: brief, but it queues behind any "
                          "open transaction on the table, and reads and writes queue behind it while it waits",
                   safe_forms.index(op, lock, ctx), op.table)
    return None


@rule("DG103", "add-not-null-without-default")
def not_null_without_default(op: Op, lock: LockInfo, ctx: Context, facts: TableFacts | None) -> Hit | None:
    """A NOT NULL column without a default is added to a table that may hold rows.

    Anti-pattern (PostgreSQL fails on the first existing row; MySQL silently writes 0 or '')::

        op.add_column("users", sa.Column("tenant_id", sa.Integer(), nullable=False))

    Best practice::

        op.add_column("users", sa.Column("tenant_id", sa.Integer(), nullable=True))
        # backfill in batches, then (PostgreSQL) CHECK NOT VALID + VALIDATE + SET NOT NULL
    """
    if op.kind != "add_column" or op.nullable is not False or op.has_default or op.auto_value:
        return None
    if not _existing(op, ctx) or (facts is not None and facts.empty):
        return None
    if ctx.server.not_null_add_fails_with_rows:
        sev = S.CRITICAL if facts is not None else S.HIGH
        what = "fails with 'column contains null values' as soon as the table has a row"
    else:
        sev = weigh(S.MEDIUM, facts)
        what = "fills existing rows with the type's implicit default (0, '', zero date) without a word"
    return Hit(sev, f"adds NOT NULL column {op.table}.{op.column} without a default ({_size(facts)}): {what}",
               safe_forms.not_null(op, lock, ctx), op.table)


@rule("DG104", "set-not-null-scan")
def set_not_null_scan(op: Op, lock: LockInfo, ctx: Context, facts: TableFacts | None) -> Hit | None:
    """SET NOT NULL checks every row while holding an exclusive lock.

    Anti-pattern::

        op.alter_column("users", "tenant_id", nullable=False)

    Best practice (PostgreSQL 12+: a validated CHECK lets SET NOT NULL skip the scan)::

        op.execute("ALTER TABLE users ADD CONSTRAINT ck_tenant_nn CHECK (tenant_id IS NOT NULL) NOT VALID")
        op.execute("ALTER TABLE users VALIDATE CONSTRAINT ck_tenant_nn")
        op.alter_column("users", "tenant_id", nullable=False)
        op.drop_constraint("ck_tenant_nn", "users")
    """
    if op.kind != "set_not_null" or lock.work != "scan" or not _existing(op, ctx):
        return None
    return Hit(
        weigh(S.HIGH, facts),
        f"SET NOT NULL on {op.table}.{op.column} ({_size(facts)}) scans the table holding {lock.mode}: "
        f"{lock.blocks} wait; it fails if a NULL is left",
        safe_forms.not_null(op, lock, ctx),
        op.table,
    )


@rule("DG105", "constraint-validated-under-lock")
def constraint_validated_under_lock(op: Op, lock: LockInfo, ctx: Context, facts: TableFacts | None) -> Hit | None:
    """A foreign key or CHECK constraint is added and validated in one step on an existing table.

    Anti-pattern (PostgreSQL: every row is checked under SHARE ROW EXCLUSIVE on both tables;
    MySQL/MariaDB: ALGORITHM=COPY with foreign_key_checks on)::

        op.create_foreign_key("fk_orders_user", "orders", "users", ["user_id"], ["id"])

    Best practice (PostgreSQL)::

        op.execute("ALTER TABLE orders ADD CONSTRAINT fk_orders_user FOREIGN KEY (user_id) "
                   "REFERENCES users (id) NOT VALID")
        op.execute("ALTER TABLE orders VALIDATE CONSTRAINT fk_orders_user")  # next revision
    """
    if op.kind != "add_constraint" or op.constraint not in ("foreign_key", "check") or op.not_valid:
        return None
    if not _existing(op, ctx) or not (lock.blocks_writes or lock.blocks_reads):
        return None
    what = "foreign key" if op.constraint == "foreign_key" else "CHECK constraint"
    others = f" and {', '.join(lock.other_tables)}" if lock.other_tables else ""
    return Hit(
        weigh(S.HIGH, facts),
        f"adds {what} {op.constraint_name or ''} on {op.table} ({_size(facts)}) and checks every row "
        f"holding {lock.mode} on {op.table}{others}: {lock.blocks} wait",
        safe_forms.validate_later(op, lock, ctx),
        op.table,
    )


@rule("DG106", "unique-built-under-lock")
def unique_under_lock(op: Op, lock: LockInfo, ctx: Context, facts: TableFacts | None) -> Hit | None:
    """A UNIQUE or PRIMARY KEY constraint builds its index while the table is locked.

    Anti-pattern::

        op.create_unique_constraint("uq_users_email", "users", ["email"])

    Best practice (PostgreSQL)::

        with op.get_context().autocommit_block():
            op.create_index("uq_users_email", "users", ["email"], unique=True, postgresql_concurrently=True)
        op.execute("ALTER TABLE users ADD CONSTRAINT uq_users_email UNIQUE USING INDEX uq_users_email")
    """
    if op.kind != "add_constraint" or op.constraint not in ("unique", "primary_key") or op.using_index:
        return None
    if not _existing(op, ctx) or lock.work != "index" or not lock.blocks_writes:
        return None
    return Hit(
        weigh(S.HIGH, facts),
        f"adds {op.constraint.replace('_', ' ')} {op.constraint_name or ''} on {op.table} ({_size(facts)}): "
        f"the index is built holding {lock.mode}, {lock.blocks} wait",
        safe_forms.unique_using_index(op, lock, ctx),
        op.table,
    )


@rule("DG107", "destructive")
def destructive(op: Op, lock: LockInfo, ctx: Context, facts: TableFacts | None) -> Hit | None:
    """The statement destroys data: DROP TABLE, DROP COLUMN, TRUNCATE, DELETE without WHERE.

    Anti-pattern (in the same deploy as the code that stops using it)::

        op.drop_column("users", "legacy_flag")

    Best practice: stop reading and writing it in one release, drop it in a later one, after a
    backup; for tables, rename or archive first.
    """
    if op.kind not in ("drop_table", "drop_column", "truncate", "delete") or not _existing(op, ctx):
        return None
    if op.kind == "delete" and op.has_where:
        return None
    rows = "its rows" if facts is None or facts.rows is None else f"{facts.rows:,} rows"
    if op.kind == "drop_column":
        base = S.MEDIUM
        what = f"drops column {op.table}.{op.column}: the values of {rows} are gone and running code that still " \
               "reads it fails"
    else:
        base = S.HIGH
        verb = {"drop_table": "drops table", "truncate": "truncates", "delete": "deletes every row of"}[op.kind]
        what = f"{verb} {op.table}: {rows} destroyed ({_size(facts)})"
    sev = min(base, S.LOW) if facts is not None and facts.empty else base
    return Hit(sev, what, "expand/contract: stop using it first, back it up, destroy it in a later release",
               op.table)


@rule("DG108", "narrowing-type")
def narrowing_type(op: Op, lock: LockInfo, ctx: Context, facts: TableFacts | None) -> Hit | None:
    """A column's type is narrowed: values that do not fit fail the migration or are cut.

    Anti-pattern::

        op.alter_column("users", "name", type_=sa.String(50), existing_type=sa.String(255))

    Best practice: check the longest value first (``SELECT max(length(name))``), add a CHECK
    NOT VALID and validate it, or keep the wider type.
    """
    if op.kind != "alter_type" or not _existing(op, ctx):
        return None
    before = old_type(op, ctx)
    if type_change(before, op.type) != "narrow":
        return None
    return Hit(weigh(S.HIGH, facts),
               f"narrows {op.table}.{op.column} from {before} to {op.type} ({_size(facts)}): longer values fail "
               "the statement (strict mode) or are truncated",
               "verify the data fits (or add a validated CHECK) before narrowing; prefer keeping the wider type",
               op.table)


@rule("DG109", "rename")
def rename(op: Op, lock: LockInfo, ctx: Context, facts: TableFacts | None) -> Hit | None:
    """A table or column is renamed: the running application still uses the old name.

    Anti-pattern::

        op.alter_column("users", "name", new_column_name="full_name")

    Best practice: add the new column (or a view with the new name), write both, backfill, move
    the readers, drop the old one in a later release.
    """
    if op.kind not in ("rename_table", "rename_column") or not _existing(op, ctx):
        return None
    what = f"column {op.table}.{op.column} to {op.new_name}" if op.kind == "rename_column" \
        else f"table {op.table} to {op.new_name}"
    sev = S.LOW if facts is not None and facts.empty else S.HIGH
    return Hit(sev, f"renames {what}: every running query that names the old one fails from this moment",
               "expand/contract: add the new name next to the old (column or view), migrate the code, drop the old "
               "name later", op.table)


@rule("DG110", "lock-timeout-disabled")
def lock_timeout_disabled(op: Op, lock: LockInfo, ctx: Context, facts: TableFacts | None) -> Hit | None:
    """Raw SQL turns the lock timeout off (or takes an explicit table lock without one).

    Anti-pattern::

        op.execute("SET lock_timeout = 0")
        op.execute("LOCK TABLE orders IN ACCESS EXCLUSIVE MODE")

    Best practice: leave dbguard's lock_timeout in place (``--lock-timeout MS``); if one step
    really needs longer, raise it for that statement only (``SET LOCAL lock_timeout = '5s'``).
    """
    if op.kind == "set" and op.setting in ("lock_timeout", "lock_wait_timeout", "innodb_lock_wait_timeout"):
        value = (op.value or "").strip().lower()
        disabled = value in ("0", "0ms", "0s", "default")
        if not disabled and op.setting != "lock_timeout":
            try:
                disabled = float(value) > 60  # MySQL/MariaDB take seconds
            except ValueError:
                disabled = False
        if disabled:
            return Hit(S.HIGH, f"SET {op.setting} = {op.value}: the next DDL may wait for a lock without bound and "
                               "queue every query on its table behind it",
                       "keep dbguard's lock timeout; use SET LOCAL lock_timeout for a single longer step")
    if op.kind == "lock_table" and (lock.blocks_writes or lock.blocks_reads) and _existing(op, ctx) \
            and ctx.lock_timeout_ms is None and op.setting != "nowait":
        return Hit(S.MEDIUM, f"LOCK TABLE {op.table} ({lock.mode}) with no lock timeout set",
                   "SET lock_timeout first, or LOCK ... NOWAIT and retry", op.table)
    return None


@rule("DG111", "many-locks-in-one-transaction", scope="revision")
def many_locks(ops: Sequence[tuple[Op, LockInfo]], ctx: Context) -> Hit | None:
    """One transaction locks more relations than the server's lock table comfortably holds.

    Anti-pattern: one revision creating or altering hundreds of tables and indexes (PostgreSQL
    keeps every lock until COMMIT; past ``max_locks_per_transaction`` it fails with "out of shared
    memory").

    Best practice: split the work over several revisions (dbguard runs one transaction per
    revision), or raise max_locks_per_transaction first.
    """
    if not ctx.server.counts_lock_slots:
        return None
    relations: set[str] = set()
    for op, lock in ops:
        if lock.work == "none" and op.kind not in ("create_table", "drop_table"):
            continue
        if op.table:
            relations.add(f"t:{op.table}")
        if op.index:
            relations.add(f"i:{op.index}")
        relations.update(f"i:{name}" for name in op.created_indexes)
        relations.update(f"t:{name}" for name in lock.other_tables)
    if len(relations) <= ctx.server.lock_slots:
        return None
    return Hit(S.MEDIUM, f"one transaction locks {len(relations)} tables and indexes; max_locks_per_transaction "
                         f"is {ctx.server.lock_slots}: it may fail with 'out of shared memory' and holds every lock "
                         "until it commits",
               "split the revision, or raise max_locks_per_transaction before running it")


@rule("DG112", "concurrently-in-transaction")
def concurrently_in_transaction(op: Op, lock: LockInfo, ctx: Context, facts: TableFacts | None) -> Hit | None:
    """CREATE/DROP INDEX CONCURRENTLY inside the migration's transaction: PostgreSQL refuses it.

    Anti-pattern::

        op.create_index("ix_orders_status", "orders", ["status"], postgresql_concurrently=True)

    Best practice::

        with op.get_context().autocommit_block():
            op.create_index("ix_orders_status", "orders", ["status"], postgresql_concurrently=True)
    """
    if op.kind in ("create_index", "drop_index") and op.concurrently and ctx.in_transaction \
            and ctx.server.concurrent_index:
        return Hit(S.CRITICAL, f"{'CREATE' if op.kind == 'create_index' else 'DROP'} INDEX CONCURRENTLY inside a "
                               "transaction fails: 'cannot run inside a transaction block'",
                   "wrap it in op.get_context().autocommit_block()", op.table)
    return None


@rule("DG113", "lock-contention", every_table=True)
def lock_contention(op: Op, lock: LockInfo, ctx: Context, facts: TableFacts | None) -> Hit | None:
    """Sessions hold locks on the table that conflict with the statement's: it will queue behind them
    (needs live facts; PostgreSQL's table-lock conflict matrix, MySQL/MariaDB metadata locks).

    Anti-pattern: running ``ALTER TABLE orders ...`` while a report keeps a transaction open on
    ``orders``: the ALTER waits, and every query after it waits behind the ALTER.

    Best practice: keep dbguard's lock timeout (it fails fast and retries), end or wait for the
    holders (``dbguard locks --table T``), deploy when they are gone.
    """
    if facts is None or not facts.lock_holders or ctx.is_new(op.table):
        return None
    # Only sessions whose locks conflict with the one the statement needs make it wait.
    holders = conflicting_holders(lock, facts.lock_holders, ctx.server.engine)
    if not holders:
        return None
    oldest = max((h.xact_age_s or 0.0) for h in holders)
    who = ", ".join(f"{h.session_id} ({h.state or '?'}{', ' + h.mode if h.mode else ''}"
                    f"{', waiting' if not h.granted else ''})" for h in holders[:5])
    sev = S.HIGH if oldest > 60 else S.MEDIUM
    if not lock.queues:
        sev = S.LOW  # it waits, but reads and writes do not queue behind it
    timeout = f"dbguard's lock timeout ({ctx.lock_timeout_ms} ms) makes it fail fast and retry" \
        if ctx.lock_timeout_ms else "nothing bounds the wait"
    # Queued behind a waiting request: what conflicts with it (a waiting exclusive metadata lock: all).
    queued = "query" if lock.blocks_reads or lock.exclusive_briefly else "write" if lock.blocks_writes else ""
    behind = f", and every {queued} on {op.table} behind it" if queued else ""
    return Hit(sev, f"{len(holders)} session(s) hold or await locks on {op.table} that conflict with {lock.mode}, "
                    f"which the statement needs: {who}; oldest transaction {oldest:.0f} s; it would queue behind "
                    f"them{behind}; {timeout}",
               f"see them with `dbguard locks --table {op.table}`; let them finish, or end them with "
               f"`dbguard locks kill --holding {op.table}`, before deploying", op.table)


@rule("DG114", "creates-what-exists")
def creates_what_exists(op: Op, lock: LockInfo, ctx: Context, facts: TableFacts | None) -> Hit | None:
    """CREATE TABLE for a table the live database already has: the statement fails (needs live facts).

    Anti-pattern: re-running a revision that failed half-way on MySQL/MariaDB (DDL is not
    transactional there: the first CREATE TABLE stayed), or ``alembic stamp`` moved alembic_version
    back behind the schema; the run dies with "Table ... already exists" (1050 / 42P07).

    Best practice: look at what of the failed step is live (``dbguard drift``), then
    ``dbguard rollback`` or repair by hand and ``dbguard resolve``.
    """
    if op.kind != "create_table" or facts is None or not facts.exists or ctx.is_new(op.table):
        return None
    if "IF NOT EXISTS" in " ".join(op.sql.upper().split()):
        return None
    return Hit(S.CRITICAL, f"creates table {op.table}, which exists already ({_size(facts)}): the statement fails, "
                           "most likely left behind by a failed run",
               "roll back (`dbguard rollback`) or repair by hand and `dbguard resolve`, then run it again", op.table)


# A statement that runs at least this long (or for a time that scales with a table of unknown size)
# makes every lock held before it long.
LONG_S = 1.0
# What does not commit on MySQL/MariaDB (DDL and LOCK TABLES commit before they start).
_DML = ("update", "delete", "insert", "select", "set")


def _lengthens(step: Step) -> str | None:
    """What ``step`` does for long, in words, or None when it is brief."""
    op, work = step.op, step.lock.work
    if work == "dml":
        if op.has_where or op.kind not in ("update", "delete"):
            return None  # a batch: how many rows it touches is not known, and is meant to be few
        what = f"{'updates' if op.kind == 'update' else 'deletes'} every row of {op.table}"
    elif work == "scan":
        what = f"validates {op.constraint_name or 'a constraint'} by scanning {op.table}" \
            if op.kind == "validate_constraint" else f"scans {op.table}"
    elif work == "index":
        what = f"builds an index on {op.table}"
    elif work == "rewrite":
        what = f"rewrites {op.table}"
    else:
        return None
    if step.hold_s is not None and step.hold_s < LONG_S:
        return None
    return what


def _blocking(tl: TableLock, op: Op) -> tuple[int, str] | None:
    """What a lock keeps others from doing while it is held: (rank, words), or None for nothing."""
    if tl.lock.blocks_reads:
        return 2, "reads and writes"
    if tl.lock.blocks_writes:
        return 1, "writes"
    if op.kind in ("update", "delete") and not op.has_where and tl.table == op.table:
        return 1, "writes"  # row locks on every row
    return None


def _split(step: Step, ctx: Context) -> str:
    """The safe form: the long statement in a transaction of its own, as code to paste."""
    call = f"op.execute({' '.join(step.sql.split())!r})"
    if not ctx.server.transactional_ddl:
        return f"commit before it: move {call} to a revision of its own (dbguard runs one transaction per revision)"
    batches = " and backfill in batches (WHERE id BETWEEN ...)" if step.op.kind in ("update", "delete") else \
        " with CREATE INDEX CONCURRENTLY" if step.op.kind == "create_index" and not step.op.concurrently else ""
    return (f"end the transaction before it: move {call} to a revision of its own (dbguard runs one "
            f"transaction per revision), or run it as `with op.get_context().autocommit_block(): {call}`"
            f"{batches}")


@rule("DG115", "lock-held-across-transaction", scope="transaction")
def lock_held_across_transaction(steps: Sequence[Step], ctx: Context) -> list[Hit]:
    """A lock taken early in a transaction is held through a later long statement (until COMMIT).

    Anti-pattern (PostgreSQL keeps every lock to the end of the transaction: the ADD's ACCESS
    EXCLUSIVE is held while VALIDATE scans the table, and while the UPDATE rewrites every row)::

        op.execute("ALTER TABLE users ADD CONSTRAINT ck_age CHECK (age >= 0) NOT VALID")
        op.execute("ALTER TABLE users VALIDATE CONSTRAINT ck_age")
        op.add_column("users", sa.Column("plan", sa.Text()))
        op.execute("UPDATE users SET plan = 'free'")

    Best practice: commit between the brief lock and the long work: a revision of its own, or an
    autocommit block (MySQL/MariaDB DDL commits by itself: there only row locks of DML are held)::

        op.execute("ALTER TABLE users ADD CONSTRAINT ck_age CHECK (age >= 0) NOT VALID")
        with op.get_context().autocommit_block():
            op.execute("ALTER TABLE users VALIDATE CONSTRAINT ck_age")
    """
    held: dict[str, tuple[int, str, TableLock, Step]] = {}
    reported: set[tuple[str, str, int]] = set()
    hits: list[Hit] = []
    for step in steps:
        if not ctx.server.transactional_ddl and step.op.kind not in _DML:
            held.clear()  # DDL commits before and after itself
            continue
        what = _lengthens(step)
        if what is not None:
            own = {tl.table: (_blocking(tl, step.op) or (0, ""))[0] for tl in step.tables}
            for table, (rank, blocks, tl, taker) in held.items():
                if taker is step or own.get(table, 0) >= rank or (table, taker.revision, taker.index) in reported:
                    continue  # its own lock, or one it takes itself anyway: its own rule judges that
                reported.add((table, taker.revision, taker.index))
                where = f" of {taker.revision}" if taker.revision != step.revision else ""
                how_long = "for a time that scales with its size" if step.hold_s is None else \
                    f"for ~{step.hold_s:.0f} s"
                rows = not (tl.lock.blocks_reads or tl.lock.blocks_writes)
                base = S.MEDIUM if rows else S.HIGH
                lock_text = f"the row locks on every row of {table}" if rows else f"{tl.lock.mode} on {table}"
                hits.append(Hit(
                    base,
                    f"{lock_text}, taken by #{taker.index + 1}{where} ({_short(taker.sql)}), is held to the "
                    f"end of the transaction: #{step.index + 1} {what} {how_long}, and {blocks} of {table} wait "
                    "all that time",
                    _split(step, ctx), table, at=step.index, lock=tl.lock, taken_at=taker.index, taken_by=taker.sql,
                    at_revision=step.revision))
        for tl in step.tables:
            found = _blocking(tl, step.op)
            if tl.new or found is None:
                continue  # nobody else uses a table the plan creates
            if _held_rank(held.get(tl.table)) < found[0]:
                held[tl.table] = (found[0], found[1], tl, step)
    return hits


def _held_rank(entry: tuple[int, str, TableLock, Step] | None) -> int:
    return entry[0] if entry is not None else 0


def _short(sql: str, limit: int = 70) -> str:
    flat = " ".join(sql.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."
