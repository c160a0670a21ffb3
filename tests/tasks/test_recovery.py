"""The runtime heals itself within seconds, with the production timings (lock TTL 30 s, visibility
timeout 3,600 s, resync 600 s): a worker SIGKILLed mid-wave, a retry whose worker died, a
redis-server restarted empty. Nothing here waits for a resync or a redelivery after an hour;
the budget of each scenario is one lock TTL plus the healing loop, well inside 90 s.

Each scenario is a whole installation (tests.fixtures.operator_world): Organizations applied
with kubectl, checked through the API for Ready at their generation, faults injected from the
outside. After each, the queue's hashes are asserted empty once the system is idle: no key is
left behind in `pending` or `processing`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from celery import Celery

from polycrate.keys import ObjectKey
from tasks.queue import KeyQueue, celery_sender
from tests.fixtures.operator_world import NAMESPACE, OperatorWorld, organization
from tests.fixtures.redis import RedisServer
from tests.fixtures.workers import PRODUCTION_TIMINGS, WorkerPool
from tests.tasks.handlers import RECORDED_KIND, RecordedObjects
from tests.tasks.write_recorder import WriteRecorder
from tests.watcher.stalling_proxy import StallingProxy

pytestmark = pytest.mark.slow

WIDGET = ObjectKey(RECORDED_KIND, "team-a", "widget")
RECOVERY_BUDGET = 90.0
IDLE_BUDGET = 120.0


@pytest.fixture
def world(tmp_path: Path) -> Iterator[OperatorWorld]:
    world = OperatorWorld(tmp_path)
    try:
        yield world
    finally:
        world.close()


def wait_until(condition, timeout: float, message: str, interval: float = 0.1) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, message
        time.sleep(interval)


def assert_nothing_left_in_flight(world: OperatorWorld) -> None:
    wait_until(
        lambda: world.in_flight() == {"pending": 0, "processing": 0},
        IDLE_BUDGET,
        f"keys left in flight on an idle system: {world.in_flight()}",
        interval=1.0,
    )


def test_worker_killed_during_a_wave_of_200_organizations_all_reach_their_generation_within_90s(
    world: OperatorWorld,
) -> None:
    world.start_workers(2, concurrency=4)
    world.start_watcher()
    world.kubectl_apply([organization(f"org-{index:03d}") for index in range(200)])
    wait_until(lambda: world.in_flight()["processing"] > 0, 60, "the wave never started")
    time.sleep(0.5)

    world.kill("worker1")
    killed_at = time.monotonic()

    world.wait_all_at_generation(timeout=RECOVERY_BUDGET)
    assert time.monotonic() - killed_at < RECOVERY_BUDGET
    assert world.running("worker2") and world.running("watcher")
    assert_nothing_left_in_flight(world)


def test_retry_held_by_a_killed_worker_runs_within_90s_of_its_due_time(world: OperatorWorld) -> None:
    world.start_workers(1, concurrency=2)
    world.start_watcher()
    world.wait_platform_ready()
    world.wait_idle()  # so the injected 429 goes to the Organization, not to a late platform check
    # Harbor answers the next request with 429 and Retry-After: 60, set over the fault endpoint.
    faults = requests.post(
        f"{world.systems.url('harbor')}/_emulator/faults",
        json={"rate_limit": {"count": 1, "retry_after": 60}},
        timeout=5,
    )
    assert faults.status_code == 200
    world.kubectl_apply([organization("acme-corp")])
    key = f"Organization/{NAMESPACE}/acme-corp"

    with world.client() as client:
        wait_until(lambda: client.zscore("polycrate:queue:due", key) is not None and
                   client.hget("polycrate:queue:pending", key, ).startswith(b"@"), 60,
                   "the retry was never scheduled")  # fmt: skip
        due = client.zscore("polycrate:queue:due", key)
        seconds, _ = client.time()
        assert due - seconds > 50, "the retry waits for the server's Retry-After"

        world.kill("worker1")  # the worker that ran the key and would have held its countdown
        world.start_workers(1, concurrency=2, first=2)

        world.wait_all_at_generation(timeout=due - seconds + RECOVERY_BUDGET)
        seconds, _ = client.time()
    assert seconds <= due + RECOVERY_BUDGET
    assert_nothing_left_in_flight(world)


def test_redis_restarted_empty_during_a_wave_every_key_is_reconciled_within_90s_without_restarts(
    world: OperatorWorld,
) -> None:
    workers = world.start_workers(2, concurrency=2)
    world.start_watcher()
    world.kubectl_apply([organization(f"org-{index:03d}") for index in range(60)])
    wait_until(lambda: world.ready_count() >= 5, 60, "the wave never got going")

    world.restart_redis_empty(down_for=1.0)
    restarted_at = time.monotonic()

    world.wait_all_at_generation(timeout=RECOVERY_BUDGET)
    assert time.monotonic() - restarted_at < RECOVERY_BUDGET
    assert all(world.running(name) for name in [*workers, "watcher"]), "no process was restarted from outside"
    assert "Redis came back empty" in world.log("watcher")
    assert_nothing_left_in_flight(world)


def test_worker_cut_off_from_redis_longer_than_the_lock_ttl_stops_writing_before_another_takes_the_key(
    worker_pool: WorkerPool, redis_server: RedisServer, redis_url: str, celery_app: Celery
) -> None:
    proxy = StallingProxy(redis_server.port).start()
    client = redis_server.client()
    queue = KeyQueue(client, sender=celery_sender(celery_app))
    objects = RecordedObjects(client)
    with WriteRecorder() as system:
        try:
            # Version 1 takes a while: sixty external writes a second apart.
            objects.put(WIDGET, version=1, write_url=system.url, writes=60, sleep=1)
            partitioned = worker_pool.start(
                1, environment={**PRODUCTION_TIMINGS, "REDIS_URL": proxy.redis_url()}
            )[0]
            queue.add(WIDGET)
            wait_until(lambda: len(system.state_writes()) >= 2, 60, "the first run never wrote")
            worker_pool.start(1, environment=PRODUCTION_TIMINGS)
            objects.put(WIDGET, version=2, write_url=system.url, writes=3, sleep=0.2)
            queue.add(WIDGET)  # the newer version waits for the running one

            proxy.stall()  # the first worker's link to Redis goes silent, for longer than the lock TTL
            stalled_at = time.monotonic()
            wait_until(lambda: any(w.body["version"] == "2" for w in system.status_writes()), RECOVERY_BUDGET,
                       "the newer version was never reconciled")  # fmt: skip
            # The lock expires one TTL after its last renewal (at most a third of a TTL before the stall).
            assert time.monotonic() - stalled_at > 30 * 2 / 3, (
                "the second worker waited for the lock to expire"
            )
            time.sleep(5)
            proxy.resume()
            wait_until(lambda: queue.pending() == set() and queue.processing() == set(), IDLE_BUDGET,
                       "keys left in flight", interval=1.0)  # fmt: skip
        finally:
            proxy.stop()
            client.close()

        runs: dict[str, list[float]] = {}
        for write in system.writes():
            runs.setdefault(write.body["run"], []).append(write.at)
        spans = sorted((min(times), max(times)) for times in runs.values())
        for (_, earlier_end), (later_start, _) in zip(spans, spans[1:], strict=False):
            assert later_start > earlier_end, f"two runs wrote at the same time: {spans}"
        assert system.state_writes()[-1].body["version"] == "2", "the external state is the latest version"
        assert system.status_writes()[-1].body["version"] == "2", "and so is the status"
        partitioned_processes = {partitioned.pid, *partitioned.pool_children()}
        first_run = [w for w in system.writes() if w.body["pid"] in partitioned_processes]
        assert len(first_run) < 60, "the partitioned run stopped before it finished writing"
        assert any(
            w.body["version"] == "2" and w.body["pid"] not in partitioned_processes for w in system.writes()
        )
