"""The only module that formats: typed results to text or JSON."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import json
from typing import Any

from dbguard.results import (
    HistoryReport,
    OfflineSqlResult,
    RevisionsReport,
    RiskPrompt,
    RunResult,
    StatusReport,
)

FORMATS = ("text", "json")


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def to_json(result: Any) -> str:
    return json.dumps(_plain(result), indent=2, sort_keys=False)


def render(result: Any, fmt: str = "text") -> str:
    """What goes to standard output for ``result``; empty when there is nothing to print."""
    if isinstance(result, OfflineSqlResult):
        return ""
    if fmt == "json":
        return to_json(result)
    renderer = _TEXT.get(type(result))
    return renderer(result) if renderer else str(result)


def _when(value: dt.datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else "-"


def _ms(value: int | None) -> str:
    if value is None:
        return "-"
    return f"{value} ms" if value < 10_000 else f"{value / 1000:.1f} s"


def _run_text(result: RunResult) -> str:
    lines = [f"dbguard: {result.message}"]
    if result.run_id is not None:
        extra = f", {_ms(result.duration_ms)}" if result.duration_ms is not None else ""
        forced = ", forced" if result.forced else ""
        lines[0] += f"  [run {result.run_id}{forced}{extra}]"
    for step in result.steps:
        attempts = f"  ({step.attempts} attempts)" if step.attempts > 1 else ""
        lines.append(f"  {step.revision:<28} {step.direction:<4} {step.status:<12} {_ms(step.duration_ms)}{attempts}")
    if result.advice:
        lines.append(f"next: {result.advice}")
    return "\n".join(lines)


def _status_text(report: StatusReport) -> str:
    lines = [
        f"state:     {report.state}",
        f"revisions: {' '.join(report.revisions) or 'base (empty)'}",
    ]
    if report.lock_holder:
        lines.append(f"run lock:  held by session {report.lock_holder}")
    run = report.last_run
    if run is None:
        lines.append("last run:  none recorded" + ("" if report.ledger_exists else " (no ledger yet)"))
    else:
        lines.append(
            f"last run:  {run.id} {run.intent} {run.status}, {' '.join(run.from_revisions) or 'base'} -> "
            f"{run.to_revision or '-'}, started {_when(run.started_at)} UTC by {run.os_user or '?'}@{run.host or '?'}"
            + (" (forced)" if run.forced else "")
        )
        if run.failed_step:
            lines.append(f"failed at: {run.failed_step}")
        if run.error:
            lines.append(f"error:     {run.error}")
    if report.breaker_reason:
        lines.append(f"breaker:   {report.breaker_reason}")
    if report.advice:
        lines.append(f"next:      {report.advice}")
    return "\n".join(lines)


def _history_text(report: HistoryReport) -> str:
    if not report.runs:
        return "no runs recorded"
    lines = []
    for entry in report.runs:
        run = entry.run
        flags = " forced" if run.forced else ""
        lines.append(
            f"{run.id:>5}  {_when(run.started_at)}  {run.intent:<9} {run.status:<11}{flags} "
            f"{' '.join(run.from_revisions) or 'base'} -> {run.to_revision or '-'}  "
            f"{run.os_user or '?'}@{run.host or '?'} pid {run.pid or '?'}"
        )
        if run.reason:
            lines.append(f"       reason: {run.reason}")
        if run.error:
            lines.append(f"       error: {run.error}")
        for step in entry.steps:
            attempts = f" ({step.attempts} attempts)" if step.attempts > 1 else ""
            lines.append(
                f"       {step.revision:<28} {step.direction:<4} {step.status:<12} {_ms(step.duration_ms)}"
                f"{attempts}  sha256:{(step.checksum or '-')[:12]}"
            )
    return "\n".join(lines)


def _revisions_text(report: RevisionsReport) -> str:
    return "\n".join(report.revisions) if report.revisions else ("base (empty)" if report.kind == "current" else "")


_TEXT = {
    RunResult: _run_text,
    StatusReport: _status_text,
    HistoryReport: _history_text,
    RevisionsReport: _revisions_text,
}


def render_prompt(prompt: RiskPrompt) -> str:
    lines = [f"dbguard: {prompt.title}", "blast radius:"]
    lines += [f"  - {line}" for line in prompt.blast_radius]
    lines.append(f"Type {prompt.token} to proceed, anything else refuses")
    return "\n".join(lines)


def render_error(message: str, fmt: str = "text") -> str:
    return f"dbguard: error: {message}"
