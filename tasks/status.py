"""Status writes that never lose another writer's fields and never rewrite what did not change.

A writer sends a JSON merge patch to the `/status` subresource holding only the fields it sets,
so two writers of different fields cannot clobber each other. Conditions are one list (a merge
patch replaces lists whole), so they are merged by `type` into the list just read, and the
patch carries that read's `resourceVersion`: if anyone wrote in between, the API server answers
409 and the writer reads again and redoes the merge. A condition keeps its lastTransitionTime
while its status stays the same, and a write whose result equals the current status is skipped,
so steady-state reconciles cost one GET and produce no watch events.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from polycrate.errors import TransientError
from polycrate.keys import ObjectKey
from polycrate.kubeclient.api import JsonObject
from polycrate.kubeclient.errors import Conflict
from polycrate.kubeclient.objects import ObjectAPI

log = logging.getLogger(__name__)

ConditionStatus = Literal["True", "False", "Unknown"]


def utc_now() -> datetime:
    return datetime.now(UTC)


def timestamp(moment: datetime) -> str:
    """Kubernetes' RFC 3339 form, second precision: 2026-01-06T14:30:00Z."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class ConditionUpdate:
    """A condition as a writer asserts it; lastTransitionTime is the writer's business."""

    type: str
    status: ConditionStatus
    reason: str
    message: str


@dataclass(frozen=True)
class StatusUpdate:
    """The status fields one writer sets; everything else in the status is left alone.

    `fields` holds kind-specific fields (e.g. keycloakGroupID); a value of None removes the field.
    """

    phase: str | None = None
    conditions: tuple[ConditionUpdate, ...] = ()
    observed_generation: int | None = None
    fields: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class StatusChange:
    """What a write did: whether it patched anything, and the phase before and after."""

    written: bool
    previous_phase: str | None
    phase: str | None
    object: JsonObject | None

    @property
    def phase_changed(self) -> bool:
        return self.phase != self.previous_phase


def merge_conditions(
    current: list[JsonObject],
    updates: tuple[ConditionUpdate, ...],
    observed_generation: int | None,
    now: datetime,
) -> list[JsonObject]:
    """`current` with each update applied by type; other types stay as they are, in order."""
    merged = [dict(condition) for condition in current]
    for update in updates:
        existing = next((c for c in merged if c.get("type") == update.type), None)
        if existing is None:
            existing = {"type": update.type}
            merged.append(existing)
        if existing.get("status") != update.status or not existing.get("lastTransitionTime"):
            existing["lastTransitionTime"] = timestamp(now)
        existing["status"] = update.status
        existing["reason"] = update.reason
        existing["message"] = update.message
        if observed_generation is not None:
            existing["observedGeneration"] = observed_generation
    return merged


def status_patch(current_status: Mapping[str, Any], update: StatusUpdate, now: datetime) -> JsonObject:
    """The smallest merge patch of `status` that applies `update`; empty when nothing changes."""
    patch: JsonObject = {}
    if update.phase is not None and current_status.get("phase") != update.phase:
        patch["phase"] = update.phase
    if (
        update.observed_generation is not None
        and current_status.get("observedGeneration") != update.observed_generation
    ):
        patch["observedGeneration"] = update.observed_generation
    for name, value in update.fields.items():
        if current_status.get(name) != value:
            patch[name] = value
    if update.conditions:
        current_conditions = list(current_status.get("conditions") or [])
        merged = merge_conditions(current_conditions, update.conditions, update.observed_generation, now)
        if merged != current_conditions:
            patch["conditions"] = merged
    return patch


class StatusWriter:
    """Applies `StatusUpdate`s to objects' /status with a resourceVersion-checked merge patch."""

    def __init__(
        self, objects: ObjectAPI, *, clock: Callable[[], datetime] = utc_now, max_attempts: int = 5
    ) -> None:
        self._objects = objects
        self._clock = clock
        self._max_attempts = max_attempts

    def write(
        self, key: ObjectKey, update: StatusUpdate, *, current: JsonObject | None = None
    ) -> StatusChange:
        """Apply `update` to the status of `key`'s object; `current` saves the first GET when fresh."""
        obj = current
        for _attempt in range(self._max_attempts):
            if obj is None:
                obj = self._objects.get(key)
                if obj is None:
                    return StatusChange(written=False, previous_phase=None, phase=None, object=None)
            status = obj.get("status") or {}
            previous_phase = status.get("phase")
            patch = status_patch(status, update, self._clock())
            if not patch:
                return StatusChange(
                    written=False, previous_phase=previous_phase, phase=previous_phase, object=obj
                )
            body = {"metadata": {"resourceVersion": obj["metadata"]["resourceVersion"]}, "status": patch}
            try:
                written = self._objects.patch(key, body, subresource="status")
            except Conflict:
                log.debug("status of %s changed while writing; reading it again", key)
                obj = None
                continue
            return StatusChange(
                written=True,
                previous_phase=previous_phase,
                phase=(written.get("status") or {}).get("phase"),
                object=written,
            )
        raise TransientError(
            f"{key.describe()}: status kept changing during {self._max_attempts} write attempts"
        )
