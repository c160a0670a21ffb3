"""The one retry policy, over real HTTP to the Kubernetes emulator: what is resent and what is not.

Each test injects failures into the emulator (as kube-apiserver answers them: a Status, and
Retry-After on a 429) and counts the requests that reached it.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import kubernetes
import pytest

from emulators.faults import FaultPlan
from emulators.kubernetes import KubeEmulator
from polycrate.errors import PermanentError, TransientError
from polycrate.kubeclient.api import KubeClient
from polycrate.kubeclient.config import load_api_client
from polycrate.kubeclient.errors import Conflict, Forbidden, NotFound, ServerError, TooManyRequests
from polycrate.kubeclient.retrying import NO_RETRY, RetryPolicy
from sandbox.service_account import service_account_token

NAMESPACES = "/api/v1/namespaces"


class Sleeps:
    """Records the waits of the retry policy instead of sleeping them."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def client(kubeconfig: str, sleeps: Sleeps) -> KubeClient:
    return KubeClient(load_api_client(kubeconfig), sleep=sleeps)


def config_map(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"a": "1"}}


def test_a_429_waits_as_long_as_retry_after_asks_then_succeeds(
    client: KubeClient, faults: FaultPlan, sleeps: Sleeps
) -> None:
    faults.update({"rate_limit": {"count": 1, "retry_after": 2}})
    assert client.get(NAMESPACES + "/default")["metadata"]["name"] == "default"
    assert sleeps.waits == [2.0]


def test_a_429_asking_longer_than_the_cap_goes_up_with_its_retry_after(
    kubeconfig: str, faults: FaultPlan, sleeps: Sleeps
) -> None:
    client = KubeClient(load_api_client(kubeconfig), retry=RetryPolicy(max_retry_after=5), sleep=sleeps)
    faults.update({"rate_limit": {"count": 1, "retry_after": 30}})
    with pytest.raises(TooManyRequests) as caught:
        client.get(NAMESPACES + "/default")
    assert caught.value.retry_after == 30.0 and isinstance(caught.value, TransientError)
    assert sleeps.waits == []  # the task queue holds the key for 30 s, not a worker thread


def test_a_503_is_retried_with_backoff_for_every_method(
    client: KubeClient, faults: FaultPlan, sleeps: Sleeps, kube_namespace: str
) -> None:
    faults.update({"error_count": 2, "error_status": 503})
    created = client.create(f"{NAMESPACES}/{kube_namespace}/configmaps", config_map("retried"))
    assert created["metadata"]["name"] == "retried"
    assert len(sleeps.waits) == 2 and sleeps.waits[0] < sleeps.waits[1]


def test_a_500_is_retried_for_a_read_but_not_for_a_create(
    client: KubeClient, faults: FaultPlan, sleeps: Sleeps, kube_namespace: str
) -> None:
    faults.update({"error_count": 1, "error_status": 500})
    assert client.get(f"{NAMESPACES}/{kube_namespace}")["metadata"]["name"] == kube_namespace
    faults.update({"error_count": 1, "error_status": 500})
    with pytest.raises(ServerError):  # it may have been applied: resending could create twice
        client.create(f"{NAMESPACES}/{kube_namespace}/configmaps", config_map("once"))
    assert len(sleeps.waits) == 1


def test_the_policy_gives_up_after_its_attempts_with_the_last_error(
    client: KubeClient, faults: FaultPlan, sleeps: Sleeps, kube_emulator: KubeEmulator
) -> None:
    faults.update({"error_count": 5, "error_status": 503})
    with pytest.raises(ServerError) as caught:
        client.get(NAMESPACES)
    assert caught.value.code == 503 and caught.value.reason == "ServiceUnavailable"
    assert len(sleeps.waits) == client.retry.attempts - 1
    assert faults.error_count == 5 - client.retry.attempts


def test_no_retry_sends_once(client: KubeClient, faults: FaultPlan, sleeps: Sleeps) -> None:
    faults.update({"error_count": 1, "error_status": 503})
    with pytest.raises(ServerError):
        client.get(NAMESPACES, retry=NO_RETRY)
    assert sleeps.waits == []


def test_not_found_is_not_retried_and_permanent(client: KubeClient, sleeps: Sleeps) -> None:
    with pytest.raises(NotFound) as caught:
        client.get(NAMESPACES + "/nowhere")
    assert isinstance(caught.value, PermanentError) and caught.value.reason == "NotFound"
    assert str(caught.value) == 'GET /api/v1/namespaces/nowhere: 404 NotFound: namespaces "nowhere" not found'
    assert sleeps.waits == []


def test_a_conflict_is_not_retried_but_transient_for_the_caller_to_redo(
    client: KubeClient, sleeps: Sleeps, kube_namespace: str
) -> None:
    path = f"{NAMESPACES}/{kube_namespace}/configmaps"
    client.create(path, config_map("taken"))
    with pytest.raises(Conflict) as caught:
        client.create(path, config_map("taken"))
    assert caught.value.reason == "AlreadyExists" and isinstance(caught.value, TransientError)
    stale = client.get(f"{path}/taken")
    client.replace(f"{path}/taken", {**stale, "data": {"a": "2"}})
    with pytest.raises(Conflict) as caught:
        client.replace(f"{path}/taken", stale)  # its resourceVersion is old now
    assert caught.value.reason == "Conflict"
    assert sleeps.waits == []


def test_forbidden_is_not_retried_and_names_the_permission_to_grant(
    kube_emulator: KubeEmulator, kube_api_client: kubernetes.client.ApiClient, tmp_path: Path, sleeps: Sleeps
) -> None:
    # A ServiceAccount without any role: RBAC denies it everything.
    kubernetes.client.CoreV1Api(kube_api_client).create_namespaced_service_account(
        "default", {"metadata": {"name": "nobody"}}
    )
    token = service_account_token(kube_api_client, "default", "nobody")
    kubeconfig = kube_emulator.write_kubeconfig(tmp_path / "nobody", token=token)
    client = KubeClient(load_api_client(str(kubeconfig)), sleep=sleeps)
    with pytest.raises(Forbidden) as caught:
        client.get("/api/v1/secrets")
    assert isinstance(caught.value, PermanentError) and caught.value.reason == "Forbidden"
    assert "cannot list" in str(caught.value) and "deploy/rbac.yaml" in str(caught.value)
    assert sleeps.waits == []


def test_connection_refused_is_retried_then_unreachable(
    kube_emulator: KubeEmulator, tmp_path: Path, sleeps: Sleeps
) -> None:
    kubeconfig = kube_emulator.write_kubeconfig(tmp_path / "config")
    client = KubeClient(load_api_client(str(kubeconfig)), sleep=sleeps)
    kube_emulator.stop()
    try:
        with pytest.raises(TransientError) as caught:
            client.create("/api/v1/namespaces", {"metadata": {"name": "x"}})
    finally:
        kube_emulator.start()
    assert "Connection refused" in str(caught.value)
    assert len(sleeps.waits) == client.retry.attempts - 1  # never sent, so safe even for a create


def test_a_pool_of_32_threads_sharing_one_client_discards_no_connection(
    kubeconfig: str, caplog: pytest.LogCaptureFixture
) -> None:
    client = KubeClient(load_api_client(kubeconfig, pool_maxsize=32))
    errors: list[BaseException] = []
    start = threading.Barrier(32)

    def work() -> None:
        try:
            start.wait()
            for _ in range(5):
                client.get(NAMESPACES)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    with caplog.at_level(logging.WARNING, logger="urllib3.connectionpool"):
        threads = [threading.Thread(target=work) for _ in range(32)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert errors == []
    assert not [r for r in caplog.records if "Connection pool is full" in r.getMessage()]
