"""Results of ``dbguard locks`` and ``locks kill``."""

from __future__ import annotations

import dataclasses
import datetime as dt

from dbguard.errors import ExitCode


@dataclasses.dataclass(frozen=True)
class LockRef:
    """A lock a session holds (granted) or waits for, on a table when it is a table lock."""

    mode: str
    granted: bool
    table: str | None = None
    locktype: str = "relation"
    # What is locked when it is not a whole table, as the server names it: ``advisory 42``,
    # ``advisory (1, 2)``, ``role bob``, ``database shop``, ``row 1 in index PRIMARY`` (of ``table``).
    object: str | None = None


@dataclasses.dataclass(frozen=True)
class LockSession:
    """One session in the wait-for tree (or a prepared transaction: kind ``prepared``, id ``prepared:<gid>``)."""

    session_id: str
    kind: str
    user: str | None
    application: str | None
    client: str | None
    # The database its locks belong to (MySQL: the lock's schema; where no lock source names one, its
    # default database, PROCESSLIST.DB); None when nothing tells: "database unknown".
    database: str | None
    state: str
    xact_age_s: float | None
    query: str | None
    blocked_by: tuple[str, ...] = ()
    is_root: bool = False
    depth: int = 0
    locks: tuple[LockRef, ...] = ()
    privileged: bool = False
    # Opaque: compared again right before ending the session, so a reused id is never hit.
    identity: str | None = None
    gid: str | None = None
    free_with: str | None = None
    # How long it has waited for the lock it waits for (None: it waits for none, or the server does not say).
    wait_s: float | None = None
    # Those of ``blocked_by`` that are guesses (from statement text and open transactions, where no
    # lock source says who holds what), not read from a lock source.
    guessed_blockers: tuple[str, ...] = ()
    # How long its transaction has been idle (idle in transaction only), and how long its statement
    # has run (a running or waiting statement only); None where it does not apply.
    idle_s: float | None = None
    busy_s: float | None = None
    # Sessions that wait for it: directly, and in all (through any chain of waits), in this tree.
    blocks_direct: int = 0
    blocks_total: int = 0
    # The database it connected to (PostgreSQL) or its default database (MySQL: PROCESSLIST.DB),
    # whatever database its locks are in: what --default-database matches.
    default_database: str | None = None
    # Where the server has no application names (MySQL, MariaDB): ``dbguard/<command>/run-<id>`` when
    # dbguard's ledger ties the session to a run in progress (core/appname.py ``ledger_names``). Shown
    # only: the kill policy and the filters go by ``application``, what the server says.
    ledger_application: str | None = None


@dataclasses.dataclass(frozen=True)
class LockTree:
    """``dbguard locks``: who blocks whom in the target database, root blockers first."""

    engine: str
    database: str
    source: str
    approximate: bool
    sessions: tuple[LockSession, ...]
    roots: tuple[str, ...]
    table: str | None = None
    warnings: tuple[str, ...] = ()
    exit_code: ExitCode = ExitCode.OK
    # With ``table``: every session holding a lock on it now, waited for or not (each conflicts with
    # the lock a DDL on it takes: ACCESS EXCLUSIVE, an exclusive metadata lock).
    holders: tuple[str, ...] = ()
    # The filters that narrowed ``sessions`` and ``roots`` (as typed), and how many sessions they hid.
    filters: str = ""
    hidden: int = 0


@dataclasses.dataclass(frozen=True)
class LockSnapshot:
    """One refresh of ``dbguard locks --watch``: the tree, when it was read, and its number (from 1),
    so that a reader of a stream sees a refresh it missed."""

    seq: int
    taken_at: dt.datetime
    tree: LockTree
    # The refresh interval; None for a single snapshot.
    interval_s: float | None = None

    @property
    def exit_code(self) -> ExitCode:
        return self.tree.exit_code


@dataclasses.dataclass(frozen=True)
class KillOutcome:
    """What happened (or would happen) to one chosen session."""

    session: LockSession
    action: str
    code: str
    reason: str
    outcome: str
    grant: str | None = None
    duration_ms: int | None = None
    # Its record: a dbguard_kills id, or (text) a record id in the local audit file not copied yet.
    audit_id: int | str | None = None


@dataclasses.dataclass(frozen=True)
class KillReport:
    """``dbguard locks kill``: the chosen sessions, the policy's verdicts and the outcomes."""

    database: str
    selection: str
    dry_run: bool
    outcomes: tuple[KillOutcome, ...]
    exit_code: ExitCode = ExitCode.OK
    message: str = ""
    warnings: tuple[str, ...] = ()
    source: str = ""
    approximate: bool = False
    # Set when the server took no writes: the local file the audit went to first, what became of its
    # records (said in words), and how many are not in dbguard_kills yet.
    audit_file: str | None = None
    audit_note: str | None = None
    audit_pending: int = 0
    # The filters that narrowed the chosen sessions (as typed).
    filters: str = ""
