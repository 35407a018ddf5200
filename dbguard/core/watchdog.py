"""The watchdog's verdict: is the migration queueing traffic for too long?"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable


@dataclasses.dataclass(frozen=True)
class Waiter:
    session: str
    wait_ms: int
    statement: str | None = None


@dataclasses.dataclass(frozen=True)
class QueueSample:
    waiters: int
    oldest_ms: int
    sessions: tuple[str, ...] = ()


def bare_name(table: str) -> str:
    """A table's name without its schema and quotes: how a lock view and a statement can both name it."""
    return table.split(".")[-1].strip('`"[]')


def _names(table: str) -> tuple[str, ...]:
    bare = bare_name(table)
    return (bare,) if bare else ()


def waiting_on(waiters: Iterable[Waiter], tables: Iterable[str]) -> list[Waiter]:
    """Waiters whose statement names one of ``tables``; every waiter when no table is known.

    On MySQL/MariaDB a waiting request shows no table, only the statement that waits; a session
    waiting on some other table's lock must not make the watchdog cancel this migration.
    """
    waiters = list(waiters)
    names = [n for t in tables for n in _names(t)]
    if not names:
        return waiters
    pattern = re.compile(r"(?<![\w$])[`\"]?(" + "|".join(re.escape(n) for n in names) + r")[`\"]?(?![\w$])", re.IGNORECASE)
    return [w for w in waiters if w.statement is None or pattern.search(w.statement)]


def sample(waiters: Iterable[Waiter]) -> QueueSample:
    waiters = list(waiters)
    oldest = max((w.wait_ms for w in waiters), default=0)
    return QueueSample(len(waiters), max(0, oldest), tuple(w.session for w in waiters))


def should_cancel(queue: QueueSample, max_blocking_ms: int) -> bool:
    """Cancel the migration's statement once somebody has waited behind it longer than allowed."""
    return queue.waiters > 0 and queue.oldest_ms > max_blocking_ms
