"""Plan: what a reconcile of one object would change in the external systems, writing nothing.

The plan runs the kind's own `provision` (or, for an object being deleted, its `cleanup`) — the
very read/compare steps a worker runs — with a `workers.change.Plan` active, so every step that
would write records a PlannedWrite instead, and with a Kubernetes view that reads the cluster
but keeps writes (finalizer, status, annotations, Events) to itself. There is no second
implementation that could drift from the reconcile: a plan that says "no changes" is a reconcile
that would write nothing. Failure prevented: a change applied without seeing its effect first.
"""

from __future__ import annotations

import copy
import functools
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import redis

from polycrate.errors import PolycrateError
from polycrate.keys import ObjectKey
from polycrate.kubeclient.api import JsonObject, KubeClient
from polycrate.kubeclient.objects import ObjectAPI
from polycrate.kubeclient.resources import resource_for
from polycrate.models import parse_spec
from polycrate.settings import redact_url
from tasks.context import WorkerContext
from tasks.dispatch import HandlerRegistry
from tasks.handlers import CustomResourceHandler, orphaning
from tasks.registration import build_registry
from workers.plan import PlannedWrite, plan_mode

log = logging.getLogger(__name__)

# The kinds whose every write goes through the plan-aware steps (Keycloak, GitLab, Harbor, Argo CD
# clients and the Kubernetes view below). OperatorConfig and the discovery kinds also write to the
# Polycrate API and the work queue, so they are not planned rather than planned wrongly.
PLANNED_KINDS = frozenset(
    {
        "SoftwareDeliveryPlatform",
        "Organization",
        "Contact",
        "ContactGroup",
        "GitLabGroup",
        "HarborProject",
        "ArgoCDProject",
        "K8sCluster",
    }
)

SYSTEM_TITLES = {"keycloak": "Keycloak", "gitlab": "GitLab", "harbor": "Harbor", "argo cd": "Argo CD"}


def _merge(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, Mapping) else {}
    for name, value in patch.items():
        if value is None:
            result.pop(name, None)
        else:
            result[name] = _merge(result.get(name), value)
    return result


class PlannedClient(KubeClient):
    """The cluster as a reconcile sees it, with the planned object in place of the stored one;
    reads go to the API server, writes are applied to the planned object only (or dropped)."""

    def __init__(self, base: KubeClient, key: ObjectKey, obj: JsonObject) -> None:
        super().__init__(base.api_client, request_timeout=base.request_timeout, retry=base.retry)
        self._key = key
        self._path = resource_for(key.kind).path(key.namespace, key.name)
        self.object = obj

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        own = path == self._path or path.startswith(self._path + "/")
        body = kwargs.get("body")
        if method == "GET":
            return (
                copy.deepcopy(self.object) if path == self._path else super().request(method, path, **kwargs)
            )
        if method == "PATCH" and own and isinstance(body, Mapping):
            patch = {k: v for k, v in body.items() if k != "metadata"}
            patch["metadata"] = {
                k: v for k, v in (body.get("metadata") or {}).items() if k != "resourceVersion"
            }
            self.object = _merge(self.object, patch)
            return copy.deepcopy(self.object)
        return copy.deepcopy(body) if isinstance(body, Mapping) else {}


class _UnsharedBudget:
    """Stands in for Redis when the plan cannot reach it: the rate limiter's script always lets a
    request go (a plan makes a handful of reads), and nothing else of Redis is used by a plan."""

    def register_script(self, script: str) -> Callable[..., list[int]]:
        # The limiter's script answers [tokens granted, ms to wait]: all that were asked for, now.
        return lambda keys=None, args=None: [int(args[3]) if args else 1, 0]


@functools.cache
def _redis_or_unshared_at(url: str) -> Any:
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
        client.ping()
    except redis.RedisError:
        log.warning("Redis at %s is not reachable: planning without the shared rate limit", redact_url(url))
        return _UnsharedBudget()
    return client


def _redis_or_unshared(ctx: WorkerContext) -> Any:
    """The workers' Redis, so plan reads count against each SDP's rate limit; when it is not
    reachable the plan still runs, without the shared budget."""
    return _redis_or_unshared_at(ctx.settings.redis_url)


class PlanContext(WorkerContext):
    """A WorkerContext whose Kubernetes writes stay in memory."""

    def __init__(self, base: WorkerContext, key: ObjectKey, obj: JsonObject) -> None:
        super().__init__(base.settings, redis_client=_redis_or_unshared(base))
        self._base = base
        self._key = key
        self._obj = obj

    @cached_property
    def objects(self) -> ObjectAPI:
        return ObjectAPI(PlannedClient(self._base.objects.client, self._key, self._obj))


@dataclass
class PlanResult:
    """What a reconcile of one object would do: the writes per system, or why it cannot run."""

    key: ObjectKey
    writes: list[PlannedWrite] = field(default_factory=list)
    error: PolycrateError | None = None
    orphaned: bool = False
    unsupported: bool = False  # a kind the plan does not cover

    @property
    def changes(self) -> bool:
        return bool(self.writes)

    def by_system(self) -> dict[str, list[PlannedWrite]]:
        systems: dict[str, list[PlannedWrite]] = {}
        for write in self.writes:
            systems.setdefault(write.system, []).append(write)
        return systems

    def render(self) -> str:
        lines = [f"{self.key.describe()}:"]
        if self.unsupported:
            return "\n".join(
                [
                    *lines,
                    "  not planned: only the tenant kinds are (" + ", ".join(sorted(PLANNED_KINDS)) + ")",
                ]
            )
        if self.orphaned:
            lines.append("  deletionPolicy Orphan: deleting it leaves every external object in place")
        for system, writes in self.by_system().items():
            lines.append(f"{SYSTEM_TITLES.get(system.lower(), system)}:")
            lines += [write.render() for write in writes]
        if self.error is not None:
            lines.append(f"error: {self.error}")
        counts = {
            action: sum(1 for w in self.writes if w.action == action)
            for action in ("create", "update", "delete")
        }
        if not self.writes and self.error is None:
            lines.append("no changes")
        else:
            lines.append(
                f"Plan: {counts['create']} to create, {counts['update']} to change, {counts['delete']} to delete."
            )
        return "\n".join(lines)


def merged_object(desired: JsonObject, live: JsonObject | None) -> JsonObject:
    """The object a reconcile would see after `desired` is applied: its spec, labels and
    annotations over the live object's metadata (uid, finalizers, operator state) and status."""
    if live is None:
        obj = copy.deepcopy(desired)
        obj.setdefault("metadata", {}).setdefault("uid", "")
        obj.pop("status", None)
        return obj
    obj = copy.deepcopy(live)
    obj["spec"] = copy.deepcopy(desired.get("spec") or {})
    metadata = obj.setdefault("metadata", {})
    for section in ("labels", "annotations"):
        wanted = (desired.get("metadata") or {}).get(section)
        if wanted:
            metadata[section] = {**(metadata.get(section) or {}), **wanted}
    return obj


def plan(
    ctx: WorkerContext, key: ObjectKey, obj: JsonObject, *, registry: HandlerRegistry | None = None
) -> PlanResult:
    """Run the reconcile steps of `obj` in plan mode and return what they would write."""
    result = PlanResult(key)
    if key.kind not in PLANNED_KINDS:
        result.unsupported = True
        return result
    handler = (registry or build_registry()).handler_for(key.kind)
    if not isinstance(handler, CustomResourceHandler):
        return result
    planning_ctx = PlanContext(ctx, key, obj)
    deleting = bool((obj.get("metadata") or {}).get("deletionTimestamp"))
    with plan_mode() as recorded:
        try:
            if deleting and orphaning(obj):
                result.orphaned = True
            elif deleting:
                handler.cleanup(planning_ctx, key, obj)
            else:
                handler.provision(planning_ctx, key, obj, parse_spec(obj))
        except PolycrateError as exc:
            result.error = exc
    result.writes = list(recorded.writes)
    return result
