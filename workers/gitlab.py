"""GitLab groups, subgroups, group members and users, as idempotent steps for the workers.

Built on python-gitlab, whose requests session is ours: pooled, with the shared HTTP policy
(timeouts, TLS, optional CA bundle) and the SDP's Redis rate limit in front of every request.
Each step reads, compares and writes only on a difference and reports a `Change`; a create
that loses a race to another worker (400 "has already been taken", 409 "Member already exists")
reads the winner back and converges. Lists follow GitLab's pagination to the last page.
429 and 5xx are stopped in the session (python-gitlab would sleep and retry in the worker) and
become TransientError carrying Retry-After, so the runtime's retry policy decides when; other
4xx are PermanentError. Messages name the operation and object, never the token.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

import gitlab
import requests
from gitlab.exceptions import GitlabAuthenticationError, GitlabError

from polycrate.errors import InvalidSpecError, PermanentError, PolycrateError, TransientError
from polycrate.httppolicy import TRANSIENT_STATUS, HttpPolicy, classify_status, new_session, parse_retry_after
from polycrate.ratelimit import RateLimiter
from polycrate.roles import GITLAB_ACCESS_LEVELS
from workers.change import Change
from workers.owner_clients import OwnerClients
from workers.ownership import Mark, Owner, claim
from workers.plan import PLANNED_NUMERIC_ID, planning

log = logging.getLogger(__name__)

SYSTEM = "GitLab"
MAX_PER_PAGE = 100
VISIBILITIES = ("private", "internal", "public")
_LEVEL_NAMES = {level: name for name, level in GITLAB_ACCESS_LEVELS.items()}
_PATH_SEGMENT = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


def parse_access_level(value: str | int) -> int:
    """The numeric GitLab access level for a role name ("developer") or a level (30, "30")."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value in _LEVEL_NAMES:
            return value
    elif isinstance(value, str):
        text = value.strip().lower()
        if text in GITLAB_ACCESS_LEVELS:
            return GITLAB_ACCESS_LEVELS[text]
        if text.isdigit() and int(text) in _LEVEL_NAMES:
            return int(text)
    choices = ", ".join(f"{name} ({level})" for name, level in GITLAB_ACCESS_LEVELS.items())
    raise InvalidSpecError(f'GitLab access level "{value}" is not one of {choices}')


def validate_group_path(full_path: str) -> str:
    """The full path without surrounding slashes, or InvalidSpecError naming the bad segment."""
    path = full_path.strip().strip("/")
    if not path:
        raise InvalidSpecError("GitLab group path is empty (use e.g. acme-corp or acme-corp/team)")
    for segment in path.split("/"):
        if not _PATH_SEGMENT.match(segment) or segment.endswith((".", ".git", ".atom")):
            raise InvalidSpecError(
                f'GitLab group path "{full_path}": segment "{segment}" may contain only letters, digits, '
                "'_', '-' and '.', must not start with '-' or '.' and must not end in '.', '.git' or '.atom'"
            )
    return path


@dataclass(frozen=True)
class GitLabGroup:
    id: int
    full_path: str
    name: str
    path: str
    visibility: str
    description: str
    parent_id: int | None
    web_url: str

    @classmethod
    def from_api(cls, attrs: Mapping[str, Any]) -> GitLabGroup:
        return cls(
            id=int(attrs["id"]),
            full_path=attrs["full_path"],
            name=attrs.get("name", ""),
            path=attrs.get("path", ""),
            visibility=attrs.get("visibility", ""),
            description=attrs.get("description") or "",
            parent_id=attrs.get("parent_id"),
            web_url=attrs.get("web_url", ""),
        )


@dataclass(frozen=True)
class GitLabMember:
    user_id: int
    username: str
    name: str
    access_level: int
    state: str

    @classmethod
    def from_api(cls, attrs: Mapping[str, Any]) -> GitLabMember:
        return cls(
            user_id=int(attrs["id"]),
            username=attrs.get("username", ""),
            name=attrs.get("name", ""),
            access_level=int(attrs["access_level"]),
            state=attrs.get("state", ""),
        )


@dataclass(frozen=True)
class GitLabUser:
    id: int
    username: str
    name: str
    state: str
    email: str | None = None

    @classmethod
    def from_api(cls, attrs: Mapping[str, Any]) -> GitLabUser:
        return cls(
            id=int(attrs["id"]),
            username=attrs.get("username", ""),
            name=attrs.get("name", ""),
            state=attrs.get("state", ""),
            email=attrs.get("email") or attrs.get("public_email") or None,
        )


class _ServerBusy(Exception):
    """Raised inside the session for 429/5xx, so python-gitlab neither sleeps nor retries and
    the Retry-After header reaches the retry policy."""

    def __init__(self, status_code: int, detail: str, retry_after: float | None) -> None:
        super().__init__(f"HTTP {status_code}")
        self.status_code = status_code
        self.detail = detail
        self.retry_after = retry_after


def _server_message(message: Any) -> str:
    """GitLab's error text: a string, or a `{field: [errors]}` object from a validation error."""
    if isinstance(message, bytes):
        try:
            message = json.loads(message)
        except ValueError:
            return message.decode(errors="replace").strip()[:300]
        if isinstance(message, dict):
            message = message.get("message") or message.get("error") or message
    if isinstance(message, dict):
        return "; ".join(
            f"{field} {', '.join(map(str, errors)) if isinstance(errors, list) else errors}"
            for field, errors in message.items()
        )
    return str(message).strip()[:300]


def _raise_when_busy(response: requests.Response, *args: Any, **kwargs: Any) -> None:
    if response.status_code in TRANSIENT_STATUS or response.status_code >= 500:
        raise _ServerBusy(
            response.status_code,
            _server_message(response.content),
            parse_retry_after(response.headers.get("Retry-After")),
        )


def _not_found(exc: GitlabError) -> bool:
    return exc.response_code == 404


class GitLabClient:
    """Idempotent steps against one GitLab, authenticated with the SDP's access token.

    `url` is the server root (`https://gitlab.example.com`, without `/api/v4`). The token needs
    the `api` scope and rights to create groups (an administrator's or a group owner's token).
    """

    def __init__(
        self,
        url: str,
        token: str,
        *,
        policy: HttpPolicy | None = None,
        limiter: RateLimiter | None = None,
        per_page: int = MAX_PER_PAGE,
    ) -> None:
        self.url = url.rstrip("/")
        self.policy = policy or HttpPolicy()
        self.limiter = limiter
        # Names seen in answers, so a planned write can say "john.doe in acme-corp", not "2 in 1".
        self._group_paths: dict[int, str] = {}
        self._usernames: dict[int, str] = {}
        session = new_session(self.policy, before_send=self._before_send, system="gitlab")
        session.hooks["response"].append(_raise_when_busy)
        self._gl = gitlab.Gitlab(
            self.url,
            private_token=token,
            session=session,
            # python-gitlab passes verify= on every request, which would override the session's.
            ssl_verify=self.policy.verify_arg,
            # None lets the policy adapter apply its (connect, read) timeouts.
            timeout=None,
            per_page=max(1, min(per_page, MAX_PER_PAGE)),
            retry_transient_errors=False,
            # GitLab builds pagination links from its external_url; stay on the URL we were given.
            keep_base_url=True,
        )

    def __repr__(self) -> str:
        return f"GitLabClient(url={self.url!r})"

    def close(self) -> None:
        self._gl.session.close()

    @property
    def gitlab(self) -> gitlab.Gitlab:
        """The underlying python-gitlab client, for operations not wrapped here."""
        return self._gl

    def _before_send(self) -> None:
        if self.limiter is not None:
            self.limiter.acquire()

    # -- plumbing -------------------------------------------------------------------------------

    @contextmanager
    def _calling(self, operation: str) -> Iterator[None]:
        """Run library calls for `operation`, turning every failure into a classified error."""
        what = f"{SYSTEM}: {operation}"
        try:
            yield
        except PolycrateError:
            raise
        except _ServerBusy as busy:
            raise classify_status(
                busy.status_code, what=what, detail=busy.detail, retry_after=busy.retry_after
            ) from None
        except GitlabAuthenticationError as exc:
            detail = f"{_server_message(exc.error_message)} (check the token in the SDP's credentialsRef)"
            raise classify_status(401, what=what, detail=detail) from None
        except GitlabError as exc:
            if exc.response_code is None:
                raise PermanentError(
                    f"{what}: unexpected answer ({type(exc).__name__})", reason="Unexpected"
                ) from None
            detail = _server_message(exc.error_message)
            if exc.response_code == 403:
                detail = f"{detail} (the token needs the api scope and owner or admin rights)"
            raise classify_status(exc.response_code, what=what, detail=detail) from None
        except requests.exceptions.SSLError:
            raise PermanentError(
                f"{what}: TLS verification failed (set a CA bundle for a private CA)", reason="TLSError"
            ) from None
        except requests.Timeout as exc:
            raise TransientError(f"{what}: timed out ({type(exc).__name__})") from None
        except requests.RequestException as exc:
            raise TransientError(f"{what}: cannot connect ({type(exc).__name__})") from None

    # -- groups ---------------------------------------------------------------------------------

    def check_access(self) -> None:
        """One cheap authenticated read: proves URL and token."""
        with self._calling("check access"):
            self._gl.groups.list(per_page=1, get_all=False)

    def get_group(self, group: str | int) -> GitLabGroup | None:
        """The group with this full path or numeric id, or None when GitLab has none."""
        ref = validate_group_path(group) if isinstance(group, str) else group
        plan = planning()
        if plan is not None and isinstance(ref, str) and (planned := plan.planned(SYSTEM, ref)) is not None:
            return planned  # type: ignore[no-any-return]
        if ref == PLANNED_NUMERIC_ID:
            return None
        with self._calling(f'get group "{ref}"'):
            try:
                # Without this GitLab embeds the group's projects in the answer.
                found = self._gl.groups.get(ref, with_projects="false")
            except GitlabError as exc:
                if _not_found(exc):
                    return None
                raise
        group = GitLabGroup.from_api(found.attributes)
        self._group_paths[group.id] = group.full_path
        return group

    def ensure_group(
        self,
        full_path: str,
        *,
        visibility: str | None = None,
        description: str | None = None,
        name: str | None = None,
        group_id: int | None = None,
        owner: Owner | None = None,
    ) -> Change:
        """Create the group (and any missing parent) or bring visibility/description/name in line.

        None means "leave as it is" (GitLab's default on create). Missing parents are created
        with the same visibility, because GitLab refuses a subgroup more visible than its parent.
        With `group_id` (the id recorded for it) the group is read by id, and when its path changed
        the path is changed in place (same id: projects, members and history stay); without one
        the group is created at once and read only when GitLab says the path is taken. With `owner`
        the description ends in the owner's marker and an existing group is claimed by the
        ownership rules.
        """
        path = validate_group_path(full_path)
        self._check_visibility(path, visibility)
        existing: GitLabGroup | None = None
        moved = ""
        if group_id:
            # The recorded id is the identity: one read finds the group wherever its path is now.
            existing = self.get_group(group_id)
            if existing is not None and existing.full_path != path:
                existing, moved = self._move(existing, path), f"path {existing.full_path!r} → {path!r}"
        elif planning() is not None:
            existing = self.get_group(path)
        # Otherwise nothing is looked up: the create answers "has already been taken" if it exists.
        if existing is None:
            # The marked description is for the create only: a group found instead keeps its own text.
            marked = owner.gitlab_description(description or "") if owner is not None else description
            group, created = self._create_group(path, visibility=visibility, description=marked, name=name)
            if created:
                log.info("GitLab group %s created (id %s)", path, group.id)
                return Change("created", id=group.id, detail=f"group {path} created")
            existing = group
        adopted = claim(
            owner,
            Mark.from_gitlab(existing.description),
            what=f'GitLab group "{path}"',
            recorded=existing.id == group_id,
        )
        if owner is not None:
            description = owner.gitlab_description(
                description if description is not None else existing.description
            )
        change = self._converge(existing, visibility=visibility, description=description, name=name)
        details = [
            d for d in (moved, "adopted" if adopted and existing.id != group_id else "", change.detail) if d
        ]
        if not details:
            return change
        return Change("updated", id=existing.id, detail=", ".join(details))

    def _move(self, group: GitLabGroup, path: str) -> GitLabGroup:
        """Change the group's path (and its name, when the name was the path) in place."""
        parent_path, _, segment = path.rpartition("/")
        old_parent = group.full_path.rpartition("/")[0]
        if parent_path != old_parent:
            raise PermanentError(
                f'{SYSTEM}: group "{group.full_path}" (id {group.id}): groupPath "{path}" would move it under '
                f'another parent ("{parent_path or "top level"}"); only the last segment can change in place '
                "(keep the parent, or delete and recreate the object)",
                reason="ImmutableField",
            )
        taken = self.get_group(path)
        if taken is not None and taken.id != group.id:
            raise PermanentError(
                f'{SYSTEM}: rename group "{group.full_path}" to "{path}": the path is taken by group {taken.id}; '
                "choose another groupPath",
                reason="NameTaken",
            )
        changes: dict[str, Any] = {"path": segment}
        if group.name == group.path:
            changes["name"] = segment
        moved = replace(group, full_path=path, path=segment, name=changes.get("name", group.name))
        if (plan := planning()) is not None:
            plan.record(SYSTEM, "update", f'GitLab group "{group.full_path}"', f"path → {path!r}")
            return moved
        with self._calling(f'rename group "{group.full_path}" to "{path}"'):
            self._gl.groups.update(group.id, changes)
        log.info("GitLab group %s (id %s) moved to %s", group.full_path, group.id, path)
        return moved

    def update_group(
        self,
        full_path: str,
        *,
        visibility: str | None = None,
        description: str | None = None,
        name: str | None = None,
    ) -> Change:
        """Bring an existing group's visibility/description/name in line; it must exist."""
        path = validate_group_path(full_path)
        self._check_visibility(path, visibility)
        existing = self.get_group(path)
        if existing is None:
            raise PermanentError(
                f'{SYSTEM}: update group "{path}": the group does not exist', reason="NotFound"
            )
        return self._converge(existing, visibility=visibility, description=description, name=name)

    def delete_group(self, full_path: str) -> bool:
        """Ask GitLab to delete the group and its subgroups: True when accepted, False when absent.

        GitLab deletes asynchronously (202), and on instances with delayed deletion it keeps the
        group marked for deletion for a while.
        """
        path = validate_group_path(full_path)
        if (plan := planning()) is not None:
            if self.get_group(path) is None:
                return False
            plan.record(SYSTEM, "delete", f'GitLab group "{path}"', "with its subgroups and projects")
            return True
        with self._calling(f'delete group "{path}"'):
            try:
                self._gl.groups.delete(path)
            except GitlabError as exc:
                if _not_found(exc):
                    return False
                raise
        log.info("GitLab group %s deleted", path)
        return True

    def list_subgroups(self, full_path: str) -> list[GitLabGroup]:
        """The direct subgroups of a group, every page."""
        path = validate_group_path(full_path)
        with self._calling(f'list subgroups of "{path}"'):
            found = self._gl.groups.get(path, lazy=True).subgroups.list(get_all=True)
        return [GitLabGroup.from_api(g.attributes) for g in found]

    @staticmethod
    def _check_visibility(path: str, visibility: str | None) -> None:
        if visibility is not None and visibility not in VISIBILITIES:
            raise InvalidSpecError(
                f'GitLab group "{path}": visibility "{visibility}" is not one of {", ".join(VISIBILITIES)}'
            )

    def _create_group(
        self, path: str, *, visibility: str | None, description: str | None, name: str | None
    ) -> tuple[GitLabGroup, bool]:
        """Create `path`, creating missing parents first; (group, False) if another worker won."""
        parent_path, _, segment = path.rpartition("/")
        payload: dict[str, Any] = {"name": name or segment, "path": segment}
        if parent_path:
            parent = self.get_group(parent_path)
            if parent is None:
                parent, created = self._create_group(
                    parent_path, visibility=visibility, description=None, name=None
                )
                if created:
                    log.info("GitLab group %s created as parent of %s (id %s)", parent_path, path, parent.id)
            payload["parent_id"] = parent.id
        if visibility is not None:
            payload["visibility"] = visibility
        if description is not None:
            payload["description"] = description
        if (plan := planning()) is not None:
            detail = ", ".join(f"{k} {v!r}" for k, v in payload.items() if k in ("visibility",))
            plan.record(SYSTEM, "create", f'GitLab group "{path}"', detail)
            planned = GitLabGroup(
                PLANNED_NUMERIC_ID,
                path,
                payload["name"],
                segment,
                visibility or "",
                description or "",
                None,
                "",
            )
            plan.created[(SYSTEM, path)] = planned
            return planned, True
        with self._calling(f'create group "{path}"'):
            try:
                return GitLabGroup.from_api(self._gl.groups.create(payload).attributes), True
            except GitlabError as exc:
                if exc.response_code != 400 or "has already been taken" not in str(exc.error_message):
                    raise
        # Taken: by a concurrent worker (read it back), or by a user namespace (a real conflict).
        winner = self.get_group(path)
        if winner is None:
            raise PermanentError(
                f'{SYSTEM}: create group "{path}": the path is taken by another namespace (a user or a '
                "group GitLab does not show this token); choose another groupPath",
                reason="Conflict",
            )
        return winner, False

    def _converge(
        self, group: GitLabGroup, *, visibility: str | None, description: str | None, name: str | None
    ) -> Change:
        wanted = {"visibility": visibility, "description": description, "name": name}
        differs = {
            key: value for key, value in wanted.items() if value is not None and getattr(group, key) != value
        }
        if not differs:
            return Change("unchanged", id=group.id)
        detail = ", ".join(f"{key} {getattr(group, key)!r} → {value!r}" for key, value in differs.items())
        if (plan := planning()) is not None:
            plan.record(SYSTEM, "update", f'GitLab group "{group.full_path}"', detail)
            return Change("updated", id=group.id, detail=detail)
        with self._calling(f'update group "{group.full_path}"'):
            self._gl.groups.update(group.id, differs)
        log.info("GitLab group %s updated: %s", group.full_path, detail)
        return Change("updated", id=group.id, detail=detail)

    # -- members --------------------------------------------------------------------------------

    def _group_ref(self, group: str | int) -> str | int:
        return validate_group_path(group) if isinstance(group, str) else group

    def _membership(self, ref: str | int, user_id: int) -> str:
        """How a planned membership write names user and group."""
        group = self._group_paths.get(ref, ref) if isinstance(ref, int) else ref
        return f'membership of {self._usernames.get(user_id, f"user {user_id}")} in GitLab group "{group}"'

    @staticmethod
    def _planned_group(ref: str | int) -> bool:
        """A group this plan would create: it has no members yet."""
        plan = planning()
        if plan is None:
            return False
        return ref == PLANNED_NUMERIC_ID or (isinstance(ref, str) and plan.planned(SYSTEM, ref) is not None)

    def get_member(self, group: str | int, user_id: int) -> GitLabMember | None:
        """The user's direct membership of the group, or None."""
        ref = self._group_ref(group)
        if self._planned_group(ref):
            return None
        with self._calling(f'get member {user_id} of group "{ref}"'):
            try:
                found = self._gl.groups.get(ref, lazy=True).members.get(user_id)
            except GitlabError as exc:
                if _not_found(exc):
                    return None
                raise
        return GitLabMember.from_api(found.attributes)

    def ensure_member(self, group: str | int, user_id: int, access_level: str | int) -> Change:
        """Make the user a direct member with exactly this access level (a role name or number)."""
        ref = self._group_ref(group)
        wanted = parse_access_level(access_level)
        current = self.get_member(ref, user_id)
        if current is None:
            if self._add_member(ref, user_id, wanted):
                log.info("GitLab user %s added to group %s as %s", user_id, ref, _LEVEL_NAMES[wanted])
                return Change("created", id=user_id, detail=f"access level {_LEVEL_NAMES[wanted]}")
            # 409: another worker added the user meanwhile; converge on what it wrote.
            current = self.get_member(ref, user_id)
            if current is None:
                raise TransientError(
                    f'{SYSTEM}: add user {user_id} to group "{ref}": membership changing concurrently'
                )
        if current.access_level == wanted:
            return Change("unchanged", id=user_id)
        detail = f"access level {_LEVEL_NAMES.get(current.access_level, current.access_level)} → {_LEVEL_NAMES[wanted]}"
        if (plan := planning()) is not None:
            plan.record(SYSTEM, "update", self._membership(ref, user_id), detail)
            return Change("updated", id=user_id, detail=detail)
        with self._calling(f'update member {user_id} of group "{ref}"'):
            self._gl.groups.get(ref, lazy=True).members.update(user_id, {"access_level": wanted})
        log.info("GitLab member %s of group %s updated: %s", user_id, ref, detail)
        return Change("updated", id=user_id, detail=detail)

    def _add_member(self, ref: str | int, user_id: int, level: int) -> bool:
        """True when added, False when GitLab says the user is a member already (409)."""
        if (plan := planning()) is not None:
            target = self._membership(ref, user_id)
            plan.record(SYSTEM, "create", target, f"access level {_LEVEL_NAMES[level]}")
            return True
        with self._calling(f'add user {user_id} to group "{ref}"'):
            try:
                self._gl.groups.get(ref, lazy=True).members.create(
                    {"user_id": user_id, "access_level": level}
                )
            except GitlabError as exc:
                if exc.response_code == 409:
                    return False
                raise
        return True

    def remove_member(self, group: str | int, user_id: int) -> bool:
        """Remove the user's direct membership: True when removed, False when there was none."""
        ref = self._group_ref(group)
        if (plan := planning()) is not None:
            if self.get_member(ref, user_id) is None:
                return False
            plan.record(SYSTEM, "delete", self._membership(ref, user_id))
            return True
        with self._calling(f'remove user {user_id} from group "{ref}"'):
            try:
                self._gl.groups.get(ref, lazy=True).members.delete(user_id)
            except GitlabError as exc:
                if _not_found(exc):
                    return False
                raise
        log.info("GitLab user %s removed from group %s", user_id, ref)
        return True

    def list_members(self, group: str | int, *, inherited: bool = False) -> list[GitLabMember]:
        """Direct members (or, with `inherited`, also those of ancestor groups), every page."""
        ref = self._group_ref(group)
        if self._planned_group(ref):
            return []
        with self._calling(f'list members of group "{ref}"'):
            handle = self._gl.groups.get(ref, lazy=True)
            manager = handle.members_all if inherited else handle.members
            found = manager.list(get_all=True)
        return [GitLabMember.from_api(m.attributes) for m in found]

    # -- users ----------------------------------------------------------------------------------

    def find_user(self, username: str | None, email: str | None = None) -> GitLabUser | None:
        """The user with this username (case-insensitive), else the one with this email, else None."""
        if not username and not email:
            raise InvalidSpecError("GitLab user lookup needs a username or an email")
        if username:
            with self._calling(f'find user "{username}"'):
                found = self._gl.users.list(username=username, get_all=True)
            match = next(
                (u for u in found if u.attributes.get("username", "").lower() == username.lower()), None
            )
            if match is not None:
                user = GitLabUser.from_api(match.attributes)
                self._usernames[user.id] = user.username
                return user
        if email:
            with self._calling("find user by email"):
                found = self._gl.users.list(search=email, get_all=True)
            for user in found:
                candidate = GitLabUser.from_api(user.attributes)
                if candidate.email is not None and candidate.email.lower() == email.lower():
                    self._usernames[candidate.id] = candidate.username
                    return candidate
        return None


# --- one client per SDP, URL and token per process ---------------------------------------------

_clients: OwnerClients[GitLabClient] = OwnerClients(SYSTEM, GitLabClient, empty="the SDP's token")


def get_client(
    sdp: str,
    url: str,
    token: str,
    *,
    policy: HttpPolicy | None = None,
    limiter: RateLimiter | None = None,
) -> GitLabClient:
    """The process's client for SDP `sdp` ("namespace/name"), reused so its connections are.

    The key holds the SDP, URL, policy and a digest of the token (in memory only): a rotated
    token or a changed URL gets a fresh client. The latest `limiter` is always the one applied,
    so a changed rate limit in the SDP takes effect on the next call.
    """
    client = _clients.get(sdp, url, token, policy=policy, limiter=limiter)
    client.limiter = limiter
    return client


clear_clients = _clients.clear
