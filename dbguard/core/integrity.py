"""Is the ledger whole? Decisions over what was read from it, no database here.

A ledger that lost its tables or some of its runs can no longer say whether the last run failed, so
the breaker opens until somebody records the loss with ``dbguard resolve``."""

from __future__ import annotations

from collections.abc import Collection, Sequence

# The tables only a run creates: one of them present while the run table is missing means the ledger
# was dropped. The kill audit is left out: `dbguard locks kill` writes it where nothing was ever deployed.
_RUN_TABLES = ("runs", "steps")
_EVIDENCE = ("runs", "steps", "schemas")


def lost_tables(prefix: str, present: Collection[str]) -> str | None:
    """``present``: which of dbguard's tables (by suffix: runs, steps, schemas, kills) exist. A
    database with none of them is a first use, not a loss."""
    missing = [f"{prefix}{name}" for name in _RUN_TABLES if name not in present]
    evidence = [f"{prefix}{name}" for name in _EVIDENCE if name in present]
    if not missing or not evidence:
        return None
    return (f"dbguard's ledger is lost: {' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} missing "
            f"while {', '.join(evidence)} exist{'s' if len(evidence) == 1 else ''}")


def deleted_runs(links: Sequence[tuple[int, int | None]], acknowledged_upto: int | None) -> tuple[int, ...]:
    """Runs named as the previous run by a later row and no longer there. ``links``: (id,
    previous_run_id) of every row; gaps in ids alone are normal (a rolled-back insert uses an id up).
    Gaps found before ``acknowledged_upto`` (the last resolve that recorded them) are settled."""
    ids = {run_id for run_id, _ in links}
    return tuple(sorted({previous for run_id, previous in links
                         if previous is not None and previous not in ids
                         and (acknowledged_upto is None or run_id > acknowledged_upto)}))


def ledger_problem(prefix: str, present: Collection[str], links: Sequence[tuple[int, int | None]],
                   acknowledged_upto: int | None) -> str | None:
    """One sentence saying what is missing from the ledger, or None when it is whole."""
    lost = lost_tables(prefix, present)
    if lost:
        return lost
    deleted = deleted_runs(links, acknowledged_upto)
    if deleted:
        names = ", ".join(str(run_id) for run_id in deleted)
        return (f"run{'s' if len(deleted) > 1 else ''} {names} {'are' if len(deleted) > 1 else 'is'} missing from "
                f"{prefix}runs (deleted by hand?): what {'they' if len(deleted) > 1 else 'it'} did is unknown")
    return None


LEDGER_LOSS_ADVICE = ("check the schema and alembic_version by hand, then record the loss with "
                      "`dbguard resolve --reason TEXT` (add --accept-schema to take the live schema as the reference)")
