"""From list-watch events to keys in Redis: scope, change detection, and never dropping a key.

Informers report what they see here. An object in scope (OperatorConfig filters) is remembered
with its change fingerprint and its key handed to the `KeyQueue`; an event that changes nothing
a reconcile cares about (the operator's own status, finalizer or bookkeeping write) is counted
and skipped, so one change costs one reconcile, not a second one echoing the first's writes. An object
that leaves scope, is deleted, or vanished while the watch was down is enqueued one last time
and forgotten, so its handler can clean up. When Redis does not answer, `add` is retried with
backoff until it does (the informer waits, events queue up in the API server's watch), so an
outage delays keys but loses none. Only the leader enqueues.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable, Iterable
from typing import Any, Protocol

import kombu.exceptions
import redis.exceptions

from polycrate.keys import ObjectKey
from polycrate.kinds import OPERATOR_CONFIG_KEY
from watcher.filters import DiscoveryFilters
from watcher.known_keys import KnownKeys
from watcher.metrics import WatcherMetrics
from watcher.sources import WatchSource

log = logging.getLogger(__name__)

_BROKER_ERRORS = (redis.exceptions.RedisError, kombu.exceptions.OperationalError, OSError)


class KeySink(Protocol):
    """Where keys go: `tasks.queue.KeyQueue` in production."""

    def add(self, key: ObjectKey, *, reason: str = "event") -> str: ...


class KeyEnqueuer:
    """Turns informer callbacks into `KeySink.add` calls; shared by all informers."""

    def __init__(
        self,
        sink: KeySink,
        known: KnownKeys,
        filters: DiscoveryFilters,
        metrics: WatcherMetrics,
        *,
        stop: threading.Event,
        is_leader: Callable[[], bool] = lambda: True,
        on_operator_config: Callable[[dict[str, Any] | None], None] | None = None,
        retry_initial: float = 0.2,
        retry_max: float = 10.0,
    ):
        self._sink = sink
        self._known = known
        self._filters = filters
        self._metrics = metrics
        self._stop = stop
        self._is_leader = is_leader
        self._on_operator_config = on_operator_config
        self._retry_initial = retry_initial
        self._retry_max = retry_max
        self._broker_down = threading.Event()

    @property
    def broker_reachable(self) -> bool:
        """False while enqueueing fails; readiness reports it."""
        return not self._broker_down.is_set()

    def listed(self, source: WatchSource, obj: dict[str, Any]) -> ObjectKey:
        """One object of a (re)list; returns its key for the relist comparison."""
        key = source.key_for(obj)
        self._metrics.events_seen.labels(source.key_kind, "LISTED").inc()
        self._observe(source, key, obj, reason="list")
        return key

    def list_complete(self, source: WatchSource, seen: Iterable[ObjectKey]) -> None:
        """The (re)list finished: keys known before but not listed now were deleted meanwhile."""
        present = set(seen)
        for key in self._known.keys(source.key_kind):
            if source.namespace and key.namespace != source.namespace:
                continue  # another namespace's informer lists that one
            if key not in present and self._known.forget(key):
                self._add(key, reason="vanished")
        self._update_known_gauge(source)

    def event(self, source: WatchSource, event_type: str, obj: dict[str, Any]) -> None:
        """One ADDED / MODIFIED / DELETED watch event."""
        key = source.key_for(obj)
        self._metrics.events_seen.labels(source.key_kind, event_type).inc()
        if event_type == "DELETED":
            if key == OPERATOR_CONFIG_KEY and self._on_operator_config is not None:
                self._on_operator_config(None)
            was_known = self._known.forget(key)
            if was_known or (self._filters.admits(source, key.namespace) and source.selects(obj)):
                self._add(key, reason="deleted")
            else:
                self._metrics.events_ignored.labels(source.key_kind, "filtered").inc()
        else:
            self._observe(source, key, obj, reason="event")
        self._update_known_gauge(source)

    def resync(self, key: ObjectKey) -> bool:
        """Re-enqueue a known key (periodic resync); False when it is no longer known."""
        if key not in self._known:
            return False
        self._metrics.resync_keys.labels(key.kind).inc()
        self._add(key, reason="resync")
        return True

    def readd_after_wipe(self, key: ObjectKey) -> bool:
        """Enqueue a known key again because Redis lost everything; False when no longer known."""
        if key not in self._known:
            return False
        self._add(key, reason="redis-wiped")
        return True

    def _observe(self, source: WatchSource, key: ObjectKey, obj: dict[str, Any], *, reason: str) -> None:
        if key == OPERATOR_CONFIG_KEY and self._on_operator_config is not None:
            self._on_operator_config(obj)
        if not self._filters.admits(source, key.namespace) or not source.selects(obj):
            # Enqueued once more when it was a source until now (e.g. a meta Secret lost its
            # label), so its handler can retire what was discovered from it.
            if self._known.forget(key):
                self._add(key, reason="out-of-scope")
            else:
                self._metrics.events_ignored.labels(source.key_kind, "filtered").inc()
            return
        if self._known.remember(key, source.change_fingerprint(obj)):
            self._add(key, reason=reason)
        else:
            self._metrics.events_ignored.labels(source.key_kind, "unchanged").inc()

    def _add(self, key: ObjectKey, *, reason: str) -> None:
        delay = self._retry_initial
        while not self._stop.is_set():
            if not self._is_leader():
                self._metrics.events_ignored.labels(key.kind, "not-leader").inc()
                return
            try:
                result = self._sink.add(key, reason=reason)
            except _BROKER_ERRORS as exc:
                self._metrics.enqueue_failures.inc()
                if not self._broker_down.is_set():
                    self._broker_down.set()
                    log.warning(
                        "cannot enqueue keys, Redis does not answer (%s); retrying until it does", exc
                    )
                self._stop.wait(delay * random.uniform(0.8, 1.2))
                delay = min(delay * 2, self._retry_max)
                continue
            if self._broker_down.is_set():
                self._broker_down.clear()
                log.info("Redis answers again; enqueueing resumed")
            self._count(key, result)
            return

    def _count(self, key: ObjectKey, result: str) -> None:
        if result == "enqueued":
            self._metrics.keys_enqueued.labels(key.kind).inc()
        elif result == "coalesced":
            self._metrics.keys_coalesced.labels(key.kind).inc()
        else:
            self._metrics.keys_deferred.labels(key.kind).inc()

    def _update_known_gauge(self, source: WatchSource) -> None:
        self._metrics.known_keys.labels(source.key_kind).set(self._known.count(source.key_kind))
