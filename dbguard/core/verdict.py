"""What a run may claim when it ends: the two checks behind HEALTHY and exit 0, as pure decisions.

(1) ``alembic_version`` says what the run recorded; (2) the live schema equals the *reference* of
those revisions: the schema stored in the ledger at those revisions when a run's check passed
there. Differences the ledger already knew before the run (drift a person added by hand, shown by
a pre-flight) are carried over, not failures. Where no reference exists yet, there is nothing to
compare with: the run says so, and its schema becomes the reference.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Collection, Iterable, Sequence
from typing import Protocol


class SchemaCheck(str, enum.Enum):
    """How a run's end state was checked against the reference schema."""

    VERIFIED = "verified"  # equal to the reference (pre-existing drift aside)
    FIRST = "first"  # no reference at these revisions: the live schema became it
    ACCEPTED = "accepted"  # a person accepted the live schema as the reference (resolve --accept-schema)
    DIFFERS = "differs"  # (1) or (2) failed: the run failed
    UNCHECKED = "unchecked"  # the catalog could not be read: nothing is claimed about the schema


# End states a rollback may return to: the check passed there.
PASSED = frozenset({SchemaCheck.VERIFIED.value, SchemaCheck.FIRST.value, SchemaCheck.ACCEPTED.value})


def what_was_checked(check: str | None) -> str:
    """What a run whose end checks passed may say it checked: the schema only where it was compared
    with a reference (with none there, or an unreadable catalog, only alembic_version was)."""
    if check in (SchemaCheck.VERIFIED.value, SchemaCheck.ACCEPTED.value):
        return "alembic_version and schema checked"
    if check == SchemaCheck.FIRST.value:
        return "alembic_version checked; no reference schema there to compare with"
    return "alembic_version checked; the schema was not"


class Difference(Protocol):
    @property
    def kind(self) -> str: ...

    @property
    def object(self) -> str: ...

    def describe(self) -> str: ...


def difference_key(difference: Difference) -> str:
    """How a difference is recognised again later: its kind and the object it concerns."""
    return f"{difference.kind} {difference.object}"


@dataclasses.dataclass(frozen=True)
class EndVerdict:
    check: SchemaCheck
    # Each reason the run cannot be called a success, one line each.
    failures: tuple[str, ...] = ()
    # Differences from the reference that were known before the run (shown, never a failure).
    carried: tuple[str, ...] = ()
    # What to say when there was nothing to compare with, or nothing could be read.
    note: str | None = None

    @property
    def passed(self) -> bool:
        return not self.failures


def _revisions(revisions: Iterable[str]) -> tuple[str, ...]:
    return tuple(sorted(r for r in revisions if r and r != "base"))


def judge_end(recorded: Sequence[str], heads_now: Sequence[str], differences: Sequence[Difference] | None,
              known: Collection[str], unreadable: str | None = None) -> EndVerdict:
    """The end of a run: ``recorded`` the revisions it recorded, ``heads_now`` what alembic_version
    says, ``differences`` the live schema against the reference of ``heads_now`` (None: there is no
    reference), ``known`` the keys of differences known before the run, ``unreadable`` why the
    catalog could not be read (then the schema is not judged at all)."""
    failures: list[str] = []
    where = " ".join(_revisions(heads_now)) or "base"
    if _revisions(recorded) != _revisions(heads_now):
        failures.append(f"alembic_version says {where}, the run recorded {' '.join(_revisions(recorded)) or 'base'}")
    if unreadable is not None:
        return EndVerdict(SchemaCheck.DIFFERS if failures else SchemaCheck.UNCHECKED, tuple(failures),
                          note=f"schema not checked at {where}: {unreadable}")
    if differences is None:
        return EndVerdict(SchemaCheck.DIFFERS if failures else SchemaCheck.FIRST, tuple(failures),
                          note=f"schema: first run at {where}, nothing to compare with; the live schema is "
                               "its reference from now on")
    carried = [d.describe() for d in differences if difference_key(d) in known]
    new = [d for d in differences if difference_key(d) not in known]
    failures += [f"schema differs from the reference at {where}: {d.describe()}" for d in new]
    return EndVerdict(SchemaCheck.DIFFERS if failures else SchemaCheck.VERIFIED, tuple(failures), tuple(carried))
