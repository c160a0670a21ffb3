"""A stateful GitLab (REST API v4) for tests, the sandbox and benchmarks.

It serves the groups, members and users operations of `specs/gitlab-v4-operations.yaml` the
way a GitLab server does: groups addressed by numeric id or URL-encoded full path, DELETE
answering 202, the creator becoming a group's Owner, subgroup visibility bounded by the parent,
inherited memberships in `/members/all`, offset pagination with GitLab's X-* and Link headers,
and error bodies in GitLab's own shapes (`{"message": ...}`, `{"error": ...}`). Every request
and response is checked against that contract by the shared pipeline in `emulators.server`.

Credentials: `admin_token` (also `token`; administrator `root`, id 1) is accepted in a
`PRIVATE-TOKEN` header or as `Authorization: Bearer`. Page size is capped at `max_per_page`
(100 like GitLab; tests lower it to exercise pagination). Deletion is immediate although the
server answers 202, i.e. the emulator behaves like GitLab Free without delayed deletion; the
same holds for users (204, GitLab deletes them in a background job). The reads clients make
first are served too: GET /user, /version, /users/:id, and project lists, which are always
empty because the emulator holds no projects.
"""

from __future__ import annotations

import math
import re
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote, urlencode, urlsplit

from werkzeug.routing import Rule
from werkzeug.wrappers import Request, Response

from emulators.server import EmulatorServer, json_response

API = "/api/v4"
VISIBILITY_RANK = {"private": 0, "internal": 10, "public": 20}
ROLE_NAMES = {
    5: "Minimal Access",
    10: "Guest",
    15: "Planner",
    20: "Reporter",
    30: "Developer",
    40: "Maintainer",
    50: "Owner",
}
OWNER = 50
DEFAULT_PER_PAGE = 20
# What GET /version reports; python-gitlab only stores it, so any well-formed version will do.
EMULATED_VERSION = "18.2.0"
EMULATED_REVISION = "emulated"
# A few of GitLab's reserved top-level routes (Gitlab::PathRegex::TOP_LEVEL_ROUTES).
RESERVED_TOP_LEVEL = frozenset(
    {
        "-",
        "admin",
        "api",
        "assets",
        "dashboard",
        "explore",
        "groups",
        "help",
        "profile",
        "projects",
        "public",
        "search",
        "users",
        "uploads",
    }
)
_GROUP_SETTINGS_DEFAULTS: dict[str, Any] = {
    "share_with_group_lock": False,
    "require_two_factor_authentication": False,
    "lfs_enabled": True,
    "request_access_enabled": True,
    "membership_lock": False,
    "project_creation_level": "developer",
    "subgroup_creation_level": "maintainer",
}


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# Namespace::Detail validates the description to at most 255 characters.
DESCRIPTION_MAX = 255


def _description_errors(body: dict[str, Any]) -> dict[str, list[str]]:
    description = body.get("description")
    if isinstance(description, str) and len(description) > DESCRIPTION_MAX:
        return {"namespace_details.description": [f"is too long (maximum is {DESCRIPTION_MAX} characters)"]}
    return {}


def _ruby_errors(errors: dict[str, list[str]]) -> str:
    """GitLab interpolates ActiveModel errors with Ruby's Hash#inspect."""
    rendered = [
        f":{key}=>[" + ", ".join(f'"{m}"' for m in messages) + "]" for key, messages in errors.items()
    ]
    return "{" + ", ".join(rendered) + "}"


def _path_problem(path: str) -> str | None:
    if path.endswith((".", ".git", ".atom")) or not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", path):
        return "can contain only letters, digits, '_', '-' and '.'. Cannot start with '-', end in '.git' or end in '.atom'"
    return None


@dataclass
class _User:
    id: int
    username: str
    name: str
    email: str
    is_admin: bool = False
    external: bool = False
    can_create_group: bool = True
    projects_limit: int = 100000
    state: str = "active"
    created_at: str = field(default_factory=_now)


@dataclass
class _Group:
    id: int
    name: str
    path: str
    parent_id: int | None
    description: str = ""
    visibility: str = "private"
    settings: dict[str, Any] = field(default_factory=lambda: dict(_GROUP_SETTINGS_DEFAULTS))
    created_at: str = field(default_factory=_now)


@dataclass
class _Membership:
    user_id: int
    access_level: int
    expires_at: str | None = None
    created_at: str = field(default_factory=_now)


class GitLabEmulator(EmulatorServer):
    """GitLab groups, subgroups, members and users; see the module docstring for credentials."""

    system = "gitlab"
    contract_file = "gitlab-v4-operations.yaml"

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        latency_ms: float = 0.0,
        admin_token: str | None = None,
        max_per_page: int = 100,
    ) -> None:
        self.admin_username = "root"
        self.admin_token = admin_token or f"glpat-{secrets.token_urlsafe(15)}"
        self.default_max_per_page = max_per_page
        super().__init__(host, port, latency_ms=latency_ms)

    @property
    def token(self) -> str:
        """The token a client uses (the administrator's), named like the other emulators'."""
        return self.admin_token

    # -- state ----------------------------------------------------------------------------

    def reset_state(self) -> None:
        self.users: dict[int, _User] = {}
        self.groups: dict[int, _Group] = {}
        self.memberships: dict[int, dict[int, _Membership]] = {}
        self.max_per_page = self.default_max_per_page
        self._next_user_id = 1
        self._next_group_id = 1
        root = self._add_user(self.admin_username, "Administrator", "admin@example.com", is_admin=True)
        self.tokens: dict[str, int] = {self.admin_token: root.id}

    def snapshot(self) -> dict[str, Any]:
        return {
            "users": [self._user_json(u) for u in self.users.values()],
            "groups": [
                {
                    **self._group_json(g),
                    "members": [
                        {
                            "user_id": m.user_id,
                            "username": self.users[m.user_id].username,
                            "access_level": m.access_level,
                        }
                        for m in self.memberships.get(g.id, {}).values()
                    ],
                }
                for g in self.groups.values()
            ],
            "max_per_page": self.max_per_page,
        }

    def _add_user(self, username: str, name: str, email: str, **attributes: Any) -> _User:
        user = _User(id=self._next_user_id, username=username, name=name, email=email, **attributes)
        self._next_user_id += 1
        self.users[user.id] = user
        return user

    # -- the system's conventions ------------------------------------------------------------

    def error(self, status: int, message: str) -> Response:
        return json_response({"message": message}, status)

    def authenticate(self, request: Request) -> Response | None:
        if self._current_user(request) is None:
            return self.error(401, "401 Unauthorized")
        return None

    def _current_user(self, request: Request) -> _User | None:
        token = request.headers.get("PRIVATE-TOKEN")
        if token is None:
            scheme, _, value = request.headers.get("Authorization", "").partition(" ")
            token = value.strip() if scheme.lower() == "bearer" else None
        with self.lock:
            user_id = self.tokens.get(token) if token else None
            return self.users.get(user_id) if user_id is not None else None

    def wsgi_app(self, environ: dict[str, Any], start_response: Any) -> Any:
        # GitLab addresses groups by URL-encoded full path ("acme%2Fteam"); the WSGI server has
        # already decoded %2F into "/", so route on the raw request URI instead.
        raw_uri = environ.get("RAW_URI") or environ.get("REQUEST_URI")
        if raw_uri:
            environ["PATH_INFO"] = urlsplit(raw_uri).path
        return super().wsgi_app(environ, start_response)

    def _admin(self, request: Request) -> Response:
        if request.path.rstrip("/") == "/_emulator/settings":
            if request.method in ("POST", "PUT"):
                settings = request.get_json(force=True, silent=True) or {}
                unknown = set(settings) - {"max_per_page"}
                if unknown or int(settings.get("max_per_page", 1)) < 1:
                    return json_response({"error": f"unknown or invalid settings {sorted(settings)}"}, 400)
                with self.lock:
                    self.max_per_page = int(settings.get("max_per_page", self.max_per_page))
            return json_response({"max_per_page": self.max_per_page})
        return super()._admin(request)

    def routes(self) -> list[Rule]:
        return [
            Rule(f"{API}/groups", methods=["GET"], endpoint="list_groups"),
            Rule(f"{API}/groups", methods=["POST"], endpoint="create_group"),
            Rule(f"{API}/groups/<id>", methods=["GET"], endpoint="get_group"),
            Rule(f"{API}/groups/<id>", methods=["PUT"], endpoint="update_group"),
            Rule(f"{API}/groups/<id>", methods=["DELETE"], endpoint="delete_group"),
            Rule(f"{API}/groups/<id>/subgroups", methods=["GET"], endpoint="list_subgroups"),
            Rule(f"{API}/groups/<id>/members", methods=["GET"], endpoint="list_members"),
            Rule(f"{API}/groups/<id>/members", methods=["POST"], endpoint="add_member"),
            Rule(f"{API}/groups/<id>/members/all", methods=["GET"], endpoint="list_all_members"),
            Rule(f"{API}/groups/<id>/members/<user_id>", methods=["GET"], endpoint="get_member"),
            Rule(f"{API}/groups/<id>/members/<user_id>", methods=["PUT"], endpoint="update_member"),
            Rule(f"{API}/groups/<id>/members/<user_id>", methods=["DELETE"], endpoint="remove_member"),
            Rule(f"{API}/groups/<id>/projects", methods=["GET"], endpoint="list_group_projects"),
            Rule(f"{API}/projects", methods=["GET"], endpoint="list_projects"),
            Rule(f"{API}/users", methods=["GET"], endpoint="list_users"),
            Rule(f"{API}/users", methods=["POST"], endpoint="create_user"),
            Rule(f"{API}/users/<user_id>", methods=["GET"], endpoint="get_user"),
            Rule(f"{API}/users/<user_id>", methods=["DELETE"], endpoint="delete_user"),
            Rule(f"{API}/user", methods=["GET"], endpoint="get_current_user"),
            Rule(f"{API}/version", methods=["GET"], endpoint="get_version"),
        ]

    # -- lookups and views ---------------------------------------------------------------

    def _ancestors(self, group: _Group) -> list[_Group]:
        """The group's parents, nearest first."""
        chain: list[_Group] = []
        parent_id = group.parent_id
        while parent_id is not None:
            parent = self.groups[parent_id]
            chain.append(parent)
            parent_id = parent.parent_id
        return chain

    def _full_path(self, group: _Group) -> str:
        return "/".join([a.path for a in reversed(self._ancestors(group))] + [group.path])

    def _full_name(self, group: _Group) -> str:
        return " / ".join([a.name for a in reversed(self._ancestors(group))] + [group.name])

    def _find_group(self, raw_id: str) -> _Group | None:
        ref = unquote(raw_id)
        if ref.isascii() and ref.isdigit():
            return self.groups.get(int(ref))
        wanted = ref.strip("/").lower()
        return next((g for g in self.groups.values() if self._full_path(g).lower() == wanted), None)

    def _children(self, group_id: int | None) -> list[_Group]:
        return [g for g in self.groups.values() if g.parent_id == group_id]

    def _descendants(self, group: _Group) -> list[_Group]:
        found: list[_Group] = []
        for child in self._children(group.id):
            found += [child, *self._descendants(child)]
        return found

    def _namespace_taken(self, path: str, parent_id: int | None, *, except_id: int | None = None) -> bool:
        """Sibling paths are unique case-insensitively; top-level groups share the namespace with users."""
        lowered = path.lower()
        if any(g.path.lower() == lowered and g.id != except_id for g in self._children(parent_id)):
            return True
        return parent_id is None and any(u.username.lower() == lowered for u in self.users.values())

    def _direct_level(self, user_id: int, group: _Group) -> int:
        membership = self.memberships.get(group.id, {}).get(user_id)
        return membership.access_level if membership is not None else 0

    def _effective_access(self, user_id: int, group: _Group) -> int:
        return max(self._direct_level(user_id, g) for g in [group, *self._ancestors(group)])

    def _group_json(self, group: _Group, *, detail: bool = False) -> dict[str, Any]:
        full_path = self._full_path(group)
        view = {
            "id": group.id,
            "web_url": f"{self.url}/groups/{full_path}",
            "name": group.name,
            "path": group.path,
            "description": group.description,
            "visibility": group.visibility,
            **{k: v for k, v in group.settings.items() if k != "membership_lock"},
            "two_factor_grace_period": 48,
            "avatar_url": None,
            "full_name": self._full_name(group),
            "full_path": full_path,
            "created_at": group.created_at,
            "parent_id": group.parent_id,
            "organization_id": 1,
            "marked_for_deletion_on": None,
        }
        if detail:
            view.update(projects=[], shared_projects=[], shared_with_groups=[])
        return view

    def _user_json(self, user: _User) -> dict[str, Any]:
        return {
            "id": user.id,
            "username": user.username,
            "name": user.name,
            "state": user.state,
            "locked": False,
            "avatar_url": None,
            "web_url": f"{self.url}/{user.username}",
            "created_at": user.created_at,
            "email": user.email,
            "is_admin": user.is_admin,
            "external": user.external,
            "can_create_group": user.can_create_group,
            "projects_limit": user.projects_limit,
        }

    def _member_json(self, membership: _Membership) -> dict[str, Any]:
        user = self.users[membership.user_id]
        return {
            "id": user.id,
            "username": user.username,
            "name": user.name,
            "state": user.state,
            "locked": False,
            "avatar_url": None,
            "web_url": f"{self.url}/{user.username}",
            "access_level": membership.access_level,
            "created_at": membership.created_at,
            "expires_at": membership.expires_at,
            "membership_state": "active",
        }

    # -- pagination ------------------------------------------------------------------------

    def _page(self, request: Request, items: list[dict[str, Any]]) -> Response:
        """One page of `items` with GitLab's offset-pagination headers and RFC 8288 links."""
        page = max(1, request.args.get("page", 1, type=int) or 1)
        per_page = request.args.get("per_page", DEFAULT_PER_PAGE, type=int) or DEFAULT_PER_PAGE
        per_page = min(per_page if per_page > 0 else DEFAULT_PER_PAGE, self.max_per_page)
        total = len(items)
        total_pages = max(1, math.ceil(total / per_page))
        chunk = items[(page - 1) * per_page : page * per_page]

        def link(target: int) -> str:
            query = [(k, v) for k, v in request.args.items(multi=True) if k not in ("page", "per_page")]
            query += [("page", str(target)), ("per_page", str(per_page))]
            return f"{request.host_url.rstrip('/')}{request.path}?{urlencode(query)}"

        relations = {"first": 1, "last": total_pages}
        if page > 1:
            relations["prev"] = min(page - 1, total_pages)
        if page < total_pages:
            relations["next"] = page + 1
        headers = {
            "X-Page": str(page),
            "X-Per-Page": str(per_page),
            "X-Total": str(total),
            "X-Total-Pages": str(total_pages),
            "X-Next-Page": str(page + 1) if page < total_pages else "",
            "X-Prev-Page": str(page - 1) if page > 1 else "",
            "Link": ", ".join(f'<{link(n)}>; rel="{rel}"' for rel, n in relations.items()),
        }
        return json_response(chunk, 200, headers)

    # -- groups ----------------------------------------------------------------------------

    def _filtered_groups(self, request: Request, groups: list[_Group]) -> list[dict[str, Any]]:
        args = request.args
        user = self._current_user(request)
        search = (args.get("search") or "").lower()
        if search:
            groups = [g for g in groups if search in g.name.lower() or search in g.path.lower()]
        if args.get("visibility"):
            groups = [g for g in groups if g.visibility == args["visibility"]]
        skip = {int(v) for raw in args.getlist("skip_groups") for v in raw.split(",") if v.strip().isdigit()}
        groups = [g for g in groups if g.id not in skip]
        if user is not None and args.get("owned") == "true":
            groups = [g for g in groups if self._direct_level(user.id, g) == OWNER]
        if user is not None and args.get("min_access_level"):
            minimum = int(args["min_access_level"])
            groups = [g for g in groups if self._effective_access(user.id, g) >= minimum]
        order_by = args.get("order_by", "name")
        if order_by == "id":
            groups.sort(key=lambda g: g.id)
        elif order_by == "path":
            groups.sort(key=lambda g: self._full_path(g).lower())
        else:  # "name"; "similarity" ranks search hits, which this emulator orders by name
            groups.sort(key=lambda g: (self._full_name(g).lower(), g.id))
        if args.get("sort") == "desc":
            groups.reverse()
        return [self._group_json(g) for g in groups]

    def list_groups(self, request: Request) -> Response:
        with self.lock:
            groups = list(self.groups.values())
            if request.args.get("top_level_only") == "true":
                groups = [g for g in groups if g.parent_id is None]
            return self._page(request, self._filtered_groups(request, groups))

    def list_subgroups(self, request: Request, id: str) -> Response:
        with self.lock:
            group = self._find_group(id)
            if group is None:
                return self.error(404, "404 Group Not Found")
            return self._page(request, self._filtered_groups(request, self._children(group.id)))

    def get_group(self, request: Request, id: str) -> Response:
        with self.lock:
            group = self._find_group(id)
            if group is None:
                return self.error(404, "404 Group Not Found")
            return json_response(self._group_json(group, detail=True))

    def create_group(self, request: Request) -> Response:
        body = request.get_json(force=True)
        with self.lock:
            creator = self._current_user(request)
            parent: _Group | None = None
            if body.get("parent_id") is not None:
                parent = self.groups.get(body["parent_id"])
                if parent is None:
                    return self.error(404, "404 Group Not Found")
            visibility = body.get("visibility", "private")
            errors: dict[str, list[str]] = {}
            path = body["path"]
            if problem := _path_problem(path):
                errors["path"] = [problem]
            elif parent is None and path.lower() in RESERVED_TOP_LEVEL:
                errors["path"] = [f"{path} is a reserved name"]
            elif self._namespace_taken(path, parent.id if parent else None):
                errors["path"] = ["has already been taken"]
            if parent is not None and VISIBILITY_RANK[visibility] > VISIBILITY_RANK[parent.visibility]:
                errors["visibility_level"] = [
                    f"{visibility} is not allowed since the parent group has a {parent.visibility} visibility."
                ]
            errors.update(_description_errors(body))
            if errors:
                return self.error(400, f"Failed to save group {_ruby_errors(errors)}")
            group = _Group(
                id=self._next_group_id,
                name=body["name"],
                path=path,
                parent_id=parent.id if parent else None,
                description=body.get("description", ""),
                visibility=visibility,
            )
            group.settings.update({k: v for k, v in body.items() if k in _GROUP_SETTINGS_DEFAULTS})
            self._next_group_id += 1
            self.groups[group.id] = group
            if creator is not None:
                self.memberships[group.id] = {creator.id: _Membership(creator.id, OWNER)}
            return json_response(self._group_json(group, detail=True), 201)

    def update_group(self, request: Request, id: str) -> Response:
        body = request.get_json(force=True, silent=True) or {}
        with self.lock:
            group = self._find_group(id)
            if group is None:
                return self.error(404, "404 Group Not Found")
            errors: dict[str, list[str]] = {}
            if "path" in body and body["path"] != group.path:
                if problem := _path_problem(body["path"]):
                    errors["path"] = [problem]
                elif self._namespace_taken(body["path"], group.parent_id, except_id=group.id):
                    errors["path"] = ["has already been taken"]
            if "visibility" in body:
                wanted = VISIBILITY_RANK[body["visibility"]]
                parent = self.groups.get(group.parent_id) if group.parent_id is not None else None
                if parent is not None and wanted > VISIBILITY_RANK[parent.visibility]:
                    errors["visibility_level"] = [
                        f"{body['visibility']} is not allowed since the parent group has a {parent.visibility} visibility."
                    ]
                elif any(VISIBILITY_RANK[c.visibility] > wanted for c in self._children(group.id)):
                    errors["visibility_level"] = [
                        f"{body['visibility']} is not allowed since there are sub-groups with higher visibility."
                    ]
            errors.update(_description_errors(body))
            if errors:
                # render_validation_error!: the message is the errors object itself.
                return json_response({"message": errors}, 400)
            for key in ("name", "path", "description", "visibility"):
                if key in body:
                    setattr(group, key, body[key])
            group.settings.update({k: v for k, v in body.items() if k in _GROUP_SETTINGS_DEFAULTS})
            return json_response(self._group_json(group))

    def delete_group(self, request: Request, id: str) -> Response:
        with self.lock:
            group = self._find_group(id)
            if group is None:
                return self.error(404, "404 Group Not Found")
            self._remove_with_subgroups(group)
            return json_response({"message": "202 Accepted"}, 202)

    def _remove_with_subgroups(self, group: _Group) -> None:
        for doomed in [group, *self._descendants(group)]:
            self.groups.pop(doomed.id, None)
            self.memberships.pop(doomed.id, None)

    # -- members ---------------------------------------------------------------------------

    def _filtered_members(self, request: Request, memberships: list[_Membership]) -> list[dict[str, Any]]:
        query = (request.args.get("query") or "").lower()
        if query:
            memberships = [
                m
                for m in memberships
                if query in self.users[m.user_id].username.lower()
                or query in self.users[m.user_id].name.lower()
            ]
        wanted = {
            int(v)
            for raw in request.args.getlist("user_ids[]")
            for v in raw.split(",")
            if v.strip().isdigit()
        }
        if wanted:
            memberships = [m for m in memberships if m.user_id in wanted]
        skipped = {
            int(v)
            for raw in request.args.getlist("skip_users[]")
            for v in raw.split(",")
            if v.strip().isdigit()
        }
        memberships = [m for m in memberships if m.user_id not in skipped]
        return [self._member_json(m) for m in memberships]

    def list_members(self, request: Request, id: str) -> Response:
        with self.lock:
            group = self._find_group(id)
            if group is None:
                return self.error(404, "404 Group Not Found")
            direct = list(self.memberships.get(group.id, {}).values())
            return self._page(request, self._filtered_members(request, direct))

    def list_all_members(self, request: Request, id: str) -> Response:
        with self.lock:
            group = self._find_group(id)
            if group is None:
                return self.error(404, "404 Group Not Found")
            # One entry per user: the membership with the highest access level along the chain.
            best: dict[int, _Membership] = {}
            for g in [group, *self._ancestors(group)]:
                for m in self.memberships.get(g.id, {}).values():
                    if m.user_id not in best or m.access_level > best[m.user_id].access_level:
                        best[m.user_id] = m
            return self._page(request, self._filtered_members(request, list(best.values())))

    def _inherited_floor(self, group: _Group, user_id: int) -> tuple[int, _Group | None]:
        """The highest access level the user already has through an ancestor, and where from."""
        floor, source = 0, None
        for ancestor in self._ancestors(group):
            m = self.memberships.get(ancestor.id, {}).get(user_id)
            if m is not None and m.access_level > floor:
                floor, source = m.access_level, ancestor
        return floor, source

    def _below_inherited(self, group: _Group, user_id: int, access_level: int) -> Response | None:
        floor, source = self._inherited_floor(group, user_id)
        if source is None or access_level >= floor:
            return None
        text = f"should be greater than or equal to {ROLE_NAMES[floor]} inherited membership from group {source.name}"
        return json_response({"message": {"access_level": [text]}}, 400)

    def add_member(self, request: Request, id: str) -> Response:
        body = request.get_json(force=True)
        if ("user_id" in body) == ("username" in body):
            problem = (
                "are mutually exclusive"
                if "user_id" in body
                else "are missing, exactly one parameter must be provided"
            )
            return json_response({"error": f"user_id, username {problem}"}, 400)
        with self.lock:
            group = self._find_group(id)
            if group is None:
                return self.error(404, "404 Group Not Found")
            if "user_id" in body:
                user = self.users.get(body["user_id"])
            else:
                user = next(
                    (u for u in self.users.values() if u.username.lower() == body["username"].lower()), None
                )
            if user is None:
                return self.error(404, "404 User Not Found")
            members = self.memberships.setdefault(group.id, {})
            if user.id in members:
                return self.error(409, "Member already exists")
            if (refused := self._below_inherited(group, user.id, body["access_level"])) is not None:
                return refused
            membership = _Membership(user.id, body["access_level"], body.get("expires_at"))
            members[user.id] = membership
            return json_response(self._member_json(membership), 201)

    def _direct_membership(self, id: str, user_id: str) -> _Membership | Response:
        group = self._find_group(id)
        if group is None:
            return self.error(404, "404 Group Not Found")
        membership = (
            self.memberships.get(group.id, {}).get(int(user_id))
            if user_id.isascii() and user_id.isdigit()
            else None
        )
        if membership is None:
            # members.find_by! raises RecordNotFound, which GitLab renders this way.
            return self.error(404, "404 Not found")
        return membership

    def get_member(self, request: Request, id: str, user_id: str) -> Response:
        with self.lock:
            found = self._direct_membership(id, user_id)
            return found if isinstance(found, Response) else json_response(self._member_json(found))

    def update_member(self, request: Request, id: str, user_id: str) -> Response:
        body = request.get_json(force=True)
        with self.lock:
            found = self._direct_membership(id, user_id)
            if isinstance(found, Response):
                return found
            group = self._find_group(id)
            assert group is not None  # _direct_membership found it
            if (refused := self._below_inherited(group, found.user_id, body["access_level"])) is not None:
                return refused
            found.access_level = body["access_level"]
            if "expires_at" in body:
                found.expires_at = body["expires_at"]
            return json_response(self._member_json(found))

    def remove_member(self, request: Request, id: str, user_id: str) -> Response:
        with self.lock:
            found = self._direct_membership(id, user_id)
            if isinstance(found, Response):
                return found
            group = self._find_group(id)
            assert group is not None
            del self.memberships[group.id][found.user_id]
            return Response(status=204)

    # -- users ------------------------------------------------------------------------------

    def list_users(self, request: Request) -> Response:
        args = request.args
        with self.lock:
            users = sorted(self.users.values(), key=lambda u: u.id, reverse=True)
            if args.get("username"):
                users = [u for u in users if u.username.lower() == args["username"].lower()]
            if args.get("search"):
                needle = args["search"].lower()
                users = [
                    u
                    for u in users
                    if needle in u.username.lower() or needle in u.name.lower() or needle in u.email.lower()
                ]
            if args.get("active") == "true":
                users = [u for u in users if u.state == "active"]
            if args.get("blocked") == "true":
                users = [u for u in users if u.state == "blocked"]
            if args.get("external") == "true":
                users = [u for u in users if u.external]
            return self._page(request, [self._user_json(u) for u in users])

    def create_user(self, request: Request) -> Response:
        body = request.get_json(force=True)
        with self.lock:
            caller = self._current_user(request)
            if caller is None or not caller.is_admin:
                return self.error(403, "403 Forbidden")
            if not any(body.get(k) for k in ("password", "reset_password", "force_random_password")):
                return json_response(
                    {
                        "error": "password, reset_password, force_random_password are missing, at least one parameter must be provided"
                    },
                    400,
                )
            if any(u.email.lower() == body["email"].lower() for u in self.users.values()):
                return self.error(409, "Email has already been taken")
            if self._namespace_taken(body["username"], None):
                return self.error(409, "Username has already been taken")
            problem = _path_problem(body["username"])
            if problem is None and body["username"].lower() in RESERVED_TOP_LEVEL:
                problem = f"{body['username']} is a reserved name"
            if problem:
                return json_response({"message": {"username": [problem]}}, 400)
            user = self._add_user(
                body["username"],
                body["name"],
                body["email"],
                is_admin=bool(body.get("admin", False)),
                external=bool(body.get("external", False)),
                can_create_group=bool(body.get("can_create_group", True)),
                projects_limit=int(body.get("projects_limit", 100000)),
            )
            return json_response(self._user_json(user), 201)

    def _find_user(self, raw_id: str) -> _User | None:
        # GitLab's users routes only match digits (requirements: { id: /[0-9]*/ }).
        return self.users.get(int(raw_id)) if raw_id.isascii() and raw_id.isdigit() else None

    def get_user(self, request: Request, user_id: str) -> Response:
        with self.lock:
            user = self._find_user(user_id)
            if user is None:
                return self.error(404, "404 User Not Found")
            return json_response(self._user_json(user))

    def _solely_owned_groups(self, user: _User) -> list[_Group]:
        """Groups where the user is the only direct Owner (what blocks a soft delete)."""
        return [
            group
            for group in self.groups.values()
            if self._direct_level(user.id, group) == OWNER
            and [m.user_id for m in self.memberships.get(group.id, {}).values() if m.access_level == OWNER]
            == [user.id]
        ]

    def delete_user(self, request: Request, user_id: str) -> Response:
        hard_delete = (request.args.get("hard_delete") or "").lower() == "true"
        with self.lock:
            caller = self._current_user(request)
            if caller is None or not caller.is_admin:
                return self.error(403, "403 Forbidden")
            user = self._find_user(user_id)
            if user is None:
                return self.error(404, "404 User Not Found")
            owned = self._solely_owned_groups(user)
            if owned and not hard_delete:
                return self.error(409, "User cannot be removed while is the sole-owner of a group")
            for group in owned:
                # hard_delete takes the solely owned groups along; one may already be gone
                # with an owned ancestor.
                if group.id in self.groups:
                    self._remove_with_subgroups(group)
            for members in self.memberships.values():
                members.pop(user.id, None)
            self.tokens = {token: owner for token, owner in self.tokens.items() if owner != user.id}
            del self.users[user.id]
            return Response(status=204)

    def get_current_user(self, request: Request) -> Response:
        with self.lock:
            user = self._current_user(request)
            if user is None:  # the token's user was deleted since authentication
                return self.error(401, "401 Unauthorized")
            view = self._user_json(user)
        # python-gitlab's auth() warns when web_url does not start with the URL it was given,
        # so the link is built from the address the client used, not the one the server bound.
        view.update(
            web_url=f"{request.host_url}{user.username}",
            bio="",
            location="",
            public_email=None,
            commit_email=user.email,
            bot=False,
            identities=[],
            can_create_project=True,
            two_factor_enabled=False,
            private_profile=False,
            theme_id=3,
            color_scheme_id=1,
            last_sign_in_at=None,
            current_sign_in_at=None,
            confirmed_at=user.created_at,
        )
        return json_response(view)

    def get_version(self, request: Request) -> Response:
        return json_response(
            {
                "version": EMULATED_VERSION,
                "revision": EMULATED_REVISION,
                "kas": {"enabled": False, "externalUrl": None, "externalK8sProxyUrl": None, "version": None},
                "enterprise": False,
            }
        )

    # -- projects (none exist here; the lists answer like an instance without any) -----------

    def list_group_projects(self, request: Request, id: str) -> Response:
        with self.lock:
            if self._find_group(id) is None:
                return self.error(404, "404 Group Not Found")
            return self._page(request, [])

    def list_projects(self, request: Request) -> Response:
        with self.lock:
            return self._page(request, [])
