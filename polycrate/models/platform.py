"""SoftwareDeliveryPlatform: where Keycloak, GitLab, Harbor and Argo CD live and how to log in.

An SDP holds connection details and references to Secrets, never credentials themselves, so
the object can be read, logged and passed around freely. Every tenant kind names an SDP; the
SDP's settings (role subgroups, Argo CD role templates, request rate limit) shape what the
workers create for each tenant. At least one system must be configured.
"""

from __future__ import annotations

import re

from pydantic import Field, field_validator, model_validator

from polycrate.models.fieldtypes import (
    KEYCLOAK_NAME_MAX,
    NAME_PATTERN_PLACEHOLDER_PATTERN,
    BoundedStr,
    Description,
    HttpURL,
    KeycloakName,
    ObjectName,
    SecretKey,
    SpecModel,
    Timestamp,
)
from polycrate.models.status import StatusModel

DEFAULT_REQUESTS_PER_SECOND = 10.0
DEFAULT_BURST = 20
DEFAULT_ROLES = ("admins", "developers", "viewers")
DEFAULT_SUBGROUP_NAME_PATTERN = "{org}-{role}"
ARGOCD_ROLE_NAME = re.compile(r"^[a-zA-Z0-9]([-_a-zA-Z0-9]*[a-zA-Z0-9])?$")


class KeycloakCredentialsRef(SpecModel):
    """Secret holding the client credentials of a confidential Keycloak client."""

    secretName: ObjectName = Field(description="name of the Secret in the SDP's namespace")
    clientIdKey: SecretKey = Field(default="client-id", description="key of the client id")
    clientSecretKey: SecretKey = Field(default="client-secret", description="key of the client secret")


class TokenCredentialsRef(SpecModel):
    """Secret holding an API token."""

    secretName: ObjectName = Field(description="name of the Secret in the SDP's namespace")
    tokenKey: SecretKey = Field(default="token", description="key of the token")


class BasicCredentialsRef(SpecModel):
    """Secret holding a username and password."""

    secretName: ObjectName = Field(description="name of the Secret in the SDP's namespace")
    usernameKey: SecretKey = Field(default="username", description="key of the username")
    passwordKey: SecretKey = Field(default="password", description="key of the password")


class KeycloakConnection(SpecModel):
    """The Keycloak realm tenants' groups are created in."""

    url: HttpURL = Field(description="base URL of Keycloak, e.g. https://keycloak.example.com")
    realm: KeycloakName = Field(description="realm that holds the tenant groups and users")
    authRealm: KeycloakName | None = Field(
        default=None, description="realm the client authenticates against; defaults to realm"
    )
    credentialsRef: KeycloakCredentialsRef = Field(description="Secret with the client credentials")


class GitLabConnection(SpecModel):
    """The GitLab instance tenants' groups are created in."""

    url: HttpURL = Field(description="base URL of GitLab, e.g. https://gitlab.example.com")
    credentialsRef: TokenCredentialsRef = Field(description="Secret with an admin or group-owner token")


class HarborConnection(SpecModel):
    """The Harbor registry tenants' projects are created in."""

    url: HttpURL = Field(description="base URL of Harbor, e.g. https://harbor.example.com")
    credentialsRef: BasicCredentialsRef = Field(description="Secret with an admin username and password")


class ArgoCDRoleTemplate(SpecModel):
    """Policies of one Argo CD project role; `{project}` is replaced by the project name."""

    description: Description | None = Field(default=None, description="description of the project role")
    policies: list[BoundedStr] = Field(
        default_factory=list,
        description='Casbin policy lines, e.g. "p, proj:{project}:admin, applications, *, {project}/*, allow"',
    )

    def render(self, project: str) -> list[str]:
        """The policy lines for one Argo CD project."""
        return [policy.replace("{project}", project) for policy in self.policies]


class ArgoCDConnection(SpecModel):
    """The Argo CD instance tenants' projects are created in, and the roles each project gets."""

    url: HttpURL = Field(description="base URL of Argo CD, e.g. https://argocd.example.com")
    credentialsRef: TokenCredentialsRef = Field(description="Secret with an Argo CD API token")
    roles: dict[str, ArgoCDRoleTemplate] = Field(
        default_factory=dict,
        description="project role templates by role name; roleBindings and accessControl refer to these names",
    )

    @field_validator("roles")
    @classmethod
    def _role_names_are_argocd_names(
        cls, roles: dict[str, ArgoCDRoleTemplate]
    ) -> dict[str, ArgoCDRoleTemplate]:
        for name in roles:
            if not ARGOCD_ROLE_NAME.match(name):
                raise ValueError(f'role name "{name}" must be letters, digits, "-" or "_" (e.g. developer)')
        return roles


class RateLimit(SpecModel):
    """Requests per second the workers send to each system of this SDP (token bucket)."""

    requestsPerSecond: float = Field(
        default=DEFAULT_REQUESTS_PER_SECOND,
        gt=0,
        description=f"sustained request rate per system, default {DEFAULT_REQUESTS_PER_SECOND:g}",
    )
    burst: int = Field(
        default=DEFAULT_BURST, ge=1, description=f"requests allowed at once, default {DEFAULT_BURST}"
    )


class PlatformSettings(SpecModel):
    """How tenants are laid out in the systems of this SDP."""

    autoCreateRoleSubgroups: bool = Field(
        default=True,
        description="create one Keycloak subgroup per default role below each organization group",
    )
    defaultRoles: list[KeycloakName] = Field(
        default_factory=lambda: list(DEFAULT_ROLES),
        description="roles that get a subgroup per organization, default admins, developers, viewers",
    )
    subgroupNamePattern: str = Field(
        default=DEFAULT_SUBGROUP_NAME_PATTERN,
        max_length=KEYCLOAK_NAME_MAX,
        pattern=NAME_PATTERN_PLACEHOLDER_PATTERN,
        description="name of a role subgroup; {org} and {role} are replaced, {role} is required",
    )
    rateLimit: RateLimit | None = Field(
        default=None,
        description=(
            f"request rate limit per system; default {DEFAULT_REQUESTS_PER_SECOND:g} requests/s, burst {DEFAULT_BURST}"
        ),
    )

    def subgroup_name(self, org: str, role: str) -> str:
        """`acme-corp` + `admins` -> `acme-corp-admins` with the default pattern."""
        return self.subgroupNamePattern.replace("{org}", org).replace("{role}", role)

    def effective_rate_limit(self) -> RateLimit:
        """The configured rate limit, or the documented default."""
        return self.rateLimit or RateLimit()


class SoftwareDeliveryPlatformSpec(SpecModel):
    """Connection details of the platform systems and how tenants are laid out in them."""

    model_config = SpecModel.model_config | {
        "json_schema_extra": {
            "anyOf": [
                {"required": ["keycloak"]},
                {"required": ["gitlab"]},
                {"required": ["harbor"]},
                {"required": ["argocd"]},
            ]
        }
    }

    keycloak: KeycloakConnection | None = Field(default=None, description="Keycloak connection")
    gitlab: GitLabConnection | None = Field(default=None, description="GitLab connection")
    harbor: HarborConnection | None = Field(default=None, description="Harbor connection")
    argocd: ArgoCDConnection | None = Field(default=None, description="Argo CD connection")
    settings: PlatformSettings = Field(
        default_factory=PlatformSettings, description="tenant layout and request rate limit"
    )

    @model_validator(mode="after")
    def _at_least_one_system(self) -> SoftwareDeliveryPlatformSpec:
        if not (self.keycloak or self.gitlab or self.harbor or self.argocd):
            raise ValueError("needs at least one of keycloak, gitlab, harbor or argocd")
        return self


class SoftwareDeliveryPlatformStatus(StatusModel):
    """Reachability of each configured system; phase Ready when all configured ones answer."""

    keycloakReady: bool | None = Field(default=None, description="Keycloak answered with valid credentials")
    gitlabReady: bool | None = Field(default=None, description="GitLab answered with valid credentials")
    harborReady: bool | None = Field(default=None, description="Harbor answered with valid credentials")
    argoCDReady: bool | None = Field(default=None, description="Argo CD answered with valid credentials")
    lastCheckedAt: Timestamp | None = Field(default=None, description="when the systems were last checked")
