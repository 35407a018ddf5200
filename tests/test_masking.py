"""The masker: every form of a password dbguard may meet, with adversarial cases."""

from __future__ import annotations

import json

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
                          (root / "fleet" / "control.py", ("_to_db",))):
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
