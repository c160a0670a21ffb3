"""Keycloak 26.6 as the operator meets it: realms, the OIDC token endpoint, groups and users.

State is held per realm (groups with parent links and attributes, users, confidential and public
clients, group memberships) under the server's lock, so concurrent workers see one consistent
Keycloak. Admin requests need a bearer token from the token endpoint, which issues tokens for the
client-credentials, password and refresh-token grants with a lifetime that is enforced: unknown,
expired or revoked tokens get Keycloak's 401, tokens of non-admin subjects get 403, and tokens of
the master realm administer every realm, as in Keycloak. Answers follow the real server: 201 with
a Location header on create, 409 on duplicate names, `{"error": ...}` / `{"errorMessage": ...}`
bodies, server-side defaults for `first`/`max`, and the search semantics of the admin API. The
reads people's clients start with are served as well: the realms a token may see, a realm's
top-level representation and its clients (never with their secrets).
"""

from __future__ import annotations

import functools
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from werkzeug.routing import Rule
from werkzeug.wrappers import Request, Response

from emulators.server import EmulatorServer, json_response

DEFAULT_REALM = "polycrate"
MASTER_REALM = "master"
DEFAULT_CLIENT_ID = "polycrate-operator"
ADMIN_CLI = "admin-cli"
DEFAULT_ADMIN_USERNAME = "admin"
TOKEN_PATH = "/protocol/openid-connect/token"

# Keycloak's server-side page sizes when the caller sends no `max`.
DEFAULT_MAX_RESULTS = 100
DEFAULT_MAX_CHILDREN = 10

# Keycloak's published spec is generated from the JAX-RS resources and lists few error codes; the
# real server answers these on any admin operation (bad input, no/expired token, missing rights,
# unknown id, duplicate name), so they are not counted as response violations when undeclared.
UNDECLARED_ERROR_STATUSES = frozenset({400, 401, 403, 404, 409})


def _now() -> float:
    return time.time()


@dataclass
class Group:
    id: str
    name: str
    parent_id: str | None = None
    description: str | None = None
    attributes: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class User:
    id: str
    username: str
    email: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    enabled: bool = False
    email_verified: bool = False
    attributes: dict[str, list[str]] = field(default_factory=dict)
    created_timestamp: int = 0
    password: str | None = None
    realm_admin: bool = False


@dataclass
class Client:
    client_id: str
    secret: str | None  # None: a public client (admin-cli)
    service_account: bool = False
    realm_admin: bool = False  # the service account holds realm-management rights
    id: str = field(default_factory=lambda: str(uuid.uuid4()))


@dataclass
class Realm:
    name: str
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    groups: dict[str, Group] = field(default_factory=dict)
    users: dict[str, User] = field(default_factory=dict)
    clients: dict[str, Client] = field(default_factory=dict)
    memberships: set[tuple[str, str]] = field(default_factory=set)  # (user id, group id)


@dataclass
class Token:
    realm: str
    subject: str
    realm_admin: bool
    expires_at: float
    refresh: bool = False


class AdminError(Exception):
    """Ends a handler with Keycloak's error answer (`field` is the body's key)."""

    def __init__(self, status: int, message: str, *, field_name: str = "error") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field_name = field_name


def _synchronized(handler: Callable[..., Response]) -> Callable[..., Response]:
    """Run a handler under the server lock and turn AdminError into the system's answer."""

    @functools.wraps(handler)
    def run(self: KeycloakEmulator, request: Request, **values: Any) -> Response:
        try:
            with self.lock:
                return handler(self, request, **values)
        except AdminError as exc:
            return json_response({exc.field_name: exc.message}, exc.status)

    return run


def _flag(request: Request, name: str, default: bool) -> bool:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    return raw.strip().lower() == "true"


def _number(request: Request, name: str, default: int) -> int:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise AdminError(400, f"Invalid value for {name}", field_name="errorMessage") from None


def _page(items: list[Any], request: Request, default_max: int) -> list[Any]:
    first = max(0, _number(request, "first", 0))
    limit = _number(request, "max", default_max)
    # Keycloak treats a negative max as "no limit".
    return items[first:] if limit < 0 else items[first : first + limit]


def _attribute_query(raw: str) -> dict[str, str]:
    """Keycloak's `q` syntax, `key1:value1 key2:value2`; like Keycloak, text that is no pair is ignored."""
    pairs: dict[str, str] = {}
    for part in raw.split():
        key, sep, value = part.partition(":")
        if sep and key:
            pairs[key] = value
    return pairs


def _attributes(value: Any) -> dict[str, list[str]]:
    if not isinstance(value, dict):
        return {}
    return {str(k): [str(v) for v in (vs if isinstance(vs, list) else [vs])] for k, vs in value.items()}


def _user_search_matches(user: User, search: str) -> bool:
    """`search`: prefix match by default, `*x*` infix, `"x"` exact, over the name fields."""
    term = search.strip()
    fields = [user.username, user.email or "", user.first_name or "", user.last_name or ""]
    fields = [f.lower() for f in fields]
    if len(term) >= 2 and term.startswith('"') and term.endswith('"'):
        exact = term[1:-1].lower()
        return any(f == exact for f in fields)
    lowered = term.lower()
    if lowered.startswith("*"):
        needle = lowered.strip("*")
        return any(needle in f for f in fields)
    needle = lowered.rstrip("*")
    return any(f.startswith(needle) for f in fields)


class KeycloakEmulator(EmulatorServer):
    """An in-process Keycloak 26.6 (admin API + token endpoint) for tests, sandbox and benchmarks.

    Credentials a client needs, as attributes:
      * `realm` — the default realm (`polycrate` unless given);
      * `client_id` / `client_secret` — a confidential client of `realm` with a service account
        that may administer the realm (the SDP's credentialsRef in the sandbox);
      * `admin_username` / `admin_password` — a user of the `master` realm who administers every
        realm through the public `admin-cli` client and the password grant (what people use);
      * `token_lifetime` / `refresh_lifetime` — seconds an access / refresh token lives.
    The credentials stay fixed for the server's life; `reset()` only forgets groups, users and
    tokens. `add_realm()` (or POST /_emulator/realms {"name": ...}) adds a realm with the same
    service-account client; DELETE /_emulator/tokens revokes every issued token.
    """

    system = "keycloak"
    contract_file = "keycloak-26.6-admin-openapi.json"
    unchecked_prefixes = ("/realms/",)

    # (method, spec path template) of every admin operation served here; the rest of the spec
    # answers 501 and is recorded as a violation, so a test never silently relies on it.
    OPERATIONS: tuple[tuple[str, str], ...] = (
        ("GET", "/admin/realms"),
        ("GET", "/admin/realms/{realm}"),
        ("GET", "/admin/realms/{realm}/clients"),
        ("GET", "/admin/realms/{realm}/clients/{client-uuid}"),
        ("GET", "/admin/realms/{realm}/groups"),
        ("POST", "/admin/realms/{realm}/groups"),
        ("GET", "/admin/realms/{realm}/groups/count"),
        ("GET", "/admin/realms/{realm}/group-by-path/{path}"),
        ("GET", "/admin/realms/{realm}/groups/{group-id}"),
        ("PUT", "/admin/realms/{realm}/groups/{group-id}"),
        ("DELETE", "/admin/realms/{realm}/groups/{group-id}"),
        ("GET", "/admin/realms/{realm}/groups/{group-id}/children"),
        ("POST", "/admin/realms/{realm}/groups/{group-id}/children"),
        ("GET", "/admin/realms/{realm}/groups/{group-id}/members"),
        ("GET", "/admin/realms/{realm}/users"),
        ("POST", "/admin/realms/{realm}/users"),
        ("GET", "/admin/realms/{realm}/users/count"),
        ("GET", "/admin/realms/{realm}/users/{user-id}"),
        ("PUT", "/admin/realms/{realm}/users/{user-id}"),
        ("DELETE", "/admin/realms/{realm}/users/{user-id}"),
        ("GET", "/admin/realms/{realm}/users/{user-id}/groups"),
        ("GET", "/admin/realms/{realm}/users/{user-id}/groups/count"),
        ("PUT", "/admin/realms/{realm}/users/{user-id}/groups/{groupId}"),
        ("DELETE", "/admin/realms/{realm}/users/{user-id}/groups/{groupId}"),
    )

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        latency_ms: float = 0.0,
        realm: str = DEFAULT_REALM,
        client_id: str = DEFAULT_CLIENT_ID,
        client_secret: str | None = None,
        admin_username: str = DEFAULT_ADMIN_USERNAME,
        admin_password: str | None = None,
        token_lifetime: float = 300.0,
        refresh_lifetime: float = 1800.0,
    ) -> None:
        self.realm = realm
        self.client_id = client_id
        self.client_secret = client_secret or secrets.token_urlsafe(24)
        self.admin_username = admin_username
        self.admin_password = admin_password or secrets.token_urlsafe(12)
        self.token_lifetime = token_lifetime
        self.refresh_lifetime = refresh_lifetime
        self.realms: dict[str, Realm] = {}
        self.tokens: dict[str, Token] = {}
        self.token_grants = 0
        super().__init__(host, port, latency_ms=latency_ms)

    # -- state ------------------------------------------------------------------------------

    def reset_state(self) -> None:
        self.realms = {}
        self.tokens = {}
        self.token_grants = 0
        master = self.add_realm(MASTER_REALM)
        master.clients[ADMIN_CLI] = Client(ADMIN_CLI, secret=None)
        admin = User(
            id=str(uuid.uuid4()),
            username=self.admin_username,
            enabled=True,
            password=self.admin_password,
            realm_admin=True,
            created_timestamp=int(_now() * 1000),
        )
        master.users[admin.id] = admin
        if self.realm != MASTER_REALM:
            self.add_realm(self.realm)

    def add_realm(self, name: str) -> Realm:
        """A new empty realm with the service-account client (`client_id`/`client_secret`)."""
        with self.lock:
            realm = self.realms.get(name)
            if realm is None:
                realm = self.realms[name] = Realm(name)
                realm.clients[self.client_id] = Client(
                    self.client_id, self.client_secret, service_account=True, realm_admin=True
                )
                realm.clients[ADMIN_CLI] = Client(ADMIN_CLI, secret=None)
            return realm

    def add_client(self, realm: str, client_id: str, secret: str, *, realm_admin: bool = True) -> None:
        """A confidential client with a service account; `realm_admin=False` gets 403 on admin calls."""
        with self.lock:
            self.realms[realm].clients[client_id] = Client(
                client_id, secret, service_account=True, realm_admin=realm_admin
            )

    def revoke_tokens(self) -> None:
        """Forget every issued token (as a Keycloak restart with new keys would)."""
        with self.lock:
            self.tokens.clear()

    def snapshot(self) -> dict[str, Any]:
        # Never includes secrets or passwords: the state endpoint is for looking, not logging in.
        return {
            "realms": {
                name: {
                    "groups": [
                        {
                            "id": g.id,
                            "name": g.name,
                            "path": self._path(realm, g),
                            "parentId": g.parent_id,
                            "attributes": g.attributes,
                        }
                        for g in sorted(realm.groups.values(), key=lambda g: self._path(realm, g))
                    ],
                    "users": [
                        {"id": u.id, "username": u.username, "email": u.email, "enabled": u.enabled}
                        for u in sorted(realm.users.values(), key=lambda u: u.username)
                    ],
                    "memberships": sorted(
                        [realm.users[u].username, self._path(realm, realm.groups[g])]
                        for u, g in realm.memberships
                    ),
                    "clients": sorted(realm.clients),
                }
                for name, realm in sorted(self.realms.items())
            },
            "activeTokens": sum(1 for t in self.tokens.values() if t.expires_at > _now()),
            "tokenGrants": self.token_grants,
        }

    # -- routing ----------------------------------------------------------------------------

    def routes(self) -> list[Rule]:
        base = "/admin/realms/<realm>"
        return [
            Rule("/realms/<realm>/protocol/openid-connect/token", methods=["POST"], endpoint="issue_token"),
            Rule("/admin/realms", methods=["GET"], endpoint="list_realms"),
            Rule(base, methods=["GET"], endpoint="get_realm"),
            Rule(f"{base}/clients", methods=["GET"], endpoint="list_clients"),
            Rule(f"{base}/clients/<client_uuid>", methods=["GET"], endpoint="get_client"),
            Rule(f"{base}/groups", methods=["GET"], endpoint="list_groups"),
            Rule(f"{base}/groups", methods=["POST"], endpoint="create_group"),
            Rule(f"{base}/groups/count", methods=["GET"], endpoint="count_groups"),
            Rule(f"{base}/group-by-path/<path:path>", methods=["GET"], endpoint="group_by_path"),
            Rule(f"{base}/groups/<group_id>", methods=["GET"], endpoint="get_group"),
            Rule(f"{base}/groups/<group_id>", methods=["PUT"], endpoint="update_group"),
            Rule(f"{base}/groups/<group_id>", methods=["DELETE"], endpoint="delete_group"),
            Rule(f"{base}/groups/<group_id>/children", methods=["GET"], endpoint="list_children"),
            Rule(f"{base}/groups/<group_id>/children", methods=["POST"], endpoint="create_child"),
            Rule(f"{base}/groups/<group_id>/members", methods=["GET"], endpoint="list_members"),
            Rule(f"{base}/users", methods=["GET"], endpoint="list_users"),
            Rule(f"{base}/users", methods=["POST"], endpoint="create_user"),
            Rule(f"{base}/users/count", methods=["GET"], endpoint="count_users"),
            Rule(f"{base}/users/<user_id>", methods=["GET"], endpoint="get_user"),
            Rule(f"{base}/users/<user_id>", methods=["PUT"], endpoint="update_user"),
            Rule(f"{base}/users/<user_id>", methods=["DELETE"], endpoint="delete_user"),
            Rule(f"{base}/users/<user_id>/groups", methods=["GET"], endpoint="list_user_groups"),
            Rule(f"{base}/users/<user_id>/groups/count", methods=["GET"], endpoint="count_user_groups"),
            Rule(f"{base}/users/<user_id>/groups/<group_id>", methods=["PUT"], endpoint="join_group"),
            Rule(f"{base}/users/<user_id>/groups/<group_id>", methods=["DELETE"], endpoint="leave_group"),
            Rule("/admin/<path:rest>", endpoint="not_emulated"),
        ]

    def error(self, status: int, message: str) -> Response:
        return json_response({"error": message}, status)

    def _bearer(self, request: Request) -> Token | None:
        """The live access token the request presents, if any."""
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        with self.lock:
            token = self.tokens.get(value.strip()) if scheme.lower() == "bearer" else None
        if token is None or token.refresh or token.expires_at <= _now():
            return None
        return token

    def authenticate(self, request: Request) -> Response | None:
        segments = request.path.rstrip("/").split("/")
        if segments[1:3] != ["admin", "realms"]:
            return None
        with self.lock:
            token = self._bearer(request)
            if token is None:
                return json_response({"error": "HTTP 401 Unauthorized"}, 401)
            # GET /admin/realms names no realm: any live token may ask which realms it sees.
            realm = segments[3] if len(segments) > 3 else token.realm
            if token.realm not in (MASTER_REALM, realm):
                return json_response({"error": "HTTP 401 Unauthorized"}, 401)
            if not token.realm_admin:
                return json_response({"error": "HTTP 403 Forbidden"}, 403)
        return None

    def _check_response(self, request: Request, response: Response) -> None:
        if response.status_code in UNDECLARED_ERROR_STATUSES:
            operation, _ = self.contract.match(request.method, request.path)  # type: ignore[union-attr]
            if operation is not None and str(response.status_code) not in operation.responses:
                return
        super()._check_response(request, response)

    def _admin(self, request: Request) -> Response:
        action = request.path[len("/_emulator/") :].strip("/")
        if action == "realms" and request.method == "POST":
            payload = request.get_json(force=True, silent=True) or {}
            name = str(payload.get("name", "")).strip()
            if not name:
                return json_response({"error": "a realm needs a name"}, 400)
            self.add_realm(name)
            return json_response({"realm": name}, 201)
        if action == "tokens" and request.method == "DELETE":
            self.revoke_tokens()
            return json_response({"revoked": True})
        return super()._admin(request)

    # -- helpers ----------------------------------------------------------------------------

    def _realm(self, name: str) -> Realm:
        realm = self.realms.get(name)
        if realm is None:
            raise AdminError(404, "Realm not found.")
        return realm

    def _group(self, realm: Realm, group_id: str) -> Group:
        group = realm.groups.get(group_id)
        if group is None:
            raise AdminError(404, "Could not find group by id")
        return group

    def _user(self, realm: Realm, user_id: str) -> User:
        user = realm.users.get(user_id)
        if user is None:
            raise AdminError(404, "User not found")
        return user

    @staticmethod
    def _path(realm: Realm, group: Group) -> str:
        names = [group.name]
        parent = group.parent_id
        while parent is not None:
            ancestor = realm.groups[parent]
            names.append(ancestor.name)
            parent = ancestor.parent_id
        return "/" + "/".join(reversed(names))

    @staticmethod
    def _children(realm: Realm, parent_id: str | None) -> list[Group]:
        return sorted((g for g in realm.groups.values() if g.parent_id == parent_id), key=lambda g: g.name)

    def _group_rep(
        self,
        realm: Realm,
        group: Group,
        *,
        full: bool,
        sub_groups: list[dict[str, Any]] | None = None,
        with_access: bool = False,
    ) -> dict[str, Any]:
        rep: dict[str, Any] = {
            "id": group.id,
            "name": group.name,
            "path": self._path(realm, group),
            "subGroupCount": len(self._children(realm, group.id)),
            "subGroups": sub_groups or [],
        }
        if group.parent_id is not None:
            rep["parentId"] = group.parent_id
        if group.description is not None:
            rep["description"] = group.description
        if full:
            rep["attributes"] = {k: list(v) for k, v in group.attributes.items()}
            rep["realmRoles"] = []
            rep["clientRoles"] = {}
        if with_access:
            rep["access"] = {
                "view": True,
                "viewMembers": True,
                "manageMembers": True,
                "manage": True,
                "manageMembership": True,
            }
        return rep

    def _hierarchy(self, realm: Realm, group: Group, *, full: bool) -> dict[str, Any]:
        children = [self._hierarchy(realm, c, full=full) for c in self._children(realm, group.id)]
        return self._group_rep(realm, group, full=full, sub_groups=children)

    def _matching_roots(
        self, realm: Realm, matches: Callable[[Group], bool], *, full: bool, populate: bool
    ) -> list[dict[str, Any]]:
        """Top-level groups that are or contain a match, with the branches down to the matches."""
        matched = {g.id for g in realm.groups.values() if matches(g)}
        on_branch: set[str] = set()
        for group_id in matched:
            current: str | None = group_id
            while current is not None:
                on_branch.add(current)
                current = realm.groups[current].parent_id

        def render(group: Group) -> dict[str, Any]:
            subs = (
                [render(c) for c in self._children(realm, group.id) if c.id in on_branch] if populate else []
            )
            return self._group_rep(realm, group, full=full, sub_groups=subs)

        return [render(g) for g in self._children(realm, None) if g.id in on_branch]

    @staticmethod
    def _name_matcher(search: str, exact: bool) -> Callable[[Group], bool]:
        if exact:
            return lambda g: g.name == search
        lowered = search.lower()
        return lambda g: lowered in g.name.lower()

    def _location(self, request: Request, realm: Realm, kind: str, object_id: str) -> dict[str, str]:
        return {"Location": f"{request.host_url}admin/realms/{realm.name}/{kind}/{object_id}"}

    def _user_rep(self, user: User, *, full: bool) -> dict[str, Any]:
        rep: dict[str, Any] = {
            "id": user.id,
            "username": user.username,
            "enabled": user.enabled,
            "emailVerified": user.email_verified,
            "createdTimestamp": user.created_timestamp,
            "totp": False,
            "disableableCredentialTypes": [],
            "requiredActions": [],
            "notBefore": 0,
        }
        for key, value in (
            ("email", user.email),
            ("firstName", user.first_name),
            ("lastName", user.last_name),
        ):
            if value is not None:
                rep[key] = value
        if full:
            rep["attributes"] = {k: list(v) for k, v in user.attributes.items()}
            rep["access"] = {
                "manage": True,
                "impersonate": False,
                "manageGroupMembership": True,
                "view": True,
                "mapRoles": True,
            }
        return rep

    @staticmethod
    def _new_group_fields(body: Any) -> tuple[str, str | None, dict[str, list[str]]]:
        if not isinstance(body, dict):
            raise AdminError(400, "Group name is missing", field_name="errorMessage")
        name = str(body.get("name") or "").strip()
        if not name:
            raise AdminError(400, "Group name is missing", field_name="errorMessage")
        description = body.get("description")
        return (
            name,
            description if isinstance(description, str) else None,
            _attributes(body.get("attributes")),
        )

    def _ensure_unique_sibling(
        self, realm: Realm, parent_id: str | None, name: str, own_id: str | None
    ) -> None:
        for sibling in self._children(realm, parent_id):
            if sibling.name == name and sibling.id != own_id:
                message = (
                    f"Top level group named '{name}' already exists."
                    if parent_id is None
                    else f"Sibling group named '{name}' already exists."
                )
                raise AdminError(409, message, field_name="errorMessage")

    def _create_or_move(self, request: Request, realm: Realm, parent_id: str | None) -> Response:
        body = request.get_json(force=True, silent=True)
        existing_id = body.get("id") if isinstance(body, dict) else None
        if existing_id:
            # A representation with an id moves that group under the parent (Keycloak's contract).
            group = self._group(realm, existing_id)
            ancestor = parent_id
            while ancestor is not None:
                if ancestor == group.id:
                    raise AdminError(400, "Cannot move group into itself", field_name="errorMessage")
                ancestor = realm.groups[ancestor].parent_id
            self._ensure_unique_sibling(realm, parent_id, group.name, group.id)
            group.parent_id = parent_id
            return Response(status=204)
        name, description, attributes = self._new_group_fields(body)
        self._ensure_unique_sibling(realm, parent_id, name, None)
        group = Group(str(uuid.uuid4()), name, parent_id, description, attributes)
        realm.groups[group.id] = group
        return Response(status=201, headers=self._location(request, realm, "groups", group.id))

    def _subtree(self, realm: Realm, group_id: str) -> list[str]:
        ids = [group_id]
        for child in self._children(realm, group_id):
            ids += self._subtree(realm, child.id)
        return ids

    def _find_by_path(self, realm: Realm, path: str) -> Group | None:
        wanted = "/" + path.strip("/")
        return next((g for g in realm.groups.values() if self._path(realm, g) == wanted), None)

    def _filtered_users(self, realm: Realm, request: Request) -> list[User]:
        users = sorted(realm.users.values(), key=lambda u: u.username)
        args = request.args
        search = args.get("search")
        if search is not None:
            return [u for u in users if _user_search_matches(u, search)]
        exact = _flag(request, "exact", False)
        for param, attribute in (
            ("username", "username"),
            ("email", "email"),
            ("firstName", "first_name"),
            ("lastName", "last_name"),
        ):
            wanted = args.get(param)
            if wanted is None:
                continue
            lowered = wanted.lower()

            def keep(user: User, attribute: str = attribute, lowered: str = lowered) -> bool:
                value = (getattr(user, attribute) or "").lower()
                return value == lowered if exact else lowered in value

            users = [u for u in users if keep(u)]
        if "enabled" in args:
            enabled = _flag(request, "enabled", True)
            users = [u for u in users if u.enabled == enabled]
        if "emailVerified" in args:
            verified = _flag(request, "emailVerified", True)
            users = [u for u in users if u.email_verified == verified]
        if args.get("q"):
            pairs = _attribute_query(args["q"])
            users = [u for u in users if all(v in u.attributes.get(k, []) for k, v in pairs.items())]
        if args.get("idpAlias") or args.get("idpUserId"):
            # No identity-provider links exist in the emulator.
            users = []
        return users

    def _user_groups(self, realm: Realm, user: User, search: str | None) -> list[Group]:
        groups = [realm.groups[g] for u, g in realm.memberships if u == user.id]
        if search:
            lowered = search.lower()
            groups = [g for g in groups if lowered in g.name.lower()]
        return sorted(groups, key=lambda g: (g.name, self._path(realm, g)))

    # -- the token endpoint -----------------------------------------------------------------

    def _token_error(self, status: int, error: str, description: str) -> Response:
        return json_response({"error": error, "error_description": description}, status)

    def _grant(self, realm: Realm, subject: str, realm_admin: bool, *, with_refresh: bool) -> Response:
        self.token_grants += 1
        access = secrets.token_urlsafe(32)
        self.tokens[access] = Token(realm.name, subject, realm_admin, _now() + self.token_lifetime)
        body: dict[str, Any] = {
            "access_token": access,
            "expires_in": int(self.token_lifetime),
            "refresh_expires_in": 0,
            "token_type": "Bearer",
            "not-before-policy": 0,
            "scope": "profile email",
        }
        if with_refresh:
            refresh = secrets.token_urlsafe(32)
            self.tokens[refresh] = Token(
                realm.name, subject, realm_admin, _now() + self.refresh_lifetime, refresh=True
            )
            body["refresh_token"] = refresh
            body["refresh_expires_in"] = int(self.refresh_lifetime)
            body["session_state"] = str(uuid.uuid4())
        return json_response(body, 200, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})

    def issue_token(self, request: Request, realm: str) -> Response:
        with self.lock:
            target = self.realms.get(realm)
            if target is None:
                return self._token_error(404, "Realm does not exist", "Realm does not exist")
            form = request.form
            grant_type = form.get("grant_type")
            if not grant_type:
                return self._token_error(400, "invalid_request", "Missing form parameter: grant_type")
            client_id, client_secret = form.get("client_id"), form.get("client_secret")
            if request.authorization is not None and request.authorization.type == "basic":
                client_id = request.authorization.username
                client_secret = request.authorization.password
            client = target.clients.get(client_id or "")
            if client is None or (client.secret is not None and client.secret != client_secret):
                return self._token_error(
                    401, "unauthorized_client", "Invalid client or Invalid client credentials"
                )
            if grant_type == "client_credentials":
                if client.secret is None or not client.service_account:
                    return self._token_error(
                        401, "unauthorized_client", "Client not enabled to retrieve service account"
                    )
                return self._grant(
                    target, f"service-account-{client.client_id}", client.realm_admin, with_refresh=False
                )
            if grant_type == "password":
                username = (form.get("username") or "").lower()
                user = next(
                    (u for u in target.users.values() if username in (u.username, (u.email or "").lower())),
                    None,
                )
                if (
                    user is None
                    or not user.enabled
                    or user.password is None
                    or user.password != form.get("password")
                ):
                    return self._token_error(401, "invalid_grant", "Invalid user credentials")
                return self._grant(target, user.id, user.realm_admin, with_refresh=True)
            if grant_type == "refresh_token":
                token = self.tokens.get(form.get("refresh_token") or "")
                if token is None or not token.refresh or token.realm != target.name:
                    return self._token_error(400, "invalid_grant", "Invalid refresh token")
                if token.expires_at <= _now():
                    return self._token_error(400, "invalid_grant", "Token is not active")
                return self._grant(target, token.subject, token.realm_admin, with_refresh=True)
            return self._token_error(400, "unsupported_grant_type", "Unsupported grant_type")

    # -- realms and clients -------------------------------------------------------------------

    def _realm_rep(self, realm: Realm, *, brief: bool) -> dict[str, Any]:
        rep: dict[str, Any] = {"id": realm.id, "realm": realm.name, "enabled": True}
        if realm.name == MASTER_REALM:
            rep["displayName"] = "Keycloak"
        if brief:
            return rep
        return {
            **rep,
            "notBefore": 0,
            "defaultSignatureAlgorithm": "RS256",
            "revokeRefreshToken": False,
            "refreshTokenMaxReuse": 0,
            "accessTokenLifespan": int(self.token_lifetime),
            "ssoSessionIdleTimeout": int(self.refresh_lifetime),
            "ssoSessionMaxLifespan": 36000,
            "accessCodeLifespan": 60,
            "sslRequired": "external",
            "registrationAllowed": False,
            "registrationEmailAsUsername": False,
            "rememberMe": False,
            "verifyEmail": False,
            "loginWithEmailAllowed": True,
            "duplicateEmailsAllowed": False,
            "resetPasswordAllowed": False,
            # Usernames are fixed after creation, which update_user enforces.
            "editUsernameAllowed": False,
            "bruteForceProtected": False,
            "requiredCredentials": ["password"],
            "eventsEnabled": False,
            "adminEventsEnabled": False,
            "internationalizationEnabled": False,
            "userManagedAccessAllowed": False,
            "organizationsEnabled": False,
            "browserFlow": "browser",
            "registrationFlow": "registration",
            "directGrantFlow": "direct grant",
            "resetCredentialsFlow": "reset credentials",
            "clientAuthenticationFlow": "clients",
            "attributes": {},
        }

    @_synchronized
    def list_realms(self, request: Request) -> Response:
        token = self._bearer(request)
        if token is None:  # expired between authenticate() and here
            return json_response({"error": "HTTP 401 Unauthorized"}, 401)
        # A master-realm administrator sees every realm; a realm's own admin only that realm.
        visible = [r for r in self.realms.values() if token.realm in (MASTER_REALM, r.name)]
        brief = _flag(request, "briefRepresentation", False)
        return json_response([self._realm_rep(r, brief=brief) for r in visible])

    @_synchronized
    def get_realm(self, request: Request, realm: str) -> Response:
        return json_response(self._realm_rep(self._realm(realm), brief=False))

    @staticmethod
    def _client_rep(client: Client) -> dict[str, Any]:
        # Keycloak's ClientRepresentation; the secret is left out (the admin console fetches it
        # from /client-secret) so no introspection answer ever carries a credential.
        public = client.secret is None
        return {
            "id": client.id,
            "clientId": client.client_id,
            "name": "${client_admin-cli}" if client.client_id == ADMIN_CLI else "",
            "surrogateAuthRequired": False,
            "enabled": True,
            "alwaysDisplayInConsole": False,
            "clientAuthenticatorType": "client-secret",
            "redirectUris": [],
            "webOrigins": [],
            "notBefore": 0,
            "bearerOnly": False,
            "consentRequired": False,
            "standardFlowEnabled": False,
            "implicitFlowEnabled": False,
            "directAccessGrantsEnabled": public,
            "serviceAccountsEnabled": client.service_account,
            "publicClient": public,
            "frontchannelLogout": True,
            "protocol": "openid-connect",
            "attributes": {},
            "fullScopeAllowed": True,
            "nodeReRegistrationTimeout": 0,
            "defaultClientScopes": ["web-origins", "acr", "profile", "roles", "basic", "email"],
            "optionalClientScopes": [
                "address",
                "phone",
                "offline_access",
                "organization",
                "microprofile-jwt",
            ],
            "access": {"view": True, "configure": True, "manage": True},
        }

    @_synchronized
    def list_clients(self, request: Request, realm: str) -> Response:
        target = self._realm(realm)
        clients = sorted(target.clients.values(), key=lambda c: c.client_id)
        wanted = request.args.get("clientId")
        if wanted:
            if _flag(request, "search", False):
                clients = [c for c in clients if wanted.lower() in c.client_id.lower()]
            else:
                clients = [c for c in clients if c.client_id == wanted]
        if request.args.get("q") and _attribute_query(request.args["q"]):
            clients = []  # no client here carries attributes to match
        return json_response(_page([self._client_rep(c) for c in clients], request, -1))

    @_synchronized
    def get_client(self, request: Request, realm: str, client_uuid: str) -> Response:
        target = self._realm(realm)
        client = next((c for c in target.clients.values() if c.id == client_uuid), None)
        if client is None:
            raise AdminError(404, "Could not find client")
        return json_response(self._client_rep(client))

    # -- groups -----------------------------------------------------------------------------

    @_synchronized
    def list_groups(self, request: Request, realm: str) -> Response:
        target = self._realm(realm)
        full = not _flag(request, "briefRepresentation", True)
        populate = _flag(request, "populateHierarchy", True)
        if request.args.get("q"):
            pairs = _attribute_query(request.args["q"])
            roots = self._matching_roots(
                target,
                lambda g: all(v in g.attributes.get(k, []) for k, v in pairs.items()),
                full=full,
                populate=populate,
            )
        elif request.args.get("search") is not None:
            matcher = self._name_matcher(request.args["search"].strip(), _flag(request, "exact", False))
            roots = self._matching_roots(target, matcher, full=full, populate=populate)
        else:
            roots = [self._group_rep(target, g, full=full) for g in self._children(target, None)]
        return json_response(_page(roots, request, DEFAULT_MAX_RESULTS))

    @_synchronized
    def create_group(self, request: Request, realm: str) -> Response:
        return self._create_or_move(request, self._realm(realm), None)

    @_synchronized
    def count_groups(self, request: Request, realm: str) -> Response:
        target = self._realm(realm)
        search = request.args.get("search")
        if search is not None:
            matcher = self._name_matcher(search.strip(), exact=False)
            count = sum(1 for g in target.groups.values() if matcher(g))
        elif _flag(request, "top", False):
            count = len(self._children(target, None))
        else:
            count = len(target.groups)
        return json_response({"count": count})

    @_synchronized
    def group_by_path(self, request: Request, realm: str, path: str) -> Response:
        target = self._realm(realm)
        group = self._find_by_path(target, path)
        if group is None:
            raise AdminError(404, "Group path does not exist")
        return json_response(self._hierarchy(target, group, full=True))

    @_synchronized
    def get_group(self, request: Request, realm: str, group_id: str) -> Response:
        target = self._realm(realm)
        return json_response(
            self._group_rep(target, self._group(target, group_id), full=True, with_access=True)
        )

    @_synchronized
    def update_group(self, request: Request, realm: str, group_id: str) -> Response:
        target = self._realm(realm)
        group = self._group(target, group_id)
        body = request.get_json(force=True, silent=True)
        name, description, attributes = self._new_group_fields(body)
        if name != group.name:
            self._ensure_unique_sibling(target, group.parent_id, name, group.id)
            group.name = name
        if description is not None:
            group.description = description
        if isinstance(body, dict) and body.get("attributes") is not None:
            group.attributes = attributes
        return Response(status=204)

    @_synchronized
    def delete_group(self, request: Request, realm: str, group_id: str) -> Response:
        target = self._realm(realm)
        self._group(target, group_id)
        doomed = set(self._subtree(target, group_id))
        for gone in doomed:
            del target.groups[gone]
        target.memberships = {(u, g) for u, g in target.memberships if g not in doomed}
        return Response(status=204)

    @_synchronized
    def list_children(self, request: Request, realm: str, group_id: str) -> Response:
        target = self._realm(realm)
        self._group(target, group_id)
        full = not _flag(request, "briefRepresentation", False)
        children = self._children(target, group_id)
        search = request.args.get("search")
        if search is not None:
            matcher = self._name_matcher(search.strip(), _flag(request, "exact", False))
            children = [c for c in children if matcher(c)]
        reps = [self._group_rep(target, c, full=full) for c in children]
        return json_response(_page(reps, request, DEFAULT_MAX_CHILDREN))

    @_synchronized
    def create_child(self, request: Request, realm: str, group_id: str) -> Response:
        target = self._realm(realm)
        self._group(target, group_id)
        return self._create_or_move(request, target, group_id)

    @_synchronized
    def list_members(self, request: Request, realm: str, group_id: str) -> Response:
        target = self._realm(realm)
        self._group(target, group_id)
        full = not _flag(request, "briefRepresentation", False)
        members = sorted(
            (target.users[u] for u, g in target.memberships if g == group_id), key=lambda u: u.username
        )
        reps = [self._user_rep(u, full=full) for u in members]
        return json_response(_page(reps, request, DEFAULT_MAX_RESULTS))

    # -- users ------------------------------------------------------------------------------

    @_synchronized
    def list_users(self, request: Request, realm: str) -> Response:
        target = self._realm(realm)
        full = not _flag(request, "briefRepresentation", False)
        users = [self._user_rep(u, full=full) for u in self._filtered_users(target, request)]
        return json_response(_page(users, request, DEFAULT_MAX_RESULTS))

    @_synchronized
    def count_users(self, request: Request, realm: str) -> Response:
        return json_response(len(self._filtered_users(self._realm(realm), request)))

    @_synchronized
    def create_user(self, request: Request, realm: str) -> Response:
        target = self._realm(realm)
        body = request.get_json(force=True, silent=True)
        if not isinstance(body, dict):
            raise AdminError(400, "User name is missing", field_name="errorMessage")
        username = str(body.get("username") or "").strip().lower()
        if not username:
            raise AdminError(400, "User name is missing", field_name="errorMessage")
        email = str(body["email"]).strip().lower() if body.get("email") else None
        for other in target.users.values():
            if other.username == username:
                raise AdminError(409, "User exists with same username", field_name="errorMessage")
            if email is not None and other.email == email:
                raise AdminError(409, "User exists with same email", field_name="errorMessage")
        groups: list[Group] = []
        for path in body.get("groups") or []:
            group = self._find_by_path(target, str(path))
            if group is None:
                raise AdminError(400, f"Group {path} not found", field_name="errorMessage")
            groups.append(group)
        password = next(
            (
                c.get("value")
                for c in body.get("credentials") or []
                if isinstance(c, dict) and c.get("type", "password") == "password"
            ),
            None,
        )
        user = User(
            id=str(uuid.uuid4()),
            username=username,
            email=email,
            first_name=body.get("firstName"),
            last_name=body.get("lastName"),
            enabled=bool(body.get("enabled", False)),
            email_verified=bool(body.get("emailVerified", False)),
            attributes=_attributes(body.get("attributes")),
            created_timestamp=int(_now() * 1000),
            password=password,
        )
        target.users[user.id] = user
        target.memberships |= {(user.id, g.id) for g in groups}
        return Response(status=201, headers=self._location(request, target, "users", user.id))

    @_synchronized
    def get_user(self, request: Request, realm: str, user_id: str) -> Response:
        target = self._realm(realm)
        return json_response(self._user_rep(self._user(target, user_id), full=True))

    @_synchronized
    def update_user(self, request: Request, realm: str, user_id: str) -> Response:
        """Keycloak 26's PUT: without `attributes` only the fields sent change; with them the
        user-profile attributes are replaced, so an omitted email or name is cleared."""
        target = self._realm(realm)
        user = self._user(target, user_id)
        body = request.get_json(force=True, silent=True)
        if not isinstance(body, dict):
            raise AdminError(400, "User representation is missing", field_name="errorMessage")
        username = body.get("username")
        if username is not None and str(username).strip().lower() != user.username:
            return json_response(
                {
                    "field": "username",
                    "errorMessage": "error-user-attribute-read-only",
                    "params": ["username"],
                },
                400,
            )
        replace_profile = body.get("attributes") is not None
        if "email" in body or replace_profile:
            email = str(body.get("email") or "").strip().lower() or None
            if email is not None and any(o.email == email and o.id != user.id for o in target.users.values()):
                raise AdminError(409, "User exists with same email", field_name="errorMessage")
            user.email = email
        for key, attribute in (("firstName", "first_name"), ("lastName", "last_name")):
            if key in body or replace_profile:
                setattr(user, attribute, body.get(key))
        if replace_profile:
            user.attributes = _attributes(body["attributes"])
        if body.get("enabled") is not None:
            user.enabled = bool(body["enabled"])
        if body.get("emailVerified") is not None:
            user.email_verified = bool(body["emailVerified"])
        password = next(
            (
                c.get("value")
                for c in body.get("credentials") or []
                if isinstance(c, dict) and c.get("type", "password") == "password" and c.get("value")
            ),
            None,
        )
        if password is not None:
            user.password = password
        return Response(status=204)

    @_synchronized
    def delete_user(self, request: Request, realm: str, user_id: str) -> Response:
        target = self._realm(realm)
        user = self._user(target, user_id)
        del target.users[user.id]
        target.memberships = {(u, g) for u, g in target.memberships if u != user.id}
        # The user's sessions end with the user, so tokens issued to it stop working.
        self.tokens = {k: v for k, v in self.tokens.items() if (v.realm, v.subject) != (target.name, user.id)}
        return Response(status=204)

    @_synchronized
    def list_user_groups(self, request: Request, realm: str, user_id: str) -> Response:
        target = self._realm(realm)
        user = self._user(target, user_id)
        full = not _flag(request, "briefRepresentation", True)
        groups = self._user_groups(target, user, request.args.get("search"))
        reps = [self._group_rep(target, g, full=full) for g in groups]
        return json_response(_page(reps, request, DEFAULT_MAX_RESULTS))

    @_synchronized
    def count_user_groups(self, request: Request, realm: str, user_id: str) -> Response:
        target = self._realm(realm)
        user = self._user(target, user_id)
        return json_response({"count": len(self._user_groups(target, user, request.args.get("search")))})

    @_synchronized
    def join_group(self, request: Request, realm: str, user_id: str, group_id: str) -> Response:
        target = self._realm(realm)
        user = self._user(target, user_id)
        if group_id not in target.groups:
            raise AdminError(404, "Group not found")
        target.memberships.add((user.id, group_id))
        return Response(status=204)

    @_synchronized
    def leave_group(self, request: Request, realm: str, user_id: str, group_id: str) -> Response:
        target = self._realm(realm)
        user = self._user(target, user_id)
        if group_id not in target.groups:
            raise AdminError(404, "Group not found")
        target.memberships.discard((user.id, group_id))
        return Response(status=204)

    def not_emulated(self, request: Request, rest: str) -> Response:
        """A real admin operation this emulator does not serve: loud, so no test relies on it."""
        self._record_violation("unimplemented", request, [f"{request.method} {request.path} is not emulated"])
        return self.error(501, f"{request.method} {request.path} is not emulated")
