"""The probes of a baking run or batch: each target's health_sql, the lock queue on the tables the batch
touched, and its HTTP health endpoint. One session per target for the whole bake; a probe that
cannot run (the server gone, a timeout) is a failed probe, never an exception."""

from __future__ import annotations

import contextlib
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any

from dbguard.core.bake import HEALTH_SQL, HEALTH_URL, LOCK_QUEUE, Probe, Waiting, queue_problem
from dbguard.db.connect import first_line
from dbguard.masking import mask

# How long an HTTP health endpoint may take to answer.
HTTP_TIMEOUT_S = 5.0


class TargetProbes:
    """The probes of one target, on a session opened at the first round and kept (reopened after a
    round that lost it)."""

    def __init__(self, name: str, settings: Any, health_sql: str | None, health_url: str | None,
                 tables: frozenset[str] | None, secrets: Sequence[str], http_timeout_s: float = HTTP_TIMEOUT_S,
                 lock_queue: bool = True) -> None:
        self.name, self.settings = name, settings
        self.health_sql, self.health_url, self.tables = health_sql, health_url, tables
        self.secrets = list(secrets)
        self.http_timeout_s = http_timeout_s
        self._session_cm: Any = None
        self._session: Any = None
        self._target: Any = None
        self._queue_unreadable = not lock_queue

    def run(self, round_number: int) -> list[Probe]:
        probes = []
        try:
            session = self._open()
        except Exception as exc:  # noqa: BLE001 - an unreachable target fails its probes
            why = self._mask(f"cannot connect: {getattr(exc, 'message', None) or first_line(exc)}")
            probes.append(Probe(self.name, HEALTH_SQL if self.health_sql else LOCK_QUEUE, False, why, round_number))
        else:
            if self.health_sql:
                probes.append(self._sql(session, round_number))
            if not self._queue_unreadable:
                queue = self._queue(session, round_number)
                if queue is not None:
                    probes.append(queue)
            if any(not p.ok for p in probes):
                self.close()  # a broken session must not fail the next round too
        if self.health_url:
            probes.append(self._http(round_number))
        return probes

    def close(self) -> None:
        if self._session_cm is not None:
            cm, self._session_cm, self._session = self._session_cm, None, None
            with contextlib.suppress(Exception):
                cm.__exit__(None, None, None)

    def _mask(self, text: str) -> str:
        return mask(text, self.secrets)

    def _open(self) -> Any:
        from dbguard.db.sql import run_statements
        from dbguard.target import load_target, open_session

        if self._session is None:
            if self._target is None:
                self._target = load_target(self.settings, url_is_enough=True)
            cm = open_session(self._target)
            session = cm.__enter__()
            self._session_cm = cm
            try:
                # A probe's statements wait and run no longer than an HTTP probe may: a health_sql
                # that hangs fails its probe instead of holding the bake (and the run lock) up.
                bound_ms = max(1, int(self.http_timeout_s * 1000))
                run_statements(session.conn, session.dialect.session_timeouts(bound_ms, bound_ms))
            except Exception:
                self.close()
                raise
            self._session = session
        return self._session

    def _sql(self, session: Any, round_number: int) -> Probe:
        from dbguard.db.sql import run_health_check

        assert self.health_sql is not None
        try:
            run_health_check(session.conn, self.health_sql)
        except Exception as exc:  # noqa: BLE001 - any failure of the health check is a failed probe
            return Probe(self.name, HEALTH_SQL, False, self._mask(f"health_sql failed: {first_line(exc)}"),
                         round_number)
        return Probe(self.name, HEALTH_SQL, True, "", round_number)

    def _queue(self, session: Any, round_number: int) -> Probe | None:
        """The watchdog's measure, on the whole database: sessions that waited longer than
        max_blocking_ms for a lock on a table the batch touched. None where it cannot be read (no
        lock view, no privilege): said once by the caller, never a failed probe."""
        from dbguard.db import lock_graph
        from dbguard.errors import ConfigError, PrivilegeError

        if self.settings.max_blocking_ms <= 0:
            self._queue_unreadable = True
            return None
        try:
            tree = lock_graph.inspect_locks(session.conn, session.dialect, session.database,
                                            own_session_ids={session.session_id} if session.session_id else (),
                                            secrets=self.secrets)
        except (PrivilegeError, ConfigError):
            self._queue_unreadable = True
            return None
        except Exception as exc:  # noqa: BLE001 - the server stopped answering: a failed probe
            return Probe(self.name, LOCK_QUEUE, False, self._mask(f"lock queue unreadable: {first_line(exc)}"),
                         round_number)
        waiting = [Waiting(s.session_id, next((lock.table for lock in s.locks if not lock.granted), None), s.wait_s,
                           s.blocked_by) for s in tree.sessions if s.blocked_by]
        problem = queue_problem(waiting, self.tables, self.settings.max_blocking_ms / 1000)
        return Probe(self.name, LOCK_QUEUE, problem is None, self._mask(problem or ""), round_number)

    def _http(self, round_number: int) -> Probe:
        assert self.health_url is not None
        url, headers = _without_credentials(self.health_url)
        request = urllib.request.Request(url, method="GET", headers={"User-Agent": "dbguard-probe", **headers})
        try:
            with urllib.request.urlopen(request, timeout=self.http_timeout_s) as answer:
                status = answer.status
        except urllib.error.HTTPError as exc:
            status = exc.code
        except Exception as exc:  # noqa: BLE001 - no answer in time, refused, bad URL: a failed probe
            reason = getattr(exc, "reason", None) or exc
            return Probe(self.name, HEALTH_URL, False, self._mask(f"health_url: no answer: {reason}"), round_number)
        ok = 200 <= status < 300
        return Probe(self.name, HEALTH_URL, ok, "" if ok else self._mask(f"health_url answered HTTP {status}"),
                     round_number)


def _without_credentials(url: str) -> tuple[str, dict[str, str]]:
    """urllib sends no credentials written into a URL (user:password@host) and reads them as part of
    the host: they become a Basic Authorization header, and the URL goes without them."""
    import base64
    from urllib.parse import unquote, urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.username is None:
        return url, {}
    host = parts.hostname or ""
    netloc = (f"[{host}]" if ":" in host else host) + (f":{parts.port}" if parts.port else "")
    token = base64.b64encode(f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()).decode()
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment)), \
        {"Authorization": f"Basic {token}"}
