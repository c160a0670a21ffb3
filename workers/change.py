"""What one idempotent step against an external system did.

Every `ensure_*` / `delete_*` step of a system client reads, compares and writes only when
needed, and reports the outcome as a `Change`, so flows can write status, emit Events only on
real changes, and tests can assert that a second run is a no-op ("unchanged").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ChangeAction = Literal["created", "updated", "unchanged", "deleted", "absent"]


@dataclass(frozen=True)
class Change:
    """The outcome of one step: what happened, the object's id in the system, and a short why."""

    action: ChangeAction
    id: str | int | None = None
    detail: str = ""

    @property
    def changed(self) -> bool:
        """True when the step wrote something to the system."""
        return self.action in ("created", "updated", "deleted")
