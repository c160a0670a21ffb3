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
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from kubernetes.client import ApiClient

from polycrate.errors import PolycrateError
from polycrate.models import parse_spec
from tasks.context import WorkerContext
from tasks.dispatch import HandlerRegistry, build_registry
from tasks.handlers import CustomResourceHandler, orphaning
from tasks.keys import ObjectKey
from tasks.objects import JsonObject, ObjectAPI, resource_for
from workers.change import PlannedWrite, plan_mode

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


class PlannedObjects(ObjectAPI):
    """The cluster as a reconcile sees it, with the planned object in place of the stored one;
    reads go to the API server, writes are applied to the planned object only (or dropped)."""

    def __init__(self, api_client: ApiClient, key: ObjectKey, obj: JsonObject) -> None:
        super().__init__(api_client)
        self._key = key
        self._path = resource_for(key.kind).path(key.namespace, key.name)
        self.object = obj

    def request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
    ) -> Any:
        own = path == self._path or path.startswith(self._path + "/")
        if method == "GET":
            return (
                copy.deepcopy(self.object)
                if path == self._path
                else super().request(method, path, query=query)
            )
        if method == "PATCH" and own and isinstance(body, Mapping):
            patch = {k: v for k, v in body.items() if k != "metadata"}
            patch["metadata"] = {
                k: v for k, v in (body.get("metadata") or {}).items() if k != "resourceVersion"
            }
            self.object = _merge(self.object, patch)
            return copy.deepcopy(self.object)
        return copy.deepcopy(body) if isinstance(body, Mapping) else {}


class PlanContext(WorkerContext):
    """A WorkerContext whose Kubernetes writes stay in memory (Redis is used as by a worker: the
    SDP's rate limits count plan reads too)."""

    def __init__(self, base: WorkerContext, key: ObjectKey, obj: JsonObject) -> None:
        super().__init__(base.settings, redis_client=base.redis)
        self._base = base
        self._key = key
        self._obj = obj

    @cached_property
    def objects(self) -> ObjectAPI:
        return PlannedObjects(self._base.objects.api_client, self._key, self._obj)


@dataclass
class PlanResult:
    """What a reconcile of one object would do: the writes per system, or why it cannot run."""

    key: ObjectKey
    writes: list[PlannedWrite] = field(default_factory=list)
    error: PolycrateError | None = None
    orphaned: bool = False

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
    handler = (registry or build_registry(ctx.settings.handler_modules)).handler_for(key.kind)
    result = PlanResult(key)
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
