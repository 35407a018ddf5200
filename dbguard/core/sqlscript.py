"""A schema-only dump split into the statements a client would send: ``pg_dump --schema-only`` and
``mysqldump --no-data`` text, as psql and the mysql client read it.

Pure text work, no database: quotes, dollar quotes (PostgreSQL), comments, backslash escapes and
``DELIMITER`` (MySQL) are honoured so that a ``;`` inside a function body or a string ends nothing.
What only a client can do (psql's meta-commands, ``COPY ... FROM stdin`` data) is refused with its
line number rather than sent to the server as SQL.
"""

from __future__ import annotations

import dataclasses
import re

_DOLLAR_TAG = re.compile(r"\$([A-Za-z_][A-Za-z_0-9]*)?\$")
_COPY_FROM_STDIN = re.compile(r"^\s*COPY\b.*\bFROM\s+stdin\b", re.IGNORECASE | re.DOTALL)
# psql's guards against a dump that smuggles meta-commands (pg_dump 17.6, 16.10, 15.14 and later
# write them): they protect psql, and nothing here runs meta-commands at all.
_HARMLESS_META = ("\\restrict", "\\unrestrict")


class ScriptError(ValueError):
    """Something in the dump only a client can do; ``line`` is 1-based."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"line {line}: {message}")
        self.line = line


@dataclasses.dataclass(frozen=True)
class ScriptStatement:
    line: int  # where the statement begins, 1-based
    text: str


def split_script(text: str, engine: str) -> list[ScriptStatement]:
    """The statements of ``text`` for ``engine`` ("postgresql", "mysql" or "sqlite"), in order,
    without their terminators; statements that are only comments are left out (MySQL's executable
    ``/*!...*/`` comments are kept: the server runs them)."""
    mysql = engine == "mysql"
    statements: list[ScriptStatement] = []
    delimiter = ";"
    buffer: list[str] = []
    start_line = 1
    started = False  # the buffer holds more than white space
    line = 1
    i, n = 0, len(text)
    at_line_start = True

    def flush() -> None:
        nonlocal started
        body = "".join(buffer).strip()
        buffer.clear()
        started = False
        if body and _has_code(body, mysql):
            statements.append(ScriptStatement(start_line, body))

    while i < n:
        if at_line_start:
            at_line_start = False
            line_end = text.find("\n", i)
            raw = text[i:] if line_end < 0 else text[i:line_end]
            stripped = raw.strip()
            if not started and stripped.startswith("\\"):
                if not stripped.startswith(_HARMLESS_META):
                    raise ScriptError(line, f"{stripped.split()[0]} is a psql meta-command, not SQL; "
                                            "dump with pg_dump --schema-only and without psql's extras, or "
                                            "remove the line")
                i = n if line_end < 0 else line_end
                continue
            if mysql and not started and stripped.upper().startswith("DELIMITER"):
                parts = stripped.split(None, 1)
                if len(parts) == 2 and parts[0].upper() == "DELIMITER":
                    delimiter = parts[1].strip()
                    i = n if line_end < 0 else line_end
                    continue
        ch = text[i]
        is_comment = (text.startswith("--", i) and (not mysql or i + 2 >= n or text[i + 2] in " \t\r\n")
                      or (mysql and ch == "#") or (text.startswith("/*", i) and not text.startswith("/*!", i)))
        if not started and not ch.isspace() and not is_comment:
            started, start_line = True, line
        if ch == "\n":
            buffer.append(ch)
            line += 1
            i += 1
            at_line_start = True
            continue
        if ch in ("'", '"', "`"):
            end = _quoted_end(text, i, ch, backslashes=mysql)
            chunk = text[i:end]
            buffer.append(chunk)
            line += chunk.count("\n")
            i = end
            continue
        if ch == "$" and not mysql:
            match = _DOLLAR_TAG.match(text, i)
            if match and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")):
                tag = match.group(0)
                close = text.find(tag, match.end())
                end = n if close < 0 else close + len(tag)
                chunk = text[i:end]
                buffer.append(chunk)
                line += chunk.count("\n")
                i = end
                continue
        if text.startswith("--", i) and (not mysql or i + 2 >= n or text[i + 2] in " \t\r\n"):
            end = text.find("\n", i)
            end = n if end < 0 else end
            buffer.append(text[i:end])
            i = end
            continue
        if mysql and ch == "#":
            end = text.find("\n", i)
            end = n if end < 0 else end
            buffer.append(text[i:end])
            i = end
            continue
        if text.startswith("/*", i):
            close = text.find("*/", i + 2)
            end = n if close < 0 else close + 2
            chunk = text[i:end]
            buffer.append(chunk)
            line += chunk.count("\n")
            i = end
            continue
        if text.startswith(delimiter, i):
            body = "".join(buffer)
            if _COPY_FROM_STDIN.match(_without_comments(body, mysql)):
                raise ScriptError(start_line, "COPY ... FROM stdin carries data only psql can send; a baseline "
                                              "is a schema-only dump (pg_dump --schema-only)")
            flush()
            i += len(delimiter)
            continue
        buffer.append(ch)
        i += 1
    if _COPY_FROM_STDIN.match(_without_comments("".join(buffer), mysql)):
        raise ScriptError(start_line, "COPY ... FROM stdin carries data only psql can send; a baseline is a "
                                      "schema-only dump (pg_dump --schema-only)")
    flush()
    return statements


def _quoted_end(text: str, start: int, quote: str, backslashes: bool) -> int:
    i, n = start + 1, len(text)
    while i < n:
        ch = text[i]
        if backslashes and ch == "\\" and quote != "`":
            i += 2
            continue
        if ch == quote:
            if i + 1 < n and text[i + 1] == quote:  # a doubled quote stands for itself
                i += 2
                continue
            return i + 1
        i += 1
    return n


def _without_comments(body: str, mysql: bool) -> str:
    body = re.sub(r"/\*(?!!).*?\*/", " ", body, flags=re.DOTALL)
    body = re.sub(r"--[^\n]*" if not mysql else r"--(?=\s)[^\n]*", " ", body)
    if mysql:
        body = re.sub(r"#[^\n]*", " ", body)
    return body


def _has_code(body: str, mysql: bool) -> bool:
    return bool(_without_comments(body, mysql).strip())
