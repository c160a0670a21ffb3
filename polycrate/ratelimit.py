"""A request-rate limit shared by every worker process through Redis.

Twenty worker pods must not flood one GitLab: each (system, SDP) pair has one budget,
enforced with the generic cell rate algorithm (GCRA) in a Lua script, so the check and the
update are one atomic step in Redis and no process can overspend between them. Callers ask
`acquire()` before each request; it sleeps until the request fits. Keys hold only the system
and the SDP's namespace/name, never credentials.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import redis

from polycrate.errors import TransientError

DEFAULT_REQUESTS_PER_SECOND = 20.0
DEFAULT_BURST = 20

# KEYS[1] = limiter key; ARGV = emission interval (ms), burst, now (ms).
# Returns 0 when the request may go now, else the milliseconds to wait.
_GCRA = """
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local allow_at = tat - interval * burst
if now < allow_at then
  return allow_at - now
end
local new_tat = tat + interval
redis.call('SET', KEYS[1], new_tat, 'PX', math.ceil(new_tat - now + interval))
return 0
"""


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
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.key = f"polycrate:ratelimit:{system}:{scope}"
        self._client = client
        self._interval_ms = 1000.0 / rate
        self._burst = max(1, burst)
        self._script = client.register_script(_GCRA)
        self._sleep = sleep
        self._clock = clock

    def try_acquire(self) -> float:
        """0.0 if a request may go now (and counts it), else seconds to wait (nothing counted)."""
        now_ms = int(self._clock() * 1000)
        try:
            wait_ms = self._script(keys=[self.key], args=[self._interval_ms, self._burst, now_ms])
        except redis.RedisError as exc:
            raise TransientError(
                f"rate limiter {self.key}: Redis unavailable ({type(exc).__name__})"
            ) from None
        return float(wait_ms) / 1000.0

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
