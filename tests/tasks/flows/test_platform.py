"""The SoftwareDeliveryPlatform handler: one authenticated check per system, a flag per system.

Real emulators over HTTP, real Secrets in the Kubernetes emulator, the reconciler driven directly.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable
from typing import Any

import kubernetes
import pytest
import redis

from tests.tasks.support import CRDS
from tests.tasks.test_handlers import Cluster, spec_example_of


@pytest.fixture
def cluster(
    kube_api_client: kubernetes.client.ApiClient, redis_client: redis.Redis, kube_namespace: str
) -> Cluster:
    return Cluster(kube_api_client, redis_client, kube_namespace)


def _secret(core: kubernetes.client.CoreV1Api, namespace: str, name: str, data: dict[str, str]) -> None:
    encoded = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
    core.create_namespaced_secret(namespace, {"metadata": {"name": name}, "data": encoded})


def _platform(
    cluster: Cluster,
    systems: dict[str, Any],
    kube_api_client: kubernetes.client.ApiClient,
    *,
    gitlab_token: str | None = None,
    name: str = "production",
) -> Any:
    core = kubernetes.client.CoreV1Api(kube_api_client)
    kc = systems["keycloak"]
    _secret(
        core,
        cluster.namespace,
        "keycloak-creds",
        {"client-id": kc.client_id, "client-secret": kc.client_secret},
    )
    _secret(core, cluster.namespace, "gitlab-creds", {"token": gitlab_token or systems["gitlab"].admin_token})
    hb = systems["harbor"]
    _secret(
        core,
        cluster.namespace,
        "harbor-creds",
        {"username": hb.admin_username, "password": hb.admin_password},
    )
    _secret(core, cluster.namespace, "argocd-creds", {"token": systems["argocd"].token})
    sdp = {
        "apiVersion": "polycrate.io/v1alpha1",
        "kind": "SoftwareDeliveryPlatform",
        "metadata": {"name": name},
        "spec": {
            "keycloak": {
                "url": kc.url,
                "realm": kc.realm,
                "credentialsRef": {"secretName": "keycloak-creds"},
            },
            "gitlab": {"url": systems["gitlab"].url, "credentialsRef": {"secretName": "gitlab-creds"}},
            "harbor": {"url": hb.url, "credentialsRef": {"secretName": "harbor-creds"}},
            "argocd": {"url": systems["argocd"].url, "credentialsRef": {"secretName": "argocd-creds"}},
        },
    }
    return cluster.create("softwaredeliveryplatforms", sdp)


def test_platform_whose_systems_all_answer_is_ready_with_a_flag_per_system(
    cluster: Cluster,
    kube_install_crd: Callable[..., dict[str, Any]],
    systems: dict[str, Any],
    kube_api_client,
) -> None:
    kube_install_crd(CRDS / "softwaredeliveryplatforms.polycrate.io.yaml")
    key = _platform(cluster, systems, kube_api_client)

    assert cluster.reconcile(key).result == "succeeded"

    status = cluster.get(key)["status"]
    assert status["phase"] == "Ready"
    assert {f: status[f] for f in ("keycloakReady", "gitlabReady", "harborReady", "argoCDReady")} == {
        "keycloakReady": True,
        "gitlabReady": True,
        "harborReady": True,
        "argoCDReady": True,
    }


def test_keycloak_login_is_reused_across_reconciles(
    cluster: Cluster,
    kube_install_crd: Callable[..., dict[str, Any]],
    systems: dict[str, Any],
    kube_api_client,
) -> None:
    kube_install_crd(CRDS / "softwaredeliveryplatforms.polycrate.io.yaml")
    key = _platform(cluster, systems, kube_api_client)
    grants_before = systems["keycloak"].token_grants

    for _ in range(3):
        assert cluster.reconcile(key).result == "succeeded"

    assert systems["keycloak"].token_grants - grants_before == 1


def test_wrong_gitlab_token_is_a_permanent_error_naming_gitlab_and_the_fix(
    cluster: Cluster,
    kube_install_crd: Callable[..., dict[str, Any]],
    systems: dict[str, Any],
    kube_api_client,
) -> None:
    kube_install_crd(CRDS / "softwaredeliveryplatforms.polycrate.io.yaml")
    key = _platform(cluster, systems, kube_api_client, gitlab_token="glpat-wrong-token")

    outcome = cluster.reconcile(key)

    assert outcome.result == "failed"
    status = cluster.get(key)["status"]
    assert status["phase"] == "Error"
    assert (status["gitlabReady"], status["keycloakReady"], status["harborReady"]) == (False, True, True)
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert "GitLab" in ready["message"] and "credentialsRef" in ready["message"]
    assert "glpat-wrong-token" not in ready["message"]


def test_harbor_outage_is_retried_and_shows_which_system_is_down(
    cluster: Cluster,
    kube_install_crd: Callable[..., dict[str, Any]],
    systems: dict[str, Any],
    kube_api_client,
) -> None:
    kube_install_crd(CRDS / "softwaredeliveryplatforms.polycrate.io.yaml")
    key = _platform(cluster, systems, kube_api_client)
    systems["harbor"].set_faults(outage_seconds=60)

    outcome = cluster.reconcile(key)

    assert outcome.result == "retrying"
    assert outcome.countdown is not None and outcome.countdown >= 4
    assert cluster.get(key)["status"]["harborReady"] is False


def test_missing_secret_names_the_secret(
    cluster: Cluster,
    kube_install_crd: Callable[..., dict[str, Any]],
    systems: dict[str, Any],
    kube_api_client,
) -> None:
    kube_install_crd(CRDS / "softwaredeliveryplatforms.polycrate.io.yaml")
    key = _platform(cluster, systems, kube_api_client)
    kubernetes.client.CoreV1Api(kube_api_client).delete_namespaced_secret("argocd-creds", cluster.namespace)

    assert cluster.reconcile(key).result == "failed"
    ready = next(c for c in cluster.get(key)["status"]["conditions"] if c["type"] == "Ready")
    assert f"Secret {cluster.namespace}/argocd-creds not found" in ready["message"]


def test_no_credential_reaches_logs_redis_status_or_events(
    cluster: Cluster,
    kube_install_crd: Callable[..., dict[str, Any]],
    systems: dict[str, Any],
    kube_api_client,
    redis_client: redis.Redis,
    caplog: pytest.LogCaptureFixture,
) -> None:
    kube_install_crd(CRDS / "softwaredeliveryplatforms.polycrate.io.yaml")
    marker = "glpat-MARKER-5ecret-value"
    systems["gitlab"].tokens[marker] = 1  # a valid token for the administrator
    caplog.set_level(logging.DEBUG)
    key = _platform(cluster, systems, kube_api_client, gitlab_token=marker)
    systems["harbor"].set_faults(outage_seconds=60)  # a failure path too, with its messages

    cluster.reconcile(key)

    secrets = [
        marker,
        systems["keycloak"].client_secret,
        systems["harbor"].admin_password,
        systems["argocd"].token,
    ]
    texts = [record.getMessage() for record in caplog.records] + [
        str(record.args) for record in caplog.records
    ]
    texts += [k.decode() for k in redis_client.keys("*")]
    for value in redis_client.keys("*"):
        if redis_client.type(value) == b"string":
            texts.append(repr(redis_client.get(value)))
    obj = cluster.get(key)
    texts.append(repr(obj["status"]))
    texts += [repr(event) for event in cluster.events(key)]
    for secret in secrets:
        assert not any(secret in text for text in texts), "a credential leaked"


def test_spec_example_platform_without_its_secrets_ends_in_error_naming_the_secret(
    cluster: Cluster, kube_install_crd: Callable[..., dict[str, Any]]
) -> None:
    kube_install_crd(CRDS / "softwaredeliveryplatforms.polycrate.io.yaml")
    obj = spec_example_of("SoftwareDeliveryPlatform")
    obj["metadata"]["namespace"] = cluster.namespace
    key = cluster.create("softwaredeliveryplatforms", obj)

    assert cluster.reconcile(key).result == "failed"

    ready = next(c for c in cluster.get(key)["status"]["conditions"] if c["type"] == "Ready")
    assert f"Secret {cluster.namespace}/keycloak-creds not found" in ready["message"]
