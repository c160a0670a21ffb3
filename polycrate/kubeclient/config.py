"""Finding the cluster and its credentials, the way kubectl does, one `ApiClient` per caller.

`load_api_client()` tries an explicit path, then $KUBECONFIG, then ~/.kube/config, then the
in-cluster service account, and returns an ApiClient of its own, never touching the library's
global default configuration, so tests and multi-cluster code can hold several. TLS
verification stays as the kubeconfig says (on unless it sets insecure-skip-tls-verify).
The connection pool is sized for the caller: a worker whose threads share one client, or a
watcher holding many watch streams, needs more than the library's default of 5 per core, or
urllib3 discards connections ("Connection pool is full"). A missing or broken kubeconfig is a
KubeConfigError naming what was tried; messages never include file contents (no token leaks).
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml
from kubernetes import client, config
from kubernetes.config.incluster_config import SERVICE_HOST_ENV_NAME, SERVICE_TOKEN_FILENAME

from polycrate.kubeclient.errors import KubeConfigError

DEFAULT_KUBECONFIG = Path("~/.kube/config")

REQUEST_TIMEOUT = (5.0, 30.0)
"""(connect, read) seconds for calls through the generated client, which has no default and would wait forever."""

DEFAULT_POOL_MAXSIZE = 32
"""Connections kept per API server: one per thread of the default worker (threads pool, 32)."""


def load_api_client(
    kubeconfig: str | os.PathLike[str] | None = None,
    context: str | None = None,
    *,
    pool_maxsize: int = DEFAULT_POOL_MAXSIZE,
) -> client.ApiClient:
    """An ApiClient for the first configuration that exists, in kubectl's order.

    Order: `kubeconfig` if given, else $KUBECONFIG (a path list), else ~/.kube/config, else the
    in-cluster service account. Raises KubeConfigError naming what was tried or what is wrong.
    `pool_maxsize` is the number of connections kept open to the API server at once: at least
    the number of threads that share the client (plus the watches it holds open).
    """
    api_client = _load_api_client(kubeconfig, context)
    if pool_maxsize != api_client.configuration.connection_pool_maxsize:
        api_client.configuration.connection_pool_maxsize = pool_maxsize
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
        return _without_idle_token_refresh(config.new_client_from_config(config_file=path, context=context))
    except yaml.YAMLError as exc:
        line = getattr(getattr(exc, "problem_mark", None), "line", None)
        where = f" (line {line + 1})" if line is not None else ""
        raise KubeConfigError(f"kubeconfig {path} is not valid YAML{where}") from None
    except config.ConfigException as exc:
        raise KubeConfigError(f"kubeconfig {path} is not usable: {_first_line(exc)}") from None
    except (TypeError, AttributeError, KeyError, ValueError) as exc:
        # The loader assumes the documented shape and fails this way on anything else.
        raise KubeConfigError(f"kubeconfig {path} is not a kubeconfig ({type(exc).__name__})") from None


def _without_idle_token_refresh(api_client: client.ApiClient) -> client.ApiClient:
    """Drop the library's token refresh hook when the token cannot expire.

    The kubeconfig loader installs a hook that runs before every request; for a token without
    an expiry (a static token, a token file) it only copies the same host, TLS and token values
    into the configuration again, which costs a few percent of a worker's CPU. Tokens with an
    expiry (exec plugins, auth providers) keep the hook, so they are still refreshed in time.
    """
    configuration = api_client.configuration
    hook = configuration.refresh_api_key_hook
    loaders = [
        cell.cell_contents
        for cell in getattr(hook, "__closure__", None) or ()
        if isinstance(cell.cell_contents, config.kube_config.KubeConfigLoader)
    ]
    if len(loaders) == 1 and "expiry" not in loaders[0].__dict__:
        configuration.refresh_api_key_hook = None
    return api_client


def server_url(api_client: client.ApiClient) -> str:
    """The API server the client talks to, e.g. https://127.0.0.1:6443."""
    return str(api_client.configuration.host)


def _first_line(value: object) -> str:
    text = str(value).strip()
    return text.splitlines()[0] if text else type(value).__name__
