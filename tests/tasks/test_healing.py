"""The self-healing loop on a real redis-server: one healer at a time, due retries published."""

from __future__ import annotations

import redis

from polycrate.keys import ObjectKey
from tasks.healing import HealingLoop
from tasks.locking import KeyLock
from tasks.queue import KeyQueue
from tests.tasks.support import RecordingSender

ACME = ObjectKey("Organization", "polycrate", "acme-corp")


def healer(client: redis.Redis, sender: RecordingSender) -> HealingLoop:
    return HealingLoop(client, KeyQueue(client, sender=sender), interval=5, lost_after=30)


def test_only_the_lease_holder_heals_and_another_takes_over_when_it_stops(redis_client: redis.Redis) -> None:
    first, second = healer(redis_client, RecordingSender()), healer(redis_client, RecordingSender())

    first.heal_once()
    second.heal_once()
    assert (first.leading, second.leading) == (True, False)

    first.stop()
    second.heal_once()
    assert second.leading


def test_a_due_retry_and_a_dead_run_are_sent_and_counted_by_cause(redis_client: redis.Redis) -> None:
    sender = RecordingSender()
    queue = KeyQueue(redis_client, sender=sender)
    globex = ObjectKey("Organization", "polycrate", "globex")
    queue.add(ACME)
    queue.add(globex)
    for key, task_id in zip((ACME, globex), sender.task_ids(), strict=True):
        lock = KeyLock(redis_client, key, ttl=10)
        assert lock.acquire() and queue.begin(key, task_id)
        if key == ACME:
            queue.finish(key, task_id, retry_in=5)
            lock.release()
    redis_client.zadd("polycrate:queue:due", {str(ACME): 0})  # five seconds later: the retry is due
    redis_client.delete(f"polycrate:lock:{globex}")  # globex's worker died mid-run

    causes = healer(redis_client, sender).heal_once()

    assert causes == {"retry-due": 1, "lock-expired": 1}
    assert {key for key, _, _ in sender.sent[2:]} == {ACME, globex}
