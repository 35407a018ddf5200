"""The name dbguard's own server sessions carry (PostgreSQL ``application_name``), so a DBA's tools
show which command, and which run, a session belongs to: ``dbguard/upgrade/run-17``.

The name only labels; dbguard recognises its own sessions by the ids its process opened. Where the
server has no application names (MySQL, MariaDB), ``dbguard locks`` shows the same label for the
sessions the ledger records for a running run (:func:`ledger_names`).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dbguard.core.state import RunRecord

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


def ledger_names(runs: Iterable[RunRecord], holder: str | None,
                 same_session: Collection[tuple[str, str]]) -> dict[str, str]:
    """Session id -> ``dbguard/<intent>/run-<id>``, for the sessions the ledger ties to a run whose row
    says running: each session it recorded that the server confirms is still that session
    (``same_session``: the (id, identity) pairs found unchanged, so a reused id of a finished run's
    connection is never named), and the run lock's ``holder`` where it is the run's lock session.
    Where two runs name one id, the newest wins (an id reused since an older run's process died).
    For engines whose sessions carry no application name: a label to read, never to judge by."""
    # Every command names its sessions; only the lock views read the ledger's records.
    from dbguard.core.state import RunStatus

    names: dict[str, str] = {}
    for record in sorted(runs, key=lambda r: r.id):
        if record.status != RunStatus.RUNNING.value:
            continue
        name = application_name(record.intent, record.id)
        for pair in record.sessions:
            if pair in same_session:
                names[pair[0]] = name
        if holder is not None and record.lock_session == holder:
            names[holder] = name
    return names
