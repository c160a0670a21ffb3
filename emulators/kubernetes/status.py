"""Kubernetes `Status` objects: every error the emulated API server answers with.

Clients branch on `reason` and `code` (kubectl prints `message`, client-go's `IsConflict`,
`IsNotFound`, `IsAlreadyExists` and the Python client's `ApiException.status` read them), so each
constructor here produces exactly the reason, code, message wording and `details` the real
kube-apiserver produces for that situation. Raise `ApiError` anywhere below the HTTP layer; the
WSGI app turns it into the JSON body and status code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class FieldCause:
    """One entry of `details.causes`: what is wrong with which field."""

    reason: str
    message: str
    field: str = ""

    def to_dict(self) -> dict[str, str]:
        cause = {"reason": self.reason, "message": self.message}
        if self.field:
            cause["field"] = self.field
        return cause


@dataclass
class ApiError(Exception):
    """An API failure that becomes a `Status` response."""

    code: int
    reason: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.code} {self.reason}: {self.message}"

    def to_status(self) -> dict[str, Any]:
        status: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details:
            status["details"] = self.details
        return status


def qualified_resource(plural: str, group: str) -> str:
    """`organizations.polycrate.io`, or just `configmaps` for the core group."""
    return f"{plural}.{group}" if group else plural


def qualified_kind(kind: str, group: str) -> str:
    """`Organization.polycrate.io`, or just `ConfigMap` for the core group."""
    return f"{kind}.{group}" if group else kind


def _details(name: str, group: str, kind: str, **extra: Any) -> dict[str, Any]:
    details: dict[str, Any] = {}
    if name:
        details["name"] = name
    details["group"] = group
    details["kind"] = kind
    details.update(extra)
    return {key: value for key, value in details.items() if value != "" or key == "group"}


def not_found(plural: str, group: str, name: str) -> ApiError:
    return ApiError(
        404,
        "NotFound",
        f'{qualified_resource(plural, group)} "{name}" not found',
        _details(name, group, plural),
    )


def already_exists(plural: str, group: str, name: str) -> ApiError:
    return ApiError(
        409,
        "AlreadyExists",
        f'{qualified_resource(plural, group)} "{name}" already exists',
        _details(name, group, plural),
    )


def conflict(plural: str, group: str, name: str, why: str) -> ApiError:
    return ApiError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {qualified_resource(plural, group)} "{name}": {why}',
        _details(name, group, plural),
    )


STALE_RESOURCE_VERSION = (
    "the object has been modified; please apply your changes to the latest version and try again"
)


def invalid(kind: str, group: str, name: str, causes: list[FieldCause], rendered: list[str]) -> ApiError:
    """422 Invalid; `rendered` are the `field: body` strings joined like field.ErrorList."""
    joined = rendered[0] if len(rendered) == 1 else "[" + ", ".join(rendered) + "]"
    return ApiError(
        422,
        "Invalid",
        f'{qualified_kind(kind, group)} "{name}" is invalid: {joined}',
        _details(name, group, kind, causes=[cause.to_dict() for cause in causes]),
    )


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def forbidden(plural: str, group: str, name: str, why: str, *, cause: FieldCause | None = None) -> ApiError:
    subject = f'{qualified_resource(plural, group)} "{name}"' if name else qualified_resource(plural, group)
    extra: dict[str, Any] = {"causes": [cause.to_dict()]} if cause else {}
    return ApiError(
        403, "Forbidden", f"{subject} is forbidden: {why}", _details(name, group, plural, **extra)
    )


def method_not_allowed(verb: str, plural: str, group: str) -> ApiError:
    return ApiError(
        405,
        "MethodNotAllowed",
        "the server does not allow this method on the requested resource",
        _details("", group, plural, causes=[{"reason": "UnexpectedServerResponse", "message": verb}]),
    )


def unsupported_media_type(content_type: str, accepted: list[str], why: str = "") -> ApiError:
    message = f"the body of the request was in an unknown format - accepted media types include: {', '.join(accepted)}"
    return ApiError(
        415,
        "UnsupportedMediaType",
        f"{message} ({why})" if why else message,
        {"causes": [{"reason": "UnexpectedServerResponse", "message": content_type}]} if content_type else {},
    )


def not_acceptable(accepted: list[str]) -> ApiError:
    return ApiError(
        406,
        "NotAcceptable",
        f"only the following media types are accepted: {', '.join(accepted)}",
    )


def expired(message: str) -> ApiError:
    return ApiError(410, "Expired", message)


def path_not_found() -> ApiError:
    """What the real server says for a URL no API serves (not a missing object)."""
    return ApiError(404, "NotFound", "the server could not find the requested resource")


def success_status(name: str, group: str, plural: str, uid: str) -> dict[str, Any]:
    """The body of a successful DELETE for kinds that do not return the deleted object."""
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": {"name": name, "group": group, "kind": plural, "uid": uid},
    }
