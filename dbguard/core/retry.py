"""Backoff between attempts of a step that hit the lock timeout."""

from __future__ import annotations

from collections.abc import Callable


def backoff_ms(attempt: int, base_ms: int, cap_ms: int, rand: Callable[[], float]) -> int:
    """Exponential backoff with jitter: attempt 1 waits about ``base_ms``, doubling up to ``cap_ms``.

    ``rand`` returns a number in [0, 1); the wait lies between half and all of the exponential step,
    so a fleet of deployers retrying together spreads out instead of colliding again.
    """
    if attempt < 1:
        return 0
    step = min(cap_ms, base_ms * 2 ** (attempt - 1))
    return int(step * (0.5 + 0.5 * rand()))
