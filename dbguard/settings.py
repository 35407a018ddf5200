"""Settings, merged from alembic.ini, pyproject.toml, DBGUARD_* environment variables and flags.

The order is fixed and the last source wins: ``[dbguard]`` in alembic.ini, ``[tool.dbguard]`` in
pyproject.toml (beside alembic.ini, else in the working directory), ``DBGUARD_<KEY>``, then the
command-line flags.
"""

from __future__ import annotations

import configparser
import dataclasses
import math
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dbguard.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class Settings:
    config_path: Path = Path("alembic.ini")
    ini_section: str = "alembic"
    x_args: tuple[str, ...] = ()
    url: str | None = None
    # Every migration statement waits at most this long for a lock.
    lock_timeout_ms: int = 2000
    # And runs at most this long; 0 leaves the server's setting alone.
    statement_timeout_ms: int = 3_600_000
    # A step that hit the lock timeout, with nothing of it committed, is tried again this often.
    lock_retries: int = 5
    retry_backoff_ms: int = 500
    retry_backoff_max_ms: int = 10_000
    # dbguard's own statements (ledger, kill audit, lock inspection) wait at most this long for a lock,
    # are tried twice more, and then give up in one line (exit 2).
    ledger_lock_timeout_ms: int = 5000
    # How long connecting to a database may take.
    connect_timeout_s: float = 10.0
    # A statement that has had no answer this long after the bound handed to the server (its statement
    # timeout, or the lock timeout of dbguard's own statements) is given up: its socket is shut down.
    frozen_margin_s: float = 30.0
    # How long to wait for the run lock before answering "busy" (exit 4).
    wait_lock_s: float = 0.0
    table_prefix: str = "dbguard_"
    # Where env.py keeps Alembic's version table, if it configures another name.
    version_table: str = "alembic_version"
    heartbeat_interval_s: float = 5.0
    # Drift pre-flight of upgrade/downgrade: "warn", "refuse" (exit 3) or "ignore".
    on_drift: str = "warn"
    # Objects that are never drift (shell-style patterns on table, table.object or enum/view names);
    # in pyproject.toml: [tool.dbguard.drift] ignore = [...].
    drift_ignore: tuple[str, ...] = ()
    # The watchdog samples the queue behind a migration this often, and cancels the migration's
    # statement once somebody has waited behind it longer than max_blocking_ms (0 turns it off).
    watchdog_interval_ms: int = 100
    max_blocking_ms: int = 1500
    # The rollback lane keeps clearing blockers and retrying for this long.
    rollback_budget_s: float = 60.0
    # A lock-holding run whose heartbeat is older than this, and which is visibly dead, is a zombie.
    zombie_after_s: float = 30.0
    # `dbguard locks kill` and the rollback lane never end sessions of these roles or applications
    # (shell-style patterns; a list in toml, comma-separated in alembic.ini and DBGUARD_*).
    protected_roles: tuple[str, ...] = ()
    protected_applications: tuple[str, ...] = ()
    # A cancelled statement that still holds its lock after this long is terminated.
    kill_grace_ms: int = 2000
    # Where a kill's audit goes first when the server accepts no writes (a global read lock, a backup
    # stage, a read-only database): an append-only file of JSON lines, copied into dbguard_kills once
    # it does. Relative to alembic.ini's folder; default $XDG_STATE_HOME (~/.local/state)/dbguard/kills.jsonl.
    audit_file: str | None = None
    # `dbguard plan` exits 1, and `upgrade` refuses (exit 3) unless forced, when a risk finding
    # reaches this severity: info, low, medium, high, critical, or none.
    fail_on: str = "high"
    # The upgrade pre-flight also runs `plan --observe` (PostgreSQL): the pending revisions in a scratch
    # database first; a disagreement (DG116) gates like any finding; no scratch database is a note.
    plan_observe: bool = False
    # Where a run reaches revisions with no reference schema in the ledger yet: compare with this
    # committed snapshot of them (`dbguard snapshot`; relative to alembic.ini), or with the migrations
    # replayed in a scratch database (needs CREATE DATABASE), instead of storing the live schema unchecked.
    expected_schema: str | None = None
    verify_replay: bool = False
    # A brownfield chain's starting schema, created in the scratch database before a replay (drift
    # --against migrations, snapshot, verify_replay): module:attr (a MetaData, a declarative base or a
    # callable taking a Connection), a schema-only .sql dump, or a snapshot .json; and the revision it
    # stands for (none: the schema before the first revision; a snapshot names its own).
    replay_baseline: str | None = None
    replay_baseline_revision: str | None = None
    # `upgrade --bake SECONDS`: the target is probed every probe_interval_s while the run bakes (its
    # health_sql, rolled back; the lock queue on the run's tables; health_url answering 2xx), each probe
    # bounded by probe_timeout_s; probe_failures failures in a row record the run FAILED (exit 5).
    # Checked when a bake is asked for only: a wrong one never blocks status or the rollback lane.
    health_sql: str | None = None
    health_url: str | None = None
    probe_interval_s: float = 5.0
    probe_failures: int = 2
    probe_timeout_s: float = 5.0
    # A team's own secret patterns (regular expressions), masked in every output besides dbguard's own.
    mask_patterns: tuple[str, ...] = ()
    # Where events (a failed run, an open breaker, sessions ended ...) are POSTed as JSON: http(s) URLs,
    # a list in toml, comma-separated in alembic.ini and DBGUARD_NOTIFY_URL; in the body format
    # notify_format ("json", or "slack" for an incoming webhook). Each POST waits at most
    # notify_timeout_s and is tried notify_retries more times on no answer or a 5xx.
    notify_url: tuple[str, ...] = ()
    notify_format: str = "json"
    notify_timeout_s: float = 5.0
    notify_retries: int = 2
    # The application_name dbguard's own PostgreSQL sessions carry (dbguard.core.appname): set by the
    # command, with the run id once the run has one; never read from a file or the environment.
    application: str = "dbguard"

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


_FIELDS = {f.name: f for f in dataclasses.fields(Settings)}
# Keys a file or an environment variable may set; the others come from flags only.
_FILE_KEYS = {
    "url",
    "lock_timeout_ms",
    "statement_timeout_ms",
    "lock_retries",
    "ledger_lock_timeout_ms",
    "frozen_margin_s",
    "connect_timeout_s",
    "retry_backoff_ms",
    "retry_backoff_max_ms",
    "wait_lock_s",
    "table_prefix",
    "version_table",
    "heartbeat_interval_s",
    "on_drift",
    "fail_on",
    "plan_observe",
    "drift_ignore",
    "watchdog_interval_ms",
    "max_blocking_ms",
    "rollback_budget_s",
    "zombie_after_s",
    "protected_roles",
    "protected_applications",
    "kill_grace_ms",
    "audit_file",
    "expected_schema",
    "verify_replay",
    "replay_baseline",
    "replay_baseline_revision",
    "mask_patterns",
    "health_sql",
    "health_url",
    "probe_interval_s",
    "probe_failures",
    "probe_timeout_s",
    "notify_url",
    "notify_format",
    "notify_timeout_s",
    "notify_retries",
}


def _coerce(key: str, value: Any, source: str) -> Any:
    default = _FIELDS[key].default
    try:
        if isinstance(default, bool):
            if isinstance(value, str):
                return value.strip().lower() in ("1", "true", "yes", "on")
            return bool(value)
        if isinstance(default, int):
            return int(value)
        if isinstance(default, float):
            return float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{source}: {key} must be a number, got {value!r}") from None
    if isinstance(default, tuple):
        if isinstance(value, str):
            return tuple(v.strip() for v in value.replace("\n", ",").split(",") if v.strip())
        return tuple(str(v) for v in value)
    return None if value is None else str(value)


# Numbers that must be above zero; every other number of the settings may also be zero.
_POSITIVE = ("lock_timeout_ms", "ledger_lock_timeout_ms", "connect_timeout_s", "frozen_margin_s",
             "heartbeat_interval_s", "watchdog_interval_ms", "zombie_after_s")


# Checked by a bake, when one is asked for (dbguard.core.bake.probe_settings_problem).
# Notifications check theirs when they are sent (dbguard.notify.settings_problem): a wrong one is a
# warning then, and never blocks a command, least of all the rollback lane.
_BAKE_ONLY = ("probe_interval_s", "probe_failures", "probe_timeout_s", "notify_timeout_s", "notify_retries")


def _validate(settings: Settings) -> Settings:
    if settings.url is not None and not settings.url.strip():
        raise ConfigError("the database URL is empty (an unset variable?): give a URL, or leave --url and "
                          "DBGUARD_URL out to use sqlalchemy.url")
    for name in _FIELDS:
        value = getattr(settings, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or name in _BAKE_ONLY:
            continue
        if not math.isfinite(value):
            raise ConfigError(f"{name} must be a finite number, got {value}")
        if value < 0 or (value == 0 and name in _POSITIVE):
            raise ConfigError(f"{name} must be {'above zero' if name in _POSITIVE else 'zero or more'}, got {value}")
    if settings.lock_timeout_ms <= 0 or settings.ledger_lock_timeout_ms <= 0:
        raise ConfigError("lock_timeout_ms and ledger_lock_timeout_ms must be positive: an unbounded lock wait "
                          "is what dbguard prevents")
    if not settings.connect_timeout_s > 0:
        raise ConfigError("connect_timeout_s must be a positive number of seconds")
    if settings.frozen_margin_s <= 0:
        raise ConfigError("frozen_margin_s must be positive: a connection that stops answering must end")
    if settings.statement_timeout_ms < 0 or settings.lock_retries < 0 or settings.wait_lock_s < 0:
        raise ConfigError("statement_timeout_ms, lock_retries and wait_lock_s cannot be negative")
    if settings.fail_on.strip().lower() not in ("info", "low", "medium", "high", "critical", "none"):
        raise ConfigError(f"fail_on must be info, low, medium, high, critical or none, got {settings.fail_on!r}")
    if settings.on_drift not in ("warn", "refuse", "ignore"):
        raise ConfigError(f"on_drift must be warn, refuse or ignore, got {settings.on_drift!r}")
    for pattern in settings.mask_patterns:
        try:
            compiled = re.compile(pattern)
        except re.error as exc:
            raise ConfigError(f"mask_patterns: {pattern!r} is not a regular expression: {exc}") from None
        if compiled.fullmatch(""):  # it would put *** between every two characters of every output
            raise ConfigError(f"mask_patterns: {pattern!r} matches empty text; make it match the secret only")
    if not settings.table_prefix.replace("_", "").isalnum():
        raise ConfigError(f"table_prefix {settings.table_prefix!r} may hold only letters, digits and _")
    return settings


def _from_ini(path: Path) -> dict[str, Any]:
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read(path, encoding="utf-8")
    except configparser.Error as exc:
        raise ConfigError(f"{path}: cannot parse: {exc.__class__.__name__}") from None
    if not parser.has_section("dbguard"):
        return {}
    return {k: v for k, v in parser.items("dbguard") if k in _FILE_KEYS}


def _from_pyproject(config_path: Path, cwd: Path) -> dict[str, Any]:
    # A version check, not try/except ImportError, so that mypy knows which module it is.
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # Python 3.10
        import tomli as tomllib

    for folder in dict.fromkeys([config_path.resolve().parent, cwd.resolve()]):
        candidate = folder / "pyproject.toml"
        if candidate.is_file():
            try:
                data = tomllib.loads(candidate.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise ConfigError(f"{candidate}: cannot parse: {exc}") from None
            section = data.get("tool", {}).get("dbguard", {})
            found = {k: v for k, v in section.items() if k in _FILE_KEYS}
            drift = section.get("drift", {})
            if isinstance(drift, dict):  # [tool.dbguard.drift] ignore = [...], on_drift = "..."
                found.update({f"drift_{k}" if k == "ignore" else k: v for k, v in drift.items()
                              if (f"drift_{k}" if k == "ignore" else k) in _FILE_KEYS})
            return found
    return {}


def _from_env(environ: Mapping[str, str]) -> dict[str, Any]:
    found = {}
    for key in _FILE_KEYS:
        value = environ.get(f"DBGUARD_{key.upper()}")
        if value not in (None, ""):
            found[key] = value
    if environ.get("DBGUARD_URL") == "":
        found["url"] = ""  # set but empty: a secret the pipeline forgot, never alembic.ini's URL instead
    return found


def load_settings(
    flags: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> Settings:
    """Merge every source; ``flags`` holds only the options the user actually gave."""
    environ = os.environ if environ is None else environ
    cwd = Path.cwd() if cwd is None else cwd
    flags = {k: v for k, v in (flags or {}).items() if v is not None}

    config_path = Path(flags.get("config_path") or environ.get("DBGUARD_CONFIG") or "alembic.ini")
    if not config_path.is_absolute():
        config_path = cwd / config_path

    merged: dict[str, Any] = {}
    sources = [("alembic.ini [dbguard]", _from_ini(config_path) if config_path.is_file() else {})]
    sources.append(("pyproject.toml [tool.dbguard]", _from_pyproject(config_path, cwd)))
    sources.append(("environment", _from_env(environ)))
    for source, values in sources:
        for key, value in values.items():
            merged[key] = _coerce(key, value, source)
    for key, value in flags.items():
        if key not in _FIELDS:
            raise ConfigError(f"unknown setting {key!r}")
        merged[key] = value if key in ("x_args", "config_path") else _coerce(key, value, "option")
    merged["config_path"] = config_path
    return _validate(Settings(**merged))
