"""``dbguard plan`` and the upgrade pre-flight's plan: render each pending revision offline, read
the live facts of the tables it touches, and judge every statement with the risk rules."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from dbguard.dialects import risk_facts_of
from dbguard.errors import ConfigError, ExitCode
from dbguard.migrations import bridge
from dbguard.results import PlanReport
from dbguard.risk.model import ServerInfo, Severity


def fail_level(text: str | None) -> Severity | None:
    try:
        return Severity.parse(text or "high")
    except ValueError as exc:
        raise ConfigError(f"fail_on: {exc}") from None


def offline_server(url: Any) -> ServerInfo | None:
    """The engine a URL names; without a connection the version is unknown (judged as current)."""
    backend = url.get_backend_name()
    if backend == "postgresql":
        return ServerInfo(engine="postgresql", flavor="postgresql")
    if backend in ("mysql", "mariadb"):
        return ServerInfo(engine="mysql", flavor=backend)
    return None


def _history(script: Any, config: Any, heads: tuple[str, ...]) -> tuple[list[Any], list[str]]:
    """The revisions already applied at ``heads``, rendered offline: their tables count as existing."""
    rendered: dict[str, Any] = {}
    notes: list[str] = []
    for head in heads:
        try:
            for rev in bridge.offline_sql(script, config, (), head):
                rendered.setdefault(rev.revision, rev)
        except Exception as exc:  # noqa: BLE001 - without history, old tables count as unknown
            notes.append(f"the applied revisions could not be rendered offline ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0][:200] if str(exc) else ''}); tables they created are judged "
                         "as existing only where the live database says so")
            break
    return list(rendered.values()), notes


def _rendered(script: Any, config: Any, heads: tuple[str, ...], destination: str,
              final_heads: tuple[str, ...] = (), while_rendering: Callable[[], None] | None = None,
              ) -> tuple[list[bridge.RenderedRevision], list[Any], list[str]]:
    """The pending revisions' offline SQL, and the applied ones' (their tables count as existing).

    Rendering runs env.py in --sql mode and imports every revision file. Done here, the guarded
    run's env.py would then start with the project's modules already imported (an env.py that
    branches on ``'app' in sys.modules`` takes another path than under Alembic) and the revisions
    imported once more; in a forked child (see :mod:`dbguard.drift.forked`) this process stays as
    plain Alembic would find it. Without a usable fork, or when the child fails, it is done here:
    whatever failed is met again and reported as before."""
    from dbguard.drift import forked

    if bridge.OFFLINE_CACHE is None:
        child = forked.Forked.start(_render_in_child, script, config, heads, destination, final_heads,
                                    for_speed=False)
        if child is not None:
            try:
                if while_rendering is not None:
                    while_rendering()  # on the other core, while the child runs env.py
                found = child.receive()
            finally:
                child.close()
            if found is not None:
                pending = [bridge.RenderedRevision(**item) for item in found["pending"]]
                history = [bridge.RenderedRevision(**item) for item in found["history"]]
                return pending, history, list(found["notes"])
    return _render_all(script, config, heads, destination, final_heads)


def _render_all(script: Any, config: Any, heads: tuple[str, ...], destination: str,
                final_heads: tuple[str, ...]) -> tuple[list[bridge.RenderedRevision], list[Any], list[str]]:
    """Applied and pending revisions rendered in one run of env.py where the chain ends in one head (a
    second run of env.py in the same process may find the project's modules imported by the first and
    take another path: jupyterhub's imports its whole app then, 3 s); else, or when that fails, the
    pending ones from ``heads`` and the applied ones apart."""
    if len(final_heads) == 1:
        try:
            everything = bridge.offline_sql(script, config, (), final_heads[0])
        except Exception:  # noqa: BLE001, S110 - rendered again below, where a failure is reported
            pass
        else:
            applied = bridge.applied_set(script, heads)
            return ([r for r in everything if r.revision not in applied],
                    [r for r in everything if r.revision in applied], [])
    pending = _render_pending(script, config, heads, destination)
    history, notes = _history(script, config, heads)
    return pending, history, notes


def _render_pending(script: Any, config: Any, heads: tuple[str, ...],
                    destination: str) -> list[bridge.RenderedRevision]:
    try:
        return bridge.offline_sql(script, config, heads, destination)
    except Exception as exc:  # noqa: BLE001 - env.py failed in offline mode: say so, exit 2
        raise ConfigError(f"cannot render the pending revisions offline (env.py in --sql mode): "
                          f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from None


def _render_in_child(script: Any, config: Any, heads: tuple[str, ...], destination: str,
                     final_heads: tuple[str, ...]) -> Any:
    import dataclasses

    pending, history, notes = _render_all(script, config, heads, destination, final_heads)
    yield {"pending": [dataclasses.asdict(r) for r in pending],
           "history": [dataclasses.asdict(r) for r in history], "notes": notes}


def build_plan(
    target: Any,
    script: Any,
    heads: tuple[str, ...],
    destination: str,
    *,
    session: Any = None,
    fail_on: str | None = None,
    last_run: Any = None,
) -> PlanReport:
    """The plan from ``heads`` to ``destination``: live facts through ``session`` when given,
    else offline (no database: tables that exist at ``heads`` count as existing, of unknown size)."""
    from alembic.util import CommandError

    from dbguard.risk.parse import warm_parser
    from dbguard.risk.plan import analyse, indexes_without_table, tables_touched

    settings = target.settings
    level = fail_level(fail_on if fail_on is not None else settings.fail_on)
    notes: list[str] = []
    mode = "live" if session is not None else "offline"
    if session is not None:
        if session.dialect.risk_engine is None:
            return _empty(mode, session.dialect.name, heads, destination, level,
                          [("risk rules judge PostgreSQL and MySQL/MariaDB; this engine locks the whole database "
                            "for each write")])
        from dbguard.db import facts as live_facts

        server = live_facts.server_info(session.conn, risk_facts_of(session.dialect))
        with contextlib.suppress(Exception):
            from dbguard.drift import checks as drift

            moved = drift.heads_moved(last_run, heads) if last_run is not None else None
            if moved:
                notes.append(f"{moved}: the plan starts from what alembic_version says now")
    else:
        maybe = offline_server(target.url)
        if maybe is None:
            return _empty(mode, target.url.get_backend_name(), heads, destination, level,
                          ["risk rules judge PostgreSQL and MySQL/MariaDB only"])
        server = maybe
        if server.flavor == "mysql":
            notes.append("offline: judged as MySQL 8; use a mariadb:// URL to judge as MariaDB")
        notes.append("offline: no live facts; tables that exist at the starting revision count as existing, "
                     "of unknown size")

    config = target.config
    try:
        planned, final_heads = bridge.plan_steps(script, "up", destination, heads)
    except (CommandError, KeyError, ValueError) as exc:
        raise ConfigError(f"cannot plan an upgrade to {destination!r}: {exc}") from None
    to_revision = " ".join(final_heads) or "base"
    if not planned:
        return _empty(mode, server.describe, heads, to_revision, level, notes + ["no revision is pending"])
    pending, history, more = _rendered(script, config, heads, destination, final_heads,
                                       while_rendering=lambda: warm_parser(server.engine))
    notes += more
    facts = None
    index_tables: dict[str, str] = {}
    if session is not None:
        from dbguard.db import facts as live_facts

        dialect = risk_facts_of(session.dialect)
        unplaced = indexes_without_table(pending, server.engine, settings.version_table, history=history)
        if unplaced:
            index_tables = live_facts.index_tables(session.conn, dialect, unplaced)
        facts, more = live_facts.table_facts(session.conn, dialect,
                                             tables_touched(pending, server.engine, settings.version_table,
                                                            history=history, index_tables=index_tables))
        notes += more
    docs = {r.revision: (r.doc, r.path) for r in pending}
    from dbguard.migrations.envpy import one_transaction

    wrapped = one_transaction(script.env_py_location) if server.transactional_ddl else None
    if wrapped:
        notes.append(f"env.py runs the whole upgrade in one transaction ({wrapped}): no revision commits before "
                     "the last, so every lock is held until then; dbguard cannot split it (drop the begin() and let "
                     "context.begin_transaction() commit each revision)")
    revisions, summary = analyse(pending, server, history=history, facts=facts, lock_timeout_ms=settings.lock_timeout_ms,
                                 version_table=settings.version_table, docs=docs, index_tables=index_tables,
                                 one_transaction=wrapped is not None)
    failing = sum(1 for r in revisions for f in r.findings if level is not None and f.level >= level)
    unrendered = [r.revision for r in revisions if not r.rendered]
    # A revision that could not be rendered was not planned: findings still gate (1), else "could not plan" (2).
    exit_code = ExitCode.FINDINGS if failing else ExitCode.USAGE if unrendered else ExitCode.OK
    if unrendered:
        notes.append(f"not fully planned: {', '.join(unrendered)} could not be rendered offline")
    return PlanReport(mode=mode, server=server.describe, engine=server.engine, from_revisions=heads,
                      to_revision=to_revision, revisions=revisions, summary=summary,
                      fail_on=level.label if level is not None else "none", failing=failing,
                      notes=tuple(notes), complete=not unrendered, exit_code=exit_code)


def _empty(mode: str, server: str, heads: tuple[str, ...], to_revision: str, level: Severity | None,
           notes: list[str]) -> PlanReport:
    return PlanReport(mode=mode, server=server, engine="", from_revisions=heads, to_revision=to_revision,
                      revisions=(), summary=None, fail_on=level.label if level is not None else "none", failing=0,
                      notes=tuple(notes), exit_code=ExitCode.OK)


def plan(target: Any, destination: str = "head", *, offline: bool = False, from_revision: str | None = None,
         fail_on: str | None = None) -> PlanReport:
    """``dbguard plan``: live by default (reads alembic_version and the tables' facts; takes no lock),
    or offline from ``from_revision`` without any database (``plan --observe`` adds to its report:
    :mod:`dbguard.plan.observe`)."""
    from alembic.util import CommandError

    script = target.script()
    if offline:
        if from_revision is None:
            raise ConfigError("plan --offline needs --from REV: the revision the database is at "
                              "(base for an empty one)")
        try:
            resolved = script.get_revisions(from_revision)
        except CommandError as exc:
            raise ConfigError(f"--from {from_revision!r}: {exc}") from None
        heads = tuple(sorted(r.revision for r in resolved if r is not None))
        return build_plan(target, script, heads, destination, fail_on=fail_on)
    if from_revision is not None:
        raise ConfigError("--from goes with --offline: a live plan starts where the database is")
    from dbguard.db.ledger import Ledger, read_version_heads
    from dbguard.target import open_session

    with open_session(target) as session:
        heads = read_version_heads(session.conn, target.version_table)
        last = None
        with contextlib.suppress(Exception):
            ledger = Ledger(session.conn, target.settings.table_prefix)
            last = ledger.latest_changing_run() if ledger.exists() else None
        return build_plan(target, script, heads, destination, session=session, fail_on=fail_on, last_run=last)


def live_leftovers(session: Any, target: Any, script: Any, heads: tuple[str, ...], revision: str) -> list[str]:
    """What of ``revision`` (a failed step, pending from ``heads``) is live already: the tables,
    columns and indexes its offline SQL creates that the live catalog holds. Empty when nothing."""
    from dbguard.db.catalog import read_schema
    from dbguard.risk.parse import parse
    from dbguard.risk.plan import statements_of

    engine = session.dialect.risk_engine or "postgresql"
    rendered = [r for r in bridge.offline_sql(script, target.config, heads, revision) if r.revision == revision]
    if not rendered:
        return []
    tables, columns, indexes = [], [], []
    for statement in statements_of(rendered[0].statements, target.settings.version_table):
        for op in parse(statement, engine):
            if op.kind == "create_table" and op.table:
                tables.append(op.table)
            elif op.kind == "add_column" and op.table and op.column:
                columns.append((op.table, op.column))
            elif op.kind == "create_index" and op.index:
                indexes.append(op.index)
    live = read_schema(session.conn, session.dialect)
    names = {t.name.lower(): t for t in live.tables}
    found = [f"table {t}" for t in tables if t in names]
    for table, column in columns:
        t = names.get(table)
        if t is not None and any(c.name.lower() == column for c in t.columns):
            found.append(f"column {table}.{column}")
    live_indexes = {(i.name or "").lower() for t in live.tables for i in t.indexes}
    found += [f"index {i}" for i in indexes if i in live_indexes]
    return found
