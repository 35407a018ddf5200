"""What a DBA filters the lock tree by, and what each session's blocking costs: plain data only.

- :func:`blocked_counts`: from the tree's edges, how many sessions each one blocks directly (they wait
  for it) and in all (they wait for it, or for one of those, transitively).
- :class:`SessionFilter` and :func:`matches`: the ``--min-idle``, ``--min-busy``, ``--min-wait``,
  ``--user``, ``--app``, ``--match-query``, ``--default-database`` filters of ``locks`` and
  ``locks kill``. A filter narrows who is shown and who is chosen; the kill policy still decides.

No I/O, no clock: the figures are read by the caller.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence


def blocked_counts(blocked_by: Mapping[str, Sequence[str]]) -> dict[str, tuple[int, int]]:
    """``id -> (direct, total)`` for every session named in ``blocked_by`` (as key or blocker).

    ``direct``: sessions whose blockers include it. ``total``: sessions that wait for it through any
    chain of waits, each counted once, itself never (a cycle does not count a session as its own
    victim)."""
    waiters: dict[str, set[str]] = {}
    for sid, blockers in blocked_by.items():
        waiters.setdefault(sid, set())
        for b in blockers:
            if b != sid:
                waiters.setdefault(b, set()).add(sid)
    out: dict[str, tuple[int, int]] = {}
    for sid, direct in waiters.items():
        seen: set[str] = set()
        stack = list(direct)
        while stack:
            w = stack.pop()
            if w in seen or w == sid:
                continue
            seen.add(w)
            stack.extend(waiters.get(w, ()))
        out[sid] = (len(direct), len(seen))
    return out


@dataclasses.dataclass(frozen=True)
class Seen:
    """A session as the filters see it."""

    user: str | None = None
    application: str | None = None
    default_database: str | None = None
    query: str | None = None
    idle_s: float | None = None
    busy_s: float | None = None
    wait_s: float | None = None


def bad_pattern(pattern: str) -> str | None:
    """Why ``pattern`` is not a regular expression, or None when it is one."""
    try:
        re.compile(pattern)
    except re.error as exc:
        return str(exc)
    return None


@dataclasses.dataclass(frozen=True)
class SessionFilter:
    """Every condition set must hold; an unset one (None) lets everybody through."""

    min_idle_s: float | None = None
    min_busy_s: float | None = None
    min_wait_s: float | None = None
    user: str | None = None
    application: str | None = None
    match_query: str | None = None
    default_database: str | None = None

    @property
    def active(self) -> bool:
        return any(v is not None for v in dataclasses.astuple(self))

    def problems(self) -> list[str]:
        """Values no filter can take: a negative number of seconds, a bad regular expression."""
        found = [f"{flag} {value:g}: not a number of seconds of at least 0"
                 for flag, value in (("--min-idle", self.min_idle_s), ("--min-busy", self.min_busy_s),
                                     ("--min-wait", self.min_wait_s))
                 if value is not None and not value >= 0]
        if self.match_query is not None:
            why = bad_pattern(self.match_query)
            if why:
                found.append(f"--match-query {self.match_query!r}: not a regular expression ({why})")
        return found

    def describe(self) -> str:
        """The filters as they were typed: ``--min-idle 5 --user bob``."""
        parts = []
        for flag, value in (("--min-idle", self.min_idle_s), ("--min-busy", self.min_busy_s),
                            ("--min-wait", self.min_wait_s)):
            if value is not None:
                parts.append(f"{flag} {value:g}")
        for flag, text in (("--user", self.user), ("--app", self.application),
                           ("--match-query", self.match_query), ("--default-database", self.default_database)):
            if text is not None:
                parts.append(f"{flag} {text}")
        return " ".join(parts)


def _at_least(value: float | None, bound: float | None) -> bool:
    return bound is None or (value is not None and value >= bound)


def _same(value: str | None, wanted: str | None) -> bool:
    return wanted is None or value == wanted


def matches(seen: Seen, f: SessionFilter) -> bool:
    """Whether one session passes every filter set. A figure the server does not give (None) never
    passes a minimum on it: an idle filter passes idle transactions only, a busy one running
    statements only, a wait one waiters only. ``--match-query`` searches the query as shown (masked
    and truncated); a session showing no query never matches it."""
    if not (_at_least(seen.idle_s, f.min_idle_s) and _at_least(seen.busy_s, f.min_busy_s)
            and _at_least(seen.wait_s, f.min_wait_s)):
        return False
    if not (_same(seen.user, f.user) and _same(seen.application, f.application)
            and _same(seen.default_database, f.default_database)):
        return False
    if f.match_query is not None:
        return seen.query is not None and re.search(f.match_query, seen.query) is not None
    return True
