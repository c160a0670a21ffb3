"""Prometheus metrics of the watcher, in a registry of its own.

Labels are bounded: the key kind (about 22 values), an event type, a restart reason. Object
names never become label values, so cardinality stays flat however many objects the cluster
holds. A separate `CollectorRegistry` per watcher keeps two watchers in one process (tests, the
sandbox) from colliding on metric names.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class WatcherMetrics:
    """Counters and gauges the watcher updates; `/metrics` renders `registry`."""

    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry if registry is not None else CollectorRegistry()
        self.events_seen = Counter(
            "polycrate_watcher_events",
            "Watch events and listed objects seen, by key kind and event type (LISTED for list items)",
            ["kind", "type"],
            registry=self.registry,
        )
        self.events_ignored = Counter(
            "polycrate_watcher_events_ignored",
            "Events that enqueued nothing: filtered by the OperatorConfig or no change worth a reconcile",
            ["kind", "reason"],
            registry=self.registry,
        )
        self.keys_enqueued = Counter(
            "polycrate_watcher_keys_enqueued",
            "Keys that became a new pending reconcile",
            ["kind"],
            registry=self.registry,
        )
        self.keys_coalesced = Counter(
            "polycrate_watcher_keys_coalesced",
            "Keys that were already pending, so the event merged into the waiting reconcile",
            ["kind"],
            registry=self.registry,
        )
        self.keys_deferred = Counter(
            "polycrate_watcher_keys_deferred",
            "Keys that were being reconciled, so one more run follows the current one",
            ["kind"],
            registry=self.registry,
        )
        self.enqueue_failures = Counter(
            "polycrate_watcher_enqueue_failures",
            "Failed attempts to reach Redis while enqueueing (each is retried)",
            registry=self.registry,
        )
        self.watch_restarts = Counter(
            "polycrate_watcher_watch_restarts",
            "Watch streams restarted, by reason: expired (server timeout), gone (410, relist), "
            "inactivity (silent stream), error (connection or server error), relist (filters changed)",
            ["kind", "reason"],
            registry=self.registry,
        )
        self.resync_keys = Counter(
            "polycrate_watcher_resync_keys",
            "Keys re-enqueued by the periodic resync",
            ["kind"],
            registry=self.registry,
        )
        self.redis_wipes = Counter(
            "polycrate_watcher_redis_wipes",
            "Times Redis came back empty (its epoch key was gone) and every known key was re-added",
            registry=self.registry,
        )
        self.source_installed = Gauge(
            "polycrate_watcher_source_installed",
            "1 when the source's resource is served by the API server (its CRD is installed)",
            ["kind"],
            registry=self.registry,
        )
        self.source_synced = Gauge(
            "polycrate_watcher_source_synced",
            "1 once the source's initial list completed",
            ["kind"],
            registry=self.registry,
        )
        self.known_keys = Gauge(
            "polycrate_watcher_known_keys",
            "Keys the watcher currently knows, by kind",
            ["kind"],
            registry=self.registry,
        )
        self.is_leader = Gauge(
            "polycrate_watcher_is_leader",
            "1 while this watcher holds the leader Lease (always 1 without --leader-elect)",
            registry=self.registry,
        )
