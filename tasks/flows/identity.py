"""Names versus identity of what a tenant owns outside the cluster.

The IDs in status are an object's identity; names are attributes. Keycloak and GitLab rename in
place (same id, members and history kept); Harbor and Argo CD cannot rename a project, so a
changed name there is refused before anything is written — the CRD's transition rule already
refuses it at the API server when old and new value are both set, this catches the rest (e.g. a
name that was defaulted from metadata.name), so a rename never leaves an orphan with members.
Harbor accepts only its fixed metadata keys, so a Harbor project cannot carry an ownership mark;
instead the name of a project about to be created is written ahead into the object's
operator-state annotation, and a crash between create and status write finds it as its own
instead of as a stranger's project that would need `polycrate.io/adopt`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from polycrate.errors import PermanentError, TransientError
from tasks.flows.state import OperatorState
from tasks.keys import ObjectKey
from workers import harbor

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
    what = f"get project {project_id}"
    # Only 404 means gone; a 403 is a rights problem that must not make the operator forget the id.
    response = client.http_request("GET", f"/projects/{project_id}", what=what, absent=(404,))
    if response.status_code != 200:
        return None
    try:
        return str(response.json()["name"])
    except (ValueError, KeyError, TypeError):
        raise TransientError(f"{harbor.SYSTEM}: {what}: the answer names no project") from None


@contextmanager
def harbor_creation(state: OperatorState, slot: str, name: str, *, recorded: bool) -> Iterator[bool]:
    """Around a Harbor ensure step: yields whether the project `name` counts as the object's own
    although status has no id for it (a creation of ours was interrupted). When status has no id,
    the name is written ahead under `slot` and cleared once the step succeeded."""
    if recorded:
        yield True
        return
    creating = dict(state.get(CREATING_SECTION) or {})
    intended = creating.get(slot) == name
    state.set(CREATING_SECTION, {**creating, slot: name})
    yield intended
    state.set(CREATING_SECTION, {k: v for k, v in creating.items() if k != slot})
