"""Schema drift: the ``drift`` and ``snapshot`` commands, and the guarded run's drift pre-flight.

The pre-flight takes dbguard's open session and ledger and returns plain data; guard.py decides
what to do with it. Its common path (nothing changed) is a few catalog queries and one hash
comparison: the stored and the live schema come from the same catalog reader, so they are equal
byte for byte when nothing changed, and sqlglot is never imported.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import json
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from dbguard.core import schema as model
from dbguard.errors import ConfigError, DbguardError, ExitCode
from dbguard.results import DriftReport, SnapshotResult

if TYPE_CHECKING:
    from dbguard.dialects import Dialect

POLICIES = ("warn", "refuse", "ignore")
_SHOWN = 5


def exclusions(settings: Any) -> tuple[str, ...]:
    return model.never_drift(settings.table_prefix, settings.version_table)


def _resolve_heads(script: Any, revision: str) -> tuple[str, ...]:
    from alembic.util import CommandError

    try:
        if revision in ("head", "heads"):
            return tuple(sorted(script.get_heads()))
        found = script.get_revisions(revision)
    except CommandError as exc:
        raise ConfigError(f"unknown revision {revision!r}: {exc}") from None
    return tuple(sorted(r.revision for r in found if r is not None))


def _check_engine(expected_engine: str, actual_engine: str, source: str) -> None:
    if model.engine_family(expected_engine) != model.engine_family(actual_engine):
        raise ConfigError(f"{source} describes a {expected_engine} schema; this database is {actual_engine}")


class _Background(threading.Thread):
    """``fn(*args)`` in a thread; :meth:`result` waits for it and returns or raises what it did."""

    def __init__(self, fn: Callable[..., Any], *args: Any) -> None:
        super().__init__(name="dbguard-catalog", daemon=True)
        self._fn, self._args = fn, args
        self._value: Any = None
        self._error: BaseException | None = None
        self.start()

    def run(self) -> None:
        try:
            self._value = self._fn(*self._args)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller by result()
            self._error = exc

    def result(self) -> Any:
        self.join()
        if self._error is not None:
            raise self._error
        return self._value


@contextlib.contextmanager
def _reading_catalog(session: Any, settings: Any) -> Iterator[None]:
    """The drift command's reads of the catalog, bounded by ``lock_timeout_ms``; a lock timeout
    there is a one-line "could not read the schema" (exit 2)."""
    from dbguard.target import catalog_lock_waits, catalog_wait_error

    try:
        with catalog_lock_waits(session, settings.lock_timeout_ms):
            yield
    except Exception as exc:
        waited = catalog_wait_error(session, exc)
        if waited is None:
            raise
        raise DbguardError(f"could not read the schema: {waited}") from None


# dbguard drift --------------------------------------------------------------------------------


def models_drift(conn: Any, dialect: Dialect, metadatas: list[Any],
                 exclude: tuple[str, ...] = ()) -> list[model.Drift]:
    """The live schema on ``conn`` against SQLAlchemy MetaData already imported, in process: what
    ``dbguard drift --against models`` does once env.py has given the models."""
    return _models_in_process(conn, dialect, lambda: metadatas, exclude)[0]


def _read_digested(conn: Any, dialect: Dialect,
                   exclude: tuple[str, ...]) -> tuple[dict[str, Any], dict[str, Any]]:
    from dbguard.db.catalog import read_document

    document = read_document(conn, dialect, exclude)
    return document, {name: model.document_table_digest(t) for name, t in document["tables"].items()}


def _models_in_process(conn: Any, dialect: Dialect, load_metadatas: Callable[[], list[Any]],
                       exclude: tuple[str, ...]) -> tuple[list[model.Drift], set[str], dict[str, Any]]:
    """The drifts, the tables compared and the catalog's document. The catalog is read and
    digested in a thread while ``load_metadatas`` (which may run env.py) and the models' digests
    run here, so the server's work overlaps them; objects are built only for the tables whose
    digests differ."""
    from dbguard.drift import expected as sources

    reader = _Background(_read_digested, conn, dialect, exclude)
    try:
        metadatas = load_metadatas()
        digests = sources.model_digests(metadatas, conn.dialect, dialect, exclude)
    except BaseException:
        reader.join()
        raise
    document, live_digests = reader.result()
    found = _diff_by_digests(metadatas, conn.dialect, dialect, digests, live_digests, document)
    return found, digests.tables.keys() | live_digests.keys(), document


def _diff_by_digests(metadatas: list[Any], sa_dialect: Any, dialect: Dialect, digests: Any,
                     live_digests: dict[str, Any], document: dict[str, Any]) -> list[model.Drift]:
    """The models against a catalog document, given both sides' table digests: only the tables
    whose digests differ (or that one side lacks) become objects and are compared."""
    from dbguard.drift import expected as sources

    differing = model.differing_tables(digests.tables, live_digests)
    if differing:
        expected = sources.schema_from_metadata(metadatas, sa_dialect, dialect, only=differing)
    else:
        expected = digests.schema_without_tables()
    return model.diff(expected, model.from_dict(document, differing))


def check(settings: Any, against: str = "models", ignore: tuple[str, ...] = (), shadow_url: str | None = None,
          progress: Callable[[str], None] = lambda line: None) -> DriftReport:
    """The live schema against models, replayed migrations, or a snapshot file."""
    started = time.monotonic()
    exclude = exclusions(settings)
    # Against the models, the live catalog is read in a child process on the other core while
    # this one imports Alembic and the models (None: not worth it or not possible here). SQLAlchemy,
    # which both need, is imported (and frozen) before the fork: the child inherits it instead of
    # importing it again on a second core that the server's own work competes for.
    if against == "models":
        from dbguard.drift import prefetch as catalog_prefetch

        with model.gc_paused(freeze=True):
            import dbguard.db.catalog  # noqa: F401 - SQLAlchemy and the catalog reader
        prefetch = catalog_prefetch.start(settings, exclude)
    else:
        prefetch = None
    try:
        # Alembic's modules (and SQLAlchemy's) live as long as the process: imported without the
        # collector walking them again and again as they grow, then frozen.
        with model.gc_paused(freeze=True):
            from dbguard.db.catalog import read_document
            from dbguard.drift import expected as sources
            from dbguard.drift import snapshot_file
            from dbguard.target import load_target, open_session

            target = load_target(settings)
        seen_models: tuple[Any, ...] | None = None
        if prefetch is not None:
            try:
                metadatas, sa_dialect, filters = sources.read_env_models(target.config, target.script())
            except ConfigError:
                # Say it as without the child: when the server cannot be reached, dbguard's own
                # connection says so first (env.py's failure is met again only if it can be).
                prefetch.close()
            else:
                report = _models_against_prefetch(target, ignore, started, exclude, metadatas, sa_dialect,
                                                  filters, prefetch)
                if report is not None:
                    return report
                # The child failed or read another engine: the catalog is read here, env.py not run again.
                seen_models = (metadatas, filters)
        # Only here: with the forked child's catalog, this process never reads the ledger.
        from dbguard.db.ledger import read_version_heads

        considered: list[model.Drift] | None = None  # the drifts env.py's include hooks keep
        with open_session(target) as session:
            # Waits on locks are bounded for the catalog's reads, not for the scratch database's
            # CREATE and DROP (a replay's killed session may take a moment to let go of it).
            if against == "models" and sources.MODELS_CACHE is None:
                # The catalog is read on dbguard's connection while env.py imports the models: the
                # server's work overlaps the import instead of following it.
                env_models: list[tuple[list[Any], Any]] = []

                def load() -> list[Any]:
                    if seen_models is None:
                        metadatas, _, filters = sources.read_env_models(target.config, target.script())
                        env_models.append((metadatas, filters))
                    else:
                        env_models.append(seen_models)
                    return env_models[0][0]

                with _reading_catalog(session, settings):
                    heads = read_version_heads(session.conn, target.version_table)
                    found, names, actual = _models_in_process(session.conn, session.dialect, load, exclude)
                if env_models:
                    from dbguard.drift.env_filters import kept

                    considered = kept(found, env_models[0][1], env_models[0][0], actual, session.conn.dialect)
            elif against == "models":
                # A fleet's worker: the models' schema, converted once, serves every target.
                with _reading_catalog(session, settings):
                    heads = read_version_heads(session.conn, target.version_table)
                    reader = _Background(read_document, session.conn, session.dialect, exclude)
                    try:
                        expected_schema = sources.models_schema(target, session, exclude, seen_models)
                    except BaseException:
                        reader.join()
                        raise
                    actual = reader.result()
                found = model.diff_models(expected_schema, actual)
                names = {t.name for t in expected_schema.tables} | actual["tables"].keys()
            else:
                with _reading_catalog(session, settings):
                    heads = read_version_heads(session.conn, target.version_table)
                    actual = read_document(session.conn, session.dialect, exclude)
                if against == "migrations":
                    expected = sources.migrations_document(target, session, heads, shadow_url, exclude, progress)
                else:
                    expected = model.document_without_tables(snapshot_file.snapshot_document(against), exclude)
                    _check_engine(expected["engine"], actual["engine"], against)
                # Catalog against catalog: only tables whose documents differ are compared.
                try:
                    found = model.diff_documents(expected, actual)
                except (ValueError, TypeError, AttributeError) as exc:
                    raise ConfigError(f"{against}: {exc}") from None
                names = expected["tables"].keys() | actual["tables"].keys()
    finally:
        if prefetch is not None:
            prefetch.close()
    return _report(settings, against, ignore, started, actual["engine"], heads, found, names, considered)


def _models_against_prefetch(target: Any, ignore: tuple[str, ...], started: float, exclude: tuple[str, ...],
                             metadatas: list[Any], sa_dialect: Any, filters: Any, child: Any) -> DriftReport | None:
    """The models against the catalog a forked child read (see :mod:`dbguard.drift.prefetch`), compiled
    with the dialect of the connection env.py opened: table digests first, objects built for the
    tables whose digests differ only. None when the child failed or read another database or engine."""
    from dbguard.dialects import for_sqlalchemy_dialect
    from dbguard.drift import expected as sources
    from dbguard.drift import prefetch as catalog_prefetch
    from dbguard.target import url_fingerprint

    live = catalog_prefetch.receive(child)
    if live is None or sa_dialect is None or catalog_prefetch.engine_signature(sa_dialect) != live.engine \
            or live.url != url_fingerprint(target.url):
        return None
    dialect = for_sqlalchemy_dialect(sa_dialect)
    digests = sources.model_digests(metadatas, sa_dialect, dialect, exclude)
    # The tables' documents are a second message, only fetched when some table differs.
    document = live.document() if model.differing_tables(digests.tables, live.digests) else live.rest
    if document is None:
        return None
    found = _diff_by_digests(metadatas, sa_dialect, dialect, digests, live.digests, document)
    names = digests.tables.keys() | live.digests.keys()
    from dbguard.drift.env_filters import kept

    return _report(target.settings, "models", ignore, started, document["engine"], live.heads, found, names,
                   kept(found, filters, metadatas, document, sa_dialect))


def _report(settings: Any, against: str, ignore: tuple[str, ...], started: float, engine: str,
            heads: tuple[str, ...], found: list[model.Drift], names: Any,
            considered: list[model.Drift] | None = None) -> DriftReport:
    """``considered``: the drifts env.py's include hooks keep (None: all found); the rest count as ignored."""
    patterns = tuple(settings.drift_ignore) + tuple(ignore)
    kept = model.filter_drift(found if considered is None else considered, patterns)
    return DriftReport(
        against=against, engine=engine, revisions=heads, drifts=tuple(kept), tables_compared=len(names),
        table_names=tuple(sorted(names)),
        ignored=len(found) - len(kept), exit_code=ExitCode.FINDINGS if kept else ExitCode.OK,
        duration_ms=int((time.monotonic() - started) * 1000),
    )


def snapshot(settings: Any, revision: str = "head", output: str | None = None, live: bool = False,
             shadow_url: str | None = None, progress: Callable[[str], None] = lambda line: None) -> SnapshotResult:
    """The expected schema at ``revision`` (migrations replayed in a scratch database), or with
    ``live`` the live database's schema, as stable JSON."""
    from dbguard.db.catalog import read_document
    from dbguard.db.ledger import read_version_heads
    from dbguard.drift import expected as sources
    from dbguard.target import load_target, open_session

    target = load_target(settings)
    exclude = exclusions(settings)
    with open_session(target) as session:
        if live:
            heads = read_version_heads(session.conn, target.version_table)
            doc = read_document(session.conn, session.dialect, exclude)
        else:
            heads = _resolve_heads(target.script(), revision)
            doc = sources.migrations_document(target, session, heads, shadow_url, exclude, progress)
    schema_hash = model.document_hash(doc)
    # The revisions it stands for: the `expected_schema` setting uses it only at those revisions.
    text = model.document_json({**doc, "revisions": list(heads)})
    if output and output != "-":
        try:
            with open(output, "w", encoding="utf-8") as handle:
                handle.write(text)
        except OSError as exc:
            raise ConfigError(f"cannot write {output}: {exc.strerror or exc}") from None
    return SnapshotResult(path=output if output and output != "-" else None, revisions=heads,
                          engine=doc["engine"], tables=len(doc["tables"]), schema_hash=schema_hash,
                          text="" if output and output != "-" else text)


# Pre-flight and post-flight of a guarded run --------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Preflight:
    """What the drift pre-flight found; ``problems`` are the lines a policy warns about or refuses on."""

    problems: tuple[str, ...] = ()
    drifts: tuple[model.Drift, ...] = ()
    live: dict[str, Any] | None = None  # the live schema's snapshot document
    live_hash: str | None = None
    baseline_hash: str | None = None
    heads: tuple[str, ...] = ()
    # The line of ``problems`` about drift (None: none found): at the run's end the end check says
    # which of it is still there.
    drift_line: str | None = None


def pack(text: str) -> str:
    return "z:" + base64.b64encode(zlib.compress(text.encode(), 6)).decode()


def unpack(text: str) -> str:
    return zlib.decompress(base64.b64decode(text[2:])).decode() if text.startswith("z:") else text


def reference_drifts(store: Any, reference: tuple[int, str], live: dict[str, Any], live_hash: str,
                     ignore: tuple[str, ...]) -> tuple[list[model.Drift], dict[str, Any] | None]:
    """How the live document differs from a stored reference ((id, hash) from ``SchemaStore.latest``),
    ``ignore`` applied, and the reference's document: both empty when the hashes match (the common
    case, decided without building a model object)."""
    if reference[1] == live_hash:
        return [], None
    stored = json.loads(unpack(store.schema_text(reference[0])))
    return model.filter_drift(model.diff_documents(stored, live), ignore), stored


def _summary(drifts: list[model.Drift] | tuple[model.Drift, ...]) -> str:
    shown = "; ".join(d.describe() for d in drifts[:_SHOWN])
    more = f"; and {len(drifts) - _SHOWN} more" if len(drifts) > _SHOWN else ""
    return f"{shown}{more}"


def changed_revision_files(conn: Any, prefix: str, script: Any, heads: tuple[str, ...]) -> list[str]:
    """Applied revisions whose file differs from the one dbguard ran (checksums in the ledger)."""
    from dbguard.db.ledger import applied_checksums
    from dbguard.migrations import bridge

    recorded = applied_checksums(conn, prefix)
    if not recorded:
        return []
    problems = []
    for revision in sorted(bridge.applied_set(script, heads)):
        if revision not in recorded:
            continue
        try:
            path = script.get_revision(revision).path
        except Exception:  # noqa: BLE001, S112 - a revision gone from the scripts is Alembic's to report
            continue
        now = bridge.checksum(path)
        if now is not None and now != recorded[revision]:
            problems.append(f"revision {revision} changed since it was applied "
                            f"(sha256 {recorded[revision][:12]} then, {now[:12]} now)")
    return problems


def heads_moved(last_run: Any, heads: tuple[str, ...]) -> str | None:
    """alembic_version moved behind dbguard's back: it no longer says what the last good run left."""
    from dbguard.core.lanes import end_revisions

    if last_run is None or last_run.status != "succeeded" or end_revisions(last_run) is None:
        return None
    left = tuple(sorted(end_revisions(last_run) or ()))
    if left == tuple(sorted(heads)):
        return None
    return (f"alembic_version was moved outside dbguard: run {last_run.id} left {' '.join(left) or 'base'}, "
            f"the database says {' '.join(heads) or 'base'}")


def preflight(session: Any, target: Any, script: Any, heads: tuple[str, ...], last_run: Any,
              ignore: tuple[str, ...] = ()) -> Preflight:
    """Checksums of applied revisions, alembic_version vs the ledger, and the live schema vs the
    schema stored for the current revision. Call while holding the run lock."""
    from dbguard.db.catalog import read_document
    from dbguard.db.ledger import SchemaStore
    from dbguard.target import catalog_lock_waits

    prefix = target.settings.table_prefix
    problems = changed_revision_files(session.conn, prefix, script, heads)
    moved = heads_moved(last_run, heads)
    if moved:
        problems.append(moved)
    store = SchemaStore(session.conn, prefix)
    baseline = store.latest(heads)
    # The common case, nothing changed, is the catalog's rows hashed as plain data: no model objects.
    with catalog_lock_waits(session, target.settings.lock_timeout_ms):
        live = read_document(session.conn, session.dialect, exclusions(target.settings))
    live_hash = model.document_hash(live)
    drifts: list[model.Drift] = []
    drift_line = None
    if baseline is not None:
        drifts = reference_drifts(store, baseline, live, live_hash, ignore)[0]
        if drifts:
            drift_line = (f"schema drift since {' '.join(heads) or 'base'} was recorded: {len(drifts)} "
                          f"difference{'s' if len(drifts) != 1 else ''}: {_summary(drifts)}")
            problems.append(drift_line)
    return Preflight(problems=tuple(problems), drifts=tuple(drifts), live=live, live_hash=live_hash,
                     baseline_hash=None if baseline is None else baseline[1], heads=heads, drift_line=drift_line)


# The pre-flight's verdict for guard.py ----------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class GuardCheck:
    """The pre-flight's verdict for a guarded run: warnings to show, or a reason to refuse."""

    warnings: tuple[str, ...] = ()
    refuse_reason: str | None = None
    preflight: Preflight | None = None

    def still_true(self) -> tuple[str, ...]:
        """The warnings that stay true after the run; its drift is the end check's to report."""
        line = self.preflight.drift_line if self.preflight is not None else None
        return tuple(w for w in self.warnings if w != line)


def guard_preflight(session: Any, target: Any, script: Any, heads: tuple[str, ...], last_run: Any,
                    intent: str) -> GuardCheck:
    """Apply the ``on_drift`` policy to what the pre-flight finds. The rollback lane never refuses
    on drift: it is the way out, so drift there is a warning. With ``on_drift = ignore`` the
    pre-flight still runs (the run's end check needs what it read) and says nothing."""
    settings = target.settings
    try:
        check = preflight(session, target, script, heads, last_run, tuple(settings.drift_ignore))
    except Exception as exc:
        from dbguard.target import catalog_wait_error

        waited = catalog_wait_error(session, exc)
        if waited is None:
            raise
        if settings.on_drift == "ignore":
            return GuardCheck()
        # Not knowing is the policy's business, as drift is: refuse, or go on and say so.
        reason = f"could not check for drift before the {intent}: {waited}"
        if settings.on_drift == "refuse" and intent != "rollback":
            return GuardCheck(refuse_reason=reason)
        return GuardCheck(warnings=(reason,))
    if not check.problems or settings.on_drift == "ignore":
        return GuardCheck(preflight=check)
    if settings.on_drift == "refuse" and intent != "rollback":
        return GuardCheck(refuse_reason="; ".join(check.problems), preflight=check)
    return GuardCheck(warnings=check.problems, preflight=check)
