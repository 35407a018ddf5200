"""One guarded run: pre-flight (run lock, state, breaker), execute (bounded lock waits, retries),
post-flight (steps reconciled with alembic_version, run recorded, lock released)."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import random
import socket
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import sqlalchemy as sa

from dbguard import __version__, faultpoints, masking
from dbguard.core import breaker
from dbguard.core.retry import backoff_ms
from dbguard.core.state import (
    Intent,
    RunRecord,
    RunStatus,
    StepStatus,
    TargetState,
    derive_state,
    step_status_after_run,
)
from dbguard.core.verdict import what_was_checked
from dbguard.db import connect as dbconnect
from dbguard.db.ledger import Ledger, missing_privileges, read_version_heads, utcnow
from dbguard.db.runlock import DATABASE_KEY, RunLock, acquire
from dbguard.db.sql import run, run_statements
from dbguard.db.waits import LockWaitError, single_attempt
from dbguard.errors import (
    BudgetSpent,
    Cancelled,
    ConfigError,
    DbguardError,
    ExitCode,
    PrivilegeError,
    StatementParseError,
    TargetMismatchError,
    is_internal,
)
from dbguard.masking import mask
from dbguard.migrations import bridge
from dbguard.results import Confirm, RiskPrompt, RunResult, StepResult
from dbguard.run.cancel import Cancellation, cancellable
from dbguard.target import Session, Target, make_lock, open_session, os_user, shorter_lock_waits

_DIRECTION = {Intent.UPGRADE: "up", Intent.DOWNGRADE: "down"}


# What a run decided and why, for -v (the CLI's debug log; a host's logging otherwise).
_log = logging.getLogger(__name__)


def describe_error(exc: BaseException, secrets: list[str | None]) -> tuple[str, str]:
    """(class, one masked line) of the error under any SQLAlchemy wrapper."""
    orig = getattr(exc, "orig", None) or exc
    cls = f"{type(orig).__module__}.{type(orig).__qualname__}"
    return cls, mask(dbconnect.first_line(exc)[:2000], secrets)


def _error_chain(exc: BaseException) -> Iterator[BaseException]:
    seen = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


@dataclasses.dataclass
class _Runner:
    target: Target
    session: Session
    ledger: Ledger
    lock: RunLock
    script: Any
    # The drift pre-flight's verdict (dbguard.drift.checks.GuardCheck), for the post-flight.
    drift_check: Any = None
    # The target's state the breaker judged (TargetState value), once it has.
    prior_state: str | None = None
    # Differences from the reference known before the run: carried over by the end check.
    known_drift: frozenset[str] = frozenset()
    # The pre-flight has just stored the reference of the starting revisions (nothing to verify against).
    stored_start: bool = False
    # Something changed the schema besides the migration's steps (the rollback's repair of a partial step).
    schema_touched: bool = False
    # The server sessions this run migrates on, recorded in its ledger row as they open.
    sessions: list[Any] = dataclasses.field(default_factory=list)
    # What became of the statement in flight when the run was interrupted (None: none was).
    interrupted_statement: str | None = None
    # The connections migrations ran on (env.py's, the repair's).
    migration_connections: list[Any] = dataclasses.field(default_factory=list)
    # A host's request to stop the run from another thread (dbguard.api.cancel).
    cancellation: Cancellation = dataclasses.field(default_factory=Cancellation)
    # ``plan --observe``'s run on a scratch database: told every statement (bridge.StepTracker.observer).
    observer: Any = None

    def bounded_named_statements(self) -> list[str]:
        """Bounded lock waits and statements, and the run's name (over one env.py gave it: the
        migration is dbguard's run): the SETs on any connection env.py opens for dbguard."""
        dialect, settings = self.session.dialect, self.settings
        return [*dialect.session_timeouts(settings.lock_timeout_ms, settings.statement_timeout_ms),
                *dialect.set_application_name(settings.application)]

    def migration_session_statements(self) -> list[str]:
        """The SETs on every connection a migration runs on: :meth:`bounded_named_statements`, commits
        that do not wait for the flush (the run's verdict does), and, where the server can, a check for
        a client that died mid-statement."""
        dialect = self.session.dialect
        statements = [*self.bounded_named_statements(), *dialect.migration_commit_statements]
        version = self.session.conn.dialect.server_version_info or ()
        if dialect.name == "postgresql" and tuple(version[:1]) >= (14,):
            statements = [*statements, *dialect.dead_client_checks(DEAD_CLIENT_CHECK_MS)]
        return statements

    def guard_migration_socket(self, connection: Any) -> None:
        """A migration statement without an answer by its statement timeout plus frozen_margin_s is
        given up (its socket shut down); its error says so (:meth:`frozen`)."""
        from dbguard.target import guard_socket

        if self.settings.statement_timeout_ms > 0:
            guard_socket(connection, self.settings, self.settings.statement_timeout_ms / 1000)
        self.migration_connections.append(connection)

    def frozen(self) -> str | None:
        """Why a migration connection was given up, if one was."""
        from dbguard.db import deadline

        return next((why for why in map(deadline.expired, self.migration_connections) if why), None)

    def record_session(self, connection: Any, session_id: str, run_id: int) -> None:
        """Write down a migration session as it opens, so nothing it runs outlives a dead process."""
        from dbguard.db import orphans

        found = orphans.identify(connection, self.session.dialect, session_id)
        if found is None or found in self.sessions:
            return
        self.sessions.append(found)
        self.ledger.update_run(run_id, sessions=tuple((s.session_id, s.identity) for s in self.sessions))

    def stop_statement(self, session_id: str | None, statement: str | None) -> str | None:
        """On an interrupt: cancel the migration's statement on the server and wait, bounded, until
        the server says it ended (else end the session). Returns what happened, for the record."""
        from dbguard.db import orphans

        if session_id is None or statement is None:
            return None
        recorded = next((s for s in self.sessions if s.session_id == session_id), None)
        if recorded is None:
            return None
        try:
            grace = self.settings.kill_grace_ms / 1000
            ended = orphans.end(self.session.conn, self.session.dialect, recorded, grace, INTERRUPT_WAIT_S,
                                terminate=False)
            if not ended.confirmed:  # it did not stop when cancelled: the session goes with it
                ended = orphans.end(self.session.conn, self.session.dialect, recorded, grace, INTERRUPT_WAIT_S)
        except Exception as exc:  # noqa: BLE001 - the record says what could not be confirmed
            return f"its statement could not be cancelled on the server ({dbconnect.first_line(exc)})"
        if ended.confirmed:
            return f"its statement ended on the server ({ended.outcome})"
        return f"its statement still runs on the server in session {session_id}: end it before any retry"

    def start_reference(self, heads: tuple[str, ...], last: RunRecord | None) -> None:
        """Where the target is as the ledger left it: the drift the pre-flight found is pre-existing
        (carried over by the end check), and what it read becomes the reference of the starting
        revisions if none is stored. After a failed or dead run neither: what the pre-flight finds
        then may be that run's leftovers."""
        from dbguard.run import verify

        check = self.drift_check.preflight if self.drift_check is not None else None
        if check is None or not verify.ledger_agrees(last, heads):
            return
        accepted = verify.accepted_differences(self.ledger.recent_runs(limit=200, changing_only=True))
        self.known_drift = self.known_drift | verify.drift_keys(check.drifts) | accepted
        self.stored_start = verify.store_start_reference(self.session, self.target, check.live, check.live_hash,
                                                         heads, last)

    def preflight_findings(self) -> tuple[str, ...]:
        return tuple(self.drift_check.warnings) if self.drift_check is not None else ()

    @property
    def settings(self) -> Any:
        return self.target.settings

    def name_run(self, run_id: int, intent: Intent) -> None:
        """From its run id on, the run's sessions carry it in their name: dbguard's own, renamed here,
        and every one opened later (the migration's, the monitor's, the rollback's repair)."""
        from dbguard.core import appname

        named = self.settings.application
        if named == appname.PREFIX:  # not started through dbguard.api (a fleet's worker)
            named = appname.application_name(intent.value)
        self.target.settings = self.settings.replace(application=appname.with_run(named, run_id))
        run_statements(self.session.conn, self.session.dialect.set_application_name(self.settings.application))

    def base_row(self, intent: Intent, heads: tuple[str, ...], to_revision: str | None) -> dict[str, Any]:
        return {
            "intent": intent.value,
            "from_revisions": heads,
            "to_revision": to_revision,
            "started_at": utcnow(),
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "os_user": os_user(),
            "db_user": self.session.db_user,
            "dbguard_version": __version__,
            "forced": False,
            "lock_session": self.session.session_id or str(os.getpid()),
            "command": mask(" ".join(sys.argv), self.target.secrets)[:4000],
        }

    def record_refusal(self, row: dict[str, Any], reason: str) -> int:
        return self.ledger.insert_run(**row, status=RunStatus.REFUSED.value, finished_at=utcnow(), error=reason)

    def ensure_ledger(self) -> None:
        """The ledger's tables, created or completed, once the user is known to have what writing
        them takes: a right found missing half-way would leave a migration committed and unrecorded."""
        self.require_ledger_privileges()
        try:
            self.ledger.ensure_tables()
        except sa.exc.DBAPIError as exc:
            if self.session.dialect.is_privilege_error(exc):
                user = self.session.db_user or "this user"
                raise PrivilegeError(
                    f"database user {user} cannot create dbguard's ledger tables in {self.session.database}: "
                    f"{dbconnect.first_line(exc)}; grant it with: "
                    f"{self.session.dialect.ledger_grant_hint(user, self.session.database)}"
                ) from None
            raise

    def require_ledger_privileges(self) -> None:
        session, prefix = self.session, self.settings.table_prefix
        # Not the kill audit: whoever ends a session checks that one first, and ends nobody without it.
        tables = [f"{prefix}{suffix}" for suffix in ("runs", "steps", "schemas")]
        found = missing_privileges(session.conn, session.dialect, session.db_user, session.database, tables,
                                   self.ledger.complete())
        if found is not None:
            missing, grants = found
            raise PrivilegeError(
                f"database user {session.db_user} lacks {'; '.join(missing)} for dbguard's ledger in "
                f"{session.database}; nothing was changed. Grant it with: {grants}"
            )

    def verify_connection(self, connection: Any) -> None:
        """env.py's connection must reach the very database whose run lock dbguard holds."""
        from dbguard import masking

        # env.py may have built its URL itself (secrets from a vault): its password is a secret too.
        password = getattr(getattr(getattr(connection, "engine", None), "url", None), "password", None)
        if password:
            masking.remember([str(password)])
        dialect = self.session.dialect
        database = run(connection, dialect.current_database()).scalar()
        same = database is not None and dialect.normalize_database(str(database)) == dialect.normalize_database(
            self.session.database
        )
        if same and dialect.run_lock_kind == "sql":
            holder = run(connection, dialect.run_lock_holder(self.session.database, DATABASE_KEY)).scalar()
            same = holder is not None and str(holder) == self.session.session_id
        if not same:
            raise TargetMismatchError(
                f"env.py connected to another server or database ({database}) than the one dbguard "
                f"locked and records in ({self.target.masked_url}); aborted before any DDL. Make env.py use "
                "the configured sqlalchemy.url"
            )


# How often a PostgreSQL migration session looks for a client that died mid-statement.
DEAD_CLIENT_CHECK_MS = 500
# How long an interrupted run waits for the server to confirm its statement ended, after the grace.
INTERRUPT_WAIT_S = 5.0

# On SQLite nobody but the run's own migration writes while the run lock is held: a step row that
# meets its transaction waits only this long before it joins the queue.
_JOURNAL_WAIT_MS = 100


class _StepJournal:
    """Step rows written as steps start and end; on SQLite a write that meets the migration's
    open transaction waits in a queue until the next boundary instead of failing the run."""

    def __init__(self, ledger: Ledger, run_id: int, session: Session) -> None:
        self.ledger, self.run_id, self.session = ledger, run_id, session
        self.rows: dict[tuple[str, str], int] = {}
        self.attempts: dict[tuple[str, str], int] = {}
        self._pending: list[Callable[[], None]] = []
        self.notes: dict[tuple[str, str], list[dict[str, Any]]] = {}
        # What the end of each step wrote: the post-flight writes a row again only when it differs.
        self.written: dict[tuple[str, str], dict[str, Any]] = {}

    def _write(self, fn: Callable[[], None], what: str) -> None:
        faultpoints.reached("ledger-write", what)
        if self._pending:
            # An earlier write met the migration's transaction (env.py's own engine.begin() holds
            # SQLite's write lock through the run): queue behind it for the end of the run, instead
            # of waiting out the busy timeout again, or failing the migration with dbguard's own
            # lock timeout (which then even looked like the step's and was retried).
            self._pending.append(fn)
            return
        # One try: a write that meets the migration's own transaction waits for the next boundary.
        waits = (contextlib.nullcontext() if self.session.dialect.concurrent_ledger_writes
                 else shorter_lock_waits(self.session, _JOURNAL_WAIT_MS))
        try:
            with waits, single_attempt(self.ledger):
                fn()
        except LockWaitError:
            self._pending.append(fn)

    @contextlib.contextmanager
    def unflushed_commits(self) -> Iterator[None]:
        """While the steps run, the journal's rows commit as the steps do (see the dialect's
        ``migration_commit_statements``); the run's verdict, written after, waits for its flush."""
        dialect, conn = self.session.dialect, self.ledger.conn
        if not dialect.migration_commit_statements:
            yield
            return
        run_statements(conn, dialect.migration_commit_statements)
        try:
            yield
        finally:
            # Fails only with the connection itself, which then writes nothing more.
            with contextlib.suppress(Exception):
                run_statements(conn, dialect.flushed_commit_statements)

    def flush(self) -> None:
        while self._pending:
            self._pending[0]()
            self._pending.pop(0)

    def started(self, step: bridge.TrackedStep) -> None:
        key = step.key
        self.attempts[key] = self.attempts.get(key, 0) + 1
        if key in self.rows:
            row_id, attempts = self.rows[key], self.attempts[key]
            self._write(lambda: self.ledger.update_step(row_id, status=StepStatus.RUNNING.value, attempts=attempts),
                        "step-start")
            return

        def insert() -> None:
            self.rows[key] = self.ledger.insert_step(
                run_id=self.run_id,
                revision=step.revision,
                direction=step.direction,
                status=StepStatus.RUNNING.value,
                started_at=step.started_at,
                checksum=bridge.checksum(step.path),
                attempts=1,
            )

        self._write(insert, "step-start")

    def note(self, step: bridge.TrackedStep | None, event: Any) -> None:
        """Record on the step the queue the watchdog saw when it cancelled the step's statement."""
        if step is None:
            return
        self.notes.setdefault(step.key, []).append({
            "watchdog": "cancelled: traffic queued behind the statement",
            "waiters": event.waiters, "oldest_ms": event.oldest_ms, "sessions": list(event.sessions),
            # Masked before it is serialised (a literal cut at 500 characters is masked to its end).
            "statement": masking.active()((event.statement or "")[:500]),
        })

    def finished(self, step: bridge.TrackedStep, committed: Callable[[], bool] | None = None) -> None:
        def update() -> None:
            if step.key in self.rows:
                values: dict[str, Any] = {"duration_ms": step.duration_ms}
                # A step whose work is committed says so at once: if the process dies later, the
                # ledger shows it succeeded, and only the step that really died as running.
                if committed is not None and committed():
                    values["status"] = StepStatus.SUCCEEDED.value
                self.ledger.update_step(self.rows[step.key], **values)
                self.written[step.key] = values

        self._write(update, "step-end")


def guarded_run(
    target: Target,
    intent: Intent,
    destination: str,
    *,
    force: bool = False,
    confirm: Confirm | None = None,
    bake_s: float = 0.0,
    observer: Any = None,
) -> RunResult:
    """Run ``alembic upgrade/downgrade destination`` under the guard; a run that succeeded bakes
    ``bake_s`` under probes, the run lock still held (see :func:`_bake`). ``observer``: see
    :attr:`_Runner.observer` (``plan --observe`` on a scratch database)."""
    with open_runner(target) as runner:
        runner.observer = observer
        _log.debug("connected to %s as %s (session %s)", runner.session.database, runner.session.db_user,
                   runner.session.session_id)
        if not acquire(runner.lock, target.settings.wait_lock_s, runner.cancellation.check):
            _log.debug("the run lock is held by %s", runner.lock.holder())
            return _busy(runner, intent, destination)
        _log.debug("run lock taken; %s to %s", intent.value, destination)
        if bake_s > 0:
            unhealthy = _unhealthy_before(runner)
            if unhealthy:
                return RunResult(intent=intent.value, status=RunStatus.REFUSED.value, exit_code=ExitCode.REFUSED,
                                 message=f"refused: the target fails its bake probes before the upgrade ({unhealthy}): "
                                         "the bake could only fail after the migration",
                                 advice="fix what the probe says (health_sql, health_url), or upgrade without --bake")
        result = annotated(runner, _locked_run(runner, intent, destination, force, confirm))
        if bake_s > 0 and result.status == RunStatus.SUCCEEDED.value and result.run_id is not None:
            result = _bake(runner, result, bake_s)
        _log.debug("run %s ended %s (exit %d)", result.run_id, result.status, int(result.exit_code))
        return result


def _bake(runner: _Runner, result: RunResult, bake_s: float) -> RunResult:
    """Probe the target every probe_interval_s for ``bake_s`` after its run succeeded, and once at
    the end; a probe that fails probe_failures times in a row (in the last round, once) makes the run
    FAILED in the ledger, so the breaker opens and only the rollback lane stays open, as after a
    failed migration. Until the bake ends the run is not over: its row says running again and its
    heartbeat goes on, so a process killed while baking leaves it UNKNOWN, not SUCCEEDED."""
    from dbguard.core.bake import ProbeTally, failing_targets, probe_rounds
    from dbguard.run.probes import TargetProbes

    settings, started = runner.target.settings, time.monotonic()
    assert result.run_id is not None
    run_id = result.run_id
    plan = result.plan
    tables = frozenset(s.table for r in plan.revisions for s in r.statements if s.table) \
        if plan is not None and plan.complete else None
    name = runner.session.database
    prober = TargetProbes(name, settings, settings.health_sql, settings.health_url, tables,
                          [s for s in runner.target.secrets if s], settings.probe_timeout_s)
    tally = ProbeTally(settings.probe_failures)
    runner.ledger.update_run(run_id, status=RunStatus.RUNNING.value, heartbeat_at=utcnow())
    rounds = 0
    try:
        for offset, last in probe_rounds(bake_s, settings.probe_interval_s):
            _wait_baking(runner, run_id, started + offset)
            rounds += 1
            failing = failing_targets(tally, prober.run(rounds), last)
            if failing:
                return _bake_failed(dataclasses.replace(result, bake_s=bake_s, bake_rounds=rounds), runner,
                                    mask(failing[name], runner.target.secrets))
    except _LockLost as lost:
        return _bake_failed(dataclasses.replace(result, bake_s=bake_s, bake_rounds=rounds), runner, f"the run lock was lost after {time.monotonic() - started:.0f} s of the "
                            f"bake ({lost}): other runs were not kept out, so the bake proves nothing", lost=True)
    except BaseException as exc:  # Ctrl-C, SIGTERM, a cancel, an error: the bake did not finish
        why = getattr(exc, "signal_name", None) or type(exc).__name__
        _record_bake(runner, run_id, RunStatus.FAILED, f"bake: stopped after {time.monotonic() - started:.0f} s "
                     f"({why}): the migration is applied but was not watched to the end")
        raise
    finally:
        prober.close()
    _record_bake(runner, run_id, RunStatus.SUCCEEDED, None)
    return dataclasses.replace(result, message=f"{result.message}; baked {bake_s:g} s: {rounds} probe round(s), "
                                               "every probe passed", bake_s=bake_s, bake_rounds=rounds)


def _unhealthy_before(runner: _Runner) -> str | None:
    """One round of the bake's health probes before anything runs: a target that fails them already
    would be migrated only to fail its bake."""
    from dbguard.run.probes import TargetProbes

    settings = runner.target.settings
    if not settings.health_sql and not settings.health_url:
        return None
    prober = TargetProbes(runner.session.database, settings, settings.health_sql, settings.health_url, None,
                          [s for s in runner.target.secrets if s], settings.probe_timeout_s, lock_queue=False)
    try:
        failed = [p.detail for p in prober.run(0) if not p.ok]
    finally:
        prober.close()
    return mask("; ".join(failed), runner.target.secrets) if failed else None


class _LockLost(Exception):
    """The run lock is no longer this run's while it bakes."""


def _wait_baking(runner: _Runner, run_id: int, when: float) -> None:
    """Wait until the monotonic time ``when`` in short naps (a cancel is taken at once), beating the
    run's heartbeat and checking the run lock is still this run's as a running migration does."""
    beat_s = runner.target.settings.heartbeat_interval_s
    next_beat = time.monotonic()
    while True:
        now = time.monotonic()
        if now >= next_beat:
            try:
                runner.ledger.update_run(run_id, heartbeat_at=utcnow())
                holder = runner.lock.holder()
            except sa.exc.DBAPIError as exc:
                raise _LockLost(f"dbguard's session ended: {dbconnect.first_line(exc)}") from None
            own = runner.session.session_id
            if own is not None and holder != own:
                raise _LockLost(f"held by session {holder}" if holder else "nobody holds it")
            next_beat = now + beat_s
        left = when - now
        if left <= 0:
            return
        runner.cancellation.check()
        time.sleep(min(left, 0.2, max(0.01, next_beat - now)))


def _record_bake(runner: _Runner, run_id: int, status: RunStatus, error: str | None) -> None:
    """The run's row at the end of its bake; on a fresh session when dbguard's own is gone (best
    effort: an end that cannot be written leaves the row running, and the run UNKNOWN)."""
    values: dict[str, Any] = {"status": status.value, "finished_at": utcnow()}
    if error is not None:
        values["error"] = mask(error, runner.target.secrets)[:4000]
    try:
        runner.ledger.update_run(run_id, **values)
        return
    except Exception:  # noqa: BLE001, S110 - dbguard's session is gone or was interrupted: a fresh one
        pass
    with contextlib.suppress(Exception), open_session(runner.target) as session:
        Ledger(session.conn, runner.target.settings.table_prefix).update_run(run_id, **values)


def _bake_failed(result: RunResult, runner: _Runner, why: str, lost: bool = False) -> RunResult:
    error = f"bake: {why}"
    _record_bake(runner, result.run_id or 0, RunStatus.FAILED, error)
    advice = ("see `dbguard status` and `dbguard history`: another run may have changed the database since"
              if lost else "the circuit breaker is open: `dbguard rollback` undoes the run; or repair by hand "
              "and `dbguard resolve --reason TEXT`")
    return dataclasses.replace(
        result, status=RunStatus.FAILED.value, exit_code=ExitCode.RUN_FAILED, error=mask(error, runner.target.secrets),
        message=f"run {result.run_id} reached {result.to_revision} but failed while baking: "
                f"{mask(why, runner.target.secrets)}", advice=advice)


@contextlib.contextmanager
def open_runner(target: Target) -> Iterator[_Runner]:
    """dbguard's session on the target with its ledger and run lock (not taken yet); the lock is
    released on the way out if it was taken."""
    script = target.script()
    with open_session(target, create=True) as session, cancellable() as cancellation:
        lock = make_lock(session, target)
        try:
            yield _Runner(target, session, Ledger(session.conn, target.settings.table_prefix), lock, script,
                          cancellation=cancellation)
        finally:
            lock.release()


def annotated(runner: _Runner, result: RunResult) -> RunResult:
    """The result with the state before the run and the drift its pre-flight found."""
    check = runner.drift_check.preflight if runner.drift_check is not None else None
    drift = check.drift_line if check is not None else None
    return dataclasses.replace(result, prior_state=runner.prior_state, drift=drift)


def _busy(runner: _Runner, intent: Intent, destination: str) -> RunResult:
    holder = runner.lock.holder()
    detail = f" (session {holder})" if holder else ""
    message = f"busy: another dbguard run holds the run lock on {runner.session.database}{detail}"
    run_id = None
    with contextlib.suppress(sa.exc.DBAPIError):
        if runner.ledger.exists():
            heads = read_version_heads(runner.session.conn, runner.target.version_table)
            run_id = runner.ledger.insert_run(
                **runner.base_row(intent, heads, destination),
                status=RunStatus.BUSY.value,
                finished_at=utcnow(),
                error=message,
            )
    return RunResult(
        intent=intent.value,
        status=RunStatus.BUSY.value,
        exit_code=ExitCode.BUSY,
        message=message,
        run_id=run_id,
        advice="wait for it to finish, or pass --wait-lock SECONDS",
    )


def _plan(runner: _Runner, intent: Intent, destination: str, heads: tuple[str, ...]) -> tuple[list, tuple]:
    from alembic.util import CommandError

    try:
        return bridge.plan_steps(runner.script, _DIRECTION[intent], destination, heads)
    except (CommandError, KeyError, ValueError) as exc:
        raise ConfigError(f"cannot {intent.value} to {destination!r}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - a revision file that does not load (SyntaxError, ImportError ...)
        where = getattr(exc, "filename", None)
        raise ConfigError(f"cannot read the revision files{f' ({where})' if where else ''}: "
                          f"{type(exc).__name__}: {dbconnect.first_line(exc)}") from None


def _absolute_destination(destination: str, final_heads: tuple[str, ...]) -> str:
    """A retry must not move a relative target (+1, -1) again from wherever the first try stopped."""
    if len(final_heads) == 1:
        return final_heads[0]
    if not final_heads:
        return "base"
    return destination


def _locked_run(
    runner: _Runner, intent: Intent, destination: str, force: bool, confirm: Confirm | None
) -> RunResult:
    # The destination and every revision file are checked before the ledger is created or written.
    heads = read_version_heads(runner.session.conn, runner.target.version_table)
    planned, final_heads = _plan(runner, intent, destination, heads)
    problem = runner.ledger.problem()
    if problem:
        # Creating the missing tables now would hide the loss: only resolve records it.
        from dbguard.core.integrity import LEDGER_LOSS_ADVICE

        runner.prior_state = TargetState.FAILED.value  # a lost ledger opens the breaker as a failed run does
        return _refused(intent, f"circuit breaker open: {problem}", None, heads, " ".join(final_heads) or "base",
                        advice=LEDGER_LOSS_ADVICE)
    runner.ensure_ledger()
    to_revision = " ".join(final_heads) or "base"
    row = runner.base_row(intent, heads, to_revision)

    def refuse(reason: str, recorded: str | None = None, forced: bool = False, **more: Any) -> RunResult:
        """Recorded as a refused run, then returned (exit 3)."""
        run_id = runner.record_refusal({**row, "forced": True} if forced else row, recorded or reason)
        return _refused(intent, reason, run_id, heads, to_revision, **more)

    last = runner.ledger.latest_changing_run()
    state = derive_state(last, lock_held_by_other=False)
    runner.prior_state = state.value
    decision = breaker.decide(intent, state, last, force)
    _log.debug("state %s, last changing run %s: breaker %s%s", state.value, last.id if last else None,
               "allows" if decision.allowed else "refuses", f" ({decision.reason})" if decision.reason else "")
    if not decision.allowed:
        return refuse(decision.reason, advice=decision.advice)
    # The pending revisions' risk plan (upgrades; nothing pending costs nothing).
    risk_plan, plan_notes = _risk_plan(runner, intent, destination, heads, planned, last,
                                       decision.needs_confirmation)
    risky = risk_plan is not None and risk_plan.failing > 0
    if decision.needs_confirmation or (risky and force):
        title = (f"--force: {intent.value} to {to_revision} although the circuit breaker is open"
                 if decision.needs_confirmation else
                 f"--force: {intent.value} to {to_revision} with {risk_plan.failing} risk finding(s) at or above "
                 f"{risk_plan.fail_on}")
        prompt = RiskPrompt(
            title=title,
            blast_radius=_blast_radius(decision, last, heads, planned, runner),
            plan=risk_plan,
            token=breaker.CONFIRM_TOKEN,
        )
        answer = confirm(prompt) if confirm else None
        if not breaker.confirmation_accepted(answer):
            reason = f"risk confirmation missing or wrong (type {breaker.CONFIRM_TOKEN} to proceed)"
            return refuse(reason, f"{reason}; {decision.reason}" if decision.reason else reason, forced=True,
                          advice=decision.advice or None)
        row["forced"] = True

    # Drift, changed revision files, alembic_version moved behind dbguard's back: warn or refuse.
    from dbguard.drift import checks as drift

    runner.drift_check = drift.guard_preflight(runner.session, runner.target, runner.script, heads, last,
                                               intent.value)
    if runner.drift_check.refuse_reason:
        return refuse(f"on_drift = refuse: {runner.drift_check.refuse_reason}",
                      advice="see `dbguard drift`; fix the database, or set on_drift = \"warn\" to proceed anyway")
    # Risky pending revisions refuse after the integrity checks above, unless forced and confirmed.
    if risky and not force:
        return refuse(f"{risk_plan.failing} risk finding(s) at or above {risk_plan.fail_on} in the pending revisions",
                      advice="`dbguard plan` shows them; make the migration safer, or set fail_on, or pass --force "
                             f"and confirm with {breaker.CONFIRM_TOKEN}", plan=risk_plan)

    runner.start_reference(heads, last)
    # A host's cancel before the run row exists: nothing ran, nothing is recorded, the caller gets Cancelled.
    runner.cancellation.check()
    run_id = runner.ledger.insert_run(**row, status=RunStatus.RUNNING.value, heartbeat_at=utcnow(),
                                      known_drift=runner.known_drift)
    runner.name_run(run_id, intent)
    with _closing_run(runner, run_id):
        return _with_plan(_execute(runner, intent, _absolute_destination(destination, final_heads), heads, row,
                                   run_id), risk_plan, plan_notes)


def _refused(intent: Intent, reason: str, run_id: int | None, heads: tuple[str, ...], to_revision: str,
             **more: Any) -> RunResult:
    return RunResult(intent=intent.value, status=RunStatus.REFUSED.value, exit_code=ExitCode.REFUSED,
                     message=f"refused: {reason}", run_id=run_id, from_revisions=heads, to_revision=to_revision,
                     **more)


@contextlib.contextmanager
def _closing_run(runner: _Runner, run_id: int) -> Iterator[None]:
    """A run that dbguard itself failed to finish recording is closed as failed, not left running:
    nobody can tell what it changed, so the breaker must open instead of reporting a dead process.
    A run whose row someone else closed meanwhile was taken over (this process was stopped, its
    sessions were ended): it says so on its row and fails (exit 5), never as a raw driver error."""
    try:
        yield
    except BaseException as exc:
        taken_over = _close_failed(runner, run_id, exc)
        # A connection lost mid-statement raises DBAPIError; the next use of it PendingRollbackError.
        if taken_over is _UNRECORDED and isinstance(exc, (sa.exc.DBAPIError, sa.exc.PendingRollbackError)):
            why = runner.frozen() or dbconnect.first_line(exc)
            raise DbguardError(f"lost the database mid-run ({mask(why, runner.target.secrets)}): run {run_id} could "
                               "not be recorded and stays UNKNOWN; `dbguard status` and `dbguard rollback` will "
                               "say what it left", ExitCode.USAGE) from None
        if isinstance(taken_over, str):
            raise DbguardError(taken_over, ExitCode.RUN_FAILED) from None
        if is_internal(exc):
            _, text = describe_error(exc, runner.target.secrets)
            fate = "could not be recorded and stays UNKNOWN" if taken_over is _UNRECORDED else "is recorded failed"
            raise DbguardError(f"internal error: {type(exc).__name__}: {text}; run {run_id} {fate}: `dbguard status` "
                               "and `dbguard rollback` say what it left", ExitCode.RUN_FAILED) from exc
        raise


_UNRECORDED = object()


def _close_failed(runner: _Runner, run_id: int, exc: BaseException) -> str | object | None:
    """Record the run failed (on a fresh connection if dbguard's own was ended). Returns the message
    to fail with when another run took this one over, ``_UNRECORDED`` when nothing could be written,
    else None."""
    error_class, text = describe_error(exc, runner.target.secrets)

    def close(ledger: Ledger) -> str | None:
        current = ledger.get_run(run_id)
        if current is None:
            return None
        if current.status == RunStatus.RUNNING.value:
            why = "internal error" if is_internal(exc) else "dbguard failed mid-run"
            ledger.update_run(run_id, status=RunStatus.FAILED.value, finished_at=utcnow(),
                              error_class=error_class, error=f"{why}: {text}")
            return None
        newer = [r for r in ledger.recent_runs(limit=20) if r.id > run_id and r.changes_state]
        by = current.resolved_by if current.resolved_by is not None else (newer[-1].id if newer else None)
        if by is None:
            return None
        note = f"taken over by run {by} while this process was not running"
        ledger.update_run(run_id, error=f"{current.error}; {note}" if current.error else note)
        return f"run {run_id} was {note}: it stopped here, its sessions ended; see `dbguard status`"

    # dbguard's own session may be the one a takeover ended: then on a fresh one.
    with contextlib.suppress(Exception):
        return close(runner.ledger)
    try:
        with open_session(runner.target) as fresh:
            return close(Ledger(fresh.conn, runner.settings.table_prefix))
    except Exception:  # noqa: BLE001 - nothing more to record with: the original error goes on
        return _UNRECORDED
def _risk_plan(runner: _Runner, intent: Intent, destination: str, heads: tuple[str, ...],
               planned: list[bridge.PlannedStep], last: RunRecord | None,
               for_prompt: bool = False) -> tuple[Any, tuple[str, ...]]:
    """The plan of the pending upgrade (None when nothing is pending or the engine has no rules);
    a plan that cannot be made becomes a warning, except a statement sqlglot cannot read, which stops
    the run before it starts (exit 2). ``fail_on = none`` skips the plan (the render runs each pending
    upgrade() once more, offline) except for a confirmation prompt, where it is only shown."""
    if intent is not Intent.UPGRADE or not planned or runner.session.dialect.risk_engine is None:
        return None, ()
    rules_off = runner.settings.fail_on.strip().lower() == "none"
    if rules_off and not for_prompt:
        return None, ()
    from dbguard.plan import planner

    try:
        report = planner.build_plan(runner.target, runner.script, heads, destination, session=runner.session,
                                    last_run=last)
        if runner.settings.plan_observe:
            from dbguard.plan import observe as observing

            # Asked for by the setting, not on this command line: no scratch database is a note, not exit 2.
            report = observing.observe(runner.target, report, destination, guarded_run, session=runner.session,
                                       explicit=False)
        return report, ()
    except StatementParseError as exc:
        # Unjudged SQL must not pass the gate as if judged safe; with the rules off it only costs the prompt its plan.
        if rules_off:
            return None, (f"no risk plan: {exc.message}",)
        raise
    except Exception as exc:  # noqa: BLE001 - the pre-flight plan is advice; say it is missing
        return None, (f"no risk plan: {dbconnect.first_line(exc)}",)


def _with_plan(result: RunResult, risk_plan: Any, notes: tuple[str, ...]) -> RunResult:
    if risk_plan is None and not notes:
        return result
    seen = [f"risk {f.code} {f.name} ({f.severity}) in {f.revision}: {f.message}"
            for f in (risk_plan.findings if risk_plan is not None else ())
            if f.severity in ("medium", "high", "critical")]
    return dataclasses.replace(result, plan=risk_plan, warnings=(*result.warnings, *notes, *seen))


def _blast_radius(decision: breaker.Decision, last: RunRecord | None, heads: tuple[str, ...],
                  planned: list[bridge.PlannedStep], runner: _Runner | None = None) -> tuple[str, ...]:
    lines = [decision.reason] if decision.reason else []
    lines.append(f"the database is at {' '.join(heads) or 'base'}")
    if planned:
        lines.append("would run: " + ", ".join(f"{p.revision} ({p.direction})" for p in planned))
    else:
        lines.append("no revision is pending")
    if last is not None and last.failed_step:
        lines.append(f"the failed step {last.failed_step} may have left part of its changes live")
        lines += _live_leftovers(runner, heads, last)
    return tuple(lines)


def _live_leftovers(runner: _Runner | None, heads: tuple[str, ...], last: RunRecord) -> list[str]:
    """What of the failed step is live: the objects its SQL creates that exist now, and the drift
    from the schema recorded at the current revision (when one was recorded)."""
    if runner is None or not last.failed_step:
        return []
    from dbguard.drift import checks as drift
    from dbguard.plan import planner

    lines = []
    try:
        found = planner.live_leftovers(runner.session, runner.target, runner.script, heads, last.failed_step)
        lines.append(f"live now from {last.failed_step}: {', '.join(found)}; re-running it will fail on them"
                     if found else f"nothing {last.failed_step} creates is live")
    except Exception as exc:  # noqa: BLE001 - the prompt still shows the rest
        lines.append(f"what of it is live could not be read: {dbconnect.first_line(exc)}")
    try:
        check = drift.preflight(runner.session, runner.target, runner.script, heads, last,
                                tuple(runner.settings.drift_ignore))
    except Exception:  # noqa: BLE001 - drift is extra detail here
        return lines
    if check.drifts:
        lines.append(f"drift from the schema recorded at {' '.join(heads) or 'base'} ({len(check.drifts)}):")
        lines += [f"  {d.describe()}" for d in check.drifts[:12]]
    return lines


@dataclasses.dataclass
class ExecutionPolicy:
    """How hard a run tries: the upgrade lane gives up after a few lock waits; the rollback lane
    keeps clearing blockers and retrying until its time budget is spent."""

    max_retries: int
    deadline: float | None = None  # time.monotonic() after which no retry starts
    clearer: Any = None  # monitor.Clearer: ends the sessions the migration waits for
    # Runs first, on dbguard's own migration connection (the rollback's repair of a partial step).
    before: Callable[[Any, Any], None] | None = None


def _retryable(policy: ExecutionPolicy, retries: int) -> bool:
    if policy.deadline is not None:
        return time.monotonic() < policy.deadline
    return retries < policy.max_retries


def _in_transaction(connection: Any) -> bool:
    try:
        return bool(connection.in_transaction())
    except Exception:  # noqa: BLE001 - a connection that cannot say is taken as not committed
        return True


def _execute(runner: _Runner, intent: Intent, destination: str, heads_before: tuple[str, ...],
             row: dict[str, Any], run_id: int, policy: ExecutionPolicy | None = None) -> RunResult:
    from dbguard.run.monitor import RunMonitor

    settings, session = runner.settings, runner.session
    policy = policy or ExecutionPolicy(max_retries=settings.lock_retries)
    started = time.monotonic()
    cancellation = runner.cancellation
    monitor = RunMonitor(runner.target, session.dialect, run_id, clearer=policy.clearer, cancellation=cancellation)
    monitor.deadline = policy.deadline
    journal = _StepJournal(runner.ledger, run_id, session)

    def step_started(step: bridge.TrackedStep) -> None:
        cancellation.check()
        faultpoints.reached("before-step", step.revision)
        if session.dialect.concurrent_ledger_writes:
            monitor.start()
        monitor.step(step.revision, True)
        journal.started(step)

    migrating: list[Any] = []  # the connection env.py migrates on, once the configure hook saw it

    def step_committed(step: bridge.TrackedStep) -> bool:
        # A step ends here only when its block returned: each step runs in its own transaction
        # (transaction_per_migration), so with none open on env.py's connection the server has
        # acknowledged its COMMIT, version row included; one left open (env.py's own) is not committed.
        if migrating:
            return not _in_transaction(migrating[-1])
        heads = read_version_heads(session.conn, runner.target.version_table)
        return (step.revision in bridge.applied_set(runner.script, heads)) == (step.direction == "up")

    def step_finished(step: bridge.TrackedStep) -> None:
        monitor.step(None, False)
        journal.finished(step, lambda: step_committed(step))

    def connection_ready(connection: Any) -> None:
        migrating.append(connection)
        runner.guard_migration_socket(connection)
        monitor.session_id = str(run(connection, session.dialect.session_id()).scalar())
        runner.record_session(connection, monitor.session_id, run_id)

    statements: dict[str, int] = {}

    def on_statement(statement: str | None) -> None:
        if statement is not None:
            cancellation.check()
        step = tracker.current
        if statement is not None and step is not None:
            statements[step.revision] = statements.get(step.revision, 0) + 1
            faultpoints.reached("statement", f"{step.revision}#{statements[step.revision]}")
        monitor.executing(statement)

    tracker = bridge.StepTracker(on_start=step_started, on_finish=step_finished)
    tracker.on_statement = on_statement
    tracker.observer = runner.observer
    hooks = bridge.RunHooks(
        tracker=tracker,
        session_statements=runner.migration_session_statements(),
        verify_connection=runner.verify_connection,
        on_connection=connection_ready,
        version_table=(runner.target.version_table, runner.session.conn.dialect.default_schema_name),
    )
    # Nothing goes into config.attributes that plain Alembic would not put there but dbguard's own
    # key: env.py builds its connection from sqlalchemy.url as it always does, and the configure hook
    # prepares whatever connection it hands Alembic.
    config = runner.target.config

    retries = 0
    error: BaseException | None = None
    interrupted = False
    blocked_traffic: list[Any] = []
    alembic_hooked = contextlib.ExitStack()
    alembic_hooked.enter_context(bridge.configure_hook())
    alembic_hooked.enter_context(journal.unflushed_commits())
    try:
        config.attributes["dbguard"] = hooks
        if policy.before is not None:
            policy.before(hooks, monitor)
        while True:
            tracker.current = None
            try:
                cancellation.check()
                bridge.run_migrations(runner.script, config, _DIRECTION[intent], destination, tracker)
                error = None
                break
            except BaseException as exc:  # noqa: BLE001 - every failure is recorded, sys.exit() and signals too
                if cancellation.requested and isinstance(exc, Exception):
                    # The statement the monitor cancelled on the host's request.
                    cancelled = Cancelled()
                    cancelled.__cause__ = exc
                    exc = cancelled
                elif monitor.deadline_fired and isinstance(exc, Exception):
                    spent = BudgetSpent(f"the time budget ({settings.rollback_budget_s:g} s) was spent while step "
                                        f"{tracker.current.revision if tracker.current else '?'} ran; its statement "
                                        f"was cancelled ({dbconnect.first_line(exc)})")
                    spent.__cause__ = exc
                    exc = spent
                error = exc
                interrupted = not isinstance(exc, Exception)
                failing = tracker.current
                if interrupted:
                    # Its statement must not run on after the run is recorded: cancelled, confirmed.
                    runner.interrupted_statement = runner.stop_statement(monitor.session_id, monitor.statement)
                monitor.step(None, False)
                fired = monitor.take_fired()
                if fired is not None:
                    blocked_traffic.append(fired)
                    journal.note(failing, fired)
                timed_out = fired is not None or any(session.dialect.is_lock_timeout(e) for e in _error_chain(exc))
                if (not interrupted and timed_out and failing is not None and not failing.committed_work
                        and _retryable(policy, retries)):
                    retries += 1
                    time.sleep(backoff_ms(retries, settings.retry_backoff_ms,
                                          settings.retry_backoff_max_ms, random.random) / 1000)
                    continue
                break
    finally:
        config.attributes.pop("dbguard", None)
        alembic_hooked.close()
        monitor.stop()
        with contextlib.suppress(Exception):
            journal.flush()

    return _post_flight(runner, intent, heads_before, row, run_id, tracker, journal, error, retries,
                        int((time.monotonic() - started) * 1000), blocked_traffic, hooks.seen_metadata)


def _post_flight(runner: _Runner, intent: Intent, heads_before: tuple[str, ...], row: dict[str, Any],
                 run_id: int, tracker: bridge.StepTracker, journal: _StepJournal,
                 error: BaseException | None, retries: int, duration_ms: int,
                 blocked_traffic: list[Any] | None = None, seen_metadata: tuple[Any, ...] | None = None) -> RunResult:
    script, ledger, secrets = runner.script, runner.ledger, runner.target.secrets
    heads_now = read_version_heads(runner.session.conn, runner.target.version_table)
    applied_before = bridge.applied_set(script, heads_before)
    applied_now = bridge.applied_set(script, heads_now)
    failing = tracker.current if error is not None else None

    error_class = error_text = None
    last_block = blocked_traffic[-1] if blocked_traffic else None
    if error is not None:
        if last_block is not None and runner.session.dialect.is_cancelled(error):
            error_class = "dbguard.BlockingTraffic"
            error_text = (f"blocking traffic: {last_block.waiters} session(s) queued behind step "
                          f"{last_block.revision}, the oldest for {last_block.oldest_ms} ms "
                          f"(max_blocking_ms {runner.settings.max_blocking_ms}); the watchdog cancelled it")
        elif isinstance(error, KeyboardInterrupt):
            error_class = type(error).__name__
            error_text = f"interrupted by {getattr(error, 'signal_name', 'SIGINT')}"
            if isinstance(error, Cancelled) and error.__cause__ is not None:
                error_text += f" (the statement: {describe_error(error.__cause__, secrets)[1]})"
            if runner.interrupted_statement:
                error_text += f"; {runner.interrupted_statement}"
        elif isinstance(error, SystemExit):
            error_class, error_text = "SystemExit", f"the migration called sys.exit({error.code!r})"
        elif isinstance(error, DbguardError):
            error_class, error_text = type(error).__name__, mask(error.message, secrets)
        else:
            error_class, error_text = describe_error(error, secrets)
        frozen = runner.frozen()
        if frozen is not None:
            error_class, error_text = "dbguard.FrozenConnection", f"{frozen} ({error_text})"

    latest: dict[tuple[str, str], bridge.TrackedStep] = {}
    for step in tracker.steps:
        latest[step.key] = step
    steps = []
    for key, step in latest.items():
        def done(applied: set[str], step: bridge.TrackedStep = step) -> bool:
            present = step.revision in applied
            return present if step.direction == "up" else not present

        status = step_status_after_run(
            was_applied_before=done(applied_before),
            is_applied_now=done(applied_now),
            completed=step.completed,
            is_failing_step=step is failing,
            committed_work=step.committed_work,
        )
        step_error = error_text if step is failing else None
        duration = (step.duration_ms if step.duration_ms is not None
                    else int((time.monotonic() - step.started_monotonic) * 1000))
        if key in journal.rows:
            notes = json.dumps(journal.notes[key]) if key in journal.notes else None
            if (step_error, notes) != (None, None) or journal.written.get(key) != {
                    "duration_ms": duration, "status": status.value}:
                ledger.update_step(journal.rows[key], status=status.value, error=step_error, duration_ms=duration,
                                   notes=notes)
        steps.append(StepResult(revision=step.revision, direction=step.direction, status=status.value,
                                duration_ms=duration, attempts=journal.attempts.get(key, 1),
                                checksum=bridge.checksum(step.path), error=step_error))

    common: dict[str, Any] = {
        "intent": intent.value, "run_id": run_id, "from_revisions": heads_before,
        "to_revision": row["to_revision"], "steps": tuple(steps), "forced": row["forced"],
        "lock_waits_retried": retries, "duration_ms": duration_ms, "preflight": runner.preflight_findings(),
    }

    if error is None:
        return _verified_end(runner, intent, heads_before, row, run_id, bool(steps) or runner.schema_touched,
                             seen_metadata, common)

    nothing_ran = not tracker.steps and set(heads_now) == set(heads_before)
    if nothing_ran and isinstance(error, KeyboardInterrupt) and not isinstance(error, Cancelled):
        # Ctrl-C or SIGTERM before the first revision began (while env.py imported the project, say):
        # nothing was migrated, so the breaker stays closed, as for env.py failing there; the signal
        # goes on to the caller (the CLI exits 130, as commands that change nothing do).
        ledger.update_run(run_id, status=RunStatus.REFUSED.value, finished_at=utcnow(), error_class=error_class,
                          error=f"{error_text} before any revision ran; nothing was migrated",
                          revisions_after=heads_now)
        raise error
    if nothing_ran and not isinstance(error, KeyboardInterrupt):
        # Nothing touched the schema (env.py failed, or connected elsewhere): a configuration problem.
        ledger.update_run(run_id, status=RunStatus.REFUSED.value, finished_at=utcnow(),
                          error_class=error_class, error=error_text, revisions_after=heads_now)
        exit_code = error.exit_code if isinstance(error, DbguardError) else ExitCode.USAGE
        return RunResult(status=RunStatus.REFUSED.value, exit_code=exit_code,
                         message=f"could not run the migrations: {error_text}", error=error_text, **common)

    failed_step = failing.revision if failing else None
    faultpoints.reached("ledger-write", "run-end")
    ledger.update_run(run_id, status=RunStatus.FAILED.value, finished_at=utcnow(), error_class=error_class,
                      error=error_text, failed_step=failed_step, revisions_after=heads_now)
    where = f" at step {failed_step}" if failed_step else ""
    timed_out = error is not None and any(runner.session.dialect.is_lock_timeout(e) for e in _error_chain(error))
    why = (f" (lock wait over {runner.session.dialect.effective_lock_timeout_ms(runner.settings.lock_timeout_ms)} ms, "
           f"tried {retries + 1} times)"
           if timed_out else "")
    return RunResult(
        status=RunStatus.FAILED.value, exit_code=ExitCode.RUN_FAILED,
        message=f"run {run_id} failed{where}{why}: {error_text}", error=error_text, failed_step=failed_step,
        advice=FAILED_ADVICE, warnings=runner.preflight_findings(),
        interrupted_by=getattr(error, "signal_name", "SIGINT") if isinstance(error, KeyboardInterrupt) else None,
        **common,
    )


FAILED_ADVICE = ("the circuit breaker is now open: `dbguard status` shows it; roll back with `dbguard rollback` "
                 "or repair by hand and `dbguard resolve --reason TEXT`")


def _verified_end(runner: _Runner, intent: Intent, heads_before: tuple[str, ...], row: dict[str, Any],
                  run_id: int, steps_ran: bool, seen_metadata: tuple[Any, ...] | None,
                  common: dict[str, Any]) -> RunResult:
    """The migrations ran: the run succeeds only if the database says what it claims (see
    :mod:`dbguard.run.verify`); otherwise it failed, each difference named, and the breaker opens."""
    from dbguard.run import verify

    recorded = tuple((row["to_revision"] or "").split())
    check = runner.drift_check.preflight if runner.drift_check is not None else None
    end = verify.check_end(runner.session, runner.target, runner.script, recorded=recorded,
                           known=runner.known_drift, run_id=run_id, steps_ran=steps_ran, before=check,
                           reused_reference=runner.stored_start and not steps_ran, seen_metadata=seen_metadata)
    verdict = end.verdict
    before = " ".join(heads_before) or "base"
    after = " ".join(end.heads) or "base"
    if not verdict.passed:
        runner.ledger.update_run(run_id, status=RunStatus.FAILED.value, finished_at=utcnow(),
                                 error_class="dbguard.EndCheck", error=end.error, **end.ledger_values())
        return RunResult(status=RunStatus.FAILED.value, exit_code=ExitCode.RUN_FAILED,
                         message=f"run {run_id} failed its end check ({before} -> {after}): "
                                 f"{'; '.join(verdict.failures[:5])}",
                         error=end.error, advice=FAILED_ADVICE, warnings=(*runner.preflight_findings(), *end.warnings),
                         schema_check=verdict.check.value, schema_note=verdict.note, **common)
    faultpoints.reached("ledger-write", "run-end")
    runner.ledger.update_run(run_id, status=RunStatus.SUCCEEDED.value, finished_at=utcnow(), **end.ledger_values())
    still = runner.drift_check.still_true() if runner.drift_check is not None else ()
    steps = len(common["steps"])
    verb = {Intent.UPGRADE: "upgraded", Intent.DOWNGRADE: "downgraded"}.get(intent, "rolled back")
    message = (f"{verb} {before} -> {after} ({steps} step{'s' if steps != 1 else ''})" if steps_ran
               else f"nothing to do: already at {after}")
    return RunResult(status=RunStatus.SUCCEEDED.value, exit_code=ExitCode.OK, message=message,
                     warnings=(*still, *end.warnings), schema_check=verdict.check.value, schema_note=verdict.note,
                     **common)


# resolve ------------------------------------------------------------------------------------


def resolve(target: Target, reason: str, revision: str | None, confirm: Confirm | None,
            accept_schema: bool = False) -> RunResult:
    """Mark a FAILED/UNKNOWN run as repaired by hand; with ``revision``, also set alembic_version.
    It succeeds once alembic_version and the live schema match the reference at those revisions
    (what the failed runs knew before them aside); ``accept_schema`` makes the live schema the
    reference instead: a deliberate hand repair is never a dead end."""
    from alembic import command
    from alembic.util import CommandError

    if not reason or not reason.strip():
        raise ConfigError("resolve needs --reason TEXT: say what was repaired and how")
    with open_runner(target) as runner:
        session, ledger, script = runner.session, runner.ledger, runner.script
        if not acquire(runner.lock, target.settings.wait_lock_s):
            return _busy(runner, Intent.RESOLVE, revision or "")
        problem = ledger.problem()
        runner.ensure_ledger()
        heads = read_version_heads(session.conn, target.version_table)
        if revision is not None:
            try:
                resolved = script.get_revisions(revision)
            except CommandError as exc:
                raise ConfigError(f"cannot resolve to {revision!r}: {exc}") from None
            new_heads = tuple(sorted(r.revision for r in resolved if r is not None))
        else:
            new_heads = heads
        row = runner.base_row(Intent.RESOLVE, heads, " ".join(new_heads) or "base")
        row["reason"] = reason
        last = ledger.latest_changing_run()
        state = TargetState.FAILED if problem else derive_state(last, lock_held_by_other=False)
        decision = breaker.decide(Intent.RESOLVE, state, last, force=False)
        if not decision.allowed:
            run_id = runner.record_refusal(row, decision.reason)
            return RunResult(intent=Intent.RESOLVE.value, status=RunStatus.REFUSED.value,
                             exit_code=ExitCode.REFUSED, message=f"refused: {decision.reason}", run_id=run_id)
        radius = [f"records what the ledger lost: {problem}" if problem or last is None else
                  (f"marks run {last.id} ({last.intent}, {last.status}) as repaired by hand: "
                   f"{breaker.describe_breaker(state, last)}"),
                  f"alembic_version says {' '.join(heads) or 'base'}"]
        if revision is not None:
            radius.append(f"sets alembic_version to {' '.join(new_heads) or 'base'} without running any "
                          "migration: the schema must already match it")
        if last is not None and last.failed_step and session.dialect.risk_engine is not None:
            radius += _live_leftovers(runner, heads, last)
        at = " ".join(new_heads) or "base"
        radius.append(f"stores the live schema as the reference at {at} (--accept-schema)" if accept_schema else
                      f"then checks alembic_version and the live schema against the reference at {at}")
        title = "record the ledger's loss" if problem or last is None else f"resolve run {last.id}"
        answer = confirm(RiskPrompt(title=title, blast_radius=tuple(radius),
                                    token=breaker.CONFIRM_TOKEN)) if confirm else None
        if not breaker.confirmation_accepted(answer):
            why = f"risk confirmation missing or wrong (type {breaker.CONFIRM_TOKEN} to proceed)"
            run_id = runner.record_refusal(row, why)
            return RunResult(intent=Intent.RESOLVE.value, status=RunStatus.REFUSED.value,
                             exit_code=ExitCode.REFUSED, message=f"refused: {why}", run_id=run_id)
        from dbguard.core import lanes
        from dbguard.run import verify

        broken = last is not None and lanes.did_not_finish(last)
        chain: tuple[RunRecord, ...] = lanes.rollback_target(ledger.recent_runs(limit=200, changing_only=True)).undoes \
            or ((last,) if broken and last is not None else ())
        known = verify.known_since(chain)
        run_id = ledger.insert_run(**row, status=RunStatus.RUNNING.value, known_drift=known)
        runner.name_run(run_id, Intent.RESOLVE)
        if revision is not None:
            _stamp(runner, command, revision)
        end = verify.check_end(session, target, script, recorded=new_heads, known=known, run_id=run_id,
                               steps_ran=True, accept=accept_schema)
        common: dict[str, Any] = {"intent": Intent.RESOLVE.value, "run_id": run_id, "from_revisions": heads,
                                  "to_revision": row["to_revision"], "schema_check": end.verdict.check.value,
                                  "schema_note": end.verdict.note}
        if not end.verdict.passed:
            ledger.update_run(run_id, status=RunStatus.FAILED.value, finished_at=utcnow(),
                              error_class="dbguard.EndCheck", error=end.error, **end.ledger_values())
            what = f"run {last.id}" if broken and last is not None else "the ledger's loss"
            return RunResult(status=RunStatus.FAILED.value, exit_code=ExitCode.RUN_FAILED,
                             message=f"run {run_id} could not resolve {what}: {'; '.join(end.verdict.failures[:5])}",
                             error=end.error, warnings=end.warnings, advice=(
                                 "repair what differs by hand and resolve again, or accept the live schema as "
                                 f"the reference at {at} with `dbguard resolve --accept-schema`"), **common)
        # What the accepted schema changed is kept as this run's known drift: later runs carry it over.
        accepted = {"known_drift": known | end.accepted} if end.accepted else {}
        ledger.update_run(run_id, status=RunStatus.SUCCEEDED.value, finished_at=utcnow(), **end.ledger_values(),
                          **accepted)
        for undone in chain:
            ledger.update_run(undone.id, status=RunStatus.RESOLVED.value, resolved_by=run_id)
        ledger.close_running_steps([r.id for r in chain])
        resolved = ", ".join(str(r.id) for r in sorted(chain, key=lambda r: r.id))
        return RunResult(
            status=RunStatus.SUCCEEDED.value, exit_code=ExitCode.OK,
            message=(f"run{'s' if len(chain) > 1 else ''} {resolved} marked resolved by run {run_id}" if chain else
                     f"the ledger's loss recorded by run {run_id}")
                    + (f"; alembic_version set to {at}" if revision else "")
                    + ("; the live schema is the reference from now on" if accept_schema else
                       f"; {what_was_checked(end.verdict.check.value)}"),
            warnings=end.warnings, **common,
        )


def _stamp(runner: _Runner, command: Any, revision: str) -> None:
    tracker = bridge.StepTracker()
    hooks = bridge.RunHooks(tracker=tracker, session_statements=runner.bounded_named_statements(),
                            verify_connection=runner.verify_connection,
                            version_table=(runner.target.version_table, runner.session.conn.dialect.default_schema_name))
    config = runner.target.config
    try:
        with bridge.configure_hook():
            config.attributes["dbguard"] = hooks
            command.stamp(config, revision, purge=True)
    finally:
        config.attributes.pop("dbguard", None)
