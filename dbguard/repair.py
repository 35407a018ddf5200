"""Undo what a half-applied revision left live (MySQL/MariaDB and SQLite keep DDL that ran before a
failure): the revision's ``downgrade()`` runs with every operation checked against the live schema
first. An operation whose work is already undone is skipped; one that cannot be checked stops the
repair with its name, because catching errors half-way through ``downgrade()`` would stop it early
and guessing would be worse.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from dbguard.errors import DbguardError, ExitCode


class RepairError(DbguardError):
    exit_code = ExitCode.RUN_FAILED


@dataclasses.dataclass
class RepairLog:
    applied: list[str] = dataclasses.field(default_factory=list)
    skipped: list[str] = dataclasses.field(default_factory=list)


def _describe(op: Any) -> str:
    name = type(op).__name__.removesuffix("Op")
    table = getattr(op, "table_name", None)
    subject = getattr(op, "column_name", None) or getattr(op, "index_name", None) or getattr(
        op, "constraint_name", None)
    if subject is None and hasattr(op, "column"):
        subject = op.column.name
    where = f"{table}.{subject}" if table and subject else (table or subject or "")
    return f"{name}({where})"


def _needed(op: Any, inspector: Any) -> bool | None:
    """Whether ``op`` still has work to do on the live schema; None when dbguard cannot tell."""
    from alembic.operations import ops

    schema = getattr(op, "schema", None)
    table = getattr(op, "table_name", None)
    exists = inspector.has_table(table, schema=schema) if table else False
    if isinstance(op, ops.DropTableOp):
        return exists
    if isinstance(op, ops.CreateTableOp):
        return not exists
    if isinstance(op, ops.DropColumnOp):
        return exists and op.column_name in {c["name"] for c in inspector.get_columns(table, schema=schema)}
    if isinstance(op, ops.AddColumnOp):
        return exists and op.column.name not in {c["name"] for c in inspector.get_columns(table, schema=schema)}
    if isinstance(op, ops.DropIndexOp):
        return exists and op.index_name in {i["name"] for i in inspector.get_indexes(table, schema=schema)}
    if isinstance(op, ops.CreateIndexOp):
        return exists and op.index_name not in {i["name"] for i in inspector.get_indexes(table, schema=schema)}
    if isinstance(op, ops.DropConstraintOp):
        if not exists:
            return False
        names = {fk["name"] for fk in inspector.get_foreign_keys(table, schema=schema)}
        names |= {u["name"] for u in inspector.get_unique_constraints(table, schema=schema)}
        with_checks = getattr(inspector, "get_check_constraints", None)
        if with_checks is not None:
            names |= {c["name"] for c in with_checks(table, schema=schema)}
        return op.constraint_name in names
    return None


def undo_partial(connection: Any, script: Any, revision: str,
                 on_statement: Callable[[str | None], None] | None = None) -> RepairLog:
    """Run ``revision``'s downgrade on ``connection`` op by op, each only where it is still needed."""
    from alembic.operations import Operations
    from alembic.runtime.migration import MigrationContext

    module = script.get_revision(revision).module
    context = MigrationContext.configure(connection=connection, opts={"as_sql": False})
    log = RepairLog()
    operations = Operations(context)
    original_invoke = operations.invoke

    def checked_invoke(op: Any) -> Any:
        needed = _needed(op, sa.inspect(connection))
        if needed is None:
            raise RepairError(
                f"cannot undo the half-applied revision {revision} safely: {_describe(op)} cannot be "
                f"checked against the live schema (already undone: {', '.join(log.applied) or 'nothing'}; "
                "finish by hand, then `dbguard resolve`)"
            )
        if not needed:
            log.skipped.append(_describe(op))
            return None
        result = original_invoke(op)
        log.applied.append(_describe(op))
        return result

    operations.invoke = checked_invoke  # type: ignore[method-assign]
    operations._install_proxy()
    try:
        module.downgrade()
    finally:
        operations._remove_proxy()
    if connection.in_transaction():
        connection.commit()
    return log
