"""polycrate_queue_depth against a real redis-server and real Celery messages."""

from __future__ import annotations

import redis
from celery import Celery
from prometheus_client import CollectorRegistry, generate_latest

from polycrate.keys import ObjectKey
from tasks.queue import KeyQueue, celery_sender
from tasks.queue_depth import QueueDepthCollector


def _samples(client: redis.Redis) -> dict[str, float]:
    registry = CollectorRegistry()
    registry.register(QueueDepthCollector(client))
    return {
        f"{sample.name}{sample.labels.get('queue', '')}": sample.value
        for family in registry.collect()
        for sample in family.samples
    }


def test_depth_counts_the_tasks_waiting_in_each_celery_queue(
    redis_client: redis.Redis, celery_app: Celery
) -> None:
    queue = KeyQueue(redis_client, sender=celery_sender(celery_app))
    for n in range(3):
        queue.add(ObjectKey("HarborProject", "team-a", f"images-{n}"))
    queue.add(ObjectKey("Organization", "polycrate", "acme-corp"))
    # A task with a priority lands in another Redis list of the same queue.
    celery_app.send_task("polycrate.reconcile", args=["Contact/polycrate/john"], queue="keycloak", priority=5)

    samples = _samples(redis_client)

    assert samples["polycrate_queue_depthharbor"] == 3
    assert samples["polycrate_queue_depthdefault"] == 1
    assert samples["polycrate_queue_depthkeycloak"] == 1
    assert samples["polycrate_queue_depthgitlab"] == 0
    assert samples["polycrate_queue_pending_keys"] == 4


def test_a_scrape_without_redis_has_no_depth_rather_than_zero() -> None:
    unreachable = redis.Redis(host="127.0.0.1", port=9, socket_connect_timeout=0.5)
    registry = CollectorRegistry()
    registry.register(QueueDepthCollector(unreachable))

    assert b"polycrate_queue_depth" not in generate_latest(registry)
