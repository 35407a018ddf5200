"""The run lock: one run at a time per target, freed by the server (or the kernel) when its holder dies.

Never taken on the migration's connection: a lock taken there before ``context.configure``
autobegins a transaction that Alembic then never commits.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
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
        try:
            found = os.stat(self.path)
        except FileNotFoundError:
            return None
        listed = _posix_lock_holder(found.st_dev, found.st_ino)
        if listed is not _NOT_LISTED:
            return listed
        # No lock table to read (not Linux): ask for a shared lock. It is refused while a run holds the
        # lock; granted, it is let go at once. This process holds no lock on the file (checked under
        # _HERE): opening and closing it drops none.
        fd = os.open(self.path, os.O_RDONLY)
        try:
            fcntl.lockf(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return "another process"
        else:
            fcntl.lockf(fd, fcntl.LOCK_UN)
            return None
        finally:
            os.close(fd)


_NOT_LISTED = "?"
_LOCK_TABLE = Path("/proc/locks")


def _posix_lock_holder(device: int, inode: int) -> str | None:
    """The pid holding a POSIX record lock on the file, read from Linux's lock table (proc(5)) without
    touching the lock: None when nobody holds one, ``_NOT_LISTED`` where there is no table to read."""
    try:
        table = _LOCK_TABLE.read_text()
    except OSError:
        return _NOT_LISTED
    wanted = f"{os.major(device):02x}:{os.minor(device):02x}:{inode}"
    for line in table.splitlines():
        # "1: POSIX  ADVISORY  WRITE 3843 fe:00:1474578 0 EOF"; a waiter's line has "->" after the number.
        fields = line.split()
        if len(fields) >= 8 and fields[1] == "POSIX" and fields[5] == wanted:
            pid = fields[4]
            return pid if pid.isdigit() and pid != "0" else "another process"
    return None


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
