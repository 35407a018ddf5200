"""The command line: parse options, call dbguard.api, render, exit. The only sys.exit."""

from __future__ import annotations

import signal
import sys
import traceback
from typing import Any

import click

from dbguard import __version__, output
from dbguard.errors import DbguardError, ExitCode

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class _State:
    def __init__(self, flags: dict[str, Any], fmt: str, verbosity: int) -> None:
        self.flags, self.fmt, self.verbosity = flags, fmt, verbosity

    def settings(self, **more: Any) -> Any:
        from dbguard.settings import load_settings

        return load_settings({**self.flags, **{k: v for k, v in more.items() if v is not None}})


def _emit(state: _State, result: Any) -> None:
    text = output.render(result, state.fmt)
    if text:
        click.echo(text)
    sys.exit(int(result.exit_code))


def _confirm_with(token: str | None) -> Any:
    """The CLI side of the risk confirmation: show the blast radius, then read the token."""

    def confirm(prompt: Any) -> str | None:
        click.echo(output.render_prompt(prompt), err=True)
        if token is not None:
            return token
        if sys.stdin.isatty():
            return click.prompt("confirmation", default="", show_default=False, err=True)
        click.echo(f"dbguard: no terminal attached: pass --confirm-risk {prompt.token} to proceed", err=True)
        return None

    return confirm


@click.group(context_settings=CONTEXT)
@click.version_option(__version__, prog_name="dbguard")
@click.option("-c", "--config", "config_path", type=click.Path(dir_okay=False), envvar="DBGUARD_CONFIG",
              help="alembic.ini to use (default ./alembic.ini).")
@click.option("-n", "--name", "ini_section", default=None, help="Section of alembic.ini to use (default alembic).")
@click.option("-x", "x_args", multiple=True, metavar="KEY=VALUE", help="Passed to env.py as Alembic's -x.")
@click.option("--url", default=None, envvar="DBGUARD_URL", help="Database URL; overrides sqlalchemy.url.")
@click.option("--format", "fmt", type=click.Choice(output.FORMATS), default="text", show_default=True)
@click.option("-v", "--verbose", count=True, help="More detail; -vv shows tracebacks of unexpected errors.")
@click.option("-q", "--quiet", count=True, help="Less detail.")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None, ini_section: str | None, x_args: tuple[str, ...],
        url: str | None, fmt: str, verbose: int, quiet: int) -> None:
    """dbguard: a guardian around Alembic migrations.

    It records every run in a ledger in the target database, refuses to build on a failed run,
    holds a run lock the server frees when its holder dies, and bounds every lock wait.
    """
    flags = {"config_path": config_path, "ini_section": ini_section, "x_args": x_args or None, "url": url,
             "output_format": fmt, "verbosity": verbose - quiet}
    ctx.obj = _State(flags, fmt, verbose - quiet)


def _run_options(fn: Any) -> Any:
    fn = click.option("--wait-lock", type=float, default=None, metavar="SECONDS",
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


@cli.command(context_settings=CONTEXT)
@click.argument("revision", default="head")
@_run_options
@click.pass_obj
def upgrade(state: _State, revision: str, sql: bool, force: bool, confirm_risk: str | None,
            wait_lock: float | None, lock_timeout_ms: int | None, statement_timeout_ms: int | None,
            lock_retries: int | None) -> None:
    """Guarded upgrade to REVISION (default head)."""
    from dbguard import api

    settings = state.settings(wait_lock_s=wait_lock, lock_timeout_ms=lock_timeout_ms,
                              statement_timeout_ms=statement_timeout_ms, lock_retries=lock_retries)
    _emit(state, api.upgrade(settings, revision, sql=sql, force=force, confirm=_confirm_with(confirm_risk)))


@cli.command(context_settings=CONTEXT)
@click.argument("revision")
@_run_options
@click.pass_obj
def downgrade(state: _State, revision: str, sql: bool, force: bool, confirm_risk: str | None,
              wait_lock: float | None, lock_timeout_ms: int | None, statement_timeout_ms: int | None,
              lock_retries: int | None) -> None:
    """Guarded, planned downgrade to REVISION (not the emergency lane)."""
    from dbguard import api

    settings = state.settings(wait_lock_s=wait_lock, lock_timeout_ms=lock_timeout_ms,
                              statement_timeout_ms=statement_timeout_ms, lock_retries=lock_retries)
    _emit(state, api.downgrade(settings, revision, sql=sql, force=force, confirm=_confirm_with(confirm_risk)))


@cli.command(context_settings=CONTEXT)
@click.pass_obj
def status(state: _State) -> None:
    """State, current revisions, the last run and why the breaker is open.

    Exits 3 while the breaker is open (FAILED or UNKNOWN) and 4 while a run holds the run lock.
    """
    from dbguard import api

    _emit(state, api.status(state.settings()))


@cli.command(context_settings=CONTEXT)
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True)
@click.pass_obj
def history(state: _State, limit: int) -> None:
    """The ledger's runs, newest first, with their steps."""
    from dbguard import api

    _emit(state, api.history(state.settings(), limit=limit))


@cli.command(context_settings=CONTEXT)
@click.option("--reason", required=True, help="What was repaired by hand, and how.")
@click.option("--revision", default=None, help="Also set alembic_version to this revision.")
@click.option("--confirm-risk", default=None, metavar="TOKEN", help="CONFIRM_RISK, where no terminal is attached.")
@click.option("--wait-lock", type=float, default=None, metavar="SECONDS")
@click.pass_obj
def resolve(state: _State, reason: str, revision: str | None, confirm_risk: str | None,
            wait_lock: float | None) -> None:
    """Mark a FAILED/UNKNOWN run as repaired by hand (after the typed confirmation)."""
    from dbguard import api

    settings = state.settings(wait_lock_s=wait_lock)
    _emit(state, api.resolve(settings, reason, revision, confirm=_confirm_with(confirm_risk)))


@cli.command(context_settings=CONTEXT)
@click.pass_obj
def current(state: _State) -> None:
    """The revisions the database is at."""
    from dbguard import api

    _emit(state, api.current(state.settings()))


@cli.command(context_settings=CONTEXT)
@click.pass_obj
def heads(state: _State) -> None:
    """The head revisions of the scripts."""
    from dbguard import api

    _emit(state, api.heads(state.settings()))


def _on_sigterm(signum: int, frame: Any) -> None:
    # A deployer stopping us politely gets the run recorded as failed instead of left UNKNOWN.
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> None:
    signal.signal(signal.SIGTERM, _on_sigterm)
    verbose = "-vv" in (argv or sys.argv) or "--verbose" in (argv or sys.argv)
    try:
        cli.main(args=argv, prog_name="dbguard", standalone_mode=False)
    except DbguardError as exc:
        click.echo(output.render_error(exc.message), err=True)
        sys.exit(int(exc.exit_code))
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(int(ExitCode.USAGE))
    except click.exceptions.Abort:
        click.echo("dbguard: aborted", err=True)
        sys.exit(130)
    except KeyboardInterrupt:
        click.echo("dbguard: interrupted", err=True)
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001 - a driver error that escaped: one masked line, no traceback
        from dbguard.masking import mask

        if verbose:
            traceback.print_exc()
        orig = getattr(exc, "orig", None) or exc
        line = (str(orig).strip().splitlines() or [type(orig).__name__])[0]
        click.echo(output.render_error(f"{type(orig).__name__}: {mask(line)}"), err=True)
        sys.exit(int(ExitCode.USAGE))


if __name__ == "__main__":
    main()
