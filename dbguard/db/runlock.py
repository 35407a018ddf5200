"""The run lock: one run at a time per target, freed by the server (or the kernel) when its holder dies.

Never taken on the migration's connection: a lock taken there before ``context.configure``
autobegins a transaction that Alembic then never commits.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import struct
import sys
import threading
import time
from pathlib import Path

from sqlalchemy.engine import Connection

from dbguard.db.sql import run
from dbguard.dialects import Dialect

_POLL_S = 0.05


class SqlRunLock:
    """A session-scoped lock on dbguard's own connection (advisory lock, GET_LOCK)."""

    def __init__(self, conn: Connection, dialect: Dialect, database: str, prefix: str) -> None:
        self._conn = conn
        self._dialect = dialect
        self._database = database
        self._prefix = prefix
        self.held = False

    def try_acquire(self) -> bool:
        stmt = self._dialect.try_run_lock(self._database, self._prefix)
        self.held = bool(run(self._conn, stmt).scalar())
        return self.held

    def release(self) -> None:
        if self.held:
            stmt = self._dialect.release_run_lock(self._database, self._prefix)
            with contextlib.suppress(Exception):
                run(self._conn, stmt)
            self.held = False

    def holder(self) -> str | None:
        """The session id holding the lock, found without trying to take it."""
        stmt = self._dialect.run_lock_holder(self._database, self._prefix)
        value = run(self._conn, stmt).scalar()
        return None if value is None else str(value)




# struct flock, for F_GETLK: ask who holds a lock without taking it.
_FLOCK = "qqihh" if sys.platform == "darwin" else "hhqqi"


# POSIX record locks belong to the process: a second lockf() of the same file in this process
# succeeds, and closing any descriptor of the file drops them all. The files this process holds a
# lock on (by any FileRunLock: a host application may run dbguard in several threads) are kept here,
# and every open and close of a lock file happens under this lock.
_HELD_HERE: set[str] = set()
_HERE = threading.Lock()


class FileRunLock:
    """A POSIX record lock on a file beside the SQLite database; the kernel frees it when we die."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._key = os.path.realpath(path)
        self._fd: int | None = None
        self.held = False

    def try_acquire(self) -> bool:
        with _HERE:
            if self._key in _HELD_HERE:  # another run of this process has it
                return False
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                return False
            _HELD_HERE.add(self._key)
        self._fd, self.held = fd, True
        return True

    def release(self) -> None:
        with _HERE:
            if self._fd is not None:
                with contextlib.suppress(OSError):
                    fcntl.lockf(self._fd, fcntl.LOCK_UN)
                os.close(self._fd)
                _HELD_HERE.discard(self._key)  # only one lock object of this process can hold a file
            self._fd, self.held = None, False

    def holder(self) -> str | None:
        with _HERE:
            if self.held or self._key in _HELD_HERE:
                return str(os.getpid())
            return self._holder_elsewhere()

    def _holder_elsewhere(self) -> str | None:
        if not self.path.exists():
            return None
        # This process holds no lock on the file (checked under _HERE): opening and closing it drops none.
        fd = os.open(self.path, os.O_RDONLY)
        try:
            if sys.platform == "darwin":
                query = struct.pack(_FLOCK, 0, 0, 0, fcntl.F_WRLCK, os.SEEK_SET)
                answer = struct.unpack(_FLOCK, fcntl.fcntl(fd, fcntl.F_GETLK, query))
                lock_type, pid = answer[3], answer[2]
            else:
                query = struct.pack(_FLOCK, fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0)
                answer = struct.unpack(_FLOCK, fcntl.fcntl(fd, fcntl.F_GETLK, query))
                lock_type, pid = answer[0], answer[4]
        finally:
            os.close(fd)
        return None if lock_type == fcntl.F_UNLCK else str(pid)


# The run lock's key: one per database, whatever table_prefix says (a prefix never contains a dot), so
# two deployers configured with different prefixes still exclude each other.
DATABASE_KEY = "dbguard."


class RunLock:
    """The database's run lock, and with it the prefix-keyed lock dbguard took before the lock was one
    per database: a deployer still on that version takes only the latter and is excluded too."""

    def __init__(self, database_lock: SqlRunLock | FileRunLock, prefix_lock: SqlRunLock | FileRunLock) -> None:
        self._locks = (database_lock, prefix_lock)

    @property
    def held(self) -> bool:
        return self._locks[0].held

    def try_acquire(self) -> bool:
        first, second = self._locks
        if not first.try_acquire():
            return False
        if second.try_acquire():
            return True
        first.release()
        return False

    def release(self) -> None:
        for lock in reversed(self._locks):
            lock.release()

    def holder(self) -> str | None:
        return self._locks[0].holder() or self._locks[1].holder()


def acquire(lock: RunLock | SqlRunLock | FileRunLock, wait_s: float) -> bool:
    """Take the lock now, or keep trying until ``wait_s`` has passed."""
    deadline = time.monotonic() + wait_s
    while True:
        if lock.try_acquire():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(min(_POLL_S, max(0.0, deadline - time.monotonic())))
