"""One way to address and read the Kubernetes API over HTTP, shared by every client of it.

The watcher's `KubeApi`, the workers' `ObjectAPI` and the CLI's `polycrate.kube` helpers build
resource paths, serialise requests (the official client's auth, TLS and proxy setup) and read a
failed response's Status and Retry-After here, so the three cannot drift apart: a path built one
way for a watch and another for a get, or a Retry-After honoured by one and ignored by another.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from kubernetes.client import ApiClient

from polycrate.httppolicy import parse_retry_after

JSON = "application/json"


def resource_path(
    group: str,
    version: str,
    plural: str,
    namespace: str = "",
    name: str | None = None,
    subresource: str | None = None,
) -> str:
    """`/apis/<group>/<version>[/namespaces/<ns>]/<plural>[/<name>[/<subresource>]]` (`/api/v1` for core).

    Without a namespace: the cluster-scoped collection, or a namespaced resource in all namespaces.
    """
    path = f"/apis/{group}/{version}" if group else f"/api/{version}"
    if namespace:
        path += f"/namespaces/{namespace}"
    path += f"/{plural}"
    if name is not None:
        path += f"/{name}"
        if subresource:
            path += f"/{subresource}"
    return path


def serialize_request(
    api_client: ApiClient,
    method: str,
    path: str,
    *,
    query: list[tuple[str, str]] | None = None,
    body: Any = None,
    content_type: str = JSON,
    accept: str = JSON,
) -> tuple[str, str, dict[str, str], Any]:
    """(method, url, headers, body) of a request, authenticated as the client's configuration says."""
    headers = {"Accept": accept}
    if body is not None:
        headers["Content-Type"] = content_type
    method, url, header_params, serialized_body, _ = api_client.param_serialize(
        method,
        path,
        query_params=query or None,
        header_params=headers,
        body=body,
        auth_settings=["BearerToken"],
    )
    return method, url, header_params, serialized_body


def status_details(payload: bytes) -> tuple[str, str]:
    """(reason, message) of a Kubernetes Status body; the message never includes request bodies."""
    try:
        status = json.loads(payload or b"{}")
        return str(status.get("reason") or ""), str(status.get("message") or "")
    except (ValueError, AttributeError):
        return "", payload[:200].decode("utf-8", "replace")


def retry_after(headers: Mapping[str, str] | None) -> float | None:
    """The seconds a 429/503 asks to wait (Retry-After as seconds or an HTTP date), or None."""
    return parse_retry_after((headers or {}).get("Retry-After"))
