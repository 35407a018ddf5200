"""The local kill audit: what its lines mean, and which records still wait to be copied.

When the server accepts no writes (a global read lock, a backup stage, a read-only database), the
record of a kill's intent goes first to a local append-only file of JSON lines, then the signal, then
the outcome; the records are copied into ``dbguard_kills`` once the server accepts writes again.
Three kinds of line, each carrying the record's id:

- ``intent``: the target it belongs to and the ``dbguard_kills`` row as it would have been written;
- ``outcome``: the action taken and what came of it (the row's completion);
- ``copied``: the record was written into ``dbguard_kills`` with this outcome (its row's id there).

A record is pending while its latest outcome has not been copied. Pure: no file, no database.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

INTENT = "intent"
OUTCOME = "outcome"
COPIED = "copied"


@dataclasses.dataclass(frozen=True)
class FileRecord:
    """One kill as the file tells it, its lines folded together."""

    id: str
    target: str
    row: Mapping[str, Any]
    action: str
    outcome: str
    copied_outcome: str | None = None
    ledger_id: int | None = None

    @property
    def pending(self) -> bool:
        return self.copied_outcome != self.outcome

    def ledger_row(self) -> dict[str, Any]:
        """The ``dbguard_kills`` values, completed with the latest action and outcome."""
        return {**self.row, "action": self.action, "outcome": self.outcome}


def intent_line(record_id: str, target: str, row: Mapping[str, Any]) -> dict[str, Any]:
    return {"type": INTENT, "id": record_id, "target": target, "row": dict(row)}


def outcome_line(record_id: str, action: str, outcome: str) -> dict[str, Any]:
    return {"type": OUTCOME, "id": record_id, "action": action, "outcome": outcome}


def copied_line(record_id: str, outcome: str, ledger_id: int) -> dict[str, Any]:
    return {"type": COPIED, "id": record_id, "outcome": outcome, "ledger_id": ledger_id}


def fold(lines: Iterable[Mapping[str, Any]]) -> list[FileRecord]:
    """The records of the file's lines, in the order their intents were written. A line that is not
    one of the three kinds, or names no known intent, is skipped: a torn last line from a crash, or a
    newer dbguard's line, never stops the others from being copied."""
    records: dict[str, FileRecord] = {}
    for line in lines:
        kind, record_id = line.get("type"), line.get("id")
        if not isinstance(record_id, str):
            continue
        if kind == INTENT:
            row = line.get("row")
            target = line.get("target")
            if isinstance(row, Mapping) and isinstance(target, str) and record_id not in records:
                records[record_id] = FileRecord(record_id, target, dict(row), str(row.get("action", "")),
                                                str(row.get("outcome", "")))
            continue
        known = records.get(record_id)
        if known is None:
            continue
        if kind == OUTCOME:
            records[record_id] = dataclasses.replace(known, action=str(line.get("action", known.action)),
                                                     outcome=str(line.get("outcome", known.outcome)))
        elif kind == COPIED:
            ledger_id = line.get("ledger_id")
            records[record_id] = dataclasses.replace(
                known, copied_outcome=str(line.get("outcome")),
                ledger_id=ledger_id if isinstance(ledger_id, int) else known.ledger_id)
    return list(records.values())


def pending(records: Iterable[FileRecord], target: str) -> list[FileRecord]:
    """The records of ``target`` whose latest outcome is not in ``dbguard_kills`` yet."""
    return [r for r in records if r.target == target and r.pending]
