"""The bodies of the events a command's result raises (dbguard.core.notify decides which)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from dbguard import __version__
from dbguard.core import notify as decide


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat()


def _session(outcome: Any) -> dict[str, Any]:
    s = outcome.session
    return {"session_id": s.session_id, "user": s.user, "application": s.application, "client": s.client,
            "state": s.state, "action": outcome.action, "outcome": outcome.outcome, "reason": outcome.reason,
            "audit_id": outcome.audit_id}


def _ended(outcomes: Any) -> list[Any]:
    return [o for o in outcomes if o.outcome in decide.ENDED_OUTCOMES]


def of_run(result: Any, database: str) -> list[dict[str, Any]]:
    """A guarded run's result (dbguard.results.RunResult) as its events' bodies."""
    ended = _ended(result.ended_sessions)
    names = decide.run_events(decide.RunFacts(intent=result.intent, status=result.status,
                                              prior_state=result.prior_state, drift=result.drift,
                                              ended_sessions=len(ended)))
    common = {"intent": result.intent, "from_revisions": list(result.from_revisions),
              "to_revision": result.to_revision, "prior_state": result.prior_state}
    revisions = [result.to_revision] if result.to_revision else list(result.from_revisions)
    at = _now()
    bodies = []
    for name in names:
        extra: dict[str, Any] = {}
        message = result.message
        if name == decide.DRIFT_FOUND:
            message = result.drift or ""
        elif name == decide.SESSIONS_ENDED:
            message = f"the {result.intent} ended {len(ended)} session(s) blocking it"
            extra["sessions"] = [_session(o) for o in ended]
        elif name in (decide.RUN_FAILED, decide.BREAKER_OPEN):
            extra = {"error": result.error, "failed_step": result.failed_step, "advice": result.advice}
        bodies.append(decide.body(name, at=at, version=__version__, database=database, run_id=result.run_id,
                                  status=result.status, message=message, revisions=revisions, **common, **extra))
    return bodies


def of_kill(report: Any, database: str) -> list[dict[str, Any]]:
    """``locks kill``'s report (dbguard.results.KillReport) as its events' bodies."""
    names = decide.kill_events(o.outcome for o in report.outcomes)
    ended = _ended(report.outcomes)
    return [decide.body(name, at=_now(), version=__version__, database=database, run_id=None,
                        status="ended", message=report.message, selection=report.selection,
                        sessions=[_session(o) for o in ended]) for name in names]


def of_fleet(progress_event: Mapping[str, Any], revision: str | None) -> list[dict[str, Any]]:
    """A fleet's streamed event as the bodies it raises; the jsonl event's own fields ride along."""
    names = decide.fleet_events(progress_event)
    own = {k: v for k, v in progress_event.items() if k not in ("event", "at", "run_id", "status")}
    return [decide.body(name, at=str(progress_event.get("at") or _now()), version=__version__, database=None,
                        run_id=progress_event.get("run_id"), status=progress_event.get("status"),
                        message=f"fleet {progress_event.get('fleet')}: batch {progress_event.get('batch')} failed: "
                                f"{progress_event.get('error')}",
                        revisions=[revision] if revision else [], **own) for name in names]
