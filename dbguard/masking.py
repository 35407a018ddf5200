"""Credentials never reach an output, a log line or the ledger.

One masker: known secrets first (every password dbguard was given, in every form a URL, JSON or SQL
quoting can carry it), longest first; then patterns for the secrets it was never told about (URL
userinfo and query parameters, ``password=`` pairs, SQL password literals of PostgreSQL and
MySQL/MariaDB). Masked text says ``***`` and keeps everything else; the same input always masks the
same way. Mask after truncating: a literal cut short is masked to its end.
"""

from __future__ import annotations

import contextvars
import json
import re
import urllib.parse
from collections.abc import Iterable
from typing import Any

MASK = "***"
# A known secret shorter than this is masked only where a pattern puts it: replacing a 3-letter word
# everywhere would garble the output and still tell the secret by where the gaps are.
MIN_FREE_TEXT_SECRET = 4

# URL userinfo: scheme://user:SECRET@host, the secret up to the token's last '@' (passwords may hold
# '@', ':', '/', '%' and any letter).
_URL_PASSWORD = re.compile(r"(?P<head>\b[a-zA-Z][\w+.-]*://[^\s:/@'\"]*:)(?P<secret>[^\s'\"]*)(?=@[^\s@'\"]*)")
# Secret query parameters of a URL (?password=, &sslpassword= ...).
_URL_QUERY = re.compile(r"(?i)(?P<head>[?&;](?:password|passwd|pwd|sslpassword)=)(?P<secret>[^&\s#'\"]*)")
# password=... / password: ... pairs (libpq DSNs, tool output). MySQL's "Access denied ... (using
# password: YES)" names no password: that clue stays readable.
_KEYWORD_PASSWORD = re.compile(
    r"(?im)(?P<head>\b(?:password|passwd|pwd|sslpassword)\s*[=:]\s*)(?!(?-i:YES|NO)\))(?![E$'\"]*\*\*\*)"
    r"(?P<secret>'(?:[^'\\\n]|\\.|'')*(?:'|$)|\"(?:[^\"\\\n]|\\.)*(?:\"|$)|[^\s,;)]+)"
)

# SQL string literals that may hold a password. A closed one may span lines; one cut short by
# truncation (no closing quote) is masked to the end of its line, never beyond.
_LITERAL = (
    r"(?:"
    r"''(?:[^']|'''')+''|''(?:[^'\n]|'''')+$"                 # nested: EXECUTE '... PASSWORD ''x'''
    r"|[eE]'(?:[^'\\]|\\.|'')*'|[eE]'(?:[^'\\\n]|\\.|'')*$"   # E'x' with backslash escapes
    r"|'(?:[^'\\]|\\.|'')*'|'(?:[^'\\\n]|\\.|'')*$"           # 'x', quotes doubled (MySQL also takes \')
    r"|\"(?:[^\"\\]|\\.|\"\")*\"|\"(?:[^\"\\\n]|\\.|\"\")*$"  # "x" (MySQL without ANSI_QUOTES)
    r"|\$(?P<tag>[A-Za-z_]\w*)?\$.*?\$(?P=tag)?\$|\$(?:[A-Za-z_]\w*)?\$[^\n]*$"  # $$x$$, $tag$x$tag$
    r")"
)
_SQL_PASSWORD = re.compile(
    r"(?ism)(?P<head>\b(?:"
    r"SET\s+PASSWORD\b[^=;]*=\s*(?:PASSWORD\s*\(\s*)?"                  # SET PASSWORD [FOR u] = ['x' | PASSWORD('x')]
    r"|IDENTIFIED\s+(?:WITH\s+\S+\s+|VIA\s+\S+\s+)?(?:BY|AS|USING)\s+(?:PASSWORD\s*(?:\(\s*)?)?"  # IDENTIFIED ... BY 'x'
    r"|(?:(?:UN)?ENCRYPTED\s+)?PASSWORD\s*(?:\(\s*|\s+)"                # PASSWORD 'x', PASSWORD('x')
    r"))(?P<secret>" + _LITERAL + r")"
)


def _masked_literal(literal: str) -> str:
    """The literal with its content masked, its quoting kept (an unterminated one stays open)."""
    if literal.startswith("''"):
        return "''***''" if literal.endswith("''") and len(literal) > 3 else "''***"
    if literal[:1] in "eE" and literal[1:2] == "'":
        return "E'***'" if len(literal) > 2 and literal.endswith("'") else "E'***"
    if literal.startswith("$"):
        tag = literal[: literal.index("$", 1) + 1]
        return f"{tag}***{tag}" if len(literal) > 2 * len(tag) - 1 and literal.endswith(tag) else f"{tag}***"
    quote = literal[0]
    closed = len(literal) > 1 and literal.endswith(quote) and not literal.endswith("\\" + quote)
    return f"{quote}***{quote}" if closed else f"{quote}***"


def encodings(secret: str) -> list[str]:
    """The forms a secret takes in text dbguard shows: as typed, in a JSON string, in a SQL literal
    (quotes doubled, or backslash-escaped), percent-encoded in a URL."""
    forms = {secret, json.dumps(secret)[1:-1], secret.replace("'", "''"), secret.replace("\\", "\\\\"),
             urllib.parse.quote(secret, safe=""), urllib.parse.quote_plus(secret), urllib.parse.quote(secret)}
    return sorted((f for f in forms if f), key=len, reverse=True)


class Masker:
    """Masks known secrets and the patterns; ``patterns`` adds a team's own regular expressions."""

    def __init__(self, secrets: Iterable[str | None] = (), patterns: Iterable[str] = ()) -> None:
        known = {s for s in secrets if s and len(s) >= MIN_FREE_TEXT_SECRET}
        forms = {form for secret in known for form in encodings(secret) if len(form) >= MIN_FREE_TEXT_SECRET}
        # Longest first: a secret that contains another is replaced whole.
        self._known = sorted(forms, key=lambda f: (-len(f), f))
        # A lookahead finds every occurrence, overlapping ones too: two secrets that share characters
        # ("abcdef" and "defghi" in "abcdefghi") are masked as one span, never leaving a tail of either.
        alternatives = "|".join(re.escape(f) for f in self._known)
        self._known_re = re.compile(f"(?=({alternatives}))") if self._known else None
        self._patterns = [re.compile(p) for p in patterns]

    @property
    def known(self) -> tuple[str, ...]:
        return tuple(self._known)

    @property
    def patterns(self) -> tuple[str, ...]:
        return tuple(p.pattern for p in self._patterns)

    def stored(self, text: str) -> str:
        """A value as a table stores it: JSON (a list or an object) is masked string by string and
        written again, so that a literal cut short inside one string never swallows the rest."""
        if text.lstrip()[:1] in ("[", "{"):
            try:
                data = json.loads(text)
            except ValueError:
                return self(text)
            return json.dumps(self._walk(data))
        return self(text)

    def _walk(self, value: Any) -> Any:
        if isinstance(value, str):
            return self(value)
        if isinstance(value, list):
            return [self._walk(v) for v in value]
        if isinstance(value, dict):
            return {k: self._walk(v) for k, v in value.items()}
        return value

    def _mask_known(self, text: str) -> str:
        if self._known_re is None:
            return text
        spans: list[list[int]] = []
        for match in self._known_re.finditer(text):
            start, end = match.start(), match.start() + len(match.group(1))
            if spans and start <= spans[-1][1]:
                spans[-1][1] = max(spans[-1][1], end)
            else:
                spans.append([start, end])
        if not spans:
            return text
        out, at = [], 0
        for start, end in spans:
            out += [text[at:start], MASK]
            at = end
        out.append(text[at:])
        return "".join(out)

    def __call__(self, text: str | None) -> str:
        if not text:
            return text or ""
        masked = self._mask_known(text)
        masked = _URL_PASSWORD.sub(lambda m: m.group("head") + MASK, masked)
        masked = _URL_QUERY.sub(lambda m: m.group("head") + MASK, masked)
        masked = _SQL_PASSWORD.sub(lambda m: m.group("head") + _masked_literal(m.group("secret")), masked)
        masked = _KEYWORD_PASSWORD.sub(lambda m: m.group("head") + MASK, masked)
        for pattern in self._patterns:
            masked = pattern.sub(MASK, masked)
        return masked


def short_secret_note(secrets: Iterable[str | None], where: str) -> str | None:
    """The warning for a secret too short to be masked wherever it occurs."""
    if any(s and len(s) < MIN_FREE_TEXT_SECRET for s in secrets):
        return (f"{where} is shorter than {MIN_FREE_TEXT_SECRET} characters: dbguard masks it in URLs and SQL "
                "password literals, not in free text (an error message quoting it)")
    return None


def holds_password(text: str) -> bool:
    """Whether SQL text sets a password (a literal the patterns would mask)."""
    return bool(_SQL_PASSWORD.search(text))


def mask(text: str | None, secrets: Iterable[str | None] = ()) -> str:
    """Replace passwords in URLs, ``password=...`` pairs, SQL password literals and any known secret
    (in any of its encodings) with ``***``."""
    return Masker(secrets)(text)


# The head of a URL that did not parse, however mistyped: `postgres//`, `postgresql:/`, `mysql://`.
_URL_TEXT_HEAD = re.compile(r"^\s*[A-Za-z][\w+.-]*(?::/+|/+)")


def mask_url_text(text: str, secrets: Iterable[str | None] = ()) -> str:
    """:func:`mask` of ``text`` given as a database URL, parsed or not: the patterns need a well-formed
    ``scheme://user:password@``, and a URL refused as malformed (``postgres//user:pw@host``, no scheme at
    all) still holds its password after the user's ``:``, up to the last ``@``."""
    head = _URL_TEXT_HEAD.match(text)
    start = head.end() if head else 0
    at = text.rfind("@")
    if at > start:
        user, colon, _ = text[start:at].partition(":")
        if colon:
            text = f"{text[:start]}{user}:{MASK}{text[at:]}"
    return mask(text, secrets)


_SECRET_KEY = re.compile(r"(?i)password|passwd|pwd|secret|token")


def is_secret_key(key: str) -> bool:
    """A ``-x`` key (or any setting name) whose value is a secret."""
    return bool(_SECRET_KEY.search(key))


def secret_x_values(x_args: Iterable[str]) -> list[str]:
    """The values of ``-x key=value`` arguments whose key names a secret."""
    return [value for key, _, value in (arg.partition("=") for arg in x_args) if is_secret_key(key) and value]


# The masker of the command being run: the CLI activates one, and dbguard adds each secret to it as
# it learns it (a target's URL, a fleet file's ${VAR} values). Without the CLI (the API) none is
# active: nothing is installed, results are the caller's to render.
_ACTIVE: contextvars.ContextVar[Masker | None] = contextvars.ContextVar("dbguard_masker", default=None)


def activate(masker: Masker) -> None:
    _ACTIVE.set(masker)


def remember(secrets: Iterable[str | None] = (), patterns: Iterable[str] = ()) -> None:
    """Add what the active masker must also hide (a no-op when none is active)."""
    current = _ACTIVE.get()
    if current is not None:
        _ACTIVE.set(Masker([*current.known, *secrets], [*current.patterns, *patterns]))


def active() -> Masker:
    """The active masker, or one with the patterns only."""
    return _ACTIVE.get() or Masker()
