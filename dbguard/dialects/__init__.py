"""Engine SQL, one module per engine, behind one small protocol.

Shared code asks a dialect for SQL text or a capability; it never branches on the engine's name.
Modules are named after SQLAlchemy's ``dialect.name``.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Any, NamedTuple, Protocol

from dbguard.errors import ConfigError


class Statement(NamedTuple):
    """SQL text and its bound parameters."""

    sql: str
    params: dict[str, Any] = {}  # noqa: RUF012 - never mutated; read-only default


class Dialect(Protocol):
    name: str
    # "sql": the run lock is a server-side session lock; "file": a lock file beside the database.
    run_lock_kind: str
    # Whether dbguard may write its ledger from another connection while a migration step runs.
    concurrent_ledger_writes: bool

    def session_timeouts(self, lock_timeout_ms: int, statement_timeout_ms: int) -> list[str]: ...

    def effective_lock_timeout_ms(self, lock_timeout_ms: int) -> int: ...

    def normalize_database(self, name: str) -> str: ...

    def session_id(self) -> Statement: ...

    def current_user(self) -> Statement: ...

    def current_database(self) -> Statement: ...

    def try_run_lock(self, database: str, key: str) -> Statement: ...

    def release_run_lock(self, database: str, key: str) -> Statement: ...

    def run_lock_holder(self, database: str, key: str) -> Statement: ...

    def is_lock_timeout(self, exc: BaseException) -> bool: ...

    def is_privilege_error(self, exc: BaseException) -> bool: ...

    def ledger_grant_hint(self, user: str, database: str) -> str: ...

    def utc_now(self) -> Statement: ...

    def is_cancelled(self, exc: BaseException) -> bool: ...

    # The risk rules' engine family; None where no rules apply (SQLite). Read-only, so a dialect whose
    # attribute is a plain str satisfies it.
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
    # "blocking_pids" (PostgreSQL), "metadata_locks" (MySQL/MariaDB), None: no sessions to inspect.
    @property
    def lock_graph(self) -> str | None: ...

    # sqlglot's name of the engine, to read table names out of a session's query.
    @property
    def sqlglot_dialect(self) -> str | None: ...

    # Where metadata locks can be read, best first (MySQL/MariaDB); empty elsewhere.
    def mdl_sources(self) -> tuple[str, ...]: ...

    def is_session_gone(self, exc: BaseException) -> bool: ...

    def is_kill_denied(self, exc: BaseException) -> bool: ...

    # --- risk facts ----------------------------------------------------------------------------
    # Statements run before reading table facts (MySQL: fresh statistics).
    def table_facts_prelude(self) -> list[str]: ...

    # --- fleets --------------------------------------------------------------------------------
    # Whether this engine can be a distributed rollout's control database (SKIP LOCKED claims).
    @property
    def fleet_claims(self) -> bool: ...


_MODULES = {"postgresql": "postgresql", "mysql": "mysql", "mariadb": "mysql", "sqlite": "sqlite"}


def for_sqlalchemy_dialect(sa_dialect: Any) -> Dialect:
    """The dbguard dialect serving a SQLAlchemy dialect (with its server flavour, once connected)."""
    module_name = _MODULES.get(sa_dialect.name)
    if module_name is None:
        raise ConfigError(f"dbguard does not support the {sa_dialect.name!r} engine (PostgreSQL, MySQL, "
                          "MariaDB and SQLite are supported)")
    module = importlib.import_module(f"dbguard.dialects.{module_name}")
    return module.from_sqlalchemy(sa_dialect)


def driver_error(exc: BaseException) -> BaseException:
    """The DBAPI error under a SQLAlchemy wrapper, or the exception itself."""
    return getattr(exc, "orig", None) or exc
