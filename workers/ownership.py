"""Which custom resource manages an external object, and when the operator may take one over.

Everything the operator creates is marked with the owning object's UID (a Keycloak group
attribute, a marker line at the end of a GitLab group description, an Argo CD project label),
written in the same request that creates it, so a crash between create and status write still
leaves an object the next run recognises as its own. An object found by name is then claimed
only when it is marked with this UID, recorded in this object's status (made before the marks
existed), or unmarked and the object carries `polycrate.io/adopt: "true"` (or the annotation names
the UID of the previous owner, gone with deletionPolicy Orphan). One marked by another object is
an error naming that object: two resources never fight over one group or project.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from polycrate.errors import PermanentError

ADOPT_ANNOTATION = "polycrate.io/adopt"
OWNER_UID_KEY = "polycrate.io/owner-uid"  # Keycloak attribute, Argo CD label
OWNER_KEY = "polycrate.io/owner"  # Keycloak attribute, Argo CD annotation: "Kind namespace/name"

# The last line of a GitLab group description the operator manages.
_DESCRIPTION_MARKER = re.compile(r"(?:\n\n)?\[polycrate\.io/owner: ([0-9A-Za-z-]+) \(([^)\n]*)\)\]\s*$")


@dataclass(frozen=True)
class Owner:
    """The custom resource on whose behalf a step runs."""

    uid: str
    ref: str  # "Organization polycrate/acme-corp"
    adopt: str = ""  # the adopt annotation: "true" takes over unmarked objects, a UID that owner's

    @classmethod
    def of(cls, obj: Mapping[str, Any]) -> Owner:
        metadata = obj.get("metadata") or {}
        namespace = metadata.get("namespace")
        name = f"{namespace}/{metadata.get('name')}" if namespace else str(metadata.get("name"))
        annotations = metadata.get("annotations") or {}
        return cls(
            uid=str(metadata.get("uid") or ""),
            ref=f"{obj.get('kind', 'object')} {name}",
            adopt=str(annotations.get(ADOPT_ANNOTATION, "")).strip(),
        )

    # -- the marks per system -------------------------------------------------------------

    def keycloak_attributes(self) -> dict[str, list[str]]:
        # Keycloak stores an attribute value in VARCHAR(255); the UID is what identifies.
        return {OWNER_UID_KEY: [self.uid], OWNER_KEY: [self.ref[:255]]}

    def argocd_metadata(self) -> dict[str, dict[str, str]]:
        # A label value is at most 63 characters: the UID (36) fits, the name goes in an annotation.
        return {"labels": {OWNER_UID_KEY: self.uid}, "annotations": {OWNER_KEY: self.ref}}

    def gitlab_description(self, description: str, limit: int = 255) -> str:
        """`description` with the marker line appended (the owner's name cut to fit GitLab's limit)."""
        base = strip_description_marker(description)
        prefix = f"{base}\n\n" if base else ""
        room = limit - len(prefix) - len(f"[polycrate.io/owner: {self.uid} ()]")
        return f"{prefix}[polycrate.io/owner: {self.uid} ({self.ref[: max(room, 0)]})]"


@dataclass(frozen=True)
class Mark:
    """What an external object says about its owner (both None: unmarked)."""

    uid: str | None = None
    ref: str | None = None

    @classmethod
    def from_keycloak(cls, attributes: Mapping[str, list[str]]) -> Mark:
        uid = (attributes.get(OWNER_UID_KEY) or [None])[0]
        return cls(uid, (attributes.get(OWNER_KEY) or [None])[0])

    @classmethod
    def from_argocd(cls, metadata: Mapping[str, Any]) -> Mark:
        return cls(
            (metadata.get("labels") or {}).get(OWNER_UID_KEY),
            (metadata.get("annotations") or {}).get(OWNER_KEY),
        )

    @classmethod
    def from_gitlab(cls, description: str | None) -> Mark:
        found = _DESCRIPTION_MARKER.search(description or "")
        return cls(found.group(1), found.group(2)) if found else cls()


def strip_description_marker(description: str | None) -> str:
    return _DESCRIPTION_MARKER.sub("", description or "")


def claim(owner: Owner | None, mark: Mark, *, what: str, recorded: bool) -> bool:
    """May `owner` manage the existing object `what`? True when it has to be marked (again);
    raises PermanentError when it belongs to another object or is not ours to take silently."""
    if owner is None:
        return False  # a caller without an owner (tools, tests) manages by name as before
    if mark.uid == owner.uid:
        return False
    if mark.uid:
        if owner.adopt == mark.uid:
            return True  # taking over from an owner that was deleted with deletionPolicy: Orphan
        raise PermanentError(
            f"{what} is managed by {mark.ref or 'another object'} (uid {mark.uid}), not by {owner.ref}; "
            "choose another name (if that object is gone, e.g. deleted with deletionPolicy: Orphan, "
            f'take the group over with the annotation {ADOPT_ANNOTATION}: "{mark.uid}")',
            reason="OwnedByAnother",
        )
    if recorded or owner.adopt.lower() == "true":
        return True
    raise PermanentError(
        f"{what} already exists and {owner.ref} did not create it; to take it over add the annotation "
        f'{ADOPT_ANNOTATION}: "true" to {owner.ref}, or choose another name',
        reason="AdoptionRequired",
    )
