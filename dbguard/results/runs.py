"""Results of guarded runs (upgrade, downgrade, resolve, rollback) and of the read commands
(status, history, current, heads)."""

from __future__ import annotations

import dataclasses
from typing import Any

from dbguard.core.state import RunRecord, StepRecord
from dbguard.errors import ExitCode


@dataclasses.dataclass(frozen=True)
class StepResult:
    revision: str
    direction: str
    status: str
    duration_ms: int | None = None
    attempts: int = 1
    checksum: str | None = None
    error: str | None = None


@dataclasses.dataclass(frozen=True)
class RunResult:
    """The outcome of a run that tried to change a target: upgrade, downgrade, resolve."""

    intent: str
    status: str
    exit_code: ExitCode
    message: str
    run_id: int | None = None
    from_revisions: tuple[str, ...] = ()
    to_revision: str | None = None
    steps: tuple[StepResult, ...] = ()
    forced: bool = False
    error: str | None = None
    failed_step: str | None = None
    advice: str | None = None
    lock_waits_retried: int = 0
    duration_ms: int | None = None
    # Findings that did not stop the run and are true at its end (drift carried over, changed revision
    # files ...); ``preflight``: everything the pre-flight found before the run, whatever came of it.
    warnings: tuple[str, ...] = ()
    preflight: tuple[str, ...] = ()
    # How the end state was checked against the reference schema (dbguard.core.verdict.SchemaCheck;
    # None: no end check, the run failed before it) and what the check had to say.
    schema_check: str | None = None
    schema_note: str | None = None
    # The pre-flight's risk plan of the pending revisions (a PlanReport), when one was made.
    plan: Any = None
    # The rollback lane: sessions it ended (KillOutcome), and how long each phase took (name, ms).
    ended_sessions: tuple = ()
    phases: tuple[tuple[str, int], ...] = ()
    # The signal that stopped the run ("SIGINT", "SIGTERM" ...), when one did: a caller running it on
    # the side (plan --observe's scratch run) must stop too, not read it as a failed revision.
    interrupted_by: str | None = None
    # `upgrade --bake`: how long it was to bake and how many rounds of probes ran (None: no bake).
    bake_s: float | None = None
    bake_rounds: int | None = None
    # The target's state the breaker judged before the run (None: it never got that far), and the
    # drift its pre-flight found (None: none): what notifications are decided on.
    prior_state: str | None = None
    drift: str | None = None


@dataclasses.dataclass(frozen=True)
class StatusReport:
    state: str
    exit_code: ExitCode
    revisions: tuple[str, ...]
    last_run: RunRecord | None
    breaker_reason: str | None = None
    advice: str | None = None
    lock_holder: str | None = None
    ledger_exists: bool = True
    # HEALTHY is backed by a comparison with the reference schema (not only a first run storing it).
    schema_verified: bool = False
    # What status found beside the state: alembic_version moved outside dbguard, the live schema no
    # longer the reference of its revisions.
    findings: tuple[str, ...] = ()
    # Why the live schema could not be compared now (a catalog lock wait): nothing is claimed about it.
    schema_unchecked: str | None = None
    # Worth knowing, changes nothing: a password too short to be masked in free text.
    notes: tuple[str, ...] = ()
    # Read for metrics only (status(metrics=True)): the URL with its password masked, the last run's
    # steps, and the sessions dbguard's kill audit says it ended, by outcome (None: the audit is unreadable).
    masked_url: str | None = None
    last_run_steps: tuple[StepRecord, ...] = ()
    sessions_ended: tuple[tuple[str, int], ...] | None = None


@dataclasses.dataclass(frozen=True)
class HistoryEntry:
    run: RunRecord
    steps: tuple[StepRecord, ...]


@dataclasses.dataclass(frozen=True)
class HistoryReport:
    runs: tuple[HistoryEntry, ...]
    exit_code: ExitCode = ExitCode.OK


@dataclasses.dataclass(frozen=True)
class RevisionsReport:
    """``current`` (what the database says) or ``heads`` (what the scripts say)."""

    kind: str
    revisions: tuple[str, ...]
    exit_code: ExitCode = ExitCode.OK


@dataclasses.dataclass(frozen=True)
class OfflineSqlResult:
    """``--sql``: the SQL Alembic's offline mode rendered, for execution; nothing touched the database."""

    sql: str = ""
    exit_code: ExitCode = ExitCode.OK
    # The SQL holds a password literal: it is printed unmasked (it is for execution).
    sets_password: bool = False


@dataclasses.dataclass(frozen=True)
class RiskPrompt:
    """What a person must read before typing the risk token: ``blast_radius`` in plain lines, and
    the structured parts the output module draws after them (a render of the prompt shows all)."""

    title: str
    blast_radius: tuple[str, ...]
    token: str
    # The risk plan of the pending revisions (dbguard.results.PlanReport), its statements left out.
    plan: Any = None
    # The sessions a kill would end (dbguard.results.KillOutcome).
    victims: tuple[Any, ...] = ()
    # A fleet's blast radius (dbguard.core.fleet.BlastRadius), and how to roll it back.
    fleet_radius: Any = None
    fleet_rollback_command: str | None = None
    # Lines said after the structured parts.
    closing: tuple[str, ...] = ()
