"""The dialect protocols of ``dbguard.dialects``, checked from the source.

Shared code reaches an engine's dialect only through the protocols declared in
``dbguard/dialects/__init__.py`` (:class:`Dialect` and its capabilities), so that mypy checks every
use. Outside ``dbguard/dialects/``, the name ``dialect`` is dbguard's dialect; SQLAlchemy's is
``sa_dialect`` or a connection's or engine's ``.dialect``.
"""

from __future__ import annotations

import ast
import importlib
from collections.abc import Iterator
from pathlib import Path

import pytest

import dbguard
from dbguard.dialects.mysql import MysqlDialect
from dbguard.dialects.postgresql import PostgresqlDialect
from dbguard.dialects.sqlite import SqliteDialect
from dbguard.errors import ConfigError

ROOT = Path(dbguard.__file__).parent
PROTOCOLS_FILE = ROOT / "dialects" / "__init__.py"
# The names an object is reached by when it is dbguard's dialect.
DIALECT_NAMES = ("dialect", "_dialect")


def _protocol_members() -> dict[str, set[str]]:
    """Each protocol class of dbguard.dialects with every member it declares, inherited ones included."""
    tree = ast.parse(PROTOCOLS_FILE.read_text())
    own: dict[str, set[str]] = {}
    parents: dict[str, list[str]] = {}
    for node in tree.body:
        if not isinstance(node, ast.ClassDef) or "Protocol" not in {ast.unparse(b) for b in node.bases}:
            continue
        members = set()
        for item in node.body:
            if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                members.add(item.name)
            elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                members.add(item.target.id)
        own[node.name] = members
        parents[node.name] = [ast.unparse(b) for b in node.bases if ast.unparse(b) != "Protocol"]

    def members(name: str) -> set[str]:
        return own[name].union(*(members(parent) for parent in parents[name]))

    return {name: members(name) for name in own}


def _accessors() -> dict[str, str]:
    """The functions of dbguard.dialects that return a dialect, with the protocol they return."""
    protocols = _protocol_members()
    tree = ast.parse(PROTOCOLS_FILE.read_text())
    return {node.name: ast.unparse(node.returns) for node in tree.body
            if isinstance(node, ast.FunctionDef) and node.returns is not None
            and ast.unparse(node.returns) in protocols}


def _sqlalchemy_owner(owner: ast.expr) -> bool:
    """``owner.dialect`` is SQLAlchemy's dialect: ``conn.dialect``, ``self.engine.dialect`` ..."""
    return ast.unparse(owner).split(".")[-1] in ("conn", "connection", "engine")


def _names_a_protocol(annotation: ast.expr | None, protocols: dict[str, set[str]]) -> bool:
    return annotation is not None and any(isinstance(n, ast.Name) and n.id in protocols
                                          for n in ast.walk(annotation))


def _functions(tree: ast.Module) -> Iterator[ast.AST]:
    """The module's top-level code and each outermost function or method (nested ones are inside it)."""
    yield ast.Module(body=[n for n in tree.body if not isinstance(n, (ast.FunctionDef, ast.ClassDef))],
                     type_ignores=[])
    pending: list[ast.AST] = [n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))]
    while pending:
        node = pending.pop()
        if isinstance(node, ast.ClassDef):
            pending += [n for n in node.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))]
        else:
            yield node


def _dialect_uses(scope: ast.AST, protocols: dict[str, set[str]],
                  accessors: dict[str, str]) -> Iterator[ast.Attribute]:
    """Attribute accesses on dbguard's dialect within one function: on ``dialect``, on ``x.dialect``
    (not a connection's or engine's), on an accessor's answer, and on a name bound to one of
    these or annotated with a protocol."""
    bound: set[str] = set(DIALECT_NAMES)

    def is_dialect(node: ast.expr) -> bool:
        if isinstance(node, ast.Name):
            return node.id in bound
        if isinstance(node, ast.Attribute):
            return node.attr in DIALECT_NAMES and not _sqlalchemy_owner(node.value)
        if isinstance(node, ast.Call):
            called = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", None)
            return called in accessors
        return False

    # Bindings first (a name bound from another bound name counts too), then the uses.
    changed = True
    while changed:
        before = len(bound)
        for node in ast.walk(scope):
            if isinstance(node, ast.arg) and _names_a_protocol(node.annotation, protocols):
                bound.add(node.arg)
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and (
                    _names_a_protocol(node.annotation, protocols)
                    or (node.value is not None and is_dialect(node.value))):
                bound.add(node.target.id)
            elif isinstance(node, ast.Assign):
                for target in node.targets:
                    pairs = (zip(target.elts, node.value.elts)
                             if isinstance(target, ast.Tuple) and isinstance(node.value, ast.Tuple)
                             else [(target, node.value)])
                    bound.update(t.id for t, v in pairs if isinstance(t, ast.Name) and is_dialect(v))
        changed = len(bound) != before
    for node in ast.walk(scope):
        if isinstance(node, ast.Attribute) and is_dialect(node.value):
            yield node


def _shared_modules() -> Iterator[tuple[str, ast.Module]]:
    for path in sorted(ROOT.rglob("*.py")):
        if path.parent != ROOT / "dialects":
            yield str(path.relative_to(ROOT.parent)), ast.parse(path.read_text(), str(path))


def test_every_dialect_member_used_outside_dialects_is_declared_in_a_protocol() -> None:
    protocols = _protocol_members()
    declared = set().union(*protocols.values())
    accessors = _accessors()
    undeclared = sorted(
        f"{name}:{use.lineno} {ast.unparse(use)}"
        for name, tree in _shared_modules()
        for scope in _functions(tree)
        for use in _dialect_uses(scope, protocols, accessors)
        if use.attr not in declared
    )
    assert not undeclared, ("members of an engine's dialect used outside dbguard/dialects/ but declared in "
                            f"no protocol of dbguard/dialects/__init__.py: {undeclared}")


def test_a_parameter_named_dialect_is_typed_with_a_dialect_protocol() -> None:
    """So that mypy checks each use, and the name keeps meaning dbguard's dialect (SQLAlchemy's is
    ``sa_dialect``)."""
    protocols = _protocol_members()
    loose = sorted(
        f"{name}:{node.lineno} {node.arg}: {ast.unparse(node.annotation) if node.annotation else '(none)'}"
        for name, tree in _shared_modules()
        for node in ast.walk(tree)
        if isinstance(node, ast.arg) and node.arg in DIALECT_NAMES
        and not _names_a_protocol(node.annotation, protocols)
    )
    assert not loose, loose


def test_the_rule_sees_dialect_uses_through_names_attributes_and_accessors() -> None:
    """The finder above, on code it must read: an undeclared member is found however it is reached,
    and SQLAlchemy's dialect is left alone."""
    source = '''
def f(conn, session, dialect: Dialect, sa_dialect):
    dialect.undeclared_a()
    session.dialect.undeclared_b
    self._dialect.undeclared_c()
    graph = metadata_lock_graph_of(session.dialect)
    graph.undeclared_d()
    fleet_claims_of(dialect).undeclared_e()
    conn.dialect.server_version_info
    session.conn.dialect.identifier_preparer
    sa_dialect.supports_comments
    dialect.name
'''
    protocols, accessors = _protocol_members(), _accessors()
    found = [use.attr for scope in _functions(ast.parse(source))
             for use in _dialect_uses(scope, protocols, accessors)
             if use.attr not in set().union(*protocols.values())]
    assert sorted(found) == ["undeclared_a", "undeclared_b", "undeclared_c", "undeclared_d", "undeclared_e"]


# --- the accessors' casts are backed by what each engine module declares --------------------------

_ENGINES = {
    "postgresql": [PostgresqlDialect()],
    "mysql": [MysqlDialect(mariadb=False), MysqlDialect(mariadb=True)],
    "sqlite": [SqliteDialect()],
}


def _claimed_protocols(module: str) -> set[str]:
    """The protocols a module's ``if TYPE_CHECKING:`` block assigns an instance of its class to."""
    tree = ast.parse((ROOT / "dialects" / f"{module}.py").read_text())
    return {ast.unparse(item.annotation) for node in tree.body
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
            for item in node.body if isinstance(item, ast.AnnAssign)}


@pytest.mark.parametrize("module", sorted(_ENGINES))
def test_each_accessor_answers_as_the_engine_module_declares(module: str) -> None:
    """An accessor casts to its protocol: it must let through exactly the engines whose module has
    mypy check that protocol, and refuse the others with a ConfigError."""
    claimed = _claimed_protocols(module)
    assert "Dialect" in claimed
    dialects = importlib.import_module("dbguard.dialects")
    for accessor, protocol in _accessors().items():
        if accessor == "for_sqlalchemy_dialect":
            continue
        for dialect in _ENGINES[module]:
            if protocol in claimed:
                assert getattr(dialects, accessor)(dialect) is dialect
            else:
                with pytest.raises(ConfigError):
                    getattr(dialects, accessor)(dialect)
