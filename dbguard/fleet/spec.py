"""The fleet file (TOML): targets with a name, a URL, a traffic weight and tags.

URLs take credentials only by environment reference (``${VAR}``), expanded at load time; an
inline password is accepted but reported as a warning. Every URL shown anywhere is masked.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dbguard.core.fleet import Member
from dbguard.errors import ConfigError
from dbguard.masking import mask, mask_url_text

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
# The password part of a URL, before expansion: everything between user: and @.
_URL_PASSWORD = re.compile(r"^[a-zA-Z][\w+.-]*://[^:/@\s]*:(?P<secret>[^@\s]*)@")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
_TARGET_KEYS = {"name", "url", "weight", "tags", "alembic_config", "health_sql", "health_url"}
_FLEET_KEYS = {"name", "alembic_config", "control_url", "batches", "worker_timeout_s", "health_sql", "health_url",
               "probe_interval_s", "probe_failures", "probe_timeout_s"}
DEFAULT_BATCHES = "1,100%"
# A distributed rollout fails a published batch nobody claims anything of for this long.
DEFAULT_WORKER_TIMEOUT_S = 300.0
# A baking batch's targets are probed this often; a probe failing this many times in a row fails its target.
DEFAULT_PROBE_INTERVAL_S = 5.0
DEFAULT_PROBE_FAILURES = 2
DEFAULT_PROBE_TIMEOUT_S = 5.0


@dataclasses.dataclass(frozen=True)
class TargetSpec:
    name: str
    url: str = dataclasses.field(repr=False)  # expanded: may hold a password; never shown
    masked_url: str
    weight: float
    tags: tuple[str, ...]
    alembic_config: Path
    health_sql: str | None = None
    # An HTTP endpoint probed while a batch bakes (2xx: healthy); expanded, so it may hold a token.
    health_url: str | None = dataclasses.field(default=None, repr=False)

    @property
    def member(self) -> Member:
        return Member(self.name, self.weight, self.tags)


@dataclasses.dataclass(frozen=True)
class FleetSpec:
    path: Path
    name: str
    control_url: str = dataclasses.field(repr=False)
    masked_control_url: str
    batches: str
    targets: tuple[TargetSpec, ...]
    warnings: tuple[str, ...] = ()
    # Values that came from ${VAR} references, masked wherever text leaves dbguard.
    secrets: tuple[str, ...] = dataclasses.field(default=(), repr=False)
    worker_timeout_s: float = DEFAULT_WORKER_TIMEOUT_S
    probe_interval_s: float = DEFAULT_PROBE_INTERVAL_S
    probe_failures: int = DEFAULT_PROBE_FAILURES
    probe_timeout_s: float = DEFAULT_PROBE_TIMEOUT_S

    @property
    def members(self) -> list[Member]:
        return [t.member for t in self.targets]

    def target(self, name: str) -> TargetSpec:
        for t in self.targets:
            if t.name == name:
                return t
        raise ConfigError(f"{self.path}: no target named {name!r}")

    def mask(self, text: str | None) -> str:
        return mask(text, self.secrets)


def _expand(text: str, where: str, environ: Mapping[str, str], secrets: list[str]) -> str:
    def sub(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in environ:
            raise ConfigError(f"{where}: environment variable {name} is not set")
        secrets.append(environ[name])
        return environ[name]

    return _ENV_REF.sub(sub, text)


def _masked(url: str) -> str:
    from dbguard.db.connect import masked, parse_url

    return masked(parse_url(url))


def _load_toml(path: Path) -> dict[str, Any]:
    # A version check, not try/except ImportError, so that mypy knows which module it is.
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # Python 3.10
        import tomli as tomllib

    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read the fleet file {path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        # The parser's message quotes no value past the error's position; mask it anyway.
        raise ConfigError(f"{path}: not valid TOML: {mask(str(exc))}") from None


def _sqlite_beside(url: str, folder: Path) -> str:
    """A relative SQLite path in the control URL is relative to the fleet file."""
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith(prefix + "/") and url[len(prefix):] not in ("", ":memory:"):
        return prefix + str(folder / url[len(prefix):])
    return url


def _number(fleet: Mapping[str, Any], key: str, default: float, path: Path) -> float:
    value = fleet.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{path}: {key} must be a number")
    return float(value)


def default_control_url(path: Path) -> str:
    return f"sqlite:///{path.parent / (path.stem + '.fleet.db')}"


def load_fleet(path: str | Path, environ: Mapping[str, str] | None = None,
               control_url: str | None = None) -> FleetSpec:
    """Parse and check a fleet file; expand ``${VAR}`` references from ``environ``."""
    environ = os.environ if environ is None else environ
    path = Path(path).resolve()
    data = _load_toml(path)
    folder = path.parent
    secrets: list[str] = []
    warnings: list[str] = []
    fleet = data.get("fleet", {})
    if not isinstance(fleet, dict):
        raise ConfigError(f"{path}: [fleet] must be a table")
    unknown = set(fleet) - _FLEET_KEYS
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) in [fleet]: {', '.join(sorted(unknown))} "
                          f"(known: {', '.join(sorted(_FLEET_KEYS))})")
    extra = set(data) - {"fleet", "targets"}
    if extra:
        raise ConfigError(f"{path}: unknown section(s) {', '.join(sorted(extra))}: use [fleet] and [[targets]]")
    name = str(fleet.get("name") or path.stem)
    if not _NAME.match(name):
        raise ConfigError(f"{path}: fleet name {name!r} may hold only letters, digits, '.', '-' and '_'")
    default_ini = fleet.get("alembic_config")
    raw_targets = data.get("targets")
    if not isinstance(raw_targets, list) or not raw_targets:
        raise ConfigError(f"{path}: no [[targets]]: list at least one target with a name and a url")

    targets: list[TargetSpec] = []
    seen: set[str] = set()
    for i, raw in enumerate(raw_targets, start=1):
        where = f"{path}: target #{i}"
        if not isinstance(raw, dict):
            raise ConfigError(f"{where}: each [[targets]] entry must be a table")
        unknown = set(raw) - _TARGET_KEYS
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(unknown))} "
                              f"(known: {', '.join(sorted(_TARGET_KEYS))})")
        tname = raw.get("name")
        if not isinstance(tname, str) or not _NAME.match(tname):
            raise ConfigError(f"{where}: needs a name of letters, digits, '.', '-' and '_'")
        where = f"{path}: target {tname}"
        if tname in seen:
            raise ConfigError(f"{where}: the name is used twice")
        seen.add(tname)
        raw_url = raw.get("url")
        if not isinstance(raw_url, str) or not raw_url.strip():
            raise ConfigError(f"{where}: needs a url")
        inline = _URL_PASSWORD.match(raw_url.strip())
        if inline and inline.group("secret") and not _ENV_REF.fullmatch(inline.group("secret")):
            warnings.append(f"target {tname}: the URL holds an inline password; use an environment "
                            "reference such as ${" + tname.upper().replace("-", "_").replace(".", "_") + "_PASSWORD}")
            secrets.append(inline.group("secret"))
        url = _expand(raw_url.strip(), where, environ, secrets)
        try:
            masked_url = _masked(url)
        except ConfigError:
            raise ConfigError(f"{where}: not a database URL: {mask_url_text(url, secrets)}") from None
        weight = raw.get("weight", 1)
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not 0 <= weight < math.inf:
            raise ConfigError(f"{where}: weight must be a finite number of 0 or more (its share of traffic)")
        tags = raw.get("tags", [])
        if isinstance(tags, str):
            tags = [tags]
        if not isinstance(tags, list) or not all(isinstance(t, str) and t for t in tags):
            raise ConfigError(f"{where}: tags must be a list of names")
        ini = raw.get("alembic_config", default_ini)
        if not ini:
            raise ConfigError(f"{where}: no alembic_config: set it in [fleet] or on the target")
        ini_path = (folder / str(ini)).resolve()
        if not ini_path.is_file():
            raise ConfigError(f"{where}: no Alembic configuration at {ini_path}")
        health = raw.get("health_sql", fleet.get("health_sql"))
        if health is not None and (not isinstance(health, str) or not health.strip()):
            raise ConfigError(f"{where}: health_sql must be one SQL statement")
        health_url = raw.get("health_url", fleet.get("health_url"))
        if health_url is not None:
            from dbguard.core.bake import health_url_problem

            if not isinstance(health_url, str):
                raise ConfigError(f"{where}: health_url must be an http:// or https:// URL")
            health_url = _expand(health_url.strip(), where, environ, secrets)
            problem = health_url_problem(health_url)
            if problem:
                raise ConfigError(f"{where}: {problem}")
        targets.append(TargetSpec(name=tname, url=url, masked_url=masked_url, weight=float(weight),
                                  tags=tuple(tags), alembic_config=ini_path, health_sql=health,
                                  health_url=health_url))

    raw_control = control_url or fleet.get("control_url") or default_control_url(path)
    control = _sqlite_beside(_expand(str(raw_control), f"{path}: control_url", environ, secrets), folder)
    try:
        masked_control = _masked(control)
    except ConfigError:
        raise ConfigError(f"{path}: control_url is not a database URL: {mask_url_text(control, secrets)}") from None
    batches = str(fleet.get("batches") or DEFAULT_BATCHES)
    worker_timeout = fleet.get("worker_timeout_s", DEFAULT_WORKER_TIMEOUT_S)
    if isinstance(worker_timeout, bool) or not isinstance(worker_timeout, (int, float)) \
            or not 0 < worker_timeout < math.inf:
        raise ConfigError(f"{path}: worker_timeout_s must be a number of seconds above 0")
    probing = {key: _number(fleet, key, default, path) for key, default in (
        ("probe_interval_s", DEFAULT_PROBE_INTERVAL_S), ("probe_timeout_s", DEFAULT_PROBE_TIMEOUT_S),
        ("probe_failures", DEFAULT_PROBE_FAILURES))}
    from dbguard.core.bake import probe_settings_problem

    problem = probe_settings_problem(probing["probe_interval_s"], probing["probe_failures"],
                                     probing["probe_timeout_s"], None)
    if problem:
        raise ConfigError(f"{path}: {problem}")
    from dbguard import masking
    from dbguard.db.connect import parse_url

    # Every password of the file's URLs, however it got there (a ${VAR}, or typed inline).
    for url in (control, *(t.url for t in targets)):
        password = parse_url(url).password
        if password:
            secrets.append(str(password))
    spec = FleetSpec(path=path, name=name, control_url=control, masked_control_url=masked_control,
                     batches=batches, targets=tuple(targets), warnings=tuple(warnings),
                     secrets=tuple(s for s in dict.fromkeys(secrets) if s), worker_timeout_s=float(worker_timeout),
                     probe_interval_s=float(probing["probe_interval_s"]), probe_timeout_s=float(probing["probe_timeout_s"]),
                     probe_failures=int(probing["probe_failures"]))
    masking.remember(spec.secrets)
    short = masking.short_secret_note(spec.secrets, "a password of the fleet file")
    return dataclasses.replace(spec, warnings=(*spec.warnings, short)) if short else spec
