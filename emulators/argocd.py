"""Argo CD's API server, emulated: AppProjects, clusters, sessions and the version endpoint.

It answers the way argocd-server's gRPC gateway does: every error is the runtimeError body
{"error", "code", "message", "details"} with the HTTP status grpc-gateway derives from the gRPC
code (NotFound 5 → 404, InvalidArgument 3 → 400, Aborted 10 → 409 on a stale resourceVersion,
PermissionDenied 7 → 403 — also for a cluster that does not exist, as Argo CD hides existence —
Unauthenticated 16 → 401). Creating a project that exists returns it when the spec is equal,
overwrites the spec with `upsert`, and is InvalidArgument otherwise, as argocd-server does.
Project specs are checked with Argo CD's own rules (role names, policy subjects and objects,
duplicate destinations/repos/roles/groups). JSON is written like Go's `omitempty`, and cluster
credentials (bearerToken, password, keyData) are stored but never returned. What the UI and the
CLI ask first is served as well: the session's userinfo and the settings (both open to anonymous
callers, who get less, as in argocd-server) and the application list, always empty here.

Credentials a client needs (for the launcher's state file): `token` (a ready bearer token for
the admin account), `username` and `password` (for POST /api/v1/session).
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
import re
import secrets
import time
import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote, urlsplit

from werkzeug.routing import Rule
from werkzeug.wrappers import Request, Response

from emulators.server import EmulatorServer, json_response

NAMESPACE = "argocd"
IN_CLUSTER_SERVER = "https://kubernetes.default.svc"
# Read without a session, like argocd-server's AuthFuncOverride for these services.
ANONYMOUS_READS = frozenset({"/api/version", "/api/v1/session/userinfo", "/api/v1/settings"})
EMULATED_VERSION = "v3.5.1+emulated"
KUBERNETES_VERSION = "1.32"

# gRPC status codes and the HTTP status grpc-gateway answers for them.
OK, CANCELLED, UNKNOWN, INVALID_ARGUMENT, DEADLINE_EXCEEDED, NOT_FOUND, ALREADY_EXISTS = 0, 1, 2, 3, 4, 5, 6
PERMISSION_DENIED, RESOURCE_EXHAUSTED, FAILED_PRECONDITION, ABORTED = 7, 8, 9, 10
UNIMPLEMENTED, INTERNAL, UNAVAILABLE, UNAUTHENTICATED = 12, 13, 14, 16
HTTP_STATUS_OF_CODE = {
    INVALID_ARGUMENT: 400,
    FAILED_PRECONDITION: 400,
    UNAUTHENTICATED: 401,
    PERMISSION_DENIED: 403,
    NOT_FOUND: 404,
    ALREADY_EXISTS: 409,
    ABORTED: 409,
    RESOURCE_EXHAUSTED: 429,
    CANCELLED: 499,
    UNKNOWN: 500,
    INTERNAL: 500,
    UNIMPLEMENTED: 501,
    UNAVAILABLE: 503,
    DEADLINE_EXCEEDED: 504,
}
_CODE_OF_HTTP_STATUS = {
    400: INVALID_ARGUMENT,
    401: UNAUTHENTICATED,
    403: PERMISSION_DENIED,
    404: NOT_FOUND,
    405: UNIMPLEMENTED,
    409: ABORTED,
    429: RESOURCE_EXHAUSTED,
    500: INTERNAL,
    501: UNIMPLEMENTED,
    502: UNAVAILABLE,
    503: UNAVAILABLE,
    504: DEADLINE_EXCEEDED,
}

_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_ROLE_NAME = re.compile(r"^[a-zA-Z0-9]([-_a-zA-Z0-9]*[a-zA-Z0-9])?$")
_POLICY_RESOURCES = ("applications", "applicationsets", "repositories", "clusters", "logs", "exec")
_POLICY_ACTIONS = {"get", "create", "update", "delete", "sync", "override", "action", "invoke", "*"}
_CLUSTER_REDACTED = (("password",), ("bearerToken",), ("tlsClientConfig", "keyData"))


class ArgoError(Exception):
    """A gRPC status a handler fails with; rendered as grpc-gateway's runtimeError."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def runtime_error(code: int, message: str) -> Response:
    return json_response(
        {"error": message, "code": code, "message": message, "details": []},
        HTTP_STATUS_OF_CODE.get(code, 500),
    )


def omit_empty(value: Any) -> Any:
    """Drop empty map values recursively, as Go's encoding/json does for `omitempty` fields."""
    if isinstance(value, dict):
        pruned = {k: omit_empty(v) for k, v in value.items()}
        return {k: v for k, v in pruned.items() if v not in (None, "", [], {}, False, 0)}
    if isinstance(value, list):
        return [omit_empty(item) for item in value]
    return value


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _not_found(name: str) -> ArgoError:
    return ArgoError(NOT_FOUND, f'appprojects.argoproj.io "{name}" not found')


def _decode_keeping_encoded_slashes(raw_path: str) -> str:
    """Percent-decode a raw request path segment by segment, keeping %2F inside a segment.

    Argo CD addresses clusters by their server URL in one path segment
    (`/api/v1/clusters/https%3A%2F%2Fapi.example.com`); the WSGI server would decode it into
    several segments. '%' is re-escaped too, so handlers get back the exact value with unquote().
    """
    return "/".join(unquote(part).replace("%", "%25").replace("/", "%2F") for part in raw_path.split("/"))


class ArgocdEmulator(EmulatorServer):
    """Argo CD API server. Attributes for clients: `token`, `username`, `password`."""

    system = "argocd"
    contract_file = "argocd-swagger.json"

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        latency_ms: float = 0.0,
        username: str = "admin",
        password: str | None = None,
        token: str | None = None,
    ) -> None:
        self.username = username
        self.password = password or secrets.token_urlsafe(12)
        self._signing_key = secrets.token_bytes(32)
        self.token = token or self._issue_jwt(username)
        super().__init__(host, port, latency_ms=latency_ms)

    # -- state ---------------------------------------------------------------------------

    def reset_state(self) -> None:
        self.projects: dict[str, dict[str, Any]] = {}
        self.clusters: dict[str, dict[str, Any]] = {}
        self.sessions: dict[str, str] = {self.token: self.username}
        self._resource_version = 1000
        self.projects["default"] = self._new_project_object(
            "default",
            {
                "sourceRepos": ["*"],
                "destinations": [{"server": "*", "namespace": "*"}],
                "clusterResourceWhitelist": [{"group": "*", "kind": "*"}],
            },
        )
        self.clusters[IN_CLUSTER_SERVER] = {"server": IN_CLUSTER_SERVER, "name": "in-cluster", "config": {}}

    def snapshot(self) -> dict[str, Any]:
        return {
            "projects": copy.deepcopy(self.projects),
            "clusters": [self._cluster_response(c) for c in self.clusters.values()],
            "sessions": len(self.sessions),
        }

    def _next_resource_version(self) -> str:
        self._resource_version += 1
        return str(self._resource_version)

    def _new_project_object(self, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        return {
            "metadata": {
                "name": name,
                "namespace": NAMESPACE,
                "uid": str(uuid.uuid4()),
                "resourceVersion": self._next_resource_version(),
                "generation": 1,
                "creationTimestamp": _now(),
            },
            "spec": copy.deepcopy(spec),
            "status": {},
        }

    # -- tokens --------------------------------------------------------------------------

    def _issue_jwt(self, subject: str, *, expires_in: int = 0, token_id: str | None = None) -> str:
        """An HS256 JWT like the ones argocd-server signs (iss argocd, sub, iat, jti, exp)."""

        def b64(data: bytes) -> str:
            return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

        issued_at = int(time.time())
        claims: dict[str, Any] = {
            "iss": "argocd",
            "sub": subject,
            "iat": issued_at,
            "nbf": issued_at,
            "jti": token_id or str(uuid.uuid4()),
        }
        if expires_in:
            claims["exp"] = issued_at + expires_in
        signing_input = (
            f"{b64(json.dumps({'alg': 'HS256', 'typ': 'JWT'}).encode())}.{b64(json.dumps(claims).encode())}"
        )
        signature = hmac.new(self._signing_key, signing_input.encode(), hashlib.sha256).digest()
        return f"{signing_input}.{b64(signature)}"

    @staticmethod
    def _presented_token(request: Request) -> str:
        header = request.headers.get("Authorization", "")
        token = header[len("Bearer ") :].strip() if header.startswith("Bearer ") else ""
        return token or request.cookies.get("argocd.token", "")

    def _is_valid_session(self, token: str) -> bool:
        with self.lock:
            return token in self.sessions

    def authenticate(self, request: Request) -> Response | None:
        path = request.path.rstrip("/")
        if (path in ANONYMOUS_READS and request.method == "GET") or (
            path == "/api/v1/session" and request.method == "POST"
        ):
            return None
        token = self._presented_token(request)
        if not token:
            return runtime_error(UNAUTHENTICATED, "no session information")
        if not self._is_valid_session(token):
            return runtime_error(UNAUTHENTICATED, "invalid session: token signature is invalid")
        return None

    def error(self, status: int, message: str) -> Response:
        code = _CODE_OF_HTTP_STATUS.get(status, UNAVAILABLE if status >= 500 else UNKNOWN)
        response = runtime_error(code, message)
        response.status_code = status
        return response

    # -- plumbing ------------------------------------------------------------------------

    def wsgi_app(self, environ: dict[str, Any], start_response: Any) -> Any:
        raw_uri = environ.get("RAW_URI") or environ.get("REQUEST_URI")
        if raw_uri:
            decoded = _decode_keeping_encoded_slashes(urlsplit(raw_uri).path)
            environ = {**environ, "PATH_INFO": decoded.encode("utf-8").decode("latin-1")}
        return super().wsgi_app(environ, start_response)

    def routes(self) -> list[Rule]:
        return [
            Rule("/api/version", methods=["GET"], endpoint="version"),
            Rule("/api/v1/session", methods=["POST"], endpoint="create_session"),
            Rule("/api/v1/session/userinfo", methods=["GET"], endpoint="get_user_info"),
            Rule("/api/v1/settings", methods=["GET"], endpoint="get_settings"),
            Rule("/api/v1/applications", methods=["GET"], endpoint="list_applications"),
            Rule("/api/v1/projects", methods=["GET"], endpoint="list_projects"),
            Rule("/api/v1/projects", methods=["POST"], endpoint="create_project"),
            Rule("/api/v1/projects/<name>", methods=["GET"], endpoint="get_project"),
            Rule("/api/v1/projects/<name>", methods=["PUT"], endpoint="update_project"),
            Rule("/api/v1/projects/<name>", methods=["DELETE"], endpoint="delete_project"),
            Rule("/api/v1/projects/<name>/detailed", methods=["GET"], endpoint="get_detailed_project"),
            Rule("/api/v1/projects/<project>/roles/<role>/token", methods=["POST"], endpoint="create_token"),
            Rule("/api/v1/clusters", methods=["GET"], endpoint="list_clusters"),
            Rule("/api/v1/clusters", methods=["POST"], endpoint="create_cluster"),
            Rule("/api/v1/clusters/<id_value>", methods=["GET"], endpoint="get_cluster"),
            Rule("/api/v1/clusters/<id_value>", methods=["PUT"], endpoint="update_cluster"),
            Rule("/api/v1/clusters/<id_value>", methods=["DELETE"], endpoint="delete_cluster"),
        ]

    def _dispatch(self, handler: Any, *args: Any, **kwargs: Any) -> Response:
        try:
            with self.lock:
                return handler(*args, **kwargs)
        except ArgoError as exc:
            return runtime_error(exc.code, exc.message)

    @staticmethod
    def _json(request: Request) -> dict[str, Any]:
        body = request.get_json(silent=True)
        return body if isinstance(body, dict) else {}

    # -- version and session -------------------------------------------------------------

    def version(self, request: Request) -> Response:
        # Anonymous callers learn only the version string, as with argocd-server.
        if not self._is_valid_session(self._presented_token(request)):
            return json_response({"Version": EMULATED_VERSION})
        return json_response(
            {
                "Version": EMULATED_VERSION,
                "BuildDate": "2026-01-01T00:00:00Z",
                "GitCommit": "0000000000000000000000000000000000000000",
                "GitTreeState": "clean",
                "GoVersion": "go1.24",
                "Compiler": "gc",
                "Platform": "linux/amd64",
            }
        )

    def create_session(self, request: Request) -> Response:
        body = self._json(request)
        username, password = body.get("username", ""), body.get("password", "")
        valid = hmac.compare_digest(str(username).encode(), self.username.encode()) and hmac.compare_digest(
            str(password).encode(), self.password.encode()
        )
        if not valid:
            return runtime_error(UNAUTHENTICATED, "Invalid username or password")
        token = self._issue_jwt(self.username, expires_in=24 * 3600)
        with self.lock:
            self.sessions[token] = self.username
        return json_response({"token": token})

    def _session_subject(self, request: Request) -> str | None:
        with self.lock:
            return self.sessions.get(self._presented_token(request))

    def get_user_info(self, request: Request) -> Response:
        subject = self._session_subject(request)
        # An anonymous caller gets {}: loggedIn=false vanishes under Go's omitempty.
        if subject is None:
            return json_response({})
        return json_response({"loggedIn": True, "username": subject, "iss": "argocd"})

    def get_settings(self, request: Request) -> Response:
        settings: dict[str, Any] = {
            "url": request.host_url.rstrip("/"),
            "appLabelKey": "app.kubernetes.io/instance",
            "kustomizeOptions": {},
            "googleAnalytics": {"anonymizeUsers": True},
            "help": {},
            "trackingMethod": "annotation",
        }
        if self._session_subject(request) is not None:
            # Only a logged-in caller learns the controller's namespace and the password rule.
            settings.update(controllerNamespace=NAMESPACE, passwordPattern="^.{8,32}$")
        return json_response(settings)

    def list_applications(self, request: Request) -> Response:
        # No Application exists in the emulator; filters (projects, selector, repo) match nothing.
        with self.lock:
            resource_version = str(self._resource_version)
        return json_response({"metadata": {"resourceVersion": resource_version}, "items": []})

    # -- projects ------------------------------------------------------------------------

    def list_projects(self, request: Request) -> Response:
        # argocd-server ignores ?name= on List and returns every project the caller may see.
        with self.lock:
            items = [self._project_response(p) for p in self.projects.values()]
            listing = {"metadata": {"resourceVersion": str(self._resource_version)}, "items": items}
        return json_response(listing)

    def get_project(self, request: Request, name: str) -> Response:
        return self._dispatch(lambda: json_response(self._project_response(self._project(unquote(name)))))

    def get_detailed_project(self, request: Request, name: str) -> Response:
        def detailed() -> Response:
            project = self._project(unquote(name))
            clusters = [
                self._cluster_response(c)
                for c in self.clusters.values()
                if c.get("project") == project["metadata"]["name"]
            ]
            return json_response(
                omit_empty(
                    {
                        "project": self._project_response(project),
                        "globalProjects": [],
                        "repositories": [],
                        "clusters": clusters,
                    }
                )
            )

        return self._dispatch(detailed)

    def create_project(self, request: Request) -> Response:
        body = self._json(request)
        return self._dispatch(self._create_project, body.get("project"), bool(body.get("upsert")))

    def _create_project(self, incoming: dict[str, Any] | None, upsert: bool) -> Response:
        if not incoming:
            raise ArgoError(INVALID_ARGUMENT, "missing payload 'project' in request")
        name = (incoming.get("metadata") or {}).get("name", "")
        _validate_project_name(name)
        spec = _normalize_policies(incoming.get("spec") or {})
        _validate_project(name, spec)
        existing = self.projects.get(name)
        if existing is None:
            project = self._new_project_object(name, spec)
            metadata = incoming.get("metadata") or {}
            for key in ("labels", "annotations", "finalizers"):
                if metadata.get(key):
                    project["metadata"][key] = copy.deepcopy(metadata[key])
            self.projects[name] = project
            return json_response(self._project_response(project))
        if omit_empty(existing["spec"]) == omit_empty(spec):
            return json_response(self._project_response(existing))
        if not upsert:
            raise ArgoError(
                INVALID_ARGUMENT, "existing project spec is different; use upsert flag to force update"
            )
        existing["spec"] = spec
        self._bump(existing, spec_changed=True)
        return json_response(self._project_response(existing))

    def update_project(self, request: Request, name: str) -> Response:
        body = self._json(request)
        return self._dispatch(self._update_project, unquote(name), body.get("project"))

    def _update_project(self, name: str, incoming: dict[str, Any] | None) -> Response:
        if not incoming:
            raise ArgoError(INVALID_ARGUMENT, "missing payload 'project' in request")
        spec = _normalize_policies(incoming.get("spec") or {})
        _validate_project(name, spec)
        existing = self._project(name)
        metadata = incoming.get("metadata") or {}
        resource_version = metadata.get("resourceVersion", "")
        if not resource_version:
            raise ArgoError(
                INVALID_ARGUMENT,
                f'AppProject.argoproj.io "{name}" is invalid: metadata.resourceVersion: '
                "Invalid value: 0x0: must be specified for an update",
            )
        if resource_version != existing["metadata"]["resourceVersion"]:
            raise ArgoError(
                ABORTED,
                f'Operation cannot be fulfilled on appprojects.argoproj.io "{name}": the object has been '
                "modified; please apply your changes to the latest version and try again",
            )
        spec_changed = omit_empty(existing["spec"]) != omit_empty(spec)
        existing["spec"] = spec
        existing["status"] = copy.deepcopy(incoming.get("status") or {})
        for key in ("labels", "annotations", "finalizers"):
            if metadata.get(key):
                existing["metadata"][key] = copy.deepcopy(metadata[key])
            else:
                existing["metadata"].pop(key, None)
        self._bump(existing, spec_changed=spec_changed)
        return json_response(self._project_response(existing))

    def delete_project(self, request: Request, name: str) -> Response:
        def delete() -> Response:
            project_name = unquote(name)
            if project_name == "default":
                raise ArgoError(INVALID_ARGUMENT, "name 'default' is reserved and cannot be deleted")
            self._project(project_name)
            del self.projects[project_name]
            return json_response({})

        return self._dispatch(delete)

    def create_token(self, request: Request, project: str, role: str) -> Response:
        body = self._json(request)
        return self._dispatch(self._create_token, unquote(project), unquote(role), body)

    def _create_token(self, project_name: str, role_name: str, body: dict[str, Any]) -> Response:
        project = self._project(project_name)
        role = next((r for r in project["spec"].get("roles", []) if r.get("name") == role_name), None)
        if role is None:
            raise ArgoError(NOT_FOUND, f"project '{project_name}' does not have role '{role_name}'")
        token_id = str(body.get("id") or uuid.uuid4())
        expires_in = int(body.get("expiresIn") or 0)
        token = self._issue_jwt(f"proj:{project_name}:{role_name}", expires_in=expires_in, token_id=token_id)
        issued_at = int(time.time())
        entry = {"iat": issued_at, "id": token_id}
        if expires_in:
            entry["exp"] = issued_at + expires_in
        role.setdefault("jwtTokens", []).append(entry)
        by_role = project["status"].setdefault("jwtTokensByRole", {})
        by_role.setdefault(role_name, {"items": []})["items"].append(dict(entry))
        self._bump(project, spec_changed=True)
        self.sessions[token] = f"proj:{project_name}:{role_name}"
        return json_response({"token": token})

    def _project(self, name: str) -> dict[str, Any]:
        project = self.projects.get(name)
        if project is None:
            raise _not_found(name)
        return project

    def _bump(self, project: dict[str, Any], *, spec_changed: bool) -> None:
        project["metadata"]["resourceVersion"] = self._next_resource_version()
        if spec_changed:
            project["metadata"]["generation"] = int(project["metadata"].get("generation", 1)) + 1

    @staticmethod
    def _project_response(project: dict[str, Any]) -> dict[str, Any]:
        return omit_empty(copy.deepcopy(project))

    # -- clusters ------------------------------------------------------------------------

    def list_clusters(self, request: Request) -> Response:
        server = request.args.get("server", "")
        name = request.args.get("name", "")
        id_type, id_value = request.args.get("id.type", ""), request.args.get("id.value", "")
        with self.lock:
            items = list(self.clusters.values())
        if id_value:
            items = [
                c
                for c in items
                if c.get("name" if id_type in ("name", "name_escaped") else "server") == id_value
            ]
        if name:
            items = [c for c in items if c.get("name") == name][:1]
        if server:
            items = [c for c in items if c.get("server") == server][:1]
        return json_response({"metadata": {}, "items": [self._cluster_response(c) for c in items]})

    def create_cluster(self, request: Request) -> Response:
        upsert = request.args.get("upsert", "false").lower() == "true"
        return self._dispatch(self._create_cluster, self._json(request), upsert)

    def _create_cluster(self, incoming: dict[str, Any], upsert: bool) -> Response:
        server = incoming.get("server", "")
        _validate_cluster_server(server)
        stored = _cluster_core(incoming)
        existing = self.clusters.get(server)
        if existing is not None:
            if _cluster_core(existing) == stored:
                return json_response(self._cluster_response(existing))
            if not upsert:
                raise ArgoError(
                    INVALID_ARGUMENT, "existing cluster spec is different; use upsert flag to force update"
                )
        self.clusters[server] = stored
        return json_response(self._cluster_response(stored))

    def get_cluster(self, request: Request, id_value: str) -> Response:
        id_type = request.args.get("id.type", "")
        return self._dispatch(lambda: json_response(self._cluster_response(self._cluster(id_type, id_value))))

    def update_cluster(self, request: Request, id_value: str) -> Response:
        id_type = request.args.get("id.type", "")
        updated_fields = [f for raw in request.args.getlist("updatedFields") for f in raw.split(",") if f]
        return self._dispatch(self._update_cluster, id_type, id_value, self._json(request), updated_fields)

    def _update_cluster(
        self, id_type: str, id_value: str, incoming: dict[str, Any], updated_fields: list[str]
    ) -> Response:
        existing = self._cluster(id_type, id_value)
        if updated_fields:
            updated = copy.deepcopy(existing)
            for field in updated_fields:
                if field in _CLUSTER_UPDATABLE_FIELDS:
                    if field in incoming:
                        updated[field] = copy.deepcopy(incoming[field])
                    else:
                        updated.pop(field, None)
        else:
            updated = _cluster_core(incoming)
            updated["server"] = incoming.get("server") or existing["server"]
            if updated["server"] != existing["server"]:
                raise ArgoError(INVALID_ARGUMENT, "the server URL of a cluster cannot be changed")
        self.clusters[existing["server"]] = _cluster_core(updated)
        return json_response(self._cluster_response(self.clusters[existing["server"]]))

    def delete_cluster(self, request: Request, id_value: str) -> Response:
        id_type = request.args.get("id.type", "")

        def delete() -> Response:
            cluster = self._cluster(id_type, id_value)
            del self.clusters[cluster["server"]]
            return json_response({})

        return self._dispatch(delete)

    def _cluster(self, id_type: str, id_value: str) -> dict[str, Any]:
        value = unquote(id_value)
        if id_type in ("name", "name_escaped"):
            found = next((c for c in self.clusters.values() if c.get("name") == value), None)
        else:
            found = self.clusters.get(value)
        if found is None:
            # argocd-server answers 403 for clusters that do not exist, so callers cannot probe.
            raise ArgoError(PERMISSION_DENIED, "permission denied")
        return found

    @staticmethod
    def _cluster_response(cluster: dict[str, Any]) -> dict[str, Any]:
        shown = copy.deepcopy(cluster)
        config = shown.setdefault("config", {})
        for path in _CLUSTER_REDACTED:
            holder = config
            for key in path[:-1]:
                holder = holder.get(key) or {}
            holder.pop(path[-1], None)
        state = {"status": "Successful", "attemptedAt": _now()}
        shown["connectionState"] = state
        shown["serverVersion"] = KUBERNETES_VERSION
        shown["info"] = {"serverVersion": KUBERNETES_VERSION, "connectionState": state}
        return omit_empty(shown)


_CLUSTER_UPDATABLE_FIELDS = (
    "name",
    "namespaces",
    "config",
    "shard",
    "clusterResources",
    "labels",
    "annotations",
    "project",
)


def _cluster_core(cluster: dict[str, Any]) -> dict[str, Any]:
    """What Argo CD stores for a cluster (its Secret): identity, scope, metadata and config."""
    keys = ("server", *_CLUSTER_UPDATABLE_FIELDS)
    return omit_empty({k: copy.deepcopy(cluster[k]) for k in keys if k in cluster})


def _validate_cluster_server(server: str) -> None:
    parts = urlsplit(server)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ArgoError(INVALID_ARGUMENT, f"cluster server '{server}' is not an http(s) URL of an API server")


def _validate_project_name(name: str) -> None:
    if not name:
        raise ArgoError(
            INVALID_ARGUMENT,
            'AppProject.argoproj.io "" is invalid: metadata.name: Required value: name or generateName is required',
        )
    if len(name) > 253 or not _DNS_SUBDOMAIN.match(name):
        raise ArgoError(
            INVALID_ARGUMENT,
            f'AppProject.argoproj.io "{name}" is invalid: metadata.name: Invalid value: "{name}": a lowercase '
            "RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must "
            "start and end with an alphanumeric character",
        )


def _normalize_policies(spec: dict[str, Any]) -> dict[str, Any]:
    """AppProject.NormalizePolicies: re-join each policy's fields with ", " (fields trimmed)."""
    spec = copy.deepcopy(spec)
    for role in spec.get("roles") or []:
        if isinstance(role, dict) and isinstance(role.get("policies"), list):
            role["policies"] = [_normalize_policy(p) if isinstance(p, str) else p for p in role["policies"]]
    return spec


def _normalize_policy(policy: str) -> str:
    first, *rest = policy.split(",")
    return ", ".join([first, *(part.strip(" ") for part in rest)])


def _validate_project(name: str, spec: dict[str, Any]) -> None:
    """AppProject.ValidateProject: the checks argocd-server runs before storing a project."""
    destination_keys: set[str] = set()
    for destination in spec.get("destinations") or []:
        for field in ("name", "server", "namespace"):
            if destination.get(field) == "!*":
                raise ArgoError(INVALID_ARGUMENT, f"{field} has an invalid format, '!*'")
        target = destination.get("server") or destination.get("name", "")
        key = f"{target}/{destination.get('namespace', '')}"
        if key in destination_keys:
            raise ArgoError(INVALID_ARGUMENT, f"destination '{key}' already added")
        destination_keys.add(key)
    repos: set[str] = set()
    for repo in spec.get("sourceRepos") or []:
        if repo == "!*":
            raise ArgoError(INVALID_ARGUMENT, "source repository has an invalid format, '!*'")
        if repo in repos:
            raise ArgoError(INVALID_ARGUMENT, f"source repository '{repo}' already added")
        repos.add(repo)
    role_names: set[str] = set()
    for role in spec.get("roles") or []:
        role_name = role.get("name", "")
        if role_name in role_names:
            raise ArgoError(ALREADY_EXISTS, f"role '{role_name}' already exists")
        if not _ROLE_NAME.match(role_name):
            raise ArgoError(
                INVALID_ARGUMENT,
                f"invalid role name '{role_name}'. Must consist of alphanumeric characters, '-' or '_', "
                "and must start and end with an alphanumeric character",
            )
        policies: set[str] = set()
        for policy in role.get("policies") or []:
            if policy in policies:
                raise ArgoError(ALREADY_EXISTS, f"policy '{policy}' already exists for role '{role_name}'")
            _validate_policy(name, role_name, policy)
            policies.add(policy)
        groups: set[str] = set()
        for group in role.get("groups") or []:
            if group in groups:
                raise ArgoError(ALREADY_EXISTS, f"group '{group}' already exists for role '{role_name}'")
            if not group.strip() or "," in group or "\n" in group:
                raise ArgoError(INVALID_ARGUMENT, f"group '{group}' contains invalid characters")
            groups.add(group)
        role_names.add(role_name)


def _validate_policy(project: str, role: str, policy: str) -> None:
    parts = [p.strip() for p in policy.split(",")]
    if len(parts) != 6 or parts[0] != "p":
        raise ArgoError(
            INVALID_ARGUMENT,
            f"invalid policy rule '{policy}': must be of the form: 'p, sub, res, act, obj, eft'",
        )
    _, subject, resource, action, obj, effect = parts
    expected_subject = f"proj:{project}:{role}"
    if subject != expected_subject:
        raise ArgoError(
            INVALID_ARGUMENT,
            f"invalid policy rule '{policy}': policy subject must be: '{expected_subject}', not '{subject}'",
        )
    if resource not in _POLICY_RESOURCES:
        raise ArgoError(
            INVALID_ARGUMENT,
            f"invalid policy rule '{policy}': project resource must be: 'applications', 'applicationsets', "
            f"'repositories', 'clusters', 'logs' or 'exec', not '{resource}'",
        )
    if action not in _POLICY_ACTIONS and not action.startswith("action/"):
        raise ArgoError(INVALID_ARGUMENT, f"invalid policy rule '{policy}': invalid action '{action}'")
    if not re.match(rf"^{re.escape(project)}/[*\w.-]+(/[*\w.-]+)?$", obj):
        raise ArgoError(
            INVALID_ARGUMENT,
            f"invalid policy rule '{policy}': object must be of form '{project}/*', "
            f"'{project}[/<NAMESPACE>]/<APPNAME>' or '{project}/<APPNAME>', not '{obj}'",
        )
    if effect not in ("allow", "deny"):
        raise ArgoError(
            INVALID_ARGUMENT, f"invalid policy rule '{policy}': effect must be: 'allow' or 'deny'"
        )
