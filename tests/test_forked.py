"""dbguard.drift.forked: work in a forked child, read back over a pipe; never a stray or zombie child."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import dbguard
from dbguard.drift import forked
from tests.projects import wait_for

# fork() is POSIX: the one thing a machine can truly lack here.
pytestmark = pytest.mark.skipif(not forked.can_fork(), reason="this system has no fork()")


@pytest.fixture
def owned(monkeypatch):
    """A process dbguard owns. On a machine with one CPU, forking does not pay and dbguard does not
    fork; its mechanism is the same, so it is tested as if a second CPU were there."""
    monkeypatch.setattr(dbguard, "OWNS_PROCESS", True)
    available = max(2, forked.cpus())
    monkeypatch.setattr(forked, "cpus", lambda: available)
    monkeypatch.setattr(forked, "load", lambda: 0.0)  # whatever else this machine runs
    # dbguard forks only when no other thread runs: a thread an earlier test in this process left
    # winding down (a run monitor's, a session's) must be gone first.
    import threading

    wait_for(forked._alone, timeout=30, message=lambda: f"threads still running: {threading.enumerate()}")


def _items(n):
    for i in range(n):
        yield {"i": i, "data": [b"x" * 100_000, ("a", None, True)]}  # bigger than a pipe's buffer


def _fails_after_one():
    yield "first"
    raise RuntimeError("boom")


def _sleeps(path):
    Path(path).write_text(str(os.getpid()))
    time.sleep(600)
    yield "never"


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # A zombie still answers kill(0): it is gone once its state says so.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0] == "Z"
    except OSError:
        return True


def test_items_come_back_in_order_and_the_child_is_reaped(owned):
    child = forked.Forked.start(_items, 3)
    assert child is not None
    pid = child._pid
    got = [child.receive() for _ in range(3)]
    assert got == [{"i": i, "data": [b"x" * 100_000, ("a", None, True)]} for i in range(3)]
    assert child.receive() is None  # the child ended: nothing more
    child.close()
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # already reaped: no zombie left


def test_a_failing_child_sends_nothing_more(owned):
    child = forked.Forked.start(_fails_after_one)
    assert child is not None
    assert child.receive() == "first"
    assert child.receive() is None
    child.close()


def test_close_ends_a_child_still_working(owned, tmp_path):
    pidfile = tmp_path / "pid"
    child = forked.Forked.start(_sleeps, str(pidfile))
    assert child is not None
    pid = int(wait_for(lambda: pidfile.exists() and pidfile.read_text(), message="the child never started"))
    child.close()
    assert _gone(pid)
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def test_not_forked_for_speed_when_every_cpu_is_busy(owned, monkeypatch):
    monkeypatch.setattr(forked, "load", lambda: 2.5)
    monkeypatch.setattr(forked, "cpus", lambda: 2)
    assert forked.Forked.start(_items, 1) is None
    child = forked.Forked.start(_items, 1, for_speed=False)  # a child that keeps the parent clean still runs
    assert child is not None
    try:
        assert child.receive()["i"] == 0
    finally:
        child.close()
    monkeypatch.setattr(forked, "load", lambda: 1.2)
    child = forked.Forked.start(_items, 1)
    assert child is not None
    child.close()


def test_not_forked_inside_a_host_application_or_beside_another_thread(monkeypatch):
    import threading

    monkeypatch.setattr(forked, "cpus", lambda: 2)
    monkeypatch.setattr(dbguard, "OWNS_PROCESS", False)
    assert forked.Forked.start(_items, 1) is None
    monkeypatch.setattr(dbguard, "OWNS_PROCESS", True)
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait)
    thread.start()
    try:
        assert forked.Forked.start(_items, 1) is None
    finally:
        stop.set()
        thread.join()


_PARENT = textwrap.dedent("""
    import os, signal, sys, time
    from pathlib import Path
    import dbguard
    from dbguard.drift import forked
    dbguard.OWNS_PROCESS = True
    forked.cpus = lambda: 2  # as if a second CPU were there and idle (see the owned fixture)
    forked.load = lambda: 0.0
    # Ctrl-C as in a terminal, whatever this test's runner inherited (a shell's background job ignores
    # SIGINT, and Python then leaves it ignored).
    signal.signal(signal.SIGINT, signal.default_int_handler)

    def sleeps(path):
        Path(path).write_text(str(os.getpid()))
        time.sleep(600)
        yield "never"

    child = forked.Forked.start(sleeps, sys.argv[1])
    try:
        child.receive()
    finally:
        child.close()
""")


@pytest.mark.parametrize("how", ["SIGINT to the process group", "SIGKILL to the parent"])
def test_no_child_outlives_its_parent(tmp_path, how):
    """Ctrl-C reaches parent and child: the child ignores it, the parent ends it on its way out.
    A parent killed outright cannot end it: the kernel does (PR_SET_PDEATHSIG)."""
    pidfile = tmp_path / "pid"
    parent = subprocess.Popen([sys.executable, "-c", _PARENT, str(pidfile)], start_new_session=True,
                              stderr=subprocess.PIPE, text=True)
    try:
        pid = int(wait_for(lambda: pidfile.exists() and pidfile.read_text(), timeout=30,
                           message="the child never started"))
        if how.startswith("SIGINT"):
            os.killpg(parent.pid, signal.SIGINT)
            _, err = parent.communicate(timeout=30)
            assert "KeyboardInterrupt" in err
        else:
            parent.kill()
            parent.wait(timeout=30)
        wait_for(lambda: _gone(pid), timeout=30, message=f"child {pid} outlived its parent ({how})")
    finally:
        if parent.poll() is None:
            parent.kill()
        if pidfile.exists():
            try:
                os.kill(int(pidfile.read_text()), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass
