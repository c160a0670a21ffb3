"""The flows' kit: helpers every flow may use, so no flow imports another flow.

Guarantee: the per-kind flow modules stay independent of each other (an import-linter
`independence` contract); what two of them share lives here or in the other kit modules
(`state`, `connections`, `identity`, `discovered`, `operator_config`). It prevents a change to
one kind's flow from silently changing another's.
"""

from __future__ import annotations

from collections.abc import Iterable

from polycrate.errors import TransientError
from polycrate.keys import ObjectKey
from polycrate.kubeclient.api import JsonObject
from polycrate.kubeclient.errors import NotFound
from tasks.context import WorkerContext
from tasks.queue import KeyQueue
from workers.plan import planning


def enqueue(ctx: WorkerContext, keys: Iterable[ObjectKey], *, reason: str) -> None:
    """Ask for a reconcile of each key now, instead of at the next resync (a plan wakes nobody)."""
    if planning() is not None:
        return
    queue = KeyQueue(ctx.redis, prefix=ctx.settings.redis_prefix)
    for key in keys:
        try:
            queue.add(key, reason=reason)
        except Exception as exc:  # the broker's errors differ by transport; a retry re-sends
            raise TransientError(f"could not enqueue {key.describe()} ({type(exc).__name__})") from None


def list_objects(ctx: WorkerContext, kind: str, namespace: str) -> list[JsonObject]:
    """The objects of a polycrate.io kind in the namespace; none when its CRD is not installed."""
    try:
        return ctx.objects.list(kind, namespace)
    except NotFound:
        return []
