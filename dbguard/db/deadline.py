"""Connections that stop answering end in bounded time.

A server that dies, or a network path that stops passing packets, leaves a client waiting for an
answer forever. Two defences on every connection dbguard runs statements on (its own, and the
migration's, env.py's included):

- the socket's TCP keepalives and ``TCP_USER_TIMEOUT`` (Linux), so the kernel gives up on a peer that
  no longer acknowledges anything;
- a deadline per statement: a path that still acknowledges packets but never delivers an answer
  (a stuck proxy) defeats the kernel's checks, so one watcher thread shuts the socket down when a
  statement has had no answer by its deadline. The driver then fails the statement at once, and
  :func:`expired` says why.

The deadline is the longest a statement may legitimately take (the statement or lock timeout handed
to the server) plus a margin (``frozen_margin_s``).
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
import weakref
from typing import Any

import sqlalchemy as sa

# Keepalive probes: the first after this idle time, then every interval, this many before giving up.
_KEEPALIVE_IDLE_S = 10
_KEEPALIVE_INTERVAL_S = 5
_KEEPALIVE_COUNT = 3


def _socket_of(dbapi_connection: Any) -> socket.socket | None:
    """A socket object sharing the connection's descriptor (the caller closes it), or None (SQLite,
    a driver dbguard does not know)."""
    pgconn = getattr(dbapi_connection, "pgconn", None)  # psycopg 3
    if pgconn is not None:
        with contextlib.suppress(Exception):
            return socket.socket(fileno=os.dup(pgconn.socket))
        return None
    sock = getattr(dbapi_connection, "_sock", None)  # PyMySQL
    if isinstance(sock, socket.socket):
        with contextlib.suppress(Exception):
            return socket.socket(fileno=os.dup(sock.fileno()))
    return None


def _dbapi(connection: Any) -> Any:
    return connection.connection.dbapi_connection


def keep_alive(connection: Any, user_timeout_s: float) -> None:
    """Kernel-level checks on the connection's socket: keepalives, and TCP_USER_TIMEOUT (how long
    sent data may stay unacknowledged before the connection is dropped)."""
    sock = _socket_of(_dbapi(connection))
    if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        if sock is not None:
            sock.close()
        return
    try:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            for option, value in (("TCP_KEEPIDLE", _KEEPALIVE_IDLE_S), ("TCP_KEEPINTVL", _KEEPALIVE_INTERVAL_S),
                                  ("TCP_KEEPCNT", _KEEPALIVE_COUNT),
                                  ("TCP_USER_TIMEOUT", int(max(1.0, user_timeout_s) * 1000))):
                if hasattr(socket, option):
                    sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, option), value)
    finally:
        sock.close()


class _Watcher:
    """One daemon thread, alive while some statement is in flight; each connection's deadline."""

    def __init__(self) -> None:
        self._reset()
        # A fork (dbguard's prefetch child) never happens while the watcher holds its lock, and the
        # child starts with a watcher of its own: the parent's thread does not exist there.
        os.register_at_fork(before=lambda: self._lock.acquire(), after_in_parent=lambda: self._lock.release(),
                            after_in_child=self._reset)

    def _reset(self) -> None:
        self._lock = threading.Lock()
        # id(DBAPI connection) -> (deadline, the connection, what to say when it passes)
        self._armed: dict[int, tuple[float, weakref.ref[Any], str]] = {}
        self._expired: dict[int, str] = {}
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def arm(self, dbapi_connection: Any, seconds: float, why: str) -> None:
        """``dbapi_connection``: a driver's connection, or a socket dbguard made itself."""
        key = id(dbapi_connection)
        with self._lock:
            self._armed[key] = (time.monotonic() + seconds, weakref.ref(dbapi_connection), why)
            self._expired.pop(key, None)
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="dbguard-deadlines", daemon=True)
                self._thread.fork_safe = True  # type: ignore[attr-defined]  # see register_at_fork above
                self._thread.start()
        self._wake.set()

    def disarm(self, key: int) -> None:
        with self._lock:
            self._armed.pop(key, None)

    def expired(self, key: int) -> str | None:
        with self._lock:
            return self._expired.get(key)

    def _loop(self) -> None:
        while True:
            with self._lock:
                if not self._armed:
                    self._thread = None
                    return
                now = time.monotonic()
                due = [(key, ref, why) for key, (at, ref, why) in self._armed.items() if at <= now]
                for key, _ref, why in due:
                    del self._armed[key]
                    self._expired[key] = why
                wait = min((at for at, _ref, _why in self._armed.values()), default=now + 1.0) - now
            for _key, ref, _why in due:
                armed = ref()
                if isinstance(armed, socket.socket):
                    with contextlib.suppress(OSError):
                        armed.shutdown(socket.SHUT_RDWR)  # the driver's own socket: it closes it
                    continue
                sock = None if armed is None else _socket_of(armed)
                if sock is not None:
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_RDWR)
                    sock.close()
            self._wake.wait(max(0.0, min(wait, 1.0)))
            self._wake.clear()


_WATCHER = _Watcher()


def bound(connection: Any, seconds: float) -> None:
    """Every statement on ``connection`` gets an answer within ``seconds`` or its socket is shut down
    (a connection without a socket dbguard knows, SQLite's, is left as it is)."""
    sock = _socket_of(_dbapi(connection))
    if sock is None:
        return
    sock.close()
    already = getattr(connection, "_dbguard_deadline", None) is not None
    connection._dbguard_deadline = seconds
    _BOUNDS[_dbapi(connection)] = seconds
    if already:
        return

    def before(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        dbapi_connection = _dbapi(conn)
        conn._dbguard_socket_key = id(dbapi_connection)
        _WATCHER.arm(dbapi_connection, conn._dbguard_deadline,
                     f"no answer from the server within {conn._dbguard_deadline:g} s: dbguard shut the "
                     "connection down")

    def after(conn: Any, *args: Any) -> None:
        _WATCHER.disarm(getattr(conn, "_dbguard_socket_key", 0))

    _bound_transaction_ends(connection.engine)
    sa.event.listen(connection, "before_cursor_execute", before)
    sa.event.listen(connection, "after_cursor_execute", after)
    # A failed statement has no "after": errors are an engine's (or dialect's) event in SQLAlchemy 2.
    engine = connection.engine
    if not getattr(engine, "_dbguard_deadlines", False):
        engine._dbguard_deadlines = True

        def failed(context: Any) -> None:
            if context.connection is not None:
                after(context.connection)

        sa.event.listen(engine, "handle_error", failed)


# The deadline of each bounded DBAPI connection, for what runs on it outside cursor.execute.
_BOUNDS: weakref.WeakKeyDictionary[Any, float] = weakref.WeakKeyDictionary()


def _bound_transaction_ends(engine: Any) -> None:
    """COMMIT and ROLLBACK are no cursor statements (no execute events): a connection that stops
    answering while env.py commits a step, or closes its connection (the pool's reset rolls back),
    would hold the run for ever. The engine's dialect sends them under the same deadline. Only this
    engine's dialect object is wrapped, and only connections dbguard bounded are timed."""
    sa_dialect = engine.dialect
    if getattr(sa_dialect, "_dbguard_bounded_ends", False):
        return
    sa_dialect._dbguard_bounded_ends = True
    for name in ("do_rollback", "do_commit"):
        original = getattr(sa_dialect, name)

        def ended(connection: Any, _original: Any = original, _what: str = name[3:].upper()) -> None:
            raw = getattr(connection, "dbapi_connection", None) or connection  # the pool hands its proxy
            seconds = _BOUNDS.get(raw)
            if seconds is None:
                return _original(connection)
            _WATCHER.arm(raw, seconds, f"no answer from the server within {seconds:g} s ({_what}): dbguard "
                                       "shut the connection down")
            try:
                return _original(connection)
            finally:
                _WATCHER.disarm(id(raw))

        setattr(sa_dialect, name, ended)


def expired(connection: Any) -> str | None:
    """Why the connection's last statement ended: its deadline passed (None: it did not)."""
    return _WATCHER.expired(getattr(connection, "_dbguard_socket_key", 0))


def bounded_pymysql_handshake(timeout_s: float) -> Any:
    """A ``do_connect`` hook for PyMySQL whose greeting and authentication end within ``timeout_s``.

    PyMySQL's ``connect_timeout`` bounds only the TCP connect; the handshake is then read with no
    bound at all (``read_timeout``, which would also cut every long statement afterwards). So dbguard
    makes the socket itself, hands it to PyMySQL, and shuts it down if the handshake has not finished
    by the deadline; the session keeps no read timeout."""

    def do_connect(sa_dialect: Any, conn_rec: Any, cargs: Any, cparams: dict[str, Any]) -> Any:
        started = time.monotonic()
        connection = sa_dialect.loaded_dbapi.connect(*cargs, **{**cparams, "defer_connect": True})
        where = cparams.get("unix_socket") or f"{cparams.get('host') or 'localhost'}:{cparams.get('port') or 3306}"
        try:
            if cparams.get("unix_socket"):
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.settimeout(timeout_s)
                sock.connect(cparams["unix_socket"])
            else:
                source = (cparams["bind_address"], 0) if cparams.get("bind_address") else None
                sock = socket.create_connection((cparams.get("host") or "localhost", int(cparams.get("port") or 3306)),
                                                timeout_s, source_address=source)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError as exc:  # as PyMySQL reports it: error 2003
            raise sa_dialect.loaded_dbapi.OperationalError(
                2003, f"Can't connect to MySQL server on {where} ({exc})") from None
        sock.settimeout(None)
        why = f"no answer from the server within {timeout_s:g} s of connecting (connect_timeout_s)"
        _WATCHER.arm(sock, max(0.0, timeout_s - (time.monotonic() - started)), why)
        try:
            connection.connect(sock)
        except Exception:
            if _WATCHER.expired(id(sock)) is not None:
                raise sa_dialect.loaded_dbapi.OperationalError(2013, why) from None
            raise
        finally:
            _WATCHER.disarm(id(sock))
        return connection

    return do_connect
