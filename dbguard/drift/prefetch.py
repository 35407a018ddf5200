"""The live catalog read in a forked child while this process imports env.py's models.

Connecting (the driver, SQLAlchemy's first-connect queries), reading the alembic_version heads
and the whole catalog, and digesting each table does not depend on the models: the child does
it on the other core. It sends the digests first and the tables' documents after, which are
only read when some table's digest differs from its model's.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

from dbguard.core import schema as model
from dbguard.drift.forked import Forked
from dbguard.errors import DbguardError

# The child's message when the catalog waited too long for a lock: (this, the reason).
_WAITED = "lock-timeout"

# The engine a document was read from, so it is only compared with models compiled for the same:
# (SQLAlchemy dialect name, is MariaDB, server version).
EngineSignature = tuple[str, bool, tuple[Any, ...]]


def engine_signature(sa_dialect: Any) -> EngineSignature:
    version = tuple(v for v in (sa_dialect.server_version_info or ()) if isinstance(v, (int, str)))
    return (str(sa_dialect.name), bool(getattr(sa_dialect, "is_mariadb", False)), version)


@dataclasses.dataclass
class LiveCatalog:
    heads: tuple[str, ...]
    engine: EngineSignature
    url: str  # the URL read (target.url_fingerprint): the parent's own must be the same
    rest: dict[str, Any]  # the snapshot document without its tables
    digests: dict[str, bytes | None]  # each table's digest (model.document_table_digest)
    _child: Forked

    def document(self) -> dict[str, Any] | None:
        """The whole document (the child's second message); None if it could not be had."""
        tables = self._child.receive()
        return None if not isinstance(tables, dict) else {**self.rest, "tables": tables}


def start(settings: Any, exclude: tuple[str, ...]) -> Forked | None:
    """The child reading the catalog of the database ``settings`` name (None: not forked)."""
    return Forked.start(_read_catalog, settings, exclude)


def receive(child: Forked) -> LiveCatalog | None:
    """What the child read, without the tables' documents; None when it failed. A catalog that
    waited too long for a lock is raised: reading it here would only wait as long again."""
    found = child.receive()
    if isinstance(found, tuple) and len(found) == 2 and found[0] == _WAITED:
        raise DbguardError(f"could not read the schema: {found[1]}")
    if not isinstance(found, tuple) or len(found) != 5:
        return None
    heads, engine, url, rest, digests = found
    return LiveCatalog(heads=tuple(heads), engine=tuple(engine), url=url, rest=rest,  # type: ignore[arg-type]
                       digests=digests, _child=child)


def _read_catalog(settings: Any, exclude: tuple[str, ...]) -> Iterator[Any]:
    from dbguard.db.catalog import read_document
    from dbguard.db.ledger import read_version_heads
    from dbguard.target import (
        catalog_lock_waits,
        catalog_wait_error,
        open_session,
        reading_target,
        url_fingerprint,
    )

    target = reading_target(settings)
    with open_session(target) as session:
        try:
            with catalog_lock_waits(session, settings.lock_timeout_ms):
                heads = read_version_heads(session.conn, target.version_table)
                document = read_document(session.conn, session.dialect, exclude)
        except Exception as exc:
            waited = catalog_wait_error(session, exc)
            if waited is None:
                raise
            yield (_WAITED, waited)
            return
        engine = engine_signature(session.conn.dialect)
    tables = document["tables"]
    digests = {name: model.document_table_digest(data) for name, data in tables.items()}
    yield (list(heads), list(engine), url_fingerprint(target.url), {**document, "tables": {}}, digests)
    yield tables
