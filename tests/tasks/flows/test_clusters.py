"""K8sCluster: registration in the SDP's Argo CD, credentials from Secrets, dependents enqueued.

Argo CD's API never returns stored cluster credentials, so what the operator sent is read from
the emulator's state; everything else is checked through the Argo CD REST API.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from typing import Any

import kubernetes
import pytest
import redis
import requests

from emulators.argocd import ArgocdEmulator
from polycrate.keys import ObjectKey
from polycrate.kubeclient.api import JsonObject
from polycrate.settings import Settings
from tasks.app import app, configure
from tests.tasks.flows.test_platform import _secret
from tests.tasks.flows.test_standalone import production_platform
from tests.tasks.support import CRDS, example
from tests.tasks.test_handlers import Cluster

SERVER = "https://api.prod.example.com:6443"
CA_PEM = "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUZmFrZQ==\n-----END CERTIFICATE-----\n"


@pytest.fixture
def cluster(
    kube_api_client: kubernetes.client.ApiClient,
    redis_client: redis.Redis,
    kube_namespace: str,
    kube_install_crd: Callable[..., dict[str, Any]],
) -> Cluster:
    for plural in ("softwaredeliveryplatforms", "k8sclusters"):
        kube_install_crd(CRDS / f"{plural}.polycrate.io.yaml")
    return Cluster(kube_api_client, redis_client, kube_namespace)


@pytest.fixture
def production(
    cluster: Cluster, systems: dict[str, Any], kube_api_client: kubernetes.client.ApiClient
) -> ObjectKey:
    return production_platform(cluster, systems, kube_api_client)


@pytest.fixture
def core(kube_api_client: kubernetes.client.ApiClient) -> kubernetes.client.CoreV1Api:
    return kubernetes.client.CoreV1Api(kube_api_client)


def _k8s_cluster(
    cluster: Cluster, core: kubernetes.client.CoreV1Api, token: str = "cluster-token-1"
) -> ObjectKey:
    _secret(core, cluster.namespace, "prod-cluster-token", {"token": token})
    obj = example("k8scluster-production-cluster.yaml", cluster.namespace)
    obj["spec"]["caCertificate"] = CA_PEM
    return cluster.create("k8sclusters", obj)


def _registered(argocd: ArgocdEmulator) -> dict[str, JsonObject]:
    response = requests.get(
        f"{argocd.url}/api/v1/clusters", headers={"Authorization": f"Bearer {argocd.token}"}, timeout=5
    )
    response.raise_for_status()
    return {c["server"]: c for c in response.json()["items"]}


def _stored_config(argocd: ArgocdEmulator, server: str = SERVER) -> JsonObject:
    with argocd.lock:
        return dict(argocd.clusters[server]["config"])


def _ready_condition(obj: JsonObject) -> JsonObject:
    return next(c for c in obj["status"]["conditions"] if c["type"] == "Ready")


def test_k8s_cluster_example_is_registered_in_argocd_with_its_token_and_ca(
    cluster: Cluster, production: ObjectKey, core: kubernetes.client.CoreV1Api, systems: dict[str, Any]
) -> None:
    key = _k8s_cluster(cluster, core)

    assert cluster.reconcile(key).result == "succeeded"

    registered = _registered(systems["argocd"])[SERVER]
    assert registered["name"] == "Production Cluster"
    assert registered["labels"]["polycrate.io/k8scluster"] == "production-cluster"
    config = _stored_config(systems["argocd"])
    assert config["bearerToken"] == "cluster-token-1"
    assert base64.b64decode(config["tlsClientConfig"]["caData"]).decode() == CA_PEM
    status = cluster.get(key)["status"]
    assert status["phase"] == "Ready"
    assert status["argoCDClusterRegistered"] is True
    assert status["kubernetesVersion"] == registered["serverVersion"]
    texts = [repr(status)] + [repr(e) for e in cluster.events(key)]
    assert not any("cluster-token-1" in text for text in texts), "the token leaked"


def test_k8s_cluster_second_reconcile_writes_nothing_anywhere(
    cluster: Cluster, production: ObjectKey, core: kubernetes.client.CoreV1Api, systems: dict[str, Any]
) -> None:
    key = _k8s_cluster(cluster, core)
    cluster.reconcile(key)
    before = cluster.get(key)
    calls = dict(systems["argocd"].calls)

    assert cluster.reconcile(key).result == "succeeded"

    assert cluster.get(key)["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    new_calls = [op for op, n in systems["argocd"].calls.items() if n > calls.get(op, 0)]
    assert new_calls and all(op.startswith("GET ") for op in new_calls)


def test_rotated_token_reaches_argocd_at_the_next_reconcile(
    cluster: Cluster, production: ObjectKey, core: kubernetes.client.CoreV1Api, systems: dict[str, Any]
) -> None:
    key = _k8s_cluster(cluster, core)
    cluster.reconcile(key)
    core.patch_namespaced_secret(
        "prod-cluster-token",
        cluster.namespace,
        {"data": {"token": base64.b64encode(b"cluster-token-2").decode()}},
    )

    assert cluster.reconcile(key).result == "succeeded"

    assert _stored_config(systems["argocd"])["bearerToken"] == "cluster-token-2"


def test_kubeconfig_secret_provides_token_and_ca(
    cluster: Cluster, production: ObjectKey, core: kubernetes.client.CoreV1Api, systems: dict[str, Any]
) -> None:
    kubeconfig = f"""
apiVersion: v1
kind: Config
current-context: prod
clusters:
- name: prod
  cluster:
    server: {SERVER}
    certificate-authority-data: {base64.b64encode(CA_PEM.encode()).decode()}
users:
- name: deployer
  user:
    token: kubeconfig-token
contexts:
- name: prod
  context: {{cluster: prod, user: deployer}}
"""
    _secret(core, cluster.namespace, "prod-cluster-kubeconfig", {"kubeconfig": kubeconfig})
    obj = example("k8scluster-production-cluster.yaml", cluster.namespace)
    obj["spec"]["authentication"] = {
        "kubeconfig": {"secretRef": {"name": "prod-cluster-kubeconfig", "key": "kubeconfig"}}
    }
    del obj["spec"]["caCertificate"]
    key = cluster.create("k8sclusters", obj)

    assert cluster.reconcile(key).result == "succeeded"

    config = _stored_config(systems["argocd"])
    assert config["bearerToken"] == "kubeconfig-token"
    assert base64.b64decode(config["tlsClientConfig"]["caData"]).decode() == CA_PEM


def test_missing_token_secret_is_an_error_naming_field_and_secret(
    cluster: Cluster, production: ObjectKey, systems: dict[str, Any]
) -> None:
    key = cluster.create("k8sclusters", example("k8scluster-production-cluster.yaml", cluster.namespace))

    assert cluster.reconcile(key).result == "failed"

    ready = _ready_condition(cluster.get(key))
    assert ready["reason"] == "DependencyNotFound"
    assert "spec.authentication.serviceAccountToken.secretRef" in ready["message"]
    assert f"Secret {cluster.namespace}/prod-cluster-token not found" in ready["message"]
    assert SERVER not in _registered(systems["argocd"])


def test_changed_api_server_moves_the_registration(
    cluster: Cluster, production: ObjectKey, core: kubernetes.client.CoreV1Api, systems: dict[str, Any]
) -> None:
    key = _k8s_cluster(cluster, core)
    cluster.reconcile(key)
    moved = "https://api.new-prod.example.com:6443"
    cluster.custom.patch_namespaced_custom_object(
        "polycrate.io", "v1alpha1", key.namespace, "k8sclusters", key.name, {"spec": {"apiServer": moved}}
    )

    assert cluster.reconcile(key).result == "succeeded"

    registered = _registered(systems["argocd"])
    assert moved in registered and SERVER not in registered


def test_k8s_cluster_deletion_unregisters_it(
    cluster: Cluster, production: ObjectKey, core: kubernetes.client.CoreV1Api, systems: dict[str, Any]
) -> None:
    key = _k8s_cluster(cluster, core)
    cluster.reconcile(key)
    cluster.custom.delete_namespaced_custom_object(
        "polycrate.io", "v1alpha1", key.namespace, "k8sclusters", key.name
    )

    assert cluster.reconcile(key).result == "succeeded"

    assert cluster.get(key) is None
    assert SERVER not in _registered(systems["argocd"])


def test_k8s_cluster_with_deletion_policy_orphan_stays_registered_when_deleted(
    cluster: Cluster, production: ObjectKey, core: kubernetes.client.CoreV1Api, systems: dict[str, Any]
) -> None:
    key = _k8s_cluster(cluster, core)
    cluster.custom.patch_namespaced_custom_object(
        "polycrate.io",
        "v1alpha1",
        key.namespace,
        "k8sclusters",
        key.name,
        {"spec": {"deletionPolicy": "Orphan"}},
    )
    cluster.reconcile(key)
    cluster.custom.delete_namespaced_custom_object(
        "polycrate.io", "v1alpha1", key.namespace, "k8sclusters", key.name
    )

    assert cluster.reconcile(key).result == "succeeded"

    assert cluster.get(key) is None
    assert SERVER in _registered(systems["argocd"])
    assert [e["reason"] for e in cluster.events(key) if e["reason"] == "Orphaned"] == ["Orphaned"]


@pytest.fixture
def celery_on_test_redis(redis_url: str) -> Iterator[None]:
    """Point this process's Celery app (the one handlers publish with) at the test's Redis."""
    configure(app, Settings(redis_url=redis_url))
    app.close()  # drop a broker pool built for another URL
    yield
    configure(app, Settings.from_env())
    app.close()


def test_argocd_project_waits_for_its_k8s_cluster_and_is_enqueued_once_it_is_ready(
    cluster: Cluster,
    production: ObjectKey,
    core: kubernetes.client.CoreV1Api,
    systems: dict[str, Any],
    kube_install_crd: Callable[..., dict[str, Any]],
    redis_client: redis.Redis,
    celery_on_test_redis: None,
) -> None:
    kube_install_crd(CRDS / "argocdprojects.polycrate.io.yaml")
    project = cluster.create(
        "argocdprojects", example("argocdproject-infrastructure.yaml", cluster.namespace)
    )

    assert cluster.reconcile(project).result == "failed"
    ready = _ready_condition(cluster.get(project))
    assert ready["reason"] == "DependencyNotFound"
    assert 'K8sCluster "production-cluster" not found' in ready["message"]
    assert "spec.destinations[1].clusterRef" in ready["message"]

    key = _k8s_cluster(cluster, core)
    assert cluster.reconcile(key).result == "succeeded"

    assert project in cluster.queue.pending(), "the ready K8sCluster enqueued the project"
    task_id = redis_client.hget("polycrate:queue:pending", str(project)).decode()
    assert cluster.reconciler.run(str(project), task_id).result == "succeeded"
    response = requests.get(
        f"{systems['argocd'].url}/api/v1/projects/infrastructure",
        headers={"Authorization": f"Bearer {systems['argocd'].token}"},
        timeout=5,
    )
    assert {"server": SERVER, "namespace": "*"} in response.json()["spec"]["destinations"]
    assert cluster.get(project)["status"]["phase"] == "Ready"


def test_k8s_cluster_deletion_wakes_the_argocd_projects_deploying_to_it(
    cluster: Cluster,
    production: ObjectKey,
    core: kubernetes.client.CoreV1Api,
    kube_install_crd: Callable[..., dict[str, Any]],
) -> None:
    kube_install_crd(CRDS / "argocdprojects.polycrate.io.yaml")
    key = _k8s_cluster(cluster, core)
    assert cluster.reconcile(key).result == "succeeded"
    project = cluster.create(
        "argocdprojects", example("argocdproject-infrastructure.yaml", cluster.namespace)
    )
    unrelated = example("argocdproject-infrastructure.yaml", cluster.namespace)
    unrelated["metadata"]["name"] = "elsewhere"
    unrelated["spec"]["destinations"] = [{"server": SERVER, "namespace": "*"}]
    other = cluster.create("argocdprojects", unrelated)
    cluster.custom.delete_namespaced_custom_object(
        "polycrate.io", "v1alpha1", key.namespace, "k8sclusters", key.name
    )

    sent = len(cluster.sender.sent)
    assert cluster.reconcile(key).result == "succeeded"

    assert {k for k, _, _ in cluster.sender.sent[sent:]} - {key} == {project}
    assert other not in cluster.queue.pending()
