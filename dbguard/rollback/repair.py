"""Complete what a half-done revision left (MySQL/MariaDB and SQLite keep DDL that ran before a
failure): the revision's ``downgrade()`` (or, to take back a failed downgrade, its ``upgrade()``) runs
with every operation checked against the live schema first, those of ``batch_alter_table`` blocks
included. An operation whose work is already done is skipped; one that cannot be checked stops the
repair with its name, because catching errors half-way through ``downgrade()`` would stop it early
and guessing would be worse.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
from collections.abc import Callable, Iterator
from typing import Any

import sqlalchemy as sa

from dbguard.db.connect import first_line
from dbguard.errors import DbguardError, ExitCode
from dbguard.migrations import internals


class RepairError(DbguardError):
    exit_code = ExitCode.RUN_FAILED


@dataclasses.dataclass
class RepairLog:
    applied: list[str] = dataclasses.field(default_factory=list)
    skipped: list[str] = dataclasses.field(default_factory=list)


def _table_of(op: Any) -> tuple[str | None, str | None]:
    """(table, schema) an operation works on; a foreign key names them as its source."""
    if hasattr(op, "source_table"):
        return op.source_table, (getattr(op, "kw", None) or {}).get("source_schema")
    return getattr(op, "table_name", None), getattr(op, "schema", None)


def _describe(op: Any) -> str:
    name = type(op).__name__.removesuffix("Op")
    table = _table_of(op)[0]
    subject = getattr(op, "column_name", None) or getattr(op, "index_name", None) or getattr(
        op, "constraint_name", None)
    if subject is None and hasattr(op, "column"):
        subject = op.column.name
    if subject is None and hasattr(op, "sqltext"):  # which of a revision's statements, in a line
        text = " ".join(str(op.sqltext).split())
        subject = text if len(text) <= 60 else text[:57] + "..."
    where = f"{table}.{subject}" if table and subject else (table or subject or "")
    return f"{name}({where})"


def _needed(op: Any, inspector: Any) -> bool | None:
    """Whether ``op`` still has work to do on the live schema; None when dbguard cannot tell."""
    from alembic.operations import ops

    table, schema = _table_of(op)
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
    # By name only: an unnamed constraint (the server's or a naming convention's to name) cannot be told apart.
    named = isinstance(op, (ops.DropConstraintOp, ops.CreateForeignKeyOp, ops.CreateUniqueConstraintOp,
                            ops.CreateCheckConstraintOp)) and isinstance(op.constraint_name, str)
    if named:
        if not exists:
            return False
        names = {fk["name"] for fk in inspector.get_foreign_keys(table, schema=schema)}
        names |= {u["name"] for u in inspector.get_unique_constraints(table, schema=schema)}
        with_checks = getattr(inspector, "get_check_constraints", None)
        if with_checks is not None:
            names |= {c["name"] for c in with_checks(table, schema=schema)}
        present = op.constraint_name in names
        return present if isinstance(op, ops.DropConstraintOp) else not present
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
        return _checked_run(context, connection, script.get_revision(revision).module.downgrade,
                            log or RepairLog(), f"undo the half-applied revision {revision}")


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
        log = _checked_run(context, connection, script.get_revision(revision).module.downgrade,
                           log or RepairLog(), f"finish the half-done downgrade of {revision}")
        context.stamp(script, below or "base")
    if connection.in_transaction():
        connection.commit()
    return log


def redo_upgrade(connection: Any, config: Any, script: Any, revision: str, version_table: str,
                 log: RepairLog | None = None) -> RepairLog:
    """Take back a downgrade of ``revision`` that stopped half-way, to ``revision`` whole (where the
    rollback's target has it): its upgrade op by op, each only where the failed downgrade undid it.
    alembic_version still names it, as the downgrade left it, and stays."""
    with _migration_context(config, script, connection, version_table) as context:
        return _checked_run(context, connection, script.get_revision(revision).module.upgrade,
                            log or RepairLog(), *_redo_words(revision))


def _redo_words(revision: str) -> tuple[str, str]:
    """(what the repair does, what to do by hand instead) for a failed downgrade of ``revision``."""
    by_hand = (f"re-apply the rest of {revision}'s upgrade by hand, then `dbguard resolve --reason TEXT`, "
               f"which checks the schema against the one stored for {revision}")
    return f"re-apply what the failed downgrade of {revision} undid", by_hand


def _repair_words(repair: str, revision: str) -> tuple[str, str, str]:
    """(the migration function it runs, what the repair does, what to do by hand instead)."""
    if repair == "redo":
        return ("upgrade", *_redo_words(revision))
    if repair == "finish":
        return "downgrade", f"finish the half-done downgrade of {revision}", _BY_HAND
    return "downgrade", f"undo the half-applied revision {revision}", _BY_HAND


def unclear_operation(config: Any, script: Any, revision: str, dialect_name: str, version_table: str,
                      repair: str = "redo") -> str | None:
    """Why ``revision`` cannot be repaired op by op (``repair``: "redo" re-runs its upgrade, "undo" and
    "finish" its downgrade), found before anything runs: the first operation that cannot be checked
    against the live schema (or a batch that would recreate its table), or the revision's code failing
    without a database; None when every one can be. The migration runs in Alembic's offline mode with
    operations recorded, never executed: a revision that reads or writes through ``op.get_bind()`` has
    no connection there, and is refused as well, since what it does is not an operation dbguard can
    check. Found only half-way through, such an operation would stop a repair that has already
    applied what came before it: airflow's downgrade of a half-applied upgrade added the temporary
    column of a copy its upgrade never reached, then stopped at the copy's UPDATE."""
    from alembic.runtime.environment import EnvironmentContext

    function, what, by_hand = _repair_words(repair, revision)
    with EnvironmentContext(config, script, as_sql=True) as environment:
        environment.configure(dialect_name=dialect_name, output_buffer=io.StringIO(), version_table=version_table)
        try:
            _checked_run(environment.get_context(), None, getattr(script.get_revision(revision).module, function),
                         RepairLog(), what, by_hand)
        except RepairError as exc:
            return exc.message
        except Exception as exc:  # noqa: BLE001 - the revision's own code: whatever it raises is the reason
            return (f"cannot {what} safely: its {function}() does not run without a database "
                    f"({type(exc).__name__}: {first_line(exc)}), so its operations cannot be checked "
                    f"one by one; {by_hand}")
    return None


_BY_HAND = "finish by hand, then `dbguard resolve`"


def _checkable(op: Any) -> bool:
    """Whether dbguard can tell at all if ``op`` has work left: by its kind and name, not by what exists."""
    return _needed(op, _NoTables()) is not None


def _refusal(what: str, operation: Any, log: RepairLog, by_hand: str) -> RepairError:
    return RepairError(
        f"cannot {what} safely: {_describe(operation)} cannot be "
        f"checked against the live schema (done so far: {', '.join(log.applied) or 'nothing'}; {by_hand})"
    )


def _checked_run(context: Any, connection: Any, migration: Callable[[], None], log: RepairLog,
                 what: str, by_hand: str = _BY_HAND) -> RepairLog:
    """Run a revision's ``migration`` (its module's upgrade or downgrade) on ``context`` with every
    operation checked first. Without a ``connection`` (offline), operations are only checked for
    whether they can be checked: none runs."""
    from alembic.operations import Operations

    operations = Operations(context)
    original_invoke = operations.invoke
    original_batch = operations.batch_alter_table

    def check(operation: Any) -> bool:
        """Whether ``operation`` is to run; raises when it cannot be checked."""
        if connection is None:
            if not _checkable(operation):
                raise _refusal(what, operation, log, by_hand)
            return False
        needed = _needed(operation, sa.inspect(connection))
        if needed is None:
            raise _refusal(what, operation, log, by_hand)
        if not needed:
            log.skipped.append(_describe(operation))
        return needed

    # Its parameter named as Operations.invoke's, so that it is a valid stand-in for it.
    def checked_invoke(operation: Any) -> Any:
        if not check(operation):
            return None
        result = original_invoke(operation)
        log.applied.append(_describe(operation))
        return result

    # Operations in a `with op.batch_alter_table(...) as batch_op:` block go through the BatchOperations
    # object Alembic makes for the block, which queues them and runs them (flush) at the block's end.
    # The block's operations are queued as Alembic would (its argument checks and its decision to
    # recreate the table see them), and at the end, instead of the flush, each is checked and run on
    # the checked Operations, in order: the plain ALTERs the flush emits when it does not recreate.
    @contextlib.contextmanager
    def checked_batch_alter_table(table_name: str, *args: Any, **kw: Any) -> Iterator[Any]:
        with original_batch(table_name, *args, **kw) as batch_op:
            queued: list[Any] = []
            queue = batch_op.invoke

            def collect(operation: Any) -> Any:
                # Refused here when it cannot be checked: before anything of the block runs, and before
                # Alembic runs it at once (batch_op.execute does not wait for the flush).
                if not _checkable(operation):
                    raise _refusal(what, operation, log, by_hand)
                queued.append(operation)
                return queue(operation)

            batch_op.invoke = collect  # type: ignore[method-assign]
            yield batch_op
            if internals.batch_recreates(batch_op):
                # Copy-and-move (SQLite, or recreate="always"): one new table for the whole block,
                # nothing an operation-by-operation check could vouch for.
                raise RepairError(
                    f"cannot {what} safely: batch_alter_table({table_name}) would recreate the table "
                    f"({context.dialect.name}, recreate={batch_op.impl.recreate!r}), which cannot be checked "
                    f"operation by operation (done so far: {', '.join(log.applied) or 'nothing'}; {by_hand})")
            internals.drop_batch_queue(batch_op)
            for operation in queued:
                checked_invoke(operation)

    # A deliberate patch of this one instance, which the revision's op.* proxy is bound to below;
    # mypy flags any assignment to a method.
    operations.invoke = checked_invoke  # type: ignore[method-assign]
    operations.batch_alter_table = checked_batch_alter_table  # type: ignore[method-assign]
    internals.bind_op_proxy(operations)
    try:
        migration()
    finally:
        internals.unbind_op_proxy(operations)
    if connection is not None and connection.in_transaction():
        connection.commit()
    return log


class _NoTables:
    """An inspector of an empty database: whether an operation can be checked at all does not depend
    on what exists."""

    def has_table(self, *_args: Any, **_kw: Any) -> bool:
        return False
