"""Watch streams: the event sequence a `?watch=true` request receives.

Without a resourceVersion (or with "0") the stream starts with a synthetic ADDED per existing
object, as the real server does; from a resourceVersion it replays the retained history after
it, or sends one ERROR event with a 410 Expired Status when that history is gone (also when a
slow watcher falls behind the window). Selectors apply to transitions like the real watch
cache: an object that stops matching arrives as DELETED, one that starts matching as ADDED.
`allowWatchBookmarks` adds periodic BOOKMARKs, `sendInitialEvents` ends the initial burst with
the `k8s.io/initial-events-end` bookmark, and `timeoutSeconds` ends the stream cleanly.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from emulators.kubernetes.apiserver import present
from emulators.kubernetes.resources import ResourceType
from emulators.kubernetes.selectors import FieldSelector, LabelSelector
from emulators.kubernetes.status import expired
from emulators.kubernetes.store import HistoryExpired, ObjectStore, StoredEvent

JsonObject = dict[str, Any]
# The real server closes watches after --min-request-timeout (1800 s) times a random factor.
DEFAULT_WATCH_TIMEOUT = 1800.0
# How long one wait for a change may block before the stream re-checks deadlines and shutdown.
_POLL_SECONDS = 0.25


@dataclass(frozen=True)
class WatchRequest:
    rt: ResourceType
    namespace: str | None
    labels: LabelSelector
    fields: FieldSelector
    resource_version: str = ""
    timeout_seconds: float | None = None
    allow_bookmarks: bool = False
    send_initial_events: bool | None = None


def _bookmark(rt: ResourceType, revision: int, *, initial_events_end: bool = False) -> JsonObject:
    metadata: JsonObject = {"resourceVersion": str(revision), "creationTimestamp": None}
    if initial_events_end:
        metadata["annotations"] = {"k8s.io/initial-events-end": "true"}
    return {
        "type": "BOOKMARK",
        "object": {"kind": rt.kind, "apiVersion": rt.api_version, "metadata": metadata},
    }


def _error(message: str) -> JsonObject:
    return {"type": "ERROR", "object": expired(message).to_status()}


class WatchStream:
    """Iterates watch events (as dicts) for one request until timeout, shutdown or 410."""

    def __init__(
        self,
        store: ObjectStore,
        request: WatchRequest,
        *,
        stopped: Callable[[], bool],
        bookmark_interval: float,
    ):
        self.store = store
        self.request = request
        self.stopped = stopped
        self.bookmark_interval = bookmark_interval

    def _matches(self, obj: JsonObject | None) -> bool:
        if obj is None:
            return False
        metadata = obj["metadata"]
        if self.request.namespace is not None and metadata.get("namespace", "") != self.request.namespace:
            return False
        return self.request.labels.matches(metadata.get("labels")) and self.request.fields.matches(obj)

    def _translate(self, event: StoredEvent) -> JsonObject | None:
        if event.key != self.request.rt.storage_key:
            return None
        was = self._matches(event.previous)
        if event.type == "DELETED":
            return {"type": "DELETED", "object": present(self.request.rt, event.obj)} if was else None
        now = self._matches(event.obj)
        if now:
            kind = "MODIFIED" if was else "ADDED"
        elif was:
            kind = "DELETED"
        else:
            return None
        return {"type": kind, "object": present(self.request.rt, event.obj)}

    def _start(self) -> tuple[list[JsonObject], int]:
        """The initial events and the revision the live part continues from."""
        request = self.request
        with self.store.lock:
            from_scratch = request.resource_version in ("", "0") or request.send_initial_events
            if from_scratch:
                revision = self.store.revision
                initial = [
                    {"type": "ADDED", "object": present(request.rt, obj)}
                    for obj in self.store.list(request.rt.storage_key, request.namespace)
                    if self._matches(obj)
                ]
                return initial, revision
            try:
                revision = int(request.resource_version)
            except ValueError:
                return [_error(f"invalid resource version: {request.resource_version!r}")], -1
            try:
                self.store.events_after(revision)
            except HistoryExpired as error:
                return [_error(str(error))], -1
            return [], revision

    def __iter__(self) -> Iterator[JsonObject]:
        request = self.request
        initial, revision = self._start()
        yield from initial
        if revision < 0:
            return
        if request.send_initial_events and request.allow_bookmarks:
            yield _bookmark(request.rt, revision, initial_events_end=True)
        started = time.monotonic()
        timeout = request.timeout_seconds if request.timeout_seconds is not None else DEFAULT_WATCH_TIMEOUT
        deadline = started + timeout
        next_bookmark = started + self.bookmark_interval
        while not self.stopped():
            now = time.monotonic()
            if now >= deadline:
                return
            # Check and wait under one lock so an event cannot slip in between; never yield here.
            failure = ""
            with self.store.changed:
                try:
                    events = self.store.events_after(revision)
                except HistoryExpired as error:
                    events, failure = [], str(error)
                if not events and not failure:
                    wait = min(deadline - now, _POLL_SECONDS)
                    if request.allow_bookmarks:
                        wait = min(wait, max(0.0, next_bookmark - now))
                    self.store.changed.wait(wait)
            if failure:
                yield _error(failure)
                return
            for event in events:
                revision = event.revision
                translated = self._translate(event)
                if translated is not None:
                    yield translated
            if request.allow_bookmarks and time.monotonic() >= next_bookmark:
                yield _bookmark(request.rt, revision)
                next_bookmark = time.monotonic() + self.bookmark_interval
