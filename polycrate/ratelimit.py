"""A request-rate limit shared by every worker process through Redis, spent from a local budget.

Twenty worker pods must not flood one GitLab: each (system, SDP) pair has one budget,
enforced with the generic cell rate algorithm (GCRA) in a Lua script, so the check and the
update are one atomic step in Redis and no process can overspend between them. Callers ask
`acquire()` before each request; it sleeps until the request fits. Keys hold only the system
and the SDP's namespace/name, never credentials.

A round trip to Redis per request would cost as much as the request's own bookkeeping, so a
process takes tokens in batches (a quarter of the burst, at most `MAX_BATCH`) and spends them
locally, shared by its threads, for at most `HOLD_SECONDS`; unspent ones lapse. Every token is
still granted by the shared GCRA, so the long-run rate holds across all processes; a process
may spend a batch up to `HOLD_SECONDS` after taking it, so a burst may exceed `burst` by at
most one batch per process.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import redis

from polycrate.errors import TransientError

DEFAULT_REQUESTS_PER_SECOND = 20.0
DEFAULT_BURST = 20
MAX_BATCH = 16
HOLD_SECONDS = 1.0

# KEYS[1] = limiter key; ARGV = emission interval (ms), burst, now (ms), tokens wanted.
# Grants up to `wanted` tokens that fit now: returns {granted, 0}, or {0, ms until one fits}.
_GCRA_BATCH = """
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
local wanted = tonumber(ARGV[4])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local allow_at = tat - interval * burst
if now < allow_at then
  return {0, math.ceil(allow_at - now)}
end
local fits = math.floor((now - allow_at) / interval) + 1
local granted = math.min(wanted, fits)
local new_tat = tat + interval * granted
redis.call('SET', KEYS[1], new_tat, 'PX', math.ceil(new_tat - now + interval))
return {granted, 0}
"""


@dataclass
class _Budget:
    """Tokens one process holds for one limiter key, and until when they may be spent."""

    tokens: int = 0
    expires: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)


_budgets: dict[tuple[int, str, str], _Budget] = {}
_budgets_lock = threading.Lock()


def _server(client: redis.Redis) -> str:
    """Which Redis server and database grant the tokens (tokens of one are no good for another)."""
    pool = getattr(client, "connection_pool", None)
    if pool is None:  # a stand-in without a server (a plan without Redis): its tokens are its own
        return f"local:{id(client)}"
    kwargs = pool.connection_kwargs
    return f"{kwargs.get('host') or kwargs.get('path')}:{kwargs.get('port', '')}/{kwargs.get('db', 0)}"


def _budget(server: str, key: str) -> _Budget:
    """This process's budget for `key` (a forked child starts with none of its parent's tokens)."""
    with _budgets_lock:
        return _budgets.setdefault((os.getpid(), server, key), _Budget())


def batch_size(burst: int) -> int:
    """Tokens taken per round trip: a quarter of the burst, so several processes can hold some."""
    return max(1, min(MAX_BATCH, burst // 4))


class RateLimiter:
    """GCRA limiter: `rate` requests per second on average, bursts of up to `burst`."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        system: str,
        scope: str,
        rate: float = DEFAULT_REQUESTS_PER_SECOND,
        burst: int = DEFAULT_BURST,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.key = f"polycrate:ratelimit:{system}:{scope}"
        self._client = client
        self._server = _server(client)
        self._interval_ms = 1000.0 / rate
        self._burst = max(1, burst)
        self._batch = batch_size(self._burst)
        self._script = client.register_script(_GCRA_BATCH)
        self._sleep = sleep
        self._clock = clock
        self._monotonic = monotonic

    def try_acquire(self) -> float:
        """0.0 if a request may go now (and counts it), else seconds to wait (nothing counted)."""
        budget = _budget(self._server, self.key)
        with budget.lock:
            now = self._monotonic()
            if budget.tokens > 0 and now < budget.expires:
                budget.tokens -= 1
                return 0.0
            granted, wait_ms = self._take(self._batch)
            if granted < 1:
                budget.tokens = 0
                return wait_ms / 1000.0
            budget.tokens, budget.expires = granted - 1, now + HOLD_SECONDS
            return 0.0

    def _take(self, wanted: int) -> tuple[int, float]:
        now_ms = int(self._clock() * 1000)
        try:
            granted, wait_ms = self._script(
                keys=[self.key], args=[self._interval_ms, self._burst, now_ms, wanted]
            )
        except redis.RedisError as exc:
            raise TransientError(
                f"rate limiter {self.key}: Redis unavailable ({type(exc).__name__})"
            ) from None
        return int(granted), float(wait_ms)

    def acquire(self, *, max_wait: float = 60.0) -> float:
        """Block until a request fits; returns seconds waited. Over `max_wait` → TransientError."""
        waited = 0.0
        while True:
            wait = self.try_acquire()
            if wait <= 0:
                return waited
            if waited + wait > max_wait:
                raise TransientError(f"rate limit {self.key}: no budget within {max_wait:.0f}s")
            self._sleep(wait)
            waited += wait
