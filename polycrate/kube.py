"""Ground-floor access to the Kubernetes API: one client per caller, errors a user can act on.

`load_api_client()` finds credentials the way kubectl does (explicit path, then $KUBECONFIG,
then ~/.kube/config, then the in-cluster service account) and returns an ApiClient of its own,
never touching the library's global default configuration, so tests and multi-cluster code
can hold several. Failures become PolycrateErrors with one clear line: a missing or broken
kubeconfig is a KubeConfigError (permanent), an unreachable server a KubeUnreachableError
(transient). Messages never include file contents, so a token in a kubeconfig cannot leak.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

import urllib3
import yaml
from kubernetes import client, config
from kubernetes.client.rest import ApiException
from kubernetes.config.incluster_config import SERVICE_HOST_ENV_NAME, SERVICE_TOKEN_FILENAME

from polycrate.errors import PermanentError, PolycrateError, TransientError
from polycrate.kubehttp import retry_after

REQUEST_TIMEOUT = (5.0, 30.0)
"""(connect, read) seconds; the client library has no default and would wait forever."""

DEFAULT_KUBECONFIG = Path("~/.kube/config")


class KubeConfigError(PermanentError):
    """No usable kubeconfig or in-cluster configuration."""

    def __init__(self, message: str):
        super().__init__(message, reason="KubeConfig")


class KubeUnreachableError(TransientError):
    """The API server did not answer (connection refused, DNS, TLS, timeout)."""


class KubeTimeoutError(TransientError):
    """The cluster did not reach an expected state in time."""


def load_api_client(
    kubeconfig: str | os.PathLike[str] | None = None,
    context: str | None = None,
    *,
    pool_size: int | None = None,
) -> client.ApiClient:
    """An ApiClient for the first configuration that exists, in kubectl's order.

    Order: `kubeconfig` if given, else $KUBECONFIG (a path list), else ~/.kube/config, else the
    in-cluster service account. Raises KubeConfigError naming what was tried or what is wrong.
    `pool_size` sizes the connection pool: a process holding many watch streams at once (the
    watcher) needs more connections than the client's default of 5 per core.
    """
    api_client = _load_api_client(kubeconfig, context)
    if pool_size:
        api_client.configuration.connection_pool_maxsize = pool_size
        api_client.rest_client = type(api_client.rest_client)(api_client.configuration)
    return api_client


def _load_api_client(kubeconfig: str | os.PathLike[str] | None, context: str | None) -> client.ApiClient:
    if kubeconfig is not None:
        path = Path(kubeconfig).expanduser()
        if not path.is_file():
            raise KubeConfigError(f"kubeconfig {path} does not exist")
        return _client_from_file(str(path), context)
    env_paths = [p for p in os.environ.get("KUBECONFIG", "").split(os.pathsep) if p]
    if env_paths:
        if not any(Path(p).expanduser().is_file() for p in env_paths):
            raise KubeConfigError(f"KUBECONFIG={os.environ['KUBECONFIG']} names no existing file")
        return _client_from_file(os.pathsep.join(env_paths), context)
    default = DEFAULT_KUBECONFIG.expanduser()
    if default.is_file():
        return _client_from_file(str(default), context)
    if os.environ.get(SERVICE_HOST_ENV_NAME) and Path(SERVICE_TOKEN_FILENAME).is_file():
        configuration = client.Configuration()
        try:
            config.load_incluster_config(client_configuration=configuration)
        except config.ConfigException as exc:
            raise KubeConfigError(f"in-cluster configuration is not usable: {_first_line(exc)}") from None
        return client.ApiClient(configuration)
    raise KubeConfigError(
        "no Kubernetes configuration found: pass --kubeconfig, set KUBECONFIG, create ~/.kube/config "
        "or run inside a cluster"
    )


def kubeconfig_available(kubeconfig: str | os.PathLike[str] | None = None) -> bool:
    """Whether load_api_client has anything to try (an explicit path counts even if it is wrong)."""
    if kubeconfig is not None or os.environ.get("KUBECONFIG"):
        return True
    if DEFAULT_KUBECONFIG.expanduser().is_file():
        return True
    return bool(os.environ.get(SERVICE_HOST_ENV_NAME)) and Path(SERVICE_TOKEN_FILENAME).is_file()


def _client_from_file(path: str, context: str | None) -> client.ApiClient:
    try:
        return config.new_client_from_config(config_file=path, context=context)
    except yaml.YAMLError as exc:
        line = getattr(getattr(exc, "problem_mark", None), "line", None)
        where = f" (line {line + 1})" if line is not None else ""
        raise KubeConfigError(f"kubeconfig {path} is not valid YAML{where}") from None
    except config.ConfigException as exc:
        raise KubeConfigError(f"kubeconfig {path} is not usable: {_first_line(exc)}") from None
    except (TypeError, AttributeError, KeyError, ValueError) as exc:
        # The loader assumes the documented shape and fails this way on anything else.
        raise KubeConfigError(f"kubeconfig {path} is not a kubeconfig ({type(exc).__name__})") from None


def server_url(api_client: client.ApiClient) -> str:
    """The API server the client talks to, e.g. https://127.0.0.1:6443."""
    return str(api_client.configuration.host)


@contextlib.contextmanager
def translate_api_errors(api_client: client.ApiClient, action: str) -> Iterator[None]:
    """Turn client-library failures inside the block into PolycrateErrors that say what failed.

    5xx, 429 and 409 are transient (retry; 409 means read again and retry), other 4xx are
    permanent; no connection at all is KubeUnreachableError. `action` reads like
    "create CustomResourceDefinition organizations.polycrate.io".
    """
    try:
        yield
    except ApiException as exc:
        raise api_error(exc, action) from None
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise KubeUnreachableError(
            f"cannot reach the Kubernetes API at {server_url(api_client)} to {action}: {_connection_reason(exc)}"
        ) from None


def api_error(exc: ApiException, action: str) -> PolycrateError:
    """The PolycrateError for an API answer: transient for 409/429/5xx, permanent otherwise."""
    status = exc.status or 0
    detail = _status_message(exc)
    message = f"cannot {action}: {status} {exc.reason or ''}".rstrip() + (f": {detail}" if detail else "")
    if status in (409, 429) or status >= 500:
        return TransientError(message, status_code=status, retry_after=retry_after(exc.headers))
    reason = {401: "Unauthorized", 403: "Forbidden", 404: "NotFound", 422: "Invalid"}.get(status, "Failed")
    return PermanentError(message, reason=reason, status_code=status)


def wait_established(
    api_client: client.ApiClient, name: str, *, timeout: float = 60.0, poll_interval: float = 0.2
) -> None:
    """Block until CustomResourceDefinition `name` has Established=True.

    Fails fast with a PermanentError when the server rejected the names (NamesAccepted=False),
    which no amount of waiting fixes; KubeTimeoutError after `timeout` seconds otherwise.
    """
    api = client.ApiextensionsV1Api(api_client)
    deadline = time.monotonic() + timeout
    last = "no conditions yet"
    while True:
        with translate_api_errors(api_client, f"read CustomResourceDefinition {name}"):
            crd = api.read_custom_resource_definition(name, _request_timeout=REQUEST_TIMEOUT)
        conditions = {c.type: c for c in (crd.status.conditions if crd.status else None) or []}
        established = conditions.get("Established")
        if established is not None and established.status == "True":
            return
        names = conditions.get("NamesAccepted")
        if names is not None and names.status == "False":
            raise PermanentError(
                f"CustomResourceDefinition {name}: names not accepted: {names.message or names.reason}",
                reason="NamesNotAccepted",
            )
        if established is not None:
            last = f"Established={established.status}: {established.reason or ''} {established.message or ''}".strip()
        if time.monotonic() >= deadline:
            raise KubeTimeoutError(
                f"CustomResourceDefinition {name} not Established after {timeout:g}s ({last})"
            )
        time.sleep(poll_interval)


def _status_message(exc: ApiException) -> str:
    try:
        body = yaml.safe_load(exc.body) if exc.body else None
    except yaml.YAMLError:
        return ""
    return _first_line(body.get("message", "")) if isinstance(body, dict) else ""


def _connection_reason(exc: BaseException) -> str:
    """The socket-level reason ("Connection refused", "Name or service not known") when there is one."""
    seen: BaseException | None = (
        getattr(exc, "reason", None) if isinstance(exc, urllib3.exceptions.MaxRetryError) else exc
    )
    while seen is not None:
        if isinstance(seen, OSError) and seen.strerror:
            return seen.strerror
        seen = seen.__cause__ or seen.__context__
    text = _first_line(getattr(exc, "reason", None) or exc)
    # urllib3 prefixes the connection object, e.g. "HTTPConnection(host=..., port=...): <reason>".
    return text.rsplit("): ", 1)[-1]


def _first_line(value: object) -> str:
    text = str(value).strip()
    return text.splitlines()[0] if text else type(value).__name__
