"""Where the objects of a kind live in the API, derived from the table of kinds.

One path builder for the whole operator: `/apis/<group>/<version>[/namespaces/<ns>]/<plural>`
(`/api/<version>` for the core group), so a watch, a get and a patch of the same kind can never
address different places. Resources come from `polycrate.kinds.KIND_TABLE` (the polycrate.io
kinds and the discovery sources); the few built-in kinds the operator uses for itself (Events,
Leases, the Secrets holding credentials) are named here.
"""

from __future__ import annotations

from dataclasses import dataclass

from polycrate.errors import PermanentError
from polycrate.kinds import KIND_TABLE, discovery_sources


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
SECRETS = Resource("", "v1", "secrets", True)  # credentials, read at use (polycrate.secrets)
LEASES = Resource("coordination.k8s.io", "v1", "leases", True)


def resource_for(kind: str) -> Resource:
    """The API resource of a key kind: a polycrate.io kind or a discovery source."""
    entry = KIND_TABLE.get(kind)
    if entry is None:
        raise PermanentError(f"no Kubernetes resource is known for kind {kind!r}", reason="UnknownKind")
    return Resource(entry.group, entry.version, entry.plural, entry.namespaced, entry.status_subresource)
