"""Every private Alembic and SQLAlchemy name dbguard uses, each behind one function here that says
why no public API does the job. tests/test_internals.py runs each against the installed versions:
the lowest ones pyproject.toml allows (the floors job of .ci/run) and the newest.

Nothing else in dbguard may touch a private name of either library (tests/test_layering.py)."""

from __future__ import annotations

import re
import threading
import types
from collections.abc import Callable, Iterable
from pathlib import Path
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
    """SQLAlchemy's cache key of an expression (its statement's shape and bound values), or None.

    A project's own construct without ``inherit_cache`` (dagster's server default, prefect's
    ``GenerateUUID``) has none, and SQLAlchemy warns when asked: dbguard asks, the project never
    does (DDL is not cached), so the warning would be dbguard's noise."""
    import warnings

    from sqlalchemy.exc import SAWarning

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*will not make use of SQL compilation caching", category=SAWarning)
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


def created_on(constraint: Any, sa_dialect: Any) -> bool:
    """Whether ``create_all`` emits ``constraint`` on this engine by the rule SQLAlchemy attaches to
    it: the CHECK of a ``Boolean``/``Enum(create_constraint=True)`` is made only where the engine
    lacks the native type (``supports_native_boolean``, ``supports_native_enum`` and the type's
    ``native_enum``, or its variant's for this dialect). The DDL compiler calls the private rule with
    itself; no public call asks it."""
    rule = getattr(constraint, "_create_rule", None)
    if rule is None:
        return True
    return bool(rule(sa_dialect.ddl_compiler(sa_dialect, None)))


def ddl_name(name: str, sa_dialect: Any, index: bool) -> str:
    """A constraint's or index's name as ``create_all`` writes it on this engine: a naming
    convention's name longer than the engine allows is cut, its last characters a hash of the whole.
    IdentifierPreparer does it, quoting the result unless told by a keyword meant for Alembic."""
    preparer = sa_dialect.identifier_preparer
    render = preparer.truncate_and_render_index_name if index else preparer.truncate_and_render_constraint_name
    try:
        return str(render(name, _alembic_quote=False))
    except Exception:  # noqa: BLE001 - a given name too long for the engine: create_all fails on it anyway
        return str(name)


# --- Revision files read without importing them ------------------------------------------------------

_LITERAL_NAMES = ("revision", "down_revision", "branch_labels", "depends_on")
_defer_lock = threading.Lock()


class DeferredRevisionModule(types.ModuleType):
    """A revision file's module as far as Alembic's revision map needs it: its identifiers and
    docstring read from the source as literals. The file is imported on the first use of anything
    else (``upgrade``, ``downgrade``), or by :func:`import_revision_modules`."""

    def __init__(self, path: Path, literals: dict[str, Any], doc: str | None,
                 load: Callable[[], types.ModuleType]) -> None:
        self._dbguard_load: Callable[[], types.ModuleType] | None = load
        super().__init__(re.sub(r"\W", "_", path.name), doc)
        self.__dict__.update(literals)
        self.__file__ = str(path)

    def dbguard_import(self) -> None:
        load, self._dbguard_load = self._dbguard_load, None
        if load is not None:
            self.__dict__.update(load().__dict__)

    def __getattr__(self, name: str) -> Any:
        # Alembic asks for a source encoding that only Python 2 files had: not worth an import.
        if name.startswith("__") or name == "_alembic_source_encoding" or self._dbguard_load is None:
            raise AttributeError(name)
        if name in ("upgrade", "downgrade"):
            # Alembic takes the function when it plans a step (RevisionStep), long before it runs it.
            def migration_fn(*args: Any, **kw: Any) -> Any:
                self.dbguard_import()
                return getattr(self, name)(*args, **kw)

            return migration_fn
        self.dbguard_import()
        return getattr(self, name)


def _revision_literals(path: Path) -> tuple[dict[str, Any], str | None] | None:
    """``revision``, ``down_revision``, ``branch_labels``, ``depends_on`` and the docstring of a
    revision file, when each is assigned once at module level to a literal; None otherwise (the file
    is then imported as Alembic would)."""
    import ast

    try:
        tree = ast.parse(path.read_bytes(), filename=str(path))
    except (OSError, SyntaxError, ValueError):
        return None  # the import reports it as Alembic would
    found: dict[str, Any] = {}
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and any(alias.name == "*" for alias in node.names):
            return None
        targets: list[ast.expr] = []
        value: ast.expr | None = None
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign):
            targets, value = [node.target], node.value
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Import, ast.ImportFrom,
                               ast.Expr, ast.Pass)):
            continue
        else:
            # if/for/try/with at module level could assign an identifier in a way the source hides.
            names = {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
            if names & set(_LITERAL_NAMES):
                return None
            continue
        for target in targets:
            stored = {n.id for n in ast.walk(target) if isinstance(n, ast.Name)}
            for name in stored & set(_LITERAL_NAMES):
                if name in found or not isinstance(target, ast.Name) or value is None:
                    return None
                try:
                    found[name] = ast.literal_eval(value)
                except ValueError:
                    return None
    if not isinstance(found.get("revision"), str) or "down_revision" not in found:
        return None
    for name in ("branch_labels", "depends_on"):
        found.setdefault(name, None)
    return found, ast.get_docstring(tree, clean=False)


def defer_revision_imports(script: Any) -> None:
    """Give ``script`` a revision map whose scripts import their files only when a step runs them.

    Alembic imports every revision file to build its map; dbguard needs the map in its pre-flight,
    before env.py runs, and the imports would change what env.py first sees in ``sys.modules`` (the
    project's packages, imported by the revisions) and cost their import time in every command.
    The files Alembic lists (``ScriptDirectory._load_revisions``) are read as source instead, through
    ``alembic.util.load_python_file`` swapped for the map's load only; a file whose identifiers are
    not plain literals, or a sourceless one, is imported as Alembic would."""
    import alembic.util
    from alembic.script.revision import RevisionMap

    original = alembic.util.load_python_file
    deferred: list[DeferredRevisionModule] = []

    def load_python_file(dir_: Any, filename: Any) -> types.ModuleType:
        path = Path(dir_) / Path(filename).name

        def load() -> types.ModuleType:
            return original(dir_, filename)

        parsed = _revision_literals(path) if path.suffix == ".py" and path.is_file() else None
        if parsed is None:
            return load()
        module = DeferredRevisionModule(path, parsed[0], parsed[1], load)
        deferred.append(module)
        return module

    with _defer_lock:
        alembic.util.load_python_file = load_python_file  # type: ignore[assignment]
        try:
            scripts = list(script._load_revisions())
        finally:
            alembic.util.load_python_file = original  # type: ignore[assignment]
    script.revision_map = RevisionMap(lambda: iter(scripts))
    script.__dict__["_dbguard_deferred"] = deferred


def reread_version_locations(script: Any) -> None:
    """Build ``script``'s deferred revision map again from its ``version_locations`` as they are now
    (env.py may set them). Alembic memoizes the folders' paths (``_version_locations``,
    ``_singular_version_location``) on first use: forgotten first, so the new folders are read."""
    for memo in ("_version_locations", "_singular_version_location"):
        script.__dict__.pop(memo, None)
    defer_revision_imports(script)


def import_revision_modules(script: Any) -> None:
    """Import every revision file a deferred map has not imported yet, in the order Alembic's own map
    load would: where plain Alembic would have loaded its map (after env.py began), so that models
    that only revision files import are there, as under ``alembic check``."""
    for module in script.__dict__.get("_dbguard_deferred", ()):
        module.dbguard_import()


# --- Alembic's batch mode ---------------------------------------------------------------------------


def batch_recreates(batch_op: Any) -> bool:
    """Whether the end of a ``batch_alter_table`` block would recreate its table (copy it into a new
    one: SQLite for most operations, or ``recreate="always"``) for the operations queued so far,
    rather than emit plain ALTERs. Alembic decides at the flush, from its queue, in
    ``BatchOperationsImpl._should_recreate``; no public call asks it."""
    return bool(batch_op.impl._should_recreate())


def drop_batch_queue(batch_op: Any) -> None:
    """Empty what a ``batch_alter_table`` block queued, so that its end (the flush) runs nothing: the
    rollback's repair runs the same operations itself, each checked first. The queue is
    ``BatchOperationsImpl.batch``, a list Alembic documents nowhere."""
    batch_op.impl.batch.clear()
