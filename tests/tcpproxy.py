"""A TCP proxy on 127.0.0.1 in front of a database server, for the tests of connections that stop
answering. ``freeze()`` stops forwarding while every socket stays open (the kernel still acknowledges
what a client sends, as a stuck proxy or middlebox does, so TCP keepalives see nothing wrong);
``cut()`` closes every connection at once with a reset; ``thaw()`` forwards again.
"""

from __future__ import annotations

import contextlib
import select
import socket
import struct
import threading
from typing import Any

from sqlalchemy.engine import make_url


class Proxy:
    def __init__(self, server_url: str) -> None:
        parsed = make_url(server_url)
        self._upstream = (parsed.host or "127.0.0.1", parsed.port or (5432 if parsed.get_backend_name() ==
                                                                        "postgresql" else 3306))
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._frozen = threading.Event()
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._threads = [threading.Thread(target=self._accept, name="proxy-accept", daemon=True)]
        self._threads[0].start()

    def url(self, url: str) -> str:
        """``url`` with its host and port replaced by the proxy's."""
        return make_url(url).set(host="127.0.0.1", port=self.port).render_as_string(hide_password=False)

    def freeze(self) -> None:
        self._frozen.set()

    def thaw(self) -> None:
        self._frozen.clear()

    def cut(self) -> None:
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            with contextlib.suppress(OSError):
                # SO_LINGER 0: a reset, not a polite close.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                sock.close()

    def close(self) -> None:
        """Stop forwarding, close every socket, and wait for the proxy's threads to end."""
        self._closed.set()
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept()
        with contextlib.suppress(OSError):
            self._listener.close()
        self.cut()
        for thread in self._threads:
            thread.join(timeout=10)

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self._upstream, timeout=10)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._sockets += [client, upstream]
            pump = threading.Thread(target=self._pump, args=(client, upstream), name="proxy-pump", daemon=True)
            self._threads.append(pump)
            pump.start()

    def _pump(self, a: socket.socket, b: socket.socket) -> None:
        peers: dict[Any, socket.socket] = {a: b, b: a}
        try:
            while not self._closed.is_set():
                if self._frozen.is_set():
                    self._closed.wait(0.05)  # read nothing, send nothing: the buffers fill, nobody answers
                    continue
                readable, _, _ = select.select(list(peers), [], [], 0.05)
                for sock in readable:
                    data = sock.recv(65536)
                    if not data:
                        return
                    peers[sock].sendall(data)
        except OSError:
            return
        finally:
            for sock in (a, b):
                with contextlib.suppress(OSError):
                    sock.close()
