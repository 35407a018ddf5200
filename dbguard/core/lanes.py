"""Where the emergency lane goes: the last state in the ledger whose checks passed."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

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
    # The state the rollback would go back to were it not above the database (then the target is
    # where the database stands): its revisions, "base" for none.
    above: str | None = None


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


_GOES_DOWN = frozenset({"downgrade", "rollback"})


def moved_down_from(since: Sequence[RunRecord], target: Sequence[str], heads_now: Sequence[str]) -> bool:
    """The runs since ``target`` were downgrades and rollbacks only, and alembic_version is no longer
    at it: they only ever removed revisions (a rollback's repair of a failed downgrade keeps its
    revision), so ``target`` lies above the database and going there would move forward. Read from
    the ledger alone (``status`` has no revision graph); an upgrade among them says nothing."""
    return (bool(since) and all(r.intent in _GOES_DOWN for r in since)
            and set(target) != {r for r in heads_now if r and r != "base"})


def rollback_target(runs: Sequence[RunRecord], heads_now: Sequence[str] | None = None,
                    forward: Callable[[tuple[str, ...]], bool] | None = None) -> RollbackTarget:
    """While the last run failed or died: the end state of the newest run whose checks passed,
    however many failed upgrades, downgrades and rollbacks came after it (with none, the revisions
    the ledger's first run started from). While healthy: the revisions before the last deploy
    ("undo the last deploy"). ``runs`` are the ledger's, any order.

    A rollback never moves forward: where that state lies above the database (a downgrade of many
    revisions failed part way, below the state it started from), the target is where the database
    stands now, ``heads_now``, with what the failed step left half-done repaired; going back up is
    an upgrade's job once the breaker is closed. ``forward`` says whether going to some revisions
    would move forward (the lane knows the revision graph); without it, ``moved_down_from`` judges
    from the ledger; without ``heads_now``, neither is asked."""
    changing = sorted((r for r in runs if r.changes_state), key=lambda r: r.id, reverse=True)
    if not changing:
        return RollbackTarget(None, "the ledger records no run to roll back")
    last = changing[0]
    if did_not_finish(last):
        chain: list[RunRecord] = []
        since: list[RunRecord] = []  # every run after the state looked at, finished or not

        def above(revisions: tuple[str, ...] | None) -> bool:
            if revisions is None or heads_now is None:
                return False
            return forward(revisions) if forward is not None else moved_down_from(since, revisions, heads_now)

        def where_it_stopped(revisions: tuple[str, ...], state: str) -> RollbackTarget:
            assert heads_now is not None
            now = tuple(sorted(r for r in heads_now if r and r != "base"))
            failed = ", ".join(f"run {r.id}" for r in reversed(chain))
            return RollbackTarget(now, f"where run {last.id} ({last.intent}) stopped: {state} is above it and a "
                                  f"rollback never moves forward; undoes {failed}", tuple(chain),
                                  above=" ".join(revisions) or "base")

        for run in changing:
            if is_checkpoint(run):
                what = f"run {run.id} ({run.intent})"
                revisions = end_revisions(run)
                if revisions is not None and above(revisions):
                    return where_it_stopped(revisions, f"the last verified state {' '.join(revisions) or 'base'}, "
                                            f"left by {what},")
                failed = ", ".join(f"run {r.id}" for r in reversed(chain))
                return RollbackTarget(revisions, f"the last verified state, left by {what}; undoes "
                                      f"{failed}", tuple(chain), run)
            if did_not_finish(run):
                chain.append(run)
            since.append(run)
        first = changing[-1]
        if above(first.from_revisions):
            return where_it_stopped(first.from_revisions, f"{' '.join(first.from_revisions) or 'base'}, where "
                                    f"the ledger's first run ({first.id}) started,")
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


def way_out(runs: Sequence[RunRecord], heads_now: Sequence[str] | None = None) -> str:
    """What to do while the breaker is open, naming only what can work: a rollback to the last
    verified state, unless the database is already there with a schema that differs from its
    reference (a rollback cannot remove what no downgrade created): then a repair and resolve.
    Where that state lies above the database (``heads_now``), the rollback goes to where it stands."""
    target = rollback_target(runs, heads_now)
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
    if target.above is not None:
        # Nothing to downgrade: the rollback repairs what the failed step left and closes the breaker.
        return (f"roll back with `dbguard rollback`: it stays at {where}, where the failed run stopped (the last "
                f"verified state {target.above} is above it, and a rollback never moves forward), repairs what the "
                f"failed step left half-done and checks the schema; then `dbguard upgrade {target.above}` goes back "
                "up. Or repair by hand and record it with `dbguard resolve --reason TEXT`")
    return (f"roll back to {where} with `dbguard rollback`, or repair by hand and record it with "
            "`dbguard resolve --reason TEXT`")
