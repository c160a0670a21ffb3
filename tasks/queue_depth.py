"""`polycrate_queue_depth{queue}`: reconcile tasks waiting in each Celery queue, read at scrape.

The Redis transport keeps each queue as Redis lists (one per priority step), so the depth is
the sum of their lengths, read in one pipeline when Prometheus scrapes: never stale, no
background thread, and the same number the KEDA ScaledObject scales the workers on. Tasks
with a countdown (a retry, a deferral) sit reserved in a worker until they are due and are
not counted here; keys waiting in the coalescing queue are `polycrate_queue_pending_keys`.
A scrape while Redis is down reports no sample rather than a misleading zero.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import redis
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from tasks.routing import QUEUES

log = logging.getLogger(__name__)

# kombu's Redis transport: queue `q` at priority p > 0 is the list "q\x06\x16p".
_PRIORITY_SEPARATOR = "\x06\x16"
_PRIORITY_STEPS = (0, 3, 6, 9)


def queue_lists(queue: str) -> list[str]:
    """The Redis lists holding the messages of Celery queue `queue`."""
    return [queue if step == 0 else f"{queue}{_PRIORITY_SEPARATOR}{step}" for step in _PRIORITY_STEPS]


class QueueDepthCollector(Collector):
    """Prometheus collector reading the queue lengths from the broker's Redis at each scrape."""

    def __init__(self, client: redis.Redis, *, prefix: str = "polycrate", queues: tuple[str, ...] = QUEUES):
        self._redis = client
        self._prefix = prefix
        self._queues = queues

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            with self._redis.pipeline(transaction=False) as pipe:
                for queue in self._queues:
                    for name in queue_lists(queue):
                        pipe.llen(name)
                pipe.hlen(f"{self._prefix}:queue:pending")
                lengths = pipe.execute()
        except redis.RedisError as exc:
            log.warning("queue depth unavailable: %s", exc)
            return
        depth = GaugeMetricFamily(
            "polycrate_queue_depth", "Reconcile tasks waiting in the Celery queue", labels=["queue"]
        )
        steps = len(_PRIORITY_STEPS)
        for index, queue in enumerate(self._queues):
            depth.add_metric([queue], sum(lengths[index * steps : (index + 1) * steps]))
        yield depth
        pending = GaugeMetricFamily(
            "polycrate_queue_pending_keys", "Keys waiting for a reconcile (coalesced: one per key)"
        )
        pending.add_metric([], lengths[-1])
        yield pending
