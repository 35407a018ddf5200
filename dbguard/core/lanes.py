"""Where the emergency lane goes: the last state in the ledger whose checks passed."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from dbguard.core.state import RunRecord, RunStatus, known_status
from dbguard.core.verdict import PASSED


@dataclasses.dataclass(frozen=True)
class RollbackTarget:
    revisions: tuple[str, ...] | None
    reason: str
    # The runs the rollback undoes (newest first): marked rolled_back once the rollback succeeds.
    undoes: tuple[RunRecord, ...] = ()
    # The run whose end state the rollback returns to (None: the ledger's starting state).
    checkpoint: RunRecord | None = None


_FINISHED = frozenset({RunStatus.SUCCEEDED.value, RunStatus.ROLLED_BACK.value, RunStatus.RESOLVED.value})


def did_not_finish(run: RunRecord) -> bool:
    """Failed, died, or with a status dbguard never writes (nothing it says can be trusted)."""
    return known_status(run.status) in (None, RunStatus.FAILED, RunStatus.RUNNING)


def end_revisions(run: RunRecord) -> tuple[str, ...] | None:
    """What alembic_version said when ``run`` ended; for rows older than that record, the revisions a
    finished run went to."""
    if run.revisions_after is not None:
        return run.revisions_after
    if run.status in _FINISHED and run.to_revision is not None:
        return tuple(sorted(r for r in run.to_revision.split() if r != "base"))
    return None


def is_checkpoint(run: RunRecord) -> bool:
    """``run`` ended in a state a rollback may return to: its end checks passed (an upgrade undone
    later passed them too, at the time). A row older than the checks counts when it finished."""
    if did_not_finish(run):
        return False
    if run.schema_check is not None:
        return run.schema_check in PASSED
    return run.status in _FINISHED and end_revisions(run) is not None


def rollback_target(runs: Sequence[RunRecord]) -> RollbackTarget:
    """While the last run failed or died: the end state of the newest run whose checks passed,
    however many failed upgrades, downgrades and rollbacks came after it (with none, the revisions
    the ledger's first run started from). While healthy: the revisions before the last deploy
    ("undo the last deploy"). ``runs`` are the ledger's, any order."""
    changing = sorted((r for r in runs if r.changes_state), key=lambda r: r.id, reverse=True)
    if not changing:
        return RollbackTarget(None, "the ledger records no run to roll back")
    last = changing[0]
    if did_not_finish(last):
        chain: list[RunRecord] = []
        for run in changing:
            if is_checkpoint(run):
                what = f"run {run.id} ({run.intent})"
                failed = ", ".join(f"run {r.id}" for r in reversed(chain))
                return RollbackTarget(end_revisions(run), f"the last verified state, left by {what}; undoes "
                                      f"{failed}", tuple(chain), run)
            if did_not_finish(run):
                chain.append(run)
        first = changing[-1]
        what = {RunStatus.FAILED: "failed", RunStatus.RUNNING: "died"}.get(known_status(last.status),  # type: ignore[arg-type]
                                                                          f"has the status {last.status!r}")
        return RollbackTarget(first.from_revisions, f"the revisions before run {first.id}, the ledger's first; "
                              f"run {last.id} {what}", tuple(chain))
    for run in changing:
        moved = set(run.from_revisions) != set((run.to_revision or "").split())
        if run.intent == "upgrade" and run.status == RunStatus.SUCCEEDED.value and moved:
            return RollbackTarget(run.from_revisions, f"the revisions before run {run.id}, the last deploy", (run,))
        if run.intent in ("rollback", "downgrade") and run.status == RunStatus.SUCCEEDED.value:
            break
    return RollbackTarget(None, "no deploy to undo since the last rollback or downgrade")


def partial_repair(applied_now: bool, applied_at_target: bool) -> str:
    """How the rollback completes a revision a run left half-done, by where alembic_version has it now
    and where the target has it (not by the direction that failed: a rollback's own repair can stop
    half-way too). "undo": not applied, nor at the target (a failed upgrade): the live part of its
    upgrade is undone, alembic_version untouched. "finish": applied but not at the target (a failed
    downgrade, the target below it): the rest of its downgrade runs, then alembic_version moves
    below it. "redo": applied and at the target (a failed downgrade from the verified state): what
    the downgrade undid is re-applied and alembic_version kept, since finishing the downgrade would
    leave the database below the state the rollback goes back to."""
    if applied_at_target and not applied_now:
        raise ValueError("a rollback never moves forward: a revision at the target is applied now")
    if not applied_now:
        return "undo"
    return "redo" if applied_at_target else "finish"


def never_forward(target_applied: set[str], applied_now: set[str]) -> bool:
    """A rollback only removes revisions: everything applied at the target is applied now."""
    return target_applied <= applied_now


def way_out(runs: Sequence[RunRecord]) -> str:
    """What to do while the breaker is open, naming only what can work: a rollback to the last
    verified state, unless the database is already there with a schema that differs from its
    reference (a rollback cannot remove what no downgrade created): then a repair and resolve."""
    target = rollback_target(runs)
    changing = sorted((r for r in runs if r.changes_state), key=lambda r: r.id, reverse=True)
    last = changing[0] if changing else None
    where = " ".join(target.revisions or ()) or "base"
    stuck = (last is not None and last.schema_check == "differs" and target.revisions is not None
             and tuple(sorted(last.revisions_after or ())) == tuple(sorted(target.revisions)))
    if stuck:
        return (f"the database is at {where} but its schema differs from the reference there (see the error): "
                "repair it by hand and record it with `dbguard resolve --reason TEXT`, or accept the live schema "
                "with `dbguard resolve --accept-schema --reason TEXT`")
    if target.revisions is None:
        return "repair by hand and record it with `dbguard resolve --reason TEXT`"
    # A downgrade from the verified state that moved alembic_version down before it failed (its steps
    # ran, then a step or the end check failed: airflow's downgrade -1 whose schema differs from the
    # reference there): going back means re-applying upgrades, and a rollback never moves forward.
    went_down = (last is not None and last.intent == "downgrade" and last.revisions_after is not None
                 and tuple(sorted(last.from_revisions)) == tuple(sorted(target.revisions))
                 and tuple(sorted(last.revisions_after)) != tuple(sorted(last.from_revisions)))
    if went_down:
        assert last is not None and last.revisions_after is not None
        now = " ".join(sorted(last.revisions_after)) or "base"
        back = f"`dbguard upgrade {where} --force`" if len(target.revisions) == 1 else \
            f"`dbguard upgrade REV --force` to each of {where}"
        return (f"the downgrade moved the database to {now}, below the last verified state {where}, where a rollback "
                f"cannot go (it never moves forward): repair by hand and record it with `dbguard resolve --reason TEXT`, "
                f"or accept the live schema at {now} with `dbguard resolve --accept-schema --reason TEXT`; going back up "
                f"is {back} (typed confirmation), where the upgrade can run over what the downgrade left")
    return (f"roll back to {where} with `dbguard rollback`, or repair by hand and record it with "
            "`dbguard resolve --reason TEXT`")
