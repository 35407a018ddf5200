"""Work done in a forked child on the machine's other core, its results read back over a pipe.

``dbguard drift --against models`` is CPU work in one process: importing SQLAlchemy, Alembic and
the models, then converting thousands of tables. Parts of it do not depend on each other (the
live catalog does not depend on the models; one half of the tables does not depend on the
other) and run in a forked child meanwhile.

Only ever an optimisation. Where forking is not :func:`usable`, ``start`` returns None; a child
that fails sends nothing more, and the caller does that work itself the usual way, so whatever
went wrong is met, reported and exits as it would have without the child. The child's standard
output and error go nowhere, it never runs the parent's exit handlers, and it dies with the parent.
"""

from __future__ import annotations

import contextlib
import marshal
import os
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any

import dbguard

_LENGTH = 8


def usable(for_speed: bool = True) -> bool:
    """Forking is safe, and (``for_speed``) pays: a process dbguard owns (never inside a host
    application), no other thread running (a fork copies locks other threads hold) but fork-safe
    ones, and a second CPU to run on that is not busy already. A child repeats imports the parent
    also does; with every core taken it only adds to the queue (measured on 2 cores at load 2-4: a
    drift 20-90% slower forked than with its catalog read in a thread). Work forked to keep this
    process clean needs no spare CPU."""
    return dbguard.OWNS_PROCESS and can_fork() and (not for_speed or spare_cpu()) and _alone()


def spare_cpu() -> bool:
    """A second CPU, and fewer processes wanting one than there are (the 1-minute load average)."""
    available = cpus()
    return available >= 2 and load() < available


def load() -> float:
    """The 1-minute load average; 0 where the system has none to tell."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return 0.0


def _alone() -> bool:
    """No thread but this one, or threads made fork-safe (dbguard.db.deadline's watcher)."""
    return all(thread is threading.current_thread() or getattr(thread, "fork_safe", False)
               for thread in threading.enumerate())


def can_fork() -> bool:
    """This system forks."""
    return hasattr(os, "fork")


def cpus() -> int:
    """How many CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


class Forked:
    """A forked child running ``work(*args)``, a generator whose items (plain data that
    :mod:`marshal` writes) the parent reads one by one with :meth:`receive`."""

    def __init__(self, pid: int, reader: int) -> None:
        self._pid: int | None = pid
        self._reader: int | None = reader

    @classmethod
    def start(cls, work: Callable[..., Iterator[Any]], *args: Any, for_speed: bool = True) -> Forked | None:
        if not usable(for_speed):
            return None
        reader, writer = os.pipe()
        try:
            pid = os.fork()
        except OSError:
            os.close(reader)
            os.close(writer)
            return None
        if pid == 0:
            os.close(reader)
            _child(work, args, writer)  # never returns
        os.close(writer)
        return cls(pid, reader)

    def receive(self) -> Any | None:
        """The child's next item; None once it ended without sending one (it failed)."""
        if self._reader is None:
            return None
        try:
            header = self._read(_LENGTH)
            if header is None:
                return None
            body = self._read(int.from_bytes(header, "big"))
            return None if body is None else marshal.loads(body)
        except (OSError, EOFError, ValueError, TypeError):
            return None

    def _read(self, size: int) -> bytes | None:
        assert self._reader is not None
        chunks, left = [], size
        while left:
            chunk = os.read(self._reader, min(left, 1 << 20))
            if not chunk:
                return None
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)

    def close(self) -> None:
        """End the child if it still runs (its work not needed, an error or Ctrl-C here) and reap it."""
        if self._reader is not None:
            os.close(self._reader)
            self._reader = None
        if self._pid is not None:
            pid, self._pid = self._pid, None
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)


def _child(work: Callable[..., Iterator[Any]], args: tuple[Any, ...], writer: int) -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        # Ctrl-C in a terminal reaches the whole process group: the parent decides, and ends this child.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        _die_with_parent()
        for item in work(*args):
            body = marshal.dumps(item)
            data = memoryview(len(body).to_bytes(_LENGTH, "big") + body)
            while data:
                data = data[os.write(writer, data):]
    except BaseException:  # noqa: BLE001, S110 - the parent does the work itself and reports it
        pass
    finally:
        os._exit(0)


def _die_with_parent() -> None:
    """Linux: SIGKILL when the parent dies without ending this child (killed itself)."""
    with contextlib.suppress(Exception):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
        if os.getppid() == 1:  # the parent died before the call
            os._exit(0)
