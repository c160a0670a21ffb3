"""A TCP proxy for tests that can go silent while keeping connections open, or cut them.

The Kubernetes emulator can restart (every connection dropped), but a watch that silently
stops delivering while its socket stays open is a different failure: only a client-side
inactivity timeout notices it. This proxy sits between the watcher and the emulator and
produces exactly that (`pause`), plus an outage of only the watcher's path (`cut`) while the
test keeps writing to the emulator directly. `stall` is a partition as a client sees it: open
connections go silent and new ones are accepted but never answered, until `resume`. It works
for any TCP service (the Redis tests put it between one worker and redis-server).
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading


class StallingProxy:
    """Forwards 127.0.0.1:<port> to an upstream port until told to stall or cut."""

    def __init__(self, upstream_port: int):
        self._upstream = ("127.0.0.1", upstream_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._refusing = threading.Event()
        self._stalled = threading.Event()
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._flows: dict[socket.socket, threading.Event] = {}
        self.connections_accepted = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def redis_url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self) -> StallingProxy:
        threading.Thread(target=self._accept_loop, name="stalling-proxy", daemon=True).start()
        return self

    def pause(self) -> None:
        """Stop forwarding on the connections open now, keeping them open; new ones flow."""
        with self._lock:
            for flowing in self._flows.values():
                flowing.clear()

    def stall(self) -> None:
        """Stop forwarding on every connection, open now or opened later, keeping them open."""
        with self._lock:
            self._stalled.set()
            for flowing in self._flows.values():
                flowing.clear()

    def cut(self) -> None:
        """Close every connection and refuse new ones until `resume()`."""
        with self._lock:
            self._refusing.set()
        self._close_all()

    def resume(self) -> None:
        self._refusing.clear()
        self._stalled.clear()
        with self._lock:
            for flowing in self._flows.values():
                flowing.set()

    def stop(self) -> None:
        self._closed.set()
        self._listener.close()
        self._close_all()

    def _close_all(self) -> None:
        with self._lock:
            doomed, self._sockets = self._sockets, set()
            self._flows.clear()
        for sock in doomed:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _accept_loop(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self._upstream, timeout=5)
            except OSError:
                client.close()
                continue
            flowing = threading.Event()
            if not self._stalled.is_set():
                flowing.set()
            with self._lock:
                # Checked under the lock `cut` closes connections with, so no connection
                # accepted during a cut slips through.
                if self._refusing.is_set():
                    client.close()
                    upstream.close()
                    continue
                self._sockets.update((client, upstream))
                self._flows[client] = flowing
                self.connections_accepted += 1
            for source, target in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, target, flowing), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket, flowing: threading.Event) -> None:
        try:
            while not self._closed.is_set():
                if not flowing.wait(0.05):
                    continue
                readable, _, _ = select.select([source], [], [], 0.05)
                if not readable or not flowing.is_set():
                    continue
                data = source.recv(65536)
                if not data:
                    break
                target.sendall(data)
        except (OSError, ValueError):
            pass
        finally:
            for sock in (source, target):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
