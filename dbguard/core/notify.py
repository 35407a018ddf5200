"""Which notification events an outcome raises, and the bodies they carry: pure, no I/O, no clock.

The events (README, "Notifications"): ``breaker_open``, ``run_failed``, ``run_succeeded_after_failure``,
``sessions_ended``, ``drift_found``, ``fleet_batch_failed``. Sending them is dbguard.notify's job.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

BREAKER_OPEN = "breaker_open"
RUN_FAILED = "run_failed"
RUN_SUCCEEDED_AFTER_FAILURE = "run_succeeded_after_failure"
SESSIONS_ENDED = "sessions_ended"
DRIFT_FOUND = "drift_found"
FLEET_BATCH_FAILED = "fleet_batch_failed"
EVENTS = (BREAKER_OPEN, RUN_FAILED, RUN_SUCCEEDED_AFTER_FAILURE, SESSIONS_ENDED, DRIFT_FOUND, FLEET_BATCH_FAILED)

FORMATS = ("json", "slack")
_BROKEN = ("FAILED", "UNKNOWN")
# A run's statuses that leave the target HEALTHY.
_GOOD = ("succeeded", "rolled_back", "resolved")
# The outcomes of a kill (dbguard.locks.killer) after which the session is gone or signalled.
ENDED_OUTCOMES = ("terminated", "cancelled", "terminate signalled; session still present")

# Slack's colour-free emphasis per event: a glance tells good news from bad.
_ICON = {BREAKER_OPEN: ":no_entry:", RUN_FAILED: ":x:", RUN_SUCCEEDED_AFTER_FAILURE: ":white_check_mark:",
         SESSIONS_ENDED: ":scissors:", DRIFT_FOUND: ":warning:", FLEET_BATCH_FAILED: ":x:"}


@dataclasses.dataclass(frozen=True)
class RunFacts:
    """What a guarded run's result says, as plain data."""

    intent: str
    status: str
    # The target's state the breaker judged before the run (None: the run never got that far).
    prior_state: str | None = None
    drift: str | None = None
    ended_sessions: int = 0


def run_events(facts: RunFacts) -> tuple[str, ...]:
    """The events of one run's outcome, in the order they happened."""
    events: list[str] = []
    # The rollback lane's pre-flight finds a failed run's leftovers, which are what it is there to undo.
    if facts.drift and facts.intent in ("upgrade", "downgrade"):
        events.append(DRIFT_FOUND)
    if facts.ended_sessions:
        events.append(SESSIONS_ENDED)
    if facts.status == "refused" and facts.prior_state in _BROKEN:
        events.append(BREAKER_OPEN)
    elif facts.status == "failed":
        events.append(RUN_FAILED)
    # resolve succeeds only on a FAILED/UNKNOWN target: it is always a way out of a failure.
    elif facts.status in _GOOD and (facts.prior_state in _BROKEN or facts.status == "resolved"):
        events.append(RUN_SUCCEEDED_AFTER_FAILURE)
    return tuple(events)


def kill_events(outcomes: Iterable[str]) -> tuple[str, ...]:
    """``locks kill``: an event when it ended somebody."""
    return (SESSIONS_ENDED,) if any(o in ENDED_OUTCOMES for o in outcomes) else ()


def fleet_events(progress_event: Mapping[str, Any]) -> tuple[str, ...]:
    """A fleet's streamed event: ``fleet_failed`` with status failed is a batch that failed (a first
    batch refused in its pre-flight changed nothing and is the command's answer, not news)."""
    if progress_event.get("event") == "fleet_failed" and progress_event.get("status") == "failed":
        return (FLEET_BATCH_FAILED,)
    return ()


def body(event: str, *, at: str, version: str, database: str | None, run_id: int | None, status: str | None,
         message: str, revisions: Iterable[str] = (), **fields: Any) -> dict[str, Any]:
    """The JSON body of one event: the common fields first, then the event's own (named as in the
    ``jsonl`` events where they are the same thing). Not masked: the sender masks every string."""
    return {"event": event, "at": at, "dbguard_version": version, "database": database, "run_id": run_id,
            "revisions": list(revisions), "status": status, "message": message, **fields}


def slack_body(event: Mapping[str, Any]) -> dict[str, Any]:
    """A Slack incoming-webhook body: ``text`` for notifications and clients without blocks, and a
    section plus a context line of the common fields."""
    name = str(event.get("event"))
    where = event.get("database") or event.get("fleet") or "?"
    text = f"{_ICON.get(name, '')} dbguard {name.replace('_', ' ')} on {where}: {event.get('message', '')}".strip()
    facts = [f"{key}: {event[key]}" for key in ("run_id", "status", "revisions", "batch", "at")
             if event.get(key) not in (None, "", [])]
    return {"text": text, "blocks": [
        {"type": "section", "text": {"type": "mrkdwn", "text": text}},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": " | ".join(facts) or name}]},
    ]}


def retryable(status: int | None) -> bool:
    """Tried again: no answer (connection refused, reset, timed out: ``None``) or a server error; a
    4xx says the body or the address is wrong, and repeating it changes nothing."""
    return status is None or status >= 500


def backoff_s(attempt: int) -> float:
    """The pause before retry number ``attempt`` (1, 2 ...): short, a notification is not worth a wait."""
    return min(0.2 * 2.0 ** (attempt - 1), 1.0)


def budget_s(timeout_s: float, retries: int) -> float:
    """The longest a URL's delivery may take: each attempt's timeout plus the pauses between them."""
    return timeout_s * (retries + 1) + sum(backoff_s(n) for n in range(1, retries + 1))
