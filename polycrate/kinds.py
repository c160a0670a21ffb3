"""The table of kinds and discovery sources: every key kind the operator handles, in one place.

Each `KindEntry` says where a resource lives in the API (group, version, plural, scope), which
Celery queue its reconciles run on, and for a discovery source which OperatorConfig section
switches it on, which of its objects are sources at all and how the watcher lists it. The
watcher's sources (`watcher.sources`), the routing (`tasks.routing`), the Kubernetes client's
resources (`polycrate.kubeclient.resources`) and the OperatorConfig filters
(`tasks.flows.operator_config.SOURCE_SECTIONS`) are derived from it, so adding a kind is one
entry here plus its flow module (docs/architecture.md, "How to add a kind").

Guarantee: the table is checked when it is built, at import time: every polycrate.io kind has an
entry, every entry names a known queue and a unique key kind. It prevents a kind that is
watched but silently routed to `default`, or listed in one table and forgotten in another.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from polycrate.keys import ObjectKey
from polycrate.models import GROUP, KINDS, VERSION
from polycrate.models.config import SINGLETON_NAME, SINGLETON_NAMESPACE
from polycrate.models.discovery import is_meta_secret

# One queue per external system, plus default for kinds that span several (Organization, SDP).
DEFAULT_QUEUE = "default"
KEYCLOAK_QUEUE = "keycloak"
GITLAB_QUEUE = "gitlab"
HARBOR_QUEUE = "harbor"
ARGOCD_QUEUE = "argocd"
POLYCRATE_API_QUEUE = "polycrate-api"

QUEUES: tuple[str, ...] = (
    DEFAULT_QUEUE,
    KEYCLOAK_QUEUE,
    GITLAB_QUEUE,
    HARBOR_QUEUE,
    ARGOCD_QUEUE,
    POLYCRATE_API_QUEUE,
)

OPERATOR_CONFIG_KEY = ObjectKey("OperatorConfig", SINGLETON_NAMESPACE, SINGLETON_NAME)
"""The one OperatorConfig whose discovery sections switch the discovery sources on."""

# What the operator writes on objects for its own bookkeeping, outside status: its finalizers
# (polycrate.io/finalizer, and <plural>.polycrate.io/cleanup on CRs and discovery sources) and
# the annotations holding its state. The watcher leaves them out of an object's change
# fingerprint, so the operator's own writes do not come back as a second reconcile.
OPERATOR_FINALIZER_SUFFIX = ".polycrate.io/cleanup"
OPERATOR_STATE_ANNOTATION = "polycrate.io/operator-state"
OPERATOR_ANNOTATION_PREFIXES = ("hosts.polycrate.io/",)
_KIND_FINALIZERS = frozenset(info.finalizer for info in KINDS.values())


def is_operator_finalizer(name: str) -> bool:
    """Whether `name` is a finalizer the operator puts on objects (and takes off again)."""
    return name in _KIND_FINALIZERS or name.endswith(OPERATOR_FINALIZER_SUFFIX)


def is_operator_annotation(name: str) -> bool:
    """Whether the annotation `name` is the operator's bookkeeping (written by its reconciles)."""
    return name == OPERATOR_STATE_ANNOTATION or name.startswith(OPERATOR_ANNOTATION_PREFIXES)


class KindTableError(ValueError):
    """The table of kinds is inconsistent; raised while it is built, at import time."""


@dataclass(frozen=True)
class KindEntry:
    """One key kind: its API resource, its queue and, for a discovery source, how it is found."""

    key_kind: str
    """The kind in keys: polycrate.io kinds by name, discovery sources group-qualified where a
    polycrate.io kind has the same name (velero.io/Backup, cert-manager.io/Certificate)."""
    group: str
    version: str
    plural: str
    namespaced: bool
    queue: str
    status_subresource: bool = False
    discovery_section: str | None = None
    """The OperatorConfig section that switches this discovery source on (None: always watched)."""
    object_filter: Callable[[Mapping[str, Any]], bool] | None = None
    """Which listed objects are sources at all, where no server-side selector can say it."""
    metadata_only: bool = False
    """Listed and watched as PartialObjectMetadata (Secrets: their data never reaches the watcher)."""
    section_switch: str | None = None
    """A boolean field of the discovery section that must be on as well (CloudNativePG's `cnpg_enabled`)."""
    section_namespace: str | None = None
    """A field of the discovery section naming the one namespace watched (Velero's `velero_namespace`)."""

    @property
    def discovery_source(self) -> bool:
        return self.discovery_section is not None


# The queue of each polycrate.io kind: the external system its reconcile talks to.
POLYCRATE_KIND_QUEUES: dict[str, str] = {
    "ContactGroup": KEYCLOAK_QUEUE,
    "Contact": KEYCLOAK_QUEUE,
    "GitLabGroup": GITLAB_QUEUE,
    "HarborProject": HARBOR_QUEUE,
    "ArgoCDProject": ARGOCD_QUEUE,
    "K8sCluster": ARGOCD_QUEUE,
    "OperatorConfig": POLYCRATE_API_QUEUE,
    "Endpoint": POLYCRATE_API_QUEUE,
    "Backup": POLYCRATE_API_QUEUE,
    "BackupSchedule": POLYCRATE_API_QUEUE,
    "Certificate": POLYCRATE_API_QUEUE,
    "K8sApp": POLYCRATE_API_QUEUE,
    "Artifact": POLYCRATE_API_QUEUE,
    "SoftwareDeliveryPlatform": DEFAULT_QUEUE,
    "Organization": DEFAULT_QUEUE,
}

# Discovery sources; everything they feed is synced to the Polycrate API.
DISCOVERY_SOURCE_ENTRIES: tuple[KindEntry, ...] = (
    KindEntry(
        "Ingress", "networking.k8s.io", "v1", "ingresses", True, POLYCRATE_API_QUEUE,
        discovery_section="endpoint_discovery",
    ),
    # Meta Secrets named `<block>.poly` need not carry a label, so Secrets are watched unselected
    # (metadata only) and filtered by name and label; the worker reads the Secret itself, at use.
    KindEntry(
        "Secret", "", "v1", "secrets", True, POLYCRATE_API_QUEUE,
        discovery_section="app_discovery", object_filter=is_meta_secret, metadata_only=True,
    ),
    KindEntry("Node", "", "v1", "nodes", False, POLYCRATE_API_QUEUE, discovery_section="node_discovery"),
    KindEntry("Pod", "", "v1", "pods", True, POLYCRATE_API_QUEUE, discovery_section="artifact_discovery"),
    KindEntry(
        "velero.io/Backup", "velero.io", "v1", "backups", True, POLYCRATE_API_QUEUE,
        discovery_section="backup_discovery", section_namespace="velero_namespace",
    ),
    KindEntry(
        "velero.io/Schedule", "velero.io", "v1", "schedules", True, POLYCRATE_API_QUEUE,
        discovery_section="backup_discovery", section_namespace="velero_namespace",
    ),
    KindEntry(
        "postgresql.cnpg.io/Backup", "postgresql.cnpg.io", "v1", "backups", True, POLYCRATE_API_QUEUE,
        discovery_section="backup_discovery", section_switch="cnpg_enabled",
    ),
    KindEntry(
        "postgresql.cnpg.io/ScheduledBackup", "postgresql.cnpg.io", "v1", "scheduledbackups", True,
        POLYCRATE_API_QUEUE, discovery_section="backup_discovery", section_switch="cnpg_enabled",
    ),
    KindEntry(
        "cert-manager.io/Certificate", "cert-manager.io", "v1", "certificates", True, POLYCRATE_API_QUEUE,
        discovery_section="certificate_discovery",
    ),
)  # fmt: skip


def polycrate_entries(queues: Mapping[str, str]) -> tuple[KindEntry, ...]:
    """The polycrate.io kinds (all with a status subresource); a kind without a queue is an error."""
    missing = sorted(set(KINDS) - set(queues))
    if missing:
        raise KindTableError(f"polycrate.io kind(s) {', '.join(missing)} have no queue in the table of kinds")
    return tuple(
        KindEntry(
            info.kind,
            GROUP,
            VERSION,
            info.plural,
            info.namespaced,
            queues[info.kind],
            status_subresource=True,
        )
        for info in KINDS.values()
    )


def build_table(entries: Iterable[KindEntry]) -> dict[str, KindEntry]:
    """Key kind -> entry, checked: unique key kinds, known queues, a discovery section per filter."""
    table: dict[str, KindEntry] = {}
    for entry in entries:
        if entry.key_kind in table:
            raise KindTableError(f"kind {entry.key_kind!r} is in the table of kinds twice")
        if entry.queue not in QUEUES:
            raise KindTableError(
                f"kind {entry.key_kind!r} names queue {entry.queue!r}; choose from {', '.join(QUEUES)}"
            )
        if not entry.plural or not entry.version:
            raise KindTableError(f"kind {entry.key_kind!r} needs an API version and a plural")
        table[entry.key_kind] = entry
    return table


KIND_TABLE: dict[str, KindEntry] = build_table(
    polycrate_entries(POLYCRATE_KIND_QUEUES) + DISCOVERY_SOURCE_ENTRIES
)
"""Every key kind: the polycrate.io kinds first, then the discovery sources."""


def discovery_sources(table: Mapping[str, KindEntry] = KIND_TABLE) -> tuple[KindEntry, ...]:
    return tuple(entry for entry in table.values() if entry.discovery_source)
