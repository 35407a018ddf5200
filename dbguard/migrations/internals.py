"""Every private Alembic and SQLAlchemy name dbguard uses, each behind one function here that says
why no public API does the job. tests/test_internals.py runs each against the installed versions:
the lowest ones pyproject.toml allows (the floors job of .ci/run) and the newest.

Nothing else in dbguard may touch a private name of either library (tests/test_layering.py)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

# --- Alembic ----------------------------------------------------------------------------------------


def migration_steps(script: Any, direction: str, destination: str, heads: Iterable[str]) -> Iterable[Any]:
    """The steps ``alembic upgrade/downgrade destination`` takes from ``heads``, resolved exactly as
    ``alembic.command`` does (relative targets, branches). The command module builds them with these
    two methods inside the function it hands EnvironmentContext; no public call returns them."""
    if direction == "up":
        return script._upgrade_revs(destination, tuple(heads))  # type: ignore[no-any-return]
    return script._downgrade_revs(destination, tuple(heads))  # type: ignore[no-any-return]


def bind_op_proxy(operations: Any) -> None:
    """Point ``alembic.op`` at this Operations instance (whose ``invoke`` dbguard checks first).
    ``Operations.context()`` would make a new instance, without the check."""
    operations._install_proxy()


def unbind_op_proxy(operations: Any) -> None:
    """Undo :func:`bind_op_proxy`."""
    operations._remove_proxy()


def replace_config_attributes(config: Any, attributes: Any) -> None:
    """Swap ``Config.attributes`` for the duration of a run: Alembic memoizes it as a plain
    property with no setter."""
    config.__dict__["attributes"] = attributes


# --- SQLAlchemy -------------------------------------------------------------------------------------


def unnamed(name: Any) -> bool:
    """A constraint name SQLAlchemy leaves to the server: None, or its private "no name" marker."""
    from sqlalchemy.sql.base import _NONE_NAME

    return name is None or name is _NONE_NAME


def convention_name(constraint: Any, table: Any) -> Any:
    """The name the MetaData's naming convention gives ``constraint`` on ``table``, as ``create_all``
    would emit it; SQLAlchemy applies conventions only while compiling DDL."""
    from sqlalchemy.sql import naming

    return naming._constraint_name_for_table(constraint, table)


def cache_key(element: Any) -> Any:
    """SQLAlchemy's cache key of an expression (its statement's shape and bound values), or None."""
    return element._generate_cache_key()


def sequences(metadata: Any) -> Iterable[Any]:
    """Every Sequence of a MetaData, those not attached to a column's default included."""
    return metadata._sequences.values()  # type: ignore[no-any-return]


def ddl_if_dialects(item: Any) -> tuple[str, ...] | None:
    """The engines an ``Index``/constraint's ``.ddl_if(dialect=...)`` limits it to (None: every one);
    SQLAlchemy keeps the condition on a private attribute."""
    ddl_if = getattr(item, "_ddl_if", None)
    if ddl_if is None or ddl_if.dialect is None:
        return None
    return (ddl_if.dialect,) if isinstance(ddl_if.dialect, str) else tuple(ddl_if.dialect)
