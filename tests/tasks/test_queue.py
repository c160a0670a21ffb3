"""KeyQueue against a real redis-server: coalescing, one more run after a busy run, no stuck keys,
delayed runs waiting in Redis, and `heal` re-sending what a dead process held."""

from __future__ import annotations

import json
import time

import pytest
import redis
from prometheus_client import REGISTRY

from polycrate.keys import ObjectKey
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


def redis_now(client: redis.Redis) -> float:
    seconds, microseconds = client.time()
    return seconds + microseconds / 1e6


def make_due(client: redis.Redis, key: ObjectKey = ACME, *, ago: float = 0.0) -> None:
    """Time passes: the key's ticket became due `ago` seconds ago."""
    client.zadd("polycrate:queue:due", {str(key): redis_now(client) - ago})


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

    assert queue.finish(ACME, task_id, retry_in=5.0) is None, "nothing to publish now"
    lock.release()

    assert queue.scheduled()[ACME] - redis_now(redis_client) == pytest.approx(5.0, abs=0.5)
    assert queue.add(ACME) == "coalesced", "an event during the backoff does not bypass it"
    assert len(sender.sent) == 1, "the retry waits in Redis, not in a worker's memory"


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
    assert queue.finish(ACME, sender.task_ids()[1], requeue_delay=5.0) is None
    lock.release()
    assert queue.scheduled()[ACME] - redis_now(redis_client) == pytest.approx(5.0, abs=0.5)


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
    assert queue.pending() == {ACME}, "but it runs once more after it, so the last run sees the last version"
    assert len(sender.sent) == 2, "and nothing is sent while the new owner runs"
    new_lock.release()


def test_finish_after_redis_was_emptied_adds_the_key_again(
    queue: KeyQueue, redis_client: redis.Redis, sender: RecordingSender
) -> None:
    queue.add(ACME)
    start_run(queue, redis_client, sender.task_ids()[0])
    redis_client.flushdb()

    assert queue.finish(ACME, sender.task_ids()[0]) is None
    assert queue.pending() == {ACME} and len(sender.sent) == 2


def test_heal_publishes_a_retry_when_it_is_due_and_not_before(
    queue: KeyQueue, redis_client: redis.Redis, sender: RecordingSender
) -> None:
    queue.add(ACME)
    lock = start_run(queue, redis_client, sender.task_ids()[0])
    queue.finish(ACME, sender.task_ids()[0], retry_in=60.0)
    lock.release()

    assert queue.heal(lost_after=30) == []
    make_due(redis_client)
    [(key, task_id, cause)] = queue.heal(lost_after=30)

    assert (key, cause) == (ACME, "retry-due")
    assert sender.sent[-1] == (ACME, task_id, 0.0)
    assert queue.heal(lost_after=30) == [], "published once"


def test_a_stray_task_cannot_run_a_retry_before_it_is_due(
    queue: KeyQueue, redis_client: redis.Redis, sender: RecordingSender
) -> None:
    queue.add(ACME)
    lock = start_run(queue, redis_client, sender.task_ids()[0])
    queue.finish(ACME, sender.task_ids()[0], retry_in=60.0)
    lock.release()

    lock = KeyLock(redis_client, ACME, ttl=10)
    assert lock.acquire()
    assert queue.begin(ACME, sender.task_ids()[0]) is False
    lock.release()


def test_heal_resends_a_key_whose_run_died_with_its_lock(
    queue: KeyQueue, redis_client: redis.Redis, sender: RecordingSender
) -> None:
    queue.add(ACME)
    start_run(queue, redis_client, sender.task_ids()[0])
    assert queue.heal(lost_after=30) == [], "a live run is left alone"

    redis_client.delete("polycrate:lock:" + str(ACME))  # the worker was killed; its lock ran out
    [(key, _, cause)] = queue.heal(lost_after=30)

    assert (key, cause) == (ACME, "lock-expired")
    assert queue.processing() == set() and queue.pending() == {ACME}
    assert len(sender.sent) == 2


def test_heal_resends_a_task_that_vanished_with_its_worker(
    queue: KeyQueue, redis_client: redis.Redis, sender: RecordingSender
) -> None:
    queue.add(ACME)  # the recording sender publishes nothing: the message is nowhere
    make_due(redis_client, ago=10)
    assert queue.heal(lost_after=30) == [], "not overdue yet"

    make_due(redis_client, ago=31)
    [(key, _, cause)] = queue.heal(lost_after=30)

    assert (key, cause) == (ACME, "lost-task")
    assert len(sender.sent) == 2


def test_heal_leaves_tasks_that_wait_in_a_long_queue_or_were_just_delivered(
    queue: KeyQueue, redis_client: redis.Redis, sender: RecordingSender
) -> None:
    waiting, delivered = ACME, ObjectKey("Organization", "polycrate", "globex")
    queue.add(waiting)
    queue.add(delivered)
    waiting_id, delivered_id = sender.task_ids()
    # The two places kombu's Redis transport keeps a task: its queue list, and `unacked` with
    # the delivery time in `unacked_index` once a worker took it.
    redis_client.lpush("keycloak", json.dumps({"body": "", "headers": {"id": waiting_id}}))
    redis_client.hset("unacked", "tag-1", json.dumps([{"headers": {"id": delivered_id}}, "", "keycloak"]))
    redis_client.zadd("unacked_index", {"tag-1": time.time()})
    make_due(redis_client, waiting, ago=120)
    make_due(redis_client, delivered, ago=120)

    assert queue.heal(lost_after=30) == []

    redis_client.zadd("unacked_index", {"tag-1": time.time() - 60})  # its worker never started it
    assert [(key, cause) for key, _, cause in queue.heal(lost_after=30)] == [(delivered, "lost-task")]


def test_publish_that_fails_is_retried_by_the_next_heal(
    queue: KeyQueue, redis_client: redis.Redis, sender: RecordingSender
) -> None:
    sender.fail_next = True
    with pytest.raises(ConnectionError):
        queue.add(ACME)

    [(key, _, cause)] = queue.heal(lost_after=30)

    assert (key, cause) == (ACME, "retry-due")
    assert len(sender.sent) == 1


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


def test_a_requeue_timer_adds_the_key_when_due_and_never_holds_back_an_event(
    queue: KeyQueue, redis_client: redis.Redis, sender: RecordingSender
) -> None:
    queue.requeue_after(ACME, 600.0)
    assert queue.timers()[ACME] - redis_now(redis_client) == pytest.approx(600.0, abs=0.5)
    assert queue.heal(lost_after=30) == [], "not due yet"

    assert queue.add(ACME) == "enqueued", "an event before the timer runs at once"
    lock = start_run(queue, redis_client, sender.task_ids()[-1])
    assert queue.finish(ACME, sender.task_ids()[-1]) is None
    lock.release()

    redis_client.zadd("polycrate:queue:timers", {str(ACME): redis_now(redis_client)})
    [(key, task_id, cause)] = queue.heal(lost_after=30)
    assert (key, cause) == (ACME, "requeue-due")
    assert sender.sent[-1] == (ACME, task_id, 0.0)
    assert queue.timers() == {}, "a timer fires once"


def test_the_latest_requeue_of_a_key_replaces_its_earlier_timer(
    queue: KeyQueue, redis_client: redis.Redis
) -> None:
    queue.requeue_after(ACME, 60.0)
    queue.requeue_after(ACME, 3600.0)

    assert list(queue.timers()) == [ACME]
    assert queue.timers()[ACME] - redis_now(redis_client) == pytest.approx(3600.0, abs=0.5)


def test_claim_takes_the_lock_and_the_key_in_one_step_and_finish_releases_it(
    queue: KeyQueue, redis_client: redis.Redis, sender: RecordingSender
) -> None:
    queue.add(ACME)
    lock = KeyLock(redis_client, ACME, ttl=10)

    claim = queue.claim(ACME, sender.task_ids()[0], lock)

    assert claim.claimed and not claim.locked_elsewhere
    assert lock.held and redis_client.get(lock.name) == lock.token.encode()
    assert queue.processing() == {ACME} and queue.pending() == set()
    queue.add(ACME)  # an event during the run

    follow_up = queue.finish(ACME, sender.task_ids()[0], lock=lock)

    assert follow_up is not None, "the event during the run asks for one more run"
    assert not lock.held and redis_client.exists(lock.name) == 0, "the lock is released with the finish"
    assert lock.release() is False, "a later release has nothing left to do"
    assert queue.processing() == set()


def test_claim_of_a_key_locked_elsewhere_takes_nothing_and_says_how_long_the_lock_lasts(
    queue: KeyQueue, redis_client: redis.Redis, sender: RecordingSender
) -> None:
    queue.add(ACME)
    other_worker = KeyLock(redis_client, ACME, ttl=20)
    assert other_worker.acquire()
    lock = KeyLock(redis_client, ACME, ttl=10)

    claim = queue.claim(ACME, sender.task_ids()[0], lock)

    assert claim.locked_elsewhere and not claim.claimed
    assert 15 < claim.lock_ttl <= 20
    assert not lock.held and queue.pending() == {ACME} and queue.processing() == set()
    assert redis_client.get(lock.name) == other_worker.token.encode()
    other_worker.release()


def test_a_duplicate_claim_holds_the_lock_until_released(
    queue: KeyQueue, redis_client: redis.Redis, sender: RecordingSender
) -> None:
    lock = KeyLock(redis_client, ACME, ttl=10)

    claim = queue.claim(ACME, "an-old-redelivered-task", lock)

    assert not claim.claimed and not claim.locked_elsewhere and lock.held
    assert lock.release() is True and redis_client.exists(lock.name) == 0


def test_finish_does_not_release_a_lock_another_worker_took_over(
    queue: KeyQueue, redis_client: redis.Redis, sender: RecordingSender
) -> None:
    queue.add(ACME)
    lock = KeyLock(redis_client, ACME, ttl=10)
    assert queue.claim(ACME, sender.task_ids()[0], lock).claimed
    redis_client.set(lock.name, "another-worker's-token")

    queue.finish(ACME, sender.task_ids()[0], lock=lock)

    assert redis_client.get(lock.name) == b"another-worker's-token"
    assert not lock.held


def test_a_claimed_run_observes_its_wait(
    queue: KeyQueue, redis_client: redis.Redis, sender: RecordingSender
) -> None:
    count, total = _waits("default")
    queue.add(ACME)
    time.sleep(0.3)

    assert queue.claim(ACME, sender.task_ids()[0], KeyLock(redis_client, ACME, ttl=10)).claimed

    new_count, new_total = _waits("default")
    assert new_count == count + 1
    assert 0.3 <= new_total - total < 5
