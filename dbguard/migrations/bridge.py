"""The hook into an unmodified env.py, and the revision arithmetic dbguard needs from Alembic.

Alembic has no run hooks, so ``EnvironmentContext.configure`` is wrapped once at class level and
does nothing unless ``config.attributes["dbguard"]`` holds a :class:`RunHooks`. Inside it dbguard
forces one transaction per migration, sets the session timeouts on env.py's connection, checks
that the connection reaches the target dbguard locked, and wraps the command's work function to
learn which step is running. Subclassing EnvironmentContext would break the ``alembic.context``
proxy that env.py imports.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import datetime as dt
import hashlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import sqlalchemy as sa
from alembic.runtime.environment import EnvironmentContext
from alembic.script import ScriptDirectory

from dbguard.migrations import internals

_DDL_KEYWORDS = ("CREATE", "ALTER", "DROP", "RENAME", "TRUNCATE", "COMMENT")


@dataclasses.dataclass
class TrackedStep:
    revision: str
    direction: str
    path: str | None
    started_at: dt.datetime
    started_monotonic: float
    completed: bool = False
    committed_work: bool = False
    duration_ms: int | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.revision, self.direction)


class StepTracker:
    """Follows the command's work function: the step yielded and never resumed is the failing one."""

    def __init__(
        self,
        on_start: Callable[[TrackedStep], None] = lambda step: None,
        on_finish: Callable[[TrackedStep], None] = lambda step: None,
    ) -> None:
        self.steps: list[TrackedStep] = []
        self.current: TrackedStep | None = None
        self.heads_seen: tuple[str, ...] | None = None
        self.transactional_ddl = True
        self._on_start = on_start
        self._on_finish = on_finish
        # Told the statement the migration is about to run, and None once it returns.
        self.on_statement: Callable[[str | None], None] = lambda statement: None
        # ``plan --observe`` only (dbguard.db.observe.LockObserver): told each statement of a revision
        # before and after it runs; None costs a normal run one attribute check a statement.
        self.observer: Any = None

    def wrap(self, fn: Callable[..., Iterable[Any]]) -> Callable[..., Iterator[Any]]:
        def tracked(heads: Any, ctx: Any) -> Iterator[Any]:
            if self.heads_seen is None:
                self.heads_seen = tuple(sorted(heads or ()))
            self.transactional_ddl = bool(ctx.impl.transactional_ddl)
            self._watch(ctx)
            for step in fn(heads, ctx):
                self._started(step)
                yield step
                self._finished()

        tracked.__dbguard_wrapped__ = True  # type: ignore[attr-defined]
        return tracked

    def _started(self, step: Any) -> None:
        script = getattr(step, "revision", None)
        if script is None or not hasattr(step, "is_upgrade"):
            self.current = None  # a stamp step: no revision code runs
            return
        self.current = TrackedStep(
            revision=script.revision,
            direction="up" if step.is_upgrade else "down",
            path=getattr(script, "path", None),
            started_at=dt.datetime.now(dt.timezone.utc),
            started_monotonic=time.monotonic(),
        )
        self.steps.append(self.current)
        self._on_start(self.current)

    def _finished(self) -> None:
        step, self.current = self.current, None
        if step is not None:
            step.completed = True
            step.duration_ms = int((time.monotonic() - step.started_monotonic) * 1000)
            self._on_finish(step)

    def _watch(self, ctx: Any) -> None:
        """Notice DDL that is live the moment it returns: non-transactional DDL, or an autocommit block."""
        conn = ctx.connection
        if conn is None or getattr(conn, "_dbguard_watched", False):
            return
        conn._dbguard_watched = True

        def before_execute(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
            self.on_statement(statement)
            if self.observer is not None and self.current is not None:
                self.observer.before(conn, statement, self.current.revision)

        def after_execute(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
            self.on_statement(None)
            step = self.current
            if self.observer is not None and step is not None:
                self.observer.after(conn, statement, step.revision)
            if step is None or not statement.lstrip().upper().startswith(_DDL_KEYWORDS):
                return
            autocommit = conn.get_execution_options().get("isolation_level") == "AUTOCOMMIT"
            if autocommit or not self.transactional_ddl:
                step.committed_work = True

        sa.event.listen(conn, "before_cursor_execute", before_execute)
        sa.event.listen(conn, "after_cursor_execute", after_execute)


@dataclasses.dataclass
class RunHooks:
    """What a guarded run asks of env.py's context."""

    tracker: StepTracker
    # Session SETs for env.py's connection: lock and statement timeouts.
    session_statements: list[str]
    # Raises when env.py's connection does not reach the target dbguard locked.
    verify_connection: Callable[[Any], None]
    # Told env.py's connection once it is ready (the watchdog needs its session id).
    on_connection: Callable[[Any], None] = lambda connection: None
    # The version table dbguard reads (setting version_table) and the schema it reads it in (its own
    # connection's): env.py must keep Alembic's there, or each side would see another revision. None:
    # not checked.
    version_table: tuple[str, str | None] | None = None
    # (env.py's target_metadata, its include hooks) as the run's first configure() got them, None
    # until then: the post-flight compares the schema with them instead of running env.py again.
    seen_metadata: tuple[Any, ...] | None = None


_hook_lock = threading.Lock()
_hook_users = 0
_original_configure: Callable[..., Any] | None = None


def _configure(self: EnvironmentContext, *args: Any, **kw: Any) -> Any:
    """EnvironmentContext.configure while a guarded run is under way: a context with dbguard's hooks
    gets its connection prepared and its steps tracked; any other context is left as it is."""
    hooks = self.config.attributes.get("dbguard")
    connection = kw.get("connection", args[0] if args else None)
    if isinstance(hooks, RunHooks) and ("upgrade_token" in kw or "downgrade_token" in kw):
        from dbguard.errors import ConfigError

        # Alembic's multidb template: one env.py run migrates several databases, each its own context.
        raise ConfigError("env.py migrates several databases in one run (upgrade_token/downgrade_token, Alembic's "
                          "multidb template); dbguard guards one database per run")
    if isinstance(hooks, RunHooks) and connection is not None and not self.is_offline_mode():
        _prepare_connection(connection, hooks, kw)
        kw["transaction_per_migration"] = True
        fn = self.context_opts.get("fn")
        if fn is not None and not getattr(fn, "__dbguard_wrapped__", False):
            self.context_opts["fn"] = hooks.tracker.wrap(fn)
    assert _original_configure is not None
    configured = _original_configure(self, *args, **kw)
    if isinstance(hooks, RunHooks) and hooks.seen_metadata is None and not self.is_offline_mode():
        from dbguard.drift.env_filters import EnvFilters

        hooks.seen_metadata = (self.context_opts.get("target_metadata"), EnvFilters.of(self.context_opts))
    return configured


@contextlib.contextmanager
def configure_hook() -> Iterator[None]:
    """env.py calls ``context.configure`` itself: Alembic offers no other place to hand dbguard its
    connection. The method is wrapped while a run needs it (nested and concurrent runs share one
    wrapper) and Alembic's own is back when the last one ends."""
    global _hook_users, _original_configure
    with _hook_lock:
        if _hook_users == 0:
            _original_configure = EnvironmentContext.configure
            EnvironmentContext.configure = _configure  # type: ignore[method-assign]
        _hook_users += 1
    try:
        yield
    finally:
        with _hook_lock:
            _hook_users -= 1
            if _hook_users == 0 and _original_configure is not None:
                EnvironmentContext.configure = _original_configure  # type: ignore[method-assign]
                _original_configure = None


def _same_version_table(kw: dict[str, Any], connection: Any, expected: tuple[str, str | None]) -> None:
    """Refuse, before anything runs, an env.py that keeps Alembic's version table where dbguard does
    not read it (``version_table_schema``, as arize-phoenix passes PHOENIX_SQL_DATABASE_SCHEMA;
    another ``version_table``): Alembic would find the database at one revision and dbguard at
    another, and the run's end check would fail a run that did what Alembic meant."""
    from dbguard.db.sql import run
    from dbguard.dialects import for_sqlalchemy_dialect
    from dbguard.errors import ConfigError

    table = kw.get("version_table") or "alembic_version"
    schema = kw.get("version_table_schema") or None
    if schema is None:
        # Unqualified, Alembic finds it in the schema env.py's connection is in now (its search_path,
        # which env.py may have SET).
        schema = run(connection, for_sqlalchemy_dialect(connection.dialect).current_schema()).scalar()
    own_table, own_schema = expected
    if table == own_table and (schema is None or own_schema is None or schema == own_schema):
        return
    hint = f"; set dbguard's version_table = {table}" if table != own_table else ""
    if schema is not None and own_schema is not None and schema != own_schema:
        hint += (f"; dbguard reads its connection's schema {own_schema}: put its connection in schema {schema} "
                 f"(on PostgreSQL its search_path, e.g. PGOPTIONS='-c search_path={schema}')")
    raise ConfigError(f"env.py keeps Alembic's version table in {schema}.{table} and dbguard reads "
                      f"{own_schema}.{own_table}{hint}; nothing was run")


def _prepare_connection(connection: Any, hooks: RunHooks, kw: dict[str, Any]) -> None:
    from dbguard.db.sql import run_statements

    was_in_transaction = connection.in_transaction()
    hooks.verify_connection(connection)
    if hooks.version_table is not None:
        _same_version_table(kw, connection, hooks.version_table)
    run_statements(connection, hooks.session_statements)
    # A SET autobegins a transaction that Alembic would take as external and never commit:
    # the upgrade would "succeed" and leave nothing behind.
    hooks.on_connection(connection)
    if not was_in_transaction and connection.in_transaction():
        connection.commit()


def run_migrations(script: ScriptDirectory, config: Any, direction: str, destination: str,
                   tracker: StepTracker) -> None:
    """``alembic upgrade/downgrade destination``, online, on the already loaded script directory.

    The same as ``alembic.command.upgrade``/``downgrade`` minus a second parse of every revision
    file, with the work function tracked from the start.
    """
    def steps(heads: Any, context: Any) -> Any:
        internals.import_revision_modules(script)
        return internals.migration_steps(script, direction, destination, heads)

    with EnvironmentContext(config, script, fn=tracker.wrap(steps), as_sql=False,
                            starting_rev=None, destination_rev=destination):
        script.run_env()


def read_env_version_locations(config: Any, script: ScriptDirectory) -> list[str] | None:
    """The version folders env.py sets on its script directory (``context.script.version_locations``),
    read by running env.py with a work function that runs nothing: Alembic builds its revision map
    after env.py began, so such an env.py migrates the revisions of the folders it chose, not those of
    alembic.ini. Offline first (as ``alembic upgrade --sql`` runs it: no connection, so ``--sql`` and
    ``plan --offline`` still touch no database), online where env.py's offline branch fails. Raises
    ConfigError (one line) when env.py fails both ways before it could say."""
    from dbguard.db.connect import first_line
    from dbguard.errors import ConfigError, DbguardError

    def nothing(rev: Any, context: Any) -> list[Any]:
        return []

    class Sink:
        def write(self, text: str) -> int:
            return len(text)

        def flush(self) -> None:
            pass

    saved_buffer = config.output_buffer
    logger = logging.getLogger("alembic")
    quiet = _Quiet()
    logger.addFilter(quiet)
    config.output_buffer = Sink()
    try:
        with EnvironmentContext(config, script, fn=nothing, as_sql=True, dont_mutate=True):
            script.run_env()
    except DbguardError:
        raise
    except Exception:  # noqa: BLE001 - an env.py without an offline branch: online below
        offline_failed = True
    else:
        offline_failed = False
    finally:
        config.output_buffer = saved_buffer
        logger.removeFilter(quiet)
    if offline_failed:
        try:
            with EnvironmentContext(config, script, fn=nothing, dont_mutate=True):
                script.run_env()
        except DbguardError:
            raise
        except Exception as exc:  # noqa: BLE001 - env.py is user code: one line, exit 2
            raise ConfigError(f"env.py sets the script's version_locations itself and failed before dbguard could "
                              f"read them: {type(getattr(exc, 'orig', None) or exc).__name__}: "
                              f"{first_line(exc)}") from None
    locations = script.version_locations
    return None if locations is None else [str(location) for location in locations]


# Revision arithmetic ------------------------------------------------------------------------


def _down_revisions(script: ScriptDirectory, revision: str) -> tuple[str, ...]:
    down = script.get_revision(revision).down_revision
    if down is None:
        return ()
    return (down,) if isinstance(down, str) else tuple(down)


def applied_set(script: ScriptDirectory, heads: Iterable[str]) -> set[str]:
    """Every revision that is applied when the version table holds ``heads``."""
    seen: set[str] = set()
    stack = list(heads)
    while stack:
        revision = stack.pop()
        if revision in seen:
            continue
        seen.add(revision)
        stack.extend(_down_revisions(script, revision))
    return seen


@dataclasses.dataclass(frozen=True)
class PlannedStep:
    revision: str
    direction: str
    path: str | None
    doc: str | None


def plan_steps(script: ScriptDirectory, intent_direction: str, destination: str,
               heads: tuple[str, ...]) -> tuple[list[PlannedStep], tuple[str, ...]]:
    """The steps Alembic will run from ``heads`` to ``destination`` and the heads it will leave.

    Uses the same resolution as ``alembic upgrade``/``downgrade`` so relative targets (+1, -1,
    branch@head) mean what they mean there; raises Alembic's errors for unknown revisions.
    """
    raw = internals.migration_steps(script, intent_direction, destination, heads)
    result = set(heads)
    planned = []
    for step in raw:
        result.difference_update(step.from_revisions_no_deps)
        result.update(step.to_revisions_no_deps)
        planned.append(PlannedStep(
            revision=step.revision.revision,
            direction="up" if step.is_upgrade else "down",
            path=step.revision.path,
            doc=step.revision.doc,
        ))
    return planned, tuple(sorted(result))


def checksum(path: str | None) -> str | None:
    if not path:
        return None
    try:
        with open(path, "rb") as handle:
            return hashlib.sha256(handle.read()).hexdigest()
    except OSError:
        return None


# Offline SQL per revision ---------------------------------------------------------------------

_OFFLINE_CAVEATS = (
    ("get_bind(", "uses op.get_bind(): what it reads or writes through the connection is not in the offline SQL"),
    ("is_offline_mode(", "branches on context.is_offline_mode(): the offline SQL may differ from the real run"),
    ("batch_alter_table(", "uses batch mode: on SQLite the real run copies the table, the offline SQL may differ"),
)


@dataclasses.dataclass
class RenderedRevision:
    """The exact SQL Alembic's offline mode writes for one revision, one entry per write."""

    revision: str
    doc: str | None
    path: str | None
    statements: list[str] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)
    error: str | None = None


class _SafeStep:
    """A revision step whose migration function records its error instead of ending the render,
    so one revision that needs a live connection does not hide the SQL of the others."""

    def __init__(self, step: Any, record: RenderedRevision) -> None:
        self._step, self._record = step, record

    def __getattr__(self, name: str) -> Any:
        return getattr(self._step, name)

    @property
    def migration_fn(self) -> Callable[..., None]:
        fn = self._step.migration_fn

        def safe(**kw: Any) -> None:
            try:
                fn(**kw)
            except SystemExit as exc:
                # A revision that calls sys.exit() must not end dbguard while it only renders the
                # plan: the real run meets it again and records it.
                self._record.error = f"the migration called sys.exit({exc.code!r})"
            except Exception as exc:  # noqa: BLE001 - reported in the plan, never raised
                line = (str(exc).strip().splitlines() or [""])[0][:300]
                self._record.error = f"{type(exc).__name__}: {line}"

        return safe


class _Quiet(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return False


# Offline SQL shared by the targets of a fleet rollout (None: every call renders). The rendering is
# the same for every target that uses the same scripts, config file, -x arguments and engine and
# starts at the same revisions, so a fleet renders each revision range once, not once per target.
OFFLINE_CACHE: dict[tuple[Any, ...], list[RenderedRevision]] | None = None


def offline_cache_key(script: ScriptDirectory, config: Any, start: tuple[str, ...], destination: str) -> tuple[Any, ...]:
    url = config.get_main_option("sqlalchemy.url") or ""
    engine = url.split("://", 1)[0]
    x_args = tuple(getattr(config.cmd_opts, "x", None) or ())
    return (str(script.dir), str(config.config_file_name), config.config_ini_section, x_args, engine,
            tuple(sorted(start)), destination)


def offline_sql(script: ScriptDirectory, config: Any, start: tuple[str, ...], destination: str) -> list[RenderedRevision]:
    """``alembic upgrade START:DESTINATION --sql`` split per revision, on the loaded script directory.

    Alembic writes one statement per ``output_buffer.write()``; the step wrapper says which
    revision each write belongs to. Nothing connects to a database.
    """
    cache, key = OFFLINE_CACHE, None
    if cache is not None:
        key = offline_cache_key(script, config, start, destination)
        if key in cache:
            return copy.deepcopy(cache[key])
    rendered: list[RenderedRevision] = []
    current: list[RenderedRevision | None] = [None]

    class Buffer:
        def write(self, text: str) -> int:
            if current[0] is not None:
                current[0].statements.append(text)
            return len(text)

        def flush(self) -> None:
            pass

    def steps(heads: Any, context: Any) -> Iterator[Any]:
        internals.import_revision_modules(script)
        for step in internals.migration_steps(script, "up", destination, heads):
            script_rev = step.revision
            record = RenderedRevision(revision=script_rev.revision, doc=script_rev.doc, path=script_rev.path,
                                      notes=_caveats(script_rev.path))
            rendered.append(record)
            current[0] = record
            yield _SafeStep(step, record)
            current[0] = None

    saved_buffer = config.output_buffer
    quiet = _Quiet()
    logger = logging.getLogger("alembic.runtime.migration")
    logger.addFilter(quiet)
    config.output_buffer = Buffer()
    try:
        with EnvironmentContext(config, script, fn=steps, as_sql=True, starting_rev=list(start) or None,
                                destination_rev=destination):
            script.run_env()
    finally:
        config.output_buffer = saved_buffer
        logger.removeFilter(quiet)
    if cache is not None and key is not None:
        cache[key] = copy.deepcopy(rendered)
    return rendered


def _caveats(path: str | None) -> list[str]:
    if not path:
        return []
    try:
        with open(path, encoding="utf-8") as handle:
            source = handle.read()
    except OSError:
        return []
    return [note for needle, note in _OFFLINE_CAVEATS if needle in source]
