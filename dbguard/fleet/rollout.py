"""Fleet runs: a batched upgrade that stops at the first failure, the rollback that undoes it,
resolve, status and validate. Every target runs through the single-target machinery (the guarded
run, the rollback lane, status).

The coordinator holds the fleet lock on the control database for the whole run and a heartbeat
thread keeps the run's heartbeat fresh. Migrations run in worker processes (``fleet.worker``);
read-only checks (pre-flight state, verification, status) run in threads, since they never enter
Alembic's module-global context. Progress goes to a callback as plain event dicts.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shlex
import socket
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Executor, ThreadPoolExecutor, wait
from typing import Any

from dbguard import __version__
from dbguard.core import breaker
from dbguard.core.fleet import (
    BROKEN_TARGET,
    FINISHED_TARGET,
    STOPS_ROLLOUT,
    BatchSpecError,
    BatchStatus,
    BlastRadius,
    TargetStatus,
    blast_radius,
    fleet_state,
    left_out,
    parse_batches,
    rollback_set,
    run_to_undo,
)
from dbguard.core.state import Intent, RunStatus, TargetState
from dbguard.db.fleet_control import Control, run_record, utcnow
from dbguard.db.runlock import acquire
from dbguard.db.sql import run_health_check
from dbguard.errors import ConfigError, ExitCode
from dbguard.fleet.spec import DEFAULT_WORKER_TIMEOUT_S, FleetSpec, TargetSpec
from dbguard.masking import mask
from dbguard.results import (
    Confirm,
    FleetBatchResult,
    FleetResult,
    FleetRunInfo,
    FleetStatusReport,
    FleetTargetCheck,
    FleetTargetResult,
    FleetValidateReport,
    RiskPrompt,
)
from dbguard.target import os_user

Progress = Callable[[dict[str, Any]], None]

_POLL_S = 0.1


def _noop(event: dict[str, Any]) -> None:
    pass


def _event(kind: str, fleet: str, run_id: int | None, **fields: Any) -> dict[str, Any]:
    return {"event": kind, "fleet": fleet, "run_id": run_id, "at": utcnow().isoformat(), **fields}


def rollback_command(spec: FleetSpec, all_upgraded: bool = False) -> str:
    return f"dbguard fleet rollback {shlex.quote(str(spec.path))}" + (" --all-upgraded" if all_upgraded else "")


def _base_row(spec: FleetSpec, control: Control, intent: str, revision: str | None, batches: str | None,
              distributed: bool = False) -> dict[str, Any]:
    return {
        "fleet": spec.name, "intent": intent, "revision": revision, "batches": batches, "distributed": distributed,
        "started_at": utcnow(), "host": socket.gethostname(), "pid": os.getpid(), "os_user": os_user(),
        "dbguard_version": __version__, "forced": False, "lock_session": control.session_id or str(os.getpid()),
        "fleet_file": str(spec.path), "command": spec.mask(mask(" ".join(sys.argv)))[:4000],
    }


class _Heartbeat:
    """Keeps the fleet run's heartbeat fresh from a thread with a connection of its own."""

    def __init__(self, control: Control, run_id: int, interval_s: float) -> None:
        self._control, self._run_id, self._interval = control, run_id, max(0.2, interval_s)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="dbguard-fleet-heartbeat", daemon=True)

    def __enter__(self) -> _Heartbeat:  # noqa: PYI034
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        own = None
        try:
            own = self._control.reopen()
            while not self._stop.wait(self._interval):
                with contextlib.suppress(Exception):
                    own.update_run(self._run_id, heartbeat_at=utcnow())
        except Exception:  # noqa: BLE001, S110 - a missed heartbeat never stops a rollout
            pass
        finally:
            if own is not None:
                own.close()


# Reading targets (threads: no Alembic context involved) -------------------------------------------


def _settings(target: TargetSpec, flags: dict[str, Any]) -> Any:
    from dbguard.settings import load_settings

    return load_settings({**flags, "config_path": str(target.alembic_config), "url": target.url})


@dataclasses.dataclass(frozen=True)
class _Seen:
    state: str | None
    revisions: tuple[str, ...]
    error: str | None = None


def _look(target: TargetSpec, flags: dict[str, Any], secrets: Sequence[str], new_ok: bool = False) -> _Seen:
    """The target's state as `status` sees it. ``new_ok``: a SQLite file that is not there yet is an
    empty target at base (a rollout's pre-flight: its guarded upgrade creates it), not an error."""
    from dbguard.run import status as state_of

    if new_ok:
        from dbguard.db.connect import parse_url
        from dbguard.target import require_database_file

        try:
            require_database_file(parse_url(target.url))
        except ConfigError:
            return _Seen(TargetState.HEALTHY.value, (), None)
    try:
        # The state and revisions only: each target's guarded run checks its schema in its pre-flight.
        report = state_of.report(_settings(target, flags), check_schema=False)
    except Exception as exc:  # noqa: BLE001 - an unreachable target is a refused target, never a crash
        from dbguard.db.connect import first_line

        text = getattr(exc, "message", None) or f"{type(exc).__name__}: {first_line(exc)}"
        return _Seen(None, (), mask(text, secrets))
    why = mask(report.breaker_reason, secrets) if report.breaker_reason else None
    if report.state == TargetState.RUNNING.value:
        why = f"busy: another run holds its run lock (session {report.lock_holder})"
    return _Seen(report.state, tuple(report.revisions), why)


def _look_all(targets: Sequence[TargetSpec], flags: dict[str, Any], secrets: Sequence[str],
              parallel: int, new_ok: bool = False) -> dict[str, _Seen]:
    if not targets:
        return {}
    with ThreadPoolExecutor(max_workers=max(1, min(parallel, len(targets)))) as threads:
        seen = list(threads.map(lambda t: _look(t, flags, secrets, new_ok), targets))
    return {t.name: s for t, s in zip(targets, seen)}


def _verify_one(target: TargetSpec, flags: dict[str, Any], secrets: Sequence[str]) -> tuple[_Seen, str | None]:
    """State and revisions as ``dbguard status`` reads them, and the health_sql, on one session;
    health_sql runs in a transaction that is rolled back."""
    from dbguard.core.state import derive_state
    from dbguard.db.connect import first_line
    from dbguard.db.ledger import Ledger, read_version_heads
    from dbguard.target import load_target, make_lock, open_session

    try:
        loaded = load_target(_settings(target, flags))
        with open_session(loaded) as session:
            ledger = Ledger(session.conn, loaded.settings.table_prefix)
            holder = make_lock(session, loaded).holder()
            held = holder is not None and holder != session.session_id
            revisions = read_version_heads(session.conn, loaded.version_table)
            last = ledger.latest_changing_run() if ledger.exists() else None
            state = derive_state(last, held).value
            why = None
            if state != TargetState.HEALTHY.value and last is not None:
                why = mask(breaker.describe_breaker(TargetState(state), last), secrets)
            health = None
            if target.health_sql:
                try:
                    run_health_check(session.conn, target.health_sql)
                except Exception as exc:  # noqa: BLE001 - any failure of the health check fails the target
                    health = mask(f"health_sql failed: {first_line(exc)}", secrets)
        return _Seen(state, revisions, why), health
    except Exception as exc:  # noqa: BLE001 - an unreachable target fails verification
        text = getattr(exc, "message", None) or f"{type(exc).__name__}: {first_line(exc)}"
        return _Seen(None, (), mask(text, secrets)), None


def _nap_until(when: float) -> None:
    """Sleep until the monotonic time ``when`` in naps (one long sleep cannot take a huge bake)."""
    while (left := when - time.monotonic()) > 0:
        time.sleep(min(left, 1.0))


def _fail_target_run(target: TargetSpec, run_id: int | None, error: str, flags: dict[str, Any]) -> None:
    """Record the target's own run FAILED after its batch failed while baking (best effort: the fleet's
    control database says it failed either way)."""
    if run_id is None:
        return
    from dbguard.db.ledger import Ledger
    from dbguard.target import load_target, open_session

    with contextlib.suppress(Exception):
        loaded = load_target(_settings(target, flags))
        with open_session(loaded) as session:
            Ledger(session.conn, loaded.settings.table_prefix).update_run(
                int(run_id), status=RunStatus.FAILED.value, error=error[:4000], finished_at=utcnow())


def _same_revisions(seen: Sequence[str], expected: str | None) -> bool:
    if expected is None:
        return True
    want = {r for r in expected.split() if r != "base"}
    return set(seen) == want


# fleet upgrade ------------------------------------------------------------------------------------


@dataclasses.dataclass
class UpgradeOptions:
    revision: str = "head"
    batches: str | None = None
    parallel: int = 4
    bake_s: float = 0.0
    force: bool = False
    wait_lock_s: float = 0.0
    distributed: bool = False
    heartbeat_s: float = 2.0
    # Distributed: a published batch none of whose targets changed state for this long, with no
    # live claim, fails (no worker is taking it) instead of waiting forever.
    worker_timeout_s: float = DEFAULT_WORKER_TIMEOUT_S
    # Settings given to every target (x_args, lock_timeout_ms ...): as the command-line flags.
    flags: dict[str, Any] = dataclasses.field(default_factory=dict)
    # Batches may stop short of the whole fleet; the others stay where they are, and say so.
    partial_rollout: bool = False


def upgrade(spec: FleetSpec, options: UpgradeOptions, *, confirm: Confirm | None = None,
            progress: Progress | None = None, pool: Executor | None = None) -> FleetResult:
    """``fleet upgrade``: batch by batch, each pre-flighted, run in parallel processes, verified."""
    progress = progress or _noop
    if options.parallel < 1:
        raise ConfigError("--parallel must be 1 or more")
    batches_text = options.batches or spec.batches
    try:
        plan = parse_batches(batches_text, spec.members, partial=options.partial_rollout)
    except BatchSpecError as exc:
        raise ConfigError(f"--batches: {exc}") from None
    with Control(spec.control_url, spec.secrets) as control:
        if options.distributed:
            control.require_claims()
        control.ensure_tables()
        lock = control.lock(spec.name)
        if not acquire(lock, options.wait_lock_s):
            return _busy(spec, control, lock, "upgrade", options.revision, batches_text)
        try:
            return _locked_upgrade(spec, control, plan, batches_text, options, confirm, progress, pool)
        finally:
            lock.release()


def _busy(spec: FleetSpec, control: Control, lock: Any, intent: str, revision: str | None,
          batches: str | None) -> FleetResult:
    holder = lock.holder()
    running = control.running_run(spec.name)
    who = f" (fleet run {running['id']}, pid {running['pid']} on {running['host']})" if running else ""
    message = f"busy: another dbguard fleet run holds the fleet lock of {spec.name}{who}"
    if holder and not running:
        message += f" (session {holder})"
    run_id = control.insert_run(**_base_row(spec, control, intent, revision, batches), status=RunStatus.BUSY.value,
                                finished_at=utcnow(), error=message)
    return FleetResult(fleet=spec.name, intent=intent, status=RunStatus.BUSY.value, exit_code=ExitCode.BUSY,
                       message=message, run_id=run_id, revision=revision,
                       advice="wait for it to finish, or pass --wait-lock SECONDS")


def _undone_upgrade(control: Control, spec: FleetSpec) -> dict[str, Any] | None:
    return control.latest_changing_run(spec.name, intent=Intent.UPGRADE.value)


def _moved(row: dict[str, Any]) -> bool:
    """Whether a target's run moved it (a succeeded run with nothing pending did not)."""
    before = set((row["from_revisions"] or "").split())
    after = {r for r in (row["to_revision"] or "").split() if r != "base"}
    return row["to_revision"] is None or before != after


def _run_to_undo(control: Control, spec: FleetSpec) -> dict[str, Any] | None:
    runs = control.changing_runs(spec.name, intent=Intent.UPGRADE.value, limit=50)
    moved = [any(_moved(r) for r in control.targets_of(run["id"])) if run["status"] == "succeeded" else True
             for run in runs]
    picked = run_to_undo([(run["status"], m) for run, m in zip(runs, moved)])
    return None if picked is None else runs[picked]


def _radius_of(control: Control, spec: FleetSpec, run: dict[str, Any] | None) -> BlastRadius | None:
    """The blast radius of an upgrade run: its broken targets, their share, the next batch."""
    if run is None or run["intent"] != Intent.UPGRADE.value:
        run = _undone_upgrade(control, spec)
    if run is None:
        return None
    rows = control.targets_of(run["id"])
    outcomes = {}
    for r in rows:
        status = r["status"]
        if run["status"] == RunStatus.RUNNING.value and status in (TargetStatus.RUNNING.value,
                                                                   TargetStatus.CLAIMED.value):
            status = TargetStatus.UNKNOWN.value  # its coordinator died: fate unknown
        outcomes[r["target"]] = status
    failed_batch = run.get("failed_batch")
    if failed_batch is None:
        active = [r["batch"] for r in rows if outcomes[r["target"]] in {s.value for s in BROKEN_TARGET}
                  | {TargetStatus.RUNNING.value}]
        failed_batch = min(active) if active else None
    nxt = [r["target"] for r in rows if failed_batch is not None and r["batch"] == failed_batch + 1]
    weights = {t.name: t.weight for t in spec.targets}
    return blast_radius(weights, outcomes, nxt)


def _locked_upgrade(spec: FleetSpec, control: Control, plan: list[tuple[str, ...]], batches_text: str,
                    options: UpgradeOptions, confirm: Confirm | None, progress: Progress,
                    pool: Executor | None) -> FleetResult:
    revision = options.revision
    last_row = control.latest_changing_run(spec.name)
    last = run_record(last_row) if last_row else None
    state = fleet_state(last, lock_held_by_other=False)
    decision = breaker.decide(Intent.UPGRADE, state, last, options.force)
    row = _base_row(spec, control, Intent.UPGRADE.value, revision, batches_text, options.distributed)
    command = rollback_command(spec, all_upgraded=True)
    if not decision.allowed or decision.needs_confirmation:
        radius = _radius_of(control, spec, last_row)
        reason = f"fleet {decision.reason}"
        advice = (f"roll back with `{command}` (or without --all-upgraded: only the broken targets), or repair "
                  f"by hand and `dbguard fleet resolve {shlex.quote(str(spec.path))} --reason TEXT`; --force "
                  f"proceeds only after the typed {breaker.CONFIRM_TOKEN}")
        refused = not decision.allowed
        if decision.needs_confirmation:
            prompt = RiskPrompt(
                title=f"--force: fleet upgrade of {spec.name} to {revision} although its circuit breaker is open",
                blast_radius=(reason,), fleet_radius=radius, fleet_rollback_command=command,
                closing=("every target is still pre-flighted: one that is not HEALTHY stops the rollout",),
                token=breaker.CONFIRM_TOKEN)
            answer = confirm(prompt) if confirm else None
            refused = not breaker.confirmation_accepted(answer)
            if refused:
                reason = f"risk confirmation missing or wrong (type {breaker.CONFIRM_TOKEN} to proceed); {reason}"
                row["forced"] = True
        if refused:
            run_id = control.insert_run(**row, status=RunStatus.REFUSED.value, finished_at=utcnow(), error=reason)
            return FleetResult(fleet=spec.name, intent="upgrade", status=RunStatus.REFUSED.value,
                               exit_code=ExitCode.REFUSED, message=f"refused: {reason}", run_id=run_id,
                               revision=revision, blast_radius=radius, rollback_command=command, advice=advice)
        row["forced"] = True

    run_id = control.insert_run(**row, status=RunStatus.RUNNING.value, heartbeat_at=utcnow())
    weights = {t.name: t.weight for t in spec.targets}
    position = 0
    for number, names in enumerate(plan, start=1):
        control.insert_batch(run_id=run_id, number=number, size=len(names), status=BatchStatus.PLANNED.value)
        rows = []
        for name in names:
            target = spec.target(name)
            rows.append({"run_id": run_id, "batch": number, "position": position, "target": name,
                         "masked_url": target.masked_url, "weight": target.weight,
                         "status": TargetStatus.PENDING.value})
            position += 1
        control.insert_targets(rows)
    progress(_event("fleet_started", spec.name, run_id, revision=revision, batches=[list(b) for b in plan],
                    targets=sum(len(b) for b in plan), parallel=options.parallel, distributed=options.distributed,
                    forced=bool(row["forced"])))
    started = time.monotonic()
    rollout = _Rollout(spec, control, run_id, plan, options, progress, weights)
    with _Heartbeat(control, run_id, options.heartbeat_s):
        try:
            rollout.run(pool)
        except BaseException as exc:
            # dbguard itself failed or was interrupted mid-rollout: the fleet is FAILED, never left running.
            from dbguard.db.connect import first_line

            with contextlib.suppress(Exception):
                text = "interrupted" if isinstance(exc, KeyboardInterrupt) else first_line(exc)
                control.update_run(run_id, status=RunStatus.FAILED.value, finished_at=utcnow(),
                                   error=spec.mask(f"dbguard stopped mid-rollout: {text}"),
                                   failed_batch=rollout.current_batch)
            raise
    return rollout.result(int((time.monotonic() - started) * 1000), bool(row["forced"]))


class _Rollout:
    def __init__(self, spec: FleetSpec, control: Control, run_id: int, plan: list[tuple[str, ...]],
                 options: UpgradeOptions, progress: Progress, weights: dict[str, float]) -> None:
        self.spec, self.control, self.run_id, self.plan = spec, control, run_id, plan
        self.options, self.progress, self.weights = options, progress, weights
        self.current_batch: int | None = None
        self.failure: str | None = None
        self.refused_first = False
        self.advice: str | None = None
        self.warnings: list[str] = []
        self.outcomes: dict[str, dict[str, Any]] = {}
        self._planned: set[tuple[Any, ...]] = set()
        self._offline: dict[tuple[Any, ...], Any] = {}
        # The tables each revision range's statements name (by its plan), per target: what a bake's
        # lock-queue probe watches. Missing: not known, every table counts.
        self._group_tables: dict[tuple[Any, ...], frozenset[str]] = {}
        self._touched: dict[str, frozenset[str]] = {}

    def emit(self, kind: str, **fields: Any) -> None:
        self.progress(_event(kind, self.spec.name, self.run_id, **fields))

    # the batches ------------------------------------------------------------------------------

    def run(self, pool: Executor | None) -> None:
        owned = None
        try:
            for number, names in enumerate(self.plan, start=1):
                self.current_batch = number
                targets = [self.spec.target(n) for n in names]
                self.emit("batch_started", batch=number, batches=len(self.plan), size=len(targets),
                          targets=list(names))
                if not self._preflight(number, targets):
                    break
                if self.options.distributed:
                    self._run_distributed(number, targets)
                else:
                    if pool is None:
                        from dbguard.fleet.worker import make_pool

                        pool = owned = make_pool(self.options.parallel)
                    self._run_local(pool, number, targets)
                if self.failure is None:
                    self._verify(number, targets)
                if self.failure is not None:
                    break
                # The last batch bakes too: it carries the most traffic, and a failure still opens the breaker.
                if self.options.bake_s > 0:
                    self.control.update_batch(self.run_id, number, status=BatchStatus.BAKING.value)
                    self.emit("baking", batch=number, seconds=self.options.bake_s,
                              probe_interval_s=self.spec.probe_interval_s, probe_failures=self.spec.probe_failures)
                    self._bake(number, targets)
                    if self.failure is None:
                        # The batch is checked once more before the next one starts.
                        self._verify(number, targets, f" after baking {self.options.bake_s:g} s")
                    if self.failure is not None:
                        break
                self.control.update_batch(self.run_id, number, status=BatchStatus.VERIFIED.value,
                                          verified_at=utcnow())
                self.emit("batch_verified", batch=number, batches=len(self.plan), size=len(targets))
        finally:
            if owned is not None:
                # In-flight targets finish (a migration is never stopped mid-DDL).
                owned.shutdown(wait=True)
        self._close()

    def _fail(self, number: int, reason: str, refused: bool = False) -> None:
        self.failure = self.spec.mask(reason)
        self.refused_first = refused and number == 1
        self.control.update_batch(self.run_id, number, status=BatchStatus.FAILED.value, finished_at=utcnow(),
                                  error=self.failure)

    def _close(self) -> None:
        c, run_id = self.control, self.run_id
        # Everything that never started is skipped; nothing of it runs after a failure.
        c.skip_unstarted(run_id)
        if self.failure is None:
            c.update_run(run_id, status=RunStatus.SUCCEEDED.value, finished_at=utcnow())
            self.emit("fleet_finished", status=RunStatus.SUCCEEDED.value, targets=len(self.outcomes))
            return
        status = RunStatus.REFUSED.value if self.refused_first else RunStatus.FAILED.value
        c.update_run(run_id, status=status, finished_at=utcnow(), error=self.failure[:4000],
                     failed_batch=self.current_batch)
        radius = _radius_of(c, self.spec, c.get_run(run_id)) if not self.refused_first else None
        self.emit("fleet_failed", status=status, batch=self.current_batch, error=self.failure,
                  blast_radius=dataclasses.asdict(radius) if radius else None,
                  rollback_command=rollback_command(self.spec, all_upgraded=True) if radius else None)

    # pre-flight -------------------------------------------------------------------------------

    def _preflight(self, number: int, targets: list[TargetSpec]) -> bool:
        """Every target of the batch must be HEALTHY now; its revisions are recorded as its from."""
        seen = _look_all(targets, self.options.flags, self.spec.secrets, self.options.parallel, new_ok=True)
        refused = []
        for target in targets:
            s = seen[target.name]
            values: dict[str, Any] = {"from_revisions": s.revisions}
            if s.state != TargetState.HEALTHY.value:
                why = s.error or f"target is {s.state}"
                values.update(status=TargetStatus.REFUSED.value, finished_at=utcnow(),
                              error=f"pre-flight: not HEALTHY: {why}"[:4000], target_state=s.state)
                refused.append(f"{target.name} ({s.state or 'unreachable'}: {why})")
                self.outcomes[target.name] = {"status": TargetStatus.REFUSED.value, "error": values["error"]}
                self.emit("target_finished", batch=number, target=target.name, status=TargetStatus.REFUSED.value,
                          message=values["error"])
            self.control.update_target(self.run_id, target.name, **values)
        if refused:
            self._fail(number, f"batch {number} refused at pre-flight: {'; '.join(refused)}", refused=True)
            return False
        self._share_offline(targets, seen)
        self.control.update_batch(self.run_id, number, status=BatchStatus.OPEN.value, opened_at=utcnow())
        return True

    def _share_offline(self, targets: list[TargetSpec], seen: dict[str, _Seen]) -> None:
        """Render each revision range once (per script directory, config, engine and starting
        revisions) and hand the result to the workers, instead of once per target."""
        from dbguard.migrations import bridge
        from dbguard.plan import planner
        from dbguard.target import load_target

        for target in targets:
            backend = target.url.split("://", 1)[0]
            group = (str(target.alembic_config), seen[target.name].revisions, backend)
            if group in self._planned:
                if group in self._group_tables:
                    self._touched[target.name] = self._group_tables[group]
                continue
            self._planned.add(group)
            saved = bridge.OFFLINE_CACHE
            bridge.OFFLINE_CACHE = {}
            try:
                loaded = load_target(_settings(target, self.options.flags))
                report = planner.build_plan(loaded, loaded.script(), seen[target.name].revisions,
                                            self.options.revision)
                tables = frozenset(s.table for r in report.revisions for s in r.statements if s.table)
                if report.complete:
                    self._group_tables[group] = self._touched[target.name] = tables
                for f in report.findings:
                    if f.severity in ("medium", "high", "critical"):
                        self.warnings.append(f"risk {f.code} {f.name} ({f.severity}) in {f.revision}: {f.message}")
                self._offline.update(bridge.OFFLINE_CACHE)
            except Exception as exc:  # noqa: BLE001 - sharing is an optimisation; each target plans itself
                from dbguard.db.connect import first_line

                self.warnings.append(self.spec.mask(f"the shared offline plan of {target.name} could not be made "
                                                    f"({first_line(exc)}); each target renders its own"))
            finally:
                bridge.OFFLINE_CACHE = saved

    # running targets ---------------------------------------------------------------------------

    def _job(self, target: TargetSpec) -> dict[str, Any]:
        return {"name": target.name, "config": str(target.alembic_config), "url": target.url,
                "revision": self.options.revision, "flags": self.options.flags, "force": self.options.force,
                "secrets": list(self.spec.secrets), "offline": self._offline}

    def _record(self, number: int, target: str, outcome: dict[str, Any], counts: dict[str, int]) -> None:
        self.outcomes[target] = outcome
        self.control.update_target(
            self.run_id, target, status=outcome["status"], finished_at=utcnow(), target_run_id=outcome.get("run_id"),
            to_revision=outcome.get("to_revision"), error=self.spec.mask(outcome.get("error"))[:4000] or None,
            message=self.spec.mask(outcome.get("message"))[:4000] or None)
        if outcome["status"] in {s.value for s in STOPS_ROLLOUT} and self.failure is None:
            what = outcome.get("error") or outcome.get("message") or outcome["status"]
            self._fail(number, f"batch {number}: target {target} {outcome['status']}: {what}")
        self.emit("target_finished", batch=number, target=target, status=outcome["status"],
                  message=self.spec.mask(outcome.get("message")), run=outcome.get("run_id"),
                  duration_ms=outcome.get("duration_ms"), **counts)

    def _run_local(self, pool: Executor, number: int, targets: list[TargetSpec]) -> None:
        from concurrent.futures.process import BrokenProcessPool

        from dbguard.fleet.worker import upgrade_target

        waiting = list(targets)
        inflight: dict[Any, TargetSpec] = {}
        counts = {"size": len(targets), "done": 0, "running": 0, "failed": 0}
        while waiting or inflight:
            # A failure starts no further target; those already running finish.
            while waiting and self.failure is None and len(inflight) < self.options.parallel:
                target = waiting.pop(0)
                self.control.update_target(self.run_id, target.name, status=TargetStatus.RUNNING.value,
                                           started_at=utcnow())
                counts["running"] += 1
                self.emit("target_started", batch=number, target=target.name, **counts)
                inflight[pool.submit(upgrade_target, self._job(target))] = target
            if not inflight:
                break
            finished, _ = wait(list(inflight), return_when=FIRST_COMPLETED)
            for future in finished:
                target = inflight.pop(future)
                try:
                    outcome = future.result()
                except BrokenProcessPool as exc:
                    outcome = {"status": TargetStatus.UNKNOWN.value,
                               "error": f"its worker process died mid-target ({exc}); its own breaker decides"}
                except Exception as exc:  # noqa: BLE001
                    outcome = {"status": TargetStatus.FAILED.value, "error": f"{type(exc).__name__}: {exc}"}
                counts["running"] -= 1
                counts["done"] += 1
                if outcome["status"] != TargetStatus.SUCCEEDED.value:
                    counts["failed"] += 1
                self._record(number, target.name, outcome, dict(counts))

    def _run_distributed(self, number: int, targets: list[TargetSpec]) -> None:
        """The batch is open: workers claim its targets. Wait for all (the barrier); on a failure
        close the batch so nobody starts another of its targets, and wait for those in flight."""
        names = {t.name for t in targets}
        self.emit("batch_published", batch=number, size=len(targets))
        reported: dict[str, str] = {}
        closed = False
        timeout = self.options.worker_timeout_s
        seen: dict[str, str] = {}
        changed = time.monotonic()
        while True:
            for name in self.control.mark_dead_claims(self.run_id):
                self.emit("target_unknown", batch=number, target=name)
            rows = [r for r in self.control.targets_of(self.run_id, batch=number) if r["target"] in names]
            counts = {"size": len(rows), "done": sum(1 for r in rows if r["status"] in {s.value for s in FINISHED_TARGET}),
                      "running": sum(1 for r in rows if r["status"] in ("claimed", "running")),
                      "failed": sum(1 for r in rows if r["status"] in {s.value for s in STOPS_ROLLOUT})}
            now = {r["target"]: r["status"] for r in rows}
            if now != seen:
                seen, changed = now, time.monotonic()
            for r in rows:
                status, name = r["status"], r["target"]
                if status == TargetStatus.RUNNING.value and name not in reported:
                    reported[name] = status
                    self.emit("target_started", batch=number, target=name, worker=r["worker"], **counts)
                if status in {s.value for s in FINISHED_TARGET} and reported.get(name) != "done":
                    reported[name] = "done"
                    outcome = {"status": status, "error": r["error"], "message": r["message"],
                               "run_id": r["target_run_id"], "to_revision": r["to_revision"]}
                    self.outcomes[name] = outcome
                    if status in {s.value for s in STOPS_ROLLOUT} and self.failure is None:
                        self._fail(number, f"batch {number}: target {name} {status}: {r['error'] or r['message']}")
                    self.emit("target_finished", batch=number, target=name, status=status,
                              message=r["message"], worker=r["worker"], **counts)
            if self.failure is not None and not closed:
                # _fail closed the batch (status failed): claims stop; pending ones never start.
                self.control.skip_pending_of_batch(self.run_id, number)
                closed = True
                continue
            live = [r for r in rows if r["status"] in ("pending", "claimed", "running")]
            if not live:
                return
            # A claimed or running row has a live claim (mark_dead_claims above turned dead ones
            # unknown) and is waited for however long it takes; a batch left with only pending rows,
            # none changing for worker_timeout_s, has no worker taking it.
            idle = time.monotonic() - changed
            if self.failure is None and idle >= timeout and all(r["status"] == "pending" for r in live):
                started = any(r["started_at"] is not None for r in rows)
                self._fail(number, f"batch {number}: no worker claimed a target of it in {timeout:g} s: start "
                                   f"`dbguard fleet worker --control-url {self.spec.masked_control_url} "
                                   f"{shlex.quote(str(self.spec.path))}` (on machines that reach the targets), "
                                   "then run the fleet upgrade again", refused=not started)
                self.advice = ("start `dbguard fleet worker` processes on the control database (or run the fleet "
                               "upgrade without --distributed), then run it again")
                continue
            time.sleep(_POLL_S)

    # the bake ---------------------------------------------------------------------------------

    def _bake(self, number: int, targets: list[TargetSpec]) -> None:
        """Probe every target of the batch every probe_interval_s while it bakes, and once at its end;
        a probe failing probe_failures times in a row (in the last round, once) fails its target, and
        the batch, at once."""
        from dbguard.core.bake import ProbeTally, failing_targets, probe_rounds
        from dbguard.run.probes import TargetProbes

        spec, started = self.spec, time.monotonic()
        tally = ProbeTally(spec.probe_failures)
        probers = [TargetProbes(t.name, _settings(t, self.options.flags), t.health_sql, t.health_url,
                                self._touched.get(t.name), spec.secrets, spec.probe_timeout_s) for t in targets]
        workers = max(1, min(self.options.parallel, len(targets)))
        try:
            with ThreadPoolExecutor(max_workers=workers) as threads:
                for round_number, (offset, last) in enumerate(probe_rounds(self.options.bake_s,
                                                                           spec.probe_interval_s), 1):
                    _nap_until(started + offset)
                    rounds = [threads.submit(t.run, round_number) for t in probers]
                    seen = [p for r in rounds for p in r.result()]
                    for p in seen:
                        self.emit("probe", batch=number, target=p.target, round=round_number, check=p.check,
                                  ok=p.ok, detail=spec.mask(p.detail) or None)
                    failing = failing_targets(tally, seen, last)
                    if failing:
                        self._fail_baking(number, failing)
                        return
        finally:
            for prober in probers:
                prober.close()

    def _fail_baking(self, number: int, failing: dict[str, str]) -> None:
        for name, why in failing.items():
            error = self.spec.mask(f"bake: {why}")
            # The target's own run failed too: its breaker opens, as after `upgrade --bake` on it alone.
            _fail_target_run(self.spec.target(name), self.outcomes.get(name, {}).get("run_id"), error,
                             self.options.flags)
            self.outcomes[name] = {**self.outcomes.get(name, {}), "status": TargetStatus.FAILED.value, "error": error}
            self.control.update_target(self.run_id, name, status=TargetStatus.FAILED.value, error=error[:4000])
            self.emit("target_finished", batch=number, target=name, status=TargetStatus.FAILED.value, message=error)
        self._fail(number, f"batch {number} failed while baking: "
                           + "; ".join(f"{name}: {why}" for name, why in failing.items()))

    # verification -----------------------------------------------------------------------------

    def _verify(self, number: int, targets: list[TargetSpec], when: str = "") -> None:
        """After the batch (and again after its bake): each target HEALTHY, at the revision its run
        reached, health_sql passing."""
        with ThreadPoolExecutor(max_workers=max(1, min(self.options.parallel, len(targets)))) as threads:
            checked = list(threads.map(lambda t: _verify_one(t, self.options.flags, self.spec.secrets), targets))
        seen = {t.name: c[0] for t, c in zip(targets, checked)}
        health = {t.name: c[1] for t, c in zip(targets, checked)}
        bad = []
        for target in targets:
            s, expected = seen[target.name], self.outcomes.get(target.name, {}).get("to_revision")
            problem = None
            if s.state != TargetState.HEALTHY.value:
                problem = f"state {s.state}: {s.error or ''}".rstrip(": ")
            elif not _same_revisions(s.revisions, expected):
                problem = f"at {' '.join(s.revisions) or 'base'}, expected {expected}"
            elif health[target.name]:
                problem = health[target.name]
            if problem:
                bad.append(f"{target.name}: {problem}")
                self.outcomes[target.name] = {**self.outcomes.get(target.name, {}),
                                              "status": TargetStatus.FAILED.value, "error": f"verify: {problem}"}
                self.control.update_target(self.run_id, target.name, status=TargetStatus.FAILED.value,
                                           target_state=s.state, error=self.spec.mask(f"verify: {problem}")[:4000])
                self.emit("target_finished", batch=number, target=target.name, status=TargetStatus.FAILED.value,
                          message=self.spec.mask(f"verify: {problem}"))
            else:
                self.control.update_target(self.run_id, target.name, target_state=s.state, verified_at=utcnow())
        if bad:
            self._fail(number, f"batch {number} failed verification{when}: {'; '.join(bad)}")

    # the summary ------------------------------------------------------------------------------

    def result(self, duration_ms: int, forced: bool) -> FleetResult:
        batches, targets = _run_detail(self.control, self.run_id, self.spec)
        common: dict[str, Any] = {"fleet": self.spec.name, "intent": "upgrade", "run_id": self.run_id,
                                  "revision": self.options.revision, "batches": batches, "targets": targets,
                                  "warnings": tuple(dict.fromkeys(self.warnings)), "forced": forced,
                                  "distributed": self.options.distributed, "duration_ms": duration_ms}
        upgraded = sum(1 for t in targets if t.status == TargetStatus.SUCCEEDED.value)
        common["left_out"] = left = left_out(self.plan, self.spec.members)
        if self.failure is None:
            rest = (f"; {len(left)} target(s) left at their revisions (--partial-rollout): {', '.join(left)}"
                    if left else "")
            return FleetResult(status=RunStatus.SUCCEEDED.value, exit_code=ExitCode.OK,
                               message=f"fleet {self.spec.name}: {upgraded} target(s) upgraded to {self.options.revision} "
                                       f"in {len(batches)} batch(es){rest}", **common)
        if self.refused_first:
            return FleetResult(status=RunStatus.REFUSED.value, exit_code=ExitCode.REFUSED,
                               message=f"refused: {self.failure}", advice=self.advice or "make every target HEALTHY "
                               "first (`dbguard fleet status` shows them), then run the rollout again", **common)
        command = rollback_command(self.spec, all_upgraded=True)
        radius = _radius_of(self.control, self.spec, self.control.get_run(self.run_id))
        refused = any(t.status == TargetStatus.REFUSED.value for t in targets)
        return FleetResult(
            status=RunStatus.FAILED.value, exit_code=ExitCode.REFUSED if refused else ExitCode.RUN_FAILED,
            message=f"fleet run {self.run_id} failed: {self.failure}", blast_radius=radius, rollback_command=command,
            advice=(f"the fleet's circuit breaker is open; no further batch starts. Roll back with `{command}` "
                    f"(without --all-upgraded: only the broken targets), or repair by hand and "
                    f"`dbguard fleet resolve {shlex.quote(str(self.spec.path))} --reason TEXT`"), **common)


def _run_detail(control: Control, run_id: int, spec: FleetSpec) -> tuple[tuple[FleetBatchResult, ...],
                                                                         tuple[FleetTargetResult, ...]]:
    rows = control.targets_of(run_id)
    by_batch: dict[int, list[str]] = {}
    for r in rows:
        by_batch.setdefault(r["batch"], []).append(r["target"])
    batches = tuple(FleetBatchResult(number=b["number"], status=b["status"], targets=tuple(by_batch.get(b["number"], ())),
                                     opened_at=b["opened_at"], finished_at=b["finished_at"],
                                     verified_at=b["verified_at"]) for b in control.batches_of(run_id))
    tags = {t.name: t.tags for t in spec.targets}
    targets = tuple(FleetTargetResult(
        name=r["target"], masked_url=r["masked_url"] or "", weight=r["weight"], batch=r["batch"], status=r["status"],
        from_revisions=None if r["from_revisions"] is None else tuple(r["from_revisions"].split()),
        to_revision=r["to_revision"],
        run_id=r["target_run_id"], message=r["message"], error=r["error"], started_at=r["started_at"],
        finished_at=r["finished_at"], verified_at=r["verified_at"], state=r["target_state"],
        tags=tags.get(r["target"], ())) for r in rows)
    return batches, targets


# fleet rollback -----------------------------------------------------------------------------------


def rollback(spec: FleetSpec, *, all_upgraded: bool = False, confirm: Confirm | None = None, parallel: int = 4,
             wait_lock_s: float = 0.0, target_wait_lock_s: float = 30.0, flags: dict[str, Any] | None = None,
             progress: Progress | None = None, pool: Executor | None = None) -> FleetResult:
    """The fleet's open lane: the broken targets of the last upgrade (with ``all_upgraded`` every
    target it upgraded) back to their recorded from-revisions through the single-target
    emergency lane, in parallel processes; then the fleet is HEALTHY."""
    progress = progress or _noop
    flags = dict(flags or {})
    with Control(spec.control_url, spec.secrets) as control:
        control.ensure_tables()
        lock = control.lock(spec.name)
        if not acquire(lock, wait_lock_s):
            return _busy(spec, control, lock, Intent.ROLLBACK.value, None, None)
        try:
            return _locked_rollback(spec, control, all_upgraded, confirm, parallel, target_wait_lock_s, flags,
                                    progress, pool)
        finally:
            lock.release()


def _locked_rollback(spec: FleetSpec, control: Control, all_upgraded: bool, confirm: Confirm | None,
                     parallel: int, target_wait_lock_s: float, flags: dict[str, Any], progress: Progress,
                     pool: Executor | None) -> FleetResult:
    up = _run_to_undo(control, spec)
    row = _base_row(spec, control, Intent.ROLLBACK.value, None, None)

    def refuse(message: str, advice: str | None = None) -> FleetResult:
        run_id = control.insert_run(**row, status=RunStatus.REFUSED.value, finished_at=utcnow(), error=message)
        return FleetResult(fleet=spec.name, intent="rollback", status=RunStatus.REFUSED.value,
                           exit_code=ExitCode.REFUSED, message=f"refused: {message}", run_id=run_id, advice=advice)

    if up is None:
        return refuse("nothing to roll back: no fleet upgrade that moved a target since the last rollback or "
                      "resolve")
    dead = up["status"] == RunStatus.RUNNING.value  # we hold the fleet lock: its coordinator died
    if dead:
        control.mark_in_flight_unknown(up["id"], "its fleet run died mid-target: fate unknown")
    rows = control.targets_of(up["id"])
    outcomes = {r["target"]: r["status"] for r in rows}
    names = rollback_set(outcomes, all_upgraded, {r["target"]: _moved(r) for r in rows})
    if not names and up["status"] == RunStatus.SUCCEEDED.value:
        return refuse(f"fleet run {up['id']} succeeded: nothing failed",
                      f"to undo the whole rollout: `{rollback_command(spec, all_upgraded=True)}`")
    by_name = {r["target"]: r for r in rows}
    unread = [name for name in names if by_name[name]["from_revisions"] is None]
    if unread:
        # Never "back to base" for a target whose starting revisions nobody read.
        return refuse(f"no starting revisions were recorded for {', '.join(unread)}",
                      "roll each of them back with `dbguard rollback --to REV` on the target itself")
    plan_lines = []
    for name in names:
        frm = " ".join((by_name[name]["from_revisions"] or "").split()) or "base"
        plan_lines.append(f"{name} ({by_name[name]['masked_url']}, {outcomes[name]}): back to {frm}")
    if not names:
        plan_lines.append("no target changed: the fleet run is only marked rolled back")
    prompt = RiskPrompt(title=f"roll back fleet run {up['id']} of {spec.name} ({up['status']}"
                              f"{', its coordinator died' if dead else ''}): {len(names)} target(s)",
                        blast_radius=(*plan_lines, ("each through `dbguard rollback` (blockers ended under the "
                                                    "kill policy, audited)")), token=breaker.YES_TOKEN)
    if confirm is None or not breaker.said_yes(confirm(prompt)):
        return refuse("the fleet rollback was not confirmed",
                      "answer yes at the prompt, or pass --yes where no terminal is attached")
    run_id = control.insert_run(**row, status=RunStatus.RUNNING.value, heartbeat_at=utcnow(), undoes=up["id"])
    progress(_event("rollback_started", spec.name, run_id, undoes=up["id"], targets=names))
    started = time.monotonic()
    failures: list[str] = []
    target_flags = {**flags, "wait_lock_s": target_wait_lock_s}
    owned = None
    with _Heartbeat(control, run_id, 2.0):
        try:
            if names and pool is None:
                from dbguard.fleet.worker import make_pool

                pool = owned = make_pool(parallel)
            from dbguard.fleet.worker import rollback_target

            futures = {}
            for name in names:
                target = spec.target(name)
                to = " ".join((by_name[name]["from_revisions"] or "").split()) or "base"
                job = {"name": name, "config": str(target.alembic_config), "url": target.url, "to": to,
                       "flags": target_flags, "secrets": list(spec.secrets)}
                progress(_event("target_started", spec.name, run_id, target=name, to=to))
                futures[pool.submit(rollback_target, job)] = name  # type: ignore[union-attr]
            for future in list(futures):
                name = futures[future]
                try:
                    outcome = future.result()
                except Exception as exc:  # noqa: BLE001
                    outcome = {"status": TargetStatus.FAILED.value, "error": f"{type(exc).__name__}: {exc}"}
                ok = outcome["status"] == TargetStatus.ROLLED_BACK.value
                if ok:
                    control.update_target(up["id"], name, status=TargetStatus.ROLLED_BACK.value,
                                          message=spec.mask(outcome.get("message"))[:4000])
                else:
                    failures.append(f"{name}: {spec.mask(outcome.get('error') or outcome.get('message'))}")
                progress(_event("target_finished", spec.name, run_id, target=name,
                                status=TargetStatus.ROLLED_BACK.value if ok else TargetStatus.FAILED.value,
                                message=spec.mask(outcome.get("message") or outcome.get("error"))))
        except BaseException as exc:
            with contextlib.suppress(Exception):
                control.update_run(run_id, status=RunStatus.FAILED.value, finished_at=utcnow(),
                                   error=spec.mask(f"dbguard stopped mid-rollback: {exc}")[:4000])
            raise
        finally:
            if owned is not None:
                owned.shutdown(wait=True)
    batches, targets = _run_detail(control, up["id"], spec)
    common: dict[str, Any] = {"fleet": spec.name, "intent": "rollback", "run_id": run_id, "batches": batches,
                              "targets": targets, "duration_ms": int((time.monotonic() - started) * 1000)}
    if failures:
        error = "; ".join(failures)[:4000]
        control.update_run(run_id, status=RunStatus.FAILED.value, finished_at=utcnow(), error=error)
        progress(_event("fleet_failed", spec.name, run_id, status="failed", error=error))
        return FleetResult(status=RunStatus.FAILED.value, exit_code=ExitCode.RUN_FAILED,
                           message=f"fleet rollback {run_id} failed for {len(failures)} target(s): {error}",
                           advice="`dbguard fleet status` shows each target; run the fleet rollback again, or "
                                  "`dbguard rollback`/`dbguard resolve` the target by hand", **common)
    control.update_run(run_id, status=RunStatus.SUCCEEDED.value, finished_at=utcnow())
    control.update_run(up["id"], status=RunStatus.ROLLED_BACK.value, resolved_by=run_id)
    progress(_event("fleet_finished", spec.name, run_id, status="succeeded", targets=len(names)))
    return FleetResult(status=RunStatus.SUCCEEDED.value, exit_code=ExitCode.OK,
                       message=f"fleet run {up['id']} rolled back: {len(names)} target(s) returned to their "
                               "revisions before it; the fleet is HEALTHY", **common)


# fleet resolve ------------------------------------------------------------------------------------


def resolve(spec: FleetSpec, reason: str, *, confirm: Confirm | None = None,
            wait_lock_s: float = 0.0) -> FleetResult:
    """Mark the FAILED/UNKNOWN fleet run as repaired by hand, after the typed risk confirmation."""
    if not reason or not reason.strip():
        raise ConfigError("fleet resolve needs --reason TEXT: say what was repaired and how")
    with Control(spec.control_url, spec.secrets) as control:
        control.ensure_tables()
        lock = control.lock(spec.name)
        if not acquire(lock, wait_lock_s):
            return _busy(spec, control, lock, Intent.RESOLVE.value, None, None)
        try:
            last_row = control.latest_changing_run(spec.name)
            last = run_record(last_row) if last_row else None
            state = fleet_state(last, lock_held_by_other=False)
            decision = breaker.decide(Intent.RESOLVE, state, last, force=False)
            row = {**_base_row(spec, control, Intent.RESOLVE.value, None, None), "reason": reason}
            if not decision.allowed:
                run_id = control.insert_run(**row, status=RunStatus.REFUSED.value, finished_at=utcnow(),
                                            error=decision.reason)
                return FleetResult(fleet=spec.name, intent="resolve", status=RunStatus.REFUSED.value,
                                   exit_code=ExitCode.REFUSED, message=f"refused: {decision.reason}", run_id=run_id)
            assert last_row is not None
            radius = _radius_of(control, spec, last_row)
            lines = ((f"marks fleet run {last_row['id']} ({last_row['intent']}, {last_row['status']}) as "
                     f"repaired by hand: {breaker.describe_breaker(state, last)}"),)
            closing = (("each target keeps its own state: a FAILED or UNKNOWN target still refuses until "
                       "`dbguard rollback` or `dbguard resolve` on it"),)
            prompt = RiskPrompt(title=f"resolve fleet run {last_row['id']} of {spec.name}", blast_radius=lines,
                                fleet_radius=radius, closing=closing, token=breaker.CONFIRM_TOKEN)
            answer = confirm(prompt) if confirm else None
            if not breaker.confirmation_accepted(answer):
                why = f"risk confirmation missing or wrong (type {breaker.CONFIRM_TOKEN} to proceed)"
                run_id = control.insert_run(**row, status=RunStatus.REFUSED.value, finished_at=utcnow(), error=why)
                return FleetResult(fleet=spec.name, intent="resolve", status=RunStatus.REFUSED.value,
                                   exit_code=ExitCode.REFUSED, message=f"refused: {why}", run_id=run_id)
            run_id = control.insert_run(**row, status=RunStatus.SUCCEEDED.value, finished_at=utcnow(),
                                        undoes=last_row["id"])
            control.update_run(last_row["id"], status=RunStatus.RESOLVED.value, resolved_by=run_id)
            return FleetResult(fleet=spec.name, intent="resolve", status=RunStatus.SUCCEEDED.value,
                               exit_code=ExitCode.OK, run_id=run_id,
                               message=f"fleet run {last_row['id']} marked resolved by fleet run {run_id}")
        finally:
            lock.release()


# fleet status and validate ------------------------------------------------------------------------


def _info(row: dict[str, Any]) -> FleetRunInfo:
    return FleetRunInfo(id=row["id"], intent=row["intent"], status=row["status"], revision=row["revision"],
                        started_at=row["started_at"], finished_at=row["finished_at"], host=row["host"], pid=row["pid"],
                        os_user=row["os_user"], forced=bool(row["forced"]), distributed=bool(row["distributed"]),
                        error=row["error"], reason=row["reason"], failed_batch=row["failed_batch"])


def status(spec: FleetSpec, *, flags: dict[str, Any] | None = None, parallel: int = 8) -> FleetStatusReport:
    """The fleet state, the last fleet run batch by batch, and each target's live state and revisions."""
    flags = dict(flags or {})
    live = _look_all(list(spec.targets), flags, spec.secrets, parallel)
    with Control(spec.control_url, spec.secrets) as control:
        holder = control.lock(spec.name).holder()
        last_row = control.latest_changing_run(spec.name)
        last = run_record(last_row) if last_row else None
        state = fleet_state(last, lock_held_by_other=holder is not None)
        up = _undone_upgrade(control, spec) if control.exists() else None
        batches: tuple[FleetBatchResult, ...] = ()
        recorded: dict[str, FleetTargetResult] = {}
        left: tuple[str, ...] = ()
        if up is not None:
            batches, rows = _run_detail(control, up["id"], spec)
            recorded = {t.name: t for t in rows}
            left = tuple(t.name for t in spec.targets if t.name not in recorded)
        broken = state in (TargetState.FAILED, TargetState.UNKNOWN)
        radius = _radius_of(control, spec, last_row) if broken else None
    targets = []
    for t in spec.targets:
        seen = live[t.name]
        base = recorded.get(t.name) or FleetTargetResult(name=t.name, masked_url=t.masked_url, weight=t.weight)
        targets.append(dataclasses.replace(base, masked_url=t.masked_url, weight=t.weight, tags=t.tags,
                                           state=seen.state or "UNREACHABLE", revisions=seen.revisions,
                                           error=base.error or (seen.error if seen.state != "HEALTHY" else None)))
    exit_code, reason, advice = ExitCode.OK, None, None
    command = rollback_command(spec, all_upgraded=True)
    if broken:
        exit_code = ExitCode.REFUSED
        reason = f"fleet circuit breaker open: {breaker.describe_breaker(state, last)}"
        advice = (f"roll back with `{command}` (without --all-upgraded: only the broken targets), or repair by "
                  f"hand and `dbguard fleet resolve {shlex.quote(str(spec.path))} --reason TEXT`")
    elif state is TargetState.RUNNING:
        exit_code = ExitCode.BUSY
    return FleetStatusReport(fleet=spec.name, state=state.value, exit_code=exit_code, control=spec.masked_control_url,
                             last_run=_info(last_row) if last_row else None, batches=batches, targets=tuple(targets),
                             blast_radius=radius, rollback_command=command if broken else None,
                             breaker_reason=reason, advice=advice, lock_holder=holder, left_out=left)


def _check(target: TargetSpec, flags: dict[str, Any], secrets: Sequence[str]) -> FleetTargetCheck:
    from dbguard.db.ledger import read_version_heads
    from dbguard.target import load_target, open_session

    common: dict[str, Any] = {"name": target.name, "masked_url": target.masked_url, "weight": target.weight,
                              "tags": target.tags,
              "alembic_config": str(target.alembic_config)}
    try:
        loaded = load_target(_settings(target, flags))
        with open_session(loaded) as session:
            sa_dialect = session.conn.dialect
            engine = "mariadb" if getattr(sa_dialect, "is_mariadb", False) else sa_dialect.name
            version = ".".join(str(v) for v in (sa_dialect.server_version_info or ()))
            revisions = read_version_heads(session.conn, loaded.version_table)
    except Exception as exc:  # noqa: BLE001 - reported per target
        from dbguard.db.connect import first_line

        text = getattr(exc, "message", None) or f"{type(exc).__name__}: {first_line(exc)}"
        return FleetTargetCheck(**common, ok=False, error=mask(text, secrets))
    seen = _look(target, flags, secrets)
    return FleetTargetCheck(**common, ok=True, engine=engine, server_version=version, revisions=revisions,
                            state=seen.state, error=seen.error)


def validate(spec: FleetSpec, *, flags: dict[str, Any] | None = None, parallel: int = 8,
             batches: str | None = None, partial_rollout: bool = False) -> FleetValidateReport:
    """Parse, expand, connect to each target: engine, version, revisions, state; the batch plan."""
    flags = dict(flags or {})
    try:
        plan = parse_batches(batches or spec.batches, spec.members, partial=partial_rollout)
    except BatchSpecError as exc:
        raise ConfigError(f"batches: {exc}") from None
    with ThreadPoolExecutor(max_workers=max(1, min(parallel, len(spec.targets)))) as threads:
        checks = tuple(threads.map(lambda t: _check(t, flags, spec.secrets), spec.targets))
    warnings = list(spec.warnings)
    ok = all(c.ok for c in checks)
    from dbguard.db.connect import parse_url
    from dbguard.target import require_database_file

    try:
        try:
            require_database_file(parse_url(spec.control_url))
        except ConfigError:  # a read never creates it: the first fleet upgrade does
            warnings.append("the control database does not exist yet: the first `dbguard fleet upgrade` creates it")
        else:
            with Control(spec.control_url, spec.secrets):
                pass
    except Exception as exc:  # noqa: BLE001 - reported, exit 2
        from dbguard.db.connect import first_line

        ok = False
        warnings.append(spec.mask(f"the control database cannot be reached: {getattr(exc, 'message', None) or first_line(exc)}"))
    return FleetValidateReport(fleet=spec.name, path=str(spec.path), control=spec.masked_control_url,
                               batches=tuple(plan), targets=checks, warnings=tuple(warnings),
                               exit_code=ExitCode.OK if ok else ExitCode.USAGE)

