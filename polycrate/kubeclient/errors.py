"""One error hierarchy for the Kubernetes API, sorted for the retry policy and for the user.

Every failure becomes a `KubeError`: `KubeUnreachableError` when there was no answer at all
(refused, reset, timed out, TLS), otherwise the subclass of the answer's status code.
Each is also a `TransientError` (retry: no answer, 409, 429, 5xx) or a `PermanentError` (only
the user can fix it: 401, 403, 404, 422, other 4xx), so the task runtime needs no knowledge of
Kubernetes. A 429 or 503 carries the server's Retry-After in `retry_after`. Messages hold the
request line and the server's Status message, never a request body or header (no token leaks).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Mapping

import urllib3
from kubernetes.client import ApiClient
from kubernetes.client.rest import ApiException

from polycrate.errors import PermanentError, PolycrateError, TransientError
from polycrate.httppolicy import parse_retry_after
from polycrate.rbac import RBAC_HINT


class KubeError(PolycrateError):
    """Any failure talking to the Kubernetes API.

    `code` is the HTTP status (0: no answer), `reason` the Status reason (CamelCase, also used
    for conditions and Events), `message` the server's own message.
    """

    default_reason = "Failed"

    def __init__(
        self,
        text: str,
        *,
        code: int = 0,
        reason: str = "",
        message: str = "",
        retry_after: float | None = None,
    ) -> None:
        # Not super().__init__: the Transient/Permanent bases take different keywords, and
        # every attribute either of them promises is set here.
        Exception.__init__(self, text)
        self.code = code
        self.status_code = code or None
        self.reason = reason or self.default_reason
        self.message = message
        self.retry_after = retry_after


class KubeUnreachableError(KubeError, TransientError):
    """No usable answer from the API server (refused, reset, timed out, TLS, cut mid-stream)."""

    default_reason = "Unreachable"


class InactiveStreamError(KubeUnreachableError):
    """A watch stream delivered nothing, not even a bookmark, within the inactivity timeout."""


class KubeConfigError(KubeError, PermanentError):
    """No usable kubeconfig or in-cluster configuration."""

    default_reason = "KubeConfig"


class KubeTimeoutError(KubeError, TransientError):
    """The cluster did not reach an expected state in time."""

    default_reason = "Timeout"


class KubeClientError(KubeError, PermanentError):
    """A 4xx that resending cannot fix (400, 422, ...)."""

    default_reason = "Invalid"


class Unauthorized(KubeClientError):
    """401: the credentials are not accepted."""

    default_reason = "Unauthorized"


class Forbidden(KubeClientError):
    """403: RBAC does not allow the request; the message names user, verb and resource."""

    default_reason = "Forbidden"


class NotFound(KubeClientError):
    """404: the object (or its kind) does not exist."""

    default_reason = "NotFound"


class Gone(KubeClientError):
    """410: the resourceVersion or continue token was compacted away; list again."""

    default_reason = "Expired"


class Conflict(KubeError, TransientError):
    """409: the object changed since it was read, or already exists (reason AlreadyExists).

    Transient: read-modify-write loops read again and redo it at once.
    """

    default_reason = "Conflict"


class TooManyRequests(KubeError, TransientError):
    """429: the API server throttles; `retry_after` says for how long."""

    default_reason = "TooManyRequests"


class ServerError(KubeError, TransientError):
    """5xx (and 408/425): the server failed or is unavailable for now."""

    default_reason = "InternalError"


_BY_CODE: dict[int, type[KubeError]] = {
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    410: Gone,
    429: TooManyRequests,
    408: ServerError,
    425: ServerError,
}


def status_details(payload: bytes | str | None) -> tuple[str, str]:
    """(reason, message) of a Kubernetes Status body; the message never includes request bodies."""
    if isinstance(payload, str):
        payload = payload.encode()
    try:
        status = json.loads(payload or b"{}")
        return str(status.get("reason") or ""), str(status.get("message") or "")
    except (ValueError, AttributeError):
        return "", (payload or b"")[:200].decode("utf-8", "replace")


def retry_after(headers: Mapping[str, str] | None) -> float | None:
    """The seconds a 429/503 asks to wait (Retry-After as seconds or an HTTP date), or None."""
    return parse_retry_after((headers or {}).get("Retry-After"))


def status_error(
    code: int,
    payload: bytes | str | None,
    *,
    what: str,
    headers: Mapping[str, str] | None = None,
) -> KubeError:
    """The error of an answer with status `code` to request `what` (e.g. "GET /api/v1/nodes")."""
    reason, message = status_details(payload)
    cls = _BY_CODE.get(code) or (ServerError if code >= 500 else KubeClientError)
    reason = reason or cls.default_reason
    if cls in (Unauthorized, Forbidden):
        reason = cls.default_reason  # conditions say what to fix, whatever the server called it
    text = f"{what}: {code} {reason}" + (f": {message}" if message else "")
    if cls is Forbidden:
        text += RBAC_HINT  # the server's message names user, verb and resource: what to grant
    return cls(text, code=code, reason=reason, message=message, retry_after=retry_after(headers))


def event_error(obj: Mapping[str, object], *, what: str) -> KubeError:
    """The error of a watch stream's ERROR event (its object is a Status)."""
    code = int(str(obj.get("code") or 500))
    return status_error(code, json.dumps(dict(obj)), what=what)


def connection_reason(exc: BaseException) -> str:
    """The socket-level reason of a failed connection ("Connection refused"), when there is one."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.strerror:
            return seen.strerror
        nxt = getattr(seen, "reason", None)
        seen = nxt if isinstance(nxt, BaseException) else (seen.__cause__ or seen.__context__)
    text = str(getattr(exc, "reason", None) or exc).strip()
    text = text.splitlines()[0] if text else type(exc).__name__
    # urllib3 prefixes the connection object, e.g. "HTTPConnection(host=..., port=...): <reason>".
    return text.rsplit("): ", 1)[-1]


def unreachable(host: str, what: str, exc: BaseException) -> KubeUnreachableError:
    return KubeUnreachableError(
        f"cannot reach the Kubernetes API at {host} to {what}: {connection_reason(exc)}"
    )


@contextlib.contextmanager
def translate_api_errors(api_client: ApiClient, action: str) -> Iterator[None]:
    """The same errors for calls through the generated client (ApiextensionsV1Api, ...).

    `action` reads like "create CustomResourceDefinition organizations.polycrate.io".
    """
    try:
        yield
    except ApiException as exc:
        if not exc.status:  # the generated client wraps TLS and protocol failures this way
            raise unreachable(str(api_client.configuration.host), action, exc) from None
        raise status_error(exc.status, exc.body, what=f"cannot {action}", headers=exc.headers) from None
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise unreachable(str(api_client.configuration.host), action, exc) from None
