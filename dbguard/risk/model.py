"""Plain data of the risk rules: parsed statements, plan context, live facts, findings.

Nothing here touches a database, a clock or sqlglot: rules are pure functions over these.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping


class Severity(enum.IntEnum):
    INFO = 0
    LOW = 1
    MEDIUM = 2
    HIGH = 3
    CRITICAL = 4

    @classmethod
    def parse(cls, text: str) -> Severity | None:
        """``none`` (never fail) gives None; anything else must name a level."""
        value = text.strip().lower()
        if value in ("none", "never", "off"):
            return None
        try:
            return cls[value.upper()]
        except KeyError:
            raise ValueError(f"unknown severity {text!r}: one of info, low, medium, high, critical, none") from None

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclasses.dataclass(frozen=True)
class Op:
    """One operation of one statement (an ALTER TABLE with three actions gives three Ops).

    ``kind`` is one of: create_table, drop_table, rename_table, truncate, add_column, drop_column,
    rename_column, alter_type, set_not_null, drop_not_null, set_default, add_constraint,
    drop_constraint, validate_constraint, create_index, drop_index, update, delete, insert, select,
    set, lock_table, rewrite_table, begin, commit, other_ddl, unknown.
    """

    kind: str
    sql: str
    table: str | None = None
    column: str | None = None
    new_name: str | None = None
    index: str | None = None
    # create/drop index
    concurrently: bool = False
    unique: bool = False
    index_kind: str | None = None  # fulltext, spatial
    # add_column / alter_type
    type: str | None = None
    nullable: bool | None = None
    has_default: bool = False
    default_volatile: bool = False
    auto_value: bool = False  # serial / identity / auto_increment / generated: fills itself
    generated_stored: bool = False
    # constraints
    constraint: str | None = None  # foreign_key, check, unique, primary_key
    constraint_name: str | None = None
    not_valid: bool = False
    using_index: bool = False
    ref_table: str | None = None
    check_not_null_of: str | None = None  # CHECK (col IS NOT NULL): the column
    # DML
    has_where: bool = True
    # SET name = value; LOCK TABLE mode
    setting: str | None = None
    value: str | None = None
    # MySQL/MariaDB explicit ALGORITHM= / LOCK= clauses
    algorithm: str | None = None
    lock_clause: str | None = None
    # other tables the statement creates or touches (CREATE TABLE ... REFERENCES)
    created_indexes: tuple[str, ...] = ()
    references: tuple[str, ...] = ()
    # create_table: (column, type, nullable), for later type and nullability checks
    columns: tuple[tuple[str, str | None, bool], ...] = ()
    note: str | None = None


@dataclasses.dataclass(frozen=True)
class ServerInfo:
    """The engine and, when known, its flavour and version; rules ask its capabilities."""

    engine: str  # postgresql | mysql
    flavor: str  # postgresql | mysql | mariadb
    version: tuple[int, ...] | None = None
    version_text: str | None = None
    # PostgreSQL max_locks_per_transaction (live), else the default
    lock_slots: int = 64

    def at_least(self, *version: int) -> bool:
        """Unknown versions count as recent: offline plans judge a supported, current server."""
        return self.version is None or self.version >= version

    @property
    def transactional_ddl(self) -> bool:
        return self.engine == "postgresql"

    @property
    def not_null_add_fails_with_rows(self) -> bool:
        """PostgreSQL refuses ADD COLUMN ... NOT NULL without default on a non-empty table; MySQL and
        MariaDB fill the type's implicit default (0, '') instead."""
        return self.engine == "postgresql"

    @property
    def concurrent_index(self) -> bool:
        return self.engine == "postgresql"

    @property
    def counts_lock_slots(self) -> bool:
        """One transaction locking many relations can exhaust max_locks_per_transaction (PostgreSQL)."""
        return self.engine == "postgresql"

    @property
    def describe(self) -> str:
        return self.version_text or (f"{self.flavor} (version unknown)")


@dataclasses.dataclass(frozen=True)
class LockHolder:
    session_id: str
    state: str | None = None
    # The engine's name of the lock (AccessShareLock, MDL_SHARED_READ); several, comma-separated,
    # when the session holds more than one on the table.
    mode: str | None = None
    xact_age_s: float | None = None
    query: str | None = None
    # False: the session waits for the lock (it is queued ahead of the plan's statement).
    granted: bool = True


@dataclasses.dataclass(frozen=True)
class ColumnFacts:
    """One live column: its type as the catalog spells it (PostgreSQL ``format_type``:
    ``character varying(20)``; MySQL/MariaDB COLUMN_TYPE: ``varchar(20)``) and its nullability."""

    type: str
    nullable: bool = True
    # MySQL/MariaDB: bytes per character of the column's charset (utf8mb4: 4), which decides
    # whether a longer VARCHAR still fits its length byte.
    char_bytes: int | None = None


@dataclasses.dataclass(frozen=True)
class TableFacts:
    """What the live database says about one table. ``rows`` None: never counted (PostgreSQL
    ``reltuples`` -1 before the first ANALYZE); ``data_bytes`` is the heap alone, ``size_bytes``
    with indexes and TOAST."""

    table: str
    exists: bool = True
    rows: int | None = None
    size_bytes: int | None = None
    data_bytes: int | None = None
    rows_source: str = ""
    lock_holders: tuple[LockHolder, ...] = ()
    # The live columns by (lower-case) name; empty when not read.
    columns: Mapping[str, ColumnFacts] = dataclasses.field(default_factory=dict)

    # Below these a table counts as small: a rewrite or scan takes well under a second.
    SMALL_ROWS = 10_000
    SMALL_BYTES = 8 * 1024 * 1024
    # An InnoDB table that never held a row is one 16 KiB page; a PostgreSQL heap is 0 bytes.
    EMPTY_BYTES = 16 * 1024

    @property
    def empty(self) -> bool:
        if not self.exists:
            return True
        data = self.data_bytes if self.data_bytes is not None else self.size_bytes
        if self.rows is None:
            return data is not None and data == 0
        # MySQL 8 caches TABLE_ROWS for up to a day: a table whose data outgrew one page is not empty.
        return self.rows == 0 and (data is None or data <= self.EMPTY_BYTES)

    @property
    def small(self) -> bool:
        data = self.size_bytes if self.size_bytes is not None else self.data_bytes
        rows_small = self.rows is None or self.rows < self.SMALL_ROWS
        bytes_small = data is None or data < self.SMALL_BYTES
        if self.rows is None and data is None:
            return False
        return rows_small and bytes_small


@dataclasses.dataclass(frozen=True)
class LockInfo:
    """The lock one operation takes and what it does while holding it.

    ``work``: instant (catalog only), scan (reads every row), index (builds an index), rewrite
    (copies the table), dml (touches matching rows), none.
    """

    mode: str
    blocks_reads: bool
    blocks_writes: bool
    work: str = "instant"
    algorithm: str | None = None  # MySQL/MariaDB: INSTANT, INPLACE, COPY
    other_tables: tuple[str, ...] = ()
    # MySQL/MariaDB DDL: even INSTANT/INPLACE takes the exclusive metadata lock at its start and end,
    # so it queues behind any open transaction on the table (and everything queues behind it).
    exclusive_briefly: bool = False

    @property
    def queues(self) -> bool:
        """Whether the statement must wait for, and then makes others wait behind, current holders."""
        return self.blocks_reads or self.blocks_writes or self.exclusive_briefly

    @property
    def blocks(self) -> str:
        if self.blocks_reads:
            return "reads and writes"
        if self.blocks_writes:
            return "writes"
        return "nothing"

    @property
    def describe(self) -> str:
        text = self.mode
        if self.algorithm:
            text += f", ALGORITHM={self.algorithm}"
        if self.work not in ("instant", "none"):
            text += f", {self.work}"
        return f"{text}; blocks {self.blocks}"


NO_LOCK = LockInfo(mode="none", blocks_reads=False, blocks_writes=False, work="none")


@dataclasses.dataclass(frozen=True)
class TableLock:
    """One table a statement locks: its own, or another (an FK's referenced table, an index's table).
    ``new``: the table is created by the plan (nobody else can be using it)."""

    table: str
    lock: LockInfo
    new: bool = False


@dataclasses.dataclass(frozen=True)
class Step:
    """One operation of a transaction, as the transaction rules see it: the locks it takes on every
    table and how long it runs (``hold_s`` None: scales with a size nobody knows)."""

    index: int  # the statement's position in its revision, from 0
    sql: str
    op: Op
    lock: LockInfo
    tables: tuple[TableLock, ...]
    hold_s: float | None
    facts: TableFacts | None = None
    # Its revision: a transaction spans several when env.py runs the whole upgrade in one.
    revision: str = ""


@dataclasses.dataclass(frozen=True)
class Context:
    """What a rule may know besides the statement: plain data, filled by the planner."""

    server: ServerInfo
    # Tables created by earlier statements of the plan being judged (and this revision so far).
    created_in_plan: frozenset[str] = frozenset()
    # Tables known to exist before the plan (history rendered offline, or the live catalog).
    existing: frozenset[str] = frozenset()
    # False inside an autocommit_block (after Alembic's COMMIT): the statement is its own transaction.
    in_transaction: bool = True
    # Column types known from earlier statements: {table: {column: type}}.
    columns: Mapping[str, Mapping[str, str]] = dataclasses.field(default_factory=dict)
    # (table, column) pairs with a validated CHECK (column IS NOT NULL).
    not_null_checks: frozenset[tuple[str, str]] = frozenset()
    # (table, column) pairs known to be NOT NULL already.
    not_null_columns: frozenset[tuple[str, str]] = frozenset()
    # MySQL/MariaDB: bytes per character of a column's charset, from the live catalog: {(table, column): n}.
    char_bytes: Mapping[tuple[str, str], int] = dataclasses.field(default_factory=dict)
    # dbguard's own lock timeout for the run, when dbguard runs it.
    lock_timeout_ms: int | None = None
    # Foreign keys known from history and plan: {constraint name: (table, referenced table)}.
    foreign_keys: Mapping[str, tuple[str, str]] = dataclasses.field(default_factory=dict)
    # The tables each table references through its foreign keys: {table: {referenced, ...}}.
    parents: Mapping[str, frozenset[str]] = dataclasses.field(default_factory=dict)
    # The tables each view's query reads: {view: {table, ...}} (REFRESH reads them all).
    view_sources: Mapping[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)
    # MySQL/MariaDB: tables known to have a FULLTEXT index already (the first one rebuilds the table).
    fulltext_tables: frozenset[str] = frozenset()

    def is_new(self, table: str | None) -> bool:
        return table is not None and table in self.created_in_plan


@dataclasses.dataclass(frozen=True)
class Hit:
    """What a rule returns when it fires; the planner adds code, revision, table facts."""

    severity: Severity
    message: str
    alternative: str
    table: str | None = None
    # Transaction rules: the statement the finding belongs to (from 0), the lock held across it and
    # the statement that took that lock.
    at: int | None = None
    lock: LockInfo | None = None
    taken_at: int | None = None
    taken_by: str | None = None
    # The revision of the statement ``at`` names (a transaction may span revisions).
    at_revision: str | None = None


@dataclasses.dataclass(frozen=True)
class Finding:
    code: str
    name: str
    severity: str
    revision: str | None
    statement: str
    message: str
    alternative: str
    table: str | None = None
    rows: int | None = None
    size_bytes: int | None = None
    lock: str | None = None
    blocks: str | None = None
    hold_s: float | None = None
    hold: str = "unknown"
    statement_index: int | None = None
    # A lock held across statements (DG115): the statement that took it (1-based, and its SQL).
    taken_at: int | None = None
    taken_by: str | None = None

    @property
    def level(self) -> Severity:
        return Severity[self.severity.upper()]
