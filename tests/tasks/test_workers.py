"""The queue guarantees with real worker processes on a real Redis: coalescing, exclusion, recovery.

Workers are `polycrate operator worker` processes running the test handler plugin; the test
plays the watcher (KeyQueue.add) and reads what the handlers recorded. Nothing here assumes an
outcome from timing: overlap is checked on recorded intervals, recovery by who finished the run.
The throughput tests share one set of four pool processes (two workers of two) on their own
Redis database; tests that kill or reconfigure workers start their own, and those that kill
one run with the production timings (lock TTL 30 s, visibility timeout 3,600 s): recovery comes
from the workers' self-healing loop, not from a shortened redelivery.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kubernetes
import pytest
import redis
from celery import Celery

from polycrate.keys import ObjectKey
from polycrate.kubeclient.api import KubeClient
from polycrate.kubeclient.objects import ObjectAPI
from polycrate.settings import Settings
from tasks.app import RECONCILE_TASK_NAME, create_app
from tasks.queue import KeyQueue, celery_sender
from tests.fixtures.redis import RedisServer
from tests.fixtures.workers import PRODUCTION_TIMINGS, WorkerPool
from tests.tasks.handlers import RECORDED_KIND, RecordedObjects
from tests.tasks.support import CRDS, example, platform_manifests, without_spec_validation

pytestmark = pytest.mark.slow

WIDGET = ObjectKey(RECORDED_KIND, "team-a", "widget")
SHARED_WORKERS_DATABASE = 1


def wait_until(condition: Callable[[], bool], timeout: float, message: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, message
        time.sleep(0.05)


@pytest.fixture
def queue(redis_client: redis.Redis, celery_app: Celery) -> KeyQueue:
    return KeyQueue(redis_client, sender=celery_sender(celery_app))


@pytest.fixture
def objects(redis_client: redis.Redis) -> RecordedObjects:
    return RecordedObjects(redis_client)


def wait_idle(queue: KeyQueue, timeout: float = 30.0) -> None:
    """Until no key is pending or processing (the watcher would have nothing in flight)."""
    wait_until(lambda: not queue.pending() and not queue.processing(), timeout, "keys still in flight")


@dataclass(frozen=True)
class SharedWorkers:
    """Four running pool processes and the test's handles on their Redis database."""

    queue: KeyQueue
    objects: RecordedObjects
    celery_app: Celery
    redis: redis.Redis


@pytest.fixture(scope="module")
def four_pool_processes(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = redis_server.url(SHARED_WORKERS_DATABASE)
    client = redis_server.client(SHARED_WORKERS_DATABASE)
    client.flushdb()
    client.close()
    pool = WorkerPool(url, Path(tmp_path_factory.mktemp("shared-workers")))
    pool.start(2, concurrency=2)
    yield url
    pool.stop_all()


@pytest.fixture
def shared(four_pool_processes: str) -> Iterator[SharedWorkers]:
    client = redis.Redis.from_url(four_pool_processes)
    app = create_app(Settings(redis_url=four_pool_processes))
    queue = KeyQueue(client, sender=celery_sender(app))
    wait_idle(queue)
    for pattern in ("test:*", "polycrate:*"):
        stale = list(client.scan_iter(match=pattern))
        if stale:
            client.delete(*stale)
    yield SharedWorkers(queue=queue, objects=RecordedObjects(client), celery_app=app, redis=client)
    app.close()
    client.close()


def test_rapid_updates_to_one_key_give_at_most_three_reconciles_and_the_last_sees_the_last_update(
    shared: SharedWorkers,
) -> None:
    queue, objects = shared.queue, shared.objects
    objects.put(WIDGET, version=0, sleep=0.3)

    for version in range(1, 201):
        objects.put(WIDGET, version=version)
        queue.add(WIDGET)
    wait_idle(queue)

    runs = objects.runs(WIDGET)
    assert 1 <= len(runs) <= 3, runs
    assert runs[-1].version == "200"


def test_five_hundred_distinct_keys_give_five_hundred_reconciles(shared: SharedWorkers) -> None:
    queue, objects = shared.queue, shared.objects
    keys = [ObjectKey(RECORDED_KIND, "team-a", f"widget-{n}") for n in range(500)]
    with shared.redis.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.hset(f"test:object:{key}", mapping={"version": "1"})
        pipe.execute()

    assert {queue.add(key) for key in keys} == {"enqueued"}
    wait_until(lambda: len(objects.all_runs()) >= 500, 60, "not every key was reconciled")
    wait_idle(queue)

    assert Counter(objects.all_runs()) == Counter(str(key) for key in keys)


def test_reconciles_of_one_key_never_overlap_across_four_worker_processes(shared: SharedWorkers) -> None:
    queue, objects = shared.queue, shared.objects
    objects.put(WIDGET, version=0, sleep=0.05)

    for version in range(1, 51):
        objects.put(WIDGET, version=version)
        queue.add(WIDGET)
        if version % 5 == 0:
            # Stray copies, as a redelivery or a re-send would produce, race the real tasks.
            shared.celery_app.send_task(RECONCILE_TASK_NAME, args=[str(WIDGET)], task_id=str(uuid.uuid4()))
        time.sleep(0.02)
    wait_idle(queue)
    time.sleep(0.5)  # let stray copies that were deferred come back and find nothing to do

    runs = sorted(objects.runs(WIDGET), key=lambda run: run.start)
    assert len(runs) >= 2
    for earlier, later in zip(runs, runs[1:], strict=False):
        assert later.start >= earlier.end, f"runs overlap: {earlier} and {later}"
    assert runs[-1].version == "50"


def test_pool_process_killed_mid_reconcile_leaves_the_key_to_another_process(
    worker_pool: WorkerPool, queue: KeyQueue, objects: RecordedObjects
) -> None:
    worker_pool.start(2, environment=PRODUCTION_TIMINGS)
    objects.put(WIDGET, version=1, sleep=60)
    queue.add(WIDGET)
    wait_until(lambda: objects.starts(WIDGET), 15, "the reconcile never started")
    victim = objects.starts(WIDGET)[0]["pid"]

    objects.put(WIDGET, version=1, sleep=0)  # the redelivered run need not take as long
    os.kill(victim, signal.SIGKILL)

    # The victim's lock runs out (30 s), then the next round of the healing loop sends the key.
    wait_until(lambda: objects.runs(WIDGET), 30 + 5 + 20, "the key was never reconciled to completion")
    finished = objects.runs(WIDGET)
    assert len(finished) == 1 and finished[0].pid != victim


def test_whole_worker_killed_mid_reconcile_leaves_the_key_to_another_worker(
    worker_pool: WorkerPool, queue: KeyQueue, objects: RecordedObjects
) -> None:
    # Production timings: the dead worker's unacknowledged task would only be redelivered after
    # the hour-long visibility timeout; the healing loop of the surviving worker re-sends it.
    doomed = worker_pool.start(1, environment=PRODUCTION_TIMINGS)[0]
    objects.put(WIDGET, version=1, sleep=60)
    queue.add(WIDGET)
    wait_until(lambda: objects.starts(WIDGET), 15, "the reconcile never started")
    survivor = worker_pool.start(1, environment=PRODUCTION_TIMINGS)[0]
    survivor_processes = {survivor.pid, *survivor.pool_children()}

    objects.put(WIDGET, version=1, sleep=0)
    doomed.kill()
    killed_at = time.monotonic()

    # One lock TTL, plus the healer lease the dead worker may have held, plus one loop period.
    wait_until(lambda: objects.runs(WIDGET), 30 + 15 + 5 + 10, "the key was never reconciled to completion")
    finished = objects.runs(WIDGET)
    assert len(finished) == 1 and finished[0].pid in survivor_processes
    assert time.monotonic() - killed_at < 90
    wait_idle(queue)


def test_transient_failures_are_retried_by_the_workers_until_the_key_succeeds(
    worker_pool: WorkerPool, queue: KeyQueue, objects: RecordedObjects
) -> None:
    worker_pool.start(1, environment={"POLYCRATE_RETRY_BASE": "0.2", "POLYCRATE_RETRY_CAP": "0.4"})
    objects.put(WIDGET, version=1, fail="transient", fail_times=3)

    queue.add(WIDGET)
    # Each retry is published by the healing loop when due (every 5 s), not held by a worker.
    wait_until(lambda: any(run.outcome == "succeeded" for run in objects.runs(WIDGET)), 45, "never succeeded")

    assert [run.outcome for run in objects.runs(WIDGET)] == ["transient"] * 3 + ["succeeded"]
    runs = objects.runs(WIDGET)
    gaps = [later.start - earlier.end for earlier, later in zip(runs, runs[1:], strict=False)]
    assert all(gap >= 0.15 for gap in gaps), f"retries came before their backoff: {gaps}"


def test_permanent_failure_whose_status_write_echoes_back_is_not_retried_in_a_hot_loop(
    worker_pool: WorkerPool, queue: KeyQueue, objects: RecordedObjects
) -> None:
    worker_pool.start(1, environment={"POLYCRATE_RETRY_BASE": "1", "POLYCRATE_RETRY_CAP": "4"})
    objects.put(WIDGET, version=1, fail="permanent", echo=1)

    queue.add(WIDGET)
    time.sleep(3)

    # Each run's own write comes back as an event; the rerun waits 1 s, then 2 s, then 4 s.
    assert 1 <= len(objects.runs(WIDGET)) <= 3
    assert all(not failure["retrying"] for failure in objects.failures(WIDGET))


@pytest.fixture
def cluster_workers(worker_pool: WorkerPool, kubeconfig: str) -> WorkerPool:
    """Worker processes that talk to the test's Kubernetes API."""
    worker_pool.kubeconfig = kubeconfig
    return worker_pool


def test_organization_goes_from_queue_to_worker_to_ready_status(
    cluster_workers: WorkerPool,
    queue: KeyQueue,
    kube_install_crd: Callable[..., dict[str, Any]],
    kube_api_client: kubernetes.client.ApiClient,
    kube_namespace: str,
    keycloak_emulator: Any,
    gitlab_emulator: Any,
    harbor: Any,
    argocd: Any,
) -> None:
    kube_install_crd(CRDS / "organizations.polycrate.io.yaml")
    kube_install_crd(CRDS / "softwaredeliveryplatforms.polycrate.io.yaml")
    objects = ObjectAPI(KubeClient(kube_api_client))
    for manifest in platform_manifests(
        kube_namespace,
        "production",
        keycloak=keycloak_emulator,
        gitlab=gitlab_emulator,
        harbor=harbor,
        argocd=argocd,
    ):
        objects.create(manifest["kind"], manifest)
    organization = example("organization-acme-corp.yaml", kube_namespace)
    custom = kubernetes.client.CustomObjectsApi(kube_api_client)
    custom.create_namespaced_custom_object(
        "polycrate.io", "v1alpha1", kube_namespace, "organizations", organization
    )
    cluster_workers.start(1)

    queue.add(ObjectKey("Organization", kube_namespace, "acme-corp"))

    def status() -> dict[str, Any]:
        obj = custom.get_namespaced_custom_object(
            "polycrate.io", "v1alpha1", kube_namespace, "organizations", "acme-corp"
        )
        return {**obj.get("status", {}), "generation": obj["metadata"]["generation"]}

    wait_until(lambda: status().get("phase") == "Ready", 30, "the Organization never became Ready")
    assert status()["observedGeneration"] == status()["generation"]
    assert status()["harborProjectID"], "the worker provisioned the Organization in the emulated Harbor"


def test_invalid_spec_ends_in_error_with_an_event_and_is_not_reconciled_in_a_hot_loop(
    cluster_workers: WorkerPool,
    queue: KeyQueue,
    kube_install_crd: Callable[..., dict[str, Any]],
    kube_api_client: kubernetes.client.ApiClient,
    kube_namespace: str,
) -> None:
    kube_install_crd(without_spec_validation(CRDS / "harborprojects.polycrate.io.yaml"))
    project = example("harborproject-shared-images.yaml", kube_namespace)
    project["spec"]["storageQuota"] = "50Gx"
    custom = kubernetes.client.CustomObjectsApi(kube_api_client)
    custom.create_namespaced_custom_object(
        "polycrate.io", "v1alpha1", kube_namespace, "harborprojects", project
    )
    key = ObjectKey("HarborProject", kube_namespace, "shared-images")
    cluster_workers.start(1)

    def current() -> dict[str, Any]:
        return custom.get_namespaced_custom_object(
            "polycrate.io", "v1alpha1", kube_namespace, "harborprojects", "shared-images"
        )

    # A watcher that does not filter status-only changes: every write to the object is an event.
    stop_echo = threading.Event()

    def echo_every_write() -> None:
        seen = None
        while not stop_echo.wait(0.05):
            version = current()["metadata"]["resourceVersion"]
            if version != seen:
                seen = version
                queue.add(key)

    echo = threading.Thread(target=echo_every_write, daemon=True)
    echo.start()
    try:
        wait_until(lambda: current().get("status", {}).get("phase") == "Error", 20, "never reached Error")
        time.sleep(3)
    finally:
        stop_echo.set()
        echo.join()

    ready = next(c for c in current()["status"]["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "InvalidSpec" and "storageQuota" in ready["message"]
    [event] = (
        kubernetes.client.CoreV1Api(kube_api_client)
        .list_namespaced_event(kube_namespace, field_selector="involvedObject.name=shared-images")
        .items
    )
    assert event.type == "Warning" and event.reason == "InvalidSpec"
    # Every failed reconcile bumps this Event: a handful, not one per 50 ms.
    assert 1 <= event.count <= 2


class TaskEvents:
    """The Celery events Flower would see, captured from the broker in a background thread."""

    def __init__(self, celery_app: Celery) -> None:
        self.events: list[dict[str, Any]] = []
        self._connection = celery_app.connection()
        self._receiver = celery_app.events.Receiver(self._connection, handlers={"*": self.events.append})
        self._ready = threading.Event()
        subscribed = self._receiver.on_consume_ready

        def on_consume_ready(*args: Any, **kwargs: Any) -> None:
            subscribed(*args, **kwargs)
            self._ready.set()  # events sent from now on reach us

        self._receiver.on_consume_ready = on_consume_ready
        self._thread = threading.Thread(target=self._capture, daemon=True)
        self._thread.start()
        assert self._ready.wait(10), "event receiver did not start"

    def _capture(self) -> None:
        self._receiver.capture(limit=None, timeout=None, wakeup=False)

    def of_task(self, task_id: str) -> list[dict[str, Any]]:
        return [event for event in list(self.events) if event.get("uuid") == task_id]

    def close(self) -> None:
        self._receiver.should_stop = True
        self._thread.join(5)
        self._connection.release()


@pytest.fixture
def task_events(celery_app: Celery) -> Iterator[TaskEvents]:
    events = TaskEvents(celery_app)
    yield events
    events.close()


def test_a_failed_run_ends_its_celery_task_in_failure_with_key_and_reason_and_the_retry_still_runs(
    worker_pool: WorkerPool,
    queue: KeyQueue,
    objects: RecordedObjects,
    task_events: TaskEvents,
    redis_client: redis.Redis,
) -> None:
    # Production backoff: the retry follows 5 s (±10 %) after the failed run.
    worker = worker_pool.start(1, extra_args=("--log-format", "json"))[0]
    broken = ObjectKey(RECORDED_KIND, "team-a", "broken")
    objects.put(WIDGET, version=1, fail="transient", fail_times=1)
    objects.put(broken, version=1, fail="permanent")

    queue.add(WIDGET)
    queue.add(broken)
    wait_until(lambda: any(run.outcome == "succeeded" for run in objects.runs(WIDGET)), 20, "no retry")
    wait_idle(queue)

    def finished(state: str) -> list[dict[str, Any]]:
        return [e for e in task_events.events if e["type"] == f"task-{state}"]

    wait_until(lambda: len(finished("failed")) == 2 and finished("succeeded"), 10, "events missing")
    received = {e["uuid"]: e for e in task_events.events if e["type"] == "task-received"}
    failures = {received[e["uuid"]]["args"]: e["exception"] for e in finished("failed")}
    assert {e["name"] for e in received.values()} == {"reconcile"}
    assert set(failures) == {str(WIDGET), str(broken)}
    assert "system unavailable (retrying in" in failures[str(WIDGET)]
    assert "spec.field is invalid (use a valid value) (not retried)" in failures[str(broken)]
    assert [received[e["uuid"]]["args"] for e in finished("succeeded")] == [str(WIDGET)]
    # Failed tasks are acknowledged like any finished one: nothing waits for redelivery, and
    # Celery retried nothing on its own (one run per task: the failed one and our queue's retry).
    assert redis_client.hlen("unacked") == 0
    assert [run.outcome for run in objects.runs(WIDGET)] == ["transient", "succeeded"]
    assert [run.outcome for run in objects.runs(broken)] == ["permanent"]
    lines = [json.loads(line) for line in worker.log().splitlines() if line.startswith("{")]
    assert any(line.get("key") == str(broken) and "raised" in line["message"] for line in lines), lines
