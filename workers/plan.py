"""Plan mode of the system steps: read and compare as always, record the writes instead of making them.

`polycrate operator plan` runs the very reconcile steps the workers run with a `Plan` active
(`plan_mode()`, a context variable, so a worker's own runs are never affected): every step
still reads and compares, but where it would write it records a `PlannedWrite` and answers as
if the write had happened — a stand-in id for a created object, which later steps of the same
run can find. One code path, so the plan cannot drift from the reconcile.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

import requests

PLANNED_ID = "(new)"  # the id a planned "created" step reports, since nothing was created
PLANNED_NUMERIC_ID = 0  # the same for systems with numeric ids (GitLab, Harbor): no real object has 0


@dataclass(frozen=True)
class PlannedWrite:
    """One write a reconcile would make: system, create/update/delete, what, and how."""

    system: str
    action: Literal["create", "update", "delete"]
    target: str
    detail: str = ""
    where: str = ""  # e.g. 'SDP "staging"' for a kind provisioned in several SDPs

    def render(self) -> str:
        sign = {"create": "+", "update": "~", "delete": "-"}[self.action]
        detail = f" ({self.detail})" if self.detail else ""
        where = f" in {self.where}" if self.where else ""
        return f"  {sign} {self.action} {self.target}{where}{detail}"


@dataclass
class Plan:
    """The writes recorded while planning, and the objects they would have created (so a later
    step of the same run, e.g. a subgroup under a new group, can build on them)."""

    writes: list[PlannedWrite] = field(default_factory=list)
    created: dict[tuple[str, str], Any] = field(default_factory=dict)
    where: str = ""  # set by a flow around the steps of one SDP

    def record(
        self,
        system: str,
        action: Literal["create", "update", "delete"],
        target: str,
        detail: str = "",
        *,
        created: tuple[str, Any] | None = None,
    ) -> None:
        self.writes.append(PlannedWrite(system, action, target, detail, self.where))
        if created is not None:
            self.created[(system, created[0])] = created[1]

    def planned(self, system: str, key: str) -> Any:
        """The stand-in for an object this plan would create, or None."""
        return self.created.get((system, key))


@contextmanager
def planning_in(where: str) -> Iterator[None]:
    """Label the writes planned inside (e.g. with the SDP they go to); no-op outside plan mode."""
    plan = planning()
    if plan is None:
        yield
        return
    outer, plan.where = plan.where, where
    try:
        yield
    finally:
        plan.where = outer


_active_plan: ContextVar[Plan | None] = ContextVar("polycrate_active_plan", default=None)


def planning() -> Plan | None:
    """The active plan: when set, steps record their writes instead of making them."""
    return _active_plan.get()


@contextmanager
def plan_mode() -> Iterator[Plan]:
    """Run the enclosed steps without writing to any external system; yields what they would do."""
    plan = Plan()
    token = _active_plan.set(plan)
    try:
        yield plan
    finally:
        _active_plan.reset(token)


_ACTIONS: dict[str, Literal["create", "update", "delete"]] = {
    "POST": "create",
    "PUT": "update",
    "PATCH": "update",
    "DELETE": "delete",
}


def planned_response(
    plan: Plan, system: str, method: str, url: str, what: str, body: Any, *, detail: str | None = None
) -> requests.Response:
    """Record a write of a plain-HTTP client (Harbor, Argo CD) and answer as the server would:
    the body echoed, a Location naming id 0 for a create, so the step carries on as after a write.
    `detail` says in words what changes; without it the request body is shown."""
    if detail is None and isinstance(body, dict):
        detail = json.dumps(body, sort_keys=True, separators=(",", ":"))
        if len(detail) > 300:
            detail = detail[:300] + "..."
    detail = detail or ""
    target = what[0].upper() + what[1:] if what else url
    plan.record(system, _ACTIONS.get(method, "update"), target, detail)
    name = _created_name(what)
    if method == "POST" and name:
        plan.created[(system, name)] = True
    response = requests.Response()
    response.status_code = 201 if method == "POST" else 200
    response.url = url
    response.headers["Content-Type"] = "application/json"
    if method == "POST":
        response.headers["Location"] = f"{urlsplit(url).path.rstrip('/')}/{PLANNED_NUMERIC_ID}"
    response._content = json.dumps(body if body is not None else {}).encode()
    return response


def _created_name(what: str) -> str:
    """`create project "acme"` → `project "acme"`: how a later read of the same run finds it."""
    return what.removeprefix("create ") if what.startswith("create ") else ""
