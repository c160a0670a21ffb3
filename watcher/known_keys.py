"""The watcher's only memory: the keys it has seen, each with a short change fingerprint.

No objects are cached. The key set is what periodic resync walks and what a relist is compared
against (a key known before but absent from the new list was deleted while the watch was down,
so it is enqueued once more). The fingerprint (a resourceVersion or a 24-hex-digit hash of what
a reconcile reads, `WatchSource.change_fingerprint`) lets a relist, a status-only update or the
operator's own finalizer and bookkeeping writes skip objects that did not change in a way that
needs a reconcile.
"""

from __future__ import annotations

import threading

from polycrate.keys import ObjectKey


class KnownKeys:
    """Thread-safe map key → fingerprint, grouped by key kind."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_kind: dict[str, dict[ObjectKey, str]] = {}

    def remember(self, key: ObjectKey, fingerprint: str) -> bool:
        """Record the key's latest fingerprint; True when it is new or differs from the last one."""
        with self._lock:
            of_kind = self._by_kind.setdefault(key.kind, {})
            previous = of_kind.get(key)
            of_kind[key] = fingerprint
        return previous != fingerprint

    def forget(self, key: ObjectKey) -> bool:
        """Drop the key; True when it was known."""
        with self._lock:
            return self._by_kind.get(key.kind, {}).pop(key, None) is not None

    def forget_kind(self, kind: str) -> int:
        """Drop every key of one kind (its source stopped being watched); return how many."""
        with self._lock:
            return len(self._by_kind.pop(kind, {}))

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, ObjectKey):
            return False
        with self._lock:
            return key in self._by_kind.get(key.kind, {})

    def keys(self, kind: str | None = None) -> list[ObjectKey]:
        """A snapshot of the known keys, optionally of one kind."""
        with self._lock:
            if kind is not None:
                return list(self._by_kind.get(kind, {}))
            return [key for of_kind in self._by_kind.values() for key in of_kind]

    def count(self, kind: str) -> int:
        with self._lock:
            return len(self._by_kind.get(kind, {}))

    def clear(self) -> None:
        with self._lock:
            self._by_kind.clear()
