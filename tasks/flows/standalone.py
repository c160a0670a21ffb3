"""GitLabGroup, HarborProject and ArgoCDProject: one object, provisioned in every SDP it lists.

Each SDP of `spec.sdp` is reconciled on its own, so an outage of one SDP's system leaves the
others done and only the failing one retried; its ID lands in status under the SDP's name, and
an SDP dropped from the list is cleaned up there. Access is granted to Keycloak groups
(`accessControl`) and to Organizations (`organizationAccess`); the operator adds, updates and
removes only the members it added itself, remembered per SDP in the `polycrate.io/operator-state`
annotation (the status schema has no field for them and would prune one), so a member a human
added is never touched. Deletion cleans every SDP; an SDP or credential Secret that is gone
cannot be reached, so that SDP is skipped with a Warning Event instead of blocking the finalizer.
As for an Organization, a GitLab group path change moves the group in place (same id) and a
Harbor or Argo CD project name change is refused before anything is written in that SDP.
"""

from __future__ import annotations

import logging
from abc import abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Generic, NoReturn, TypeVar

from pydantic import BaseModel

from polycrate.errors import (
    DependencyNotFoundError,
    InvalidSpecError,
    PermanentError,
    PolycrateError,
    TransientError,
)
from polycrate.keys import ObjectKey
from polycrate.kubeclient.api import JsonObject
from polycrate.models import KINDS, parse_spec
from polycrate.models.platform import SoftwareDeliveryPlatformSpec
from polycrate.models.standalone import ArgoCDProjectSpec, GitLabGroupSpec, HarborProjectSpec
from polycrate.models.tenancy import ContactGroupSpec, OrganizationSpec
from tasks.context import WorkerContext
from tasks.flows.connections import PlatformConnections, platform
from tasks.flows.identity import (
    harbor_creation,
    harbor_project_name,
    immutable_name_error,
)
from tasks.flows.kit import cluster_destinations, combined_error, list_objects, status_map
from tasks.flows.state import OperatorState
from tasks.handlers import CustomResourceHandler
from tasks.status import StatusUpdate
from workers.argocd import Destination, render_roles, role_groups
from workers.gitlab import GitLabClient, parse_access_level
from workers.keycloak import KeycloakClient, KeycloakGroup, KeycloakUser
from workers.ownership import Owner
from workers.plan import planning_in

log = logging.getLogger(__name__)

NAMES_FIELD = "argoCDProjectNames"  # Argo CD projects are known by name: the name is the identity
# Harbor roles from most to least privileged: a group granted two roles gets the stronger one.
HARBOR_ROLE_RANK = ("projectAdmin", "maintainer", "developer", "guest", "limitedGuest")

Prepared = TypeVar("Prepared")


# --- helpers shared by the three kinds --------------------------------------------------------


def _per_sdp_error(failures: list[tuple[str, PolycrateError]]) -> PolycrateError:
    """One error for the failures of several SDPs, each message naming its SDP."""
    return combined_error(
        [error for _, error in failures],
        message="; ".join(f'SDP "{sdp}": {error}' for sdp, error in failures),
    )


def _raw_spec(obj: JsonObject) -> dict[str, Any]:
    """The spec as stored, for cleanup, which must work even when the spec no longer validates."""
    spec = obj.get("spec")
    return spec if isinstance(spec, dict) else {}


def _sdp_names(obj: JsonObject) -> list[str]:
    value = _raw_spec(obj).get("sdp")
    if isinstance(value, str):
        return [value]
    return [str(name) for name in value or [] if name]


def _recorded(obj: JsonObject, status_field: str, sdp: str) -> Any:
    """The value status holds for `sdp` under `status_field` (an id, a flag, a name), or None."""
    return ((obj.get("status") or {}).get(status_field) or {}).get(sdp)


def _phase(obj: JsonObject) -> str | None:
    return (obj.get("status") or {}).get("phase")


def _is_deleting(obj: JsonObject) -> bool:
    return bool((obj.get("metadata") or {}).get("deletionTimestamp"))


@dataclass(frozen=True)
class OrganizationRef:
    """An Organization named in organizationAccess: its SDP and its Keycloak group."""

    name: str
    sdp: str
    group_name: str
    phase: str | None


def organization_refs(
    ctx: WorkerContext, key: ObjectKey, sdps: list[str], names: Iterable[tuple[str, str]]
) -> dict[str, OrganizationRef]:
    """The Organizations named by (field, name) pairs; missing or foreign ones are errors."""
    refs: dict[str, OrganizationRef] = {}
    for field_name, name in names:
        if name in refs:
            continue
        obj = ctx.objects.get(ObjectKey("Organization", key.namespace, name))
        if obj is None or _is_deleting(obj):
            state = "is being deleted" if obj is not None else "not found"
            raise DependencyNotFoundError(
                f'{key.describe()}: {field_name}: Organization "{name}" {state} in namespace {key.namespace}'
            )
        try:
            spec = parse_spec(obj)
        except InvalidSpecError as exc:
            raise DependencyNotFoundError(
                f"{key.describe()}: {field_name}: the Organization is invalid: {exc}"
            ) from None
        assert isinstance(spec, OrganizationSpec)
        if spec.sdp not in sdps:
            raise InvalidSpecError(
                f'{key.describe()}: {field_name}: Organization "{name}" belongs to SDP "{spec.sdp}", '
                f"which spec.sdp does not list ({', '.join(sdps)})"
            )
        refs[name] = OrganizationRef(name, spec.sdp, spec.keycloak_group_name(name), _phase(obj))
    return refs


class KeycloakDirectory:
    """Finds Keycloak groups by the names users write in specs, and the people in them.

    A name is a top-level group (a ContactGroup's or an Organization's), a role subgroup of an
    Organization of this SDP (e.g. acme-corp-admins), or a full path with '/'. Members of a
    group include the members of its subgroups, as Keycloak's group inheritance has it.
    """

    def __init__(
        self,
        ctx: WorkerContext,
        key: ObjectKey,
        sdp: str,
        sdp_spec: SoftwareDeliveryPlatformSpec,
        client: KeycloakClient,
    ) -> None:
        self.ctx = ctx
        self.key = key
        self.sdp = sdp
        self.sdp_spec = sdp_spec
        self.client = client
        self._organizations: list[tuple[str, OrganizationSpec, JsonObject]] | None = None

    def _organizations_of_sdp(self) -> list[tuple[str, OrganizationSpec, JsonObject]]:
        if self._organizations is None:
            found = []
            for obj in list_objects(self.ctx, "Organization", self.key.namespace):
                try:
                    spec = parse_spec(obj)
                except InvalidSpecError:
                    continue  # an invalid Organization reports itself; it creates no groups
                assert isinstance(spec, OrganizationSpec)
                if spec.sdp == self.sdp:
                    found.append((obj["metadata"]["name"], spec, obj))
            self._organizations = found
        return self._organizations

    def _role_subgroup_owners(self, name: str) -> list[tuple[str, str, JsonObject]]:
        """(path, Organization name, Organization) of each Organization whose role subgroup `name` is."""
        settings = self.sdp_spec.settings
        if not settings.autoCreateRoleSubgroups:
            return []
        owners = []
        for org_name, spec, obj in self._organizations_of_sdp():
            group = spec.keycloak_group_name(org_name)
            subgroups = {
                settings.subgroup_name(org, role)
                for org in (group, org_name)
                for role in settings.defaultRoles
            }
            if name in subgroups:
                owners.append((f"{group}/{name}", org_name, obj))
        return owners

    def group(self, name: str, field_name: str) -> KeycloakGroup:
        """The group a spec names; a missing one is waited for while a CR is still creating it."""
        candidates = [name.strip("/")] if "/" in name else [name]
        owners = [] if "/" in name else self._role_subgroup_owners(name)
        candidates += [path for path, _, _ in owners]
        for path in candidates:
            found = self.client.find_group_by_path(path)
            if found is not None:
                return found
        declared_by = [(f'Organization "{org}"', _phase(obj)) for _, org, obj in owners]
        declared_by += self._groups_declaring(name)
        self._missing(f'Keycloak group "{name}"', field_name, declared_by)

    def _groups_declaring(self, name: str) -> list[tuple[str, str | None]]:
        """(owner, its phase) of each ContactGroup or Organization of this SDP that creates `name`."""
        declaring = []
        for obj in list_objects(self.ctx, "ContactGroup", self.key.namespace):
            try:
                spec = parse_spec(obj)
            except InvalidSpecError:
                continue
            assert isinstance(spec, ContactGroupSpec)
            group_name = spec.keycloak.groupName or obj["metadata"]["name"]
            if self.sdp in spec.sdp and group_name == name:
                declaring.append((f'ContactGroup "{obj["metadata"]["name"]}"', _phase(obj)))
        for org_name, org_spec, obj in self._organizations_of_sdp():
            if org_spec.keycloak_group_name(org_name) == name:
                declaring.append((f'Organization "{org_name}"', _phase(obj)))
        return declaring

    def _missing(self, what: str, field_name: str, declared_by: list[tuple[str, str | None]]) -> NoReturn:
        where = f'realm "{self.client.realm}" of SDP "{self.sdp}"'
        for owner, phase in declared_by:
            if phase in (None, "Provisioning"):
                # Its creator is on the way: retry soon rather than park until the next resync.
                raise TransientError(
                    f"{self.key.describe()}: {field_name}: {what} does not exist in {where} yet; "
                    f"waiting for {owner} to create it"
                )
        if declared_by:
            owner = declared_by[0][0]
            raise DependencyNotFoundError(
                f"{self.key.describe()}: {field_name}: {what} does not exist in {where}; "
                f"{owner} should create it (see its status)"
            )
        raise DependencyNotFoundError(
            f"{self.key.describe()}: {field_name}: {what} does not exist in {where} "
            "(create a ContactGroup for it, or the group in Keycloak)"
        )

    def organization_group(self, ref: OrganizationRef, field_name: str) -> KeycloakGroup:
        found = self.client.find_group_by_path(ref.group_name)
        if found is None:
            self._missing(
                f'Keycloak group "{ref.group_name}" of Organization "{ref.name}"',
                field_name,
                [(f'Organization "{ref.name}"', ref.phase)],
            )
        return found

    def members(self, group: KeycloakGroup) -> list[KeycloakUser]:
        """Enabled users in the group or any of its subgroups, each once."""
        users: dict[str, KeycloakUser] = {}
        pending = [group]
        while pending:
            current = pending.pop()
            for user in self.client.list_group_members(current.id):
                if user.enabled:
                    users.setdefault(user.id, user)
            pending.extend(self.client.subgroups(current))
        return sorted(users.values(), key=lambda user: user.username)


Member = TypeVar("Member", int, str)


def sync_own_members(
    wanted: Iterable[Member],
    recorded: Iterable[Member],
    present: Iterable[Member],
    remember: Callable[[set[Member]], None],
    ensure: Callable[[Member], None],
    remove: Callable[[Member], None],
) -> set[Member]:
    """Grant the wanted members and revoke the ones the operator added, never a human's; the managed set.

    `recorded` are the members the operator added before; a wanted member already `present`
    but not recorded was added by a human and is left alone. What is about to be added is
    remembered before any write, so a run cut off midway still knows every member it added.
    """
    wanted, recorded = set(wanted), set(recorded)
    present = set(present)
    managed = {member for member in wanted if member in recorded or member not in present}
    remember(recorded | managed)
    for member in sorted(managed):
        ensure(member)
    for member in sorted(recorded - wanted):
        remove(member)
    remember(managed)
    return managed


def _require(client: Any, system: str, sdp: str) -> Any:
    if client is None:
        raise PermanentError(
            f'SoftwareDeliveryPlatform "{sdp}" configures no {system} (add spec.{system.lower().replace(" ", "")} '
            "to it, or remove it from spec.sdp)",
            reason="SystemNotConfigured",
        )
    return client


# --- the multi-SDP handler --------------------------------------------------------------------


@dataclass
class _SdpRun:
    """The outcome of one reconcile across the SDPs: status values, and what failed where."""

    values: dict[str, Any] = field(default_factory=dict)
    failures: list[tuple[str, PolycrateError]] = field(default_factory=list)


class MultiPlatformHandler(CustomResourceHandler, Generic[Prepared]):
    """Provisions one object in each SDP of `spec.sdp`, with one status entry per SDP."""

    status_field: str
    # The OperatorState section holding what this kind manages per SDP, if it tracks anything.
    state_section: str = ""

    @abstractmethod
    def prepare(self, ctx: WorkerContext, key: ObjectKey, obj: JsonObject, spec: Any) -> Prepared:
        """What all SDPs share (resolved references), computed once before the per-SDP steps."""

    @abstractmethod
    def provision_in(
        self,
        ctx: WorkerContext,
        key: ObjectKey,
        obj: JsonObject,
        spec: Any,
        prepared: Prepared,
        sdp: str,
        connections: PlatformConnections,
        state: OperatorState,
    ) -> Any:
        """Provision in one SDP; returns the SDP's status value (an ID, a flag)."""

    @abstractmethod
    def cleanup_in(
        self,
        ctx: WorkerContext,
        key: ObjectKey,
        obj: JsonObject,
        sdp: str,
        connections: PlatformConnections,
        recorded: Any,
    ) -> None:
        """Remove what was provisioned in one SDP (`recorded` is its status value, if any)."""

    def _referrer(self, key: ObjectKey) -> str:
        return f"{key.describe()}: spec.sdp"

    def provision(
        self, ctx: WorkerContext, key: ObjectKey, obj: JsonObject, spec: BaseModel
    ) -> dict[str, Any]:
        assert isinstance(spec, GitLabGroupSpec | HarborProjectSpec | ArgoCDProjectSpec)
        prepared = self.prepare(ctx, key, obj, spec)
        state = OperatorState(ctx, key, obj)
        current = dict((obj.get("status") or {}).get(self.status_field) or {})
        wanted_sdps = list(spec.sdp)
        run = _SdpRun(values={sdp: value for sdp, value in current.items() if sdp in wanted_sdps})
        for sdp in wanted_sdps:
            try:
                connections = platform(ctx, key.namespace, sdp, referrer=self._referrer(key))
                with planning_in(f'SDP "{sdp}"'):
                    run.values[sdp] = self.provision_in(
                        ctx, key, obj, spec, prepared, sdp, connections, state
                    )
            except PolycrateError as exc:
                run.failures.append((sdp, exc))
        for sdp in sorted(set(current) - set(wanted_sdps)):
            try:
                with planning_in(f'SDP "{sdp}"'):
                    self._cleanup_sdp(ctx, key, obj, sdp, current[sdp])
                if self.state_section:
                    state.set_for(self.state_section, sdp, None)
            except PolycrateError as exc:
                run.values[sdp] = current[sdp]  # still there: keep it in status until removed
                run.failures.append((sdp, exc))
        fields = {self.status_field: status_map(current, run.values)}
        if run.failures:
            ctx.status.write(key, StatusUpdate(fields=fields), current=None)
            raise _per_sdp_error(run.failures)
        return fields

    def cleanup(self, ctx: WorkerContext, key: ObjectKey, obj: JsonObject) -> None:
        current = dict((obj.get("status") or {}).get(self.status_field) or {})
        failures: list[tuple[str, PolycrateError]] = []
        for sdp in sorted(set(current) | set(_sdp_names(obj))):
            try:
                self._cleanup_sdp(ctx, key, obj, sdp, current.get(sdp))
            except PolycrateError as exc:
                failures.append((sdp, exc))
        if failures:
            raise _per_sdp_error(failures)

    def _cleanup_sdp(
        self, ctx: WorkerContext, key: ObjectKey, obj: JsonObject, sdp: str, recorded: Any
    ) -> None:
        try:
            connections = platform(ctx, key.namespace, sdp, referrer=self._referrer(key))
            self.cleanup_in(ctx, key, obj, sdp, connections, recorded)
        except DependencyNotFoundError as exc:
            # The SDP or its credentials are gone (e.g. the namespace is being deleted): nothing
            # can reach that system any more, and waiting would keep the finalizer forever.
            message = f'SDP "{sdp}": cleanup skipped, the system cannot be reached: {exc}'
            log.warning("%s: %s", key, message)
            ctx.events.record(obj, "Warning", "CleanupSkipped", message)


class OrganizationAccessHandler(MultiPlatformHandler[dict[str, OrganizationRef]]):
    """A multi-SDP kind whose `spec.organizationAccess` names Organizations to resolve first."""

    def prepare(
        self, ctx: WorkerContext, key: ObjectKey, obj: JsonObject, spec: Any
    ) -> dict[str, OrganizationRef]:
        assert isinstance(spec, GitLabGroupSpec | HarborProjectSpec)
        return organization_refs(
            ctx,
            key,
            list(spec.sdp),
            (
                (f"spec.organizationAccess[{i}].organization", a.organization)
                for i, a in enumerate(spec.organizationAccess)
            ),
        )


# --- GitLabGroup ------------------------------------------------------------------------------


class GitLabGroupHandler(OrganizationAccessHandler):
    """The GitLab group in each SDP, with the people of the named Keycloak groups as members."""

    kind = "GitLabGroup"
    status_field = "gitlabGroupIDs"
    state_section = "gitlabMembers"

    def provision_in(
        self,
        ctx: WorkerContext,
        key: ObjectKey,
        obj: JsonObject,
        spec: Any,
        prepared: dict[str, OrganizationRef],
        sdp: str,
        connections: PlatformConnections,
        state: OperatorState,
    ) -> int:
        assert isinstance(spec, GitLabGroupSpec)
        gitlab: GitLabClient = _require(connections.gitlab(), "GitLab", sdp)
        path = spec.groupPath or key.name
        recorded = _recorded(obj, self.status_field, sdp)
        group_id = int(
            gitlab.ensure_group(
                path,
                visibility=spec.visibility,
                description=spec.description,
                group_id=int(recorded) if recorded else None,
                owner=Owner.of(obj),
            ).id
            or 0
        )
        levels = self._wanted_levels(ctx, key, spec, prepared, sdp, connections)
        self._sync_members(ctx, key, obj, gitlab, group_id, levels, sdp, state)
        return group_id

    def _wanted_levels(
        self,
        ctx: WorkerContext,
        key: ObjectKey,
        spec: GitLabGroupSpec,
        organizations: dict[str, OrganizationRef],
        sdp: str,
        connections: PlatformConnections,
    ) -> dict[str, int]:
        """Keycloak username -> the highest GitLab access level any grant gives them."""
        if not spec.accessControl and not spec.organizationAccess:
            return {}
        keycloak = _require(connections.keycloak(), "Keycloak", sdp)
        directory = KeycloakDirectory(ctx, key, sdp, connections.spec, keycloak)
        levels: dict[str, int] = {}

        def grant(users: list[KeycloakUser], level: int) -> None:
            for user in users:
                levels[user.username] = max(level, levels.get(user.username, 0))

        for i, access in enumerate(spec.accessControl):
            group = directory.group(access.keycloakGroup, f"spec.accessControl[{i}].keycloakGroup")
            grant(directory.members(group), parse_access_level(access.accessLevel))
        for i, org_access in enumerate(spec.organizationAccess):
            ref = organizations[org_access.organization]
            if ref.sdp != sdp:
                continue  # the Organization exists in its own SDP only
            field_name = f"spec.organizationAccess[{i}].organization"
            group = directory.organization_group(ref, field_name)
            grant(directory.members(group), parse_access_level(org_access.accessLevel))
        return levels

    def _sync_members(
        self,
        ctx: WorkerContext,
        key: ObjectKey,
        obj: JsonObject,
        gitlab: GitLabClient,
        group_id: int,
        levels: dict[str, int],
        sdp: str,
        state: OperatorState,
    ) -> None:
        wanted: dict[int, tuple[str, int]] = {}  # GitLab user id -> (username, level)
        missing = []
        for username, level in sorted(levels.items()):
            user = gitlab.find_user(username)
            if user is None:
                missing.append(username)
            else:
                wanted[user.id] = (user.username, level)
        if missing:
            # GitLab creates users at their first login; they get access on a later reconcile.
            ctx.events.record(
                obj,
                "Warning",
                "UserNotInGitLab",
                f'SDP "{sdp}": not yet in GitLab, skipped until they log in once: {", ".join(missing)}',
            )
        # Remembered as {username: user id}; a wanted user is named as GitLab names them now.
        recorded = {
            int(uid): str(name) for name, uid in (state.get_for(self.state_section, sdp) or {}).items()
        }
        names = {**recorded, **{uid: name for uid, (name, _) in wanted.items()}}
        sync_own_members(
            wanted,
            recorded,
            (member.user_id for member in gitlab.list_members(group_id)),
            remember=lambda uids: state.set_for(self.state_section, sdp, {names[uid]: uid for uid in uids}),
            ensure=lambda uid: gitlab.ensure_member(group_id, uid, wanted[uid][1]),
            remove=lambda uid: gitlab.remove_member(group_id, uid),
        )

    def cleanup_in(
        self,
        ctx: WorkerContext,
        key: ObjectKey,
        obj: JsonObject,
        sdp: str,
        connections: PlatformConnections,
        recorded: Any,
    ) -> None:
        gitlab = connections.gitlab()
        if gitlab is None:
            return
        group = gitlab.get_group(int(recorded)) if recorded else None
        path = group.full_path if group is not None else str(_raw_spec(obj).get("groupPath") or key.name)
        gitlab.delete_group(path)


# --- HarborProject ----------------------------------------------------------------------------


class HarborProjectHandler(OrganizationAccessHandler):
    """The Harbor project in each SDP, with OIDC group members named after Keycloak groups."""

    kind = "HarborProject"
    status_field = "harborProjectIDs"
    state_section = "harborGroups"

    def provision_in(
        self,
        ctx: WorkerContext,
        key: ObjectKey,
        obj: JsonObject,
        spec: Any,
        prepared: dict[str, OrganizationRef],
        sdp: str,
        connections: PlatformConnections,
        state: OperatorState,
    ) -> int:
        assert isinstance(spec, HarborProjectSpec)
        harbor = _require(connections.harbor(), "Harbor", sdp)
        name = spec.projectName or key.name
        recorded = _recorded(obj, self.status_field, sdp)
        current = harbor.get_project_by_id(int(recorded)) if recorded else None
        if current is not None and current.name != name:
            raise immutable_name_error(key, "spec.projectName", name, "Harbor project", current.name)
        with harbor_creation(
            ctx,
            obj,
            state,
            f"harbor/{sdp}",
            name,
            recorded=bool(recorded),
            record=lambda: ctx.status.write(key, StatusUpdate(fields={self.status_field: {sdp: project_id}})),
        ) as creation:
            change = harbor.ensure_project(
                name,
                public=spec.public,
                storage_quota=spec.storageQuota,
                owner=Owner.of(obj),
                recorded=creation.ours,
                known=current,
                on_existing=creation.existed,
            )
            project_id = int(change.id or 0)
        roles: dict[str, str] = {}

        def grant(group: str, role: str) -> None:
            held = roles.get(group)
            if held is None or HARBOR_ROLE_RANK.index(role) < HARBOR_ROLE_RANK.index(held):
                roles[group] = role

        for access in spec.accessControl:
            grant(access.keycloakGroup, access.role)
        for org_access in spec.organizationAccess:
            ref = prepared[org_access.organization]
            if ref.sdp == sdp:
                grant(ref.group_name, org_access.role)
        listed = harbor.list_members(name)
        sync_own_members(
            roles,
            (str(group) for group in state.get_for(self.state_section, sdp) or []),
            (m.entity_name for m in listed if m.entity_type == "group"),
            remember=lambda groups: state.set_for(self.state_section, sdp, sorted(groups)),
            ensure=lambda group: harbor.ensure_member(
                name, role=roles[group], group=group, group_type="oidc", members=listed
            ),
            remove=lambda group: harbor.remove_member(name, group=group, members=listed),
        )
        return project_id

    def cleanup_in(
        self,
        ctx: WorkerContext,
        key: ObjectKey,
        obj: JsonObject,
        sdp: str,
        connections: PlatformConnections,
        recorded: Any,
    ) -> None:
        harbor = connections.harbor()
        if harbor is not None:
            # By the recorded id: the project that is ours, whatever the spec says now.
            name = harbor_project_name(harbor, int(recorded)) if recorded else None
            harbor.delete_project(name or str(_raw_spec(obj).get("projectName") or key.name))


# --- ArgoCDProject ----------------------------------------------------------------------------


class ArgoCDProjectHandler(MultiPlatformHandler[list[Destination]]):
    """The Argo CD project in each SDP, with the SDP's role templates bound to Keycloak groups."""

    kind = "ArgoCDProject"
    status_field = "argoCDProjectsCreated"

    def prepare(self, ctx: WorkerContext, key: ObjectKey, obj: JsonObject, spec: Any) -> list[Destination]:
        assert isinstance(spec, ArgoCDProjectSpec)
        return cluster_destinations(ctx, key, spec.destinations, "spec.destinations")

    def provision_in(
        self,
        ctx: WorkerContext,
        key: ObjectKey,
        obj: JsonObject,
        spec: Any,
        prepared: list[Destination],
        sdp: str,
        connections: PlatformConnections,
        state: OperatorState,
    ) -> bool:
        assert isinstance(spec, ArgoCDProjectSpec)
        argocd = _require(connections.argocd(), "Argo CD", sdp)
        name = spec.projectName or key.name
        previous = _recorded(obj, NAMES_FIELD, sdp)
        created = bool(_recorded(obj, self.status_field, sdp))
        if created and previous and previous != name:
            raise immutable_name_error(key, "spec.projectName", name, "Argo CD project", previous)
        conf = connections.spec.argocd
        templates = {role: template.model_dump() for role, template in (conf.roles if conf else {}).items()}
        groups = role_groups(access_control=[access.model_dump() for access in spec.accessControl])
        roles = render_roles(templates, name, groups)
        argocd.ensure_project(
            name,
            description=spec.description or "",
            source_repos=spec.sourceRepos,
            destinations=prepared,
            roles=roles,
            owner=Owner.of(obj),
            recorded=created and previous in (None, name),
        )
        return True

    def provision(
        self, ctx: WorkerContext, key: ObjectKey, obj: JsonObject, spec: BaseModel
    ) -> dict[str, Any]:
        fields = super().provision(ctx, key, obj, spec)
        assert isinstance(spec, ArgoCDProjectSpec)
        created = fields.get(self.status_field) or {}
        names = {sdp: spec.projectName or key.name for sdp, done in created.items() if done}
        current = dict((obj.get("status") or {}).get(NAMES_FIELD) or {})
        return {**fields, NAMES_FIELD: status_map(current, names)}

    def cleanup_in(
        self,
        ctx: WorkerContext,
        key: ObjectKey,
        obj: JsonObject,
        sdp: str,
        connections: PlatformConnections,
        recorded: Any,
    ) -> None:
        argocd = connections.argocd()
        if argocd is not None:
            name = _recorded(obj, NAMES_FIELD, sdp)
            argocd.delete_project(str(name or _raw_spec(obj).get("projectName") or key.name))


def handlers() -> list[CustomResourceHandler]:
    return [
        GitLabGroupHandler(KINDS["GitLabGroup"]),
        HarborProjectHandler(KINDS["HarborProject"]),
        ArgoCDProjectHandler(KINDS["ArgoCDProject"]),
    ]
