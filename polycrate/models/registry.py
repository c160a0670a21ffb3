"""The table of the 15 polycrate.io kinds: names, scope, models, printer columns, finalizer.

Everything that needs to know "which kinds exist" reads this table: the CRD generator, the
watcher's list of resources, the CLI's `--kind` lookup and `parse_spec`. Names follow the
spec's CRD table (short names included); Artifact is the only cluster-scoped kind. Provisioned
kinds share one finalizer; discovered kinds use `<plural>.polycrate.io/cleanup`, as the spec's
Endpoint example shows.
"""

from __future__ import annotations

import typing
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from polycrate.errors import InvalidSpecError
from polycrate.models.cluster import K8sClusterSpec, K8sClusterStatus
from polycrate.models.config import OperatorConfigSpec, OperatorConfigStatus
from polycrate.models.discovery import (
    ArtifactSpec,
    ArtifactStatus,
    BackupScheduleSpec,
    BackupSpec,
    CertificateSpec,
    CertificateStatus,
    DiscoveredStatus,
    EndpointSpec,
    EndpointStatus,
    K8sAppSpec,
    K8sAppStatus,
)
from polycrate.models.platform import SoftwareDeliveryPlatformSpec, SoftwareDeliveryPlatformStatus
from polycrate.models.standalone import (
    ArgoCDProjectSpec,
    ArgoCDProjectStatus,
    GitLabGroupSpec,
    GitLabGroupStatus,
    HarborProjectSpec,
    HarborProjectStatus,
)
from polycrate.models.status import StatusModel
from polycrate.models.tenancy import (
    ContactGroupSpec,
    ContactGroupStatus,
    ContactSpec,
    ContactStatus,
    OrganizationSpec,
    OrganizationStatus,
)
from polycrate.models.validation import invalid_spec_error, object_label

GROUP = "polycrate.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
FINALIZER = "polycrate.io/finalizer"


@dataclass(frozen=True)
class PrinterColumn:
    """One `kubectl get` column (a CRD additionalPrinterColumn)."""

    name: str
    type: str  # integer, number, string, boolean or date
    json_path: str
    priority: int = 0
    description: str = ""


@dataclass(frozen=True)
class KindInfo:
    """Everything the operator knows about one kind without looking at an object."""

    kind: str
    plural: str
    singular: str
    short_names: tuple[str, ...]
    namespaced: bool
    spec_model: type[BaseModel]
    status_model: type[BaseModel]
    printer_columns: tuple[PrinterColumn, ...]
    finalizer: str
    discovered: bool = False
    """Created by the operator from cluster sources (Ingress, Velero, ...), not by users."""

    @property
    def crd_name(self) -> str:
        """`organizations.polycrate.io`"""
        return f"{self.plural}.{GROUP}"

    @property
    def list_kind(self) -> str:
        return f"{self.kind}List"


def _phase(description: str = "summary of the object's state") -> PrinterColumn:
    return PrinterColumn("Phase", "string", ".status.phase", description=description)


_AGE = PrinterColumn("Age", "date", ".metadata.creationTimestamp")


def _kind(
    kind: str,
    plural: str,
    short_names: tuple[str, ...],
    spec: type[BaseModel],
    status: type[BaseModel],
    columns: list[PrinterColumn],
    *,
    discovered: bool = False,
    namespaced: bool = True,
) -> KindInfo:
    """One row of the table; what differs between provisioned and discovered kinds is the finalizer."""
    return KindInfo(
        kind=kind,
        plural=plural,
        singular=kind.lower(),
        short_names=short_names,
        namespaced=namespaced,
        spec_model=spec,
        status_model=status,
        printer_columns=tuple(columns),
        finalizer=f"{plural}.{GROUP}/cleanup" if discovered else FINALIZER,
        discovered=discovered,
    )


_KIND_LIST: tuple[KindInfo, ...] = (
    _kind(
        "SoftwareDeliveryPlatform",
        "softwaredeliveryplatforms",
        ("sdp",),
        SoftwareDeliveryPlatformSpec,
        SoftwareDeliveryPlatformStatus,
        [
            _phase(),
            PrinterColumn("Keycloak", "boolean", ".status.keycloakReady"),
            PrinterColumn("GitLab", "boolean", ".status.gitlabReady"),
            PrinterColumn("Harbor", "boolean", ".status.harborReady"),
            PrinterColumn("ArgoCD", "boolean", ".status.argoCDReady"),
            _AGE,
        ],
    ),
    _kind(
        "Organization",
        "organizations",
        ("org", "orgs"),
        OrganizationSpec,
        OrganizationStatus,
        [PrinterColumn("SDP", "string", ".spec.sdp"), _phase(), _AGE],
    ),
    _kind(
        "Contact",
        "contacts",
        ("ct",),
        ContactSpec,
        ContactStatus,
        [
            PrinterColumn("Username", "string", ".spec.keycloak.username"),
            PrinterColumn("Email", "string", ".spec.keycloak.email"),
            _phase(),
            _AGE,
        ],
    ),
    _kind(
        "ContactGroup",
        "contactgroups",
        ("cg",),
        ContactGroupSpec,
        ContactGroupStatus,
        [
            PrinterColumn("Group", "string", ".spec.keycloak.groupName"),
            PrinterColumn("SDP", "string", ".spec.sdp"),
            _phase(),
            _AGE,
        ],
    ),
    _kind(
        "GitLabGroup",
        "gitlabgroups",
        ("glg",),
        GitLabGroupSpec,
        GitLabGroupStatus,
        [
            PrinterColumn("Path", "string", ".spec.groupPath"),
            PrinterColumn("Visibility", "string", ".spec.visibility"),
            PrinterColumn("SDP", "string", ".spec.sdp", priority=1),
            _phase(),
            _AGE,
        ],
    ),
    _kind(
        "HarborProject",
        "harborprojects",
        ("hp",),
        HarborProjectSpec,
        HarborProjectStatus,
        [
            PrinterColumn("Project", "string", ".spec.projectName"),
            PrinterColumn("Public", "boolean", ".spec.public"),
            PrinterColumn("Quota", "string", ".spec.storageQuota"),
            PrinterColumn("SDP", "string", ".spec.sdp", priority=1),
            _phase(),
            _AGE,
        ],
    ),
    _kind(
        "ArgoCDProject",
        "argocdprojects",
        ("acp",),
        ArgoCDProjectSpec,
        ArgoCDProjectStatus,
        [
            PrinterColumn("Project", "string", ".spec.projectName"),
            PrinterColumn("SDP", "string", ".spec.sdp", priority=1),
            _phase(),
            _AGE,
        ],
    ),
    _kind(
        "K8sCluster",
        "k8sclusters",
        ("k8sc",),
        K8sClusterSpec,
        K8sClusterStatus,
        [
            PrinterColumn("SDP", "string", ".spec.sdp"),
            PrinterColumn("API Server", "string", ".spec.apiServer"),
            PrinterColumn("Version", "string", ".status.kubernetesVersion"),
            _phase(),
            _AGE,
        ],
    ),
    _kind(
        "OperatorConfig",
        "operatorconfigs",
        ("oc", "opcfg"),
        OperatorConfigSpec,
        OperatorConfigStatus,
        [
            PrinterColumn("Workspace", "string", ".status.api_sync.workspace_name"),
            PrinterColumn("Organization", "string", ".status.api_sync.organization_name"),
            PrinterColumn("Cluster", "string", ".status.local_cluster.cluster_name", priority=1),
            _phase(),
            _AGE,
        ],
    ),
    _kind(
        "Endpoint",
        "endpoints",
        ("ep", "pep"),
        EndpointSpec,
        EndpointStatus,
        [
            PrinterColumn("Address", "string", ".spec.remoteAddress"),
            PrinterColumn("Port", "integer", ".spec.remotePort", priority=1),
            PrinterColumn("Path", "string", ".spec.path"),
            _phase(),
            PrinterColumn("API ID", "string", ".status.apiID", priority=1),
            _AGE,
        ],
        discovered=True,
    ),
    _kind(
        "Backup",
        "backups",
        ("backup",),
        BackupSpec,
        DiscoveredStatus,
        [
            PrinterColumn("Status", "string", ".spec.status"),
            PrinterColumn("Started", "date", ".spec.started_at"),
            PrinterColumn("Items", "integer", ".spec.items_backed_up"),
            PrinterColumn("Schedule", "string", ".spec.schedule_name", priority=1),
            _phase(),
            _AGE,
        ],
        discovered=True,
    ),
    _kind(
        "BackupSchedule",
        "backupschedules",
        ("bs",),
        BackupScheduleSpec,
        DiscoveredStatus,
        [
            PrinterColumn("Schedule", "string", ".spec.schedule_cron"),
            PrinterColumn("Paused", "boolean", ".spec.paused"),
            PrinterColumn("Last Backup", "date", ".spec.last_backup_at"),
            _phase(),
            _AGE,
        ],
        discovered=True,
    ),
    _kind(
        "Certificate",
        "certificates",
        ("cert", "pcert"),
        CertificateSpec,
        CertificateStatus,
        [
            PrinterColumn("Issuer", "string", ".spec.issuer_name"),
            PrinterColumn("Ready", "boolean", ".spec.is_ready"),
            PrinterColumn("Status", "string", ".spec.certificate_status"),
            PrinterColumn("Sync", "string", ".status.sync_status"),
            PrinterColumn("API ID", "string", ".status.api_id", priority=1),
            PrinterColumn("Not After", "date", ".spec.not_after", priority=1),
            _AGE,
        ],
        discovered=True,
    ),
    _kind(
        "K8sApp",
        "k8sapps",
        ("app", "pca"),
        K8sAppSpec,
        K8sAppStatus,
        [
            PrinterColumn("Block", "string", ".spec.block.name"),
            PrinterColumn("Version", "string", ".spec.block.version"),
            PrinterColumn("Artifacts", "integer", ".status.artifact_count"),
            _phase(),
            _AGE,
        ],
        discovered=True,
    ),
    _kind(
        "Artifact",
        "artifacts",
        ("art",),
        ArtifactSpec,
        ArtifactStatus,
        [
            PrinterColumn("Image", "string", ".spec.image"),
            PrinterColumn("Pods", "integer", ".status.total_pod_count"),
            _phase(),
            PrinterColumn("API ID", "string", ".status.api_id", priority=1),
        ],
        discovered=True,
        namespaced=False,
    ),
)

KINDS: dict[str, KindInfo] = {info.kind: info for info in _KIND_LIST}


class UnknownKindError(KeyError):
    """A name that is no kind, plural, singular or short name of a polycrate.io kind."""

    def __str__(self) -> str:
        return str(self.args[0])


def _lookup_table() -> dict[str, KindInfo]:
    table: dict[str, KindInfo] = {}
    for info in _KIND_LIST:
        for name in (info.kind, info.plural, info.singular, info.crd_name, *info.short_names):
            table[name.lower()] = info
    return table


_LOOKUP = _lookup_table()


def kind_info(name: str) -> KindInfo:
    """The kind for a kind, plural, singular, short name or `<plural>.polycrate.io`, any case."""
    info = _LOOKUP.get(name.strip().lower())
    if info is None:
        raise UnknownKindError(f'unknown kind "{name}" (valid: {", ".join(KINDS)})')
    return info


def _kind_of(obj: dict[str, Any]) -> KindInfo:
    kind = obj.get("kind")
    if obj.get("apiVersion") != API_VERSION or kind not in KINDS:
        raise InvalidSpecError(
            f"{object_label(obj)}: apiVersion/kind {obj.get('apiVersion')}/{kind} is not a {GROUP} kind "
            f"(use apiVersion {API_VERSION} and one of {', '.join(KINDS)})"
        )
    return KINDS[kind]


def parse_spec(obj: dict[str, Any]) -> BaseModel:
    """The validated spec of a whole Kubernetes object; InvalidSpecError names field and fix."""
    info = _kind_of(obj)
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        raise InvalidSpecError(
            f"{object_label(obj)}: spec is required (an object with the {info.kind} fields)"
        )
    try:
        return info.spec_model.model_validate(spec)
    except ValidationError as error:
        raise invalid_spec_error(object_label(obj), info.spec_model, error, "spec") from None


def parse_status(obj: dict[str, Any]) -> StatusModel:
    """The status of a whole Kubernetes object as its status model (empty when absent)."""
    info = _kind_of(obj)
    try:
        status = info.status_model.model_validate(obj.get("status") or {})
    except ValidationError as error:
        raise invalid_spec_error(object_label(obj), info.status_model, error, "status") from None
    return typing.cast(StatusModel, status)


def check_argocd_roles(obj: dict[str, Any], sdp_roles: Iterable[str]) -> None:
    """Raise InvalidSpecError when an Organization or ArgoCDProject uses a role the SDP does not define.

    Argo CD role names are the keys of the SDP's `spec.argocd.roles`; a typo would otherwise
    create a project whose bindings silently grant nothing.
    """
    spec = parse_spec(obj)
    known = sorted(sdp_roles)
    used: list[tuple[str, str]] = []
    if isinstance(spec, OrganizationSpec) and spec.argocd and spec.argocd.enabled:
        used = [
            (f"spec.argocd.roleBindings[{i}].role", b.role) for i, b in enumerate(spec.argocd.roleBindings)
        ]
    elif isinstance(spec, ArgoCDProjectSpec):
        used = [(f"spec.accessControl[{i}].role", a.role) for i, a in enumerate(spec.accessControl)]
    for path, role in used:
        if role not in known:
            choices = ", ".join(known) if known else "none defined: add spec.argocd.roles to the SDP"
            raise InvalidSpecError(
                f'{object_label(obj)}: {path} "{role}" is not an Argo CD role of the SDP (use {choices})'
            )
