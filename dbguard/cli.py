"""The command line: parse options, call dbguard.api, render, exit. The only sys.exit."""

from __future__ import annotations

import contextlib
import gc
import inspect  # click imports it anyway: free here
import logging
import shlex
import signal
import sys
from typing import Any

import click

import dbguard
from dbguard import __version__, output
from dbguard.errors import DbguardError, ExitCode, Terminated

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class _Seconds(click.ParamType):
    """A finite number of seconds, at least ``low`` (above it when ``open_low``): ``nan`` or ``inf``
    would make a wait that never ends or a loop that never waits."""

    name = "seconds"

    def __init__(self, low: float = 0.0, open_low: bool = False, high: float | None = None) -> None:
        self.low, self.open_low, self.high = low, open_low, high

    def convert(self, value: Any, param: Any, ctx: Any) -> float:
        import math

        try:
            number = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number of seconds", param, ctx)
        too_low = number <= self.low if self.open_low else number < self.low
        if not math.isfinite(number) or too_low:
            self.fail(f"{value!r} is not a finite number of seconds {'above' if self.open_low else 'of at least'} "
                      f"{self.low:g}", param, ctx)
        if self.high is not None and number > self.high:
            self.fail(f"{value!r} is more than {self.high:g} seconds", param, ctx)
        return number


class _Regex(click.ParamType):
    """A regular expression (Python's ``re``); a bad one is a usage error."""

    name = "regex"

    def convert(self, value: Any, param: Any, ctx: Any) -> str:
        from dbguard.core.sessionview import bad_pattern

        why = bad_pattern(str(value))
        if why:
            self.fail(f"{value!r} is not a regular expression ({why})", param, ctx)
        return str(value)


# The filters of `locks` and `locks kill`: (parameter, flag, type, metavar, help).
_FILTERS: tuple[tuple[str, str, Any, str, str], ...] = (
    ("min_idle_s", "--min-idle", "seconds", "SECONDS", "Only idle-in-transaction sessions idle at least this long."),
    ("min_busy_s", "--min-busy", "seconds", "SECONDS", "Only sessions whose statement has run at least this long."),
    ("min_wait_s", "--min-wait", "seconds", "SECONDS", "Only sessions that have waited for a lock at least this long."),
    ("user", "--user", str, "NAME", "Only this database user's sessions."),
    ("application", "--app", str, "NAME", "Only sessions of this application_name (PostgreSQL; MySQL has none)."),
    ("match_query", "--match-query", "regex", "REGEX",
     "Only sessions whose query (as shown: masked, truncated) matches; an idle MySQL transaction shows none."),
    ("default_database", "--default-database", str, "NAME",
     "Only sessions whose own database is this (PostgreSQL: the one connected to; MySQL: PROCESSLIST.DB)."),
)


def _filter_options(fn: Any) -> Any:
    for param, flag, kind, metavar, text in reversed(_FILTERS):
        kind = _Seconds() if kind == "seconds" else _Regex() if kind == "regex" else kind
        fn = click.option(flag, param, type=kind, default=None, metavar=metavar, help=text)(fn)
    return fn


def _filters(values: dict[str, Any], before: dict[str, Any] | None = None) -> Any:
    """The SessionFilter of the filter options (those given after `kill` win over those before)."""
    from dbguard.core.sessionview import SessionFilter

    chosen = {**(before or {}), **{k: v for k, v in values.items() if v is not None}}
    return SessionFilter(**{param: chosen.get(param) for param, *_ in _FILTERS})


class _State:
    def __init__(self, flags: dict[str, Any], fmt: str, verbosity: int) -> None:
        self.flags, self.fmt, self.verbosity = flags, fmt, verbosity

    def settings(self, **more: Any) -> Any:
        from dbguard.settings import load_settings

        return load_settings({**self.flags, **{k: v for k, v in more.items() if v is not None}})


def say(text: str, err: bool = False, nl: bool = True, json_document: bool = False,
        for_execution: bool = False) -> None:
    """Everything the CLI prints goes through here: the masking boundary (dbguard.masking). A JSON
    document was masked value by value as it was built (output._plain): masking its text again could
    cut through its quoting, so it goes out as it is. SQL for execution (``--sql``) is never masked:
    masked, it would still run and set a password to ``***``."""
    from dbguard import masking

    click.echo(text if json_document or for_execution else masking.active()(text), err=err, nl=nl,
               file=None if err else _document_out)


# Where stdout's text goes: the real stdout, or (in a machine format) a duplicate of it while fd 1
# itself points at stderr; see _keep_stdout_for_the_document.
_document_out: Any = None


@contextlib.contextmanager
def _keep_stdout_for_the_document(fmt: str) -> Any:
    """In a machine format (json, jsonl, github, junit, prometheus) stdout carries dbguard's document
    and nothing else: what env.py, the project it imports and the migrations write there (airflow's
    logging handler writes to stdout, its migrations print progress) goes to stderr, as a consumer
    piping stdout into a parser needs. Done on the file descriptor, not on ``sys.stdout``: a logging
    handler made before the command began, a child process or C code writes to fd 1 whatever
    ``sys.stdout`` is. Text is left as Alembic has it (people read both streams together). Only
    where fd 1 is this process's own stdout: under a test runner's captured ``sys.stdout`` nothing
    is moved."""
    global _document_out
    import os

    try:
        real = sys.stdout is not None and sys.stdout.fileno() == 1
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is an OSError
        real = False
    machine = fmt in ("json", "github", "junit", *output.STREAM_FORMATS, *output.METRICS_FORMATS)
    if not machine or not real:
        yield
        return
    sys.stdout.flush()
    saved = os.dup(1)
    document = os.fdopen(os.dup(saved), "w", encoding=sys.stdout.encoding, errors="replace", closefd=True)
    os.dup2(2, 1)
    _document_out = document
    try:
        yield
    finally:
        with contextlib.suppress(OSError, ValueError):
            sys.stdout.flush()  # what env.py left buffered for fd 1 still goes to stderr
        with contextlib.suppress(OSError, ValueError):
            document.flush()
        os.dup2(saved, 1)
        os.close(saved)
        _document_out = None
        with contextlib.suppress(OSError, ValueError):
            document.close()


def _emit(state: _State, result: Any) -> None:
    if getattr(result, "sets_password", False):
        say("dbguard: note: this SQL sets a password and is printed unmasked, for execution: keep it out of "
            "logs and tickets", err=True)
    sql = getattr(result, "sql", None)
    if sql:  # upgrade --sql: the SQL for execution, as Alembic rendered it
        say(sql, nl=False, for_execution=True)
    document = state.fmt in ("json", *output.STREAM_FORMATS)
    # Metrics are for a collector, not a person: -q keeps them, as it keeps a JSON document.
    machine = document or state.fmt in output.METRICS_FORMATS
    quiet_success = state.verbosity < 0 and not machine and int(result.exit_code) == 0
    text = "" if quiet_success else output.render(result, state.fmt)
    if text:
        say(text, json_document=document)
    sys.exit(int(result.exit_code))


def _progress(state: _State) -> Any:
    """Progress lines on stderr; none with -q."""
    if state.verbosity < 0:
        return lambda line: None
    return lambda line: say(f"dbguard: {line}", err=True)


def _confirm_with(token: str | None) -> Any:
    """The CLI side of the risk confirmation: show the blast radius, then read the token."""

    def confirm(prompt: Any) -> str | None:
        say(output.render_prompt(prompt), err=True)
        if token is not None:
            return token
        if sys.stdin.isatty():
            return click.prompt("confirmation", default="", show_default=False, err=True)
        say(f"dbguard: no terminal attached: pass --confirm-risk {prompt.token} to proceed", err=True)
        return None

    return confirm


@click.group(context_settings=CONTEXT)
@click.version_option(__version__, prog_name="dbguard")
@click.option("-c", "--config", "config_path", type=click.Path(dir_okay=False), envvar="DBGUARD_CONFIG",
              help="alembic.ini to use (default ./alembic.ini).")
@click.option("-n", "--name", "ini_section", default=None, help="Section of alembic.ini to use (default alembic).")
@click.option("-x", "x_args", multiple=True, metavar="KEY=VALUE", help="Passed to env.py as Alembic's -x.")
@click.option("--url", default=None, envvar="DBGUARD_URL", help="Database URL; overrides sqlalchemy.url.")
@click.option("--format", "fmt", type=click.Choice(output.FORMATS), default="text", show_default=True,
              help="text or json for every command; github and junit for drift and plan; jsonl (one JSON event "
                   "per line) for fleet commands and locks (one snapshot per line); prometheus (metrics in the "
                   "text exposition format) for status and fleet status.")
@click.option("-v", "--verbose", count=True,
              help="Tracebacks of unexpected errors and dbguard's debug log on stderr.")
@click.option("-q", "--quiet", count=True,
              help="Errors only: no progress lines, and no text report when the command succeeds.")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None, ini_section: str | None, x_args: tuple[str, ...],
        url: str | None, fmt: str, verbose: int, quiet: int) -> None:
    """dbguard: a guardian around Alembic migrations.

    It records every run in a ledger in the target database, refuses to build on a failed run,
    holds a run lock the server frees when its holder dies, and bounds every lock wait.
    """
    flags = {"config_path": config_path, "ini_section": ini_section, "x_args": x_args or None, "url": url}
    ctx.obj = _State(flags, fmt, verbose - quiet)
    offered = ", ".join(output.formats_for(ctx.invoked_subcommand)) if ctx.invoked_subcommand else "text, json"
    if fmt in output.CI_FORMATS and ctx.invoked_subcommand not in output.CI_COMMANDS:
        raise click.UsageError(f"--format {fmt} is for {', '.join(output.CI_COMMANDS)} only; "
                               f"{ctx.invoked_subcommand or 'this command'} supports {offered}")
    if fmt in output.STREAM_FORMATS and ctx.invoked_subcommand not in output.STREAM_COMMANDS:
        raise click.UsageError(f"--format {fmt} streams progress events of fleet commands and snapshots of locks "
                               f"only; {ctx.invoked_subcommand or 'this command'} supports {offered}")
    if fmt in output.METRICS_FORMATS and ctx.invoked_subcommand not in ("status", "fleet"):
        raise click.UsageError(f"--format {fmt} is for status and fleet status only; "
                               f"{ctx.invoked_subcommand or 'this command'} supports {offered}")
    if ctx.invoked_subcommand == "fleet":
        # Each target's alembic.ini and URL come from the fleet file: a -c or --url typed here would
        # otherwise be silently ignored (set in the environment, they are just not used).
        typed = [flag for flag, name in (("-c/--config", "config_path"), ("--url", "url"))
                 if ctx.get_parameter_source(name) is click.core.ParameterSource.COMMANDLINE]
        if typed:
            verb = "do" if len(typed) > 1 else "does"
            raise click.UsageError(f"{' and '.join(typed)} {verb} not apply to fleet commands: each target's "
                                   "alembic.ini and URL come from the fleet file")


class _RevisionCommand(click.Command):
    """Takes ``-1``, ``-2`` as the revision, as Alembic does (relative to the current revision): no
    option of dbguard is a dash and digits, so such a word is the argument, wherever it stands."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if "--" in args:
            return super().parse_args(ctx, args)
        taking_values = {name for p in self.params if isinstance(p, click.Option) and not p.is_flag
                         for name in p.opts}
        kept: list[str] = []
        relative: list[str] = []
        for i, arg in enumerate(args):
            is_value = i > 0 and args[i - 1] in taking_values
            (relative if arg[:1] == "-" and arg[1:].isdigit() and not is_value else kept).append(arg)
        return super().parse_args(ctx, kept + ["--", *relative] if relative else kept)


def _run_options(fn: Any) -> Any:
    fn = click.option("--wait-lock", type=_Seconds(), default=None, metavar="SECONDS",
                      help="Wait this long for the run lock instead of exiting 4 at once.")(fn)
    fn = click.option("--lock-timeout", "lock_timeout_ms", type=int, default=None, metavar="MS",
                      help="Longest wait for a lock per statement (default 2000).")(fn)
    fn = click.option("--statement-timeout", "statement_timeout_ms", type=int, default=None, metavar="MS",
                      help="Longest run per statement; 0 leaves the server's setting (default 3600000).")(fn)
    fn = click.option("--lock-retries", type=int, default=None, metavar="N",
                      help="Tries again after a lock timeout when nothing of the step was committed (default 5).")(fn)
    fn = click.option("--force", is_flag=True, help="Proceed although the breaker is open (asks for CONFIRM_RISK).")(fn)
    fn = click.option("--confirm-risk", default=None, metavar="TOKEN",
                      help="The risk confirmation where no terminal is attached: CONFIRM_RISK.")(fn)
    fn = click.option("--sql", is_flag=True, help="Print the SQL (Alembic offline mode); touch nothing.")(fn)
    return fn


@cli.command(cls=_RevisionCommand, context_settings=CONTEXT)
@click.argument("revision", default="head")
@_run_options
@click.option("--bake", "bake_s", type=_Seconds(), default=0, metavar="SECONDS",
              help="After the run succeeded, probe the target this long (health_sql, health_url, the lock queue "
                   "on its tables); a failing probe records the run FAILED (exit 5).")
@click.pass_obj
def upgrade(state: _State, revision: str, sql: bool, force: bool, confirm_risk: str | None,
            wait_lock: float | None, lock_timeout_ms: int | None, statement_timeout_ms: int | None,
            lock_retries: int | None, bake_s: float) -> None:
    """REVISION defaults to head (relative steps as in Alembic: +1)."""
    from dbguard import api

    settings = state.settings(wait_lock_s=wait_lock, lock_timeout_ms=lock_timeout_ms,
                              statement_timeout_ms=statement_timeout_ms, lock_retries=lock_retries)
    _emit(state, api.upgrade(settings, revision, sql=sql, force=force, confirm=_confirm_with(confirm_risk),
                             bake_s=bake_s))


@cli.command(cls=_RevisionCommand, context_settings=CONTEXT)
@click.argument("revision")
@_run_options
@click.pass_obj
def downgrade(state: _State, revision: str, sql: bool, force: bool, confirm_risk: str | None,
              wait_lock: float | None, lock_timeout_ms: int | None, statement_timeout_ms: int | None,
              lock_retries: int | None) -> None:
    """To REVISION (relative steps as in Alembic: -1); the emergency lane is `dbguard rollback`."""
    from dbguard import api

    settings = state.settings(wait_lock_s=wait_lock, lock_timeout_ms=lock_timeout_ms,
                              statement_timeout_ms=statement_timeout_ms, lock_retries=lock_retries)
    _emit(state, api.downgrade(settings, revision, sql=sql, force=force, confirm=_confirm_with(confirm_risk)))


@cli.command(context_settings=CONTEXT)
@click.pass_obj
def status(state: _State) -> None:
    """Exits 3 while the breaker is open (FAILED or UNKNOWN) and 4 while a run holds the run lock."""
    from dbguard import api

    _emit(state, api.status(state.settings(), metrics=state.fmt in output.METRICS_FORMATS))


@cli.command(context_settings=CONTEXT)
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True, help="How many runs to show.")
@click.pass_obj
def history(state: _State, limit: int) -> None:
    """Each step with its duration and the sha256 of its revision file."""
    from dbguard import api

    _emit(state, api.history(state.settings(), limit=limit))


@cli.command(context_settings=CONTEXT)
@click.option("--reason", required=True, help="What was repaired by hand, and how.")
@click.option("--revision", default=None, help="Also set alembic_version to this revision.")
@click.option("--accept-schema", is_flag=True,
              help="Store the live schema as the reference at these revisions instead of comparing with it.")
@click.option("--confirm-risk", default=None, metavar="TOKEN", help="CONFIRM_RISK, where no terminal is attached.")
@click.option("--wait-lock", type=_Seconds(), default=None, metavar="SECONDS",
              help="Wait this long for the run lock instead of exiting 4 at once.")
@click.pass_obj
def resolve(state: _State, reason: str, revision: str | None, accept_schema: bool, confirm_risk: str | None,
            wait_lock: float | None) -> None:
    """--accept-schema stores the live schema as the reference; --revision also sets alembic_version."""
    from dbguard import api

    settings = state.settings(wait_lock_s=wait_lock)
    _emit(state, api.resolve(settings, reason, revision, confirm=_confirm_with(confirm_risk),
                             accept_schema=accept_schema))


@cli.command(context_settings=CONTEXT)
@click.pass_obj
def current(state: _State) -> None:
    """Read only; takes no lock."""
    from dbguard import api

    _emit(state, api.current(state.settings()))


@cli.command(context_settings=CONTEXT)
@click.pass_obj
def heads(state: _State) -> None:
    """Needs no database."""
    from dbguard import api

    _emit(state, api.heads(state.settings()))


@cli.command(context_settings=CONTEXT)
@click.option("--against", default="models", show_default=True, metavar="models|migrations|FILE",
              help="Expected schema: env.py's target_metadata, the migrations replayed in a scratch "
                   "database, or a snapshot file written by `dbguard snapshot`.")
@click.option("--ignore", multiple=True, metavar="PATTERN",
              help="Never report objects matching this shell pattern (table, table.object); repeatable.")
@click.option("--shadow-url", default=None, metavar="URL", envvar="DBGUARD_SHADOW_URL",
              help="An empty database to replay migrations into (default: a temporary one, always dropped).")
@click.option("--baseline", "replay_baseline", default=None, metavar="SPEC",
              help="For a brownfield chain: the schema to create before replaying (module:attr of a MetaData or "
                   "callable, a schema-only .sql dump, or a snapshot .json). Setting: replay_baseline.")
@click.option("--baseline-revision", "replay_baseline_revision", default=None, metavar="REV",
              help="The revision the baseline stands for (default: before the first; a snapshot names its own).")
@click.pass_obj
def drift(state: _State, against: str, ignore: tuple[str, ...], shadow_url: str | None,
          replay_baseline: str | None, replay_baseline_revision: str | None) -> None:
    """Exits 0 when they match, 1 when drift is found, 2 when the check could not run.
    The ledger tables and alembic_version are never drift."""
    from dbguard import api

    settings = state.settings(replay_baseline=replay_baseline, replay_baseline_revision=replay_baseline_revision)
    _emit(state, api.drift(settings, against=against, ignore=ignore, shadow_url=shadow_url,
                           progress=_progress(state)))


@cli.command(cls=_RevisionCommand, context_settings=CONTEXT)
@click.argument("revision", default=None, required=False)
@click.option("--revision", "revision_option", default=None, metavar="REV",
              help="The same as REVISION (kept for scripts that name it).")
@click.option("-o", "--output", "output_path", default="-", show_default=True, metavar="FILE",
              help="Where to write the JSON; - is standard output.")
@click.option("--live", is_flag=True, help="Write the live database's schema instead of replaying.")
@click.option("--shadow-url", default=None, metavar="URL", envvar="DBGUARD_SHADOW_URL",
              help="An empty database to replay migrations into (default: a temporary one, always dropped).")
@click.option("--baseline", "replay_baseline", default=None, metavar="SPEC",
              help="For a brownfield chain: the schema to create before replaying (module:attr of a MetaData or "
                   "callable, a schema-only .sql dump, or a snapshot .json). Setting: replay_baseline.")
@click.option("--baseline-revision", "replay_baseline_revision", default=None, metavar="REV",
              help="The revision the baseline stands for (default: before the first; a snapshot names its own).")
@click.pass_obj
def snapshot(state: _State, revision: str | None, revision_option: str | None, output_path: str, live: bool,
             shadow_url: str | None, replay_baseline: str | None, replay_baseline_revision: str | None) -> None:
    """REVISION defaults to head; the file is for `drift --against FILE` in CI."""
    from dbguard import api

    if revision and revision_option and revision != revision_option:
        raise click.UsageError(f"REVISION {revision} and --revision {revision_option} disagree: give one")
    revision = revision or revision_option or "head"

    settings = state.settings(replay_baseline=replay_baseline, replay_baseline_revision=replay_baseline_revision)
    _emit(state, api.snapshot(settings, revision=revision, output=output_path, live=live,
                              shadow_url=shadow_url, progress=_progress(state)))


@cli.command(cls=_RevisionCommand, context_settings=CONTEXT)
@click.argument("revision", default="head")
@click.option("--offline", is_flag=True, help="No database: judge the SQL Alembic renders from --from REV.")
@click.option("--from", "from_revision", default=None, metavar="REV",
              help="With --offline: the revision the database is at (base for an empty one).")
@click.option("--fail-on", type=click.Choice(["info", "low", "medium", "high", "critical", "none"]), default=None,
              help="Exit 1 when a finding reaches this severity (default: the fail_on setting, high).")
@click.option("--observe", is_flag=True,
              help="PostgreSQL: also run the pending revisions in a scratch database and show the locks and "
                   "rewrites the server saw beside the prediction (a disagreement is DG116).")
@click.option("--shadow-url", default=None, metavar="URL", envvar="DBGUARD_SHADOW_URL",
              help="With --observe: an empty database to observe in (default: a temporary one on the same "
                   "server, always dropped; needed with --offline).")
@click.pass_obj
def plan(state: _State, revision: str, offline: bool, from_revision: str | None, fail_on: str | None,
         observe: bool, shadow_url: str | None) -> None:
    """Up to REVISION (default head). Exits 1 when a finding reaches --fail-on, 2 when it could not
    plan (or --observe could not make its scratch database). Formats: text, json, github, junit."""
    from dbguard import api

    _emit(state, api.plan(state.settings(), revision, offline=offline, from_revision=from_revision,
                          fail_on=fail_on, observe=observe, shadow_url=shadow_url if observe else None,
                          progress=_progress(state) if observe else None))


@cli.group(context_settings=CONTEXT, invoke_without_command=True)
@click.option("--table", default=None, metavar="TABLE", help="Only sessions waiting for this table and their blockers, and every session holding a lock on it.")
@click.option("--install-plugin", is_flag=True,
              help="MariaDB: install the metadata_lock_info plugin to see metadata locks (never done silently).")
@click.option("--fail-after", "fail_after_s", type=_Seconds(), default=0.0, show_default=True, metavar="SECONDS",
              help="Exit 1 when some session has waited for a lock longer than this (0: any waiter). With "
                   "--watch, Ctrl-C ends with 0 whatever was seen; each jsonl snapshot has its own exit_code.")
# Always with a value, so `locks --watch kill` is a usage error, never a watch that swallowed `kill`.
@click.option("--watch", "watch_s", type=_Seconds(0.1, high=86400), default=None, metavar="SECONDS",
              help="Show the tree again every SECONDS (at least 0.1) on one connection, until Ctrl-C (exit 0): "
                   "redrawn in place on a terminal, one snapshot after another on a pipe, one JSON line per "
                   "snapshot with --format jsonl.")
@_filter_options
@click.pass_context
def locks(ctx: click.Context, table: str | None, install_plugin: bool, fail_after_s: float, watch_s: float | None,
          **filters: Any) -> None:
    """For each session: id, user, application, client, database, state, transaction age, how long it
    has been idle in its transaction or running its statement, how long it has waited, how many
    sessions it blocks (directly and in all), the lock it holds or waits for and on which table, and
    its query. The filters narrow who is shown. Needs only the database URL."""
    state: _State = ctx.obj
    if ctx.invoked_subcommand is not None:
        if watch_s is not None:
            raise click.UsageError("--watch is for locks, not locks kill")
        if state.fmt in output.STREAM_FORMATS:
            raise click.UsageError(f"--format {state.fmt} is for locks, not locks kill: it supports text and json")
        ctx.meta["dbguard.install_plugin"] = install_plugin
        ctx.meta["dbguard.filters"] = {k: v for k, v in filters.items() if v is not None}
        return
    from dbguard import api

    if watch_s is not None and state.fmt not in ("text", *output.STREAM_FORMATS):
        raise click.UsageError(f"--watch prints text or jsonl (one JSON snapshot per line), not {state.fmt}")
    if watch_s is None and state.fmt not in output.STREAM_FORMATS:
        _emit(state, api.locks(state.settings(), table, install_plugin=install_plugin, fail_after_s=fail_after_s,
                               filters=_filters(filters)))
    snapshots = api.locks_watch(state.settings(), watch_s, table, install_plugin=install_plugin,
                                fail_after_s=fail_after_s, filters=_filters(filters))
    if watch_s is None:  # --format jsonl: one snapshot, one line, exit code as without it
        with contextlib.closing(snapshots):
            _emit(state, next(snapshots))
    _watch(state, snapshots)


def _watch(state: _State, snapshots: Any) -> None:
    """Each snapshot as it comes (say flushes it); Ctrl-C is how a watch ends: exit 0."""

    stream = state.fmt in output.STREAM_FORMATS
    in_place = not stream and (_document_out or sys.stdout).isatty()
    with contextlib.closing(snapshots):  # ends the session however the loop ends
        try:
            for snapshot in snapshots:
                say(output.render(snapshot, state.fmt) if stream else output.render_frame(snapshot, in_place),
                    json_document=stream)
        except Terminated:
            raise  # SIGTERM stops a watch as it stops any command: 130
        except KeyboardInterrupt:
            sys.exit(0)
        except BrokenPipeError:
            # The reader went away (`| head`): as normal an end of a watch as Ctrl-C. What is still
            # buffered goes nowhere, so the interpreter's last flush cannot fail again.
            import os

            os.dup2(os.open(os.devnull, os.O_WRONLY), (_document_out or sys.stdout).fileno())
            sys.exit(0)


@locks.command("kill", context_settings=CONTEXT)
@click.option("--pid", "pids", type=int, multiple=True, metavar="N", help="End this session (repeatable).")
@click.option("--blocking", default=None, metavar="TABLE", help="End the root blockers of this table.")
@click.option("--holding", default=None, metavar="TABLE",
              help="End every session holding a lock on this table, waited for or not (a DDL would wait for it).")
@click.option("--roots", is_flag=True, help="End every root blocker of the database.")
@click.option("--min-age", "min_age_s", type=_Seconds(), default=None, metavar="SECONDS",
              help="Only sessions whose transaction is older than this.")
@click.option("--dry-run", is_flag=True, help="Show who would be ended; end nobody.")
@click.option("--confirm-risk", default=None, metavar="TOKEN", help="CONFIRM_RISK, where no terminal is attached.")
@click.option("--install-plugin", is_flag=True, help="MariaDB: install the metadata_lock_info plugin first.")
@click.option("--reason", default=None, metavar="TEXT",
              help="Why, stored in each session's audit record (default: this command line, masked).")
@_filter_options
@click.pass_context
def locks_kill(ctx: click.Context, pids: tuple[int, ...], blocking: str | None, holding: str | None, roots: bool,
               min_age_s: float | None, dry_run: bool, confirm_risk: str | None, install_plugin: bool,
               reason: str | None, **filters: Any) -> None:
    """Idle transactions are terminated; running statements are cancelled, then terminated if they
    still hold the lock after kill_grace_ms. Never dbguard's own sessions, other databases',
    replication or background workers, or protected roles and applications. The filters narrow
    the chosen sessions (one named by --pid that fails them is refused); the kill policy still decides.
    """
    from dbguard import api

    state: _State = ctx.obj
    install_plugin = install_plugin or bool(ctx.meta.get("dbguard.install_plugin"))
    command_line = shlex.join(_COMMAND_LINE or ["dbguard", *sys.argv[1:]])
    _emit(state, api.locks_kill(state.settings(), pids=pids, blocking=blocking, roots=roots, min_age_s=min_age_s,
                                dry_run=dry_run, install_plugin=install_plugin, confirm=_confirm_with(confirm_risk),
                                reason=reason or command_line, holding=holding,
                                filters=_filters(filters, ctx.meta.get("dbguard.filters"))))


def _yes_with(assume_yes: bool, quiet: bool = False) -> Any:
    """The CLI side of the rollback's plain confirmation: show the plan, then ask for a yes (with
    --yes and -q nobody reads the plan: errors only)."""

    def confirm(prompt: Any) -> str | None:
        if not (assume_yes and quiet):
            say(output.render_plan(prompt), err=True)
        if assume_yes:
            return str(prompt.token)
        if sys.stdin.isatty():
            return str(prompt.token) if click.confirm("roll back now?", default=False, err=True) else None
        say("dbguard: no terminal attached: pass --yes to roll back", err=True)
        return None

    return confirm


@cli.command(context_settings=CONTEXT)
@click.option("--to", "to_revision", default=None, metavar="REV",
              help="Revision to return to (default: the last known-good one from the ledger).")
@click.option("--yes", "assume_yes", is_flag=True, help="Answer yes to the confirmation (for scripts).")
@click.option("--kill-blockers/--no-kill-blockers", default=True, show_default=True,
              help="End the sessions whose locks block the rollback (policy and audit apply).")
@click.option("--budget", "budget_s", type=_Seconds(1), default=None, metavar="SECONDS",
              help="Keep clearing blockers and retrying for this long (default 60).")
@click.option("--wait-lock", type=_Seconds(), default=None, metavar="SECONDS",
              help="Wait this long for the run lock instead of exiting 4 at once.")
@click.option("--lock-timeout", "lock_timeout_ms", type=int, default=None, metavar="MS",
              help="Longest wait for a lock per rollback statement (default 2000).")
@click.option("--install-plugin", is_flag=True,
              help="MariaDB: install the metadata_lock_info plugin so blockers are found exactly.")
@click.pass_obj
def rollback(state: _State, to_revision: str | None, assume_yes: bool, kill_blockers: bool,
             budget_s: float | None, wait_lock: float | None, lock_timeout_ms: int | None,
             install_plugin: bool) -> None:
    """Clears blocking sessions on the way. Asks for a plain yes at a terminal; --yes answers for
    scripts."""
    from dbguard import api

    settings = state.settings(rollback_budget_s=budget_s, wait_lock_s=wait_lock, lock_timeout_ms=lock_timeout_ms)
    _emit(state, api.rollback(settings, to_revision, kill_blockers=kill_blockers, confirm=_yes_with(assume_yes, state.verbosity < 0),
                              install_plugin=install_plugin))


# fleets -------------------------------------------------------------------------------------------


def _fleet_flags(state: _State, **more: Any) -> dict[str, Any]:
    """Settings every target of the fleet gets (its own alembic.ini and URL come from the fleet file)."""
    flags = {k: state.flags.get(k) for k in ("ini_section", "x_args")}
    flags.update(more)
    return {k: v for k, v in flags.items() if v is not None}


def _fleet_progress(state: _State) -> Any:
    """Events as JSON lines on stdout (--format jsonl), else a live progress line on stderr."""
    if state.fmt in output.STREAM_FORMATS:
        return lambda event: say(output.render_event(event), json_document=True)
    printer = output.FleetProgress(sys.stderr.isatty())

    def show(event: dict[str, Any]) -> None:
        line = printer(event)
        if line is not None:
            say(line, err=True, nl=not line.startswith("\r"))

    return show


def _control_option(fn: Any) -> Any:
    return click.option("--control-url", default=None, envvar="DBGUARD_FLEET_CONTROL_URL", metavar="URL",
                        help="The control database (fleet ledger and lock); default: a SQLite file next to the "
                             "fleet file, or [fleet] control_url. PostgreSQL to deploy from several machines.")(fn)


@cli.group(context_settings=CONTEXT)
@click.pass_context
def fleet(ctx: click.Context) -> None:
    """Batched rollouts across a fleet of databases (a TOML fleet file): canary first, each batch
    pre-flighted, run in parallel processes and verified; the first failure stops every later batch.

    Exit codes as everywhere: 3 refused (the fleet's breaker is open), 4 busy (another fleet run
    holds the fleet lock), 5 a target failed. --format jsonl streams one JSON event per line.
    """
    fmt = ctx.obj.fmt
    if fmt in output.METRICS_FORMATS and ctx.invoked_subcommand != "status":
        raise click.UsageError(f"--format {fmt} is for status and fleet status only; "
                               f"fleet {ctx.invoked_subcommand or ''} supports text, json and jsonl")


@fleet.command("validate", context_settings=CONTEXT)
@click.argument("fleet_file", type=click.Path(dir_okay=False))
@click.option("--batches", default=None, metavar="SPEC", help="Show the batches of this --batches value.")
@click.option("--partial-rollout", is_flag=True, help="Batches may stop short of the whole fleet.")
@_control_option
@click.pass_obj
def fleet_validate(state: _State, fleet_file: str, batches: str | None, partial_rollout: bool,
                   control_url: str | None) -> None:
    """FLEET_FILE is the TOML fleet file; --batches shows how a --batches value splits it."""
    from dbguard import api

    _emit(state, api.fleet_validate(fleet_file, control_url=control_url, batches=batches, flags=_fleet_flags(state),
                                    partial_rollout=partial_rollout))


@fleet.command("upgrade", context_settings=CONTEXT)
@click.argument("fleet_file", type=click.Path(dir_okay=False))
@click.argument("revision", default="head")
@click.option("--batches", default=None, metavar="SPEC",
              help="Cumulative targets per batch, e.g. 1,10%,50%,100% or tag:canary,tag:eu,100% "
                   "(default: [fleet] batches, else 1,100%). canary-tagged targets go first.")
@click.option("--parallel", type=click.IntRange(min=1), default=4, show_default=True,
              help="Targets migrated at once (worker processes, so also connections).")
@click.option("--bake", "bake_s", type=_Seconds(), default=0, metavar="SECONDS",
              help="Watch each verified batch this long before the next: its targets probed every probe_interval_s "
                   "and once at the end (health_sql, health_url, the lock queue); a failing probe fails the fleet.")
@click.option("--distributed", is_flag=True,
              help="Publish each batch for `dbguard fleet worker` processes (PostgreSQL control database).")
@click.option("--worker-timeout", "worker_timeout_s", type=_Seconds(0, open_low=True), default=None,
              envvar="DBGUARD_FLEET_WORKER_TIMEOUT_S", metavar="SECONDS",
              help="--distributed: fail a batch no worker claims anything of for this long "
                   "(default: [fleet] worker_timeout_s, else 300).")
@click.option("--wait-lock", type=_Seconds(), default=None, metavar="SECONDS",
              help="Wait this long for the fleet lock instead of exiting 4 at once.")
@click.option("--lock-timeout", "lock_timeout_ms", type=int, default=None, metavar="MS",
              help="Each target: longest wait for a lock per statement (default 2000).")
@click.option("--statement-timeout", "statement_timeout_ms", type=int, default=None, metavar="MS",
              help="Each target: longest run per statement; 0 leaves the server's setting (default 3600000).")
@click.option("--lock-retries", type=int, default=None, metavar="N",
              help="Each target: tries again after a lock timeout when nothing of the step was committed.")
@click.option("--force", is_flag=True, help="Proceed although the fleet's breaker is open (asks for CONFIRM_RISK).")
@click.option("--confirm-risk", default=None, metavar="TOKEN", help="CONFIRM_RISK, where no terminal is attached.")
@click.option("--partial-rollout", is_flag=True,
              help="Batches may stop short of the whole fleet: the other targets stay at their revisions.")
@_control_option
@click.pass_obj
def fleet_upgrade(state: _State, fleet_file: str, revision: str, batches: str | None, parallel: int, bake_s: float,
                  distributed: bool, worker_timeout_s: float | None, wait_lock: float | None,
                  lock_timeout_ms: int | None, statement_timeout_ms: int | None, lock_retries: int | None, force: bool,
                  confirm_risk: str | None, partial_rollout: bool, control_url: str | None) -> None:
    """To REVISION (default head); --distributed hands the batches to `dbguard fleet worker` processes."""
    from dbguard import api

    flags = _fleet_flags(state, lock_timeout_ms=lock_timeout_ms, statement_timeout_ms=statement_timeout_ms,
                         lock_retries=lock_retries)
    _emit(state, api.fleet_upgrade(fleet_file, revision, batches=batches, parallel=parallel, bake_s=bake_s,
                                   force=force, confirm=_confirm_with(confirm_risk), wait_lock_s=wait_lock or 0.0,
                                   distributed=distributed, control_url=control_url, flags=flags,
                                   progress=_fleet_progress(state), worker_timeout_s=worker_timeout_s,
                                   partial_rollout=partial_rollout))


@fleet.command("status", context_settings=CONTEXT)
@click.argument("fleet_file", type=click.Path(dir_okay=False))
@_control_option
@click.pass_obj
def fleet_status(state: _State, fleet_file: str, control_url: str | None) -> None:
    """Exits 3 while the fleet's breaker is open (FAILED or UNKNOWN) and 4 while a fleet run holds its
    lock."""
    from dbguard import api

    _emit(state, api.fleet_status(fleet_file, control_url=control_url, flags=_fleet_flags(state)))


@fleet.command("rollback", context_settings=CONTEXT)
@click.argument("fleet_file", type=click.Path(dir_okay=False))
@click.option("--all-upgraded", is_flag=True, help="Also every target the fleet run upgraded, not only the broken ones.")
@click.option("--yes", "assume_yes", is_flag=True, help="Answer yes to the confirmation (for scripts).")
@click.option("--parallel", type=click.IntRange(min=1), default=4, show_default=True,
              help="Targets rolled back at once (worker processes, so also connections).")
@click.option("--wait-lock", type=_Seconds(), default=None, metavar="SECONDS",
              help="Wait this long for the fleet lock instead of exiting 4 at once.")
@_control_option
@click.pass_obj
def fleet_rollback(state: _State, fleet_file: str, all_upgraded: bool, assume_yes: bool, parallel: int,
                   wait_lock: float | None, control_url: str | None) -> None:
    """--all-upgraded takes every target the fleet run upgraded; the fleet is HEALTHY again after."""
    from dbguard import api

    _emit(state, api.fleet_rollback(fleet_file, all_upgraded=all_upgraded, confirm=_yes_with(assume_yes, state.verbosity < 0),
                                    parallel=parallel, wait_lock_s=wait_lock or 0.0, control_url=control_url,
                                    flags=_fleet_flags(state), progress=_fleet_progress(state)))


@fleet.command("resolve", context_settings=CONTEXT)
@click.argument("fleet_file", type=click.Path(dir_okay=False))
@click.option("--reason", required=True, help="What was repaired by hand, and how.")
@click.option("--confirm-risk", default=None, metavar="TOKEN", help="CONFIRM_RISK, where no terminal is attached.")
@click.option("--wait-lock", type=_Seconds(), default=None, metavar="SECONDS",
              help="Wait this long for the fleet lock instead of exiting 4 at once.")
@_control_option
@click.pass_obj
def fleet_resolve(state: _State, fleet_file: str, reason: str, confirm_risk: str | None, wait_lock: float | None,
                  control_url: str | None) -> None:
    """Each target keeps its own state: `dbguard resolve` or `rollback` on it."""
    from dbguard import api

    _emit(state, api.fleet_resolve(fleet_file, reason, confirm=_confirm_with(confirm_risk), control_url=control_url,
                                   wait_lock_s=wait_lock or 0.0))


@fleet.command("worker", context_settings=CONTEXT)
@click.argument("fleet_file", type=click.Path(dir_okay=False), required=False)
@click.option("--control-url", required=True, envvar="DBGUARD_FLEET_CONTROL_URL", metavar="URL",
              help="The PostgreSQL control database of the distributed rollout.")
@click.option("--once", is_flag=True, help="Exit when the fleet run this worker took part in is over.")
@click.option("--poll", "poll_s", type=_Seconds(0.01), default=0.2, show_default=True, metavar="SECONDS",
              help="How often to look for a published batch.")
@click.pass_obj
def fleet_worker(state: _State, fleet_file: str | None, control_url: str, once: bool, poll_s: float) -> None:
    """FLEET_FILE gives the targets' URLs (credentials from this machine's environment); without it, the
    path the coordinator recorded is used.
    """
    from dbguard import api

    _emit(state, api.fleet_worker(control_url, fleet_file, once=once, poll_s=poll_s, flags=_fleet_flags(state),
                                  progress=_fleet_progress(state)))


def _on_sigterm(signum: int, frame: Any) -> None:
    # A deployer stopping us politely gets the run recorded as failed instead of left UNKNOWN.
    from dbguard.errors import Terminated

    raise Terminated


_VERBOSITY_FLAGS = {"-v": 1, "-vv": 2, "-vvv": 3, "--verbose": 1, "-q": -1, "-qq": -2, "--quiet": -1}


def _taking_values(command: click.Command) -> set[str]:
    """Every option name of ``command`` and its subcommands that takes a value."""
    names = {n for p in command.params if isinstance(p, click.Option) and not p.is_flag and not p.count
             for n in p.opts}
    for sub in getattr(command, "commands", {}).values():
        names |= _taking_values(sub)
    return names


def _hoist_verbosity(argv: list[str]) -> list[str]:
    """``dbguard status -v`` means ``dbguard -v status``: people type the verbosity flags both ways
    (``--format`` is an option of every command as well, with that command's choices)."""
    args, hoisted = [], []
    values = _taking_values(cli)
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            args.extend(argv[i:])
            break
        if arg in values and i + 1 < len(argv):  # an option and its value, whatever the value looks like
            args += argv[i:i + 2]
            i += 2
            continue
        if arg in _VERBOSITY_FLAGS:
            hoisted.append(arg)
        else:
            args.append(arg)
        i += 1
    return hoisted + args


def _requested_verbosity(argv: list[str]) -> int:
    """-v and -q of a hoisted command line, read without click (errors of parsing count too)."""
    level, i = 0, 0
    while i < len(argv) and (argv[i] in _VERBOSITY_FLAGS or argv[i].startswith("--format")):
        level += _VERBOSITY_FLAGS.get(argv[i], 0)
        i += 2 if argv[i] == "--format" else 1
    return level


def _requested_format(argv: list[str]) -> str:
    """The --format of the command line (hoisted first), read without click: errors of parsing
    itself must be rendered in it too."""
    for i, arg in enumerate(argv):
        if arg == "--":
            break
        if arg == "--format" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--format="):
            return arg.split("=", 1)[1]
    return "text"


def _fail(message: str, exit_code: int, fmt: str, stderr_text: str | None = None) -> None:
    """An error: one line on stderr, and in the json formats one document on stdout as well."""
    say(stderr_text if stderr_text is not None else output.render_error(message), err=True)
    document = output.render_error_document(message, exit_code, fmt)
    if document is not None:
        say(document, json_document=True)
    sys.exit(exit_code)


def _mask_log_records() -> None:
    """Every log record of this process (dbguard's, Alembic's, SQLAlchemy's, env.py's) is masked as
    it is made: handlers come and go (env.py's fileConfig), the record factory stays."""
    from dbguard import masking

    make = logging.getLogRecordFactory()

    def masked_record(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = make(*args, **kwargs)
        with contextlib.suppress(Exception):  # a record whose message cannot be built is left to logging
            mask = masking.active()
            text = record.getMessage()
            masked = mask(text)
            if masked != text:
                record.msg, record.args = masked, ()
            # A logged exception's traceback is formatted later by a handler, which uses exc_text when
            # it is set: set it now, masked (an exception message may quote a URL or a password).
            if record.exc_info and not record.exc_text:
                record.exc_text = mask(logging.Formatter().formatException(record.exc_info))
            if record.stack_info:
                record.stack_info = mask(record.stack_info)
        return record

    logging.setLogRecordFactory(masked_record)


def _debug_log_to_stderr() -> None:
    """-v: dbguard's own debug log on stderr (masked, as every record of this process)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("dbguard: debug: %(name)s: %(message)s"))
    logger = logging.getLogger("dbguard")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logging.setLoggerClass(_StaysOn)


class _StaysOn(logging.Logger):
    """env.py's ``logging.config.fileConfig()`` disables every logger its file does not name; with -v,
    dbguard's own stay on (the loggers are made after this class is set: dbguard imports lazily)."""

    def isEnabledFor(self, level: int) -> bool:
        if self.disabled and self.name.startswith("dbguard"):
            self.disabled = False
        return super().isEnabledFor(level)


def _use_command_format(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value is not None:
        ctx.ensure_object(_State).fmt = value


def _add_command_formats(group: click.Group, family: str | None = None) -> None:
    """Every command's own ``--format``, offering what that command prints; typed after the
    command, it stands for the global one (checked in ``cli`` against the same choices)."""
    for name, command in group.commands.items():
        top = family or name
        if isinstance(command, click.Group):
            _add_command_formats(command, top)
        choices = output.formats_for(top, name if family else None)
        command.params.append(click.Option(
            ["--format", "command_format"], type=click.Choice(choices), default=None, expose_value=False,
            callback=_use_command_format, help=f"Output format: {', '.join(choices)}."))


_add_command_formats(cli)


# The command line main() was given, as typed: the default --reason of an audited kill.
_COMMAND_LINE: list[str] = []


def main(argv: list[str] | None = None) -> None:
    dbguard.OWNS_PROCESS = True  # this process ends with the command: its heap may be frozen
    from dbguard import masking

    masking.activate(masking.Masker())
    _mask_log_records()
    signal.signal(signal.SIGTERM, _on_sigterm)
    # A job a shell started in the background inherits SIGINT ignored, and Python keeps it so; a CI
    # runner cancelling a deploy that way must still stop it cleanly (the run recorded, its statement
    # cancelled).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    argv = list(sys.argv[1:] if argv is None else argv)
    _COMMAND_LINE[:] = ["dbguard", *argv]
    argv = _hoist_verbosity(argv)
    verbosity = _requested_verbosity(argv)
    verbose = verbosity > 0
    if verbose:
        _debug_log_to_stderr()
    elif verbosity < 0:  # -q: errors only, Alembic's and env.py's log lines included
        logging.disable(logging.WARNING)
    fmt = _requested_format(argv)
    # --help and --version print to stdout whatever the format: nothing of env.py can run with them.
    asks = {"--help", "-h", "--version"} & set(argv)
    with _keep_stdout_for_the_document("text" if asks else fmt):
        _main(argv, fmt, verbose)


def _main(argv: list[str], fmt: str, verbose: bool) -> None:
    try:
        cli.main(args=argv, prog_name="dbguard", standalone_mode=False)
    except DbguardError as exc:
        if verbose and exc.__cause__ is not None:  # an internal error behind it: its traceback, masked
            import traceback

            say("".join(traceback.format_exception(exc.__cause__)).rstrip("\n"), err=True)
        _fail(exc.message, int(exc.exit_code), fmt)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        # One line, as every other error: the usage block click would print buries the reason.
        context = getattr(exc, "ctx", None)
        hint = f" (see `{context.command_path} --help`)" if isinstance(exc, click.UsageError) and context else ""
        _fail(exc.format_message() + hint, int(ExitCode.USAGE), fmt)
    except click.exceptions.Abort as exc:
        # click turns Ctrl-C and SIGTERM (Terminated) into Abort too: say which stopped the command.
        cause = exc.__cause__
        why = "terminated" if isinstance(cause, Terminated) else \
            "interrupted" if isinstance(cause, KeyboardInterrupt) else "aborted"
        _fail(why, 130, fmt, stderr_text=f"dbguard: {why}")
    except KeyboardInterrupt:
        _fail("interrupted", 130, fmt, stderr_text="dbguard: interrupted")
    except Exception as exc:  # noqa: BLE001 - one masked line; the traceback with -v
        from dbguard.db.connect import first_line
        from dbguard.errors import is_internal
        from dbguard.masking import mask

        if verbose:
            import traceback  # only here: every command would pay for importing it

            say(traceback.format_exc().rstrip("\n"), err=True)
        orig = getattr(exc, "orig", None) or exc
        # A database error that escaped is the database's answer; anything else is dbguard's own fault.
        kind = "internal error: " if is_internal(exc) else ""
        hint = "" if verbose or not kind else " (-v shows the traceback)"
        _fail(f"{kind}{type(orig).__name__}: {mask(first_line(exc))}{hint}", int(ExitCode.USAGE), fmt)
    finally:
        # The process ends here: without this, the interpreter's last collection walks the whole
        # heap (SQLAlchemy, Alembic, the models) once more on the way out, 50-150 ms.
        gc.freeze()


def _api_summary(fn: Any) -> str:
    """The first paragraph of an API function's docstring: the one description of what a command does."""
    return " ".join(inspect.cleandoc(fn.__doc__ or "").split("\n\n")[0].replace("``", "`").split())


def _describe_commands() -> None:
    """Each command's help: its API function's summary, then what only the command line has."""
    from dbguard import api

    commands = {upgrade: api.upgrade, downgrade: api.downgrade, status: api.status, history: api.history,
                resolve: api.resolve, current: api.current, heads: api.heads, drift: api.drift,
                snapshot: api.snapshot, plan: api.plan, locks: api.locks, locks_kill: api.locks_kill,
                rollback: api.rollback, fleet_validate: api.fleet_validate, fleet_upgrade: api.fleet_upgrade,
                fleet_status: api.fleet_status, fleet_rollback: api.fleet_rollback,
                fleet_resolve: api.fleet_resolve, fleet_worker: api.fleet_worker}
    for command, fn in commands.items():
        own = inspect.cleandoc(command.help or "")
        command.help = f"{_api_summary(fn)}\n\n{own}" if own else _api_summary(fn)


_describe_commands()


if __name__ == "__main__":
    main()
