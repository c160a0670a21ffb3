"""Argo CD: AppProjects and cluster registrations as idempotent read-compare-write steps.

Every step reads the current object, compares only the fields the operator owns and writes
only on a difference, so a redelivered task converges without extra writes; a project not yet
recorded as the owner's is created without a read first (Argo CD's answer to a create without
upsert says whether one exists). A project update
keeps what Argo CD owns — each role's jwtTokens, status, resourceVersion, and spec fields the
operator does not manage (e.g. clusterResourceWhitelist) — and re-reads on a resourceVersion
conflict. Cluster credentials are write-only in Argo CD's API, so a digest of the desired
config kept in a cluster annotation tells whether they changed. Argo CD lists are never
paged. The bearer token stays in the session's Authorization header: never in a URL, a log
line or an error message; one pooled session per SDP, URL and token lives per process.
"""

from __future__ import annotations

import base64
import binascii
import copy
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import requests
import yaml

from polycrate.errors import DependencyNotFoundError, InvalidSpecError, TransientError
from polycrate.httppolicy import HttpPolicy, json_body, new_session, raise_for_response, transport_errors
from polycrate.ratelimit import RateLimiter
from workers.change import Change
from workers.owner_clients import OwnerClients
from workers.ownership import Mark, Owner, claim
from workers.plan import planned_response, planning

SYSTEM = "Argo CD"
PROJECT_PLACEHOLDER = "{project}"
CONFIG_DIGEST_ANNOTATION = "polycrate.io/config-digest"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY_VALUE = "polycrate-operator"
_OWNED_PROJECT_FIELDS = ("description", "sourceRepos", "destinations", "roles")
_CONFLICT_ATTEMPTS = 3
# What argocd-server answers (400, InvalidArgument) to a create without upsert of a project that
# exists with another spec.
_SPEC_DIFFERS = "existing project spec is different"


# --- what a project is made of --------------------------------------------------------------


@dataclass(frozen=True)
class Destination:
    """Where the project's applications may deploy: a server URL (or cluster name) and namespace."""

    server: str = ""
    namespace: str = ""
    name: str = ""

    def as_api(self) -> dict[str, str]:
        return {
            k: v
            for k, v in (("server", self.server), ("namespace", self.namespace), ("name", self.name))
            if v
        }


@dataclass(frozen=True)
class ProjectRole:
    """One AppProject role: casbin policies and the OIDC groups bound to it."""

    name: str
    policies: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    description: str = ""

    def as_api(self) -> dict[str, Any]:
        role: dict[str, Any] = {"name": self.name}
        if self.description:
            role["description"] = self.description
        if self.policies:
            role["policies"] = list(self.policies)
        if self.groups:
            role["groups"] = list(self.groups)
        return role


def normalize_policy(policy: str) -> str:
    """The form argocd-server stores a policy in (fields after the first trimmed, joined by ", ")."""
    first, *rest = policy.split(",")
    return ", ".join([first.strip(), *(part.strip() for part in rest)])


def role_groups(
    role_bindings: Iterable[Mapping[str, Any]] = (),
    access_control: Iterable[Mapping[str, Any]] = (),
) -> dict[str, list[str]]:
    """Groups per role from an Organization's roleBindings ({role, keycloakGroups: [...]}) and an
    ArgoCDProject's accessControl ({keycloakGroup, role}), in first-seen order without duplicates."""
    groups: dict[str, list[str]] = {}

    def bind(role: str, group: str) -> None:
        bound = groups.setdefault(role, [])
        if group not in bound:
            bound.append(group)

    for binding in role_bindings:
        for group in binding.get("keycloakGroups") or ():
            bind(str(binding["role"]), str(group))
    for entry in access_control:
        bind(str(entry["role"]), str(entry["keycloakGroup"]))
    return groups


def render_roles(
    templates: Mapping[str, Mapping[str, Any]],
    project: str,
    groups_by_role: Mapping[str, Sequence[str]] | None = None,
) -> list[ProjectRole]:
    """The project's roles from the SDP's role templates, `{project}` replaced by the project name.

    Every template becomes a role (so bindings can be added later without a new role); groups come
    from `groups_by_role`. A binding to a role the SDP does not define is an InvalidSpecError.
    """
    groups_by_role = groups_by_role or {}
    unknown = sorted(set(groups_by_role) - set(templates))
    if unknown:
        defined = ", ".join(templates) or "none"
        raise InvalidSpecError(
            f'Argo CD project "{project}": role {", ".join(repr(r) for r in unknown)} is bound to groups '
            f"but not defined in the SDP's argocd.roles (defined: {defined})"
        )
    roles = []
    for role_name, template in templates.items():
        policies: list[str] = []
        for raw in template.get("policies") or ():
            policy = normalize_policy(str(raw).replace(PROJECT_PLACEHOLDER, project))
            if policy not in policies:
                policies.append(policy)
        roles.append(
            ProjectRole(
                name=role_name,
                policies=tuple(policies),
                groups=tuple(groups_by_role.get(role_name, ())),
                description=str(template.get("description") or ""),
            )
        )
    return roles


def resolve_destinations(
    destinations: Iterable[Mapping[str, Any]], cluster_servers: Mapping[str, str]
) -> list[Destination]:
    """Destinations of a CR; a `clusterRef` (a K8sCluster name) becomes that cluster's API server URL."""
    resolved = []
    for entry in destinations:
        server = str(entry.get("server") or "")
        ref = entry.get("clusterRef")
        if ref:
            if ref not in cluster_servers:
                raise DependencyNotFoundError(
                    f'K8sCluster "{ref}" named in destinations.clusterRef does not exist (create it first)'
                )
            server = cluster_servers[ref]
        resolved.append(
            Destination(
                server=server, namespace=str(entry.get("namespace") or ""), name=str(entry.get("name") or "")
            )
        )
    return resolved


# --- cluster credentials ----------------------------------------------------------------------


@dataclass(frozen=True)
class ClusterCredentials:
    """How Argo CD reaches a cluster. PEM text for certificates; secrets are kept out of repr()."""

    bearer_token: str | None = field(default=None, repr=False)
    ca_pem: str | None = None
    client_cert_pem: str | None = None
    client_key_pem: str | None = field(default=None, repr=False)
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    insecure: bool = False

    @classmethod
    def from_kubeconfig(
        cls, kubeconfig: str, *, context: str | None = None
    ) -> tuple[str, ClusterCredentials]:
        """(server URL, credentials) of a kubeconfig's current (or named) context.

        Only self-contained credentials work from a Secret: token, client certificate data or
        basic auth. Parse errors name the line, never the content (the document holds secrets).
        """
        try:
            document = yaml.safe_load(kubeconfig)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" (line {mark.line + 1})" if mark is not None else ""
            raise InvalidSpecError(f"kubeconfig is not valid YAML{where}") from None
        if not isinstance(document, dict):
            raise InvalidSpecError("kubeconfig is not a kubeconfig document (expected a mapping)")
        context_name = context or document.get("current-context")
        contexts = {c.get("name"): c.get("context") or {} for c in document.get("contexts") or []}
        if context_name not in contexts:
            raise InvalidSpecError(
                f'kubeconfig has no context "{context_name}" (contexts: {", ".join(map(str, contexts))})'
            )
        chosen = contexts[context_name]
        clusters = {c.get("name"): c.get("cluster") or {} for c in document.get("clusters") or []}
        users = {u.get("name"): u.get("user") or {} for u in document.get("users") or []}
        cluster = clusters.get(chosen.get("cluster"))
        user = users.get(chosen.get("user"), {})
        if cluster is None or not cluster.get("server"):
            raise InvalidSpecError(f'kubeconfig context "{context_name}" names no cluster with a server URL')
        if "certificate-authority" in cluster or "client-certificate" in user or "client-key" in user:
            raise InvalidSpecError(
                "kubeconfig refers to certificate files; embed them (certificate-authority-data, "
                "client-certificate-data, client-key-data) so the Secret is self-contained"
            )
        if "exec" in user or "auth-provider" in user:
            raise InvalidSpecError(
                "kubeconfig uses exec/auth-provider credentials; use a token, client certificate data "
                "or authentication.serviceAccountToken instead"
            )
        credentials = cls(
            bearer_token=user.get("token"),
            ca_pem=_pem_from_base64(cluster.get("certificate-authority-data"), "certificate-authority-data"),
            client_cert_pem=_pem_from_base64(user.get("client-certificate-data"), "client-certificate-data"),
            client_key_pem=_pem_from_base64(user.get("client-key-data"), "client-key-data"),
            username=user.get("username"),
            password=user.get("password"),
            insecure=bool(cluster.get("insecure-skip-tls-verify", False)),
        )
        if not (credentials.bearer_token or credentials.client_key_pem or credentials.password):
            raise InvalidSpecError(
                f'kubeconfig user of context "{context_name}" has no token, client key or password'
            )
        return str(cluster["server"]), credentials

    def as_config(self) -> dict[str, Any]:
        """Argo CD's ClusterConfig (certificate fields base64, as the API's `format: byte` wants)."""
        tls: dict[str, Any] = {}
        for key, pem in (
            ("caData", self.ca_pem),
            ("certData", self.client_cert_pem),
            ("keyData", self.client_key_pem),
        ):
            if pem:
                tls[key] = base64.b64encode(pem.encode()).decode()
        if self.insecure:
            tls["insecure"] = True
        config: dict[str, Any] = {"tlsClientConfig": tls}
        for key, value in (
            ("bearerToken", self.bearer_token),
            ("username", self.username),
            ("password", self.password),
        ):
            if value:
                config[key] = value
        return config


def _pem_from_base64(value: Any, what: str) -> str | None:
    if not value:
        return None
    try:
        return base64.b64decode(str(value), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise InvalidSpecError(f"kubeconfig {what} is not base64-encoded PEM") from None


# --- the client ---------------------------------------------------------------------------------


class ArgoCDClient:
    """Argo CD API client (requests) for one server and token, following the shared HTTP policy."""

    def __init__(
        self,
        url: str,
        token: str,
        *,
        policy: HttpPolicy | None = None,
        limiter: RateLimiter | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self._session = new_session(policy, before_send=limiter.acquire if limiter else None, system="argocd")
        self._session.headers["Authorization"] = f"Bearer {token}"
        self._session.headers["Accept"] = "application/json"

    def close(self) -> None:
        self._session.close()

    # -- plumbing ------------------------------------------------------------------------

    def _send(
        self, method: str, path: str, what: str, *, plan_detail: str | None = None, **kwargs: Any
    ) -> requests.Response:
        if method != "GET" and (plan := planning()) is not None:
            url = f"{self.url}{path}"
            return planned_response(plan, SYSTEM, method, url, what, kwargs.get("json"), detail=plan_detail)
        with transport_errors(f"{SYSTEM}: {what}"):
            return self._session.request(method, f"{self.url}{path}", **kwargs)

    @staticmethod
    def _decoded(response: requests.Response, what: str) -> Any:
        raise_for_response(response, what=f"{SYSTEM}: {what}")
        return json_body(response, what=f"{SYSTEM}: {what}")

    def _call(
        self,
        method: str,
        path: str,
        what: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        absent: Sequence[int] = (),
        plan_detail: str | None = None,
    ) -> Any:
        """The decoded JSON answer; None for a status in `absent`; else the classified error."""
        response = self._send(method, path, what, params=params, json=body, plan_detail=plan_detail)
        if response.status_code in absent:
            return None
        return self._decoded(response, what)

    def version(self) -> str:
        """The server's version string (also a cheap reachability and token check)."""
        return str(self._call("GET", "/api/version", "get version").get("Version", ""))

    def check_access(self) -> None:
        """One cheap read that needs the token (the version endpoint answers anonymously)."""
        self._call("GET", "/api/v1/projects", "check access", params={"name": "default"})

    # -- projects ------------------------------------------------------------------------

    def get_project(self, name: str) -> dict[str, Any] | None:
        return self._call(
            "GET", f"/api/v1/projects/{quote(name, safe='')}", f'get project "{name}"', absent=(404,)
        )

    def ensure_project(
        self,
        name: str,
        *,
        description: str = "",
        source_repos: Sequence[str] = (),
        destinations: Sequence[Destination] = (),
        roles: Sequence[ProjectRole] = (),
        owner: Owner | None = None,
        recorded: bool = False,
    ) -> Change:
        """Create the AppProject or bring its description, sourceRepos, destinations and roles in line.

        With `owner` the project carries the owner's label and annotation, and an existing one is
        claimed by the ownership rules (`recorded`: the owner's status names this project)."""
        desired = {
            "description": description,
            "sourceRepos": list(dict.fromkeys(source_repos)),
            "destinations": [d.as_api() for d in dict.fromkeys(destinations)],
            "roles": [r.as_api() for r in roles],
        }
        marks = owner.argocd_metadata() if owner is not None else {}
        existing: dict[str, Any] | None = None
        if not recorded and owner is not None and planning() is None:
            # Not known as ours: create without looking first. Argo CD answers an identical
            # project with that project, and a different one with "spec is different" (None).
            existing = self._create_new(name, desired, marks)
            if existing is not None and not _unmarked(existing, marks):
                return Change("created", id=name)  # new, or ours from a run that crashed after it
        for _ in range(_CONFLICT_ATTEMPTS):
            if existing is None:
                existing = self.get_project(name)
            if existing is None:
                spec = {k: v for k, v in desired.items() if v}
                self._call(
                    "POST",
                    "/api/v1/projects",
                    f'create project "{name}"',
                    body={"project": {"metadata": {"name": name, **marks}, "spec": spec}, "upsert": True},
                    plan_detail=project_diff(_owned_view({}), _owned_view(desired)),
                )
                return Change("created", id=name)
            metadata = existing.get("metadata") or {}
            adopted = claim(
                owner, Mark.from_argocd(metadata), what=f'Argo CD project "{name}"', recorded=recorded
            )
            unmarked = _unmarked(existing, marks)
            if _owned_view(existing.get("spec") or {}) == _owned_view(desired) and not unmarked:
                return Change("unchanged", id=name)
            what = f'update project "{name}"'
            merged = _merge_project(existing, desired)
            for section, pairs in marks.items():
                merged.setdefault("metadata", {}).setdefault(section, {}).update(pairs)
            response = self._send(
                "PUT",
                f"/api/v1/projects/{quote(name, safe='')}",
                what,
                json={"project": merged},
                plan_detail=project_diff(_owned_view(existing.get("spec") or {}), _owned_view(desired))
                or "owner marked",
            )
            if _is_stale_write(response):
                existing = None
                continue  # someone wrote in between: read again and re-compare
            self._decoded(response, what)
            before, after = _owned_view(existing.get("spec") or {}), _owned_view(desired)
            changed = [k for k in _OWNED_PROJECT_FIELDS if before[k] != after[k]]
            if adopted and not recorded:
                changed.append("adopted")
            elif unmarked:
                changed.append("owner marked")
            return Change("updated", id=name, detail=", ".join(changed))
        raise TransientError(
            f'{SYSTEM}: update project "{name}": kept conflicting with concurrent writers ({_CONFLICT_ATTEMPTS} attempts)'
        )

    def _create_new(
        self, name: str, desired: Mapping[str, Any], marks: Mapping[str, Mapping[str, str]]
    ) -> dict[str, Any] | None:
        """POST the project without upsert: the project Argo CD answers with (the new one, or an
        existing one with exactly this spec), or None when one with a different spec exists."""
        what = f'create project "{name}"'
        spec = {k: v for k, v in desired.items() if v}
        body = {"project": {"metadata": {"name": name, **marks}, "spec": spec}, "upsert": False}
        response = self._send("POST", "/api/v1/projects", what, json=body)
        if response.status_code == 400 and _SPEC_DIFFERS in response.text:
            return None
        answer = self._decoded(response, what)
        return answer if isinstance(answer, dict) else None

    def delete_project(self, name: str) -> bool:
        """Delete the AppProject; False when it is already gone."""
        answer = self._call(
            "DELETE", f"/api/v1/projects/{quote(name, safe='')}", f'delete project "{name}"', absent=(404,)
        )
        return answer is not None

    # -- clusters ------------------------------------------------------------------------

    def get_cluster(self, server: str) -> dict[str, Any] | None:
        """The registered cluster with this API server URL, or None (credentials never included)."""
        listing = self._call("GET", "/api/v1/clusters", f'find cluster "{server}"', params={"server": server})
        # Older servers ignore ?server=, so the match is checked here as well.
        return next((c for c in listing.get("items") or [] if c.get("server") == server), None)

    def ensure_cluster(
        self,
        server: str,
        name: str,
        credentials: ClusterCredentials,
        *,
        namespaces: Sequence[str] = (),
        project: str = "",
        labels: Mapping[str, str] | None = None,
    ) -> Change:
        """Register the cluster, or update its name, scope, labels or credentials when they differ."""
        desired: dict[str, Any] = {"server": server, "name": name, "config": credentials.as_config()}
        if namespaces:
            desired["namespaces"] = list(namespaces)
        if project:
            desired["project"] = project
        desired["labels"] = {**(labels or {}), MANAGED_BY_LABEL: MANAGED_BY_VALUE}
        desired["annotations"] = {CONFIG_DIGEST_ANNOTATION: _config_digest(desired)}
        existing = self.get_cluster(server)
        if existing is None:
            what = f'register cluster "{name}" ({server})'
            self._call("POST", "/api/v1/clusters", what, params={"upsert": "true"}, body=desired)
            return Change("created", id=server)
        if _cluster_view(existing) == _cluster_view(desired):
            return Change("unchanged", id=server)
        what = f'update cluster "{name}" ({server})'
        path = f"/api/v1/clusters/{quote(server, safe='')}"
        self._call("PUT", path, what, params={"id.type": "url"}, body=desired)
        return Change("updated", id=server)

    def delete_cluster(self, server: str) -> bool:
        """Remove the cluster registration; False when Argo CD does not know the server."""
        if self.get_cluster(server) is None:
            return False
        # A cluster that vanished in between is answered 403 (Argo CD hides existence).
        answer = self._call(
            "DELETE",
            f"/api/v1/clusters/{quote(server, safe='')}",
            f'remove cluster "{server}"',
            params={"id.type": "url"},
            absent=(403,),
        )
        return answer is not None


# --- comparisons ------------------------------------------------------------------------------


def _unmarked(project: Mapping[str, Any], marks: Mapping[str, Mapping[str, str]]) -> bool:
    """Whether the project lacks one of the owner's labels or annotations."""
    metadata = project.get("metadata") or {}
    return any(
        (metadata.get(section) or {}).get(k) != v
        for section, pairs in marks.items()
        for k, v in pairs.items()
    )


def _is_stale_write(response: requests.Response) -> bool:
    """409 with gRPC code 10 (Aborted): the resourceVersion we sent is no longer current."""
    if response.status_code != 409:
        return False
    try:
        return response.json().get("code") == 10
    except (ValueError, AttributeError):
        return False


def project_diff(before: Mapping[str, Any], after: Mapping[str, Any]) -> str:
    """The owned fields that differ, in words: `sourceRepos +"https://…"; role developer: +group x`."""
    parts: list[str] = []
    if before["description"] != after["description"]:
        parts.append(f"description {before['description']!r} → {after['description']!r}")
    for field_name in ("sourceRepos", "destinations"):
        old = [json.dumps(v, sort_keys=True) if isinstance(v, dict) else v for v in before[field_name]]
        new = [json.dumps(v, sort_keys=True) if isinstance(v, dict) else v for v in after[field_name]]
        changes = [f"+{v}" for v in new if v not in old] + [f"-{v}" for v in old if v not in new]
        if changes:
            parts.append(f"{field_name} {' '.join(changes)}")
    old_roles = {r["name"]: r for r in before["roles"]}
    new_roles = {r["name"]: r for r in after["roles"]}
    for role in sorted(set(old_roles) | set(new_roles)):
        old_role, new_role = old_roles.get(role), new_roles.get(role)
        if old_role == new_role:
            continue
        if old_role is None or new_role is None:
            parts.append(f"role {'+' if old_role is None else '-'}{role}")
            continue
        changes = []
        for key in ("groups", "policies"):
            changes += [f"+{key[:-1]} {v}" for v in new_role[key] if v not in old_role[key]]
            changes += [f"-{key[:-1]} {v}" for v in old_role[key] if v not in new_role[key]]
        if old_role["description"] != new_role["description"]:
            changes.append("description")
        parts.append(f"role {role}: {', '.join(changes)}")
    return "; ".join(parts)


def _owned_view(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The operator-owned part of a project spec, in a form where "absent" equals "empty"."""
    return {
        "description": spec.get("description") or "",
        "sourceRepos": list(spec.get("sourceRepos") or []),
        "destinations": [
            {k: v for k, v in d.items() if k in ("server", "namespace", "name") and v}
            for d in spec.get("destinations") or []
        ],
        "roles": [
            {
                "name": r.get("name", ""),
                "description": r.get("description") or "",
                "policies": [normalize_policy(p) for p in r.get("policies") or []],
                "groups": list(r.get("groups") or []),
            }
            for r in spec.get("roles") or []
        ],
    }


def _merge_project(existing: Mapping[str, Any], desired: Mapping[str, Any]) -> dict[str, Any]:
    """The existing project with the owned fields replaced; jwtTokens, status and metadata kept."""
    merged = copy.deepcopy(dict(existing))
    spec = merged.setdefault("spec", {})
    tokens_by_role = {
        r.get("name"): r.get("jwtTokens") for r in spec.get("roles") or [] if r.get("jwtTokens")
    }
    for key in ("description", "sourceRepos", "destinations"):
        if desired[key]:
            spec[key] = copy.deepcopy(desired[key])
        else:
            spec.pop(key, None)
    roles = []
    for role in desired["roles"]:
        role = copy.deepcopy(role)
        if role["name"] in tokens_by_role:
            role["jwtTokens"] = tokens_by_role[role["name"]]
        roles.append(role)
    if roles:
        spec["roles"] = roles
    else:
        spec.pop("roles", None)
    kept_roles = {r["name"] for r in roles}
    by_role = (merged.get("status") or {}).get("jwtTokensByRole")
    if by_role:
        merged["status"]["jwtTokensByRole"] = {k: v for k, v in by_role.items() if k in kept_roles}
    return merged


def _config_digest(cluster: Mapping[str, Any]) -> str:
    """A digest of everything that defines the registration, credentials included (which the API hides)."""
    material = {k: cluster.get(k) for k in ("server", "name", "config", "namespaces", "project", "labels")}
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()[:32]


def _cluster_view(cluster: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "name": cluster.get("name") or "",
        "namespaces": list(cluster.get("namespaces") or []),
        "project": cluster.get("project") or "",
        "labels": dict(cluster.get("labels") or {}),
        "digest": (cluster.get("annotations") or {}).get(CONFIG_DIGEST_ANNOTATION, ""),
    }


# --- one client per SDP, URL and token per process -------------------------------------------

_clients: OwnerClients[ArgoCDClient] = OwnerClients(SYSTEM, ArgoCDClient, empty="the SDP's token")

get_client = _clients.get
"""get_client(sdp, url, token, *, policy, limiter): the process's client for SDP `sdp`
("namespace/name"); a rotated token gets a new one."""

clear_clients = _clients.clear
