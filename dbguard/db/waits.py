"""dbguard's own statements (ledger, kill audit, stored schemas, fleet control) meet locks as a
migration's statements do: each wait is bounded by the session's lock timeout, a statement that
timed out is tried again after a backoff, and after the last try dbguard gives up in one line.

Every statement these stores run is a single autocommit statement or an idempotent group of them
(``CREATE TABLE IF NOT EXISTS`` and the like), so a lock timeout left nothing behind to undo and a
retry repeats nothing that took effect.
"""

from __future__ import annotations

import contextlib
import functools
import random
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from dbguard.core.retry import backoff_ms
from dbguard.errors import DbguardError

T = TypeVar("T")

# Tries after the first; with the ledger session's 5 s lock timeout, about 16 s in all.
LOCK_RETRIES = 2
BACKOFF_MS = 200
BACKOFF_MAX_MS = 1000


class LockWaitError(DbguardError):
    """dbguard's own statement kept waiting for a lock that another session holds."""


def is_lock_timeout(conn: Connection, exc: BaseException) -> bool:
    from dbguard.dialects import for_sqlalchemy_dialect

    return for_sqlalchemy_dialect(conn.dialect).is_lock_timeout(exc)


def _autocommit(conn: Connection) -> bool:
    return conn.get_execution_options().get("isolation_level") == "AUTOCOMMIT"


def with_lock_retries(conn: Connection, work: Callable[[], T], what: str, retries: int = LOCK_RETRIES,
                      sleep: Callable[[float], None] = time.sleep,
                      rand: Callable[[], float] = random.random) -> T:
    """``work()``, tried again ``retries`` times when it fails on a lock timeout; then a
    :class:`LockWaitError` naming ``what`` and the server's words."""
    attempt = 0
    while True:
        attempt += 1
        try:
            return work()
        except sa.exc.DBAPIError as exc:
            # Inside a transaction the statement cannot be tried alone again: the caller decides.
            if not is_lock_timeout(conn, exc) or not _autocommit(conn):
                raise
            if attempt > retries:
                from dbguard.db.connect import first_line

                raise LockWaitError(
                    f"{what} waited too long for a lock, {attempt} times ({first_line(exc)}): another session "
                    "holds a lock on dbguard's tables; `dbguard locks` shows who"
                ) from None
            sleep(backoff_ms(attempt, BACKOFF_MS, BACKOFF_MAX_MS, rand) / 1000)


def retried(what: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
    """A store method (its object has ``conn`` and ``lock_retries``) run under :func:`with_lock_retries`."""

    def wrap(method: Callable[..., T]) -> Callable[..., T]:
        @functools.wraps(method)
        def run(self: Any, *args: Any, **kwargs: Any) -> T:
            return with_lock_retries(self.conn, lambda: method(self, *args, **kwargs), what,
                                     retries=self.lock_retries)

        return run

    return wrap


def retried_reads(what: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
    """A function of ``(conn, ...)`` that only reads, run under :func:`with_lock_retries`."""

    def wrap(function: Callable[..., T]) -> Callable[..., T]:
        @functools.wraps(function)
        def run(conn: Connection, *args: Any, **kwargs: Any) -> T:
            return with_lock_retries(conn, lambda: function(conn, *args, **kwargs), what)

        return run

    return wrap


@contextlib.contextmanager
def single_attempt(store: Any) -> Iterator[None]:
    """Within the block, ``store`` tries each statement once and lets a lock timeout through: for a
    caller that has a better answer to the wait than waiting again."""
    saved, store.lock_retries = store.lock_retries, 0
    try:
        yield
    finally:
        store.lock_retries = saved


def wait_until(predicate: Callable[[], bool], seconds: float, poll_s: float) -> bool:
    """Whether ``predicate`` came true within ``seconds``, asked every ``poll_s``."""
    deadline = time.monotonic() + seconds
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(poll_s)
