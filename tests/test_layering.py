"""The package's layers, checked from its source: no import cycle (function-level imports count: they
hide a cycle, they do not remove it), the formatter only under the CLI, statements executed only in
``dialects/`` and ``db/``, and no ``getattr`` probing of a dialect (its protocol declares what it has)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import dbguard

ROOT = Path(dbguard.__file__).parent


def _modules() -> dict[str, ast.Module]:
    found = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = ast.parse(path.read_text(), str(path))
    return found


def _type_checking_only(tree: ast.Module) -> set[int]:
    """Line numbers of imports under ``if TYPE_CHECKING:``: for the type checker, never run."""
    lines = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            lines |= {n.lineno for child in node.body for n in ast.walk(child) if isinstance(n, ast.stmt)}
    return lines


def _imports(name: str, tree: ast.Module, modules: dict[str, ast.Module]) -> Iterator[tuple[str, int]]:
    """The dbguard modules ``name`` imports, at any depth of its code, with the line."""
    skip = _type_checking_only(tree)
    package = name if name in modules and (ROOT / name.replace("dbguard.", "", 1).replace(".", "/")).is_dir() \
        else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in skip:
            continue
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")
                base = ".".join(parent[: len(parent) - node.level + 1] + ([base] if base else []))
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
        for target in targets:
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target.startswith("dbguard") and target != name and target != "dbguard":
                yield target, node.lineno


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycle() -> None:
    modules = _modules()
    graph = {name: {target for target, _ in _imports(name, tree, modules)} for name, tree in modules.items()}
    assert not _cycles(graph), _cycles(graph)


def test_the_formatter_and_the_api_are_imported_by_the_cli_only() -> None:
    """``output`` is the only formatter, ``api`` the façade for callers: nothing inside leans on either."""
    modules = _modules()
    users = sorted(f"{name}:{line} {target}" for name, tree in modules.items()
                   for target, line in _imports(name, tree, modules)
                   if target in ("dbguard.output", "dbguard.api") and name != "dbguard.cli")
    assert not users, users


def test_statements_are_executed_in_dialects_and_db_only() -> None:
    offenders = []
    for name, tree in _modules().items():
        if name.startswith(("dbguard.dialects", "dbguard.db")):
            continue
        for node in ast.walk(tree):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr in ("execute", "exec_driver_sql", "executescript")):
                offenders.append(f"{name}:{node.lineno} {ast.unparse(node.func)}")
    assert not offenders, offenders


def _sqlalchemy_dialect(source: str) -> bool:
    """SQLAlchemy's dialect objects (``sa_dialect``, ``conn.dialect``, ``engine.dialect``): not dbguard's."""
    return source.startswith("sa_") or source.endswith(("conn.dialect", "engine.dialect", "connection.dialect"))


def test_no_getattr_probe_of_a_dialect() -> None:
    offenders = []
    for name, tree in _modules().items():
        for node in ast.walk(tree):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                    and node.func.id in ("getattr", "hasattr") and node.args):
                probed = ast.unparse(node.args[0])
                if "dialect" in probed.lower() and not _sqlalchemy_dialect(probed):
                    offenders.append(f"{name}:{node.lineno} {ast.unparse(node)}")
    assert not offenders, offenders


def test_private_names_of_alembic_and_sqlalchemy_only_in_migrations_internals() -> None:
    """A private attribute dbguard does not define itself is another library's: it may be used in
    ``dbguard/migrations/internals.py`` only, where each use is named and tested (os._exit is public)."""
    modules = _modules()
    own = set()
    for tree in modules.values():
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                own.add(node.name)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                own.add(node.attr)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                own.add(node.id)
            elif isinstance(node, ast.arg):
                own.add(node.arg)
    offenders = []
    for name, tree in modules.items():
        if name == "dbguard.migrations.internals":
            continue
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")
                    and node.attr not in own and ast.unparse(node) != "os._exit"):
                offenders.append(f"{name}:{node.lineno} {ast.unparse(node)}")
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in ("sqlalchemy", "alembic"):
                offenders += [f"{name}:{node.lineno} {node.module}.{a.name}" for a in node.names
                              if a.name.startswith("_")]
    assert not offenders, offenders
