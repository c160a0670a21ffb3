"""The retry policy's decisions: which failures are sent again, and how long it waits."""

from __future__ import annotations

import random

import pytest
import urllib3

from polycrate.kubeclient.errors import KubeUnreachableError, status_error
from polycrate.kubeclient.retrying import NO_RETRY, RetryPolicy, never_sent


def error(code: int, retry_after: str | None = None):
    return status_error(code, b"", what="x", headers={"Retry-After": retry_after} if retry_after else None)


POLICY = RetryPolicy(rng=random.Random(1))


@pytest.mark.parametrize("method", ["GET", "POST", "PATCH", "PUT", "DELETE"])
def test_throttling_and_unavailability_are_retried_for_every_method(method: str) -> None:
    assert POLICY.retryable(method, error(429))
    assert POLICY.retryable(method, error(503))


@pytest.mark.parametrize(
    ("method", "retried"), [("GET", True), ("PUT", True), ("DELETE", True), ("POST", False), ("PATCH", False)]
)
def test_other_server_errors_are_retried_only_where_resending_is_harmless(method: str, retried: bool) -> None:
    assert POLICY.retryable(method, error(500)) is retried
    assert POLICY.retryable(method, error(504)) is retried


@pytest.mark.parametrize("code", [400, 401, 403, 404, 409, 410, 422])
def test_client_errors_are_never_retried(code: int) -> None:
    assert not POLICY.retryable("GET", error(code))


def test_a_request_that_never_left_is_retried_even_for_a_create() -> None:
    unreachable = KubeUnreachableError("refused")
    assert POLICY.retryable("POST", unreachable, sent=False)
    assert not POLICY.retryable("POST", unreachable, sent=True)
    assert POLICY.retryable("GET", unreachable, sent=True)
    refused = urllib3.exceptions.NewConnectionError(None, "refused")  # type: ignore[arg-type]
    assert never_sent(urllib3.exceptions.MaxRetryError(None, "/", refused))  # type: ignore[arg-type]
    assert not never_sent(urllib3.exceptions.ReadTimeoutError(None, "/", "read timed out"))  # type: ignore[arg-type]


def test_backoff_doubles_up_to_its_cap_and_stops_after_the_attempts() -> None:
    policy = RetryPolicy(attempts=5, backoff_initial=0.25, backoff_max=1.0, jitter=0)
    assert [policy.delay(n, error(503)) for n in range(1, 6)] == [0.25, 0.5, 1.0, 1.0, None]
    assert NO_RETRY.delay(1, error(503)) is None


def test_retry_after_is_honoured_up_to_the_cap_and_beyond_it_left_to_the_task_queue() -> None:
    policy = RetryPolicy(max_retry_after=10, jitter=0)
    assert policy.delay(1, error(429, "3")) == 3.0
    assert policy.delay(1, error(429, "0")) == 0.25  # never faster than the backoff
    assert policy.delay(1, error(429, "60")) is None
