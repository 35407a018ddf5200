"""What env.py's source says about how it runs the migrations, read without running it."""

from __future__ import annotations

import ast
from pathlib import Path

# Calls that run or wrap the migrations inside env.py's online branch.
_RUNS = {"run_migrations", "begin_transaction", "run_sync", "configure"}


def one_transaction(env_py: str | Path) -> str | None:
    """Where env.py opens one transaction around the whole upgrade (``with engine.begin() as
    connection:``, ``connection.begin()`` around ``run_migrations``): Alembic then runs every revision
    inside it, and no revision commits before the last one has run. The line and its text, or None
    (not found, or env.py could not be read)."""
    try:
        source = Path(env_py).read_text(encoding="utf-8")
        tree = ast.parse(source)
    except (OSError, SyntaxError, ValueError):
        return None
    lines = source.splitlines()
    for node in ast.walk(tree):
        if not isinstance(node, (ast.With, ast.AsyncWith)):
            continue
        if not any(_is_begin(item.context_expr) for item in node.items):
            continue
        if any(isinstance(inner, ast.Call) and _called(inner) in _RUNS for part in node.body for inner in ast.walk(part)):
            return f"line {node.lineno}: {lines[node.lineno - 1].strip()}"
    return None


def _is_begin(expr: ast.expr) -> bool:
    """``x.begin()`` (an Engine's or a Connection's transaction), not ``context.begin_transaction()``."""
    while isinstance(expr, ast.Await):
        expr = expr.value
    return isinstance(expr, ast.Call) and isinstance(expr.func, ast.Attribute) and expr.func.attr == "begin"


def _called(call: ast.Call) -> str | None:
    func = call.func
    return func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None


def sets_version_locations(env_py: str | Path) -> bool:
    """Whether env.py chooses its script directory's version folders itself
    (``context.script.version_locations = [...]``, per dialect say): the revisions it migrates are then
    known only once env.py has run. False where env.py could not be read."""
    try:
        tree = ast.parse(Path(env_py).read_text(encoding="utf-8"))
    except (OSError, SyntaxError, ValueError):
        return False
    for node in ast.walk(tree):
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
            targets = [node.target]
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            # context.script.version_locations.append(...) / .extend(...) / .insert(...)
            targets = [node.func.value]
        if any(isinstance(t, ast.Attribute) and t.attr == "version_locations" for t in targets):
            return True
    return False
