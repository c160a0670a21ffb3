"""Credentials read from Kubernetes Secrets at the moment they are needed.

Workers never receive credentials through Redis or task arguments: a handler names the
Secret (namespace, name, key) and this reader fetches it from the API, caching the decoded
data for a short time per process so a burst of reconciles costs one read. A missing Secret
or key is a DependencyNotFoundError naming the Secret and key, never the value; a Secret the
operator may not read (401/403) is a permanent error quoting the API server's reason, which names
the missing permission, so it is reported once instead of retried.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable, Sequence

from kubernetes import client as k8s
from kubernetes.client.rest import ApiException

from polycrate.errors import DependencyNotFoundError, PermanentError, TransientError
from polycrate.rbac import RBAC_HINT


class SecretReader:
    """Reads Secret keys with a short per-process cache (default 30 s)."""

    def __init__(
        self,
        core_api: k8s.CoreV1Api,
        *,
        ttl_seconds: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        namespaces: Sequence[str] = (),
    ) -> None:
        self._core = core_api
        self._namespaces = tuple(namespaces)
        self._ttl = ttl_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._cache: dict[tuple[str, str], tuple[float, dict[str, str]]] = {}

    def get(self, namespace: str, name: str, key: str) -> str:
        data = self._data(namespace, name)
        if key not in data:
            raise DependencyNotFoundError(
                f'Secret {namespace}/{name} has no key "{key}" (keys: {", ".join(sorted(data)) or "none"})'
            )
        return data[key]

    def invalidate(self, namespace: str, name: str) -> None:
        """Forget a Secret, e.g. after the system rejected its credentials."""
        with self._lock:
            self._cache.pop((namespace, name), None)

    def _data(self, namespace: str, name: str) -> dict[str, str]:
        if self._namespaces and namespace not in self._namespaces:
            raise PermanentError(
                f"Secret {namespace}/{name} is outside the namespaces this operator serves "
                f"(POLYCRATE_NAMESPACES={','.join(self._namespaces)}); add {namespace} or move the Secret",
                reason="OutsideNamespaces",
            )
        now = self._clock()
        with self._lock:
            cached = self._cache.get((namespace, name))
            if cached and cached[0] > now:
                return cached[1]
        try:
            secret = self._core.read_namespaced_secret(name, namespace)
        except ApiException as exc:
            if exc.status == 404:
                raise DependencyNotFoundError(f"Secret {namespace}/{name} not found") from None
            if exc.status in (401, 403):
                raise PermanentError(
                    f"reading Secret {namespace}/{name}: {exc.status} {_server_message(exc)}{RBAC_HINT}",
                    reason="Forbidden" if exc.status == 403 else "Unauthorized",
                    status_code=exc.status,
                ) from None
            raise TransientError(f"reading Secret {namespace}/{name}: HTTP {exc.status}") from None
        data = {k: base64.b64decode(v).decode() for k, v in (secret.data or {}).items()}
        data.update(secret.string_data or {})
        with self._lock:
            self._cache[(namespace, name)] = (now + self._ttl, data)
        return data


def _server_message(exc: ApiException) -> str:
    """The message of the API server's Status body (it names user, verb and resource), else the reason."""
    try:
        body = json.loads(exc.body or "{}")
    except (TypeError, ValueError):
        body = {}
    return str(body.get("message") or exc.reason or "") if isinstance(body, dict) else str(exc.reason or "")
