"""PostgreSQL SQL: session timeouts, the advisory run lock, error classes."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from dbguard.dialects import (
    BlockingPidsLockGraph,
    Dialect,
    FleetClaims,
    LockObservation,
    RiskFacts,
    ScratchServer,
    SessionControl,
    Statement,
    bound_list,
    driver_error,
)

LOCK_NOT_AVAILABLE = "55P03"
# The first half of a fleet claim's two-int advisory key ("dbgf"); the second is the claim row's id.
FLEET_CLAIM_NAMESPACE = 0x64626766
INSUFFICIENT_PRIVILEGE = "42501"
UNDEFINED_TABLE = "42P01"
# A write in a read-only transaction: default_transaction_read_only, a standby.
READ_ONLY_SQL_TRANSACTION = "25006"


def _sqlstate(exc: BaseException) -> str | None:
    orig = driver_error(exc)
    return getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)


def advisory_key(key: str) -> int:
    """A stable signed 64-bit key; advisory locks are already scoped to the current database."""
    digest = hashlib.sha256(f"dbguard-run-lock:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


_SERIAL = "pg_get_serial_sequence(format('%I.%I', current_schema(), t.name), 'id')"
_LEDGER_PRIVILEGES = f"""
SELECT current_schema() AS schema_name, has_schema_privilege(current_schema(), 'CREATE') AS can_create,
       t.name, c.oid IS NOT NULL AS present,
       c.oid IS NULL OR has_table_privilege(c.oid, 'SELECT') AS can_select,
       c.oid IS NULL OR has_table_privilege(c.oid, 'INSERT') AS can_insert,
       c.oid IS NULL OR has_table_privilege(c.oid, 'UPDATE') AS can_update,
       c.oid IS NULL OR pg_has_role(c.relowner, 'USAGE') AS owns,
       CASE WHEN c.oid IS NULL THEN NULL ELSE {_SERIAL} END AS id_sequence,
       c.oid IS NULL OR {_SERIAL} IS NULL OR has_sequence_privilege({_SERIAL}, 'USAGE') AS can_use_sequence
FROM unnest(CAST(:names AS text[])) AS t(name)
LEFT JOIN pg_catalog.pg_class c
       ON c.relname = t.name AND c.relkind IN ('r', 'p')
      AND c.relnamespace = (SELECT oid FROM pg_catalog.pg_namespace WHERE nspname = current_schema())
"""


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def missing_ledger_privileges(rows: Sequence[Any], user: str, complete: bool) -> tuple[list[str], str]:
    """What the role lacks to write dbguard's ledger, and the GRANT statements that give it.

    Missing tables need CREATE on the schema; existing ones SELECT, INSERT, UPDATE and their id
    sequence; a ledger that lacks columns a newer dbguard records needs the tables' owner (only an
    owner may ALTER a table)."""
    missing: list[str] = []
    grants: list[str] = []
    role = _ident(user)
    for row in rows:
        schema, table = _ident(row.schema_name), f"{_ident(row.schema_name)}.{_ident(row.name)}"
        if not row.present:
            if not row.can_create and f"CREATE on schema {row.schema_name}" not in missing:
                missing.append(f"CREATE on schema {row.schema_name}")
                grants.append(f"GRANT CREATE ON SCHEMA {schema} TO {role};")
            continue
        rights = [r for r, ok in (("SELECT", row.can_select), ("INSERT", row.can_insert),
                                  ("UPDATE", row.can_update)) if not ok]
        if rights:
            missing.append(f"{', '.join(rights)} on {row.schema_name}.{row.name}")
            grants.append(f"GRANT {', '.join(rights)} ON {table} TO {role};")
        if not row.can_use_sequence:
            missing.append(f"USAGE on {row.id_sequence}")
            grants.append(f"GRANT USAGE ON SEQUENCE {row.id_sequence} TO {role};")
        if not complete and not row.owns:
            missing.append(f"ownership of {row.schema_name}.{row.name} (this dbguard adds ledger columns)")
            grants.append(f"ALTER TABLE {table} OWNER TO {role};")
    return missing, " ".join(grants)


def scratch_key(name: str) -> int:
    """The advisory key of a scratch database's owner lock (see :meth:`PostgresqlDialect.hold_scratch`)."""
    digest = hashlib.sha256(f"dbguard-scratch:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class PostgresqlDialect:
    name = "postgresql"
    run_lock_kind = "sql"
    concurrent_ledger_writes = True
    session_poll_s = 0.01
    # The WAL is one stream, flushed in order: the run's verdict, committed with a flush after the last
    # step and before dbguard reports anything, makes every commit before it durable (the steps', the
    # journal's rows). A server crash before it loses a tail of them, in order, never a step without
    # the steps before it or a step row saying succeeded without its step's commit; the run then has
    # no verdict and is checked against the schema, as after any crash. A commit that waits for its flush cost ~4 ms
    # here, twice a step for the journal and once for the step itself.
    migration_commit_statements: tuple[str, ...] = ("SET synchronous_commit = off",)
    flushed_commit_statements: tuple[str, ...] = ("RESET synchronous_commit",)
    # How dbguard.db.catalog reads the whole schema: pg_catalog, in a few set-based queries.
    catalog_style = "pg_catalog"
    # A UNIQUE constraint is its own object here, apart from unique indexes.
    unique_constraints_are_indexes = False
    # Whether a foreign key makes the server create an index on its columns when none exists.
    fk_creates_index = False
    # Whether a scratch database for replaying migrations lives on the same server.
    scratch_database_kind = "server"

    def __init__(self, server_version: tuple[Any, ...] = ()) -> None:
        numbers = tuple(v for v in server_version if isinstance(v, int))
        # PostgreSQL 15 added UNIQUE NULLS NOT DISTINCT (pg_index.indnullsnotdistinct); unknown: assumed there.
        self.nulls_not_distinct = not numbers or numbers >= (15,)

    def catalog_columns(self) -> Statement:
        """Every column of every table of the current schema, with its table's comment."""
        return Statement(
            "SELECT c.relname AS table_name, td.description AS table_comment, a.attname AS column_name, "
            "a.attnum AS position, pg_catalog.format_type(a.atttypid, a.atttypmod) AS type, "
            "a.attnotnull AS not_null, "
            # Without the table (0) where no column can be named: deparsing is then a third cheaper.
            "pg_catalog.pg_get_expr(d.adbin, CASE WHEN a.attgenerated = '' THEN 0 ELSE d.adrelid END) AS default_expr, "
            "a.attidentity AS identity, a.attgenerated AS generated, "
            # An identity's options, read from its sequence only for identity columns: ALWAYS or BY DEFAULT,
            # START and INCREMENT where they are not a sequence's own defaults.
            "CASE WHEN a.attidentity <> '' THEN (SELECT CASE a.attidentity WHEN 'a' THEN 'ALWAYS' ELSE 'BY DEFAULT' END "
            "|| CASE WHEN s.seqstart <> CASE WHEN s.seqincrement > 0 THEN 1 ELSE -1 END "
            "THEN ' START ' || s.seqstart ELSE '' END "
            "|| CASE WHEN s.seqincrement <> 1 THEN ' INCREMENT ' || s.seqincrement ELSE '' END "
            "FROM pg_catalog.pg_depend dep JOIN pg_catalog.pg_sequence s ON s.seqrelid = dep.objid "
            "WHERE dep.classid = 'pg_catalog.pg_class'::regclass AND dep.refclassid = 'pg_catalog.pg_class'::regclass "
            "AND dep.refobjid = c.oid AND dep.refobjsubid = a.attnum AND dep.deptype = 'i' LIMIT 1) END "
            "AS identity_options, "
            "CASE WHEN a.attcollation <> t.typcollation THEN co.collname END AS collation, "
            "cd.description AS comment "
            "FROM pg_catalog.pg_class c "
            "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
            "LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped "
            "LEFT JOIN pg_catalog.pg_type t ON t.oid = a.atttypid "
            "LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum "
            "LEFT JOIN pg_catalog.pg_collation co ON co.oid = a.attcollation "
            "LEFT JOIN pg_catalog.pg_description td ON td.objoid = c.oid "
            "AND td.classoid = 'pg_catalog.pg_class'::regclass AND td.objsubid = 0 "
            "LEFT JOIN pg_catalog.pg_description cd ON cd.objoid = c.oid "
            "AND cd.classoid = 'pg_catalog.pg_class'::regclass AND cd.objsubid = a.attnum "
            "WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p') "
            "AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend e WHERE e.objid = c.oid AND e.deptype = 'e') "
            "ORDER BY c.relname, a.attnum"
        )

    def catalog_constraints(self) -> Statement:
        """Primary keys, unique and check constraints and foreign keys. Columns come as attribute
        numbers, named from the columns part (naming them here, row by row, took three quarters of
        this query's time); a foreign key's target columns are named here only where that part
        cannot: a target in another schema, or owned by an extension."""
        return Statement(
            "SELECT c.relname AS table_name, con.conname AS name, con.contype AS type, "
            "con.conkey AS column_numbers, fc.relname AS ref_table, con.confkey AS ref_column_numbers, "
            "CASE WHEN fc.relnamespace <> c.relnamespace OR fc.oid IN (SELECT e.objid FROM pg_catalog.pg_depend e "
            "WHERE e.classid = 'pg_catalog.pg_class'::regclass AND e.deptype = 'e') THEN "
            "ARRAY(SELECT a.attname FROM unnest(con.confkey) WITH ORDINALITY k(attnum, ord) "
            "JOIN pg_catalog.pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.attnum "
            "ORDER BY k.ord) END AS ref_columns, "
            "con.confdeltype AS on_delete, con.confupdtype AS on_update, "
            "CASE WHEN con.contype = 'c' THEN pg_catalog.pg_get_constraintdef(con.oid, true) END AS definition, "
            f"{self._unique_nulls_not_distinct()} AS nulls_not_distinct "
            "FROM pg_catalog.pg_constraint con "
            "JOIN pg_catalog.pg_class c ON c.oid = con.conrelid "
            "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
            "LEFT JOIN pg_catalog.pg_class fc ON fc.oid = con.confrelid "
            "WHERE n.nspname = current_schema() AND con.contype IN ('p', 'u', 'c', 'f') AND c.relkind IN ('r', 'p')"
        )

    def _unique_nulls_not_distinct(self) -> str:
        if not self.nulls_not_distinct:
            return "false"
        return ("CASE WHEN con.contype = 'u' THEN (SELECT ui.indnullsnotdistinct FROM pg_catalog.pg_index ui "
                "WHERE ui.indexrelid = con.conindid) END")

    def catalog_indexes(self) -> Statement:
        """Indexes that back no constraint: key columns as attribute numbers (named from the columns
        part), deparsed here only for an index on expressions; each key's order (indoption: 1 DESC,
        2 NULLS FIRST; pg_get_indexdef of one column leaves it out); predicate, access method, INCLUDE
        columns, NULLS NOT DISTINCT. Where a key has an operator class that is not its type's default
        or a collation other than the database's default, the whole index is deparsed
        (``definition``): only that form names them, and only where they differ from the key's own."""
        nulls_not_distinct = "x.indnullsnotdistinct" if self.nulls_not_distinct else "false"
        return Statement(
            "SELECT c.relname AS table_name, i.relname AS name, x.indisunique AS is_unique, am.amname AS method, "
            "pg_catalog.pg_get_expr(x.indpred, x.indrelid, true) AS predicate, "
            # int2vector is indexed from 0; a slice is numbered from 1 again and ends at the key columns.
            "(x.indkey::int2[])[0:x.indnkeyatts - 1] AS column_numbers, "
            "(x.indoption::int2[])[0:x.indnkeyatts - 1] AS column_options, "
            "(x.indkey::int2[])[x.indnkeyatts:x.indnatts - 1] AS include_numbers, "
            f"{nulls_not_distinct} AS nulls_not_distinct, "
            "CASE WHEN x.indexprs IS NOT NULL THEN ARRAY(SELECT pg_catalog.pg_get_indexdef(x.indexrelid, k, true) "
            "FROM generate_series(1, x.indnkeyatts) k ORDER BY k) END AS columns, "
            # Array tests, no subquery per index: one each cost three times the rest of this read. The
            # non-default classes are listed once (an InitPlan); a key collation other than none (0) or
            # the database's default (100) is deparsed, and printed by the server only where it is not
            # the column's own.
            "CASE WHEN x.indclass::oid[] && (SELECT array_agg(o.oid) FROM pg_catalog.pg_opclass o "
            "WHERE NOT o.opcdefault) OR NOT x.indcollation::oid[] <@ '{0,100}'::oid[] "
            "THEN pg_catalog.pg_get_indexdef(x.indexrelid, 0, true) END AS definition "
            "FROM pg_catalog.pg_index x "
            "JOIN pg_catalog.pg_class i ON i.oid = x.indexrelid "
            "JOIN pg_catalog.pg_class c ON c.oid = x.indrelid "
            "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
            "JOIN pg_catalog.pg_am am ON am.oid = i.relam "
            "WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p') "
            "AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint con WHERE con.conindid = x.indexrelid "
            "AND con.conrelid = x.indrelid AND con.contype IN ('p', 'u', 'x'))"
        )

    def catalog_objects(self) -> Statement:
        """Enum types (labels in order, as JSON), views and standalone sequences, in one go."""
        return Statement(
            "SELECT 'enum' AS kind, t.typname AS name, "
            "json_agg(e.enumlabel ORDER BY e.enumsortorder)::text AS detail "
            "FROM pg_catalog.pg_type t JOIN pg_catalog.pg_enum e ON e.enumtypid = t.oid "
            "JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace "
            "WHERE n.nspname = current_schema() GROUP BY t.typname "
            "UNION ALL "
            "SELECT 'view', c.relname, pg_catalog.pg_get_viewdef(c.oid, true) "
            "FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = current_schema() AND c.relkind IN ('v', 'm') "
            "AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend e WHERE e.objid = c.oid AND e.deptype = 'e') "
            "UNION ALL "
            "SELECT 'sequence', c.relname, NULL "
            "FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = current_schema() AND c.relkind = 'S' "
            "AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.objid = c.oid "
            "AND d.classid = 'pg_catalog.pg_class'::regclass AND d.deptype IN ('a', 'i', 'e'))"
        )

    def catalog(self) -> dict[str, Statement]:
        return {
            "columns": self.catalog_columns(),
            "constraints": self.catalog_constraints(),
            "indexes": self.catalog_indexes(),
            "objects": self.catalog_objects(),
        }

    def catalog_packed(self) -> Statement | None:
        """No packed form: :meth:`catalog` is read as it is."""
        return None

    def keeps_index_order(self, server_version: tuple[Any, ...]) -> bool:
        return True

    def create_scratch_database(self, name: str) -> Statement:
        return Statement(f'CREATE DATABASE "{name}"')

    def drop_scratch_database(self, name: str, force: bool = True) -> Statement:
        # WITH (FORCE) (PG 13+) ends any session a failed or interrupted replay left connected;
        # without it, a database someone is connected to is not dropped.
        return Statement(f'DROP DATABASE IF EXISTS "{name}"' + (" WITH (FORCE)" if force else ""))

    def scratch_sessions(self, name: str) -> Statement | None:
        return None

    def scratch_users(self, name: str) -> Statement:
        """How many sessions are connected to scratch database ``name``."""
        return Statement("SELECT count(*) FROM pg_catalog.pg_stat_activity WHERE datname = :name", {"name": name})

    def list_scratch_databases(self, prefix: str) -> Statement:
        return Statement("SELECT datname FROM pg_catalog.pg_database WHERE datname LIKE :pattern",
                         {"pattern": prefix.replace("_", "\\_") + "%"})

    def hold_scratch(self, name: str) -> Statement:
        """A session lock that says a live dbguard owns scratch database ``name``: the server frees
        it when that session ends, however its process died."""
        return Statement("SELECT pg_try_advisory_lock(:key)", {"key": scratch_key(name)})

    def release_scratch(self, name: str) -> Statement:
        return Statement("SELECT pg_advisory_unlock(:key)", {"key": scratch_key(name)})

    def scratch_held(self, name: str) -> Statement:
        # Advisory locks are scoped to a database: the owner held it from whichever database it
        # was connected to, so every database's locks are looked at.
        key = scratch_key(name) & 0xFFFFFFFFFFFFFFFF
        return Statement(
            "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_locks l WHERE l.locktype = 'advisory' AND l.granted "
            "AND l.objsubid = 1 AND l.classid::bigint = :hi AND l.objid::bigint = :lo)",
            {"hi": key >> 32, "lo": key & 0xFFFFFFFF},
        )

    def effective_lock_timeout_ms(self, lock_timeout_ms: int) -> int:
        return int(lock_timeout_ms)

    def session_timeouts(self, lock_timeout_ms: int, statement_timeout_ms: int) -> list[str]:
        statements = [f"SET lock_timeout = '{int(lock_timeout_ms)}ms'"]
        if statement_timeout_ms > 0:
            statements.append(f"SET statement_timeout = '{int(statement_timeout_ms)}ms'")
        return statements

    def application_connect_args(self, name: str) -> dict[str, str]:
        return {"application_name": name}

    def set_application_name(self, name: str) -> list[str]:
        quoted = name.replace("'", "''")
        return [f"SET application_name = '{quoted}'"]

    def normalize_database(self, name: str) -> str:
        return name

    def utc_now(self) -> Statement:
        """The server's clock, so hosts with skewed clocks agree on how old a heartbeat is."""
        return Statement("SELECT (clock_timestamp() AT TIME ZONE 'UTC')")

    def session_id(self) -> Statement:
        return Statement("SELECT pg_backend_pid()")

    def current_user(self) -> Statement:
        return Statement("SELECT current_user")

    def version_table_elsewhere(self, table: str) -> Statement | None:
        # The schemas of this database, other than the session's, that hold a table of that name.
        return Statement(
            "SELECT n.nspname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relname = :name AND c.relkind IN ('r', 'p') AND n.nspname <> current_schema() "
            "AND n.nspname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1", {"name": table})

    def current_schema(self) -> Statement:
        return Statement("SELECT current_schema()")

    def current_database(self) -> Statement:
        return Statement("SELECT current_database()")

    def try_run_lock(self, database: str, key: str) -> Statement:
        return Statement("SELECT pg_try_advisory_lock(:key)", {"key": advisory_key(key)})

    def release_run_lock(self, database: str, key: str) -> Statement:
        return Statement("SELECT pg_advisory_unlock(:key)", {"key": advisory_key(key)})

    def run_lock_holder(self, database: str, key: str) -> Statement:
        # A bigint advisory key shows in pg_locks as classid (high half), objid (low half), objsubid 1.
        unsigned = advisory_key(key) & 0xFFFFFFFFFFFFFFFF
        return Statement(
            "SELECT l.pid FROM pg_catalog.pg_locks l "
            "WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 "
            "AND l.database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database()) "
            "AND l.classid::bigint = :hi AND l.objid::bigint = :lo",
            {"hi": unsigned >> 32, "lo": unsigned & 0xFFFFFFFF},
        )

    def is_lock_timeout(self, exc: BaseException) -> bool:
        return _sqlstate(exc) == LOCK_NOT_AVAILABLE

    def is_privilege_error(self, exc: BaseException) -> bool:
        return _sqlstate(exc) == INSUFFICIENT_PRIVILEGE

    def is_missing_table(self, exc: BaseException) -> bool:
        return _sqlstate(exc) == UNDEFINED_TABLE

    def ledger_grant_hint(self, user: str, database: str) -> str:
        return f'GRANT CREATE ON SCHEMA public TO "{user}";'

    def ledger_privileges(self, tables: Sequence[str]) -> Statement:
        """Per ledger table (in the current schema): is it there, may this role read, insert,
        update it and use its id sequence, does it own it; and may it create in the schema."""
        return Statement(_LEDGER_PRIVILEGES, {"names": list(tables)})

    def missing_ledger_privileges(self, rows: Sequence[Any], user: str, database: str,
                                  complete: bool) -> tuple[list[str], str]:
        return missing_ledger_privileges(rows, user, complete)

    # --- lock inspection and ending sessions (``dbguard locks``) ---------------------------------
    # The wait-for graph comes from pg_blocking_pids (the pg_locks self-join reports false edges).
    lock_graph = "blocking_pids"
    max_session_id = 2**31 - 1  # a backend's pid is an int4
    session_applications = True
    idle_query_shown = True

    def session_user_name(self, current_user: str) -> str:
        return current_user

    def resolve_table(self, name: str, database: str) -> Statement:
        """As the server resolves it: through search_path when bare, quoted identifiers as typed."""
        return Statement("SELECT n.nspname, c.relname FROM pg_catalog.pg_class c "
                         "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
                         "WHERE c.oid = pg_catalog.to_regclass(:name) AND c.relkind IN ('r', 'p', 'm', 'f')",
                         {"name": name})
    sqlglot_dialect = "postgres"

    def is_session_gone(self, exc: BaseException) -> bool:
        return False  # pg_cancel_backend / pg_terminate_backend answer false for a gone pid, never raise

    def is_kill_denied(self, exc: BaseException) -> bool:
        return False  # a refusal is a privilege error (is_privilege_error)

    def write_probe_timeouts(self) -> list[str]:
        """No server-wide write lock here: a read-only database or standby refuses at once (25006);
        only a lock on the audit table itself could make a write wait, and briefly is enough."""
        return ["SET lock_timeout = '500ms'"]

    def is_read_only_error(self, exc: BaseException) -> bool:
        return _sqlstate(exc) == READ_ONLY_SQL_TRANSACTION

    def ledger_long_text_type(self) -> Any:
        return None  # text has no length limit

    def ledger_timestamp_type(self) -> Any:
        return None  # timestamp keeps microseconds

    def table_facts_prelude(self) -> list[str]:
        return []

    def lock_sessions(self, query_chars: int = 200, extra_pids: Sequence[int] = ()) -> Statement:
        """Every session that waits for a lock or that somebody waits for, in any database (plus extra_pids)."""
        return Statement(_LOCK_SESSIONS, {"query_chars": int(query_chars), "extra": [int(p) for p in extra_pids]})

    def lock_rows(self) -> Statement:
        """Relation, advisory and object locks and every ungranted lock, with table names of this database
        (and shared ones), and what an advisory or object lock locks."""
        return Statement(_LOCK_ROWS)

    def prepared_transactions(self) -> Statement:
        """Prepared (2PC) transactions of this database and the tables they lock: blocker pid 0."""
        return Statement(_PREPARED_XACTS)

    def root_blockers(self, session_id: str) -> Statement:
        """Pids at the root of the queue above one session (0 = a prepared transaction)."""
        return Statement(_ROOT_BLOCKERS, {"pid": int(session_id), "max_depth": 32})

    def lock_privileges(self) -> Statement:
        """(superuser, may read all sessions' state and query, may signal other roles' sessions)."""
        return Statement(
            "SELECT r.rolsuper, pg_catalog.pg_has_role(current_user, 'pg_read_all_stats', 'MEMBER'), "
            "pg_catalog.pg_has_role(current_user, 'pg_signal_backend', 'MEMBER') "
            "FROM pg_catalog.pg_roles r WHERE r.rolname = current_user"
        )

    def read_grant_hint(self, user: str) -> str:
        return f'GRANT pg_read_all_stats TO "{user}";'

    def signal_grant_hint(self, user: str) -> str:
        return f'GRANT pg_signal_backend TO "{user}";'

    def cancel_session(self, session_id: str, identity: str) -> Statement:
        """Cancel the running statement, only if the pid still belongs to the same backend."""
        return Statement(_SIGNAL.format(fn="pg_cancel_backend"), {"pid": int(session_id), "started": identity})

    def terminate_session(self, session_id: str, identity: str) -> Statement:
        """Terminate the backend, only if the pid still belongs to the same backend (pids are reused)."""
        return Statement(_SIGNAL.format(fn="pg_terminate_backend"), {"pid": int(session_id), "started": identity})

    def session_alive(self, session_id: str, identity: str) -> Statement:
        return Statement(
            "SELECT count(*) FROM pg_catalog.pg_stat_activity "
            "WHERE pid = :pid AND backend_start = CAST(:started AS timestamptz)",
            {"pid": int(session_id), "started": identity},
        )

    def session_blocking(self, session_id: str, identity: str) -> Statement:
        """Whether the backend is still alive and somebody still waits for it."""
        return Statement(
            "SELECT count(*) FROM pg_catalog.pg_stat_activity a "
            "WHERE a.pid = :pid AND a.backend_start = CAST(:started AS timestamptz) AND EXISTS ("
            "SELECT 1 FROM pg_catalog.pg_stat_activity w WHERE :pid = ANY(pg_catalog.pg_blocking_pids(w.pid)))",
            {"pid": int(session_id), "started": identity},
        )

    def free_prepared_hint(self, gid: str) -> str:
        return "ROLLBACK PREPARED '" + gid.replace("'", "''") + "'"

    # --- the watchdog: who queues behind the migration's session -----------------------------
    watches_waiters = True

    def waiters_behind(self, session_id: str, tables: tuple[str, ...] = ()) -> Statement:
        """(pid, ms waited) of every session whose blockers include the migration session.

        pg_blocking_pids also names sessions queued ahead (soft blocks), so readers stuck behind a
        queued ALTER count as waiting for it; waitstart (PostgreSQL 14+) says since when.
        """
        return Statement(
            "SELECT l.pid, (EXTRACT(EPOCH FROM (clock_timestamp() - COALESCE(l.waitstart, a.query_start)))"
            " * 1000)::bigint AS wait_ms "
            "FROM pg_catalog.pg_locks l JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid "
            "WHERE NOT l.granted AND l.pid <> :sid AND :sid = ANY(pg_catalog.pg_blocking_pids(l.pid))",
            {"sid": int(session_id)},
        )

    def waits_for_lock(self, session_id: str) -> Statement:
        """Whether the session waits for somebody's lock right now."""
        return Statement("SELECT cardinality(pg_catalog.pg_blocking_pids(:sid)) > 0", {"sid": int(session_id)})

    def session_idle_seconds(self, session_id: str) -> Statement:
        """How long an idle session has been idle; NULL when it is busy or gone (zombie check)."""
        return Statement(
            "SELECT EXTRACT(EPOCH FROM (clock_timestamp() - state_change))::float8 FROM pg_catalog.pg_stat_activity "
            "WHERE pid = :sid AND state = 'idle'",
            {"sid": int(session_id)},
        )

    def cancel_own_statement(self, session_id: str) -> Statement:
        return Statement("SELECT pg_catalog.pg_cancel_backend(:sid)", {"sid": int(session_id)})

    # --- a run's own sessions, recorded so no statement of a dead run outlives it -----------------

    def session_identity(self, session_id: str) -> Statement:
        """What tells this backend from a later one with the same pid (pids are reused)."""
        return Statement("SELECT CAST(backend_start AS text) FROM pg_catalog.pg_stat_activity WHERE pid = :pid",
                         {"pid": int(session_id)})

    def session_command(self, session_id: str, identity: str) -> Statement:
        """The recorded session's state, if it is still the same backend: 'active' while a statement
        runs; no row once it is gone."""
        return Statement(
            "SELECT state FROM pg_catalog.pg_stat_activity "
            "WHERE pid = :pid AND backend_start = CAST(:started AS timestamptz)",
            {"pid": int(session_id), "started": identity},
        )

    def is_running(self, command: str | None) -> bool:
        return command is not None and command not in ("idle", "idle in transaction",
                                                       "idle in transaction (aborted)")

    def dead_client_checks(self, interval_ms: int) -> list[str]:
        """PostgreSQL 14+: the backend looks for a closed client socket while a statement runs, so a
        killed dbguard's statement ends within ``interval_ms`` instead of running on."""
        return [f"SET client_connection_check_interval = {int(interval_ms)}"]

    def is_cancelled(self, exc: BaseException) -> bool:
        return _sqlstate(exc) == "57014"

    # --- live facts for ``dbguard plan`` (rows, size, lock holders, server) ------------------------
    # The risk rules' engine family, and the server flavour within it.
    risk_engine = "postgresql"

    def server_facts(self) -> Statement:
        """(version number, version text, max_locks_per_transaction)."""
        return Statement(
            "SELECT current_setting('server_version_num')::int, version(), "
            "current_setting('max_locks_per_transaction')::int"
        )

    def table_facts(self, tables: list[str]) -> Statement:
        """(table, estimated rows, total bytes, heap bytes) of tables in the current schema.

        reltuples is -1 until the first VACUUM/ANALYZE (PostgreSQL 14+); the heap size is exact.
        """
        listed, names = bound_list(tables, "t")
        return Statement(
            "SELECT c.relname, c.reltuples::bigint, pg_catalog.pg_total_relation_size(c.oid), "
            "pg_catalog.pg_relation_size(c.oid) "
            "FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p') "
            f"AND c.relname IN ({listed})",
            names,
        )

    def table_columns(self, tables: list[str]) -> Statement:
        """(table, column, type, nullable, NULL) of tables in the current schema; the type as
        ``format_type`` spells it (``character varying(20)``, ``numeric(12,2)``)."""
        listed, names = bound_list(tables, "t")
        return Statement(
            "SELECT c.relname, a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod), NOT a.attnotnull, NULL "
            "FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_class c ON c.oid = a.attrelid "
            "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p') AND a.attnum > 0 "
            f"AND NOT a.attisdropped AND c.relname IN ({listed}) "
            "ORDER BY c.relname, a.attnum",
            names,
        )

    def index_tables(self, indexes: list[str]) -> Statement:
        """(index, table) of indexes in the current schema, as DROP INDEX resolves an unqualified name."""
        listed, names = bound_list(indexes, "i")
        return Statement(
            "SELECT i.relname, t.relname FROM pg_catalog.pg_index x "
            "JOIN pg_catalog.pg_class i ON i.oid = x.indexrelid JOIN pg_catalog.pg_class t ON t.oid = x.indrelid "
            "JOIN pg_catalog.pg_namespace n ON n.oid = i.relnamespace WHERE n.nspname = current_schema() "
            f"AND i.relname IN ({listed})",
            names,
        )

    rows_source = "pg_class.reltuples (estimate; -1 before ANALYZE)"

    def lock_holder_sources(self) -> tuple[str, ...]:
        return ("pg_locks",)

    def lock_holder_source_ready(self, source: str) -> Statement:
        return Statement("SELECT 1")

    def table_lock_holders(self, tables: list[str], source: str) -> Statement:
        """Relation locks other sessions hold or wait for on these tables: (table, session, mode, state,
        transaction age s, query, granted). A queued request delays the plan's statement as a granted
        one does, when their modes conflict."""
        listed, names = bound_list(tables, "t")
        return Statement(
            "SELECT c.relname, l.pid, l.mode, a.state, "
            "EXTRACT(EPOCH FROM (clock_timestamp() - a.xact_start))::float8, left(a.query, 200), l.granted "
            "FROM pg_catalog.pg_locks l "
            "JOIN pg_catalog.pg_class c ON c.oid = l.relation "
            "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
            "LEFT JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.locktype = 'relation' "
            "AND l.database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database()) "
            "AND l.pid IS DISTINCT FROM pg_backend_pid() AND n.nspname = current_schema() "
            f"AND c.relname IN ({listed}) ORDER BY l.pid",
            names,
        )


    # --- plan --observe: what a migration locks and rewrites, as the server says -------------------
    observes_locks = True
    _USER_RELATION = ("n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_toast%' "
                      "AND n.nspname NOT LIKE 'pg\\_temp%'")

    def observed_relations(self) -> Statement:
        # Read on the migration's own connection: an uncommitted rewrite's new relfilenode is visible
        # inside its transaction only. That connection's driver is env.py's: relkind ("char") is cast to
        # text, which asyncpg returns as str where it returns a "char" as bytes.
        return Statement(
            "SELECT c.oid, c.relkind::text, c.relfilenode, coalesce(x.indrelid, c.oid), coalesce(t.relname, c.relname), "
            "n.nspname, c.relname "
            "FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
            "LEFT JOIN pg_catalog.pg_index x ON x.indexrelid = c.oid "
            "LEFT JOIN pg_catalog.pg_class t ON t.oid = x.indrelid "
            f"WHERE c.relkind IN ('r', 'p', 'm', 'v', 'i', 'I') AND {self._USER_RELATION}")

    def backend_id(self) -> Statement:
        return Statement("SELECT pg_backend_pid()")

    def backend_relation_locks(self, backend: int) -> Statement:
        # A relation the statement dropped has no pg_class row any more: kept (NULL kind and name), for
        # the caller to name from what it read before. relkind as text: see observed_relations.
        return Statement(
            "SELECT l.relation, c.relkind::text, l.mode, l.granted, coalesce(t.relname, c.relname) "
            "FROM pg_catalog.pg_locks l LEFT JOIN pg_catalog.pg_class c ON c.oid = l.relation "
            "LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
            "LEFT JOIN pg_catalog.pg_index x ON x.indexrelid = c.oid "
            "LEFT JOIN pg_catalog.pg_class t ON t.oid = x.indrelid "
            f"WHERE l.locktype = 'relation' AND l.pid = {int(backend)} "
            "AND l.database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database()) "
            f"AND (c.oid IS NULL OR {self._USER_RELATION})")

    def hold_table_lock(self, schema: str, table: str, mode: str, wait_ms: int) -> list[str]:
        if mode.upper() not in ("ACCESS EXCLUSIVE", "ROW EXCLUSIVE"):
            raise ValueError(f"not a lock mode to hold: {mode!r}")
        return [f"SET LOCAL lock_timeout = {int(wait_ms)}",
                f"LOCK TABLE {_ident(schema)}.{_ident(table)} IN {mode.upper()} MODE"]

    # --- fleet scale-out: workers claim targets on a PostgreSQL control database -------------------
    # Whether this engine can be the control database of a distributed rollout.
    fleet_claims = True

    def fleet_claim(self, targets: str, batches: str, runs: str, fleet: str, run_id: int | None = None) -> Statement:
        """The oldest pending target of an open batch of this fleet's running run (of that run only,
        given ``run_id``: a dead run also still says running), row-locked; rows other workers are
        claiming right now are skipped, never waited for."""
        only_run = "" if run_id is None else "AND t.run_id = :run_id "
        return Statement(
            f"SELECT t.id, t.run_id, t.target FROM {targets} t "
            f"JOIN {batches} b ON b.run_id = t.run_id AND b.number = t.batch "
            f"JOIN {runs} r ON r.id = t.run_id "
            "WHERE t.status = 'pending' AND b.status = 'open' AND r.status = 'running' AND r.fleet = :fleet "
            f"{only_run}ORDER BY t.id LIMIT 1 FOR UPDATE OF t SKIP LOCKED",
            {"fleet": fleet, **({} if run_id is None else {"run_id": int(run_id)})},
        )

    def claim_lock(self, claim_id: int) -> Statement:
        """Held by the claiming session for as long as it works on the claim; freed when it dies."""
        return Statement("SELECT pg_advisory_lock(:ns, :id)", {"ns": FLEET_CLAIM_NAMESPACE, "id": int(claim_id)})

    def claim_unlock(self, claim_id: int) -> Statement:
        return Statement("SELECT pg_advisory_unlock(:ns, :id)", {"ns": FLEET_CLAIM_NAMESPACE, "id": int(claim_id)})

    def claim_locks_held(self) -> Statement:
        """The claim ids whose claim lock some session holds (two-int advisory keys: objsubid 2)."""
        return Statement(
            "SELECT l.objid::bigint FROM pg_catalog.pg_locks l "
            "WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2 AND l.classid::bigint = :ns "
            "AND l.database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database())",
            {"ns": FLEET_CLAIM_NAMESPACE},
        )


_LOCK_SESSIONS = """\
WITH b AS (
  SELECT pid, pg_catalog.pg_blocking_pids(pid) AS blocked_by FROM pg_catalog.pg_stat_activity
)
SELECT a.pid, a.datname, a.usename, a.application_name, a.client_addr::text AS client_addr, a.client_port,
       a.backend_type, a.state, a.wait_event_type, a.wait_event, a.backend_start,
       EXTRACT(EPOCH FROM (clock_timestamp() - a.xact_start))::float8 AS xact_age_s,
       left(a.query, :query_chars) AS query, COALESCE(r.rolsuper, false) AS superuser, b.blocked_by,
       (SELECT CASE WHEN bool_and(to_jsonb(w) ? 'waitstart')  -- PostgreSQL 14+; NULL (unknown) before
               THEN COALESCE(EXTRACT(EPOCH FROM (clock_timestamp()
                                                 - min((to_jsonb(w) ->> 'waitstart')::timestamptz)))::float8, 0)
               END  -- waitstart is set a moment after the wait begins: 0 until then
        FROM pg_catalog.pg_locks w WHERE w.pid = a.pid AND NOT w.granted) AS wait_s,
       -- How long an idle transaction has been idle, how long the running statement has run.
       CASE WHEN a.state LIKE 'idle in transaction%'
            THEN EXTRACT(EPOCH FROM (clock_timestamp() - a.state_change))::float8 END AS idle_s,
       CASE WHEN a.state = 'active'
            THEN EXTRACT(EPOCH FROM (clock_timestamp() - a.query_start))::float8 END AS busy_s
FROM pg_catalog.pg_stat_activity a
JOIN b ON b.pid = a.pid
LEFT JOIN pg_catalog.pg_roles r ON r.oid = a.usesysid
WHERE cardinality(b.blocked_by) > 0 OR a.pid IN (SELECT unnest(blocked_by) FROM b)
   OR a.pid = ANY(CAST(:extra AS integer[]))"""

# A session waiting for a row waits on the holder's transaction id, which names no table: the
# table is the one of the tuple lock the waiter holds meanwhile (PostgreSQL's row-lock protocol:
# the first waiter takes the tuple lock, then waits for the xid; the next ones queue on the tuple).
#
# Advisory and object locks name no table: ``object`` says what they lock. A bigint advisory key is
# classid (high half) and objid (low half) with objsubid 1; the two-int form is classid, objid with
# objsubid 2, each an int4 shown as an unsigned oid (bit(32) gives the signed value back). Object
# locks (a database, a role ...) are described where the object is this database's or shared.
_LOCK_ROWS = """\
SELECT l.pid, l.locktype, l.mode, l.granted, COALESCE(n.nspname, rn.nspname) AS nspname,
       COALESCE(c.relname, rc.relname) AS relname, l.virtualtransaction, l.transactionid::text AS xid,
       CASE l.locktype
         WHEN 'advisory' THEN 'advisory ' || CASE WHEN l.objsubid = 1
           THEN ((l.classid::int8 << 32) | l.objid::int8)::text
           ELSE '(' || l.classid::int8::bit(32)::int4 || ', ' || l.objid::int8::bit(32)::int4 || ')' END
         WHEN 'object' THEN COALESCE(CASE WHEN l.database IN (0, (SELECT oid FROM pg_catalog.pg_database
                                                                   WHERE datname = current_database()))
                                          THEN pg_catalog.pg_describe_object(l.classid, l.objid, l.objsubid) END,
                                     'object ' || l.classid || '/' || l.objid)
       END AS object
FROM pg_catalog.pg_locks l
LEFT JOIN pg_catalog.pg_class c ON c.oid = l.relation AND l.database IN (
  0, (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database()))
LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN LATERAL (
  SELECT t.relation FROM pg_catalog.pg_locks t
  WHERE l.locktype = 'transactionid' AND NOT l.granted AND t.pid = l.pid AND t.locktype = 'tuple' AND t.granted
    AND t.database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database())
  LIMIT 1) row_lock ON true
LEFT JOIN pg_catalog.pg_class rc ON rc.oid = row_lock.relation
LEFT JOIN pg_catalog.pg_namespace rn ON rn.oid = rc.relnamespace
WHERE l.locktype = 'relation' OR NOT l.granted OR (l.pid IS NULL AND l.locktype = 'transactionid')
   OR (l.locktype IN ('advisory', 'object') AND l.database IN (
         0, (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database())))"""

_PREPARED_XACTS = """\
SELECT p.gid, p.transaction::text AS xid, p.owner, p.database, p.prepared,
       EXTRACT(EPOCH FROM (clock_timestamp() - p.prepared))::float8 AS age_s,
       n.nspname, c.relname, l.mode
FROM pg_catalog.pg_prepared_xacts p
LEFT JOIN pg_catalog.pg_locks t
  ON t.locktype = 'transactionid' AND t.pid IS NULL AND t.transactionid = p.transaction
LEFT JOIN pg_catalog.pg_locks l
  ON l.pid IS NULL AND l.locktype = 'relation' AND l.virtualtransaction = t.virtualtransaction
  AND l.database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database())
LEFT JOIN pg_catalog.pg_class c ON c.oid = l.relation
LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"""

# Walk pg_blocking_pids upward from one pid; keep blockers that wait for nobody (pid 0: prepared).
_ROOT_BLOCKERS = """\
WITH RECURSIVE up(pid, depth, path) AS (
  SELECT b, 1, ARRAY[CAST(:pid AS integer), b] FROM unnest(pg_catalog.pg_blocking_pids(:pid)) AS b
  UNION ALL
  SELECT nb, up.depth + 1, up.path || nb
  FROM up, unnest(pg_catalog.pg_blocking_pids(up.pid)) AS nb
  WHERE up.pid <> 0 AND NOT nb = ANY(up.path) AND up.depth < :max_depth
)
SELECT DISTINCT pid FROM up
WHERE pid = 0 OR cardinality(pg_catalog.pg_blocking_pids(pid)) = 0
ORDER BY pid"""

_SIGNAL = (
    "SELECT pg_catalog.{fn}(pid) FROM pg_catalog.pg_stat_activity "
    "WHERE pid = :pid AND backend_start = CAST(:started AS timestamptz)"
)


def from_sqlalchemy(sa_dialect: Any) -> PostgresqlDialect:
    return PostgresqlDialect(tuple(getattr(sa_dialect, "server_version_info", None) or ()))


if TYPE_CHECKING:  # mypy checks that the class is a whole Dialect, and each capability it claims
    _A_WHOLE_DIALECT: Dialect = PostgresqlDialect()
    _ITS_SCRATCH_SERVER: ScratchServer = PostgresqlDialect()
    _ITS_SESSION_CONTROL: SessionControl = PostgresqlDialect()
    _ITS_LOCK_GRAPH: BlockingPidsLockGraph = PostgresqlDialect()
    _ITS_RISK_FACTS: RiskFacts = PostgresqlDialect()
    _ITS_FLEET_CLAIMS: FleetClaims = PostgresqlDialect()
    _ITS_LOCK_OBSERVATION: LockObservation = PostgresqlDialect()
