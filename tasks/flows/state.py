"""What the operator keeps on a custom resource besides its status, in one annotation.

The status schema has fields only for the IDs a user reads; what the operator needs beyond that
(the members it added itself, the servers it registered, a Harbor project it is about to create)
lives as JSON in the `polycrate.io/operator-state` annotation. Each change is written at once, so
what was recorded before a write to an external system survives a crash right after that write:
the failure it prevents is a member, registration or project the operator made and then forgot.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from polycrate.keys import ObjectKey
from polycrate.kubeclient.api import JsonObject
from tasks.context import WorkerContext

log = logging.getLogger(__name__)

STATE_ANNOTATION = "polycrate.io/operator-state"


class OperatorState:
    """Sections of JSON the operator keeps on the object itself, in one annotation.

    Each change is written at once (a merge patch of just this annotation), so what was recorded
    before a write to an external system survives a crash right after that write.
    """

    def __init__(self, ctx: WorkerContext, key: ObjectKey, obj: JsonObject) -> None:
        self._ctx = ctx
        self._key = key
        raw = ((obj.get("metadata") or {}).get("annotations") or {}).get(STATE_ANNOTATION)
        try:
            state = json.loads(raw) if raw else {}
        except ValueError:
            log.warning("%s: annotation %s is not JSON; starting afresh", key, STATE_ANNOTATION)
            state = {}
        self._state: dict[str, Any] = state if isinstance(state, dict) else {}

    def get(self, section: str) -> Any:
        return self._state.get(section)

    def set(self, section: str, value: Any) -> None:
        """Record `value` under `section`; None or an empty collection removes the section."""
        wanted = dict(self._state)
        if value is None or value == {} or value == []:
            wanted.pop(section, None)
        else:
            wanted[section] = value
        if wanted == self._state:
            return
        encoded = json.dumps(wanted, sort_keys=True, separators=(",", ":")) if wanted else None
        self._ctx.objects.patch(self._key, {"metadata": {"annotations": {STATE_ANNOTATION: encoded}}})
        self._state = wanted

    def get_for(self, section: str, sdp: str) -> Any:
        return (self._state.get(section) or {}).get(sdp)

    def set_for(self, section: str, sdp: str, value: Any) -> None:
        per_sdp = dict(self._state.get(section) or {})
        if value is None or value == {} or value == []:
            per_sdp.pop(sdp, None)
        else:
            per_sdp[sdp] = value
        self.set(section, per_sdp)
