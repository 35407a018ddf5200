"""A run's own sessions on the server: recorded in the ledger as the run opens them, so that a
statement of a run whose process died (or was interrupted, or taken over) never runs on unseen.

Ending one is not the lock killer's policy decision: they are dbguard's own orphaned work, ended
whatever ``--no-kill-blockers`` says, audited before the signal, and confirmed gone by the server.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from dbguard.db.sql import run
from dbguard.db.waits import wait_until
from dbguard.dialects import Dialect, SessionControl, session_control_of

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
    # "cancelled" (its statement ended), "idle" (it ran none), "terminated", "gone" (nothing to
    # end), or "still running" (the server did not confirm within the time given).
    outcome: str
    action: str

    @property
    def confirmed(self) -> bool:
        return self.outcome != "still running"


def identify(conn: Connection, dialect: Dialect, session_id: str) -> RecordedSession | None:
    """What to record of a session the run opened (None on an engine without server sessions)."""
    statement = dialect.session_identity(session_id)
    if statement is None or dialect.run_lock_kind != "sql":
        return None
    identity = run(conn, statement).scalar()
    return None if identity is None else RecordedSession(str(session_id), str(identity))


def command(conn: Connection, dialect: Dialect, session: RecordedSession) -> str | None:
    """The session's command or state on the server; None once it is gone (or another session
    took its id)."""
    statement = session_control_of(dialect).session_command(session.session_id, session.identity)
    row = run(conn, statement).first()
    return None if row is None else str(row[0])


def _wait(predicate: Callable[[], bool], seconds: float) -> bool:
    return wait_until(predicate, seconds, _POLL_S)


def _signal(conn: Connection, dialect: SessionControl, statement: Any) -> None:
    try:
        run(conn, statement)
    except DBAPIError as exc:
        if not dialect.is_session_gone(exc):
            raise


def end(conn: Connection, dialect: Dialect, session: RecordedSession, grace_s: float, wait_s: float,
        before_signal: Callable[[RecordedSession, str], None] = lambda session, action: None,
        terminate: bool = True) -> Ended:
    """End what the session does: a running statement is cancelled first (so it unwinds cleanly) and
    given ``grace_s``; then, with ``terminate``, the session itself is ended (an orphan's open
    transaction would keep its locks) and given ``wait_s`` to be gone. ``before_signal`` is told each
    signal before it is sent (the audit)."""
    control = session_control_of(dialect)
    state = command(conn, control, session)
    if state is None:
        return Ended(session, "gone", "none")
    action = "none"
    if control.is_running(state):
        before_signal(session, "cancel")
        action = "cancel"
        _signal(conn, control, control.cancel_session(session.session_id, session.identity))
        stopped = _wait(lambda: not control.is_running(command(conn, control, session)), grace_s)
        if not terminate:
            return Ended(session, "cancelled" if stopped else "still running", action)
    elif not terminate:
        return Ended(session, "idle", action)
    if command(conn, control, session) is None:
        return Ended(session, "gone" if action == "none" else "cancelled", action)
    before_signal(session, "terminate")
    action = "terminate" if action == "none" else "cancel_then_terminate"
    _signal(conn, control, control.terminate_session(session.session_id, session.identity))
    if _wait(lambda: command(conn, control, session) is None, wait_s):
        return Ended(session, "terminated", action)
    return Ended(session, "still running", action)
