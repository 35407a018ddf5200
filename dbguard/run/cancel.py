"""Stopping a guarded run from another thread: what :func:`dbguard.api.cancel` asks of the runs
in progress in this process.

A host application (a deploy service, a web app running its migrations at start-up) has no signal
to send to one of its own threads. Asked to stop, a run ends as it would on SIGINT: its statement
in flight is cancelled on the server (by the run monitor, on its own connection), the next
statement or step raises :class:`dbguard.errors.Cancelled` in the migrating thread, and the run
is recorded interrupted, with what became of that statement.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator

from dbguard.errors import Cancelled


class Cancellation:
    """One run's stop request, made from any thread, honoured by the thread running it."""

    def __init__(self) -> None:
        self.thread = threading.current_thread()
        self._requested = threading.Event()
        self._listeners: list[Callable[[], None]] = []
        self._guard = threading.Lock()

    @property
    def requested(self) -> bool:
        return self._requested.is_set()

    def request(self) -> None:
        with self._guard:
            self._requested.set()
            listeners = list(self._listeners)
        for listener in listeners:
            listener()

    def on_request(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` (from the requesting thread) when a stop is asked for, or now if it was."""
        with self._guard:
            self._listeners.append(listener)
            already = self._requested.is_set()
        if already:
            listener()

    def check(self) -> None:
        """Raise :class:`Cancelled` in the run's thread once a stop has been asked for."""
        if self._requested.is_set():
            raise Cancelled


_IN_PROGRESS: set[Cancellation] = set()
_REGISTRY = threading.Lock()


@contextlib.contextmanager
def cancellable() -> Iterator[Cancellation]:
    """The stop request of the run this thread is about to make; listed while the block runs."""
    cancellation = Cancellation()
    with _REGISTRY:
        _IN_PROGRESS.add(cancellation)
    try:
        yield cancellation
    finally:
        with _REGISTRY:
            _IN_PROGRESS.discard(cancellation)


def cancel(thread: threading.Thread | None = None) -> int:
    """Ask the runs in progress (only the one on ``thread``, if given) to stop; how many were asked."""
    with _REGISTRY:
        chosen = [c for c in _IN_PROGRESS if thread is None or c.thread is thread]
    for cancellation in chosen:
        cancellation.request()
    return len(chosen)
