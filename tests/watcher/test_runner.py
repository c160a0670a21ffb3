"""The watcher process in-process: leadership gates enqueueing, OperatorConfig drives discovery,
probes tell the truth, resync re-enqueues, a lost Lease ends the run."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator

import pytest
import redis
import requests
from kubernetes.client import ApiClient, Configuration

from emulators.kubernetes import KubeEmulator
from polycrate.keys import ObjectKey
from polycrate.kubeclient.api import KubeClient
from tasks.queue import KeyQueue
from tests.fixtures.kube import CNPG_BACKUP_CRD, CNPG_SCHEDULED_BACKUP_CRD
from tests.watcher.kube_objects import (
    create_config_map,
    ensure_namespace,
    polycrate_crd,
    update_config_map,
    wait_until,
)
from tests.watcher.stalling_proxy import StallingProxy
from watcher.informer import WatchTiming
from watcher.leader import LeaseSettings
from watcher.runner import Watcher, WatcherOptions
from watcher.sources import DISCOVERY_SOURCES, WatchSource, polycrate_sources

CONFIG_MAPS = WatchSource("ConfigMap", "", "v1", "configmaps", True)
SOURCES = {source.key_kind: source for source in DISCOVERY_SOURCES + polycrate_sources()}
TIMING = WatchTiming(
    server_timeout=5, inactivity_timeout=2, backoff_initial=0.05, backoff_max=0.3, absent_recheck=0.2
)
LEASE = LeaseSettings(
    namespace="polycrate", name="runner-test", lease_duration=2, renew_deadline=1.5, retry_period=0.2
)


class RecordingSink:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.added: list[tuple[str, str]] = []

    def add(self, key: ObjectKey, *, reason: str = "event") -> str:
        with self._lock:
            self.added.append((str(key), reason))
        return "enqueued"

    def enqueued_keys(self) -> set[str]:
        with self._lock:
            return {key for key, _ in self.added}

    def reasons(self, key: str) -> list[str]:
        with self._lock:
            return [reason for added, reason in self.added if added == key]


def options(sources: tuple[WatchSource, ...], **overrides: object) -> WatcherOptions:
    values: dict = {
        "metrics_bind_address": "127.0.0.1:0",
        "health_probe_bind_address": "127.0.0.1:0",
        "resync_period": 600,
        "watch": TIMING,
        "lease": LEASE,
        "sources": sources,
    }
    values.update(overrides)
    return WatcherOptions(**values)


@pytest.fixture
def watchers() -> Iterator[list[Watcher]]:
    started: list[Watcher] = []
    yield started
    for watcher in started:
        watcher.stop()


def start(watchers: list[Watcher], watcher: Watcher) -> Watcher:
    watchers.append(watcher)
    watcher.start()
    return watcher


def get(watcher: Watcher, server: str, path: str) -> requests.Response:
    return requests.get(watcher.probe_urls[server] + path, timeout=5)


def test_only_the_leader_enqueues_and_a_clean_stop_hands_over_at_once(
    kube_api: KubeClient, watchers: list[Watcher]
) -> None:
    ensure_namespace(kube_api, "polycrate")
    create_config_map(kube_api, "shop", "existing")
    first_sink, second_sink = RecordingSink(), RecordingSink()
    first = start(
        watchers, Watcher(kube_api, first_sink, options((CONFIG_MAPS,), leader_elect=True), identity="a")
    )
    wait_until(lambda: first.is_leader, message="first watcher leading")
    second = start(
        watchers, Watcher(kube_api, second_sink, options((CONFIG_MAPS,), leader_elect=True), identity="b")
    )

    create_config_map(kube_api, "shop", "new")
    wait_until(lambda: "ConfigMap/shop/new" in first_sink.enqueued_keys(), message="leader enqueues")
    time.sleep(0.3)
    assert second_sink.added == []
    standby_ready = get(second, "probes", "/readyz")
    assert standby_ready.status_code == 200
    assert "standby, waiting for the Lease" in standby_ready.text

    first.stop()

    wait_until(lambda: second.is_leader, timeout=1.5, message="standby takes over after release")
    wait_until(
        lambda: {"ConfigMap/shop/existing", "ConfigMap/shop/new"} <= second_sink.enqueued_keys(),
        message="new leader lists everything",
    )


def test_operator_config_switches_discovery_on_and_off_and_narrows_it(
    kube_api: KubeClient, watchers: list[Watcher], kube_install_crd: Callable[..., dict]
) -> None:
    kube_install_crd(polycrate_crd("operatorconfigs"))
    ensure_namespace(kube_api, "polycrate")
    for namespace in ("production", "kube-system"):
        ensure_namespace(kube_api, namespace)
        kube_api.create(
            f"/apis/networking.k8s.io/v1/namespaces/{namespace}/ingresses",
            {
                "apiVersion": "networking.k8s.io/v1",
                "kind": "Ingress",
                "metadata": {"name": "web"},
                "spec": {},
            },
        )
    for name, labels in (("worker-1", {"role": "worker"}), ("control-1", {"role": "control-plane"})):
        kube_api.create(
            "/api/v1/nodes",
            {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels}},
        )
    sink = RecordingSink()
    sources = (SOURCES["OperatorConfig"], SOURCES["Node"], SOURCES["Ingress"])
    watcher = start(watchers, Watcher(kube_api, sink, options(sources)))
    wait_until(lambda: get(watcher, "probes", "/readyz").status_code == 200, message="ready")
    assert watcher.informer("Node") is None, "no OperatorConfig: discovery is off"

    config_path = "/apis/polycrate.io/v1alpha1/namespaces/polycrate/operatorconfigs"
    kube_api.create(
        config_path,
        {
            "apiVersion": "polycrate.io/v1alpha1",
            "kind": "OperatorConfig",
            "metadata": {"name": "default"},
            "spec": {
                "node_discovery": {"label_selector": "role=worker"},
                "endpoint_discovery": {"ignore_namespaces": ["kube-system"]},
            },
        },
    )
    wait_until(
        lambda: {"Node//worker-1", "Ingress/production/web"} <= sink.enqueued_keys(), message="discovery"
    )
    time.sleep(0.3)
    assert "Node//control-1" not in sink.enqueued_keys()
    assert "Ingress/kube-system/web" not in sink.enqueued_keys()

    config = kube_api.get(f"{config_path}/default")
    config["spec"]["node_discovery"]["label_selector"] = ""
    kube_api.replace(f"{config_path}/default", config)
    wait_until(lambda: "Node//control-1" in sink.enqueued_keys(), message="relist with the wider selector")

    kube_api.request("DELETE", f"{config_path}/default")
    wait_until(lambda: watcher.informer("Node") is None, message="discovery switched off")
    assert watcher.informer("Ingress") is None


def test_meta_secrets_are_found_by_their_poly_name_or_their_label_and_other_secrets_never_enqueued(
    kube_api: KubeClient, watchers: list[Watcher], kube_install_crd: Callable[..., dict]
) -> None:
    kube_install_crd(polycrate_crd("operatorconfigs"))
    for namespace in ("polycrate", "production"):
        ensure_namespace(kube_api, namespace)
    secrets = "/api/v1/namespaces/production/secrets"
    for name, labels in (
        ("myapp.poly", {}),  # polycrate's own naming, no label
        ("labelled-meta", {"polycrate.io/type": "meta"}),  # the spec's example
        ("db-password", {}),  # an ordinary Secret
    ):
        kube_api.create(
            secrets,
            {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "labels": labels}},
        )
    kube_api.create(
        "/apis/polycrate.io/v1alpha1/namespaces/polycrate/operatorconfigs",
        {
            "apiVersion": "polycrate.io/v1alpha1",
            "kind": "OperatorConfig",
            "metadata": {"name": "default"},
            "spec": {"app_discovery": {}},
        },
    )
    sink = RecordingSink()
    start(watchers, Watcher(kube_api, sink, options((SOURCES["OperatorConfig"], SOURCES["Secret"]))))

    wait_until(
        lambda: {"Secret/production/myapp.poly", "Secret/production/labelled-meta"} <= sink.enqueued_keys(),
        message="both meta Secrets enqueued",
    )
    kube_api.create(secrets, {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "later.poly"}})
    wait_until(lambda: "Secret/production/later.poly" in sink.enqueued_keys(), message="watch event")
    kube_api.request("DELETE", f"{secrets}/db-password")
    time.sleep(0.3)
    assert not any("db-password" in key for key in sink.enqueued_keys())


def test_readyz_waits_for_the_initial_lists_and_metrics_count_real_enqueues(
    kube_emulator: KubeEmulator, kube_api: KubeClient, redis_client: redis.Redis, watchers: list[Watcher]
) -> None:
    create_config_map(kube_api, "shop", "cart")
    sent: list[ObjectKey] = []
    queue = KeyQueue(redis_client, sender=lambda key, task_id, countdown: sent.append(key))
    kube_emulator.latency_ms = 400
    try:
        watcher = start(
            watchers, Watcher(kube_api, queue, options((CONFIG_MAPS,)), broker_ping=redis_client.ping)
        )
        not_yet = get(watcher, "probes", "/readyz")
        assert not_yet.status_code == 503
        assert "waiting for the initial list of configmaps" in not_yet.text
    finally:
        kube_emulator.latency_ms = 0
    wait_until(lambda: get(watcher, "probes", "/readyz").status_code == 200, message="ready after the list")
    assert get(watcher, "probes", "/healthz").status_code == 200

    update_config_map(kube_api, "shop", "cart", {"items": "1"})
    update_config_map(kube_api, "shop", "cart", {"items": "2"})
    metrics_url = watcher.probe_urls["metrics"] + "/metrics"
    wait_until(
        lambda: (
            'polycrate_watcher_keys_coalesced_total{kind="ConfigMap"} 2.0'
            in requests.get(metrics_url, timeout=5).text
        ),
        message="two coalesced updates",
    )
    body = requests.get(metrics_url, timeout=5).text
    assert 'polycrate_watcher_keys_enqueued_total{kind="ConfigMap"} 1.0' in body
    assert 'polycrate_watcher_events_total{kind="ConfigMap",type="LISTED"} 1.0' in body
    assert 'polycrate_watcher_events_total{kind="ConfigMap",type="MODIFIED"} 2.0' in body
    assert "polycrate_watcher_is_leader 1.0" in body
    assert sent == [ObjectKey("ConfigMap", "shop", "cart")], "one task for three events while it waited"


def test_resync_re_enqueues_every_known_key_periodically(
    kube_api: KubeClient, watchers: list[Watcher]
) -> None:
    create_config_map(kube_api, "shop", "cart")
    sink = RecordingSink()
    start(watchers, Watcher(kube_api, sink, options((CONFIG_MAPS,), resync_period=0.3)))

    wait_until(lambda: sink.reasons("ConfigMap/shop/cart").count("resync") >= 2, message="two resyncs")
    assert sink.reasons("ConfigMap/shop/cart")[0] == "list"


def test_a_lost_lease_ends_the_run_and_stops_enqueueing(
    kube_emulator: KubeEmulator, watchers: list[Watcher]
) -> None:
    proxy = StallingProxy(kube_emulator.port).start()
    try:
        configuration = Configuration()
        configuration.host = proxy.url
        api = KubeClient(ApiClient(configuration))
        ensure_namespace(api, "polycrate")
        watcher = start(watchers, Watcher(api, RecordingSink(), options((CONFIG_MAPS,), leader_elect=True)))
        wait_until(lambda: watcher.is_leader, message="leading")

        proxy.cut()

        assert watcher.wait(timeout=5) == "lost-leadership"
        assert not watcher.is_leader
        assert watcher.informer("ConfigMap") is None
    finally:
        proxy.stop()


def test_cnpg_backups_are_skipped_with_one_log_line_until_their_crds_arrive_then_enqueued(
    kube_api: KubeClient,
    watchers: list[Watcher],
    kube_install_crd: Callable[..., dict],
    caplog: pytest.LogCaptureFixture,
) -> None:
    kube_install_crd(polycrate_crd("operatorconfigs"))
    for namespace in ("polycrate", "databases"):
        ensure_namespace(kube_api, namespace)
    kube_api.create(
        "/apis/polycrate.io/v1alpha1/namespaces/polycrate/operatorconfigs",
        {
            "apiVersion": "polycrate.io/v1alpha1",
            "kind": "OperatorConfig",
            "metadata": {"name": "default"},
            "spec": {"backup_discovery": {"cnpg_enabled": True}},
        },
    )
    sink = RecordingSink()
    sources = (
        SOURCES["OperatorConfig"],
        SOURCES["postgresql.cnpg.io/Backup"],
        SOURCES["postgresql.cnpg.io/ScheduledBackup"],
    )
    with caplog.at_level(logging.INFO, logger="watcher.informer"):
        watcher = start(watchers, Watcher(kube_api, sink, options(sources)))
        wait_until(lambda: get(watcher, "probes", "/readyz").status_code == 200, message="ready without CNPG")
        wait_until(
            lambda: (
                watcher.informer("postgresql.cnpg.io/Backup") is not None
                and watcher.informer("postgresql.cnpg.io/Backup").served is False
            ),
            message="CNPG Backups seen absent",
        )
        time.sleep(0.6)  # several absent rechecks (0.2 s apart) pass
        skipped = [
            r.getMessage() for r in caplog.records if r.getMessage().startswith("backups.postgresql.cnpg.io ")
        ]
        assert len(skipped) == 1 and "not served" in skipped[0], skipped

        kube_install_crd(CNPG_BACKUP_CRD)
        kube_install_crd(CNPG_SCHEDULED_BACKUP_CRD)
        for plural, kind, spec in (
            ("backups", "Backup", {"cluster": {"name": "pg-main"}}),
            (
                "scheduledbackups",
                "ScheduledBackup",
                {"cluster": {"name": "pg-main"}, "schedule": "0 0 2 * * *"},
            ),
        ):
            kube_api.create(
                f"/apis/postgresql.cnpg.io/v1/namespaces/databases/{plural}",
                {
                    "apiVersion": "postgresql.cnpg.io/v1",
                    "kind": kind,
                    "metadata": {"name": "nightly"},
                    "spec": spec,
                },
            )

        wait_until(
            lambda: (
                {
                    "postgresql.cnpg.io/Backup/databases/nightly",
                    "postgresql.cnpg.io/ScheduledBackup/databases/nightly",
                }
                <= sink.enqueued_keys()
            ),
            message="CNPG objects enqueued once their CRDs are served",
        )


def test_a_source_is_picked_up_as_soon_as_its_crd_is_installed_not_at_the_next_recheck(
    kube_api: KubeClient, watchers: list[Watcher], kube_install_crd: Callable[..., dict]
) -> None:
    slow_recheck = WatchTiming(server_timeout=5, inactivity_timeout=2, absent_recheck=60)
    sink = RecordingSink()
    watcher = start(
        watchers, Watcher(kube_api, sink, options((SOURCES["Organization"],), watch=slow_recheck))
    )
    wait_until(lambda: watcher.informer("Organization").served is False, message="source seen absent")

    kube_install_crd(polycrate_crd("organizations"))
    ensure_namespace(kube_api, "polycrate")
    kube_api.create(
        "/apis/polycrate.io/v1alpha1/namespaces/polycrate/organizations",
        {
            "apiVersion": "polycrate.io/v1alpha1",
            "kind": "Organization",
            "metadata": {"name": "acme-corp"},
            "spec": {"sdp": "production"},
        },
    )

    wait_until(
        lambda: "Organization/polycrate/acme-corp" in sink.enqueued_keys(),
        timeout=3,
        message="picked up at once",
    )
