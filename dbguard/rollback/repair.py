"""Undo what a half-applied revision left live (MySQL/MariaDB and SQLite keep DDL that ran before a
failure): the revision's ``downgrade()`` runs with every operation checked against the live schema
first. An operation whose work is already undone is skipped; one that cannot be checked stops the
repair with its name, because catching errors half-way through ``downgrade()`` would stop it early
and guessing would be worse.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa

from dbguard.errors import DbguardError, ExitCode
from dbguard.migrations import internals


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


@contextlib.contextmanager
def _migration_context(config: Any, script: Any, connection: Any, version_table: str) -> Iterator[Any]:
    """A migration context on ``connection`` inside Alembic's EnvironmentContext, so a revision's
    code finds ``alembic.context`` as it does under ``alembic downgrade`` (``get_x_argument``,
    ``is_offline_mode``)."""
    from alembic.runtime.environment import EnvironmentContext

    with EnvironmentContext(config, script, as_sql=False) as environment:
        environment.configure(connection=connection, version_table=version_table)
        yield environment.get_context()


def undo_partial(connection: Any, config: Any, script: Any, revision: str, version_table: str,
                 log: RepairLog | None = None) -> RepairLog:
    """Run ``revision``'s downgrade on ``connection`` op by op, each only where it is still needed."""
    with _migration_context(config, script, connection, version_table) as context:
        return _checked_downgrade(context, connection, script, revision, log or RepairLog(),
                                  f"undo the half-applied revision {revision}")


def finish_downgrade(connection: Any, config: Any, script: Any, revision: str, version_table: str,
                     log: RepairLog | None = None) -> RepairLog:
    """Finish a downgrade of ``revision`` that stopped half-way (its DDL before the failure stayed,
    alembic_version still names it): the rest of its downgrade op by op, each only where still
    needed, then alembic_version moved below it, as the downgrade would have left it."""
    below = script.get_revision(revision).down_revision
    if isinstance(below, (tuple, list)):
        raise RepairError(f"cannot finish the half-done downgrade of the merge revision {revision} safely "
                          "(it has several parents); finish by hand, then `dbguard resolve`")
    with _migration_context(config, script, connection, version_table) as context:
        log = _checked_downgrade(context, connection, script, revision, log or RepairLog(),
                                 f"finish the half-done downgrade of {revision}")
        context.stamp(script, below or "base")
    if connection.in_transaction():
        connection.commit()
    return log


def _checked_downgrade(context: Any, connection: Any, script: Any, revision: str, log: RepairLog,
                       what: str) -> RepairLog:
    from alembic.operations import Operations

    module = script.get_revision(revision).module
    operations = Operations(context)
    original_invoke = operations.invoke

    # Its parameter named as Operations.invoke's, so that it is a valid stand-in for it.
    def checked_invoke(operation: Any) -> Any:
        needed = _needed(operation, sa.inspect(connection))
        if needed is None:
            raise RepairError(
                f"cannot {what} safely: {_describe(operation)} cannot be "
                f"checked against the live schema (already undone: {', '.join(log.applied) or 'nothing'}; "
                "finish by hand, then `dbguard resolve`)"
            )
        if not needed:
            log.skipped.append(_describe(operation))
            return None
        result = original_invoke(operation)
        log.applied.append(_describe(operation))
        return result

    # A deliberate patch of this one instance, which the revision's op.* proxy is bound to below;
    # mypy flags any assignment to a method.
    operations.invoke = checked_invoke  # type: ignore[method-assign]
    internals.bind_op_proxy(operations)
    try:
        module.downgrade()
    finally:
        internals.unbind_op_proxy(operations)
    if connection.in_transaction():
        connection.commit()
    return log
