"""A MySQL/MariaDB migration statement rewritten to run on an empty copy of its table, for
``dbguard plan --observe``: which table a statement changes, and the same change aimed at the copy.
Pure text work, apart from the dialect: only the observation loads it (compiling its patterns is
a few milliseconds of every other command's start).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

from dbguard.dialects.mysql import quote_identifier, split_qualified_name

# The probes, least disruptive first: the first the server accepts is what it would do.
# Each as (algorithm, lock, clause appended).
PROBE_CLAUSES: tuple[tuple[str, str | None, str | None], ...] = (
    ("instant", None, "ALGORITHM=INSTANT"),
    ("inplace", "none", "ALGORITHM=INPLACE, LOCK=NONE"),
    # In place while writers wait (the first FULLTEXT index, an AUTO_INCREMENT column): not a COPY.
    ("inplace", "shared", "ALGORITHM=INPLACE, LOCK=SHARED"),
    ("copy", None, None),  # as written: the server falls back to COPY, which blocks writes
)
# A statement naming its LOCK but no ALGORITHM: the server still picks the fastest algorithm it can
# under that lock, so only the algorithm is asked (the statement's own LOCK clause stays).
NAMED_LOCK_CLAUSES: tuple[tuple[str, str | None], ...] = (
    ("instant", "ALGORITHM=INSTANT"),
    ("inplace", "ALGORITHM=INPLACE"),
    ("copy", None),
)

# \w: any Unicode letter or digit, as MySQL allows unquoted (a literal U+0080-U+FFFF class under
# IGNORECASE took 0.1 s to compile at every start of every command on MySQL).
_IDENT = r"(?:`(?:[^`]|``)+`|[\w$]+)"
_QNAME = rf"{_IDENT}(?:\s*\.\s*{_IDENT})?"
_FLAGS = re.IGNORECASE | re.DOTALL
_ALTER = re.compile(rf"\s*ALTER\s+TABLE\s+({_QNAME})\s+(\S.*?)\s*;?\s*$", _FLAGS)
_CREATE_INDEX = re.compile(
    rf"\s*CREATE\s+(?:(UNIQUE|FULLTEXT|SPATIAL)\s+)?INDEX\s+({_IDENT})\s+(USING\s+\w+\s+)?ON\s+({_QNAME})\s*"
    r"(\(.*?)\s*;?\s*$", _FLAGS)
_DROP_INDEX = re.compile(rf"\s*DROP\s+INDEX\s+({_IDENT})\s+ON\s+({_QNAME})(.*?)\s*;?\s*$", _FLAGS)
_CREATE_TABLE = re.compile(rf"\s*CREATE\s+(?:TEMPORARY\s+)?TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?({_QNAME})", _FLAGS)
_DROP_TABLE = re.compile(rf"\s*DROP\s+(?:TEMPORARY\s+)?TABLES?\s+(?:IF\s+EXISTS\s+)?({_QNAME})", _FLAGS)
_RENAME_TABLE = re.compile(rf"\s*RENAME\s+TABLES?\s+({_QNAME})", _FLAGS)
_DML = re.compile(
    rf"\s*(?:UPDATE\s+(?:LOW_PRIORITY\s+)?(?:IGNORE\s+)?({_QNAME})"
    rf"|DELETE\s+(?:LOW_PRIORITY\s+)?(?:QUICK\s+)?(?:IGNORE\s+)?FROM\s+({_QNAME})"
    rf"|(?:INSERT|REPLACE)\s+(?:LOW_PRIORITY\s+|DELAYED\s+|HIGH_PRIORITY\s+)?(?:IGNORE\s+)?(?:INTO\s+)?({_QNAME})"
    r"|(?:UPDATE|DELETE|INSERT|REPLACE)\b)", _FLAGS)
_ALGORITHM = re.compile(r"(,\s*)?\bALGORITHM\s*=?\s*(DEFAULT|INSTANT|INPLACE|COPY|NOCOPY)\b", re.IGNORECASE)
_LOCK = re.compile(r"(,\s*)?\bLOCK\s*=?\s*(DEFAULT|NONE|SHARED|EXCLUSIVE)\b", re.IGNORECASE)
# Words that may follow ALTER TABLE but are not a table name.
_NOT_A_NAME = frozenset({"IF", "ONLINE", "IGNORE"})
# What a copy cannot stand for: LIKE copies no foreign keys; a rename would leave the copy under
# another name; EXCHANGE PARTITION ... WITH TABLE and DISCARD/IMPORT TABLESPACE reach beyond the copy.
_CANNOT_PROBE = (
    (re.compile(r"\bFOREIGN\s+KEY\b|\bREFERENCES\b", re.IGNORECASE), "foreign keys are not copied"),
    (re.compile(r"\bRENAME\b(?!\s+(?:COLUMN|INDEX|KEY)\b)", re.IGNORECASE), "renames the table"),
    (re.compile(r"\bEXCHANGE\b|\bTABLESPACE\b", re.IGNORECASE), "reaches beyond the table"),
)


@dataclass(frozen=True)
class CopyProbe:
    """A statement sorted for observation: its kind (``alter``, ``create_table``, ``drop_table``,
    ``rename_table``, ``dml``, ``unknown``), the table it names (unquoted, ``db.t`` when qualified),
    for ``alter`` the operations to run on a copy (ALTER TABLE's text after the table name), the
    ALGORITHM and LOCK the statement names itself (lower case), and why it cannot be probed;
    ``name``: the table's name parts, unquoted, which ``table`` joins with dots for people."""

    kind: str
    table: str | None = None
    operations: str | None = None
    algorithm: str | None = None
    lock: str | None = None
    refused: str | None = None
    name: tuple[str, ...] = field(default=(), compare=False)


def masked(text: str) -> str:
    """``text`` with the inside of every quoted string and identifier replaced by ``x``, same length:
    keywords are then searched for where they are keywords, and spans match the original."""
    out, quote, i = list(text), "", 0
    while i < len(text):
        ch = text[i]
        if quote:
            if ch == "\\" and quote != "`":
                out[i] = "x"
                if i + 1 < len(text):
                    out[i + 1] = "x"
                i += 2
                continue
            if ch == quote and text[i + 1:i + 2] == quote:
                out[i] = out[i + 1] = "x"
                i += 2
                continue
            if ch == quote:
                quote = ""
            else:
                out[i] = "x"
        elif ch in "'\"`":
            quote = ch
        i += 1
    return "".join(out)


def _name_parts(text: str) -> tuple[str, ...]:
    """``db.t``, `` `db` . `t` ``: the parts unquoted (a quoted part may hold a dot or spaces)."""
    match = re.fullmatch(rf"\s*({_IDENT})(?:\s*\.\s*({_IDENT}))?\s*", masked(text))
    if not match:
        return (text,)
    parts = (text[match.start(g):match.end(g)] for g in (1, 2) if match.group(g))
    return tuple(split_qualified_name(part)[0] for part in parts)


def _cut_options(text: str) -> tuple[str, str | None, str | None]:
    """``text`` without its ALGORITHM and LOCK options (with a comma before them), and their values."""
    found: dict[str, str | None] = {"algorithm": None, "lock": None}
    for key, pattern in (("algorithm", _ALGORITHM), ("lock", _LOCK)):
        match = pattern.search(masked(text))
        if match:
            found[key] = match.group(2).lower()
            text = text[:match.start()] + text[match.end():]
    return text.strip(), found["algorithm"], found["lock"]


def copy_probe(statement: str) -> CopyProbe:
    """Sort ``statement`` for observation on a copy of its table (see :class:`CopyProbe`)."""
    probe = _sorted(statement)
    if probe.table is None:
        return probe
    parts = _name_parts(probe.table)
    return replace(probe, table=".".join(parts), name=parts)


def _sorted(statement: str) -> CopyProbe:
    hidden = masked(statement)
    if re.search(r"--|#|/\*", hidden):
        # A comment may be an executable one (/*! ... */) or swallow an appended clause (-- ...).
        return CopyProbe("unknown", refused="holds a comment")
    if ";" in hidden.strip().rstrip(";"):
        return CopyProbe("unknown", refused="holds more than one statement")
    alter = _ALTER.match(hidden)
    if alter and alter.group(1).upper() not in _NOT_A_NAME:
        table = statement[alter.start(1):alter.end(1)]
        operations = statement[alter.start(2):alter.end(2)]
        for pattern, why in _CANNOT_PROBE:
            if pattern.search(alter.group(2)):
                return CopyProbe("alter", table, refused=why)
        _, algorithm, lock = _cut_options(operations)
        return CopyProbe("alter", table, operations, algorithm, lock)
    index = _CREATE_INDEX.match(hidden)
    if index:
        table = statement[index.start(4):index.end(4)]
        if _CANNOT_PROBE[0][0].search(index.group(5)):
            return CopyProbe("alter", table, refused=_CANNOT_PROBE[0][1])
        keys, algorithm, lock = _cut_options(statement[index.start(5):index.end(5)])
        kind = f"{index.group(1).upper()} " if index.group(1) else ""
        using = statement[index.start(3):index.end(3)] if index.group(3) else ""
        name = statement[index.start(2):index.end(2)]
        return CopyProbe("alter", table, _with_options(f"ADD {kind}INDEX {name} {using}{keys}", algorithm, lock),
                         algorithm, lock)
    drop = _DROP_INDEX.match(hidden)
    if drop:
        table = statement[drop.start(2):drop.end(2)]
        rest, algorithm, lock = _cut_options(statement[drop.start(3):drop.end(3)])
        if rest:
            return CopyProbe("alter", table, refused="DROP INDEX with options this observer does not know")
        name = statement[drop.start(1):drop.end(1)]
        return CopyProbe("alter", table, _with_options(f"DROP INDEX {name}", algorithm, lock), algorithm, lock)
    for kind, pattern in (("create_table", _CREATE_TABLE), ("drop_table", _DROP_TABLE),
                          ("rename_table", _RENAME_TABLE)):
        match = pattern.match(hidden)
        if match:
            return CopyProbe(kind, statement[match.start(1):match.end(1)])
    dml = _DML.match(hidden)
    if dml:
        spans = [dml.span(g) for g in (1, 2, 3) if dml.group(g)]
        return CopyProbe("dml", statement[spans[0][0]:spans[0][1]] if spans else None)
    return CopyProbe("unknown", refused="not a statement this observer knows")


def _with_options(operations: str, algorithm: str | None, lock: str | None) -> str:
    # In ALTER TABLE, ALGORITHM and LOCK are clauses of their own, after a comma.
    for key, value in (("ALGORITHM", algorithm), ("LOCK", lock)):
        if value:
            operations += f", {key}={value.upper()}"
    return operations


def probe_statement(copy: str, operations: str, clause: str | None) -> str:
    """``ALTER TABLE <copy> <operations>``, with ``clause`` (``ALGORITHM=INSTANT`` ...) appended
    after a comma: the statement's change, aimed at the copy, done only the way the clause says."""
    text = f"ALTER TABLE {quote_identifier(copy)} {operations.rstrip().rstrip(';').rstrip()}"
    return f"{text}, {clause}" if clause else text
