"""Harbor API v2.0, emulated: projects, metadata, quotas, members, user groups and users.

Answers like Harbor 2.x (main) as the operator sees it, checked against Harbor's swagger: basic
auth, `{"errors": [{"code", "message"}]}` bodies with an X-Request-Id, 201 + Location, 409 on
duplicates, X-Total-Count and Harbor's Link header, X-Is-Resource-Name deciding name vs id, the
creator as first projectAdmin, one quota per project (-1 = no limit). It runs in OIDC auth mode:
a group named in a membership is onboarded as an OIDC group. Where Harbor answers a status its
spec does not declare, `SPEC_DEVIATIONS` names it; only those pass the response check. The
anonymous endpoints (/health, /systeminfo, which shows its protected fields only to a logged-in
caller) and the reads clients start with (/users/current, a project's repositories) answer too.
"""

from __future__ import annotations

import functools
import hmac
import itertools
import re
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any

from werkzeug.routing import Rule
from werkzeug.wrappers import Request, Response

from emulators.server import EmulatorServer, json_response

API = "/api/v2.0"
UNLIMITED = -1
ROLE_NAMES = {1: "projectAdmin", 2: "developer", 3: "guest", 4: "maintainer", 5: "limitedGuest"}
LDAP_GROUP, HTTP_GROUP, OIDC_GROUP = 1, 2, 3
# What /systeminfo reports (Harbor formats it as "<release>-<git commit>").
HARBOR_VERSION = "v2.13.0-emulated"
HEALTH_COMPONENTS = ("core", "database", "jobservice", "portal", "redis", "registry", "registryctl")
# Paths Harbor serves without credentials (wrong credentials there count as none).
ANONYMOUS_PATHS = frozenset({f"{API}/health", f"{API}/systeminfo"})

# Harbor's own rule for project names (pkg/project/manager.go).
_PROJECT_NAME = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*$")
_INTEGER = re.compile(r"^[+-]?\d+$")
_BOOLEAN_METADATA = (
    "public",
    "enable_content_trust",
    "enable_content_trust_cosign",
    "prevent_vul",
    "auto_scan",
)
_PROXY_ONLY_METADATA = (
    "proxy_speed_kb",
    "max_upstream_conn",
    "proxy_cache_filter_pattern",
    "proxy_cache_filter_kind",
)
_SEVERITIES = ("none", "low", "medium", "high", "critical")
_ILLEGAL_USERNAME_CHARS = ',"~#%$'
_EMAIL = re.compile(r"^[^<>()\[\]\\.,;:\s@\"]+(\.[^<>()\[\]\\.,;:\s@\"]+)*@([a-zA-Z\-0-9]+\.)+[a-zA-Z]{2,}$")

# (method, spec path template, status) that real Harbor answers although its spec does not
# declare the status. The emulator answers the same, and the response check accepts exactly these.
SPEC_DEVIATIONS: dict[tuple[str, str, int], str] = {
    ("POST", "/projects/{project_name_or_id}/members", 404): (
        "Harbor answers 404 when the project or member_user.username does not exist"
    ),
    ("GET", "/usergroups/search", 400): "Harbor answers 400 to an empty groupname",
}


class _Refusal(Exception):
    """A handler's way to answer with Harbor's error format from any depth."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _handler(method: Callable[..., Response]) -> Callable[..., Response]:
    """Serialize access to the state and turn a `_Refusal` into Harbor's error answer."""

    @functools.wraps(method)
    def wrapper(self: HarborEmulator, request: Request, **values: str) -> Response:
        with self.lock:
            try:
                return method(self, request, **values)
            except _Refusal as refusal:
                return self.error(refusal.status, refusal.message)

    return wrapper


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _error_code(status: int) -> str:
    known = {409: "CONFLICT", 412: "PRECONDITION", 429: "TOO_MANY_REQUEST"}
    if status in known:
        return known[status]
    if status >= 500:
        return "UNKNOWN"
    try:
        return HTTPStatus(status).phrase.upper().replace(" ", "_")
    except ValueError:
        return "UNKNOWN"


def _as_int(raw: str) -> int:
    if not _INTEGER.match(raw):
        raise _Refusal(400, f"invalid integer: {raw}")
    return int(raw)


def _created(location: str) -> Response:
    response = Response(status=201, content_type="application/json")
    response.headers["Location"] = location
    return response


def _ok() -> Response:
    return Response(status=200, content_type="application/json")


class HarborEmulator(EmulatorServer):
    """An in-memory Harbor. Credentials for a client: `admin_username` / `admin_password`
    (HTTP basic auth). Knobs: `default_page_size` (Harbor's is 10) and
    `unknown_project_name_status` (404 as Harbor >= 2.9 answers the admin; 403 models Harbor
    <= 2.8, which answered 403 "forbidden" for a project name that does not exist).

    Setting the stage: users through POST /api/v2.0/users (in real OIDC mode they appear at
    their first login), and `set_repository_count()` or POST /_emulator/repositories
    {"project": name, "count": n} for a project that holds images (deleting it answers 412).
    """

    system = "harbor"
    contract_file = "harbor-v2.0-swagger.yaml"

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        latency_ms: float = 0.0,
        admin_username: str = "admin",
        admin_password: str = "Harbor12345",
        default_page_size: int = 10,
        unknown_project_name_status: int = 404,
    ) -> None:
        self.admin_username = admin_username
        self.admin_password = admin_password
        self.default_page_size = default_page_size
        self.unknown_project_name_status = unknown_project_name_status
        self._initial_knobs = (admin_username, admin_password, default_page_size, unknown_project_name_status)
        super().__init__(host, port, latency_ms=latency_ms)

    def reset(self) -> None:
        """Forget state, calls, violations and faults, and restore the constructor's knobs."""
        with self.lock:
            (
                self.admin_username,
                self.admin_password,
                self.default_page_size,
                self.unknown_project_name_status,
            ) = self._initial_knobs
            super().reset()

    # -- routes ---------------------------------------------------------------------------

    def routes(self) -> list[Rule]:
        project = f"{API}/projects/<name_or_id>"
        return [
            Rule(f"{API}/projects", methods=["GET", "HEAD"], endpoint="list_or_head_projects"),
            Rule(f"{API}/projects", methods=["POST"], endpoint="create_project"),
            Rule(project, methods=["GET"], endpoint="get_project"),
            Rule(project, methods=["PUT"], endpoint="update_project"),
            Rule(project, methods=["DELETE"], endpoint="delete_project"),
            Rule(f"{project}/summary", methods=["GET"], endpoint="get_project_summary"),
            Rule(f"{project}/members", methods=["GET"], endpoint="list_members"),
            Rule(f"{project}/members", methods=["POST"], endpoint="create_member"),
            Rule(f"{project}/members/<mid>", methods=["GET"], endpoint="get_member"),
            Rule(f"{project}/members/<mid>", methods=["PUT"], endpoint="update_member"),
            Rule(f"{project}/members/<mid>", methods=["DELETE"], endpoint="delete_member"),
            Rule(f"{project}/metadatas/", methods=["GET"], endpoint="list_metadata"),
            Rule(f"{project}/metadatas/", methods=["POST"], endpoint="add_metadata"),
            Rule(f"{project}/metadatas/<meta_name>", methods=["GET"], endpoint="get_metadata"),
            Rule(f"{project}/metadatas/<meta_name>", methods=["PUT"], endpoint="update_metadata"),
            Rule(f"{project}/metadatas/<meta_name>", methods=["DELETE"], endpoint="delete_metadata"),
            Rule(f"{API}/quotas", methods=["GET"], endpoint="list_quotas"),
            Rule(f"{API}/quotas/<quota_id>", methods=["GET"], endpoint="get_quota"),
            Rule(f"{API}/quotas/<quota_id>", methods=["PUT"], endpoint="update_quota"),
            Rule(f"{API}/usergroups", methods=["GET"], endpoint="list_usergroups"),
            Rule(f"{API}/usergroups", methods=["POST"], endpoint="create_usergroup"),
            Rule(f"{API}/usergroups/search", methods=["GET"], endpoint="search_usergroups"),
            Rule(f"{API}/usergroups/<group_id>", methods=["GET"], endpoint="get_usergroup"),
            Rule(f"{API}/usergroups/<group_id>", methods=["PUT"], endpoint="update_usergroup"),
            Rule(f"{API}/usergroups/<group_id>", methods=["DELETE"], endpoint="delete_usergroup"),
            Rule(f"{API}/users", methods=["POST"], endpoint="create_user"),
            Rule(f"{API}/users/search", methods=["GET"], endpoint="search_users"),
            Rule(f"{API}/users/<user_id>", methods=["GET"], endpoint="get_user"),
            Rule(f"{API}/users/current", methods=["GET"], endpoint="get_current_user"),
            Rule(
                f"{API}/projects/<project_name>/repositories", methods=["GET"], endpoint="list_repositories"
            ),
            Rule(f"{API}/health", methods=["GET"], endpoint="get_health"),
            Rule(f"{API}/systeminfo", methods=["GET"], endpoint="get_system_info"),
        ]

    # -- state ----------------------------------------------------------------------------

    def reset_state(self) -> None:
        self.users: dict[int, dict[str, Any]] = {}
        self.usergroups: dict[int, dict[str, Any]] = {}
        self.projects: dict[int, dict[str, Any]] = {}
        self.quotas: dict[int, dict[str, Any]] = {}
        self.members: dict[int, dict[str, Any]] = {}
        self._next_id = {kind: itertools.count(1) for kind in ("user", "group", "project", "quota", "member")}
        now = _now()
        self.admin_id = self._new_id("user")
        self.users[self.admin_id] = {
            "user_id": self.admin_id,
            "username": self.admin_username,
            "email": "admin@example.com",
            "realname": "system admin",
            "comment": "admin user",
            "sysadmin_flag": True,
            "creation_time": now,
            "update_time": now,
        }
        # Every Harbor starts with the public project "library".
        self._insert_project("library", {"public": "true"}, UNLIMITED)

    def snapshot(self) -> dict[str, Any]:
        return {
            "projects": [
                {
                    **self._project_body(project),
                    "storage_limit": self._quota_of(project)["hard"],
                    "members": [self._member_body(m) for m in self._members_of(project)],
                }
                for project in self.projects.values()
            ],
            "usergroups": [dict(group) for group in self.usergroups.values()],
            "users": [dict(user) for user in self.users.values()],
        }

    def set_repository_count(self, project_name: str, count: int) -> None:
        """Pretend the project holds `count` repositories (Harbor refuses to delete it then)."""
        with self.lock:
            project = next((p for p in self.projects.values() if p["name"] == project_name), None)
            if project is None:
                raise KeyError(f"no project named {project_name}")
            project["repo_count"] = count

    def _new_id(self, kind: str) -> int:
        return next(self._next_id[kind])

    def _insert_project(self, name: str, metadata: dict[str, str], storage_limit: int) -> dict[str, Any]:
        now = _now()
        project_id = self._new_id("project")
        project = {
            "project_id": project_id,
            "name": name,
            "owner_id": self.admin_id,
            "creation_time": now,
            "update_time": now,
            "repo_count": 0,
            "metadata": metadata,
        }
        self.projects[project_id] = project
        quota_id = self._new_id("quota")
        self.quotas[quota_id] = {
            "id": quota_id,
            "project_id": project_id,
            "hard": storage_limit,
            "used": 0,
            "creation_time": now,
            "update_time": now,
        }
        # Harbor makes the creator the project's first projectAdmin member.
        self._insert_member(project_id, self.admin_id, "u", 1)
        return project

    def _insert_member(self, project_id: int, entity_id: int, entity_type: str, role_id: int) -> int:
        member_id = self._new_id("member")
        self.members[member_id] = {
            "id": member_id,
            "project_id": project_id,
            "entity_id": entity_id,
            "entity_type": entity_type,
            "role_id": role_id,
        }
        return member_id

    # -- the pipeline, Harbor-flavoured -----------------------------------------------------

    def wsgi_app(self, environ: dict[str, Any], start_response: Any) -> Any:
        """Every Harbor answer carries X-Request-Id (the caller's, or a fresh one)."""
        request_id = environ.get("HTTP_X_REQUEST_ID") or str(uuid.uuid4())

        def start_with_request_id(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            headers.append(("X-Request-Id", request_id))
            return start_response(status, headers, exc_info)

        return super().wsgi_app(environ, start_with_request_id)

    def _logged_in(self, request: Request) -> bool:
        credentials = request.authorization
        return (
            credentials is not None
            and credentials.type == "basic"
            and hmac.compare_digest((credentials.username or "").encode(), self.admin_username.encode())
            and hmac.compare_digest((credentials.password or "").encode(), self.admin_password.encode())
        )

    def authenticate(self, request: Request) -> Response | None:
        if self._logged_in(request) or request.path.rstrip("/") in ANONYMOUS_PATHS:
            return None
        return self.error(401, "unauthorized")

    def error(self, status: int, message: str) -> Response:
        if status >= 500 and not message.startswith("injected"):
            message = "internal server error"
        return json_response({"errors": [{"code": _error_code(status), "message": message}]}, status)

    def _check_response(self, request: Request, response: Response) -> None:
        operation, _ = self.contract.match(request.method, request.path)  # type: ignore[union-attr]
        if operation is not None and (operation.method, operation.template, response.status_code) in (
            SPEC_DEVIATIONS
        ):
            return
        super()._check_response(request, response)

    def _admin(self, request: Request) -> Response:
        if request.path.rstrip("/") == "/_emulator/repositories" and request.method == "POST":
            document = request.get_json(force=True, silent=True) or {}
            try:
                self.set_repository_count(str(document["project"]), int(document["count"]))
            except (KeyError, TypeError, ValueError) as exc:
                return json_response(
                    {"error": f"expected {{project, count}} of an existing project: {exc}"}, 400
                )
            return json_response({"project": document["project"], "repo_count": int(document["count"])})
        return super()._admin(request)

    # -- helpers --------------------------------------------------------------------------

    def _project(self, request: Request, name_or_id: str) -> dict[str, Any]:
        """Harbor's parseProjectNameOrID: a name when X-Is-Resource-Name is true or the value
        is not an integer, else an id."""
        as_name = request.headers.get("X-Is-Resource-Name", "").lower() == "true"
        if not as_name and _INTEGER.match(name_or_id):
            project = self.projects.get(int(name_or_id))
            if project is None:
                raise _Refusal(404, f"project {int(name_or_id)} not found")
            return project
        return self._project_named(name_or_id)

    def _project_named(self, name: str) -> dict[str, Any]:
        project = next((p for p in self.projects.values() if p["name"] == name), None)
        if project is None:
            if self.unknown_project_name_status == 403:
                raise _Refusal(403, "forbidden")
            raise _Refusal(404, f"project {name} not found")
        return project

    def _quota_of(self, project: dict[str, Any]) -> dict[str, Any]:
        return next(q for q in self.quotas.values() if q["project_id"] == project["project_id"])

    def _members_of(self, project: dict[str, Any]) -> list[dict[str, Any]]:
        members = [m for m in self.members.values() if m["project_id"] == project["project_id"]]
        return sorted(members, key=self._entity_name)

    def _entity_name(self, member: dict[str, Any]) -> str:
        if member["entity_type"] == "u":
            return self.users[member["entity_id"]]["username"]
        return self.usergroups[member["entity_id"]]["group_name"]

    def _project_body(self, project: dict[str, Any]) -> dict[str, Any]:
        role_ids = sorted(
            m["role_id"]
            for m in self._members_of(project)
            if (m["entity_type"], m["entity_id"]) == ("u", self.admin_id)
        )
        return {
            "project_id": project["project_id"],
            "owner_id": project["owner_id"],
            "owner_name": self.users[project["owner_id"]]["username"],
            "name": project["name"],
            "creation_time": project["creation_time"],
            "update_time": project["update_time"],
            "togglable": True,
            "current_user_role_id": role_ids[0] if role_ids else 0,
            "current_user_role_ids": role_ids,
            "repo_count": project["repo_count"],
            "metadata": dict(project["metadata"]),
            "cve_allowlist": {
                "id": project["project_id"],
                "project_id": project["project_id"],
                "items": [],
                "creation_time": project["creation_time"],
                "update_time": project["update_time"],
            },
        }

    def _member_body(self, member: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": member["id"],
            "project_id": member["project_id"],
            "entity_name": self._entity_name(member),
            "entity_id": member["entity_id"],
            "entity_type": member["entity_type"],
            "role_id": member["role_id"],
            "role_name": ROLE_NAMES.get(member["role_id"], ""),
        }

    def _quota_body(self, quota: dict[str, Any]) -> dict[str, Any]:
        project = self.projects[quota["project_id"]]
        return {
            "id": quota["id"],
            "ref": {
                "id": project["project_id"],
                "name": project["name"],
                "owner_name": self.users[project["owner_id"]]["username"],
            },
            "hard": {"storage": quota["hard"]},
            "used": {"storage": quota["used"]},
            "creation_time": quota["creation_time"],
            "update_time": quota["update_time"],
        }

    def _page(self, request: Request, items: list[Any], *, total: int | None = None) -> Response:
        """One page of `items` with Harbor's X-Total-Count and Link headers.

        `total` overrides the count where Harbor counts something else than it lists (the
        member list counts all members even when filtered by entityname)."""
        total = len(items) if total is None else total
        page = max(1, int(request.args.get("page", 1)))
        page_size = int(request.args.get("page_size", self.default_page_size))
        headers = {"X-Total-Count": str(total)}
        if page_size <= 0:
            return json_response(items, 200, headers)
        links = []
        if page > 1 and (page - 1) * page_size < total:
            links.append(f'<{self._page_url(request, page - 1, page_size)}>; rel="prev"')
        if page * page_size < total:
            links.append(f'<{self._page_url(request, page + 1, page_size)}>; rel="next"')
        if links:
            headers["Link"] = " , ".join(links)
        return json_response(items[(page - 1) * page_size : page * page_size], 200, headers)

    @staticmethod
    def _page_url(request: Request, page: int, page_size: int) -> str:
        # Like Go's url.Values.Encode (sorted keys), then unescaped as Harbor does.
        args = {key: request.args.getlist(key) for key in request.args}
        args["page"], args["page_size"] = [str(page)], [str(page_size)]
        query = "&".join(f"{key}={value}" for key in sorted(args) for value in args[key])
        return f"{request.path}?{query}"

    @staticmethod
    def _fuzzy(needle: str | None, haystack: str) -> bool:
        return not needle or needle in haystack

    # -- projects -------------------------------------------------------------------------

    @_handler
    def list_or_head_projects(self, request: Request) -> Response:
        if request.method == "HEAD":
            self._project_named(request.args["project_name"])
            return _ok()
        projects = list(self.projects.values())
        name = request.args.get("name")
        owner = request.args.get("owner")
        public = request.args.get("public")
        projects = [p for p in projects if self._fuzzy(name, p["name"])]
        if owner:
            projects = [p for p in projects if self.users[p["owner_id"]]["username"] == owner]
        if public is not None:
            projects = [p for p in projects if p["metadata"].get("public") == public.lower()]
        for key, matches in _parse_query(request.args.get("q", "")):
            projects = [p for p in projects if self._project_matches(p, key, matches)]
        projects = _sorted(
            projects, request.args.get("sort", ""), ("name", "project_id", "creation_time", "update_time")
        )
        return self._page(request, [self._project_body(p) for p in projects])

    def _project_matches(self, project: dict[str, Any], key: str, matches: Callable[[str], bool]) -> bool:
        values = {
            "name": project["name"],
            "project_id": str(project["project_id"]),
            "owner": self.users[project["owner_id"]]["username"],
            "public": project["metadata"].get("public", "false"),
        }
        # Harbor ignores query keys that name no column of the project.
        return key not in values or matches(values[key])

    @_handler
    def create_project(self, request: Request) -> Response:
        body = request.get_json(silent=True) or {}
        name = body.get("project_name") or ""
        metadata = self._clean_metadata(body.get("metadata") or {})
        if body.get("public") is not None and not metadata.get("public"):
            metadata["public"] = "true" if body["public"] else "false"
        metadata.setdefault("public", "false")
        if metadata["public"] not in ("true", "false"):
            raise _Refusal(
                400, f"metadata.public should only be 'true' or 'false', but got: '{metadata['public']}'"
            )
        for key in _PROXY_ONLY_METADATA:
            metadata.pop(key, None)
        if metadata.pop("retention_id", ""):
            raise _Refusal(
                400,
                "the retention_id in the request's payload when creating a project should be omitted, "
                "alternatively passing an empty string",
            )
        registry_id = body.get("registry_id")
        if registry_id is not None:
            # No registry endpoints are emulated, so no proxy-cache project can reference one.
            if registry_id <= 0:
                raise _Refusal(
                    400, f"{registry_id} is invalid value of registry_id, it should be geater than 0"
                )
            raise _Refusal(400, f"registry {registry_id} not found")
        storage_limit = body.get("storage_limit")
        if not storage_limit:
            storage_limit = UNLIMITED  # Harbor's default storage_per_project
        _validate_storage({"storage": storage_limit})
        if not 1 <= len(name) <= 255:
            raise _Refusal(
                400, f"Project name {name} is illegal in length. (greater than 255 or less than 1)"
            )
        if not _PROJECT_NAME.match(name):
            raise _Refusal(400, "project name is not in lower case or contains illegal characters")
        if any(p["name"] == name for p in self.projects.values()):
            raise _Refusal(409, f"The project named {name} already exists")
        project = self._insert_project(name, metadata, storage_limit)
        in_location = request.headers.get("X-Resource-Name-In-Location", "").lower() == "true"
        return _created(f"{API}/projects/{name if in_location else project['project_id']}")

    def _clean_metadata(self, raw: dict[str, Any]) -> dict[str, str]:
        """Keep what Harbor's ProjectMetadata model keeps: its known keys with a non-empty value."""
        known = self.contract.document["definitions"]["ProjectMetadata"]["properties"]  # type: ignore[union-attr]
        return {key: value for key, value in raw.items() if key in known and isinstance(value, str) and value}

    @_handler
    def get_project(self, request: Request, name_or_id: str) -> Response:
        return json_response(self._project_body(self._project(request, name_or_id)))

    @_handler
    def update_project(self, request: Request, name_or_id: str) -> Response:
        project = self._project(request, name_or_id)
        body = request.get_json(silent=True) or {}
        # Like Harbor, PUT changes metadata only; name and storage_limit are not updatable here.
        metadata = self._clean_metadata(body.get("metadata") or {})
        for key in _PROXY_ONLY_METADATA:
            metadata.pop(key, None)
        if "public" in metadata and metadata["public"] not in ("true", "false"):
            raise _Refusal(
                400, f"metadata.public should only be 'true' or 'false', but got: '{metadata['public']}'"
            )
        if "retention_id" in metadata and metadata["retention_id"] != project["metadata"].get("retention_id"):
            raise _Refusal(
                400,
                "the retention_id in the request's payload when updating a project should be omitted, "
                "alternatively passing the one that has already been associated to this project",
            )
        project["metadata"].update(metadata)
        project["update_time"] = _now()
        return _ok()

    @_handler
    def delete_project(self, request: Request, name_or_id: str) -> Response:
        project = self._project(request, name_or_id)
        if project["repo_count"] > 0:
            raise _Refusal(412, "the project contains repositories, can not be deleted")
        project_id = project["project_id"]
        del self.projects[project_id]
        self.quotas = {k: q for k, q in self.quotas.items() if q["project_id"] != project_id}
        self.members = {k: m for k, m in self.members.items() if m["project_id"] != project_id}
        return _ok()

    @_handler
    def get_project_summary(self, request: Request, name_or_id: str) -> Response:
        project = self._project(request, name_or_id)
        quota = self._quota_of(project)
        roles = [m["role_id"] for m in self._members_of(project)]
        return json_response(
            {
                "repo_count": project["repo_count"],
                "project_admin_count": roles.count(1),
                "maintainer_count": roles.count(4),
                "developer_count": roles.count(2),
                "guest_count": roles.count(3),
                "limited_guest_count": roles.count(5),
                "quota": {"hard": {"storage": quota["hard"]}, "used": {"storage": quota["used"]}},
            }
        )

    # -- members --------------------------------------------------------------------------

    @_handler
    def list_members(self, request: Request, name_or_id: str) -> Response:
        project = self._project(request, name_or_id)
        members = self._members_of(project)
        entity_name = request.args.get("entityname")
        listed = [m for m in members if not entity_name or self._entity_name(m) == entity_name]
        return self._page(request, [self._member_body(m) for m in listed], total=len(members))

    @_handler
    def create_member(self, request: Request, name_or_id: str) -> Response:
        body = request.get_json(silent=True)
        if body is None:
            raise _Refusal(400, "the project member should provide")
        user = body.get("member_user") or {}
        group = body.get("member_group") or {}
        if not (
            (user.get("user_id") or 0) > 0
            or user.get("username")
            or (group.get("id") or 0) > 0
            or group.get("group_name")
            or group.get("ldap_group_dn")
        ):
            raise _Refusal(400, "at least one of member_user or member_group must be provided")
        project = self._project(request, name_or_id)
        entity_type, entity_id = self._member_entity(user, group)
        if any(
            (m["project_id"], m["entity_type"], m["entity_id"])
            == (project["project_id"], entity_type, entity_id)
            for m in self.members.values()
        ):
            raise _Refusal(409, "The project member specified already exist")
        # Role 5 (limitedGuest) is valid in Harbor although the spec's text names only 1-4.
        role_id = body.get("role_id") or 0
        if role_id not in ROLE_NAMES:
            raise _Refusal(
                400, "invalid role: must be a built-in project role (1-5) or an existing custom role"
            )
        member_id = self._insert_member(project["project_id"], entity_id, entity_type, role_id)
        return _created(f"{API}/projects/{name_or_id}/members/{member_id}")

    def _member_entity(self, user: dict[str, Any], group: dict[str, Any]) -> tuple[str, int]:
        """Resolve the member like Harbor's member controller, in its order of precedence."""
        if (user.get("user_id") or 0) > 0:
            if user["user_id"] not in self.users:
                raise _Refusal(400, f"User {user['user_id']} not found")
            return "u", user["user_id"]
        if (group.get("id") or 0) > 0:
            if group["id"] not in self.usergroups:
                raise _Refusal(400, f"Group {group['id']} not found")
            return "g", group["id"]
        if user.get("username"):
            found = next((u for u in self.users.values() if u["username"] == user["username"]), None)
            if found is None:
                raise _Refusal(404, f"user {user['username']} is not found")
            return "u", found["user_id"]
        if group.get("ldap_group_dn"):
            # The emulated LDAP directory holds every DN it is asked for.
            dn = group["ldap_group_dn"]
            found = next((g for g in self.usergroups.values() if g.get("ldap_group_dn") == dn), None)
            if found is None:
                found = self._insert_usergroup(group.get("group_name") or dn, LDAP_GROUP, dn)
            return "g", found["id"]
        name, group_type = group["group_name"], group.get("group_type") or 0
        found = next(
            (g for g in self.usergroups.values() if (g["group_name"], g["group_type"]) == (name, group_type)),
            None,
        )
        if found is None:
            # OIDC mode onboards any named group as an OIDC group.
            found = next(
                (
                    g
                    for g in self.usergroups.values()
                    if (g["group_name"], g["group_type"]) == (name, OIDC_GROUP)
                ),
                None,
            ) or self._insert_usergroup(name, OIDC_GROUP, "")
        return "g", found["id"]

    def _member(self, project: dict[str, Any], raw_mid: str) -> dict[str, Any] | None:
        member = self.members.get(_as_int(raw_mid))
        return member if member is not None and member["project_id"] == project["project_id"] else None

    @_handler
    def get_member(self, request: Request, name_or_id: str, mid: str) -> Response:
        if _as_int(mid) == 0:
            raise _Refusal(400, "the member id can not be empty!")
        member = self._member(self._project(request, name_or_id), mid)
        if member is None:
            raise _Refusal(404, f"the project member with id {int(mid)} is not found")
        return json_response(self._member_body(member))

    @_handler
    def update_member(self, request: Request, name_or_id: str, mid: str) -> Response:
        body = request.get_json(silent=True)
        if body is None:
            raise _Refusal(400, "role can not be empty")
        if _as_int(mid) == 0:
            raise _Refusal(400, "member id can not be empty")
        project = self._project(request, name_or_id)
        role_id = body.get("role_id") or 0
        if role_id not in ROLE_NAMES:
            raise _Refusal(
                400, "invalid role: must be a built-in project role (1-5) or an existing custom role"
            )
        member = self._member(project, mid)
        # Harbor updates with a plain SQL UPDATE: an unknown member id is not an error.
        if member is not None:
            member["role_id"] = role_id
        return _ok()

    @_handler
    def delete_member(self, request: Request, name_or_id: str, mid: str) -> Response:
        if _as_int(mid) == 0:
            raise _Refusal(400, "the project member id is required.")
        member = self._member(self._project(request, name_or_id), mid)
        # Harbor deletes with a plain SQL DELETE: an unknown member id is not an error.
        if member is not None:
            del self.members[member["id"]]
        return _ok()

    # -- metadata -------------------------------------------------------------------------

    @staticmethod
    def _validated_metadata(metadata: dict[str, Any]) -> tuple[str, str]:
        if len(metadata) != 1:
            raise _Refusal(400, "only allow one key/value pair")
        ((key, value),) = metadata.items()
        if key in _BOOLEAN_METADATA:
            normalized = {
                "1": "true",
                "t": "true",
                "true": "true",
                "0": "false",
                "f": "false",
                "false": "false",
            }
            if str(value).lower() not in normalized:
                raise _Refusal(400, f"invalid value: {value}")
            return key, normalized[str(value).lower()]
        if key == "severity":
            if str(value).lower() not in _SEVERITIES:
                raise _Refusal(400, f"invalid value: {value}")
            return key, str(value).lower()
        raise _Refusal(400, f"invalid key: {key}")

    @_handler
    def list_metadata(self, request: Request, name_or_id: str) -> Response:
        return json_response(dict(self._project(request, name_or_id)["metadata"]))

    @_handler
    def add_metadata(self, request: Request, name_or_id: str) -> Response:
        key, value = self._validated_metadata(request.get_json(silent=True) or {})
        project = self._project(request, name_or_id)
        if key in project["metadata"]:
            raise _Refusal(409, f"metadata {key} of project {project['name']} already exists")
        project["metadata"][key] = value
        return _ok()

    @_handler
    def get_metadata(self, request: Request, name_or_id: str, meta_name: str) -> Response:
        metadata = self._project(request, name_or_id)["metadata"]
        return json_response({meta_name: metadata[meta_name]} if meta_name in metadata else {})

    @_handler
    def update_metadata(self, request: Request, name_or_id: str, meta_name: str) -> Response:
        body = request.get_json(silent=True) or {}
        key, value = self._validated_metadata({meta_name: body.get(meta_name, "")})
        self._project(request, name_or_id)["metadata"][key] = value
        return _ok()

    @_handler
    def delete_metadata(self, request: Request, name_or_id: str, meta_name: str) -> Response:
        self._project(request, name_or_id)["metadata"].pop(meta_name, None)
        return _ok()

    # -- quotas ---------------------------------------------------------------------------

    @_handler
    def list_quotas(self, request: Request) -> Response:
        quotas = list(self.quotas.values())
        reference = request.args.get("reference")
        if reference:
            quotas = [q for q in quotas if reference == "project"]
        reference_id = request.args.get("reference_id")
        if reference_id:
            quotas = [q for q in quotas if str(q["project_id"]) == reference_id]
        sort = request.args.get("sort", "")
        for key in reversed([k.strip() for k in sort.split(",") if k.strip()]):
            field = key.lstrip("-").split(".")[0]
            if field in ("hard", "used"):
                quotas.sort(key=lambda q, f=field: q[f], reverse=key.startswith("-"))
        return self._page(request, [self._quota_body(q) for q in quotas])

    def _quota(self, raw_id: str) -> dict[str, Any]:
        quota = self.quotas.get(_as_int(raw_id))
        if quota is None:
            raise _Refusal(404, f"quota {int(raw_id)} not found")
        return quota

    @_handler
    def get_quota(self, request: Request, quota_id: str) -> Response:
        return json_response(self._quota_body(self._quota(quota_id)))

    @_handler
    def update_quota(self, request: Request, quota_id: str) -> Response:
        hard = (request.get_json(silent=True) or {}).get("hard") or {}
        if not hard:
            raise _Refusal(400, "hard required in body")
        quota = self._quota(quota_id)
        _validate_storage(hard)
        quota["hard"] = hard["storage"]
        quota["update_time"] = _now()
        return _ok()

    # -- user groups ----------------------------------------------------------------------

    def _insert_usergroup(self, name: str, group_type: int, ldap_group_dn: str) -> dict[str, Any]:
        group_id = self._new_id("group")
        group = {"id": group_id, "group_name": name, "group_type": group_type, "ldap_group_dn": ldap_group_dn}
        self.usergroups[group_id] = group
        return group

    @staticmethod
    def _usergroup_body(group: dict[str, Any], *, with_id: bool = True) -> dict[str, Any]:
        body = {"group_name": group["group_name"], "group_type": group["group_type"]}
        if with_id:
            body = {"id": group["id"], **body}
        if group["ldap_group_dn"]:
            body["ldap_group_dn"] = group["ldap_group_dn"]
        return body

    def _usergroup(self, raw_id: str) -> dict[str, Any]:
        group_id = _as_int(raw_id)
        if group_id <= 0:
            raise _Refusal(400, "the group id should be provided")
        group = self.usergroups.get(group_id)
        if group is None:
            raise _Refusal(404, f"the user group with id {group_id} is not found")
        return group

    @_handler
    def list_usergroups(self, request: Request) -> Response:
        # In OIDC auth mode Harbor ignores ldap_group_dn; group_name is a fuzzy match.
        name = request.args.get("group_name")
        groups = [g for g in self.usergroups.values() if self._fuzzy(name, g["group_name"])]
        return self._page(request, [self._usergroup_body(g) for g in groups])

    @_handler
    def create_usergroup(self, request: Request) -> Response:
        body = request.get_json(silent=True) or {}
        name, group_type = body.get("group_name") or "", body.get("group_type") or 0
        dn = body.get("ldap_group_dn") or ""
        if not name:
            raise _Refusal(400, "group name can not be empty")
        if group_type == LDAP_GROUP and not dn:
            raise _Refusal(400, f"LDAP Group DN is not found: DN:{dn}")
        if any((g["group_name"], g["group_type"]) == (name, group_type) for g in self.usergroups.values()):
            raise _Refusal(
                409, f"duplicate user group, group name:{name}, group type: {group_type}, ldap group DN: {dn}"
            )
        group = self._insert_usergroup(name, group_type, dn)
        return _created(f"{API}/usergroups/{group['id']}")

    @_handler
    def search_usergroups(self, request: Request) -> Response:
        name = request.args.get("groupname", "")
        if not name:
            raise _Refusal(400, "need to provide groupname to search user group")
        groups = [g for g in self.usergroups.values() if name in g["group_name"]]
        return self._page(
            request,
            [{"id": g["id"], "group_name": g["group_name"], "group_type": g["group_type"]} for g in groups],
        )

    @_handler
    def get_usergroup(self, request: Request, group_id: str) -> Response:
        # Harbor's answer leaves out the id the caller already knows.
        return json_response(self._usergroup_body(self._usergroup(group_id), with_id=False))

    @_handler
    def update_usergroup(self, request: Request, group_id: str) -> Response:
        if _as_int(group_id) <= 0:
            raise _Refusal(400, "the group id should be provided")
        name = (request.get_json(silent=True) or {}).get("group_name") or ""
        if not name:
            raise _Refusal(400, "group name can not be empty")
        self._usergroup(group_id)["group_name"] = name
        return _ok()

    @_handler
    def delete_usergroup(self, request: Request, group_id: str) -> Response:
        identifier = _as_int(group_id)
        if identifier <= 0:
            raise _Refusal(400, "the group id should be provided")
        # Like Harbor: deleting an unknown group is not an error; memberships go with the group.
        self.usergroups.pop(identifier, None)
        self.members = {
            k: m for k, m in self.members.items() if (m["entity_type"], m["entity_id"]) != ("g", identifier)
        }
        return _ok()

    # -- users ----------------------------------------------------------------------------

    @_handler
    def create_user(self, request: Request) -> Response:
        body = request.get_json(silent=True) or {}
        password = body.get("password") or ""
        if not (
            8 <= len(password) <= 128
            and re.search(r"[a-z]", password)
            and re.search(r"[A-Z]", password)
            and re.search(r"[0-9]", password)
        ):
            raise _Refusal(
                400,
                "the password or secret must be 8-128, inclusively, characters long with at least "
                "1 uppercase letter, 1 lowercase letter and 1 number",
            )
        username, email = body.get("username") or "", body.get("email") or ""
        realname, comment = body.get("realname") or "", body.get("comment") or ""
        if not email:
            raise _Refusal(400, "email can't be empty")
        if not _EMAIL.match(email):
            raise _Refusal(400, "email with illegal format")
        if not 1 <= len(realname) <= 255:
            raise _Refusal(400, "realname with illegal length")
        if any(char in realname for char in _ILLEGAL_USERNAME_CHARS):
            raise _Refusal(400, "realname contains illegal characters")
        if len(comment) > 30:
            raise _Refusal(400, "comment with illegal length")
        if not 1 <= len(username) <= 255:
            raise _Refusal(400, "username with illegal length")
        if any(char in username for char in _ILLEGAL_USERNAME_CHARS):
            raise _Refusal(400, "username contains illegal characters")
        if any(u["username"] == username or u["email"] == email for u in self.users.values()):
            raise _Refusal(409, f"user {username} or email {email} already exists")
        now = _now()
        user_id = self._new_id("user")
        # The password is checked like Harbor does, then dropped: only the admin logs in here.
        self.users[user_id] = {
            "user_id": user_id,
            "username": username,
            "email": email,
            "realname": realname,
            "comment": comment,
            "sysadmin_flag": False,
            "creation_time": now,
            "update_time": now,
        }
        return _created(f"{API}/users/{user_id}")

    @_handler
    def search_users(self, request: Request) -> Response:
        name = request.args.get("username", "")
        users = [u for u in self.users.values() if name in u["username"]]
        return self._page(request, [{"user_id": u["user_id"], "username": u["username"]} for u in users])

    @_handler
    def get_user(self, request: Request, user_id: str) -> Response:
        user = self.users.get(_as_int(user_id))
        if user is None:
            raise _Refusal(404, f"user {int(user_id)} not found")
        return json_response({**user, "admin_role_in_auth": False})

    @_handler
    def get_current_user(self, request: Request) -> Response:
        # Basic auth only ever logs in the administrator here.
        return json_response({**self.users[self.admin_id], "admin_role_in_auth": False})

    # -- repositories (synthesized from a project's repo_count; there is no registry) --------

    @_handler
    def list_repositories(self, request: Request, project_name: str) -> Response:
        # Unlike most project routes, this one takes a name only, never an id.
        project = self._project_named(project_name)
        repositories = [
            {
                "id": project["project_id"] * 1000 + index,
                "project_id": project["project_id"],
                "name": f"{project['name']}/repository-{index}",
                "artifact_count": 1,
                "pull_count": 0,
                "creation_time": project["creation_time"],
                "update_time": project["update_time"],
            }
            for index in range(1, project["repo_count"] + 1)
        ]
        for key, matches in _parse_query(request.args.get("q", "")):
            # Harbor ignores query keys that name no column of the repository.
            repositories = [r for r in repositories if key not in r or matches(str(r[key]))]
        repositories = _sorted(
            repositories, request.args.get("sort", ""), ("name", "id", "creation_time", "update_time")
        )
        return self._page(request, repositories)

    # -- anonymous system endpoints ------------------------------------------------------------

    def get_health(self, request: Request) -> Response:
        return json_response(
            {"status": "healthy", "components": [{"name": n, "status": "healthy"} for n in HEALTH_COMPONENTS]}
        )

    def get_system_info(self, request: Request) -> Response:
        info: dict[str, Any] = {
            "auth_mode": "oidc_auth",
            "primary_auth_mode": False,
            "self_registration": False,
            "harbor_version": HARBOR_VERSION,
            "banner_message": "",
            "oidc_provider_name": "keycloak",
        }
        if self._logged_in(request):
            external_url = request.host_url.rstrip("/")
            info.update(
                external_url=external_url,
                registry_url=external_url.split("://", 1)[-1],
                project_creation_restriction="everyone",
                has_ca_root=False,
                read_only=False,
                registry_storage_provider_name="filesystem",
                notification_enable=True,
                current_time=_now(),
            )
        return json_response(info)


def _validate_storage(hard: dict[str, Any]) -> None:
    """Harbor's project quota driver: only `storage`, and it must be positive or -1."""
    for resource, value in hard.items():
        if resource != "storage":
            raise _Refusal(400, f"resource {resource} not support")
        if value <= 0 and value != UNLIMITED:
            raise _Refusal(400, f"invalid value for resource {resource}")
    if "storage" not in hard:
        raise _Refusal(400, "resource storage not found")


def _parse_query(raw: str) -> Iterable[tuple[str, Callable[[str], bool]]]:
    """Harbor's `q` syntax: k=v exact, k=~v fuzzy, k=[min~max] range, k={a b} any-of,
    k=(a b) all-of; entries separated by commas, values optionally quoted."""
    for entry in (part.strip() for part in raw.split(",")):
        if not entry:
            continue
        key, separator, value = entry.partition("=")
        if not separator or not key:
            raise _Refusal(400, f"invalid query string: {raw}")
        yield key, _matcher(value)


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return value[1:-1]
    return value


def _matcher(value: str) -> Callable[[str], bool]:
    if value.startswith("~"):
        needle = _unquote(value[1:])
        return lambda actual: needle in actual
    if value.startswith("[") and value.endswith("]") and "~" in value:
        low, _, high = (_unquote(v.strip()) for v in value[1:-1].partition("~"))

        def in_range(actual: str) -> bool:
            if _INTEGER.match(actual) and all(_INTEGER.match(b) for b in (low, high) if b):
                return (not low or int(actual) >= int(low)) and (not high or int(actual) <= int(high))
            return (not low or actual >= low) and (not high or actual <= high)

        return in_range
    if (value.startswith("{") and value.endswith("}")) or (value.startswith("(") and value.endswith(")")):
        options = [_unquote(v) for v in value[1:-1].split()]
        if value.startswith("{"):
            return lambda actual: actual in options
        return lambda actual: all(actual == option for option in options)
    expected = _unquote(value)
    return lambda actual: actual == expected


def _sorted(items: list[dict[str, Any]], sort: str, sortable: tuple[str, ...]) -> list[dict[str, Any]]:
    """Harbor's `sort=field1,-field2`; unknown fields are ignored."""
    result = sorted(items, key=lambda item: item["project_id"])
    for key in reversed([k.strip() for k in sort.split(",") if k.strip()]):
        field = key.lstrip("-")
        if field in sortable:
            result.sort(key=lambda item, f=field: item[f], reverse=key.startswith("-"))
    return result
