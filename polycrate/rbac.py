"""The operator's Kubernetes permissions: one table of every API call, and the RBAC rendered from it.

`PERMISSIONS` lists each (API group, resource[/subresource], verbs, scope) the watcher and the
workers use, with the code that uses it; `deploy/rbac.yaml` is rendered from it
(`polycrate operator rbac`) and a test fails when the two drift, or when the code's own tables
(watch sources, key kinds, discovered kinds, the Lease) need a call the table does not grant.
Adding a watched resource or a write is one entry here. Scopes: `CLUSTER` for cluster-scoped
resources (always a ClusterRole), `WATCHED` for namespaced resources in the namespaces the
operator serves (a ClusterRole, or one Role per namespace with `--namespace`), `OPERATOR` for
the operator's own namespace (the leader Lease), `EVENTS_OF_CLUSTER_OBJECTS` for namespace
`default`, where Events about cluster-scoped objects (Node, Artifact) live.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from polycrate.kinds import discovery_sources
from polycrate.models import GROUP, KINDS

NAME = "polycrate-operator"
SERVICE_ACCOUNT = NAME
DEFAULT_NAMESPACE = "polycrate"
CLUSTER_OBJECT_EVENTS_NAMESPACE = "default"
RBAC_API_VERSION = "rbac.authorization.k8s.io/v1"
# Appended to a 403's message (which names user, verb and resource): where the fix goes.
RBAC_HINT = (
    " (the operator's ServiceAccount lacks this permission: see deploy/rbac.yaml, `polycrate operator rbac`)"
)


class Scope(enum.Enum):
    CLUSTER = "cluster"
    WATCHED = "watched"
    OPERATOR = "operator"
    EVENTS_OF_CLUSTER_OBJECTS = "events-of-cluster-objects"


@dataclass(frozen=True)
class Permission:
    """Verbs on resources of one API group, in one scope, and the code paths that need them."""

    group: str
    resources: tuple[str, ...]
    verbs: tuple[str, ...]
    scope: Scope
    used_by: tuple[str, ...]
    """`module:attribute` of the code making the call; a test checks that each still exists."""

    def grants(self, group: str, resource: str, verb: str) -> bool:
        return self.group == group and resource in self.resources and verb in self.verbs

    def rule(self) -> dict[str, Any]:
        return {"apiGroups": [self.group], "resources": list(self.resources), "verbs": list(self.verbs)}


def _plurals(*, namespaced: bool, discovered: bool | None = None, subresource: str = "") -> tuple[str, ...]:
    suffix = f"/{subresource}" if subresource else ""
    return tuple(
        info.plural + suffix
        for info in KINDS.values()
        if info.namespaced == namespaced and (discovered is None or info.discovered == discovered)
    )


READ = ("get", "list", "watch")
_POLYCRATE_READERS = (
    "watcher.informer:Informer",
    "tasks.dispatch:KindHandler.fetch",
    "polycrate.kubeclient.objects:ObjectAPI.list",
)
_POLYCRATE_PATCHERS = ("tasks.finalizers:ensure_finalizer", "tasks.flows.discovered:apply_discovered")
_STATUS_WRITER = ("tasks.status:StatusWriter",)
_DISCOVERED_WRITERS = ("tasks.flows.discovered:apply_discovered", "tasks.flows.discovered:delete_discovered")


def _discovery_source_reads() -> tuple[Permission, ...]:
    """get/list/watch on every discovery source of the table of kinds, one rule per group and scope."""
    plurals: dict[tuple[str, Scope], list[str]] = {}
    for entry in discovery_sources():
        scope = Scope.WATCHED if entry.namespaced else Scope.CLUSTER
        plurals.setdefault((entry.group, scope), []).append(entry.plural)
    return tuple(
        Permission(
            group, tuple(dict.fromkeys(names)), READ, scope, ("polycrate.kinds:DISCOVERY_SOURCE_ENTRIES",)
        )
        for (group, scope), names in plurals.items()
    )


PERMISSIONS: tuple[Permission, ...] = (
    # polycrate.io: watched and read by key; finalizers, annotations and discovered specs patched;
    # status written through the status subresource; discovered kinds created and deleted.
    Permission(GROUP, _plurals(namespaced=True), READ, Scope.WATCHED, _POLYCRATE_READERS),
    Permission(GROUP, _plurals(namespaced=True), ("patch",), Scope.WATCHED, _POLYCRATE_PATCHERS),
    Permission(
        GROUP, _plurals(namespaced=True, subresource="status"), ("patch",), Scope.WATCHED, _STATUS_WRITER
    ),
    Permission(
        GROUP,
        _plurals(namespaced=True, discovered=True),
        ("create", "delete"),
        Scope.WATCHED,
        _DISCOVERED_WRITERS,
    ),
    Permission(
        GROUP,
        _plurals(namespaced=False),
        (*READ, "create", "delete", "patch"),
        Scope.CLUSTER,
        (*_POLYCRATE_READERS, *_DISCOVERED_WRITERS, "tasks.flows.discovery_apps:ArtifactHandler"),
    ),
    Permission(
        GROUP, _plurals(namespaced=False, subresource="status"), ("patch",), Scope.CLUSTER, _STATUS_WRITER
    ),
    # Discovery sources: list-watched and read by key (from the table of kinds, below). Secrets
    # are only ever read: the meta Secrets are watched (RBAC cannot narrow a watch to a label),
    # credentials read at use. Ingresses and Nodes carry the operator's cleanup finalizer and
    # (Nodes) the API host id.
    *_discovery_source_reads(),
    Permission("", ("secrets",), READ, Scope.WATCHED, ("polycrate.secrets:SecretReader",)),
    Permission(
        "networking.k8s.io",
        ("ingresses",),
        ("patch",),
        Scope.WATCHED,
        ("tasks.flows.discovery_endpoints:IngressHandler",),
    ),
    Permission("", ("nodes",), ("patch",), Scope.CLUSTER, ("tasks.flows.discovery_endpoints:NodeHandler",)),
    # CRDs are watched only to notice a discovery source's CRD the moment it is installed.
    Permission(
        "apiextensions.k8s.io",
        ("customresourcedefinitions",),
        ("list", "watch"),
        Scope.CLUSTER,
        ("watcher.crd_arrivals:CRD_SOURCE",),
    ),
    # Events: created, and bumped (get + patch) when the same occurrence repeats.
    Permission("", ("events",), ("create", "get", "patch"), Scope.WATCHED, ("tasks.events:EventRecorder",)),
    Permission(
        "",
        ("events",),
        ("create", "get", "patch"),
        Scope.EVENTS_OF_CLUSTER_OBJECTS,
        ("tasks.events:EventRecorder",),
    ),
    # The leader Lease: read, created once, renewed and released by replacing it.
    Permission(
        "coordination.k8s.io",
        ("leases",),
        ("get", "create", "update"),
        Scope.OPERATOR,
        ("watcher.leader:LeaderElector",),
    ),
)


def granted(group: str, resource: str, verb: str, scope: Scope) -> bool:
    """Whether the table grants `verb` on `resource` (`plural` or `plural/subresource`) in `scope`."""
    return any(p.scope == scope and p.grants(group, resource, verb) for p in PERMISSIONS)


# --- rendering -------------------------------------------------------------------------------------


def _labels() -> dict[str, str]:
    return {"app.kubernetes.io/name": NAME, "app.kubernetes.io/part-of": NAME}


def _role(kind: str, name: str, namespace: str | None, rules: Iterable[dict[str, Any]]) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name}
    if namespace is not None:
        metadata["namespace"] = namespace
    metadata["labels"] = _labels()
    return {"apiVersion": RBAC_API_VERSION, "kind": kind, "metadata": metadata, "rules": list(rules)}


def _binding(
    kind: str, name: str, namespace: str | None, role_kind: str, operator_namespace: str
) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name}
    if namespace is not None:
        metadata["namespace"] = namespace
    metadata["labels"] = _labels()
    return {
        "apiVersion": RBAC_API_VERSION,
        "kind": kind,
        "metadata": metadata,
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": SERVICE_ACCOUNT, "namespace": operator_namespace}],
    }


def _rules(scopes: Sequence[Scope]) -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = []
    for permission in PERMISSIONS:
        if permission.scope in scopes and permission.rule() not in rules:
            rules.append(permission.rule())
    return rules


def rbac_manifests(
    operator_namespace: str = DEFAULT_NAMESPACE, namespaces: Sequence[str] = ()
) -> list[dict[str, Any]]:
    """The ServiceAccount and the RBAC objects that grant exactly `PERMISSIONS`.

    Without `namespaces` the operator serves the whole cluster: one ClusterRole and
    ClusterRoleBinding, plus a Role for the Lease. With `namespaces` (`--namespace`), the
    namespaced rules become a Role and RoleBinding in each of them; cluster-scoped kinds (Node,
    Artifact, CRDs) keep a ClusterRole.
    """
    service_account = {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": SERVICE_ACCOUNT, "namespace": operator_namespace, "labels": _labels()},
    }
    manifests: list[dict[str, Any]] = [service_account]
    cluster_scopes = (
        [Scope.CLUSTER] if namespaces else [Scope.CLUSTER, Scope.WATCHED, Scope.EVENTS_OF_CLUSTER_OBJECTS]
    )
    manifests.append(_role("ClusterRole", NAME, None, _rules(cluster_scopes)))
    manifests.append(_binding("ClusterRoleBinding", NAME, None, "ClusterRole", operator_namespace))
    if namespaces:
        watched = list(dict.fromkeys(namespaces))
        for namespace in watched:
            scopes = [Scope.WATCHED]
            if namespace == CLUSTER_OBJECT_EVENTS_NAMESPACE:
                scopes.append(Scope.EVENTS_OF_CLUSTER_OBJECTS)
            manifests.append(_role("Role", NAME, namespace, _rules(scopes)))
            manifests.append(_binding("RoleBinding", NAME, namespace, "Role", operator_namespace))
        if CLUSTER_OBJECT_EVENTS_NAMESPACE not in watched:
            name = f"{NAME}-events"
            manifests.append(
                _role(
                    "Role", name, CLUSTER_OBJECT_EVENTS_NAMESPACE, _rules([Scope.EVENTS_OF_CLUSTER_OBJECTS])
                )
            )
            binding = _binding(
                "RoleBinding", name, CLUSTER_OBJECT_EVENTS_NAMESPACE, "Role", operator_namespace
            )
            manifests.append(binding)
    leader = f"{NAME}-leader-election"
    manifests.append(_role("Role", leader, operator_namespace, _rules([Scope.OPERATOR])))
    manifests.append(_binding("RoleBinding", leader, operator_namespace, "Role", operator_namespace))
    return manifests


HEADER = """\
# Generated by `polycrate operator rbac{arguments}` from polycrate/rbac.py (the table of every
# Kubernetes API call the operator makes); do not edit, regenerate. One ServiceAccount for
# watcher and workers: they list-watch and read, write status, finalizers, Events, the
# discovered polycrate.io objects and the leader Lease; Secrets are only read.
"""


def render_yaml(operator_namespace: str = DEFAULT_NAMESPACE, namespaces: Sequence[str] = ()) -> str:
    arguments = (
        "" if operator_namespace == DEFAULT_NAMESPACE else f" --operator-namespace {operator_namespace}"
    )
    arguments += "".join(f" --namespace {namespace}" for namespace in namespaces)
    documents = rbac_manifests(operator_namespace, namespaces)
    return HEADER.format(arguments=arguments) + yaml.safe_dump_all(
        documents, sort_keys=False, width=110, default_flow_style=None
    )
