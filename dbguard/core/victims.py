"""The kill policy: which blockers may be ended, and how. One pure function, :func:`judge`.

No SQL and no clock: the caller describes each candidate session and the policy as plain data.
How to end a session follows from what it is doing: an idle transaction ignores a cancel (both
engines: ``pg_cancel_backend`` returns true and does nothing, ``KILL QUERY`` leaves the transaction
open), so it is terminated; a running statement is cancelled first and terminated only if it still
holds the lock after a grace period.
"""

from __future__ import annotations

import dataclasses
import enum
import fnmatch
from collections.abc import Iterable, Sequence


class Action(str, enum.Enum):
    TERMINATE = "terminate"
    CANCEL_THEN_TERMINATE = "cancel_then_terminate"
    NONE = "none"


def action_words(action: str) -> str:
    """An action (an :class:`Action` value, or ``cancel``: a cancel that freed the lock) in words."""
    return {"cancel_then_terminate": "cancel, then terminate"}.get(action, action)


class Kind(str, enum.Enum):
    CLIENT = "client"
    PREPARED = "prepared"  # a prepared (2PC) transaction: no session to end
    BACKGROUND = "background"  # server workers, event scheduler, parallel workers ...
    REPLICATION = "replication"  # walsender, binlog dump, replica threads
    AUTOVACUUM = "autovacuum"
    AUTOVACUUM_WRAPAROUND = "autovacuum_wraparound"


class Activity(str, enum.Enum):
    IDLE_IN_TRANSACTION = "idle in transaction"
    IDLE_IN_TRANSACTION_ABORTED = "idle in transaction (aborted)"
    IDLE = "idle"
    ACTIVE = "active"
    WAITING = "waiting"
    UNKNOWN = "unknown"


# Refusal codes, stable for scripts reading --format json.
OK = "ok"
OWN_SESSION = "own_session"
PREPARED = "prepared_transaction"
BACKGROUND = "background_worker"
REPLICATION = "replication"
AUTOVACUUM = "autovacuum"
WRAPAROUND = "autovacuum_wraparound"
OTHER_DATABASE = "other_database"
UNKNOWN_DATABASE = "unknown_database"
PROTECTED_ROLE = "protected_role"
PROTECTED_APPLICATION = "protected_application"
PRIVILEGED = "privileged_session"
MISSING_GRANT = "missing_grant"
TOO_YOUNG = "too_young"
AGE_UNKNOWN = "age_unknown"


@dataclasses.dataclass(frozen=True)
class Candidate:
    """A session someone wants to end, as the policy sees it."""

    session_id: str
    kind: str = Kind.CLIENT.value
    user: str | None = None
    application: str | None = None
    # The database its blocking locks belong to (MySQL: the lock's schema, not the session's default
    # database); None when the source cannot tell (the approximate MySQL heuristic).
    database: str | None = None
    activity: str = Activity.UNKNOWN.value
    xact_age_s: float | None = None
    # A superuser session (PostgreSQL); only a superuser may signal it.
    privileged: bool = False
    # The user named this session by its id (``--pid``) rather than letting dbguard pick it.
    explicit: bool = False


@dataclasses.dataclass(frozen=True)
class KillPolicy:
    database: str
    own_session_ids: frozenset[str] = frozenset()
    db_user: str | None = None
    # The name dbguard's own sessions show (MySQL: the user part of CURRENT_USER()); db_user if None.
    session_user: str | None = None
    protected_roles: tuple[str, ...] = ()
    protected_applications: tuple[str, ...] = ()
    min_age_s: float | None = None
    # dbguard's role may signal superuser sessions (it is a superuser itself).
    can_end_privileged: bool = False
    # dbguard's role may signal sessions of other roles (pg_signal_backend, CONNECTION ADMIN, superuser).
    can_end_other_roles: bool = True
    # The grant that gives ``can_end_other_roles``, named when it is missing.
    signal_grant: str = ""


@dataclasses.dataclass(frozen=True)
class Verdict:
    session_id: str
    action: Action
    code: str
    reason: str
    grant: str | None = None

    @property
    def allowed(self) -> bool:
        return self.action is not Action.NONE


def _matches(value: str | None, patterns: Iterable[str]) -> str | None:
    if value is None:
        return None
    for pattern in patterns:
        if fnmatch.fnmatchcase(value, pattern):
            return pattern
    return None


def _refuse(c: Candidate, code: str, reason: str, grant: str | None = None) -> Verdict:
    return Verdict(c.session_id, Action.NONE, code, reason, grant)


def database_unknown(c: Candidate) -> bool:
    """A client session whose database nothing tells (a guess of the approximate MySQL source): never
    proposed by --roots, --blocking or --holding; only --pid, after the dry run and the confirmation
    have named it so, ends it."""
    return c.database is None and c.kind == Kind.CLIENT.value


def judge_one(c: Candidate, policy: KillPolicy) -> Verdict:
    """The verdict on one candidate; the first rule that refuses wins, in the order written here."""
    verdict = _judge_one(c, policy)
    if verdict.allowed and database_unknown(c):
        # Named with --pid: whoever confirms must read that nobody knows which database it is in.
        return dataclasses.replace(verdict, reason=f"database unknown, named with --pid: {verdict.reason}")
    return verdict


def _judge_one(c: Candidate, policy: KillPolicy) -> Verdict:
    if c.session_id in policy.own_session_ids:
        return _refuse(c, OWN_SESSION, "dbguard's own session")
    if c.kind == Kind.PREPARED.value:
        return _refuse(c, PREPARED, "a prepared transaction has no session to end: ROLLBACK PREPARED frees it")
    if c.kind == Kind.REPLICATION.value:
        return _refuse(c, REPLICATION, "a replication session is never ended")
    if c.kind == Kind.AUTOVACUUM_WRAPAROUND.value:
        return _refuse(c, WRAPAROUND, "an anti-wraparound autovacuum is reported, never interrupted")
    if c.kind == Kind.AUTOVACUUM.value:
        return _refuse(c, AUTOVACUUM, "autovacuum gives way to a waiting lock by itself after deadlock_timeout")
    if c.kind != Kind.CLIENT.value:
        return _refuse(c, BACKGROUND, "a background worker is never ended")
    if c.database is None:
        if not c.explicit:
            return _refuse(c, UNKNOWN_DATABASE, "the database of its locks is unknown (approximate source); "
                                                "name it with --pid to end it anyway")
    elif c.database != policy.database:
        if not c.database:  # read from a lock source: it holds none here
            return _refuse(c, OTHER_DATABASE, f"it holds no lock in database {policy.database}")
        return _refuse(c, OTHER_DATABASE, f"its locks belong to another database ({c.database})")
    role = _matches(c.user, policy.protected_roles)
    if role is not None:
        return _refuse(c, PROTECTED_ROLE, f"role {c.user} is protected (protected_roles: {role})")
    app = _matches(c.application, policy.protected_applications)
    if app is not None:
        return _refuse(c, PROTECTED_APPLICATION,
                       f"application {c.application} is protected (protected_applications: {app})")
    if c.privileged and not policy.can_end_privileged:
        return _refuse(c, PRIVILEGED, "a superuser session: only a superuser may end it; reported, not attacked")
    if policy.min_age_s is not None:
        if c.xact_age_s is None:
            return _refuse(c, AGE_UNKNOWN, f"its transaction age is unknown (--min-age {policy.min_age_s:g})")
        if c.xact_age_s < policy.min_age_s:
            return _refuse(c, TOO_YOUNG, f"transaction {c.xact_age_s:.1f} s old, younger than "
                                         f"--min-age {policy.min_age_s:g} s")
    if not policy.can_end_other_roles and c.user != (policy.session_user or policy.db_user):
        return _refuse(c, MISSING_GRANT, f"dbguard's role {policy.db_user} may not end sessions of {c.user}",
                       grant=policy.signal_grant or None)
    if c.activity in (Activity.IDLE_IN_TRANSACTION.value, Activity.IDLE_IN_TRANSACTION_ABORTED.value,
                      Activity.IDLE.value):
        return Verdict(c.session_id, Action.TERMINATE, OK, f"{c.activity}: a cancel does nothing to it")
    return Verdict(c.session_id, Action.CANCEL_THEN_TERMINATE, OK,
                   f"{c.activity}: cancel its statement, terminate if it still holds the lock after the grace period")


def judge(candidates: Sequence[Candidate], policy: KillPolicy) -> tuple[Verdict, ...]:
    """The verdict on each candidate, in the same order. Pure; the only place the kill policy lives."""
    return tuple(judge_one(c, policy) for c in candidates)
