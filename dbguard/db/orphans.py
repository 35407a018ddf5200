"""A run's own sessions on the server: recorded in the ledger as the run opens them, so that a
statement of a run whose process died (or was interrupted, or taken over) never runs on unseen.

Ending one is not the lock killer's policy decision: they are dbguard's own orphaned work, ended
whatever ``--no-kill-blockers`` says, audited before the signal, and confirmed gone by the server.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable
from typing import Any

from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from dbguard.db.sql import run

# How often the server is asked whether a session is gone, while waiting for it.
_POLL_S = 0.05


@dataclasses.dataclass(frozen=True)
class RecordedSession:
    session_id: str
    identity: str

    def as_json(self) -> dict[str, str]:
        return {"id": self.session_id, "identity": self.identity}

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> RecordedSession:
        return cls(str(value["id"]), str(value["identity"]))


@dataclasses.dataclass(frozen=True)
class Ended:
    session: RecordedSession
    # "cancelled" (its statement ended, the session idle), "terminated", "gone" (nothing to end),
    # or "still running" (the server did not confirm within the time given).
    outcome: str
    action: str

    @property
    def confirmed(self) -> bool:
        return self.outcome != "still running"


def identify(conn: Connection, dialect: Any, session_id: str) -> RecordedSession | None:
    """What to record of a session the run opened (None on an engine without server sessions)."""
    statement = getattr(dialect, "session_identity", None)
    if statement is None or dialect.run_lock_kind != "sql":
        return None
    identity = run(conn, statement(session_id)).scalar()
    return None if identity is None else RecordedSession(str(session_id), str(identity))


def command(conn: Connection, dialect: Any, session: RecordedSession) -> str | None:
    """The session's command or state on the server; None once it is gone (or another session
    took its id)."""
    row = run(conn, dialect.session_command(session.session_id, session.identity)).first()
    return None if row is None else str(row[0])


def running(conn: Connection, dialect: Any, sessions: Iterable[RecordedSession]) -> list[RecordedSession]:
    """The recorded sessions still running a statement."""
    return [s for s in sessions if dialect.is_running(command(conn, dialect, s))]


def _wait(predicate: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(_POLL_S)


def _signal(conn: Connection, dialect: Any, statement: Any) -> None:
    try:
        run(conn, statement)
    except DBAPIError as exc:
        if not getattr(dialect, "is_session_gone", lambda e: False)(exc):
            raise


def end(conn: Connection, dialect: Any, session: RecordedSession, grace_s: float, wait_s: float,
        before_signal: Callable[[RecordedSession, str], None] = lambda session, action: None,
        terminate: bool = True) -> Ended:
    """Cancel the session's statement and wait ``grace_s`` for the server to say it ended; then
    (``terminate``) end the session and wait ``wait_s`` for it to be gone. ``before_signal`` is told
    each signal before it is sent (the audit)."""
    if not dialect.is_running(command(conn, dialect, session)):
        return Ended(session, "gone" if command(conn, dialect, session) is None else "cancelled", "none")
    before_signal(session, "cancel")
    _signal(conn, dialect, dialect.cancel_session(session.session_id, session.identity))
    if _wait(lambda: not dialect.is_running(command(conn, dialect, session)), grace_s):
        return Ended(session, "cancelled", "cancel")
    if not terminate:
        return Ended(session, "still running", "cancel")
    before_signal(session, "terminate")
    _signal(conn, dialect, dialect.terminate_session(session.session_id, session.identity))
    if _wait(lambda: command(conn, dialect, session) is None, wait_s):
        return Ended(session, "terminated", "cancel_then_terminate")
    return Ended(session, "still running", "cancel_then_terminate")


def end_session(conn: Connection, dialect: Any, session: RecordedSession, wait_s: float,
                before_signal: Callable[[RecordedSession, str], None] = lambda session, action: None) -> Ended:
    """End the session whatever it is doing (a takeover: the old run must not commit later), and
    wait ``wait_s`` for the server to say it is gone."""
    if command(conn, dialect, session) is None:
        return Ended(session, "gone", "none")
    before_signal(session, "terminate")
    _signal(conn, dialect, dialect.terminate_session(session.session_id, session.identity))
    if _wait(lambda: command(conn, dialect, session) is None, wait_s):
        return Ended(session, "terminated", "terminate")
    return Ended(session, "still running", "terminate")
