"""Informer against the Kubernetes emulator: every object's key arrives, whatever the API does.

The informer runs with a KeyEnqueuer and a recording sink, so each test sees exactly which keys
reached the queue and why. Outages come from the emulator itself (restart: every connection
dropped, the port refusing for a moment; expire_history: 410 for old resourceVersions) and from
a TCP proxy between informer and emulator that can go silent or cut only the informer's path.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from kubernetes.client import ApiClient, Configuration

from emulators.kubernetes import KubeEmulator
from polycrate.keys import ObjectKey
from polycrate.kubeclient.api import KubeClient
from polycrate.kubeclient.config import load_api_client
from sandbox.service_account import operator_kubeconfig
from tests.fixtures.kube import VELERO_BACKUP_CRD
from tests.watcher.kube_objects import (
    create_config_map,
    delete_config_map,
    ensure_namespace,
    update_config_map,
    wait_until,
)
from tests.watcher.stalling_proxy import StallingProxy
from watcher.enqueuer import KeyEnqueuer
from watcher.filters import DiscoveryFilters
from watcher.informer import Informer, WatchTiming
from watcher.known_keys import KnownKeys
from watcher.metrics import WatcherMetrics
from watcher.sources import DISCOVERY_SOURCES, WatchSource

CONFIG_MAPS = WatchSource("ConfigMap", "", "v1", "configmaps", True)
VELERO_BACKUPS = WatchSource("velero.io/Backup", "velero.io", "v1", "backups", True)
SECRETS = next(source for source in DISCOVERY_SOURCES if source.key_kind == "Secret")

# The emulator sends a bookmark every 0.5 s (tests/watcher/conftest.py), so 1.5 s of silence
# means the stream is stuck. Pages of 2 make every list a paged list.
FAST = WatchTiming(
    server_timeout=5,
    inactivity_timeout=1.5,
    connect_timeout=2,
    page_size=2,
    backoff_initial=0.05,
    backoff_max=0.3,
    absent_recheck=0.2,
)


class RecordingSink:
    """Remembers every key added, with its reason, in order."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.added: list[tuple[str, str]] = []

    def add(self, key: ObjectKey, *, reason: str = "event") -> str:
        with self._lock:
            self.added.append((str(key), reason))
        return "enqueued"

    def reasons(self, key: str) -> list[str]:
        with self._lock:
            return [reason for added, reason in self.added if added == key]

    def enqueued_keys(self) -> set[str]:
        with self._lock:
            return {key for key, _ in self.added}


class Harness:
    """An informer wired to a recording sink, stopped at the end of the test."""

    def __init__(self, api: KubeClient, source: WatchSource, timing: WatchTiming = FAST) -> None:
        self.sink = RecordingSink()
        self.metrics = WatcherMetrics()
        enqueuer = KeyEnqueuer(
            self.sink, KnownKeys(), DiscoveryFilters(), self.metrics, stop=threading.Event()
        )
        self.informer = Informer(source, api, enqueuer, self.metrics, timing=timing)

    def start(self) -> Harness:
        self.informer.start()
        assert self.informer.wait_synced(10), "initial list did not complete"
        return self

    def restarts(self, reason: str) -> float:
        return self.metrics.watch_restarts.labels(self.informer.source.key_kind, reason)._value.get()


@pytest.fixture
def harnesses() -> Iterator[list[Harness]]:
    started: list[Harness] = []
    yield started
    for harness in started:
        harness.informer.stop()


@pytest.fixture
def proxy(kube_emulator: KubeEmulator) -> Iterator[StallingProxy]:
    proxy = StallingProxy(kube_emulator.port).start()
    yield proxy
    proxy.stop()


def api_through(proxy: StallingProxy) -> KubeClient:
    configuration = Configuration()
    configuration.host = proxy.url
    return KubeClient(ApiClient(configuration))


def watch(
    api: KubeClient, source: WatchSource, harnesses: list[Harness], timing: WatchTiming = FAST
) -> Harness:
    harness = Harness(api, source, timing)
    harnesses.append(harness)
    return harness.start()


def test_the_initial_list_enqueues_every_object_across_pages(
    kube_api: KubeClient, harnesses: list[Harness]
) -> None:
    for index in range(5):
        create_config_map(kube_api, "shop", f"settings-{index}")

    harness = watch(kube_api, CONFIG_MAPS, harnesses)

    expected = {f"ConfigMap/shop/settings-{index}" for index in range(5)}
    assert expected <= harness.sink.enqueued_keys()
    assert all(harness.sink.reasons(key) == ["list"] for key in expected)


def test_added_modified_and_deleted_events_each_enqueue_the_key(
    kube_api: KubeClient, harnesses: list[Harness]
) -> None:
    harness = watch(kube_api, CONFIG_MAPS, harnesses)
    key = "ConfigMap/shop/cart"

    create_config_map(kube_api, "shop", "cart")
    wait_until(lambda: harness.sink.reasons(key) == ["event"], message="ADDED")
    update_config_map(kube_api, "shop", "cart", {"size": "2"})
    wait_until(lambda: harness.sink.reasons(key) == ["event", "event"], message="MODIFIED")
    delete_config_map(kube_api, "shop", "cart")
    wait_until(lambda: harness.sink.reasons(key) == ["event", "event", "deleted"], message="DELETED")


def test_an_api_server_restart_is_survived_and_nothing_is_missed(
    kube_emulator: KubeEmulator, kube_api: KubeClient, harnesses: list[Harness]
) -> None:
    create_config_map(kube_api, "shop", "before")
    harness = watch(kube_api, CONFIG_MAPS, harnesses)

    kube_emulator.restart(keep_state=True, down_for=0.5)
    create_config_map(kube_api, "shop", "after")
    update_config_map(kube_api, "shop", "before", {"changed": "yes"})

    wait_until(
        lambda: "ConfigMap/shop/after" in harness.sink.enqueued_keys(), message="object created after restart"
    )
    wait_until(
        lambda: len(harness.sink.reasons("ConfigMap/shop/before")) == 2, message="update after restart"
    )
    assert harness.restarts("error") + harness.restarts("expired") >= 1


def test_a_410_relists_and_enqueues_what_changed_while_the_watch_was_away(
    kube_emulator: KubeEmulator, kube_api: KubeClient, proxy: StallingProxy, harnesses: list[Harness]
) -> None:
    create_config_map(kube_api, "shop", "doomed")
    create_config_map(kube_api, "shop", "kept")
    harness = watch(api_through(proxy), CONFIG_MAPS, harnesses)

    proxy.cut()
    create_config_map(kube_api, "shop", "while-away")
    delete_config_map(kube_api, "shop", "doomed")
    kube_emulator.expire_history()
    proxy.resume()

    wait_until(lambda: harness.restarts("gone") >= 1, message="410 and relist")
    wait_until(
        lambda: "ConfigMap/shop/while-away" in harness.sink.enqueued_keys(),
        message="object created meanwhile",
    )
    wait_until(
        lambda: harness.sink.reasons("ConfigMap/shop/doomed") == ["list", "vanished"],
        message="deletion",
        state=lambda: harness.sink.added,
    )
    assert harness.sink.reasons("ConfigMap/shop/kept") == ["list"], (
        "an unchanged object is not enqueued again"
    )


def test_a_silent_stream_is_detected_by_the_inactivity_timeout_and_restarted(
    kube_api: KubeClient, proxy: StallingProxy, harnesses: list[Harness]
) -> None:
    harness = watch(api_through(proxy), CONFIG_MAPS, harnesses)
    time.sleep(0.2)  # let the watch open behind the list

    proxy.pause()
    create_config_map(kube_api, "shop", "sent-into-silence")

    wait_until(
        lambda: "ConfigMap/shop/sent-into-silence" in harness.sink.enqueued_keys(), timeout=6, message="event"
    )
    assert harness.restarts("inactivity") >= 1


def test_a_resource_without_crd_is_skipped_with_one_log_line_and_picked_up_when_installed(
    kube_api: KubeClient,
    harnesses: list[Harness],
    caplog: pytest.LogCaptureFixture,
    kube_install_crd: Callable[..., dict],
) -> None:
    caplog.set_level(logging.INFO, logger="watcher.informer")
    harness = watch(kube_api, VELERO_BACKUPS, harnesses)
    assert harness.informer.served is False
    time.sleep(0.7)  # several re-checks

    kube_install_crd(VELERO_BACKUP_CRD)
    ensure_namespace(kube_api, "velero")
    kube_api.create(
        "/apis/velero.io/v1/namespaces/velero/backups",
        {"apiVersion": "velero.io/v1", "kind": "Backup", "metadata": {"name": "nightly"}, "spec": {}},
    )

    wait_until(
        lambda: "velero.io/Backup/velero/nightly" in harness.sink.enqueued_keys(), message="backup key"
    )
    assert harness.informer.served is True
    messages = [record.getMessage() for record in caplog.records]
    assert sum("is not served by the API server" in message for message in messages) == 1
    assert sum("is served now" in message for message in messages) == 1


def test_stop_returns_promptly_while_a_watch_is_open(kube_api: KubeClient) -> None:
    harness = Harness(kube_api, CONFIG_MAPS).start()
    time.sleep(0.2)

    started = time.monotonic()
    harness.informer.stop()

    assert time.monotonic() - started < 1.0
    assert harness.informer.healthy


def test_a_forbidden_list_keeps_the_informer_unsynced_and_names_the_permission_once(
    kube_api_client, kubeconfig: str, tmp_path, harnesses: list[Harness], caplog: pytest.LogCaptureFixture
) -> None:
    # The operator's RBAC, which grants no ConfigMaps: the list is forbidden, not "not served".
    account = operator_kubeconfig(kube_api_client, kubeconfig, tmp_path / "operator")
    harness = Harness(KubeClient(load_api_client(str(account))), CONFIG_MAPS)
    harnesses.append(harness)

    with caplog.at_level(logging.DEBUG, logger="watcher.informer"):
        harness.informer.start()
        assert not harness.informer.wait_synced(1.0)

    assert harness.informer.served is not False, "a 403 is not mistaken for an uninstalled CRD"
    assert harness.informer.healthy, "it keeps retrying with backoff instead of dying"
    warnings = [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and r.name == "watcher.informer"
    ]
    assert len(warnings) == 1
    assert (
        'configmaps is forbidden: User "system:serviceaccount:polycrate:polycrate-operator" cannot list '
        'resource "configmaps" in API group "" at the cluster scope'
    ) in warnings[0]


class RecordingHandler:
    """A SourceHandler that keeps every object the informer hands over."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.objects: list[dict] = []

    def listed(self, source: WatchSource, obj: dict) -> ObjectKey:
        with self._lock:
            self.objects.append(obj)
        return source.key_for(obj)

    def list_complete(self, source: WatchSource, seen: list[ObjectKey]) -> None:
        """Nothing to compare."""

    def event(self, source: WatchSource, event_type: str, obj: dict) -> None:
        with self._lock:
            self.objects.append(obj)

    def names(self) -> set[str]:
        with self._lock:
            return {obj["metadata"]["name"] for obj in self.objects}


def test_secrets_are_listed_and_watched_as_metadata_so_their_data_never_reaches_the_watcher(
    kube_api: KubeClient, harnesses: list[Harness]
) -> None:
    ensure_namespace(kube_api, "production")
    secrets = "/api/v1/namespaces/production/secrets"
    secret = {"apiVersion": "v1", "kind": "Secret", "stringData": {"password": "hunter2"}}
    kube_api.create(secrets, {**secret, "metadata": {"name": "before.poly"}})
    handler = RecordingHandler()
    informer = Informer(SECRETS, kube_api, handler, WatcherMetrics(), timing=FAST)
    informer.start()
    try:
        assert informer.wait_synced(10)
        kube_api.create(secrets, {**secret, "metadata": {"name": "after.poly"}})
        wait_until(lambda: {"before.poly", "after.poly"} <= handler.names(), message="list and watch")
    finally:
        informer.stop()

    assert handler.objects, "nothing seen"
    for obj in handler.objects:
        assert obj["kind"] == "PartialObjectMetadata"
        assert "data" not in obj and "stringData" not in obj
        assert obj["metadata"]["resourceVersion"]
