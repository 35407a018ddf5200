"""How the emergency lane completes a half-done revision (core/lanes.py ``partial_repair``): by where
alembic_version and the rollback's target have the revision, never by which direction failed."""

from __future__ import annotations

import pytest

from dbguard.core import lanes


@pytest.mark.parametrize(("applied_now", "applied_at_target", "repair"), [
    (False, False, "undo"),   # a failed upgrade: its live part is undone
    (True, False, "finish"),  # a failed downgrade, the target below it: the downgrade is finished
    (True, True, "redo"),     # a failed downgrade from the verified state: back to the revision whole
])
def test_a_half_done_revision_is_completed_towards_the_target(
        applied_now: bool, applied_at_target: bool, repair: str) -> None:
    assert lanes.partial_repair(applied_now, applied_at_target) == repair


def test_a_revision_at_the_target_that_is_not_applied_would_be_a_move_forward() -> None:
    with pytest.raises(ValueError, match="never moves forward"):
        lanes.partial_repair(applied_now=False, applied_at_target=True)
