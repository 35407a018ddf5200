"""The ledger: dbguard's run and step tables in the target database, on dbguard's own connection.

Every write happens on an autocommit connection that is not the migration's, so a failure is
recorded even when the migration's transaction rolls back.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from dbguard.core.state import RunRecord, RunStatus, StepRecord
from dbguard.db.sql import inserted_id, run, transaction
from dbguard.db.waits import LOCK_RETRIES, retried, with_lock_retries
from dbguard.dialects import Dialect


def _engine_type(base: type, kind: str, why: str) -> sa.types.TypeDecorator:
    """A column type the engine's dbguard dialect may refine (``kind``: long_text or timestamp; where
    it does not, ``base``).

    Chosen when a table is first used, so no engine's SQLAlchemy dialect is imported for another
    engine's run."""

    class EngineType(sa.types.TypeDecorator):
        impl = base
        cache_ok = True

        def load_dialect_impl(self, sa_dialect: Any) -> Any:
            from dbguard.dialects import for_sqlalchemy_dialect

            ours = for_sqlalchemy_dialect(sa_dialect)
            refined = ours.ledger_long_text_type() if kind == "long_text" else ours.ledger_timestamp_type()
            return sa_dialect.type_descriptor(refined if refined is not None else base())

    EngineType.__doc__ = why
    EngineType.__name__ = EngineType.__qualname__ = f"Ledger{base.__name__}"
    return EngineType()


# MySQL's DATETIME keeps whole seconds unless told otherwise.
TIMESTAMP = _engine_type(sa.DateTime, "timestamp", "a timestamp with sub-second precision")


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _to_db(value: dt.datetime | None) -> dt.datetime | None:
    # Stored naive in UTC: the one representation all three engines keep alike.
    return None if value is None else value.astimezone(dt.timezone.utc).replace(tzinfo=None)


def _from_db(value: dt.datetime | None) -> dt.datetime | None:
    if value is None:
        return None
    if isinstance(value, str):  # SQLite hands text back through raw SQL
        value = dt.datetime.fromisoformat(value)
    return value.replace(tzinfo=dt.timezone.utc) if value.tzinfo is None else value


def from_db_time(value: dt.datetime | str | None) -> dt.datetime | None:
    """A timestamp read from any engine (naive UTC, or text from SQLite) as an aware UTC datetime."""
    return _from_db(value)  # type: ignore[arg-type]


def _create_if_missing(conn: Connection, table: sa.Table) -> None:
    """Create a table written outside the run lock; two dbguard processes may race to create it,
    which is fine as long as it exists afterwards."""
    try:
        table.create(conn, checkfirst=True)
    except sa.exc.DBAPIError:
        if not sa.inspect(conn).has_table(table.name):
            raise


def ledger_tables(prefix: str) -> tuple[sa.MetaData, sa.Table, sa.Table]:
    metadata = sa.MetaData()
    runs = sa.Table(
        f"{prefix}runs",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("intent", sa.String(20), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("from_revisions", sa.String(1000)),
        sa.Column("to_revision", sa.String(255)),
        sa.Column("started_at", TIMESTAMP, nullable=False),
        sa.Column("finished_at", TIMESTAMP),
        sa.Column("heartbeat_at", TIMESTAMP),
        sa.Column("host", sa.String(255)),
        sa.Column("pid", sa.Integer),
        sa.Column("os_user", sa.String(255)),
        sa.Column("db_user", sa.String(255)),
        sa.Column("dbguard_version", sa.String(40)),
        sa.Column("forced", sa.Boolean, nullable=False, default=False),
        sa.Column("error_class", sa.String(255)),
        sa.Column("error", sa.Text),
        sa.Column("failed_step", sa.String(255)),
        sa.Column("reason", sa.Text),
        sa.Column("lock_session", sa.String(64)),
        sa.Column("resolved_by", sa.Integer),
        sa.Column("command", sa.Text),
        # What alembic_version said when the run ended, how the end state was checked against the
        # reference schema, and the differences from it known before the run (JSON list).
        sa.Column("revisions_after", sa.String(1000)),
        sa.Column("schema_check", sa.String(20)),
        sa.Column("known_drift", sa.Text),
        # The server sessions the run migrated on (JSON list of {id, identity}).
        sa.Column("sessions", sa.Text),
        # The newest run row when this one was written: a run deleted later leaves its successor
        # pointing at nothing (see core/integrity.py).
        sa.Column("previous_run_id", sa.Integer),
    )
    steps = sa.Table(
        f"{prefix}steps",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.Integer, nullable=False, index=True),
        sa.Column("revision", sa.String(255), nullable=False),
        sa.Column("direction", sa.String(10), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("started_at", TIMESTAMP, nullable=False),
        sa.Column("duration_ms", sa.Integer),
        sa.Column("checksum", sa.String(64)),
        sa.Column("attempts", sa.Integer, nullable=False, default=1),
        sa.Column("error", sa.Text),
        # What the watchdog saw (the queue behind the step when it cancelled it), as JSON.
        sa.Column("notes", sa.Text),
    )
    return metadata, runs, steps


def _join(revisions: Iterable[str]) -> str:
    return " ".join(revisions)


def _split(value: str | None) -> tuple[str, ...]:
    return tuple(value.split()) if value else ()


def written(values: dict[str, Any]) -> dict[str, Any]:
    """Values as every ledger table stores them: timestamps as naive UTC, text masked (the secrets
    the command knows, and the patterns): the one writer no column bypasses."""
    from dbguard.masking import active

    masker = active()
    return {k: _to_db(v) if isinstance(v, dt.datetime) else masker.stored(v) if isinstance(v, str) else v
            for k, v in values.items()}


def _run_values(values: dict[str, Any]) -> dict[str, Any]:
    out = dict(values)
    for key in ("from_revisions", "revisions_after"):
        if out.get(key) is not None:
            out[key] = _join(out[key])
    if out.get("known_drift") is not None:
        out["known_drift"] = json.dumps(sorted(out["known_drift"])) if out["known_drift"] else None
    if out.get("sessions") is not None:
        out["sessions"] = json.dumps([{"id": i, "identity": identity} for i, identity in out["sessions"]])
    return written(out)


class Ledger:
    def __init__(self, conn: Connection, prefix: str) -> None:
        self.conn = conn
        self.prefix = prefix
        self.lock_retries = LOCK_RETRIES
        self.metadata, self.runs, self.steps = ledger_tables(prefix)

    @retried("dbguard's ledger")
    def exists(self) -> bool:
        return sa.inspect(self.conn).has_table(self.runs.name)

    @retried("dbguard's ledger")
    def ensure_tables(self) -> None:
        """Create the tables on first use, and add columns a newer dbguard records; call only while
        holding the run lock. The common case, every table with every column, costs one query."""
        if self.complete():
            return
        self.metadata.create_all(self.conn, checkfirst=True)
        for table in self.metadata.sorted_tables:
            try:
                self.conn.execute(sa.select(*table.columns).where(sa.false()))
                continue
            except sa.exc.DBAPIError:
                if self.conn.in_transaction():
                    self.conn.rollback()
            present = {c["name"] for c in sa.inspect(self.conn).get_columns(table.name)}
            for column in table.columns:
                if column.name not in present:
                    ddl = sa.schema.CreateColumn(column).compile(dialect=self.conn.dialect)
                    self.conn.exec_driver_sql(
                        f"ALTER TABLE {self.conn.dialect.identifier_preparer.format_table(table)} ADD COLUMN {ddl}"
                    )

    def complete(self) -> bool:
        """Whether every ledger table exists with every column: one statement that reads no row."""
        tables = [t.alias(f"t{i}") for i, t in enumerate(self.metadata.sorted_tables)]
        query = sa.select(*[c for t in tables for c in t.columns]).select_from(tables[0])
        for table in tables[1:]:
            query = query.join(table, sa.true())
        try:
            self.conn.execute(query.where(sa.false()))
            return True
        except sa.exc.DBAPIError:
            if self.conn.in_transaction():
                self.conn.rollback()
            return False

    # runs ---------------------------------------------------------------------------------

    @retried("dbguard's ledger")
    def insert_run(self, **values: Any) -> int:
        # Two statements: MySQL refuses an INSERT whose VALUES read the same table. Two rows written at
        # once may name the same predecessor, which is still there: no false alarm.
        previous = self.conn.execute(sa.select(sa.func.max(self.runs.c.id))).scalar()
        result = self.conn.execute(self.runs.insert().values(**_run_values(values), previous_run_id=previous))
        return inserted_id(result)

    @retried("dbguard's ledger")
    def problem(self) -> str | None:
        """What is missing from the ledger (its tables, deleted runs), or None: core/integrity.py."""
        from dbguard.core.integrity import ledger_problem

        names = set(sa.inspect(self.conn).get_table_names())
        present = {suffix for suffix in ("runs", "steps", "schemas", "kills") if f"{self.prefix}{suffix}" in names}
        links: list[tuple[int, int | None]] = []
        acknowledged = None
        if "runs" in present:
            runs = self.runs.c
            try:
                links = [(row[0], row[1]) for row in self.conn.execute(sa.select(runs.id, runs.previous_run_id))]
            except sa.exc.DBAPIError:  # a ledger from before the column: nothing to follow yet
                if self.conn.in_transaction():
                    self.conn.rollback()
            acknowledged = self.conn.execute(
                sa.select(sa.func.max(runs.id)).where(runs.intent == "resolve", runs.status == "succeeded")).scalar()
        return ledger_problem(self.prefix, present, links, acknowledged)

    @retried("dbguard's ledger")
    def update_run(self, run_id: int, **values: Any) -> None:
        self.conn.execute(self.runs.update().where(self.runs.c.id == run_id).values(**_run_values(values)))

    @retried("dbguard's ledger")
    def recent_runs(self, limit: int | None = None, changing_only: bool = False) -> list[RunRecord]:
        query = sa.select(self.runs).order_by(self.runs.c.id.desc())
        if changing_only:
            query = query.where(self.runs.c.status.not_in(["refused", "busy"]))
        if limit is not None:
            query = query.limit(limit)
        return [self._run(row) for row in self.conn.execute(query).mappings()]

    @retried("dbguard's ledger")
    def running_runs(self) -> list[RunRecord]:
        """Runs whose row says running: in progress, or left so by a process that died."""
        query = sa.select(self.runs).where(self.runs.c.status == RunStatus.RUNNING.value).order_by(self.runs.c.id)
        return [self._run(row) for row in self.conn.execute(query).mappings()]

    def latest_changing_run(self) -> RunRecord | None:
        found = self.recent_runs(limit=1, changing_only=True)
        return found[0] if found else None

    @retried("dbguard's ledger")
    def get_run(self, run_id: int) -> RunRecord | None:
        row = self.conn.execute(sa.select(self.runs).where(self.runs.c.id == run_id)).mappings().first()
        return self._run(row) if row else None

    @staticmethod
    def _run(row: Any) -> RunRecord:
        return RunRecord(
            id=row["id"],
            intent=row["intent"],
            status=row["status"],
            from_revisions=_split(row["from_revisions"]),
            to_revision=row["to_revision"],
            started_at=_from_db(row["started_at"]),
            finished_at=_from_db(row["finished_at"]),
            heartbeat_at=_from_db(row["heartbeat_at"]),
            host=row["host"],
            pid=row["pid"],
            os_user=row["os_user"],
            db_user=row["db_user"],
            dbguard_version=row["dbguard_version"],
            forced=bool(row["forced"]),
            error=row["error"],
            failed_step=row["failed_step"],
            reason=row["reason"],
            lock_session=row["lock_session"],
            resolved_by=row["resolved_by"],
            revisions_after=None if row["revisions_after"] is None else _split(row["revisions_after"]),
            schema_check=row["schema_check"],
            known_drift=tuple(json.loads(row["known_drift"])) if row["known_drift"] else (),
            sessions=tuple((str(s["id"]), str(s["identity"])) for s in json.loads(row["sessions"]))
            if row["sessions"] else (),
        )

    # steps --------------------------------------------------------------------------------

    @retried("dbguard's ledger")
    def insert_step(self, **values: Any) -> int:
        result = self.conn.execute(self.steps.insert().values(**written(values)))
        return inserted_id(result)

    @retried("dbguard's ledger")
    def update_step(self, step_id: int, **values: Any) -> None:
        self.conn.execute(self.steps.update().where(self.steps.c.id == step_id).values(**written(values)))

    @retried("dbguard's ledger")
    def close_running_steps(self, run_ids: Sequence[int],
                            error: str = "its run ended without finishing it (the process died, or was stopped "
                                         "and taken over)") -> None:
        """Steps of closed runs that still say running: failed, so no step row stays running forever."""
        if run_ids:
            self.conn.execute(self.steps.update().where(self.steps.c.run_id.in_(list(run_ids)),
                                                        self.steps.c.status == "running")
                              .values(status="failed", error=sa.func.coalesce(self.steps.c.error, error)))

    @retried("dbguard's ledger")
    def steps_of(self, run_ids: Sequence[int]) -> dict[int, list[StepRecord]]:
        found: dict[int, list[StepRecord]] = {run_id: [] for run_id in run_ids}
        if not run_ids:
            return found
        query = sa.select(self.steps).where(self.steps.c.run_id.in_(list(run_ids))).order_by(self.steps.c.id)
        for row in self.conn.execute(query).mappings():
            found[row["run_id"]].append(
                StepRecord(
                    run_id=row["run_id"],
                    revision=row["revision"],
                    direction=row["direction"],
                    status=row["status"],
                    started_at=_from_db(row["started_at"]),
                    duration_ms=row["duration_ms"],
                    checksum=row["checksum"],
                    error=row["error"],
                    attempts=row["attempts"] or 1,
                )
            )
        return found


def read_version_heads(conn: Connection, version_table: str, schema: str | None = None) -> tuple[str, ...]:
    """The revisions in alembic_version, read on dbguard's connection; empty when the table is absent."""

    def read() -> tuple[str, ...]:
        if not sa.inspect(conn).has_table(version_table, schema=schema):
            return ()
        table = sa.table(version_table, sa.column("version_num"), schema=schema)
        return tuple(sorted(row[0] for row in conn.execute(sa.select(table.c.version_num))))

    return with_lock_retries(conn, read, f"reading {version_table}")


def missing_privileges(conn: Connection, dialect: Dialect, user: str | None, database: str, tables: Sequence[str],
                       complete: bool = True) -> tuple[list[str], str] | None:
    """What ``user`` lacks to create (if absent) and write dbguard's ``tables``, and the grants that
    give it; None when nothing is missing, or where the server does not say (SQLite's file rights).
    ``complete``: the existing tables have every column this dbguard writes (else adding them needs
    the owner)."""
    query = dialect.ledger_privileges(tables)
    if query is None or not user:
        return None
    rows = run(conn, query).all()
    missing, grants = dialect.missing_ledger_privileges(rows, user, database, complete)
    return (missing, grants) if missing else None


# kills ------------------------------------------------------------------------------------------


def kills_table(prefix: str, metadata: sa.MetaData | None = None) -> sa.Table:
    """``<prefix>kills``: one row per session dbguard is about to end, written before its signal
    (outcome ``signalling``) and completed after the attempt."""
    return sa.Table(
        f"{prefix}kills",
        metadata if metadata is not None else sa.MetaData(),
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("killed_at", TIMESTAMP, nullable=False),
        sa.Column("database_name", sa.String(255)),
        sa.Column("run_id", sa.Integer),
        sa.Column("killed_by_db_user", sa.String(255)),
        sa.Column("killed_by_os_user", sa.String(255)),
        sa.Column("killed_by_host", sa.String(255)),
        sa.Column("killed_by_pid", sa.Integer),
        sa.Column("command", sa.Text),
        sa.Column("victim_session", sa.String(64), nullable=False),
        sa.Column("victim_user", sa.String(255)),
        sa.Column("victim_application", sa.String(255)),
        sa.Column("victim_client", sa.String(255)),
        sa.Column("victim_state", sa.String(64)),
        sa.Column("victim_query", sa.Text),
        sa.Column("victim_xact_age_s", sa.Float),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("outcome", sa.String(255), nullable=False),
        sa.Column("reason", sa.Text),
    )


# The outcomes of an audit row whose session (or its statement) the server confirmed ended.
ENDED_OUTCOMES = ("terminated", "cancelled")


class KillLedger:
    """The audit of ended sessions, on dbguard's own autocommit connection; the table is made on first use."""

    def __init__(self, conn: Connection, prefix: str) -> None:
        self.conn = conn
        self.table = kills_table(prefix)
        self.lock_retries = LOCK_RETRIES
        self._ready = False

    @retried("dbguard's kill audit")
    def ensure_table(self) -> None:
        if self._ready:
            return
        _create_if_missing(self.conn, self.table)
        self._ready = True

    @retried("dbguard's kill audit")
    def record(self, **values: Any) -> int:
        self.ensure_table()
        result = self.conn.execute(self.table.insert().values(**written(values)))
        return inserted_id(result)

    @retried("dbguard's kill audit")
    def update(self, row_id: int, **values: Any) -> None:
        self.conn.execute(self.table.update().where(self.table.c.id == row_id).values(**written(values)))

    @retried("dbguard's kill audit")
    def find(self, killed_at: dt.datetime, host: str | None, pid: int | None, victim_session: str) -> int | None:
        """The row of one kill, by what names it (when, by which process on which host, whom): a
        record copied from the local audit file is found again instead of written twice."""
        t = self.table
        query = sa.select(t.c.id).where(t.c.killed_at == _to_db(killed_at), t.c.victim_session == victim_session,
                                        t.c.killed_by_host == host if host is not None else t.c.killed_by_host.is_(None),
                                        t.c.killed_by_pid == pid if pid is not None else t.c.killed_by_pid.is_(None))
        row_id = self.conn.execute(query.order_by(t.c.id).limit(1)).scalar()
        return None if row_id is None else int(row_id)

    def exists(self) -> bool:
        return sa.inspect(self.conn).has_table(self.table.name)

    @retried("dbguard's kill audit")
    def ended_counts(self) -> dict[str, int]:
        """How many sessions the audit says were ended, by outcome: ``terminated`` (the session is
        gone) and ``cancelled`` (its statement was); none recorded when the table was never made."""
        counts = dict.fromkeys(ENDED_OUTCOMES, 0)
        if not self.exists():
            return counts
        t = self.table
        query = sa.select(t.c.outcome, sa.func.count()).where(t.c.outcome.in_(ENDED_OUTCOMES)).group_by(t.c.outcome)
        counts.update({str(outcome): int(n) for outcome, n in self.conn.execute(query)})
        return counts

    def may_write(self, is_privilege_error: Callable[[BaseException], bool]) -> bool:
        """Whether this user may insert and update records: both tried in a transaction that is
        rolled back (so table-level grants count as the server counts them)."""
        probe = {"killed_at": utcnow(), "victim_session": "-", "action": "probe",
                 "outcome": "privilege probe, rolled back"}
        try:
            with transaction(self.conn, commit=False):
                row_id = inserted_id(self.conn.execute(self.table.insert().values(**written(probe))))
                self.conn.execute(self.table.update().where(self.table.c.id == row_id).values(outcome=probe["outcome"]))
        except sa.exc.DBAPIError as exc:
            if is_privilege_error(exc):
                return False
            raise
        return True


# schemas ----------------------------------------------------------------------------------------

# MySQL's TEXT stops at 64 KiB; a whole schema needs more.
_LONG_TEXT = _engine_type(sa.Text, "long_text", "text that holds a whole schema")


def schemas_table(prefix: str, metadata: sa.MetaData | None = None) -> sa.Table:
    """``<prefix>schemas``: the schema read from the catalog after a successful run, keyed by revision."""
    return sa.Table(
        f"{prefix}schemas",
        metadata if metadata is not None else sa.MetaData(),
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("revisions", sa.String(500), nullable=False, index=True),
        sa.Column("run_id", sa.Integer),
        sa.Column("captured_at", TIMESTAMP, nullable=False),
        sa.Column("schema_hash", sa.String(64), nullable=False),
        sa.Column("schema_json", _LONG_TEXT, nullable=False),
        # What the post-flight found when it compared this schema with the expected one (JSON list).
        sa.Column("drift_json", _LONG_TEXT),
    )


class SchemaStore:
    """Stored schemas, on dbguard's own autocommit connection; the table is made on first use."""

    def __init__(self, conn: Connection, prefix: str) -> None:
        self.conn = conn
        self.table = schemas_table(prefix)
        self.lock_retries = LOCK_RETRIES
        self._exists: bool | None = None

    @retried("dbguard's stored schemas")
    def exists(self) -> bool:
        if self._exists is None:
            self._exists = sa.inspect(self.conn).has_table(self.table.name)
        return self._exists

    @retried("dbguard's stored schemas")
    def ensure_table(self) -> None:
        if self.exists():
            return
        _create_if_missing(self.conn, self.table)
        self._exists = True

    @retried("dbguard's stored schemas")
    def latest(self, revisions: Iterable[str]) -> tuple[int, str] | None:
        """(id, hash) of the newest schema stored for exactly these revisions."""
        if not self.exists():
            return None
        t = self.table
        key = _join(sorted(revisions)) or "base"
        query = (sa.select(t.c.id, t.c.schema_hash).where(t.c.revisions == key)
                 .order_by(t.c.id.desc()).limit(1))
        row = self.conn.execute(query).first()
        return (int(row[0]), str(row[1])) if row else None

    @retried("dbguard's stored schemas")
    def schema_text(self, row_id: int) -> str:
        t = self.table
        return str(self.conn.execute(sa.select(t.c.schema_json).where(t.c.id == row_id)).scalar_one())

    @retried("dbguard's stored schemas")
    def store(self, revisions: Iterable[str], schema_hash: str, schema_text: str, run_id: int | None,
              drift_text: str | None = None) -> int:
        self.ensure_table()
        result = self.conn.execute(self.table.insert().values(
            revisions=_join(sorted(revisions)) or "base", run_id=run_id, captured_at=_to_db(utcnow()),
            schema_hash=schema_hash, schema_json=schema_text, drift_json=drift_text,
        ))
        return inserted_id(result)


def applied_checksums(conn: Connection, prefix: str) -> dict[str, str]:
    """The checksum each revision's file had when its latest successful upgrade step ran."""
    _, _, steps = ledger_tables(prefix)
    query = (sa.select(steps.c.revision, steps.c.checksum)
             .where(steps.c.direction == "up", steps.c.status == "succeeded", steps.c.checksum.is_not(None))
             .order_by(steps.c.id))
    return with_lock_retries(conn, lambda: {row[0]: row[1] for row in conn.execute(query)}, "dbguard's ledger")
