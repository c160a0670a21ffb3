"""The typed operations the flows need: the objects behind keys, read fresh and patched small.

A worker reads the current object of a key right before acting on it (never a cached copy), and
writes back only small patches: status, finalizers, Events. Errors are the client's
(`polycrate.kubeclient.errors`): a missing object is `NotFound` (or None from `get`), a 409 a
transient `Conflict` that read-modify-write loops catch and redo at once, RBAC denials a
permanent `Forbidden` naming the permission to grant.
"""

from __future__ import annotations

from collections.abc import Sequence

from polycrate.keys import ObjectKey
from polycrate.kubeclient.api import MERGE_PATCH, JsonObject, KubeClient
from polycrate.kubeclient.errors import NotFound
from polycrate.kubeclient.resources import EVENTS, resource_for

PAGE_SIZE = 500


class ObjectAPI:
    """Get/patch/list/create/delete the objects of key kinds, and the Events about them.

    With `namespaces` (POLYCRATE_NAMESPACES) a list "in every namespace" lists each of them
    instead, which is all a namespace-scoped Role allows.
    """

    def __init__(self, client: KubeClient, *, namespaces: Sequence[str] = ()) -> None:
        self.client = client
        self.namespaces = tuple(namespaces)

    @property
    def host(self) -> str:
        return self.client.host

    def get(self, key: ObjectKey) -> JsonObject | None:
        """The current object of `key`, or None when it does not exist (any more)."""
        try:
            return self.client.get(resource_for(key.kind).path(key.namespace, key.name))
        except NotFound:
            return None

    def patch(
        self,
        key: ObjectKey,
        body: JsonObject | list[JsonObject],
        *,
        subresource: str | None = None,
        content_type: str = MERGE_PATCH,
    ) -> JsonObject:
        path = resource_for(key.kind).path(key.namespace, key.name, subresource)
        return self.client.patch(path, body, content_type=content_type)

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
        query: dict[str, str] = {"limit": str(PAGE_SIZE)}
        if label_selector:
            query["labelSelector"] = label_selector
        if field_selector:
            query["fieldSelector"] = field_selector
        items: list[JsonObject] = []
        while True:
            page = self.client.get(base, query=query)
            items += page.get("items") or []
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                return items
            query = {**query, "continue": token}

    def create(self, kind: str, obj: JsonObject) -> JsonObject:
        """Create `obj` (Conflict with reason AlreadyExists when its name is taken)."""
        namespace = (obj.get("metadata") or {}).get("namespace") or ""
        return self.client.create(resource_for(kind).path(namespace), obj)

    def delete(self, key: ObjectKey) -> bool:
        """Delete the object of `key`; False when it was already gone."""
        try:
            self.client.delete(resource_for(key.kind).path(key.namespace, key.name))
        except NotFound:
            return False
        return True

    def create_event(self, namespace: str, event: JsonObject) -> JsonObject:
        return self.client.create(EVENTS.path(namespace), event)

    def get_event(self, namespace: str, name: str) -> JsonObject | None:
        try:
            return self.client.get(EVENTS.path(namespace, name))
        except NotFound:
            return None

    def patch_event(self, namespace: str, name: str, body: JsonObject) -> JsonObject:
        return self.client.patch(EVENTS.path(namespace, name), body)

    def list_events(self, namespace: str, *, field_selector: str = "") -> list[JsonObject]:
        query = {"fieldSelector": field_selector} if field_selector else None
        return list(self.client.get(EVENTS.path(namespace), query=query).get("items") or [])
