"""The one retry policy of requests to the Kubernetes API: what is sent again, and when.

Resent, after a short exponential backoff with jitter, at most `attempts` times in all:
- 429 and 503 (the server says it did not process the request) for every method, waiting as
  long as its Retry-After asks, up to `max_retry_after`; a server asking for longer is not
  waited for in-process: the error goes up with its `retry_after` and the task queue (whose cap
  is far higher) holds the key instead of a worker thread;
- no connection at all (refused, connect timeout: the request never left) for every method;
- other 5xx, 408, and a connection lost after sending, for idempotent methods only (GET, HEAD,
  PUT with its resourceVersion, DELETE): a POST or PATCH may have been applied already.
Never resent: 4xx other than 408/429 (404, 409, 403, 401, 410, 422): the same request gets the
same answer; a 409 is for the caller to re-read and redo. This replaces urllib3's silent
default retries (which re-sent a timed-out read three more times past any deadline).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import urllib3

from polycrate.kubeclient.errors import KubeError, KubeUnreachableError, ServerError, TooManyRequests

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})


def never_sent(exc: BaseException) -> bool:
    """Whether a transport failure happened before the request reached the server."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, urllib3.exceptions.NewConnectionError | urllib3.exceptions.ConnectTimeoutError):
            return True
        if isinstance(cause, ConnectionRefusedError):
            return True
        cause = (
            getattr(cause, "reason", None)
            if isinstance(cause, urllib3.exceptions.MaxRetryError)
            else cause.__cause__
        )
    return False


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long a request is resent; `NO_RETRY` for callers with their own deadline."""

    attempts: int = 3
    backoff_initial: float = 0.25
    backoff_max: float = 2.0
    max_retry_after: float = 10.0
    jitter: float = 0.2
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"attempts must be at least 1, got {self.attempts}")

    def retryable(self, method: str, error: KubeError, *, sent: bool = True) -> bool:
        """Whether `error` of a `method` request may be cured by sending it again."""
        if isinstance(error, KubeUnreachableError):
            return not sent or method in IDEMPOTENT_METHODS
        if isinstance(error, TooManyRequests) or error.code == 503:
            return True
        return isinstance(error, ServerError) and method in IDEMPOTENT_METHODS

    def delay(self, attempt: int, error: KubeError) -> float | None:
        """Seconds to wait before attempt `attempt + 1` (1-based), or None: give up now."""
        if attempt >= self.attempts:
            return None
        backoff = min(self.backoff_initial * 2 ** (attempt - 1), self.backoff_max)
        backoff *= self.rng.uniform(1 - self.jitter, 1 + self.jitter)
        if error.retry_after is None:
            return backoff
        if error.retry_after > self.max_retry_after:
            return None  # longer than a thread should block: the task queue waits instead
        return max(backoff, error.retry_after)


NO_RETRY = RetryPolicy(attempts=1)
"""Send once: for callers bounded by their own deadline (leader election renews a Lease)."""
