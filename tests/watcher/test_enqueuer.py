"""KeyEnqueuer: which informer callbacks become keys, and that a Redis outage loses none."""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from polycrate.keys import ObjectKey
from tasks.queue import KeyQueue
from watcher.enqueuer import KeyEnqueuer
from watcher.filters import DiscoveryFilters
from watcher.known_keys import KnownKeys
from watcher.metrics import WatcherMetrics
from watcher.sources import DISCOVERY_SOURCES, polycrate_sources

SOURCES = {source.key_kind: source for source in DISCOVERY_SOURCES + polycrate_sources()}
ORGANIZATION = SOURCES["Organization"]
INGRESS = SOURCES["Ingress"]
POD = SOURCES["Pod"]
OPERATOR_CONFIG = SOURCES["OperatorConfig"]


class RecordingSink:
    """A KeySink that remembers each add, answering like KeyQueue would for a fresh key."""

    def __init__(self) -> None:
        self.added: list[tuple[ObjectKey, str]] = []

    def add(self, key: ObjectKey, *, reason: str = "event") -> str:
        self.added.append((key, reason))
        return "enqueued"

    def keys(self) -> list[str]:
        return [str(key) for key, _ in self.added]


def obj(
    name: str, *, namespace: str = "polycrate", rv: str = "1", generation: int = 1, **metadata: Any
) -> dict:
    return {
        "metadata": {
            "name": name,
            "namespace": namespace,
            "resourceVersion": rv,
            "generation": generation,
            **metadata,
        },
        "spec": {},
    }


@pytest.fixture
def sink() -> RecordingSink:
    return RecordingSink()


@pytest.fixture
def filters() -> DiscoveryFilters:
    filters = DiscoveryFilters()
    filters.update(
        {"spec": {"endpoint_discovery": {"ignore_namespaces": ["kube-system"]}, "artifact_discovery": {}}}
    )
    return filters


@pytest.fixture
def enqueuer(sink: RecordingSink, filters: DiscoveryFilters) -> KeyEnqueuer:
    return KeyEnqueuer(sink, KnownKeys(), filters, WatcherMetrics(), stop=threading.Event())


def test_listed_objects_are_enqueued_and_an_unchanged_relist_enqueues_nothing(
    enqueuer: KeyEnqueuer, sink: RecordingSink
) -> None:
    for round_ in range(2):
        seen = [enqueuer.listed(ORGANIZATION, obj(name)) for name in ("acme-corp", "globex")]
        enqueuer.list_complete(ORGANIZATION, seen)
        if round_ == 0:
            assert sink.keys() == ["Organization/polycrate/acme-corp", "Organization/polycrate/globex"]

    assert len(sink.added) == 2


def test_a_status_write_does_not_echo_back_as_work(enqueuer: KeyEnqueuer, sink: RecordingSink) -> None:
    enqueuer.event(ORGANIZATION, "ADDED", obj("acme-corp", rv="1", generation=1))
    status_written = obj("acme-corp", rv="2", generation=1)
    status_written["status"] = {"phase": "Ready", "observedGeneration": 1}

    enqueuer.event(ORGANIZATION, "MODIFIED", status_written)

    assert len(sink.added) == 1


def test_the_operators_own_finalizer_does_not_echo_back_as_work(
    enqueuer: KeyEnqueuer, sink: RecordingSink
) -> None:
    enqueuer.event(ORGANIZATION, "ADDED", obj("acme-corp", rv="1"))

    enqueuer.event(ORGANIZATION, "MODIFIED", obj("acme-corp", rv="2", finalizers=["polycrate.io/finalizer"]))

    assert len(sink.added) == 1


def test_the_operators_state_annotation_does_not_echo_back_as_work(
    enqueuer: KeyEnqueuer, sink: RecordingSink
) -> None:
    enqueuer.event(ORGANIZATION, "ADDED", obj("acme-corp", rv="1", annotations={"team": "a"}))
    state = {"team": "a", "polycrate.io/operator-state": '{"harbor":"creating"}'}

    enqueuer.event(ORGANIZATION, "MODIFIED", obj("acme-corp", rv="2", annotations=state))
    enqueuer.event(ORGANIZATION, "MODIFIED", obj("acme-corp", rv="3", annotations={"team": "a"}))

    assert len(sink.added) == 1


@pytest.mark.parametrize(
    "change",
    [
        {"generation": 2},
        {"deletionTimestamp": "2026-01-06T14:30:00Z"},
        {"labels": {"team": "a"}},
        {"annotations": {"polycrate.io/reconcile": "now"}},
        {"annotations": {"polycrate.io/adopt": "true"}},
    ],
    ids=lambda change: str(next(iter(change.items()))),
)
def test_desired_state_changes_of_a_polycrate_kind_are_enqueued(
    enqueuer: KeyEnqueuer, sink: RecordingSink, change: dict[str, Any]
) -> None:
    enqueuer.event(ORGANIZATION, "ADDED", obj("acme-corp"))
    changed = obj("acme-corp", rv="2", finalizers=["polycrate.io/finalizer"])
    changed["metadata"].update(change)

    enqueuer.event(ORGANIZATION, "MODIFIED", changed)

    assert [reason for _, reason in sink.added] == ["event", "event"]


def test_a_change_of_a_discovery_sources_status_is_enqueued(
    enqueuer: KeyEnqueuer, sink: RecordingSink
) -> None:
    pending = obj("web-1", namespace="shop", rv="10", labels={"app": "web"})
    running = obj("web-1", namespace="shop", rv="11", labels={"app": "web"})
    running["status"] = {"phase": "Running"}

    enqueuer.event(POD, "ADDED", pending)
    enqueuer.event(POD, "MODIFIED", running)

    assert sink.keys() == ["Pod/shop/web-1", "Pod/shop/web-1"]


def test_the_operators_finalizer_and_annotations_on_a_discovery_source_do_not_echo_back(
    sink: RecordingSink,
) -> None:
    filters = DiscoveryFilters()
    filters.update({"spec": {"node_discovery": {}}})
    enqueuer = KeyEnqueuer(sink, KnownKeys(), filters, WatcherMetrics(), stop=threading.Event())
    node = {"metadata": {"name": "worker-1", "resourceVersion": "5"}, "status": {"addresses": []}}
    synced = {
        "metadata": {
            "name": "worker-1",
            "resourceVersion": "7",
            "finalizers": ["hosts.polycrate.io/cleanup"],
            "annotations": {"hosts.polycrate.io/api-id": "h-1", "hosts.polycrate.io/synced-at": "now"},
        },
        "status": {"addresses": []},
    }

    enqueuer.event(SOURCES["Node"], "ADDED", node)
    enqueuer.event(SOURCES["Node"], "MODIFIED", synced)

    assert sink.keys() == ["Node//worker-1"]


def test_any_new_version_of_an_object_watched_as_metadata_only_is_enqueued(
    sink: RecordingSink,
) -> None:
    """A meta Secret's data is not in the watch, so a new resourceVersion may be new data."""
    filters = DiscoveryFilters()
    filters.update({"spec": {"app_discovery": {}}})
    enqueuer = KeyEnqueuer(sink, KnownKeys(), filters, WatcherMetrics(), stop=threading.Event())
    labels = {"polycrate.io/type": "meta"}

    enqueuer.event(SOURCES["Secret"], "ADDED", obj("shop.poly", namespace="shop", rv="1", labels=labels))
    enqueuer.event(SOURCES["Secret"], "MODIFIED", obj("shop.poly", namespace="shop", rv="2", labels=labels))

    assert sink.keys() == ["Secret/shop/shop.poly", "Secret/shop/shop.poly"]


def test_a_deleted_object_is_enqueued_and_forgotten(enqueuer: KeyEnqueuer, sink: RecordingSink) -> None:
    enqueuer.event(ORGANIZATION, "ADDED", obj("acme-corp"))
    enqueuer.event(ORGANIZATION, "DELETED", obj("acme-corp", rv="5"))

    assert sink.added[-1] == (ObjectKey("Organization", "polycrate", "acme-corp"), "deleted")
    assert enqueuer.resync(ObjectKey("Organization", "polycrate", "acme-corp")) is False


def test_a_relist_enqueues_keys_deleted_while_the_watch_was_down(
    enqueuer: KeyEnqueuer, sink: RecordingSink
) -> None:
    first = [enqueuer.listed(ORGANIZATION, obj(name)) for name in ("acme-corp", "globex")]
    enqueuer.list_complete(ORGANIZATION, first)

    second = [enqueuer.listed(ORGANIZATION, obj("acme-corp"))]
    enqueuer.list_complete(ORGANIZATION, second)

    assert sink.added[-1] == (ObjectKey("Organization", "polycrate", "globex"), "vanished")
    assert len(sink.added) == 3


def test_objects_outside_the_namespace_filter_are_not_enqueued(
    enqueuer: KeyEnqueuer, sink: RecordingSink
) -> None:
    enqueuer.event(INGRESS, "ADDED", obj("dns", namespace="kube-system"))
    enqueuer.event(INGRESS, "ADDED", obj("webapp", namespace="production"))

    assert sink.keys() == ["Ingress/production/webapp"]


def test_an_object_leaving_scope_is_enqueued_once_more_then_ignored(
    enqueuer: KeyEnqueuer, sink: RecordingSink, filters: DiscoveryFilters
) -> None:
    enqueuer.event(INGRESS, "ADDED", obj("webapp", namespace="production"))
    filters.update({"spec": {"endpoint_discovery": {"ignore_namespaces": ["production"]}}})

    enqueuer.event(INGRESS, "MODIFIED", obj("webapp", namespace="production", rv="2"))
    enqueuer.event(INGRESS, "MODIFIED", obj("webapp", namespace="production", rv="3"))

    assert [reason for _, reason in sink.added] == ["event", "out-of-scope"]


def test_operator_config_events_reach_the_callback(sink: RecordingSink, filters: DiscoveryFilters) -> None:
    seen: list[dict | None] = []
    enqueuer = KeyEnqueuer(
        sink, KnownKeys(), filters, WatcherMetrics(), stop=threading.Event(), on_operator_config=seen.append
    )
    config = obj("default", spec={"node_discovery": {}})
    enqueuer.event(OPERATOR_CONFIG, "ADDED", config)
    enqueuer.event(OPERATOR_CONFIG, "ADDED", obj("not-the-singleton"))
    enqueuer.event(OPERATOR_CONFIG, "DELETED", config)

    assert seen == [config, None]


def test_only_the_leader_enqueues(sink: RecordingSink, filters: DiscoveryFilters) -> None:
    leading = threading.Event()
    enqueuer = KeyEnqueuer(
        sink, KnownKeys(), filters, WatcherMetrics(), stop=threading.Event(), is_leader=leading.is_set
    )

    enqueuer.event(ORGANIZATION, "ADDED", obj("acme-corp"))
    leading.set()
    enqueuer.event(ORGANIZATION, "ADDED", obj("globex"))

    assert sink.keys() == ["Organization/polycrate/globex"]


def test_resync_re_enqueues_known_keys(enqueuer: KeyEnqueuer, sink: RecordingSink) -> None:
    enqueuer.event(ORGANIZATION, "ADDED", obj("acme-corp"))

    assert enqueuer.resync(ObjectKey("Organization", "polycrate", "acme-corp"))
    assert sink.added[-1][1] == "resync"


# -- a real Redis outage -----------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class PrivateRedis:
    """A redis-server of this test alone, so it can be stopped and started on the same port."""

    def __init__(self, workdir: Path):
        self.port = _free_port()
        self._workdir = workdir
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port), "--save", "", "--appendonly", "no",
             "--dir", str(self._workdir)],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        client = redis.Redis(port=self.port)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
        client.close()

    def stop(self) -> None:
        assert self.process is not None
        self.process.terminate()
        self.process.wait(5)


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path)
    server.start()
    yield server
    if server.process is not None and server.process.poll() is None:
        server.stop()


def test_a_redis_outage_delays_keys_but_loses_none(
    private_redis: PrivateRedis, filters: DiscoveryFilters
) -> None:
    sent: list[ObjectKey] = []
    # No client-side retries: the enqueuer's own backoff is what is under test.
    client = redis.Redis(port=private_redis.port, socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 0))
    queue = KeyQueue(client, sender=lambda key, task_id, countdown: sent.append(key))
    metrics = WatcherMetrics()
    enqueuer = KeyEnqueuer(
        queue, KnownKeys(), filters, metrics, stop=threading.Event(), retry_initial=0.05, retry_max=0.2
    )
    private_redis.stop()

    during_outage = threading.Thread(target=enqueuer.event, args=(ORGANIZATION, "ADDED", obj("acme-corp")))
    during_outage.start()
    deadline = time.monotonic() + 10
    while enqueuer.broker_reachable and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not enqueuer.broker_reachable
    assert during_outage.is_alive(), "the event must wait for Redis, not be dropped"

    private_redis.start()
    during_outage.join(10)

    assert sent == [ObjectKey("Organization", "polycrate", "acme-corp")]
    assert enqueuer.broker_reachable
    assert metrics.enqueue_failures._value.get() >= 1
    client.close()


def test_a_relist_of_one_namespace_leaves_the_keys_of_other_namespaces_alone(
    enqueuer: KeyEnqueuer, sink: RecordingSink
) -> None:
    team_a, team_b = (replace(ORGANIZATION, namespace=ns) for ns in ("team-a", "team-b"))
    enqueuer.list_complete(team_a, [enqueuer.listed(team_a, obj("acme-corp", namespace="team-a"))])
    enqueuer.list_complete(team_b, [enqueuer.listed(team_b, obj("globex", namespace="team-b"))])

    enqueuer.list_complete(team_a, [enqueuer.listed(team_a, obj("acme-corp", namespace="team-a"))])

    assert [reason for _, reason in sink.added] == ["list", "list"], "globex did not vanish"
