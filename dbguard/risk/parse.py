"""SQL text to :class:`Op` s, with sqlglot for the target dialect (imported here only: it costs
about 150 ms) and a few patterns for what sqlglot keeps as an opaque command."""

from __future__ import annotations

import contextlib
import functools
import logging
import re
import threading
from collections.abc import Iterator
from typing import Any, TypedDict

from dbguard.errors import StatementParseError
from dbguard.risk.model import Op

SQLGLOT_DIALECT = {"postgresql": "postgres", "mysql": "mysql", "mariadb": "mysql", "sqlite": "sqlite"}

_VOLATILE = {"clock_timestamp", "random", "gen_random_uuid", "uuid_generate_v4", "uuid_generate_v1",
             "nextval", "timeofday", "txid_current", "uuid", "rand", "sysdate"}
_AUTO_TYPES = {"SERIAL", "BIGSERIAL", "SMALLSERIAL"}

_sqlglot: Any = None


class _Common(TypedDict):
    """What every Op of one ALTER TABLE shares: passed to Op as keyword arguments."""

    table: str | None
    algorithm: str | None
    lock_clause: str | None


def _glot() -> Any:
    global _sqlglot
    if _sqlglot is None:
        import sqlglot

        _sqlglot = sqlglot
    return _sqlglot


def warm_parser(engine: str) -> None:
    """Import sqlglot and its dialect for ``engine`` now (~125 ms): done while a forked child renders
    the revisions, the first parse does not pay for it."""
    with contextlib.suppress(Exception), quiet_sqlglot():
        _glot().parse_one("SELECT 1", read=SQLGLOT_DIALECT.get(engine, engine))


_quiet_lock = threading.Lock()
_quiet_depth = 0
_saved_level = logging.NOTSET


@contextlib.contextmanager
def quiet_sqlglot() -> Iterator[None]:
    """sqlglot logs a warning for every statement it keeps as a Command (handled by dbguard): its
    logger is set to errors only while dbguard parses, then the host's level is back."""
    global _quiet_depth, _saved_level
    logger = logging.getLogger("sqlglot")
    with _quiet_lock:
        if _quiet_depth == 0:
            _saved_level = logger.level
            logger.setLevel(logging.ERROR)
        _quiet_depth += 1
    try:
        yield
    finally:
        with _quiet_lock:
            _quiet_depth -= 1
            if _quiet_depth == 0:
                logger.setLevel(_saved_level)


def _name(node: Any) -> str | None:
    if node is None:
        return None
    name = getattr(node, "name", None)
    if name:
        return str(name).lower()
    this = getattr(node, "this", None)
    if this is not None and this is not node:
        return _name(this)
    return None


def _unquote(text: str) -> str:
    text = text.strip()
    if len(text) > 1 and text[0] in "\"`[" and text[-1] in "\"`]":
        text = text[1:-1]
    return text.split(".")[-1].strip("\"`").lower()


# A stored routine, trigger or event whose body is a compound statement: the semicolons inside its
# BEGIN ... END end the body's statements, not the definition (the server reads it whole, as a
# driver with multi-statements sends it; airflow's migrations create a MySQL procedure so).
_ROUTINE = re.compile(r"^\s*CREATE\s+(?:OR\s+REPLACE\s+)?(?:DEFINER\s*=\s*\S+\s+)?(?:AGGREGATE\s+)?"
                      r"(?:PROCEDURE|FUNCTION|TRIGGER|EVENT)\b", re.IGNORECASE)
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*")
# END followed by one of these closes that construct, not a BEGIN block or a CASE expression.
_END_OF = frozenset({"IF", "LOOP", "WHILE", "REPEAT"})


def _block_word(sql: str, word: re.Match[str], depth: int) -> tuple[int, int]:
    """The BEGIN ... END nesting after ``word`` and where its reading ends: BEGIN and CASE open a
    block; END closes one (END CASE, read together, the CASE statement; a bare END a BEGIN block or
    a CASE expression), except END IF / END LOOP / END WHILE / END REPEAT, which close no block."""
    upper = word.group(0).upper()
    if upper in ("BEGIN", "CASE"):
        return depth + 1, word.end()
    if upper != "END":
        return depth, word.end()
    rest = sql[word.end():]
    following = _WORD.match(sql, word.end() + len(rest) - len(rest.lstrip()))
    closes = following.group(0).upper() if following is not None else ""
    if closes in _END_OF:
        return depth, following.end()  # type: ignore[union-attr]
    return max(depth - 1, 0), following.end() if closes == "CASE" else word.end()  # type: ignore[union-attr]


def split_statements(sql: str) -> list[str]:
    """Split text into statements on semicolons outside quotes, dollar quotes, comments and the
    BEGIN ... END body of a stored routine, trigger or event definition."""
    out, buf, i, n = [], [], 0, len(sql)
    quote: str | None = None
    depth = 0  # BEGIN ... END blocks open in the statement so far
    while i < n:
        ch = sql[i]
        if quote:
            buf.append(ch)
            if quote.startswith("$"):
                if sql.startswith(quote, i):
                    buf.append(sql[i + 1:i + len(quote)])
                    i += len(quote)
                    quote = None
                    continue
            elif ch == quote:
                quote = None
            i += 1
            continue
        if ch in "'\"`":
            quote = ch
        elif ch == "$":
            m = re.match(r"\$[A-Za-z_]*\$", sql[i:])
            if m:
                quote = m.group(0)
                buf.append(quote)
                i += len(quote)
                continue
        elif sql.startswith("--", i):
            end = sql.find("\n", i)
            i = n if end < 0 else end + 1
            continue
        elif sql.startswith("/*", i):
            end = sql.find("*/", i)
            i = n if end < 0 else end + 2
            continue
        elif ch == ";":
            text = "".join(buf).strip()
            if depth > 0 and _ROUTINE.match(text):
                buf.append(ch)  # inside the routine's body
                i += 1
                continue
            if text:
                out.append(text)
            buf, depth = [], 0
            i += 1
            continue
        elif ch.isalpha() or ch == "_":
            word = _WORD.match(sql, i)
            if word is not None and (i == 0 or not (sql[i - 1].isalnum() or sql[i - 1] in "_$")):
                depth, end = _block_word(sql, word, depth)
                buf.append(sql[i:end])
                i = end
                continue
        buf.append(ch)
        i += 1
    text = "".join(buf).strip()
    if text:
        out.append(text)
    return out


def parse(sql: str, engine: str) -> list[Op]:
    """Every operation of ``sql`` (one or more statements) for ``engine``."""
    ops: list[Op] = []
    for statement in split_statements(sql):
        ops.extend(parse_statement(statement, engine))
    return ops


def parse_statement(sql: str, engine: str) -> list[Op]:
    """The operations of one statement; raises :class:`StatementParseError` when sqlglot cannot parse
    it (and no pattern below reads it) or its tree has a shape this module does not know."""
    return list(_parse_cached(sql, engine))


@functools.lru_cache(maxsize=4096)
def _parse_cached(sql: str, engine: str) -> tuple[Op, ...]:
    return tuple(_parse_statement(sql, engine))


def _parse_statement(sql: str, engine: str) -> list[Op]:
    fallback = _fallback(sql)
    if fallback is not None:
        return fallback
    glot = _glot()
    read = SQLGLOT_DIALECT.get(engine, engine)
    # A statement nobody could read must stop the plan: kept as "unknown" it passed every rule.
    try:
        with quiet_sqlglot():
            tree = glot.parse_one(sql, read=read)
    except Exception as exc:  # noqa: BLE001 - ParseError, TokenError ...: every parser failure
        raise StatementParseError(f"sqlglot {_glot_version()} cannot parse {shown_statement(sql)} as {read} "
                                  f"[{_first_line(exc)}]", sql) from None
    try:
        ops = _from_tree(tree, sql, engine)
    except Exception as exc:  # noqa: BLE001 - a tree shape this module does not know: an unsupported sqlglot
        raise StatementParseError(f"dbguard cannot read sqlglot {_glot_version()}'s tree of {shown_statement(sql)} "
                                  f"[{type(exc).__name__}: {_first_line(exc)}] (is this sqlglot version one "
                                  "dbguard supports?)", sql) from None
    # Parsed, but a statement dbguard has no rules for (sqlglot's opaque Command, a GRANT ...).
    return ops or [Op("unknown", sql, note="not understood")]


def shown_statement(sql: str, limit: int = 100) -> str:
    """``sql`` on one line, quoted, cut at ``limit`` characters: how an error names a statement."""
    flat = " ".join(sql.split())
    return f'"{flat if len(flat) <= limit else flat[:limit - 3] + "..."}"'


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:160] if lines else type(exc).__name__


def _glot_version() -> str:
    return str(getattr(_glot(), "__version__", "(version unknown)"))


# Forms sqlglot keeps as an opaque Command (or parses lossily): recognised by pattern first.
_FLAGS = re.IGNORECASE | re.DOTALL
_ID = r"""(?:"[^"]+"|`[^`]+`|[\w$]+)(?:\.(?:"[^"]+"|`[^`]+`|[\w$]+))?"""
_PATTERNS: list[tuple[re.Pattern[str], Any]] = [
    (re.compile(rf"^ALTER\s+TABLE\s+(?:ONLY\s+)?(?:IF\s+EXISTS\s+)?({_ID})\s+VALIDATE\s+CONSTRAINT\s+({_ID})", _FLAGS),
     lambda m, s: [Op("validate_constraint", s, table=_unquote(m[1]), constraint_name=_unquote(m[2]))]),
    (re.compile(rf"^ALTER\s+TABLE\s+(?:ONLY\s+)?({_ID})\s+ADD\s+CONSTRAINT\s+({_ID})\s+(UNIQUE|PRIMARY\s+KEY)"
                rf"\s+USING\s+INDEX\s+({_ID})", _FLAGS),
     lambda m, s: [Op("add_constraint", s, table=_unquote(m[1]), constraint_name=_unquote(m[2]),
                      constraint="unique" if m[3].upper() == "UNIQUE" else "primary_key", using_index=True,
                      index=_unquote(m[4]))]),
    (re.compile(rf"^LOCK\s+(?:TABLE\s+)?(?:ONLY\s+)?({_ID})(?:\s+IN\s+([\w\s]+?)\s+MODE)?\s*(NOWAIT)?\s*$", _FLAGS),
     lambda m, s: [Op("lock_table", s, table=_unquote(m[1]), value=(m[2] or "ACCESS EXCLUSIVE").upper(),
                      setting="nowait" if m[3] else None)]),
    (re.compile(rf"^LOCK\s+TABLES\s+({_ID})\s+(READ|WRITE)", _FLAGS),
     lambda m, s: [Op("lock_table", s, table=_unquote(m[1]), value=m[2].upper())]),
    (re.compile(rf"^(?:VACUUM\s+(?:\(\s*)?FULL\b[^;]*?|CLUSTER)\s+({_ID})\s*(?:USING\s+{_ID})?\s*$", _FLAGS),
     lambda m, s: [Op("rewrite_table", s, table=_unquote(m[1]), note="rewrites the table")]),
    # PostgreSQL's RENAME without COLUMN (Alembic writes it so): sqlglot reads it as a table rename.
    (re.compile(rf"^ALTER\s+TABLE\s+(?:ONLY\s+)?(?:IF\s+EXISTS\s+)?({_ID})\s+RENAME\s+(?!TO\b)(?:COLUMN\s+)?({_ID})"
                rf"\s+TO\s+({_ID})\s*$", _FLAGS),
     lambda m, s: [Op("rename_column", s, table=_unquote(m[1]), column=_unquote(m[2]), new_name=_unquote(m[3]))]),
    (re.compile(rf"^RENAME\s+TABLE\s+({_ID})\s+TO\s+({_ID})", _FLAGS),
     lambda m, s: [Op("rename_table", s, table=_unquote(m[1]), new_name=_unquote(m[2]))]),
    (re.compile(rf"^CREATE\s+(UNIQUE\s+|FULLTEXT\s+|SPATIAL\s+)?INDEX\s+(CONCURRENTLY\s+)?(?:IF\s+NOT\s+EXISTS\s+)?"
                rf"({_ID})\s+ON\s+({_ID})", _FLAGS),
     lambda m, s: _mysql_index(m, s)),
    (re.compile(r"^REINDEX\s+(?:\(.*?\)\s*)?(TABLE|INDEX)\s+(CONCURRENTLY\s+)?(" + _ID + ")", _FLAGS),
     lambda m, s: [Op("create_index", s, table=_unquote(m[3]) if m[1].upper() == "TABLE" else None,
                      index=_unquote(m[3]), concurrently=bool(m[2]), note="REINDEX")]),
    (re.compile(rf"^CREATE\s+(?:OR\s+REPLACE\s+)?(MATERIALIZED\s+)?VIEW\s+(?:IF\s+NOT\s+EXISTS\s+)?({_ID})", _FLAGS),
     lambda m, s: [_view(m, s)]),
    (re.compile(rf"^REFRESH\s+MATERIALIZED\s+VIEW\s+(CONCURRENTLY\s+)?({_ID})", _FLAGS),
     lambda m, s: [Op("refresh_view", s, table=_unquote(m[2]), concurrently=bool(m[1]))]),
    (re.compile(r"^(ALTER\s+TYPE|CREATE\s+(?:OR\s+REPLACE\s+)?(?:DEFINER\s*=\s*\S+\s+)?"
                r"(?:FUNCTION|PROCEDURE|TRIGGER|EVENT|EXTENSION|SEQUENCE|SCHEMA|VIEW|MATERIALIZED\s+VIEW)|"
                r"DROP\s+(?:TYPE|FUNCTION|PROCEDURE|TRIGGER|SEQUENCE|VIEW|EXTENSION|SCHEMA)|"
                r"COMMENT\s+ON|GRANT|REVOKE|ANALYZE)\b", _FLAGS),
     lambda m, s: [Op("other_ddl", s)]),
]


_READS = re.compile(rf"\b(?:FROM|JOIN)\s+(?:ONLY\s+)?({_ID})", _FLAGS)
_NO_DATA = re.compile(r"\bWITH\s+NO\s+DATA\s*;?\s*$", re.IGNORECASE)


def _view(m: re.Match[str], sql: str) -> Op:
    """CREATE [OR REPLACE] [MATERIALIZED] VIEW: the view, and the tables its query reads (a populated
    materialized view reads every row of them; ``value`` says which kind it is)."""
    view = _unquote(m[2])
    materialized = bool(m[1])
    kind = "view" if not materialized else "materialized_empty" if _NO_DATA.search(sql) else "materialized"
    return Op("create_view", sql, table=view, references=tuple(t for t in _tables_read(sql) if t != view), value=kind)


def _tables_read(sql: str) -> tuple[str, ...]:
    """The tables a view's query names (its CTEs left out), by sqlglot, else by FROM/JOIN."""
    found: dict[str, None] = {}
    try:
        glot = _glot()
        with quiet_sqlglot():
            tree = glot.parse_one(sql, read="postgres")
        ctes = {str(c.alias_or_name) for c in tree.find_all(glot.exp.CTE)}
        for table in tree.find_all(glot.exp.Table):
            name = _name(table)
            if name and name not in ctes:
                found[name] = None
    except Exception:  # noqa: BLE001 - a query sqlglot cannot read: its FROM and JOIN names
        found = {}
    return tuple(found) or tuple(dict.fromkeys(_unquote(t) for t in _READS.findall(sql)))


def _fallback(sql: str) -> list[Op] | None:
    for pattern, build in _PATTERNS:
        match = pattern.match(sql.strip())
        if match:
            ops: list[Op] | None = build(match, sql)
            if ops is not None:
                return ops
    return None


_ALGORITHM = re.compile(r"\bALGORITHM\s*=?\s*(\w+)", re.IGNORECASE)
_LOCK = re.compile(r"\bLOCK\s*=?\s*(\w+)", re.IGNORECASE)


def _mysql_index(m: re.Match[str], sql: str) -> list[Op] | None:
    """CREATE FULLTEXT/SPATIAL INDEX, or CREATE INDEX ... ALGORITHM=/LOCK= (MySQL forms sqlglot keeps
    as a Command); plain CREATE INDEX goes to sqlglot."""
    kind = (m[1] or "").strip().upper()
    algorithm, lock = _ALGORITHM.search(sql), _LOCK.search(sql)
    if kind not in ("FULLTEXT", "SPATIAL") and not algorithm and not lock:
        return None
    return [Op("create_index", sql, table=_unquote(m[4]), index=_unquote(m[3]), unique=kind == "UNIQUE",
               concurrently=bool(m[2]), index_kind=kind.lower() if kind in ("FULLTEXT", "SPATIAL") else None,
               algorithm=algorithm[1].upper() if algorithm else None, lock_clause=lock[1].upper() if lock else None)]


def _type_text(dtype: Any) -> str | None:
    if dtype is None:
        return None
    try:
        return str(dtype.sql(dialect="postgres")).upper()
    except Exception:  # noqa: BLE001
        return str(dtype).upper()


def _column_def(col: Any, glot: Any) -> dict[str, Any]:
    exp = glot.exp
    info: dict[str, Any] = {"column": _name(col.this), "type": _type_text(col.args.get("kind")),
                            "nullable": True, "has_default": False, "default_volatile": False,
                            "auto_value": False, "generated_stored": False}
    kind = col.args.get("kind")
    if kind is not None and str(getattr(kind, "this", "")).split(".")[-1] in _AUTO_TYPES:
        info["auto_value"] = True
    for constraint in col.args.get("constraints") or []:
        k = constraint.args.get("kind")
        if isinstance(k, exp.NotNullColumnConstraint):
            info["nullable"] = bool(k.args.get("allow_null"))
        elif isinstance(k, exp.PrimaryKeyColumnConstraint):
            info["nullable"] = False
        elif isinstance(k, exp.DefaultColumnConstraint):
            info["has_default"] = True
            default = k.this
            if default is not None and not isinstance(default, exp.Null):
                names = {_fn_name(f) for f in default.find_all(exp.Func)}
                info["default_volatile"] = bool(names & _VOLATILE)
            else:
                info["has_default"] = False
        elif isinstance(k, (exp.AutoIncrementColumnConstraint, exp.GeneratedAsIdentityColumnConstraint)):
            info["auto_value"] = True
        elif isinstance(k, exp.ComputedColumnConstraint):
            info["auto_value"] = True
            info["generated_stored"] = bool(k.args.get("persisted")) or "STORED" in k.sql().upper() or True
    return info


def _fn_name(func: Any) -> str:
    name = getattr(func, "name", None) or type(func).__name__
    mapping = {"Rand": "random", "Uuid": "gen_random_uuid", "CurrentTimestamp": "now"}
    return mapping.get(type(func).__name__, str(name)).lower()


def _options(tree: Any, glot: Any) -> tuple[str | None, str | None]:
    exp = glot.exp
    algorithm = lock = None
    for option in tree.args.get("options") or []:
        if isinstance(option, exp.AlgorithmProperty):
            algorithm = str(option.this.name if hasattr(option.this, "name") else option.this).upper()
        elif isinstance(option, exp.LockProperty):
            lock = str(option.this.name if hasattr(option.this, "name") else option.this).upper()
    return algorithm, lock


def _check_not_null_of(check: Any, glot: Any) -> str | None:
    exp = glot.exp
    expr = check.this
    if isinstance(expr, exp.Paren):
        expr = expr.this
    if isinstance(expr, exp.Not) and isinstance(expr.this, exp.Is) and isinstance(expr.this.expression, exp.Null):
        return _name(expr.this.this)
    if isinstance(expr, exp.Is) and expr.args.get("negate") and isinstance(expr.expression, exp.Null):
        return _name(expr.this)
    return None


def _from_tree(tree: Any, sql: str, engine: str) -> list[Op]:
    glot = _glot()
    exp = glot.exp
    if isinstance(tree, exp.Transaction):
        return [Op("begin", sql)]
    if isinstance(tree, exp.Commit):
        return [Op("commit", sql)]
    if isinstance(tree, exp.Set):
        ops = []
        for item in tree.expressions:
            eq = item.this
            if isinstance(eq, exp.EQ):
                value = eq.expression
                text = value.name if hasattr(value, "name") and value.name else value.sql()
                ops.append(Op("set", sql, setting=_name(eq.this), value=str(text).strip("'\"")))
        return ops or [Op("set", sql)]
    if isinstance(tree, exp.Create):
        return _create(tree, sql, glot)
    if isinstance(tree, exp.Drop):
        kind = str(tree.args.get("kind") or "").upper()
        if kind == "TABLE":
            return [Op("drop_table", sql, table=_name(t)) for t in _dropped(tree)]
        if kind == "INDEX":
            on = tree.args.get("cluster")
            table = _name(on.this) if on is not None else None
            return [Op("drop_index", sql, index=_name(t), table=table,
                       concurrently=bool(tree.args.get("concurrently"))) for t in _dropped(tree)]
        return [Op("other_ddl", sql)]
    if isinstance(tree, exp.TruncateTable):
        return [Op("truncate", sql, table=_name(t)) for t in tree.expressions]
    if isinstance(tree, exp.Update):
        return [Op("update", sql, table=_name(tree.this), has_where=tree.args.get("where") is not None)]
    if isinstance(tree, exp.Delete):
        return [Op("delete", sql, table=_name(tree.this), has_where=tree.args.get("where") is not None)]
    if isinstance(tree, exp.Insert):
        target = tree.this
        if isinstance(target, exp.Schema):
            target = target.this
        return [Op("insert", sql, table=_name(target))]
    if isinstance(tree, (exp.Select, exp.Union)):
        return [Op("select", sql)]
    if isinstance(tree, exp.Alter):
        return _alter(tree, sql, glot, engine)
    if isinstance(tree, exp.Command):
        return [Op("unknown", sql, note=f"{tree.this} statement not understood")]
    return []


def _dropped(node: Any) -> list[Any]:
    # sqlglot before 30.18 keeps the one dropped object in ``this``; later ones list them in ``tables``.
    dropped = node.args.get("tables") or node.expressions or ([node.this] if node.this is not None else [])
    if not dropped:
        # Every DROP names what it drops: a tree without it has moved it where this code does not look,
        # and a DROP TABLE read as dropping nothing would pass DG107.
        raise ValueError("a DROP whose target is not in the tree")
    return list(dropped)


def _create(tree: Any, sql: str, glot: Any) -> list[Op]:
    exp = glot.exp
    kind = str(tree.args.get("kind") or "").upper()
    if kind == "INDEX":
        index = tree.this
        params = index.args.get("params")
        using = params.args.get("using") if params is not None else None
        return [Op("create_index", sql, table=_name(index.args.get("table")), index=_name(index.this),
                   concurrently=bool(tree.args.get("concurrently")), unique=bool(tree.args.get("unique")),
                   index_kind=str(using.name).lower() if using is not None and str(using.name).lower()
                   in ("fulltext", "spatial") else None)]
    if kind == "TABLE":
        schema = tree.this
        table = _name(schema.this if isinstance(schema, exp.Schema) else schema)
        refs: list[str | None] = []
        indexes: list[str] = []
        columns = {}
        for part in (schema.expressions if isinstance(schema, exp.Schema) else []):
            if isinstance(part, exp.ColumnDef):
                info = _column_def(part, glot)
                columns[info["column"]] = (info["type"], info["nullable"])
            for ref in part.find_all(exp.Reference):
                target = ref.this.this if isinstance(ref.this, exp.Schema) else ref.this
                refs.append(_name(target))
            if isinstance(part, (exp.PrimaryKey, exp.UniqueColumnConstraint)) or part.find(exp.PrimaryKey) or \
                    part.find(exp.UniqueColumnConstraint) or part.find(exp.IndexColumnConstraint):
                indexes.append(f"{table}:{len(indexes)}")
        return [Op("create_table", sql, table=table, references=tuple(r for r in refs if r),
                   created_indexes=tuple(indexes), columns=tuple((c, t, n) for c, (t, n) in columns.items()))]
    return [Op("other_ddl", sql)]


def _alter(tree: Any, sql: str, glot: Any, engine: str) -> list[Op]:
    exp = glot.exp
    if str(tree.args.get("kind") or "TABLE").upper() != "TABLE":
        return [Op("other_ddl", sql)]
    table = _name(tree.this)
    algorithm, lock = _options(tree, glot)
    common = _Common(table=table, algorithm=algorithm, lock_clause=lock)
    not_valid = bool(tree.args.get("not_valid"))
    ops: list[Op] = []
    for action in tree.args.get("actions") or []:
        if isinstance(action, exp.ColumnDef):
            info = _column_def(action, glot)
            ops.append(Op("add_column", sql, **common, **info))
        elif isinstance(action, exp.Drop):
            kind = str(action.args.get("kind") or "").upper()
            names = [_name(t) for t in _dropped(action)]
            if kind == "COLUMN":
                ops += [Op("drop_column", sql, column=n, **common) for n in names]
            elif kind == "INDEX":
                ops += [Op("drop_index", sql, index=n, **common) for n in names]
            else:
                ops += [Op("drop_constraint", sql, constraint_name=n, **common) for n in names]
        elif isinstance(action, exp.AlterColumn):
            column = _name(action.this)
            if action.args.get("dtype") is not None:
                ops.append(Op("alter_type", sql, column=column, type=_type_text(action.args["dtype"]), **common))
            elif action.args.get("allow_null") is False:
                ops.append(Op("set_not_null", sql, column=column, **common))
            elif action.args.get("allow_null") is True:
                ops.append(Op("drop_not_null", sql, column=column, **common))
            else:
                ops.append(Op("set_default", sql, column=column, **common))
        elif isinstance(action, exp.ModifyColumn):
            # MySQL MODIFY / CHANGE: restates the whole column.
            info = _column_def(action.this, glot)
            rename_from = _name(action.args.get("rename_from"))
            column = rename_from or info["column"]
            # The restated column first, under its old name; then the rename (plan state follows it).
            ops.append(Op("alter_type", sql, column=column, type=info["type"], nullable=info["nullable"],
                          note="MODIFY/CHANGE restates the column", **common))
            if rename_from and rename_from != info["column"]:
                ops.append(Op("rename_column", sql, column=rename_from, new_name=info["column"], **common))
        elif isinstance(action, exp.RenameColumn):
            ops.append(Op("rename_column", sql, column=_name(action.this), new_name=_name(action.args.get("to")),
                          **common))
        elif isinstance(action, exp.AlterRename):
            ops.append(Op("rename_table", sql, new_name=_name(action.this), **common))
        elif isinstance(action, exp.AddConstraint):
            for part in action.expressions:
                ops.append(_constraint(part, sql, common, not_valid, glot))
        elif isinstance(action, exp.AlterSet):
            option = str(getattr(action.args.get("option"), "name", "") or "").upper()
            if option in ("LOGGED", "UNLOGGED") or action.args.get("tablespace") is not None:
                ops.append(Op("rewrite_table", sql, note=f"SET {option or 'TABLESPACE'} rewrites the table", **common))
            else:
                ops.append(Op("other_ddl", sql, **common))
        else:
            ops.append(Op("unknown", sql, note=f"ALTER TABLE action {type(action).__name__} not understood", **common))
    return ops


def _constraint(part: Any, sql: str, common: _Common, not_valid: bool, glot: Any) -> Op:
    exp = glot.exp
    name = _name(part.this) if isinstance(part, exp.Constraint) else None
    inner = part.expressions[0] if isinstance(part, exp.Constraint) and part.expressions else part
    if isinstance(inner, exp.ForeignKey):
        ref = inner.args.get("reference")
        target = ref.this.this if ref is not None and isinstance(ref.this, exp.Schema) else getattr(ref, "this", None)
        return Op("add_constraint", sql, constraint="foreign_key", constraint_name=name, not_valid=not_valid,
                  ref_table=_name(target), **common)
    if isinstance(inner, exp.CheckColumnConstraint):
        return Op("add_constraint", sql, constraint="check", constraint_name=name, not_valid=not_valid,
                  check_not_null_of=_check_not_null_of(inner, glot), **common)
    if isinstance(inner, (exp.PrimaryKey, exp.PrimaryKeyColumnConstraint)):
        return Op("add_constraint", sql, constraint="primary_key", constraint_name=name, **common)
    if isinstance(inner, exp.UniqueColumnConstraint):
        return Op("add_constraint", sql, constraint="unique", constraint_name=name, **common)
    if isinstance(inner, exp.IndexColumnConstraint):
        kind = str(inner.args.get("kind") or "").lower() or None
        return Op("create_index", sql, index=_name(inner.this) or name, unique=kind == "unique",
                  index_kind=kind if kind in ("fulltext", "spatial") else None, **common)
    return Op("add_constraint", sql, constraint="other", constraint_name=name, not_valid=not_valid, **common)
