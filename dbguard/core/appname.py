"""The name dbguard's own server sessions carry (PostgreSQL ``application_name``), so a DBA's tools
show which command, and which run, a session belongs to: ``dbguard/upgrade/run-17``.

The name only labels; dbguard recognises its own sessions by the ids its process opened.
"""

from __future__ import annotations

import re

PREFIX = "dbguard"
# PostgreSQL keeps NAMEDATALEN - 1 bytes of an application_name and cuts the rest.
MAX_BYTES = 63

_RUN = re.compile(r"/run-\d+$")


def application_name(command: str | None = None, run_id: int | None = None) -> str:
    """``dbguard``, ``dbguard/<command>`` or ``dbguard/<command>/run-<id>``, at most 63 bytes: a long
    command is cut, never the run id."""
    name = PREFIX if not command else f"{PREFIX}/{'-'.join(command.split())}"
    return with_run(name, run_id) if run_id is not None else _cut(name, MAX_BYTES)


def with_run(name: str, run_id: int) -> str:
    """The name with its run id (replacing one it had)."""
    suffix = f"/run-{int(run_id)}"
    return _cut(_RUN.sub("", name), MAX_BYTES - len(suffix)) + suffix


def _cut(text: str, limit: int) -> str:
    data = text.encode()
    return text if len(data) <= limit else data[: max(0, limit)].decode(errors="ignore")
