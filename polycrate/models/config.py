"""OperatorConfig: the operator-wide singleton (default/polycrate) for API sync and discovery.

Field names are snake_case, as in the spec. Every section is optional and a missing section
means "off"; a present section is on unless it says `enabled: false`. Namespace filtering is
the same for every discovery type and lives here, once: an empty watch list means all
namespaces, and ignore_namespaces always wins over watch_namespaces.
"""

from __future__ import annotations

from pydantic import Field

from polycrate.models.fieldtypes import HttpURL, NonEmptyStr, ObjectName, SpecModel, Timestamp
from polycrate.models.status import StatusModel, StatusPart

SINGLETON_NAME = "default"
SINGLETON_NAMESPACE = "polycrate"


class ApiCredentialsRef(SpecModel):
    """Secret holding the Polycrate agent token."""

    secret_name: ObjectName = Field(description="name of the Secret in the OperatorConfig's namespace")
    token_key: NonEmptyStr = Field(default="token", description="key of the agent token")


class ApiSync(SpecModel):
    """Connection to the Polycrate API; workspace and organization come from the token."""

    enabled: bool = Field(default=True, description="synchronise discovered resources to the API")
    api_url: HttpURL = Field(description="Polycrate API URL, e.g. https://api.polycrate.io")
    credentials_ref: ApiCredentialsRef = Field(description="Secret with the agent token")
    workspace_id: str | None = Field(
        default=None, description="deprecated since 0.29.0 and ignored: resolved from the token into status"
    )
    organization_id: str | None = Field(
        default=None, description="deprecated since 0.29.0 and ignored: resolved from the token into status"
    )


class LocalCluster(SpecModel):
    """Register the cluster the operator runs in with the API, unless the workspace has one."""

    enabled: bool = Field(default=True, description="register the local cluster")
    cluster_name: NonEmptyStr | None = Field(
        default=None,
        description="name for a new cluster; ignored when the API already has one, absent = create none",
    )


class NamespaceFilter(SpecModel):
    """Which namespaces a discovery type looks at."""

    enabled: bool = Field(default=True, description="run this discovery")
    watch_namespaces: list[NonEmptyStr] = Field(default_factory=list, description="only these; empty = all")
    ignore_namespaces: list[NonEmptyStr] = Field(
        default_factory=list, description="never these, even if listed in watch_namespaces"
    )

    def watches(self, namespace: str) -> bool:
        """Whether objects in `namespace` are discovered."""
        if namespace in self.ignore_namespaces:
            return False
        return not self.watch_namespaces or namespace in self.watch_namespaces


class EndpointDiscovery(NamespaceFilter):
    """Ingress -> Endpoint."""

    ingress_classes: list[NonEmptyStr] = Field(
        default_factory=list, description="only these classes; empty = all"
    )
    default_check_interval: int = Field(
        default=60, ge=1, description="check interval in seconds when not annotated"
    )


class AppDiscovery(NamespaceFilter):
    """Meta-Secrets (named <block>.poly, or labelled polycrate.io/type=meta) -> K8sApp."""


class NodeDiscovery(SpecModel):
    """Nodes -> API hosts."""

    enabled: bool = Field(default=True, description="run this discovery")
    label_selector: str = Field(
        default="", description="only nodes matching this label selector; empty = all"
    )


class BackupDiscovery(NamespaceFilter):
    """Velero Backups and Schedules (and CloudNativePG backups) -> Backup, BackupSchedule."""

    velero_namespace: ObjectName = Field(default="velero", description="namespace Velero runs in")
    cnpg_enabled: bool = Field(default=False, description="also discover CloudNativePG backups")


class IssuerFilter(SpecModel):
    """Which cert-manager issuers' certificates are discovered."""

    include_issuers: list[NonEmptyStr] = Field(default_factory=list, description="only these; empty = all")
    exclude_issuers: list[NonEmptyStr] = Field(default_factory=list, description="never these")

    def includes(self, issuer: str) -> bool:
        if issuer in self.exclude_issuers:
            return False
        return not self.include_issuers or issuer in self.include_issuers


class CertificateDiscovery(NamespaceFilter):
    """cert-manager Certificates -> Certificate."""

    issuer_filter: IssuerFilter = Field(
        default_factory=IssuerFilter, description="issuer include/exclude lists"
    )


class ArtifactCleanup(SpecModel):
    """Removal of Artifacts no pod uses any more."""

    enabled: bool = Field(default=True, description="delete stale Artifact objects")
    stale_threshold_hours: int = Field(default=1, ge=1, description="hours without pods before deletion")


class ArtifactDiscovery(NamespaceFilter):
    """Container images of pods -> Artifact."""

    exclude_registries: list[NonEmptyStr] = Field(
        default_factory=list, description="registries whose images are ignored, e.g. registry.k8s.io"
    )
    cleanup: ArtifactCleanup = Field(default_factory=ArtifactCleanup, description="stale Artifact cleanup")
    sync_to_api: bool = Field(default=True, description="send Artifacts to the API")


class OperatorConfigSpec(SpecModel):
    """Operator-wide settings; a missing section is off."""

    api_sync: ApiSync | None = Field(default=None, description="Polycrate API connection")
    local_cluster: LocalCluster | None = Field(default=None, description="register the local cluster")
    endpoint_discovery: EndpointDiscovery | None = Field(default=None, description="Ingress -> Endpoint")
    app_discovery: AppDiscovery | None = Field(default=None, description="Meta-Secrets -> K8sApp")
    node_discovery: NodeDiscovery | None = Field(default=None, description="Nodes -> API hosts")
    backup_discovery: BackupDiscovery | None = Field(
        default=None, description="Velero -> Backup, BackupSchedule"
    )
    certificate_discovery: CertificateDiscovery | None = Field(
        default=None, description="cert-manager -> Certificate"
    )
    artifact_discovery: ArtifactDiscovery | None = Field(default=None, description="pod images -> Artifact")


class ApiSyncStatus(StatusPart):
    """Workspace and organization the agent token belongs to, as the API reported them."""

    workspace_id: str | None = Field(default=None, description="workspace UUID")
    workspace_name: str | None = Field(default=None, description="workspace name")
    organization_id: str | None = Field(default=None, description="organization UUID")
    organization_name: str | None = Field(default=None, description="organization name")
    resolved_at: Timestamp | None = Field(default=None, description="when the token was resolved")


class LocalClusterStatus(StatusPart):
    """The API cluster the local cluster is linked to."""

    cluster_id: str | None = Field(default=None, description="id of the cluster in the API")
    cluster_name: str | None = Field(default=None, description="name of the cluster in the API")
    created: bool | None = Field(default=None, description="the operator created it (false: it existed)")
    resolved_at: Timestamp | None = Field(default=None, description="when the cluster was resolved")


class OperatorConfigStatus(StatusModel):
    """What the operator resolved from the API."""

    api_sync: ApiSyncStatus | None = Field(
        default=None, description="workspace resolved from the agent token"
    )
    local_cluster: LocalClusterStatus | None = Field(default=None, description="cluster linked in the API")
