"""PostgreSQL SQL: session timeouts, the advisory run lock, error classes."""

from __future__ import annotations

import hashlib
from typing import Any

from dbguard.dialects import Statement, driver_error

LOCK_NOT_AVAILABLE = "55P03"
INSUFFICIENT_PRIVILEGE = "42501"


def _sqlstate(exc: BaseException) -> str | None:
    orig = driver_error(exc)
    return getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)


def advisory_key(prefix: str) -> int:
    """A stable signed 64-bit key; advisory locks are already scoped to the current database."""
    digest = hashlib.sha256(f"dbguard-run-lock:{prefix}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class PostgresqlDialect:
    name = "postgresql"
    run_lock_kind = "sql"
    concurrent_ledger_writes = True

    def session_timeouts(self, lock_timeout_ms: int, statement_timeout_ms: int) -> list[str]:
        statements = [f"SET lock_timeout = '{int(lock_timeout_ms)}ms'"]
        if statement_timeout_ms > 0:
            statements.append(f"SET statement_timeout = '{int(statement_timeout_ms)}ms'")
        return statements

    def normalize_database(self, name: str) -> str:
        return name

    def session_id(self) -> Statement:
        return Statement("SELECT pg_backend_pid()")

    def current_user(self) -> Statement:
        return Statement("SELECT current_user")

    def current_database(self) -> Statement:
        return Statement("SELECT current_database()")

    def try_run_lock(self, database: str, prefix: str) -> Statement:
        return Statement("SELECT pg_try_advisory_lock(:key)", {"key": advisory_key(prefix)})

    def release_run_lock(self, database: str, prefix: str) -> Statement:
        return Statement("SELECT pg_advisory_unlock(:key)", {"key": advisory_key(prefix)})

    def run_lock_holder(self, database: str, prefix: str) -> Statement:
        # A bigint advisory key shows in pg_locks as classid (high half), objid (low half), objsubid 1.
        key = advisory_key(prefix) & 0xFFFFFFFFFFFFFFFF
        return Statement(
            "SELECT l.pid FROM pg_catalog.pg_locks l "
            "WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 "
            "AND l.database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database()) "
            "AND l.classid::bigint = :hi AND l.objid::bigint = :lo",
            {"hi": key >> 32, "lo": key & 0xFFFFFFFF},
        )

    def is_lock_timeout(self, exc: BaseException) -> bool:
        return _sqlstate(exc) == LOCK_NOT_AVAILABLE

    def is_privilege_error(self, exc: BaseException) -> bool:
        return _sqlstate(exc) == INSUFFICIENT_PRIVILEGE

    def ledger_grant_hint(self, user: str, database: str) -> str:
        return f'GRANT CREATE ON SCHEMA public TO "{user}";'


def from_sqlalchemy(sa_dialect: Any) -> PostgresqlDialect:
    return PostgresqlDialect()
