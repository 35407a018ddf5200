"""What a migration's statements lock and rewrite, as the server says (``plan --observe``).

The guarded run on a scratch database hands a :class:`LockObserver` to its step tracker, whose
cursor listeners call :meth:`LockObserver.before` and :meth:`LockObserver.after` around every
statement of a revision. Inside a transaction the locks are read after the statement, on the
migration's own connection: the transaction still holds them then, and the new relfilenode of an
uncommitted rewrite is visible there only. Those reads go through the raw DBAPI cursor, so that
SQLAlchemy's listeners (ours among them) never see them and nothing recurses.

A statement outside a transaction (an autocommit block: CREATE INDEX CONCURRENTLY) holds its lock
only while it runs, so a blocker session makes it wait first, and a watcher thread on a second
connection reads the migration backend's locks while it waits, then lets it go (bounded)."""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from dbguard.db.sql import run, run_statements
from dbguard.dialects import LockObservation

# How long the watcher waits to see an autocommit statement's lock before it lets the statement go.
WATCH_BOUND_S = 5.0
_POLL_S = 0.005
# Relations whose own lock is a table's lock: tables, partitioned tables, materialized views, views.
_TABLE_KINDS = ("r", "p", "m", "v")


@dataclasses.dataclass
class RevisionSeen:
    """One revision as observed: per table the strongest lock level seen and whether it was rewritten."""

    revision: str
    locks: dict[str, str] = dataclasses.field(default_factory=dict)  # table -> pg_locks mode
    rewritten: set[str] = dataclasses.field(default_factory=set)
    notes: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass(frozen=True)
class _Relation:
    kind: str
    node: int  # relfilenode
    table_oid: int
    table: str  # its own name, or its index's table's
    schema: str
    name: str


@dataclasses.dataclass
class _Watch:
    thread: threading.Thread
    blocker: Any
    table: str
    seen: list[tuple[Any, ...]] = dataclasses.field(default_factory=list)
    found: bool = False


class LockObserver:
    """Records per revision the table locks the migration's backend took and the relations it rewrote.

    ``classify(sql)`` gives (table, index, concurrently, kind) of a statement (dbguard.risk.parse), for
    the blocker to lock; ``level(mode)`` orders lock modes (strongest wins)."""

    def __init__(self, dialect: LockObservation, engine: sa.engine.Engine, classify: Callable[[str], tuple[Any, ...]],
                 level: Callable[[str], int]) -> None:
        self.dialect = dialect
        self.revisions: dict[str, RevisionSeen] = {}
        self._classify, self._level = classify, level
        # The scratch database's engine, for the blocker and the watcher (disposed by its owner).
        self._engine = engine
        self._backend: dict[int, int] = {}
        self._before: dict[int, _Relation] = {}  # by oid, read before the statement
        # Per revision, the name each relation had when the revision first saw it: a table the revision
        # renames is the plan's old name, and a dropped one is still named.
        self._names: dict[int, tuple[str, str]] = {}  # oid -> (relkind, table name)
        self._revision: str | None = None
        self._truncate = False
        self._watch: _Watch | None = None

    # --- called by the tracker's cursor listeners ---------------------------------------------------

    def before(self, conn: Any, statement: str, revision: str) -> None:
        seen = self.revisions.setdefault(revision, RevisionSeen(revision))
        if revision != self._revision:
            self._revision, self._names = revision, {}
        try:
            self._finish_watch(seen)  # a statement that failed never reached after()
            self._before = self._relations(conn)
            table, index, concurrently, kind = self._classify(statement)
            # TRUNCATE gives the table a new, empty relfilenode: no copy of its rows, not a rewrite.
            self._truncate = kind == "truncate"
            if _autocommit(conn):
                self._start_watch(conn, table, index, concurrently)
        except Exception as exc:  # noqa: BLE001 - observing must never fail the migration
            seen.notes.append(f"not read before a statement: {type(exc).__name__}: {_first_line(exc)}")

    def after(self, conn: Any, statement: str, revision: str) -> None:
        seen = self.revisions.setdefault(revision, RevisionSeen(revision))
        try:
            if _autocommit(conn):
                self._finish_watch(seen)
            else:
                # The transaction holds every lock its statements took until it ends: read them now.
                self._take(seen, _fetch(conn, self.dialect.backend_relation_locks(self._pid(conn))))
            after = self._relations(conn)
            for oid, rel in self._before.items():
                # A table's rows copied to a new file (an index rebuilt is not the table's rewrite).
                if (rel.kind in _TABLE_KINDS and oid in after and after[oid].node != rel.node and rel.node != 0
                        and not self._truncate):
                    seen.rewritten.add(self._names.get(oid, (rel.kind, rel.table))[1])
        except Exception as exc:  # noqa: BLE001 - observing must never fail the migration
            seen.notes.append(f"not read after a statement: {type(exc).__name__}: {_first_line(exc)}")

    def close(self) -> None:
        """Let a statement still held go and wait for the watcher (a run that stopped mid-statement)."""
        with contextlib.suppress(Exception):
            self._finish_watch(None)

    # --- reading -------------------------------------------------------------------------------

    def _pid(self, conn: Any) -> int:
        key = id(_dbapi(conn))
        if key not in self._backend:
            self._backend[key] = int(_fetch(conn, self.dialect.backend_id())[0][0])
        return self._backend[key]

    def _relations(self, conn: Any) -> dict[int, _Relation]:
        found = {int(oid): _Relation(str(kind), int(node or 0), int(table_oid), str(table), str(schema), str(name))
                 for oid, kind, node, table_oid, table, schema, name
                 in _fetch(conn, self.dialect.observed_relations())}
        for oid, rel in found.items():
            self._names.setdefault(oid, (rel.kind, rel.table))
        return found

    def _take(self, seen: RevisionSeen, rows: list[Any]) -> None:
        for oid, kind, mode, _granted, current in rows:
            known = self._names.get(int(oid))
            if known is not None:
                kind, table = known
            elif kind is None:
                continue  # neither visible now nor seen before: not a relation of this revision's
            else:
                table = current
            # An index's own lock is not its table's: CREATE INDEX holds ACCESS EXCLUSIVE on the index it
            # builds while the table has SHARE. The table's lock is on the table itself.
            if kind not in _TABLE_KINDS:
                continue
            mode = str(mode)
            if table not in seen.locks or self._level(mode) > self._level(seen.locks[table]):
                seen.locks[table] = mode

    # --- autocommit statements: a blocker makes them wait, a watcher reads their lock meanwhile -----

    def _start_watch(self, conn: Any, table: str | None, index: str | None, concurrently: bool) -> None:
        located = self._locate(table, index)
        if located is None:
            return  # a statement on no existing table (CREATE TABLE ...): nothing to make it wait on
        schema, name = located
        pid = self._pid(conn)
        # CONCURRENTLY builds and drops wait for every writer while already holding their SHARE UPDATE
        # EXCLUSIVE: a ROW EXCLUSIVE holder makes them wait with it granted. Any other statement's lock
        # conflicts with ACCESS EXCLUSIVE: pg_locks shows it requested, not granted.
        mode = "ROW EXCLUSIVE" if concurrently else "ACCESS EXCLUSIVE"
        blocker = self._engine.connect()
        try:
            blocker.begin()
            run_statements(blocker, self.dialect.hold_table_lock(schema, name, mode, 2000))
        except Exception:
            blocker.close()
            raise
        watch = _Watch(thread=threading.Thread(), blocker=blocker, table=name)
        watch.thread = threading.Thread(target=self._watcher, args=(watch, pid), name="dbguard-observe", daemon=True)
        self._watch = watch
        watch.thread.start()

    def _locate(self, table: str | None, index: str | None) -> tuple[str, str] | None:
        """(schema, table) to hold the blocker's lock on: the statement's table, or its index's."""
        by_name = {rel.name: rel for rel in self._before.values()}
        for name in (table, index):
            rel = by_name.get(name or "")
            if rel is not None:
                return rel.schema, rel.table
        return None

    def _watcher(self, watch: _Watch, pid: int) -> None:
        """Poll the backend's locks until its lock on the blocked table shows (granted or awaited),
        keep what it holds then, and end the blocker's transaction; at most WATCH_BOUND_S."""
        deadline = time.monotonic() + WATCH_BOUND_S
        try:
            with self._engine.connect() as conn:
                conn.execution_options(isolation_level="AUTOCOMMIT")
                while time.monotonic() < deadline:
                    rows = [tuple(r) for r in run(conn, self.dialect.backend_relation_locks(pid)).fetchall()]
                    if any(t == watch.table and kind in _TABLE_KINDS for _oid, kind, _m, _g, t in rows):
                        watch.seen, watch.found = rows, True
                        break
                    time.sleep(_POLL_S)  # polling the server, not waiting for a thread of ours
        except Exception:  # noqa: BLE001, S110 - the statement must go on; after() says nothing was seen
            pass
        finally:
            with contextlib.suppress(Exception):
                watch.blocker.rollback()
            with contextlib.suppress(Exception):
                watch.blocker.close()

    def _finish_watch(self, seen: RevisionSeen | None) -> None:
        watch, self._watch = self._watch, None
        if watch is None:
            return
        watch.thread.join(WATCH_BOUND_S + 1)
        if seen is None:
            return
        if watch.found:
            self._take(seen, watch.seen)
        else:
            seen.notes.append(f"the lock of a statement outside a transaction on {watch.table} was not seen "
                              f"within {WATCH_BOUND_S:g} s")


def _dbapi(conn: Any) -> Any:
    return conn.connection.dbapi_connection


def _fetch(conn: Any, stmt: Any) -> list[Any]:
    """A statement of dbguard's own (no parameters) on the migration's DBAPI connection: in its
    transaction when one is open, unseen by SQLAlchemy's listeners."""
    cursor = _dbapi(conn).cursor()
    try:
        cursor.execute(stmt.sql)
        return list(cursor.fetchall())
    finally:
        cursor.close()


def _autocommit(conn: Any) -> bool:
    return bool(conn.get_execution_options().get("isolation_level") == "AUTOCOMMIT")


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [""])[0][:200]
