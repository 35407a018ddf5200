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


def test_the_cli_and_the_guarded_run_import_no_other_commands_results():
    code = ("import sys, dbguard.cli, dbguard.api, dbguard.guard, dbguard.output; "
            "print(sorted(m for m in sys.modules if m.startswith('dbguard.results.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
