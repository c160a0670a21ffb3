"""What the watcher list-watches: the 15 polycrate.io kinds and the discovery sources, each a
`WatchSource` derived from the table of kinds (polycrate.kinds).

Each `WatchSource` says where a resource lives in the API (group, version, plural), whether it
is namespaced, an optional server-side label selector, and which OperatorConfig discovery
section decides whether and where it is watched. It also names the key kind under which its
objects are enqueued: polycrate.io kinds by their kind name, discovery sources by kind name,
group-qualified where a polycrate.io kind has the same name (velero.io/Backup,
postgresql.cnpg.io/Backup, cert-manager.io/Certificate). With `--namespace` (`in_namespaces`),
each namespaced source becomes one list-watch per namespace, which a namespace-scoped Role
allows where an all-namespaces watch would get 403. Nothing here talks to the cluster.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from polycrate.keys import ObjectKey
from polycrate.kinds import (
    KIND_TABLE,
    KindEntry,
    discovery_sources,
    is_operator_annotation,
    is_operator_finalizer,
)
from polycrate.kubeclient.resources import resource_path

# Metadata whose change means "reconcile again" for kinds with a status subresource (spec
# changes show as a new generation), as controller-runtime's GenerationChangedPredicate plus
# labels and annotations, which handlers read (polycrate.io/adopt, a touch to force a run).
_DESIRED_STATE_FIELDS = ("generation", "deletionTimestamp", "labels", "annotations")
# Metadata that changes with every write and says nothing about the object's content.
_VOLATILE_METADATA = ("resourceVersion", "managedFields")


def _without_bookkeeping(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """`metadata` minus what the operator itself writes there (its finalizers and state annotations)."""
    reduced = dict(metadata)
    annotations = {
        name: value
        for name, value in (reduced.pop("annotations", None) or {}).items()
        if not is_operator_annotation(name)
    }
    finalizers = [name for name in reduced.pop("finalizers", None) or () if not is_operator_finalizer(name)]
    # Absent and emptied compare equal: a first bookkeeping annotation is no change either.
    if annotations:
        reduced["annotations"] = annotations
    if finalizers:
        reduced["finalizers"] = finalizers
    return reduced


def _digest(value: Any) -> str:
    encoded = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.blake2b(encoded, digest_size=12).hexdigest()


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
        return resource_path(self.group, self.version, self.plural, self.namespace)

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

        The operator's own writes never count: its status writes, its finalizers and its
        bookkeeping annotations (polycrate.kinds), so a reconcile does not echo back as a second
        one. For kinds with a status subresource the rest is the desired state: generation (the
        spec), deletion, labels and annotations. A discovery source's status is data, so there
        the whole object counts (less volatile metadata); objects watched as metadata only
        (Secrets) change their data unseen, so any new resourceVersion counts.
        """
        metadata = obj.get("metadata") or {}
        if self.metadata_only:
            return str(metadata.get("resourceVersion", ""))
        metadata = _without_bookkeeping(metadata)
        if self.status_subresource:
            return _digest({field: metadata.get(field) for field in _DESIRED_STATE_FIELDS})
        for field in _VOLATILE_METADATA:
            metadata.pop(field, None)
        return _digest({**obj, "metadata": metadata})

    @classmethod
    def of(cls, entry: KindEntry) -> WatchSource:
        """The list-watch of one entry of the table of kinds."""
        return cls(
            key_kind=entry.key_kind,
            group=entry.group,
            version=entry.version,
            plural=entry.plural,
            namespaced=entry.namespaced,
            discovery_section=entry.discovery_section,
            status_subresource=entry.status_subresource,
            object_filter=entry.object_filter,
            metadata_only=entry.metadata_only,
            section_switch=entry.section_switch,
            section_namespace=entry.section_namespace,
        )


def polycrate_sources(table: Mapping[str, KindEntry] = KIND_TABLE) -> tuple[WatchSource, ...]:
    """The 15 polycrate.io kinds, keyed by kind name, all with a status subresource."""
    return tuple(WatchSource.of(entry) for entry in table.values() if not entry.discovery_source)


DISCOVERY_SOURCES: tuple[WatchSource, ...] = tuple(WatchSource.of(entry) for entry in discovery_sources())


def all_sources(table: Mapping[str, KindEntry] = KIND_TABLE) -> tuple[WatchSource, ...]:
    """Everything the watcher list-watches, polycrate.io kinds first."""
    return polycrate_sources(table) + tuple(WatchSource.of(entry) for entry in discovery_sources(table))


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
