"""Keycloak groups, subgroups, users and group membership, as idempotent steps for the workers.

One `KeycloakClient` per SDP, realm and credentials per worker process (`get_client`): it wraps
python-keycloak's `KeycloakOpenIDConnection`, which logs in with the client-credentials grant on
first use and renews the token at 90 % of its lifetime, so N reconciles cost one login, not N.
Both of the library's requests sessions (admin API and token endpoint) are mounted with the shared
HTTP policy (timeouts, pool, TLS) and the SDP's Redis rate limit. Failures are classified for the
retry policy — connection errors, timeouts, 429 (with Retry-After) and 5xx are TransientError, the
rest of 4xx PermanentError — and messages name realm, operation and object, never a credential.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import requests
from keycloak import KeycloakAdmin, KeycloakOpenIDConnection
from keycloak.exceptions import KeycloakError

from polycrate.errors import (
    DependencyNotFoundError,
    InvalidSpecError,
    PermanentError,
    PolycrateError,
    TransientError,
)
from polycrate.httppolicy import (
    TRANSIENT_STATUS,
    HttpPolicy,
    apply_policy,
    classify_status,
    parse_retry_after,
)
from polycrate.ratelimit import RateLimiter
from workers.change import Change
from workers.clients import credentials_digest
from workers.owner_clients import OwnerClients
from workers.ownership import Mark, Owner, claim
from workers.plan import PLANNED_ID, planning

SYSTEM = "keycloak"  # the `system` of the RateLimiter that guards one SDP's Keycloak
DEFAULT_PAGE_SIZE = 100

Attributes = Mapping[str, Sequence[str]]


@dataclass(frozen=True)
class KeycloakCredentials:
    """The SDP's service-account client; the secret never appears in repr, logs or errors."""

    client_id: str
    client_secret: str = field(repr=False)

    @property
    def fingerprint(self) -> str:
        """A one-way digest that tells credentials apart in the in-memory client cache."""
        return credentials_digest(self.client_id, self.client_secret)


@dataclass(frozen=True)
class KeycloakGroup:
    id: str
    name: str
    path: str
    parent_id: str | None = None
    attributes: dict[str, list[str]] = field(default_factory=dict, hash=False, compare=False)
    sub_group_count: int = 0
    # The direct subgroups when the answer held all of them (group-by-path answers with the whole
    # subtree; a group just created has none); None when unknown, e.g. after a read by id.
    sub_groups: tuple[KeycloakGroup, ...] | None = field(default=None, hash=False, compare=False)

    @classmethod
    def from_representation(cls, rep: Mapping[str, Any]) -> KeycloakGroup:
        subs, count = rep.get("subGroups"), rep.get("subGroupCount")
        complete = isinstance(subs, list) and count is not None and len(subs) == int(count)
        return cls(
            id=str(rep["id"]),
            name=str(rep.get("name", "")),
            path=str(rep.get("path", "")),
            parent_id=rep.get("parentId"),
            attributes={k: list(v) for k, v in (rep.get("attributes") or {}).items()},
            sub_group_count=int(count or 0),
            sub_groups=tuple(cls.from_representation(sub) for sub in subs or ()) if complete else None,
        )


@dataclass(frozen=True)
class KeycloakUser:
    id: str
    username: str
    email: str | None = None
    enabled: bool = True
    first_name: str | None = None
    last_name: str | None = None

    @classmethod
    def from_representation(cls, rep: Mapping[str, Any]) -> KeycloakUser:
        return cls(
            id=str(rep["id"]),
            username=str(rep.get("username", "")),
            email=rep.get("email"),
            enabled=bool(rep.get("enabled", True)),
            first_name=rep.get("firstName"),
            last_name=rep.get("lastName"),
        )


class _ServerBusy(Exception):
    """Raised inside the library's session for 429/5xx, so the Retry-After header survives."""

    def __init__(self, status_code: int, detail: str, retry_after: float | None) -> None:
        super().__init__(f"HTTP {status_code}")
        self.status_code = status_code
        self.detail = detail
        self.retry_after = retry_after


def _server_message(body: bytes | str | None) -> str:
    """Keycloak's own error text from `{"errorMessage"}`, `{"error_description"}` or `{"error"}`."""
    if not body:
        return ""
    try:
        parsed = json.loads(body)
    except (TypeError, ValueError):
        text = body.decode(errors="replace") if isinstance(body, bytes) else str(body)
        return text.strip()[:200]
    if isinstance(parsed, dict):
        for key in ("errorMessage", "error_description", "error", "message"):
            if parsed.get(key):
                return str(parsed[key])
    return str(parsed)[:200]


def _raise_when_busy(response: requests.Response, *args: Any, **kwargs: Any) -> None:
    if response.status_code in TRANSIENT_STATUS or response.status_code >= 500:
        raise _ServerBusy(
            response.status_code,
            _server_message(response.content),
            parse_retry_after(response.headers.get("Retry-After")),
        )


def _describe(attributes: Mapping[str, Sequence[str]]) -> str:
    return f"attributes {', '.join(sorted(attributes))}" if attributes else ""


def _validate_name(name: str, what: str) -> None:
    if not name or not name.strip():
        raise InvalidSpecError(f"{what}: the group name is empty")
    if "/" in name:
        raise InvalidSpecError(f'{what}: group name "{name}" contains "/" (use a name without slashes)')


class KeycloakClient:
    """Idempotent steps against one Keycloak realm, authenticated as the SDP's service account.

    `url` is the server root (no `/auth` suffix on Keycloak ≥ 17; include it for older servers),
    `realm` the realm administered, `token_realm` the realm the service-account client lives in
    (default: `realm`). `page_size` is the `max` used while following pagination.
    """

    def __init__(
        self,
        url: str,
        realm: str,
        credentials: KeycloakCredentials,
        *,
        token_realm: str | None = None,
        policy: HttpPolicy | None = None,
        limiter: RateLimiter | None = None,
        page_size: int = DEFAULT_PAGE_SIZE,
    ) -> None:
        self.url = url.rstrip("/") + "/"
        self.realm = realm
        self.client_id = credentials.client_id
        self.policy = policy or HttpPolicy()
        self._token_lock = threading.Lock()
        self._logins = 0
        # Names seen in answers, so a planned write can say "john.doe in /acme-corp", not two uuids.
        self._group_paths: dict[str, str] = {}
        self._usernames: dict[str, str] = {}
        before_send = limiter.acquire if limiter is not None else None
        self._connection = KeycloakOpenIDConnection(
            server_url=self.url,
            realm_name=realm,
            user_realm_name=token_realm or realm,
            client_id=credentials.client_id,
            client_secret_key=credentials.client_secret,
            grant_type="client_credentials",
            verify=self.policy.verify_arg,
            # None lets the policy adapter apply its (connect, read) timeouts to every request.
            timeout=None,
            pool_maxsize=self.policy.pool_maxsize,
        )
        self._admin = KeycloakAdmin(connection=self._connection)
        # KeycloakAdmin follows pagination (`first`/`max`) in pages of PAGE_SIZE.
        self._admin.PAGE_SIZE = page_size
        # python-keycloak keeps one requests.Session per ConnectionManager in `_s`: the admin
        # connection and the KeycloakOpenID used for the token endpoint each own one.
        for session in (self._connection._s, self._connection.keycloak_openid.connection._s):
            apply_policy(session, self.policy, before_send=before_send, system="keycloak")
            session.hooks["response"].append(_raise_when_busy)
        self._connection.keycloak_openid.connection._s.hooks["response"].append(self._count_login)

    def __repr__(self) -> str:
        return f"KeycloakClient(url={self.url!r}, realm={self.realm!r}, client_id={self.client_id!r})"

    # -- plumbing -------------------------------------------------------------------------------

    @property
    def admin(self) -> KeycloakAdmin:
        """The underlying python-keycloak admin client, for operations not wrapped here."""
        return self._admin

    @property
    def login_count(self) -> int:
        """Token grants this client obtained (one per token lifetime when all goes well)."""
        return self._logins

    def _count_login(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        if response.status_code == 200:
            self._logins += 1

    def _ensure_token(self) -> None:
        """Log in (or renew) once under a lock, so threads sharing this client do not each log in."""
        with self._token_lock:
            expires_at = self._connection.expires_at
            if self._connection.token is None or (
                expires_at is not None and datetime.now(tz=UTC) >= expires_at
            ):
                self._connection.get_token()

    def _what(self, operation: str) -> str:
        return f'Keycloak realm "{self.realm}": {operation}'

    @contextmanager
    def _calling(self, operation: str) -> Iterator[None]:
        """Run library calls for `operation`, turning every failure into a classified error."""
        what = self._what(operation)
        try:
            self._ensure_token()
            yield
        except PolycrateError:
            raise
        except KeycloakError as exc:
            raise self._classify(exc, what) from None
        except requests.RequestException as exc:
            raise TransientError(f"{what}: {type(exc).__name__}") from None

    def _classify(self, exc: KeycloakError, what: str) -> PolycrateError:
        cause = exc.__cause__
        if isinstance(cause, PolycrateError):
            return cause  # e.g. the shared rate limiter found no budget in time
        if isinstance(cause, _ServerBusy):
            return classify_status(
                cause.status_code, what=what, detail=cause.detail, retry_after=cause.retry_after
            )
        if exc.response_code is None:
            if isinstance(cause, requests.exceptions.SSLError):
                return PermanentError(f"{what}: TLS verification failed (set a CA bundle)", reason="TLSError")
            if isinstance(cause, requests.Timeout):
                return TransientError(f"{what}: timed out ({type(cause).__name__})")
            kind = type(cause).__name__ if cause is not None else type(exc).__name__
            return TransientError(f"{what}: cannot connect ({kind})")
        detail = _server_message(exc.response_body)
        if exc.response_code == 401:
            detail = f"{detail} (check client id and secret in the SDP's credentialsRef)"
        elif exc.response_code == 403:
            detail = f"{detail} (the service account needs realm-management roles)"
        return classify_status(exc.response_code, what=what, detail=detail)

    @staticmethod
    def _id_from(location_id: Any, what: str) -> str:
        if not location_id:
            raise PermanentError(
                f"{what}: created, but Keycloak sent no Location header", reason="Unexpected"
            )
        return str(location_id)

    # -- groups ---------------------------------------------------------------------------------

    def check_access(self) -> None:
        """Log in and make one cheap admin read: proves URL, realm, credentials and rights."""
        with self._calling("check access"):
            self._admin.groups_count()

    def find_group_by_path(self, path: str) -> KeycloakGroup | None:
        """The group at `path` ("acme-corp" or "/acme-corp/acme-corp-admins"), or None."""
        clean = path.strip("/")
        plan = planning()
        if plan is not None and (planned := plan.planned(SYSTEM, f"/{clean}")) is not None:
            return planned  # type: ignore[no-any-return]
        return self._read_group(f'find group "/{clean}"', lambda: self._admin.get_group_by_path(clean))

    def _read_group(self, operation: str, read: Callable[[], dict[str, Any]]) -> KeycloakGroup | None:
        """The group `read` returns, or None on a 404: a gone group is an answer, not a failure."""
        try:
            with self._calling(operation):
                rep = read()
        except PermanentError as exc:
            if exc.status_code == 404:
                return None
            raise
        return self._seen(KeycloakGroup.from_representation(rep))

    def _seen(self, group: KeycloakGroup) -> KeycloakGroup:
        self._group_paths[group.id] = group.path
        for sub in group.sub_groups or ():
            self._seen(sub)
        return group

    def get_group(self, group_id: str) -> KeycloakGroup | None:
        """The group with this id (its identity; names are attributes), or None when it is gone."""
        if group_id == PLANNED_ID:
            return None
        return self._read_group(f"get group {group_id}", lambda: self._admin.get_group(group_id))

    def ensure_group(
        self,
        name: str,
        attributes: Attributes | None = None,
        *,
        group_id: str | None = None,
        owner: Owner | None = None,
    ) -> Change:
        """A top-level group `name` exists with `attributes` set (see `update_group_attributes`).

        With `group_id` (the id recorded for it) the group is found by id first and renamed in
        place when its name differs, so members, subgroups and role mappings stay. With `owner`
        the group is marked as the owner's, and an existing one is claimed by the ownership rules.
        Without `group_id` it is created straight away; only a 409 makes it read what is there.
        """
        return self._ensure(None, name, attributes, group_id, owner)[0]

    def ensure_subgroup(
        self,
        parent_path: str,
        name: str,
        attributes: Attributes | None = None,
        *,
        group_id: str | None = None,
        owner: Owner | None = None,
    ) -> Change:
        """Subgroup `name` exists under the group at `parent_path`, with `attributes` set."""
        return self._ensure(parent_path.strip("/"), name, attributes, group_id, owner)[0]

    def ensure_group_tree(
        self,
        name: str,
        attributes: Attributes | None,
        subgroups: Mapping[str, str],
        *,
        group_id: str | None = None,
        subgroup_ids: Mapping[str, str] | None = None,
        owner: Owner | None = None,
    ) -> tuple[Change, dict[str, Change]]:
        """`ensure_group` for `name`, then `ensure_subgroup` for each of `subgroups` (key → name,
        e.g. role → "acme-corp-admins", ids recorded under the same keys in `subgroup_ids`).

        One read shows a converged tree: group-by-path answers with the whole subtree, so the
        subgroups are compared from that answer; under a group just created they are created
        without looking. A group renamed in place has its subgroups looked up one by one.
        """
        recorded = subgroup_ids or {}
        change, group = self._ensure(None, name, attributes, group_id, owner)
        changes = {
            key: self._ensure(name, sub, None, recorded.get(key), owner, parent=group)[0]
            for key, sub in subgroups.items()
        }
        return change, changes

    def _ensure(
        self,
        parent_path: str | None,
        name: str,
        attributes: Attributes | None,
        group_id: str | None,
        owner: Owner | None,
        *,
        parent: KeycloakGroup | None = None,
    ) -> tuple[Change, KeycloakGroup | None]:
        """The step and, unless it renamed, the group as it is now (with its subgroups if known).

        `parent` is the parent group as just read or created, so its id and (when known) its
        subgroups need no lookup. Reads happen only where an answer cannot tell: a group with a
        recorded id is read (drift, renames), one without is created and read only on a 409.
        """
        path = f"{parent_path}/{name}" if parent_path else name
        what = f'ensure group "/{path}"'
        _validate_name(name, self._what(what))
        wanted = {k: list(v) for k, v in (attributes or {}).items()}
        if owner is not None:
            wanted.update(owner.keycloak_attributes())
        plan = planning()
        siblings = parent.sub_groups if parent is not None else None
        existing: KeycloakGroup | None
        if siblings is not None:
            existing = next((g for g in siblings if g.name == name), None)
        elif group_id is None and plan is None:
            existing = None  # not looked up: the create below answers 409 if it exists
        else:
            existing = self.find_group_by_path(path)
        if group_id and (existing is None or existing.id != group_id):
            # Not where its name says: the recorded group may carry an older name.
            current = next((g for g in siblings or () if g.id == group_id), None) or self.get_group(group_id)
            if current is not None and current.name != name:
                return self._rename(current, path, name, wanted, taken=existing), None
        if existing is None:
            created = self._create(parent_path, parent, name, path, wanted, what)
            if created is not None:
                return Change("created", created.id), created
            # It exists (made by someone else, or by us before a crash): claim it as found.
            existing = self.find_group_by_path(path)
            if existing is None:
                raise TransientError(f"{self._what(what)}: Keycloak reports a conflict but no such group")
        adopted = claim(
            owner,
            Mark.from_keycloak(existing.attributes),
            what=f'Keycloak group "/{path}" in realm "{self.realm}"',
            recorded=existing.id == group_id,
        )
        change = self._update_attributes(existing, wanted, what)
        if adopted and existing.id != group_id:
            return Change("updated", existing.id, detail="adopted"), existing
        return change, existing

    def _create(
        self,
        parent_path: str | None,
        parent: KeycloakGroup | None,
        name: str,
        path: str,
        wanted: dict[str, list[str]],
        what: str,
    ) -> KeycloakGroup | None:
        """Create the group; None when Keycloak answers 409 (a group of that name exists)."""
        parent_id = parent.id if parent is not None else None
        if parent_path and parent is None:
            found = self.find_group_by_path(parent_path)
            if found is None:
                raise DependencyNotFoundError(
                    f'{self._what(what)}: parent group "/{parent_path}" does not exist'
                )
            parent_id = found.id
        payload: dict[str, Any] = {"name": name}
        if wanted:
            payload["attributes"] = wanted
        if (plan := planning()) is not None:
            group = KeycloakGroup(PLANNED_ID, name, f"/{path}", parent_id, dict(wanted), sub_groups=())
            plan.record(
                SYSTEM, "create", f'Keycloak group "/{path}"', _describe(wanted), created=(f"/{path}", group)
            )
            return group
        try:
            with self._calling(what):
                location_id = self._admin.create_group(payload, parent=parent_id)
        except PermanentError as exc:
            if exc.status_code != 409:
                raise
            return None
        group_id = self._id_from(location_id, self._what(what))
        return self._seen(KeycloakGroup(group_id, name, f"/{path}", parent_id, dict(wanted), sub_groups=()))

    def _rename(
        self,
        group: KeycloakGroup,
        path: str,
        name: str,
        attributes: Attributes,
        *,
        taken: KeycloakGroup | None,
    ) -> Change:
        """Rename the group in place: same id, so members, subgroups and role mappings stay.
        `taken` is what was found at the new path (looked up already by the caller)."""
        what = f'rename group "{group.path}" to "/{path}"'
        if taken is not None and taken.id != group.id:
            raise PermanentError(
                f'{self._what(what)}: a group "/{path}" exists already (id {taken.id}); choose another name '
                "or delete that group",
                reason="NameTaken",
            )
        merged = {**group.attributes, **{k: list(v) for k, v in attributes.items()}}
        detail = f'renamed "{group.path}" → "/{path}"'
        if (plan := planning()) is not None:
            plan.record(SYSTEM, "update", f'Keycloak group "{group.path}"', detail)
            return Change("updated", group.id, detail=detail)
        with self._calling(what):
            self._admin.update_group(group.id, {"name": name, "attributes": merged})
        return Change("updated", group.id, detail=detail)

    def update_group_attributes(self, path: str, attributes: Attributes) -> Change:
        """Set the named attribute keys; keys not named are left as they are (others may own them)."""
        what = f'update attributes of group "/{path.strip("/")}"'
        group = self.find_group_by_path(path)
        if group is None:
            raise DependencyNotFoundError(f"{self._what(what)}: the group does not exist")
        return self._update_attributes(group, attributes, what)

    def _update_attributes(self, group: KeycloakGroup, attributes: Attributes | None, what: str) -> Change:
        if not attributes:
            return Change("unchanged", group.id)
        wanted = {k: list(v) for k, v in attributes.items()}
        merged = {**group.attributes, **wanted}
        if merged == group.attributes:
            return Change("unchanged", group.id)
        changed = sorted(k for k in wanted if group.attributes.get(k) != wanted[k])
        detail = f"attributes {', '.join(changed)}"
        if (plan := planning()) is not None:
            plan.record(SYSTEM, "update", f'Keycloak group "{group.path}"', detail)
            return Change("updated", group.id, detail=detail)
        with self._calling(what):
            self._admin.update_group(group.id, {"name": group.name, "attributes": merged})
        return Change("updated", group.id, detail=detail)

    def list_subgroups(self, parent_path: str) -> list[KeycloakGroup]:
        """Direct subgroups of the group at `parent_path`, all pages."""
        what = f'list subgroups of "/{parent_path.strip("/")}"'
        parent = self.find_group_by_path(parent_path)
        if parent is None:
            raise DependencyNotFoundError(f"{self._what(what)}: the group does not exist")
        if parent.id == PLANNED_ID:
            return []
        with self._calling(what):
            reps = self._admin.get_group_children(parent.id, query={"briefRepresentation": False})
        return [KeycloakGroup.from_representation(rep) for rep in reps]

    def subgroups(self, group: KeycloakGroup) -> list[KeycloakGroup]:
        """Direct subgroups of `group`: from its own answer when that held them all (group-by-path
        answers with the subtree), else read."""
        if group.sub_groups is not None:
            return list(group.sub_groups)
        return self.list_subgroups(group.path)

    def delete_group(self, path: str) -> bool:
        """Delete the group at `path` with its subgroups; False when it was already gone."""
        clean = path.strip("/")
        group = self.find_group_by_path(clean)
        if group is None:
            return False
        if (plan := planning()) is not None:
            plan.record(SYSTEM, "delete", f'Keycloak group "/{clean}"', "with its subgroups and memberships")
            return True
        try:
            with self._calling(f'delete group "/{clean}"'):
                self._admin.delete_group(group.id)
        except PermanentError as exc:
            if exc.status_code == 404:
                return False
            raise
        return True

    # -- users and membership -------------------------------------------------------------------

    def find_user(self, username: str | None, email: str | None = None) -> KeycloakUser | None:
        """The user with exactly this username, else the one with exactly this email, else None."""
        if not username and not email:
            raise InvalidSpecError(self._what("find user: needs a username or an email"))
        if username:
            found = self._find_user_by("username", username)
            if found is not None:
                return found
        if email:
            return self._find_user_by("email", email)
        return None

    def _find_user_by(self, field_name: str, value: str) -> KeycloakUser | None:
        with self._calling(f'find user by {field_name} "{value}"'):
            reps = self._admin.get_users({field_name: value, "exact": True})
        wanted = value.lower()
        for rep in reps:
            if str(rep.get(field_name, "")).lower() == wanted:
                user = KeycloakUser.from_representation(rep)
                self._usernames[user.id] = user.username
                return user
        return None

    def list_group_members(self, group_id: str) -> list[KeycloakUser]:
        """Direct members of a group, all pages."""
        with self._calling(f"list members of group {group_id}"):
            reps = self._admin.get_group_members(group_id, query={"briefRepresentation": True})
        return [KeycloakUser.from_representation(rep) for rep in reps]

    def list_user_groups(self, user_id: str) -> list[KeycloakGroup]:
        """Groups the user is a direct member of, all pages."""
        with self._calling(f"list groups of user {user_id}"):
            reps = self._admin.get_user_groups(user_id, brief_representation=True)
        return [self._seen(KeycloakGroup.from_representation(rep)) for rep in reps]

    def _membership(self, user_id: str, group_id: str) -> str:
        """How a planned membership write names user and group."""
        user = self._usernames.get(user_id, f"user {user_id}")
        if group_id not in self._group_paths:
            self.get_group(group_id)  # only plans ask: one read for a readable line
        return f'membership of {user} in Keycloak group "{self._group_paths.get(group_id, group_id)}"'

    def _is_member(self, user_id: str, group_id: str) -> bool:
        return any(group.id == group_id for group in self.list_user_groups(user_id))

    def add_user_to_group(self, user_id: str, group_id: str, *, checked: bool = False) -> Change:
        """The user is a member of the group ("created" when this call added it). `checked`: the
        caller has just read the user's groups and found it no member, so it is not read again."""
        if not checked and self._is_member(user_id, group_id):
            return Change("unchanged", group_id)
        if (plan := planning()) is not None:
            plan.record(SYSTEM, "create", self._membership(user_id, group_id))
            return Change("created", group_id)
        with self._calling(f"add user {user_id} to group {group_id}"):
            self._admin.group_user_add(user_id, group_id)
        return Change("created", group_id)

    def remove_user_from_group(self, user_id: str, group_id: str, *, checked: bool = False) -> Change:
        """The user is not a member ("absent" when it was not, or user or group are gone).
        `checked`: the caller has just read the user's groups and found it a member."""
        try:
            if not checked and not self._is_member(user_id, group_id):
                return Change("absent", group_id)
            if (plan := planning()) is not None:
                plan.record(SYSTEM, "delete", self._membership(user_id, group_id))
                return Change("deleted", group_id)
            with self._calling(f"remove user {user_id} from group {group_id}"):
                self._admin.group_user_remove(user_id, group_id)
        except PermanentError as exc:
            if exc.status_code == 404:
                return Change("absent", group_id)
            raise
        return Change("deleted", group_id)


_clients: OwnerClients[KeycloakClient] = OwnerClients(SYSTEM, KeycloakClient)


def get_client(
    sdp: str,
    url: str,
    realm: str,
    credentials: KeycloakCredentials,
    *,
    token_realm: str | None = None,
    policy: HttpPolicy | None = None,
    limiter: RateLimiter | None = None,
) -> KeycloakClient:
    """The process's client for one SDP ("namespace/name"), reused so its token is reused.

    The cache key holds the SDP, URL, realms, policy and a digest of the credentials (in memory
    only), so rotated credentials or a changed URL get a fresh client and a fresh login.
    """
    return _clients.lookup(
        sdp,
        url,
        lambda: KeycloakClient(
            url, realm, credentials, token_realm=token_realm, policy=policy, limiter=limiter
        ),
        policy=policy,
        selects=(realm, token_realm, credentials.fingerprint),
    )


clear_clients = _clients.clear
