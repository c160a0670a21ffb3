"""Leader election on a Lease in the Kubernetes emulator: one leader, fast clean handover, safe expiry."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from kubernetes.client import ApiClient, Configuration

from emulators.kubernetes import KubeEmulator
from polycrate.kubeclient.api import KubeClient
from polycrate.kubeclient.config import load_api_client
from polycrate.rbac import rbac_manifests
from sandbox.service_account import operator_kubeconfig
from tests.watcher.kube_objects import ensure_namespace, wait_until
from tests.watcher.stalling_proxy import StallingProxy
from watcher.leader import LeaderElector, LeaseSettings

LEASE = LeaseSettings(
    namespace="polycrate", name="watcher-test", lease_duration=2, renew_deadline=1.5, retry_period=0.2
)


class Candidate:
    """A LeaderElector plus a record of when it started and stopped leading."""

    def __init__(self, api: KubeClient, identity: str) -> None:
        self.started_leading = threading.Event()
        self.stopped_leading = threading.Event()
        self.stopped_at = 0.0
        self.elector = LeaderElector(
            api,
            LEASE,
            identity=identity,
            on_started_leading=self.started_leading.set,
            on_stopped_leading=self._lost,
        )

    def _lost(self) -> None:
        self.stopped_at = time.monotonic()
        self.stopped_leading.set()

    def start(self) -> Candidate:
        self.elector.start()
        return self


@pytest.fixture
def candidates(kube_api: KubeClient) -> Iterator[list[Candidate]]:
    ensure_namespace(kube_api, LEASE.namespace)
    started: list[Candidate] = []
    yield started
    for candidate in started:
        candidate.elector.stop(release=False)


def campaign(api: KubeClient, identity: str, candidates: list[Candidate]) -> Candidate:
    candidate = Candidate(api, identity)
    candidates.append(candidate)
    return candidate.start()


def lease_spec(api: KubeClient) -> dict:
    return api.get(LEASE.path)["spec"]


def test_the_first_candidate_leads_and_keeps_renewing_while_the_second_stands_by(
    kube_api: KubeClient, candidates: list[Candidate]
) -> None:
    first = campaign(kube_api, "watcher-a", candidates)
    assert first.started_leading.wait(5)
    second = campaign(kube_api, "watcher-b", candidates)
    renewed_before = lease_spec(kube_api)["renewTime"]

    time.sleep(1.0)

    assert not second.elector.is_leader
    spec = lease_spec(kube_api)
    assert spec["holderIdentity"] == "watcher-a"
    assert spec["leaseDurationSeconds"] == 2
    assert spec["renewTime"] > renewed_before


def test_of_candidates_racing_for_a_free_lease_exactly_one_wins(
    kube_api: KubeClient, candidates: list[Candidate]
) -> None:
    racers = [campaign(kube_api, f"racer-{index}", candidates) for index in range(3)]

    wait_until(lambda: any(racer.elector.is_leader for racer in racers), message="a leader")
    time.sleep(0.6)

    assert sum(racer.elector.is_leader for racer in racers) == 1


def test_a_clean_shutdown_releases_the_lease_and_the_standby_takes_over_at_once(
    kube_api: KubeClient, candidates: list[Candidate]
) -> None:
    leader = campaign(kube_api, "watcher-a", candidates)
    assert leader.started_leading.wait(5)
    standby = campaign(kube_api, "watcher-b", candidates)
    time.sleep(0.3)

    released_at = time.monotonic()
    leader.elector.stop(release=True)

    assert standby.started_leading.wait(LEASE.lease_duration)
    assert time.monotonic() - released_at < 1.0, "a released Lease is taken without waiting for expiry"
    assert lease_spec(kube_api)["holderIdentity"] == "watcher-b"
    assert not leader.stopped_leading.is_set(), "a clean stop is not a lost election"


def test_a_release_leaves_the_lease_without_holder_for_one_second(
    kube_api: KubeClient, candidates: list[Candidate]
) -> None:
    leader = campaign(kube_api, "watcher-a", candidates)
    assert leader.started_leading.wait(5)

    leader.elector.stop(release=True)

    spec = lease_spec(kube_api)
    assert spec["holderIdentity"] == ""
    assert spec["leaseDurationSeconds"] == 1


def test_a_holder_that_stopped_renewing_is_replaced_after_the_lease_duration_and_not_before(
    kube_api: KubeClient, candidates: list[Candidate]
) -> None:
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    kube_api.create(
        f"/apis/coordination.k8s.io/v1/namespaces/{LEASE.namespace}/leases",
        {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": LEASE.name},
            "spec": {
                "holderIdentity": "killed-pod",
                "leaseDurationSeconds": 2,
                "renewTime": now,
                "acquireTime": now,
            },
        },
    )
    started = time.monotonic()
    successor = campaign(kube_api, "watcher-b", candidates)

    assert successor.started_leading.wait(5)
    took_over_after = time.monotonic() - started
    assert LEASE.lease_duration <= took_over_after < LEASE.lease_duration + 1.0
    spec = lease_spec(kube_api)
    assert spec["holderIdentity"] == "watcher-b"
    assert spec["leaseTransitions"] == 1


def test_a_leader_cut_off_from_the_api_steps_down_before_its_lease_could_expire(
    kube_emulator: KubeEmulator, candidates: list[Candidate]
) -> None:
    proxy = StallingProxy(kube_emulator.port).start()
    try:
        configuration = Configuration()
        configuration.host = proxy.url
        leader = campaign(KubeClient(ApiClient(configuration)), "watcher-a", candidates)
        assert leader.started_leading.wait(5)

        proxy.cut()
        cut_at = time.monotonic()

        assert leader.stopped_leading.wait(5)
        # The last renewal was at most one retry period before the cut.
        assert leader.stopped_at - cut_at < LEASE.lease_duration - LEASE.retry_period
        assert not leader.elector.is_leader
    finally:
        proxy.stop()


def test_a_leader_whose_renewals_hang_steps_down_before_its_lease_could_expire(
    kube_emulator: KubeEmulator, candidates: list[Candidate], kube_api: KubeClient
) -> None:
    leader = campaign(kube_api, "watcher-a", candidates)
    assert leader.started_leading.wait(5)
    kube_emulator.latency_ms = 5000
    try:
        hanging_since = time.monotonic()
        assert leader.stopped_leading.wait(5)
        assert leader.stopped_at - hanging_since < LEASE.lease_duration - LEASE.retry_period
    finally:
        kube_emulator.latency_ms = 0


def test_without_create_on_leases_the_candidate_never_leads_and_the_log_names_the_permission(
    kube_api: KubeClient,
    kube_api_client,
    kubeconfig: str,
    candidates: list[Candidate],
    tmp_path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    manifests = [
        {**m, "rules": [{**r, "verbs": [v for v in r["verbs"] if v != "create"]} for r in m["rules"]]}
        if m["metadata"]["name"].endswith("leader-election") and m["kind"] == "Role"
        else m
        for m in rbac_manifests(LEASE.namespace)
    ]
    account = operator_kubeconfig(kube_api_client, kubeconfig, tmp_path / "operator", manifests=manifests)
    with caplog.at_level(logging.WARNING, logger="watcher.leader"):
        candidate = campaign(KubeClient(load_api_client(str(account))), "watcher-a", candidates)
        assert not candidate.started_leading.wait(1.0)
    assert (
        "leases.coordination.k8s.io is forbidden: User "
        '"system:serviceaccount:polycrate:polycrate-operator" cannot create resource "leases" in API group '
        '"coordination.k8s.io" in the namespace "polycrate"'
    ) in caplog.text
    assert caplog.text.count("cannot create resource") == 1, "logged once, not on every retry"
