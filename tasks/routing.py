"""Which Celery queue a key's reconcile runs on: one queue per external system, plus default.

Per-system queues isolate outages: while Harbor is down its queue backs up and its workers
back off, but Keycloak work for other tenants keeps flowing on its own queue, and each system
can be scaled (and rate-limited) on its own. Kinds whose reconcile spans several systems
(SoftwareDeliveryPlatform, Organization) run on `default` and fan out later.
"""

from __future__ import annotations

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

# Discovery sources as the watcher names them (group-qualified where a polycrate.io kind has
# the same name); everything they feed goes to the Polycrate API.
DISCOVERY_SOURCE_KINDS: tuple[str, ...] = (
    "Ingress",
    "Secret",
    "Node",
    "Pod",
    "velero.io/Backup",
    "velero.io/Schedule",
    "postgresql.cnpg.io/Backup",
    "postgresql.cnpg.io/ScheduledBackup",
    "cert-manager.io/Certificate",
)

QUEUE_BY_KIND: dict[str, str] = {
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
    **dict.fromkeys(DISCOVERY_SOURCE_KINDS, POLYCRATE_API_QUEUE),
}


def queue_for(kind: str) -> str:
    """The queue of `kind`'s reconciles; kinds we do not know run on `default`."""
    return QUEUE_BY_KIND.get(kind, DEFAULT_QUEUE)


def parse_queue_list(text: str) -> tuple[str, ...]:
    """Validate a comma-separated list of queue names (as `worker --queues` takes it)."""
    names = tuple(dict.fromkeys(name.strip() for name in text.split(",") if name.strip()))
    unknown = [name for name in names if name not in QUEUES]
    if unknown or not names:
        raise ValueError(
            f"unknown queue(s) {', '.join(unknown) or '(none given)'}; choose from {', '.join(QUEUES)}"
        )
    return names
