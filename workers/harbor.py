"""Harbor (API v2.0): projects, storage quotas and project members as idempotent steps.

Every step reads, compares and writes only on a difference, and reports what it did as a
`Change`, so a redelivered task converges without duplicate writes; a project not yet recorded
is created without a read first (quota in the create), and a 409 is read back instead of failing. Projects are addressed by name with
`X-Is-Resource-Name: true` (so a name made of digits is never taken for an id); Harbor <= 2.8
answered 403 for an unknown name, so a 403 on a lookup falls back to the project list before it
counts as an error. Lists follow Harbor's Link header through every page. Credentials live only
in the session's basic auth: never in a URL, a log line or an error message; one pooled
session per SDP, URL and credentials lives per process (`get_client`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote, urljoin

import requests

from polycrate.errors import DependencyNotFoundError, InvalidSpecError, PermanentError, TransientError
from polycrate.httppolicy import HttpPolicy, json_body, new_session, raise_for_response, transport_errors
from polycrate.quantity import BINARY_SUFFIXES, QuantityError, quantity_to_bytes
from polycrate.ratelimit import RateLimiter
from polycrate.roles import HARBOR_ROLE_IDS
from workers.change import Change
from workers.owner_clients import OwnerClients
from workers.ownership import Mark, Owner, claim
from workers.plan import planned_response, planning

log = logging.getLogger(__name__)

SYSTEM = "Harbor"
API_PREFIX = "/api/v2.0"
UNLIMITED = -1
ROLE_NAMES: dict[int, str] = {role_id: name for name, role_id in HARBOR_ROLE_IDS.items()}
GroupType = Literal["oidc", "ldap", "http"]
GROUP_TYPE_IDS: dict[str, int] = {"ldap": 1, "http": 2, "oidc": 3}
MAX_PAGE_SIZE = 100

_PROJECT_NAME = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*$")


def storage_quota_bytes(quantity: str | int, *, project: str) -> int:
    """Bytes for a Kubernetes quantity such as "50Gi", "500M", "1.5Ti" or "1e9", read by
    polycrate.quantity as validation reads it; -1 means no limit, as in Harbor. Anything else is
    an InvalidSpecError that names the value and the fix."""
    text = str(quantity).strip()
    if text == str(UNLIMITED):
        return UNLIMITED
    try:
        size = quantity_to_bytes(text)
    except QuantityError as error:
        raise InvalidSpecError(f'Harbor project "{project}": storageQuota {error}') from None
    if size <= 0:
        raise InvalidSpecError(
            f'Harbor project "{project}": storageQuota "{quantity}" must be more than zero '
            "(use e.g. 50Gi, or -1 for no limit)"
        )
    return size


def _describe_bytes(size: int) -> str:
    if size == UNLIMITED:
        return "unlimited"
    for suffix, factor in sorted(BINARY_SUFFIXES.items(), key=lambda item: -item[1]):
        if size % factor == 0:
            return f"{size // factor}{suffix}"
    return f"{size} bytes"


@dataclass(frozen=True)
class HarborProject:
    """What the operator needs to know about a Harbor project."""

    id: int
    name: str
    public: bool
    repo_count: int
    owner_name: str = ""

    @classmethod
    def from_api(cls, body: Mapping[str, Any]) -> HarborProject:
        metadata = body.get("metadata") or {}
        return cls(
            id=int(body["project_id"]),
            name=str(body["name"]),
            public=str(metadata.get("public", "false")).lower() == "true",
            repo_count=int(body.get("repo_count") or 0),
            owner_name=str(body.get("owner_name") or ""),
        )


@dataclass(frozen=True)
class ProjectMember:
    """One member of a project: a user or a group (OIDC/LDAP/HTTP) with a role."""

    id: int
    entity_name: str
    entity_type: Literal["user", "group"]
    entity_id: int
    role: str
    role_id: int

    @classmethod
    def from_api(cls, body: Mapping[str, Any]) -> ProjectMember:
        role_id = int(body.get("role_id") or 0)
        return cls(
            id=int(body["id"]),
            entity_name=str(body.get("entity_name") or ""),
            entity_type="user" if body.get("entity_type") == "u" else "group",
            entity_id=int(body.get("entity_id") or 0),
            role=ROLE_NAMES.get(role_id, str(body.get("role_name") or role_id)),
            role_id=role_id,
        )


def _role_id(project: str, role: str) -> int:
    if role not in HARBOR_ROLE_IDS:
        raise InvalidSpecError(
            f'Harbor project "{project}": role "{role}" is not a Harbor role '
            f"(use one of {', '.join(HARBOR_ROLE_IDS)})"
        )
    return HARBOR_ROLE_IDS[role]


def _planned(project: str) -> bool:
    """A project the active plan would create (it has no members yet)."""
    plan = planning()
    return plan is not None and plan.planned(SYSTEM, f'project "{project}"') is not None


def _id_from_location(response: requests.Response) -> int | None:
    tail = (response.headers.get("Location") or "").rstrip("/").rsplit("/", 1)[-1]
    return int(tail) if tail.isdigit() else None


class HarborClient:
    """Harbor API v2.0 client (requests, basic auth) following the shared HTTP policy.

    `page_size` is what list calls ask for per page (Harbor allows at most 100).
    """

    def __init__(
        self,
        url: str,
        username: str,
        password: str,
        *,
        policy: HttpPolicy | None = None,
        limiter: RateLimiter | None = None,
        page_size: int = MAX_PAGE_SIZE,
    ) -> None:
        self.url = url.rstrip("/")
        self.page_size = max(1, min(page_size, MAX_PAGE_SIZE))
        self._session = new_session(policy, before_send=limiter.acquire if limiter else None, system="harbor")
        self._session.auth = (username, password)
        self._session.headers["Accept"] = "application/json"

    def close(self) -> None:
        self._session.close()

    # -- plumbing ---------------------------------------------------------------------------

    def http_request(
        self,
        method: str,
        path: str,
        *,
        what: str,
        params: Mapping[str, str | int] | None = None,
        json: Any = None,
        by_name: bool = False,
        absent: Sequence[int] = (),
        plan_detail: str | None = None,
    ) -> requests.Response:
        """One call to `/api/v2.0{path}`; a status in `absent` is returned for the caller to read,
        any other failure raises the classified error for operation `what`."""
        headers = {"X-Is-Resource-Name": "true"} if by_name else None
        url = path if path.startswith(("http://", "https://")) else f"{self.url}{API_PREFIX}{path}"
        if method != "GET" and (plan := planning()) is not None:
            return planned_response(plan, SYSTEM, method, url, what, json, detail=plan_detail)
        with transport_errors(f"{SYSTEM}: {what}"):
            response = self._session.request(method, url, params=params, json=json, headers=headers)
        if response.status_code not in absent:
            raise_for_response(response, what=f"{SYSTEM}: {what}")
        return response

    @staticmethod
    def _json(response: requests.Response, what: str) -> Any:
        return json_body(response, what=f"{SYSTEM}: {what}")

    def _all_pages(
        self, path: str, *, what: str, params: Mapping[str, str | int] | None = None, by_name: bool = False
    ) -> list[dict[str, Any]]:
        """Every item of a paged list, following Harbor's Link rel="next" to the end."""
        items: list[dict[str, Any]] = []
        seen: set[str] = set()
        target: str = path
        query: Mapping[str, str | int] | None = {**(params or {}), "page": 1, "page_size": self.page_size}
        while True:
            response = self.http_request("GET", target, what=what, params=query, by_name=by_name)
            items.extend(self._json(response, what) or [])
            next_link = response.links.get("next", {}).get("url")
            if not next_link:
                return items
            # Harbor's links are server-relative ("/api/v2.0/...?page=2&page_size=100").
            target = urljoin(f"{self.url}/", next_link)
            if target in seen:
                raise TransientError(f"{SYSTEM}: {what}: the server's pagination links loop")
            seen.add(target)
            query = None

    @staticmethod
    def _project_path(name: str) -> str:
        return f"/projects/{quote(name, safe='')}"

    def check_access(self) -> None:
        """One cheap authenticated read: proves URL, username and password."""
        self.http_request("GET", "/projects", what="check access", params={"page": 1, "page_size": 1})

    # -- projects ---------------------------------------------------------------------------

    def get_project(self, name: str) -> HarborProject | None:
        """The project named `name`, or None when Harbor has none."""
        what = f'get project "{name}"'
        response = self.http_request(
            "GET", self._project_path(name), what=what, by_name=True, absent=(403, 404)
        )
        if response.status_code == 200:
            return HarborProject.from_api(self._json(response, what))
        if response.status_code == 404:
            return None
        # Harbor <= 2.8 answers 403 for a name it does not know, even to an admin: ask the list.
        for body in self._all_pages("/projects", what=what, params={"name": name}):
            if body.get("name") == name:
                return HarborProject.from_api(body)
        return None

    def get_project_by_id(self, project_id: int) -> HarborProject | None:
        """The project with this id (its identity: a name is only looked up by), or None when gone.
        Only 404 means gone; a 403 is a rights problem that must not make the operator forget it."""
        what = f"get project {project_id}"
        response = self.http_request("GET", f"/projects/{int(project_id)}", what=what, absent=(404,))
        if response.status_code == 404:
            return None
        try:
            return HarborProject.from_api(self._json(response, what))
        except (KeyError, TypeError, ValueError):
            raise TransientError(f"{SYSTEM}: {what}: the answer names no project") from None

    def _require_project(self, name: str) -> HarborProject:
        project = self.get_project(name)
        if project is None:
            raise DependencyNotFoundError(f'Harbor project "{name}" does not exist')
        return project

    def ensure_project(
        self,
        name: str,
        *,
        public: bool = False,
        storage_quota: str | int | None = None,
        owner: Owner | None = None,
        recorded: bool = False,
        known: HarborProject | None = None,
        on_existing: Callable[[HarborProject], None] | None = None,
    ) -> Change:
        """Create the project or bring its public flag and storage quota in line.

        `storage_quota` is a Kubernetes quantity ("50Gi"); None leaves Harbor's quota alone
        (on create: Harbor's default for new projects; the limit goes into the create itself).
        With `owner` an existing project is claimed only when `recorded` (the owner knows it as
        its own) or the owner adopts: Harbor projects carry no ownership mark (its metadata keys
        are fixed). `known` is the project as the caller just read it (by its recorded id), so it
        is not read again. A project not `recorded` is created without looking first; when it
        turns out to exist (409), `on_existing` sees it before it is claimed."""
        if not _PROJECT_NAME.match(name) or len(name) > 255:
            raise InvalidSpecError(
                f'Harbor project "{name}": projectName must be lower-case letters and digits, '
                "optionally joined by single '.', '_' or '-' (e.g. acme-corp)"
            )
        quota = storage_quota_bytes(storage_quota, project=name) if storage_quota is not None else None
        project = known if known is not None and known.name == name else None
        if project is None and (recorded or planning() is not None):
            project = self.get_project(name)
        if project is None:
            created = self._create_project(name, public=public, storage_limit=quota)
            if created is not None:
                return created
            project = self.get_project(name)
            if project is None:
                raise PermanentError(
                    f'Harbor project "{name}" exists but the SDP\'s credentials cannot read it '
                    "(use a Harbor administrator account)",
                    reason="Forbidden",
                )
        if not recorded and on_existing is not None:
            on_existing(project)
        changes = []
        if claim(owner, Mark(), what=f'Harbor project "{name}"', recorded=recorded) and not recorded:
            changes.append("adopted")
        if project.public != public:
            self._put_public(name, public)
            changes.append(f"public {str(project.public).lower()} → {str(public).lower()}")
        if quota is not None:
            current = self._project_quota(project)
            if current["hard"].get("storage") != quota:
                self._put_quota(project, current, quota)
                changes.append(
                    f"storage quota {_describe_bytes(current['hard'].get('storage', UNLIMITED))} → "
                    f"{_describe_bytes(quota)}"
                )
        if not changes:
            return Change("unchanged", id=project.id)
        log.info("Harbor: updated project %s (%s)", name, "; ".join(changes))
        return Change("updated", id=project.id, detail="; ".join(changes))

    def _create_project(self, name: str, *, public: bool, storage_limit: int | None) -> Change | None:
        """POST the project; None when a concurrent creator won (409), so the caller compares."""
        body: dict[str, Any] = {"project_name": name, "metadata": {"public": str(public).lower()}}
        if storage_limit is not None:
            body["storage_limit"] = storage_limit
        planned = f"public={str(public).lower()}" + (
            f", storage quota {_describe_bytes(storage_limit)}" if storage_limit is not None else ""
        )
        response = self.http_request(
            "POST",
            "/projects",
            what=f'create project "{name}"',
            json=body,
            absent=(409,),
            plan_detail=planned,
        )
        if response.status_code == 409:
            return None
        project_id = _id_from_location(response)
        if project_id is None:
            project_id = self._require_project(name).id
        detail = f"public={str(public).lower()}"
        if storage_limit is not None:
            detail += f", storage quota {_describe_bytes(storage_limit)}"
        log.info("Harbor: created project %s (%s)", name, detail)
        return Change("created", id=project_id, detail=detail)

    def _put_public(self, name: str, public: bool) -> None:
        self.http_request(
            "PUT",
            self._project_path(name),
            what=f'update project "{name}"',
            json={"metadata": {"public": str(public).lower()}},
            by_name=True,
            plan_detail=f"public → {str(public).lower()}",
        )

    def set_public(self, name: str, public: bool) -> Change:
        """Make the project public or private."""
        project = self._require_project(name)
        if project.public == public:
            return Change("unchanged", id=project.id)
        self._put_public(name, public)
        detail = f"public {str(project.public).lower()} → {str(public).lower()}"
        log.info("Harbor: updated project %s (%s)", name, detail)
        return Change("updated", id=project.id, detail=detail)

    def _project_quota(self, project: HarborProject) -> dict[str, Any]:
        what = f'get storage quota of project "{project.name}"'
        response = self.http_request(
            "GET", "/quotas", what=what, params={"reference": "project", "reference_id": str(project.id)}
        )
        quotas = self._json(response, what)
        if not quotas:
            raise PermanentError(
                f'Harbor project "{project.name}" has no storage quota (is per-project quota disabled in Harbor?)',
                reason="QuotaUnavailable",
            )
        quota = quotas[0]
        quota["hard"] = quota.get("hard") or {}
        return quota

    def _put_quota(self, project: HarborProject, quota: Mapping[str, Any], size: int) -> None:
        current = (quota.get("hard") or {}).get("storage", UNLIMITED)
        self.http_request(
            "PUT",
            f"/quotas/{int(quota['id'])}",
            what=f'set storage quota of project "{project.name}"',
            json={"hard": {"storage": size}},
            plan_detail=f"{_describe_bytes(current)} → {_describe_bytes(size)}",
        )

    def get_storage_quota(self, name: str) -> int | None:
        """The project's storage limit in bytes (-1 = unlimited); None when the project is absent."""
        project = self.get_project(name)
        if project is None:
            return None
        return int(self._project_quota(project)["hard"].get("storage", UNLIMITED))

    def set_storage_quota(self, name: str, storage_quota: str | int) -> Change:
        """Set the project's storage limit from a Kubernetes quantity ("50Gi"; -1 = unlimited)."""
        size = storage_quota_bytes(storage_quota, project=name)
        project = self._require_project(name)
        quota = self._project_quota(project)
        current = quota["hard"].get("storage", UNLIMITED)
        if current == size:
            return Change("unchanged", id=project.id)
        self._put_quota(project, quota, size)
        detail = f"storage quota {_describe_bytes(current)} → {_describe_bytes(size)}"
        log.info("Harbor: updated project %s (%s)", name, detail)
        return Change("updated", id=project.id, detail=detail)

    def delete_project(self, name: str) -> bool:
        """Delete the project; False when it was already gone. Harbor refuses (412) while the
        project holds repositories, and the operator never deletes images on its own."""
        project = self.get_project(name)
        if project is None:
            return False
        response = self.http_request(
            "DELETE",
            self._project_path(name),
            what=f'delete project "{name}"',
            by_name=True,
            absent=(404, 412),
        )
        if response.status_code == 404:
            return False
        if response.status_code == 412:
            raise PermanentError(
                f'Harbor project "{name}" still holds {project.repo_count or "some"} repositories; '
                "delete them in Harbor first, then the project is removed on the next attempt",
                reason="ProjectNotEmpty",
                status_code=412,
            )
        log.info("Harbor: deleted project %s", name)
        return True

    # -- members ----------------------------------------------------------------------------

    def list_members(self, project: str) -> list[ProjectMember]:
        """Every member of the project (all pages)."""
        if _planned(project):
            return []
        what = f'list members of project "{project}"'
        return [
            ProjectMember.from_api(body)
            for body in self._all_pages(f"{self._project_path(project)}/members", what=what, by_name=True)
        ]

    def _find_member(
        self, project: str, entity_name: str, entity_type: Literal["user", "group"]
    ) -> ProjectMember | None:
        # entityname is an exact match in Harbor, so every candidate is on the first page.
        if _planned(project):
            return None
        what = f'find member "{entity_name}" of project "{project}"'
        response = self.http_request(
            "GET",
            f"{self._project_path(project)}/members",
            what=what,
            params={"entityname": entity_name, "page_size": MAX_PAGE_SIZE},
            by_name=True,
            absent=(404,),
        )
        if response.status_code == 404:
            raise DependencyNotFoundError(f'Harbor project "{project}" does not exist')
        for body in self._json(response, what) or []:
            member = ProjectMember.from_api(body)
            if member.entity_name == entity_name and member.entity_type == entity_type:
                return member
        return None

    def _member_in(
        self,
        project: str,
        entity_name: str,
        entity_type: Literal["user", "group"],
        members: Sequence[ProjectMember] | None,
    ) -> ProjectMember | None:
        if members is None:
            return self._find_member(project, entity_name, entity_type)
        return next(
            (m for m in members if (m.entity_name, m.entity_type) == (entity_name, entity_type)), None
        )

    @staticmethod
    def _entity(user: str | None, group: str | None) -> tuple[str, Literal["user", "group"]]:
        if user is not None and group is None:
            return user, "user"
        if group is not None and user is None:
            return group, "group"
        raise ValueError("name exactly one of user= or group=")

    def ensure_member(
        self,
        project: str,
        *,
        role: str,
        user: str | None = None,
        group: str | None = None,
        group_type: GroupType = "oidc",
        ldap_group_dn: str | None = None,
        members: Sequence[ProjectMember] | None = None,
    ) -> Change:
        """Make a user (by username) or a group (OIDC by name; LDAP by DN) a member with `role`
        (projectAdmin, maintainer, developer, guest, limitedGuest). `members`: the project's
        members as the caller just listed them, so the member is not looked up again."""
        role_id = _role_id(project, role)
        entity_name, entity_type = self._entity(user, group)
        existing = self._member_in(project, entity_name, entity_type, members)
        if existing is None:
            created = self._create_member(
                project, role_id, entity_name, entity_type, group_type=group_type, ldap_group_dn=ldap_group_dn
            )
            if created is not None:
                return created
            existing = self._find_member(project, entity_name, entity_type)
            if existing is None:
                raise TransientError(
                    f'Harbor: member "{entity_name}" of project "{project}" vanished while added'
                )
        if existing.role_id == role_id:
            return Change("unchanged", id=existing.id)
        self.http_request(
            "PUT",
            f"{self._project_path(project)}/members/{existing.id}",
            what=f'update role of member "{entity_name}" of project "{project}"',
            json={"role_id": role_id},
            by_name=True,
            plan_detail=f"{entity_type} {entity_name}: role {existing.role} → {role}",
        )
        detail = f"{entity_type} {entity_name}: role {existing.role} → {role}"
        log.info("Harbor: updated member of project %s (%s)", project, detail)
        return Change("updated", id=existing.id, detail=detail)

    def _create_member(
        self,
        project: str,
        role_id: int,
        entity_name: str,
        entity_type: Literal["user", "group"],
        *,
        group_type: GroupType,
        ldap_group_dn: str | None,
    ) -> Change | None:
        """POST the membership; None when a concurrent writer added it first (409)."""
        body: dict[str, Any] = {"role_id": role_id}
        if entity_type == "user":
            body["member_user"] = {"username": entity_name}
        else:
            member_group: dict[str, Any] = {
                "group_name": entity_name,
                "group_type": GROUP_TYPE_IDS[group_type],
            }
            if group_type == "ldap":
                if not ldap_group_dn:
                    raise InvalidSpecError(
                        f'Harbor project "{project}": LDAP group "{entity_name}" needs its ldap_group_dn'
                    )
                member_group["ldap_group_dn"] = ldap_group_dn
            body["member_group"] = member_group
        response = self.http_request(
            "POST",
            f"{self._project_path(project)}/members",
            what=f'add {entity_type} "{entity_name}" to project "{project}"',
            json=body,
            by_name=True,
            absent=(404, 409),
            plan_detail=f"{entity_type} {entity_name} as {ROLE_NAMES[role_id]}",
        )
        if response.status_code == 409:
            return None
        if response.status_code == 404:
            raise DependencyNotFoundError(
                f'Harbor user "{entity_name}" does not exist (with OIDC login Harbor creates a user '
                "at their first login; ask them to log in to Harbor once)"
            )
        detail = f"{entity_type} {entity_name} as {ROLE_NAMES[role_id]}"
        log.info("Harbor: added member to project %s (%s)", project, detail)
        return Change("created", id=_id_from_location(response), detail=detail)

    def remove_member(
        self,
        project: str,
        *,
        user: str | None = None,
        group: str | None = None,
        members: Sequence[ProjectMember] | None = None,
    ) -> bool:
        """Remove a user or group from the project; False when it was no member (or no project).
        `members` as for `ensure_member`."""
        entity_name, entity_type = self._entity(user, group)
        try:
            existing = self._member_in(project, entity_name, entity_type, members)
        except DependencyNotFoundError:
            return False
        if existing is None:
            return False
        self.http_request(
            "DELETE",
            f"{self._project_path(project)}/members/{existing.id}",
            what=f'remove {entity_type} "{entity_name}" from project "{project}"',
            by_name=True,
        )
        log.info("Harbor: removed %s %s from project %s", entity_type, entity_name, project)
        return True


# --- one client per SDP, URL and credentials per process -------------------------------------

_clients: OwnerClients[HarborClient] = OwnerClients(
    SYSTEM, HarborClient, empty="the SDP's username or password"
)

get_client = _clients.get
"""get_client(sdp, url, username, password, *, policy, limiter): the process's client for SDP
`sdp` ("namespace/name"); rotated credentials get a new one."""

clear_clients = _clients.clear
