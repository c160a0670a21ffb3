"""Runtime settings of the operator, read once from the environment.

Every process of the runtime (watcher, workers, CLI) reads the same variables, so a Deployment
sets them once for all pods. Values are validated by pydantic at start-up: a wrong value is one
`SettingsError` line naming the variable, not a traceback deep inside a reconcile. The defaults
are the production ones (the spec's 5 s / 60 s backoff, a visibility timeout far above any
reconcile); tests shorten them through the same variables.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from polycrate.errors import PermanentError

# Field name -> environment variable. REDIS_URL and KUBECONFIG keep their conventional names.
ENVIRONMENT_VARIABLES: dict[str, str] = {
    "redis_url": "REDIS_URL",
    "redis_prefix": "POLYCRATE_REDIS_PREFIX",
    "kubeconfig": "POLYCRATE_KUBECONFIG",
    "kube_pool_maxsize": "POLYCRATE_KUBE_POOL_MAXSIZE",
    "lock_ttl_seconds": "POLYCRATE_LOCK_TTL",
    "lock_defer_seconds": "POLYCRATE_LOCK_DEFER",
    "retry_base_seconds": "POLYCRATE_RETRY_BASE",
    "retry_cap_seconds": "POLYCRATE_RETRY_CAP",
    "retry_jitter": "POLYCRATE_RETRY_JITTER",
    "retry_after_cap_seconds": "POLYCRATE_RETRY_AFTER_CAP",
    "resync_period_seconds": "POLYCRATE_RESYNC_PERIOD",
    "pending_stale_after_seconds": "POLYCRATE_PENDING_STALE_AFTER",
    "reconcile_time_limit_seconds": "POLYCRATE_RECONCILE_TIME_LIMIT",
    "visibility_timeout_seconds": "POLYCRATE_VISIBILITY_TIMEOUT",
    "redis_socket_timeout_seconds": "POLYCRATE_REDIS_SOCKET_TIMEOUT",
    "heal_interval_seconds": "POLYCRATE_HEAL_INTERVAL",
    "handler_modules": "POLYCRATE_HANDLER_MODULES",
    "namespaces": "POLYCRATE_NAMESPACES",
    "pod_namespace": "POD_NAMESPACE",
}

DEFAULT_NAMESPACE = "polycrate"
# Where the kubelet puts the namespace of a pod's ServiceAccount.
SERVICE_ACCOUNT_NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


# A Redis URL may carry a password; its value never goes into a message.
_MAY_HOLD_CREDENTIALS = frozenset({"redis_url"})


def redact_url(url: str) -> str:
    """`url` with any password replaced by ***, for log lines and error messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


class SettingsError(PermanentError):
    """An environment variable holds a value the operator cannot use."""

    def __init__(self, message: str):
        super().__init__(message, reason="InvalidSettings")


class Settings(BaseModel):
    """What the watcher, the workers and the CLI need to know about their environment."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    redis_url: str = Field("redis://127.0.0.1:6379/0", description="Celery broker and coordination state.")
    redis_prefix: str = Field("polycrate", min_length=1, description="Prefix of every Redis key we own.")
    kubeconfig: str | None = Field(
        None, description="Kubeconfig path; None = $KUBECONFIG, ~/.kube, in-cluster."
    )
    kube_pool_maxsize: int = Field(
        32, ge=1, description="Connections to the API server per process: at least the worker's concurrency."
    )
    lock_ttl_seconds: float = Field(30.0, gt=0, description="Per-key lock lifetime; renewed while held.")
    lock_defer_seconds: float = Field(1.0, gt=0, description="Countdown of a task that found its key locked.")
    retry_base_seconds: float = Field(5.0, gt=0, description="First backoff delay after a transient failure.")
    retry_cap_seconds: float = Field(60.0, gt=0, description="Backoff never waits longer than this.")
    retry_jitter: float = Field(
        0.1, ge=0, lt=1, description="Relative jitter of every backoff delay (0.1 = ±10%)."
    )
    retry_after_cap_seconds: float = Field(
        300.0, ge=0, description="A server's Retry-After postpones a retry by at most this long."
    )
    resync_period_seconds: float = Field(
        600.0, gt=0, description="Every known key is re-enqueued this often."
    )
    pending_stale_after_seconds: float = Field(
        300.0, gt=0, description="A pending key whose task has not started after this long is sent again."
    )
    reconcile_time_limit_seconds: float = Field(300.0, gt=0, description="Hard time limit of one reconcile.")
    visibility_timeout_seconds: float = Field(
        3600.0,
        gt=0,
        description="Redis transport: an unacknowledged task is redelivered after this long. Keep it far "
        "above the reconcile time limit and the retry cap, or long tasks run twice.",
    )
    redis_socket_timeout_seconds: float = Field(
        5.0,
        gt=0,
        description="Connect and read timeout of the coordination Redis clients (at most a quarter of "
        "the lock TTL is used).",
    )
    heal_interval_seconds: float = Field(
        5.0,
        gt=0,
        description="How often the self-healing loop publishes due retries and re-sends keys a dead "
        "process held.",
    )
    handler_modules: tuple[str, ...] = Field((), description="Extra modules that register handlers.")
    namespaces: tuple[str, ...] = Field(
        (),
        description="Serve only these namespaces (watches, lists, Secret reads); empty = the whole cluster. "
        "Cluster-scoped kinds (Node, Artifact) are still watched cluster-wide.",
    )
    pod_namespace: str | None = Field(
        None,
        pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$",
        description="The operator's own namespace (downward API); holds the leader Lease.",
    )

    @property
    def operator_namespace(self) -> str:
        """The namespace the operator runs in: POD_NAMESPACE, else the pod's ServiceAccount
        namespace, else `polycrate` (outside a cluster)."""
        if self.pod_namespace:
            return self.pod_namespace
        try:
            return SERVICE_ACCOUNT_NAMESPACE_FILE.read_text().strip() or DEFAULT_NAMESPACE
        except OSError:
            return DEFAULT_NAMESPACE

    @field_validator("namespaces")
    @classmethod
    def _namespace_names(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for name in value:
            if not re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", name):
                raise ValueError(f"{name!r} is not a namespace name (lowercase letters, digits and '-')")
        return tuple(dict.fromkeys(value))

    @field_validator("handler_modules", "namespaces", mode="before")
    @classmethod
    def _split_module_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(name.strip() for name in value.split(",") if name.strip())
        return value

    @field_validator("kubeconfig", "pod_namespace", mode="before")
    @classmethod
    def _empty_kubeconfig_means_default(cls, value: Any) -> Any:
        return value or None

    @model_validator(mode="after")
    def _cap_not_below_base(self) -> Settings:
        if self.retry_cap_seconds < self.retry_base_seconds:
            raise ValueError(
                f"retry cap ({self.retry_cap_seconds}s) must not be below the retry base ({self.retry_base_seconds}s)"
            )
        return self

    @property
    def redis_timeout(self) -> float:
        """The socket timeout for coordination clients: the setting, but at most a quarter of the lock
        TTL, so a stalled link is noticed (and a run fenced) while its lock still holds."""
        return min(self.redis_socket_timeout_seconds, self.lock_ttl_seconds / 4)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read the variables of `ENVIRONMENT_VARIABLES` from `environ` (default: os.environ)."""
        environ = os.environ if environ is None else environ
        values = {
            field: environ[variable]
            for field, variable in ENVIRONMENT_VARIABLES.items()
            if variable in environ
        }
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            problems = []
            for error in exc.errors():
                field = str(error["loc"][0]) if error["loc"] else ""
                variable = ENVIRONMENT_VARIABLES.get(field, field or "settings")
                shown = "<hidden>" if field in _MAY_HOLD_CREDENTIALS else repr(environ.get(variable, ""))
                problems.append(f"{variable}={shown}: {error['msg']}")
            raise SettingsError("invalid setting " + "; ".join(problems)) from None

    def environment(self) -> dict[str, str]:
        """These settings as environment variables, for starting child processes with the same view."""
        variables: dict[str, str] = {}
        for field, variable in ENVIRONMENT_VARIABLES.items():
            value = getattr(self, field)
            if value is None:
                continue
            variables[variable] = ",".join(value) if isinstance(value, tuple) else str(value)
        return variables
