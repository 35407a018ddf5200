"""MySQL 8 and MariaDB SQL: session timeouts, the GET_LOCK run lock, error classes.

Serves SQLAlchemy's ``mysql`` and ``mariadb`` dialect names; the two servers differ in a few
variables, chosen by the ``mariadb`` flag.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from dbguard.dialects import (
    AlterProbes,
    Dialect,
    InformationSchemaCatalog,
    MetadataLockGraph,
    RiskFacts,
    ScratchServer,
    SessionControl,
    Statement,
    bound_list,
    driver_error,
)

LOCK_WAIT_TIMEOUT = 1205
NO_SUCH_TABLE = 1146  # ER_NO_SUCH_TABLE
LOCK_NOWAIT = 3572
PRIVILEGE_ERRORS = frozenset({1044, 1142, 1227, 1370})
MAX_LOCK_NAME = 64
KILL_DENIED = 1095
# Server-wide locks that stop others: MariaDB's backup locks of FLUSH TABLES WITH READ LOCK
# (MDL_BACKUP_FTWRL1/2) and of BACKUP STAGE (the stage modes), not those every statement takes in
# passing (MDL_BACKUP_DML, ..._DDL ...); MySQL 8's global read lock and LOCK INSTANCE FOR BACKUP.
_MARIADB_SERVER_LOCK = (
    "LOCK_TYPE = 'Backup lock' AND LOCK_MODE IN ('MDL_BACKUP_FTWRL1', 'MDL_BACKUP_FTWRL2', 'MDL_BACKUP_START', "
    "'MDL_BACKUP_FLUSH', 'MDL_BACKUP_WAIT_FLUSH', 'MDL_BACKUP_WAIT_DDL', 'MDL_BACKUP_WAIT_COMMIT', "
    "'MDL_BACKUP_BLOCK_DDL')"
)
_MYSQL_SERVER_LOCK = ("((ml.OBJECT_TYPE = 'GLOBAL' AND ml.LOCK_TYPE = 'SHARED') "
                      "OR (ml.OBJECT_TYPE = 'BACKUP LOCK' AND ml.LOCK_TYPE = 'SHARED'))")
# --read-only (ER_OPTION_PREVENTS_STATEMENT), a read-only transaction, read-only mode.
READ_ONLY_ERRORS = frozenset({1290, 1792, 1836})
NO_SUCH_THREAD = 1094
# Who a thread is, compared again right before KILL: ids are only reused after wrapping, but a
# thread that finished its transaction and started another is not the blocker we listed.
_IDENTITY = "CONCAT_WS('|', p.USER, p.HOST, COALESCE(CAST(t.trx_started AS CHAR), ''))"
# The same thread as an identity read earlier: same user and host, and the same transaction where one
# was seen then. INNODB_TRX is a cache refreshed at most every 0.1 s, so a transaction it did not show
# yet may show now; that is still the thread that was judged (MariaDB never reuses a thread id).
_SAME_THREAD = ("CONCAT_WS('|', p.USER, p.HOST) = :who "
                "AND (:trx = '' OR COALESCE(CAST(t.trx_started AS CHAR), '') = :trx)")


def _identity_params(identity: str) -> dict[str, str]:
    who, _, trx = identity.rpartition("|")
    return {"who": who, "trx": trx}


def _errno(exc: BaseException) -> int | None:
    orig = driver_error(exc)
    args = getattr(orig, "args", ())
    return args[0] if args and isinstance(args[0], int) else None


def account(user: str) -> str:
    """``CURRENT_USER()``'s ``name@host`` as a GRANT wants it: ``'name'@'host'``."""
    if "@" not in user or user.startswith("'"):
        return user
    name, host = user.rsplit("@", 1)
    return f"'{name}'@'{host}'"


def whole_seconds(ms: int) -> int:
    """lock_wait_timeout takes whole seconds and 0 means no wait at all: round up, at least 1."""
    return max(1, math.ceil(ms / 1000))


def run_lock_name(database: str, key: str) -> str:
    """GET_LOCK names are server-wide, so the database is part of the key; names stop at 64 chars."""
    name = f"{database}.{key}run"
    if len(name) <= MAX_LOCK_NAME:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:16]
    return f"{name[: MAX_LOCK_NAME - 17]}~{digest}"


# What dbguard's ledger needs on the database: its tables are created, indexed and, by a newer
# dbguard, given columns (ALTER); runs are written and updated.
LEDGER_PRIVILEGES = ("CREATE", "ALTER", "INDEX", "SELECT", "INSERT", "UPDATE")

# The grantees the current account acts as: itself ('name'@'host') and its enabled roles (a role's
# grantee is 'role' on MariaDB, 'role'@'%' on MySQL). No % in the text: PyMySQL formats statements.
_GRANTEES = (
    "(SELECT CONCAT(CHAR(39), SUBSTRING_INDEX(CURRENT_USER(), '@', 1), CHAR(39), '@', CHAR(39), "
    "SUBSTRING_INDEX(CURRENT_USER(), '@', -1), CHAR(39)) "
    "UNION ALL SELECT CONCAT(CHAR(39), ROLE_NAME, CHAR(39)) FROM information_schema.ENABLED_ROLES "
    "UNION ALL SELECT CONCAT(CHAR(39), ROLE_NAME, CHAR(39), '@', CHAR(39), CHAR(37), CHAR(39)) "
    "FROM information_schema.ENABLED_ROLES)"
)
# Privileges that cover the current database: granted globally, or on a schema pattern it matches.
_LEDGER_PRIVILEGES = (
    f"SELECT PRIVILEGE_TYPE FROM information_schema.USER_PRIVILEGES WHERE GRANTEE IN {_GRANTEES} "
    "UNION "
    f"SELECT PRIVILEGE_TYPE FROM information_schema.SCHEMA_PRIVILEGES WHERE GRANTEE IN {_GRANTEES} "
    "AND DATABASE() LIKE TABLE_SCHEMA"
)


def missing_ledger_privileges(rows: Sequence[Any], user: str, database: str) -> tuple[list[str], str]:
    """What the account lacks of LEDGER_PRIVILEGES, and the GRANT that gives it (``TO 'name'@'host'``)."""
    held = {str(row[0]).upper() for row in rows}
    missing = [p for p in LEDGER_PRIVILEGES if p not in held]
    if not missing:
        return [], ""
    quoted = database.replace("`", "``")
    return [f"{', '.join(missing)} on {database}"], f"GRANT {', '.join(missing)} ON `{quoted}`.* TO {account(user)};"


def split_qualified_name(text: str) -> list[str]:
    """``a.b``, `` `a.b`.`c` ``, ``"a"."b"``: the dot-separated parts, quotes removed (a doubled quote
    inside a quoted part stands for itself)."""
    parts: list[str] = []
    current, quote, i = "", "", 0
    text = text.strip()
    while i < len(text):
        ch = text[i]
        if quote:
            if ch == quote and text[i + 1:i + 2] == quote:
                current, i = current + ch, i + 2
                continue
            if ch == quote:
                quote = ""
            else:
                current += ch
        elif ch in "`\"":
            quote = ch
        elif ch == ".":
            parts.append(current)
            current = ""
        else:
            current += ch
        i += 1
    parts.append(current)
    return parts


_PARTITION_NOTE = re.compile(r"\s*/\*.*\*/\s*$", re.DOTALL)


def lock_table_name(text: str) -> tuple[str, str] | None:
    """`` `db`.`t` `` (InnoDB's name of a locked table, and MariaDB's `` /* Partition `p0` */`` after a
    partition's) as (db, t); None for anything else."""
    parts = split_qualified_name(_PARTITION_NOTE.sub("", text))
    return (parts[0], parts[1]) if len(parts) == 2 and all(parts) else None


def scratch_lock_name(name: str) -> str:
    """The GET_LOCK name of a scratch database's owner lock; scratch names are short enough."""
    return f"dbguard-scratch:{name}"[:MAX_LOCK_NAME]


# ALTER TABLE's refusal of the algorithm or lock asked for (ER_ALTER_OPERATION_NOT_SUPPORTED and
# ..._REASON): the change itself is fine, just not that way. Any other error is the statement's own.
ALGORITHM_REFUSED = frozenset({1845, 1846})


def quote_identifier(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


class MysqlDialect:
    run_lock_kind = "sql"
    # INNODB_TRX is a cache the server refreshes only when it was not read for 100 ms: polled every
    # 10 ms, a committed or cancelled transaction stays listed for ever (seen on MariaDB 10.11).
    session_poll_s = 0.15
    concurrent_ledger_writes = True
    # innodb_flush_log_at_trx_commit is global only: every journal write waits for its flush.
    migration_commit_statements: tuple[str, ...] = ()
    flushed_commit_statements: tuple[str, ...] = ()
    # How dbguard.db.catalog reads the whole schema: information_schema, in a few set-based queries.
    catalog_style = "information_schema"
    # Every UNIQUE constraint is a unique index here; models' UniqueConstraints compare as indexes.
    unique_constraints_are_indexes = True
    # InnoDB creates an index named after a foreign key when no index starts with its columns.
    fk_creates_index = True
    scratch_database_kind = "server"

    @property
    def column_default_quoted(self) -> bool:
        """MariaDB (10.2.7+) quotes literal defaults in COLUMN_DEFAULT and writes NULL as 'NULL';
        MySQL 8 shows literals bare and marks expressions with DEFAULT_GENERATED in EXTRA."""
        return self.mariadb

    @property
    def json_is_checked_longtext(self) -> bool:
        """MariaDB's JSON is LONGTEXT plus a column CHECK (json_valid(col)); MySQL 8 has a JSON type."""
        return self.mariadb

    # Each information_schema view is read on its own, filtered by TABLE_SCHEMA, and dbguard.db.catalog
    # joins them: a join between two of them makes MariaDB fill the inner one for every outer row.
    # Rows come in key order (ORDER BY), so positions are not fetched: PyMySQL decodes every field
    # in Python, and that decoding is most of the read's time.

    def catalog_tables(self) -> Statement:
        """Tables and (MariaDB 10.3+) sequences, told apart by ``kind``."""
        return Statement(
            "SELECT TABLE_NAME AS table_name, TABLE_TYPE AS kind, TABLE_COMMENT AS table_comment, "
            "TABLE_COLLATION AS table_collation FROM information_schema.TABLES "
            "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_TYPE IN ('BASE TABLE', 'SYSTEM VERSIONED', 'SEQUENCE')"
        )

    def catalog_columns(self) -> Statement:
        """Columns of tables and views (the reader keeps the tables')."""
        return Statement(
            "SELECT TABLE_NAME AS table_name, COLUMN_NAME AS column_name, COLUMN_TYPE AS type, "
            "IS_NULLABLE AS is_nullable, COLUMN_DEFAULT AS default_expr, EXTRA AS extra, "
            "COLLATION_NAME AS collation, COLUMN_COMMENT AS comment, GENERATION_EXPRESSION AS generated "
            "FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() "
            "ORDER BY TABLE_NAME, ORDINAL_POSITION"
        )

    def catalog_indexes(self) -> Statement:
        """Index key parts. MySQL 8.0.13+ has functional key parts (EXPRESSION); MariaDB has none.
        COLLATION is the key's order: 'D' descending (MySQL 8, MariaDB 10.8+), 'A' ascending."""
        expression = "NULL" if self.mariadb else "EXPRESSION"
        return Statement(
            "SELECT TABLE_NAME AS table_name, INDEX_NAME AS name, NON_UNIQUE AS non_unique, "
            "COLUMN_NAME AS column_name, SUB_PART AS sub_part, "
            f"INDEX_TYPE AS method, {expression} AS expression, COLLATION AS key_order "
            "FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = DATABASE() "
            "ORDER BY TABLE_NAME, INDEX_NAME, SEQ_IN_INDEX"
        )

    def catalog_foreign_keys(self) -> Statement:
        return Statement(
            "SELECT TABLE_NAME AS table_name, CONSTRAINT_NAME AS name, COLUMN_NAME AS column_name, "
            "REFERENCED_TABLE_NAME AS ref_table, REFERENCED_COLUMN_NAME AS ref_column "
            "FROM information_schema.KEY_COLUMN_USAGE "
            "WHERE TABLE_SCHEMA = DATABASE() AND REFERENCED_TABLE_NAME IS NOT NULL "
            "ORDER BY TABLE_NAME, CONSTRAINT_NAME, ORDINAL_POSITION"
        )

    def catalog_fk_rules(self) -> Statement:
        return Statement(
            "SELECT TABLE_NAME AS table_name, CONSTRAINT_NAME AS name, DELETE_RULE AS on_delete, "
            "UPDATE_RULE AS on_update FROM information_schema.REFERENTIAL_CONSTRAINTS "
            "WHERE CONSTRAINT_SCHEMA = DATABASE()"
        )

    def catalog_checks(self) -> Statement:
        if self.mariadb:
            # MariaDB 10.2+: TABLE_NAME and LEVEL ('Column' for a column's own CHECK) are in the view.
            return Statement(
                "SELECT TABLE_NAME AS table_name, CONSTRAINT_NAME AS name, CHECK_CLAUSE AS expression, "
                "LEVEL AS level FROM information_schema.CHECK_CONSTRAINTS WHERE CONSTRAINT_SCHEMA = DATABASE()"
            )
        # MySQL 8.0.16+: CHECK_CONSTRAINTS has no table; TABLE_CONSTRAINTS names it.
        return Statement(
            "SELECT tc.TABLE_NAME AS table_name, cc.CONSTRAINT_NAME AS name, cc.CHECK_CLAUSE AS expression, "
            "'Table' AS level FROM information_schema.TABLE_CONSTRAINTS tc "
            "JOIN information_schema.CHECK_CONSTRAINTS cc ON cc.CONSTRAINT_SCHEMA = tc.CONSTRAINT_SCHEMA "
            "AND cc.CONSTRAINT_NAME = tc.CONSTRAINT_NAME "
            "WHERE tc.TABLE_SCHEMA = DATABASE() AND tc.CONSTRAINT_TYPE = 'CHECK'"
        )

    def catalog_objects(self) -> Statement:
        """Views (sequences come with the tables: one scan of information_schema.TABLES less)."""
        return Statement("SELECT 'view' AS kind, TABLE_NAME AS name, VIEW_DEFINITION AS detail, TABLE_SCHEMA AS db "
                         "FROM information_schema.VIEWS WHERE TABLE_SCHEMA = DATABASE()")

    def catalog(self) -> dict[str, Statement]:
        return {
            "tables": self.catalog_tables(),
            "columns": self.catalog_columns(),
            "indexes": self.catalog_indexes(),
            "foreign_keys": self.catalog_foreign_keys(),
            "fk_rules": self.catalog_fk_rules(),
            "checks": self.catalog_checks(),
            "objects": self.catalog_objects(),
        }

    def catalog_packed(self) -> Statement | None:
        """MariaDB: the whole catalog in one statement of one row per part (the keys of
        :meth:`catalog`): its row count, and its rows' fields joined by the ASCII record (0x1e) and
        unit (0x1f) separators, in :meth:`catalog` order. PyMySQL decodes every field in Python,
        and that was most of the read's time; one string per part is split in C instead, and one
        round trip replaces seven. dbguard.db.catalog reads a part plain when its counts do not
        match (a value that held a separator, a GROUP_CONCAT cut short by max_allowed_packet).
        None on MySQL 8, which has no SET STATEMENT: it reads :meth:`catalog` as it is."""
        if not self.mariadb:
            return None
        parts = []
        for part, (source, order, fields) in _PACKED_PARTS.items():
            values = ", ".join(_packed_value(expr, how) for _, expr, how in fields)
            parts.append(f"SELECT '{part}' AS part, COUNT(*) AS n, GROUP_CONCAT(CONCAT_WS(CHAR(30), {values}) "
                         f"ORDER BY {order} SEPARATOR 0x1f) AS packed FROM {source}")
        # SET STATEMENT: the limit for this statement only, the session's setting is left alone.
        return Statement("SET STATEMENT group_concat_max_len = 4294967295 FOR " + " UNION ALL ".join(parts))

    def keeps_index_order(self, server_version: tuple[Any, ...]) -> bool:
        """MariaDB before 10.8 and MySQL before 8.0 parse DESC in an index and build it ascending."""
        numbers = tuple(v for v in server_version if isinstance(v, int))[:2]
        return not numbers or numbers >= ((10, 8) if self.mariadb else (8, 0))

    @staticmethod
    def catalog_packed_fields(part: str) -> tuple[tuple[str, str], ...]:
        """A packed part's fields: each one's label in :meth:`catalog`'s rows, and how it was
        written ("" as it is, "n" NULL as '' and any value prefixed with '=', "e" NULL as '')."""
        return tuple((label, how) for label, _, how in _PACKED_PARTS[part][2])

    def create_scratch_database(self, name: str) -> Statement:
        return Statement(f"CREATE DATABASE `{name}`")

    def drop_scratch_database(self, name: str, force: bool = True) -> Statement:
        # Sessions in it are ended beforehand (see scratch_sessions), or not: the statement is one.
        return Statement(f"DROP DATABASE IF EXISTS `{name}`")

    def scratch_sessions(self, name: str) -> Statement | None:
        """Sessions still using a scratch database: DROP DATABASE would wait on their metadata locks."""
        return Statement(
            "SELECT ID FROM information_schema.PROCESSLIST WHERE DB = :name AND ID <> CONNECTION_ID()",
            {"name": name},
        )

    def scratch_users(self, name: str) -> Statement:
        """How many sessions use scratch database ``name`` as their default database."""
        return Statement("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE DB = :name", {"name": name})

    def list_scratch_databases(self, prefix: str) -> Statement:
        return Statement("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE :pattern",
                         {"pattern": prefix.replace("_", "\\_") + "%"})

    def hold_scratch(self, name: str) -> Statement:
        """A session lock that says a live dbguard owns scratch database ``name``: the server frees
        it when that session ends, however its process died. GET_LOCK names are server-wide."""
        return Statement("SELECT GET_LOCK(:name, 0)", {"name": scratch_lock_name(name)})

    def release_scratch(self, name: str) -> Statement:
        return Statement("SELECT RELEASE_LOCK(:name)", {"name": scratch_lock_name(name)})

    def scratch_held(self, name: str) -> Statement:
        return Statement("SELECT IS_USED_LOCK(:name) IS NOT NULL", {"name": scratch_lock_name(name)})

    def __init__(self, mariadb: bool) -> None:
        self.mariadb = mariadb
        self.name = "mariadb" if mariadb else "mysql"

    def ledger_long_text_type(self) -> Any:
        from sqlalchemy.dialects.mysql import LONGTEXT

        return LONGTEXT()

    def ledger_timestamp_type(self) -> Any:
        """DATETIME keeps whole seconds unless given a fractional precision."""
        from sqlalchemy.dialects.mysql import DATETIME

        return DATETIME(fsp=6)

    def effective_lock_timeout_ms(self, lock_timeout_ms: int) -> int:
        """What the server will wait: whole seconds, at least one."""
        return whole_seconds(lock_timeout_ms) * 1000

    def application_connect_args(self, name: str) -> dict[str, str]:
        return {}  # no application name on this engine

    def set_application_name(self, name: str) -> list[str]:
        return []

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

    def utc_now(self) -> Statement:
        """The server's clock, so hosts with skewed clocks agree on how old a heartbeat is."""
        return Statement("SELECT UTC_TIMESTAMP(6)")

    def session_id(self) -> Statement:
        return Statement("SELECT CONNECTION_ID()")

    def current_user(self) -> Statement:
        return Statement("SELECT CURRENT_USER()")

    def version_table_elsewhere(self, table: str) -> Statement | None:
        # A MySQL schema is another database: most often another application's, no hint.
        return None

    def current_schema(self) -> Statement:
        # A MySQL schema is a database.
        return Statement("SELECT DATABASE()")

    def current_database(self) -> Statement:
        return Statement("SELECT DATABASE()")

    def try_run_lock(self, database: str, key: str) -> Statement:
        return Statement("SELECT GET_LOCK(:name, 0)", {"name": run_lock_name(database, key)})

    def release_run_lock(self, database: str, key: str) -> Statement:
        return Statement("SELECT RELEASE_LOCK(:name)", {"name": run_lock_name(database, key)})

    def run_lock_holder(self, database: str, key: str) -> Statement:
        return Statement("SELECT IS_USED_LOCK(:name)", {"name": run_lock_name(database, key)})

    def is_lock_timeout(self, exc: BaseException) -> bool:
        return _errno(exc) in (LOCK_WAIT_TIMEOUT, LOCK_NOWAIT)

    def is_privilege_error(self, exc: BaseException) -> bool:
        return _errno(exc) in PRIVILEGE_ERRORS

    def is_missing_table(self, exc: BaseException) -> bool:
        return _errno(exc) == NO_SUCH_TABLE

    def table_visible_probe(self, table: str) -> Statement:
        return Statement(f"SELECT 1 FROM {quote_identifier(table)} LIMIT 0")

    def ledger_grant_hint(self, user: str, database: str) -> str:
        return f"GRANT {', '.join(LEDGER_PRIVILEGES)} ON `{database}`.* TO {account(user)};"

    def ledger_privileges(self, tables: Sequence[str]) -> Statement:
        """The privileges this account holds on the current database, globally or on the database
        (through its enabled roles too); table-level grants are not counted."""
        return Statement(_LEDGER_PRIVILEGES)

    def missing_ledger_privileges(self, rows: Sequence[Any], user: str, database: str,
                                  complete: bool) -> tuple[list[str], str]:
        return missing_ledger_privileges(rows, user, database)

    # --- lock inspection and ending sessions (``dbguard locks``) ---------------------------------
    # The wait-for graph comes from table metadata locks, judged by the lock's schema.
    lock_graph = "metadata_locks"
    max_session_id = 2**64 - 1  # CONNECTION_ID() is a BIGINT UNSIGNED
    session_applications = False  # PROCESSLIST has no application name
    idle_query_shown = False  # PROCESSLIST.INFO is NULL while a session sleeps, in a transaction or not

    def resolve_table(self, name: str, database: str) -> Statement:
        """``table``, ``schema.table``, either part quoted with backticks (a quoted name may hold dots);
        a bare name is in ``database``."""
        parts = split_qualified_name(name)
        schema, table = (parts[0], parts[1]) if len(parts) == 2 else (database, parts[0] if parts else "")
        if len(parts) > 2:
            table = ""  # names nothing
        return Statement("SELECT TABLE_SCHEMA, TABLE_NAME FROM information_schema.TABLES "
                         "WHERE TABLE_SCHEMA = :schema AND TABLE_NAME = :table", {"schema": schema, "table": table})

    def session_user_name(self, current_user: str) -> str:
        """PROCESSLIST.USER is the bare name; CURRENT_USER() is 'name@host'. A KILL of a thread whose
        user has the same name needs no privilege, whatever the host: the server compares names."""
        name, at, _host = current_user.rpartition("@")
        return name if at else current_user
    sqlglot_dialect = "mysql"

    def mdl_sources(self) -> tuple[str, ...]:
        """Where metadata locks can be read, best first; "heuristic" (INNODB_TRX + PROCESSLIST) is last."""
        if self.mariadb:
            return ("metadata_lock_info", "heuristic")
        return ("performance_schema", "heuristic")

    def mdl_source_ready(self, source: str) -> Statement:
        """One row, one column: non-zero when ``source`` can show metadata locks now."""
        if source == "metadata_lock_info":
            return Statement(
                "SELECT COUNT(*) FROM information_schema.PLUGINS "
                "WHERE PLUGIN_NAME = 'METADATA_LOCK_INFO' AND PLUGIN_STATUS = 'ACTIVE'"
            )
        if source == "performance_schema":
            # performance_schema off, or the mdl instrument off: metadata_locks is empty with no error.
            return Statement(
                "SELECT COUNT(*) FROM performance_schema.setup_instruments "
                "WHERE NAME = 'wait/lock/metadata/sql/mdl' AND ENABLED = 'YES' AND @@performance_schema = 1"
            )
        return Statement("SELECT 1")

    def mdl_source_fix(self, source: str) -> str:
        """What the DBA can do to make ``source`` available."""
        if source == "metadata_lock_info":
            return "install the metadata_lock_info plugin: dbguard locks --install-plugin (INSTALL SONAME " \
                   "'metadata_lock_info')"
        return "enable performance_schema (restart) and UPDATE performance_schema.setup_instruments SET " \
               "ENABLED = 'YES' WHERE NAME = 'wait/lock/metadata/sql/mdl'"

    def install_mdl_plugin(self) -> Statement | None:
        """The statement that makes the first source available, when dbguard may run it on request."""
        return Statement("INSTALL SONAME 'metadata_lock_info'") if self.mariadb else None

    def mdl_pending_visible(self, source: str) -> bool:
        """performance_schema shows pending requests; metadata_lock_info shows granted locks only."""
        return source == "performance_schema"

    def mdl_rows(self, source: str, database: str) -> Statement:
        """Table metadata locks of ``database`` judged by the lock's own schema: (session, schema, table,
        mode, granted)."""
        if source == "metadata_lock_info":
            return Statement(
                "SELECT THREAD_ID, TABLE_SCHEMA, TABLE_NAME, LOCK_MODE, 1 "
                "FROM information_schema.METADATA_LOCK_INFO "
                "WHERE LOCK_TYPE = 'Table metadata lock' AND TABLE_SCHEMA = :db",
                {"db": database},
            )
        if source == "performance_schema":
            return Statement(
                "SELECT t.PROCESSLIST_ID, ml.OBJECT_SCHEMA, ml.OBJECT_NAME, ml.LOCK_TYPE, "
                "ml.LOCK_STATUS = 'GRANTED' "
                "FROM performance_schema.metadata_locks ml "
                "JOIN performance_schema.threads t ON t.THREAD_ID = ml.OWNER_THREAD_ID "
                "WHERE ml.OBJECT_TYPE = 'TABLE' AND ml.OBJECT_SCHEMA = :db "
                "AND ml.LOCK_STATUS IN ('GRANTED', 'PENDING') AND t.PROCESSLIST_ID IS NOT NULL",
                {"db": database},
            )
        raise ValueError(f"no metadata lock rows from {source}")

    def server_lock_holders(self, source: str) -> Statement:
        """Sessions holding a server-wide lock that stops others: MariaDB's backup locks taken by FLUSH
        TABLES WITH READ LOCK (MDL_BACKUP_FTWRL1/2) and BACKUP STAGE (the other stage modes), not the
        backup locks every statement takes in passing (MDL_BACKUP_DML, ..._DDL ...); MySQL 8's global
        read lock and LOCK INSTANCE FOR BACKUP."""
        if source == "metadata_lock_info":
            return Statement(
                f"SELECT THREAD_ID, LOCK_MODE FROM information_schema.METADATA_LOCK_INFO WHERE {_MARIADB_SERVER_LOCK}"
            )
        if source == "performance_schema":
            return Statement(
                "SELECT t.PROCESSLIST_ID, CONCAT(ml.OBJECT_TYPE, ' ', ml.LOCK_TYPE) "
                "FROM performance_schema.metadata_locks ml "
                "JOIN performance_schema.threads t ON t.THREAD_ID = ml.OWNER_THREAD_ID "
                f"WHERE ml.LOCK_STATUS = 'GRANTED' AND t.PROCESSLIST_ID IS NOT NULL AND {_MYSQL_SERVER_LOCK}"
            )
        raise ValueError(f"no server lock rows from {source}")

    def row_lock_waits(self) -> Statement:
        """InnoDB row lock waits, read from the engine (never guessed): (waiting session, blocking
        session, the lock's table as `` `db`.`t` ``, index, row, requested mode, lock type, the blocking
        lock's mode, whether it is granted). A blocker may itself be queued ahead for the same row
        (like pg_blocking_pids' soft blocks). MariaDB: INNODB_LOCK_WAITS with INNODB_LOCKS and
        INNODB_TRX (one cache, refreshed at most every 100 ms, so the three agree); MySQL 8:
        performance_schema.data_lock_waits with data_locks, threads by THREAD_ID (empty, with no
        error, while performance_schema is off)."""
        if self.mariadb:
            return Statement(
                "SELECT rt.trx_mysql_thread_id, bt.trx_mysql_thread_id, rl.lock_table, rl.lock_index, rl.lock_data, "
                "rl.lock_mode, rl.lock_type, bl.lock_mode, "
                "bt.trx_requested_lock_id IS NULL OR bt.trx_requested_lock_id <> w.blocking_lock_id "
                "FROM information_schema.INNODB_LOCK_WAITS w "
                "JOIN information_schema.INNODB_LOCKS rl ON rl.lock_id = w.requested_lock_id "
                "JOIN information_schema.INNODB_LOCKS bl ON bl.lock_id = w.blocking_lock_id "
                "JOIN information_schema.INNODB_TRX rt ON rt.trx_id = w.requesting_trx_id "
                "JOIN information_schema.INNODB_TRX bt ON bt.trx_id = w.blocking_trx_id"
            )
        return Statement(
            "SELECT rt.PROCESSLIST_ID, bt.PROCESSLIST_ID, "
            "CONCAT('`', REPLACE(r.OBJECT_SCHEMA, '`', '``'), '`.`', REPLACE(r.OBJECT_NAME, '`', '``'), '`'), "
            "r.INDEX_NAME, r.LOCK_DATA, r.LOCK_MODE, r.LOCK_TYPE, b.LOCK_MODE, b.LOCK_STATUS = 'GRANTED' "
            "FROM performance_schema.data_lock_waits w "
            "JOIN performance_schema.data_locks r ON r.ENGINE = w.ENGINE "
            "AND r.ENGINE_LOCK_ID = w.REQUESTING_ENGINE_LOCK_ID "
            "AND r.ENGINE_TRANSACTION_ID = w.REQUESTING_ENGINE_TRANSACTION_ID "
            "JOIN performance_schema.data_locks b ON b.ENGINE = w.ENGINE "
            "AND b.ENGINE_LOCK_ID = w.BLOCKING_ENGINE_LOCK_ID "
            "AND b.ENGINE_TRANSACTION_ID = w.BLOCKING_ENGINE_TRANSACTION_ID "
            "JOIN performance_schema.threads rt ON rt.THREAD_ID = r.THREAD_ID "
            "JOIN performance_schema.threads bt ON bt.THREAD_ID = b.THREAD_ID "
            "WHERE rt.PROCESSLIST_ID IS NOT NULL AND bt.PROCESSLIST_ID IS NOT NULL"
        )

    def row_lock_table(self, name: str) -> tuple[str, str] | None:
        """(schema, table) of a row lock's table as :meth:`row_lock_waits` gives it (`` `db`.`t` ``,
        MariaDB adding `` /* Partition `p0` */`` for a partition); None when it names no table."""
        return lock_table_name(name)

    def waits_for_server_lock(self, state: str | None) -> bool:
        return (state or "").lower() in ("waiting for backup lock", "waiting for global read lock")

    def lock_sessions(self, query_chars: int = 4000) -> Statement:
        """Every session with its open InnoDB transaction, if any; ``identity`` guards against id reuse;
        last, the statement's running time (a waiter's wait)."""
        return Statement(
            "SELECT p.ID, p.USER, p.HOST, p.DB, p.COMMAND, p.TIME, p.STATE, LEFT(p.INFO, :query_chars), "
            "TIMESTAMPDIFF(MICROSECOND, t.trx_started, NOW(6)) / 1000000, "
            f"{_IDENTITY}, "
            # How long the statement has run: for one waiting for a lock, how long it has waited
            # (MariaDB in milliseconds; MySQL 8's PROCESSLIST has whole seconds only).
            f"{'p.TIME_MS / 1000' if self.mariadb else 'p.TIME'} "
            "FROM information_schema.PROCESSLIST p "
            "LEFT JOIN information_schema.INNODB_TRX t ON t.trx_mysql_thread_id = p.ID",
            {"query_chars": int(query_chars)},
        )

    def lock_privileges(self) -> Statement:
        """The current account's global privileges (PROCESS, CONNECTION ADMIN, SUPER ...)."""
        return Statement(
            "SELECT PRIVILEGE_TYPE FROM information_schema.USER_PRIVILEGES WHERE GRANTEE = CONCAT("
            "'''', SUBSTRING_INDEX(CURRENT_USER(), '@', 1), '''@''', SUBSTRING_INDEX(CURRENT_USER(), '@', -1), '''')"
        )

    def read_privilege_probe(self) -> Statement:
        """Fails with error 1227 without PROCESS (PROCESSLIST would just hide other sessions)."""
        return Statement("SELECT COUNT(*) FROM information_schema.INNODB_TRX")

    @property
    def signal_privileges(self) -> frozenset[str]:
        return frozenset({"SUPER", "CONNECTION ADMIN"}) if self.mariadb else frozenset({"CONNECTION_ADMIN", "SUPER"})

    def read_grant_hint(self, user: str) -> str:
        if self.mariadb:
            return f"GRANT PROCESS ON *.* TO {account(user)};"
        return f"GRANT PROCESS ON *.* TO {account(user)}; GRANT SELECT ON performance_schema.* TO {account(user)};"

    def signal_grant_hint(self, user: str) -> str:
        return f"GRANT {'CONNECTION ADMIN' if self.mariadb else 'CONNECTION_ADMIN'} ON *.* TO {account(user)};"

    def cancel_session(self, session_id: str, identity: str) -> Statement:
        # KILL takes no bound parameter; the id is an integer. Check session_alive first (id reuse).
        return Statement(f"KILL QUERY {int(session_id)}")

    def terminate_session(self, session_id: str, identity: str) -> Statement:
        return Statement(f"KILL CONNECTION {int(session_id)}")

    def session_alive(self, session_id: str, identity: str) -> Statement:
        """Still the same thread (user, host, transaction start), right before KILL."""
        return Statement(
            f"SELECT COUNT(*) FROM information_schema.PROCESSLIST p "
            f"LEFT JOIN information_schema.INNODB_TRX t ON t.trx_mysql_thread_id = p.ID "
            f"WHERE p.ID = :id AND {_SAME_THREAD}",
            {"id": int(session_id), **_identity_params(identity)},
        )

    def session_blocking(self, session_id: str, identity: str) -> Statement:
        """Same thread, still inside a transaction or still running a statement (so still holding locks)."""
        return Statement(
            f"SELECT COUNT(*) FROM information_schema.PROCESSLIST p "
            f"LEFT JOIN information_schema.INNODB_TRX t ON t.trx_mysql_thread_id = p.ID "
            f"WHERE p.ID = :id AND {_SAME_THREAD} "
            f"AND (t.trx_id IS NOT NULL OR p.COMMAND NOT IN ('Sleep', 'Killed'))",
            {"id": int(session_id), **_identity_params(identity)},
        )

    def session_holds_locks(self, session_id: str, source: str) -> Statement:
        """How many metadata locks the thread holds, read from ``source`` (granted locks only)."""
        if source == "metadata_lock_info":
            # A GET_LOCK user lock, or a backup lock every statement takes in passing, blocks nobody:
            # not a reason to end the session. The global read lock and a backup stage, held by an
            # idle session with no transaction, block the whole server: they are.
            return Statement("SELECT COUNT(*) FROM information_schema.METADATA_LOCK_INFO WHERE THREAD_ID = :id "
                             f"AND (LOCK_TYPE NOT IN ('User lock', 'Backup lock') OR ({_MARIADB_SERVER_LOCK}))",
                             {"id": int(session_id)})
        return Statement(
            "SELECT COUNT(*) FROM performance_schema.metadata_locks ml JOIN performance_schema.threads t "
            "ON t.THREAD_ID = ml.OWNER_THREAD_ID WHERE t.PROCESSLIST_ID = :id AND ml.LOCK_STATUS = 'GRANTED' "
            f"AND (ml.OBJECT_TYPE NOT IN ('USER LEVEL LOCK', 'BACKUP LOCK') OR {_MYSQL_SERVER_LOCK})",
            {"id": int(session_id)},
        )

    def is_kill_denied(self, exc: BaseException) -> bool:
        return _errno(exc) in (KILL_DENIED, *PRIVILEGE_ERRORS)

    def write_probe_timeouts(self) -> list[str]:
        """MariaDB: lock_wait_timeout 0 fails a wait for a metadata or backup lock at once (a write
        under FLUSH TABLES WITH READ LOCK or BACKUP STAGE BLOCK_COMMIT, seen: error 1205 in 0 ms);
        MySQL 8's least is one second. Row lock waits keep their bound: they say nothing of the server."""
        return [f"SET SESSION lock_wait_timeout = {0 if self.mariadb else 1}"]

    def is_read_only_error(self, exc: BaseException) -> bool:
        return _errno(exc) in READ_ONLY_ERRORS

    def is_session_gone(self, exc: BaseException) -> bool:
        return _errno(exc) == NO_SUCH_THREAD

    # --- the watchdog: who queues behind the migration's session -----------------------------
    watches_waiters = True

    def waiters_behind(self, session_id: str, tables: tuple[str, ...] = ()) -> Statement:
        """(id, ms waited, statement) of sessions waiting for a metadata lock, minus the migration's.

        A waiting request names no table (PROCESSLIST shows the state, not the object), so the caller
        keeps those whose statement names one of the tables the migration's statement touches. Nor
        does it name the database: waiters of another database (another tenant's table of the same
        name) are left out unless their statement names this one (run on a connection to the target).
        """
        waited = "TIME_MS" if self.mariadb else "TIME * 1000"
        return Statement(
            f"SELECT ID, CAST({waited} AS SIGNED) AS wait_ms, INFO FROM information_schema.PROCESSLIST "
            "WHERE ID <> :sid AND STATE LIKE 'Waiting for table metadata lock%' "
            "AND (DB IS NULL OR DB = DATABASE() OR LOCATE(DATABASE(), INFO) > 0)",
            {"sid": int(session_id)},
        )

    def waits_for_lock(self, session_id: str) -> Statement:
        return Statement(
            "SELECT COUNT(*) > 0 FROM information_schema.PROCESSLIST WHERE ID = :sid AND STATE LIKE 'Waiting for%lock%'",
            {"sid": int(session_id)},
        )

    def session_idle_seconds(self, session_id: str) -> Statement:
        """How long an idle session has been idle; NULL when it is busy or gone (zombie check)."""
        return Statement(
            "SELECT TIME FROM information_schema.PROCESSLIST WHERE ID = :sid AND COMMAND = 'Sleep'",
            {"sid": int(session_id)},
        )

    def cancel_own_statement(self, session_id: str) -> Statement:
        # KILL takes a literal id, never a bound parameter; int() keeps it one.
        return Statement(f"KILL QUERY {int(session_id)}")

    # --- a run's own sessions, recorded so no statement of a dead run outlives it -----------------

    def session_identity(self, session_id: str) -> Statement:
        """User and client address:port: with the id, what tells this session from a later one (ids
        only wrap after 2^32 connections; a port is reused only after its connection is gone)."""
        return Statement("SELECT CONCAT_WS('|', USER, HOST) FROM information_schema.PROCESSLIST WHERE ID = :id",
                         {"id": int(session_id)})

    def session_command(self, session_id: str, identity: str) -> Statement:
        """The recorded session's COMMAND ('Query' while a statement runs), if it is still the same
        session; no row once it is gone."""
        return Statement(
            "SELECT COMMAND FROM information_schema.PROCESSLIST WHERE ID = :id AND CONCAT_WS('|', USER, HOST) = :identity",
            {"id": int(session_id), "identity": identity},
        )

    def is_running(self, command: str | None) -> bool:
        # 'Killed' is a statement still unwinding after KILL QUERY: it holds its locks until done.
        return command is not None and command not in ("Sleep", "Daemon")

    def dead_client_checks(self, interval_ms: int) -> list[str]:
        """No equivalent: the server notices a closed client only when it next talks to it."""
        return []

    def is_cancelled(self, exc: BaseException) -> bool:
        return _errno(exc) in (1317, 3024)

    # --- live facts for ``dbguard plan`` (rows, size, lock holders, server) ------------------------
    # The risk rules' engine family; the flavour (mysql/mariadb) is ``name``.
    risk_engine = "mysql"
    # A distributed fleet rollout needs a PostgreSQL control database (SKIP LOCKED claims).
    fleet_claims = False
    # plan --observe reads pg_locks and relfilenode (PostgreSQL).
    observes_locks = False

    def server_facts(self) -> Statement:
        """(version number or NULL, version text, lock slots or NULL)."""
        return Statement("SELECT NULL, VERSION(), NULL")

    def table_facts_prelude(self) -> list[str]:
        """MySQL 8 caches information_schema.TABLES statistics for a day by default; ask it for fresh
        ones on dbguard's own session. MariaDB reads them live."""
        return [] if self.mariadb else ["SET SESSION information_schema_stats_expiry = 0"]

    def table_facts(self, tables: list[str]) -> Statement:
        """(table, estimated rows, data + index bytes, data bytes) of tables in the current database."""
        listed, names = bound_list(tables, "t")
        return Statement(
            "SELECT TABLE_NAME, TABLE_ROWS, DATA_LENGTH + INDEX_LENGTH, DATA_LENGTH FROM information_schema.TABLES "
            "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_TYPE IN ('BASE TABLE', 'SYSTEM VERSIONED') "
            f"AND TABLE_NAME IN ({listed})",
            names,
        )

    def table_columns(self, tables: list[str]) -> Statement:
        """(table, column, COLUMN_TYPE, nullable, bytes per character) of tables in the current
        database; the bytes per character (utf8mb4: 4) decide whether a longer VARCHAR keeps its
        length byte."""
        listed, names = bound_list(tables, "t")
        return Statement(
            "SELECT TABLE_NAME, COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE = 'YES', "
            "CHARACTER_OCTET_LENGTH DIV NULLIF(CHARACTER_MAXIMUM_LENGTH, 0) FROM information_schema.COLUMNS "
            f"WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME IN ({listed}) "
            "ORDER BY TABLE_NAME, ORDINAL_POSITION",
            names,
        )

    def index_tables(self, indexes: list[str]) -> Statement:
        """(index, table) of indexes in the current database (DROP INDEX names its table here; an
        index name is unique per table only, so one name may answer for several)."""
        listed, names = bound_list(indexes, "i")
        return Statement(
            "SELECT DISTINCT INDEX_NAME, TABLE_NAME FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = DATABASE() "
            f"AND INDEX_NAME IN ({listed})",
            names,
        )

    @property
    def rows_source(self) -> str:
        return "information_schema.TABLES (InnoDB estimate)" if self.mariadb else \
            "information_schema.TABLES (InnoDB estimate; cached unless information_schema_stats_expiry = 0)"

    def lock_holder_sources(self) -> tuple[str, ...]:
        return tuple(s for s in self.mdl_sources() if s != "heuristic")

    def lock_holder_source_ready(self, source: str) -> Statement:
        return self.mdl_source_ready(source)

    def table_lock_holders(self, tables: list[str], source: str) -> Statement:
        """Table metadata locks other sessions hold (MySQL 8: or wait for): (table, session, mode, state,
        transaction age s, query, granted); METADATA_LOCK_INFO shows granted locks only. The state in PostgreSQL's words: a thread asleep while it holds a table's
        metadata lock is inside a transaction (or LOCK TABLES), whatever INNODB_TRX shows yet."""
        listed, names = bound_list(tables, "t")
        age = "TIMESTAMPDIFF(MICROSECOND, x.trx_started, NOW(6)) / 1000000"

        def state(command: str) -> str:
            return (f"CASE {command} WHEN 'Sleep' THEN 'idle in transaction' WHEN 'Query' THEN 'active' "
                    f"WHEN 'Execute' THEN 'active' ELSE LOWER({command}) END")

        if source == "metadata_lock_info":
            return Statement(
                f"SELECT m.TABLE_NAME, m.THREAD_ID, m.LOCK_MODE, {state('p.COMMAND')}, {age}, LEFT(p.INFO, 200), 1 "
                "FROM information_schema.METADATA_LOCK_INFO m "
                "LEFT JOIN information_schema.PROCESSLIST p ON p.ID = m.THREAD_ID "
                "LEFT JOIN information_schema.INNODB_TRX x ON x.trx_mysql_thread_id = m.THREAD_ID "
                "WHERE m.LOCK_TYPE = 'Table metadata lock' AND m.TABLE_SCHEMA = DATABASE() "
                f"AND m.THREAD_ID <> CONNECTION_ID() AND m.TABLE_NAME IN ({listed}) ORDER BY m.THREAD_ID",
                names,
            )
        return Statement(
            f"SELECT ml.OBJECT_NAME, t.PROCESSLIST_ID, ml.LOCK_TYPE, {state('t.PROCESSLIST_COMMAND')}, {age}, "
            "LEFT(t.PROCESSLIST_INFO, 200), ml.LOCK_STATUS = 'GRANTED' "
            "FROM performance_schema.metadata_locks ml "
            "JOIN performance_schema.threads t ON t.THREAD_ID = ml.OWNER_THREAD_ID "
            "LEFT JOIN information_schema.INNODB_TRX x ON x.trx_mysql_thread_id = t.PROCESSLIST_ID "
            "WHERE ml.OBJECT_TYPE = 'TABLE' AND ml.OBJECT_SCHEMA = DATABASE() "
            "AND ml.LOCK_STATUS IN ('GRANTED', 'PENDING') "
            f"AND t.PROCESSLIST_ID <> CONNECTION_ID() AND ml.OBJECT_NAME IN ({listed}) ORDER BY t.PROCESSLIST_ID",
            names,
        )

    # --- observing a statement on a copy of its table (``dbguard plan --observe``) ----------------
    # Seen on MariaDB 10.11.19, on a copy made by CREATE TABLE ... LIKE (same result empty or not):
    #   ADD COLUMN (at the end, or FIRST), DROP COLUMN, RENAME COLUMN, SET DEFAULT: INSTANT, same table id
    #   VARCHAR(50) -> VARCHAR(60) in utf8mb4 (200 -> 240 bytes, length still in one byte): INSTANT
    #   VARCHAR(50) -> VARCHAR(100) in utf8mb4 (200 -> 400 bytes, a two-byte length): COPY, new table id
    #   INT -> BIGINT, and shortening a VARCHAR: INSTANT and INPLACE refused (1846), COPY, new table id
    #   ADD INDEX, ADD UNIQUE, DROP INDEX: INPLACE with LOCK=NONE, same table id
    #   NULL -> NOT NULL, ADD PRIMARY KEY, FORCE: INPLACE with LOCK=NONE, new table id (rebuilt online)
    # information_schema.TABLES.CREATE_TIME changes on every ALTER there, INSTANT ones included, and
    # performance_schema is off by default: the InnoDB table id is what tells a rebuild.

    def copy_table_like(self, copy: str, table: tuple[str, ...]) -> Statement:
        """An empty table ``copy`` in the current database with the columns, indexes and options of
        ``table`` (its name parts: ``("t",)`` or ``("db", "t")``); LIKE copies no foreign keys."""
        source = ".".join(quote_identifier(part) for part in table)
        return Statement(f"CREATE TABLE {quote_identifier(copy)} LIKE {source}")

    def foreign_keys_of(self, table: tuple[str, ...]) -> Statement:
        """How many foreign keys ``table`` (name parts; a bare name is in the current database) has or is
        referenced by. A copy has none, and they change the answer: with one on column a, MODIFY a
        BIGINT is refused (1832) where the copy says COPY, and the FK's index cannot be dropped (1553)."""
        schema, name = (table[0], table[1]) if len(table) == 2 else (None, table[-1])
        return Statement(
            "SELECT COUNT(*) FROM information_schema.REFERENTIAL_CONSTRAINTS "
            "WHERE (CONSTRAINT_SCHEMA = COALESCE(:schema, DATABASE()) AND TABLE_NAME = :table) "
            "OR (UNIQUE_CONSTRAINT_SCHEMA = COALESCE(:schema, DATABASE()) AND REFERENCED_TABLE_NAME = :table)",
            {"schema": schema, "table": name},
        )

    def drop_table_copy(self, copy: str) -> Statement:
        return Statement(f"DROP TABLE IF EXISTS {quote_identifier(copy)}")

    def innodb_table_id(self, table: str) -> Statement:
        """InnoDB's id of ``table`` in the current database: a new id means the table was rebuilt.
        NAME is ``db/table`` in the file system's encoding of names, equal to the plain name for the
        plain names dbguard gives its copies and scratch databases."""
        view = "INNODB_SYS_TABLES" if self.mariadb else "INNODB_TABLES"
        return Statement(f"SELECT TABLE_ID FROM information_schema.{view} WHERE NAME = CONCAT(DATABASE(), '/', :table)",
                         {"table": table})

    def own_metadata_locks(self, source: str) -> Statement:
        """(table, lock mode) of the table metadata locks this session holds, read from ``source``
        (see :meth:`mdl_sources`); a table of another database is named ``db.table``."""
        if source == "metadata_lock_info":
            return Statement(
                "SELECT IF(TABLE_SCHEMA = DATABASE(), TABLE_NAME, CONCAT(TABLE_SCHEMA, '.', TABLE_NAME)), LOCK_MODE "
                "FROM information_schema.METADATA_LOCK_INFO "
                "WHERE THREAD_ID = CONNECTION_ID() AND LOCK_TYPE = 'Table metadata lock' "
                "ORDER BY TABLE_SCHEMA, TABLE_NAME, LOCK_MODE"
            )
        if source == "performance_schema":
            return Statement(
                "SELECT IF(ml.OBJECT_SCHEMA = DATABASE(), ml.OBJECT_NAME, CONCAT(ml.OBJECT_SCHEMA, '.', ml.OBJECT_NAME)), "
                "ml.LOCK_TYPE FROM performance_schema.metadata_locks ml "
                "JOIN performance_schema.threads t ON t.THREAD_ID = ml.OWNER_THREAD_ID "
                "WHERE t.PROCESSLIST_ID = CONNECTION_ID() AND ml.OBJECT_TYPE = 'TABLE' AND ml.LOCK_STATUS = 'GRANTED' "
                "ORDER BY ml.OBJECT_SCHEMA, ml.OBJECT_NAME, ml.LOCK_TYPE"
            )
        raise ValueError(f"no metadata lock rows from {source}")

    def mdl_source_absent(self, source: str) -> str:
        """Why ``source`` shows nothing, in a few words."""
        if source == "metadata_lock_info":
            return "metadata_lock_info plugin not installed"
        return "performance_schema or its metadata lock instrument is off"

    def is_algorithm_refused(self, exc: BaseException) -> bool:
        """The server will not do the ALTER with the ALGORITHM or LOCK asked for (it would another way)."""
        return _errno(exc) in ALGORITHM_REFUSED


def from_sqlalchemy(sa_dialect: Any) -> MysqlDialect:
    return MysqlDialect(mariadb=bool(getattr(sa_dialect, "is_mariadb", False)) or sa_dialect.name == "mariadb")


# The packed catalog (MariaDB): per part of catalog(), its rows' source, their order, and each
# field as (label in catalog()'s rows, SQL expression, how a NULL is written: see catalog_packed_fields).
_PACKED_PARTS: dict[str, tuple[str, str, tuple[tuple[str, str, str], ...]]] = {
    "tables": (
        ("information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() "
         "AND TABLE_TYPE IN ('BASE TABLE', 'SYSTEM VERSIONED', 'SEQUENCE')"), "TABLE_NAME",
        (("table_name", "TABLE_NAME", ""), ("kind", "TABLE_TYPE", ""), ("table_comment", "TABLE_COMMENT", "e"),
         ("table_collation", "TABLE_COLLATION", "e"))),
    "columns": (
        "information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE()", "TABLE_NAME, ORDINAL_POSITION",
        (("table_name", "TABLE_NAME", ""), ("column_name", "COLUMN_NAME", ""), ("type", "COLUMN_TYPE", ""),
         ("is_nullable", "IS_NULLABLE", ""), ("default_expr", "COLUMN_DEFAULT", "n"), ("extra", "EXTRA", "e"),
         ("collation", "COLLATION_NAME", "e"), ("comment", "COLUMN_COMMENT", "e"),
         ("generated", "GENERATION_EXPRESSION", "e"))),
    "indexes": (
        "information_schema.STATISTICS WHERE TABLE_SCHEMA = DATABASE()", "TABLE_NAME, INDEX_NAME, SEQ_IN_INDEX",
        (("table_name", "TABLE_NAME", ""), ("name", "INDEX_NAME", ""), ("non_unique", "NON_UNIQUE", ""),
         ("column_name", "COLUMN_NAME", "n"), ("sub_part", "SUB_PART", "e"), ("method", "INDEX_TYPE", "e"),
         ("expression", "NULL", "e"),  # MariaDB has no functional key parts
         ("key_order", "COLLATION", "e"))),
    "foreign_keys": (
        "information_schema.KEY_COLUMN_USAGE WHERE TABLE_SCHEMA = DATABASE() AND REFERENCED_TABLE_NAME IS NOT NULL",
        "TABLE_NAME, CONSTRAINT_NAME, ORDINAL_POSITION",
        (("table_name", "TABLE_NAME", ""), ("name", "CONSTRAINT_NAME", ""), ("column_name", "COLUMN_NAME", ""),
         ("ref_table", "REFERENCED_TABLE_NAME", ""), ("ref_column", "REFERENCED_COLUMN_NAME", ""))),
    "fk_rules": (
        "information_schema.REFERENTIAL_CONSTRAINTS WHERE CONSTRAINT_SCHEMA = DATABASE()",
        "TABLE_NAME, CONSTRAINT_NAME",
        (("table_name", "TABLE_NAME", ""), ("name", "CONSTRAINT_NAME", ""), ("on_delete", "DELETE_RULE", ""),
         ("on_update", "UPDATE_RULE", ""))),
    "checks": (
        "information_schema.CHECK_CONSTRAINTS WHERE CONSTRAINT_SCHEMA = DATABASE()", "TABLE_NAME, CONSTRAINT_NAME",
        (("table_name", "TABLE_NAME", ""), ("name", "CONSTRAINT_NAME", ""), ("expression", "CHECK_CLAUSE", "e"),
         ("level", "LEVEL", ""))),
    "objects": (
        "information_schema.VIEWS WHERE TABLE_SCHEMA = DATABASE()", "TABLE_NAME",
        (("kind", "'view'", ""), ("name", "TABLE_NAME", ""), ("detail", "VIEW_DEFINITION", "e"),
         ("db", "TABLE_SCHEMA", ""))),
}


def _packed_value(expr: str, how: str) -> str:
    # CONCAT_WS skips NULLs: every field is written, so that the fields of a row can be counted.
    if how == "n":
        return f"IFNULL(CONCAT('=', {expr}), '')"
    if how == "e":
        return f"IFNULL({expr}, '')"
    return expr


if TYPE_CHECKING:  # mypy checks that the class is a whole Dialect, and each capability it claims
    _A_WHOLE_DIALECT: Dialect = MysqlDialect(mariadb=False)
    _ITS_ALTER_PROBES: AlterProbes = MysqlDialect(mariadb=False)
    _ITS_CATALOG: InformationSchemaCatalog = MysqlDialect(mariadb=False)
    _ITS_SCRATCH_SERVER: ScratchServer = MysqlDialect(mariadb=False)
    _ITS_SESSION_CONTROL: SessionControl = MysqlDialect(mariadb=False)
    _ITS_LOCK_GRAPH: MetadataLockGraph = MysqlDialect(mariadb=False)
    _ITS_RISK_FACTS: RiskFacts = MysqlDialect(mariadb=False)
