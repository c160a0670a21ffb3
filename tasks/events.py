"""Kubernetes Events for phase transitions and failures, aggregated instead of repeated.

`kubectl describe` is where users look first, so every transition and failure leaves an Event
on the object. A key that fails every 60 s for an hour must not leave sixty Events: the Event's
name is derived from (object uid, type, reason, message), so the same occurrence maps to the
same Event, whose `count` and `lastTimestamp` are bumped (resourceVersion-checked) instead of a
new object being created — what client-go's event correlator does. Recording is best effort: an
Event that cannot be written is logged and never fails the reconcile it describes.

A reconcile that creates a tenant's seven objects must not cost seven Event writes: within
`aggregated_events()` (the runtime wraps every run in it) Normal Events are buffered per object and
written at the end as one Event that names every change ("...: All organization resources
provisioned; created Keycloak group "/acme-corp", GitLab group "acme-corp", ..."). Warnings are
written at once, each on its own, after the Normal ones buffered before them.
"""

from __future__ import annotations

import hashlib
import logging
import re
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from polycrate.errors import PolycrateError
from polycrate.fence import FencedError
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


# A Normal Event of one written change reads "<what> <action>[ (<detail>)]" with its reason the
# action capitalised (workers.change.Change): such Events are grouped by action when aggregated.
_REASON_OF_MIXED_CHANGES = "Reconciled"


@dataclass
class _Pending:
    """The Normal Events buffered for one object during a run, in order, and who writes them."""

    recorder: EventRecorder
    obj: JsonObject
    records: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class EventBuffer:
    """What `aggregated_events()` collects; `discard()` drops it (a fenced run writes nothing)."""

    pending: dict[tuple[str, ...], _Pending] = field(default_factory=dict)
    discarded: bool = False

    def discard(self) -> None:
        self.discarded = True
        self.pending.clear()

    def flush(self, identity: tuple[str, ...] | None = None) -> None:
        """Write one Event per object (or only `identity`'s) for what was buffered."""
        keys = [identity] if identity is not None else list(self.pending)
        for key in keys:
            pending = self.pending.pop(key, None)
            if pending is None or not pending.records:
                continue
            reason, message = summarize(pending.records)
            try:
                pending.recorder.write(pending.obj, "Normal", reason, message)
            except FencedError:
                log.warning("Events of %s are not written: the run lost its lock", "/".join(key[1:]))
                self.discard()
                return


_buffer: ContextVar[EventBuffer | None] = ContextVar("polycrate_event_buffer", default=None)


@contextmanager
def aggregated_events() -> Iterator[EventBuffer]:
    """Buffer the Normal Events recorded inside (this thread or task only); on leaving, write one
    Event per object. Nested use joins the outer buffer, which writes them."""
    outer = _buffer.get()
    if outer is not None:
        yield outer
        return
    buffer = EventBuffer()
    token = _buffer.set(buffer)
    try:
        yield buffer
    finally:
        _buffer.reset(token)
        buffer.flush()


def _identity(obj: JsonObject) -> tuple[str, ...]:
    metadata = obj.get("metadata") or {}
    return (
        str(metadata.get("uid") or ""),
        str(obj.get("kind") or ""),
        str(metadata.get("namespace") or ""),
        str(metadata.get("name") or ""),
    )


def summarize(records: list[tuple[str, str]]) -> tuple[str, str]:
    """One (reason, message) for the Normal Events of one run on one object.

    Transitions ("...: All organization resources provisioned") come first, then the changes
    grouped by action ("created A, B (50Gi); deleted C"). The reason is the last transition's,
    else the one action's, else "Reconciled".
    """
    if len(records) == 1:
        return records[0]
    transitions: list[tuple[str, str]] = []
    changes: dict[str, list[str]] = {}
    reason_of: dict[str, str] = {}
    for reason, message in records:
        action = reason.lower()
        match = re.fullmatch(rf"(.+) {re.escape(action)}( \(.*\))?", message, flags=re.DOTALL)
        if match is None:
            transitions.append((reason, message))
            continue
        changes.setdefault(action, []).append(match.group(1) + (match.group(2) or ""))
        reason_of[action] = reason
    parts = [message for _, message in transitions]
    parts += [f"{action} {', '.join(whats)}" for action, whats in changes.items()]
    if transitions:
        reason = transitions[-1][0]
    elif len(changes) == 1:
        reason = reason_of[next(iter(changes))]
    else:
        reason = _REASON_OF_MIXED_CHANGES
    return reason, "; ".join(parts)


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
        """Record the occurrence on `obj`; returns the Event as stored, or None if it could not be
        written or is buffered (a Normal Event inside `aggregated_events()`)."""
        buffer = _buffer.get()
        if buffer is not None and not buffer.discarded:
            identity = _identity(obj)
            if event_type == "Normal":
                pending = buffer.pending.setdefault(identity, _Pending(self, obj))
                pending.obj = obj
                pending.records.append((reason, message))
                return None
            # Written in the order they happened: what was buffered before this Warning first.
            buffer.flush(identity)
        return self.write(obj, event_type, reason, message)

    def write(self, obj: JsonObject, event_type: EventType, reason: str, message: str) -> JsonObject | None:
        """Write the Event now, buffer or not; None if it could not be written."""
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
