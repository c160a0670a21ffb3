"""Discovered kinds: Endpoint, Backup, BackupSchedule, Certificate, K8sApp and Artifact.

The operator writes these itself from cluster sources (Ingress, Velero, cert-manager,
Meta-Secrets, Pods) and mirrors them to the Polycrate API; the status keeps the API id and a
hash of what was sent, so an unchanged object costs no API call. Endpoint uses camelCase like
the spec's example, all other discovery kinds snake_case like theirs. The pure mappings from
source values (Velero phases, image references) live next to the fields they fill.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field, model_validator

from polycrate.models.fieldtypes import NonEmptyStr, ObjectName, SpecModel, Timestamp
from polycrate.models.status import StatusModel, StatusPart

DISCOVERED_LABEL = "operator.polycrate.io/discovered"

# A Polycrate meta Secret: named `<block>.poly` (how polycrate names them), or labelled
# polycrate.io/type=meta (the spec's example); either one is enough.
META_TYPE_LABEL = "polycrate.io/type"
META_SECRET_SUFFIX = ".poly"


def is_meta_secret(secret: Mapping[str, Any]) -> bool:
    """Whether a Secret is a Polycrate meta Secret: named `*.poly` or labelled polycrate.io/type=meta."""
    metadata = secret.get("metadata") or {}
    return (metadata.get("labels") or {}).get(META_TYPE_LABEL) == "meta" or str(
        metadata.get("name") or ""
    ).endswith(META_SECRET_SUFFIX)


class DiscoveredStatus(StatusModel):
    """API sync state of a snake_case discovery kind; phase e.g. Synced or Discovered."""

    api_id: str | None = Field(default=None, description="id of the object in the Polycrate API")
    sync_status: str | None = Field(default=None, description="synced, pending or error")
    config_hash: str | None = Field(default=None, description="hash of the payload last sent to the API")
    last_synced_at: Timestamp | None = Field(default=None, description="last successful API sync")


# --- Endpoint (camelCase, from Ingress) -------------------------------------------------------


class EndpointSpec(SpecModel):
    """One monitored host of an Ingress, with the check the monitoring agents run."""

    displayName: str | None = Field(default=None, description="human-readable name, e.g. app.example.com")
    remoteAddress: NonEmptyStr = Field(description="host name or address to check, e.g. app.example.com")
    remotePort: int = Field(default=443, ge=1, le=65535, description="port to check")
    kind: NonEmptyStr = Field(default="http", description="check type, e.g. http")
    tls: bool = Field(default=True, description="use TLS (https)")
    path: str = Field(
        default="/", pattern=r"^/", description="HTTP path of the health check, e.g. /api/health"
    )
    timeout: int = Field(default=30, ge=1, description="timeout in seconds")
    interval: int = Field(default=60, ge=1, description="check interval in seconds")
    expectedStatusCodes: list[int] = Field(
        default_factory=lambda: [200],
        min_length=1,
        json_schema_extra={"items": {"type": "integer", "minimum": 100, "maximum": 599}},
        description="HTTP status codes that count as up",
    )
    expectedBody: str | None = Field(default=None, description="text the response body must contain")

    @model_validator(mode="after")
    def _status_codes_are_http(self) -> EndpointSpec:
        invalid = [code for code in self.expectedStatusCodes if not 100 <= code <= 599]
        if invalid:
            raise ValueError(f"expectedStatusCodes {invalid} are not HTTP status codes (use e.g. 200)")
        return self


class EndpointStatus(StatusModel):
    """API sync state of an Endpoint; phase e.g. synced."""

    apiID: str | None = Field(default=None, description="id of the endpoint in the Polycrate API")
    configHash: str | None = Field(default=None, description="hash of the payload last sent to the API")
    lastSyncedAt: Timestamp | None = Field(default=None, description="last successful API sync")


# --- Backup, BackupSchedule (from Velero or CloudNativePG) ------------------------------------

BackupState = Literal["new", "in_progress", "completed", "partially_failed", "failed", "deleting", "unknown"]

_VELERO_BACKUP_STATES: dict[str, BackupState] = {
    "New": "new",
    "FailedValidation": "failed",
    "InProgress": "in_progress",
    "WaitingForPluginOperations": "in_progress",
    "WaitingForPluginOperationsPartiallyFailed": "in_progress",
    "Finalizing": "in_progress",
    "FinalizingPartiallyFailed": "in_progress",
    "Completed": "completed",
    "PartiallyFailed": "partially_failed",
    "Failed": "failed",
    "Deleting": "deleting",
}


def backup_state_from_velero(phase: str | None) -> BackupState:
    """Velero's Backup status.phase -> Backup spec.status (Completed -> completed, Failed -> failed)."""
    return _VELERO_BACKUP_STATES.get(phase or "", "unknown")


# CloudNativePG's BackupPhase values (postgresql.cnpg.io/v1 Backup status.phase). While WAL
# archiving fails the backup cannot complete; CNPG keeps retrying, the API sees it failed.
_CNPG_BACKUP_STATES: dict[str, BackupState] = {
    "pending": "new",
    "started": "in_progress",
    "running": "in_progress",
    "finalizing": "in_progress",
    "completed": "completed",
    "failed": "failed",
    "walArchivingFailing": "failed",
}


def backup_state_from_cnpg(phase: str | None) -> BackupState:
    """CloudNativePG's Backup status.phase -> Backup spec.status (completed -> completed, running -> in_progress)."""
    if not phase:
        return "new"  # just created: CNPG has not picked it up yet
    return _CNPG_BACKUP_STATES.get(phase, "unknown")


class SourceObject(SpecModel):
    """The cluster object a discovered resource was created from."""

    name: ObjectName = Field(description="name of the source object")
    namespace: ObjectName | None = Field(default=None, description="namespace of the source object")
    uid: str | None = Field(default=None, description="uid of the source object")


_ONE_BACKUP_SOURCE = {"oneOf": [{"required": ["source_velero"]}, {"required": ["source_cnpg"]}]}


class MirroredBackupSpec(SpecModel):
    """Fields of a resource mirrored from Velero or CloudNativePG: exactly one source."""

    source_velero: SourceObject | None = Field(default=None, description="the Velero object it mirrors")
    source_cnpg: SourceObject | None = Field(default=None, description="the CloudNativePG object it mirrors")

    @model_validator(mode="after")
    def _exactly_one_source(self) -> MirroredBackupSpec:
        if (self.source_velero is None) == (self.source_cnpg is None):
            raise ValueError("needs exactly one of source_velero or source_cnpg")
        return self


class BackupSpec(MirroredBackupSpec):
    """A backup run, mirrored from Velero (status.phase, spec.ttl, progress) or CloudNativePG."""

    model_config = SpecModel.model_config | {"json_schema_extra": _ONE_BACKUP_SOURCE}

    name: NonEmptyStr = Field(description="name of the backup")
    status: BackupState = Field(default="unknown", description="completed, failed, in_progress, ...")
    retention_policy: str | None = Field(
        default=None, description="retention (Velero spec.ttl), e.g. 720h0m0s"
    )
    started_at: Timestamp | None = Field(default=None, description="start of the backup")
    completed_at: Timestamp | None = Field(default=None, description="end of the backup")
    items_backed_up: int | None = Field(default=None, ge=0, description="number of items backed up")
    schedule_name: str | None = Field(default=None, description="BackupSchedule that started it, if any")
    postgres_cluster: str | None = Field(
        default=None, description="CloudNativePG: the PostgreSQL cluster backed up (spec.cluster.name)"
    )
    method: str | None = Field(
        default=None, description="CloudNativePG: backup method, e.g. barmanObjectStore or volumeSnapshot"
    )
    error: str | None = Field(default=None, description="CloudNativePG: the error of a failed backup")


class BackupScheduleSpec(MirroredBackupSpec):
    """A backup schedule, mirrored from a Velero Schedule or a CloudNativePG ScheduledBackup."""

    model_config = SpecModel.model_config | {"json_schema_extra": _ONE_BACKUP_SOURCE}

    name: NonEmptyStr = Field(description="name of the schedule")
    schedule_cron: NonEmptyStr = Field(description="cron expression, e.g. 0 2 * * *")
    paused: bool = Field(default=False, description="the schedule is paused")
    last_backup_at: Timestamp | None = Field(default=None, description="start of the last backup")
    last_backup_name: str | None = Field(default=None, description="name of the last backup")
    postgres_cluster: str | None = Field(
        default=None, description="CloudNativePG: the PostgreSQL cluster backed up (spec.cluster.name)"
    )
    method: str | None = Field(
        default=None, description="CloudNativePG: backup method, e.g. barmanObjectStore or volumeSnapshot"
    )


# --- Certificate (from cert-manager) ----------------------------------------------------------

CertificateState = Literal["ready", "pending", "failed", "expired", "expiring_soon", "unknown"]


class CertManagerSource(SourceObject):
    """The cert-manager Certificate this one mirrors."""

    revision: int | None = Field(default=None, ge=0, description="cert-manager status.revision")


class CertificateSpec(SpecModel):
    """A TLS certificate managed by cert-manager, as the Polycrate API sees it."""

    name: NonEmptyStr = Field(description="name of the cert-manager Certificate")
    display_name: str | None = Field(default=None, description="human-readable name")
    namespace: ObjectName | None = Field(
        default=None, description="namespace of the cert-manager Certificate"
    )
    secret_name: ObjectName = Field(description="Secret holding the certificate")
    dns_names: list[NonEmptyStr] = Field(default_factory=list, description="DNS names of the certificate")
    ip_addresses: list[NonEmptyStr] = Field(
        default_factory=list, description="IP addresses of the certificate"
    )
    issuer_name: str | None = Field(default=None, description="issuer name")
    issuer_kind: str | None = Field(default=None, description="issuer kind, e.g. clusterissuer")
    issuer_group: str | None = Field(default=None, description="issuer API group, e.g. cert-manager.io")
    certificate_status: CertificateState = Field(
        default="unknown", description="ready, pending, failed, expired, expiring_soon or unknown"
    )
    is_ready: bool = Field(default=False, description="cert-manager's Ready condition is True")
    not_before: Timestamp | None = Field(default=None, description="start of validity")
    not_after: Timestamp | None = Field(default=None, description="end of validity")
    renewal_time: Timestamp | None = Field(default=None, description="when cert-manager renews it")
    source_cert_manager: CertManagerSource = Field(description="the cert-manager Certificate it mirrors")


class CertificateStatus(DiscoveredStatus):
    """API sync state of a Certificate; phase e.g. Synced."""


# --- K8sApp (from Meta-Secrets) ---------------------------------------------------------------

ActionStatus = Literal["success", "running", "failed"]


class HelmChart(SpecModel):
    """The Helm chart a block installs."""

    name: NonEmptyStr = Field(description="chart name")
    version: str | None = Field(default=None, description="chart version")
    repo_url: str | None = Field(default=None, description="chart repository URL")


class Block(SpecModel):
    """The deployed Polycrate block."""

    name: NonEmptyStr = Field(description="block name")
    display_name: str | None = Field(default=None, description="human-readable name")
    version: str | None = Field(default=None, description="block version")
    app_version: str | None = Field(default=None, description="version of the deployed application")
    from_: str | None = Field(
        default=None, alias="from", description="block source, e.g. cargo.ayedo.cloud/ayedo/k8s/nginx-ingress"
    )
    type: str | None = Field(default=None, description="block type, e.g. ingress-controller")
    flavor: str | None = Field(default=None, description="block flavor, e.g. nginx")
    chart: HelmChart | None = Field(default=None, description="Helm chart of the block")


class WorkspaceRef(SpecModel):
    """The Polycrate workspace the block was deployed from."""

    name: NonEmptyStr = Field(description="workspace name")
    organization: NonEmptyStr = Field(description="organization name")


class BlockAction(SpecModel):
    """The last action run of the block."""

    name: NonEmptyStr = Field(description="action name, e.g. install or uninstall")
    status: ActionStatus = Field(description="success, running or failed")
    last_executed_at: Timestamp | None = Field(default=None, description="when the action ran")


class K8sAppSpec(SpecModel):
    """A deployed Polycrate block, from its Meta-Secret."""

    block: Block = Field(description="the deployed block")
    workspace: WorkspaceRef = Field(description="workspace and organization")
    action: BlockAction | None = Field(default=None, description="the last action run")

    def installation_flags(self) -> dict[str, bool]:
        """Installation state derived from the last action, as the spec's table says."""
        flags = {
            "installed": False,
            "installation_running": False,
            "installation_failed": False,
            "uninstalled": False,
        }
        if self.action is None:
            return flags
        if self.action.name == "install":
            key = {"success": "installed", "running": "installation_running", "failed": "installation_failed"}
            flags[key[self.action.status]] = True
        elif self.action.name == "uninstall" and self.action.status == "success":
            flags["uninstalled"] = True
        return flags


class K8sAppArtifact(StatusPart):
    """An image the app's pods run."""

    name: str = Field(description="name of the Artifact object")
    image: str | None = Field(default=None, description="image reference")
    pod_count: int | None = Field(default=None, ge=0, description="pods of the app running it")


class K8sAppStatus(DiscoveredStatus):
    """Installation state, API sync state and the app's images; phase e.g. Synced."""

    installed: bool | None = Field(default=None, description="last action was a successful install")
    installation_running: bool | None = Field(default=None, description="an install is running")
    installation_failed: bool | None = Field(default=None, description="the last install failed")
    uninstalled: bool | None = Field(default=None, description="last action was a successful uninstall")
    block_id: str | None = Field(default=None, description="id of the block in the Polycrate API")
    workspace_id: str | None = Field(
        default=None, description="id of the meta Secret's workspace in the Polycrate API"
    )
    organization_id: str | None = Field(
        default=None, description="id of the meta Secret's organization in the Polycrate API"
    )
    artifacts: list[K8sAppArtifact] = Field(default_factory=list, description="images the app's pods run")
    artifact_count: int | None = Field(default=None, ge=0, description="number of images")


# --- Artifact (from Pods, cluster-scoped) -----------------------------------------------------

DEFAULT_REGISTRY = "docker.io"


class Registry(SpecModel):
    """Where an image is pulled from."""

    hostname: NonEmptyStr = Field(description="registry host, e.g. cargo.ayedo.cloud")
    port: int = Field(default=443, ge=1, le=65535, description="registry port")
    scheme: Literal["http", "https"] = Field(default="https", description="http or https")


class Repository(SpecModel):
    """The image repository inside the registry."""

    path: NonEmptyStr = Field(description="full path, e.g. library/nginx")
    name: NonEmptyStr = Field(description="last path segment, e.g. nginx")
    namespace: str | None = Field(default=None, description="path before the name, e.g. library")


class ArtifactSpec(SpecModel):
    """A container image seen in the cluster."""

    image: NonEmptyStr = Field(
        description="image reference as pods use it, e.g. cargo.ayedo.cloud/library/nginx:1.25.3"
    )
    registry: Registry = Field(description="registry of the image")
    repository: Repository = Field(description="repository of the image")
    tag: str | None = Field(default=None, description="tag, absent for digest-only references")
    digest: str | None = Field(
        default=None, pattern=r"^[A-Za-z0-9_+.-]+:.+$", description="digest, e.g. sha256:..."
    )


class NamespaceUsage(StatusPart):
    """Pods of one namespace running the image."""

    name: str = Field(description="namespace")
    pod_count: int | None = Field(default=None, ge=0, description="pods running the image")
    first_seen_at: Timestamp | None = Field(default=None, description="first seen in this namespace")
    last_seen_at: Timestamp | None = Field(default=None, description="last seen in this namespace")


class K8sAppUsage(StatusPart):
    """A K8sApp whose namespace runs the image."""

    name: str = Field(description="K8sApp name")
    namespace: str | None = Field(default=None, description="K8sApp namespace")
    k8s_app_id: str | None = Field(default=None, description="id of the K8sApp in the Polycrate API")


class ArtifactStatus(DiscoveredStatus):
    """Where the image runs; phase e.g. Discovered."""

    used_in_namespaces: list[NamespaceUsage] = Field(
        default_factory=list, description="namespaces running it"
    )
    used_by_k8sapps: list[K8sAppUsage] = Field(default_factory=list, description="K8sApps using it")
    first_discovered_at: Timestamp | None = Field(default=None, description="first seen in the cluster")
    last_seen_at: Timestamp | None = Field(default=None, description="last seen in the cluster")
    total_pod_count: int | None = Field(default=None, ge=0, description="pods running it in all namespaces")


def parse_image(image: str) -> ArtifactSpec:
    """Split an image reference the way container runtimes do.

    `nginx:1.25` -> docker.io, library/nginx, tag 1.25; `ghcr.io/org/app@sha256:abc` -> ghcr.io,
    org/app, digest sha256:abc. A first segment with a '.' or ':' or equal to localhost is a
    registry host; otherwise the image is on Docker Hub.
    """
    remainder, _, digest = image.partition("@")
    first, slash, rest = remainder.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        host_port, path_and_tag = first, rest
    else:
        host_port, path_and_tag = DEFAULT_REGISTRY, remainder
    path, tag = path_and_tag, None
    last_colon = path_and_tag.rfind(":")
    if last_colon > path_and_tag.rfind("/"):
        path, tag = path_and_tag[:last_colon], path_and_tag[last_colon + 1 :]
    if host_port == DEFAULT_REGISTRY and "/" not in path:
        path = f"library/{path}"
    if tag is None and not digest:
        tag = "latest"
    hostname, _, port = host_port.partition(":")
    namespace, _, name = path.rpartition("/")
    return ArtifactSpec(
        image=image,
        registry=Registry(hostname=hostname, port=int(port) if port else 443),
        repository=Repository(path=path, name=name, namespace=namespace or None),
        tag=tag,
        digest=digest or None,
    )


def artifact_name(spec: ArtifactSpec) -> str:
    """The Artifact object name: registry, path and tag (or digest) as one DNS subdomain.

    `cargo.ayedo.cloud/library/nginx:1.25.3` -> `cargo-ayedo-cloud-library-nginx-1-25-3`.
    Names longer than Kubernetes allows keep a hash suffix so they stay unique.
    """
    version = spec.tag or (spec.digest or "").replace(":", "-")
    raw = f"{spec.registry.hostname}-{spec.repository.path}-{version}".lower()
    name = re.sub(r"[^a-z0-9]+", "-", raw).strip("-")
    if len(name) > 253:
        suffix = hashlib.sha256(name.encode()).hexdigest()[:10]
        name = f"{name[:242].rstrip('-')}-{suffix}"
    return name
