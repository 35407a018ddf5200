"""The lock each operation takes and the work it does while holding it, per engine.

Pure knowledge from the engines' documentation:

- PostgreSQL: the lock level of each ALTER TABLE form (``ALTER TABLE`` reference page: most forms
  ACCESS EXCLUSIVE; ADD FOREIGN KEY SHARE ROW EXCLUSIVE on both tables; VALIDATE CONSTRAINT SHARE
  UPDATE EXCLUSIVE), CREATE INDEX SHARE (CONCURRENTLY: SHARE UPDATE EXCLUSIVE), ADD COLUMN with a
  non-volatile default is catalog-only since PostgreSQL 11, SET NOT NULL skips its scan when a
  valid CHECK (col IS NOT NULL) exists (12+).
- MySQL 8 (docs, "Online DDL Operations"): ADD COLUMN INSTANT from 8.0.12 (any position from
  8.0.29), DROP COLUMN INSTANT from 8.0.29, RENAME COLUMN INSTANT from 8.0.28, column type changes
  COPY, NULL/NOT NULL INPLACE with a rebuild and concurrent DML, ADD FOREIGN KEY COPY unless
  foreign_key_checks=0, ADD CHECK COPY, secondary indexes INPLACE with LOCK=NONE, first FULLTEXT
  or SPATIAL index LOCK=SHARED, ADD PRIMARY KEY INPLACE with a rebuild.
- MariaDB (KB, "InnoDB Online DDL Operations with the INSTANT/INPLACE Alter Algorithm"): ADD COLUMN
  INSTANT from 10.3.2 (any position, and DROP COLUMN, from 10.4), widening VARCHAR INSTANT within its
  length-byte class (both sides up to 255 bytes, or both over), other
  type changes COPY, foreign keys COPY with foreign_key_checks on.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from dbguard.core.waitfor import mdl_blocks
from dbguard.risk.model import NO_LOCK, Context, LockHolder, LockInfo, Op, ServerInfo, TableLock

_AE, _SUE, _SRE, _SHARE, _RE = ("ACCESS EXCLUSIVE", "SHARE UPDATE EXCLUSIVE", "SHARE ROW EXCLUSIVE", "SHARE",
                                "ROW EXCLUSIVE")


def lock_for(op: Op, ctx: Context) -> LockInfo:
    if op.kind in ("begin", "commit", "set", "select", "other_ddl", "unknown"):
        return NO_LOCK
    if ctx.server.engine == "postgresql":
        return _postgresql(op, ctx)
    return _mysql(op, ctx)


def _ae(work: str = "instant", **kw: object) -> LockInfo:
    return LockInfo(mode=_AE, blocks_reads=True, blocks_writes=True, work=work, **kw)  # type: ignore[arg-type]


_TYPE = re.compile(r"^\s*([A-Z ]+?)\s*(?:\(\s*(\d+)\s*(?:,\s*(\d+))?\s*\))?\s*$")
_INT_SIZE = {"SMALLINT": 2, "INT2": 2, "TINYINT": 1, "MEDIUMINT": 3, "INT": 4, "INTEGER": 4, "INT4": 4,
             "BIGINT": 8, "INT8": 8, "SERIAL": 4, "BIGSERIAL": 8}
_TEXTY = {"VARCHAR", "CHARACTER VARYING", "TEXT", "CHAR", "CHARACTER", "NVARCHAR", "STRING"}


# Spellings of one type (the catalog's and Alembic's), reduced to one name.
_ALIAS = {"CHARACTER VARYING": "VARCHAR", "NVARCHAR": "VARCHAR", "STRING": "VARCHAR", "CHARACTER": "CHAR",
          "BPCHAR": "CHAR", "DECIMAL": "NUMERIC", "INTEGER": "INT", "INT4": "INT", "INT2": "SMALLINT",
          "INT8": "BIGINT"}


def parse_type(text: str | None) -> tuple[str, int | None, int | None] | None:
    if not text:
        return None
    m = _TYPE.match(text.upper())
    if not m:
        return None
    name = m[1].strip()
    return _ALIAS.get(name, name), int(m[2]) if m[2] else None, int(m[3]) if m[3] else None


def type_change(old: str | None, new: str | None) -> str:
    """'same', 'widen' (no data can be lost, often catalog-only), 'narrow' (data may not fit), 'other'
    or 'unknown' when the old type is not known."""
    a, b = parse_type(old), parse_type(new)
    if a is None or b is None:
        return "unknown"
    if a == b:
        return "same"
    (na, la, sa), (nb, lb, sb) = a, b
    if na in _INT_SIZE and nb in _INT_SIZE:
        # MySQL's int(11) is a display width, not a size.
        if _INT_SIZE[nb] == _INT_SIZE[na]:
            return "same"
        return "widen" if _INT_SIZE[nb] > _INT_SIZE[na] else "narrow"
    if na in _TEXTY and nb in _TEXTY:
        if nb == "TEXT" or (nb == "VARCHAR" and lb is None):
            return "widen"
        if na == "TEXT" and lb is not None:
            return "narrow"
        if la is not None and lb is not None:
            return "widen" if lb >= la else "narrow"
        return "other"
    if na == "NUMERIC" and nb == "NUMERIC":
        if la is None or lb is None:
            return "widen" if lb is None else "narrow"
        if (lb - (sb or 0)) < (la - (sa or 0)) or (sb or 0) < (sa or 0):
            return "narrow"
        return "widen" if (sb or 0) == (sa or 0) else "other"
    return "other"


def pg_catalog_only(old: str | None, new: str | None) -> bool:
    """A PostgreSQL type change that keeps the stored data as is (no rewrite, no scan).

    Verified on PostgreSQL 15 (``pg_class.relfilenode`` unchanged): varchar(50) -> varchar(500),
    -> varchar, -> text; numeric(10,2) -> numeric(12,2), -> numeric. Rewritten: varchar(500) ->
    varchar(20), text -> varchar(600), char(5) -> char(10) (stored padded), char -> varchar,
    numeric(12,2) -> numeric(8,2)."""
    change = type_change(old, new)
    if change == "same":
        return True
    if change != "widen":
        return False
    a, b = parse_type(old), parse_type(new)
    assert a is not None and b is not None
    return (a[0] in ("VARCHAR", "TEXT") and b[0] in ("VARCHAR", "TEXT")) or a[0] == b[0] == "NUMERIC"


def mysql_varchar_in_place(old: str | None, new: str | None, char_bytes: int | None) -> bool:
    """A longer VARCHAR that keeps its length byte: MariaDB INSTANT, MySQL INPLACE.

    Verified on MariaDB 10.11 (``ALGORITHM=INSTANT`` accepted or refused): utf8mb4 varchar(20) ->
    varchar(63) accepted, -> varchar(64) (256 bytes) refused, INPLACE too (a COPY); latin1 up to
    varchar(255) accepted, varchar(256) refused. Unknown charset (offline): counted as utf8mb4, the
    default of MySQL 8 and of MariaDB's packages (a scratch database here: varchar(50) -> varchar(100)
    was a COPY), so a widening is in place only when it is in place there."""
    a, b = parse_type(old), parse_type(new)
    if a is None or b is None or a[0] != "VARCHAR" or b[0] != "VARCHAR" or a[1] is None or b[1] is None:
        return False
    if b[1] < a[1]:
        return False
    width = UTF8MB4_BYTES if char_bytes is None else char_bytes
    return (a[1] * width > 255) == (b[1] * width > 255)


# Bytes per character of utf8mb4: what a column of unknown charset is counted with.
UTF8MB4_BYTES = 4


def old_type(op: Op, ctx: Context) -> str | None:
    return ctx.columns.get(op.table or "", {}).get(op.column or "")


def _postgresql(op: Op, ctx: Context) -> LockInfo:
    server: ServerInfo = ctx.server
    kind = op.kind
    if kind == "create_table":
        if op.references:
            # The new table's foreign keys take SHARE ROW EXCLUSIVE on the referenced tables, briefly.
            return LockInfo(mode=f"{_SRE} on {', '.join(op.references)}", blocks_reads=False, blocks_writes=True,
                            work="instant", other_tables=op.references)
        return NO_LOCK
    if kind in ("drop_table", "rename_table", "truncate", "drop_column", "rename_column", "drop_not_null",
                "set_default", "drop_constraint"):
        return _ae()
    if kind == "add_column":
        rewrite = op.default_volatile or op.generated_stored or (op.auto_value and (op.type or "").endswith("SERIAL"))
        if op.has_default and not server.at_least(11):
            rewrite = True
        return _ae("rewrite" if rewrite else "instant")
    if kind == "alter_type":
        return _ae("instant" if pg_catalog_only(old_type(op, ctx), op.type) else "rewrite")
    if kind == "set_not_null":
        # Already NOT NULL: nothing to check. A validated CHECK (col IS NOT NULL) skips the scan (12+).
        checked = (op.table, op.column) in ctx.not_null_columns or (
            (op.table, op.column) in ctx.not_null_checks and server.at_least(12))
        return _ae("instant" if checked else "scan")
    if kind == "add_constraint":
        if op.constraint == "foreign_key":
            others = (op.ref_table,) if op.ref_table else ()
            return LockInfo(mode=_SRE, blocks_reads=False, blocks_writes=True,
                            work="instant" if op.not_valid else "scan", other_tables=others)
        if op.constraint in ("unique", "primary_key"):
            return _ae("instant" if op.using_index else "index")
        return _ae("instant" if op.not_valid else "scan")
    if kind == "validate_constraint":
        return LockInfo(mode=_SUE, blocks_reads=False, blocks_writes=False, work="scan")
    if kind == "create_index":
        if op.concurrently:
            return LockInfo(mode=_SUE, blocks_reads=False, blocks_writes=False, work="index")
        if op.note == "REINDEX":
            return LockInfo(mode=f"{_SHARE} (table), {_AE} (index)", blocks_reads=True, blocks_writes=True,
                            work="index")
        return LockInfo(mode=_SHARE, blocks_reads=False, blocks_writes=True, work="index")
    if kind == "drop_index":
        if op.concurrently:
            return LockInfo(mode=_SUE, blocks_reads=False, blocks_writes=False, work="instant")
        return _ae()
    if kind in ("update", "delete", "insert"):
        return LockInfo(mode=f"{_RE} + row locks", blocks_reads=False, blocks_writes=False, work="dml")
    if kind == "lock_table":
        mode = (op.value or _AE).upper()
        return LockInfo(mode=mode, blocks_reads=mode == _AE,
                        blocks_writes=mode in (_SHARE, _SRE, "EXCLUSIVE", _AE), work="instant")
    if kind == "rewrite_table":
        return _ae("rewrite")
    if kind == "create_view":
        # The view itself: ACCESS EXCLUSIVE (a new one blocks nobody; OR REPLACE blocks its readers);
        # a populated materialized view is written while its query reads every row of its tables.
        return _ae("rewrite" if op.value == "materialized" else "instant")
    if kind == "refresh_view":
        # CONCURRENTLY: EXCLUSIVE, readers go on; otherwise ACCESS EXCLUSIVE while it is rebuilt.
        return LockInfo(mode="EXCLUSIVE", blocks_reads=False, blocks_writes=True, work="rewrite") \
            if op.concurrently else _ae("rewrite")
    return NO_LOCK


_MDL = "metadata lock"
# Verified on PostgreSQL 15 (pg_locks inside the transaction): CREATE [MATERIALIZED] VIEW and REFRESH
# take ACCESS SHARE on every table the query reads (a materialized one for as long as it reads them);
# ALTER SEQUENCE and setval lock the sequence alone, never the table that owns it.
_READS_ROWS = LockInfo(mode="ACCESS SHARE", blocks_reads=False, blocks_writes=False, work="scan")
_READS_DEFINITION = LockInfo(mode="ACCESS SHARE", blocks_reads=False, blocks_writes=False, work="instant")
_NEW_TABLE = LockInfo(mode=_AE, blocks_reads=True, blocks_writes=True, work="instant")


def locked_tables(op: Op, lock: LockInfo, ctx: Context) -> tuple[TableLock, ...]:
    """Every table ``op`` locks, each with its own lock: the statement's table and, on PostgreSQL,
    the tables its foreign keys reference (ALTER TABLE reference page: ADD FOREIGN KEY takes SHARE ROW
    EXCLUSIVE on the referenced table, VALIDATE of a foreign key ROW SHARE; DROP TABLE of a
    referencing table takes ACCESS EXCLUSIVE on the parent to drop its triggers)."""
    out: list[TableLock] = []
    if op.kind in ("create_view", "refresh_view") and ctx.server.engine != "postgresql":
        return ()
    if op.kind == "create_table" and op.table:
        out.append(TableLock(op.table, _NEW_TABLE if ctx.server.engine == "postgresql"
                             else LockInfo(mode=f"{_MDL} (exclusive)", blocks_reads=True, blocks_writes=True),
                             new=True))
    elif op.kind == "create_view" and op.table:
        # A view nobody has yet (OR REPLACE of one the history or the catalog knows keeps its readers).
        out.append(TableLock(op.table, lock, ctx.is_new(op.table) or op.table not in ctx.existing))
    elif op.table and lock.work != "none":
        out.append(TableLock(op.table, lock, ctx.is_new(op.table)))
    if ctx.server.engine != "postgresql":
        return tuple(out)
    others: list[tuple[str, LockInfo]] = []
    if op.kind == "create_table":
        others = [(t, LockInfo(mode=_SRE, blocks_reads=False, blocks_writes=True)) for t in op.references]
    elif op.kind == "add_constraint" and op.constraint == "foreign_key" and op.ref_table:
        others = [(op.ref_table, LockInfo(mode=_SRE, blocks_reads=False, blocks_writes=True, work=lock.work))]
    elif op.kind == "validate_constraint" and (op.constraint_name or "") in ctx.foreign_keys:
        others = [(ctx.foreign_keys[op.constraint_name or ""][1],
                   LockInfo(mode="ROW SHARE", blocks_reads=False, blocks_writes=False, work="scan"))]
    elif op.kind == "drop_table" and op.table:
        others = [(t, _ae()) for t in sorted(ctx.parents.get(op.table, ()))]
    elif op.kind == "create_view":
        reads = _READS_ROWS if op.value == "materialized" else _READS_DEFINITION
        others = [(t, reads) for t in op.references]
    elif op.kind == "refresh_view" and op.table:
        others = [(t, _READS_ROWS) for t in ctx.view_sources.get(op.table, ())]
    out += [TableLock(t, info, ctx.is_new(t)) for t, info in others if t != op.table]
    return tuple(out)


def _mysql_lock(algorithm: str, work: str, concurrent_dml: bool, op: Op) -> LockInfo:
    blocks_writes, blocks_reads = not concurrent_dml, False
    explicit_alg = (op.algorithm or "").upper()
    if explicit_alg == "COPY":
        algorithm, work, blocks_writes = "COPY", "rewrite", True
    lock_clause = (op.lock_clause or "").upper()
    if lock_clause == "EXCLUSIVE":
        blocks_reads = blocks_writes = True
    elif lock_clause == "SHARED":
        blocks_writes = True
    mode = f"{_MDL} (exclusive at start and end), LOCK={'EXCLUSIVE' if blocks_reads else 'SHARED' if blocks_writes else 'NONE'}"
    return LockInfo(mode=mode, blocks_reads=blocks_reads, blocks_writes=blocks_writes, work=work, algorithm=algorithm,
                    exclusive_briefly=True)


def _mysql(op: Op, ctx: Context) -> LockInfo:
    server = ctx.server
    maria = server.flavor == "mariadb"
    kind = op.kind
    if kind == "create_table":
        return NO_LOCK
    if kind in ("drop_table", "truncate", "rename_table"):
        return LockInfo(mode=f"{_MDL} (exclusive)", blocks_reads=True, blocks_writes=True, work="instant")
    if kind == "add_column":
        if op.auto_value and not op.has_default and op.type and not op.generated_stored:
            # An AUTO_INCREMENT column: in place with a rebuild, no concurrent DML.
            return _mysql_lock("INPLACE", "rewrite", False, op)
        if op.generated_stored:
            return _mysql_lock("COPY", "rewrite", False, op)
        instant = server.at_least(10, 3, 2) if maria else server.at_least(8, 0, 12)
        return _mysql_lock("INSTANT", "instant", True, op) if instant else _mysql_lock("INPLACE", "rewrite", True, op)
    if kind == "drop_column":
        instant = server.at_least(10, 4) if maria else server.at_least(8, 0, 29)
        return _mysql_lock("INSTANT", "instant", True, op) if instant else _mysql_lock("INPLACE", "rewrite", True, op)
    if kind == "rename_column":
        return _mysql_lock("INSTANT" if maria or server.at_least(8, 0, 28) else "INPLACE", "instant", True, op)
    if kind in ("set_default", "drop_constraint", "drop_index"):
        return _mysql_lock("INPLACE" if kind == "drop_index" else "INSTANT", "instant", True, op)
    if kind in ("set_not_null", "drop_not_null"):
        return _mysql_lock("INPLACE", "rewrite", True, op)
    if kind == "alter_type":
        change = type_change(old_type(op, ctx), op.type)
        if change == "same":
            was_nullable = (op.table, op.column) not in ctx.not_null_columns
            if op.nullable is not None and op.nullable == was_nullable:
                # MODIFY/CHANGE restating the column as it is (a rename, a comment): metadata only.
                return _mysql_lock("INSTANT" if maria or server.at_least(8, 0, 28) else "INPLACE", "instant", True, op)
            # Only NULL/NOT NULL changes: in place with a rebuild, concurrent DML allowed.
            return _mysql_lock("INPLACE", "rewrite", True, op)
        before = old_type(op, ctx)
        if change == "widen" and mysql_varchar_in_place(before, op.type,
                                                        ctx.char_bytes.get((op.table or "", op.column or ""))):
            # Longer VARCHAR within the same length-byte class: catalog only (MySQL INPLACE, MariaDB INSTANT).
            return _mysql_lock("INSTANT" if maria else "INPLACE", "instant", True, op)
        return _mysql_lock("COPY", "rewrite", False, op)
    if kind == "add_constraint":
        if op.constraint in ("foreign_key", "check"):
            return _mysql_lock("COPY", "rewrite", False, op)
        if op.constraint == "primary_key":
            return _mysql_lock("INPLACE", "rewrite", True, op)
        return _mysql_lock("INPLACE", "index", True, op)
    if kind == "create_index":
        if op.index_kind == "fulltext":
            # Verified on MariaDB 10.11: every FULLTEXT build needs LOCK=SHARED, and the table's first
            # rebuilds it (InnoDB adds its hidden FTS_DOC_ID column: a new table id), later ones do not.
            first = op.table not in ctx.fulltext_tables
            return _mysql_lock("INPLACE", "rewrite" if first else "index", False, op)
        if op.index_kind == "spatial":
            return _mysql_lock("INPLACE", "index", False, op)
        return _mysql_lock("INPLACE", "index", True, op)
    if kind in ("update", "delete", "insert"):
        return LockInfo(mode="row locks", blocks_reads=False, blocks_writes=False, work="dml")
    if kind == "lock_table":
        write = (op.value or "").upper() == "WRITE"
        return LockInfo(mode=f"LOCK TABLES {op.value}", blocks_reads=write, blocks_writes=True, work="instant")
    if kind == "rewrite_table":
        return _mysql_lock("COPY", "rewrite", False, op)
    return NO_LOCK


# Rough throughput per work kind, to turn a table's size into a lock hold estimate. An order of
# magnitude on commodity disks, not a promise: the plan prints it as "~".
_BYTES_PER_S = {"scan": 200e6, "index": 40e6, "rewrite": 25e6}
_ROWS_PER_S = 20_000.0
INSTANT_S = 0.01


def estimate_hold(lock: LockInfo, rows: int | None, size_bytes: int | None, new_table: bool = False) -> float | None:
    """Seconds the lock is held, or None when it scales with a size nobody knows."""
    if lock.work in ("none", "instant") or new_table:
        return INSTANT_S if lock.work != "none" else 0.0
    if lock.work == "dml":
        return None if rows is None else max(INSTANT_S, rows / _ROWS_PER_S)
    if size_bytes is None:
        return None
    return max(INSTANT_S, size_bytes / _BYTES_PER_S[lock.work])


def describe_hold(seconds: float | None, work: str) -> str:
    if seconds is None:
        return f"unknown: {work} scales with the table's size"
    if seconds <= INSTANT_S:
        return "instant (catalog only)" if work != "none" else "none"
    if seconds < 1:
        return f"~{seconds * 1000:.0f} ms ({work})"
    if seconds < 120:
        return f"~{seconds:.0f} s ({work})"
    return f"~{seconds / 60:.0f} min ({work})"


# PostgreSQL's table-level lock modes, weakest first, and which modes each conflicts with
# ("Explicit Locking", table 13.2). A queued request conflicts the same way as a granted one: the
# plan's statement waits behind both.
_PG_LEVEL = {"accessshare": 1, "rowshare": 2, "rowexclusive": 3, "shareupdateexclusive": 4, "share": 5,
             "sharerowexclusive": 6, "exclusive": 7, "accessexclusive": 8}
_PG_CONFLICTS = {1: {8}, 2: {7, 8}, 3: {5, 6, 7, 8}, 4: {4, 5, 6, 7, 8}, 5: {3, 4, 6, 7, 8},
                 6: {3, 4, 5, 6, 7, 8}, 7: {2, 3, 4, 5, 6, 7, 8}, 8: {1, 2, 3, 4, 5, 6, 7, 8}}


def pg_level(mode: str | None) -> int | None:
    """The level of a PostgreSQL table lock, from the plan's words ("SHARE ROW EXCLUSIVE on users",
    "ROW EXCLUSIVE + row locks": the statement's own table's lock) or pg_locks' ("ShareLock")."""
    if not mode:
        return None
    own = re.split(r" on |\(|\+|,", mode, maxsplit=1)[0]
    key = own.lower().replace(" ", "").replace("_", "")
    return _PG_LEVEL.get(key.removesuffix("lock")) if key != "lock" else None


def conflicting_holders(lock: LockInfo, holders: Sequence[LockHolder], engine: str) -> tuple[LockHolder, ...]:
    """The sessions whose held (or awaited) locks conflict with ``lock``: the statement waits for them.

    A holder whose mode is unknown conflicts only with a lock that conflicts with every mode
    (ACCESS EXCLUSIVE; the exclusive metadata lock of MySQL/MariaDB DDL)."""
    if engine == "postgresql":
        want = pg_level(lock.mode)
        if want is None:
            return ()
        found = []
        for h in holders:
            levels = [level for level in (pg_level(m) for m in (h.mode or "").split(",")) if level is not None]
            if any(level in _PG_CONFLICTS[want] for level in levels) or (not levels and want == 8):
                found.append(h)
        return tuple(found)
    # MySQL/MariaDB: DDL takes the exclusive metadata lock, at least at its start and end, and that
    # conflicts with any table metadata lock; DML's shared ones conflict only with DDL and LOCK TABLES.
    if not lock.queues:
        return ()
    return tuple(h for h in holders
                 if any(mdl_blocks(m.strip(), h.granted, "EXCLUSIVE") for m in (h.mode or "").split(",")))
