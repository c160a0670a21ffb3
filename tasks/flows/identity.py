"""Names versus identity of what a tenant owns outside the cluster.

The IDs in status are an object's identity; names are attributes. Keycloak and GitLab rename in
place (same id, members and history kept); Harbor and Argo CD cannot rename a project, so a
changed name there is refused before anything is written — the CRD's transition rule already
refuses it at the API server when old and new value are both set, this catches the rest (e.g. a
name that was defaulted from metadata.name), so a rename never leaves an orphan with members.
Harbor accepts only its fixed metadata keys, so a Harbor project cannot carry an ownership mark;
instead the name of a project about to be created is written ahead into the object's
operator-state annotation, and a crash between create and status write finds it as its own
instead of as a stranger's project that would need `polycrate.io/adopt`. The name is dropped only
once the step has written the project's id to status itself: the run's final status write comes
after later steps, and a run killed or fenced before it (a worker lost, Redis emptied under it)
must not leave a project that neither record calls ours.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from polycrate.errors import PermanentError
from polycrate.keys import ObjectKey
from polycrate.kubeclient.api import JsonObject
from tasks.context import WorkerContext
from tasks.flows.state import OperatorState
from workers import harbor
from workers.plan import planning

CREATING_SECTION = "creating"


def immutable_name_error(key: ObjectKey, field: str, wanted: str, what: str, current: str) -> PermanentError:
    """The Error for a name the system cannot change: names field, both names and the way out."""
    return PermanentError(
        f'{key.describe()}: {field} "{wanted}": the {what} "{current}" cannot be renamed; set {field} back '
        f'to "{current}", or delete and recreate the {key.kind} to get a {what} named "{wanted}" '
        "(deletionPolicy: Orphan keeps the old one)",
        reason="ImmutableField",
    )


def harbor_project_name(client: harbor.HarborClient, project_id: int) -> str | None:
    """The name of the Harbor project with this id, or None when it is gone."""
    project = client.get_project_by_id(project_id)
    return project.name if project is not None else None


class HarborCreation:
    """What a Harbor ensure step may take as the object's own (see `harbor_creation`)."""

    def __init__(
        self, ctx: WorkerContext, obj: JsonObject, state: OperatorState, slot: str, name: str
    ) -> None:
        self._ctx, self._obj, self._state, self._slot, self._name = ctx, obj, state, slot, name
        self._creating = dict(state.get(CREATING_SECTION) or {})
        self.ours = self._creating.get(slot) == name

    def write_ahead(self) -> None:
        self._state.set(CREATING_SECTION, {**self._creating, self._slot: self._name})

    def done(self) -> None:
        self._state.set(CREATING_SECTION, {k: v for k, v in self._creating.items() if k != self._slot})

    def existed(self, project: harbor.HarborProject) -> None:
        """The project was there before this run's create: the name written ahead is withdrawn
        first (only a project that did not exist before can count as ours), then the cluster is
        asked whether another object owns it (`check_harbor_owner`)."""
        self.done()
        check_harbor_owner(self._ctx, self._obj, project)


@contextmanager
def harbor_creation(
    ctx: WorkerContext,
    obj: JsonObject,
    state: OperatorState,
    slot: str,
    name: str,
    *,
    recorded: bool,
    record: Callable[[], object],
) -> Iterator[HarborCreation]:
    """Around a Harbor ensure step: `.ours` says whether the project `name` counts as the object's
    own although status has no id for it (a creation of ours was interrupted). When status has no
    id, the name is written ahead under `slot` before the create; a create answered 409 calls
    `.existed(project)`, which withdraws it again, so only a project that did not exist before can
    ever count as ours — without a read before. After the step succeeded `record()` writes the
    project's id to status, and only then is the name dropped: a run that dies anywhere in between
    (a wiped broker ends runs in flight) leaves the name or the id, never neither."""
    creation = HarborCreation(ctx, obj, state, slot, name)
    if recorded:
        creation.ours = True
        yield creation
        return
    if not creation.ours:
        creation.write_ahead()
    yield creation
    if planning() is None:  # a plan created nothing, and a new object has no status to write to
        record()
    creation.done()


# Where the objects that own Harbor projects record them: kind → (status field, spec name field).
_HARBOR_RECORDS = (
    ("Organization", "harborProjectID", ("harbor", "projectName")),
    ("HarborProject", "harborProjectIDs", ("projectName",)),
)


def _recorded_harbor_ids(obj: JsonObject, status_field: str) -> list[Any]:
    value = (obj.get("status") or {}).get(status_field)
    return list(value.values()) if isinstance(value, dict) else [value]


def _spec_harbor_name(obj: JsonObject, path: tuple[str, ...]) -> str:
    value: Any = obj.get("spec") or {}
    for part in path:
        value = (value or {}).get(part) if isinstance(value, dict) else None
    return str(value or (obj.get("metadata") or {}).get("name"))


def check_harbor_owner(ctx: WorkerContext, obj: JsonObject, project: harbor.HarborProject) -> None:
    """Harbor projects carry no mark, so before an existing project the object has not recorded is
    taken (adopted), the cluster is asked: another object whose status records it (same id, same
    name) owns it, and that is an error naming it — adopt or not."""
    name = project.name
    own_uid = (obj.get("metadata") or {}).get("uid")
    for kind, status_field, name_path in _HARBOR_RECORDS:
        try:
            candidates = ctx.objects.list(kind)
        except PermanentError:
            continue  # the kind's CRD is not installed
        for other in candidates:
            metadata = other.get("metadata") or {}
            if metadata.get("uid") == own_uid or project.id not in _recorded_harbor_ids(other, status_field):
                continue
            if _spec_harbor_name(other, name_path) == name:
                raise PermanentError(
                    f'Harbor project "{name}" is managed by {kind} {metadata.get("namespace")}/{metadata.get("name")}; '
                    "choose another projectName (once that object is deleted with deletionPolicy: Orphan, the "
                    'project can be adopted with the annotation polycrate.io/adopt: "true")',
                    reason="OwnedByAnother",
                )
