"""Credentials never reach an output, a log line or the ledger."""

from __future__ import annotations

import re
from collections.abc import Iterable

_URL_PASSWORD = re.compile(r"(?P<head>[a-zA-Z][\w+.-]*://[^:/@\s]*:)(?P<secret>[^@\s]+)(?=@)")
# MySQL's "Access denied ... (using password: YES)" names no password: keep that clue readable.
_KEYWORD_PASSWORD = re.compile(
    r"(?i)(?P<head>\b(?:password|passwd|pwd)\s*[=:]\s*)(?!(?-i:YES|NO)\))(?P<secret>'[^']*'|\"[^\"]*\"|\S+)"
)

# SQL that sets a password: ALTER ROLE ... PASSWORD 'x', CREATE USER ... IDENTIFIED BY 'x', SET PASSWORD = 'x'.
_SQL_PASSWORD = re.compile(r"(?i)(?P<head>\b(?:password|identified\s+by)\s+)(?P<secret>'(?:[^']|'')*'|\"[^\"]*\")")


def mask(text: str | None, secrets: Iterable[str | None] = ()) -> str:
    """Replace passwords in URLs, ``password=...`` pairs and any known secret with ``***``."""
    if not text:
        return text or ""
    masked = _URL_PASSWORD.sub(lambda m: m.group("head") + "***", text)
    masked = _KEYWORD_PASSWORD.sub(lambda m: m.group("head") + "***", masked)
    masked = _SQL_PASSWORD.sub(lambda m: m.group("head") + "'***'", masked)
    for secret in secrets:
        if secret and len(secret) >= 3:
            masked = masked.replace(secret, "***")
    return masked
