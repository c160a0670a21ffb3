"""Small helpers the watcher tests use to shape the cluster: CRDs, objects, waiting."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from polycrate.kubeclient.api import KubeClient
from polycrate.kubeclient.errors import Conflict

CRD_DIRECTORY = Path(__file__).resolve().parents[2] / "deploy" / "crds"

T = TypeVar("T")


def polycrate_crd(plural: str) -> Path:
    """The generated CRD of one polycrate.io kind (for the `kube_install_crd` fixture)."""
    return CRD_DIRECTORY / f"{plural}.polycrate.io.yaml"


def ensure_namespace(api: KubeClient, name: str) -> None:
    with contextlib.suppress(Conflict):  # it exists already
        api.create(
            "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
        )


def create_config_map(api: KubeClient, namespace: str, name: str, data: dict[str, str] | None = None) -> dict:
    ensure_namespace(api, namespace)
    return api.create(
        f"/api/v1/namespaces/{namespace}/configmaps",
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data or {}},
    )


def update_config_map(api: KubeClient, namespace: str, name: str, data: dict[str, str]) -> dict:
    path = f"/api/v1/namespaces/{namespace}/configmaps/{name}"
    current = api.get(path)
    current["data"] = data
    return api.replace(path, current)


def delete_config_map(api: KubeClient, namespace: str, name: str) -> None:
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
