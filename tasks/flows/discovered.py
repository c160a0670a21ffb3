"""Discovered CRs: mirrored from their sources, kept in scope, linked, and synced to the API.

A source handler maps its object to the desired CR; `apply_discovered` creates it or patches
only what differs, so an unchanged source costs one GET and no write. Namespaced CRs are owned
by their source: the garbage collector deletes them with it and their own finalizer cleans up
the API, so objects we do not own (Pods, user Secrets, Velero, cert-manager) never carry our
finalizer and never hang on an absent operator. `ScopedDiscoveredHandler` re-checks the
OperatorConfig's filters on each sync, since the watcher drops filtered-out sources' events.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ValidationError

from polycrate.errors import InvalidSpecError, PolycrateError, TransientError
from polycrate.keys import ObjectKey
from polycrate.kubeclient.api import JsonObject
from polycrate.kubeclient.errors import Conflict
from polycrate.models import API_VERSION, DISCOVERED_LABEL, KINDS, parse_spec
from tasks.context import WorkerContext
from tasks.dispatch import Requeue
from tasks.finalizers import ensure_finalizer
from tasks.flows.operator_config import (
    OPERATOR_CONFIG,
    DiscoveredResourceHandler,
    DiscoveryConfig,
    api_target,
    read_operator_config,
    sync_resource,
)
from tasks.status import ConditionUpdate, StatusUpdate, utc_now

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
ApplyResult = Literal["created", "updated", "unchanged"]

_MAX_NAME = 253
_MAX_LABEL_VALUE = 63
_MAX_ATTEMPTS = 5


# --- names and labels -----------------------------------------------------------------------------


def bounded_name(name: str) -> str:
    """`name` as a DNS subdomain of at most 253 characters; a longer one keeps a hash suffix."""
    if len(name) <= _MAX_NAME:
        return name
    suffix = hashlib.sha256(name.encode()).hexdigest()[:10]
    return f"{name[: _MAX_NAME - 11].rstrip('-.')}-{suffix}"


def label_value(text: str) -> str:
    """`text` as a label value: at most 63 characters of [A-Za-z0-9-_.], alphanumeric at both ends."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text)[:_MAX_LABEL_VALUE].strip("-_.")


def moment(value: Any) -> datetime | None:
    """A Kubernetes timestamp ("2026-01-06T14:30:00Z") as an aware datetime; None when absent."""
    if not value:
        return None
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def is_discovered(obj: JsonObject) -> bool:
    """Whether the operator wrote this CR from a source (and may therefore delete it)."""
    return ((obj.get("metadata") or {}).get("labels") or {}).get(DISCOVERED_LABEL) == "true"


def owner_reference(source: JsonObject) -> JsonObject:
    """The ownerReference that lets the garbage collector delete a CR together with its source."""
    metadata = source.get("metadata") or {}
    return {
        "apiVersion": source["apiVersion"],
        "kind": source["kind"],
        "name": metadata["name"],
        "uid": metadata["uid"],
    }


def serialized_spec(model: type[BaseModel], fields: Mapping[str, Any], source: str) -> JsonObject:
    """`fields` validated by the kind's spec model and serialised as the CR stores them.

    A source value the model rejects is a permanent error naming the source and the field;
    the value itself is left out, since it may come from a Secret.
    """
    try:
        spec = model.model_validate(dict(fields))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}" for error in exc.errors()[:3]
        )
        raise InvalidSpecError(f"{source} cannot be mirrored: {problems}") from None
    return spec.model_dump(mode="json", by_alias=True, exclude_none=True)


# --- writing the CRs ------------------------------------------------------------------------------


def merge_patch(current: Mapping[str, Any], desired: Mapping[str, Any]) -> JsonObject:
    """The JSON merge patch (RFC 7386) that turns `current` into `desired`; empty when equal."""
    patch: JsonObject = {name: None for name in current if name not in desired}
    for name, value in desired.items():
        present = current.get(name)
        if isinstance(value, dict) and isinstance(present, dict):
            nested = merge_patch(present, value)
            if nested:
                patch[name] = nested
        elif present != value or name not in current:
            patch[name] = value
    return patch


def _managed_label_prefix(kind: str) -> str:
    return f"{KINDS[kind].plural}.polycrate.io/"


def _update_patch(kind: str, current: JsonObject, desired: JsonObject) -> JsonObject:
    metadata = current.get("metadata") or {}
    present_labels = metadata.get("labels") or {}
    wanted_labels = (desired.get("metadata") or {}).get("labels") or {}
    labels: JsonObject = {k: v for k, v in wanted_labels.items() if present_labels.get(k) != v}
    prefix = _managed_label_prefix(kind)
    labels |= {k: None for k in present_labels if k.startswith(prefix) and k not in wanted_labels}
    patch: JsonObject = {}
    if labels:
        patch["metadata"] = {"labels": labels}
    wanted_owners = (desired.get("metadata") or {}).get("ownerReferences") or []
    present_uids = {ref.get("uid") for ref in metadata.get("ownerReferences") or []}
    if any(ref["uid"] not in present_uids for ref in wanted_owners):
        patch.setdefault("metadata", {})["ownerReferences"] = wanted_owners
    spec_patch = merge_patch(current.get("spec") or {}, desired.get("spec") or {})
    if spec_patch:
        patch["spec"] = spec_patch
    return patch


def apply_discovered(ctx: WorkerContext, kind: str, desired: JsonObject) -> ApplyResult:
    """Create the discovered CR `desired` (metadata and spec), or patch what differs.

    Labels outside our `<plural>.polycrate.io/` prefix and fields we do not set are left to
    others. A CR still being deleted (its source was just recreated) is a transient error: it
    is recreated once its finalizer has cleaned up the API object.
    """
    metadata = desired["metadata"]
    key = ObjectKey(kind, str(metadata.get("namespace") or ""), str(metadata["name"]))
    for _attempt in range(_MAX_ATTEMPTS):
        current = ctx.objects.get(key)
        if current is None:
            try:
                ctx.objects.create(kind, {"apiVersion": API_VERSION, "kind": kind, **desired})
            except Conflict:
                continue  # created by a concurrent run: compare with that one
            log.info("created %s", key)
            return "created"
        if (current.get("metadata") or {}).get("deletionTimestamp"):
            raise TransientError(f"{key.describe()} is still being deleted; it is recreated once it is gone")
        patch = _update_patch(kind, current, desired)
        if not patch:
            return "unchanged"
        ctx.objects.patch(key, patch)
        log.info("updated %s", key)
        return "updated"
    raise TransientError(f"{key.describe()} kept appearing and disappearing while being written")


def delete_discovered(ctx: WorkerContext, key: ObjectKey, *, reason: str) -> bool:
    """Delete the CR of `key` if the operator discovered it; its finalizer cleans up the API."""
    obj = ctx.objects.get(key)
    if obj is None or not is_discovered(obj) or (obj.get("metadata") or {}).get("deletionTimestamp"):
        return False
    ctx.objects.delete(key)
    log.info("deleted %s: %s", key, reason)
    return True


# --- the second stage -----------------------------------------------------------------------------


class ScopedDiscoveredHandler(DiscoveredResourceHandler):
    """Syncs a discovered CR, after checking that the OperatorConfig still wants it.

    Hooks, all optional: `out_of_scope` (the CR no longer matches the section's filters: it is
    deleted), `observe` (status fields read from the cluster, e.g. pod counts; also projected
    into the object `payload` sees), `retire_reason` (the observation says the CR has served
    its time), `not_synced_because` (a section may keep its CRs out of the API),
    `status_from_payload` (status fields learnt while building the payload) and `after_write`
    (wake the objects whose status derives from this one, once its new status is readable).
    """

    def __init__(self, *, clock: Clock = utc_now) -> None:
        super().__init__()
        self.clock = clock

    def out_of_scope(self, section: Any, key: ObjectKey, obj: JsonObject, spec: BaseModel) -> str | None:
        """Why the section's filters exclude this CR now, or None."""
        return None

    def observe(
        self, ctx: WorkerContext, key: ObjectKey, obj: JsonObject, spec: BaseModel, section: Any
    ) -> dict[str, Any]:
        """Status fields observed in the cluster; `section` is None while the discovery is off."""
        return {}

    def retire_reason(self, section: Any, obj: JsonObject, observed: Mapping[str, Any]) -> str | None:
        """Why the CR should be deleted after this observation, or None."""
        return None

    def not_synced_because(self, section: Any) -> str | None:
        """Why the section keeps this CR out of the API although api_sync is on, or None."""
        return None

    def status_from_payload(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        return {}

    def after_write(self, ctx: WorkerContext, key: ObjectKey, before: JsonObject, after: JsonObject) -> None:
        """Runs after the status write (also when nothing changed)."""

    def comes_due(self, section: Any, observed: Mapping[str, Any]) -> datetime | None:
        """When this observation changes with time alone (e.g. the CR turns stale), or None:
        the CR is reconciled again at that moment instead of at the next resync."""
        return None

    def reconcile(self, ctx: WorkerContext, key: ObjectKey, obj: JsonObject) -> Requeue | None:
        if (obj.get("metadata") or {}).get("deletionTimestamp"):
            self._finish_deletion(ctx, key, obj)
            return None
        spec = parse_spec(obj)
        config = read_operator_config(ctx)
        section = config.section(self.section) if config else None
        if section is not None and is_discovered(obj):
            excluded = self.out_of_scope(section, key, obj, spec)
            if excluded:
                self._retire(ctx, key, obj, "OutOfScope", excluded)
                return None
        current = ensure_finalizer(ctx.objects, key, obj, self.info.finalizer)
        if current is None:
            return None
        observed = self.observe(ctx, key, current, spec, section)
        retire = self.retire_reason(section, current, observed) if section is not None else None
        if retire and is_discovered(current):
            self._retire(ctx, key, current, "Stale", retire)
            return None
        status = current.get("status") or {}
        fields = dict(observed)
        target = None
        if section is not None and not self.not_synced_because(section):
            target = api_target(ctx, config, referrer=key.describe())
        if target is None:
            change = self.write_sync_status(
                ctx, key, current, fields, None, self._unsynced_condition(config, section)
            )
        else:
            projected = {**current, "status": {**status, **observed}}
            payload = self.payload(ctx, key, projected, spec, target)
            result = sync_resource(
                self.collection(target.client),
                payload,
                api_id=status.get(self.names.api_id),
                last_hash=status.get(self.names.config_hash),
            )
            fields |= self.status_from_payload(payload)
            change = self.write_sync_status(ctx, key, current, fields, result, synced_at=self.clock())
        self.after_write(ctx, key, current, change.object or current)
        due = self.comes_due(section, observed) if section is not None and is_discovered(current) else None
        if due is None:
            return None
        return Requeue(after=max(0.0, (due - self.clock()).total_seconds()))

    def report_failure(
        self,
        ctx: WorkerContext,
        key: ObjectKey,
        obj: JsonObject | None,
        error: PolycrateError,
        *,
        retrying: bool,
    ) -> None:
        # `kubectl get` shows sync_status next to the phase: it must not keep saying "synced".
        if obj is not None and self.names.sync_status:
            try:
                ctx.status.write(key, StatusUpdate(fields={self.names.sync_status: "error"}))
            except PolycrateError as exc:
                log.warning("could not mark the sync of %s failed: %s", key, exc)
        super().report_failure(ctx, key, obj, error, retrying=retrying)

    def _unsynced_condition(self, config: DiscoveryConfig | None, section: Any) -> ConditionUpdate:
        if config is None:
            why = f"{OPERATOR_CONFIG} does not exist"
        elif section is None:
            why = f"{OPERATOR_CONFIG} has spec.{self.section} off"
        elif self.not_synced_because(section):
            why = f"{OPERATOR_CONFIG} has {self.not_synced_because(section)}"
        else:
            why = f"{OPERATOR_CONFIG} has spec.api_sync off"
        return ConditionUpdate("Ready", "True", "NotSynced", f"not sent to the Polycrate API: {why}")

    def _retire(self, ctx: WorkerContext, key: ObjectKey, obj: JsonObject, reason: str, why: str) -> None:
        ctx.events.record(obj, "Normal", reason, f"{key.describe()} is deleted: {why}")
        delete_discovered(ctx, key, reason=why)
