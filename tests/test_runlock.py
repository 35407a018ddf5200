"""The SQLite run lock (a POSIX record lock on a file) within one process: a host application may
run dbguard in several threads, and POSIX locks belong to the process, not to a descriptor."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from dbguard.db.runlock import FileRunLock

_TRY_FROM_ANOTHER_PROCESS = """import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
try:
    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
except OSError:
    print("held")
else:
    print("free")
"""


def _seen_from_another_process(path: Path) -> str:
    done = subprocess.run([sys.executable, "-c", _TRY_FROM_ANOTHER_PROCESS, str(path)], capture_output=True,
                          text=True, timeout=30, check=True)
    return done.stdout.strip()


def test_a_second_lock_object_in_the_same_process_neither_takes_nor_drops_the_lock(tmp_path: Path) -> None:
    path = tmp_path / "app.db.dbguard.lock"
    run, status = FileRunLock(path), FileRunLock(path)
    assert run.try_acquire()
    # lockf() would grant the same process the lock again, and a close would drop it: neither happens.
    assert not status.try_acquire()
    assert status.holder() == str(os.getpid())
    assert _seen_from_another_process(path) == "held"
    run.release()
    assert status.holder() is None
    assert _seen_from_another_process(path) == "free"
    assert status.try_acquire()
    status.release()


_HOLD_FROM_ANOTHER_PROCESS = """import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
fcntl.lockf(fd, fcntl.LOCK_EX)
print("holding", flush=True)
sys.stdin.read()
"""


@pytest.mark.parametrize("lock_table", ["read", "absent", "other-device"])
def test_the_holder_in_another_process_is_found_without_taking_the_lock(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, lock_table: str) -> None:
    from dbguard.db import runlock

    if lock_table == "absent":  # a system without /proc/locks: a shared lock is asked for instead
        monkeypatch.setattr(runlock, "_LOCK_TABLE", tmp_path / "no-such-table")
    path = tmp_path / "app.db.dbguard.lock"
    status = FileRunLock(path)
    assert status.holder() is None  # no file yet
    holder = subprocess.Popen([sys.executable, "-c", _HOLD_FROM_ANOTHER_PROCESS, str(path)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
        if lock_table == "other-device":
            # btrfs: the table names the file's inode under the file system's device, not stat()'s.
            table = tmp_path / "locks"
            table.write_text(f"1: POSIX  ADVISORY  WRITE {holder.pid} fe:7f:{os.stat(path).st_ino} 0 EOF\n")
            monkeypatch.setattr(runlock, "_LOCK_TABLE", table)
        expected = "another process" if lock_table == "absent" else str(holder.pid)
        assert status.holder() == expected
        assert not status.try_acquire()
        assert status.holder() == expected  # asking took nothing and dropped nothing
    finally:
        holder.communicate("", timeout=30)
    assert status.holder() is None
    assert status.try_acquire()
    status.release()
