"""The schema a brownfield chain starts from, created in the scratch database before a replay.

Many projects adopted Alembic after their first release: their first revision alters tables that
``metadata.create_all()`` of an "initial models" module (or a dump) created. A replay into an empty
database cannot work for them; ``replay_baseline`` says what to create first:

- ``module:attr``: a SQLAlchemy ``MetaData`` (or a declarative base), created with ``create_all``,
  or a callable that takes a ``Connection`` and creates the schema itself;
- a ``.sql`` schema-only dump (``pg_dump --schema-only``, ``mysqldump --no-data``);
- a snapshot ``.json`` written by ``dbguard snapshot``, which carries its revisions.

It stands for the schema before the first revision, unless ``replay_baseline_revision`` names the
revision it stands for (a snapshot names its own): the replay is stamped there and continues after it.
"""

from __future__ import annotations

import dataclasses
import importlib
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from dbguard.core.schema import engine_family
from dbguard.db.sql import run_verbatim
from dbguard.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class Baseline:
    spec: str
    # The revision(s) the baseline stands for; None: the schema before the first revision.
    revision: str | None = None


def from_settings(settings: Any) -> Baseline | None:
    spec = (getattr(settings, "replay_baseline", None) or "").strip()
    revision = (getattr(settings, "replay_baseline_revision", None) or "").strip() or None
    if not spec:
        if revision:
            raise ConfigError("replay_baseline_revision names the revision of a baseline, but no replay_baseline "
                              "is set: pass --baseline SPEC too")
        return None
    return Baseline(spec=spec, revision=revision)


def kind_of(spec: str) -> str:
    """"sql", "snapshot" or "object" (``module:attr``)."""
    lowered = spec.lower()
    if lowered.endswith(".sql"):
        return "sql"
    if lowered.endswith(".json"):
        return "snapshot"
    module, sep, attr = spec.partition(":")
    if sep and module and attr and "/" not in module and "\\" not in module:
        return "object"
    raise ConfigError(f"baseline {spec!r} is neither module:attribute, a .sql schema dump nor a snapshot .json")


def resolve_path(spec: str, config_path: Path) -> Path:
    """A relative path is taken from the working directory, else from alembic.ini's folder (where a
    setting in alembic.ini or pyproject.toml means it)."""
    path = Path(spec).expanduser()
    if path.is_absolute() or path.exists():
        return path
    beside = Path(config_path).resolve().parent / path
    return beside if beside.exists() else path


def apply(baseline: Baseline, url: sa.engine.URL, settings: Any) -> tuple[str, ...]:
    """Create the baseline in the (empty) database at ``url``; the revisions the replay continues
    after (empty: from the first revision). Its own connection, closed after: a dump's SET and
    search_path changes never reach the replay's session."""
    from dbguard.db import connect as dbconnect

    kind = kind_of(baseline.spec)
    engine = dbconnect.create_engine(url, settings.connect_timeout_s, settings.application)
    try:
        if kind == "object":
            target = _import_object(baseline.spec)
            with engine.begin() as conn:
                _run(baseline.spec, lambda: _create_from_object(target, conn))
            stands_for: tuple[str, ...] = ()
        elif kind == "sql":
            _run_dump(baseline.spec, resolve_path(baseline.spec, settings.config_path), engine)
            stands_for = ()
        else:
            stands_for = _create_from_snapshot(baseline.spec, resolve_path(baseline.spec, settings.config_path),
                                               engine)
    finally:
        engine.dispose()
    if baseline.revision:
        return tuple(baseline.revision.split())
    return stands_for


def _run(spec: str, fn: Any) -> None:
    from dbguard.db.connect import first_line

    try:
        fn()
    except ConfigError:
        raise
    except Exception as exc:  # noqa: BLE001 - the project's code or schema: one line, exit 2
        raise ConfigError(f"creating the baseline {spec} failed: "
                          f"{type(getattr(exc, 'orig', None) or exc).__name__}: {first_line(exc)}") from None


def _import_object(spec: str) -> Any:
    from dbguard.db.connect import first_line

    module_name, _, attr_path = spec.partition(":")
    try:
        found: Any = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - the project's module: one line, exit 2
        raise ConfigError(f"baseline {spec}: cannot import {module_name}: {type(exc).__name__}: "
                          f"{first_line(exc)}") from None
    for part in attr_path.split("."):
        try:
            found = getattr(found, part)
        except AttributeError:
            raise ConfigError(f"baseline {spec}: {module_name} has no {attr_path}") from None
    return found


def _create_from_object(target: Any, conn: Any) -> None:
    metadata = target if isinstance(target, sa.MetaData) else getattr(target, "metadata", None)
    if isinstance(metadata, sa.MetaData):  # a MetaData, or a declarative base (a class: callable too)
        metadata.create_all(conn)
    elif callable(target):
        target(conn)
    else:
        raise ConfigError(f"the baseline is a {type(target).__name__}: name a MetaData, a declarative base or a "
                          "callable taking a Connection")


def _run_dump(spec: str, path: Path, engine: Any) -> None:
    from dbguard.core.sqlscript import ScriptError, split_script
    from dbguard.db.connect import first_line
    from dbguard.dialects import for_sqlalchemy_dialect

    try:
        text = path.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the baseline {path}: {getattr(exc, 'strerror', None) or exc}") from None
    with engine.connect() as conn:
        family = engine_family(for_sqlalchemy_dialect(conn.dialect).name)
        try:
            statements = split_script(text, family)
        except ScriptError as exc:
            raise ConfigError(f"baseline {spec}: {exc}") from None
        # As psql and the mysql client send them: one statement at a time, each committed, and the
        # text as it is (no parameters: a % in a function body is not a placeholder).
        conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        for statement in statements:
            try:
                run_verbatim(conn, statement.text)
            except Exception as exc:  # noqa: BLE001 - the dump's statement: where, and why
                raise ConfigError(f"baseline {spec}, line {statement.line}: "
                                  f"{type(getattr(exc, 'orig', None) or exc).__name__}: {first_line(exc)}") from None


# A snapshot as DDL ---------------------------------------------------------------------------------


class _TypeText(sa.types.UserDefinedType):  # type: ignore[type-arg]
    """A column type spelled as the catalog spelled it."""

    cache_ok = True

    def __init__(self, text: str) -> None:
        self.text = text

    def get_col_spec(self, **kw: Any) -> str:
        return self.text


_SERIAL = {"integer": "SERIAL", "bigint": "BIGSERIAL", "smallint": "SMALLSERIAL"}


def _create_from_snapshot(spec: str, path: Path, engine: Any) -> tuple[str, ...]:
    from dbguard.core.schema import from_dict
    from dbguard.drift.snapshot_file import snapshot_document

    document = snapshot_document(path)
    with engine.connect() as probe:
        from dbguard.dialects import for_sqlalchemy_dialect

        engine_name = for_sqlalchemy_dialect(probe.dialect).name
    if engine_family(document["engine"]) != engine_family(engine_name):
        raise ConfigError(f"baseline {spec} is a snapshot of a {document['engine']} schema; the scratch database "
                          f"is {engine_name}")
    schema = from_dict(document)
    metadata = snapshot_metadata(schema)
    with engine.begin() as conn:
        def create() -> None:
            if schema.enums:
                # Named enum types exist only on PostgreSQL: SQLAlchemy's own construct writes their DDL.
                from sqlalchemy.dialects.postgresql import ENUM

                for name, values in schema.enums:
                    ENUM(*values, name=name).create(conn, checkfirst=False)
            metadata.create_all(conn)
            for name, definition in schema.views or ():
                run_verbatim(conn, f"CREATE VIEW {conn.dialect.identifier_preparer.quote(name)} AS {definition}")

        _run(spec, create)
    return tuple(document.get("revisions") or ())


def _identity(text: str) -> sa.Identity:
    """An identity as the catalog reader wrote it (``ALWAYS START 10 INCREMENT 2``)."""
    words = text.split()
    numbers = {words[i]: int(words[i + 1]) for i in range(len(words) - 1) if words[i] in ("START", "INCREMENT")}
    return sa.Identity(always=words[0] == "ALWAYS", start=numbers.get("START"), increment=numbers.get("INCREMENT"))


def snapshot_metadata(schema: Any) -> sa.MetaData:
    """A MetaData whose ``create_all`` makes the tables a snapshot describes: types as the catalog
    spelled them, keys, constraints and indexes by their names."""
    metadata = sa.MetaData()
    family = engine_family(schema.engine)
    for table in schema.tables:
        columns = []
        for column in table.columns:
            type_text = column.type
            default = sa.text(column.default) if column.default is not None else None
            extra: list[Any] = []
            if column.identity and family == "postgresql":
                extra.append(_identity(column.identity))
            elif column.autoincrement and family == "postgresql" and column.default is None:
                type_text = _SERIAL.get(type_text, type_text)
            elif column.autoincrement and family == "mysql":
                type_text = f"{type_text} AUTO_INCREMENT"
            if column.on_update and family == "mysql":
                default = sa.text(f"{column.default or 'NULL'} ON UPDATE {column.on_update}")
            if column.collation and family in ("postgresql", "mysql"):
                quoted = f'"{column.collation}"' if family == "postgresql" else column.collation
                type_text = f"{type_text} COLLATE {quoted}"
            if column.generated:
                # STORED on PostgreSQL, the only kind before 18 (where the default becomes VIRTUAL).
                extra.append(sa.Computed(sa.text(column.generated), persisted=True if family == "postgresql" else None))
                default = None
            columns.append(sa.Column(column.name, _TypeText(type_text), *extra, nullable=column.nullable,
                                     server_default=default, autoincrement="auto" if column.identity else False,
                                     primary_key=column.name in table.primary_key, comment=column.comment))
        constraints: list[Any] = []
        for unique in table.uniques:
            more: dict[str, Any] = {"postgresql_nulls_not_distinct": True} if unique.nulls_not_distinct else {}
            constraints.append(sa.UniqueConstraint(*unique.columns, name=unique.name, **more))
        for check in table.checks:
            constraints.append(sa.CheckConstraint(sa.text(check.expression), name=check.name))
        for fk in table.foreign_keys:
            constraints.append(sa.ForeignKeyConstraint(
                list(fk.columns), [f"{fk.ref_table}.{c}" for c in fk.ref_columns], name=fk.name,
                ondelete=fk.on_delete, onupdate=fk.on_update, use_alter=True))
        names = {column.name for column in table.columns}
        for index in table.indexes:
            # Given to the table with it: an index of expressions alone (text) names no table of its own.
            parts = [c if c in names else sa.text(c) for c in index.columns]
            options: dict[str, Any] = {}
            if index.where and family in ("postgresql", "sqlite"):
                options[f"{family}_where"] = sa.text(index.where)
            if index.method and family == "postgresql":
                options["postgresql_using"] = index.method
            if index.method in ("fulltext", "spatial") and family == "mysql":
                options["mysql_prefix"] = index.method.upper()
            if index.include:
                options["postgresql_include"] = list(index.include)
            if index.nulls_not_distinct:
                options["postgresql_nulls_not_distinct"] = True
            constraints.append(sa.Index(index.name, *parts, unique=index.unique, **options))
        sa.Table(table.name, metadata, *columns, *constraints, comment=table.comment)
    return metadata
