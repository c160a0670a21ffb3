"""The resource table: which kinds the emulated API server serves, and its discovery documents.

A `ResourceType` is one servable (group, version, plural). The built-in kinds are fixed; every
installed CustomResourceDefinition adds one entry per served version, all sharing one storage
key `(group, plural)` so an object written through v1beta1 reads back through v1. The table
is replaced copy-on-write, so discovery and routing read a consistent table without locks
while a CRD is being installed. Discovery answers in both forms clients ask for: the legacy
documents (/api, /apis, APIResourceList) and the aggregated `apidiscovery.k8s.io/v2` lists.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

ALL_VERBS: tuple[str, ...] = (
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
)
STATUS_VERBS: tuple[str, ...] = ("get", "patch", "update")

StorageKey = tuple[str, str]


@dataclass(frozen=True)
class ResourceType:
    """One servable resource at one version."""

    group: str
    version: str
    plural: str
    singular: str
    kind: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    verbs: tuple[str, ...] = ALL_VERBS
    status_subresource: bool = False
    # Built-ins without `metadata.generation` (ConfigMap, Secret, Namespace, ...) never get one.
    has_generation: bool = False
    # Field selector labels beyond metadata.name/metadata.namespace, as the real server allows.
    field_labels: tuple[str, ...] = ()
    # Custom resources only: the CRD's name, schema and printer columns for this version.
    crd_name: str | None = None
    schema: dict[str, Any] | None = field(default=None, compare=False, hash=False)
    printer_columns: tuple[dict[str, Any], ...] = field(default=(), compare=False, hash=False)
    # Subresources other than status, with their verbs (serviceaccounts/token: create).
    extra_subresources: tuple[tuple[str, tuple[str, ...]], ...] = ()

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def storage_key(self) -> StorageKey:
        return (self.group, self.plural)

    @property
    def is_custom(self) -> bool:
        return self.crd_name is not None

    @property
    def list_kind(self) -> str:
        return f"{self.kind}List"

    @property
    def scope(self) -> str:
        return "Namespaced" if self.namespaced else "Cluster"


def _core(plural: str, kind: str, namespaced: bool = True, **extra: Any) -> ResourceType:
    return ResourceType("", "v1", plural, kind.lower(), kind, namespaced, **extra)


BUILTIN_RESOURCES: tuple[ResourceType, ...] = (
    _core(
        "namespaces",
        "Namespace",
        namespaced=False,
        short_names=("ns",),
        status_subresource=True,
        field_labels=("status.phase",),
    ),
    _core(
        "nodes",
        "Node",
        namespaced=False,
        short_names=("no",),
        status_subresource=True,
        field_labels=("spec.unschedulable",),
    ),
    _core(
        "pods",
        "Pod",
        short_names=("po",),
        categories=("all",),
        status_subresource=True,
        field_labels=(
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        ),
    ),
    _core("services", "Service", short_names=("svc",), categories=("all",), status_subresource=True),
    _core("endpoints", "Endpoints", short_names=("ep",)),
    _core("secrets", "Secret", field_labels=("type",)),
    _core("configmaps", "ConfigMap", short_names=("cm",)),
    _core(
        "events",
        "Event",
        short_names=("ev",),
        field_labels=(
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ),
    ),
    ResourceType(
        "networking.k8s.io",
        "v1",
        "ingresses",
        "ingress",
        "Ingress",
        True,
        short_names=("ing",),
        status_subresource=True,
        has_generation=True,
    ),
    _core(
        "serviceaccounts", "ServiceAccount", short_names=("sa",), extra_subresources=(("token", ("create",)),)
    ),
    ResourceType("discovery.k8s.io", "v1", "endpointslices", "endpointslice", "EndpointSlice", True),
    ResourceType("coordination.k8s.io", "v1", "leases", "lease", "Lease", True),
    ResourceType("rbac.authorization.k8s.io", "v1", "roles", "role", "Role", True),
    ResourceType("rbac.authorization.k8s.io", "v1", "rolebindings", "rolebinding", "RoleBinding", True),
    ResourceType("rbac.authorization.k8s.io", "v1", "clusterroles", "clusterrole", "ClusterRole", False),
    ResourceType(
        "rbac.authorization.k8s.io",
        "v1",
        "clusterrolebindings",
        "clusterrolebinding",
        "ClusterRoleBinding",
        False,
    ),
    ResourceType(
        "apiextensions.k8s.io",
        "v1",
        "customresourcedefinitions",
        "customresourcedefinition",
        "CustomResourceDefinition",
        False,
        short_names=("crd", "crds"),
        categories=("api-extensions",),
        status_subresource=True,
        has_generation=True,
    ),
)

CRD_RESOURCE = BUILTIN_RESOURCES[-1]
NAMESPACE_RESOURCE = BUILTIN_RESOURCES[0]

_VERSION_RE = re.compile(r"^v(\d+)(?:(alpha|beta)(\d+))?$")


def version_priority(version: str) -> tuple[int, int, int, str]:
    """Sort key giving Kubernetes' version preference: GA > beta > alpha, higher first, then others."""
    match = _VERSION_RE.match(version)
    if not match:
        return (3, 0, 0, version)
    major, stage, minor = int(match[1]), match[2], int(match[3] or 0)
    stage_rank = {None: 0, "beta": 1, "alpha": 2}[stage]
    return (stage_rank, -major, -minor, "")


def resource_types_from_crd(crd: dict[str, Any]) -> list[ResourceType]:
    """The servable resources of a (validated) CRD, one per served version."""
    spec = crd["spec"]
    names = spec["names"]
    kind = names["kind"]
    plural = names["plural"]
    types: list[ResourceType] = []
    for version in spec["versions"]:
        if not version.get("served", True):
            continue
        subresources = version.get("subresources") or {}
        schema = (version.get("schema") or {}).get("openAPIV3Schema")
        types.append(
            ResourceType(
                group=spec["group"],
                version=version["name"],
                plural=plural,
                singular=names.get("singular") or kind.lower(),
                kind=kind,
                namespaced=spec.get("scope", "Namespaced") == "Namespaced",
                short_names=tuple(names.get("shortNames") or ()),
                categories=tuple(names.get("categories") or ()),
                status_subresource="status" in subresources,
                has_generation=True,
                field_labels=tuple(
                    selectable["jsonPath"].lstrip(".") for selectable in version.get("selectableFields") or ()
                ),
                crd_name=crd["metadata"]["name"],
                schema=schema,
                printer_columns=tuple(version.get("additionalPrinterColumns") or ()),
            )
        )
    return types


class ResourceRegistry:
    """Routing table from (group, version, plural) to `ResourceType`, built-ins plus CRDs."""

    def __init__(self) -> None:
        self._custom: dict[str, tuple[ResourceType, ...]] = {}
        self._table: dict[tuple[str, str, str], ResourceType] = {}
        self._rebuild()

    def _rebuild(self) -> None:
        table = {(rt.group, rt.version, rt.plural): rt for rt in BUILTIN_RESOURCES}
        for types in self._custom.values():
            for rt in types:
                table.setdefault((rt.group, rt.version, rt.plural), rt)
        self._table = table

    def reset(self) -> None:
        self._custom = {}
        self._rebuild()

    def install_crd(self, crd: dict[str, Any]) -> None:
        custom = dict(self._custom)
        custom[crd["metadata"]["name"]] = tuple(resource_types_from_crd(crd))
        self._custom = custom
        self._rebuild()

    def remove_crd(self, name: str) -> None:
        custom = dict(self._custom)
        custom.pop(name, None)
        self._custom = custom
        self._rebuild()

    def lookup(self, group: str, version: str, plural: str) -> ResourceType | None:
        return self._table.get((group, version, plural))

    def versions_of(self, storage_key: StorageKey) -> list[ResourceType]:
        return [rt for rt in self._table.values() if rt.storage_key == storage_key]

    def groups(self) -> list[tuple[str, list[str]]]:
        """Every group with its versions, preferred version first; core ("") first."""
        by_group: dict[str, set[str]] = {}
        for rt in self._table.values():
            by_group.setdefault(rt.group, set()).add(rt.version)
        builtin_order = {rt.group: index for index, rt in enumerate(BUILTIN_RESOURCES)}
        ordered = sorted(
            by_group, key=lambda group: (group not in builtin_order, builtin_order.get(group, 0), group)
        )
        return [(group, sorted(by_group[group], key=version_priority)) for group in ordered]

    def resources_in(self, group: str, version: str) -> list[ResourceType]:
        return sorted(
            (rt for rt in self._table.values() if rt.group == group and rt.version == version),
            key=lambda rt: rt.plural,
        )


# --- discovery documents -------------------------------------------------------------------


def _group_version_entry(group: str, version: str) -> dict[str, str]:
    return {"groupVersion": f"{group}/{version}", "version": version}


def api_versions(server_address: str) -> dict[str, Any]:
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    }


def api_group(group: str, versions: list[str]) -> dict[str, Any]:
    return {
        "kind": "APIGroup",
        "apiVersion": "v1",
        "name": group,
        "versions": [_group_version_entry(group, version) for version in versions],
        "preferredVersion": _group_version_entry(group, versions[0]),
    }


def api_group_list(registry: ResourceRegistry) -> dict[str, Any]:
    groups = [api_group(group, versions) for group, versions in registry.groups() if group]
    for entry in groups:
        entry.pop("kind")
        entry.pop("apiVersion")
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def _storage_version_hash(rt: ResourceType) -> str:
    return hashlib.sha256(f"{rt.group}/{rt.version}/{rt.kind}".encode()).hexdigest()[:12]


def api_resource_list(registry: ResourceRegistry, group: str, version: str) -> dict[str, Any] | None:
    types = registry.resources_in(group, version)
    if not types:
        return None
    resources: list[dict[str, Any]] = []
    for rt in types:
        entry: dict[str, Any] = {
            "name": rt.plural,
            "singularName": rt.singular,
            "namespaced": rt.namespaced,
            "kind": rt.kind,
            "verbs": list(rt.verbs),
            "storageVersionHash": _storage_version_hash(rt),
        }
        if rt.short_names:
            entry["shortNames"] = list(rt.short_names)
        if rt.categories:
            entry["categories"] = list(rt.categories)
        resources.append(entry)
        if rt.status_subresource:
            resources.append(
                {
                    "name": f"{rt.plural}/status",
                    "singularName": "",
                    "namespaced": rt.namespaced,
                    "kind": rt.kind,
                    "verbs": list(STATUS_VERBS),
                }
            )
        for subresource, verbs in rt.extra_subresources:
            resources.append(
                {
                    "name": f"{rt.plural}/{subresource}",
                    "singularName": "",
                    "namespaced": rt.namespaced,
                    "kind": "TokenRequest",
                    "group": "authentication.k8s.io",
                    "version": "v1",
                    "verbs": list(verbs),
                }
            )
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": f"{group}/{version}" if group else version,
        "resources": resources,
    }


AGGREGATED_DISCOVERY_MEDIA_TYPE = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"


def _aggregated_resource(rt: ResourceType) -> dict[str, Any]:
    response_kind = {"group": rt.group, "version": rt.version, "kind": rt.kind}
    entry: dict[str, Any] = {
        "resource": rt.plural,
        "responseKind": response_kind,
        "scope": rt.scope,
        "singularResource": rt.singular,
        "verbs": list(rt.verbs),
    }
    if rt.short_names:
        entry["shortNames"] = list(rt.short_names)
    if rt.categories:
        entry["categories"] = list(rt.categories)
    subresources = []
    if rt.status_subresource:
        subresources.append(
            {"subresource": "status", "responseKind": response_kind, "verbs": list(STATUS_VERBS)}
        )
    for subresource, verbs in rt.extra_subresources:
        token_kind = {"group": "authentication.k8s.io", "version": "v1", "kind": "TokenRequest"}
        subresources.append({"subresource": subresource, "responseKind": token_kind, "verbs": list(verbs)})
    if subresources:
        entry["subresources"] = subresources
    return entry


def aggregated_discovery(registry: ResourceRegistry, *, core: bool) -> dict[str, Any]:
    """`apidiscovery.k8s.io/v2` APIGroupDiscoveryList for /api (core) or /apis (all groups)."""
    items: list[dict[str, Any]] = []
    for group, versions in registry.groups():
        if (group == "") != core:
            continue
        items.append(
            {
                "metadata": {"name": group, "creationTimestamp": None},
                "versions": [
                    {
                        "version": version,
                        "resources": [
                            _aggregated_resource(rt) for rt in registry.resources_in(group, version)
                        ],
                        "freshness": "Current",
                    }
                    for version in versions
                ],
            }
        )
    return {
        "kind": "APIGroupDiscoveryList",
        "apiVersion": "apidiscovery.k8s.io/v2",
        "metadata": {},
        "items": items,
    }
