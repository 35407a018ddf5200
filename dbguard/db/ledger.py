"""The ledger: dbguard's run and step tables in the target database, on dbguard's own connection.

Every write happens on an autocommit connection that is not the migration's, so a failure is
recorded even when the migration's transaction rolls back.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Connection

from dbguard.core.state import RunRecord, StepRecord

# MySQL's DATETIME keeps whole seconds unless told otherwise.
_TIMESTAMP = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


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
        sa.Column("started_at", _TIMESTAMP, nullable=False),
        sa.Column("finished_at", _TIMESTAMP),
        sa.Column("heartbeat_at", _TIMESTAMP),
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
    )
    steps = sa.Table(
        f"{prefix}steps",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.Integer, nullable=False, index=True),
        sa.Column("revision", sa.String(255), nullable=False),
        sa.Column("direction", sa.String(10), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("started_at", _TIMESTAMP, nullable=False),
        sa.Column("duration_ms", sa.Integer),
        sa.Column("checksum", sa.String(64)),
        sa.Column("attempts", sa.Integer, nullable=False, default=1),
        sa.Column("error", sa.Text),
    )
    return metadata, runs, steps


def _join(revisions: Iterable[str]) -> str:
    return " ".join(revisions)


def _split(value: str | None) -> tuple[str, ...]:
    return tuple(value.split()) if value else ()


class Ledger:
    def __init__(self, conn: Connection, prefix: str) -> None:
        self.conn = conn
        self.prefix = prefix
        self.metadata, self.runs, self.steps = ledger_tables(prefix)

    def exists(self) -> bool:
        return sa.inspect(self.conn).has_table(self.runs.name)

    def ensure_tables(self) -> None:
        """Create the tables on first use; call only while holding the run lock."""
        self.metadata.create_all(self.conn, checkfirst=True)

    # runs ---------------------------------------------------------------------------------

    def insert_run(self, **values: Any) -> int:
        values = {k: (_to_db(v) if isinstance(v, dt.datetime) else v) for k, v in values.items()}
        if "from_revisions" in values:
            values["from_revisions"] = _join(values["from_revisions"])
        result = self.conn.execute(self.runs.insert().values(**values))
        return int(result.inserted_primary_key[0])

    def update_run(self, run_id: int, **values: Any) -> None:
        values = {k: (_to_db(v) if isinstance(v, dt.datetime) else v) for k, v in values.items()}
        if "from_revisions" in values:
            values["from_revisions"] = _join(values["from_revisions"])
        self.conn.execute(self.runs.update().where(self.runs.c.id == run_id).values(**values))

    def recent_runs(self, limit: int | None = None, changing_only: bool = False) -> list[RunRecord]:
        query = sa.select(self.runs).order_by(self.runs.c.id.desc())
        if changing_only:
            query = query.where(self.runs.c.status.not_in(["refused", "busy"]))
        if limit is not None:
            query = query.limit(limit)
        return [self._run(row) for row in self.conn.execute(query).mappings()]

    def latest_changing_run(self) -> RunRecord | None:
        found = self.recent_runs(limit=1, changing_only=True)
        return found[0] if found else None

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
        )

    # steps --------------------------------------------------------------------------------

    def insert_step(self, **values: Any) -> int:
        values = {k: (_to_db(v) if isinstance(v, dt.datetime) else v) for k, v in values.items()}
        result = self.conn.execute(self.steps.insert().values(**values))
        return int(result.inserted_primary_key[0])

    def update_step(self, step_id: int, **values: Any) -> None:
        self.conn.execute(self.steps.update().where(self.steps.c.id == step_id).values(**values))

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
    inspector = sa.inspect(conn)
    if not inspector.has_table(version_table, schema=schema):
        return ()
    table = sa.table(version_table, sa.column("version_num"), schema=schema)
    return tuple(sorted(row[0] for row in conn.execute(sa.select(table.c.version_num))))
