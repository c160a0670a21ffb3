"""One client per owner (an SDP or the OperatorConfig) and system in each worker process.

Logging in is the expensive part of talking to a system, so each worker process keeps the
client it built for an owner and reuses it (and its token and connections) across reconciles.
The cache key holds a digest of the credentials, never the credentials, and lives only in this
process's memory: rotated credentials or a changed URL get a fresh client, and the owner's
stale one is closed and dropped so clients do not pile up.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

ClientT = TypeVar("ClientT")


def credentials_digest(*values: str) -> str:
    """A digest that tells credentials apart without keeping them."""
    return hashlib.sha256("\0".join(values).encode()).hexdigest()


class ClientCache(Generic[ClientT]):
    """Thread-safe map (owner, connection) → client, one live connection per owner."""

    def __init__(self) -> None:
        self._clients: dict[tuple[str, Hashable], ClientT] = {}
        self._lock = threading.Lock()

    def get(self, owner: str, connection: Hashable, create: Callable[[], ClientT]) -> ClientT:
        key = (owner, connection)
        with self._lock:
            client = self._clients.get(key)
            if client is None:
                for stale in [k for k in self._clients if k[0] == owner]:
                    _close(self._clients.pop(stale))
                client = self._clients[key] = create()
            return client

    def clear(self) -> None:
        """Forget (and close) every cached client: tests, never needed by a worker."""
        with self._lock:
            for client in self._clients.values():
                _close(client)
            self._clients.clear()


def _close(client: object) -> None:
    close = getattr(client, "close", None)
    if callable(close):
        close()
