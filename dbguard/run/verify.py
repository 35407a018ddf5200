"""The end check of every guarded run that would end HEALTHY (upgrade, downgrade, rollback, resolve):
what alembic_version says, and the live schema against the reference schema of those revisions,
read on dbguard's own session whatever ``on_drift`` says. The decisions are
:mod:`dbguard.core.verdict`'s; this module reads the database and the ledger, and stores the
reference where there was none.

A reference is the live schema stored in the ledger (``<prefix>schemas``) at some revisions by a run
whose check passed there: a run's end, or a pre-flight that found the target as the ledger left it
(or an empty ledger: the database as dbguard first found it).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Collection, Iterable
from pathlib import Path
from typing import Any

from dbguard.core import schema as model
from dbguard.core.state import RunRecord, RunStatus
from dbguard.core.verdict import EndVerdict, SchemaCheck, difference_key, judge_end

_SHOWN = 5


@dataclasses.dataclass(frozen=True)
class EndCheck:
    verdict: EndVerdict
    heads: tuple[str, ...]
    # What does not fail the run: the models compared at a first run, pre-existing drift carried over.
    warnings: tuple[str, ...] = ()
    # resolve --accept-schema: how the accepted schema differs from the reference it replaced.
    accepted: frozenset[str] = frozenset()

    def ledger_values(self) -> dict[str, Any]:
        return {"revisions_after": self.heads, "schema_check": self.verdict.check.value}

    @property
    def error(self) -> str:
        """The failures as one line for the ledger and the result."""
        failures = self.verdict.failures
        more = f"; and {len(failures) - _SHOWN} more" if len(failures) > _SHOWN else ""
        return "end check failed: " + "; ".join(failures[:_SHOWN]) + more


def drift_keys(drifts: Iterable[model.Drift]) -> frozenset[str]:
    return frozenset(difference_key(d) for d in drifts)


def known_since(runs: Iterable[RunRecord]) -> frozenset[str]:
    """The differences from the reference that the given runs knew of before they ran."""
    return frozenset(key for run in runs for key in run.known_drift)


def accepted_differences(runs: Iterable[RunRecord]) -> frozenset[str]:
    """What a person accepted with ``resolve --accept-schema``: how each accepted schema differed from
    the reference it replaced (kept on that run as its known drift). References stored at other
    revisions before the acceptance still show the old schema there, so a later run that reaches one
    carries these differences over instead of failing on them: the acceptance holds at every
    revision, not only at the one it was made at."""
    return frozenset(key for run in runs if run.intent == "resolve" and run.status == RunStatus.SUCCEEDED.value
                     and run.schema_check == SchemaCheck.ACCEPTED.value for key in run.known_drift)


def ledger_agrees(last: RunRecord | None, heads: tuple[str, ...]) -> bool:
    """The target is as the ledger left it: no run yet, or the last one ended healthy where
    alembic_version says now. Only then may the live schema become a reference."""
    from dbguard.core.lanes import end_revisions, is_checkpoint

    if last is None:
        return True
    if last.status in (RunStatus.FAILED.value, RunStatus.RUNNING.value) or not is_checkpoint(last):
        return False
    return tuple(sorted(end_revisions(last) or ())) == tuple(sorted(heads))


def store_start_reference(session: Any, target: Any, live: dict[str, Any] | None, live_hash: str | None,
                          heads: tuple[str, ...], last: RunRecord | None) -> bool:
    """The pre-flight's part: where no reference is stored for the starting revisions and the ledger
    agrees with the target, the live schema becomes it, so a rollback to here can always be checked.
    Returns whether it stored one."""
    from dbguard.db.ledger import SchemaStore

    if live is None or live_hash is None or not ledger_agrees(last, heads):
        return False
    store = SchemaStore(session.conn, target.settings.table_prefix)
    if store.latest(heads) is not None:
        return False
    from dbguard.drift.checks import pack

    store.store(heads, live_hash, pack(model.document_json(live, indent=None)), None)
    return True


@dataclasses.dataclass(frozen=True)
class LiveCheck:
    """The live schema, read now, against the reference stored at the revisions alembic_version
    says (``status``): the differences (none: unchanged), or why the catalog could not be read."""

    revisions: tuple[str, ...]
    differences: tuple[str, ...] = ()
    unchecked: str | None = None

    @property
    def finding(self) -> str | None:
        if not self.differences:
            return None
        return (f"the live schema differs from the reference at {' '.join(self.revisions) or 'base'} "
                f"({len(self.differences)} difference(s)): {summary_lines(self.differences)}")


def live_against_reference(session: Any, target: Any, heads: tuple[str, ...]) -> LiveCheck | None:
    """Read the catalog and compare it with the reference at ``heads``; None when none is stored."""
    from dbguard.db.catalog import read_document
    from dbguard.db.ledger import SchemaStore
    from dbguard.drift.checks import exclusions, reference_drifts
    from dbguard.target import catalog_lock_waits, catalog_wait_error

    settings = target.settings
    store = SchemaStore(session.conn, settings.table_prefix)
    reference = store.latest(heads)
    if reference is None:
        return None
    try:
        with catalog_lock_waits(session, settings.lock_timeout_ms):
            live = read_document(session.conn, session.dialect, exclusions(settings))
    except Exception as exc:
        waited = catalog_wait_error(session, exc)
        if waited is None:
            raise
        return LiveCheck(heads, unchecked=waited)
    drifts = reference_drifts(store, reference, live, model.document_hash(live), tuple(settings.drift_ignore))[0]
    hidden = _hidden_tables(session, [d.table for d in drifts if d.kind == "missing_table" and d.table])
    if hidden:
        return LiveCheck(heads, unchecked=f"this user cannot see table(s) {', '.join(hidden[:5])} in the catalog "
                                          "(no privilege on them): the schema was not compared")
    return LiveCheck(heads, tuple(d.describe() for d in drifts))


def _hidden_tables(session: Any, tables: list[str]) -> list[str]:
    """Of the tables the catalog did not list, those it may have hidden from this user (MySQL/MariaDB
    list only the tables a user holds a privilege on; reading one is refused as a privilege error
    whether or not it exists, and answered "no such table" only where the user could see it)."""
    if not tables or session.dialect.catalog_style != "information_schema":
        return []
    from dbguard.db.sql import run
    from dbguard.dialects import information_schema_catalog_of

    probes = information_schema_catalog_of(session.dialect)
    hidden = []
    for table in tables:
        try:
            run(session.conn, probes.table_visible_probe(table)).close()
            hidden.append(table)  # it answers: there, and only the catalog left it out
        except Exception as exc:
            if session.dialect.is_privilege_error(exc):
                hidden.append(table)
            elif not session.dialect.is_missing_table(exc):
                raise
    return hidden


def _expected_elsewhere(session: Any, target: Any, heads: tuple[str, ...],
                        exclude: tuple[str, ...]) -> tuple[dict[str, Any], str] | None:
    """Where no reference is stored, the one the settings name: a committed snapshot of these
    revisions (``expected_schema``), or the migrations replayed in a scratch database
    (``verify_replay``). None: nothing to compare with."""
    from dbguard.drift import expected as sources
    from dbguard.drift import snapshot_file

    settings = target.settings
    if settings.expected_schema:
        path = Path(settings.config_path).parent / settings.expected_schema
        document = snapshot_file.snapshot_document(path)
        if tuple(sorted(document.get("revisions") or ())) == tuple(sorted(heads)):
            return model.document_without_tables(document, exclude), f"the snapshot {settings.expected_schema}"
    if settings.verify_replay:
        document = sources.migrations_document(target, session, heads, None, exclude, lambda line: None)
        return document, "the migrations replayed in a scratch database"
    return None


def check_end(session: Any, target: Any, script: Any, *, recorded: tuple[str, ...], known: Collection[str],
              run_id: int | None, steps_ran: bool, before: Any = None, reused_reference: bool = False,
              seen_metadata: tuple[Any, ...] | None = None, accept: bool = False) -> EndCheck:
    """Check a run's end and store the reference where there was none (never when the check failed).

    ``before`` is the run's drift pre-flight (its live schema is reused when no step ran),
    ``reused_reference`` says the reference at ``recorded`` is the one this run's pre-flight has
    just stored (comparing with it proves nothing), ``accept`` stores the live schema as the
    reference instead of comparing (resolve --accept-schema)."""
    from dbguard.db.catalog import read_document
    from dbguard.db.ledger import SchemaStore, read_version_heads
    from dbguard.drift.checks import exclusions, pack, reference_drifts
    from dbguard.target import catalog_lock_waits, catalog_wait_error

    settings = target.settings
    exclude = exclusions(settings)
    heads = read_version_heads(session.conn, target.version_table)
    store = SchemaStore(session.conn, settings.table_prefix)
    live = None
    if not steps_ran and before is not None and before.live is not None and tuple(before.heads) == heads:
        live, live_hash = before.live, before.live_hash
    else:
        try:
            with catalog_lock_waits(session, settings.lock_timeout_ms):
                live = read_document(session.conn, session.dialect, exclude)
        except Exception as exc:
            waited = catalog_wait_error(session, exc)
            if waited is None:
                raise
            return EndCheck(judge_end(recorded, heads, None, known, unreadable=waited), heads)
        live_hash = model.document_hash(live)
    packed = pack(model.document_json(live, indent=None))
    if accept:
        accepted: frozenset[str] = frozenset()
        replaced = store.latest(heads)
        if replaced is not None:
            accepted = drift_keys(reference_drifts(store, replaced, live, live_hash, tuple(settings.drift_ignore))[0])
        store.store(heads, live_hash, packed, run_id)
        verdict = judge_end(recorded, heads, [], known)
        if verdict.passed:
            verdict = dataclasses.replace(verdict, check=SchemaCheck.ACCEPTED,
                                          note=f"schema: the live schema is the reference at "
                                               f"{' '.join(heads) or 'base'} from now on (accepted)")
        return EndCheck(verdict, heads, accepted=accepted)

    ignore = tuple(settings.drift_ignore)
    reference = store.latest(heads)
    warnings: list[str] = []
    if reference is not None and not reused_reference:
        drifts, stored = reference_drifts(store, reference, live, live_hash, ignore)
        older = stored is not None and model.document_format(stored) < model.SNAPSHOT_FORMAT
        verdict = judge_end(recorded, heads, drifts, known)
        if older and verdict.passed and not drifts:
            # Matched on what an older dbguard's reference records: the live schema, read whole, replaces it.
            store.store(heads, live_hash, packed, run_id)
    elif reference is not None:
        verdict = judge_end(recorded, heads, None, known)
    else:
        elsewhere = _expected_elsewhere(session, target, heads, exclude)
        if elsewhere is not None:
            expected, source = elsewhere
            drifts = model.filter_drift(model.diff_documents(expected, live), ignore)
            verdict = judge_end(recorded, heads, drifts, known)
            if verdict.passed:
                store.store(heads, live_hash, packed, run_id)
            return EndCheck(dataclasses.replace(verdict, note=f"schema: compared with {source}"), heads)
        verdict = judge_end(recorded, heads, None, known)
        if verdict.passed:
            against_models = _against_models(session, target, script, heads, live, steps_ran, ignore, seen_metadata)
            warnings += against_models.warnings
            # What the models said is kept beside the reference, for whoever looks at it later.
            store.store(heads, live_hash, packed, run_id, against_models.drift_text)
    if verdict.carried and settings.on_drift != "ignore":
        warnings.append(f"drift known before the run, still there ({len(verdict.carried)}): "
                        f"{summary_lines(verdict.carried)}")
    return EndCheck(verdict, heads, tuple(warnings))


def summary_lines(lines: tuple[str, ...]) -> str:
    more = f"; and {len(lines) - _SHOWN} more" if len(lines) > _SHOWN else ""
    return "; ".join(lines[:_SHOWN]) + more


@dataclasses.dataclass(frozen=True)
class _ModelsOpinion:
    warnings: tuple[str, ...] = ()
    drift_text: str | None = None  # JSON list of the differences, stored beside the reference


def _against_models(session: Any, target: Any, script: Any, heads: tuple[str, ...], live: dict[str, Any],
                    steps_ran: bool, ignore: tuple[str, ...], seen_metadata: tuple[Any, ...] | None) -> _ModelsOpinion:
    """At revisions never seen before, the models (when the run reached the scripts' heads) are the
    only other opinion: a difference is a warning, never a failure."""
    from dbguard.drift import expected as sources
    from dbguard.drift.checks import exclusions

    if not (steps_ran and heads and set(heads) == set(script.get_heads())):
        return _ModelsOpinion()
    try:
        expected = sources.models_schema(target, session, exclusions(target.settings), seen_metadata)
        drifts = model.diff_models(expected, live)
        if seen_metadata is not None:  # (target_metadata, env.py's include hooks) of the run's configure()
            from dbguard.drift.env_filters import kept

            drifts = kept(drifts, seen_metadata[1], sources.metadata_list(seen_metadata[0]), live,
                          session.conn.dialect)
        drifts = model.filter_drift(drifts, ignore)
    except sources.NoTargetMetadata:
        return _ModelsOpinion()  # a stock env.py has no models: nothing to compare with, not a problem
    except Exception as exc:  # noqa: BLE001 - the run succeeded; a models problem is only a warning
        return _ModelsOpinion((f"could not compare with the models after the run: {exc}",))
    if not drifts:
        return _ModelsOpinion()
    plural = "s" if len(drifts) != 1 else ""
    line = (f"after the run the schema differs from the models (env.py's target_metadata): {len(drifts)} "
            f"difference{plural}: {summary_lines(tuple(d.describe() for d in drifts))}")
    return _ModelsOpinion((line,), json.dumps([dataclasses.asdict(d) for d in drifts]))
