"""The safe form of a risky statement as Alembic code a reviewer can paste into a revision.

Pure text building from the parsed :class:`Op`: the real table, column and constraint names where
the statement gives them, ``<placeholders>`` where it does not. Each form is a few lines of
``upgrade()`` body (comments mark what belongs in a later revision) and compiles as Python.
"""

from __future__ import annotations

import re

from dbguard.risk.model import Context, LockInfo, Op

_IDENT = re.compile(r'^[`"]?([A-Za-z_][A-Za-z0-9_$]*)[`"]?$')
_PAREN = re.compile(r"\(([^()]*)\)")


def _q(text: str | None, placeholder: str) -> str:
    return repr(text or placeholder)


def _names(group: str | None) -> list[str] | None:
    """Plain column names of ``a, "b"``; None when it holds an expression."""
    if group is None:
        return None
    out = []
    for part in group.split(","):
        m = _IDENT.match(part.strip())
        if not m:
            return None
        out.append(m[1])
    return out or None


def _list(names: list[str] | None) -> str:
    return repr(names) if names else "['<column>']"


def _one_line(sql: str) -> str:
    return " ".join(sql.strip().rstrip(";").split())


def _execute(sql: str) -> str:
    return f"op.execute({_one_line(sql)!r})"


def _online_mysql(sql: str) -> str:
    """The statement with the online clauses MySQL/MariaDB refuse rather than fall back to a copy."""
    flat = re.sub(r",?\s*\b(ALGORITHM|LOCK)\s*=\s*\w+", "", _one_line(sql), flags=re.IGNORECASE)
    return _execute(f"{flat}, ALGORITHM=INPLACE, LOCK=NONE")


def _backfill(table: str, column: str, value: str) -> str:
    return (f"# backfill in batches (repeat for each id range) before going on:\n"
            f"op.execute({f'UPDATE {table} SET {column} = {value} WHERE {column} IS NULL AND id BETWEEN 1 AND 10000'!r})")


def rewrite(op: Op, lock: LockInfo, ctx: Context) -> str:
    """DG101: MySQL/MariaDB INPLACE with LOCK=NONE where it applies; else a new column and a backfill."""
    table, column = op.table or "<table>", op.column or "<column>"
    if ctx.server.engine != "postgresql" and lock.algorithm == "INPLACE" and not lock.blocks_writes:
        return "# writes go on during the rebuild; the server refuses rather than blocking them:\n" + \
            _online_mysql(op.sql)
    if op.kind == "add_column":
        default = re.search(r"\bDEFAULT\s+(.+?)(?:\s+(?:NOT\s+)?NULL\b.*)?$", _one_line(op.sql), re.IGNORECASE)
        value = default[1] if default else "<value>"
        # The default first: new rows get it, and only the existing ones need the backfill.
        return "\n".join([
            _execute(f"ALTER TABLE {table} ADD COLUMN {column} {op.type or '<type>'}"),
            _execute(f"ALTER TABLE {table} ALTER COLUMN {column} SET DEFAULT {value}"),
            _backfill(table, column, value),
        ])
    if op.kind == "alter_type":
        new = f"{column}_new"
        return "\n".join([
            _execute(f"ALTER TABLE {table} ADD COLUMN {new} {op.type or '<type>'}"),
            "# the application writes both columns; then",
            _backfill(table, new, column),
            f"# later revision: rename {new} to {column} and drop the old column",
        ])
    return ("# copy without blocking writes: an online schema change tool (gh-ost, pt-online-schema-change)\n"
            f"# on MySQL/MariaDB, or a new table filled in batches; or run it in a quiet window:\n{_execute(op.sql)}")


def index(op: Op, lock: LockInfo, ctx: Context) -> str:
    """DG102: the index built (or dropped) CONCURRENTLY outside the transaction; MySQL INPLACE."""
    table, name = op.table or "<table>", op.index or "<index>"
    if op.kind == "drop_index":
        table_arg = f", table_name={table!r}" if op.table else ""
        return ("with op.get_context().autocommit_block():\n"
                f"    op.drop_index({name!r}{table_arg}, postgresql_concurrently=True)")
    if ctx.server.engine != "postgresql":
        if op.index_kind:
            return ("# a FULLTEXT/SPATIAL index blocks writes while it builds: an online schema change tool\n"
                    f"# (gh-ost, pt-online-schema-change), or run it in a quiet window:\n{_execute(op.sql)}")
        return _online_mysql(op.sql) if op.sql.lstrip().upper().startswith("ALTER") else \
            _execute(f"{_one_line(op.sql)} ALGORITHM=INPLACE LOCK=NONE")
    on = re.search(r"\bON\s+(?:ONLY\s+)?\S+\s*(?:USING\s+\w+\s*)?\((.*)\)", _one_line(op.sql), re.IGNORECASE)
    columns = _names(on[1]) if on else None
    if columns is None or re.search(r"\bWHERE\b|\bINCLUDE\b", op.sql, re.IGNORECASE):
        concurrent = re.sub(r"\bINDEX\b", "INDEX CONCURRENTLY", _one_line(op.sql), count=1, flags=re.IGNORECASE)
        return f"with op.get_context().autocommit_block():\n    {_execute(concurrent)}"
    unique = ", unique=True" if op.unique else ""
    return ("with op.get_context().autocommit_block():\n"
            f"    op.create_index({name!r}, {table!r}, {_list(columns)}{unique}, postgresql_concurrently=True)")


def not_null(op: Op, lock: LockInfo, ctx: Context) -> str:
    """DG103/DG104: nullable column, batched backfill, then NOT NULL without a long exclusive scan."""
    table, column = op.table or "<table>", op.column or "<column>"
    lines = []
    if op.kind == "add_column":
        lines.append(_execute(f"ALTER TABLE {table} ADD COLUMN {column} {op.type or '<type>'}"))
    lines.append(_backfill(table, column, "<value>"))
    if ctx.server.engine != "postgresql":
        lines.append(_online_mysql(f"ALTER TABLE {table} MODIFY {column} {op.type or '<type>'} NOT NULL"))
        return "\n".join(lines)
    check = f"ck_{table}_{column}_not_null"[:63]
    lines += [
        _execute(f"ALTER TABLE {table} ADD CONSTRAINT {check} CHECK ({column} IS NOT NULL) NOT VALID"),
        "# next revision (VALIDATE lets writes go on; SET NOT NULL then skips its scan):",
        _execute(f"ALTER TABLE {table} VALIDATE CONSTRAINT {check}"),
        f"op.alter_column({table!r}, {column!r}, nullable=False)",
        f"op.drop_constraint({check!r}, {table!r})",
    ]
    return "\n".join(lines)


def validate_later(op: Op, lock: LockInfo, ctx: Context) -> str:
    """DG105: the constraint NOT VALID now (brief lock), VALIDATE in the next revision."""
    table, name = op.table or "<table>", op.constraint_name or "<constraint>"
    flat = _one_line(op.sql)
    if ctx.server.engine != "postgresql":
        if op.constraint == "foreign_key":
            return ("# with foreign_key_checks off the key is added INPLACE without checking existing rows:\n"
                    "# find orphans first (LEFT JOIN ... WHERE parent.id IS NULL)\n"
                    "op.execute('SET SESSION foreign_key_checks = 0')\n"
                    f"{_online_mysql(op.sql)}\n"
                    "op.execute('SET SESSION foreign_key_checks = 1')")
        return ("# the CHECK copies the table: an online schema change tool (gh-ost, pt-online-schema-change),\n"
                f"# or run it in a quiet window:\n{_execute(op.sql)}")
    if op.constraint == "foreign_key":
        fk = re.search(r"FOREIGN\s+KEY\s*\(([^()]*)\)\s*REFERENCES\s+(\S+?)\s*\(([^()]*)\)", flat, re.IGNORECASE)
        local, remote = (_names(fk[1]), _names(fk[3])) if fk else (None, None)
        first = (f"op.create_foreign_key({name!r}, {table!r}, {_q(op.ref_table, '<referenced table>')}, "
                 f"{_list(local)}, {_list(remote)}, postgresql_not_valid=True)")
    else:
        check = re.search(r"\bCHECK\s*\((.*)\)", flat, re.IGNORECASE)
        first = (f"op.create_check_constraint({name!r}, {table!r}, {_q(check[1] if check else None, '<condition>')}, "
                 "postgresql_not_valid=True)")
    return "\n".join([first, "# next revision (SHARE UPDATE EXCLUSIVE: writes go on while it scans):",
                      _execute(f"ALTER TABLE {table} VALIDATE CONSTRAINT {name}")])


def unique_using_index(op: Op, lock: LockInfo, ctx: Context) -> str:
    """DG106: the unique index built CONCURRENTLY, then the constraint attached to it."""
    table, name = op.table or "<table>", op.constraint_name or f"uq_{op.table or 'table'}"
    flat = _one_line(op.sql)
    if ctx.server.engine != "postgresql":
        return _online_mysql(op.sql)
    cols = re.search(r"\b(?:UNIQUE|PRIMARY\s+KEY)\s*\(([^()]*)\)", flat, re.IGNORECASE)
    kind = "PRIMARY KEY" if op.constraint == "primary_key" else "UNIQUE"
    return "\n".join([
        "with op.get_context().autocommit_block():",
        (f"    op.create_index({name!r}, {table!r}, {_list(_names(cols[1]) if cols else None)}, unique=True, "
         "postgresql_concurrently=True)"),
        _execute(f"ALTER TABLE {table} ADD CONSTRAINT {name} {kind} USING INDEX {name}"),
    ])
