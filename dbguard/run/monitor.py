"""The run monitor: one thread, one connection of its own, alive while migration steps run.

It touches the run's heartbeat (so a slow step still looks alive), and it is the watchdog: every
``watchdog_interval_ms`` it counts the sessions queued behind the migration's session and cancels
the migration's statement once the oldest has waited longer than ``max_blocking_ms``. In the
rollback lane it also hands the migration's waits to a blocker clearer.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
from collections.abc import Callable
from typing import Any

from dbguard.core import watchdog
from dbguard.db import connect as dbconnect
from dbguard.db.ledger import Ledger, from_db_time
from dbguard.db.sql import run
from dbguard.dialects import Dialect
from dbguard.run.cancel import Cancellation
from dbguard.target import Target, bound_lock_waits, guard_socket

# Given the monitor's connection, the migration's session id and the statement it runs.
Clearer = Callable[[Any, str, "str | None"], None]


@dataclasses.dataclass
class WatchdogEvent:
    """The queue the watchdog saw when it cancelled the migration's statement."""

    revision: str | None
    statement: str | None
    waiters: int
    oldest_ms: int
    sessions: tuple[str, ...]


class RunMonitor:
    def __init__(self, target: Target, dialect: Dialect, run_id: int, clearer: Clearer | None = None,
                 cancellation: Cancellation | None = None) -> None:
        settings = target.settings
        self._target, self._dialect, self._run_id, self._clearer = target, dialect, run_id, clearer
        self._heartbeat_s = settings.heartbeat_interval_s
        self._interval_s = max(0.01, settings.watchdog_interval_ms / 1000)
        self._max_blocking_ms = settings.max_blocking_ms
        self._stop = threading.Event()
        # Set to end the loop's wait early: on stop, and when the host asks the run to stop.
        self._wake = threading.Event()
        self._cancellation = cancellation
        if cancellation is not None:
            cancellation.on_request(self._wake.set)
        self._thread = threading.Thread(target=self._loop, name="dbguard-monitor", daemon=True)
        self._guard = threading.Lock()
        self.session_id: str | None = None
        self.statement: str | None = None
        self.revision: str | None = None
        self.step_active = False
        self.worst = watchdog.QueueSample(0, 0)
        self.events: list[WatchdogEvent] = []
        self._fired: WatchdogEvent | None = None
        self._table_cache: dict[str, tuple[str, ...]] = {}
        # The rollback's budget (time.monotonic()): a statement still running then is cancelled, so
        # the budget bounds the run and not only when the next try may start.
        self.deadline: float | None = None
        self.deadline_fired = False

    # Called from the migrating thread -----------------------------------------------------------

    def start(self) -> None:
        if not self._thread.is_alive() and not self._stop.is_set():
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def step(self, revision: str | None, active: bool) -> None:
        with self._guard:
            self.revision, self.step_active = revision, active
            if active:
                self._fired = None

    def executing(self, statement: str | None) -> None:
        self.statement = statement

    def take_fired(self) -> WatchdogEvent | None:
        """The watchdog's cancellation of the statement that just failed, if it was one."""
        with self._guard:
            fired, self._fired = self._fired, None
        return fired

    # The monitor thread -------------------------------------------------------------------------

    def _loop(self) -> None:
        engine = dbconnect.create_engine(self._target.ledger_url, self._target.settings.connect_timeout_s,
                                         self._target.settings.application)
        try:
            conn = None
            next_beat = 0.0
            while not self._stop.is_set():
                try:
                    if conn is None:
                        conn = dbconnect.connect(engine)
                        bound = self._target.settings.ledger_lock_timeout_ms
                        bound_lock_waits(conn, self._dialect, bound)
                        guard_socket(conn, self._target.settings, bound / 1000)
                    self._cancel_if_asked(conn)
                    self._cancel_at_deadline(conn)
                    if time.monotonic() >= next_beat:
                        self._beat(conn)
                        next_beat = time.monotonic() + self._heartbeat_s
                    self._watch(conn)
                except Exception:  # noqa: BLE001 - the monitor must never fail the run; reconnect next time
                    with contextlib.suppress(Exception):
                        if conn is not None:
                            conn.close()
                    conn = None
                self._wake.wait(self._interval_s)
                self._wake.clear()
            with contextlib.suppress(Exception):
                if conn is not None:
                    conn.close()
        finally:
            engine.dispose()

    def _cancel_if_asked(self, conn: Any) -> None:
        """The host asked the run to stop: the statement in flight is cancelled, again on every tick
        while one is (a cancel that reaches the server between two statements is dropped there); the
        migrating thread raises at its next statement."""
        sid = self.session_id
        if self._cancellation is None or not self._cancellation.requested or sid is None:
            return
        if self.step_active and self.statement is not None:
            run(conn, self._dialect.cancel_own_statement(sid))

    def _cancel_at_deadline(self, conn: Any) -> None:
        sid = self.session_id
        if self.deadline is None or sid is None or time.monotonic() < self.deadline:
            return
        with self._guard:
            if self.deadline_fired or not self.step_active or self.statement is None:
                return
            self.deadline_fired = True
        run(conn, self._dialect.cancel_own_statement(sid))

    def _beat(self, conn: Any) -> None:
        now = from_db_time(run(conn, self._dialect.utc_now()).scalar())
        Ledger(conn, self._target.settings.table_prefix).update_run(self._run_id, heartbeat_at=now)

    def _watch(self, conn: Any) -> None:
        sid, statement, revision = self.session_id, self.statement, self.revision
        if sid is None or not self.step_active:
            return
        if self._clearer is not None and run(conn, self._dialect.waits_for_lock(sid)).scalar():
            self._clearer(conn, sid, statement)
        if not self._dialect.watches_waiters or self._max_blocking_ms <= 0:
            return
        rows = run(conn, self._dialect.waiters_behind(sid)).all()
        if not rows:
            return
        waiters = [watchdog.Waiter(str(r[0]), int(r[1] or 0), r[2] if len(r) > 2 else None) for r in rows]
        if any(w.statement for w in waiters):
            waiters = watchdog.waiting_on(waiters, self._tables(statement))
        queue = watchdog.sample(waiters)
        if queue.oldest_ms > self.worst.oldest_ms or queue.waiters > self.worst.waiters:
            self.worst = watchdog.QueueSample(max(queue.waiters, self.worst.waiters),
                                              max(queue.oldest_ms, self.worst.oldest_ms))
        if watchdog.should_cancel(queue, self._max_blocking_ms):
            with self._guard:
                if self._fired is not None or not self.step_active or self.statement != statement:
                    return
                self._fired = WatchdogEvent(revision, statement, queue.waiters, queue.oldest_ms, queue.sessions)
                self.events.append(self._fired)
            run(conn, self._dialect.cancel_own_statement(sid))


    def _tables(self, statement: str | None) -> tuple[str, ...]:
        """Tables the migration's statement touches, to tell its queue from other queues (MySQL).

        Parsed once per statement, and only when somebody waits: sqlglot is costly to import.
        """
        if not statement:
            return ()
        if statement not in self._table_cache:
            from dbguard.db.lock_graph import tables_in_statement

            try:
                found = tuple(table for _schema, table in tables_in_statement(statement, self._dialect))
            except Exception:  # noqa: BLE001 - an unparsable statement: count every waiter
                found = ()
            self._table_cache = {statement: found}
        return self._table_cache[statement]
