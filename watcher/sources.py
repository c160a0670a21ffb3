"""The table of what the watcher list-watches: the 15 polycrate.io kinds and the discovery sources.

Each `WatchSource` says where a resource lives in the API (group, version, plural), whether it
is namespaced, an optional server-side label selector, and which OperatorConfig discovery
section decides whether and where it is watched. It also names the key kind under which its
objects are enqueued: polycrate.io kinds by their kind name, discovery sources by kind name,
group-qualified where a polycrate.io kind has the same name (velero.io/Backup,
postgresql.cnpg.io/Backup, cert-manager.io/Certificate). With `--namespace` (`in_namespaces`),
each namespaced source becomes one list-watch per namespace, which a namespace-scoped Role
allows where an all-namespaces watch would get 403. Nothing here talks to the cluster; the
table is data.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from polycrate.keys import ObjectKey
from polycrate.models import GROUP, KINDS, VERSION
from polycrate.models.discovery import is_meta_secret

# Fields whose change means "reconcile again" for kinds with a status subresource; a write to
# status alone (the operator's own status writes) leaves all of them untouched.
_DESIRED_STATE_FIELDS = ("generation", "deletionTimestamp", "finalizers", "labels", "annotations")


@dataclass(frozen=True)
class WatchSource:
    """One list-watch: a resource collection and how its events become keys."""

    key_kind: str
    group: str
    version: str
    plural: str
    namespaced: bool
    label_selector: str = ""
    discovery_section: str | None = None
    status_subresource: bool = False
    object_filter: Callable[[dict[str, Any]], bool] | None = None
    """Which listed objects are sources at all, where no server-side selector can say it
    (meta Secrets are also found by a name suffix); the others are never enqueued."""
    metadata_only: bool = False
    """List and watch PartialObjectMetadata: the watcher needs names, labels and versions only,
    and must not hold the data of every Secret in the cluster."""
    section_switch: str | None = None
    """A boolean field of the discovery section that must be on as well (CloudNativePG's `cnpg_enabled`)."""
    section_namespace: str | None = None
    """A field of the discovery section naming the one namespace watched (Velero's `velero_namespace`)."""
    namespace: str = ""
    """Watch only this namespace ("" = all namespaces, or a cluster-scoped resource)."""

    @property
    def identity(self) -> str:
        """One informer per identity: the key kind, plus the namespace when confined to one."""
        return f"{self.key_kind}@{self.namespace}" if self.namespace else self.key_kind

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def group_version_path(self) -> str:
        return f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"

    @property
    def collection_path(self) -> str:
        """The all-namespaces collection (every namespace in one stream), or the one namespace's."""
        if self.namespace:
            return f"{self.group_version_path}/namespaces/{self.namespace}/{self.plural}"
        return f"{self.group_version_path}/{self.plural}"

    @property
    def display_name(self) -> str:
        """`organizations.polycrate.io`, `nodes`: the name kubectl users know."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    def selects(self, obj: dict[str, Any]) -> bool:
        return self.object_filter is None or self.object_filter(obj)

    def key_for(self, obj: dict[str, Any]) -> ObjectKey:
        metadata = obj.get("metadata") or {}
        namespace = str(metadata.get("namespace") or "") if self.namespaced else ""
        return ObjectKey(kind=self.key_kind, namespace=namespace, name=str(metadata["name"]))

    def change_fingerprint(self, obj: dict[str, Any]) -> str:
        """What must differ between two versions of an object for it to be worth a reconcile.

        For kinds with a status subresource that is the desired state (spec via generation,
        deletion, finalizers, labels, annotations), so the operator's own status writes do not
        echo back as work. For everything else any change counts (resourceVersion).
        """
        metadata = obj.get("metadata") or {}
        if not self.status_subresource:
            return str(metadata.get("resourceVersion", ""))
        desired = {field: metadata.get(field) for field in _DESIRED_STATE_FIELDS}
        encoded = json.dumps(desired, sort_keys=True, separators=(",", ":")).encode()
        return hashlib.blake2b(encoded, digest_size=12).hexdigest()


def polycrate_sources() -> tuple[WatchSource, ...]:
    """The 15 polycrate.io kinds, keyed by kind name, all with a status subresource."""
    return tuple(
        WatchSource(
            key_kind=info.kind,
            group=GROUP,
            version=VERSION,
            plural=info.plural,
            namespaced=info.namespaced,
            status_subresource=True,
        )
        for info in KINDS.values()
    )


DISCOVERY_SOURCES: tuple[WatchSource, ...] = (
    WatchSource(
        "Ingress", "networking.k8s.io", "v1", "ingresses", True, discovery_section="endpoint_discovery"
    ),
    # Meta Secrets named `<block>.poly` need not carry a label, so Secrets are watched unselected
    # (metadata only: their data never reaches the watcher) and filtered here; only the meta
    # Secrets' keys are remembered and enqueued. The worker reads the Secret itself, at use.
    WatchSource(
        "Secret",
        "",
        "v1",
        "secrets",
        True,
        discovery_section="app_discovery",
        object_filter=is_meta_secret,
        metadata_only=True,
    ),
    WatchSource("Node", "", "v1", "nodes", False, discovery_section="node_discovery"),
    WatchSource("Pod", "", "v1", "pods", True, discovery_section="artifact_discovery"),
    WatchSource(
        "velero.io/Backup",
        "velero.io",
        "v1",
        "backups",
        True,
        discovery_section="backup_discovery",
        section_namespace="velero_namespace",
    ),
    WatchSource(
        "velero.io/Schedule",
        "velero.io",
        "v1",
        "schedules",
        True,
        discovery_section="backup_discovery",
        section_namespace="velero_namespace",
    ),
    WatchSource(
        "postgresql.cnpg.io/Backup",
        "postgresql.cnpg.io",
        "v1",
        "backups",
        True,
        discovery_section="backup_discovery",
        section_switch="cnpg_enabled",
    ),
    WatchSource(
        "postgresql.cnpg.io/ScheduledBackup",
        "postgresql.cnpg.io",
        "v1",
        "scheduledbackups",
        True,
        discovery_section="backup_discovery",
        section_switch="cnpg_enabled",
    ),
    WatchSource(
        "cert-manager.io/Certificate",
        "cert-manager.io",
        "v1",
        "certificates",
        True,
        discovery_section="certificate_discovery",
    ),
)


def all_sources() -> tuple[WatchSource, ...]:
    """Everything the watcher list-watches, polycrate.io kinds first."""
    return polycrate_sources() + DISCOVERY_SOURCES


def in_namespaces(sources: Sequence[WatchSource], namespaces: Sequence[str]) -> tuple[WatchSource, ...]:
    """`sources` confined to `namespaces`: one per namespace for namespaced ones (none given: unchanged)."""
    if not namespaces:
        return tuple(sources)
    return tuple(
        scoped
        for source in sources
        for scoped in (
            [replace(source, namespace=ns) for ns in namespaces] if source.namespaced else [source]
        )
    )
