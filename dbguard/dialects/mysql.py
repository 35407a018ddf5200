"""MySQL 8 and MariaDB SQL: session timeouts, the GET_LOCK run lock, error classes.

Serves SQLAlchemy's ``mysql`` and ``mariadb`` dialect names; the two servers differ in a few
variables, chosen by the ``mariadb`` flag.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any

from dbguard.dialects import Statement, driver_error

LOCK_WAIT_TIMEOUT = 1205
LOCK_NOWAIT = 3572
PRIVILEGE_ERRORS = frozenset({1044, 1142, 1227, 1370})
MAX_LOCK_NAME = 64


def _errno(exc: BaseException) -> int | None:
    orig = driver_error(exc)
    args = getattr(orig, "args", ())
    return args[0] if args and isinstance(args[0], int) else None


def whole_seconds(ms: int) -> int:
    """lock_wait_timeout takes whole seconds and 0 means no wait at all: round up, at least 1."""
    return max(1, math.ceil(ms / 1000))


def run_lock_name(database: str, prefix: str) -> str:
    """GET_LOCK names are server-wide, so the database is part of the key; names stop at 64 chars."""
    name = f"{database}.{prefix}run"
    if len(name) <= MAX_LOCK_NAME:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:16]
    return f"{name[: MAX_LOCK_NAME - 17]}~{digest}"


class MysqlDialect:
    run_lock_kind = "sql"
    concurrent_ledger_writes = True

    def __init__(self, mariadb: bool) -> None:
        self.mariadb = mariadb
        self.name = "mariadb" if mariadb else "mysql"

    def session_timeouts(self, lock_timeout_ms: int, statement_timeout_ms: int) -> list[str]:
        seconds = whole_seconds(lock_timeout_ms)
        statements = [
            f"SET SESSION lock_wait_timeout = {seconds}",
            f"SET SESSION innodb_lock_wait_timeout = {seconds}",
        ]
        if statement_timeout_ms > 0:
            if self.mariadb:
                # MariaDB's max_statement_time covers every statement, DDL included.
                statements.append(f"SET SESSION max_statement_time = {statement_timeout_ms / 1000:.3f}")
            else:
                # MySQL's max_execution_time bounds read-only SELECTs only (documented); DDL is unbounded.
                statements.append(f"SET SESSION max_execution_time = {int(statement_timeout_ms)}")
        return statements

    def normalize_database(self, name: str) -> str:
        return name

    def session_id(self) -> Statement:
        return Statement("SELECT CONNECTION_ID()")

    def current_user(self) -> Statement:
        return Statement("SELECT CURRENT_USER()")

    def current_database(self) -> Statement:
        return Statement("SELECT DATABASE()")

    def try_run_lock(self, database: str, prefix: str) -> Statement:
        return Statement("SELECT GET_LOCK(:name, 0)", {"name": run_lock_name(database, prefix)})

    def release_run_lock(self, database: str, prefix: str) -> Statement:
        return Statement("SELECT RELEASE_LOCK(:name)", {"name": run_lock_name(database, prefix)})

    def run_lock_holder(self, database: str, prefix: str) -> Statement:
        return Statement("SELECT IS_USED_LOCK(:name)", {"name": run_lock_name(database, prefix)})

    def is_lock_timeout(self, exc: BaseException) -> bool:
        return _errno(exc) in (LOCK_WAIT_TIMEOUT, LOCK_NOWAIT)

    def is_privilege_error(self, exc: BaseException) -> bool:
        return _errno(exc) in PRIVILEGE_ERRORS

    def ledger_grant_hint(self, user: str, database: str) -> str:
        return f"GRANT CREATE, SELECT, INSERT, UPDATE ON `{database}`.* TO {user};"


def from_sqlalchemy(sa_dialect: Any) -> MysqlDialect:
    return MysqlDialect(mariadb=bool(getattr(sa_dialect, "is_mariadb", False)) or sa_dialect.name == "mariadb")
