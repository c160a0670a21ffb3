"""Standalone resources shared between tenants: GitLabGroup, HarborProject, ArgoCDProject.

Unlike an Organization they exist in one system only, but in every SDP they list, and grant
access two ways: to Keycloak groups directly (`accessControl`) and to whole Organizations
(`organizationAccess`, resolved to the Organization's groups in each SDP). Roles are the
target system's own names, so the values a user writes are the ones its UI shows.
"""

from __future__ import annotations

from pydantic import Field

from polycrate.models.fieldtypes import (
    ArgoCDDestination,
    BoundedStr,
    DeletionPolicy,
    Description,
    GitLabDescription,
    GitLabPath,
    HarborProjectName,
    KeycloakName,
    ObjectName,
    Quantity,
    SdpNames,
    SpecModel,
    Visibility,
    immutable,
)
from polycrate.models.status import StatusModel
from polycrate.roles import GITLAB_ACCESS_LEVELS, HARBOR_ROLE_IDS, GitLabAccessLevel, HarborRole, choices

DELETION_POLICY_DESCRIPTION = (
    "Delete (default) removes what the operator created in every SDP; Orphan leaves it in place"
)


class GitLabGroupAccess(SpecModel):
    """A Keycloak group's access level in the GitLab group."""

    keycloakGroup: KeycloakName = Field(description="Keycloak group name, e.g. platform-admins")
    accessLevel: GitLabAccessLevel = Field(description=choices(GITLAB_ACCESS_LEVELS))


class GitLabOrganizationAccess(SpecModel):
    """An Organization's access level in the GitLab group."""

    organization: ObjectName = Field(description="name of an Organization in the same namespace")
    accessLevel: GitLabAccessLevel = Field(description=choices(GITLAB_ACCESS_LEVELS))


class GitLabGroupSpec(SpecModel):
    """A GitLab group outside any Organization, created in every listed SDP."""

    sdp: SdpNames = Field(description="names of SoftwareDeliveryPlatforms to create the group in")
    groupPath: GitLabPath | None = Field(
        default=None, description="GitLab group path, default metadata.name; a change moves the group"
    )
    visibility: Visibility = Field(default="private", description="private, internal or public")
    description: GitLabDescription | None = Field(default=None, description="GitLab group description")
    accessControl: list[GitLabGroupAccess] = Field(
        default_factory=list, description="access for Keycloak groups"
    )
    organizationAccess: list[GitLabOrganizationAccess] = Field(
        default_factory=list, description="access for Organizations"
    )
    deletionPolicy: DeletionPolicy = Field(default="Delete", description=DELETION_POLICY_DESCRIPTION)


class GitLabGroupStatus(StatusModel):
    """The group's id in each SDP's GitLab."""

    gitlabGroupIDs: dict[str, int] = Field(default_factory=dict, description="GitLab group id by SDP")


class HarborProjectAccess(SpecModel):
    """A Keycloak group's role in the Harbor project."""

    keycloakGroup: KeycloakName = Field(description="Keycloak group name, e.g. platform-admins")
    role: HarborRole = Field(description=choices(HARBOR_ROLE_IDS))


class HarborOrganizationAccess(SpecModel):
    """An Organization's role in the Harbor project."""

    organization: ObjectName = Field(description="name of an Organization in the same namespace")
    role: HarborRole = Field(description=choices(HARBOR_ROLE_IDS))


class HarborProjectSpec(SpecModel):
    """A Harbor project outside any Organization, created in every listed SDP."""

    sdp: SdpNames = Field(description="names of SoftwareDeliveryPlatforms to create the project in")
    projectName: HarborProjectName | None = Field(
        default=None,
        description="Harbor project name, default metadata.name; Harbor cannot rename a project",
        json_schema_extra=immutable("projectName", "delete and recreate the HarborProject to change it"),
    )
    public: bool = Field(default=False, description="anyone may pull from the project")
    storageQuota: Quantity | None = Field(
        default=None, description="storage quota, e.g. 100Gi; absent = unlimited"
    )
    accessControl: list[HarborProjectAccess] = Field(
        default_factory=list, description="roles for Keycloak groups"
    )
    organizationAccess: list[HarborOrganizationAccess] = Field(
        default_factory=list, description="roles for Organizations"
    )
    deletionPolicy: DeletionPolicy = Field(default="Delete", description=DELETION_POLICY_DESCRIPTION)


class HarborProjectStatus(StatusModel):
    """The project's id in each SDP's Harbor."""

    harborProjectIDs: dict[str, int] = Field(default_factory=dict, description="Harbor project id by SDP")


class ArgoCDProjectAccess(SpecModel):
    """A Keycloak group's role in the Argo CD project."""

    keycloakGroup: KeycloakName = Field(description="Keycloak group name, e.g. platform-admins")
    role: KeycloakName = Field(description="name of a role in the SDP's spec.argocd.roles")


class ArgoCDProjectSpec(SpecModel):
    """An Argo CD project outside any Organization, created in every listed SDP."""

    sdp: SdpNames = Field(description="names of SoftwareDeliveryPlatforms to create the project in")
    projectName: ObjectName | None = Field(
        default=None,
        description="Argo CD project name, default metadata.name; Argo CD cannot rename a project",
        json_schema_extra=immutable("projectName", "delete and recreate the ArgoCDProject to change it"),
    )
    description: Description | None = Field(default=None, description="Argo CD project description")
    sourceRepos: list[BoundedStr] = Field(
        default_factory=list, description="repositories applications may use, wildcards allowed"
    )
    destinations: list[ArgoCDDestination] = Field(
        default_factory=list,
        description="clusters (server or clusterRef) and namespaces applications may deploy to",
    )
    accessControl: list[ArgoCDProjectAccess] = Field(
        default_factory=list, description="project roles granted to Keycloak groups"
    )
    deletionPolicy: DeletionPolicy = Field(default="Delete", description=DELETION_POLICY_DESCRIPTION)


class ArgoCDProjectStatus(StatusModel):
    """Whether the project exists in each SDP's Argo CD."""

    argoCDProjectsCreated: dict[str, bool] = Field(
        default_factory=dict, description="the Argo CD project exists, by SDP"
    )
    argoCDProjectNames: dict[str, str] = Field(
        default_factory=dict, description="name of the Argo CD project by SDP (its identity)"
    )
