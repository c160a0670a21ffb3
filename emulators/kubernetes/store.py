"""In-memory object storage with etcd's revision semantics, the watch history and the 410 window.

Every write takes the next value of one global revision counter, which becomes the object's
`metadata.resourceVersion` (a string on the wire). Each write appends an event to a bounded
history; a watch (or a paged list's continue token) can resume from revision R only while every
event after R is still in the history, otherwise it is answered with 410 Expired, as etcd
compaction makes the real server do. Stored objects are never mutated in place (writers store a
new dict), so events and readers can share them safely. One re-entrant lock guards everything;
the API layer holds it across read-check-write sequences to make each request atomic.
"""

from __future__ import annotations

import bisect
import threading
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from emulators.kubernetes.resources import StorageKey

ObjectId = tuple[str, str]  # (namespace, name); namespace "" for cluster-scoped objects


class HistoryExpired(Exception):
    """The requested revision is older than the retained history (becomes 410 Expired)."""

    def __init__(self, requested: int, oldest: int):
        super().__init__(f"too old resource version: {requested} ({oldest})")
        self.requested = requested
        self.oldest = oldest


@dataclass(frozen=True)
class StoredEvent:
    revision: int
    type: str  # ADDED, MODIFIED or DELETED
    key: StorageKey
    namespace: str
    name: str
    obj: dict[str, Any]
    previous: dict[str, Any] | None


def _owner_uids(obj: dict[str, Any]) -> set[str]:
    return {
        ref.get("uid", "") for ref in obj.get("metadata", {}).get("ownerReferences") or () if ref.get("uid")
    }


class ObjectStore:
    """All objects by storage key, the revision counter and the event history."""

    def __init__(self, history_limit: int = 1000):
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self.history_limit = max(1, history_limit)
        self._objects: dict[StorageKey, dict[ObjectId, dict[str, Any]]] = defaultdict(dict)
        self._uids: dict[str, tuple[StorageKey, ObjectId]] = {}
        self._dependents: dict[str, set[tuple[StorageKey, ObjectId]]] = defaultdict(set)
        self._history: list[StoredEvent] = []
        self._revisions: list[int] = []
        self._revision = 1
        self._floor = 0

    # --- reading ----------------------------------------------------------------------

    @property
    def revision(self) -> int:
        return self._revision

    def get(self, key: StorageKey, namespace: str, name: str) -> dict[str, Any] | None:
        return self._objects.get(key, {}).get((namespace, name))

    def list(self, key: StorageKey, namespace: str | None = None) -> list[dict[str, Any]]:
        objects = self._objects.get(key, {})
        ids = sorted(object_id for object_id in objects if namespace is None or object_id[0] == namespace)
        return [objects[object_id] for object_id in ids]

    def by_uid(self, uid: str) -> tuple[StorageKey, dict[str, Any]] | None:
        location = self._uids.get(uid)
        if location is None:
            return None
        key, object_id = location
        return key, self._objects[key][object_id]

    def dependents_of(self, uid: str) -> list[tuple[StorageKey, dict[str, Any]]]:
        found = []
        for key, object_id in sorted(self._dependents.get(uid, ())):
            obj = self._objects.get(key, {}).get(object_id)
            if obj is not None:
                found.append((key, obj))
        return found

    def in_namespace(self, namespace: str) -> list[tuple[StorageKey, dict[str, Any]]]:
        return [
            (key, obj)
            for key, objects in self._objects.items()
            for (object_namespace, _), obj in sorted(objects.items())
            if object_namespace == namespace
        ]

    def count(self, key: StorageKey) -> int:
        return len(self._objects.get(key, {}))

    # --- writing ----------------------------------------------------------------------

    def _next_revision(self) -> int:
        self._revision += 1
        return self._revision

    def _index(
        self, key: StorageKey, object_id: ObjectId, old: dict[str, Any] | None, new: dict[str, Any] | None
    ) -> None:
        if old is not None:
            self._uids.pop(old["metadata"].get("uid", ""), None)
            for owner in _owner_uids(old):
                self._dependents[owner].discard((key, object_id))
                if not self._dependents[owner]:
                    del self._dependents[owner]
        if new is not None:
            self._uids[new["metadata"]["uid"]] = (key, object_id)
            for owner in _owner_uids(new):
                self._dependents[owner].add((key, object_id))

    def _record(self, event: StoredEvent) -> None:
        self._history.append(event)
        self._revisions.append(event.revision)
        if len(self._history) > self.history_limit + self.history_limit // 4:
            excess = len(self._history) - self.history_limit
            self._floor = self._revisions[excess - 1]
            del self._history[:excess]
            del self._revisions[:excess]
        self.changed.notify_all()

    def put(self, key: StorageKey, obj: dict[str, Any]) -> dict[str, Any]:
        """Create or replace `obj` (owned by the store from now on) at the next revision."""
        with self.lock:
            metadata = obj["metadata"]
            object_id = (metadata.get("namespace", ""), metadata["name"])
            previous = self._objects[key].get(object_id)
            revision = self._next_revision()
            metadata["resourceVersion"] = str(revision)
            self._objects[key][object_id] = obj
            self._index(key, object_id, previous, obj)
            self._record(
                StoredEvent(
                    revision,
                    "MODIFIED" if previous else "ADDED",
                    key,
                    object_id[0],
                    object_id[1],
                    obj,
                    previous,
                )
            )
            return obj

    def remove(self, key: StorageKey, namespace: str, name: str) -> dict[str, Any]:
        """Delete the object; the returned final state carries the deletion's revision."""
        with self.lock:
            previous = self._objects[key].pop((namespace, name))
            revision = self._next_revision()
            final = {**previous, "metadata": {**previous["metadata"], "resourceVersion": str(revision)}}
            self._index(key, (namespace, name), previous, None)
            self._record(StoredEvent(revision, "DELETED", key, namespace, name, final, previous))
            return final

    def reset(self) -> None:
        """Forget every object and all history; revisions keep counting so old ones stay stale."""
        with self.lock:
            self._objects.clear()
            self._uids.clear()
            self._dependents.clear()
            self.expire_history()

    def expire_history(self) -> None:
        """Compact: every resourceVersion handed out so far is now too old to watch from.

        The revision ticks once so that a list made after the compaction returns a
        resourceVersion that can be watched from again (no relist loop).
        """
        with self.lock:
            self._history.clear()
            self._revisions.clear()
            self._revision += 1
            self._floor = self._revision
            self.changed.notify_all()

    # --- history ----------------------------------------------------------------------

    def events_after(self, revision: int) -> list[StoredEvent]:
        with self.lock:
            if revision < self._floor:
                raise HistoryExpired(revision, self._floor + 1)
            start = bisect.bisect_right(self._revisions, revision)
            return self._history[start:]

    def snapshot(self, key: StorageKey, namespace: str | None, revision: int) -> list[dict[str, Any]]:
        """The objects of `key` as they were at `revision` (for consistent paged lists)."""
        with self.lock:
            if revision < self._floor:
                raise HistoryExpired(revision, self._floor + 1)
            state = dict(self._objects.get(key, {}))
            start = bisect.bisect_right(self._revisions, revision)
            for event in reversed(self._history[start:]):
                if event.key != key:
                    continue
                object_id = (event.namespace, event.name)
                if event.previous is None:
                    state.pop(object_id, None)
                else:
                    state[object_id] = event.previous
            ids = sorted(object_id for object_id in state if namespace is None or object_id[0] == namespace)
            return [state[object_id] for object_id in ids]
