"""Kubernetes Events for phase transitions and failures, aggregated instead of repeated.

`kubectl describe` is where users look first, so every transition and failure leaves an Event
on the object. A key that fails every 60 s for an hour must not leave sixty Events: the Event's
name is derived from (object uid, type, reason, message), so the same occurrence maps to the
same Event, whose `count` and `lastTimestamp` are bumped (resourceVersion-checked) instead of a
new object being created — what client-go's event correlator does. Recording is best effort: an
Event that cannot be written is logged and never fails the reconcile it describes.
"""

from __future__ import annotations

import hashlib
import logging
import socket
from collections.abc import Callable
from datetime import datetime
from typing import Literal

from polycrate.errors import PolycrateError
from polycrate.kubeclient.api import JsonObject
from polycrate.kubeclient.errors import Conflict
from polycrate.kubeclient.objects import ObjectAPI
from tasks.status import timestamp, utc_now

log = logging.getLogger(__name__)

EventType = Literal["Normal", "Warning"]

COMPONENT = "polycrate-operator"
# The API server rejects longer messages.
_MAX_MESSAGE = 1024


def event_name(obj: JsonObject, event_type: str, reason: str, message: str) -> str:
    """Stable name of the Event for this occurrence on this object."""
    metadata = obj.get("metadata") or {}
    identity = "\x00".join(
        [
            str(metadata.get("uid") or ""),
            str(obj.get("kind") or ""),
            str(metadata.get("namespace") or ""),
            str(metadata.get("name") or ""),
            event_type,
            reason,
            message,
        ]
    )
    digest = hashlib.sha256(identity.encode()).hexdigest()[:16]
    return f"{metadata.get('name')}.{digest}"


class EventRecorder:
    """Creates or bumps the Event of an (object, type, reason, message)."""

    def __init__(
        self,
        objects: ObjectAPI,
        *,
        component: str = COMPONENT,
        instance: str | None = None,
        clock: Callable[[], datetime] = utc_now,
        max_attempts: int = 5,
    ) -> None:
        self._objects = objects
        self._component = component
        self._instance = instance or socket.gethostname()
        self._clock = clock
        self._max_attempts = max_attempts

    def record(self, obj: JsonObject, event_type: EventType, reason: str, message: str) -> JsonObject | None:
        """Record the occurrence on `obj`; returns the Event as stored, or None if it could not be written."""
        message = message[:_MAX_MESSAGE]
        try:
            return self._create_or_bump(obj, event_type, reason, message)
        except PolycrateError as exc:
            metadata = obj.get("metadata") or {}
            log.warning(
                "could not record Event %s on %s %s/%s: %s",
                reason,
                obj.get("kind"),
                metadata.get("namespace", ""),
                metadata.get("name"),
                exc,
            )
            return None

    def _create_or_bump(
        self, obj: JsonObject, event_type: EventType, reason: str, message: str
    ) -> JsonObject:
        metadata = obj.get("metadata") or {}
        # Events of cluster-scoped objects live in "default", as client-go records them.
        namespace = metadata.get("namespace") or "default"
        name = event_name(obj, event_type, reason, message)
        now = timestamp(self._clock())
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": namespace},
            "involvedObject": {
                "apiVersion": obj.get("apiVersion"),
                "kind": obj.get("kind"),
                "namespace": metadata.get("namespace") or "",
                "name": metadata.get("name"),
                "uid": metadata.get("uid"),
            },
            "type": event_type,
            "reason": reason,
            "message": message,
            "count": 1,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "source": {"component": self._component, "host": self._instance},
            "reportingComponent": self._component,
            "reportingInstance": self._instance,
        }
        try:
            return self._objects.create_event(namespace, event)
        except Conflict:
            pass  # the same occurrence was recorded before: count it
        for _attempt in range(self._max_attempts):
            existing = self._objects.get_event(namespace, name)
            if existing is None:
                try:
                    return self._objects.create_event(namespace, event)
                except Conflict:
                    continue
            bump = {
                "metadata": {"resourceVersion": existing["metadata"]["resourceVersion"]},
                "count": int(existing.get("count") or 1) + 1,
                "lastTimestamp": now,
            }
            try:
                return self._objects.patch_event(namespace, name, bump)
            except Conflict:
                continue
        raise Conflict(
            f"Event {namespace}/{name} kept changing during {self._max_attempts} attempts", code=409
        )
