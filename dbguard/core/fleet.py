"""Fleet decisions over plain data: target order, batches, the fleet's state, the blast radius.

No SQLAlchemy, no I/O, no clock. A fleet run has the same statuses as a target's run
(``dbguard.core.state.RunStatus``), so the fleet's state is derived exactly like a target's.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from collections.abc import Mapping, Sequence

from dbguard.core.state import RunRecord, TargetState, derive_state

CANARY_TAG = "canary"


class TargetStatus(str, enum.Enum):
    """What became of one target in one fleet run."""

    PENDING = "pending"  # published, not started (distributed: waiting for a worker)
    CLAIMED = "claimed"  # a worker took it (distributed)
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    UNKNOWN = "unknown"  # its runner died mid-target: never re-queued
    REFUSED = "refused"  # pre-flight said no (not HEALTHY, breaker, busy): nothing ran
    SKIPPED = "skipped"  # the fleet stopped before it started
    ROLLED_BACK = "rolled_back"


# Outcomes that count against the rollout (the target may have changed and is not healthy).
BROKEN_TARGET = frozenset({TargetStatus.FAILED, TargetStatus.UNKNOWN})
STOPS_ROLLOUT = BROKEN_TARGET | {TargetStatus.REFUSED}
FINISHED_TARGET = frozenset({TargetStatus.SUCCEEDED, TargetStatus.FAILED, TargetStatus.UNKNOWN,
                             TargetStatus.REFUSED, TargetStatus.SKIPPED, TargetStatus.ROLLED_BACK})


class BatchStatus(str, enum.Enum):
    PLANNED = "planned"
    OPEN = "open"  # its targets may start (distributed workers claim them)
    # Verified once after its run and now probed for the bake: not verified until the bake ends clean.
    BAKING = "baking"
    VERIFIED = "verified"
    FAILED = "failed"
    SKIPPED = "skipped"


@dataclasses.dataclass(frozen=True)
class Member:
    """A target as the pure code sees it."""

    name: str
    weight: float = 1.0
    tags: tuple[str, ...] = ()


class BatchSpecError(ValueError):
    """A ``--batches`` value that cannot describe a rollout of this fleet."""


def order_members(members: Sequence[Member]) -> list[Member]:
    """``canary``-tagged targets first, then the rest, each group in the fleet file's order."""
    return [m for m in members if CANARY_TAG in m.tags] + [m for m in members if CANARY_TAG not in m.tags]


def _cumulative(entry: str, total: int) -> int:
    if entry.endswith("%"):
        number = entry[:-1].strip()
        try:
            share = float(number)
        except ValueError:
            raise BatchSpecError(f"{entry!r} is not a percentage") from None
        if not 0 < share <= 100:
            raise BatchSpecError(f"{entry!r}: a share must be above 0% and at most 100%")
        return max(1, math.ceil(share * total / 100 - 1e-9))
    try:
        count = int(entry)
    except ValueError:
        raise BatchSpecError(f"{entry!r} is neither a number, a percentage nor tag:NAME") from None
    if count <= 0:
        raise BatchSpecError(f"{entry!r}: a batch must end at 1 target or more")
    if count > total:
        raise BatchSpecError(f"{entry!r}: the fleet has only {total} target{'s' if total != 1 else ''}")
    return count


def parse_batches(spec: str, members: Sequence[Member], partial: bool = False) -> list[tuple[str, ...]]:
    """The batches of a rollout, as target names, from ``1,10%,50%,100%`` or ``tag:canary,tag:eu,100%``.

    A number or a share is cumulative: the targets done by the end of that batch, in rollout
    order (``order_members``). ``tag:NAME`` is every target with that tag not already in an earlier
    batch. A share that rounds to no new target (small fleets) gives no batch; a number that does
    not grow is an error. Batches that stop short of the whole fleet are an error unless ``partial``:
    then the targets after the last batch are not part of this rollout (see :func:`left_out`).
    """
    ordered = order_members(members)
    total = len(ordered)
    if total == 0:
        raise BatchSpecError("the fleet has no targets")
    entries = [e.strip() for e in (spec or "").split(",")]
    if not entries or any(not e for e in entries):
        raise BatchSpecError(f"--batches {spec!r}: give comma-separated entries like 1,10%,50%,100%")
    done: list[str] = []
    batches: list[tuple[str, ...]] = []
    for entry in entries:
        if entry.lower().startswith("tag:"):
            tag = entry[4:].strip()
            if not tag:
                raise BatchSpecError(f"{entry!r}: name the tag, as in tag:canary")
            tagged = [m.name for m in ordered if tag in m.tags]
            if not tagged:
                raise BatchSpecError(f"{entry!r}: no target has the tag {tag!r}")
            batch = [name for name in tagged if name not in done]
        else:
            upto = _cumulative(entry, total)
            if upto <= len(done) and not entry.endswith("%"):
                raise BatchSpecError(f"--batches {spec!r}: {entry} does not go past the {len(done)} target(s) "
                                     "of the batches before it (entries are cumulative)")
            batch = [m.name for m in ordered if m.name not in done][: max(0, upto - len(done))]
        if batch:
            batches.append(tuple(batch))
            done += batch
    if len(done) < total and not partial:
        raise BatchSpecError(f"--batches {spec!r} ends at {len(done)} of the fleet's {total} targets: end it with "
                             "100%, or pass --partial-rollout to leave the others at their revisions")
    return batches


def left_out(batches: Sequence[Sequence[str]], members: Sequence[Member]) -> tuple[str, ...]:
    """The targets a (partial) rollout does not touch, in the fleet file's order."""
    planned = {name for batch in batches for name in batch}
    return tuple(m.name for m in members if m.name not in planned)


def fleet_state(last_run: RunRecord | None, lock_held_by_other: bool) -> TargetState:
    """The fleet's state: its latest changing fleet run and the fleet lock, read like a target's."""
    return derive_state(last_run, lock_held_by_other)


@dataclasses.dataclass(frozen=True)
class BlastRadius:
    """What a stopped rollout hurt, and what pushing on would have added (shares of traffic)."""

    failed: tuple[str, ...]
    failed_share: float
    upgraded: tuple[str, ...]
    upgraded_share: float
    next_batch: tuple[str, ...]
    next_share: float
    not_started: tuple[str, ...]
    total_weight: float


def _share(names: Sequence[str], weights: Mapping[str, float], total: float) -> float:
    return 0.0 if total <= 0 else sum(weights.get(n, 0.0) for n in names) / total


def blast_radius(weights: Mapping[str, float], outcomes: Mapping[str, str],
                 next_batch: Sequence[str] = ()) -> BlastRadius:
    """``weights``: every target of the fleet (traffic weight); ``outcomes``: target -> TargetStatus
    value for the targets this run touched; ``next_batch``: the batch that would have come next."""
    total = float(sum(weights.values()))
    broken = {s.value for s in BROKEN_TARGET}
    failed = tuple(n for n in weights if outcomes.get(n) in broken)
    upgraded = tuple(n for n in weights if outcomes.get(n) == TargetStatus.SUCCEEDED.value)
    nxt = tuple(n for n in next_batch if n in weights)
    touched = set(failed) | set(upgraded)
    not_started = tuple(n for n in weights if n not in touched)
    return BlastRadius(failed=failed, failed_share=_share(failed, weights, total), upgraded=upgraded,
                       upgraded_share=_share(upgraded, weights, total), next_batch=nxt,
                       next_share=_share(nxt, weights, total), not_started=not_started, total_weight=total)


def rollback_set(outcomes: Mapping[str, str], all_upgraded: bool, moved: Mapping[str, bool] | None = None) -> list[str]:
    """Targets a fleet rollback returns: the broken ones, and with ``all_upgraded`` the upgraded
    ones too, except those the run left where they were (``moved`` false: nothing was pending)."""
    wanted = {s.value for s in BROKEN_TARGET}
    if all_upgraded:
        wanted.add(TargetStatus.SUCCEEDED.value)
    moved = moved or {}
    return [name for name, status in outcomes.items() if status in wanted
            and (status != TargetStatus.SUCCEEDED.value or moved.get(name, True))]


def run_to_undo(runs: Sequence[tuple[str, bool]]) -> int | None:
    """Which fleet upgrade a fleet rollback undoes: ``runs`` are (status, moved anything) of the
    fleet's upgrade runs, newest first. The newest failed or dead one; else the newest succeeded one
    that moved a target (the last deploy); nothing past a run already rolled back or resolved."""
    for i, (status, moved) in enumerate(runs):
        if status in ("failed", "running"):
            return i
        if status in ("rolled_back", "resolved"):
            return None
        if status == "succeeded" and moved:
            return i
    return None


def dead_claims(claimed: Mapping[int, str | None], held: set[int]) -> list[int]:
    """Claim rows (id -> status) that say claimed/running while nobody holds their claim lock."""
    live = {TargetStatus.CLAIMED.value, TargetStatus.RUNNING.value}
    return sorted(i for i, status in claimed.items() if status in live and i not in held)
