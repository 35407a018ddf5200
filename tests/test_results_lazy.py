"""Result classes of other commands load on first use; the upgrade path never builds them."""

import sqlite3
import subprocess
import sys
from pathlib import Path

from dbguard import results


def test_every_result_class_resolves_from_dbguard_results():
    for name, module in results._ELSEWHERE.items():
        cls = getattr(results, name)
        assert cls.__name__ == name and cls.__module__ == f"dbguard.results.{module}"


def test_unknown_names_still_raise_attribute_error():
    try:
        results.NoSuchResult  # noqa: B018 - the attribute access is the test
    except AttributeError as exc:
        assert "NoSuchResult" in str(exc)
    else:
        raise AssertionError("an unknown name resolved")


def _loaded(modules: str) -> list[str]:
    code = (f"import sys, {modules}; "
            "print(*sorted(m for m in sys.modules if m.startswith(('dbguard.results.', 'dbguard.core.state'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return out.stdout.split()


def test_each_command_imports_only_its_own_results():
    assert _loaded("dbguard.cli, dbguard.api, dbguard.output") == []
    assert _loaded("dbguard.cli, dbguard.api, dbguard.run.guard, dbguard.output") == [
        "dbguard.core.state", "dbguard.results.runs"]
    # dbguard drift builds neither the guarded run's classes nor the ledger's records.
    assert _loaded("dbguard.cli, dbguard.api, dbguard.drift.checks, dbguard.output") == ["dbguard.results.checks"]


# Modules that `dbguard drift` has no use for: the kill policy and session filters of the lock
# commands, the MySQL copy-probe patterns of plan --observe.
NOT_FOR_DRIFT = ("dbguard.core.victims", "dbguard.core.sessionview", "dbguard.dialects.mysql_copy")


def test_a_drift_command_loads_no_module_of_other_commands(tmp_path) -> None:
    ini = Path(__file__).resolve().parent.parent / "migrations_example" / "alembic.ini"
    sqlite3.connect(tmp_path / "x.db").close()  # an empty database: a read never creates one
    code = ("import atexit, runpy, sys; "
            "atexit.register(lambda: print('LOADED', *sorted(m for m in sys.modules if m.startswith('dbguard')))); "
            f"sys.argv = ['dbguard', '-c', {str(ini)!r}, '--url', {'sqlite:///' + str(tmp_path / 'x.db')!r}, "
            "'drift', '--against', 'models']; runpy.run_module('dbguard.cli', run_name='__main__')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    # An empty database: every table missing (exit 1), which is not what this test is about.
    assert done.returncode == 1, done.stderr
    loaded = next(line for line in done.stdout.splitlines() if line.startswith("LOADED")).split()[1:]
    assert "dbguard.drift.checks" in loaded and "dbguard.core.schema" in loaded
    assert not set(NOT_FOR_DRIFT) & set(loaded), sorted(set(NOT_FOR_DRIFT) & set(loaded))
