"""SecretReader's scope: a namespaced operator never reads Secrets outside its namespaces."""

from __future__ import annotations

import kubernetes
import pytest

from polycrate.errors import PermanentError
from polycrate.kubeclient.api import KubeClient
from polycrate.secrets import SecretReader


def test_a_secret_outside_the_served_namespaces_is_a_permanent_error_naming_the_setting(
    kube_api_client: kubernetes.client.ApiClient, kube_namespace: str
) -> None:
    core = kubernetes.client.CoreV1Api(kube_api_client)
    core.create_namespaced_secret(
        kube_namespace, {"metadata": {"name": "creds"}, "stringData": {"token": "t"}}
    )
    reader = SecretReader(KubeClient(kube_api_client), namespaces=["team-a"])

    with pytest.raises(PermanentError) as outside:
        reader.get(kube_namespace, "creds", "token")

    assert outside.value.reason == "OutsideNamespaces"
    assert f"Secret {kube_namespace}/creds is outside the namespaces" in str(outside.value)
    assert "POLYCRATE_NAMESPACES=team-a" in str(outside.value)
    reader = SecretReader(KubeClient(kube_api_client), namespaces=[kube_namespace])
    assert reader.get(kube_namespace, "creds", "token") == "t"
