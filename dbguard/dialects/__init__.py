"""Engine SQL, one module per engine, behind protocols split by capability.

Shared code asks a dialect for SQL text or a capability; it never branches on the engine's name.
Modules are named after SQLAlchemy's ``dialect.name``.

:class:`Dialect` is what every engine has. What only some engines have is a capability protocol
(:class:`ScratchServer`, :class:`SessionControl`, :class:`FleetClaims` ...), reached through its
accessor (``fleet_claims_of(dialect)``), which checks the flag the shared code branches on. Each
engine module names, under ``if TYPE_CHECKING:``, every protocol its class satisfies, so mypy fails
when a class stops satisfying one, and the accessors' casts stay true.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple, Protocol, cast

from dbguard.errors import ConfigError


class Statement(NamedTuple):
    """SQL text and its bound parameters."""

    sql: str
    params: dict[str, Any] = {}  # noqa: RUF012 - never mutated; read-only default


def bound_list(values: list[str], prefix: str) -> tuple[str, dict[str, str]]:
    """What goes between the parentheses of ``IN (...)`` for ``values``, as bound parameters
    (``:t0, :t1``; ``NULL`` for none, which matches nothing), and the parameters."""
    params = {f"{prefix}{i}": v for i, v in enumerate(values)}
    return ", ".join(":" + k for k in params) or "NULL", params


class Dialect(Protocol):
    name: str
    # "sql": the run lock is a server-side session lock; "file": a lock file beside the database
    # (see FileRunLocks).
    run_lock_kind: str
    # Whether dbguard may write its ledger from another connection while a migration step runs.
    concurrent_ledger_writes: bool
    # Statements that let a session's commits return before the server's log is flushed, where a later
    # flushed commit makes every earlier one durable too (the migration's session, and dbguard's while
    # it journals the steps: the run's verdict, written after the last step and flushed before dbguard
    # reports anything, makes them durable); empty where the engine cannot. And the statements that
    # make a session's commits wait for the flush again.
    migration_commit_statements: tuple[str, ...]
    flushed_commit_statements: tuple[str, ...]

    def session_timeouts(self, lock_timeout_ms: int, statement_timeout_ms: int) -> list[str]: ...

    # The name other tools show for a session: connect arguments that give a new connection its name,
    # and the statements that rename one already open; empty where the engine has no such name.
    def application_connect_args(self, name: str) -> dict[str, str]: ...

    def set_application_name(self, name: str) -> list[str]: ...

    def effective_lock_timeout_ms(self, lock_timeout_ms: int) -> int: ...

    def normalize_database(self, name: str) -> str: ...

    def session_id(self) -> Statement: ...

    def current_user(self) -> Statement: ...

    def current_schema(self) -> Statement: ...

    def version_table_elsewhere(self, table: str) -> Statement | None: ...

    def current_database(self) -> Statement: ...

    def try_run_lock(self, database: str, key: str) -> Statement: ...

    def release_run_lock(self, database: str, key: str) -> Statement: ...

    def run_lock_holder(self, database: str, key: str) -> Statement: ...

    def is_lock_timeout(self, exc: BaseException) -> bool: ...

    def is_missing_table(self, exc: BaseException) -> bool: ...

    def is_privilege_error(self, exc: BaseException) -> bool: ...

    def ledger_grant_hint(self, user: str, database: str) -> str: ...

    def utc_now(self) -> Statement: ...

    def is_cancelled(self, exc: BaseException) -> bool: ...

    # The risk rules' engine family; None where no rules apply (SQLite). Read-only, so a dialect whose
    # attribute is a plain str satisfies it. Set: the engine has RiskFacts.
    @property
    def risk_engine(self) -> str | None: ...

    # The watchdog's queries (PostgreSQL and MySQL/MariaDB); only asked for with a session id, which
    # SQLite never has.
    def waits_for_lock(self, session_id: str) -> Statement: ...

    def waiters_behind(self, session_id: str, tables: tuple[str, ...] = ()) -> Statement: ...

    def cancel_own_statement(self, session_id: str) -> Statement: ...

    # Whether the watchdog can see sessions queueing behind the migration's.
    @property
    def watches_waiters(self) -> bool: ...

    # A dead client's statement ended by the server (SETs for each migration connection); none where
    # the server cannot.
    def dead_client_checks(self, interval_ms: int) -> list[str]: ...

    # --- sessions dbguard opened: told apart from a later session with the same id -------------
    # None on an engine without server sessions.
    def session_identity(self, session_id: str) -> Statement | None: ...

    def session_idle_seconds(self, session_id: str) -> Statement | None: ...

    # --- the ledger's privileges and column types ---------------------------------------------
    # None where the file system decides (SQLite).
    def ledger_privileges(self, tables: Sequence[str]) -> Statement | None: ...

    def missing_ledger_privileges(self, rows: Sequence[Any], user: str, database: str,
                                  complete: bool) -> tuple[list[str], str]: ...

    # The engine's own type for a ledger column where the generic one falls short; None keeps it.
    def ledger_long_text_type(self) -> Any: ...

    def ledger_timestamp_type(self) -> Any: ...

    # --- the lock graph (``dbguard locks``, the rollback's blockers) ---------------------------
    # "blocking_pids" (PostgreSQL: BlockingPidsLockGraph), "metadata_locks" (MySQL/MariaDB:
    # MetadataLockGraph), None: no other sessions to inspect or end (set: the engine has SessionControl).
    @property
    def lock_graph(self) -> str | None: ...

    # sqlglot's name of the engine, to read table names out of a session's query.
    @property
    def sqlglot_dialect(self) -> str | None: ...

    # --- the live schema (dbguard.db.catalog) and the models compared with it (dbguard.drift) ----
    # How the whole schema is read: "pg_catalog", "information_schema" (InformationSchemaCatalog) or
    # "sqlite_pragma".
    catalog_style: str
    # Whether every UNIQUE constraint is a unique index (models' UniqueConstraints compare as indexes).
    unique_constraints_are_indexes: bool
    # Whether a foreign key makes the server create an index on its columns when none exists.
    fk_creates_index: bool

    # Whether a server of this version builds a DESC index key descending (some take DESC and ignore
    # it); () is a version not known, taken as a recent one.
    def keeps_index_order(self, server_version: tuple[Any, ...]) -> bool: ...
    # "server": a scratch database for replaying migrations is made on the same server
    # (ScratchServer); "file": it is a temporary file.
    scratch_database_kind: str

    # The catalog's statements by part; each part's rows are what its catalog_style's reader expects.
    def catalog(self) -> dict[str, Statement]: ...

    # The whole catalog in one statement of one row per part, where the engine can pack it; None:
    # catalog() is read as it is.
    def catalog_packed(self) -> Statement | None: ...

    # --- fleets --------------------------------------------------------------------------------
    # Whether this engine can be a distributed rollout's control database (FleetClaims).
    @property
    def fleet_claims(self) -> bool: ...

    # Whether the server tells which table locks a session holds and which relations a statement
    # rewrote, for ``plan --observe`` (LockObservation).
    @property
    def observes_locks(self) -> bool: ...


class FileRunLocks(Dialect, Protocol):
    """The run lock is a lock file beside the database file (SQLite): ``run_lock_kind == "file"``."""

    def run_lock_path(self, database_file: str, key: str) -> Path: ...


class InformationSchemaCatalog(Dialect, Protocol):
    """The catalog read from information_schema (MySQL/MariaDB): ``catalog_style == "information_schema"``."""

    # MariaDB quotes literal defaults in COLUMN_DEFAULT; MySQL 8 shows them bare.
    @property
    def column_default_quoted(self) -> bool: ...

    # MariaDB's JSON is LONGTEXT with a column CHECK (json_valid(col)); MySQL 8 has a JSON type.
    @property
    def json_is_checked_longtext(self) -> bool: ...

    # A packed part's fields (see catalog_packed): each one's label and how a NULL was written.
    @staticmethod
    def catalog_packed_fields(part: str) -> tuple[tuple[str, str], ...]: ...

    # information_schema lists only the tables the user holds a privilege on: a statement that reads
    # none of ``table``'s rows, refused (a privilege error) where the table is hidden from this user.
    def table_visible_probe(self, table: str) -> Statement: ...


class ScratchServer(Dialect, Protocol):
    """Scratch databases on the target's own server, owned through a session lock the server frees
    when the owner dies (PostgreSQL, MySQL/MariaDB): ``scratch_database_kind == "server"``."""

    def create_scratch_database(self, name: str) -> Statement: ...

    def drop_scratch_database(self, name: str, force: bool = True) -> Statement: ...

    def list_scratch_databases(self, prefix: str) -> Statement: ...

    # The owner lock: taken before the database is created, let go after it is dropped.
    def hold_scratch(self, name: str) -> Statement: ...

    def release_scratch(self, name: str) -> Statement: ...

    def scratch_held(self, name: str) -> Statement: ...

    # Sessions to end before a forced drop (their ids, one a row); None where the DROP ends them itself.
    def scratch_sessions(self, name: str) -> Statement | None: ...

    # How many sessions use the scratch database.
    def scratch_users(self, name: str) -> Statement: ...


class SessionControl(Dialect, Protocol):
    """Other sessions on the server, seen and ended (PostgreSQL, MySQL/MariaDB): ``lock_graph`` is set.

    A session is named by its id and its identity (as ``session_identity`` or a lock graph's row read
    it); where the engine can, a statement matches both, so that a later session that reused the id is
    left alone."""

    # The largest session id the engine hands out (an id beyond it names nobody).
    max_session_id: int
    # How often a session's state may be polled and still change between two reads.
    session_poll_s: float
    # Whether sessions carry an application name (PostgreSQL's application_name; MySQL has none).
    session_applications: bool
    # Whether an idle transaction's last statement is shown (PostgreSQL's query; MySQL's INFO is NULL
    # while a session sleeps).
    idle_query_shown: bool

    # The user name a session list shows for sessions of ``current_user`` (as current_user() reads it).
    def session_user_name(self, current_user: str) -> str: ...

    # One row (schema, table) when ``name`` (as a person types it: bare, schema-qualified, quoted) names
    # a table the server would resolve it to in ``database``; no row otherwise.
    def resolve_table(self, name: str, database: str) -> Statement: ...

    def cancel_session(self, session_id: str, identity: str) -> Statement: ...

    def terminate_session(self, session_id: str, identity: str) -> Statement: ...

    def session_alive(self, session_id: str, identity: str) -> Statement: ...

    # Alive and still holding what others wait for.
    def session_blocking(self, session_id: str, identity: str) -> Statement: ...

    # The session's command or state; no row once it is gone.
    def session_command(self, session_id: str, identity: str) -> Statement: ...

    # Whether session_command's answer is a statement running.
    def is_running(self, command: str | None) -> bool: ...

    def is_session_gone(self, exc: BaseException) -> bool: ...

    def is_kill_denied(self, exc: BaseException) -> bool: ...

    # The grants that let a role see every session, and end other roles' sessions.
    def read_grant_hint(self, user: str) -> str: ...

    # Session SETs after which a write that would wait for a lock fails at once (or nearly): whether
    # the server accepts writes now (a global read lock, a backup stage) is told, never waited for.
    def write_probe_timeouts(self) -> list[str]: ...

    # A write refused because the server or the database is read-only.
    def is_read_only_error(self, exc: BaseException) -> bool: ...

    def signal_grant_hint(self, user: str) -> str: ...


class BlockingPidsLockGraph(SessionControl, Protocol):
    """The wait-for graph from pg_blocking_pids (PostgreSQL): ``lock_graph == "blocking_pids"``."""

    # Sessions in a wait relation, and ``extra_pids`` whether or not they are.
    def lock_sessions(self, query_chars: int = 200, extra_pids: Sequence[int] = ()) -> Statement: ...

    def lock_rows(self) -> Statement: ...

    # Prepared (2PC) transactions and what they lock: blocker pid 0.
    def prepared_transactions(self) -> Statement: ...

    def root_blockers(self, session_id: str) -> Statement: ...

    def free_prepared_hint(self, gid: str) -> str: ...

    # One row: (superuser, may read every session, may signal other roles' sessions).
    def lock_privileges(self) -> Statement: ...


class MetadataLockGraph(SessionControl, Protocol):
    """The wait-for graph from table metadata locks, read from the best of ``mdl_sources()`` that is
    ready (MySQL/MariaDB): ``lock_graph == "metadata_locks"``."""

    # Every session with its open transaction, if any.
    def lock_sessions(self, query_chars: int = 4000) -> Statement: ...

    # Where metadata locks can be read, best first; "heuristic" (guessed from transactions) last.
    def mdl_sources(self) -> tuple[str, ...]: ...

    def mdl_source_ready(self, source: str) -> Statement: ...

    def mdl_source_fix(self, source: str) -> str: ...

    # What makes the first source available, where dbguard may run it on request.
    def install_mdl_plugin(self) -> Statement | None: ...

    # Whether ``source`` shows pending requests too, not only granted locks.
    def mdl_pending_visible(self, source: str) -> bool: ...

    def mdl_rows(self, source: str, database: str) -> Statement: ...

    # Server-wide locks that stop other sessions (a global read lock, a backup stage): (session, mode).
    def server_lock_holders(self, source: str) -> Statement: ...

    # Whether a session in this PROCESSLIST state waits for such a server-wide lock.
    def waits_for_server_lock(self, state: str | None) -> bool: ...

    def session_holds_locks(self, session_id: str, source: str) -> Statement: ...

    # InnoDB row lock waits, read from the engine: (waiting session, blocking session, table as
    # `db`.`t`, index, row, requested mode, lock type, blocking mode, blocking lock granted).
    def row_lock_waits(self) -> Statement: ...

    # (schema, table) of a row_lock_waits table name; None when it names none.
    def row_lock_table(self, name: str) -> tuple[str, str] | None: ...

    # The account's global privileges, one name a row (compared with signal_privileges).
    def lock_privileges(self) -> Statement: ...

    # Fails with a privilege error unless the account may read every session's transaction.
    def read_privilege_probe(self) -> Statement: ...

    # Any one of these lets the account end other accounts' sessions.
    @property
    def signal_privileges(self) -> frozenset[str]: ...


class AlterProbes(MetadataLockGraph, Protocol):
    """MySQL/MariaDB: what the server decides for a migration statement, asked on a copy of its
    table in a scratch database (dbguard.plan.observe_mysql)."""

    def copy_table_like(self, copy: str, table: tuple[str, ...]) -> Statement: ...

    def foreign_keys_of(self, table: tuple[str, ...]) -> Statement: ...

    def drop_table_copy(self, copy: str) -> Statement: ...

    def innodb_table_id(self, table: str) -> Statement: ...

    def own_metadata_locks(self, source: str) -> Statement: ...

    def mdl_source_absent(self, source: str) -> str: ...

    def is_algorithm_refused(self, exc: BaseException) -> bool: ...


class RiskFacts(Dialect, Protocol):
    """Live facts the risk rules weigh: server, rows, size and lock holders per table (PostgreSQL,
    MySQL/MariaDB): ``risk_engine`` is set."""

    @property
    def risk_engine(self) -> str: ...

    # (version number or NULL, version text, lock slots or NULL).
    def server_facts(self) -> Statement: ...

    # Statements run before reading table facts (MySQL 8: fresh statistics).
    def table_facts_prelude(self) -> list[str]: ...

    # (table, estimated rows, total bytes, data bytes).
    def table_facts(self, tables: list[str]) -> Statement: ...

    # (table, column, type as the catalog spells it, nullable, bytes per character or NULL).
    def table_columns(self, tables: list[str]) -> Statement: ...

    # (index, table) of the named indexes in the current schema: the table a DROP INDEX locks.
    def index_tables(self, indexes: list[str]) -> Statement: ...

    # Where table_facts' row counts come from, and how far to trust them.
    @property
    def rows_source(self) -> str: ...

    def lock_holder_sources(self) -> tuple[str, ...]: ...

    def lock_holder_source_ready(self, source: str) -> Statement: ...

    # (table, session, mode, state, transaction age s, query) of granted locks other sessions hold.
    def table_lock_holders(self, tables: list[str], source: str) -> Statement: ...


class FleetClaims(Dialect, Protocol):
    """A distributed rollout's control database: workers claim targets with SKIP LOCKED and hold a
    session lock per claim (PostgreSQL): ``fleet_claims`` is true."""

    def fleet_claim(self, targets: str, batches: str, runs: str, fleet: str,
                    run_id: int | None = None) -> Statement: ...

    def claim_lock(self, claim_id: int) -> Statement: ...

    def claim_unlock(self, claim_id: int) -> Statement: ...

    # The claim ids whose claim lock some session holds.
    def claim_locks_held(self) -> Statement: ...


class LockObservation(Dialect, Protocol):
    """What a migration's session locks and rewrites, read while it runs (PostgreSQL: pg_locks and
    relfilenode): ``observes_locks`` is true. Plain SQL without parameters: some of it runs on the
    migration's own DBAPI cursor, beside SQLAlchemy."""

    # (oid, relkind, relfilenode, its table's oid, its table's name, schema, name) of user relations
    # (an index's table; a table's is itself).
    def observed_relations(self) -> Statement: ...

    # The session's own backend id.
    def backend_id(self) -> Statement: ...

    # (relation oid, relkind, mode, granted, its table's name) of the relation locks ``backend`` holds
    # or awaits on user relations (an index's under its table's name); kind and name NULL for a
    # relation this session cannot see (dropped by the statement).
    def backend_relation_locks(self, backend: int) -> Statement: ...

    # Statements that make a session hold ``mode`` on schema.table until its transaction ends,
    # waiting at most ``wait_ms`` for it.
    def hold_table_lock(self, schema: str, table: str, mode: str, wait_ms: int) -> list[str]: ...


# --- the accessors: a dialect as one of its capabilities, checked by the flag shared code branches on.
# Shared code checks that flag before it asks; an engine without the capability is refused with a
# ConfigError naming what it lacks, before any statement runs.


def _lacks(dialect: Dialect, what: str) -> ConfigError:
    return ConfigError(f"the {dialect.name} dialect has no {what}")


def file_run_locks_of(dialect: Dialect) -> FileRunLocks:
    if dialect.run_lock_kind != "file":
        raise _lacks(dialect, "run lock file (its run lock is a server's session lock)")
    return cast(FileRunLocks, dialect)


def information_schema_catalog_of(dialect: Dialect) -> InformationSchemaCatalog:
    if dialect.catalog_style != "information_schema":
        raise _lacks(dialect, "information_schema catalog")
    return cast(InformationSchemaCatalog, dialect)


def scratch_server_of(dialect: Dialect) -> ScratchServer:
    if dialect.scratch_database_kind != "server":
        raise _lacks(dialect, "scratch databases on a server")
    return cast(ScratchServer, dialect)


def session_control_of(dialect: Dialect) -> SessionControl:
    if dialect.lock_graph is None:
        raise _lacks(dialect, "other sessions to see or end")
    return cast(SessionControl, dialect)


def blocking_pids_lock_graph_of(dialect: Dialect) -> BlockingPidsLockGraph:
    if dialect.lock_graph != "blocking_pids":
        raise _lacks(dialect, "pg_blocking_pids lock graph")
    return cast(BlockingPidsLockGraph, dialect)


def metadata_lock_graph_of(dialect: Dialect) -> MetadataLockGraph:
    if dialect.lock_graph != "metadata_locks":
        raise _lacks(dialect, "metadata lock graph")
    return cast(MetadataLockGraph, dialect)


def alter_probes_of(dialect: Dialect) -> AlterProbes:
    if dialect.lock_graph != "metadata_locks":
        raise _lacks(dialect, "ALTER probes on a table's copy")
    return cast(AlterProbes, dialect)


def risk_facts_of(dialect: Dialect) -> RiskFacts:
    if dialect.risk_engine is None:
        raise _lacks(dialect, "live facts for the risk rules")
    return cast(RiskFacts, dialect)


def fleet_claims_of(dialect: Dialect) -> FleetClaims:
    if not dialect.fleet_claims:
        raise _lacks(dialect, "fleet claims (a distributed rollout needs a PostgreSQL control database)")
    return cast(FleetClaims, dialect)


def lock_observation_of(dialect: Dialect) -> LockObservation:
    if not dialect.observes_locks:
        raise _lacks(dialect, "observation of a migration's locks and rewrites (plan --observe)")
    return cast(LockObservation, dialect)


_MODULES = {"postgresql": "postgresql", "mysql": "mysql", "mariadb": "mysql", "sqlite": "sqlite"}


def for_sqlalchemy_dialect(sa_dialect: Any) -> Dialect:
    """The dbguard dialect serving a SQLAlchemy dialect (with its server flavour, once connected)."""
    module_name = _MODULES.get(sa_dialect.name)
    if module_name is None:
        raise ConfigError(f"dbguard does not support the {sa_dialect.name!r} engine (PostgreSQL, MySQL, "
                          "MariaDB and SQLite are supported)")
    module = importlib.import_module(f"dbguard.dialects.{module_name}")
    dialect: Dialect = module.from_sqlalchemy(sa_dialect)
    return dialect


def driver_error(exc: BaseException) -> BaseException:
    """The DBAPI error under a SQLAlchemy wrapper, or the exception itself."""
    return getattr(exc, "orig", None) or exc
