"""The masker: every form of a password dbguard may meet, with adversarial cases."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dbguard.masking import Masker, is_secret_key, mask, secret_x_values

S = "TopSecret9"


@pytest.mark.parametrize("text, expected", [
    # SQL password literals, PostgreSQL
    (f"CREATE ROLE app LOGIN PASSWORD '{S}'", "CREATE ROLE app LOGIN PASSWORD '***'"),
    (f"ALTER ROLE app WITH ENCRYPTED PASSWORD '{S}' VALID UNTIL 'infinity'",
     "ALTER ROLE app WITH ENCRYPTED PASSWORD '***' VALID UNTIL 'infinity'"),
    (f"ALTER ROLE app PASSWORD $${S}$$", "ALTER ROLE app PASSWORD $$***$$"),
    (f"ALTER ROLE app PASSWORD $pw${S}$pw$ LOGIN", "ALTER ROLE app PASSWORD $pw$***$pw$ LOGIN"),
    (f"ALTER ROLE app PASSWORD E'{S}\\'x'", "ALTER ROLE app PASSWORD E'***'"),
    ("ALTER ROLE app PASSWORD 'it''s a secret'", "ALTER ROLE app PASSWORD '***'"),
    (f"EXECUTE 'ALTER ROLE r PASSWORD ''{S}'''", "EXECUTE 'ALTER ROLE r PASSWORD ''***'''"),
    # MySQL / MariaDB
    (f"CREATE USER 'u'@'%' IDENTIFIED BY '{S}'", "CREATE USER 'u'@'%' IDENTIFIED BY '***'"),
    (f"CREATE USER u IDENTIFIED WITH mysql_native_password BY '{S}'",
     "CREATE USER u IDENTIFIED WITH mysql_native_password BY '***'"),
    (f"ALTER USER u IDENTIFIED VIA ed25519 USING PASSWORD('{S}')",
     "ALTER USER u IDENTIFIED VIA ed25519 USING PASSWORD('***')"),
    (f"SET PASSWORD FOR 'u'@'%' = PASSWORD('{S}')", "SET PASSWORD FOR 'u'@'%' = PASSWORD('***')"),
    (f"SET PASSWORD = '{S}'", "SET PASSWORD = '***'"),
    (f"SELECT PASSWORD('{S}')", "SELECT PASSWORD('***')"),
    # Cut short by truncation: masked to the end
    ("ALTER ROLE app PASSWORD 'TopSec", "ALTER ROLE app PASSWORD '***"),
    ("ALTER ROLE app PASSWORD $$TopSec", "ALTER ROLE app PASSWORD $$***"),
    # URLs and DSNs
    ("postgresql://app:p@ss:w/rd@db.example:5432/app", "postgresql://app:***@db.example:5432/app"),
    ("mysql+pymysql://app:pässwörd%40x@h/db?charset=utf8", "mysql+pymysql://app:***@h/db?charset=utf8"),
    ("postgresql://app@h/db?sslmode=require&password=hunter22", "postgresql://app@h/db?sslmode=require&password=***"),
    ("host=h dbname=app password='a b c' user=x", "host=h dbname=app password=*** user=x"),
    ("(1045, \"Access denied for user 'app'@'10.0.0.1' (using password: YES)\")",
     "(1045, \"Access denied for user 'app'@'10.0.0.1' (using password: YES)\")"),
])
def test_every_form_is_masked(text: str, expected: str) -> None:
    assert mask(text) == expected
    assert mask(mask(text)) == expected  # stable


def test_known_secrets_in_every_encoding_and_longest_first() -> None:
    masker = Masker(["it's\"%sec", "Summer2026", "Summer2026!x"])
    assert masker("a Summer2026!x b Summer2026 c") == "a *** b *** c"
    assert masker(json.dumps({"error": "it's\"%sec"})) == '{"error": "***"}'
    assert masker("VALUES ('it''s\"%sec')") == "VALUES ('***')"
    assert masker("postgresql://u:it%27s%22%25sec@h/db") == "postgresql://u:***@h/db"


def test_overlapping_secrets_leave_no_tail_of_either() -> None:
    masker = Masker(["abcdef", "defghi", "xyzw"])
    assert masker("at abcdefghi, then defghiabcdef and xyzwxyzw.") == "at ***, then *** and ***."
    assert masker(json.dumps("q\"abcdef")) == json.dumps("q\"***")


def test_a_common_word_long_enough_is_masked_wherever_it_occurs() -> None:
    # The URL's password is the word "select": masked in free text too, exactly (case kept apart).
    masker = Masker(["select"])
    assert masker("SELECT 1; -- select me; postgresql://u:select@h/db") == "SELECT 1; -- *** me; postgresql://u:***@h/db"
    assert masker(masker("select")) == "***"


def test_a_short_or_common_secret_is_masked_only_where_a_pattern_puts_it() -> None:
    masker = Masker(["abc", "the"])
    assert masker("the table abc") == "the table abc"
    assert masker("postgresql://u:abc@h/the") == "postgresql://u:***@h/the"
    assert masker("ALTER ROLE x PASSWORD 'the'") == "ALTER ROLE x PASSWORD '***'"


def test_a_team_pattern_adds_to_the_builtin_ones() -> None:
    assert Masker(patterns=[r"tok_[A-Za-z0-9]{8,}"])("token tok_abcdefgh12 used") == "token *** used"


def test_secret_keys_of_x_arguments() -> None:
    assert [k for k in ("db_password", "PASSWD", "pwd", "api_secret", "token", "user", "tenant") if is_secret_key(k)] \
        == ["db_password", "PASSWD", "pwd", "api_secret", "token"]
    assert secret_x_values(["db_password=abc123", "tenant=acme", "token="]) == ["abc123"]


def test_the_cli_prints_through_one_masking_function_only() -> None:
    """A new output cannot bypass the boundary: click.echo, print and sys.stdout/stderr writes appear in
    dbguard/cli.py only inside ``say``."""
    import ast
    from pathlib import Path

    import dbguard.cli

    tree = ast.parse(Path(dbguard.cli.__file__).read_text())
    offenders = []
    for function in [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.Lambda))]:
        if getattr(function, "name", None) == "say":
            continue
        for call in [n for n in ast.walk(function) if isinstance(n, ast.Call)]:
            name = ast.unparse(call.func)
            if name in ("click.echo", "print", "click.secho") or name.endswith(("stdout.write", "stderr.write")):
                offenders.append(f"line {call.lineno}: {name}")
    assert not offenders, offenders


def test_every_ledger_and_control_write_goes_through_the_masking_writer() -> None:
    """Each function that inserts into or updates dbguard's own tables hands its values through
    ``written`` (ledger, kill audit) or ``_to_db`` (fleet control database). The stored schemas are the
    database's own structure, compared byte for byte with the live one later: they are not rewritten."""
    import ast
    from pathlib import Path

    import dbguard

    root = Path(dbguard.__file__).parent
    exempt = {"store", "close_running_steps"}  # the schema document; a fixed message of dbguard's own
    for path, writers in ((root / "db" / "ledger.py", ("written", "_run_values")),
                          (root / "db" / "fleet_control.py", ("_to_db",))):
        for function in [n for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.FunctionDef)]:
            source = ast.unparse(function)
            if function.name in exempt or not (".insert()" in source or ".update()" in source):
                continue
            assert any(f"{w}(" in source for w in writers), (path.name, function.name)


def test_stored_json_is_masked_string_by_string_and_stays_json() -> None:
    cut = json.dumps([{"statement": "ALTER ROLE r PASSWORD 'TopSec", "waiters": 3}, {"id": 7}])
    stored = Masker().stored(cut)
    assert json.loads(stored) == [{"statement": "ALTER ROLE r PASSWORD '***", "waiters": 3}, {"id": 7}]
    assert Masker().stored("not json [") == "not json ["


def test_a_literal_cut_short_is_masked_to_the_end_of_its_line_only() -> None:
    text = "1  app  PASSWORD ''TopSec…\n2  web  SELECT 1\nnext: roll back"
    assert mask(text) == "1  app  PASSWORD ''***\n2  web  SELECT 1\nnext: roll back"
    many = "CREATE ROLE a PASSWORD 'x\ny'; SELECT 'kept'"
    assert mask(many) == "CREATE ROLE a PASSWORD '***'; SELECT 'kept'"
    assert mask(mask(text)) == mask(text)


def _built(annotation: object, text: str, depth: int = 0) -> object:
    """A value of ``annotation`` whose every string is ``text``: the generic instance of a result."""
    import dataclasses
    import datetime as dt
    import enum
    import types
    import typing

    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return _built(next(a for a in args if a is not type(None)), text, depth)
    if origin is typing.Literal:
        return args[0]
    if origin in (tuple, list):
        return (_built(args[0], text, depth),) if args and depth < 4 else ()
    if origin is dict:
        return {text: _built(args[1], text, depth)} if args else {text: text}
    if annotation in (str, typing.Any) or annotation is object:
        return text
    if annotation is bool:
        return False
    if annotation in (int, float):
        return 1
    if annotation is dt.datetime:
        return dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return next(iter(annotation))
    if dataclasses.is_dataclass(annotation) and isinstance(annotation, type) and depth < 4:
        hints = typing.get_type_hints(annotation)
        return annotation(**{f.name: _built(hints[f.name], text, depth + 1)
                             for f in dataclasses.fields(annotation) if f.init})
    return None


def test_every_result_type_is_masked_in_every_json_document() -> None:
    """JSON goes out as built (the CLI does not mask a document's text again): each string of every
    result type, at any depth, dict keys included, must pass the masker on the way into it."""
    from dbguard import output, results
    from dbguard.results import _ELSEWHERE

    text = f"ALTER ROLE r PASSWORD '{S}' via postgresql://u:CanaryUrl77@h/db"
    for name in set(_ELSEWHERE) - {"OfflineSqlResult"}:  # its SQL is for execution, printed as it is
        result = _built(getattr(results, name), text)
        assert result is not None, name
        for fmt in ("json", "jsonl"):
            document = output.render(result, fmt)
            assert S not in document and "CanaryUrl77" not in document, (name, fmt, document)
            assert "***" in document, (name, fmt)  # the walk did reach its strings
    keyed = output.to_json({"targets": {text: [text]}})  # a mapping held in an Any field: keys too
    assert S not in keyed and "CanaryUrl77" not in keyed, keyed
    error = output.render_error_document(text, 2, "json") or ""
    assert S not in error and "***" in error


def test_the_api_installs_nothing_process_wide_the_cli_masks_logged_tracebacks(tmp_path: Path) -> None:
    """A library call leaves logging, signals and the masker as it found them; in the CLI process a
    record's message and its traceback (formatted later by whatever handler env.py configured) are
    masked."""
    import gc
    import logging
    import signal
    import subprocess
    import sys

    from dbguard import api, masking
    from dbguard.settings import load_settings
    from tests.projects import make_project

    # The migration notes the signal handlers in place while it runs (the upgrade, the drift replay).
    seen = tmp_path / "handlers-seen"
    note = (f"import signal, pathlib; pathlib.Path({str(seen)!r}).open('a').write("
            "repr((signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM))) + chr(10))")
    ini = make_project(tmp_path, f"sqlite:///{tmp_path / 'app.db'}", [("r1", note, "pass")])

    def process_wide() -> tuple[object, ...]:  # (handlers of root, alembic, sqlalchemy: env.py's fileConfig's)
        loggers = [logging.getLogger(name) for name in ("alembic", "sqlalchemy", "dbguard")]
        from alembic.runtime.environment import EnvironmentContext

        return (EnvironmentContext.configure, logging.getLogger("sqlglot").level,
                logging.getLogRecordFactory(), [list(lg.filters) for lg in loggers],
                list(logging.getLogger("dbguard").handlers),
                signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT), masking.active().known,
                gc.isenabled())

    before = process_wide()
    settings = load_settings({"config_path": str(ini)}, environ={})
    assert api.upgrade(settings, "head").exit_code == 0  # a run: the configure hook, the GC paused
    assert api.plan(settings, "head", offline=True, from_revision="base").exit_code == 0  # sqlglot parses
    assert api.drift(settings, against="migrations").exit_code == 0  # schemas built with the GC paused
    assert process_wide() == before
    hosts = repr((signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)))
    assert seen.read_text().splitlines() == [hosts, hosts]  # the upgrade's and the replay's

    script = ("import logging, sys\nfrom dbguard import cli\ncli._mask_log_records()\n"
              "logging.basicConfig(stream=sys.stdout, format='%(message)s')\n"
              "try:\n    raise RuntimeError('no route to postgresql://app:CanaryTb42@db/app')\n"
              "except RuntimeError:\n    logging.getLogger('env_py').exception('password=CanaryMsg42 rejected')\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)
    assert "CanaryTb42" not in done.stdout and "CanaryMsg42" not in done.stdout, done.stdout
    assert "postgresql://app:***@db/app" in done.stdout and "password=*** rejected" in done.stdout, done.stdout
