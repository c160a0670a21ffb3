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
import threading
import time
from collections.abc import Callable, Sequence

from polycrate.errors import DependencyNotFoundError, PermanentError
from polycrate.kubeclient.api import KubeClient
from polycrate.kubeclient.errors import Forbidden, NotFound, Unauthorized
from polycrate.kubeclient.resources import SECRETS
from polycrate.rbac import RBAC_HINT


class SecretReader:
    """Reads Secret keys with a short per-process cache (default 30 s)."""

    def __init__(
        self,
        client: KubeClient,
        *,
        ttl_seconds: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        namespaces: Sequence[str] = (),
    ) -> None:
        self._client = client
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
            secret = self._client.get(SECRETS.path(namespace, name))
        except NotFound:
            raise DependencyNotFoundError(f"Secret {namespace}/{name} not found") from None
        except (Unauthorized, Forbidden) as exc:
            raise PermanentError(
                f"reading Secret {namespace}/{name}: {exc.code} {exc.message or exc.reason}{RBAC_HINT}",
                reason=exc.reason,
                status_code=exc.code,
            ) from None
        data = {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}
        data.update(secret.get("stringData") or {})
        with self._lock:
            self._cache[(namespace, name)] = (now + self._ttl, data)
        return data
