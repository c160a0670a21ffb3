"""Run the operator as the ServiceAccount of deploy/, not as an admin: RBAC, token, kubeconfig.

`operator_kubeconfig()` applies the ServiceAccount and RBAC objects rendered from the permission
table (exactly what `deploy/rbac.yaml` holds, or its `--namespace` variant), asks the API server
for a token of that ServiceAccount (TokenRequest, as `kubectl create token` does) and writes a
copy of the admin's kubeconfig whose user is that token. The sandbox, the end-to-end tests and
the benchmarks start operator processes with it, so a call the table does not grant fails
there with the 403 a real cluster would answer; setting up the world stays with the admin.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from kubernetes import dynamic
from kubernetes.client import ApiClient, CoreV1Api
from kubernetes.dynamic.exceptions import NotFoundError

from polycrate.rbac import DEFAULT_NAMESPACE, SERVICE_ACCOUNT, rbac_manifests

TOKEN_SECONDS = 24 * 3600


def apply_rbac(api_client: ApiClient, manifests: Sequence[dict[str, Any]]) -> None:
    """Create or replace each RBAC object (replace, so a rule taken out of the table is gone)."""
    client = dynamic.DynamicClient(api_client)
    core = CoreV1Api(api_client)
    namespaces = {m["metadata"]["namespace"] for m in manifests if m["metadata"].get("namespace")}
    existing = {ns.metadata.name for ns in core.list_namespace().items}
    for namespace in sorted(namespaces - existing):
        core.create_namespace({"metadata": {"name": namespace}})
    for manifest in manifests:
        resource = client.resources.get(api_version=manifest["apiVersion"], kind=manifest["kind"])
        metadata = manifest["metadata"]
        namespace = metadata.get("namespace") if resource.namespaced else None
        try:
            current = resource.get(name=metadata["name"], namespace=namespace)
        except NotFoundError:
            resource.create(body=manifest, namespace=namespace)
            continue
        if manifest["kind"] == "ServiceAccount":
            continue  # replacing it would change its uid and void its tokens
        replacement = {
            **manifest,
            "metadata": {**metadata, "resourceVersion": current.metadata.resourceVersion},
        }
        resource.replace(body=replacement, namespace=namespace)


def service_account_token(api_client: ApiClient, namespace: str, name: str = SERVICE_ACCOUNT) -> str:
    """A bearer token of the ServiceAccount, from the TokenRequest API."""
    request = CoreV1Api(api_client).create_namespaced_service_account_token(
        name, namespace, {"spec": {"audiences": [], "expirationSeconds": TOKEN_SECONDS}}
    )
    return str(request.status.token)


def write_token_kubeconfig(admin_kubeconfig: str | os.PathLike[str], token: str, target: Path) -> Path:
    """The admin's kubeconfig (server, CA, namespace) with every user replaced by `token`."""
    config = yaml.safe_load(Path(admin_kubeconfig).read_text())
    for user in config.get("users") or []:
        user["user"] = {"token": token}
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(yaml.safe_dump(config, sort_keys=False))
    target.chmod(0o600)
    return target


def operator_kubeconfig(
    api_client: ApiClient,
    admin_kubeconfig: str | os.PathLike[str],
    target: Path,
    *,
    operator_namespace: str = DEFAULT_NAMESPACE,
    namespaces: Sequence[str] = (),
    manifests: Sequence[dict[str, Any]] | None = None,
) -> Path:
    """Install the operator's RBAC (or `manifests`, e.g. a narrowed variant) and write its kubeconfig."""
    apply_rbac(
        api_client, manifests if manifests is not None else rbac_manifests(operator_namespace, namespaces)
    )
    token = service_account_token(api_client, operator_namespace)
    return write_token_kubeconfig(admin_kubeconfig, token, target)
