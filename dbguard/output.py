"""The only module that formats: typed results to text or JSON."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dbguard.results import (
        HistoryReport,
        KillOutcome,
        KillReport,
        LockSession,
        LockSnapshot,
        LockTree,
        RevisionsReport,
        RiskPrompt,
        RunResult,
        StatusReport,
    )

FORMATS = ("text", "json", "github", "junit", "jsonl", "prometheus")
# The CI formats only make sense for checks; other commands refuse them with a usage error.
CI_FORMATS = ("github", "junit")
CI_COMMANDS = ("drift", "plan")
# One JSON event per line, for long-running commands that stream progress (fleets) or snapshots
# (locks, --watch); others refuse it.
STREAM_FORMATS = ("jsonl",)
STREAM_COMMANDS = ("fleet", "locks")
# Subcommands of a streaming family that print one report: `locks kill` ends sessions once.
ONE_REPORT = (("locks", "kill"),)


def formats_for(command: str | None, sub: str | None = None) -> tuple[str, ...]:
    """The formats a top-level command prints (``fleet`` for each of its subcommands), or its
    subcommand ``sub``."""
    streams = command in STREAM_COMMANDS and (command, sub) not in ONE_REPORT
    extra = CI_FORMATS if command in CI_COMMANDS else STREAM_FORMATS if streams else ()
    metrics = METRICS_FORMATS if (command, sub) in METRICS_COMMANDS else ()
    return ("text", "json", *extra, *metrics)


def _plain(value: Any) -> Any:
    """The value as JSON data, every string masked on the way (before serialising, so that quoting
    cannot hide a secret from the patterns)."""
    if isinstance(value, str):
        return _masked(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {_plain(str(k)): _plain(v) for k, v in value.items()}  # keys are text too
    return value


def to_json(result: Any) -> str:
    return json.dumps(_plain(result), indent=2, sort_keys=False)


def render(result: Any, fmt: str = "text") -> str:
    """What goes to standard output for ``result``; empty when there is nothing to print."""
    if type(result).__name__ == "OfflineSqlResult":
        return ""
    if fmt == "json":
        return to_json(result)
    kind = type(result).__name__
    if fmt in METRICS_FORMATS:
        metrics = _METRICS.get(kind)
        return metrics(result) if metrics else ""
    if fmt in STREAM_FORMATS:
        if kind == "LockSnapshot":
            return render_snapshot_event(result)
        return render_event({"event": "summary", **_plain(result)})
    if fmt in CI_FORMATS and kind in _CI:
        return _CI[kind](result, fmt)
    renderer = _TEXT.get(kind)
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
    if result.schema_note:
        lines.append(f"  {result.schema_note}")
    lines += [f"warning: {w}" for w in result.warnings]
    if result.plan is not None and result.status == "refused" and result.plan.failing:
        lines += [f"  {line}" for line in plan_lines(result.plan, statements=False)]
    for outcome in result.ended_sessions:
        if outcome.outcome == "refused":
            grant = f" ({outcome.grant})" if outcome.grant else ""
            lines.append(f"  not ended: {describe_victim(outcome)}: {outcome.reason}{grant}")
        else:
            lines.append(f"  ended: session {_session_line(outcome.session)}: {_action_words(outcome.action)} -> "
                         f"{outcome.outcome}")
    if result.phases:
        lines.append("  phases: " + ", ".join(f"{name} {_ms(ms)}" for name, ms in result.phases))
    if result.advice:
        lines.append(f"next: {result.advice}")
    return "\n".join(lines)


def _status_text(report: StatusReport) -> str:
    state = report.state
    if report.state == "HEALTHY" and report.last_run is not None:
        state += (" (schema verified against the reference)" if report.schema_verified else
                  " (not verified: " + "; ".join(report.findings) + ")" if report.findings else
                  " (schema not checked now: " + report.schema_unchecked + ")" if report.schema_unchecked else
                  " (schema not verified yet: " + _unverified(report.last_run.schema_check) + ")")
    lines = [
        f"state:     {state}",
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
    lines += [f"note:      {note}" for note in report.notes]
    return "\n".join(lines)


def _unverified(check: str | None) -> str:
    return {
        "first": "the last run stored the reference at these revisions; the next run compares with it",
        "accepted": "the live schema was accepted as the reference by resolve --accept-schema",
        "unchecked": "the last run could not read the schema",
    }.get(check or "", "the last run predates schema checks")


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
            + (f"  schema {run.schema_check}" if run.schema_check else "")
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


# Renderers by result class name: rendering one result never imports every command's result types.
_TEXT: dict[str, Any] = {
    "RunResult": _run_text,
    "StatusReport": _status_text,
    "HistoryReport": _history_text,
    "RevisionsReport": _revisions_text,
}


def prompt_lines(prompt: RiskPrompt) -> list[str]:
    """Everything a person must read in a prompt: its lines, then its structured parts."""
    lines = list(prompt.blast_radius)
    lines += [describe_victim(o) for o in prompt.victims]
    lines += blast_radius_lines(prompt.fleet_radius, prompt.fleet_rollback_command)
    if prompt.plan is not None:
        lines.append(f"plan of the pending revisions ({prompt.plan.server}, fail_on {prompt.plan.fail_on}):")
        lines += [f"  {line}" for line in plan_lines(prompt.plan, statements=False)]
    return lines + list(prompt.closing)


def render_plan(prompt: RiskPrompt) -> str:
    """A plan shown before a plain yes (the rollback lane), not a risk challenge."""
    return "\n".join([f"dbguard: {prompt.title}", *[f"  - {line}" for line in prompt_lines(prompt)]])


def render_prompt(prompt: RiskPrompt) -> str:
    lines = [f"dbguard: {prompt.title}", "blast radius:"]
    lines += [f"  - {line}" for line in prompt_lines(prompt)]
    lines.append(f"Type {prompt.token} to proceed, anything else refuses")
    return "\n".join(lines)


def render_error(message: str, fmt: str = "text") -> str:
    return f"dbguard: error: {message}"


def render_error_document(message: str, exit_code: int, fmt: str) -> str | None:
    """What stdout carries for an error: one JSON document (a ``summary`` event for jsonl), so that a
    caller parsing stdout always gets one; nothing in the other formats, whose errors go to stderr."""
    document = {"error": message, "exit_code": exit_code}
    if fmt == "json":
        return json.dumps(_plain(document))
    if fmt in STREAM_FORMATS:
        return render_event({"event": "summary", **document})
    return None


# drift -------------------------------------------------------------------------------------------


def _drift_text(report: Any) -> str:
    source = report.against if report.against in ("models", "migrations") else f"snapshot {report.against}"
    at = " ".join(report.revisions) or "base"
    head = f"{report.tables_compared} tables compared with {source} on {report.engine} at {at}"
    ignored = f", {report.ignored} ignored" if report.ignored else ""
    if not report.drifts:
        return f"dbguard: no drift: {head}{ignored}"
    lines = [(f"dbguard: drift found: {len(report.drifts)} difference{'s' if len(report.drifts) != 1 else ''}"
             f"{ignored} ({head})")]
    groups: dict[str, list[Any]] = {}
    for drift in report.drifts:
        groups.setdefault(drift.table or "(schema)", []).append(drift)
    for table in sorted(groups):
        lines.append(f"{table}:")
        for d in groups[table]:
            lines.append(f"  {d.severity:<7} {d.describe()}")
    return "\n".join(lines)


def _masked(text: str) -> str:
    """Masked before a CI format escapes it (escaping would hide a secret's quotes from the patterns)."""
    from dbguard.masking import active

    return active()(text)


def _escape(text: str) -> str:
    from xml.sax.saxutils import escape

    return escape(_masked(text))


def _quoteattr(text: str) -> str:
    from xml.sax.saxutils import quoteattr

    return quoteattr(_masked(text))


def _gh_escape(text: str, prop: bool = False) -> str:
    # GitHub workflow commands: % CR LF are escaped in data; properties also escape : and ,.
    text = _masked(text).replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    return text.replace(":", "%3A").replace(",", "%2C") if prop else text


def _drift_ci(report: Any, fmt: str) -> str:
    if fmt == "github":
        lines = []
        for d in report.drifts:
            level = "error" if d.severity == "error" else "warning"
            title = _gh_escape(f"schema drift: {d.kind.replace('_', ' ')}", prop=True)
            lines.append(f"::{level} title={title}::{_gh_escape(d.describe())}")
        if not report.drifts:
            lines.append(f"::notice title=schema drift::{_gh_escape(_drift_text(report))}")
        return "\n".join(lines)

    groups: dict[str, list[Any]] = {}
    for drift in report.drifts:
        groups.setdefault(drift.table or "(schema)", []).append(drift)
    names = sorted(set(report.table_names) | set(groups)) if getattr(report, "table_names", None) else sorted(groups)
    failures = sum(1 for n in names if n in groups)
    seconds = (report.duration_ms or 0) / 1000
    out = ['<?xml version="1.0" encoding="UTF-8"?>',
           f'<testsuites name="dbguard drift" tests="{len(names)}" failures="{failures}" errors="0" time="{seconds:.3f}">',
           (f'  <testsuite name={_quoteattr("schema drift against " + report.against)} tests="{len(names)}" '
           f'failures="{failures}" errors="0" skipped="0" time="{seconds:.3f}">')]
    for name in names:
        case = f'    <testcase classname="dbguard.drift" name={_quoteattr(name)}'
        found = groups.get(name)
        if not found:
            out.append(case + "/>")
            continue
        message = f"{len(found)} difference{'s' if len(found) != 1 else ''}"
        body = "\n".join(d.describe() for d in found)
        out.append(case + ">")
        out.append(f'      <failure message={_quoteattr(message)} type="drift">{_escape(body)}</failure>')
        out.append("    </testcase>")
    out += ["  </testsuite>", "</testsuites>"]
    return "\n".join(out)


def _snapshot_text(result: Any) -> str:
    if result.text:
        return result.text.rstrip("\n")
    return (f"dbguard: wrote {result.tables} tables ({result.engine}, at {' '.join(result.revisions) or 'base'}) "
            f"to {result.path}  sha256:{result.schema_hash[:12]}")


_TEXT.update({"DriftReport": _drift_text, "SnapshotResult": _snapshot_text})
_CI: dict[str, Any] = {"DriftReport": _drift_ci}


# --- locks ------------------------------------------------------------------------------------------


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    if seconds < 3600:
        return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"
    return f"{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}m"


def _lock_refs(session: LockSession) -> str:
    parts = []
    for lk in session.locks:
        what = f"{lk.object} of {lk.table}" if lk.object and lk.table else lk.table or lk.object or lk.locktype
        parts.append(f"{'holds' if lk.granted else 'WAITS FOR'} {lk.mode} on {what}")
    return "; ".join(parts)


def _session_line(s: LockSession) -> str:
    """One line: who, where, which database, what it does, for how long, and how many wait for it."""
    who = f"{s.user or '?'}"
    if s.application:
        who += f" ({s.application})"
    elif s.ledger_application:
        who += f" ({s.ledger_application}, per dbguard's ledger)"
    where = f" from {s.client}" if s.client else ""
    db = f"  db {s.database}" if s.database else ""
    head = f"{s.session_id}  {who}{where}{db}  {s.state}  xact {_age(s.xact_age_s)}"
    if s.idle_s is not None:
        head += f"  idle {_age(s.idle_s)}"
    if s.wait_s is not None:
        head += f"  waits {_age(s.wait_s)}"
    elif s.busy_s is not None:  # a waiter's statement runs as long as it waits, give or take
        head += f"  busy {_age(s.busy_s)}"
    if s.blocks_direct:
        head += f"  blocks {s.blocks_direct}" + (f" ({s.blocks_total} in all)" if s.blocks_total != s.blocks_direct
                                                 else "")
    if s.kind != "client":
        head += f"  [{s.kind}]"
    if s.privileged:
        head += "  [superuser]"
    if s.database is None and s.kind == "client":
        head += "  [database unknown]"
    return head


def _blockers(s: LockSession) -> str:
    """Who it waits for; where some of it is guessed, which edges are guesses and which were read."""
    if not s.guessed_blockers:
        return ", ".join(s.blocked_by)
    return ", ".join(f"{b} ({'guessed' if b in s.guessed_blockers else 'read from a lock source'})"
                     for b in s.blocked_by)


def describe_victim(o: KillOutcome) -> str:
    """One line of the blast radius: who would be ended, what it is doing, and how."""
    s = o.session
    line = f"session {_session_line(s)}: will {_action_words(o.action)}"
    locks = _lock_refs(s)
    if locks:
        line += f"; {locks}"
    if s.query:
        line += f"; query: {s.query}"
    return line


def _locks_text(tree: LockTree) -> str:
    scope = f" table {tree.table}" if tree.table else ""
    approx = " (APPROXIMATE)" if tree.approximate else ""
    lines = [f"{tree.engine} database {tree.database}{scope}: source {tree.source}{approx}"]
    lines += [f"warning: {w}" for w in tree.warnings]
    if tree.filters:
        lines.append(f"filters: {tree.filters} ({tree.hidden} session(s) of the tree hidden)")
    if not tree.sessions:
        lines.append("no session matches the filters" if tree.hidden else "no session waits for a lock"
                     + (f" on {tree.table}, and none holds one" if tree.table else ""))
        return "\n".join(lines)
    if tree.table:
        lines.append(f"holding a lock on {tree.table} (a DDL on it waits for each): {', '.join(tree.holders) or 'none'}")
    none = "none shown" if tree.hidden else "none (a cycle, or the blocker is gone)"
    lines.append(f"root blockers: {', '.join(tree.roots) or none}")
    for s in tree.sessions:
        pad = "  " * (s.depth + 1)
        mark = "ROOT " if s.is_root else ("└ " if s.depth else ("HOLDS " if s.session_id in tree.holders else ""))
        lines.append(f"{pad}{mark}{_session_line(s)}")
        detail = pad + "    "
        if s.blocked_by:
            lines.append(f"{detail}blocked by: {_blockers(s)}")
        locks = _lock_refs(s)
        if locks:
            lines.append(f"{detail}{locks}")
        if s.query:
            lines.append(f"{detail}query: {s.query}")
        if s.free_with:
            lines.append(f"{detail}no session to end: {s.free_with} frees it")
    return "\n".join(lines)


def _kill_text(report: KillReport) -> str:
    lines = [f"dbguard: {report.message}"]
    if report.audit_note:
        lines.append(f"audit: {report.audit_note}")
    lines += [f"warning: {w}" for w in report.warnings]
    if report.filters:
        lines.append(f"filters: {report.filters}")
    for o in report.outcomes:
        s = o.session
        lines.append(f"  {_session_line(s) if s.user else s.session_id}")
        planned = o.outcome.startswith("would ")  # a dry run's outcome names the action itself
        lines.append(f"      {o.outcome}" + (f" ({_action_words(o.action)})" if o.action != "none" and not planned else "")
                     + f": {o.reason}" + (f" [{o.duration_ms} ms]" if o.duration_ms is not None else ""))
        if s.query:
            lines.append(f"      query: {s.query}")
        if o.grant:
            lines.append(f"      grant: {o.grant}")
        if s.free_with:
            lines.append(f"      to free it: {s.free_with}")
    return "\n".join(lines)


def render_snapshot_event(snapshot: LockSnapshot) -> str:
    """One line of ``locks --format jsonl``: the tree's fields as in ``--format json``, with the
    snapshot's number, time and interval first."""
    return render_event({"event": "snapshot", "seq": snapshot.seq, "taken_at": snapshot.taken_at,
                         "interval_s": snapshot.interval_s, **_plain(snapshot.tree)})


def _lock_snapshot_text(snapshot: LockSnapshot) -> str:
    every = f", every {snapshot.interval_s:g} s (Ctrl-C ends)" if snapshot.interval_s is not None else ""
    head = f"dbguard locks: snapshot {snapshot.seq} at {snapshot.taken_at.strftime('%Y-%m-%d %H:%M:%S')} UTC{every}"
    return f"{head}\n{_locks_text(snapshot.tree)}"


# Cursor home, then clear the screen: a terminal's frame is drawn over the last one (plain ANSI, which
# every terminal dbguard runs in understands).
_REDRAW = "\x1b[H\x1b[2J"


def render_frame(snapshot: LockSnapshot, in_place: bool) -> str:
    """A ``locks --watch`` frame in text: drawn over the previous one on a terminal (``in_place``),
    else one after another, each a whole tree under its header, a blank line between them."""
    text = _lock_snapshot_text(snapshot)
    if in_place:
        return _REDRAW + text
    return text if snapshot.seq == 1 else f"\n{text}"


_TEXT.update({"LockTree": _locks_text, "KillReport": _kill_text, "LockSnapshot": _lock_snapshot_text})


# --- plan ---------------------------------------------------------------------------------------------


def _bytes(size: int | None) -> str:
    if size is None:
        return "size unknown"
    if size < 1024 * 1024:
        return f"{size / 1024:.0f} KiB"
    if size < 1024 ** 3:
        return f"{size / 1048576:.1f} MiB"
    return f"{size / 1024 ** 3:.2f} GiB"


def _rows(rows: int | None) -> str:
    return "rows unknown" if rows is None else f"~{rows:,} rows"


def _flat(sql: str, limit: int = 160) -> str:
    text = " ".join(sql.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _finding_lines(f: Any, indent: str = "    ") -> list[str]:
    where = ""
    if f.table:
        where = f" [{f.table}: {_rows(f.rows)}, {_bytes(f.size_bytes)}]" if (f.rows is not None or f.size_bytes) \
            else f" [{f.table}: size unknown]"
    lines = [f"{indent}{f.severity.upper():<8} {f.code} {f.name}{where}", f"{indent}  {f.message}"]
    if f.taken_by:
        # A lock held across statements: the statement that took it, and this one's time.
        lines.append(f"{indent}  lock: {f.lock}, taken by #{f.taken_at}: {_flat(f.taken_by, 100)}; held through "
                     f"this statement: {f.hold}")
    elif f.lock and f.lock != "none":
        lines.append(f"{indent}  lock: {f.lock}; held {f.hold}")
    if "\n" in f.alternative:
        # Code to paste into the revision: its own lines, indented under the finding.
        lines.append(f"{indent}  instead:")
        lines += [f"{indent}      {line}".rstrip() for line in f.alternative.splitlines()]
    else:
        lines.append(f"{indent}  instead: {f.alternative}")
    return lines


def plan_lines(report: Any, statements: bool = True) -> list[str]:
    """The plan as lines of text: also what the forced-upgrade prompt shows as its blast radius."""
    lines: list[str] = []
    for rev in report.revisions:
        title = f"revision {rev.revision}" + (f": {rev.doc}" if rev.doc else "")
        lines.append(title)
        for note in rev.notes:
            lines.append(f"  note: {note}")
        if statements:
            for st in rev.statements:
                auto = " (autocommit)" if st.autocommit else ""
                lines.append(f"  {st.index:>2}. {_flat(st.sql, 100)}{auto}")
                if st.lock != "none":
                    lines.append(f"      lock: {st.lock}; held {st.hold}")
                for note in st.notes:
                    lines.append(f"      note: {note}")
        for f in rev.findings:
            at = f"#{f.statement_index} " if f.statement_index and statements else ""
            first, *rest = _finding_lines(f, "    ")
            lines.append(first.replace("    ", f"  {at}", 1) if at else first)
            lines += rest
        if not rev.findings:
            lines.append("  no findings")
    s = report.summary
    if s is not None:
        lines.append("summary:")
        hit = [t for t in s.tables if not t.new]
        new = [t.table for t in s.tables if t.new]
        for t in hit:
            by = f", taken by {', '.join(t.taken_by)}" if t.taken_by else ""
            lines.append(f"  table {t.table}: {_rows(t.rows)}, {_bytes(t.size_bytes)}; strongest lock {t.strongest_lock} "
                         f"(blocks {t.blocks}){by}")
        if new:
            lines.append(f"  created by this plan: {', '.join(new)}")
        unknown = f" (+ {s.tables_of_unknown_size} table(s) of unknown size)" if s.tables_of_unknown_size else ""
        lines.append(f"  rows under locks that block reads or writes: {s.rows_under_exclusive_lock:,}{unknown}")
        lines.append(f"  destructive operations: {len(s.destructive)}")
        for d in s.destructive:
            lines.append(f"    - {d}")
        at = f" at {s.worst_hold_at}" if s.worst_hold_at else ""
        lines.append(f"  expected worst lock hold: {s.worst_hold}{at}")
        counts = ", ".join(f"{s.findings[k]} {k}" for k in ("critical", "high", "medium", "low", "info")
                           if k in s.findings)
        lines.append(f"  findings: {counts or 'none'}")
    return lines


def _plan_text(report: Any) -> str:
    frm = " ".join(report.from_revisions) or "base"
    head = f"dbguard: plan {frm} -> {report.to_revision} on {report.server} ({report.mode})"
    lines = [head]
    lines += [f"note: {n}" for n in report.notes]
    lines += plan_lines(report)
    if report.observed is not None:
        lines += _observed_lines(report.observed)
    if report.failing:
        lines.append(f"dbguard: {report.failing} finding(s) at or above {report.fail_on}: exit 1")
    elif report.revisions:
        lines.append(f"dbguard: nothing at or above {report.fail_on}")
    return "\n".join(lines)


def _observed_lines(observation: Any) -> list[str]:
    """``plan --observe``: per revision and table, predicted beside observed lock and rewrite."""
    if observation.status != "observed":
        return [f"observed: not observed: {observation.reason}"]
    where = f" in {observation.where}" if observation.where else ""
    lines = [f"observed{where} (scratch database, empty: locks and rewrites only):" if observation.engine != "mysql"
             else f"observed{where} (scratch database; each ALTER asked of the server on an empty copy of its "
                  "table: algorithm, write block, rebuild):"]
    if not observation.revisions:
        lines.append("  no revision is pending")
    for rev in observation.revisions:
        if not rev.observed:
            lines.append(f"  {rev.revision}: not observed: {rev.reason}")
            continue
        lines.append(f"  {rev.revision}: observed" + ("" if rev.tables else " (no table locked)"))
        for t in rev.tables:
            if t.not_observed:
                lines.append(f"    {t.table}: predicted {t.predicted_lock}; rebuilt {_yes(t.predicted_rewrite)}: "
                             f"not observed: {t.not_observed}")
                continue
            # MySQL/MariaDB: a rebuild is InnoDB's new table id; PostgreSQL's rewrite a new relfilenode.
            word = "rebuilt" if t.engine == "mysql" else "rewrite"
            rewrite = f"{word} {_yes(t.predicted_rewrite)}/{_yes(t.observed_rewrite)}"
            verdict = "agrees" if t.agrees else "DISAGREES (DG116)"
            lines.append(f"    {t.table}: predicted {t.predicted_lock}, observed {t.observed_lock}; {rewrite}: "
                         f"{verdict}")
        lines += [f"    note: {n}" for n in rev.notes]
    if observation.disagreements:
        lines.append(f"  {observation.disagreements} table(s) where the plan and the server disagree")
    return lines


def _yes(flag: bool | None) -> str:
    return "?" if flag is None else "yes" if flag else "no"


_GH_LEVEL = {"critical": "error", "high": "error", "medium": "warning", "low": "notice", "info": "notice"}


def _plan_ci(report: Any, fmt: str) -> str:
    findings = [(rev, f) for rev in report.revisions for f in rev.findings]
    if fmt == "github":
        lines = []
        for rev, f in findings:
            file = f"file={_gh_escape(_relpath(rev.path), prop=True)}," if rev.path else ""
            title = _gh_escape(f"{f.code} {f.name} ({f.severity}) in {rev.revision}", prop=True)
            body = f"{f.message}. Instead:\n{f.alternative}\nStatement: {_flat(f.statement, 300)}"
            lines.append(f"::{_GH_LEVEL[f.severity]} {file}title={title}::{_gh_escape(body)}")
        for note in report.notes:
            lines.append(f"::notice title=dbguard plan::{_gh_escape(note)}")
        if not findings:
            lines.append(f"::notice title=dbguard plan::{_gh_escape('no risk findings')}")
        return "\n".join(lines)

    failures = sum(1 for rev in report.revisions if any(f.level >= _level(report.fail_on) for f in rev.findings))
    out = ['<?xml version="1.0" encoding="UTF-8"?>',
           f'<testsuites name="dbguard plan" tests="{len(report.revisions)}" failures="{failures}" errors="0">',
           f'  <testsuite name="risk findings" tests="{len(report.revisions)}" failures="{failures}" errors="0">']
    for rev in report.revisions:
        bad = [f for f in rev.findings if f.level >= _level(report.fail_on)]
        case = f'    <testcase classname="dbguard.plan" name={_quoteattr(rev.revision)}'
        if not bad:
            out.append(case + "/>")
            continue
        body = "\n".join("\n".join(_finding_lines(f, "")) for f in rev.findings)
        failure = f'      <failure message={_quoteattr(f"{len(bad)} finding(s)")} type="risk">{_escape(body)}</failure>'
        out += [case + ">", failure, "    </testcase>"]
    out += ["  </testsuite>", "</testsuites>"]
    return "\n".join(out)


def _level(name: str) -> Any:
    from dbguard.risk.model import Severity

    return 99 if name == "none" else Severity[name.upper()]


def _relpath(path: str) -> str:
    import os

    try:
        return os.path.relpath(path)
    except ValueError:
        return path


_TEXT["PlanReport"] = _plan_text
_CI["PlanReport"] = _plan_ci


# --- fleets -----------------------------------------------------------------------------------------


def render_event(event: dict[str, Any]) -> str:
    """One line of ``--format jsonl``."""
    return json.dumps(_plain(event), separators=(",", ":"), sort_keys=False)


def _pct(share: float) -> str:
    return f"{share * 100:.1f}%"


def blast_radius_lines(radius: Any, command: str | None) -> tuple[str, ...]:
    """A fleet's blast radius (dbguard.core.fleet.BlastRadius) for people."""
    if radius is None:
        return ()
    lines = []
    if radius.failed:
        lines.append(f"failed: {len(radius.failed)} target(s) ({', '.join(radius.failed)}), "
                     f"{_pct(radius.failed_share)} of traffic")
    else:
        lines.append("failed: no target")
    if radius.upgraded:
        lines.append(f"upgraded and live: {len(radius.upgraded)} target(s), {_pct(radius.upgraded_share)} of traffic")
    if radius.next_batch:
        lines.append(f"the next batch would have added {len(radius.next_batch)} target(s) "
                     f"({', '.join(radius.next_batch[:8])}{' ...' if len(radius.next_batch) > 8 else ''}), "
                     f"{_pct(radius.next_share)} of traffic")
    else:
        lines.append("the next batch would have added nothing: this was the last batch")
    lines.append(f"not started: {len(radius.not_started)} target(s)")
    if command:
        lines.append(f"roll back: {command}")
    return tuple(lines)


def _fleet_target_line(t: Any) -> str:
    if t.from_revisions is None:  # its batch never started: no revision was read, none is claimed
        moved = "(revisions not read)"
    else:
        moved = f"{' '.join(t.from_revisions) or 'base'} -> {t.to_revision or '-'}"
    text = f"  {t.name:<20} {t.masked_url:<48} {t.status or '-':<11} {moved}"
    why = t.error or (t.message if t.status not in ("succeeded", "pending", "skipped") else None)
    return text + (f"\n      {why}" if why else "")


def _fleet_text(result: Any) -> str:
    lines = [f"dbguard: {result.message}"]
    if result.run_id is not None:
        extra = f", {_ms(result.duration_ms)}" if result.duration_ms is not None else ""
        flags = (", forced" if result.forced else "") + (", distributed" if result.distributed else "")
        lines[0] += f"  [fleet run {result.run_id}{flags}{extra}]"
    by_batch: dict[int | None, list[Any]] = {}
    for t in result.targets:
        by_batch.setdefault(t.batch, []).append(t)
    for b in result.batches:
        lines.append(f"batch {b.number} ({len(b.targets)} target(s)): {b.status}")
        lines += [_fleet_target_line(t) for t in by_batch.get(b.number, [])]
    if result.blast_radius is not None:
        lines.append("blast radius:")
        lines += [f"  - {line}" for line in blast_radius_lines(result.blast_radius, result.rollback_command)]
    lines += [f"warning: {w}" for w in result.warnings]
    if result.advice:
        lines.append(f"next: {result.advice}")
    return "\n".join(lines)


def _fleet_status_text(report: Any) -> str:
    lines = [f"fleet:     {report.fleet}", f"state:     {report.state}", f"control:   {report.control}"]
    if report.lock_holder:
        lines.append(f"fleet lock: held by {report.lock_holder}")
    if report.left_out:
        lines.append(f"left out:  {', '.join(report.left_out)} (not part of the last rollout: --partial-rollout)")
    run = report.last_run
    if run is None:
        lines.append("last run:  none recorded")
    else:
        lines.append(f"last run:  {run.id} {run.intent} {run.status} to {run.revision or '-'}, started "
                     f"{_when(run.started_at)} UTC by {run.os_user or '?'}@{run.host or '?'} pid {run.pid or '?'}"
                     + (" (forced)" if run.forced else "") + (" (distributed)" if run.distributed else ""))
        if run.error:
            lines.append(f"error:     {run.error}")
    if report.breaker_reason:
        lines.append(f"breaker:   {report.breaker_reason}")
    if report.blast_radius is not None:
        lines.append("blast radius:")
        lines += [f"  - {line}" for line in blast_radius_lines(report.blast_radius, report.rollback_command)]
    if report.batches:
        lines.append("last upgrade, batch by batch:")
        for b in report.batches:
            lines.append(f"  batch {b.number}: {b.status} ({', '.join(b.targets)})")
    lines.append("targets:")
    for t in report.targets:
        status = f"  [{t.status}]" if t.status else ""
        lines.append(f"  {t.name:<20} {t.state or '-':<11} {' '.join(t.revisions) or 'base':<14} "
                     f"w={t.weight:g} {t.masked_url}{status}")
        if t.error:
            lines.append(f"      {t.error}")
    if report.advice:
        lines.append(f"next:      {report.advice}")
    return "\n".join(lines)


def _fleet_validate_text(report: Any) -> str:
    lines = [f"fleet {report.fleet} ({report.path}), control database {report.control}"]
    for c in report.targets:
        if c.ok:
            lines.append(f"  ok    {c.name:<20} {c.masked_url}  {c.engine} {c.server_version}  "
                         f"at {' '.join(c.revisions) or 'base'}  {c.state}  weight {c.weight:g}"
                         + (f"  tags {','.join(c.tags)}" if c.tags else ""))
        else:
            lines.append(f"  FAIL  {c.name:<20} {c.masked_url}  {c.error}")
    for i, batch in enumerate(report.batches, start=1):
        lines.append(f"batch {i}: {', '.join(batch)}")
    lines += [f"warning: {w}" for w in report.warnings]
    return "\n".join(lines)


def _fleet_worker_text(result: Any) -> str:
    return (f"dbguard: worker {result.worker}: claimed {result.claimed}, succeeded {result.succeeded}, "
            f"failed {result.failed}, refused {result.refused} in {_ms(result.duration_ms)}")


class FleetProgress:
    """The live progress for people, on standard error: one line per batch (done / running / failed),
    rewritten in place at a terminal, one line per change otherwise."""

    def __init__(self, tty: bool) -> None:
        self.tty = tty
        self._open = False

    def __call__(self, event: dict[str, Any]) -> str | None:
        kind = event.get("event")
        if kind in ("target_started", "target_finished") and "size" in event:
            line = (f"batch {event.get('batch')}: {event.get('done', 0)}/{event['size']} done, "
                    f"{event.get('running', 0)} running, {event.get('failed', 0)} failed")
            if kind == "target_finished" and event.get("status") not in ("succeeded", "rolled_back"):
                line += f"  ({event.get('target')}: {event.get('status')})"
            if self.tty:
                self._open = True
                return "\r\033[K" + line
            return line if kind == "target_finished" else None
        text = self._line(event)
        if text is None:
            return None
        prefix = "\n" if self.tty and self._open else ""
        self._open = False
        return prefix + text

    @staticmethod
    def _line(event: dict[str, Any]) -> str | None:
        kind = event.get("event")
        if kind == "fleet_started":
            return (f"fleet {event['fleet']}: run {event['run_id']}: {event['targets']} target(s) in "
                    f"{len(event['batches'])} batch(es) to {event['revision']}, {event['parallel']} at a time")
        if kind == "batch_started":
            return f"batch {event['batch']}/{event['batches']}: {event['size']} target(s): pre-flight"
        if kind == "batch_verified":
            return f"batch {event['batch']}/{event['batches']}: verified"
        if kind == "baking":
            every = f", probing every {event['probe_interval_s']:g} s" if event.get("probe_interval_s") else ""
            return f"batch {event['batch']}: baking {event['seconds']:g} s{every}"
        if kind == "probe" and not event.get("ok"):
            return f"batch {event['batch']}: probe {event['round']}: {event['target']} {event['check']} failed: " \
                   f"{event.get('detail') or ''}".rstrip(": ")
        if kind == "target_unknown":
            return f"target {event['target']}: its worker died mid-target: UNKNOWN"
        if kind == "target_finished":  # rollback targets
            return f"target {event['target']}: {event['status']}"
        if kind == "fleet_failed":
            # A pre-flight that refused the first batch changed nothing: not a failure. A rollback has no batch.
            word = "REFUSED" if event.get("status") == "refused" else "FAILED"
            where = f" at batch {event['batch']}" if event.get("batch") is not None else ""
            return f"fleet {event['fleet']}: {word}{where}: {event.get('error')}"
        if kind == "fleet_finished":
            return f"fleet {event['fleet']}: done"
        return None


_TEXT.update({"FleetResult": _fleet_text, "FleetStatusReport": _fleet_status_text,
              "FleetValidateReport": _fleet_validate_text, "FleetWorkerResult": _fleet_worker_text})


# --- metrics: the Prometheus text exposition format 0.0.4 --------------------------------------------
# For node_exporter's textfile collector or a pushgateway: dbguard serves nothing itself.

METRICS_FORMATS = ("prometheus",)
# (command, subcommand) pairs that print metrics; everything else refuses the format.
METRICS_COMMANDS = (("status", None), ("fleet", "status"))
# A fleet target dbguard could not read has no state of its own: it is shown as this one.
UNREACHABLE = "UNREACHABLE"


def _label_value(value: str) -> str:
    # Masked before it is escaped (escaping would hide a secret's quotes from the patterns).
    return _masked(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _sample_value(value: float) -> str:
    return str(value) if isinstance(value, int) else repr(float(value))


class _Exposition:
    """Metric families in the order first declared, each with its # HELP and # TYPE lines once."""

    def __init__(self) -> None:
        self.families: dict[str, tuple[str, str, list[str]]] = {}

    def add(self, name: str, kind: str, help_text: str, labels: dict[str, str], value: float) -> None:
        family = self.families.setdefault(name, (kind, help_text, []))
        pairs = ",".join(f'{key}="{_label_value(text)}"' for key, text in labels.items())
        family[2].append(f"{name}{{{pairs}}} {_sample_value(value)}")

    def text(self) -> str:
        lines = []
        for name, (kind, help_text, samples) in self.families.items():
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}", *samples]
        return "\n".join(lines)  # said with its closing newline


def url_labels(masked_url: str | None) -> tuple[str, str]:
    """``(target, database)`` of a target known only by its URL: ``host:port/database`` (the file's
    path for SQLite) and the database name; never a user or a password."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    if not masked_url:
        return "", ""
    try:
        url = make_url(masked_url)
    except ArgumentError:
        return "", ""
    database = url.database or ""
    if not url.host:
        return database, database
    where = f"{url.host}:{url.port}" if url.port else url.host
    return f"{where}/{database}", database


def _state_samples(out: _Exposition, labels: dict[str, str], state: str | None, states: tuple[str, ...]) -> None:
    for name in states:
        out.add("dbguard_state", "gauge", "The target's state: 1 for the current one, 0 for the others.",
                {**labels, "state": name}, int(name == state))


def _status_prometheus(report: StatusReport) -> str:
    from dbguard.core.state import TargetState

    target, database = url_labels(report.masked_url)
    labels = {"target": target, "database": database}
    out = _Exposition()
    _state_samples(out, labels, report.state, tuple(s.value for s in TargetState))
    run = report.last_run
    if run is not None:
        if run.started_at is not None and run.finished_at is not None:
            out.add("dbguard_last_run_duration_seconds", "gauge",
                    "Wall time of the target's last run that changed or tried to change the schema.", labels,
                    round((run.finished_at - run.started_at).total_seconds(), 3))
        if run.finished_at is not None:
            out.add("dbguard_last_run_finished_timestamp_seconds", "gauge",
                    "When the last run ended, in seconds since the epoch.", labels,
                    round(run.finished_at.timestamp(), 3))
        out.add("dbguard_last_run_steps", "gauge", "Steps of the last run: one per revision it applied or tried.",
                labels, len(report.last_run_steps))
        out.add("dbguard_last_run_retries", "gauge",
                "Step attempts of the last run tried again after a lock wait reached its bound.", labels,
                sum(max(step.attempts - 1, 0) for step in report.last_run_steps))
        if run.schema_check is not None:  # the run checked the schema: its carried-over drift is known
            out.add("dbguard_last_run_drift_differences", "gauge",
                    "Differences from the reference schema the last run knew of and carried over.", labels,
                    len(run.known_drift))
    for outcome, count in report.sessions_ended or ():
        out.add("dbguard_sessions_ended_total", "counter",
                "Sessions (terminated) or their statements (cancelled) dbguard ended here, per its kill audit.",
                {**labels, "outcome": outcome}, count)
    return out.text()


def _fleet_status_prometheus(report: Any) -> str:
    from dbguard.core.fleet import BatchStatus, TargetStatus
    from dbguard.core.state import TargetState

    fleet = {"fleet": report.fleet}
    out = _Exposition()
    for name in (s.value for s in TargetState):
        out.add("dbguard_fleet_state", "gauge", "The fleet's state: 1 for the current one, 0 for the others.",
                {**fleet, "state": name}, int(name == report.state))
    states = (*(s.value for s in TargetState), UNREACHABLE)
    for t in report.targets:
        _state_samples(out, {"target": t.name, "database": url_labels(t.masked_url)[1], **fleet},
                       t.state or UNREACHABLE, states)
    for t in report.targets:
        seconds = _target_seconds(t)
        if seconds is not None:
            out.add("dbguard_fleet_target_duration_seconds", "gauge",
                    "Wall time of the target in the fleet's last upgrade.",
                    {"target": t.name, "database": url_labels(t.masked_url)[1], **fleet}, seconds)
    by_batch: dict[int | None, list[Any]] = {}
    for t in report.targets:
        by_batch.setdefault(t.batch, []).append(t)
    for b in report.batches:
        for name in (s.value for s in BatchStatus):
            out.add("dbguard_fleet_batch_state", "gauge",
                    "The state of each batch of the fleet's last upgrade: 1 for the current one, 0 for the others.",
                    {**fleet, "batch": str(b.number), "status": name}, int(name == b.status))
    for b in report.batches:
        batch_targets = by_batch.get(b.number, [])
        for name in (s.value for s in TargetStatus):
            out.add("dbguard_fleet_batch_targets", "gauge",
                    "Targets of each batch of the fleet's last upgrade, by their status in it.",
                    {**fleet, "batch": str(b.number), "status": name},
                    sum(1 for t in batch_targets if t.status == name))
    return out.text()


def _target_seconds(t: Any) -> float | None:
    """How long a fleet target's run took: as measured, else from the control database's timestamps."""
    if t.duration_ms is not None:
        return float(t.duration_ms / 1000)
    if isinstance(t.started_at, dt.datetime) and isinstance(t.finished_at, dt.datetime):
        return round((t.finished_at - t.started_at).total_seconds(), 3)
    return None


_METRICS: dict[str, Any] = {"StatusReport": _status_prometheus, "FleetStatusReport": _fleet_status_prometheus}


def _action_words(action: str) -> str:
    # The kill policy's module is loaded by the commands that end sessions, not by every command.
    from dbguard.core.victims import action_words

    return action_words(action)
