"""Lock inspection and ending sessions, on dbguard's own connection.

- :func:`inspect_locks`: the wait-for tree of one database, root blockers first (``dbguard locks``).
- :func:`root_blockers_of_session` (PostgreSQL) and :func:`root_blockers_of_table` (MySQL/MariaDB,
  where a waiting DDL's own request is invisible, so its table must be known): for the rollback lane,
  to call from a second connection *while* its DDL waits (after a lock timeout the edges are gone).
- :func:`tables_in_statement`: the tables a statement touches, parsed with sqlglot (imported lazily).
- :func:`end_sessions`: end sessions under the kill policy (:mod:`dbguard.core.victims`), with audit.

Engine SQL comes from the dialect; this module asks ``dialect.lock_graph`` which graph it can build
(:class:`~dbguard.dialects.BlockingPidsLockGraph` or :class:`~dbguard.dialects.MetadataLockGraph`).
"""

from __future__ import annotations

import dataclasses
import functools
import re
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Any, Protocol

from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from dbguard import faultpoints
from dbguard.core import sessionview, waitfor
from dbguard.core import victims as policy_mod
from dbguard.core.victims import Action, Candidate, KillPolicy, Verdict, action_words
from dbguard.db.connect import first_line
from dbguard.db.sql import run
from dbguard.db.waits import retried_reads, wait_until
from dbguard.dialects import (
    BlockingPidsLockGraph,
    Dialect,
    MetadataLockGraph,
    SessionControl,
    blocking_pids_lock_graph_of,
    metadata_lock_graph_of,
    session_control_of,
)
from dbguard.errors import ConfigError, PrivilegeError
from dbguard.masking import mask
from dbguard.results import KillOutcome, LockRef, LockSession, LockTree

QUERY_CHARS = 200
_POLL_S = 0.01
# How long to watch a terminated session disappear before reporting it as signalled only.
TERMINATE_WAIT_S = 2.0

class Audit(Protocol):
    """The kill audit: a record of intent written before a session is signalled, completed after."""

    def intend(self, session: LockSession, action: str) -> int | str:
        """Write who is about to end ``session`` and how; the record's id (a ``dbguard_kills`` id, or
        a local audit file's record id). Raises if it cannot."""
        ...

    def complete(self, record_id: int | str, action: str, outcome: str) -> None:
        """What was done and what came of it."""
        ...


# The outcome an audit record says until the attempt it announces has ended.
SIGNALLING = "signalling"


# --- privileges ------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class LockRights:
    superuser: bool
    can_read_all: bool
    can_signal_others: bool
    read_grant: str
    signal_grant: str


def lock_rights(conn: Connection, dialect: Dialect, user: str | None) -> LockRights:
    """What dbguard's role may see and end; each missing right comes with the grant that gives it."""
    user = user or "CURRENT_USER"
    control = session_control_of(dialect)
    read_grant, signal_grant = control.read_grant_hint(user), control.signal_grant_hint(user)
    if dialect.lock_graph == "blocking_pids":
        pg = blocking_pids_lock_graph_of(dialect)
        superuser, read_all, signal = run(conn, pg.lock_privileges()).one()
        return LockRights(bool(superuser), bool(superuser or read_all), bool(superuser or signal),
                          read_grant, signal_grant)
    mdl = metadata_lock_graph_of(dialect)
    privileges = {str(p).upper() for p in run(conn, mdl.lock_privileges()).scalars()}
    try:
        run(conn, mdl.read_privilege_probe()).scalar()
        can_read = True
    except DBAPIError as exc:
        if not mdl.is_privilege_error(exc):
            raise
        can_read = False
    signal = bool(privileges & mdl.signal_privileges)
    return LockRights(False, can_read, signal, read_grant, signal_grant)


def require_read(rights: LockRights, user: str | None) -> None:
    if not rights.can_read_all:
        raise PrivilegeError(
            f"{user or 'this user'} cannot see other sessions' locks, state and queries: {rights.read_grant}"
        )


# --- statements ------------------------------------------------------------------------------------

_FIRST_WORDS = re.compile(r"^\s*(?:/\*.*?\*/\s*)*([a-zA-Z]+)(?:\s+([a-zA-Z]+))?(?:\s+([a-zA-Z]+))?", re.DOTALL)
_TABLE_AFTER = re.compile(
    r"^\s*(?:alter|drop|truncate|lock)\s+(?:online\s+|ignore\s+)?(?:table|tables)?\s*(?:if\s+exists\s+)?"
    r"((?:[`\"]?[\w$]+[`\"]?\.)?[`\"]?[\w$]+[`\"]?)",
    re.IGNORECASE,
)


_RENAME_PAIR = re.compile(r"((?:[`\"]?[\w$]+[`\"]?\.)?[`\"]?[\w$]+[`\"]?)\s+to\s+"
                          r"((?:[`\"]?[\w$]+[`\"]?\.)?[`\"]?[\w$]+[`\"]?)", re.IGNORECASE)


def statement_kind(sql: str | None) -> str | None:
    """The statement's leading keyword(s), lower case: ``alter``, ``select``, ``create index`` ..."""
    if not sql:
        return None
    m = _FIRST_WORDS.match(sql)
    if not m:
        return None
    first, second, third = (w.lower() if w else "" for w in m.groups())
    if first == "create" and (second == "index" or third == "index"):
        return "create index"
    if first == "lock" and second in ("table", "tables"):
        return "lock tables write" if re.search(r"\bwrite\b", sql, re.IGNORECASE) else "lock tables read"
    return first


def tables_in_statement(sql: str, dialect: Dialect | str,
                        default_schema: str | None = None) -> tuple[tuple[str, str], ...]:
    """``(schema, table)`` pairs a statement names, with unqualified names in ``default_schema``.

    Parsed with sqlglot in the engine's dialect (``dialect.sqlglot_dialect``, or sqlglot's name of
    it as given); CTE names are left out.
    A statement sqlglot cannot read falls back to the name after ALTER/DROP/TRUNCATE TABLE.
    An unqualified name with no ``default_schema`` comes back with an empty schema.
    """
    read = dialect if isinstance(dialect, str) else dialect.sqlglot_dialect
    return _tables_in_statement(sql, read, default_schema)


# A watch reads the same waiting statements at every refresh: parsing each once, not every time, is
# most of a MariaDB refresh's Python time. Bounded, as statements can be long.
@functools.lru_cache(maxsize=256)
def _tables_in_statement(sql: str, read: str | None, default_schema: str | None) -> tuple[tuple[str, str], ...]:
    import sqlglot
    from sqlglot import expressions as exp

    from dbguard.risk.parse import quiet_sqlglot

    found: dict[tuple[str, str], None] = {}
    try:
        with quiet_sqlglot():
            trees = sqlglot.parse(sql, read=read)
    except Exception:  # noqa: BLE001 - sqlglot raises several error types; the fallback below covers all
        trees = []
    for tree in trees:
        if tree is None or isinstance(tree, exp.Command):
            continue
        ctes = {cte.alias_or_name for cte in tree.find_all(exp.CTE)}
        for table in tree.find_all(exp.Table):
            name = table.name
            if not name or (not table.db and name in ctes):
                continue
            found.setdefault((table.db or default_schema or "", name), None)
    if not found and statement_kind(sql) == "rename":
        for pair in _RENAME_PAIR.finditer(sql):
            for name in pair.groups():
                found.setdefault(_split_table(name, default_schema or ""), None)
    if not found:
        m = _TABLE_AFTER.match(sql)
        if m:
            found[_split_table(m.group(1), default_schema or "")] = None
    return tuple(found)


def _split_table(table: str, default_schema: str) -> tuple[str, str]:
    parts = [p.strip('`"') for p in table.split(".")]
    return (parts[0], parts[1]) if len(parts) == 2 else (default_schema, parts[0])


def _short(query: str | None, secrets: Iterable[str | None]) -> str | None:
    """The query on one line, cut at the end of a token within QUERY_CHARS, then masked (the one
    place a tree's queries are masked): a word is never cut in two, so neither is a secret in one."""
    if query is None:
        return None
    text = " ".join(query.split())
    if len(text) > QUERY_CHARS:
        cut = text[: QUERY_CHARS - 1]
        if text[QUERY_CHARS - 1] != " " and " " in cut:
            cut = cut.rsplit(" ", 1)[0]  # a token longer than the whole limit is cut where it must be
        text = cut.rstrip() + "…"
    return mask(text, secrets)


# --- PostgreSQL: pg_blocking_pids ------------------------------------------------------------------


def _pg_kind(backend_type: str | None, query: str | None) -> str:
    if backend_type in (None, "client backend"):
        return policy_mod.Kind.CLIENT.value
    if backend_type == "autovacuum worker":
        if query and "to prevent wraparound" in query:
            return policy_mod.Kind.AUTOVACUUM_WRAPAROUND.value
        return policy_mod.Kind.AUTOVACUUM.value
    if backend_type in ("walsender", "walreceiver", "logical replication worker", "logical replication launcher"):
        return policy_mod.Kind.REPLICATION.value
    return policy_mod.Kind.BACKGROUND.value


def _pg_state(state: str | None, wait_event_type: str | None) -> str:
    if wait_event_type == "Lock":
        return policy_mod.Activity.WAITING.value
    return state or policy_mod.Activity.UNKNOWN.value


def _pg_snapshot(
    conn: Connection, dialect: BlockingPidsLockGraph, database: str, secrets: Iterable[str | None],
    extra_ids: Collection[str] = (),
) -> tuple[dict[str, LockSession], dict[str, list[LockRef]]]:
    """Every session in a wait relation (and ``extra_ids``), and prepared transactions named ``prepared:gid``."""
    secrets = list(secrets)
    stmt = dialect.lock_sessions(QUERY_CHARS + 50, [int(i) for i in extra_ids if str(i).isdigit()])
    rows = run(conn, stmt).mappings().all()
    lock_rows = run(conn, dialect.lock_rows()).mappings().all()

    locks: dict[str, list[LockRef]] = {}
    wanted_rel: dict[str, set[tuple[str, str]]] = {}
    wanted_xid: dict[str, set[str]] = {}
    for r in lock_rows:
        table = f"{r['nspname']}.{r['relname']}" if r["relname"] else None
        if r["pid"] is None:
            continue
        sid = str(r["pid"])
        locks.setdefault(sid, []).append(LockRef(mode=r["mode"], granted=bool(r["granted"]), table=table,
                                                 locktype=r["locktype"], object=r["object"]))
        if not r["granted"]:
            if r["relname"]:
                wanted_rel.setdefault(sid, set()).add((r["nspname"], r["relname"]))
            if r["xid"]:
                wanted_xid.setdefault(sid, set()).add(r["xid"])

    sessions: dict[str, LockSession] = {}
    prepared_needed = any(0 in (r["blocked_by"] or ()) for r in rows)
    prepared: dict[str, dict[str, Any]] = {}
    if prepared_needed:
        for p in run(conn, dialect.prepared_transactions()).mappings():
            entry = prepared.setdefault(f"prepared:{p['gid']}", {"row": p, "tables": set(), "locks": []})
            if p["relname"]:
                entry["tables"].add((p["nspname"], p["relname"]))
                entry["locks"].append(LockRef(mode=p["mode"], granted=True, table=f"{p['nspname']}.{p['relname']}"))

    for r in rows:
        sid = str(r["pid"])
        blocked_by: list[str] = []
        for b in r["blocked_by"] or ():
            if b != 0:
                blocked_by.append(str(b))
                continue
            # pid 0: a prepared transaction; match it by the table (or transaction id) waited for.
            matches = [pid for pid, e in prepared.items()
                       if e["row"]["database"] == database
                       and (e["tables"] & wanted_rel.get(sid, set())
                            or e["row"]["xid"] in wanted_xid.get(sid, set()))]
            blocked_by.extend(matches or [pid for pid, e in prepared.items() if e["row"]["database"] == database])
        client = None
        if r["client_addr"]:
            client = f"{r['client_addr'].split('/')[0]}:{r['client_port']}"
        elif r["client_port"] == -1:
            client = "local socket"
        sessions[sid] = LockSession(
            session_id=sid,
            kind=_pg_kind(r["backend_type"], r["query"]),
            user=r["usename"],
            application=r["application_name"] or None,
            client=client,
            database=r["datname"],
            state=_pg_state(r["state"], r["wait_event_type"]),
            xact_age_s=None if r["xact_age_s"] is None else round(float(r["xact_age_s"]), 3),
            query=_short(r["query"], secrets),
            blocked_by=tuple(dict.fromkeys(blocked_by)),
            privileged=bool(r["superuser"]),
            identity=r["backend_start"].isoformat() if r["backend_start"] is not None else None,
            wait_s=None if r["wait_s"] is None else round(float(r["wait_s"]), 3),
            idle_s=None if r["idle_s"] is None else round(float(r["idle_s"]), 3),
            busy_s=None if r["busy_s"] is None else round(float(r["busy_s"]), 3),
            default_database=r["datname"],
        )
    for pid, e in prepared.items():
        p = e["row"]
        gid = p["gid"]
        sessions[pid] = LockSession(
            session_id=pid, kind=policy_mod.Kind.PREPARED.value, user=p["owner"], application=None, client=None,
            database=p["database"], state="prepared",
            xact_age_s=None if p["age_s"] is None else round(float(p["age_s"]), 3),
            query=None, gid=gid, free_with=dialect.free_prepared_hint(gid),
        )
        locks[pid] = e["locks"]
    return sessions, locks


def _pg_tree(conn: Connection, dialect: BlockingPidsLockGraph, database: str, table: tuple[str, str] | None,
             secrets: Iterable[str | None]) -> LockTree:
    holders: list[str] = []
    if table is not None:
        holders = [str(r["pid"]) for r in run(conn, dialect.lock_rows()).mappings()
                   if r["granted"] and r["pid"] is not None and (r["nspname"], r["relname"]) == table]
    sessions, locks = _pg_snapshot(conn, dialect, database, secrets, extra_ids=holders)
    blocked_by = {sid: s.blocked_by for sid, s in sessions.items()}
    wanted = {sid: {lk.table for lk in locks.get(sid, ()) if not lk.granted and lk.table} for sid in sessions}
    seeds = [sid for sid, s in sessions.items() if s.blocked_by and s.database == database]
    if table is not None:
        seeds = [sid for sid in seeds if f"{table[0]}.{table[1]}" in wanted[sid]]
    return _assemble(dialect, database, "pg_blocking_pids", False, sessions, locks, blocked_by, seeds,
                     waiting={sid for sid, s in sessions.items() if s.blocked_by},
                     table=None if table is None else f"{table[0]}.{table[1]}", warnings=(),
                     holders=dict.fromkeys(h for h in holders if h in sessions))


# --- MySQL / MariaDB: metadata locks ---------------------------------------------------------------

_REPLICATION_COMMANDS = {"binlog dump", "binlog dump gtid", "slave_io", "slave_sql", "slave_worker",
                         "connect out", "register slave"}


def _mysql_kind(user: str | None, command: str | None) -> str:
    command = (command or "").lower()
    if command in _REPLICATION_COMMANDS or user == "system user":
        return policy_mod.Kind.REPLICATION.value if command != "daemon" else policy_mod.Kind.BACKGROUND.value
    if command == "daemon" or user in ("event_scheduler", "system user"):
        return policy_mod.Kind.BACKGROUND.value
    return policy_mod.Kind.CLIENT.value


def _mysql_waiting(state: str | None) -> bool:
    state = (state or "").lower()
    return state.startswith("waiting for") and "lock" in state


def _mysql_state(command: str | None, state: str | None, xact_age_s: float | None,
                 holds_table_lock: bool = False, waiting: bool = False) -> str:
    """``holds_table_lock``: an idle session holding a table's metadata lock (read from a lock source,
    not guessed) is inside a transaction or LOCK TABLES, whatever INNODB_TRX says: that table is a
    cache refreshed at most every 100 ms and misses a transaction just begun. ``waiting``: it waits for
    a row lock, which PROCESSLIST does not say ('Updating', 'Sending data' ...)."""
    if waiting or _mysql_waiting(state):
        return policy_mod.Activity.WAITING.value
    if (command or "").lower() == "sleep":
        return (policy_mod.Activity.IDLE_IN_TRANSACTION.value if xact_age_s is not None or holds_table_lock
                else policy_mod.Activity.IDLE.value)
    return policy_mod.Activity.ACTIVE.value


@dataclasses.dataclass(frozen=True)
class _RowWait:
    """One InnoDB row lock wait, read from the engine: ``waiter`` waits for a lock ``holder`` holds (or
    is queued ahead for) on a row of ``schema.table``."""

    waiter: str
    holder: str
    schema: str
    table: str
    index: str | None
    row: str | None
    mode: str
    lock_type: str
    holder_mode: str
    holder_granted: bool

    def lock(self, holder: bool) -> LockRef:
        record = self.lock_type.upper() == "RECORD"
        what = None
        if record:
            what = f"row {self.row if self.row is not None else '?'}" + (f" in index {self.index}" if self.index else "")
        return LockRef(mode=self.holder_mode if holder else self.mode, granted=self.holder_granted if holder else False,
                       table=f"{self.schema}.{self.table}", locktype="row" if record else f"innodb {self.lock_type.lower()}",
                       object=what)


def _row_waits(conn: Connection, dialect: MetadataLockGraph, database: str) -> list[_RowWait]:
    """The row lock waits on ``database``'s tables (the lock's table decides, as for metadata locks)."""
    found = []
    for waiter, holder, name, index, row, mode, lock_type, holder_mode, granted in run(conn,
                                                                                     dialect.row_lock_waits()).all():
        table = dialect.row_lock_table(str(name or ""))
        if waiter is None or holder is None or table is None or table[0] != database:
            continue
        found.append(_RowWait(str(waiter), str(holder), table[0], table[1], index, None if row is None else str(row),
                              str(mode), str(lock_type or "RECORD"), str(holder_mode), bool(granted)))
    return found


@dataclasses.dataclass
class _MdlSnapshot:
    source: str
    approximate: bool
    rows: list[waitfor.MdlRow]
    procs: dict[str, dict[str, Any]]
    waiting: set[str]
    unparsed_waiters: set[str]
    warnings: list[str]
    # Server-wide locks that stop others (a global read lock, a backup stage): session -> mode; and
    # the sessions waiting for one (PROCESSLIST says so: they wait for no table lock).
    server_holders: dict[str, str] = dataclasses.field(default_factory=dict)
    server_waiters: set[str] = dataclasses.field(default_factory=set)
    # Row lock waits on this database's tables, read from the engine whatever the metadata lock source.
    row_waits: list[_RowWait] = dataclasses.field(default_factory=list)
    database: str = ""


def _choose_source(conn: Connection, dialect: MetadataLockGraph, install_plugin: bool) -> str:
    for source in dialect.mdl_sources():
        if source == "heuristic":
            return source
        ready = bool(run(conn, dialect.mdl_source_ready(source)).scalar())
        install = dialect.install_mdl_plugin()
        if not ready and install_plugin and install is not None:
            try:
                run(conn, install)
            except DBAPIError as exc:
                if not dialect.is_privilege_error(exc):
                    raise
                raise PrivilegeError(f"cannot install the metadata_lock_info plugin: "
                                     f"{str(getattr(exc, 'orig', exc)).splitlines()[0]} (needs INSERT on mysql.plugin)"
                                     ) from None
            ready = bool(run(conn, dialect.mdl_source_ready(source)).scalar())
        if ready:
            return source
    # Said once, by the APPROXIMATE warning, which names how to make the best source available.
    return "heuristic"


def _mdl_snapshot(conn: Connection, dialect: MetadataLockGraph, database: str, install_plugin: bool,
                  source: str | None = None) -> _MdlSnapshot:
    warnings: list[str] = []
    source = source or _choose_source(conn, dialect, install_plugin)
    procs: dict[str, dict[str, Any]] = {}
    for row in run(conn, dialect.lock_sessions()).all():
        sid, user, host, db, command, seconds, state, info, age, identity, running = row
        procs[str(sid)] = {"user": user, "host": host, "db": db, "command": command, "time": seconds,
                           "state": state, "info": info, "xact_age_s": None if age is None else float(age),
                           "identity": identity, "running_s": None if running is None else float(running)}
    waiting = {sid for sid, p in procs.items() if _mysql_waiting(p["state"])}
    rows: list[waitfor.MdlRow] = []
    unparsed: set[str] = set()
    server_holders: dict[str, str] = {}
    if source != "heuristic":
        for sid, schema, table, mode, granted in run(conn, dialect.mdl_rows(source, database)).all():
            rows.append(waitfor.MdlRow(str(sid), schema, table, waitfor.normalize_mode(mode), bool(granted)))
        server_holders = {str(sid): str(mode) for sid, mode in run(conn, dialect.server_lock_holders(source)).all()}
    server_waiters = {sid for sid in waiting if dialect.waits_for_server_lock(procs[sid]["state"])}
    if source == "heuristic" or not dialect.mdl_pending_visible(source):
        # The waiting request is invisible: infer it from the waiter's statement.
        for sid in sorted(waiting, key=int):
            p = procs[sid]
            tables = tables_in_statement(p["info"], dialect, p["db"]) if p["info"] else ()
            mode = waitfor.statement_mdl_mode(statement_kind(p["info"]))
            mine = [(s, t) for s, t in tables if s == database]
            if tables and not mine:
                continue  # it waits for another database's tables
            if not mine:
                unparsed.add(sid)
            for schema, table in mine:
                rows.append(waitfor.MdlRow(sid, schema, table, mode, False))
    # After the guesses above: a row lock waiter's statement waits for a row, not a metadata lock.
    row_waits = _row_waits(conn, dialect, database)
    return _MdlSnapshot(source, source == "heuristic", rows, procs, waiting | {w.waiter for w in row_waits},
                        unparsed - server_waiters, warnings, server_holders, server_waiters, row_waits, database)


def _mdl_edges(snap: _MdlSnapshot, exclude: Collection[str]
               ) -> tuple[dict[str, tuple[str, ...]], dict[str, set[str]]]:
    """Who waits for whom, from metadata locks, or guessed from open transactions (heuristic), and
    row lock waits read from the engine; and, per waiter, which of its edges are guesses."""
    guessed: dict[str, set[str]] = {}
    edges: dict[str, tuple[str, ...]]
    if snap.approximate:
        # A guessed blocker is any open transaction of this database, or of none known; one whose
        # default database is another is never guessed to block this one's tables.
        holders = [sid for sid, p in snap.procs.items()
                   if p["xact_age_s"] is not None and sid not in snap.waiting and sid not in exclude
                   and (p["db"] or None) in (None, snap.database)]
        edges = {}
        pending = [r for r in snap.rows if not r.granted]
        waiters = {r.session_id for r in pending} | snap.unparsed_waiters
        for sid in sorted(waiters, key=int):
            mine = {(r.schema, r.table) for r in pending if r.session_id == sid}
            ahead = [r.session_id for r in pending if r.session_id != sid and (r.schema, r.table) in mine
                     and waitfor.mdl_blocks(r.mode, False, next(
                         (m.mode for m in pending if m.session_id == sid), waitfor.UNKNOWN_MODE))]
            edges[sid] = tuple(dict.fromkeys([*holders, *ahead]))
            guessed[sid] = set(edges[sid])
    else:
        edges = dict(waitfor.mdl_wait_for(snap.rows))
        if snap.unparsed_waiters:
            holders = sorted({r.session_id for r in snap.rows if r.granted}, key=int)
            for sid in snap.unparsed_waiters:
                edges[sid] = tuple(h for h in holders if h != sid)
                guessed[sid] = set(edges[sid])
        # A session waiting for a global read lock or a backup stage waits for whoever holds it, whatever
        # tables its statement names.
        for sid in snap.server_waiters:
            edges[sid] = tuple(h for h in sorted(snap.server_holders, key=int) if h != sid and h not in exclude)
    for w in snap.row_waits:
        if w.holder != w.waiter:
            edges[w.waiter] = tuple(dict.fromkeys([*edges.get(w.waiter, ()), w.holder]))
    return edges, guessed


def _mdl_sessions(snap: _MdlSnapshot, database: str, ids: Iterable[str], edges: dict[str, tuple[str, ...]],
                  secrets: Iterable[str | None], guessed: Mapping[str, set[str]] | None = None,
                  ) -> tuple[dict[str, LockSession], dict[str, list[LockRef]]]:
    secrets = list(secrets)
    guessed = guessed or {}
    locks: dict[str, list[LockRef]] = {}
    for r in snap.rows:
        locks.setdefault(r.session_id, []).append(
            LockRef(mode=r.mode, granted=r.granted, table=f"{r.schema}.{r.table}", locktype="metadata"))
    # Row locks are read from the engine in every mode: their table says the session's database.
    row_lockers: set[str] = set()
    for w in snap.row_waits:
        for sid, lock in ((w.waiter, w.lock(holder=False)), (w.holder, w.lock(holder=True))):
            row_lockers.add(sid)
            if lock not in locks.setdefault(sid, []):
                locks[sid].append(lock)
    # A server-wide lock covers this database too: its holder is one of this database's blockers.
    for sid, mode in snap.server_holders.items():
        locks.setdefault(sid, []).append(LockRef(mode=mode, granted=True, table=None, locktype="server"))
    sessions: dict[str, LockSession] = {}
    for sid in ids:
        p = snap.procs.get(sid)
        if p is None:
            continue
        if snap.approximate:
            # No source says which database its metadata locks are in: a row lock read from the engine
            # says, else its default database (PROCESSLIST.DB); with neither, unknown.
            db = database if sid in row_lockers else (p["db"] or None)
        else:
            db = database if sid in locks else ""
        state = _mysql_state(p["command"], p["state"], p["xact_age_s"],
                             holds_table_lock=not snap.approximate and any(
                                 lk.granted and lk.locktype == "metadata" for lk in locks.get(sid, ())),
                             waiting=sid in snap.waiting)
        # PROCESSLIST's time is the time in its command: a Sleep's is its idle time, a statement's its run.
        running = None if p["running_s"] is None else round(p["running_s"], 3)
        sessions[sid] = LockSession(
            session_id=sid,
            kind=_mysql_kind(p["user"], p["command"]),
            user=p["user"],
            application=None,
            client=p["host"],
            database=db,
            state=state,
            xact_age_s=None if p["xact_age_s"] is None else round(p["xact_age_s"], 3),
            query=_short(p["info"], secrets),
            blocked_by=edges.get(sid, ()),
            identity=p["identity"],
            wait_s=(round(p["running_s"], 3) if p["running_s"] is not None and sid in snap.waiting else None),
            guessed_blockers=tuple(b for b in edges.get(sid, ()) if b in guessed.get(sid, ())),
            idle_s=running if state == policy_mod.Activity.IDLE_IN_TRANSACTION.value else None,
            busy_s=running if state in (policy_mod.Activity.ACTIVE.value, policy_mod.Activity.WAITING.value) else None,
            default_database=p["db"] or None,
        )
    return sessions, locks


def _approximate_warning(dialect: MetadataLockGraph) -> str:
    fix = dialect.mdl_source_fix(dialect.mdl_sources()[0])
    return ("approximate: no metadata lock source, so metadata lock waits are guessed from open transactions "
            "(INNODB_TRX) and statement text (PROCESSLIST), each such edge marked guessed; this over-includes and "
            "misses LOCK TABLES holders. A guessed blocker's database is its default database (PROCESSLIST.DB); "
            "one with none is 'database unknown': never proposed, ended only when named with --pid. Row lock "
            f"waits are read from the engine. To see real locks: {fix}")


def _mdl_tree(conn: Connection, dialect: MetadataLockGraph, database: str, table: tuple[str, str] | None,
              secrets: Iterable[str | None], own_ids: Collection[str], install_plugin: bool) -> LockTree:
    snap = _mdl_snapshot(conn, dialect, database, install_plugin)
    edges, guessed = _mdl_edges(snap, own_ids)
    seeds = [sid for sid, blockers in edges.items() if sid in snap.waiting or blockers]
    holders: list[str] = []
    if table is not None:
        row_waiters = {w.waiter for w in snap.row_waits if (w.schema, w.table) == table}
        seeds = [sid for sid in seeds
                 if any(r.session_id == sid and not r.granted and (r.schema, r.table) == table
                        for r in snap.rows) or sid in snap.unparsed_waiters or sid in row_waiters]
        if not snap.approximate:  # guessed rows name no holder for certain
            holders = [r.session_id for r in snap.rows
                       if r.granted and (r.schema, r.table) == table and r.session_id not in own_ids]
        # A row lock read from the engine names its holder in every mode.
        holders += [w.holder for w in snap.row_waits
                    if w.holder_granted and (w.schema, w.table) == table and w.holder not in own_ids]
        holders = list(dict.fromkeys(holders))
        seeds = [*seeds, *(h for h in holders if h not in seeds)]
    ids = waitfor.closure(seeds, edges)
    sessions, locks = _mdl_sessions(snap, database, ids, edges, secrets, guessed)
    warnings = list(snap.warnings)
    if snap.approximate:
        warnings.insert(0, _approximate_warning(dialect))
    for sid in sorted(snap.unparsed_waiters & set(ids), key=int):
        warnings.append(f"session {sid} waits for a lock but its statement names no table dbguard could read: "
                        "its blockers are every session holding a table lock here")
    return _assemble(dialect, database, snap.source, snap.approximate, sessions, locks, edges, seeds,
                     waiting=snap.waiting, table=None if table is None else f"{table[0]}.{table[1]}",
                     warnings=tuple(warnings), holders=dict.fromkeys(h for h in holders if h in sessions))


# --- the tree --------------------------------------------------------------------------------------


def resolve_table(conn: Connection, dialect: SessionControl, name: str, database: str) -> tuple[str, str]:
    """(schema, table) of the table ``name`` names in ``database``, as the server resolves it."""
    if not name.strip():
        raise ConfigError("a table name is needed (--table / --blocking)")
    try:
        row = run(conn, dialect.resolve_table(name, database)).first()
    except DBAPIError as exc:
        raise ConfigError(f"{name!r} is not a table name: {first_line(exc)}") from None
    if row is None:
        raise ConfigError(f"no table {name} in database {database}")
    return str(row[0]), str(row[1])


def _assemble(dialect: Dialect, database: str, source: str, approximate: bool, sessions: dict[str, LockSession],
              locks: dict[str, list[LockRef]], blocked_by: Mapping[str, Sequence[str]], seeds: Sequence[str],
              waiting: set[str], table: str | None, warnings: tuple[str, ...],
              holders: Mapping[str, None] | None = None) -> LockTree:
    holders = holders or {}
    ids = [sid for sid in waitfor.closure([*seeds, *(h for h in holders if h not in seeds)], blocked_by)
           if sid in sessions]
    scoped = {sid: tuple(b for b in blocked_by.get(sid, ()) if b in sessions) for sid in ids}
    root_ids = [r for r in waitfor.roots(scoped, waiting) if r in scoped]
    # Roots of this database before those of an unknown one (guesses), then the oldest transaction
    # first: usually the one to look at.
    root_ids.sort(key=lambda r: (sessions[r].database is None, -(sessions[r].xact_age_s or 0.0)))
    counts = sessionview.blocked_counts(scoped)
    wanted = [lk for sid in ids for lk in locks.get(sid, ()) if not lk.granted]
    contested = {lk.table for lk in wanted if lk.table}
    # Advisory and object locks name no table: the holder's lock is the one on what is waited for.
    contested_objects = {lk.object for lk in wanted if lk.object and not lk.table}
    out = []
    for sid, depth in waitfor.tree_order(ids, scoped, root_ids):
        mine = locks.get(sid, [])
        shown = [lk for lk in mine if not lk.granted or lk.table in contested or lk.locktype == "server"
                 or (lk.object in contested_objects and not lk.table) or (sid in holders and lk.table == table)]
        if not shown:
            shown = [lk for lk in mine if lk.table][:5]
        direct, total = counts.get(sid, (0, 0))
        out.append(dataclasses.replace(sessions[sid], blocked_by=scoped[sid], is_root=sid in root_ids,
                                       depth=depth, locks=tuple(dict.fromkeys(shown)),
                                       blocks_direct=direct, blocks_total=total,
                                       guessed_blockers=tuple(b for b in sessions[sid].guessed_blockers
                                                              if b in scoped[sid])))
    return LockTree(engine=dialect.name, database=database, source=source, approximate=approximate,
                    sessions=tuple(out), roots=tuple(root_ids), table=table, warnings=warnings,
                    holders=tuple(h for h in holders if h in sessions))


@retried_reads("reading the server's locks")
def inspect_locks(conn: Connection, dialect: Dialect, database: str, *, table: str | None = None,
                  own_session_ids: Collection[str] = (), install_plugin: bool = False,
                  secrets: Iterable[str | None] = ()) -> LockTree:
    """The wait-for tree of ``database``: sessions waiting there and everyone they wait for, roots first.

    ``table`` (as a person types it: ``name``, ``schema.name``, quoted parts) narrows it to the
    sessions waiting for that table, resolved as the server resolves it (PostgreSQL: search_path),
    and their blockers; a name that resolves to no table is a ConfigError. ``install_plugin`` lets
    MariaDB install ``metadata_lock_info`` (never silently). Queries are truncated and masked with
    ``secrets``.
    """
    graph = dialect.lock_graph
    where = None if table is None else resolve_table(conn, session_control_of(dialect), table, database)
    if graph == "blocking_pids":
        return _pg_tree(conn, blocking_pids_lock_graph_of(dialect), database, where, secrets)
    if graph == "metadata_locks":
        return _mdl_tree(conn, metadata_lock_graph_of(dialect), database, where, secrets, own_session_ids,
                         install_plugin)
    raise ConfigError(f"{dialect.name} has no sessions or locks to inspect: dbguard locks needs a server "
                      "(PostgreSQL, MySQL, MariaDB)")


@retried_reads("reading the server's locks")
def root_blockers_of_session(conn: Connection, dialect: Dialect, session_id: str, *,
                             secrets: Iterable[str | None] = ()) -> list[LockSession]:
    """PostgreSQL: the sessions at the root of the queue above ``session_id`` (a waiting DDL's pid).

    Walks ``pg_blocking_pids`` upward (cycle and depth guarded) and keeps blockers that wait for
    nobody. A prepared transaction comes back as kind ``prepared`` with ``free_with`` set. Call it
    from another connection while the DDL waits: after its lock timeout the edges are gone.
    """
    pg = blocking_pids_lock_graph_of(dialect)
    ids = [str(pid) for pid in run(conn, pg.root_blockers(session_id)).scalars()]
    if not ids:
        return []
    database = run(conn, pg.current_database()).scalar_one()
    sessions, locks = _pg_snapshot(conn, pg, database, secrets, extra_ids=[i for i in ids if i != "0"])
    found = [sessions[i] for i in ids if i != "0" and i in sessions]
    if "0" in ids:
        mine = sessions.get(str(session_id))
        prepared = [b for b in (mine.blocked_by if mine else ()) if b.startswith("prepared:")]
        if not prepared:  # the prepared transaction blocks someone further up the queue
            prepared = [sid for sid, s in sessions.items() if s.kind == policy_mod.Kind.PREPARED.value]
        found.extend(sessions[p] for p in prepared if p in sessions)
    return [dataclasses.replace(s, is_root=True, locks=tuple(locks.get(s.session_id, ()))) for s in found]


@retried_reads("reading the server's locks")
def root_blockers_of_table(conn: Connection, dialect: Dialect, schema: str, table: str, *,
                           waiting_session_id: str | None = None, own_session_ids: Collection[str] = (),
                           install_plugin: bool = False, secrets: Iterable[str | None] = ()) -> list[LockSession]:
    """MySQL/MariaDB: root blockers of a DDL that wants ``schema.table`` exclusively.

    The DDL's own pending request is invisible on MariaDB, so it is modelled as a pending EXCLUSIVE
    request on the table by ``waiting_session_id`` (the migration connection's id). Every other
    session holding a table metadata lock there blocks it; of those, the ones not waiting themselves
    are the roots. Without a metadata lock source (heuristic) every open transaction of this database,
    or of no known one, counts (approximate: each comes back with its default database as ``database``,
    None where it has none, which the kill policy refuses unless named); row lock waits are read from
    the engine in every mode.
    """
    snap = _mdl_snapshot(conn, metadata_lock_graph_of(dialect), schema, install_plugin)
    me = str(waiting_session_id) if waiting_session_id is not None else "dbguard-ddl"
    snap.rows = [r for r in snap.rows if r.session_id != me]
    snap.rows.append(waitfor.MdlRow(me, schema, table, waitfor.EXCLUSIVE, False))
    snap.waiting.add(me)
    snap.unparsed_waiters.discard(me)
    exclude = {*own_session_ids, me}
    edges, guessed = _mdl_edges(snap, exclude)
    ids = waitfor.root_blockers_of(me, edges, snap.waiting)
    ids = [i for i in ids if i not in exclude]
    sessions, locks = _mdl_sessions(snap, schema, ids, edges, secrets, guessed)
    return [dataclasses.replace(sessions[i], is_root=True, locks=tuple(locks.get(i, ())))
            for i in ids if i in sessions]


@retried_reads("reading the server's locks")
def session_snapshot(conn: Connection, dialect: Dialect, database: str, session_ids: Collection[str], *,
                     secrets: Iterable[str | None] = ()) -> dict[str, LockSession]:
    """Sessions by id, whether or not they are in a wait relation (for ``locks kill --pid``)."""
    if dialect.lock_graph == "blocking_pids":
        sessions, locks = _pg_snapshot(conn, blocking_pids_lock_graph_of(dialect), database, secrets,
                                       extra_ids=session_ids)
    else:
        snap = _mdl_snapshot(conn, metadata_lock_graph_of(dialect), database, install_plugin=False)
        edges, guessed = _mdl_edges(snap, ())
        sessions, locks = _mdl_sessions(snap, database, session_ids, edges, secrets, guessed)
    return {sid: dataclasses.replace(sessions[sid], locks=tuple(locks.get(sid, ())))
            for sid in session_ids if sid in sessions}


# --- ending sessions -------------------------------------------------------------------------------


def candidate(session: LockSession, explicit: bool = False) -> Candidate:
    """How the kill policy sees a session of the tree: by the application the server says it has,
    never by the name dbguard's ledger gives it (``ledger_application``). A label read from a table
    anyone with write access can fill must not make a session killable or protected; so on MySQL and
    MariaDB another dbguard process's migration session stays as the policy has always judged it:
    ``protected_applications`` cannot protect it (the server shows no application), ``protected_roles``
    can, and the run lock's holder is never ended (``own_sessions``)."""
    return Candidate(session_id=session.session_id, kind=session.kind, user=session.user,
                     application=session.application, database=session.database, activity=session.state,
                     xact_age_s=session.xact_age_s, privileged=session.privileged, explicit=explicit)


def judge_sessions(sessions: Sequence[LockSession], policy: KillPolicy,
                   explicit_ids: Collection[str] = ()) -> tuple[Verdict, ...]:
    return policy_mod.judge([candidate(s, s.session_id in explicit_ids) for s in sessions], policy)


def _count(conn: Connection, stmt: Any) -> int:
    return int(run(conn, stmt).scalar() or 0)


def _wait(predicate: Callable[[], bool], seconds: float, poll_s: float = _POLL_S) -> bool:
    return wait_until(predicate, seconds, poll_s)


def _signal(conn: Connection, dialect: SessionControl, stmt: Any) -> str | None:
    """Send a cancel/terminate; None when sent, else why not ("gone", "denied")."""
    try:
        result = run(conn, stmt)
        if result.returns_rows:
            row = result.first()
            if row is None:
                return "gone"  # the pid no longer belongs to the listed backend
            if row[0] is False:
                return "gone"
    except DBAPIError as exc:
        if dialect.is_session_gone(exc):
            return "gone"
        if dialect.is_privilege_error(exc) or dialect.is_kill_denied(exc):
            return "denied"
        raise
    return None


def _exact_lock_source(conn: Connection, dialect: SessionControl) -> str | None:
    """A metadata-lock source that can say exactly which locks a session holds (MySQL/MariaDB), if one
    is ready; None elsewhere."""
    if dialect.lock_graph != "metadata_locks":
        return None
    mdl = metadata_lock_graph_of(dialect)
    for source in mdl.mdl_sources():
        if source != "heuristic" and _count(conn, mdl.mdl_source_ready(source)) > 0:
            return str(source)
    return None


def _still_blocking(conn: Connection, dialect: SessionControl, sid: str, identity: str,
                    exact: str | None) -> bool:
    """Whether the session still holds its locks after a cancel. Where the metadata locks can be read
    (MariaDB's metadata_lock_info, MySQL's performance_schema), a lock it still holds says so whatever
    the transaction heuristic reads (INNODB_TRX is a cache, refreshed at most every 100 ms)."""
    if _count(conn, dialect.session_blocking(sid, identity)) > 0:
        return True
    if exact is None:
        return False
    return _count(conn, metadata_lock_graph_of(dialect).session_holds_locks(sid, exact)) > 0


def _end_one(conn: Connection, dialect: SessionControl, s: LockSession, verdict: Verdict,
             grace_ms: int) -> tuple[str, str]:
    """(action actually taken, outcome)."""
    sid, identity = s.session_id, s.identity or ""
    alive = lambda: _count(conn, dialect.session_alive(sid, identity)) > 0
    if not alive():
        return "none", "gone before it was ended"
    if verdict.action is Action.CANCEL_THEN_TERMINATE:
        why = _signal(conn, dialect, dialect.cancel_session(sid, identity))
        if why == "denied":
            return "cancel", "failed: permission denied"
        if why == "gone":
            return "none", "gone before it was ended"
        exact = _exact_lock_source(conn, dialect)
        freed = _wait(lambda: not _still_blocking(conn, dialect, sid, identity, exact), grace_ms / 1000,
                      dialect.session_poll_s)
        if freed:
            return "cancel", "cancelled"
        taken = "cancel_then_terminate"
    else:
        taken = "terminate"
    if not alive():
        return taken, "gone before it was terminated"
    why = _signal(conn, dialect, dialect.terminate_session(sid, identity))
    if why == "denied":
        return taken, "failed: permission denied"
    if why == "gone":
        return taken, "gone before it was terminated"
    if _wait(lambda: not alive(), TERMINATE_WAIT_S):
        return taken, "terminated"
    return taken, "terminate signalled; session still present"


def end_sessions(conn: Connection, dialect: Dialect, victims: Sequence[LockSession], policy: KillPolicy,
                 audit: Audit | None, *, grace_ms: int = 2000, explicit_ids: Collection[str] = (),
                 dry_run: bool = False) -> tuple[KillOutcome, ...]:
    """End ``victims`` under ``policy``, each one's audit record written before it is signalled.

    Each session is judged by :func:`dbguard.core.victims.judge`; refused ones are reported, never
    touched. Right before each signal the session's identity is checked again (PostgreSQL:
    ``backend_start``; MySQL: user, host and transaction start), so a reused id is never hit.
    Idle transactions are terminated; running statements are cancelled, then terminated if the
    session still holds its locks after ``grace_ms``. ``audit`` records the intent first (a session
    whose record cannot be written is not signalled) and the outcome after. With ``dry_run`` nothing
    is sent and nothing is written; otherwise ``audit`` is required.
    """
    if audit is None and not dry_run:
        raise ValueError("ending sessions needs an audit")
    verdicts = judge_sessions(victims, policy, explicit_ids)
    out = []
    for s, v in zip(victims, verdicts):
        grant = v.grant
        if not v.allowed:
            out.append(KillOutcome(session=s, action="none", code=v.code, reason=v.reason, outcome="refused",
                                   grant=grant))
            continue
        if dry_run:
            out.append(KillOutcome(session=s, action=v.action.value, code=v.code, reason=v.reason,
                                   outcome=f"would {action_words(v.action.value)}"))
            continue
        control = session_control_of(dialect)
        if not _count(conn, control.session_alive(s.session_id, s.identity or "")):
            # Gone, or its id now names another session: nothing to signal, nothing to record.
            out.append(KillOutcome(session=s, action="none", code=v.code, reason=v.reason, grant=grant,
                                   outcome="gone before it was ended"))
            continue
        # No signal without its record: the intent is written first, and a session whose record
        # cannot be written is left alone.
        assert audit is not None  # checked above
        try:
            audit_id = audit.intend(s, v.action.value)
        except Exception as exc:  # noqa: BLE001 - reported per session; nobody is signalled unrecorded
            out.append(KillOutcome(session=s, action="none", code=v.code, reason=v.reason, grant=grant,
                                   outcome=f"not ended: its audit record could not be written ({first_line(exc)})"))
            continue
        faultpoints.reached("kill-signal", s.session_id)
        started = time.monotonic()
        taken, outcome = _end_one(conn, control, s, v, grace_ms)
        duration = int((time.monotonic() - started) * 1000)
        if outcome.startswith("failed: permission"):
            grant = control.signal_grant_hint(policy.db_user or "CURRENT_USER")
        try:
            audit.complete(audit_id, taken, outcome)
        except Exception as exc:  # noqa: BLE001 - the intent stands; the output says what is missing
            outcome += f" (audit record {audit_id} still says {SIGNALLING}: {first_line(exc)})"
        out.append(KillOutcome(session=s, action=taken, code=v.code, reason=v.reason, outcome=outcome, grant=grant,
                               duration_ms=duration, audit_id=audit_id))
    return tuple(out)
