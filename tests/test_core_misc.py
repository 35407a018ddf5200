"""Backoff, masking and settings: pure helpers."""

from pathlib import Path

import pytest

from dbguard.core.retry import backoff_ms
from dbguard.errors import ConfigError
from dbguard.masking import mask
from dbguard.settings import load_settings


def test_backoff_doubles_with_jitter_and_stops_at_the_cap():
    assert backoff_ms(0, 500, 10_000, lambda: 0.0) == 0
    assert backoff_ms(1, 500, 10_000, lambda: 0.0) == 250
    assert backoff_ms(1, 500, 10_000, lambda: 0.999) == 499
    assert backoff_ms(3, 500, 10_000, lambda: 0.0) == 1000
    assert backoff_ms(20, 500, 10_000, lambda: 0.999) <= 10_000


@pytest.mark.parametrize(
    "text",
    [
        "cannot connect to postgresql+psycopg://app:hunter2pw@db:5432/prod",
        "mysql+pymysql://root:hunter2pw@127.0.0.1/x failed",
        "dsn host=db password=hunter2pw user=app",
        "PASSWORD: 'hunter2pw'",
        "ALTER ROLE app PASSWORD 'hunter2pw'",
        "CREATE USER 'app'@'%' IDENTIFIED BY 'hunter2pw'",
        "alter user app with encrypted password \"hunter2pw\"",
    ],
)
def test_passwords_never_survive_masking(text):
    assert "hunter2pw" not in mask(text)


def test_known_secrets_are_masked_wherever_they_appear():
    assert mask("the value was hunter2pw here", ["hunter2pw"]) == "the value was *** here"
    assert mask("no secrets here", [None, ""]) == "no secrets here"


def test_settings_merge_order_last_source_wins(tmp_path: Path):
    ini = tmp_path / "alembic.ini"
    ini.write_text("[alembic]\nscript_location = x\n[dbguard]\nlock_timeout_ms = 1000\nlock_retries = 1\n"
                   "table_prefix = a_\n")
    (tmp_path / "pyproject.toml").write_text("[tool.dbguard]\nlock_retries = 2\ntable_prefix = 'b_'\n")
    settings = load_settings({"config_path": str(ini), "table_prefix": "d_"},
                             environ={"DBGUARD_LOCK_RETRIES": "3"}, cwd=tmp_path)
    assert settings.lock_timeout_ms == 1000  # ini only
    assert settings.lock_retries == 3  # env beats pyproject and ini
    assert settings.table_prefix == "d_"  # flag beats everything


def test_pyproject_drift_table_gives_ignore_patterns_and_the_policy(tmp_path: Path):
    ini = tmp_path / "alembic.ini"
    ini.write_text("[alembic]\nscript_location = x\n")
    (tmp_path / "pyproject.toml").write_text(
        "[tool.dbguard]\nlock_retries = 2\n\n[tool.dbguard.drift]\nignore = ['partition_*', 'users.ix_*']\n"
        "on_drift = 'refuse'\n")
    settings = load_settings({"config_path": str(ini)}, environ={}, cwd=tmp_path)
    assert settings.drift_ignore == ("partition_*", "users.ix_*")
    assert settings.on_drift == "refuse" and settings.lock_retries == 2
    (tmp_path / "pyproject.toml").write_text("[tool.dbguard.drift]\non_drift = 'sometimes'\n")
    with pytest.raises(ConfigError, match="on_drift must be warn, refuse or ignore"):
        load_settings({"config_path": str(ini)}, environ={}, cwd=tmp_path)


def test_settings_reject_nonsense(tmp_path: Path):
    with pytest.raises(ConfigError, match="lock_timeout_ms"):
        load_settings({"lock_timeout_ms": 0}, environ={}, cwd=tmp_path)
    with pytest.raises(ConfigError, match="must be a number"):
        load_settings({}, environ={"DBGUARD_LOCK_RETRIES": "many"}, cwd=tmp_path)
    with pytest.raises(ConfigError, match="table_prefix"):
        load_settings({"table_prefix": "x; drop"}, environ={}, cwd=tmp_path)
    with pytest.raises(ConfigError, match="is not a regular expression"):
        load_settings({}, environ={"DBGUARD_MASK_PATTERNS": "tok_[0-9"}, cwd=tmp_path)
    with pytest.raises(ConfigError, match="matches empty text"):
        load_settings({}, environ={"DBGUARD_MASK_PATTERNS": "tok_[0-9]{8},x*"}, cwd=tmp_path)
