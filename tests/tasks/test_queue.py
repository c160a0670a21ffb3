"""KeyQueue against a real redis-server: coalescing, one more run after a busy run, no stuck keys."""

from __future__ import annotations

import time

import pytest
import redis
from prometheus_client import REGISTRY

from tasks.keys import ObjectKey
from tasks.locking import KeyLock
from tasks.queue import KeyQueue
from tests.tasks.support import RecordingSender

ACME = ObjectKey("Organization", "polycrate", "acme-corp")


@pytest.fixture
def sender() -> RecordingSender:
    return RecordingSender()


@pytest.fixture
def queue(redis_client: redis.Redis, sender: RecordingSender) -> KeyQueue:
    return KeyQueue(redis_client, stale_after=60, sender=sender)


def start_run(queue: KeyQueue, redis_client: redis.Redis, task_id: str, *, ttl: float = 10) -> KeyLock:
    """What the reconcile task does first: take the key's lock, then claim the key."""
    lock = KeyLock(redis_client, ACME, ttl=ttl)
    assert lock.acquire()
    assert queue.begin(ACME, task_id)
    return lock


def test_many_adds_while_waiting_send_one_task(queue: KeyQueue, sender: RecordingSender) -> None:
    outcomes = [queue.add(ACME) for _ in range(100)]

    assert outcomes[0] == "enqueued"
    assert set(outcomes[1:]) == {"coalesced"}
    assert len(sender.sent) == 1
    assert sender.sent[0][0] == ACME
    assert queue.pending() == {ACME}


def test_distinct_keys_each_get_their_own_task(queue: KeyQueue, sender: RecordingSender) -> None:
    keys = [ObjectKey("Contact", "polycrate", f"user-{n}") for n in range(50)]

    assert {queue.add(key) for key in keys} == {"enqueued"}
    assert sorted(key for key, _, _ in sender.sent) == sorted(keys)


def test_add_during_processing_schedules_exactly_one_more_run(
    queue: KeyQueue, redis_client: redis.Redis, sender: RecordingSender
) -> None:
    queue.add(ACME)
    lock = start_run(queue, redis_client, sender.task_ids()[0])

    assert [queue.add(ACME) for _ in range(20)] == ["deferred"] + ["coalesced"] * 19
    assert len(sender.sent) == 1, "nothing is sent while the key is being processed"

    follow_up = queue.finish(ACME, sender.task_ids()[0])
    lock.release()
    assert follow_up is not None and follow_up.countdown == 0
    queue.send(follow_up)
    assert len(sender.sent) == 2

    # The follow-up run sees no further events and ends the chain.
    lock = start_run(queue, redis_client, follow_up.task_id)
    assert queue.finish(ACME, follow_up.task_id) is None
    lock.release()
    assert queue.pending() == set() and queue.processing() == set()


def test_run_without_new_events_schedules_nothing(
    queue: KeyQueue, redis_client: redis.Redis, sender: RecordingSender
) -> None:
    queue.add(ACME)
    lock = start_run(queue, redis_client, sender.task_ids()[0])

    assert queue.finish(ACME, sender.task_ids()[0]) is None
    lock.release()
    assert queue.add(ACME) == "enqueued", "after the run a new event sends a new task at once"


def test_a_second_task_for_an_already_reconciled_key_is_skipped(
    queue: KeyQueue, redis_client: redis.Redis, sender: RecordingSender
) -> None:
    queue.add(ACME)
    lock = start_run(queue, redis_client, sender.task_ids()[0])
    queue.finish(ACME, sender.task_ids()[0])
    lock.release()

    assert queue.begin(ACME, "an-old-redelivered-task") is False


def test_stale_pending_entry_is_sent_again(redis_client: redis.Redis, sender: RecordingSender) -> None:
    queue = KeyQueue(redis_client, stale_after=0.2, sender=sender)
    assert queue.add(ACME) == "enqueued"
    assert queue.add(ACME) == "coalesced"

    time.sleep(0.3)  # the first task never started: it was lost between script and broker

    assert queue.add(ACME, reason="resync") == "enqueued"
    assert len(sender.sent) == 2
    # Whichever copy starts first takes the key; the other finds nothing to do.
    lock = start_run(queue, redis_client, sender.task_ids()[1])
    queue.finish(ACME, sender.task_ids()[1])
    lock.release()
    assert queue.begin(ACME, sender.task_ids()[0]) is False


def test_key_whose_publish_failed_is_sent_on_the_next_add(queue: KeyQueue, sender: RecordingSender) -> None:
    sender.fail_next = True
    with pytest.raises(ConnectionError):
        queue.add(ACME)

    assert queue.pending() == {ACME}, "the event is remembered"
    assert queue.add(ACME) == "enqueued", "and sent with the next add instead of waiting for staleness"
    assert len(sender.sent) == 1


def test_key_of_a_dead_worker_is_sent_again_once_its_lock_expired(
    queue: KeyQueue, redis_client: redis.Redis, sender: RecordingSender
) -> None:
    queue.add(ACME)
    start_run(queue, redis_client, sender.task_ids()[0], ttl=10)
    assert queue.add(ACME) == "deferred"

    redis_client.delete("polycrate:lock:" + str(ACME))  # the lock TTL ran out: the worker is gone

    assert queue.add(ACME) == "enqueued"
    assert len(sender.sent) == 2


def test_redelivered_task_of_a_dead_run_runs_again(
    queue: KeyQueue, redis_client: redis.Redis, sender: RecordingSender
) -> None:
    queue.add(ACME)
    task_id = sender.task_ids()[0]
    start_run(queue, redis_client, task_id)
    redis_client.delete("polycrate:lock:" + str(ACME))  # worker killed mid-run, lock expired

    # The broker redelivers the same message; its new run takes the lock and the key again.
    lock = KeyLock(redis_client, ACME, ttl=10)
    assert lock.acquire()
    assert queue.begin(ACME, task_id) is True
    lock.release()


def test_failed_run_schedules_a_retry_that_absorbs_later_events(
    queue: KeyQueue, redis_client: redis.Redis, sender: RecordingSender
) -> None:
    queue.add(ACME)
    task_id = sender.task_ids()[0]
    lock = start_run(queue, redis_client, task_id)
    queue.add(ACME)  # e.g. the status write of this very run

    retry = queue.finish(ACME, task_id, retry_in=5.0)
    lock.release()
    assert retry is not None and retry.countdown == 5.0
    queue.send(retry)

    assert queue.add(ACME) == "coalesced", "an event during the backoff does not bypass it"
    assert [countdown for _, _, countdown in sender.sent] == [0.0, 5.0]


def test_permanent_failure_reruns_only_after_an_event_and_only_after_the_delay(
    queue: KeyQueue, redis_client: redis.Redis, sender: RecordingSender
) -> None:
    queue.add(ACME)
    lock = start_run(queue, redis_client, sender.task_ids()[0])
    assert queue.finish(ACME, sender.task_ids()[0], requeue_delay=5.0) is None
    lock.release()

    queue.add(ACME)
    lock = start_run(queue, redis_client, sender.task_ids()[1])
    queue.add(ACME)  # the Error status written by this run comes back as an event
    follow_up = queue.finish(ACME, sender.task_ids()[1], requeue_delay=5.0)
    lock.release()
    assert follow_up is not None and follow_up.countdown == 5.0


def test_run_taken_over_after_its_lock_expired_leaves_the_new_owner_alone(
    queue: KeyQueue, redis_client: redis.Redis, sender: RecordingSender
) -> None:
    queue.add(ACME)
    slow_task = sender.task_ids()[0]
    start_run(queue, redis_client, slow_task)
    redis_client.delete("polycrate:lock:" + str(ACME))
    queue.add(ACME)
    new_lock = start_run(queue, redis_client, sender.task_ids()[1])

    assert queue.finish(ACME, slow_task, retry_in=5.0) is None
    assert queue.processing() == {ACME}, "the new owner still holds the key"
    new_lock.release()


def test_keys_round_trip_through_redis_with_group_qualified_kinds(queue: KeyQueue) -> None:
    backup = ObjectKey("velero.io/Backup", "velero", "nightly")
    node = ObjectKey("Node", "", "node-1")
    queue.add(backup)
    queue.add(node)

    assert queue.pending() == {backup, node}


def _waits(queue_name: str) -> tuple[float, float]:
    """(count, sum) of polycrate_queue_wait_seconds for `queue_name` in this process."""
    labels = {"queue": queue_name}
    count = REGISTRY.get_sample_value("polycrate_queue_wait_seconds_count", labels) or 0.0
    total = REGISTRY.get_sample_value("polycrate_queue_wait_seconds_sum", labels) or 0.0
    return count, total


def test_the_wait_from_enqueue_to_start_is_observed_per_queue(
    queue: KeyQueue, redis_client: redis.Redis
) -> None:
    count, total = _waits("default")  # Organizations run on the default queue
    queue.add(ACME)
    time.sleep(0.3)

    start_run(queue, redis_client, "t1")

    new_count, new_total = _waits("default")
    assert new_count == count + 1
    assert 0.3 <= new_total - total < 5


def test_a_rerun_of_a_dead_run_observes_no_wait(queue: KeyQueue, redis_client: redis.Redis) -> None:
    queue.add(ACME)
    start_run(queue, redis_client, "t1", ttl=0.2).release()
    count, _ = _waits("default")

    # The run died (processing, not pending): its redelivery claims the key without a due time.
    start_run(queue, redis_client, "t2")

    assert _waits("default")[0] == count
