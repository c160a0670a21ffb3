"""Which Celery queue a key's reconcile runs on: one queue per external system, plus default.

Per-system queues isolate outages: while Harbor is down its queue backs up and its workers
back off, but Keycloak work for other tenants keeps flowing on its own queue, and each system
can be scaled (and rate-limited) on its own. Kinds whose reconcile spans several systems
(SoftwareDeliveryPlatform, Organization) run on `default` and fan out later.
"""

from __future__ import annotations

from polycrate.kinds import (
    ARGOCD_QUEUE,
    DEFAULT_QUEUE,
    GITLAB_QUEUE,
    HARBOR_QUEUE,
    KEYCLOAK_QUEUE,
    KIND_TABLE,
    POLYCRATE_API_QUEUE,
    QUEUES,
    discovery_sources,
)

# Queue names and the kinds' queues live in the table of kinds (polycrate.kinds); re-exported here
# for the Celery side.
__all__ = [
    "ARGOCD_QUEUE",
    "DEFAULT_QUEUE",
    "DISCOVERY_SOURCE_KINDS",
    "GITLAB_QUEUE",
    "HARBOR_QUEUE",
    "KEYCLOAK_QUEUE",
    "POLYCRATE_API_QUEUE",
    "QUEUES",
    "QUEUE_BY_KIND",
    "parse_queue_list",
    "queue_for",
]

# Discovery sources as the watcher names them (group-qualified where a polycrate.io kind has
# the same name).
DISCOVERY_SOURCE_KINDS: tuple[str, ...] = tuple(entry.key_kind for entry in discovery_sources())

QUEUE_BY_KIND: dict[str, str] = {kind: entry.queue for kind, entry in KIND_TABLE.items()}


def queue_for(kind: str) -> str:
    """The queue of `kind`'s reconciles. Every kind of the table names its queue (checked at
    import), and a handler plug-in for a kind outside it is refused when the registry is built
    (tasks.dispatch.load_plugins); so only a key no handler serves (stale, or mistyped) lands
    on `default`, where its run reports that no handler is registered."""
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
