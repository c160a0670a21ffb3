"""Backoff schedule read from the computed countdowns with an injected clock and random source."""

from __future__ import annotations

import random

import pytest
import redis

from polycrate.keys import ObjectKey
from tasks.retry import BackoffPolicy, RetryTracker

ACME = ObjectKey("Organization", "polycrate", "acme-corp")
SPEC_SCHEDULE = [5, 10, 20, 40, 60, 60]


class ExtremeRandom(random.Random):
    """Always draws the given end of the jitter interval."""

    def __init__(self, end: str) -> None:
        super().__init__(0)
        self.end = end

    def uniform(self, a: float, b: float) -> float:
        return a if self.end == "low" else b


class FrozenClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def tracker(client: redis.Redis, rng: random.Random, clock: FrozenClock | None = None) -> RetryTracker:
    return RetryTracker(
        client, BackoffPolicy(base=5, cap=60, jitter=0.1), rng=rng, clock=clock or FrozenClock(0)
    )


def test_transient_failures_back_off_5_10_20_40_60_60(redis_client: redis.Redis) -> None:
    retries = tracker(redis_client, random.Random(7))

    countdowns = [retries.record_failure(ACME).countdown for _ in SPEC_SCHEDULE]

    for countdown, nominal in zip(countdowns, SPEC_SCHEDULE, strict=True):
        assert nominal * 0.9 <= countdown <= nominal * 1.1
    assert countdowns != [float(n) for n in SPEC_SCHEDULE], "jitter actually varies the delays"


@pytest.mark.parametrize(
    ("end", "expected"), [("low", [4.5, 9, 18, 36, 54, 54]), ("high", [5.5, 11, 22, 44, 54, 54])]
)
def test_jitter_stays_within_ten_percent_and_never_above_the_cap(
    redis_client: redis.Redis, end: str, expected: list[float]
) -> None:
    retries = tracker(redis_client, ExtremeRandom(end))

    countdowns = [retries.record_failure(ACME).countdown for _ in SPEC_SCHEDULE]

    assert countdowns == pytest.approx(expected)


def test_jittered_delays_at_the_cap_stay_spread_below_it() -> None:
    policy = BackoffPolicy(base=5, cap=60, jitter=0.1)
    rng = random.Random(3)

    delays = [policy.delay(20, rng) for _ in range(500)]

    assert max(delays) <= 60
    assert min(delays) >= 54
    assert max(delays) - min(delays) > 4, "keys at the cap must not all come back at once"


def test_due_time_is_computed_from_the_injected_clock(redis_client: redis.Redis) -> None:
    clock = FrozenClock(1_000.0)
    retries = tracker(redis_client, ExtremeRandom("low"), clock)

    first = retries.record_failure(ACME)
    clock.now = 2_000.0
    second = retries.record_failure(ACME)

    assert (first.attempt, first.due_at) == (1, pytest.approx(1_004.5))
    assert (second.attempt, second.due_at) == (2, pytest.approx(2_009.0))


def test_success_resets_the_schedule(redis_client: redis.Redis) -> None:
    retries = tracker(redis_client, ExtremeRandom("high"))
    for _ in range(4):
        retries.record_failure(ACME)

    retries.reset(ACME)

    assert retries.failures(ACME) == 0
    assert retries.record_failure(ACME).countdown == pytest.approx(5.5)


def test_schedule_continues_on_another_worker(redis_client: redis.Redis) -> None:
    tracker(redis_client, ExtremeRandom("low")).record_failure(ACME)

    on_other_worker = tracker(redis.Redis(connection_pool=redis_client.connection_pool), ExtremeRandom("low"))

    assert on_other_worker.record_failure(ACME).countdown == pytest.approx(9.0)


def test_keys_back_off_independently(redis_client: redis.Redis) -> None:
    retries = tracker(redis_client, ExtremeRandom("low"))
    for _ in range(3):
        retries.record_failure(ACME)

    assert retries.record_failure(ObjectKey("Contact", "polycrate", "john-doe")).countdown == pytest.approx(
        4.5
    )


def test_retry_after_from_the_server_wins_when_longer(redis_client: redis.Redis) -> None:
    retries = tracker(redis_client, ExtremeRandom("low"))

    assert retries.record_failure(ACME, retry_after=30).countdown == 30
    assert retries.record_failure(ACME, retry_after=1).countdown == pytest.approx(9.0)


def test_retry_after_beyond_the_cap_is_cut_to_the_cap(redis_client: redis.Redis) -> None:
    retries = RetryTracker(
        redis_client, BackoffPolicy(base=5, cap=60, jitter=0.1, max_retry_after=300), rng=random.Random(1)
    )

    assert retries.record_failure(ACME, retry_after=86_400).countdown == 300


def test_very_long_failure_streak_stays_at_the_cap() -> None:
    assert BackoffPolicy().nominal_delay(10_000) == 60


def test_invalid_policy_is_rejected() -> None:
    with pytest.raises(ValueError):
        BackoffPolicy(base=10, cap=5)
    with pytest.raises(ValueError):
        BackoffPolicy(jitter=1.5)
