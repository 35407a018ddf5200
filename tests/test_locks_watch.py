"""`dbguard locks --watch` and `locks --format jsonl`: one process watching a real blocking chain on
PostgreSQL and MariaDB, read from its stdout pipe snapshot by snapshot, ended with SIGINT."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from dbguard import output
from dbguard.errors import ExitCode
from dbguard.results import LockSession, LockSnapshot, LockTree
from tests.lockscene import Scene, dbguard, execute, session_id, write_ini
from tests.projects import wait_for

HEADER = re.compile(r"^dbguard locks: snapshot (\d+) at \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC, every 0\.2 s")


class Watcher:
    """`dbguard locks --watch ...` with stdout a pipe; a thread collects its lines as they come."""

    def __init__(self, ini: Path, url: str, *args: str) -> None:
        env = {**os.environ, "DBGUARD_URL": url}
        self.proc = subprocess.Popen([sys.executable, "-m", "dbguard", "-c", str(ini), *args], env=env,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_lines(self, predicate, message: str) -> None:
        wait_for(lambda: predicate(list(self.lines)) or self.proc.poll() is not None, timeout=30,
                 message=lambda: f"{message}; got {self.lines}")
        assert self.proc.poll() is None, (self.lines, self.finish(signal.SIGINT))

    def finish(self, signum: int | None) -> tuple[int, str]:
        """Sends ``signum`` (if still running), then its exit code and stderr."""
        if signum is not None and self.proc.poll() is None:
            self.proc.send_signal(signum)
        try:
            code = self.proc.wait(timeout=30)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
        self.reader.join(10)
        assert self.proc.stderr is not None
        return code, self.proc.stderr.read()


@pytest.fixture
def ini(tmp_path):
    return write_ini(tmp_path)


def _scene(url: str) -> Scene:
    s = Scene(url)
    execute(s.admin, "CREATE TABLE t (id INT PRIMARY KEY)")
    execute(s.admin, "INSERT INTO t VALUES (1)")
    return s


@pytest.fixture
def pg_chain(pg_url):
    """A (idle in transaction) -> X (ALTER, waiting) -> B (waiting), the waits timed by the server."""
    s = _scene(pg_url)
    try:
        a, x, b, _, _ = s.chain()
        ids = [session_id(c) for c in (a, x, b)]
        # pg_locks.waitstart is set a moment after a wait begins.
        wait_for(lambda: execute(s.admin, "SELECT count(*) FROM pg_locks WHERE NOT granted AND waitstart IS NOT NULL "
                                          f"AND pid IN ({ids[1]}, {ids[2]})")[0][0] == 2, message="waitstart never set")
        yield ids
    finally:
        s.close()


def _frames(lines: list[str]) -> list[list[str]]:
    frames: list[list[str]] = []
    for line in lines:
        if HEADER.match(line):
            frames.append([])
        if frames:
            frames[-1].append(line)
    return frames


def _shows_chain(frame: list[str], ids: list[str]) -> bool:
    pa, px, pb = ids
    text = "\n".join(frame)
    return f"root blockers: {pa}" in text and f"ROOT {pa} " in text and f"└ {px} " in text and f"└ {pb} " in text


def test_watch_on_a_pipe_prints_whole_trees_until_sigint_ends_it_with_0(pg_chain, ini, pg_url):
    ids = pg_chain
    watcher = Watcher(ini, pg_url, "locks", "--watch", "0.2")
    watcher.wait_lines(lambda lines: len([f for f in _frames(lines) if _shows_chain(f, ids)]) >= 3,
                       "three snapshots of the chain never came")
    code, err = watcher.finish(signal.SIGINT)
    assert code == 0 and err == "", err
    frames = _frames(watcher.lines)
    assert [int(HEADER.match(f[0]).group(1)) for f in frames[:3]] == [1, 2, 3]  # type: ignore[union-attr]
    assert "\x1b" not in "\n".join(watcher.lines)  # no redrawing on a pipe
    # Snapshots are apart: a blank line ends each before the next header.
    assert all(watcher.lines[watcher.lines.index(f[0]) - 1] == "" for f in frames[1:3])


def test_sigterm_ends_a_watch_as_any_command_with_130_and_says_terminated(ini, pg_url):
    watcher = Watcher(ini, pg_url, "locks", "--watch", "0.2")
    watcher.wait_lines(lambda lines: len(_frames(lines)) >= 1, "no snapshot came")
    code, err = watcher.finish(signal.SIGTERM)
    assert code == 130 and err.strip() == "dbguard: terminated", err


def test_watch_jsonl_streams_numbered_snapshots_of_the_chain(pg_chain, ini, pg_url):
    pa, px, pb = pg_chain
    watcher = Watcher(ini, pg_url, "--format", "jsonl", "locks", "--watch", "0.2", "--table", "t")
    watcher.wait_lines(lambda lines: len(lines) >= 3, "three JSON lines never came")
    code, err = watcher.finish(signal.SIGINT)
    assert code == 0 and err == "", err
    snapshots = [json.loads(line) for line in watcher.lines]
    assert [s["seq"] for s in snapshots[:3]] == [1, 2, 3]
    for snap in snapshots[:3]:
        assert snap["event"] == "snapshot" and snap["interval_s"] == 0.2 and snap["table"] == "public.t"
        dt.datetime.fromisoformat(snap["taken_at"])
        assert snap["roots"] == [pa] and snap["exit_code"] == int(ExitCode.FINDINGS)
        by_id = {s["session_id"]: s for s in snap["sessions"]}
        assert by_id[pa]["blocks_total"] == 2 and by_id[px]["blocks_total"] == 1
        assert by_id[pb]["wait_s"] is not None and by_id[pb]["blocked_by"] and by_id[px]["wait_s"] is not None
    assert snapshots[0]["taken_at"] <= snapshots[1]["taken_at"] <= snapshots[2]["taken_at"]


def test_one_jsonl_snapshot_without_watch_exits_as_locks_does(pg_chain, ini, pg_url):
    done = dbguard(ini, pg_url, "locks", "--format", "jsonl")
    assert done.returncode == 1, done.stderr  # somebody waits: --fail-after 0
    (line,) = done.stdout.splitlines()
    snap = json.loads(line)
    assert snap["seq"] == 1 and snap["interval_s"] is None and snap["roots"] == [pg_chain[0]]


def test_a_connection_lost_mid_watch_ends_it_with_one_line_and_2(pg_url, ini):
    s = _scene(pg_url)
    try:
        watcher = Watcher(ini, pg_url, "--format", "jsonl", "locks", "--watch", "0.2")
        watcher.wait_lines(lambda lines: len(lines) >= 1, "no snapshot came")
        database = pg_url.rsplit("/", 1)[1]
        ended = execute(s.admin, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = "
                                 f"'{database}' AND application_name LIKE 'dbguard/locks%'")
        assert ended == [(True,)], ended
        code, err = watcher.finish(None)
    finally:
        s.close()
    assert code == 2, err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith(f"dbguard: error: lost the connection to database {database} after "), err
    assert json.loads(watcher.lines[-1])["exit_code"] == 2  # jsonl: the error is a summary line too


def test_watch_jsonl_on_mariadb(mysql_url, ini):
    s = _scene(mysql_url)
    try:
        if "mariadb" not in execute(s.admin, "SELECT VERSION()")[0][0].lower():
            pytest.skip("MariaDB's sources; MySQL 8 is covered by its SQL text")
        a, x, b, _, _ = s.chain()
        ia, ix, ib = (session_id(c) for c in (a, x, b))
        watcher = Watcher(ini, mysql_url, "--format", "jsonl", "locks", "--watch", "0.2")
        watcher.wait_lines(lambda lines: len(lines) >= 3, "three JSON lines never came")
        code, err = watcher.finish(signal.SIGINT)
    finally:
        s.close()
    assert code == 0 and err == "", err
    snapshots = [json.loads(line) for line in watcher.lines[:3]]
    assert [snap["seq"] for snap in snapshots] == [1, 2, 3]
    for snap in snapshots:
        by_id = {x["session_id"]: x for x in snap["sessions"]}
        assert snap["roots"] == [ia] and by_id[ia]["blocks_total"] == 2, snap
        assert by_id[ib]["wait_s"] is not None and by_id[ix]["wait_s"] is not None


# Without a database -------------------------------------------------------------------------------


def _snapshot(seq: int, interval_s: float | None = 0.5) -> LockSnapshot:
    waiter = LockSession(session_id="7", kind="client", user="u", application=None, client=None, database="d",
                         state="waiting", xact_age_s=1.0, query="ALTER TABLE t ADD c INT", blocked_by=("3",),
                         depth=1, wait_s=0.5)
    root = LockSession(session_id="3", kind="client", user="u", application=None, client=None, database="d",
                       state="idle in transaction", xact_age_s=9.0, query=None, is_root=True, blocks_direct=1,
                       blocks_total=1)
    tree = LockTree(engine="postgresql", database="d", source="pg_blocking_pids", approximate=False,
                    sessions=(root, waiter), roots=("3",), exit_code=ExitCode.FINDINGS)
    return LockSnapshot(seq=seq, taken_at=dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc), tree=tree,
                        interval_s=interval_s)


def test_a_snapshot_line_is_the_trees_json_with_its_number_and_time() -> None:
    snap = _snapshot(4)
    line = output.render(snap, "jsonl")
    assert "\n" not in line
    data = json.loads(line)
    tree = json.loads(output.to_json(snap.tree))
    assert data == {"event": "snapshot", "seq": 4, "taken_at": "2026-01-02T03:04:05+00:00", "interval_s": 0.5,
                    **tree}
    assert snap.exit_code == ExitCode.FINDINGS


def test_frames_redraw_on_a_terminal_and_follow_each_other_on_a_pipe() -> None:
    first, later = _snapshot(1), _snapshot(2)
    head = "dbguard locks: snapshot 2 at 2026-01-02 03:04:05 UTC, every 0.5 s (Ctrl-C ends)"
    assert output.render_frame(later, in_place=True).startswith("\x1b[H\x1b[2J" + head + "\n")
    assert output.render_frame(first, in_place=False).startswith("dbguard locks: snapshot 1 at ")
    piped = output.render_frame(later, in_place=False).splitlines()
    assert piped[:4] == ["", head, "postgresql database d: source pg_blocking_pids", "root blockers: 3"]
    assert piped[4].startswith("  ROOT 3 ") and piped[5].startswith("    └ 7 ")
    assert output.render(_snapshot(1, None)).splitlines()[0] == "dbguard locks: snapshot 1 at 2026-01-02 03:04:05 UTC"


def test_jsonl_is_offered_to_locks_not_to_locks_kill() -> None:
    assert output.formats_for("locks") == ("text", "json", "jsonl")
    assert output.formats_for("locks", "kill") == ("text", "json")
    assert output.formats_for("fleet", "upgrade") == ("text", "json", "jsonl")
    assert output.formats_for("history") == ("text", "json")


def test_a_statement_seen_again_is_not_parsed_again() -> None:
    from dbguard.db import lock_graph

    sql = "ALTER TABLE shop.t_watch_cache ADD COLUMN c INT"
    first = lock_graph.tables_in_statement(sql, "mysql", "d")
    hits = lock_graph._tables_in_statement.cache_info().hits
    assert lock_graph.tables_in_statement(sql, "mysql", "d") == first == (("shop", "t_watch_cache"),)
    assert lock_graph._tables_in_statement.cache_info().hits == hits + 1
    assert lock_graph.tables_in_statement(sql.replace("shop.", ""), "mysql", "d") == (("d", "t_watch_cache"),)


def test_a_reader_that_goes_away_ends_a_watch_with_0(ini, pg_url):
    env = {**os.environ, "DBGUARD_URL": pg_url}
    proc = subprocess.Popen([sys.executable, "-m", "dbguard", "-c", str(ini), "locks", "--watch", "0.1"], env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline()  # the first snapshot came: `| head -1` goes away
    proc.stdout.close()
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0 and err == "", err
