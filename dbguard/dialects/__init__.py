"""Engine SQL, one module per engine, behind one small protocol.

Shared code asks a dialect for SQL text or a capability; it never branches on the engine's name.
Modules are named after SQLAlchemy's ``dialect.name``.
"""

from __future__ import annotations

import importlib
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
