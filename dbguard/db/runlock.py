"""The run lock: one run at a time per target, freed by the server (or the kernel) when its holder dies.

Never taken on the migration's connection: a lock taken there before ``context.configure``
autobegins a transaction that Alembic then never commits.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import os
import threading
import time
from collections.abc import Callable
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
        listed = _posix_lock_holders(found.st_dev, found.st_ino)
        if listed.exact is not None:
            return listed.exact
        if listed.table_read and not listed.same_inode:
            return None  # nobody holds a lock on any file of this inode
        # No lock table (not Linux), or one that names this inode on another device (btrfs lists a
        # file under its file system's device, stat() under its subvolume's): ask for a shared lock.
        # It is refused while a run holds the lock; granted, it is let go at once. This process holds
        # no lock on the file (checked under _HERE): opening and closing it drops none.
        fd = os.open(self.path, os.O_RDONLY)
        try:
            fcntl.lockf(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return listed.same_inode[0] if len(listed.same_inode) == 1 else "another process"
        else:
            fcntl.lockf(fd, fcntl.LOCK_UN)
            return None
        finally:
            os.close(fd)


@dataclasses.dataclass
class _Listed:
    table_read: bool
    exact: str | None = None  # the holder of a lock on this device and inode
    same_inode: list[str] = dataclasses.field(default_factory=list)  # holders of this inode elsewhere


_LOCK_TABLE = Path("/proc/locks")


def _posix_lock_holders(device: int, inode: int) -> _Listed:
    """Who holds POSIX record locks on the file, read from Linux's lock table (proc(5)) without
    touching the lock."""
    try:
        table = _LOCK_TABLE.read_text()
    except OSError:
        return _Listed(table_read=False)
    wanted = f"{os.major(device):02x}:{os.minor(device):02x}:{inode}"
    listed = _Listed(table_read=True)
    for line in table.splitlines():
        # "1: POSIX  ADVISORY  WRITE 3843 fe:00:1474578 0 EOF"; a waiter's line has "->" after the number.
        fields = line.split()
        if len(fields) < 8 or fields[1] != "POSIX" or not fields[5].endswith(f":{inode}"):
            continue
        pid = fields[4] if fields[4].isdigit() and fields[4] != "0" else "another process"
        if fields[5] == wanted:
            listed.exact = pid
            return listed
        listed.same_inode.append(pid)
    return listed


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


def acquire(lock: RunLock | SqlRunLock | FileRunLock, wait_s: float,
            between_tries: Callable[[], None] = lambda: None) -> bool:
    """Take the lock now, or keep trying until ``wait_s`` has passed; ``between_tries`` runs before
    each new try (it may raise to stop waiting: a host's cancel)."""
    deadline = time.monotonic() + wait_s
    while True:
        if lock.try_acquire():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(min(_POLL_S, max(0.0, deadline - time.monotonic())))
        between_tries()
