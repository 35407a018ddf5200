"""The local kill audit file, and copying its records into ``dbguard_kills``.

When the server accepts no writes (the blocker holds a global read lock or a backup stage, or the
database is read-only), a kill's intent is appended to a local file of JSON lines and made durable
(fsync) before the signal; the outcome follows. Each record carries the target it belongs to, so
that the next dbguard command on that target (or the kill itself, once the server accepts writes
again) copies it into ``dbguard_kills``. What the lines mean is :mod:`dbguard.core.audit_log`.

Copying is idempotent: a record already in ``dbguard_kills`` (found by its time, host, process and
victim, which together name one kill) is updated, never written twice, and each copy is noted in
the file; copiers on one host take turns through a lock on the file.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import logging
import os
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection

from dbguard.core import audit_log
from dbguard.db.connect import first_line, masked
from dbguard.db.ledger import KillLedger
from dbguard.db.sql import run_statements
from dbguard.db.waits import LockWaitError, single_attempt
from dbguard.dialects import SessionControl
from dbguard.masking import Masker, active

_log = logging.getLogger(__name__)

FILE_NAME = "kills.jsonl"
# How long a copier waits for another copier on this host to finish with the file.
COPY_LOCK_WAIT_S = 5.0


def default_path(environ: Mapping[str, str] | None = None) -> Path:
    """``$XDG_STATE_HOME/dbguard/kills.jsonl``, else ``~/.local/state/dbguard/kills.jsonl``."""
    environ = os.environ if environ is None else environ
    state = environ.get("XDG_STATE_HOME", "").strip()
    base = Path(state) if state and Path(state).is_absolute() else Path.home() / ".local" / "state"
    return base / "dbguard" / FILE_NAME


def audit_path(setting: str | None, config_path: Path, environ: Mapping[str, str] | None = None) -> Path:
    """The ``audit_file`` setting (``~`` expanded; relative to alembic.ini's folder), else the default."""
    if not setting:
        return default_path(environ)
    path = Path(setting).expanduser()
    return path if path.is_absolute() else config_path.resolve().parent / path


def target_key(url: URL) -> str:
    """The target a record belongs to: its URL without password or driver (``mysql+pymysql`` and
    ``mysql+mysqldb`` reach the same database)."""
    bare = URL.create(url.get_backend_name(), username=url.username, host=url.host, port=url.port,
                      database=url.database, query=url.query)
    return masked(bare)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.timezone.utc).isoformat()
    return value


class AuditFile:
    """An append-only file of JSON lines; every line is on disk before :meth:`append` returns."""

    def __init__(self, path: Path, masker: Masker | None = None) -> None:
        self.path = path
        self._masker = masker

    def append(self, entry: Mapping[str, Any]) -> None:
        masker = self._masker or active()
        line = json.dumps(_masked({k: _jsonable(v) for k, v in entry.items()}, masker), sort_keys=True)
        created = not self.path.exists()
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, (line + "\n").encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)
        if created:  # the file's name must survive a crash too
            with contextlib.suppress(OSError):
                folder = os.open(self.path.parent, os.O_RDONLY)
                try:
                    os.fsync(folder)
                finally:
                    os.close(folder)

    def records(self) -> list[audit_log.FileRecord]:
        try:
            text = self.path.read_text("utf-8", errors="replace")
        except FileNotFoundError:
            return []
        lines = []
        for raw in text.splitlines():
            with contextlib.suppress(ValueError):  # a line torn by a crash
                entry = json.loads(raw)
                if isinstance(entry, dict):
                    lines.append(entry)
        return audit_log.fold(lines)

    @contextlib.contextmanager
    def locked(self, wait_s: float = COPY_LOCK_WAIT_S) -> Iterator[bool]:
        """Whether this copier has the file to itself (another copier on this host may hold it)."""
        import fcntl

        fd = os.open(self.path, os.O_RDONLY)
        try:
            deadline = time.monotonic() + wait_s
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError:
                    if time.monotonic() >= deadline:
                        yield False
                        return
                    time.sleep(0.02)
            try:
                yield True
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)


def _masked(value: Any, masker: Masker) -> Any:
    if isinstance(value, str):
        return masker(value)
    if isinstance(value, dict):
        return {k: _masked(v, masker) for k, v in value.items()}
    if isinstance(value, list):
        return [_masked(v, masker) for v in value]
    return value


def new_record_id() -> str:
    return uuid.uuid4().hex


def intend(file: AuditFile, target: str, row: Mapping[str, Any]) -> str:
    """Append the intent of one kill (the ``dbguard_kills`` row it stands for); its record id."""
    record_id = new_record_id()
    file.append(audit_log.intent_line(record_id, target, {k: _jsonable(v) for k, v in row.items()}))
    return record_id


def complete(file: AuditFile, record_id: str, action: str, outcome: str) -> None:
    file.append(audit_log.outcome_line(record_id, action, outcome))


# --- is the server taking writes? ----------------------------------------------------------------


@contextlib.contextmanager
def probing_writes(conn: Connection, dialect: SessionControl, restore_ms: int) -> Iterator[None]:
    """Within the block, a write that would wait for a lock fails at once (as near as the engine
    allows), so a server that accepts no writes is told within moments, never waited for."""
    run_statements(conn, dialect.write_probe_timeouts())
    try:
        yield
    finally:
        with contextlib.suppress(Exception):
            run_statements(conn, dialect.session_timeouts(restore_ms, 0))


def writes_refused(exc: BaseException, dialect: SessionControl) -> str | None:
    """Why a write failed when the cause is that the server takes none now (a lock it would have to
    wait for, a read-only server or database); None for any other failure."""
    if isinstance(exc, LockWaitError):
        return "a write would wait for a lock (a global read lock, a backup stage, or a lock on the audit table)"
    if isinstance(exc, sa.exc.DBAPIError):
        if dialect.is_lock_timeout(exc):
            return ("a write would wait for a lock (a global read lock, a backup stage, or a lock on the "
                    f"audit table): {first_line(exc)}")
        if dialect.is_read_only_error(exc):
            return f"the server or database is read-only: {first_line(exc)}"
    return None


# --- copying ---------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class CopyResult:
    # record id -> its row id in dbguard_kills, for every record of the target now there
    copied: dict[str, int]
    # records of the target still only in the file
    pending: int
    # why some could not be copied, if so
    error: str | None = None


def _parse_row(row: Mapping[str, Any]) -> dict[str, Any]:
    values = dict(row)
    killed_at = values.get("killed_at")
    if isinstance(killed_at, str):
        values["killed_at"] = dt.datetime.fromisoformat(killed_at)
    return values


def copy_pending(conn: Connection, dialect: SessionControl, ledger: KillLedger, file: AuditFile, target: str,
                 restore_ms: int, wanted: Sequence[str] = ()) -> CopyResult:
    """Copy ``target``'s pending records into ``dbguard_kills``, each once; never waits for a lock.

    ``wanted``: record ids whose row ids the caller wants back even when they were copied before."""
    if not file.path.exists():
        return CopyResult({}, 0)
    with file.locked() as mine:
        records = file.records()
        copied = {r.id: r.ledger_id for r in records
                  if r.target == target and r.id in wanted and not r.pending and r.ledger_id is not None}
        todo = audit_log.pending(records, target)
        if not todo:
            return CopyResult(copied, 0)
        if not mine:
            return CopyResult(copied, len(todo), "another dbguard process on this host is copying the audit file")
        error = None
        try:
            with probing_writes(conn, dialect, restore_ms), single_attempt(ledger):
                ledger.ensure_table()
                for record in todo:
                    values = _parse_row(record.ledger_row())
                    row_id = ledger.find(values["killed_at"], values.get("killed_by_host"),
                                         values.get("killed_by_pid"), str(values.get("victim_session")))
                    if row_id is None:
                        row_id = ledger.record(**values)
                    else:
                        ledger.update(row_id, action=record.action, outcome=record.outcome)
                    file.append(audit_log.copied_line(record.id, record.outcome, row_id))
                    copied[record.id] = row_id
        except Exception as exc:  # noqa: BLE001 - left in the file; the next command tries again
            error = writes_refused(exc, dialect) or first_line(exc)
            _log.debug("kill audit records stay in %s: %s", file.path, error)
        return CopyResult(copied, len([r for r in todo if r.id not in copied]), error)
