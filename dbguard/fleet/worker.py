"""What runs in worker processes: one target's guarded upgrade or emergency rollback.

Alembic keeps ``alembic.context`` and ``op`` as module globals, so two migrations never share a
process: the rollout runs each target in a process of a pool (forkserver, modules preloaded, the
processes reused across targets), one target per process at a time. Jobs and outcomes are plain
dicts so they cross the process boundary; a URL with its password travels only in memory.

``run_worker`` is ``dbguard fleet worker``: a process that claims targets of the open batch from a
PostgreSQL control database and runs them one at a time in its own process.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from multiprocessing.context import BaseContext
from typing import Any

from dbguard.core.breaker import CONFIRM_TOKEN
from dbguard.core.fleet import STOPS_ROLLOUT, BatchStatus, TargetStatus
from dbguard.errors import DbguardError
from dbguard.masking import mask

PRELOAD = ["dbguard.fleet.worker", "dbguard.run.guard", "dbguard.rollback.lane", "dbguard.plan.planner", "dbguard.drift.checks",
           "alembic.command", "alembic.runtime.migration", "sqlalchemy.dialects.postgresql",
           "sqlalchemy.dialects.mysql", "psycopg", "pymysql"]


# How many targets this worker process is working on right now (0 or 1).
_busy = [0]


def _init_worker(alive: Any) -> None:
    import dbguard
    from dbguard.drift import expected
    from dbguard.migrations import bridge as alembic_bridge

    dbguard.OWNS_PROCESS = True  # a worker process of dbguard's own, ended with the rollout

    # Each worker renders a revision range offline, and reads the models' schema, once per
    # revision set, however many targets it runs.
    if alembic_bridge.OFFLINE_CACHE is None:
        alembic_bridge.OFFLINE_CACHE = {}
    if expected.MODELS_CACHE is None:
        expected.MODELS_CACHE = {}
    threading.Thread(target=_exit_with_coordinator, args=(alive,), name="dbguard-orphan-watch", daemon=True).start()


def _exit_with_coordinator(alive: Any) -> None:
    """The coordinator holds the other end of ``alive``: EOF means it died (even SIGKILLed). A target
    in flight finishes first (a migration is never stopped mid-DDL), then this orphan exits."""
    with contextlib.suppress(EOFError, OSError):
        alive.recv()
    while _busy[0]:
        time.sleep(0.1)
    os._exit(0)


def make_pool(parallel: int) -> ProcessPoolExecutor:
    """Up to ``parallel`` worker processes (and so at most that many migrations' connections)."""
    # Either start method; only the forkserver takes a preload list.
    context: BaseContext
    try:
        forkserver = multiprocessing.get_context("forkserver")
        importable = []
        for name in PRELOAD:
            with contextlib.suppress(ImportError):
                __import__(name)
                importable.append(name)
        forkserver.set_forkserver_preload(importable)
        context = forkserver
    except ValueError:  # no forkserver on this platform
        context = multiprocessing.get_context("spawn")
    reader, writer = context.Pipe(duplex=False)
    pool = ProcessPoolExecutor(max_workers=max(1, parallel), mp_context=context, initializer=_init_worker,
                               initargs=(reader,))
    pool._dbguard_alive = (reader, writer)  # type: ignore[attr-defined]  # kept open while the pool lives
    return pool


def _masking(job: dict[str, Any]) -> None:
    """This worker process is dbguard's own: what it writes to the target's ledger is masked with the
    fleet's secrets, as in the command that sent the job."""
    from dbguard import masking

    masking.activate(masking.Masker(job.get("secrets", ())))


@contextlib.contextmanager
def _working() -> Any:
    _busy[0] += 1
    try:
        yield
    finally:
        _busy[0] -= 1


def _settings(job: dict[str, Any]) -> Any:
    from dbguard.settings import load_settings

    return load_settings({**job.get("flags", {}), "config_path": job["config"], "url": job["url"]})


def _outcome(name: str, result: Any, ok: str, started: float) -> dict[str, Any]:
    status = {"succeeded": ok, "failed": TargetStatus.FAILED.value}.get(result.status, TargetStatus.REFUSED.value)
    return {
        "target": name, "status": status, "run_status": result.status, "exit_code": int(result.exit_code),
        "message": result.message, "error": result.error, "run_id": result.run_id,
        "from_revisions": tuple(result.from_revisions), "to_revision": result.to_revision,
        "failed_step": result.failed_step, "steps": len(result.steps), "warnings": tuple(result.warnings),
        "duration_ms": int((time.monotonic() - started) * 1000), "pid": os.getpid(),
    }


def _failure(name: str, exc: BaseException, secrets: list[str], started: float) -> dict[str, Any]:
    # A DbguardError is raised before a run starts (configuration, connection): nothing ran.
    # Anything else escaped a run, which dbguard then recorded as failed.
    if isinstance(exc, DbguardError):
        status, text = TargetStatus.REFUSED.value, exc.message
    else:
        from dbguard.db.connect import first_line

        status, text = TargetStatus.FAILED.value, f"{type(exc).__name__}: {first_line(exc)}"
    text = mask(text, secrets)
    return {"target": name, "status": status, "run_status": None, "exit_code": None, "message": text,
            "error": text, "run_id": None, "from_revisions": (), "to_revision": None, "failed_step": None,
            "steps": 0, "warnings": (), "duration_ms": int((time.monotonic() - started) * 1000),
            "pid": os.getpid()}


def upgrade_target(job: dict[str, Any]) -> dict[str, Any]:
    """One target's guarded upgrade (``dbguard upgrade`` with that target's alembic.ini and URL)."""
    from dbguard.core.state import Intent
    from dbguard.migrations import bridge as alembic_bridge
    from dbguard.run.guard import guarded_run
    from dbguard.target import load_target

    started = time.monotonic()
    secrets = list(job.get("secrets", ()))
    if alembic_bridge.OFFLINE_CACHE is not None and job.get("offline"):
        for key, value in job["offline"].items():
            alembic_bridge.OFFLINE_CACHE.setdefault(key, value)
    force = bool(job.get("force"))
    _masking(job)
    with _working():
        try:
            result = guarded_run(load_target(_settings(job)), Intent.UPGRADE, job["revision"], force=force,
                                 confirm=(lambda prompt: CONFIRM_TOKEN) if force else None)
        except Exception as exc:  # noqa: BLE001 - every failure becomes the target's outcome
            return _failure(job["name"], exc, secrets, started)
    return _outcome(job["name"], result, TargetStatus.SUCCEEDED.value, started)


def rollback_target(job: dict[str, Any]) -> dict[str, Any]:
    """One target back to ``job['to']`` through the single-target emergency lane."""
    from dbguard.rollback import lane
    from dbguard.target import load_target

    started = time.monotonic()
    _masking(job)
    with _working():
        try:
            result = lane.rollback(load_target(_settings(job)), job.get("to"), confirm=lambda prompt: prompt.token)
        except Exception as exc:  # noqa: BLE001
            return _failure(job["name"], exc, list(job.get("secrets", ())), started)
    return _outcome(job["name"], result, TargetStatus.ROLLED_BACK.value, started)


# dbguard fleet worker ----------------------------------------------------------------------------


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def run_worker(control_url: str, spec: Any | None, *, once: bool, poll_s: float, flags: dict[str, Any],
               progress: Callable[[dict[str, Any]], None], stop: Callable[[], bool] = lambda: False,
               load_spec: Callable[[str], Any] | None = None) -> dict[str, Any]:
    """Claim pending targets of the open batch, run each here, record the outcome; repeat.

    With ``once``, exit when the fleet run this worker saw running is over (or none starts
    within a minute). Returns counts for the summary.
    """
    from dbguard.db.fleet_control import Control

    secrets = list(spec.secrets) if spec is not None else []
    control = Control(control_url, secrets)
    control.require_claims()
    me = worker_name()
    done = {"claimed": 0, "succeeded": 0, "failed": 0, "refused": 0}
    seen_run: int | None = None
    started = time.monotonic()
    specs: dict[str, Any] = {}
    try:
        control.ensure_tables()
        while not stop():
            current = control.running_run(spec.name if spec is not None else None)
            if current is not None:
                seen_run = current["id"]
                # Any worker spots a claim whose holder died: unknown, never re-queued.
                for name in control.mark_dead_claims(current["id"]):
                    progress({"event": "target_unknown", "target": name, "run_id": current["id"]})
            elif once and (seen_run is not None or time.monotonic() - started > 60):
                break
            fleet = current["fleet"] if current is not None else None
            # A run whose coordinator is gone is UNKNOWN: take nothing of it. Gone means the fleet
            # lock is free, or held by another session than the run's (a fleet rollback or a
            # refused upgrade of that fleet, while the dead run still says running).
            if fleet is not None and control.lock(fleet).holder() != str(current["lock_session"]):  # type: ignore[index]
                if once:
                    break
                fleet = None
            claim = control.claim(fleet, me, current["id"]) if fleet is not None else None  # type: ignore[index]
            if claim is None:
                time.sleep(poll_s)
                continue
            done["claimed"] += 1
            run_spec = spec
            if run_spec is None:
                path = str(current["fleet_file"])  # type: ignore[index]
                if path not in specs:
                    assert load_spec is not None
                    specs[path] = load_spec(path)
                run_spec = specs[path]
                secrets[:] = list(run_spec.secrets)
            outcome = _work_on(control, run_spec, claim, current, flags, progress, me)  # type: ignore[arg-type]
            done[outcome if outcome in done else "failed"] += 1
    finally:
        control.close()
    done["elapsed_ms"] = int((time.monotonic() - started) * 1000)
    return done


def _work_on(control: Any, spec: Any, claim: dict[str, Any], run: dict[str, Any], flags: dict[str, Any],
             progress: Callable[[dict[str, Any]], None], me: str) -> str:
    from dbguard.db.fleet_control import utcnow

    name, run_id = claim["target"], claim["run_id"]
    try:
        try:
            target = spec.target(name)
        except DbguardError as exc:
            control.update_target(run_id, name, status=TargetStatus.REFUSED.value, finished_at=utcnow(),
                                  error=mask(exc.message, spec.secrets))
            return "refused"
        control.update_target(run_id, name, status=TargetStatus.RUNNING.value, started_at=utcnow())
        progress({"event": "target_started", "target": name, "batch": claim["batch"], "worker": me})
        job = {"name": name, "config": str(target.alembic_config), "url": target.url, "revision": run["revision"],
               "flags": flags, "force": bool(run.get("forced")), "secrets": list(spec.secrets)}
        outcome = upgrade_target(job)
        if outcome["status"] in {s.value for s in STOPS_ROLLOUT}:
            # Close the batch at once: no other worker starts another of its targets.
            control.update_batch(run_id, claim["batch"], status=BatchStatus.FAILED.value)
        # from_revisions stays as the coordinator's pre-flight read it (as in a local rollout): an outcome
        # with no run behind it carries none, and an empty one would send `fleet rollback` to base.
        control.update_target(run_id, name, status=outcome["status"], finished_at=utcnow(),
                              target_run_id=outcome["run_id"],
                              to_revision=outcome["to_revision"], error=mask(outcome["error"], spec.secrets),
                              message=mask(outcome["message"], spec.secrets)[:4000])
        progress({"event": "target_finished", "target": name, "batch": claim["batch"], "status": outcome["status"],
                  "message": mask(outcome["message"], spec.secrets), "worker": me})
        return outcome["status"]
    finally:
        # The row is final before the claim lock goes: a free lock on a live-looking row means death.
        control.release_claim(int(claim["id"]))
