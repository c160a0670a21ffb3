"""Small helpers the watcher tests use to shape the cluster: CRDs, objects, waiting."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import yaml

from watcher.kubeapi import KubeApi, KubeApiError

CRD_DIRECTORY = Path(__file__).resolve().parents[2] / "deploy" / "crds"
CRD_PATH = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"

T = TypeVar("T")


def install_polycrate_crd(api: KubeApi, plural: str) -> None:
    """Install one generated polycrate.io CRD from deploy/crds."""
    crd = yaml.safe_load((CRD_DIRECTORY / f"{plural}.polycrate.io.yaml").read_text())
    api.create(CRD_PATH, crd)


def velero_backup_crd() -> dict[str, Any]:
    """A velero.io/v1 Backup CRD shaped like Velero's (schema trimmed to what tests need)."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "backups.velero.io"},
        "spec": {
            "group": "velero.io",
            "scope": "Namespaced",
            "names": {"kind": "Backup", "plural": "backups", "singular": "backup", "listKind": "BackupList"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
                    },
                    "subresources": {"status": {}},
                }
            ],
        },
    }


def ensure_namespace(api: KubeApi, name: str) -> None:
    try:
        api.create(
            "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
        )
    except KubeApiError as exc:
        if exc.code != 409:
            raise


def create_config_map(api: KubeApi, namespace: str, name: str, data: dict[str, str] | None = None) -> dict:
    ensure_namespace(api, namespace)
    return api.create(
        f"/api/v1/namespaces/{namespace}/configmaps",
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data or {}},
    )


def update_config_map(api: KubeApi, namespace: str, name: str, data: dict[str, str]) -> dict:
    path = f"/api/v1/namespaces/{namespace}/configmaps/{name}"
    current = api.get(path)
    current["data"] = data
    return api.replace(path, current)


def delete_config_map(api: KubeApi, namespace: str, name: str) -> None:
    api.request("DELETE", f"/api/v1/namespaces/{namespace}/configmaps/{name}")


def wait_until(
    condition: Callable[[], T],
    timeout: float = 10.0,
    message: str = "condition",
    state: Callable[[], object] | None = None,
) -> T:
    """Poll `condition` until it returns something truthy; fail the test after `timeout`.

    `state` describes what was seen instead, for the failure message.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            seen = f"; saw {state()!r}" if state is not None else ""
            raise AssertionError(f"timed out after {timeout} s waiting for {message}{seen}")
        time.sleep(0.02)
