"""A target: one database URL and the Alembic script directory that manages it."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import URL, Connection, Engine

from dbguard.db import connect as dbconnect
from dbguard.db.sql import run
from dbguard.dialects import Dialect, file_run_locks_of, for_sqlalchemy_dialect
from dbguard.errors import ConfigError
from dbguard.settings import Settings

if TYPE_CHECKING:
    from alembic.config import Config

    from dbguard.db.runlock import RunLock


@dataclasses.dataclass
class Target:
    settings: Settings
    url: URL
    ledger_url: URL
    # Alembic's Config, built on first use: a process that only reads the database never imports Alembic.
    _config: Config | None = None

    @property
    def config(self) -> Config:
        if self._config is None:
            self._config = _config_with_url(self.settings)
        return self._config

    @property
    def masked_url(self) -> str:
        return dbconnect.masked(self.url)

    @property
    def secrets(self) -> list[str | None]:
        """The password as typed in a URL (percent-encoded) and as the server sees it."""
        from urllib.parse import quote, quote_plus

        from dbguard.masking import secret_x_values

        password = self.url.password
        forms = [password, quote(str(password), safe=""), quote_plus(str(password))] if password else []
        return list(dict.fromkeys([*forms, *secret_x_values(self.settings.x_args)]))

    @property
    def version_table(self) -> str:
        return self.settings.version_table

    def script(self) -> Any:
        return load_script(self.config, self.settings)


def load_script(config: Any, settings: Settings) -> Any:
    from alembic.script import ScriptDirectory
    from alembic.util import CommandError

    from dbguard.migrations import bridge, envpy, internals

    databases = (config.get_main_option("databases") or "").strip()
    if databases:
        raise ConfigError(f"{settings.config_path} migrates several databases in one run (databases = {databases}, "
                          "Alembic's multidb template); dbguard guards one database per run and cannot lock, "
                          "verify or roll back the others")
    try:
        script = ScriptDirectory.from_config(config)
    except CommandError as exc:
        raise ConfigError(f"{settings.config_path}: {exc}") from None
    try:
        internals.defer_revision_imports(script)
    except Exception as exc:  # noqa: BLE001 - a revision file that does not parse is imported, as Alembic would
        raise _unreadable_revisions(exc) from None
    if envpy.sets_version_locations(script.env_py_location):
        # env.py picks its version folders (one per dialect, say) when it runs, and plain Alembic reads
        # the revisions after that; dbguard plans before its run, so it asks env.py first.
        before = list(script.version_locations or ())
        if bridge.read_env_version_locations(config, script) != before:
            try:
                internals.reread_version_locations(script)
            except Exception as exc:  # noqa: BLE001 - as above, in the folders env.py picked
                raise _unreadable_revisions(exc) from None
    return script


def _unreadable_revisions(exc: Exception) -> ConfigError:
    """A revision file that does not load (a SyntaxError, an ImportError of its own): the project's
    file, named in one line, not an internal error of dbguard's."""
    from dbguard.db.connect import first_line

    where = getattr(exc, "filename", None)
    line = getattr(exc, "lineno", None)
    at = f" ({where}{f', line {line}' if line else ''})" if where else ""
    what = exc.msg if isinstance(exc, SyntaxError) and exc.msg else first_line(exc)  # its str() repeats the place
    return ConfigError(f"cannot read the revision files{at}: {type(exc).__name__}: {what}")


def load_config(settings: Settings, url_is_enough: bool = False) -> Config:
    """The Alembic Config exactly as ``alembic -c ... -n ... -x ...`` would build it (with
    pyproject.toml's [tool.alembic] where Alembic reads it). ``url_is_enough``: for a command that
    needs no migration scripts, a URL given without an alembic.ini makes a Config of its own."""
    from alembic.config import Config

    path = settings.config_path
    if not path.is_file():
        if url_is_enough:
            if settings.url:
                return Config(ini_section=settings.ini_section,
                              cmd_opts=argparse.Namespace(x=list(settings.x_args) or None))
            raise ConfigError(f"no database URL: pass --url or set DBGUARD_URL (or -c PATH of an alembic.ini; "
                              f"none at {path})")
        raise ConfigError(f"no Alembic configuration at {path} (pass -c PATH or set DBGUARD_CONFIG)")
    more: dict[str, Any] = {}
    toml = pyproject_of(path)
    if toml is not None and accepts_toml(Config):
        # Alembic 1.16+ reads [tool.alembic] (script_location and the rest) from pyproject.toml, as
        # the `alembic` command does; the ini file then holds only the URL and logging.
        more["toml_file"] = str(toml)
    config = Config(
        file_=str(path),
        ini_section=settings.ini_section,
        cmd_opts=argparse.Namespace(x=list(settings.x_args) or None),
        **more,
    )
    if not config.file_config.has_section(settings.ini_section):
        raise ConfigError(f"{path} has no [{settings.ini_section}] section")
    return config


def pyproject_of(config_path: Path) -> Path | None:
    """The pyproject.toml with a [tool.alembic] table beside alembic.ini, or in the working directory
    (where the `alembic` command looks)."""
    # A version check, not try/except ImportError, so that mypy knows which module it is.
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # Python 3.10
        import tomli as tomllib

    for folder in dict.fromkeys([config_path.resolve().parent, Path.cwd().resolve()]):
        candidate = folder / "pyproject.toml"
        try:
            if candidate.is_file() and "alembic" in tomllib.loads(candidate.read_text("utf-8")).get("tool", {}):
                return candidate
        except (OSError, ValueError):
            continue
    return None


def accepts_toml(config_class: Any) -> bool:
    import inspect

    return "toml_file" in inspect.signature(config_class).parameters


def load_target(settings: Settings, url_is_enough: bool = False) -> Target:
    """The Alembic Config plus the URL dbguard guards: ``--url``/``DBGUARD_URL``, else sqlalchemy.url.
    ``url_is_enough``: the command reads no migration scripts, so alembic.ini is optional (see load_config)."""
    if url_is_enough and settings.url and not settings.config_path.is_file():
        # Nothing to read but the URL: Alembic is imported only if a Config is asked for (a tenth of
        # a second of `dbguard --url URL locks kill`'s start, while a DDL queues).
        return _target(settings, settings.url, None)
    config = _config_with_url(settings, url_is_enough)
    raw_url = config.get_main_option("sqlalchemy.url")
    if not raw_url:
        raise ConfigError(f"no database URL: set sqlalchemy.url in {settings.config_path}, or pass --url / DBGUARD_URL")
    return _target(settings, raw_url, config)


def _config_with_url(settings: Settings, url_is_enough: bool = True) -> Config:
    """The Config (load_config) with ``--url``/``DBGUARD_URL`` over its sqlalchemy.url."""
    config = load_config(settings, url_is_enough)
    if settings.url:
        # Interpolation is on in alembic.ini: a literal % must be doubled.
        config.set_main_option("sqlalchemy.url", settings.url.replace("%", "%%"))
    return config


def _target(settings: Settings, raw_url: str, config: Config | None) -> Target:
    url = dbconnect.parse_url(raw_url)
    if url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:"):
        raise ConfigError("an in-memory SQLite database cannot be guarded: it vanishes with its connection")
    target = Target(settings=settings, url=url, ledger_url=dbconnect.sync_url(url), _config=config)
    from dbguard import masking

    masking.remember(target.secrets, settings.mask_patterns)
    return target


def reading_target(settings: Settings) -> Target:
    """The target of a process that only reads the database (the catalog prefetch child): its URL
    read from alembic.ini as Alembic's Config reads it (a ConfigParser knowing ``here``) without
    importing Alembic (~100 ms); load_target where that cannot be done. Whoever uses what it read
    checks that the URL is the one load_target gives (:func:`url_fingerprint`)."""
    import configparser

    raw_url = settings.url
    path = settings.config_path
    if not raw_url and path.is_file():
        parser = configparser.ConfigParser({"here": path.absolute().parent.as_posix()})
        try:
            parser.read(path, encoding="utf-8")
            raw_url = parser.get(settings.ini_section, "sqlalchemy.url", fallback=None)
        except configparser.Error:
            raw_url = None
    return _target(settings, raw_url, None) if raw_url else load_target(settings)


def url_fingerprint(url: URL) -> str:
    """A digest of the whole URL, password included, that shows two URLs are one without carrying it."""
    import hashlib

    return hashlib.sha256(url.render_as_string(hide_password=False).encode()).hexdigest()


def require_database_file(url: URL) -> None:
    if url.get_backend_name() != "sqlite":
        return
    path = url.database or ""
    if path.startswith("file:") or url.query.get("uri") or path == ":memory:":
        return  # a URI names its own mode (mode=ro, mode=rwc)
    if not Path(path).exists():
        raise ConfigError(f"no SQLite database at {Path(path).absolute()}: nothing to read (a read never "
                          "creates one; `dbguard upgrade` does)")


# dbguard's own statements wait this long for a lock unless ledger_lock_timeout_ms says otherwise.
LEDGER_LOCK_TIMEOUT_MS = Settings.ledger_lock_timeout_ms


def bound_lock_waits(conn: Connection, dialect: Dialect, lock_timeout_ms: int) -> None:
    """How long a statement on one of dbguard's own connections may wait for a lock (no
    statement timeout: those are for the migration's connection)."""
    from dbguard.db.sql import run_statements

    run_statements(conn, dialect.session_timeouts(lock_timeout_ms, 0))


def guard_socket(conn: Connection, settings: Settings, longest_s: float) -> None:
    """The connection's socket gives up on a silent peer (keepalives), and every statement on it on an
    answer that has not come ``longest_s`` + ``frozen_margin_s`` after it was sent (dbguard.db.deadline)."""
    from dbguard.db import deadline

    deadline.keep_alive(conn, settings.frozen_margin_s)
    deadline.bound(conn, longest_s + settings.frozen_margin_s)


@dataclasses.dataclass
class Session:
    """dbguard's own autocommit connection to a target, with what it learnt on connecting."""

    engine: Engine
    conn: Connection
    dialect: Dialect
    database: str
    session_id: str | None
    db_user: str | None
    # How long dbguard's own statements on this connection wait for a lock.
    lock_timeout_ms: int = LEDGER_LOCK_TIMEOUT_MS


@contextlib.contextmanager
def open_session(target: Target, create: bool = False) -> Iterator[Session]:
    """dbguard's own connection to the target. A SQLite file that is not there is created only for a
    command that changes the database (``create``): a read reports it instead of leaving an empty file."""
    if not create:
        require_database_file(target.ledger_url)
    engine = dbconnect.create_engine(target.ledger_url, target.settings.connect_timeout_s,
                                     target.settings.application)
    try:
        conn = dbconnect.connect(engine)
        try:
            dialect = for_sqlalchemy_dialect(conn.dialect)
            database = run(conn, dialect.current_database()).scalar()
            if not database:
                raise ConfigError(f"{target.masked_url} names no database")
            session_id = run(conn, dialect.session_id()).scalar()
            db_user = run(conn, dialect.current_user()).scalar()
            # dbguard's own statements never queue behind anybody for long either, nor wait for ever
            # on a server or network that stopped answering.
            bound = target.settings.ledger_lock_timeout_ms
            bound_lock_waits(conn, dialect, bound)
            guard_socket(conn, target.settings, bound / 1000)
            if dialect.lock_graph is not None:
                copy_local_kill_audit(conn, dialect, target, bound)
            yield Session(
                engine=engine,
                conn=conn,
                dialect=dialect,
                database=str(database),
                session_id=None if session_id is None else str(session_id),
                db_user=db_user,
                lock_timeout_ms=bound,
            )
        finally:
            with contextlib.suppress(Exception):
                conn.close()
    finally:
        engine.dispose()


def copy_local_kill_audit(conn: Connection, dialect: Dialect, target: Target, lock_timeout_ms: int) -> None:
    """Kill audit records a server that took no writes left in the local audit file go into
    ``dbguard_kills`` with the next dbguard command on the target: tried on connecting, never waiting
    for a lock, and left for the next one if the server still takes no writes (or this user may not)."""
    import logging

    from dbguard.db import audit_file
    from dbguard.db.ledger import KillLedger
    from dbguard.dialects import session_control_of

    settings = target.settings
    try:
        local = audit_file.AuditFile(audit_file.audit_path(settings.audit_file, settings.config_path))
        if not local.path.exists():  # the common case: one stat
            return
        result = audit_file.copy_pending(conn, session_control_of(dialect), KillLedger(conn, settings.table_prefix),
                                         local, audit_file.target_key(target.url), lock_timeout_ms)
        if result.copied or result.pending:
            logging.getLogger(__name__).info("kill audit: %d record(s) copied from %s into %skills, %d still there%s",
                                             len(result.copied), local.path, settings.table_prefix, result.pending,
                                             f" ({result.error})" if result.error else "")
    except Exception as exc:  # noqa: BLE001 - the records stay in the file; this command goes on
        logging.getLogger(__name__).debug("kill audit left in the local file: %s", exc)


@contextlib.contextmanager
def shorter_lock_waits(session: Session, lock_timeout_ms: int) -> Iterator[None]:
    """Within the block, statements on the session wait for a lock at most ``lock_timeout_ms``
    (never longer than the session's own bound); the session's bound is back afterwards."""
    bound_lock_waits(session.conn, session.dialect, min(lock_timeout_ms, session.lock_timeout_ms))
    try:
        yield
    finally:
        with contextlib.suppress(Exception):
            bound_lock_waits(session.conn, session.dialect, session.lock_timeout_ms)


def catalog_lock_waits(session: Session, lock_timeout_ms: int) -> contextlib.AbstractContextManager[None]:
    """Reading the catalog waits for a lock no longer than a migration step would
    (``lock_timeout_ms``), not the ledger writes' longer bound: deparsing a view waits for its
    lock, and in the rollback lane the site may be down meanwhile. A lock timeout inside is
    raised as it is; :func:`catalog_wait_error` words it."""
    return shorter_lock_waits(session, lock_timeout_ms)


def catalog_wait_error(session: Session, exc: BaseException) -> str | None:
    """The reason to show when ``exc`` is a lock timeout met reading the catalog; None otherwise."""
    if not session.dialect.is_lock_timeout(exc):
        return None
    return f"the catalog waited too long for a lock ({dbconnect.first_line(exc)})"


def make_lock(session: Session, target: Target) -> RunLock:
    """The target database's run lock (see :class:`dbguard.db.runlock.RunLock`)."""
    from dbguard.db.runlock import DATABASE_KEY, FileRunLock, RunLock, SqlRunLock

    def keyed(key: str) -> SqlRunLock | FileRunLock:
        if session.dialect.run_lock_kind == "file":
            return FileRunLock(file_run_locks_of(session.dialect).run_lock_path(session.database, key))
        return SqlRunLock(session.conn, session.dialect, session.database, key)

    return RunLock(keyed(DATABASE_KEY), keyed(target.settings.table_prefix))


def os_user() -> str | None:
    """The login running dbguard, recorded with each run and kill."""
    import getpass
    import os

    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name in some containers
        return str(os.getuid()) if hasattr(os, "getuid") else None
