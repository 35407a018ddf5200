"""SQLite: busy timeout, and a run lock that is a file lock beside the database file."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any

from dbguard.dialects import Statement, driver_error


class SqliteDialect:
    name = "sqlite"
    run_lock_kind = "file"
    # A write from another connection inside a step's transaction fails with "database is locked".
    concurrent_ledger_writes = False

    def session_timeouts(self, lock_timeout_ms: int, statement_timeout_ms: int) -> list[str]:
        return [f"PRAGMA busy_timeout = {int(lock_timeout_ms)}"]

    def normalize_database(self, name: str) -> str:
        return os.path.realpath(name) if name else name

    def session_id(self) -> Statement:
        return Statement("SELECT NULL")

    def current_user(self) -> Statement:
        return Statement("SELECT NULL")

    def current_database(self) -> Statement:
        # The file of the main database; dbguard keys its run lock file on it.
        return Statement("SELECT file FROM pragma_database_list WHERE name = 'main'")

    def run_lock_path(self, database_file: str, prefix: str) -> Path:
        return Path(f"{database_file}.{prefix}lock")

    def try_run_lock(self, database: str, prefix: str) -> Statement:
        raise NotImplementedError("SQLite's run lock is a file lock")

    release_run_lock = run_lock_holder = try_run_lock

    def is_lock_timeout(self, exc: BaseException) -> bool:
        orig = driver_error(exc)
        return isinstance(orig, sqlite3.OperationalError) and "database is locked" in str(orig)

    def is_privilege_error(self, exc: BaseException) -> bool:
        orig = driver_error(exc)
        return isinstance(orig, sqlite3.OperationalError) and "readonly" in str(orig)

    def ledger_grant_hint(self, user: str, database: str) -> str:
        return f"make {database} and its folder writable by this user"


def from_sqlalchemy(sa_dialect: Any) -> SqliteDialect:
    return SqliteDialect()
