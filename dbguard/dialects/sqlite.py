"""SQLite: busy timeout, and a run lock that is a file lock beside the database file."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dbguard.dialects import Dialect, FileRunLocks, Statement, driver_error


class SqliteDialect:
    name = "sqlite"
    run_lock_kind = "file"
    # A write from another connection inside a step's transaction fails with "database is locked".
    concurrent_ledger_writes = False
    migration_commit_statements: tuple[str, ...] = ()
    flushed_commit_statements: tuple[str, ...] = ()
    # How dbguard.db.catalog reads the whole schema: pragma table-valued functions over sqlite_master.
    catalog_style = "sqlite_pragma"
    unique_constraints_are_indexes = False
    fk_creates_index = False
    # A scratch database is a temporary file.
    scratch_database_kind = "file"

    def catalog_columns(self) -> Statement:
        return Statement(
            "SELECT m.name AS table_name, m.sql AS table_sql, p.cid AS position, p.name AS column_name, "
            "p.type AS type, p.\"notnull\" AS not_null, p.dflt_value AS default_expr, p.pk AS pk, "
            "p.hidden AS hidden "
            "FROM sqlite_master m JOIN pragma_table_xinfo(m.name) p "
            "WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite\\_%' ESCAPE '\\' "
            "ORDER BY m.name, p.cid"
        )

    def catalog_indexes(self) -> Statement:
        return Statement(
            "SELECT m.name AS table_name, il.name AS name, il.\"unique\" AS is_unique, il.origin AS origin, "
            "il.partial AS partial, ii.seqno AS position, ii.cid AS cid, ii.name AS column_name, "
            "ii.\"desc\" AS descending, s.sql AS index_sql "
            "FROM sqlite_master m JOIN pragma_index_list(m.name) il JOIN pragma_index_xinfo(il.name) ii "
            "LEFT JOIN sqlite_master s ON s.type = 'index' AND s.name = il.name "
            "WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite\\_%' ESCAPE '\\' AND ii.key = 1 "
            "ORDER BY m.name, il.name, ii.seqno"
        )

    def catalog_foreign_keys(self) -> Statement:
        return Statement(
            "SELECT m.name AS table_name, f.id AS id, f.seq AS position, f.\"table\" AS ref_table, "
            "f.\"from\" AS column_name, f.\"to\" AS ref_column, f.on_delete AS on_delete, "
            "f.on_update AS on_update "
            "FROM sqlite_master m JOIN pragma_foreign_key_list(m.name) f "
            "WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite\\_%' ESCAPE '\\' "
            "ORDER BY m.name, f.id, f.seq"
        )

    def catalog_objects(self) -> Statement:
        return Statement("SELECT 'view' AS kind, name AS name, sql AS detail FROM sqlite_master WHERE type = 'view'")

    def catalog(self) -> dict[str, Statement]:
        return {
            "columns": self.catalog_columns(),
            "indexes": self.catalog_indexes(),
            "foreign_keys": self.catalog_foreign_keys(),
            "objects": self.catalog_objects(),
        }

    def catalog_packed(self) -> Statement | None:
        """No packed form: :meth:`catalog` is read as it is."""
        return None

    def keeps_index_order(self, server_version: tuple[Any, ...]) -> bool:
        return True  # since 3.3 (file format 4, the default)

    # No sessions to inspect or end: ``dbguard locks`` is for servers.
    lock_graph = None
    # The risk rules judge server engines; SQLite locks the whole file for every write anyway.
    risk_engine = None
    # A distributed fleet rollout needs a PostgreSQL control database (SKIP LOCKED claims).
    fleet_claims = False
    # plan --observe reads pg_locks and relfilenode (PostgreSQL).
    observes_locks = False

    def effective_lock_timeout_ms(self, lock_timeout_ms: int) -> int:
        return int(lock_timeout_ms)

    def application_connect_args(self, name: str) -> dict[str, str]:
        return {}  # no application name on this engine

    def set_application_name(self, name: str) -> list[str]:
        return []

    def session_timeouts(self, lock_timeout_ms: int, statement_timeout_ms: int) -> list[str]:
        return [f"PRAGMA busy_timeout = {int(lock_timeout_ms)}"]

    def normalize_database(self, name: str) -> str:
        return os.path.realpath(name) if name else name

    def utc_now(self) -> Statement:
        return Statement("SELECT strftime('%Y-%m-%d %H:%M:%f', 'now')")

    def session_id(self) -> Statement:
        return Statement("SELECT NULL")

    def current_user(self) -> Statement:
        return Statement("SELECT NULL")

    def version_table_elsewhere(self, table: str) -> Statement | None:
        # One schema per file (attached files are not the target's).
        return None

    def current_schema(self) -> Statement:
        return Statement("SELECT 'main'")

    def current_database(self) -> Statement:
        # The file of the main database; dbguard keys its run lock file on it.
        return Statement("SELECT file FROM pragma_database_list WHERE name = 'main'")

    def run_lock_path(self, database_file: str, key: str) -> Path:
        return Path(f"{database_file}.{key}lock")

    def try_run_lock(self, database: str, key: str) -> Statement:
        raise NotImplementedError("SQLite's run lock is a file lock")

    release_run_lock = run_lock_holder = try_run_lock

    def is_lock_timeout(self, exc: BaseException) -> bool:
        orig = driver_error(exc)
        return isinstance(orig, sqlite3.OperationalError) and "database is locked" in str(orig)

    def is_privilege_error(self, exc: BaseException) -> bool:
        orig = driver_error(exc)
        return isinstance(orig, sqlite3.OperationalError) and "readonly" in str(orig)

    def is_missing_table(self, exc: BaseException) -> bool:
        orig = driver_error(exc)
        return isinstance(orig, sqlite3.OperationalError) and str(orig).startswith("no such table")

    # No other session is visible: the busy timeout is the only bound on a wait.
    watches_waiters = False

    # The watchdog asks these only with a session id, and SQLite has none (session_id() is NULL); they
    # are here so that this class is a Dialect like the others.
    def waits_for_lock(self, session_id: str) -> Statement:
        raise NotImplementedError("SQLite has no other sessions to watch")

    def waiters_behind(self, session_id: str, tables: tuple[str, ...] = ()) -> Statement:
        raise NotImplementedError("SQLite has no other sessions to watch")

    def cancel_own_statement(self, session_id: str) -> Statement:
        raise NotImplementedError("SQLite has no other sessions to watch")

    def is_cancelled(self, exc: BaseException) -> bool:
        return False

    def ledger_grant_hint(self, user: str, database: str) -> str:
        return f"make {database} and its folder writable by this user"

    def dead_client_checks(self, interval_ms: int) -> list[str]:
        return []  # an in-process engine: its client cannot die apart from it

    # No server sessions, privileges or metadata locks: the file and its lock file are all there is.
    sqlglot_dialect = None

    def session_identity(self, session_id: str) -> Statement | None:
        return None

    def session_idle_seconds(self, session_id: str) -> Statement | None:
        return None

    def ledger_privileges(self, tables: Sequence[str]) -> Statement | None:
        return None

    def missing_ledger_privileges(self, rows: Sequence[Any], user: str, database: str,
                                  complete: bool) -> tuple[list[str], str]:
        return [], ""

    def ledger_long_text_type(self) -> Any:
        return None

    def ledger_timestamp_type(self) -> Any:
        return None


def from_sqlalchemy(sa_dialect: Any) -> SqliteDialect:
    return SqliteDialect()


if TYPE_CHECKING:  # mypy checks that the class is a whole Dialect, and each capability it claims
    _A_WHOLE_DIALECT: Dialect = SqliteDialect()
    _ITS_RUN_LOCK_FILES: FileRunLocks = SqliteDialect()
