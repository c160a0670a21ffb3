"""The shared rate limiter against a real redis-server: tokens come from one GCRA budget in
Redis, taken in batches so a process does not pay a round trip per request."""

from __future__ import annotations

import threading

import redis

from polycrate.ratelimit import HOLD_SECONDS, RateLimiter, batch_size


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def evalsha_calls(client: redis.Redis) -> int:
    return int(client.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0))


def limiter(client: redis.Redis, clock: Clock, scope: str, *, rate: float, burst: int) -> RateLimiter:
    return RateLimiter(
        client, system="gitlab", scope=scope, rate=rate, burst=burst, clock=clock, monotonic=clock
    )


def test_a_process_takes_tokens_in_batches_instead_of_one_round_trip_per_request(
    redis_client: redis.Redis,
) -> None:
    clock = Clock()
    gitlab = limiter(redis_client, clock, "polycrate/batches", rate=10_000, burst=10_000)
    redis_client.script_load(gitlab._script.script)
    before = evalsha_calls(redis_client)

    for _ in range(100):
        assert gitlab.acquire() == 0.0

    assert batch_size(10_000) == 16
    assert evalsha_calls(redis_client) - before == 7  # ceil(100 / 16)


def test_no_more_than_the_burst_is_granted_at_once_however_the_tokens_are_batched(
    redis_client: redis.Redis,
) -> None:
    clock = Clock()
    first = limiter(redis_client, clock, "polycrate/shared", rate=10, burst=8)
    second = limiter(redis_client, clock, "polycrate/shared", rate=10, burst=8)

    granted = sum(1 for turn in range(40) if (first if turn % 2 else second).try_acquire() == 0.0)

    # GCRA admits burst + 1 at one instant; batches of 2 tokens never add to that.
    assert batch_size(8) == 2
    assert granted == 9
    assert 0.09 <= first.try_acquire() <= 0.1  # the next token is one emission interval away
    clock.now += 0.1
    assert second.try_acquire() == 0.0


def test_unspent_tokens_lapse_and_the_next_request_asks_redis_again(redis_client: redis.Redis) -> None:
    clock = Clock()
    harbor = limiter(redis_client, clock, "polycrate/lapse", rate=100, burst=40)
    harbor.acquire()
    before = evalsha_calls(redis_client)
    harbor.acquire()
    assert evalsha_calls(redis_client) == before  # spent from the batch

    clock.now += HOLD_SECONDS + 0.01
    harbor.acquire()

    assert evalsha_calls(redis_client) == before + 1


def test_threads_of_one_process_share_its_budget_without_losing_or_doubling_tokens(
    redis_client: redis.Redis,
) -> None:
    clock = Clock()
    argocd = limiter(redis_client, clock, "polycrate/threads", rate=1000, burst=1000)
    redis_client.script_load(argocd._script.script)
    before = evalsha_calls(redis_client)
    admitted: list[float] = []

    def work() -> None:
        for _ in range(20):
            admitted.append(argocd.try_acquire())

    threads = [threading.Thread(target=work) for _ in range(32)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert admitted.count(0.0) == 640
    assert evalsha_calls(redis_client) - before == 40  # 640 / 16: every batch was spent whole
    # Redis saw exactly the 640 tokens: its theoretical arrival time moved 640 intervals ahead.
    assert float(redis_client.get(argocd.key) or 0) == clock.now * 1000 + 640 * 1.0
