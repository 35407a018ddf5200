"""The local kill audit file (no server): its lines, what is pending, the writer, the default place,
and copying into dbguard_kills once and only once (on a SQLite file, which has every table feature
the copy uses)."""

from __future__ import annotations

import datetime as dt
import json
import os
import stat
from pathlib import Path

import sqlalchemy as sa

from dbguard.core import audit_log
from dbguard.db import audit_file
from dbguard.db.ledger import KillLedger
from dbguard.masking import Masker
from dbguard.settings import load_settings

T = "mysql://deployer@db.internal:3306/app"
ROW = {"killed_at": "2026-12-01T10:00:00.123456+00:00", "database_name": "app", "killed_by_host": "ci-7",
       "killed_by_pid": 4242, "victim_session": "17", "action": "terminate", "outcome": "signalling",
       "command": "dbguard locks kill --roots", "reason": "incident 42"}


def test_lines_fold_into_records_and_only_uncopied_outcomes_are_pending():
    lines = [
        audit_log.intent_line("a", T, ROW),
        audit_log.intent_line("b", T, {**ROW, "victim_session": "18"}),
        audit_log.intent_line("c", "postgresql://x@h/other", ROW),
        audit_log.outcome_line("a", "terminate", "terminated"),
        audit_log.copied_line("a", "terminated", 7),
        audit_log.copied_line("b", "signalling", 8),  # copied while its signal was on its way
        audit_log.outcome_line("b", "terminate", "terminated"),
    ]
    records = {r.id: r for r in audit_log.fold(lines)}
    assert not records["a"].pending and records["a"].ledger_id == 7
    assert records["b"].pending and records["b"].ledger_row()["outcome"] == "terminated"
    assert [r.id for r in audit_log.pending(records.values(), T)] == ["b"]
    assert [r.id for r in audit_log.pending(records.values(), "postgresql://x@h/other")] == ["c"]


def test_torn_unknown_and_orphan_lines_are_skipped():
    lines = [{"type": "outcome", "id": "nobody", "outcome": "terminated"}, {"type": "copied", "id": 3},
             {"type": "future-kind", "id": "a"}, audit_log.intent_line("a", T, ROW), {"type": "intent", "id": "z"}]
    [record] = audit_log.fold(lines)
    assert (record.id, record.outcome, record.pending) == ("a", "signalling", True)


def test_the_writer_appends_durable_masked_lines_readable_after_a_torn_one(tmp_path: Path):
    path = tmp_path / "state" / "dbguard" / "kills.jsonl"
    writer = audit_file.AuditFile(path, Masker(["TopSecret9"]))
    record = audit_file.intend(writer, T, {**ROW, "command": "dbguard --url mysql://u:TopSecret9@h/app locks kill",
                                           "killed_at": dt.datetime(2026, 12, 1, 10, tzinfo=dt.timezone.utc)})
    with open(path, "a") as torn:  # a crash in the middle of a line
        torn.write('{"type": "outcome", "id": "')
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    text = path.read_text()
    assert "TopSecret9" not in text and "***" in text
    [found] = writer.records()
    assert found.id == record and found.row["killed_at"] == "2026-12-01T10:00:00+00:00"
    with open(path, "a") as fixed:
        fixed.write("\n")
    audit_file.complete(writer, record, "terminate", "terminated")
    [found] = writer.records()
    assert found.outcome == "terminated" and found.pending


def test_the_default_place_is_the_users_state_directory_and_the_setting_is_read_everywhere(tmp_path: Path):
    assert audit_file.default_path({"XDG_STATE_HOME": "/srv/state"}) == Path("/srv/state/dbguard/kills.jsonl")
    assert audit_file.default_path({"HOME": str(tmp_path)}).parts[-4:] == (".local", "state", "dbguard", "kills.jsonl")
    ini = tmp_path / "alembic.ini"
    ini.write_text("[alembic]\nscript_location = s\n[dbguard]\naudit_file = audit/kills.jsonl\n")
    settings = load_settings({"config_path": str(ini)}, environ={})
    assert audit_file.audit_path(settings.audit_file, settings.config_path) == tmp_path / "audit" / "kills.jsonl"
    from_env = load_settings({"config_path": str(ini)}, environ={"DBGUARD_AUDIT_FILE": "/var/x.jsonl"})
    assert audit_file.audit_path(from_env.audit_file, from_env.config_path) == Path("/var/x.jsonl")


def test_the_target_key_ignores_driver_and_password():
    a = sa.engine.make_url("mysql+pymysql://deployer:pw@db.internal:3306/app")
    b = sa.engine.make_url("mysql+mysqldb://deployer:other@db.internal:3306/app")
    assert audit_file.target_key(a) == audit_file.target_key(b) == T


class _NoWaits:
    """SQLite takes no session SETs and has no server-wide lock: nothing to set, nothing refused."""

    def write_probe_timeouts(self) -> list[str]:
        return []

    def session_timeouts(self, lock_timeout_ms: int, statement_timeout_ms: int) -> list[str]:
        return []

    def is_lock_timeout(self, exc: BaseException) -> bool:
        return False

    def is_read_only_error(self, exc: BaseException) -> bool:
        return False


def test_copying_writes_each_record_once_even_after_a_copy_died_before_noting_it(tmp_path: Path):
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'ledger.db'}", poolclass=sa.pool.NullPool)
    path = tmp_path / "kills.jsonl"
    writer = audit_file.AuditFile(path)
    first = audit_file.intend(writer, T, ROW)
    audit_file.complete(writer, first, "terminate", "terminated")
    second = audit_file.intend(writer, T, {**ROW, "victim_session": "18"})
    audit_file.intend(writer, "postgresql://x@h/other", ROW)
    with engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT")
        ledger = KillLedger(conn, "dbguard_")
        # A copier wrote the first record, then died before noting it in the file.
        ledger.record(**{**audit_log.fold([audit_log.intent_line("x", T, ROW)])[0].ledger_row(),
                         "killed_at": dt.datetime.fromisoformat(ROW["killed_at"])})

        def rows() -> list[tuple[str, str]]:
            return [(r.victim_session, r.outcome) for r in conn.execute(sa.select(ledger.table).order_by("id"))]

        result = audit_file.copy_pending(conn, _NoWaits(), ledger, writer, T, 5000)  # type: ignore[arg-type]
        assert (sorted(result.copied), result.pending, result.error) == (sorted([first, second]), 0, None)
        assert rows() == [("17", "terminated"), ("18", "signalling")]
        lines = path.read_text().splitlines()
        again = audit_file.copy_pending(conn, _NoWaits(), ledger, writer, T, 5000)  # type: ignore[arg-type]
        assert (again.copied, again.pending) == ({}, 0) and path.read_text().splitlines() == lines
        # The second one's outcome arrives later: its row is completed, not written again.
        audit_file.complete(writer, second, "terminate", "gone before it was terminated")
        audit_file.copy_pending(conn, _NoWaits(), ledger, writer, T, 5000)  # type: ignore[arg-type]
        assert rows() == [("17", "terminated"), ("18", "gone before it was terminated")]
    engine.dispose()
    copied = [json.loads(line) for line in path.read_text().splitlines() if '"copied"' in line]
    assert [c["id"] for c in copied] == [first, second, second]
