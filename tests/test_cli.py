"""The command line's contract: help for every option, -v and -q, positional revisions, one line for
an unexpected error (the traceback with -v), and the SQL of --sql returned by the API."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import click

from tests.guardrun import cli_env, run_dbguard
from tests.projects import make_project


def _options(command: click.Command, path: str) -> list[tuple[str, click.Option]]:
    found = [(path, p) for p in command.params if isinstance(p, click.Option)]
    for name, sub in getattr(command, "commands", {}).items():
        found += _options(sub, f"{path} {name}")
    return found


def test_every_option_of_every_command_says_what_it_does() -> None:
    from dbguard.cli import cli

    missing = [f"{path} {'/'.join(option.opts)}" for path, option in _options(cli, "dbguard")
               if not option.help and not option.hidden]
    assert not missing, missing


def test_every_command_is_described_by_its_api_function() -> None:
    """One description of what a command does: the first paragraph of dbguard.api's docstring, reused
    by the CLI's help (as Alembic's command line reuses alembic.command's)."""
    from dbguard import api
    from dbguard.cli import _api_summary, cli

    def leaves(command: click.Command, words: tuple[str, ...]) -> list[tuple[str, click.Command]]:
        found = [("_".join(words), command)] if words and not getattr(command, "commands", None) or \
            words == ("locks",) else []
        for name, sub in getattr(command, "commands", {}).items():
            found += leaves(sub, (*words, name))
        return found

    described = [(name, cmd) for name, cmd in leaves(cli, ()) if hasattr(api, name)]
    assert len(described) >= 19, [name for name, _ in described]
    for name, command in described:
        summary = _api_summary(getattr(api, name))
        assert summary and (command.help or "").startswith(summary), (name, command.help)
        assert "``" not in (command.help or ""), name


def test_each_command_offers_the_formats_it_prints(tmp_path: Path) -> None:
    from dbguard.cli import cli

    offered = {path: tuple(option.type.choices) for path, option in _options(cli, "dbguard")
               if option.name == "command_format" and isinstance(option.type, click.Choice)}
    assert offered["dbguard status"] == ("text", "json", "prometheus")
    assert offered["dbguard fleet status"] == ("text", "json", "jsonl", "prometheus")
    assert offered["dbguard history"] == ("text", "json")
    assert offered["dbguard drift"] == offered["dbguard plan"] == ("text", "json", "github", "junit")
    assert offered["dbguard fleet upgrade"] == offered["dbguard fleet worker"] == ("text", "json", "jsonl")
    leaves = {path for path, option in _options(cli, "dbguard") if option.name != "command_format"}
    assert leaves - {"dbguard"} <= set(offered), sorted(leaves - set(offered))
    ini = _project(tmp_path)
    refused = run_dbguard(ini, None, "status", "--format", "github")
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1, refused
    assert "'github' is not one of 'text', 'json'" in refused.stderr, refused
    assert run_dbguard(ini, None, "upgrade").returncode == 0
    after = run_dbguard(ini, None, "history", "--format", "json")  # after the command
    before = run_dbguard(ini, None, "--format", "json", "history")
    assert after.returncode == before.returncode == 0 and after.stdout == before.stdout, (after, before)
    assert after.stdout.lstrip().startswith("{"), after.stdout


def _project(tmp_path: Path, revisions: list[tuple[str, str, str]] | None = None) -> Path:
    table = ("r1", 'op.create_table("t", sa.Column("id", sa.Integer, primary_key=True))', 'op.drop_table("t")')
    return make_project(tmp_path, f"sqlite:///{tmp_path / 'app.db'}", revisions or [table])


def test_quiet_prints_errors_only_and_verbose_options_go_anywhere(tmp_path: Path) -> None:
    failing = ("r2", "raise RuntimeError('the r2 failure')", "pass")
    ini = _project(tmp_path, [("r1", "pass", "pass"), failing])
    quiet = run_dbguard(ini, None, "upgrade", "r1", "-q")  # after the command, as people type it
    assert quiet.returncode == 0 and quiet.stdout == "" and quiet.stderr == "", quiet
    loud = run_dbguard(ini, None, "upgrade", "r1")
    assert loud.returncode == 0 and "already at r1" in loud.stdout + loud.stderr, loud
    # -v: dbguard's debug log, also after env.py's fileConfig() disabled the loggers it does not name.
    verbose = run_dbguard(ini, None, "-v", "downgrade", "base")
    assert verbose.returncode == 0, verbose
    assert "dbguard: debug: dbguard.run.guard: run lock taken; downgrade to base" in verbose.stderr, verbose.stderr
    assert "ended succeeded (exit 0)" in verbose.stderr, verbose.stderr
    failed = run_dbguard(ini, None, "-q", "upgrade")
    assert failed.returncode == 5 and "the r2 failure" in failed.stdout + failed.stderr, failed
    assert "INFO" not in failed.stderr  # Alembic's log lines are not errors
    # A value that looks like a flag stays the value of its option.
    resolved = run_dbguard(ini, None, "resolve", "--reason", "-q", "--confirm-risk", "CONFIRM_RISK")
    assert resolved.returncode == 0, resolved
    history = run_dbguard(ini, None, "--format", "json", "history", "--limit", "1")
    assert '"reason": "-q"' in history.stdout or '"-q"' in history.stdout, history.stdout


def test_snapshot_takes_its_revision_as_an_argument_or_the_old_option(tmp_path: Path) -> None:
    ini = _project(tmp_path)
    assert run_dbguard(ini, None, "upgrade").returncode == 0
    for args in (["snapshot", "r1", "-o", "a.json"], ["snapshot", "--revision", "r1", "-o", "b.json"]):
        done = run_dbguard(ini, None, *args)
        assert done.returncode == 0, done
    assert (ini.parent / "a.json").read_text() == (ini.parent / "b.json").read_text()
    clash = run_dbguard(ini, None, "snapshot", "r1", "--revision", "base")
    assert clash.returncode == 2 and clash.stderr.count("\n") == 1 and "disagree" in clash.stderr, clash


_BROKEN_STATUS = """import sys
from dbguard import api
def broken(settings, **options):
    raise KeyError("the ledger's shape, password=Hunter2Canary")
api.status = broken
from dbguard.cli import main
main(sys.argv[1:])
"""


def test_an_unexpected_error_is_one_masked_line_and_the_traceback_shows_with_v(tmp_path: Path) -> None:
    ini = _project(tmp_path)
    for args, traceback in ((["status"], False), (["-v", "status"], True), (["status", "--verbose"], True)):
        done = subprocess.run([sys.executable, "-c", _BROKEN_STATUS, "-c", str(ini), *args], capture_output=True,
                              text=True, timeout=60, env=cli_env(), stdin=subprocess.DEVNULL, check=False)
        assert done.returncode == 2, done
        last = done.stderr.strip().splitlines()[-1]
        assert last.startswith("dbguard: error: internal error: KeyError:"), done.stderr
        assert "Hunter2Canary" not in done.stderr and "password=***" in done.stderr, done.stderr
        assert ("Traceback (most recent call last)" in done.stderr) is traceback, done.stderr
        if not traceback:
            assert done.stderr.count("\n") == 1 and "-v shows the traceback" in last, done.stderr


def test_the_api_returns_the_sql_of_an_offline_upgrade(tmp_path: Path, capfd) -> None:
    from dbguard import api
    from dbguard.settings import load_settings

    ini = _project(tmp_path)
    result = api.upgrade(load_settings({"config_path": str(ini)}, environ={}), "r1", sql=True)
    assert "CREATE TABLE t" in result.sql and not result.sets_password, result
    assert "CREATE TABLE t" not in capfd.readouterr().out  # returned, not printed
    done = run_dbguard(ini, None, "upgrade", "r1", "--sql")
    assert done.returncode == 0 and done.stdout == result.sql, done


_BROKEN_POST_FLIGHT = """import sys
from dbguard.run import guard
def broken(*args, **kwargs):
    raise ZeroDivisionError("a bug in dbguard's post-flight")
guard._post_flight = broken
from dbguard.cli import main
main(sys.argv[1:])
"""


def test_an_internal_error_after_the_run_row_fails_the_run_and_exits_5(tmp_path: Path) -> None:
    import sqlite3

    ini = _project(tmp_path)
    done = subprocess.run([sys.executable, "-c", _BROKEN_POST_FLIGHT, "-c", str(ini), "upgrade"], capture_output=True,
                          text=True, timeout=60, env=cli_env(), stdin=subprocess.DEVNULL, check=False)
    assert done.returncode == 5, done
    lines = done.stderr.strip().splitlines()
    assert lines[-1].startswith("dbguard: error: internal error: ZeroDivisionError: a bug in dbguard's post-flight; "
                                "run 1 is recorded failed"), done.stderr
    assert "Traceback" not in done.stderr
    with sqlite3.connect(tmp_path / "app.db") as conn:
        status, error = conn.execute("SELECT status, error FROM dbguard_runs WHERE id = 1").fetchone()
    assert status == "failed" and error.startswith("internal error: a bug in dbguard's post-flight"), (status, error)
    after = run_dbguard(ini, None, "status")
    assert after.returncode == 3, after  # the breaker is open: nobody builds on it
    fresh = _project(tmp_path / "verbose")
    shown = subprocess.run([sys.executable, "-c", _BROKEN_POST_FLIGHT, "-c", str(fresh), "-v", "upgrade"],
                           capture_output=True, text=True, timeout=60, env=cli_env(), stdin=subprocess.DEVNULL,
                           check=False)
    assert shown.returncode == 5 and "Traceback (most recent call last)" in shown.stderr, shown
    assert "in broken" in shown.stderr and shown.stderr.strip().splitlines()[-1].startswith("dbguard: error: internal")


def test_a_bad_filter_of_locks_is_a_one_line_usage_error(tmp_path: Path) -> None:
    import pytest

    from dbguard.core.sessionview import SessionFilter
    from dbguard.errors import ConfigError
    from dbguard.locks.killer import check_filters

    ini = tmp_path / "alembic.ini"
    ini.write_text("[alembic]\nscript_location = scripts\n")
    for args, said in ((("locks", "--match-query", "(unclosed"), "is not a regular expression"),
                       (("locks", "--min-idle", "-1"), "'-1' is not a finite number of seconds"),
                       (("locks", "kill", "--roots", "--dry-run", "--min-wait", "-0.5"), "'-0.5' is not a finite"),
                       (("locks", "kill", "--roots", "--min-busy", "nan"), "'nan' is not a finite")):
        done = run_dbguard(ini, "postgresql+psycopg://nobody@127.0.0.1:1/none", *args)
        assert done.returncode == 2 and done.stderr.count("\n") == 1 and said in done.stderr, (args, done)
    # The API says the same to those who embed it, before connecting.
    with pytest.raises(ConfigError, match=r"^--match-query '\[': not a regular expression"):
        check_filters(SessionFilter(match_query="["))
    with pytest.raises(ConfigError, match=r"^--min-idle -1: not a number of seconds"):
        check_filters(SessionFilter(min_idle_s=-1))


def test_help_and_version_stay_on_stdout_in_a_machine_format() -> None:
    for asked in (["--format", "json", "--version"], ["--format", "json", "status", "--help"]):
        done = subprocess.run([sys.executable, "-m", "dbguard.cli", *asked], capture_output=True, text=True, check=False,
                              env=cli_env({}), stdin=subprocess.DEVNULL, timeout=60)
        assert done.returncode == 0 and done.stdout.strip() and not done.stderr.strip(), (asked, done)
