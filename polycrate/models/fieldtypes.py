"""Constrained value types shared by the custom resources, and the spec base class.

Each type carries two things that must never drift apart: the check the operator runs
(an error that names the value and the fix, e.g. `"50Gx" is not a quantity (use e.g. 50Gi)`)
and the OpenAPI fragment the CRD generator puts into the schema, so the API server rejects
the same values before the operator ever sees them. Patterns are written in the common
subset of Python `re` and Go RE2, because the API server evaluates them with RE2.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
    model_validator,
)
from pydantic_core import PydanticCustomError

from polycrate.quantity import QUANTITY_PATTERN, QuantityError, parse_quantity

OBJECT_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
HTTP_URL_PATTERN = r"^https?://[^\s/?#]+[^\s]*$"
GITLAB_PATH_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*(/[A-Za-z0-9][A-Za-z0-9_.-]*)*$"
HARBOR_PROJECT_PATTERN = r"^[a-z0-9]+([._-][a-z0-9]+)*$"
EMAIL_PATTERN = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"
NAME_PATTERN_PLACEHOLDER_PATTERN = r"^.*\{role\}.*$"


MAX_SHOWN_VALUE = 60


def shown_value(value: str) -> str:
    """A value as it appears in an error line: cut short, so a pasted blob cannot flood a condition."""
    return value if len(value) <= MAX_SHOWN_VALUE else value[:MAX_SHOWN_VALUE] + "..."


def _matching(
    pattern: str, what: str, example: str, *, max_length: int | None = None, fmt: str | None = None
):
    """A string type that must match `pattern`; its error says what was expected and shows an example."""
    compiled = re.compile(pattern)

    def check(value: str) -> str:
        if not compiled.match(value) or (max_length is not None and len(value) > max_length):
            raise PydanticCustomError(
                "polycrate_format",
                '"{value}" is not {what} (use e.g. {example})',
                {"value": shown_value(value), "what": what, "example": example},
            )
        return value

    schema: dict[str, Any] = {"type": "string", "pattern": pattern}
    if max_length is not None:
        schema["maxLength"] = max_length
    if fmt is not None:
        schema["format"] = fmt
    return Annotated[str, AfterValidator(check), WithJsonSchema(schema)]


ObjectName = _matching(OBJECT_NAME_PATTERN, "a Kubernetes object name", "acme-corp", max_length=253)
"""Name of another Kubernetes object (lower-case letters, digits, '-' and '.')."""

HttpURL = _matching(HTTP_URL_PATTERN, "an http(s) URL", "https://gitlab.example.com", max_length=2048)
"""An absolute http or https URL, kept verbatim (no normalisation, no trailing slash added)."""

GitLabPath = _matching(GITLAB_PATH_PATTERN, "a GitLab group path", "acme-corp", max_length=255)
"""A GitLab group path; '/' separates parent groups from subgroups."""

HarborProjectName = _matching(HARBOR_PROJECT_PATTERN, "a Harbor project name", "acme-corp", max_length=255)
"""Harbor's project name rule: lower-case alphanumerics separated by single '.', '_' or '-'."""

Email = _matching(EMAIL_PATTERN, "an e-mail address", "john.doe@example.com", max_length=254, fmt="email")
"""An e-mail address (the server checks the `email` format as well)."""

NonEmptyStr = Annotated[str, Field(min_length=1)]

# Limits of the target systems, so the API server refuses what a system would refuse (or truncate):
# Keycloak stores group names, attribute names and attribute values in VARCHAR(255) columns;
# GitLab validates namespace names and paths to 255 and a namespace description to 255
# characters (Namespace::Detail); Harbor project names are at most 255; Kubernetes names 253.
KEYCLOAK_NAME_MAX = 255
KEYCLOAK_ATTRIBUTE_VALUE_MAX = 255
GITLAB_DESCRIPTION_MAX = 255
DISPLAY_NAME_MAX = 255
DESCRIPTION_MAX = 1024
TEXT_MAX = 1024
PEM_MAX = 64 * 1024

SecretKey = Annotated[str, Field(min_length=1, max_length=253)]
"""A key in a Secret's data (at most 253 characters, as Kubernetes allows)."""

KeycloakName = Annotated[str, Field(min_length=1, max_length=KEYCLOAK_NAME_MAX)]
"""A Keycloak group or user name, or a role name that becomes part of one."""

KeycloakAttributes = dict[
    str,
    Annotated[
        list[Annotated[str, Field(max_length=KEYCLOAK_ATTRIBUTE_VALUE_MAX)]],
        Field(max_length=64),
    ],
]
"""Keycloak group attributes: name -> values (each value at most 255 characters)."""

DisplayName = Annotated[str, Field(max_length=DISPLAY_NAME_MAX)]
"""A human-readable name (Argo CD descriptions and Polycrate API names are built from it)."""

GitLabDescription = Annotated[str, Field(max_length=GITLAB_DESCRIPTION_MAX - 100)]
"""A GitLab group description: GitLab's 255 characters minus room for the operator's ownership marker."""

Description = Annotated[str, Field(max_length=DESCRIPTION_MAX)]
"""A free-text description."""

BoundedStr = Annotated[str, Field(min_length=1, max_length=TEXT_MAX)]
"""A non-empty free-text value with an upper bound, e.g. a repository URL pattern."""

DeletionPolicy = Literal["Delete", "Orphan"]
"""What deleting the object does outside the cluster: Delete removes what the operator created
(the default), Orphan leaves it in place and only removes the finalizer."""


def immutable(field: str, fix: str) -> dict[str, Any]:
    """A CRD transition rule: once set, the field keeps its value (`self == oldSelf`)."""
    return {
        "x-kubernetes-validations": [{"rule": "self == oldSelf", "message": f"{field} is immutable; {fix}"}]
    }


Timestamp = datetime
"""RFC 3339 timestamps (`format: date-time` in the CRD); serialised with a trailing Z for UTC."""


def _quantity_from_number(value: Any) -> Any:
    # YAML turns `storageQuota: 50` into an int; Kubernetes treats it as the quantity "50".
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return value


def _check_quantity(value: str) -> str:
    if not re.match(QUANTITY_PATTERN, value):
        raise PydanticCustomError(
            "polycrate_format", '"{value}" is not a quantity (use e.g. 50Gi)', {"value": shown_value(value)}
        )
    try:
        size = parse_quantity(value)
    except QuantityError:
        raise PydanticCustomError(
            "polycrate_format",
            '"{value}" is out of the range of a Kubernetes quantity (0 to just under 8Ei)',
            {"value": shown_value(value)},
        ) from None
    if size != size.to_integral_value():
        # Kubernetes would read "100m" as 0.1 (milli); as a storage size that is a typo for 100Mi.
        raise PydanticCustomError(
            "polycrate_format",
            '"{value}" is not a whole number of bytes (m is milli; use e.g. 100Mi)',
            {"value": shown_value(value)},
        )
    return value


Quantity = Annotated[
    str,
    BeforeValidator(_quantity_from_number),
    AfterValidator(_check_quantity),
    WithJsonSchema(
        {
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "x-kubernetes-int-or-string": True,
            "pattern": QUANTITY_PATTERN,
        }
    ),
]
"""A storage quantity like `50Gi` or `100G`: a Kubernetes quantity (polycrate.quantity)."""


Visibility = Literal["private", "internal", "public"]
"""GitLab group visibility."""


class SpecModel(BaseModel):
    """Base of every spec model: unknown fields are errors, so a typo never goes unnoticed.

    Field names are the YAML names of the spec. Where a YAML name is a Python keyword the
    attribute carries a trailing underscore and the YAML name is its alias.
    """

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class SecretKeyRef(SpecModel):
    """A key in a Secret in the namespace of the referring object."""

    name: ObjectName = Field(description="name of the Secret")
    key: SecretKey = Field(description="key inside the Secret's data")


def _unique(values: list[str]) -> list[str]:
    duplicates = sorted({value for value in values if values.count(value) > 1})
    if duplicates:
        raise PydanticCustomError(
            "polycrate_duplicate", "lists {duplicates} more than once", {"duplicates": ", ".join(duplicates)}
        )
    return values


SdpNames = Annotated[
    list[ObjectName],
    AfterValidator(_unique),
    Field(min_length=1, json_schema_extra={"x-kubernetes-list-type": "set"}),
]
"""Names of the SoftwareDeliveryPlatforms a multi-SDP resource is created in."""


class ArgoCDDestination(SpecModel):
    """Where applications of an Argo CD project may deploy: a server URL or a K8sCluster, not both."""

    model_config = SpecModel.model_config | {
        "json_schema_extra": {"oneOf": [{"required": ["server"]}, {"required": ["clusterRef"]}]}
    }

    server: HttpURL | None = Field(
        default=None, description="API server URL, e.g. https://kubernetes.default.svc"
    )
    clusterRef: ObjectName | None = Field(
        default=None, description="name of a K8sCluster in the same namespace"
    )
    namespace: Annotated[str, Field(min_length=1, max_length=253)] = Field(
        default="*", description='target namespace, "*" for all'
    )

    @model_validator(mode="after")
    def _server_xor_cluster_ref(self) -> ArgoCDDestination:
        if (self.server is None) == (self.clusterRef is None):
            raise PydanticCustomError(
                "polycrate_one_of",
                "needs exactly one of server or clusterRef (e.g. clusterRef: production-cluster)",
            )
        return self
