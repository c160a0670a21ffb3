"""Tenancy flows: Organization, ContactGroup and Contact in the systems of their SDPs.

An Organization is driven in the spec's order — Keycloak group and role subgroups, GitLab group,
Harbor project, Argo CD project — and removed in reverse. What it owns is known from the IDs in
its status: a disabled section is cleaned up from them, and the IDs reached so far are written
even when a later system fails, so an outage never makes the operator forget what it created.
A Contact's memberships are recorded in status before they are made (write-ahead) and only
recorded ones are ever removed, so a membership a human granted is never taken away. An
Organization or ContactGroup that becomes Ready wakes the objects waiting for it (`watches`). The recorded
IDs are the identity: a changed group name or path renames the Keycloak and GitLab groups in
place, a changed Harbor or Argo CD project name is refused (see identity.py), and what already
exists under a wanted name is claimed by the ownership rules of workers/ownership.py.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from pydantic import BaseModel

from polycrate.errors import (
    DependencyNotFoundError,
    DependencyNotReadyError,
    InvalidSpecError,
    PermanentError,
    PolycrateError,
)
from polycrate.keys import ObjectKey
from polycrate.kubeclient.api import JsonObject
from polycrate.models import KINDS, check_argocd_roles, parse_spec
from polycrate.models.platform import PlatformSettings
from polycrate.models.tenancy import (
    ContactGroupSpec,
    ContactGroupStatus,
    ContactSpec,
    ContactStatus,
    OrganizationSpec,
    OrganizationStatus,
)
from polycrate.roles import GITLAB_ACCESS_LEVELS
from tasks.context import WorkerContext
from tasks.flows.connections import PlatformConnections, platform
from tasks.flows.identity import (
    harbor_creation,
    harbor_project_name,
    immutable_name_error,
)
from tasks.flows.kit import cluster_destinations, combined_error, status_map
from tasks.flows.state import OperatorState
from tasks.handlers import ERROR, READY, CustomResourceHandler
from tasks.status import StatusUpdate
from tasks.watches import SourceRun, Watch, note
from workers import argocd, gitlab, harbor, keycloak
from workers.change import Change
from workers.ownership import Owner

log = logging.getLogger(__name__)

# GitLab access level of an Organization role (singular). Other roles: a GitLab level of the same
# name ("maintainers" → maintainer), else guest, the least privilege that still shows the group.
GITLAB_ACCESS_BY_ROLE: dict[str, str] = {
    "admin": "maintainer",
    "developer": "developer",
    "viewer": "reporter",
}
FALLBACK_GITLAB_ACCESS = "guest"

# kind → how a spec of that kind names the Organization it depends on
ORGANIZATION_REFERRERS: dict[str, Callable[[Mapping[str, Any]], Iterable[str]]] = {
    "Contact": lambda spec: (m.get("name", "") for m in spec.get("organizations") or ()),
    "GitLabGroup": lambda spec: (a.get("organization", "") for a in spec.get("organizationAccess") or ()),
    "HarborProject": lambda spec: (a.get("organization", "") for a in spec.get("organizationAccess") or ()),
}
# kinds whose spec.accessControl[].keycloakGroup may name a ContactGroup's Keycloak group
ACCESS_CONTROL_KINDS = ("GitLabGroup", "HarborProject", "ArgoCDProject")


def gitlab_access_level(role: str) -> str:
    """The GitLab access level for an Organization role: admin(s) → maintainer, developer(s) →
    developer, viewer(s) → reporter; a role named like a GitLab level gets that level; else guest."""
    singular = role.removesuffix("s")
    if singular in GITLAB_ACCESS_BY_ROLE:
        return GITLAB_ACCESS_BY_ROLE[singular]
    return singular if singular in GITLAB_ACCESS_LEVELS else FALLBACK_GITLAB_ACCESS


def role_subgroup(role: str, settings: PlatformSettings) -> str | None:
    """The SDP default role a Contact's role means: "developer" or "developers" → "developers"."""
    return next((candidate for candidate in settings.defaultRoles if candidate in (role, f"{role}s")), None)


def _record_progress(ctx: WorkerContext, key: ObjectKey, obj: JsonObject, fields: Mapping[str, Any]) -> None:
    """Write what was reached before a failure is raised: the IDs are how cleanup finds it later."""
    try:
        ctx.status.write(key, StatusUpdate(fields=fields), current=obj)
    except PolycrateError as exc:
        log.warning("could not record the progress of %s: %s", key, exc)


def _record_change(ctx: WorkerContext, obj: JsonObject, change: Change, what: str) -> None:
    """A Normal Event for each write to an external system (none for "unchanged")."""
    if change.changed:
        detail = f" ({change.detail})" if change.detail else ""
        ctx.events.record(obj, "Normal", change.action.capitalize(), f"{what} {change.action}{detail}")


def _platform_or_none(
    ctx: WorkerContext, obj: JsonObject, key: ObjectKey, sdp: str, *, referrer: str
) -> PlatformConnections | None:
    """The SDP's connections for cleaning up; None (with a Warning Event) when the SDP is gone,
    since then nothing can reach its systems and holding the finalizer would never help."""
    if ctx.objects.get(ObjectKey("SoftwareDeliveryPlatform", key.namespace, sdp)) is None:
        ctx.events.record(
            obj,
            "Warning",
            "PlatformGone",
            f'{referrer}: SoftwareDeliveryPlatform "{sdp}" no longer exists; what {key.describe()} '
            "created in its systems is left in place",
        )
        return None
    return platform(ctx, key.namespace, sdp, referrer=referrer)


def _delete_keycloak_group(
    ctx: WorkerContext,
    obj: JsonObject,
    client: keycloak.KeycloakClient,
    path: str,
    group_id: str,
    *,
    sdp: str | None = None,
) -> None:
    """Delete the group with the recorded id (with its subgroups), wherever a rename took it; a
    group at `path` that someone else made stays."""
    found = client.get_group(group_id) or client.find_group_by_path(path)
    if found is not None and found.id == group_id and client.delete_group(found.path):
        where = f' of SDP "{sdp}"' if sdp else ""
        _record_change(ctx, obj, Change("deleted", group_id), f'Keycloak group "{found.path}"{where}')


def _list_or_none(ctx: WorkerContext, kind: str, namespace: str) -> list[JsonObject]:
    try:
        return ctx.objects.list(kind, namespace)
    except PermanentError as exc:  # e.g. the kind's CRD is not installed: nothing waits
        log.debug("cannot list %s in %s to find dependents: %s", kind, namespace, exc)
        return []


def _referrers(
    ctx: WorkerContext, kind: str, namespace: str, refers: Callable[[Mapping[str, Any]], bool]
) -> list[ObjectKey]:
    return [
        ObjectKey(kind, namespace, item["metadata"]["name"])
        for item in _list_or_none(ctx, kind, namespace)
        if refers(item.get("spec") or {})
    ]


# --- Organization -----------------------------------------------------------------------------


@dataclass
class OrganizationResources:
    """What an Organization owns in the systems of its SDP, as recorded in its status."""

    keycloak_group_id: str | None = None
    keycloak_subgroup_ids: dict[str, str] = field(default_factory=dict)
    gitlab_group_id: int | None = None
    harbor_project_id: int | None = None
    argocd_project_created: bool | None = None
    argocd_project_name: str | None = None

    @classmethod
    def recorded(cls, obj: JsonObject) -> OrganizationResources:
        status = OrganizationStatus.model_validate(obj.get("status") or {})
        return cls(
            keycloak_group_id=status.keycloakGroupID,
            keycloak_subgroup_ids=dict(status.keycloakSubgroupIDs),
            gitlab_group_id=status.gitlabGroupID,
            harbor_project_id=status.harborProjectID,
            argocd_project_created=status.argoCDProjectCreated,
            argocd_project_name=status.argoCDProjectName,
        )

    def status_fields(self, recorded: OrganizationResources) -> dict[str, Any]:
        return {
            "keycloakGroupID": self.keycloak_group_id,
            "keycloakSubgroupIDs": status_map(recorded.keycloak_subgroup_ids, self.keycloak_subgroup_ids),
            "gitlabGroupID": self.gitlab_group_id,
            "harborProjectID": self.harbor_project_id,
            "argoCDProjectCreated": self.argocd_project_created,
            "argoCDProjectName": self.argocd_project_name,
        }


@dataclass(frozen=True)
class OrganizationNames:
    """The names an Organization's objects have in the systems, also for a spec that no longer
    validates (deletion must still find them)."""

    sdp: str | None
    keycloak_group: str
    argocd_project: str

    @classmethod
    def of(cls, obj: JsonObject, name: str) -> OrganizationNames:
        try:
            spec = parse_spec(obj)
        except InvalidSpecError:
            raw = obj.get("spec") or {}
            sdp = raw.get("sdp")
            return cls(
                sdp=sdp if isinstance(sdp, str) and sdp else None,
                keycloak_group=str((raw.get("keycloak") or {}).get("groupName") or name),
                argocd_project=str((raw.get("argocd") or {}).get("projectName") or name),
            )
        assert isinstance(spec, OrganizationSpec)
        return cls(
            sdp=spec.sdp,
            keycloak_group=spec.keycloak_group_name(name),
            argocd_project=(spec.argocd.projectName if spec.argocd else None) or name,
        )


class OrganizationHandler(CustomResourceHandler):
    """Keycloak group → GitLab group → Harbor project → Argo CD project; deletion in reverse."""

    def __init__(self) -> None:
        super().__init__(KINDS["Organization"])

    def provision(
        self, ctx: WorkerContext, key: ObjectKey, obj: JsonObject, spec: BaseModel
    ) -> dict[str, Any]:
        assert isinstance(spec, OrganizationSpec)
        systems = platform(ctx, key.namespace, spec.sdp, referrer=f"{key.describe()}: spec.sdp")
        recorded = OrganizationResources.recorded(obj)
        owned = replace(recorded, keycloak_subgroup_ids=dict(recorded.keycloak_subgroup_ids))
        # Harbor and Argo CD cannot rename: refused before anything is written anywhere.
        harbor_project = self._check_names_kept(key, spec, systems, recorded)
        try:
            self._keycloak(ctx, key, obj, spec, systems, owned)
            self._gitlab(ctx, key, obj, spec, systems, owned)
            self._harbor(ctx, key, obj, spec, systems, owned, harbor_project)
            self._argocd(ctx, key, obj, spec, systems, owned)
        except PolycrateError:
            _record_progress(ctx, key, obj, owned.status_fields(recorded))
            raise
        return owned.status_fields(recorded)

    @staticmethod
    def _check_names_kept(
        key: ObjectKey, spec: OrganizationSpec, systems: PlatformConnections, recorded: OrganizationResources
    ) -> harbor.HarborProject | None:
        """Raises for a changed Harbor or Argo CD project name; returns the recorded Harbor project
        as read for the check, so the Harbor step does not read it again."""
        harbor_client = systems.harbor()
        name = spec.harbor_project_name(key.name)
        current = None
        if harbor_client is not None and name is not None and recorded.harbor_project_id is not None:
            current = harbor_client.get_project_by_id(recorded.harbor_project_id)
            if current is not None and current.name != name:
                raise immutable_name_error(
                    key, "spec.harbor.projectName", name, "Harbor project", current.name
                )
        argocd_name = spec.argocd_project_name(key.name)
        previous = recorded.argocd_project_name
        known = systems.argocd() is not None and recorded.argocd_project_created and previous
        if known and argocd_name and previous != argocd_name:
            raise immutable_name_error(
                key, "spec.argocd.projectName", argocd_name, "Argo CD project", previous
            )
        return current

    @staticmethod
    def _managed(
        ctx: WorkerContext,
        obj: JsonObject,
        sdp: str,
        client: object | None,
        *,
        system: str,
        owned: str | None,
        wanted: bool = True,
        delete: Callable[[], None] = lambda: None,
    ) -> bool:
        """Whether this run manages the system's object; the one rule of every per-system step.

        The SDP no longer configures the system (`client` None): what the Organization `owned`
        there is left in place, with a Warning Event, and forgotten. The Organization's section
        is off (`wanted` False): what it owned is deleted (`delete`). Either way the caller then
        forgets the recorded IDs; True means: ensure the object.
        """
        if client is None:
            if owned is not None:
                ctx.events.record(
                    obj,
                    "Warning",
                    "SystemNotConfigured",
                    f'SoftwareDeliveryPlatform "{sdp}" no longer configures {system}: {owned} is left '
                    "in place and no longer managed",
                )
            return False
        if not wanted:
            if owned is not None:
                delete()
            return False
        return True

    def _keycloak(
        self,
        ctx: WorkerContext,
        key: ObjectKey,
        obj: JsonObject,
        spec: OrganizationSpec,
        systems: PlatformConnections,
        owned: OrganizationResources,
    ) -> None:
        client = systems.keycloak()
        group_id = owned.keycloak_group_id
        if not self._managed(
            ctx,
            obj,
            spec.sdp,
            client,
            system="Keycloak",
            owned=None if group_id is None else f"group {group_id}",
        ):
            owned.keycloak_group_id, owned.keycloak_subgroup_ids = None, {}
            return
        assert client is not None
        group = spec.keycloak_group_name(key.name)
        attributes = spec.keycloak.attributes if spec.keycloak else {}
        owner = Owner.of(obj)
        settings = systems.spec.settings
        names = {role: settings.subgroup_name(group, role) for role in settings.defaultRoles}
        # One call for the group and its role subgroups: it reads the tree once, not group by group.
        change, changes = client.ensure_group_tree(
            group,
            attributes,
            names if settings.autoCreateRoleSubgroups else {},
            group_id=owned.keycloak_group_id,
            subgroup_ids=owned.keycloak_subgroup_ids,
            owner=owner,
        )
        _record_change(ctx, obj, change, f'Keycloak group "/{group}"')
        owned.keycloak_group_id = str(change.id)
        subgroups: dict[str, str] = {}
        for role, sub_change in changes.items():
            _record_change(ctx, obj, sub_change, f'Keycloak group "/{group}/{names[role]}"')
            subgroups[role] = str(sub_change.id)
        stale = set(owned.keycloak_subgroup_ids.values()) - set(subgroups.values())
        if stale:  # a role or the name pattern was dropped from the SDP: its subgroup goes too
            for subgroup in client.list_subgroups(group):
                if subgroup.id in stale and client.delete_group(subgroup.path):
                    _record_change(
                        ctx, obj, Change("deleted", subgroup.id), f'Keycloak group "{subgroup.path}"'
                    )
        owned.keycloak_subgroup_ids = subgroups

    def _gitlab(
        self,
        ctx: WorkerContext,
        key: ObjectKey,
        obj: JsonObject,
        spec: OrganizationSpec,
        systems: PlatformConnections,
        owned: OrganizationResources,
    ) -> None:
        client = systems.gitlab()
        path = spec.gitlab_group_path(key.name)
        group_id = owned.gitlab_group_id
        if not self._managed(
            ctx,
            obj,
            spec.sdp,
            client,
            system="GitLab",
            owned=None if group_id is None else f"group {group_id}",
            wanted=path is not None,
            delete=lambda: self._delete_gitlab_group(ctx, obj, client, group_id),  # type: ignore[arg-type]
        ):
            owned.gitlab_group_id = None
            return
        assert client is not None and path is not None and spec.gitlab is not None
        change = client.ensure_group(
            path,
            visibility=spec.gitlab.visibility,
            description=spec.gitlab.description,
            group_id=owned.gitlab_group_id,
            owner=Owner.of(obj),
        )
        _record_change(ctx, obj, change, f'GitLab group "{path}"')
        owned.gitlab_group_id = int(change.id) if change.id is not None else None

    @staticmethod
    def _delete_gitlab_group(
        ctx: WorkerContext, obj: JsonObject, client: gitlab.GitLabClient, group_id: int
    ) -> None:
        existing = client.get_group(group_id)
        if existing is not None and client.delete_group(existing.full_path):
            _record_change(ctx, obj, Change("deleted", group_id), f'GitLab group "{existing.full_path}"')

    def _harbor(
        self,
        ctx: WorkerContext,
        key: ObjectKey,
        obj: JsonObject,
        spec: OrganizationSpec,
        systems: PlatformConnections,
        owned: OrganizationResources,
        known: harbor.HarborProject | None = None,
    ) -> None:
        client = systems.harbor()
        name = spec.harbor_project_name(key.name)
        project_id = owned.harbor_project_id
        if not self._managed(
            ctx,
            obj,
            spec.sdp,
            client,
            system="Harbor",
            owned=None if project_id is None else f"project {project_id}",
            wanted=name is not None,
            delete=lambda: self._delete_harbor_project(ctx, obj, client, project_id),  # type: ignore[arg-type]
        ):
            owned.harbor_project_id = None
            return
        assert client is not None and name is not None and spec.harbor is not None
        state = OperatorState(ctx, key, obj)
        with harbor_creation(
            ctx,
            obj,
            state,
            "harbor",
            name,
            recorded=owned.harbor_project_id is not None,
            record=lambda: ctx.status.write(
                key, StatusUpdate(fields={"harborProjectID": owned.harbor_project_id})
            ),
        ) as creation:
            change = client.ensure_project(
                name,
                public=spec.harbor.public,
                storage_quota=spec.harbor.storageQuota,
                owner=Owner.of(obj),
                recorded=creation.ours,
                known=known,
                on_existing=creation.existed,
            )
            owned.harbor_project_id = int(change.id) if change.id is not None else None
        _record_change(ctx, obj, change, f'Harbor project "{name}"')

    @staticmethod
    def _delete_harbor_project(
        ctx: WorkerContext, obj: JsonObject, client: harbor.HarborClient, project_id: int
    ) -> None:
        name = harbor_project_name(client, project_id)
        if name is not None and client.delete_project(name):
            _record_change(ctx, obj, Change("deleted", project_id), f'Harbor project "{name}"')

    def _argocd(
        self,
        ctx: WorkerContext,
        key: ObjectKey,
        obj: JsonObject,
        spec: OrganizationSpec,
        systems: PlatformConnections,
        owned: OrganizationResources,
    ) -> None:
        client = systems.argocd()
        name = spec.argocd_project_name(key.name)
        project = owned.argocd_project_name or OrganizationNames.of(obj, key.name).argocd_project
        if not self._managed(
            ctx,
            obj,
            spec.sdp,
            client,
            system="Argo CD",
            owned="the project" if owned.argocd_project_created else None,
            wanted=name is not None,
            delete=lambda: self._delete_argocd_project(ctx, obj, client, project),  # type: ignore[arg-type]
        ):
            if client is None or owned.argocd_project_created:
                if client is not None:
                    owned.argocd_project_name = None  # deleted, not left behind
                owned.argocd_project_created = None
            return
        assert client is not None and name is not None
        assert spec.argocd is not None and systems.spec.argocd is not None
        templates = systems.spec.argocd.roles
        check_argocd_roles(obj, templates)
        groups = argocd.role_groups([binding.model_dump() for binding in spec.argocd.roleBindings])
        roles = argocd.render_roles({role: t.model_dump() for role, t in templates.items()}, name, groups)
        destinations = cluster_destinations(ctx, key, spec.argocd.destinations, "spec.argocd.destinations")
        change = client.ensure_project(
            name,
            description=spec.argocd.description or spec.displayName or "",
            source_repos=spec.argocd.sourceRepos,
            destinations=destinations,
            roles=roles,
            owner=Owner.of(obj),
            recorded=bool(owned.argocd_project_created) and owned.argocd_project_name in (None, name),
        )
        _record_change(ctx, obj, change, f'Argo CD project "{name}"')
        owned.argocd_project_created, owned.argocd_project_name = True, name

    @staticmethod
    def _delete_argocd_project(
        ctx: WorkerContext, obj: JsonObject, client: argocd.ArgoCDClient, project: str
    ) -> None:
        if client.delete_project(project):
            _record_change(ctx, obj, Change("deleted", project), f'Argo CD project "{project}"')

    def cleanup(self, ctx: WorkerContext, key: ObjectKey, obj: JsonObject) -> None:
        owned = OrganizationResources.recorded(obj)
        if owned == OrganizationResources():
            return
        names = OrganizationNames.of(obj, key.name)
        if names.sdp is None:
            return
        systems = _platform_or_none(ctx, obj, key, names.sdp, referrer=f"{key.describe()}: spec.sdp")
        if systems is None:
            return
        # Reverse of the creation order: Argo CD → Harbor → GitLab → Keycloak.
        argocd_client = systems.argocd()
        if owned.argocd_project_created and argocd_client is not None:
            self._delete_argocd_project(
                ctx, obj, argocd_client, owned.argocd_project_name or names.argocd_project
            )
        harbor_client = systems.harbor()
        if owned.harbor_project_id is not None and harbor_client is not None:
            self._delete_harbor_project(ctx, obj, harbor_client, owned.harbor_project_id)
        gitlab_client = systems.gitlab()
        if owned.gitlab_group_id is not None and gitlab_client is not None:
            self._delete_gitlab_group(ctx, obj, gitlab_client, owned.gitlab_group_id)
        keycloak_client = systems.keycloak()
        if owned.keycloak_group_id is not None and keycloak_client is not None:
            _delete_keycloak_group(ctx, obj, keycloak_client, names.keycloak_group, owned.keycloak_group_id)


# --- ContactGroup -----------------------------------------------------------------------------


class ContactGroupHandler(CustomResourceHandler):
    """One Keycloak group per listed SDP; an SDP dropped from the list loses the group."""

    def __init__(self) -> None:
        super().__init__(KINDS["ContactGroup"])

    @staticmethod
    def _keycloak(systems: PlatformConnections, key: ObjectKey, sdp: str) -> keycloak.KeycloakClient:
        client = systems.keycloak()
        if client is None:
            raise PermanentError(
                f'{key.describe()}: spec.sdp "{sdp}": the SoftwareDeliveryPlatform configures no Keycloak '
                "(add spec.keycloak to it, or remove it from the list)",
                reason="KeycloakNotConfigured",
            )
        return client

    def provision(
        self, ctx: WorkerContext, key: ObjectKey, obj: JsonObject, spec: BaseModel
    ) -> dict[str, Any]:
        assert isinstance(spec, ContactGroupSpec)
        recorded = ContactGroupStatus.model_validate(obj.get("status") or {}).keycloakGroupIDs
        group = spec.keycloak.groupName or key.name
        ids = dict(recorded)
        failures: list[PolycrateError] = []
        # One SDP's outage must not hold up the others: each is tried, the failures reported together.
        for sdp in spec.sdp:
            try:
                systems = platform(ctx, key.namespace, sdp, referrer=f"{key.describe()}: spec.sdp")
                change = self._keycloak(systems, key, sdp).ensure_group(
                    group, spec.keycloak.attributes, group_id=recorded.get(sdp), owner=Owner.of(obj)
                )
                _record_change(ctx, obj, change, f'Keycloak group "/{group}" of SDP "{sdp}"')
                ids[sdp] = str(change.id)
            except PolycrateError as exc:
                failures.append(exc)
        for sdp in sorted(set(recorded) - set(spec.sdp)):
            try:
                self._delete(ctx, key, obj, sdp, group, recorded[sdp])
                del ids[sdp]
            except PolycrateError as exc:
                failures.append(exc)
        fields = {"keycloakGroupIDs": status_map(recorded, ids)}
        if failures:
            _record_progress(ctx, key, obj, fields)
            raise combined_error(failures)
        return fields

    def _delete(
        self, ctx: WorkerContext, key: ObjectKey, obj: JsonObject, sdp: str, group: str, group_id: str
    ) -> None:
        systems = _platform_or_none(ctx, obj, key, sdp, referrer=f"{key.describe()}: spec.sdp")
        client = systems.keycloak() if systems is not None else None
        if client is None:
            return
        _delete_keycloak_group(ctx, obj, client, group, group_id, sdp=sdp)

    def cleanup(self, ctx: WorkerContext, key: ObjectKey, obj: JsonObject) -> None:
        recorded = ContactGroupStatus.model_validate(obj.get("status") or {}).keycloakGroupIDs
        raw = obj.get("spec") or {}
        group = str((raw.get("keycloak") or {}).get("groupName") or key.name)
        failures: list[PolycrateError] = []
        for sdp, group_id in sorted(recorded.items()):
            try:
                self._delete(ctx, key, obj, sdp, group, group_id)
            except PolycrateError as exc:
                failures.append(exc)
        if failures:
            raise combined_error(failures)


# --- Contact ----------------------------------------------------------------------------------


@dataclass
class ContactWish:
    """What a Contact's spec asks for, per SDP name: Keycloak groups (path → id) and GitLab
    groups (path → access level), with the SDPs' connections."""

    platforms: dict[str, PlatformConnections] = field(default_factory=dict)
    keycloak_groups: dict[str, dict[str, str]] = field(default_factory=dict)
    gitlab_groups: dict[str, dict[str, int]] = field(default_factory=dict)

    def platform(self, ctx: WorkerContext, namespace: str, sdp: str, *, referrer: str) -> PlatformConnections:
        if sdp not in self.platforms:
            self.platforms[sdp] = platform(ctx, namespace, sdp, referrer=referrer)
        return self.platforms[sdp]


@dataclass
class MembershipPlan:
    """The membership changes of one Contact in one SDP, computed from reads before any write."""

    keycloak_wanted: bool = False  # the spec asks for Keycloak groups in this SDP
    keycloak_user_id: str | None = None
    keycloak_username: str | None = None
    keycloak_managed: set[str] = field(default_factory=set)  # recorded before this run
    keycloak_add: dict[str, str] = field(default_factory=dict)  # path → group id
    keycloak_remove: dict[str, str] = field(default_factory=dict)  # path → group id
    keycloak_keep: set[str] = field(default_factory=set)  # recorded and still wanted
    gitlab_wanted: bool = False
    gitlab_user_id: int | None = None
    gitlab_managed: set[str] = field(default_factory=set)
    gitlab_add: dict[str, int] = field(default_factory=dict)  # path → access level
    gitlab_update: dict[str, int] = field(default_factory=dict)
    gitlab_remove: set[str] = field(default_factory=set)
    gitlab_keep: set[str] = field(default_factory=set)

    def keycloak_during(self) -> set[str]:
        """Recorded while the changes run: the old ones (removal may fail) plus those being added."""
        return self.keycloak_managed | set(self.keycloak_add)

    def keycloak_after(self) -> set[str]:
        return self.keycloak_keep | set(self.keycloak_add)

    def gitlab_during(self) -> set[str]:
        return self.gitlab_managed | set(self.gitlab_add)

    def gitlab_after(self) -> set[str]:
        return self.gitlab_keep | set(self.gitlab_add) | set(self.gitlab_update)

    @property
    def adds(self) -> bool:
        return bool(self.keycloak_add or self.gitlab_add)


def _grants_through(spec: Mapping[str, Any], changed_paths: set[str], org_groups: Mapping[str, str]) -> bool:
    """Whether a GitLabGroup spec grants access through one of the Keycloak groups `changed_paths`.

    A grant on a group covers its subgroups (GitLabGroup counts their members too), so an
    `accessControl` name matches any segment of a changed path (or a prefix, for a name with
    '/'), and an `organizationAccess` entry matches the path under its Organization's group.
    Matching a little too much only costs an idempotent reconcile.
    """
    segments = {segment for path in changed_paths for segment in path.strip("/").split("/")}
    for access in spec.get("accessControl") or ():
        name = str(access.get("keycloakGroup") or "")
        if "/" in name:
            wanted = "/" + name.strip("/")
            if any(path == wanted or path.startswith(wanted + "/") for path in changed_paths):
                return True
        elif name in segments:
            return True
    tops = {path.strip("/").split("/")[0] for path in changed_paths}
    return any(
        org_groups.get(str(access.get("organization") or "")) in tops
        for access in spec.get("organizationAccess") or ()
    )


class ContactHandler(CustomResourceHandler):
    """Keycloak user → role subgroups and ContactGroup groups → GitLab group memberships.

    A standalone GitLabGroup gives its access to the members of Keycloak groups, so when this
    Contact joins or leaves a Keycloak group, the GitLabGroups granting through that group are
    woken (the watch `gitlab_groups_granting_through`): their GitLab membership follows the
    Contact within seconds, not at their resync.
    """

    def __init__(self) -> None:
        super().__init__(KINDS["Contact"])

    @staticmethod
    def _note_membership_changes(plans: dict[str, MembershipPlan]) -> None:
        """Tell the watches which Keycloak groups this run joined or left, per SDP (also after a
        run that failed halfway: memberships made before the failure count)."""
        changed = {
            sdp: set(plan.keycloak_add) | set(plan.keycloak_remove)
            for sdp, plan in plans.items()
            if plan.keycloak_add or plan.keycloak_remove
        }
        if changed:
            note(KEYCLOAK_MEMBERSHIPS_CHANGED, changed)

    def provision(
        self, ctx: WorkerContext, key: ObjectKey, obj: JsonObject, spec: BaseModel
    ) -> dict[str, Any]:
        assert isinstance(spec, ContactSpec)
        wish = self._wish(ctx, key, spec)
        recorded = ContactStatus.model_validate(obj.get("status") or {})
        plans = self._plan(ctx, key, obj, spec, recorded, wish)
        if any(plan.adds for plan in plans.values()):
            # Write-ahead: a membership is ours only if recorded before it exists.
            ctx.status.write(
                key, StatusUpdate(fields=self._fields(recorded, plans, during=True)), current=obj
            )
        try:
            self._apply(ctx, key, obj, wish, plans)
        finally:
            self._note_membership_changes(plans)
        return self._fields(recorded, plans, during=False)

    def cleanup(self, ctx: WorkerContext, key: ObjectKey, obj: JsonObject) -> None:
        recorded = ContactStatus.model_validate(obj.get("status") or {})
        # Syncing toward "member of nothing" removes exactly the recorded memberships.
        wanted_nothing = ContactWish()
        plans = self._plan(ctx, key, obj, None, recorded, wanted_nothing)
        try:
            self._apply(ctx, key, obj, wanted_nothing, plans)
        finally:
            self._note_membership_changes(plans)

    # -- what the spec asks for -----------------------------------------------------------------

    @staticmethod
    def _ready(ctx: WorkerContext, key: ObjectKey, where: str) -> JsonObject:
        found = ctx.objects.get(key)
        if found is None:
            raise DependencyNotFoundError(
                f'{where}: {key.kind} "{key.name}" not found in namespace {key.namespace}'
            )
        phase = (found.get("status") or {}).get("phase")
        if phase == ERROR:
            # Nothing to wait for: the dependency needs a fix first, so this one is in Error too.
            raise DependencyNotFoundError(
                f'{where}: {key.kind} "{key.name}" is in Error (see its status); '
                "the Contact is reconciled again once it is Ready"
            )
        if phase != READY:
            raise DependencyNotReadyError(
                f'{where}: {key.kind} "{key.name}" is not Ready yet (phase {phase or "none"}); '
                "the Contact is reconciled again when it is"
            )
        return found

    def _wish(self, ctx: WorkerContext, key: ObjectKey, spec: ContactSpec) -> ContactWish:
        wish = ContactWish()
        for index, membership in enumerate(spec.organizations):
            where = f"{key.describe()}: spec.organizations[{index}]"
            org_key = ObjectKey("Organization", key.namespace, membership.name)
            org = self._ready(ctx, org_key, where)
            org_spec = parse_spec(org)
            assert isinstance(org_spec, OrganizationSpec)
            org_status = OrganizationStatus.model_validate(org.get("status") or {})
            sdp = org_spec.sdp
            systems = wish.platform(ctx, key.namespace, sdp, referrer=f"{org_key.describe()}: spec.sdp")
            settings = systems.spec.settings
            role = role_subgroup(membership.role, settings)
            if role is None:
                raise InvalidSpecError(
                    f'{where}.role "{membership.role}" is not a role of SoftwareDeliveryPlatform "{sdp}" '
                    f"(use one of {', '.join(settings.defaultRoles)}; the singular works too, e.g. "
                    f'"{settings.defaultRoles[0].removesuffix("s")}")'
                )
            group = org_spec.keycloak_group_name(membership.name)
            if systems.spec.keycloak is not None:
                if settings.autoCreateRoleSubgroups:
                    path = f"/{group}/{settings.subgroup_name(group, role)}"
                    group_id = org_status.keycloakSubgroupIDs.get(role)
                else:
                    path, group_id = f"/{group}", org_status.keycloakGroupID
                if group_id is None:
                    raise DependencyNotReadyError(
                        f"{where}: {org_key.describe()} has no Keycloak group {path} yet"
                    )
                wish.keycloak_groups.setdefault(sdp, {})[path] = group_id
            gitlab_path = org_spec.gitlab_group_path(membership.name)
            if gitlab_path and systems.spec.gitlab is not None and org_status.gitlabGroupID is not None:
                level = gitlab.parse_access_level(gitlab_access_level(role))
                levels = wish.gitlab_groups.setdefault(sdp, {})
                levels[gitlab_path] = max(level, levels.get(gitlab_path, 0))
        for index, extra in enumerate(spec.additionalGroups):
            where = f"{key.describe()}: spec.additionalGroups[{index}]"
            group_key = ObjectKey("ContactGroup", key.namespace, extra.contactGroup)
            found = self._ready(ctx, group_key, where)
            group_spec = parse_spec(found)
            assert isinstance(group_spec, ContactGroupSpec)
            ids = ContactGroupStatus.model_validate(found.get("status") or {}).keycloakGroupIDs
            path = f"/{group_spec.keycloak.groupName or extra.contactGroup}"
            for sdp in group_spec.sdp:
                if sdp not in ids:
                    raise DependencyNotReadyError(
                        f'{where}: {group_key.describe()} has no Keycloak group in SDP "{sdp}" yet'
                    )
                wish.platform(ctx, key.namespace, sdp, referrer=f"{group_key.describe()}: spec.sdp")
                wish.keycloak_groups.setdefault(sdp, {})[path] = ids[sdp]
        return wish

    # -- what has to change ---------------------------------------------------------------------

    @staticmethod
    def _who(spec: ContactSpec) -> str:
        found_by = []
        if spec.keycloak.username:
            found_by.append(f'username "{spec.keycloak.username}"')
        if spec.keycloak.email:
            found_by.append(f'email "{spec.keycloak.email}"')
        return " or ".join(found_by)

    def _plan(
        self,
        ctx: WorkerContext,
        key: ObjectKey,
        obj: JsonObject,
        spec: ContactSpec | None,
        recorded: ContactStatus,
        wish: ContactWish,
    ) -> dict[str, MembershipPlan]:
        """Reads only. `spec` None (deletion) means: find nobody, remove what is recorded."""
        plans: dict[str, MembershipPlan] = {}
        sdps = sorted(
            set(wish.keycloak_groups)
            | set(wish.gitlab_groups)
            | set(recorded.keycloakGroups)
            | set(recorded.gitlabGroups)
        )
        for sdp in sdps:
            systems = wish.platforms.get(sdp) or _platform_or_none(
                ctx, obj, key, sdp, referrer=f'{key.describe()}: status of SDP "{sdp}"'
            )
            if systems is None:
                continue  # the SDP is gone: its memberships cannot be reached, so they are forgotten
            wish.platforms[sdp] = systems
            plan = plans[sdp] = MembershipPlan()
            self._plan_keycloak(key, spec, recorded, wish, sdp, systems, plan)
            self._plan_gitlab(ctx, obj, spec, recorded, wish, sdp, systems, plan)
        return plans

    def _plan_keycloak(
        self,
        key: ObjectKey,
        spec: ContactSpec | None,
        recorded: ContactStatus,
        wish: ContactWish,
        sdp: str,
        systems: PlatformConnections,
        plan: MembershipPlan,
    ) -> None:
        wanted = wish.keycloak_groups.get(sdp, {})
        plan.keycloak_wanted = bool(wanted)
        plan.keycloak_managed = set(recorded.keycloakGroups.get(sdp, ()))
        client = systems.keycloak()
        if client is None or not (wanted or plan.keycloak_managed):
            return
        user_id = recorded.keycloakUserIDs.get(sdp)
        if wanted and spec is not None:
            user = client.find_user(spec.keycloak.username, spec.keycloak.email)
            if user is None:
                raise DependencyNotFoundError(
                    f"{key.describe()}: Keycloak user with {self._who(spec)} not found in realm "
                    f'"{client.realm}" of SDP "{sdp}" (a user exists after the first login)'
                )
            user_id, plan.keycloak_username = user.id, user.username
        if user_id is None:
            return
        plan.keycloak_user_id = user_id
        try:
            member_of = {group.path: group.id for group in client.list_user_groups(user_id)}
        except PermanentError as exc:
            if exc.status_code != 404:
                raise
            member_of = {}  # the user is gone, and with it every membership
        plan.keycloak_add = {path: gid for path, gid in wanted.items() if path not in member_of}
        plan.keycloak_keep = {path for path in plan.keycloak_managed if path in wanted}
        # A recorded path the user is no longer under, and a wanted group (known by its id) the
        # user is in although nothing recorded it: the group was renamed, the membership is ours.
        renamed_away = {path for path in plan.keycloak_managed - set(wanted) if path not in member_of}
        if renamed_away:
            plan.keycloak_keep |= {
                path
                for path, gid in wanted.items()
                if member_of.get(path) == gid and path not in plan.keycloak_managed
            }
        plan.keycloak_remove = {
            path: member_of[path] for path in plan.keycloak_managed - set(wanted) if path in member_of
        }

    def _plan_gitlab(
        self,
        ctx: WorkerContext,
        obj: JsonObject,
        spec: ContactSpec | None,
        recorded: ContactStatus,
        wish: ContactWish,
        sdp: str,
        systems: PlatformConnections,
        plan: MembershipPlan,
    ) -> None:
        wanted = wish.gitlab_groups.get(sdp, {})
        plan.gitlab_wanted = bool(wanted)
        plan.gitlab_managed = set(recorded.gitlabGroups.get(sdp, ()))
        client = systems.gitlab()
        if client is None or not (wanted or plan.gitlab_managed):
            return
        user_id = recorded.gitlabUserIDs.get(sdp)
        if wanted and spec is not None:
            # The same person in GitLab: same username (the Keycloak one when only email is given).
            username = spec.keycloak.username or plan.keycloak_username
            user = client.find_user(username, spec.keycloak.email)
            if user is None:
                # GitLab accounts appear at the first login: not an error loop, a visible note.
                ctx.events.record(
                    obj,
                    "Warning",
                    "GitLabUserNotFound",
                    f'GitLab user with {self._who(spec)} not found in the GitLab of SDP "{sdp}"; '
                    "group memberships follow after the first login",
                )
                wanted = {}
            else:
                user_id = user.id
        if user_id is None:
            return
        plan.gitlab_user_id = user_id
        # A recorded group path that no longer exists was renamed (or deleted): a wanted group the
        # user is in but that nothing recorded is then taken as that same membership.
        renamed_away = any(client.get_group(path) is None for path in plan.gitlab_managed - set(wanted))
        for path, level in wanted.items():
            member = client.get_member(path, user_id)
            if member is None:
                plan.gitlab_add[path] = level
            elif path in plan.gitlab_managed or renamed_away:
                plan.gitlab_keep.add(path)
                if member.access_level != level:
                    plan.gitlab_update[path] = level
            # A member a human added (not recorded) keeps the access level the human chose.
        plan.gitlab_remove = plan.gitlab_managed - set(wanted)

    # -- doing it -------------------------------------------------------------------------------

    def _apply(
        self,
        ctx: WorkerContext,
        key: ObjectKey,
        obj: JsonObject,
        wish: ContactWish,
        plans: dict[str, MembershipPlan],
    ) -> None:
        for sdp, plan in plans.items():
            systems = wish.platforms[sdp]
            keycloak_client = systems.keycloak()
            if keycloak_client is not None and plan.keycloak_user_id is not None:
                for path, group_id in sorted(plan.keycloak_add.items()):
                    change = keycloak_client.add_user_to_group(plan.keycloak_user_id, group_id, checked=True)
                    _record_change(ctx, obj, change, f'membership in Keycloak group "{path}" (SDP "{sdp}")')
                for path, group_id in sorted(plan.keycloak_remove.items()):
                    change = keycloak_client.remove_user_from_group(
                        plan.keycloak_user_id, group_id, checked=True
                    )
                    _record_change(ctx, obj, change, f'membership in Keycloak group "{path}" (SDP "{sdp}")')
            gitlab_client = systems.gitlab()
            if gitlab_client is not None and plan.gitlab_user_id is not None:
                for path, level in sorted({**plan.gitlab_add, **plan.gitlab_update}.items()):
                    change = gitlab_client.ensure_member(path, plan.gitlab_user_id, level)
                    _record_change(ctx, obj, change, f'membership in GitLab group "{path}" (SDP "{sdp}")')
                for path in sorted(plan.gitlab_remove):
                    if gitlab_client.remove_member(path, plan.gitlab_user_id):
                        _record_change(
                            ctx,
                            obj,
                            Change("deleted", plan.gitlab_user_id),
                            f'membership in GitLab group "{path}" (SDP "{sdp}")',
                        )

    @staticmethod
    def _fields(recorded: ContactStatus, plans: dict[str, MembershipPlan], *, during: bool) -> dict[str, Any]:
        keycloak_groups: dict[str, list[str]] = {}
        keycloak_users: dict[str, str] = {}
        gitlab_groups: dict[str, list[str]] = {}
        gitlab_users: dict[str, int] = {}
        for sdp, plan in plans.items():
            # A user id is kept while the user is wanted in the SDP or memberships need it for removal.
            paths = plan.keycloak_during() if during else plan.keycloak_after()
            if paths:
                keycloak_groups[sdp] = sorted(paths)
            if plan.keycloak_user_id is not None and (paths or plan.keycloak_wanted):
                keycloak_users[sdp] = plan.keycloak_user_id
            paths = plan.gitlab_during() if during else plan.gitlab_after()
            if paths:
                gitlab_groups[sdp] = sorted(paths)
            if plan.gitlab_user_id is not None and (paths or plan.gitlab_wanted):
                gitlab_users[sdp] = plan.gitlab_user_id
        return {
            "keycloakGroups": status_map(recorded.keycloakGroups, keycloak_groups),
            "keycloakUserIDs": status_map(recorded.keycloakUserIDs, keycloak_users),
            "gitlabGroups": status_map(recorded.gitlabGroups, gitlab_groups),
            "gitlabUserIDs": status_map(recorded.gitlabUserIDs, gitlab_users),
        }


def handlers() -> list[CustomResourceHandler]:
    return [OrganizationHandler(), ContactGroupHandler(), ContactHandler()]


# --- watches: who waits for whom ---------------------------------------------------------------

KEYCLOAK_MEMBERSHIPS_CHANGED = "keycloak-memberships-changed"


def organization_referrers(ctx: WorkerContext, run: SourceRun) -> list[ObjectKey]:
    """An Organization that became Ready wakes the Contacts, GitLabGroups and HarborProjects
    naming it, so those waiting for it converge in seconds."""
    if not run.became_ready():
        return []
    key = run.key
    found: list[ObjectKey] = []
    for kind, names_of in ORGANIZATION_REFERRERS.items():
        found += _referrers(ctx, kind, key.namespace, lambda spec, n=names_of: key.name in n(spec))
    return found


def contact_group_referrers(ctx: WorkerContext, run: SourceRun) -> list[ObjectKey]:
    """A ContactGroup that became Ready wakes the Contacts listing it in additionalGroups and the
    objects granting access through its Keycloak group."""
    if not run.became_ready():
        return []
    key = run.key
    found = _referrers(
        ctx,
        "Contact",
        key.namespace,
        lambda spec: any(m.get("contactGroup") == key.name for m in spec.get("additionalGroups") or ()),
    )
    group = str(((run.obj.get("spec") or {}).get("keycloak") or {}).get("groupName") or key.name)
    for kind in ACCESS_CONTROL_KINDS:
        found += _referrers(
            ctx,
            kind,
            key.namespace,
            lambda spec: any(a.get("keycloakGroup") == group for a in spec.get("accessControl") or ()),
        )
    return found


def gitlab_groups_granting_through(ctx: WorkerContext, run: SourceRun) -> list[ObjectKey]:
    """A Contact that joined or left Keycloak groups (noted by its run, failed or not) wakes the
    GitLabGroups of those SDPs that grant access through one of the groups."""
    changed: dict[str, set[str]] = run.notes.get(KEYCLOAK_MEMBERSHIPS_CHANGED) or {}
    if not changed:
        return []
    namespace = run.key.namespace
    groups = _list_or_none(ctx, "GitLabGroup", namespace)
    if not groups:
        return []
    org_groups = {
        org["metadata"]["name"]: OrganizationNames.of(org, org["metadata"]["name"]).keycloak_group
        for org in _list_or_none(ctx, "Organization", namespace)
    }
    found = []
    for group in groups:
        spec = group.get("spec") or {}
        if any(
            sdp in (spec.get("sdp") or ()) and _grants_through(spec, paths, org_groups)
            for sdp, paths in changed.items()
        ):
            found.append(ObjectKey("GitLabGroup", namespace, group["metadata"]["name"]))
    return found


def watches() -> list[Watch]:
    return [
        Watch("Organization", organization_referrers, "Contacts, GitLabGroups, HarborProjects naming it"),
        Watch("ContactGroup", contact_group_referrers, "Contacts and access grants through its group"),
        Watch("Contact", gitlab_groups_granting_through, "GitLabGroups granting through its groups"),
    ]
