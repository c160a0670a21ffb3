"""Status conventions shared by all 15 kinds: phase, conditions and observedGeneration.

Every status model derives from `StatusModel`, so status writers and `kubectl get` columns
can rely on `phase`, `conditions` (Kubernetes shape, a map-list keyed by `type`, so merges
never lose another writer's condition) and `observedGeneration` for every kind. Unknown
fields are ignored: a status written by a newer operator version still parses. Serialise with
`model_dump(mode="json", by_alias=True, exclude_none=True)`; the schemas are not nullable.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from polycrate.models.fieldtypes import Timestamp

ConditionStatus = Literal["True", "False", "Unknown"]


class Condition(BaseModel):
    """One observation about the object, in the Kubernetes condition shape."""

    model_config = ConfigDict(extra="ignore")

    type: str = Field(min_length=1, description="condition type in CamelCase, e.g. Ready")
    status: ConditionStatus = Field(description='"True", "False" or "Unknown"')
    reason: str | None = Field(default=None, description="CamelCase reason for the last transition")
    message: str | None = Field(default=None, description="human-readable details, names field and fix")
    lastTransitionTime: Timestamp | None = Field(
        default=None, description="when status last changed from one value to another"
    )
    observedGeneration: int | None = Field(
        default=None, description="metadata.generation the condition was computed from"
    )


class StatusPart(BaseModel):
    """Base of nested status objects: unknown fields are ignored, like in StatusModel."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class StatusModel(BaseModel):
    """Fields every kind's status has; kinds add their own IDs and sync details."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    phase: str | None = Field(default=None, description="summary of the object's state")
    conditions: list[Condition] = Field(
        default_factory=list,
        description="latest observations, one per type",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    observedGeneration: int | None = Field(
        default=None, description="metadata.generation the operator last acted on"
    )

    def condition(self, condition_type: str) -> Condition | None:
        """The condition of that type, if present."""
        return next((c for c in self.conditions if c.type == condition_type), None)

    def set_condition(
        self,
        condition_type: str,
        status: ConditionStatus,
        reason: str,
        message: str,
        *,
        observed_generation: int | None = None,
        now: datetime | None = None,
    ) -> bool:
        """Set a condition in place; returns whether anything changed.

        lastTransitionTime moves only when `status` changes, as Kubernetes tools expect:
        re-asserting the same state must not look like a fresh transition.
        """
        current = self.condition(condition_type)
        timestamp = (now or datetime.now(UTC)).replace(microsecond=0)
        if current is None:
            self.conditions.append(
                Condition(
                    type=condition_type,
                    status=status,
                    reason=reason,
                    message=message,
                    lastTransitionTime=timestamp,
                    observedGeneration=observed_generation,
                )
            )
            return True
        before = current.model_dump()
        if current.status != status or current.lastTransitionTime is None:
            current.lastTransitionTime = timestamp
        current.status = status
        current.reason = reason
        current.message = message
        current.observedGeneration = observed_generation
        return current.model_dump() != before
