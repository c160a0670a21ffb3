"""OperatorConfig: discovery's switchboard and its connection to the Polycrate API.

The singleton polycrate/default decides which discovery runs and where (a missing section is
off), and its `api_sync` names the API and the Secret with the agent token. Its handler sends
a health report with that token, which tells the workspace and organization the token belongs
to, links the local cluster (the API's existing cluster wins over `cluster_name`), and keeps
both in status; `resolved_at` moves only when the identity does, so steady reconciles write
nothing. Discovery handlers read the config fresh on every run (`read_operator_config`) and get
the API through `api_target`, which raises DependencyNotFoundError until the identity is
resolved; the moment it is (or after the config recovers from an error), every discovery CR and
source is woken (the watch `discovery_due`), so parked objects converge within seconds instead of at the next resync.
`DiscoveredResourceHandler` is the shared second stage of the discovered kinds: the payload's
hash in status skips unchanged writes, and each run checks that the API object still exists.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
from abc import abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ValidationError

from polycrate.errors import DependencyNotFoundError, InvalidSpecError, TransientError
from polycrate.keys import ObjectKey
from polycrate.kinds import OPERATOR_CONFIG_KEY, discovery_sources
from polycrate.kubeclient.api import JsonObject
from polycrate.kubeclient.errors import NotFound
from polycrate.kubeclient.resources import SOURCE_RESOURCES
from polycrate.models import KINDS, KindInfo
from polycrate.models.config import (
    SINGLETON_NAME,
    SINGLETON_NAMESPACE,
    ApiSync,
    ApiSyncStatus,
    LocalClusterStatus,
    OperatorConfigSpec,
    OperatorConfigStatus,
)
from polycrate.ratelimit import RateLimiter
from tasks.context import WorkerContext
from tasks.handlers import READY, CustomResourceHandler
from tasks.status import ConditionUpdate, StatusChange, StatusUpdate, timestamp, utc_now
from tasks.watches import SourceRun, Watch, note
from workers import polycrate_api
from workers.change import Change
from workers.polycrate_api import PolycrateApiClient, ResourceCollection

log = logging.getLogger(__name__)

OPERATOR_CONFIG = f"OperatorConfig {SINGLETON_NAMESPACE}/{SINGLETON_NAME}"

# The polycrate.io kinds that discovery writes and syncs to the API.
DISCOVERED_KINDS: tuple[str, ...] = (
    "Endpoint",
    "K8sApp",
    "Backup",
    "BackupSchedule",
    "Certificate",
    "Artifact",
)

# Which OperatorConfig section switches each discovery source on, and which of a source's objects
# are sources at all: both from the table of kinds, as the watcher's.
SOURCE_SECTIONS: dict[str, str] = {
    entry.key_kind: entry.discovery_section for entry in discovery_sources() if entry.discovery_section
}
_SOURCE_FILTERS: dict[str, Callable[[Mapping[str, Any]], bool]] = {
    entry.key_kind: entry.object_filter for entry in discovery_sources() if entry.object_filter is not None
}

# Finalizers that discovery puts on sources end like this (endpoints.polycrate.io/cleanup, ...).
SOURCE_FINALIZER_SUFFIX = ".polycrate.io/cleanup"
# The only sources discovery puts such a finalizer on; the others are never listed while off.
FINALIZED_SOURCES = frozenset({"Ingress", "Node"})

# Controller names of the spec's discovery table, as the health report names them.
CONTROLLERS: dict[str, str] = {
    "EndpointDiscoveryController": "endpoint_discovery",
    "K8sAppDiscoveryController": "app_discovery",
    "HostDiscoveryController": "node_discovery",
    "BackupDiscoveryController": "backup_discovery",
    "CertificateDiscoveryController": "certificate_discovery",
    "ArtifactDiscoveryController": "artifact_discovery",
}

API_RATE_PER_SECOND = 10.0
API_BURST = 20


def operator_version() -> str:
    try:
        return importlib.metadata.version("polycrate-operator")
    except importlib.metadata.PackageNotFoundError:
        return "0.0.0"


# --- reading the config ---------------------------------------------------------------------------


@dataclass(frozen=True)
class DiscoveryConfig:
    """The OperatorConfig singleton as discovery sees it: what is on, and what was resolved."""

    spec: OperatorConfigSpec
    status: OperatorConfigStatus

    def section(self, name: str) -> Any:
        """The discovery section `name` (e.g. "endpoint_discovery") when it is on, else None."""
        value = getattr(self.spec, name)
        return value if value is not None and value.enabled else None

    @property
    def api_sync(self) -> ApiSync | None:
        return self.section("api_sync")

    @property
    def workspace_id(self) -> str | None:
        return self.status.api_sync.workspace_id if self.status.api_sync else None

    @property
    def cluster_id(self) -> str | None:
        return self.status.local_cluster.cluster_id if self.status.local_cluster else None


def read_operator_config(ctx: WorkerContext) -> DiscoveryConfig | None:
    """The singleton read fresh; None when it does not exist or is being deleted (discovery off).

    An invalid one raises DependencyNotFoundError: discovery must not guess a scope from it.
    """
    obj = ctx.objects.get(OPERATOR_CONFIG_KEY)
    if obj is None or (obj.get("metadata") or {}).get("deletionTimestamp"):
        return None
    try:
        spec = OperatorConfigSpec.model_validate(obj.get("spec") or {})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "spec"
        raise DependencyNotFoundError(
            f"{OPERATOR_CONFIG} is invalid (spec.{where}: {first['msg']}); discovery waits until it is fixed"
        ) from None
    try:
        status = OperatorConfigStatus.model_validate(obj.get("status") or {})
    except ValidationError:
        status = OperatorConfigStatus()  # a status we cannot read is one not resolved yet
    return DiscoveryConfig(spec, status)


# --- the API connection ---------------------------------------------------------------------------


def api_client(ctx: WorkerContext, config: DiscoveryConfig | None) -> PolycrateApiClient | None:
    """The process's Polycrate API client for the config's api_sync; None when api_sync is off.

    The agent token is read from its Secret at use and only ever travels in the request header.
    """
    api_sync = config.api_sync if config else None
    if api_sync is None:
        return None
    ref = api_sync.credentials_ref
    token = ctx.secrets.get(SINGLETON_NAMESPACE, ref.secret_name, ref.token_key)
    owner = f"{SINGLETON_NAMESPACE}/{SINGLETON_NAME}"
    limiter = RateLimiter(
        ctx.redis, system="polycrate-api", scope=owner, rate=API_RATE_PER_SECOND, burst=API_BURST
    )
    return polycrate_api.get_client(owner, str(api_sync.api_url), token, limiter=limiter)


@dataclass(frozen=True)
class ApiTarget:
    """Where discovered objects go: the client, and the workspace and cluster they belong to."""

    client: PolycrateApiClient
    workspace_id: str
    cluster_id: str


def api_target(ctx: WorkerContext, config: DiscoveryConfig | None, *, referrer: str) -> ApiTarget | None:
    """The API target of discovered objects; None when api_sync is off (nothing is synced).

    Raises DependencyNotFoundError naming `referrer` while the OperatorConfig has not resolved
    its workspace or local cluster yet; its handler enqueues discovery again once it has.
    """
    if config is None or config.api_sync is None:
        return None
    if not config.workspace_id:
        raise DependencyNotFoundError(
            f"{referrer}: {OPERATOR_CONFIG} has not resolved the workspace of its agent token yet "
            "(status.api_sync.workspace_id)"
        )
    if not config.cluster_id:
        raise DependencyNotFoundError(
            f"{referrer}: {OPERATOR_CONFIG} has no cluster in the Polycrate API (status.local_cluster); "
            "enable spec.local_cluster with a cluster_name, or create the cluster in the API"
        )
    client = api_client(ctx, config)
    assert client is not None
    return ApiTarget(client, config.workspace_id, config.cluster_id)


# --- syncing one discovered object ----------------------------------------------------------------


def config_hash(payload: Mapping[str, Any]) -> str:
    """A stable digest of what is sent to the API (key order does not matter)."""
    encoded = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(encoded).hexdigest()


@dataclass(frozen=True)
class SyncResult:
    """What one sync did: the API id, the hash of the payload, and whether the API was written."""

    api_id: str
    config_hash: str
    change: Change

    @property
    def written(self) -> bool:
        return self.change.changed


def sync_resource(
    collection: ResourceCollection,
    payload: Mapping[str, Any],
    *,
    api_id: str | None,
    last_hash: str | None,
) -> SyncResult:
    """Bring the API object to `payload`; with an unchanged hash only check that it still exists.

    That existence check ("Inventarprüfung") recreates an object someone deleted in the API.
    """
    digest = config_hash(payload)
    if api_id and digest == last_hash and collection.get(api_id) is not None:
        return SyncResult(api_id, digest, Change("unchanged", id=api_id))
    change = collection.ensure(payload, api_id=api_id)
    return SyncResult(str(change.id), digest, change)


@dataclass(frozen=True)
class SyncStatusNames:
    """How a discovered kind spells its sync fields and phases (Endpoint camelCase, others snake)."""

    api_id: str
    config_hash: str
    last_synced_at: str
    sync_status: str | None
    synced_phase: str
    unsynced_phase: str


CAMEL_CASE_SYNC = SyncStatusNames("apiID", "configHash", "lastSyncedAt", None, "synced", "discovered")
SNAKE_CASE_SYNC = SyncStatusNames(
    "api_id", "config_hash", "last_synced_at", "sync_status", "Synced", "Discovered"
)


class DiscoveredResourceHandler(CustomResourceHandler):
    """Second stage of discovery: sync one discovered CR to its API collection.

    Subclasses say which `section` of the OperatorConfig switches them on, which collection of
    the client they fill (`collection`) and what they send (`payload`). With api_sync or the
    section off the CR stays in `names.unsynced_phase` and nothing is sent. On deletion the API
    object is deleted (unless `delete_from_api` is False, e.g. Artifacts stay as an archive).
    """

    section: str
    names: SyncStatusNames = SNAKE_CASE_SYNC
    delete_from_api: bool = True

    def __init__(self, info: KindInfo | None = None) -> None:
        super().__init__(info or KINDS[self.kind])

    @abstractmethod
    def collection(self, client: PolycrateApiClient) -> ResourceCollection:
        """The API collection of this kind, e.g. `client.endpoints`."""

    @abstractmethod
    def payload(
        self, ctx: WorkerContext, key: ObjectKey, obj: JsonObject, spec: BaseModel, target: ApiTarget
    ) -> dict[str, Any]:
        """The API object for this CR (natural key fields included)."""

    def extra_status(
        self, ctx: WorkerContext, key: ObjectKey, obj: JsonObject, spec: BaseModel
    ) -> dict[str, Any]:
        """Further kind-specific status fields, written with the sync fields."""
        return {}

    def reconcile(self, ctx: WorkerContext, key: ObjectKey, obj: JsonObject) -> None:
        begun = self._begin(ctx, key, obj)
        if begun is None:
            return
        spec, current = begun
        config = read_operator_config(ctx)
        fields = self.extra_status(ctx, key, current, spec)
        target = (
            api_target(ctx, config, referrer=key.describe())
            if config and config.section(self.section)
            else None
        )
        if target is None:
            self.write_sync_status(ctx, key, current, fields, None, self._not_synced(config))
        else:
            status = current.get("status") or {}
            result = sync_resource(
                self.collection(target.client),
                self.payload(ctx, key, current, spec, target),
                api_id=status.get(self.names.api_id),
                last_hash=status.get(self.names.config_hash),
            )
            self.write_sync_status(ctx, key, current, fields, result, synced_at=utc_now())

    def write_sync_status(
        self,
        ctx: WorkerContext,
        key: ObjectKey,
        current: JsonObject,
        fields: dict[str, Any],
        result: SyncResult | None,
        unsynced: ConditionUpdate | None = None,
        *,
        synced_at: datetime | None = None,
    ) -> StatusChange:
        """Write `fields` with the sync's outcome: synced by `result` (at `synced_at`, kept while
        nothing was written), or pending with the `unsynced` condition when nothing was sent."""
        names = self.names
        status = current.get("status") or {}
        if result is None:
            assert unsynced is not None
            phase, condition = names.unsynced_phase, unsynced
            if names.sync_status:
                fields[names.sync_status] = "pending"
        else:
            fields[names.api_id] = result.api_id
            fields[names.config_hash] = result.config_hash
            if result.written or not status.get(names.last_synced_at):
                fields[names.last_synced_at] = timestamp(synced_at or utc_now())
            if names.sync_status:
                fields[names.sync_status] = "synced"
            phase = names.synced_phase
            condition = ConditionUpdate(
                "Ready",
                "True",
                "Synced",
                f"{key.describe()} is synced to the Polycrate API ({result.api_id})",
            )
        change = ctx.status.write(
            key,
            StatusUpdate(
                phase=phase,
                conditions=(condition,),
                observed_generation=(current.get("metadata") or {}).get("generation"),
                fields=fields,
            ),
            current=current,
        )
        self._announce(ctx, change, phase, condition.message)
        return change

    def _not_synced(self, config: DiscoveryConfig | None) -> ConditionUpdate:
        if config is None:
            why = f"{OPERATOR_CONFIG} does not exist"
        elif config.section(self.section) is None:
            why = f"{OPERATOR_CONFIG} has spec.{self.section} off"
        else:
            why = f"{OPERATOR_CONFIG} has spec.api_sync off"
        return ConditionUpdate("Ready", "True", "NotSynced", f"not sent to the Polycrate API: {why}")

    def cleanup(self, ctx: WorkerContext, key: ObjectKey, obj: JsonObject) -> None:
        api_id = (obj.get("status") or {}).get(self.names.api_id)
        if not self.delete_from_api or not api_id:
            return
        client = api_client(ctx, read_operator_config(ctx))
        if client is None:
            # Nothing can reach the API any more; holding the finalizer would only block deletion.
            log.warning("%s: api_sync is off, its API object %s stays in the API", key.describe(), api_id)
            return
        self.collection(client).delete(str(api_id))


# --- waking discovery ------------------------------------------------------------------------------

DISCOVERY_DUE = "discovery-due"  # noted by a run: (its DiscoveryConfig or None, everything?)


def _listed(ctx: WorkerContext, kind: str) -> list[JsonObject]:
    """Every object of `kind` that is a source; none when its CRD is not installed (e.g. no Velero here)."""
    try:
        objects = ctx.objects.list(kind)
    except NotFound:
        return []
    selects = _SOURCE_FILTERS.get(kind)
    return objects if selects is None else [obj for obj in objects if selects(obj)]


def _key_of(kind: str, obj: JsonObject) -> ObjectKey:
    metadata = obj.get("metadata") or {}
    return ObjectKey(kind, str(metadata.get("namespace") or ""), str(metadata["name"]))


def _holds_our_finalizer(obj: JsonObject) -> bool:
    finalizers = (obj.get("metadata") or {}).get("finalizers") or []
    return any(str(f).endswith(SOURCE_FINALIZER_SUFFIX) for f in finalizers)


def discovery_keys(
    ctx: WorkerContext, config: DiscoveryConfig | None, *, everything: bool
) -> list[ObjectKey]:
    """The keys to run after an OperatorConfig change.

    `everything`: every discovered CR and every source in scope (the identity was just resolved).
    Always: sources still holding one of our finalizers while their discovery is off, so their
    handlers release them (otherwise deleting such an Ingress or Node would hang).
    """
    keys: list[ObjectKey] = []
    if everything:
        for kind in DISCOVERED_KINDS:
            keys += [_key_of(kind, obj) for obj in _listed(ctx, kind)]
    for kind, section_name in SOURCE_SECTIONS.items():
        if kind not in SOURCE_RESOURCES:
            continue
        section = config.section(section_name) if config else None
        if section is None:
            if kind in FINALIZED_SOURCES:
                keys += [_key_of(kind, obj) for obj in _listed(ctx, kind) if _holds_our_finalizer(obj)]
        elif everything:
            watches = getattr(section, "watches", None)
            keys += [
                _key_of(kind, obj)
                for obj in _listed(ctx, kind)
                if watches is None or watches(str((obj.get("metadata") or {}).get("namespace") or ""))
            ]
    return keys


# --- the OperatorConfig handler -------------------------------------------------------------------


def _resolution(status: Mapping[str, Any]) -> tuple[Any, ...]:
    api_sync = status.get("api_sync") or {}
    local = status.get("local_cluster") or {}
    return (
        api_sync.get("workspace_id"),
        api_sync.get("organization_id"),
        local.get("cluster_id"),
    )


class OperatorConfigHandler(CustomResourceHandler):
    """Resolves the agent token's workspace and the local cluster, then wakes discovery."""

    kind = "OperatorConfig"

    def __init__(self, info: KindInfo | None = None) -> None:
        super().__init__(info or KINDS["OperatorConfig"])

    def reconcile(self, ctx: WorkerContext, key: ObjectKey, obj: JsonObject) -> None:
        if (key.namespace, key.name) != (SINGLETON_NAMESPACE, SINGLETON_NAME):
            raise InvalidSpecError(
                f"{key.describe()}: the OperatorConfig is a singleton and only "
                f'"{SINGLETON_NAME}" in namespace "{SINGLETON_NAMESPACE}" is read, so this one has no effect '
                f"(move its spec into {SINGLETON_NAMESPACE}/{SINGLETON_NAME} and delete it)"
            )
        super().reconcile(ctx, key, obj)

    def provision(
        self, ctx: WorkerContext, key: ObjectKey, obj: JsonObject, spec: BaseModel
    ) -> dict[str, Any]:
        assert isinstance(spec, OperatorConfigSpec)
        previous = obj.get("status") or {}
        config = DiscoveryConfig(spec, OperatorConfigStatus())
        fields: dict[str, Any] = {"api_sync": None, "local_cluster": None}
        client = api_client(ctx, config)
        if client is not None:
            kubernetes_version = _kubernetes_version(ctx)
            identity = client.report_health(_health_report(config, kubernetes_version))
            fields["api_sync"] = _api_sync_status(identity, previous.get("api_sync") or {})
            fields["local_cluster"] = _local_cluster_status(
                client, spec, identity, previous.get("local_cluster") or {}, kubernetes_version
            )
        resolved_now = _resolution(fields) != _resolution(previous) or previous.get("phase") != READY
        if resolved_now:
            # Written before dependents run, so they read the ids they were waiting for.
            ctx.status.write(key, StatusUpdate(fields=fields), current=obj)
        note(DISCOVERY_DUE, (config, resolved_now))
        return fields

    def cleanup(self, ctx: WorkerContext, key: ObjectKey, obj: JsonObject) -> None:
        # Discovery is off from now on: let every source we hold a finalizer on go.
        note(DISCOVERY_DUE, (None, False))


def discovery_due(ctx: WorkerContext, run: SourceRun) -> list[ObjectKey]:
    """The keys an OperatorConfig run noted as due (`discovery_keys`): everything in scope once
    the identity resolved, and always the sources still holding our finalizer while off."""
    due = run.notes.get(DISCOVERY_DUE)
    if due is None:
        return []
    config, everything = due
    return discovery_keys(ctx, config, everything=everything)


def watches() -> list[Watch]:
    return [Watch("OperatorConfig", discovery_due, "discovery CRs and sources it switches on or off")]


def _kubernetes_version(ctx: WorkerContext) -> str | None:
    """The API server's gitVersion, e.g. v1.32.1 (None when it does not say)."""
    version = ctx.objects.client.get("/version").get("gitVersion")
    return str(version) if version else None


def _health_report(config: DiscoveryConfig, kubernetes_version: str | None) -> dict[str, Any]:
    """What the operator tells the API about itself; the answer names the token's workspace."""
    report: dict[str, Any] = {
        "operator_version": operator_version(),
        "status": "healthy",
        "controllers": {
            name: "running" if config.section(section) else "disabled"
            for name, section in CONTROLLERS.items()
        },
    }
    local = config.section("local_cluster")
    if local is not None and local.cluster_name:
        report["cluster_name"] = local.cluster_name
    if kubernetes_version:
        report["kubernetes_version"] = kubernetes_version
    return report


def _api_sync_status(
    identity: polycrate_api.WorkspaceIdentity, previous: Mapping[str, Any]
) -> dict[str, Any]:
    """status.api_sync; resolved_at is kept while the identity stays the same."""
    resolved = ApiSyncStatus(
        workspace_id=identity.workspace_id,
        workspace_name=identity.workspace_name,
        organization_id=identity.organization_id,
        organization_name=identity.organization_name,
    ).model_dump(mode="json", exclude_none=True)
    unchanged = all(previous.get(name) == value for name, value in resolved.items())
    resolved["resolved_at"] = (
        previous["resolved_at"] if unchanged and previous.get("resolved_at") else timestamp(utc_now())
    )
    return resolved


def _local_cluster_status(
    client: PolycrateApiClient,
    spec: OperatorConfigSpec,
    identity: polycrate_api.WorkspaceIdentity,
    previous: Mapping[str, Any],
    kubernetes_version: str | None,
) -> dict[str, Any] | None:
    """status.local_cluster: the API cluster this cluster is linked to, or None without one.

    With spec.local_cluster on, the API's existing cluster of the workspace wins and
    cluster_name only names a new one; with it off, a cluster the API already has is still used.
    """
    local = spec.local_cluster
    if local is not None and local.enabled:
        change = client.register_local_cluster(
            identity.workspace_id,
            local.cluster_name,
            known_id=previous.get("cluster_id"),
            details={"kubernetes_version": kubernetes_version} if kubernetes_version else None,
        )
        if change.action == "absent":
            return None
        cluster_id, created = str(change.id), change.action == "created"
    elif identity.cluster_id:
        cluster_id, created = identity.cluster_id, False
    else:
        return None
    if previous.get("cluster_id") == cluster_id and previous.get("cluster_name"):
        return dict(previous)
    cluster = client.clusters.get(cluster_id)
    if cluster is None:
        raise TransientError(f"{OPERATOR_CONFIG}: cluster {cluster_id} vanished from the Polycrate API")
    return LocalClusterStatus(
        cluster_id=cluster_id, cluster_name=cluster["name"], created=created
    ).model_dump(mode="json", exclude_none=True) | {"resolved_at": timestamp(utc_now())}


def handlers() -> list[CustomResourceHandler]:
    return [OperatorConfigHandler()]
