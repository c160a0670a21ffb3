"""The flows' kit: helpers every flow may use, so no flow imports another flow.

Guarantee: the per-kind flow modules stay independent of each other (an import-linter
`independence` contract); what two of them share lives here or in the other kit modules
(`state`, `connections`, `identity`, `discovered`, `operator_config`). It prevents a change to
one kind's flow from silently changing another's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from polycrate.errors import (
    DependencyNotFoundError,
    InvalidSpecError,
    PermanentError,
    PolycrateError,
    TransientError,
)
from polycrate.keys import ObjectKey
from polycrate.kubeclient.api import JsonObject
from polycrate.kubeclient.errors import NotFound
from polycrate.models.fieldtypes import ArgoCDDestination
from tasks.context import WorkerContext
from workers.argocd import Destination


def list_objects(ctx: WorkerContext, kind: str, namespace: str) -> list[JsonObject]:
    """The objects of a polycrate.io kind in the namespace; none when its CRD is not installed."""
    try:
        return ctx.objects.list(kind, namespace)
    except NotFound:
        return []


def combined_error(failures: Sequence[PolycrateError], *, message: str | None = None) -> PolycrateError:
    """One error for several independent failures (one per SDP or system), so one outage does
    not hide the others: permanent only when every one is (keeping the class when they all
    share InvalidSpecError or DependencyNotFoundError), else transient, after the longest
    Retry-After any of them asked for. `message` defaults to the messages joined by "; "."""
    text = message if message is not None else "; ".join(str(failure) for failure in failures)
    if all(isinstance(failure, PermanentError) for failure in failures):
        kinds = {type(failure) for failure in failures}
        if len(kinds) == 1 and kinds <= {InvalidSpecError, DependencyNotFoundError}:
            return kinds.pop()(text)
        return PermanentError(text, reason=getattr(failures[0], "reason", "Failed"))
    retry_after = max((getattr(f, "retry_after", None) or 0.0 for f in failures), default=0.0) or None
    return TransientError(text, retry_after=retry_after)


def status_map(current: Mapping[str, Any] | None, desired: Mapping[str, Any]) -> dict[str, Any] | None:
    """A map-valued status field (e.g. per SDP) as a merge-patch value: a JSON merge patch merges
    maps, so keys no longer desired are sent as null (deleted); an empty map removes the field."""
    if not desired:
        return None
    return {**{name: None for name in current or {} if name not in desired}, **desired}


def cluster_destinations(
    ctx: WorkerContext, key: ObjectKey, destinations: Sequence[ArgoCDDestination], field: str
) -> list[Destination]:
    """Argo CD destinations with each clusterRef replaced by its K8sCluster's API server URL.

    A K8sCluster that is missing or being deleted is a DependencyNotFoundError naming the field
    (`field`[i].clusterRef): the object follows once the cluster is Ready (its watch wakes it)."""
    resolved = []
    for i, destination in enumerate(destinations):
        server = destination.server
        if destination.clusterRef:
            ref = destination.clusterRef
            cluster = ctx.objects.get(ObjectKey("K8sCluster", key.namespace, ref))
            if cluster is None or (cluster.get("metadata") or {}).get("deletionTimestamp"):
                state = "is being deleted" if cluster is not None else "not found"
                raise DependencyNotFoundError(
                    f'{key.describe()}: {field}[{i}].clusterRef: K8sCluster "{ref}" '
                    f"{state} in namespace {key.namespace} (create it; this project follows once it is Ready)"
                )
            server = (cluster.get("spec") or {}).get("apiServer")
            if not server:
                raise DependencyNotFoundError(
                    f'{key.describe()}: {field}[{i}].clusterRef: K8sCluster "{ref}" has no spec.apiServer'
                )
        resolved.append(Destination(server=str(server), namespace=destination.namespace))
    return resolved
