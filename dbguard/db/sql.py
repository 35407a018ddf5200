"""Run a dialect's Statement on a connection."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, CursorResult

from dbguard.dialects import Statement


def run(conn: Connection, stmt: Statement | tuple[str, dict[str, Any]]) -> CursorResult:
    sql, params = stmt
    return conn.execute(sa.text(sql), params)
