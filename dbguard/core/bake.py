"""The monitored bake: what the probes of a batch's targets add up to while it bakes.

A probe that fails once may be a blip (a failover, a slow answer); one that fails
``failures_to_fail`` times in a row fails its target, and the rollout stops as for a failed
migration. Pure: the probes come in as data.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator

from dbguard.core.watchdog import bare_name

# What a probe checks: the target's health_sql, the queue of sessions waiting for locks on the tables
# the batch touched (the watchdog's measure), an HTTP health endpoint.
HEALTH_SQL, LOCK_QUEUE, HEALTH_URL = "health_sql", "lock_queue", "health_url"


@dataclasses.dataclass(frozen=True)
class Probe:
    target: str
    check: str
    ok: bool
    detail: str = ""
    round: int = 0


class ProbeTally:
    """Consecutive failures per target and check; a success starts the count again."""

    def __init__(self, failures_to_fail: int) -> None:
        if failures_to_fail < 1:
            raise ValueError("probe_failures must be 1 or more")
        self.failures_to_fail = failures_to_fail
        self._failed: dict[tuple[str, str], list[Probe]] = {}

    def record(self, probe: Probe, last: bool = False) -> str | None:
        """The reason its target fails, once ``probe`` makes ``failures_to_fail`` failures in a row;
        in the ``last`` round (the end of the bake: no later probe can confirm it) at its first."""
        key = (probe.target, probe.check)
        if probe.ok:
            self._failed.pop(key, None)
            return None
        run = self._failed.setdefault(key, [])
        run.append(probe)
        if len(run) < self.failures_to_fail and not last:
            return None
        details = "; ".join(dict.fromkeys(p.detail for p in run if p.detail))
        when = " at the end of the bake" if last and len(run) < self.failures_to_fail else " in a row"
        return f"{probe.check} failed {len(run)} probe(s){when}" + (f": {details}" if details else "")


def failing_targets(tally: ProbeTally, probes: Iterable[Probe], last: bool = False) -> dict[str, str]:
    """Target -> why it fails, for the targets ``probes`` (one round; ``last``: the bake's final one)
    make fail."""
    failing: dict[str, str] = {}
    for probe in probes:
        why = tally.record(probe, last)
        if why is not None:
            failing[probe.target] = f"{failing[probe.target]}; {why}" if probe.target in failing else why
    return failing


def probe_rounds(bake_s: float, interval_s: float) -> Iterator[tuple[float, bool]]:
    """When the rounds of probes run, in seconds from the start of the bake, and whether it is the
    last: every ``interval_s`` while the bake lasts, and always once at its end, so that a bake
    shorter than its interval still looks once (lazily: a long bake with a short interval is many)."""
    if interval_s <= 0:
        raise ValueError("probe_interval_s must be above 0")
    at = interval_s
    while at < bake_s:
        yield at, False
        at += interval_s
    yield bake_s, True


@dataclasses.dataclass(frozen=True)
class Waiting:
    """A session of the lock tree that waits: for a lock on ``table`` (None: not said), since ``wait_s``."""

    session: str
    table: str | None
    wait_s: float | None
    blocked_by: tuple[str, ...]


def _bare(table: str) -> str:
    return bare_name(table).lower()


def queue_problem(waiting: Iterable[Waiting], tables: Iterable[str] | None, max_wait_s: float) -> str | None:
    """What is wrong with the queue: sessions waiting longer than ``max_wait_s`` for a lock on one of
    ``tables`` (the batch's; None: unknown, so any table counts). A wait the server does not time
    counts from nothing: it alone never fails the probe."""
    names = None if tables is None else {_bare(t) for t in tables}
    long = [w for w in waiting if w.wait_s is not None and w.wait_s > max_wait_s
            and (names is None or w.table is None or _bare(w.table) in names)]
    if not long:
        return None
    on = sorted({w.table for w in long if w.table})
    behind = sorted({b for w in long for b in w.blocked_by})
    return (f"{len(long)} session(s) waiting up to {max(w.wait_s or 0 for w in long):.1f} s for a lock"
            + (f" on {', '.join(on)}" if on else "") + (f" behind session(s) {', '.join(behind)}" if behind else ""))


def health_url_problem(url: str) -> str | None:
    """Why ``url`` cannot be probed (said before anything runs, not after a migration), or None. The
    URL itself is left out of the answer: it may carry a token."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        return f"health_url is not a URL ({exc})"
    if parts.scheme not in ("http", "https"):
        return "health_url must be an http:// or https:// URL"
    if not parts.hostname:
        return "health_url names no host"
    if port == 0:
        return "health_url names port 0"
    return None


def probe_settings_problem(interval_s: float, failures: float, timeout_s: float, health_url: str | None) -> str | None:
    """What is wrong with a bake's probe settings, checked when a bake is asked for (a wrong one must
    not block commands that never bake: status, rollback)."""
    import math

    for name, value in (("probe_interval_s", interval_s), ("probe_timeout_s", timeout_s)):
        if not (math.isfinite(value) and value > 0):
            return f"{name} must be a number of seconds above 0, got {value}"
    if not (math.isfinite(failures) and failures >= 1 and failures == int(failures)):
        return f"probe_failures must be a whole number of 1 or more, got {failures}"
    return health_url_problem(health_url) if health_url is not None else None
