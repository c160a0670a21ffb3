"""Reading and writing the Kubernetes objects behind keys, as JSON, with errors the runtime can act on.

A worker reads the current object of a key right before acting on it (never a cached copy), and
writes back only small patches: status, finalizers, Events. Requests go through the configured
`ApiClient` (kubeconfig auth, TLS) but bodies stay plain dicts. Every failure is sorted for
the retry policy: no answer, 429 and 5xx are `TransientError`; a 409 is `ConflictError` (a
transient error that read-modify-write loops catch and redo at once); 401/403/400/422 are
`PermanentError` the user has to fix (RBAC, an object the API server rejects).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import urllib3
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from polycrate.errors import PermanentError, TransientError
from polycrate.fence import check_fence_for
from polycrate.keys import ObjectKey
from polycrate.kinds import discovery_sources
from polycrate.kubehttp import resource_path, retry_after, serialize_request, status_details
from polycrate.models import GROUP, KINDS, VERSION
from polycrate.rbac import RBAC_HINT

JsonObject = dict[str, Any]
MERGE_PATCH = "application/merge-patch+json"

_TRANSIENT_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


class ConflictError(TransientError):
    """409: the object changed since it was read (or already exists); read again and redo."""

    def __init__(self, message: str, *, reason: str = "Conflict"):
        super().__init__(message, status_code=409)
        self.reason = reason


class NotFoundError(PermanentError):
    """404: the object (or its kind) does not exist."""

    def __init__(self, message: str):
        super().__init__(message, reason="NotFound", status_code=404)


@dataclass(frozen=True)
class Resource:
    """Where the objects of a key kind live in the API."""

    group: str
    version: str
    plural: str
    namespaced: bool
    status_subresource: bool = False

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(self, namespace: str, name: str | None = None, subresource: str | None = None) -> str:
        """The object's (or collection's) path; a namespaced resource without namespace: all namespaces."""
        scope = namespace if self.namespaced else ""
        return resource_path(self.group, self.version, self.plural, scope, name, subresource)


# Discovery sources, named as the watcher enqueues them (from the table of kinds).
SOURCE_RESOURCES: dict[str, Resource] = {
    entry.key_kind: Resource(entry.group, entry.version, entry.plural, entry.namespaced)
    for entry in discovery_sources()
}

EVENTS = Resource("", "v1", "events", True)


def resource_for(kind: str) -> Resource:
    """The API resource of a key kind: a polycrate.io kind or a discovery source."""
    info = KINDS.get(kind)
    if info is not None:
        return Resource(GROUP, VERSION, info.plural, info.namespaced, status_subresource=True)
    try:
        return SOURCE_RESOURCES[kind]
    except KeyError:
        raise PermanentError(
            f"no Kubernetes resource is known for kind {kind!r}", reason="UnknownKind"
        ) from None


class ObjectAPI:
    """JSON get/patch/create against the API server of an `ApiClient`.

    With `namespaces` (POLYCRATE_NAMESPACES) a list "in every namespace" lists each of them
    instead, which is all a namespace-scoped Role allows.
    """

    def __init__(
        self, api_client: ApiClient, *, request_timeout: float = 30.0, namespaces: Sequence[str] = ()
    ) -> None:
        self.api_client = api_client
        self._request_timeout = request_timeout
        self.namespaces = tuple(namespaces)

    @property
    def host(self) -> str:
        return str(self.api_client.configuration.host)

    def request(
        self,
        method: str,
        path: str,
        *,
        body: JsonObject | None = None,
        content_type: str = "application/json",
        query: Mapping[str, str] | None = None,
    ) -> JsonObject:
        check_fence_for(method)
        method, url, header_params, serialized_body = serialize_request(
            self.api_client,
            method,
            path,
            query=list((query or {}).items()),
            body=body,
            content_type=content_type,
        )
        what = f"{method} {path}"
        try:
            response = self.api_client.call_api(
                method,
                url,
                header_params=header_params,
                body=serialized_body,
                _request_timeout=self._request_timeout,
            )
            payload = response.read()
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise TransientError(
                f"Kubernetes API {self.host} unreachable ({what}): {type(exc).__name__}"
            ) from exc
        except ApiException as exc:  # the client wraps TLS and protocol failures this way
            raise TransientError(f"Kubernetes API {self.host} failed ({what}): {exc.reason}") from exc
        status = response.status
        if status < 400:
            return json.loads(payload) if payload else {}
        reason, message = status_details(payload)
        text = f"{what}: {status} {reason or 'Error'}" + (f": {message}" if message else "")
        if status == 404:
            raise NotFoundError(text)
        if status == 409:
            raise ConflictError(text, reason=reason or "Conflict")
        if status in _TRANSIENT_STATUS:
            raise TransientError(text, retry_after=retry_after(response.headers), status_code=status)
        permanent_reason = {401: "Unauthorized", 403: "Forbidden"}.get(status, reason or "Invalid")
        if status == 403:
            text += RBAC_HINT  # the server's message names user, verb and resource: what to grant
        raise PermanentError(text, reason=permanent_reason, status_code=status)

    def get(self, key: ObjectKey) -> JsonObject | None:
        """The current object of `key`, or None when it does not exist (any more)."""
        try:
            return self.request("GET", resource_for(key.kind).path(key.namespace, key.name))
        except NotFoundError:
            return None

    def patch(
        self,
        key: ObjectKey,
        body: JsonObject,
        *,
        subresource: str | None = None,
        content_type: str = MERGE_PATCH,
    ) -> JsonObject:
        path = resource_for(key.kind).path(key.namespace, key.name, subresource)
        return self.request("PATCH", path, body=body, content_type=content_type)

    def list(
        self, kind: str, namespace: str = "", *, label_selector: str = "", field_selector: str = ""
    ) -> list[JsonObject]:
        """All objects of a key kind, in `namespace` or ("" for a namespaced kind) everywhere.

        Follows `continue` tokens so a large list arrives whole, one page of 500 at a time.
        """
        resource = resource_for(kind)
        if resource.namespaced and not namespace and self.namespaces:
            return [
                item
                for served in self.namespaces
                for item in self.list(
                    kind, served, label_selector=label_selector, field_selector=field_selector
                )
            ]
        base = resource.path(namespace)
        query: dict[str, str] = {"limit": "500"}
        if label_selector:
            query["labelSelector"] = label_selector
        if field_selector:
            query["fieldSelector"] = field_selector
        items: list[JsonObject] = []
        while True:
            page = self.request("GET", base, query=query)
            items += page.get("items") or []
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                return items
            query = {**query, "continue": token}

    def create(self, kind: str, obj: JsonObject) -> JsonObject:
        """Create `obj` (ConflictError with reason AlreadyExists when its name is taken)."""
        namespace = (obj.get("metadata") or {}).get("namespace") or ""
        return self.request("POST", resource_for(kind).path(namespace), body=obj)

    def delete(self, key: ObjectKey) -> bool:
        """Delete the object of `key`; False when it was already gone."""
        try:
            self.request("DELETE", resource_for(key.kind).path(key.namespace, key.name))
        except NotFoundError:
            return False
        return True

    def create_event(self, namespace: str, event: JsonObject) -> JsonObject:
        return self.request("POST", EVENTS.path(namespace), body=event)

    def get_event(self, namespace: str, name: str) -> JsonObject | None:
        try:
            return self.request("GET", EVENTS.path(namespace, name))
        except NotFoundError:
            return None

    def patch_event(self, namespace: str, name: str, body: JsonObject) -> JsonObject:
        return self.request("PATCH", EVENTS.path(namespace, name), body=body, content_type=MERGE_PATCH)

    def list_events(self, namespace: str, *, field_selector: str = "") -> list[JsonObject]:
        query = {"fieldSelector": field_selector} if field_selector else None
        return list(self.request("GET", EVENTS.path(namespace), query=query).get("items") or [])
