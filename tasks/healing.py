"""The self-healing loop: what a dead or partitioned process held is redone within seconds.

Every worker (`polycrate operator worker`) runs this loop, but only the holder of a short Redis
lease works, so there is exactly one healer however many workers run and a healer that dies is
replaced within one lease TTL. Every `interval` seconds it calls `KeyQueue.heal`: it publishes
retries and deferrals that became due (they wait in Redis, not in a worker's memory), re-sends
keys whose run died with its lock, and re-sends tasks that vanished with a worker before they
started. So a SIGKILLed worker costs about one lock TTL plus one interval, not the resync period
or the broker's hour-long visibility timeout. Redis being away only pauses the loop.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
from collections import Counter

import redis

from polycrate.daemon_loop import DaemonLoop
from tasks import metrics
from tasks.locking import DELETE_IF_OWNED
from tasks.queue import KeyQueue

log = logging.getLogger(__name__)

# Take the lease if it is free, renew it if it is ours.
_HOLD_LEASE = """
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if not holder then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""


class HealingLoop(DaemonLoop):
    """Runs `KeyQueue.heal` every `interval` seconds while this process holds the healer lease."""

    thread_name = "healing-loop"

    def __init__(
        self,
        client: redis.Redis,
        queue: KeyQueue,
        *,
        interval: float,
        lost_after: float,
        prefix: str = "polycrate",
    ) -> None:
        if interval <= 0:
            raise ValueError("healing interval must be positive")
        super().__init__()
        self.interval = interval
        self.lost_after = lost_after
        self._queue = queue
        self._lease = f"{prefix}:healer"
        # Three missed beats before another process takes over, but never below 10 s.
        self._lease_ms = int(max(3 * interval, 10.0) * 1000)
        self._token = secrets.token_hex(8)
        self._hold = client.register_script(_HOLD_LEASE)
        self._release = client.register_script(DELETE_IF_OWNED)
        self._failing = False
        self.leading = False

    def stop(self, timeout: float = 5.0) -> None:
        super().stop(timeout)
        if self.leading:
            with contextlib.suppress(redis.RedisError):  # otherwise it expires by itself
                self._release(keys=[self._lease], args=[self._token])
            self.leading = False

    @property
    def alive(self) -> bool:
        return self._thread is not None and (self._thread.is_alive() or self._stop.is_set())

    def heal_once(self) -> Counter[str]:
        """One round: take or renew the lease and, holding it, heal; returns what was re-sent by cause."""
        holding = bool(self._hold(keys=[self._lease], args=[self._token, self._lease_ms]))
        if holding != self.leading:
            log.info("this worker %s the self-healing loop", "now runs" if holding else "no longer runs")
            self.leading = holding
        if not holding:
            return Counter()
        causes = Counter(cause for _, _, cause in self._queue.heal(lost_after=self.lost_after))
        for cause, count in causes.items():
            metrics.HEALED.labels(cause).inc(count)
        # Due retries and requeue timers are scheduled work, not a recovery from a failure.
        recovered = {
            cause: count for cause, count in causes.items() if cause not in ("retry-due", "requeue-due")
        }
        if recovered:
            log.warning(
                "self-healing re-sent %s",
                ", ".join(f"{count} key(s) ({cause})" for cause, count in sorted(recovered.items())),
            )
        return causes

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.heal_once()
                if self._failing:
                    log.info("self-healing loop reaches Redis again")
                    self._failing = False
            except Exception as exc:  # Redis or the broker away: try again next round
                if not self._failing:
                    log.warning("self-healing loop paused, Redis or the broker does not answer: %s", exc)
                    self._failing = True
            self._stop.wait(self.interval)
