"""A loopback TCP proxy that can stop forwarding: a hung API server, or a half-open connection.

Put in front of the API server (see :func:`proxied_kubeconfig`), it forwards bytes both ways.
:meth:`StallingProxy.stall` stops it on every connection, old or new, until
:meth:`~StallingProxy.resume` (a hung server); :meth:`~StallingProxy.freeze` silences only the
connections open now, for good, while new ones flow (a half-open connection, as when a node or
a NAT entry vanishes). Either way nothing is read, sent or closed: the client sees requests
that never get an answer, as behind a black-holed route (no FIN, no RST).
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading
from pathlib import Path
from types import TracebackType
from typing import Self


class StallingProxy:
    """Forwards 127.0.0.1:``port`` to ``upstream`` until stalled; threads stop on close."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self._upstream = upstream
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._flowing = threading.Event()
        self._flowing.set()
        self._closed = threading.Event()
        self._sockets: list[socket.socket] = []
        self._connections: list[threading.Event] = []
        """One per open connection: set while it may flow (cleared for good by freeze)."""
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    def stall(self) -> None:
        """Stop forwarding on every connection, present and future."""
        self._flowing.clear()

    def resume(self) -> None:
        self._flowing.set()

    def freeze(self) -> int:
        """Silence every connection open now, for good (new ones still flow); returns how
        many."""
        with self._lock:
            frozen, self._connections = self._connections, []
        for connection in frozen:
            connection.clear()
        return len(frozen)

    def _may_flow(self, connection: threading.Event) -> bool:
        return self._flowing.is_set() and connection.is_set()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self._upstream, timeout=10)
            except OSError:
                client.close()
                continue
            connection = threading.Event()
            connection.set()
            with self._lock:
                self._sockets += [client, server]
                self._connections.append(connection)
            for source, sink in ((client, server), (server, client)):
                thread = threading.Thread(
                    target=self._pump, args=(source, sink, connection), daemon=True
                )
                thread.start()

    def _pump(
        self, source: socket.socket, sink: socket.socket, connection: threading.Event
    ) -> None:
        source.settimeout(0.2)
        while not self._closed.is_set():
            if not self._may_flow(connection):
                self._closed.wait(0.2)
                continue  # stalled: leave the bytes unread, like a route that drops them
            try:
                data = source.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                break
            if not data:
                break
            while not self._may_flow(connection) and not self._closed.is_set():
                self._closed.wait(0.2)  # stalled between read and write: hold the bytes
            try:
                sink.sendall(data)
            except OSError:
                break
        with self._lock:  # ended: no longer an open connection that freeze() would count
            if connection in self._connections:
                self._connections.remove(connection)
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._closed.set()
        self._listener.close()
        with self._lock:
            for sock in self._sockets:
                sock.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def proxied_kubeconfig(kubeconfig: Path, target: Path) -> tuple[Path, StallingProxy]:
    """A copy of ``kubeconfig`` whose server is a new :class:`StallingProxy` on loopback.

    The API server's certificate names 127.0.0.1, so TLS verification still passes.
    """
    text = kubeconfig.read_text()
    match = re.search(r"server:\s*https://127\.0\.0\.1:(\d+)", text)
    assert match, f"{kubeconfig} does not point at a loopback API server"
    proxy = StallingProxy(("127.0.0.1", int(match.group(1))))
    target.write_text(text.replace(match.group(0), f"server: https://127.0.0.1:{proxy.port}"))
    return target, proxy
