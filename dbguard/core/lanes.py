"""Where the emergency lane goes: the last known-good revision, from the ledger's runs."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from dbguard.core.state import RunRecord, RunStatus


@dataclasses.dataclass(frozen=True)
class RollbackTarget:
    revisions: tuple[str, ...] | None
    reason: str
    # The run the rollback undoes: marked rolled_back once the rollback succeeds.
    undoes: RunRecord | None = None


def rollback_target(runs: Sequence[RunRecord]) -> RollbackTarget:
    """The ``from`` revisions of the failed (or dead) run; when healthy, those of the last upgrade
    that changed something ("undo the last deploy"). ``runs`` are the ledger's, any order."""
    changing = sorted((r for r in runs if r.changes_state), key=lambda r: r.id, reverse=True)
    if not changing:
        return RollbackTarget(None, "the ledger records no run to roll back")
    last = changing[0]
    if last.status in (RunStatus.FAILED.value, RunStatus.RUNNING.value):
        what = "failed" if last.status == RunStatus.FAILED.value else "died"
        return RollbackTarget(last.from_revisions, f"the revisions before run {last.id}, which {what}", last)
    for run in changing:
        moved = set(run.from_revisions) != set((run.to_revision or "").split())
        if run.intent == "upgrade" and run.status == RunStatus.SUCCEEDED.value and moved:
            return RollbackTarget(run.from_revisions, f"the revisions before run {run.id}, the last deploy", run)
        if run.intent in ("rollback", "downgrade") and run.status == RunStatus.SUCCEEDED.value:
            break
    return RollbackTarget(None, "no deploy to undo since the last rollback or downgrade")


def never_forward(target_applied: set[str], applied_now: set[str]) -> bool:
    """A rollback only removes revisions: everything applied at the target is applied now."""
    return target_applied <= applied_now
