"""The flows' kit: helpers every flow may use, so no flow imports another flow.

Guarantee: the per-kind flow modules stay independent of each other (an import-linter
`independence` contract); what two of them share lives here or in the other kit modules
(`state`, `connections`, `identity`, `discovered`, `operator_config`). It prevents a change to
one kind's flow from silently changing another's.
"""

from __future__ import annotations

from tasks.context import WorkerContext
from tasks.objects import JsonObject, NotFoundError


def list_objects(ctx: WorkerContext, kind: str, namespace: str) -> list[JsonObject]:
    """The objects of a polycrate.io kind in the namespace; none when its CRD is not installed."""
    try:
        return ctx.objects.list(kind, namespace)
    except NotFoundError:
        return []
