"""Exponential backoff per key: 5 s doubling to a 60 s cap, with jitter, reset on success.

The failure count of each key lives in Redis, so the schedule continues on whichever worker
picks up the next attempt, and a success anywhere resets it. Jitter spreads the retries of many
keys that failed together (a system outage) so they do not return in one thundering herd; at the
cap it only shortens, so no delay ever exceeds the cap. A server's Retry-After wins when it asks
for longer, up to `max_retry_after` (a server asking for a day must not park a key for a day).
Clock and random source are injected, so the
schedule is tested by reading the computed delays, never by sleeping. Permanent errors are not
retried by this policy at all: they wait for the object to change.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass

import redis

from polycrate.keys import ObjectKey

# A key that stops failing and is never reconciled again should not keep a counter forever.
_COUNTER_TTL_SECONDS = 24 * 3600


@dataclass(frozen=True)
class BackoffPolicy:
    """`base * 2**(attempt-1)` capped at `cap`, times a factor in [1-jitter, 1+jitter], never above `cap`.

    `max_retry_after` bounds how long a server's Retry-After may postpone a retry.
    """

    base: float = 5.0
    cap: float = 60.0
    jitter: float = 0.1
    max_retry_after: float = 300.0

    def __post_init__(self) -> None:
        if self.base <= 0 or self.cap < self.base:
            raise ValueError(f"backoff needs 0 < base <= cap, got base={self.base} cap={self.cap}")
        if not 0 <= self.jitter < 1:
            raise ValueError(f"jitter must be in [0, 1), got {self.jitter}")
        if self.max_retry_after < 0:
            raise ValueError(f"max_retry_after must not be negative, got {self.max_retry_after}")

    def nominal_delay(self, attempt: int) -> float:
        """The delay before retry number `attempt` (1-based), without jitter."""
        if attempt < 1:
            raise ValueError("attempt numbers start at 1")
        # Bounding the exponent keeps a key that failed for weeks from overflowing a float.
        return min(self.cap, self.base * 2 ** min(attempt - 1, 32))

    def delay(self, attempt: int, rng: random.Random) -> float:
        jittered = self.nominal_delay(attempt) * (1 + rng.uniform(-self.jitter, self.jitter))
        # Mirrored below the cap rather than clipped to it: keys at the cap stay spread out.
        return self.cap - (jittered - self.cap) if jittered > self.cap else jittered

    def honour_retry_after(self, countdown: float, retry_after: float | None) -> float:
        """The server's Retry-After when it asks for longer than `countdown`, up to `max_retry_after`."""
        if retry_after is None:
            return countdown
        return max(countdown, min(retry_after, self.max_retry_after))


@dataclass(frozen=True)
class RetryPlan:
    """When a failed key runs again: `countdown` seconds from now, i.e. at `due_at` (epoch seconds)."""

    attempt: int
    countdown: float
    due_at: float


class RetryTracker:
    """Counts consecutive failures per key in Redis and turns them into retry countdowns."""

    def __init__(
        self,
        client: redis.Redis,
        policy: BackoffPolicy,
        *,
        prefix: str = "polycrate",
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self.policy = policy
        self._client = client
        self._prefix = prefix
        self._clock = clock
        self._rng = rng or random.Random()

    def _counter(self, key: ObjectKey) -> str:
        return f"{self._prefix}:failures:{key}"

    def record_failure(self, key: ObjectKey, *, retry_after: float | None = None) -> RetryPlan:
        """Count one more failure of `key` and plan the next attempt."""
        counter = self._counter(key)
        with self._client.pipeline() as pipe:
            pipe.incr(counter)
            pipe.expire(counter, _COUNTER_TTL_SECONDS)
            attempt, _ = pipe.execute()
        countdown = self.policy.honour_retry_after(self.policy.delay(int(attempt), self._rng), retry_after)
        return RetryPlan(attempt=int(attempt), countdown=countdown, due_at=self._clock() + countdown)

    def failures(self, key: ObjectKey) -> int:
        raw = self._client.get(self._counter(key))
        return int(raw) if raw is not None else 0

    def current_delay(self, key: ObjectKey) -> float:
        """The backoff a key has earned so far (0 when it has not failed), without counting a failure."""
        failures = self.failures(key)
        return self.policy.delay(failures, self._rng) if failures else 0.0

    def reset(self, key: ObjectKey) -> None:
        """A success: the next failure starts again at the base delay."""
        self._client.delete(self._counter(key))
