"""The wait-for graph over plain data: roots, closures, tree order, metadata-lock conflicts.

A graph is a mapping ``session id -> ids it waits for`` plus the set of sessions that are waiting.
A **root blocker** blocks somebody and waits for nobody. No I/O, no SQL: the dialects supply the rows.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence


def blocked_sessions(blocked_by: Mapping[str, Sequence[str]]) -> set[str]:
    """Sessions that wait for somebody."""
    return {sid for sid, blockers in blocked_by.items() if blockers}


def closure(seeds: Iterable[str], blocked_by: Mapping[str, Sequence[str]], limit: int = 10_000) -> list[str]:
    """The seeds and everybody they wait for, transitively, in discovery order (cycle-safe)."""
    seen: dict[str, None] = {}
    stack = list(seeds)
    while stack and len(seen) < limit:
        sid = stack.pop(0)
        if sid in seen:
            continue
        seen[sid] = None
        stack.extend(b for b in blocked_by.get(sid, ()) if b not in seen)
    return list(seen)


def roots(blocked_by: Mapping[str, Sequence[str]], waiting: set[str] | None = None) -> list[str]:
    """Sessions that block somebody but wait for nobody, in first-seen order.

    ``waiting`` overrides who counts as waiting (MySQL knows waiting from PROCESSLIST, not from edges).
    """
    waiting = blocked_sessions(blocked_by) if waiting is None else waiting
    found: dict[str, None] = {}
    for sid in blocked_by:
        for blocker in blocked_by[sid]:
            if blocker not in waiting:
                found.setdefault(blocker, None)
    return list(found)


def root_blockers_of(session_id: str, blocked_by: Mapping[str, Sequence[str]],
                     waiting: set[str] | None = None) -> list[str]:
    """The roots reachable upward from one session (not the session itself)."""
    waiting = blocked_sessions(blocked_by) if waiting is None else waiting
    return [s for s in closure([session_id], blocked_by) if s != session_id and s not in waiting]


def tree_order(nodes: Sequence[str], blocked_by: Mapping[str, Sequence[str]],
               root_ids: Sequence[str]) -> list[tuple[str, int]]:
    """(id, depth) depth-first from each root, each node once; nodes no root reaches come last at depth 0."""
    children: dict[str, list[str]] = {n: [] for n in nodes}
    for sid in nodes:
        for blocker in blocked_by.get(sid, ()):
            if blocker in children and sid not in children[blocker]:
                children[blocker].append(sid)
    out: list[tuple[str, int]] = []
    seen: set[str] = set()

    def visit(sid: str, depth: int) -> None:
        if sid in seen:
            return
        seen.add(sid)
        out.append((sid, depth))
        for child in children.get(sid, ()):
            visit(child, depth + 1)

    for root in root_ids:
        if root in children:
            visit(root, 0)
    for sid in nodes:
        if sid not in seen:
            visit(sid, 0)
    return out


# --- metadata locks (MySQL / MariaDB) --------------------------------------------------------------

# Lock modes, without MariaDB's MDL_ prefix. Strong modes queue ahead of weak requests.
EXCLUSIVE = "EXCLUSIVE"
_ALL = frozenset({
    "INTENTION_EXCLUSIVE", "SHARED", "SHARED_HIGH_PRIO", "SHARED_READ", "SHARED_WRITE", "SHARED_WRITE_LOW_PRIO",
    "SHARED_UPGRADABLE", "SHARED_READ_ONLY", "SHARED_NO_WRITE", "SHARED_NO_READ_WRITE", "EXCLUSIVE",
})
# granted mode -> requested modes it blocks (MySQL's MDL compatibility matrix for table locks).
_GRANTED_BLOCKS: dict[str, frozenset[str]] = {
    "SHARED": frozenset({"EXCLUSIVE"}),
    "SHARED_HIGH_PRIO": frozenset({"EXCLUSIVE"}),
    "SHARED_READ": frozenset({"SHARED_NO_READ_WRITE", "EXCLUSIVE"}),
    "SHARED_WRITE": frozenset({"SHARED_READ_ONLY", "SHARED_NO_WRITE", "SHARED_NO_READ_WRITE", "EXCLUSIVE"}),
    "SHARED_WRITE_LOW_PRIO": frozenset({"SHARED_READ_ONLY", "SHARED_NO_WRITE", "SHARED_NO_READ_WRITE",
                                        "EXCLUSIVE"}),
    "SHARED_UPGRADABLE": frozenset({"SHARED_UPGRADABLE", "SHARED_NO_WRITE", "SHARED_NO_READ_WRITE",
                                    "EXCLUSIVE"}),
    "SHARED_READ_ONLY": frozenset({"SHARED_WRITE", "SHARED_WRITE_LOW_PRIO", "SHARED_NO_WRITE",
                                   "SHARED_NO_READ_WRITE", "EXCLUSIVE"}),
    "SHARED_NO_WRITE": frozenset({"SHARED_WRITE", "SHARED_WRITE_LOW_PRIO", "SHARED_UPGRADABLE",
                                  "SHARED_READ_ONLY", "SHARED_NO_WRITE", "SHARED_NO_READ_WRITE", "EXCLUSIVE"}),
    "SHARED_NO_READ_WRITE": _ALL - {"INTENTION_EXCLUSIVE"},
    "EXCLUSIVE": _ALL - {"INTENTION_EXCLUSIVE"},
}
# A pending strong request makes later weak requests queue behind it (pending-lock priority).
_PENDING_BLOCKS: dict[str, frozenset[str]] = {
    "EXCLUSIVE": frozenset({"SHARED", "SHARED_READ", "SHARED_WRITE", "SHARED_WRITE_LOW_PRIO", "SHARED_UPGRADABLE",
                            "SHARED_READ_ONLY", "SHARED_NO_WRITE", "SHARED_NO_READ_WRITE"}),
    "SHARED_NO_READ_WRITE": frozenset({"SHARED", "SHARED_READ", "SHARED_WRITE", "SHARED_WRITE_LOW_PRIO",
                                       "SHARED_READ_ONLY", "SHARED_NO_WRITE"}),
    "SHARED_NO_WRITE": frozenset({"SHARED_WRITE", "SHARED_WRITE_LOW_PRIO"}),
    "SHARED_READ_ONLY": frozenset({"SHARED_WRITE", "SHARED_WRITE_LOW_PRIO"}),
}
UNKNOWN_MODE = "UNKNOWN"


def normalize_mode(mode: str | None) -> str:
    """MariaDB's ``MDL_SHARED_READ`` and MySQL's ``SHARED_READ`` alike; unknown stays UNKNOWN."""
    if not mode:
        return UNKNOWN_MODE
    mode = mode.upper()
    mode = mode.removeprefix("MDL_")
    return mode if mode in _ALL else UNKNOWN_MODE


def mdl_blocks(held_mode: str, held_granted: bool, wanted_mode: str) -> bool:
    """Whether a lock (granted, or pending ahead in the queue) keeps a request for ``wanted_mode`` waiting.

    An UNKNOWN request is taken to conflict with every granted lock (over-including is the safe error
    for a listing; the kill policy still judges each session).
    """
    held, wanted = normalize_mode(held_mode), normalize_mode(wanted_mode)
    if held_granted:
        if wanted == UNKNOWN_MODE:
            return held != "INTENTION_EXCLUSIVE"
        if held == UNKNOWN_MODE:
            return wanted != "INTENTION_EXCLUSIVE"
        return wanted in _GRANTED_BLOCKS.get(held, frozenset())
    if wanted == UNKNOWN_MODE:
        return False
    return wanted in _PENDING_BLOCKS.get(held, frozenset())


@dataclasses.dataclass(frozen=True)
class MdlRow:
    """One table metadata lock: granted, or a pending request (seen on MySQL 8, or inferred on MariaDB)."""

    session_id: str
    schema: str
    table: str
    mode: str
    granted: bool


def mdl_wait_for(rows: Sequence[MdlRow]) -> dict[str, tuple[str, ...]]:
    """``session -> sessions it waits for`` from table metadata locks.

    A pending request waits for other sessions' granted locks that conflict with it, and for other
    sessions' pending strong requests on the same table (they go first).
    """
    edges: dict[str, dict[str, None]] = {}
    for want in rows:
        if want.granted:
            continue
        found = edges.setdefault(want.session_id, {})
        for held in rows:
            if held.session_id == want.session_id or (held.schema, held.table) != (want.schema, want.table):
                continue
            if mdl_blocks(held.mode, held.granted, want.mode):
                found.setdefault(held.session_id, None)
    return {sid: tuple(found) for sid, found in edges.items()}


def statement_mdl_mode(statement_kind: str | None) -> str:
    """The table metadata lock a statement of this kind asks for; UNKNOWN when it cannot be told.

    ``statement_kind`` is the statement's leading keyword(s), lower case (``alter``, ``select`` ...).
    """
    kind = (statement_kind or "").lower()
    if kind in ("alter", "drop", "truncate", "rename", "create index", "drop index", "optimize", "create"):
        return EXCLUSIVE
    if kind in ("select", "with", "handler"):
        return "SHARED_READ"
    if kind in ("insert", "update", "delete", "replace", "merge"):
        return "SHARED_WRITE"
    if kind == "lock tables write":
        return "SHARED_NO_READ_WRITE"
    if kind == "lock tables read":
        return "SHARED_READ_ONLY"
    return UNKNOWN_MODE
