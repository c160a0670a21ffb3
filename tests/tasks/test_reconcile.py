"""The reconcile run driven directly (no Celery): locking, retries, permanent errors, follow-ups.

The Reconciler is the task minus Celery, so the retry schedule is read from the delay queue in
Redis (when each scheduled run is due) instead of being waited for; `fire_due` then plays the
passing of time and the healing loop that publishes due runs.
"""

from __future__ import annotations

import random
import threading
import time

import pytest
import redis
from kubernetes.client import ApiClient

from polycrate.keys import ObjectKey
from polycrate.kubeclient.api import JsonObject
from polycrate.settings import Settings
from tasks.context import WorkerContext
from tasks.dispatch import HandlerRegistry, KindHandler
from tasks.locking import KeyLock, lock_key
from tasks.queue import KeyQueue
from tasks.reconcile import Reconciler
from tasks.retry import BackoffPolicy, RetryTracker
from tests.tasks.handlers import RECORDED_KIND, RecordedObjects, register_handlers
from tests.tasks.support import RecordingSender
from tests.tasks.write_recorder import WriteRecorder

KEY = ObjectKey(RECORDED_KIND, "team-a", "widget")


def no_cluster(kubeconfig: str | None) -> ApiClient:
    raise AssertionError("these handlers must not touch Kubernetes")


class Harness:
    """A reconciler wired to the test's Redis, with publishes recorded instead of sent."""

    def __init__(self, client: redis.Redis, registry: HandlerRegistry) -> None:
        settings = Settings(lock_ttl_seconds=5, lock_defer_seconds=1)
        self.client = client
        self.sender = RecordingSender()
        self.queue = KeyQueue(client, stale_after=60, sender=self.sender)
        self.retries = RetryTracker(client, BackoffPolicy(base=5, cap=60, jitter=0.1), rng=random.Random(3))
        self.reconciler = Reconciler(
            WorkerContext(settings, redis_client=client, api_client_factory=no_cluster),
            registry,
            self.queue,
            self.retries,
        )

    def enqueue(self, key: ObjectKey = KEY) -> str:
        """An event: returns the id of the task it sent."""
        assert self.queue.add(key) == "enqueued"
        return self.sender.task_ids()[-1]

    def scheduled_delay(self, key: ObjectKey = KEY) -> float:
        """Seconds from now until the run of `key` waiting in the delay queue is due."""
        seconds, microseconds = self.client.time()
        return self.queue.scheduled()[key] - (seconds + microseconds / 1e6)

    def fire_due(self) -> None:
        """Time passes: every scheduled run becomes due and the healing loop publishes it."""
        for key in self.queue.scheduled():
            self.client.zadd("polycrate:queue:due", {str(key): 0})
        self.queue.heal(lost_after=3600)

    def run_last_sent(self):
        """Deliver the most recently published task, as a worker would."""
        key, task_id, _ = self.sender.sent[-1]
        return self.reconciler.run(str(key), task_id)


@pytest.fixture
def registry() -> HandlerRegistry:
    registry = HandlerRegistry()
    register_handlers(registry)
    return registry


@pytest.fixture
def harness(redis_client: redis.Redis, registry: HandlerRegistry) -> Harness:
    return Harness(redis_client, registry)


@pytest.fixture
def objects(redis_client: redis.Redis) -> RecordedObjects:
    return RecordedObjects(redis_client)


def test_successful_run_reconciles_the_current_object(harness: Harness, objects: RecordedObjects) -> None:
    objects.put(KEY, version=1)
    harness.enqueue()
    objects.put(KEY, version=2)  # changed again before the task started

    outcome = harness.run_last_sent()

    assert outcome.result == "succeeded"
    assert [run.version for run in objects.runs(KEY)] == ["2"]
    assert harness.queue.pending() == set() and harness.queue.processing() == set()


def test_failing_handler_is_retried_after_5_10_20_40_60_60_seconds(
    harness: Harness, objects: RecordedObjects
) -> None:
    objects.put(KEY, version=1, fail="transient")
    harness.enqueue()

    countdowns = []
    for _ in range(6):
        outcome = harness.run_last_sent()
        assert outcome.result == "retrying"
        countdowns.append(harness.scheduled_delay())
        assert harness.scheduled_delay() == pytest.approx(outcome.countdown, abs=0.5)
        harness.fire_due()

    assert countdowns == pytest.approx([5, 10, 20, 40, 60, 60], rel=0.1)
    assert all(countdown <= 60 for countdown in countdowns)
    assert [countdown for _, _, countdown in harness.sender.sent] == [0] * 7, "nothing waits in a worker"
    assert all(failure["retrying"] for failure in objects.failures(KEY))
    assert len(objects.runs(KEY)) == 6


def test_success_resets_the_backoff(harness: Harness, objects: RecordedObjects) -> None:
    objects.put(KEY, version=1, fail="transient", fail_times=3)
    harness.enqueue()
    results = []
    for _ in range(4):
        results.append(harness.run_last_sent().result)
        harness.fire_due()
    assert results == ["retrying", "retrying", "retrying", "succeeded"]

    objects.put(KEY, version=2, fail="transient", fail_times=-1)
    harness.enqueue()
    harness.run_last_sent()

    assert harness.scheduled_delay() == pytest.approx(5, rel=0.15)


def test_server_retry_after_wins_over_a_shorter_backoff(harness: Harness, objects: RecordedObjects) -> None:
    objects.put(KEY, version=1, fail="transient", retry_after=42)
    harness.enqueue()

    assert harness.run_last_sent().countdown == 42
    assert harness.scheduled_delay() == pytest.approx(42, abs=0.5)


def test_server_retry_after_is_capped(harness: Harness, objects: RecordedObjects) -> None:
    objects.put(KEY, version=1, fail="transient", retry_after=86_400)
    harness.enqueue()

    assert harness.run_last_sent().countdown == 300
    assert harness.scheduled_delay() == pytest.approx(300, abs=0.5)


def test_permanent_error_is_reported_and_not_retried(harness: Harness, objects: RecordedObjects) -> None:
    objects.put(KEY, version=1, fail="permanent")
    harness.enqueue()

    outcome = harness.run_last_sent()

    assert outcome.result == "failed"
    assert len(harness.sender.sent) == 1, "no retry was scheduled"
    assert objects.failures(KEY)[0]["retrying"] is False
    assert "spec.field" in objects.failures(KEY)[0]["message"]
    # The next change of the object runs it again at once.
    objects.put(KEY, version=2, fail="")
    harness.enqueue()
    assert harness.sender.sent[-1][2] == 0
    assert harness.run_last_sent().result == "succeeded"


def test_unexpected_exception_is_retried_like_a_transient_error(
    harness: Harness, objects: RecordedObjects
) -> None:
    objects.put(KEY, version=1, fail="bug")
    harness.enqueue()

    outcome = harness.run_last_sent()

    assert outcome.result == "retrying"
    assert "unexpected RuntimeError" in objects.failures(KEY)[0]["message"]


def test_task_for_a_locked_key_is_deferred_not_failed(
    harness: Harness, objects: RecordedObjects, redis_client: redis.Redis
) -> None:
    objects.put(KEY, version=1)
    harness.enqueue()
    other_worker = KeyLock(redis_client, KEY, ttl=3)
    assert other_worker.acquire()

    outcome = harness.run_last_sent()
    other_worker.release()

    assert outcome.result == "deferred"
    assert 2 <= (outcome.countdown or 0) <= 4, "back about when the holder's lock would expire"
    assert 2 <= harness.scheduled_delay() <= 4, "the deferral waits in Redis, not in the worker"
    assert objects.runs(KEY) == [] and objects.failures(KEY) == []
    assert harness.retries.failures(KEY) == 0
    assert harness.queue.pending() == {KEY}, "the key still waits for its run"
    harness.fire_due()
    assert harness.run_last_sent().result == "succeeded", "the deferred task runs when published again"


def test_stray_task_for_a_locked_key_ends_without_touching_its_ticket(
    harness: Harness, objects: RecordedObjects, redis_client: redis.Redis
) -> None:
    objects.put(KEY, version=1)
    harness.enqueue()
    other_worker = KeyLock(redis_client, KEY, ttl=3)
    assert other_worker.acquire()

    outcome = harness.reconciler.run(str(KEY), "a-stray-copy")
    other_worker.release()

    assert outcome.result == "skipped"
    assert harness.queue.scheduled() == {}
    assert harness.run_last_sent().result == "succeeded"


def test_duplicate_task_does_not_run_the_handler(harness: Harness, objects: RecordedObjects) -> None:
    objects.put(KEY, version=1)
    harness.enqueue()
    key, task_id, _ = harness.sender.sent[-1]
    harness.reconciler.run(str(key), task_id)

    assert harness.reconciler.run(str(key), task_id).result == "skipped"
    assert len(objects.runs(KEY)) == 1


def test_deleted_object_ends_the_key_without_running_the_handler(
    harness: Harness, objects: RecordedObjects
) -> None:
    objects.put(KEY, version=1, fail="transient")
    harness.enqueue()
    harness.run_last_sent()
    objects.delete(KEY)
    harness.fire_due()

    assert harness.run_last_sent().result == "gone"
    assert len(objects.runs(KEY)) == 1
    assert harness.retries.failures(KEY) == 0


def test_event_during_a_run_schedules_exactly_one_more_run(
    redis_client: redis.Redis, objects: RecordedObjects
) -> None:
    class ChangesWhileRunning(KindHandler):
        """Three events arrive while the first run is in progress."""

        kind = "Busy"

        def __init__(self) -> None:
            self.runs = 0

        def fetch(self, ctx: WorkerContext, key: ObjectKey) -> JsonObject | None:
            return {"name": key.name}

        def reconcile(self, ctx: WorkerContext, key: ObjectKey, obj: JsonObject) -> None:
            self.runs += 1
            if self.runs == 1:
                for _ in range(3):
                    harness.queue.add(key)

    handler = ChangesWhileRunning()
    registry = HandlerRegistry()
    registry.register(handler)
    harness = Harness(redis_client, registry)
    busy = ObjectKey("Busy", "team-a", "widget")
    harness.enqueue(busy)

    assert harness.run_last_sent().result == "succeeded"
    assert len(harness.sender.sent) == 2 and harness.sender.sent[-1][2] == 0
    assert harness.run_last_sent().result == "succeeded"
    assert len(harness.sender.sent) == 2, "the follow-up saw no new event and scheduled nothing"
    assert handler.runs == 2


def test_key_of_a_kind_without_handler_fails_once_and_is_not_retried(harness: Harness) -> None:
    harness.enqueue(ObjectKey("Unheard", "team-a", "x"))

    assert harness.run_last_sent().result == "failed"
    assert len(harness.sender.sent) == 1
    assert harness.queue.pending() == set() and harness.queue.processing() == set()


def test_run_whose_lock_was_taken_over_writes_nothing_more_and_its_key_runs_again(
    harness: Harness, objects: RecordedObjects, redis_client: redis.Redis
) -> None:
    with WriteRecorder() as system:
        objects.put(KEY, version=1, write_url=system.url, writes=1, sleep=2.5)
        harness.enqueue()

        def take_the_lock_over_during_the_run() -> None:
            time.sleep(0.5)
            redis_client.set(lock_key("polycrate", KEY), "another-worker", px=10_000)

        threading.Thread(target=take_the_lock_over_during_the_run).start()
        outcome = harness.run_last_sent()

        assert outcome.result == "fenced"
        assert system.writes() == [], "the write after the takeover never left"
        assert objects.failures(KEY) == [], "and no failure status was written either"
        assert harness.queue.pending() == {KEY}, "the key runs again, under a lock that is valid"
