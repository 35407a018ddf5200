"""Result classes of other commands load on first use; the upgrade path never builds them."""

import subprocess
import sys

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
