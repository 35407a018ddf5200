"""Is the run holding the run lock a zombie that a rollback may take over?"""

from __future__ import annotations

import dataclasses
import datetime as dt


@dataclasses.dataclass(frozen=True)
class Holder:
    """What is known of the run that holds the run lock."""

    heartbeat_at: dt.datetime | None
    started_at: dt.datetime | None
    same_host: bool
    # None when unknown (another host, or no pid recorded).
    process_alive: bool | None
    # Seconds the lock-holding database session has been idle; None when unknown.
    session_idle_s: float | None
    # On this host: the process's id and its state letter from /proc (R running, S sleeping,
    # T stopped ...), to say which process is alive and how.
    pid: int | None = None
    host: str | None = None
    process_state: str | None = None


@dataclasses.dataclass(frozen=True)
class Verdict:
    zombie: bool
    reason: str


def judge(holder: Holder | None, now: dt.datetime, stale_after_s: float) -> Verdict:
    """A zombie has a stale heartbeat AND is visibly dead: its process is gone (same host), or its
    session has been idle since before its last heartbeat was due (another host, where the process
    cannot be seen). On the run's own host a process that exists is alive, whatever its heartbeat:
    a stopped deploy resumes and commits. A slow but live deploy keeps heartbeating from its own
    thread, so it is never a zombie, whichever host it runs on."""
    if holder is None:
        return Verdict(False, "the lock holder is not a dbguard run in this ledger")
    last_sign = holder.heartbeat_at or holder.started_at
    if last_sign is None:
        return Verdict(False, "the lock holder has no heartbeat to judge by")
    silent_s = (now - last_sign).total_seconds()
    if holder.same_host and holder.process_alive:
        # Stopped (SIGSTOP), swapped out or slow: a process that exists may still commit.
        state = f" (state {holder.process_state}{', stopped' if holder.process_state == 'T' else ''})" \
            if holder.process_state else ""
        return Verdict(False, f"its process {holder.pid} on {holder.host} is alive{state}, heartbeat "
                              f"{silent_s:.1f} s old")
    if silent_s <= stale_after_s:
        return Verdict(False, f"the lock holder's heartbeat is fresh ({silent_s:.1f} s ago)")
    if holder.same_host and holder.process_alive is False:
        return Verdict(True, f"heartbeat {silent_s:.1f} s old and its process is gone")
    if holder.session_idle_s is not None and holder.session_idle_s >= silent_s - stale_after_s:
        return Verdict(True, f"heartbeat {silent_s:.1f} s old and its session idle for {holder.session_idle_s:.1f} s")
    return Verdict(False, f"heartbeat {silent_s:.1f} s old but the holder may still be working")
