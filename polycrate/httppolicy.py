"""One HTTP policy for every external system the workers talk to.

Every client (requests for Harbor, Argo CD and the Polycrate API; the sessions inside
python-keycloak and python-gitlab) gets the same timeouts, connection pool and TLS settings,
and every failed response is sorted into TransientError (retry with backoff: connection
errors, timeouts, 429, 5xx) or PermanentError (a 4xx that only the user can fix). Error
messages carry the system, the operation and the server's own error text, never credentials:
request headers and bodies are not echoed. Every request is counted and timed per system
(polycrate.call_metrics). The environment's proxy settings are read once per host and session,
not before every request (`_read_environment_once`).
"""

from __future__ import annotations

import email.utils
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from requests.sessions import merge_setting
from requests.utils import get_environ_proxies

from polycrate import call_metrics
from polycrate.errors import PermanentError, PolycrateError, TransientError
from polycrate.fence import check_fence_for
from polycrate.settings import Settings

TRANSIENT_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})

_REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    412: "PreconditionFailed",
    422: "Unprocessable",
}


def _pool_size_setting() -> int:
    return Settings.from_env().http_pool_size


@dataclass(frozen=True)
class HttpPolicy:
    """Connection settings shared by all clients of one system.

    `verify` is True by default; `ca_bundle` points at a PEM file for private CAs and wins over
    `verify`. Timeouts are (connect, read) seconds. `pool_maxsize` (default: the
    POLYCRATE_HTTP_POOL_SIZE setting) is how many connections a client keeps per host: every
    thread of a worker may use one SDP's client at once, and a pool smaller than the thread
    count would close (and reopen) the surplus connections after every request.
    """

    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    verify: bool = True
    ca_bundle: str | None = None
    pool_maxsize: int = field(default_factory=_pool_size_setting)
    max_retry_after: float = 300.0

    @property
    def timeout(self) -> tuple[float, float]:
        return (self.connect_timeout, self.read_timeout)

    @property
    def verify_arg(self) -> bool | str:
        """The value requests expects for `verify`."""
        return self.ca_bundle or self.verify


class PolicyAdapter(HTTPAdapter):
    """Applies the policy's timeout to every request that does not set its own, calls
    `before_send` (e.g. a shared rate limiter's acquire) before each request leaves, checks the
    run's fence before a mutating request leaves, and counts and times each request under the
    label `system`."""

    def __init__(
        self,
        timeout: tuple[float, float],
        before_send: Callable[[], object] | None = None,
        *,
        system: str = "other",
        **kwargs,
    ):
        self._timeout = timeout
        self._before_send = before_send
        self._system = system
        super().__init__(**kwargs)

    def send(self, request, **kwargs):  # type: ignore[override]
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self._timeout
        if self._before_send is not None:
            self._before_send()
        # Checked last, right before the request leaves: a rate limiter may have waited long.
        check_fence_for(request.method or "GET")
        started = time.monotonic()
        outcome = "connection_error"
        try:
            response = super().send(request, **kwargs)
        except requests.Timeout:
            outcome = "timeout"
            raise
        else:
            outcome = call_metrics.outcome_of(response.status_code)
            return response
        finally:
            call_metrics.record(self._system, request.method or "", outcome, time.monotonic() - started)


def apply_policy(
    session: requests.Session,
    policy: HttpPolicy | None = None,
    *,
    before_send: Callable[[], object] | None = None,
    system: str = "other",
) -> requests.Session:
    """Make an existing session (ours, or one owned by a client library) follow the policy;
    its requests are counted under `system` (keycloak, gitlab, harbor, argocd, polycrate-api)."""
    policy = policy or HttpPolicy()
    adapter = PolicyAdapter(
        policy.timeout, before_send, system=system, pool_connections=4, pool_maxsize=policy.pool_maxsize
    )
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.verify = policy.verify_arg
    _read_environment_once(session)
    return session


def _read_environment_once(session: requests.Session) -> None:
    """What `session.merge_environment_settings` does, with the proxies looked up once per host.

    requests asks the environment for proxies before every request (`trust_env`), which scans
    and decodes all of os.environ each time: about a tenth of a worker's CPU in the benchmark's
    profile. A process's environment does not change while it runs, so the answer per
    (scheme, host, port, no_proxy) is kept; everything else is merged exactly as requests does.
    """
    if getattr(session, "_polycrate_environment_once", False):
        return
    original = session.merge_environment_settings
    found: dict[tuple[str, str, str | None], dict[str, str]] = {}
    lock = threading.Lock()

    def merge_environment_settings(
        url: str, proxies: Any, stream: Any, verify: Any, cert: Any
    ) -> dict[str, Any]:
        if not session.trust_env:
            return original(url, proxies, stream, verify, cert)
        no_proxy = proxies.get("no_proxy") if proxies is not None else None
        origin = requests.utils.urlparse(url)
        key = (origin.scheme, origin.netloc, no_proxy)
        with lock:
            env_proxies = found.get(key)
        if env_proxies is None:
            env_proxies = get_environ_proxies(url, no_proxy=no_proxy)
            with lock:
                found[key] = env_proxies
        if proxies is not None:
            for name, value in env_proxies.items():
                proxies.setdefault(name, value)
        if verify is True or verify is None:
            verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or verify
        return {
            "proxies": merge_setting(proxies, session.proxies),
            "stream": merge_setting(stream, session.stream),
            "verify": merge_setting(verify, session.verify),
            "cert": merge_setting(cert, session.cert),
        }

    session.merge_environment_settings = merge_environment_settings  # type: ignore[method-assign]
    session._polycrate_environment_once = True  # type: ignore[attr-defined]


def new_session(
    policy: HttpPolicy | None = None,
    *,
    before_send: Callable[[], object] | None = None,
    system: str = "other",
) -> requests.Session:
    """A pooled requests.Session that follows the policy (timeouts, TLS, pool size)."""
    return apply_policy(requests.Session(), policy, before_send=before_send, system=system)


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP date); None if absent/garbled."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (now if now is not None else time.time()))


def classify_status(
    status_code: int,
    *,
    what: str,
    detail: str = "",
    retry_after: float | None = None,
) -> PolycrateError:
    """The error to raise for a non-2xx status of operation `what` (e.g. 'Harbor: create project "x"')."""
    text = f"{what}: HTTP {status_code}"
    if detail:
        text += f": {detail[:300]}"
    if status_code in TRANSIENT_STATUS or status_code >= 500:
        return TransientError(text, retry_after=retry_after, status_code=status_code)
    return PermanentError(text, reason=_REASONS.get(status_code, "RequestRejected"), status_code=status_code)


def _error_detail(response: requests.Response) -> str:
    """The server's own error message, from the common JSON shapes, else the raw body."""
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()
    if isinstance(body, dict):
        for field in ("message", "error_description", "errorMessage", "error", "errors"):
            if field in body and body[field]:
                value = body[field]
                if isinstance(value, list) and value and isinstance(value[0], dict):
                    value = value[0].get("message", value[0])
                return str(value)
    return str(body)


def raise_for_response(response: requests.Response, *, what: str) -> None:
    """Return for 2xx/3xx, else raise the classified error with the server's message."""
    if response.status_code < 400:
        return
    raise classify_status(
        response.status_code,
        what=what,
        detail=_error_detail(response),
        retry_after=parse_retry_after(response.headers.get("Retry-After")),
    )


def json_body(response: requests.Response, *, what: str) -> Any:
    """The decoded JSON of a successful answer ({} when empty).

    A 2xx that is not JSON is usually a proxy's or load balancer's error page, so it is worth
    a retry rather than a crash.
    """
    if not response.content:
        return {}
    try:
        return response.json()
    except ValueError:
        raise TransientError(f"{what}: answer is not JSON (HTTP {response.status_code})") from None


@contextmanager
def transport_errors(what: str) -> Iterator[None]:
    """Turn requests' connection-level failures into TransientError for operation `what`."""
    try:
        yield
    except requests.Timeout as exc:
        raise TransientError(f"{what}: timed out ({type(exc).__name__})") from None
    except requests.ConnectionError as exc:
        raise TransientError(f"{what}: cannot connect ({type(exc).__name__})") from None
    except requests.exceptions.SSLError as exc:  # pragma: no cover - subclass of ConnectionError
        raise PermanentError(f"{what}: TLS verification failed ({exc})", reason="TLSError") from None
