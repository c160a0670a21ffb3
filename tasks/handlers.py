"""The built-in handlers: every polycrate.io kind and every discovery source has one.

For a polycrate.io kind the handler validates the spec (an invalid spec is a permanent error
whose message names the field), puts the kind's finalizer on before anything could be created
outside the cluster, and records the result in status (phase, Ready condition,
observedGeneration) with an Event per phase transition. On deletion it marks the object
Deleting and removes the finalizer; the per-system provisioning and cleanup steps slot in
between in later releases. Discovery sources (Ingress, meta Secrets, Nodes, Pods, Velero and
cert-manager objects) are read and acknowledged; their mapping to polycrate.io objects follows.
"""

from __future__ import annotations

import logging
from typing import Any

from pydantic import BaseModel

from polycrate.errors import PolycrateError
from polycrate.keys import ObjectKey
from polycrate.kubeclient.api import JsonObject
from polycrate.models import KindInfo, parse_spec
from tasks.context import WorkerContext
from tasks.dispatch import KindHandler
from tasks.finalizers import ensure_finalizer, remove_finalizer
from tasks.status import ConditionUpdate, StatusChange, StatusUpdate

log = logging.getLogger(__name__)

READY = "Ready"
PROVISIONING = "Provisioning"
ERROR = "Error"
DELETING = "Deleting"
PROVISIONED = "Provisioned"
WAITING_REASON = "DependencyNotReady"


def provisioned_message(info: KindInfo) -> str:
    """The Ready message of the spec's status example, per kind: "All organization resources provisioned"."""
    return f"All {info.singular} resources provisioned"


def failure_phase(info: KindInfo, obj: JsonObject, error: PolycrateError, *, retrying: bool) -> str:
    """The phase a failed run leaves: `Error` only when the user has to act.

    A transient failure (retried with backoff) and a wait for a dependency that is still being
    provisioned are progress, so the object stays `Provisioning`; a failing cleanup stays
    `Deleting`. Discovered kinds keep their own phases and show `Error` for every failure.
    """
    if (obj.get("metadata") or {}).get("deletionTimestamp"):
        return DELETING
    if not info.discovered and (retrying or getattr(error, "reason", None) == WAITING_REASON):
        return PROVISIONING
    return ERROR


def orphaning(obj: JsonObject) -> bool:
    """`spec.deletionPolicy: Orphan`: deleting the object leaves the external objects alone.
    Read from the raw spec, so a spec that no longer validates still keeps its promise."""
    return ((obj.get("spec") or {}).get("deletionPolicy")) == "Orphan"


def _generation(obj: JsonObject) -> int | None:
    generation = (obj.get("metadata") or {}).get("generation")
    return int(generation) if generation is not None else None


class CustomResourceHandler(KindHandler):
    """Validate, finalize and report one polycrate.io kind."""

    def __init__(self, info: KindInfo) -> None:
        self.info = info
        self.kind = info.kind

    def provision(
        self, ctx: WorkerContext, key: ObjectKey, obj: JsonObject, spec: BaseModel
    ) -> dict[str, Any]:
        """Drive the external systems toward the spec; returns kind-specific status fields.

        The generic handler provisions nothing; kinds with external state override this.
        """
        return {}

    def cleanup(self, ctx: WorkerContext, key: ObjectKey, obj: JsonObject) -> None:
        """Remove what `provision` created outside the cluster, in reverse order; idempotent.

        Runs while the object carries its finalizer and a deletionTimestamp. It should work from
        the IDs recorded in status, since the spec may no longer be valid.
        """

    def _begin(
        self, ctx: WorkerContext, key: ObjectKey, obj: JsonObject
    ) -> tuple[BaseModel, JsonObject] | None:
        """The valid spec and the object holding our finalizer, or None when there is nothing to
        provision: a deletion (finished here) or an object gone meanwhile.

        The finalizer goes on only after the spec validated, so an invalid object never holds one.
        """
        if (obj.get("metadata") or {}).get("deletionTimestamp"):
            self._finish_deletion(ctx, key, obj)
            return None
        spec = parse_spec(obj)
        current = ensure_finalizer(ctx.objects, key, obj, self.info.finalizer)
        if current is None:
            return None  # deleted meanwhile; its deletion event brings the key back
        return spec, current

    def reconcile(self, ctx: WorkerContext, key: ObjectKey, obj: JsonObject) -> None:
        begun = self._begin(ctx, key, obj)
        if begun is None:
            return
        spec, current = begun
        current = self._mark_provisioning(ctx, key, current)
        fields = self.provision(ctx, key, current, spec)
        message = provisioned_message(self.info)
        self._announce(
            ctx,
            ctx.status.write(
                key,
                StatusUpdate(
                    phase=READY,
                    conditions=(ConditionUpdate("Ready", "True", PROVISIONED, message),),
                    observed_generation=_generation(current),
                    fields=fields,
                ),
                current=current,
            ),
            READY,
            f"{key.describe()}: {message}",
        )

    def _mark_provisioning(self, ctx: WorkerContext, key: ObjectKey, obj: JsonObject) -> JsonObject:
        """Phase Provisioning while a generation not yet acted on is being provisioned.

        Only for new work (observedGeneration behind generation): a steady-state resync of a
        Ready object writes nothing, and an Error stays visible until the spec changes or a run
        succeeds. The Ready condition's observedGeneration still names the last completed one.
        """
        status = obj.get("status") or {}
        if status.get("phase") == PROVISIONING or status.get("observedGeneration") == _generation(obj):
            return obj
        change = ctx.status.write(
            key,
            StatusUpdate(
                phase=PROVISIONING,
                conditions=(
                    ConditionUpdate(
                        "Ready",
                        "False",
                        PROVISIONING,
                        f"{key.describe()}: generation {_generation(obj)} is being provisioned",
                    ),
                ),
            ),
            current=obj,
        )
        return change.object or obj

    def _finish_deletion(self, ctx: WorkerContext, key: ObjectKey, obj: JsonObject) -> None:
        if self.info.finalizer not in ((obj.get("metadata") or {}).get("finalizers") or []):
            return
        change = ctx.status.write(
            key,
            StatusUpdate(
                phase=DELETING,
                conditions=(
                    ConditionUpdate("Ready", "False", DELETING, f"{key.describe()} is being deleted"),
                ),
                observed_generation=_generation(obj),
            ),
            current=obj,
        )
        self._announce(ctx, change, DELETING, f"{key.describe()} is being deleted")
        if orphaning(obj):
            ctx.events.record(
                obj,
                "Normal",
                "Orphaned",
                f"{key.describe()}: spec.deletionPolicy is Orphan; what it created in the external systems "
                "is left in place and no longer managed",
            )
        else:
            # A failing cleanup raises: the finalizer stays, so nothing outside the cluster is orphaned.
            self.cleanup(ctx, key, change.object or obj)
        remove_finalizer(ctx.objects, key, change.object or obj, self.info.finalizer)

    def report_failure(
        self,
        ctx: WorkerContext,
        key: ObjectKey,
        obj: JsonObject | None,
        error: PolycrateError,
        *,
        retrying: bool,
    ) -> None:
        if obj is None:
            return
        reason = "Retrying" if retrying else getattr(error, "reason", "Failed")
        message = str(error)
        try:
            ctx.status.write(
                key,
                StatusUpdate(
                    phase=failure_phase(self.info, obj, error, retrying=retrying),
                    conditions=(ConditionUpdate("Ready", "False", reason, message),),
                    observed_generation=_generation(obj),
                ),
            )
        except PolycrateError as exc:
            log.warning("could not write the Error status of %s: %s", key, exc)
        ctx.events.record(obj, "Warning", reason, message)

    @staticmethod
    def _announce(ctx: WorkerContext, change: StatusChange, reason: str, message: str) -> None:
        """One Normal Event per phase transition, none for a reconcile that changed nothing."""
        if change.written and change.phase_changed and change.object is not None:
            ctx.events.record(change.object, "Normal", reason, message)


class DiscoverySourceHandler(KindHandler):
    """Reads a discovery source object; mapping it to polycrate.io objects comes with discovery."""

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def reconcile(self, ctx: WorkerContext, key: ObjectKey, obj: JsonObject) -> None:
        # Only the key is logged: a meta Secret's data must never reach a log line.
        log.debug(
            "observed %s (resourceVersion %s); its discovery mapping arrives in a later release",
            key,
            (obj.get("metadata") or {}).get("resourceVersion"),
        )
