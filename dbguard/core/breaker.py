"""The circuit breaker: may this intent go ahead in this state?"""

from __future__ import annotations

import dataclasses

from dbguard.core.state import Intent, RunRecord, TargetState, known_status

CONFIRM_TOKEN = "CONFIRM_RISK"

# The emergency lanes stay open while the breaker is open; everything else builds on the schema.
_OPEN_LANES = frozenset({Intent.ROLLBACK, Intent.RESOLVE})
_BROKEN = frozenset({TargetState.FAILED, TargetState.UNKNOWN})


@dataclasses.dataclass(frozen=True)
class Decision:
    allowed: bool
    needs_confirmation: bool = False
    reason: str = ""
    advice: str = ""


def describe_breaker(state: TargetState, last_run: RunRecord | None) -> str:
    """One sentence saying why the breaker is open."""
    if last_run is None:
        return f"target is {state.value}"
    when = last_run.started_at.strftime("%Y-%m-%d %H:%M:%S UTC") if last_run.started_at else "an unknown time"
    where = f" at step {last_run.failed_step}" if last_run.failed_step else ""
    if known_status(last_run.status) is None:
        return (f"run {last_run.id} ({last_run.intent}, started {when}) has the status {last_run.status!r}, "
                "which dbguard never writes (the ledger was edited by hand?): what it did is unknown")
    if state is TargetState.UNKNOWN:
        who = f", pid {last_run.pid} on {last_run.host}" if last_run.pid else ""
        return (
            f"run {last_run.id} ({last_run.intent}, started {when}{who}) never finished: "
            f"its process died{where}"
        )
    error = f": {last_run.error}" if last_run.error else ""
    return f"run {last_run.id} ({last_run.intent}, started {when}) failed{where}{error}"


def decide(intent: Intent, state: TargetState, last_run: RunRecord | None, force: bool) -> Decision:
    """Allow, refuse, or allow only after the typed risk confirmation."""
    if state not in _BROKEN:
        if intent is Intent.RESOLVE:
            return Decision(False, reason=f"nothing to resolve: target is {state.value}")
        return Decision(True)
    if intent in _OPEN_LANES:
        return Decision(True, needs_confirmation=intent is Intent.RESOLVE)
    reason = f"circuit breaker open: {describe_breaker(state, last_run)}"
    advice = (
        "roll back with `dbguard rollback`, or repair the schema by hand and record it with "
        "`dbguard resolve --reason TEXT`; `--force` proceeds only after the typed confirmation"
    )
    if force:
        return Decision(True, needs_confirmation=True, reason=reason, advice=advice)
    return Decision(False, reason=reason, advice=advice)


def confirmation_accepted(answer: str | None) -> bool:
    return answer is not None and answer.strip() == CONFIRM_TOKEN


# The token of a plain confirmation (a rollback's plan), as opposed to the typed risk token.
YES_TOKEN = "yes"


def said_yes(answer: str | None) -> bool:
    return answer is not None and answer.strip().lower() == YES_TOKEN
