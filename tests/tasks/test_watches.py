"""Declared watches: the reconciler wakes what a watch maps a run of its source kind to.

Two toy kinds live in Redis only: a `Source` run (that may note facts and fail) and the
`Waiter` keys a watch maps it to. The reconciler is driven directly with publishes recorded, so
each test reads which keys a run woke from the sender.
"""

from __future__ import annotations

import random
from collections.abc import Iterable

import pytest
import redis
from kubernetes.client import ApiClient

from polycrate.errors import TransientError
from polycrate.keys import ObjectKey
from polycrate.kubeclient.api import JsonObject
from polycrate.settings import Settings
from tasks.context import WorkerContext
from tasks.dispatch import HandlerRegistry, KindHandler
from tasks.queue import KeyQueue
from tasks.reconcile import Outcome, Reconciler
from tasks.retry import BackoffPolicy, RetryTracker
from tasks.watches import SourceRun, Watch, note
from tests.tasks.support import RecordingSender
from workers.plan import plan_mode

SOURCE = ObjectKey("Source", "team-a", "origin")
WAITERS = [ObjectKey("Waiter", "team-a", "first"), ObjectKey("Waiter", "team-a", "second")]


class SourceHandler(KindHandler):
    """Its object is the Redis hash `test:source`: `fail` = transient makes the run fail after
    noting `touched`; `gone` = 1 makes the object gone."""

    kind = "Source"

    def fetch(self, ctx: WorkerContext, key: ObjectKey) -> JsonObject | None:
        fields = {k.decode(): v.decode() for k, v in ctx.redis.hgetall("test:source").items()}
        return None if fields.get("gone") else fields

    def reconcile(self, ctx: WorkerContext, key: ObjectKey, obj: JsonObject) -> None:
        note("touched", obj.get("touched", ""))
        if obj.get("fail"):
            raise TransientError(f"{key.describe()}: failed halfway")


class WaiterHandler(KindHandler):
    kind = "Waiter"

    def fetch(self, ctx: WorkerContext, key: ObjectKey) -> JsonObject | None:
        return {}

    def reconcile(self, ctx: WorkerContext, key: ObjectKey, obj: JsonObject) -> None:
        return None


def waiters_touched(ctx: WorkerContext, run: SourceRun) -> Iterable[ObjectKey]:
    """The waiters named in what the run noted, failed or not."""
    names = str(run.notes.get("touched") or "").split()
    return [ObjectKey("Waiter", run.key.namespace, name) for name in names]


def no_cluster(kubeconfig: str | None) -> ApiClient:
    raise AssertionError("these handlers must not touch Kubernetes")


class Harness:
    def __init__(self, client: redis.Redis, *watches: Watch) -> None:
        self.client = client
        self.sender = RecordingSender()
        self.queue = KeyQueue(client, stale_after=60, sender=self.sender)
        registry = HandlerRegistry()
        registry.register(SourceHandler())
        registry.register(WaiterHandler())
        for watch in watches:
            registry.watch(watch)
        self.context = WorkerContext(Settings(), redis_client=client, api_client_factory=no_cluster)
        self.reconciler = Reconciler(
            self.context, registry, self.queue, RetryTracker(client, BackoffPolicy(), rng=random.Random(1))
        )

    def source(self, **fields: str) -> None:
        self.client.delete("test:source")
        self.client.hset("test:source", mapping={"v": "1", **fields})

    def run_source(self) -> tuple[Outcome, set[ObjectKey]]:
        """An event for the source and its run; returns the outcome and the keys the run woke."""
        assert self.queue.add(SOURCE) == "enqueued"
        _, task_id, _ = self.sender.sent[-1]
        sent = len(self.sender.sent)
        outcome = self.reconciler.run(str(SOURCE), task_id)
        return outcome, {key for key, _, _ in self.sender.sent[sent:]} - {SOURCE}


@pytest.fixture
def harness(redis_client: redis.Redis) -> Harness:
    return Harness(redis_client, Watch("Source", waiters_touched, "the waiters it touched"))


def test_a_run_of_the_source_wakes_exactly_the_keys_its_watch_maps_it_to(harness: Harness) -> None:
    harness.source(touched="first second")

    outcome, woken = harness.run_source()

    assert outcome.result == "succeeded"
    assert woken == set(WAITERS)
    assert harness.queue.pending() == set(WAITERS)


def test_a_run_that_failed_halfway_still_wakes_what_it_noted_before_failing(harness: Harness) -> None:
    harness.source(touched="first", fail="transient")

    outcome, woken = harness.run_source()

    assert outcome.result == "retrying"
    assert woken == {WAITERS[0]}


def test_a_gone_source_wakes_nobody(harness: Harness) -> None:
    harness.source(touched="first", gone="1")

    outcome, woken = harness.run_source()

    assert outcome.result == "gone" and woken == set()


def test_a_mapping_that_cannot_read_what_it_needs_never_fails_the_source(redis_client: redis.Redis) -> None:
    def unreadable(ctx: WorkerContext, run: SourceRun) -> list[ObjectKey]:
        raise TransientError("the API is away")

    harness = Harness(
        redis_client,
        Watch("Source", unreadable, "nobody, it cannot tell"),
        Watch("Source", waiters_touched, "the waiters it touched"),
    )
    harness.source(touched="second")

    outcome, woken = harness.run_source()

    assert outcome.result == "succeeded"
    assert woken == {WAITERS[1]}, "the other watches still wake theirs"


class RefusingQueue(KeyQueue):
    """Redis does not take the add (as when the link drops between the run and its wakes)."""

    def add(self, key: ObjectKey, *, reason: str = "event") -> str:  # type: ignore[override]
        raise redis.ConnectionError("Connection reset by peer")


def test_a_wake_redis_did_not_take_retries_the_source_instead_of_losing_the_wake(harness: Harness) -> None:
    harness.context.use_queue(RefusingQueue(harness.client))
    harness.source(touched="first")

    outcome, _ = harness.run_source()

    assert outcome.result == "retrying"
    assert "could not enqueue Waiter team-a/first" in outcome.message
    assert SOURCE in harness.queue.scheduled(), "the source runs again and wakes its waiters then"


def test_a_wake_the_broker_refused_is_kept_for_the_healer_and_the_run_succeeds(harness: Harness) -> None:
    def broker_down(key: ObjectKey, task_id: str, countdown: float) -> None:
        raise ConnectionRefusedError("broker down")

    harness.context.use_queue(KeyQueue(harness.client, stale_after=60, sender=broker_down))
    harness.source(touched="first")

    outcome, _ = harness.run_source()

    assert outcome.result == "succeeded"
    assert WAITERS[0] in harness.queue.scheduled(), "its ticket waits in Redis, due now"
    assert [key for key, _, _ in harness.queue.heal(lost_after=3600)] == [WAITERS[0]]


def test_enqueue_in_plan_mode_wakes_nobody(harness: Harness) -> None:
    with plan_mode():
        harness.context.enqueue(WAITERS, reason="planned")

    assert harness.queue.pending() == set()


def test_a_watch_on_a_kind_without_handler_is_refused_at_registration() -> None:
    registry = HandlerRegistry()
    with pytest.raises(ValueError, match="no handler is registered for its source 'Nothing'"):
        registry.watch(Watch("Nothing", waiters_touched, "nobody"))
