"""ObjectAPI's generic list/create/delete against the Kubernetes API (emulator or real cluster)."""

from __future__ import annotations

import kubernetes
import pytest

from polycrate.keys import ObjectKey
from polycrate.kubeclient.api import KubeClient
from polycrate.kubeclient.errors import Conflict
from polycrate.kubeclient.objects import ObjectAPI


def _secret(namespace: str, name: str, labels: dict[str, str] | None = None) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace, "labels": labels or {}},
        "stringData": {"organization": "acme-corp"},
    }


def test_create_list_by_label_and_delete(
    kube_api_client: kubernetes.client.ApiClient, kube_namespace: str
) -> None:
    objects = ObjectAPI(KubeClient(kube_api_client))
    for index in range(3):
        objects.create(
            "Secret",
            _secret(
                kube_namespace, f"app-{index}", {"polycrate.io/type": "meta" if index % 2 == 0 else "other"}
            ),
        )

    meta = objects.list("Secret", kube_namespace, label_selector="polycrate.io/type=meta")
    assert sorted(o["metadata"]["name"] for o in meta) == ["app-0", "app-2"]
    everywhere = [
        o["metadata"]["name"] for o in objects.list("Secret") if o["metadata"]["namespace"] == kube_namespace
    ]
    assert sorted(everywhere) == ["app-0", "app-1", "app-2"]

    with pytest.raises(Conflict) as duplicate:
        objects.create("Secret", _secret(kube_namespace, "app-0"))
    assert duplicate.value.reason == "AlreadyExists"
    assert objects.delete(ObjectKey("Secret", kube_namespace, "app-0")) is True
    assert objects.delete(ObjectKey("Secret", kube_namespace, "app-0")) is False


def test_a_list_in_every_namespace_lists_only_the_served_namespaces(
    kube_api_client: kubernetes.client.ApiClient, kube_namespace: str
) -> None:
    core = kubernetes.client.CoreV1Api(kube_api_client)
    other = f"{kube_namespace}-other"
    core.create_namespace({"metadata": {"name": other}})
    try:
        admin = ObjectAPI(KubeClient(kube_api_client))
        admin.create("Secret", _secret(kube_namespace, "served"))
        admin.create("Secret", _secret(other, "not-served"))

        scoped = ObjectAPI(KubeClient(kube_api_client), namespaces=[kube_namespace])

        assert [o["metadata"]["name"] for o in scoped.list("Secret")] == ["served"]
        assert {o["metadata"]["name"] for o in scoped.list("Secret", other)} == {"not-served"}, (
            "an explicit one"
        )
    finally:
        core.delete_namespace(other)
