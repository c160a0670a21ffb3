"""Tenants and people: Organization, Contact and ContactGroup.

An Organization is one tenant across all systems of one SDP: a Keycloak group (with role
subgroups), and, when enabled, a GitLab group, a Harbor project and an Argo CD project. Names
in the systems default to the object's metadata.name, so the shortest Organization is just
`sdp:`. A Contact maps an existing Keycloak user onto organizations and ContactGroups; a
ContactGroup is a Keycloak group in one or more SDPs that other resources grant access to.
"""

from __future__ import annotations

from pydantic import Field, model_validator

from polycrate.models.fieldtypes import (
    ArgoCDDestination,
    BoundedStr,
    DeletionPolicy,
    Description,
    DisplayName,
    Email,
    GitLabDescription,
    GitLabPath,
    HarborProjectName,
    KeycloakAttributes,
    KeycloakName,
    ObjectName,
    Quantity,
    SdpNames,
    SpecModel,
    Visibility,
    immutable,
)
from polycrate.models.status import StatusModel

DELETION_POLICY_DESCRIPTION = (
    "Delete (default) removes what the operator created in the systems; Orphan leaves it in place"
)


class KeycloakGroupSettings(SpecModel):
    """The Keycloak group of an Organization or ContactGroup."""

    groupName: KeycloakName | None = Field(
        default=None, description="Keycloak group name, default metadata.name; a change renames the group"
    )
    attributes: KeycloakAttributes = Field(
        default_factory=dict, description='group attributes, e.g. description: ["Main organization group"]'
    )


class OrganizationGitLab(SpecModel):
    """The Organization's GitLab group; absent or disabled means no GitLab group."""

    enabled: bool = Field(default=True, description="create the GitLab group")
    groupPath: GitLabPath | None = Field(
        default=None, description="GitLab group path, default metadata.name; a change moves the group"
    )
    visibility: Visibility = Field(default="private", description="private, internal or public")
    description: GitLabDescription | None = Field(default=None, description="GitLab group description")


class OrganizationHarbor(SpecModel):
    """The Organization's Harbor project; absent or disabled means no Harbor project."""

    enabled: bool = Field(default=True, description="create the Harbor project")
    projectName: HarborProjectName | None = Field(
        default=None,
        description="Harbor project name, default metadata.name; Harbor cannot rename a project",
        json_schema_extra=immutable("projectName", "delete and recreate the Organization to change it"),
    )
    public: bool = Field(default=False, description="anyone may pull from the project")
    storageQuota: Quantity | None = Field(
        default=None, description="storage quota, e.g. 50Gi; absent = unlimited"
    )


class RoleBinding(SpecModel):
    """Grants an Argo CD project role (a role of the SDP) to Keycloak groups."""

    role: KeycloakName = Field(description="name of a role in the SDP's spec.argocd.roles")
    keycloakGroups: list[KeycloakName] = Field(min_length=1, description="Keycloak groups that get the role")


class OrganizationArgoCD(SpecModel):
    """The Organization's Argo CD project; absent or disabled means no Argo CD project."""

    enabled: bool = Field(default=True, description="create the Argo CD project")
    projectName: ObjectName | None = Field(
        default=None,
        description="Argo CD project name, default metadata.name; Argo CD cannot rename a project",
        json_schema_extra=immutable("projectName", "delete and recreate the Organization to change it"),
    )
    description: Description | None = Field(default=None, description="Argo CD project description")
    sourceRepos: list[BoundedStr] = Field(
        default_factory=list,
        description='repositories applications may use, wildcards allowed, e.g. "https://gitlab.example.com/acme-corp/*"',
    )
    destinations: list[ArgoCDDestination] = Field(
        default_factory=list, description="clusters and namespaces applications may deploy to"
    )
    roleBindings: list[RoleBinding] = Field(
        default_factory=list, description="project roles granted to Keycloak groups"
    )


class OrganizationSpec(SpecModel):
    """One tenant across the systems of one SoftwareDeliveryPlatform."""

    sdp: ObjectName = Field(description="name of a SoftwareDeliveryPlatform")
    displayName: DisplayName | None = Field(default=None, description="human-readable name")
    keycloak: KeycloakGroupSettings | None = Field(
        default=None, description="Keycloak group name and attributes"
    )
    gitlab: OrganizationGitLab | None = Field(default=None, description="GitLab group")
    harbor: OrganizationHarbor | None = Field(default=None, description="Harbor project")
    argocd: OrganizationArgoCD | None = Field(default=None, description="Argo CD project")
    deletionPolicy: DeletionPolicy = Field(default="Delete", description=DELETION_POLICY_DESCRIPTION)

    def keycloak_group_name(self, object_name: str) -> str:
        return (self.keycloak.groupName if self.keycloak else None) or object_name

    def gitlab_group_path(self, object_name: str) -> str | None:
        """The GitLab group path, or None when the Organization has no GitLab group."""
        if not self.gitlab or not self.gitlab.enabled:
            return None
        return self.gitlab.groupPath or object_name

    def harbor_project_name(self, object_name: str) -> str | None:
        """The Harbor project name, or None when the Organization has no Harbor project."""
        if not self.harbor or not self.harbor.enabled:
            return None
        return self.harbor.projectName or object_name

    def argocd_project_name(self, object_name: str) -> str | None:
        """The Argo CD project name, or None when the Organization has no Argo CD project."""
        if not self.argocd or not self.argocd.enabled:
            return None
        return self.argocd.projectName or object_name


class OrganizationStatus(StatusModel):
    """IDs of what the Organization owns in each system; phase Provisioning, Ready, Error or Deleting."""

    keycloakGroupID: str | None = Field(default=None, description="id of the Keycloak group")
    keycloakSubgroupIDs: dict[str, str] = Field(
        default_factory=dict, description="ids of the role subgroups by role"
    )
    gitlabGroupID: int | None = Field(default=None, description="id of the GitLab group")
    harborProjectID: int | None = Field(default=None, description="id of the Harbor project")
    argoCDProjectCreated: bool | None = Field(default=None, description="the Argo CD project exists")
    argoCDProjectName: str | None = Field(
        default=None, description="name of the Argo CD project (its identity: Argo CD cannot rename)"
    )


class ContactKeycloak(SpecModel):
    """How to find the existing Keycloak user: by username, by e-mail, or both."""

    model_config = SpecModel.model_config | {
        "json_schema_extra": {"anyOf": [{"required": ["username"]}, {"required": ["email"]}]}
    }

    username: KeycloakName | None = Field(default=None, description="Keycloak username, e.g. john.doe")
    email: Email | None = Field(default=None, description="Keycloak e-mail, used when username is absent")

    @model_validator(mode="after")
    def _username_or_email(self) -> ContactKeycloak:
        if self.username is None and self.email is None:
            raise ValueError("needs username or email to find the Keycloak user")
        return self


class OrganizationMembership(SpecModel):
    """Membership in an Organization with one role."""

    name: ObjectName = Field(description="name of an Organization in the same namespace")
    role: KeycloakName = Field(
        description="role in the organization, e.g. developer (one of the SDP's roles)"
    )


class ContactGroupMembership(SpecModel):
    """Membership in a ContactGroup."""

    contactGroup: ObjectName = Field(description="name of a ContactGroup in the same namespace")


class ContactSpec(SpecModel):
    """A Keycloak user and the organizations and ContactGroups they belong to."""

    keycloak: ContactKeycloak = Field(description="how to find the Keycloak user (username or email)")
    organizations: list[OrganizationMembership] = Field(
        default_factory=list, description="organizations and the role in each"
    )
    additionalGroups: list[ContactGroupMembership] = Field(
        default_factory=list, description="ContactGroups the user is added to"
    )
    deletionPolicy: DeletionPolicy = Field(
        default="Delete",
        description="Delete (default) removes the memberships the operator added; Orphan leaves them",
    )


class ContactStatus(StatusModel):
    """Where the user was found and which groups the operator added them to (removed again on delete)."""

    keycloakUserIDs: dict[str, str] = Field(default_factory=dict, description="Keycloak user id by SDP")
    keycloakGroups: dict[str, list[str]] = Field(
        default_factory=dict, description="Keycloak group paths the user was added to, by SDP"
    )
    gitlabUserIDs: dict[str, int] = Field(default_factory=dict, description="GitLab user id by SDP")
    gitlabGroups: dict[str, list[str]] = Field(
        default_factory=dict, description="GitLab group paths the user was made a member of, by SDP"
    )


class ContactGroupSpec(SpecModel):
    """A Keycloak group, created in every listed SDP, used as an identity source."""

    sdp: SdpNames = Field(description="names of SoftwareDeliveryPlatforms to create the group in")
    keycloak: KeycloakGroupSettings = Field(
        default_factory=KeycloakGroupSettings, description="Keycloak group name and attributes"
    )
    deletionPolicy: DeletionPolicy = Field(default="Delete", description=DELETION_POLICY_DESCRIPTION)


class ContactGroupStatus(StatusModel):
    """The group's id in each SDP's Keycloak."""

    keycloakGroupIDs: dict[str, str] = Field(default_factory=dict, description="Keycloak group id by SDP")
