"""The control database: the fleet ledger (runs, batches, per-target outcomes) and the fleet lock.

Tables ``dbguard_fleet_runs``, ``dbguard_fleet_batches`` and ``dbguard_fleet_targets``, written on
dbguard's own autocommit connection. The fleet lock is the single-target run lock (advisory lock,
GET_LOCK, a file lock beside a SQLite file) taken on the control database under a key of the
fleet's name, so the server frees it when the coordinator dies. No URL with a password and no
secret is ever written here: target URLs are stored masked, errors masked.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from dbguard.core.appname import application_name
from dbguard.core.fleet import BatchStatus, TargetStatus
from dbguard.core.state import NON_CHANGING_STATUSES, RunRecord
from dbguard.db import connect as dbconnect
from dbguard.db.ledger import TIMESTAMP, from_db_time, utcnow, written
from dbguard.db.runlock import FileRunLock, SqlRunLock, acquire
from dbguard.db.sql import inserted_id, run, transaction
from dbguard.db.waits import LOCK_RETRIES, retried
from dbguard.dialects import Dialect, file_run_locks_of, fleet_claims_of, for_sqlalchemy_dialect
from dbguard.errors import ConfigError
from dbguard.target import LEDGER_LOCK_TIMEOUT_MS, bound_lock_waits

PREFIX = "dbguard_fleet_"
def _to_db(value: Any) -> Any:
    """As the control database stores a value: through the ledger's writer (naive UTC, text masked),
    revisions joined."""
    if isinstance(value, tuple):
        value = " ".join(value)
    return written({"value": value})["value"]


def control_tables(prefix: str = PREFIX) -> tuple[sa.MetaData, sa.Table, sa.Table, sa.Table]:
    metadata = sa.MetaData()
    runs = sa.Table(
        f"{prefix}runs", metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("fleet", sa.String(100), nullable=False, index=True),
        sa.Column("intent", sa.String(20), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("revision", sa.String(255)),
        sa.Column("batches", sa.String(1000)),
        sa.Column("distributed", sa.Boolean, nullable=False, default=False),
        sa.Column("started_at", TIMESTAMP, nullable=False),
        sa.Column("finished_at", TIMESTAMP),
        sa.Column("heartbeat_at", TIMESTAMP),
        sa.Column("host", sa.String(255)),
        sa.Column("pid", sa.Integer),
        sa.Column("os_user", sa.String(255)),
        sa.Column("dbguard_version", sa.String(40)),
        sa.Column("forced", sa.Boolean, nullable=False, default=False),
        sa.Column("error", sa.Text),
        sa.Column("reason", sa.Text),
        sa.Column("failed_batch", sa.Integer),
        sa.Column("lock_session", sa.String(64)),
        sa.Column("resolved_by", sa.Integer),
        # A rollback or resolve: the fleet run it undoes.
        sa.Column("undoes", sa.Integer),
        sa.Column("fleet_file", sa.Text),
        sa.Column("command", sa.Text),
    )
    batches = sa.Table(
        f"{prefix}batches", metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.Integer, nullable=False, index=True),
        sa.Column("number", sa.Integer, nullable=False),
        sa.Column("size", sa.Integer, nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("opened_at", TIMESTAMP),
        sa.Column("finished_at", TIMESTAMP),
        sa.Column("verified_at", TIMESTAMP),
        sa.Column("error", sa.Text),
    )
    targets = sa.Table(
        f"{prefix}targets", metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.Integer, nullable=False, index=True),
        sa.Column("batch", sa.Integer, nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("target", sa.String(100), nullable=False),
        sa.Column("masked_url", sa.Text),
        sa.Column("weight", sa.Float, nullable=False, default=1.0),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("from_revisions", sa.String(1000)),
        sa.Column("to_revision", sa.String(255)),
        # The target's own ledger run (dbguard_runs.id in that database).
        sa.Column("target_run_id", sa.Integer),
        sa.Column("target_state", sa.String(20)),
        sa.Column("claimed_by", sa.String(64)),
        sa.Column("worker", sa.String(255)),
        sa.Column("claimed_at", TIMESTAMP),
        sa.Column("started_at", TIMESTAMP),
        sa.Column("finished_at", TIMESTAMP),
        sa.Column("verified_at", TIMESTAMP),
        sa.Column("error", sa.Text),
        sa.Column("message", sa.Text),
    )
    return metadata, runs, batches, targets


def run_record(row: Any) -> RunRecord:
    return RunRecord(id=row["id"], intent=row["intent"], status=row["status"], to_revision=row["revision"],
                     started_at=from_db_time(row["started_at"]), finished_at=from_db_time(row["finished_at"]),
                     heartbeat_at=from_db_time(row["heartbeat_at"]), host=row["host"], pid=row["pid"],
                     os_user=row["os_user"], dbguard_version=row["dbguard_version"], forced=bool(row["forced"]),
                     error=row["error"], reason=row["reason"], lock_session=row["lock_session"],
                     failed_step=None if row["failed_batch"] is None else f"batch {row['failed_batch']}")


def _plain(row: Any) -> dict[str, Any]:
    out = dict(row)
    for key, value in out.items():
        if key.endswith("_at"):
            out[key] = from_db_time(value)
    return out


# The control database's sessions, named as dbguard's (the targets' carry their command and run).
FLEET_APPLICATION = application_name("fleet")


class Control:
    """dbguard's autocommit connection to the control database, and the fleet ledger on it."""

    def __init__(self, url: str, secrets: Sequence[str] = ()) -> None:
        self.url = dbconnect.parse_url(url)
        if self.url.get_backend_name() == "sqlite" and self.url.database in (None, "", ":memory:"):
            raise ConfigError("the control database cannot be an in-memory SQLite database")
        self.secrets = list(secrets)
        self.engine = dbconnect.create_engine(self.url, application=FLEET_APPLICATION)
        self.conn = dbconnect.connect(self.engine)
        self.dialect: Dialect = for_sqlalchemy_dialect(self.conn.dialect)
        self.lock_retries = LOCK_RETRIES
        bound_lock_waits(self.conn, self.dialect, LEDGER_LOCK_TIMEOUT_MS)
        self.database = str(run(self.conn, self.dialect.current_database()).scalar() or "")
        sid = run(self.conn, self.dialect.session_id()).scalar()
        self.session_id = None if sid is None else str(sid)
        self.metadata, self.runs, self.batches, self.targets = control_tables()

    @property
    def masked_url(self) -> str:
        return dbconnect.masked(self.url)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.conn.close()
        self.engine.dispose()

    def __enter__(self) -> Control:  # noqa: PYI034
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def reopen(self) -> Control:
        """Another connection to the same control database (for a thread of its own)."""
        other = Control.__new__(Control)
        other.url, other.secrets, other.dialect, other.database = self.url, self.secrets, self.dialect, self.database
        other.engine = dbconnect.create_engine(self.url, application=FLEET_APPLICATION)
        other.conn = dbconnect.connect(other.engine)
        other.lock_retries = self.lock_retries
        bound_lock_waits(other.conn, self.dialect, LEDGER_LOCK_TIMEOUT_MS)
        sid = run(other.conn, self.dialect.session_id()).scalar()
        other.session_id = None if sid is None else str(sid)
        other.metadata, other.runs, other.batches, other.targets = self.metadata, self.runs, self.batches, self.targets
        return other

    # tables and the fleet lock ------------------------------------------------------------------

    @retried("the fleet's control database")
    def exists(self) -> bool:
        return sa.inspect(self.conn).has_table(self.runs.name)

    def _tables_exist(self) -> bool:
        inspector = sa.inspect(self.conn)
        return all(inspector.has_table(t.name) for t in self.metadata.sorted_tables)

    def ensure_tables(self, wait_s: float = 60.0) -> None:
        """Create the tables on first use, one dbguard process at a time.

        A coordinator and its workers start together on a fresh control database: concurrent
        CREATE TABLEs of one name fail in every session but one (PostgreSQL: duplicate key in
        pg_type), and the loser finds the winner's tables only half made. So creation is
        serialised under a lock of its own (the run-lock machinery, another key than any fleet's)."""
        if self._tables_exist():
            return
        lock = self._lock("fleet-tables.")
        if not acquire(lock, wait_s):
            raise ConfigError(f"the control database {self.masked_url}: another session has been creating the "
                              f"fleet tables for over {wait_s:g} s (lock {lock.holder()})")
        try:
            self.metadata.create_all(self.conn, checkfirst=True)
        except sa.exc.DBAPIError:
            # An older dbguard creating them without the lock: fine if they exist now.
            if not self._tables_exist():
                raise
        finally:
            lock.release()

    def lock(self, fleet: str) -> SqlRunLock | FileRunLock:
        """The fleet lock: the run-lock machinery of a single target, keyed by the fleet's name."""
        return self._lock(f"fleet.{fleet}.")

    def _lock(self, prefix: str) -> SqlRunLock | FileRunLock:
        if self.dialect.run_lock_kind == "file":
            return FileRunLock(file_run_locks_of(self.dialect).run_lock_path(self.database, prefix))
        return SqlRunLock(self.conn, self.dialect, self.database, prefix)

    # runs -----------------------------------------------------------------------------------------

    @retried("the fleet's control database")
    def insert_run(self, **values: Any) -> int:
        values = {k: _to_db(v) for k, v in values.items()}
        return inserted_id(self.conn.execute(self.runs.insert().values(**values)))

    @retried("the fleet's control database")
    def update_run(self, run_id: int, **values: Any) -> None:
        values = {k: _to_db(v) for k, v in values.items()}
        self.conn.execute(self.runs.update().where(self.runs.c.id == run_id).values(**values))

    @retried("the fleet's control database")
    def get_run(self, run_id: int) -> dict[str, Any] | None:
        row = self.conn.execute(sa.select(self.runs).where(self.runs.c.id == run_id)).mappings().first()
        return _plain(row) if row else None

    @retried("the fleet's control database")
    def latest_changing_run(self, fleet: str, intent: str | None = None) -> dict[str, Any] | None:
        if not self.exists():
            return None
        skip = [s.value for s in NON_CHANGING_STATUSES]
        query = sa.select(self.runs).where(self.runs.c.fleet == fleet, self.runs.c.status.not_in(skip))
        if intent is not None:
            query = query.where(self.runs.c.intent == intent)
        row = self.conn.execute(query.order_by(self.runs.c.id.desc()).limit(1)).mappings().first()
        return _plain(row) if row else None

    @retried("the fleet's control database")
    def changing_runs(self, fleet: str, intent: str, limit: int = 50) -> list[dict[str, Any]]:
        """The fleet's runs of one intent that tried to change something, newest first."""
        if not self.exists():
            return []
        skip = [s.value for s in NON_CHANGING_STATUSES]
        query = (sa.select(self.runs).where(self.runs.c.fleet == fleet, self.runs.c.intent == intent,
                                            self.runs.c.status.not_in(skip))
                 .order_by(self.runs.c.id.desc()).limit(limit))
        return [_plain(r) for r in self.conn.execute(query).mappings()]

    @retried("the fleet's control database")
    def running_run(self, fleet: str | None = None) -> dict[str, Any] | None:
        """The newest fleet run that says running (of one fleet, or any)."""
        query = sa.select(self.runs).where(self.runs.c.status == "running")
        if fleet is not None:
            query = query.where(self.runs.c.fleet == fleet)
        row = self.conn.execute(query.order_by(self.runs.c.id.desc()).limit(1)).mappings().first()
        return _plain(row) if row else None

    # batches and targets --------------------------------------------------------------------------

    @retried("the fleet's control database")
    def insert_batch(self, **values: Any) -> int:
        values = {k: _to_db(v) for k, v in values.items()}
        return inserted_id(self.conn.execute(self.batches.insert().values(**values)))

    @retried("the fleet's control database")
    def update_batch(self, run_id: int, number: int, **values: Any) -> None:
        values = {k: _to_db(v) for k, v in values.items()}
        b = self.batches
        self.conn.execute(b.update().where(b.c.run_id == run_id, b.c.number == number).values(**values))

    @retried("the fleet's control database")
    def batches_of(self, run_id: int) -> list[dict[str, Any]]:
        b = self.batches
        rows = self.conn.execute(sa.select(b).where(b.c.run_id == run_id).order_by(b.c.number)).mappings()
        return [_plain(r) for r in rows]

    @retried("the fleet's control database")
    def skip_unstarted(self, run_id: int) -> None:
        """Every target still pending and every batch not yet done of a run that ends: skipped."""
        t, b = self.targets, self.batches
        self.conn.execute(t.update().where(t.c.run_id == run_id, t.c.status == TargetStatus.PENDING.value)
                          .values(status=_to_db(TargetStatus.SKIPPED.value)))
        self.conn.execute(b.update().where(b.c.run_id == run_id,
                                           b.c.status.in_([BatchStatus.PLANNED.value, BatchStatus.OPEN.value]))
                          .values(status=_to_db(BatchStatus.SKIPPED.value)))

    @retried("the fleet's control database")
    def skip_pending_of_batch(self, run_id: int, number: int) -> None:
        t = self.targets
        self.conn.execute(t.update().where(t.c.run_id == run_id, t.c.batch == number,
                                           t.c.status == TargetStatus.PENDING.value)
                          .values(status=_to_db(TargetStatus.SKIPPED.value)))

    @retried("the fleet's control database")
    def mark_in_flight_unknown(self, run_id: int, error: str) -> None:
        """Targets a dead run left claimed or running: their fate is unknown."""
        t = self.targets
        self.conn.execute(t.update().where(t.c.run_id == run_id, t.c.status.in_(["running", "claimed"]))
                          .values(status=_to_db(TargetStatus.UNKNOWN.value), error=_to_db(error)))

    @retried("the fleet's control database")
    def insert_targets(self, rows: Sequence[dict[str, Any]]) -> None:
        if rows:
            self.conn.execute(self.targets.insert(), [{k: _to_db(v) for k, v in r.items()} for r in rows])

    @retried("the fleet's control database")
    def update_target(self, run_id: int, name: str, only_if: Sequence[str] | None = None, **values: Any) -> int:
        t = self.targets
        query = t.update().where(t.c.run_id == run_id, t.c.target == name)
        if only_if is not None:
            query = query.where(t.c.status.in_(list(only_if)))
        return int(self.conn.execute(query.values(**{k: _to_db(v) for k, v in values.items()})).rowcount or 0)

    @retried("the fleet's control database")
    def targets_of(self, run_id: int, batch: int | None = None) -> list[dict[str, Any]]:
        t = self.targets
        query = sa.select(t).where(t.c.run_id == run_id)
        if batch is not None:
            query = query.where(t.c.batch == batch)
        return [_plain(r) for r in self.conn.execute(query.order_by(t.c.batch, t.c.position)).mappings()]

    # scale-out: claims (engines with the fleet_claims capability) -------------------------------

    def require_claims(self) -> None:
        if not self.dialect.fleet_claims:
            raise ConfigError(f"a distributed rollout needs a PostgreSQL control database (SKIP LOCKED claims "
                              f"and advisory locks); {self.masked_url} is {self.dialect.name}")

    def claim(self, fleet: str, worker: str, run_id: int | None = None) -> dict[str, Any] | None:
        """Take the oldest pending target of an open batch (of fleet run ``run_id``, if given): row
        locked with SKIP LOCKED in a short transaction, marked claimed with this session's id, and
        the claim lock taken on this (session-scoped) connection before the claim becomes visible."""
        t, claims = self.targets, fleet_claims_of(self.dialect)
        # The row lock and the UPDATE must be on this session: it holds the claim lock for the work.
        with transaction(self.conn):
            row = run(self.conn, claims.fleet_claim(t.name, self.batches.name, self.runs.name,
                                                    fleet, run_id)).mappings().first()
            if row is None:
                return None
            run(self.conn, claims.claim_lock(int(row["id"])))
            self.conn.execute(t.update().where(t.c.id == row["id"]).values(
                status="claimed", claimed_by=self.session_id, worker=worker, claimed_at=_to_db(utcnow())))
        claimed = self.conn.execute(sa.select(t).where(t.c.id == row["id"])).mappings().first()
        return _plain(claimed)

    def release_claim(self, claim_id: int) -> None:
        run(self.conn, fleet_claims_of(self.dialect).claim_unlock(claim_id))

    @retried("the fleet's control database")
    def mark_dead_claims(self, run_id: int) -> list[str]:
        """Claims whose holder session is gone (claim lock free while the row says claimed/running):
        marked unknown, never re-queued. Returns the targets so marked."""
        from dbguard.core.fleet import TargetStatus, dead_claims

        t = self.targets
        live = [TargetStatus.CLAIMED.value, TargetStatus.RUNNING.value]
        rows = self.conn.execute(sa.select(t.c.id, t.c.status).where(t.c.run_id == run_id,
                                                                      t.c.status.in_(live))).all()
        if not rows:
            return []
        # The lock table is read after the rows: a claim finished in between is terminal by the
        # time the guarded UPDATE below looks again, so only a dead holder's row matches.
        held = {int(r[0]) for r in run(self.conn, fleet_claims_of(self.dialect).claim_locks_held())}
        dead = dead_claims({int(r[0]): r[1] for r in rows}, held)
        if not dead:
            return []
        marked = []
        for claim_id in dead:
            result = self.conn.execute(t.update().where(t.c.id == claim_id, t.c.status.in_(live)).values(
                status=TargetStatus.UNKNOWN.value, finished_at=_to_db(utcnow()),
                error="its worker died mid-target (the claim's session is gone); never re-queued: "
                      "its own circuit breaker decides what happens next"))
            if result.rowcount:
                name = self.conn.execute(sa.select(t.c.target).where(t.c.id == claim_id)).scalar()
                marked.append(str(name))
        return marked
