"""The Polycrate API: health report, local cluster, block lookups and the discovered resources.

`report_health()` is how the operator learns which workspace and organization its agent token
belongs to (auto workspace resolution). Each discovered-resource family (endpoints, k8sapps,
hosts, backups, backup schedules, certificates, artifacts, clusters) is a collection with an
idempotent `ensure(payload, api_id=...)`: find the object by the id the caller kept, else by its
natural key (e.g. cluster + namespace + name), compare only the fields sent, PATCH only what
differs, create when missing — so a redelivered task converges without duplicates. Lists follow
DRF pagination; `next` links are followed by path only, so the token never goes to another host
or scheme. The token travels only in the `Authorization: Token` header.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import requests
from pydantic import BaseModel, ConfigDict, ValidationError

from polycrate.errors import PermanentError, TransientError
from polycrate.httppolicy import (
    HttpPolicy,
    classify_status,
    json_body,
    new_session,
    parse_retry_after,
    transport_errors,
)
from polycrate.ratelimit import RateLimiter
from workers.change import Change
from workers.owner_clients import OwnerClients

SYSTEM = "Polycrate API"
PAGE_SIZE = 100
LOOKUP_TTL_SECONDS = 60.0
_ISO_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}")


class WorkspaceIdentity(BaseModel):
    """Who the agent token is: the answer to the health report."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    workspace_id: str
    workspace_name: str
    organization_id: str
    organization_name: str
    cluster_id: str | None = None


@dataclass(frozen=True)
class ResolvedNames:
    """A meta Secret's organization and workspace as API ids; None where the API knows no such name."""

    workspace_id: str | None
    organization_id: str | None


@dataclass(frozen=True)
class ResourceFamily:
    """One collection of the API: its path under /api/v1/, a noun for messages, its natural key."""

    path: str
    noun: str
    natural_key: tuple[str, ...]


CLUSTERS = ResourceFamily("clusters", "cluster", ("name",))
ENDPOINTS = ResourceFamily("endpoints", "endpoint", ("cluster", "namespace", "name"))
K8SAPPS = ResourceFamily("k8sapps", "K8sApp", ("cluster", "namespace", "name"))
HOSTS = ResourceFamily("hosts", "host", ("cluster", "name"))
BACKUPS = ResourceFamily("backups", "backup", ("cluster", "namespace", "name"))
BACKUP_SCHEDULES = ResourceFamily("backup-schedules", "backup schedule", ("cluster", "namespace", "name"))
CERTIFICATES = ResourceFamily("certificates", "certificate", ("cluster", "namespace", "name"))
ARTIFACTS = ResourceFamily("artifacts", "artifact", ("cluster", "image"))


def _error_detail(response: requests.Response) -> str:
    """DRF's {"detail": ...} or field errors {"field": ["message", ...]} as one line."""
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:300]
    if isinstance(body, dict) and isinstance(body.get("detail"), str):
        return body["detail"]
    if isinstance(body, dict):
        return "; ".join(
            f"{field}: {' '.join(map(str, messages)) if isinstance(messages, list) else messages}"
            for field, messages in body.items()
        )
    return str(body)[:300]


def _same(current: Any, desired: Any) -> bool:
    """Whether the stored value already is the desired one (timestamps compared as instants,
    nested objects on the keys we send, since the server fills in defaults)."""
    if isinstance(desired, str) and isinstance(current, str) and _ISO_DATETIME.match(desired):
        try:
            return datetime.fromisoformat(current) == datetime.fromisoformat(desired)
        except ValueError:
            return current == desired
    if isinstance(desired, dict) and isinstance(current, dict):
        return all(_same(current.get(key), value) for key, value in desired.items())
    if isinstance(desired, list) and isinstance(current, list):
        return len(current) == len(desired) and all(
            _same(c, d) for c, d in zip(current, desired, strict=True)
        )
    return current == desired


class ResourceCollection:
    """One resource family, read like the REST path: `api.endpoints.ensure({...})`."""

    def __init__(self, api: PolycrateApiClient, family: ResourceFamily) -> None:
        self._api = api
        self.family = family
        self._base = f"/api/v1/{family.path}/"

    def list(self, **filters: str) -> Iterator[dict[str, Any]]:
        """Every object matching the exact-match filters, following the pages."""
        return self._api.paginate(self._base, filters, what=f"list {self.family.path}")

    def get(self, api_id: str) -> dict[str, Any] | None:
        return self._api.call(
            "GET", f"{self._base}{api_id}/", f"get {self.family.noun} {api_id}", absent=(404,)
        )

    def find(self, payload: Mapping[str, Any]) -> dict[str, Any] | None:
        """The object with the payload's natural key, or None."""
        missing = [k for k in self.family.natural_key if payload.get(k) in (None, "")]
        if missing:
            raise ValueError(
                f"{self.family.noun} payload lacks its natural key field(s) {', '.join(missing)}"
            )
        key = {k: str(payload[k]) for k in self.family.natural_key}
        return next((o for o in self.list(**key) if all(str(o.get(k)) == v for k, v in key.items())), None)

    def ensure(self, payload: Mapping[str, Any], *, api_id: str | None = None) -> Change:
        """Create the object or PATCH the sent fields that differ; the Change carries its API id."""
        existing = self.get(api_id) if api_id else None
        if existing is None:
            existing = self.find(payload)
        if existing is None:
            created = self._create(payload)
            if created is not None:
                return Change("created", id=created["id"])
            # Someone created it between our find and create: converge on theirs.
            existing = self.find(payload)
            if existing is None:
                raise TransientError(
                    f"{SYSTEM}: create {self._label(payload)}: duplicate, but not found again"
                )
        differing = {k: v for k, v in payload.items() if not _same(existing.get(k), v)}
        if not differing:
            return Change("unchanged", id=existing["id"])
        self._api.call(
            "PATCH", f"{self._base}{existing['id']}/", f"update {self._label(payload)}", body=dict(differing)
        )
        return Change("updated", id=existing["id"], detail=", ".join(sorted(differing)))

    def delete(self, api_id: str) -> bool:
        """Delete by API id; False when it is already gone."""
        answer = self._api.call(
            "DELETE", f"{self._base}{api_id}/", f"delete {self.family.noun} {api_id}", absent=(404,)
        )
        return answer is not None

    def _create(self, payload: Mapping[str, Any]) -> dict[str, Any] | None:
        """The created object, or None when the natural key is taken (DRF's unique-together 400)."""
        what = f"create {self._label(payload)}"
        response = self._api.send("POST", self._base, what, json=dict(payload))
        if response.status_code == 400 and "must make a unique set" in _error_detail(response):
            return None
        return self._api.decoded(response, what)

    def _label(self, payload: Mapping[str, Any]) -> str:
        key = "/".join(str(payload.get(k, "?")) for k in self.family.natural_key if k != "cluster")
        return f'{self.family.noun} "{key}"'


class PolycrateApiClient:
    """Polycrate API client (requests) for one URL and agent token, following the HTTP policy."""

    def __init__(
        self,
        url: str,
        token: str,
        *,
        policy: HttpPolicy | None = None,
        limiter: RateLimiter | None = None,
        page_size: int = PAGE_SIZE,
    ) -> None:
        self.url = url.rstrip("/")
        self.page_size = page_size
        self._session = new_session(
            policy, before_send=limiter.acquire if limiter else None, system="polycrate-api"
        )
        self._session.headers["Authorization"] = f"Token {token}"
        self._session.headers["Accept"] = "application/json"
        self._lookups: dict[tuple[str, ...], tuple[float, str | None]] = {}
        self._lookups_lock = threading.Lock()
        self.clusters = ResourceCollection(self, CLUSTERS)
        self.endpoints = ResourceCollection(self, ENDPOINTS)
        self.k8sapps = ResourceCollection(self, K8SAPPS)
        self.hosts = ResourceCollection(self, HOSTS)
        self.backups = ResourceCollection(self, BACKUPS)
        self.backup_schedules = ResourceCollection(self, BACKUP_SCHEDULES)
        self.certificates = ResourceCollection(self, CERTIFICATES)
        self.artifacts = ResourceCollection(self, ARTIFACTS)

    def close(self) -> None:
        self._session.close()

    # -- plumbing ------------------------------------------------------------------------

    def send(self, method: str, path_and_query: str, what: str, **kwargs: Any) -> requests.Response:
        with transport_errors(f"{SYSTEM}: {what}"):
            return self._session.request(method, f"{self.url}{path_and_query}", **kwargs)

    @staticmethod
    def decoded(response: requests.Response, what: str) -> Any:
        if response.status_code >= 400:
            raise classify_status(
                response.status_code,
                what=f"{SYSTEM}: {what}",
                detail=_error_detail(response),
                retry_after=parse_retry_after(response.headers.get("Retry-After")),
            )
        return json_body(response, what=f"{SYSTEM}: {what}")

    def call(
        self,
        method: str,
        path: str,
        what: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        absent: tuple[int, ...] = (),
    ) -> Any:
        """The decoded answer; None for a status in `absent`; else the classified error."""
        response = self.send(method, path, what, params=params, json=body)
        if response.status_code in absent:
            return None
        return self.decoded(response, what)

    def paginate(self, path: str, filters: Mapping[str, str], *, what: str) -> Iterator[dict[str, Any]]:
        """Every result of a paginated list, page by page."""
        page = self.call("GET", path, what, params={**filters, "page_size": str(self.page_size)})
        while True:
            yield from page.get("results") or []
            next_link = page.get("next")
            if not next_link:
                return
            page = self.call("GET", self._same_origin(next_link, what), what)

    def _same_origin(self, link: str, what: str) -> str:
        """The path and query of a `next` link, sent to our own URL (never to the link's host)."""
        parts = urlsplit(link)
        base_path = urlsplit(self.url).path
        if not parts.path.startswith(f"{base_path}/api/"):
            raise PermanentError(f"{SYSTEM}: {what}: next page link leaves the API ({parts.path})")
        return parts.path[len(base_path) :] + (f"?{parts.query}" if parts.query else "")

    # -- operator and workspace --------------------------------------------------------------

    def report_health(self, report: Mapping[str, Any]) -> WorkspaceIdentity:
        """Send the operator's health report; the answer names the token's workspace and organization."""
        answer = self.call("POST", "/api/v1/operator/health/", "health report", body=dict(report))
        try:
            return WorkspaceIdentity.model_validate(answer)
        except ValidationError as exc:
            fields = ", ".join(str(e["loc"][0]) for e in exc.errors() if e["loc"])
            raise TransientError(f"{SYSTEM}: health report: answer lacks {fields}") from None

    def find_workspace(self, name: str, organization_name: str) -> dict[str, Any] | None:
        found = self.paginate(
            "/api/v1/workspaces/",
            {"name": name, "organization_name": organization_name},
            what=f'find workspace "{organization_name}/{name}"',
        )
        return next(found, None)

    def find_organization(self, name: str) -> dict[str, Any] | None:
        found = self.paginate("/api/v1/organizations/", {"name": name}, what=f'find organization "{name}"')
        return next(found, None)

    def _cached(self, key: tuple[str, ...], lookup: Callable[[], str | None]) -> str | None:
        """`lookup()`, kept for a minute per client: every K8sApp of a workspace asks the same."""
        with self._lookups_lock:
            cached = self._lookups.get(key)
        if cached and cached[0] > time.monotonic():
            return cached[1]
        value = lookup()
        with self._lookups_lock:
            self._lookups[key] = (time.monotonic() + LOOKUP_TTL_SECONDS, value)
        return value

    def resolve_workspace(self, workspace_name: str, organization_name: str) -> ResolvedNames:
        """The UUIDs of a meta Secret's organization and workspace names (None where unknown)."""

        def workspace_id() -> str | None:
            workspace = self.find_workspace(workspace_name, organization_name)
            return str(workspace["id"]) if workspace else None

        def organization_id() -> str | None:
            organization = self.find_organization(organization_name)
            return str(organization["id"]) if organization else None

        return ResolvedNames(
            workspace_id=self._cached(("workspace", organization_name, workspace_name), workspace_id),
            organization_id=self._cached(("organization", organization_name), organization_id),
        )

    def resolve_block_id(self, workspace_name: str, organization_name: str, block_name: str) -> str | None:
        """The block's id in workspace `organization_name/workspace_name`, or None if either is unknown."""
        workspace = self.resolve_workspace(workspace_name, organization_name).workspace_id
        if workspace is None:
            return None

        def block_id() -> str | None:
            blocks = self.paginate(
                "/api/v1/blocks/",
                {"workspace": workspace, "name": block_name},
                what=f'find block "{block_name}" in workspace "{organization_name}/{workspace_name}"',
            )
            return next((str(b["id"]) for b in blocks), None)

        return self._cached(("block", workspace, block_name), block_id)

    def register_local_cluster(
        self,
        workspace_id: str,
        cluster_name: str | None,
        *,
        known_id: str | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> Change:
        """Link the operator's own cluster to the workspace (OperatorConfig.spec.local_cluster).

        A cluster the API already has for the workspace wins and `cluster_name` is ignored; without
        one, `cluster_name` creates it; with neither, nothing happens ("absent").
        """
        if known_id and self.clusters.get(known_id) is not None:
            return Change("unchanged", id=known_id)
        existing = next(self.clusters.list(workspace=workspace_id), None)
        if existing is not None:
            return Change(
                "unchanged",
                id=existing["id"],
                detail=f'the API already has cluster "{existing["name"]}" for this workspace',
            )
        if not cluster_name:
            return Change("absent", detail="no cluster in the API and local_cluster.cluster_name is not set")
        return self.clusters.ensure({"name": cluster_name, **(details or {})})


# --- one client per OperatorConfig, URL and token per process ----------------------------------

_clients: OwnerClients[PolycrateApiClient] = OwnerClients(SYSTEM, PolycrateApiClient, empty="the agent token")

get_client = _clients.get
"""get_client(owner, url, token, *, policy, limiter): the process's client for `owner` (the
OperatorConfig, "namespace/name"); a new token replaces it."""

clear_clients = _clients.clear
