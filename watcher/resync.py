"""Periodic resync, for drift only: every known key is enqueued again exactly once per period.

Reconciles are level-triggered, so re-running each key now and then repairs drift that no event
announces (someone changed a group in Keycloak by hand, an external call failed silently). It
is not how failures heal (tasks.healing does that within seconds), so it only has to be steady
and bounded: each key gets a fixed phase in the period (a hash of the key with a random salt
per watcher), and is enqueued at that phase in every period, so two resyncs of a key are exactly
one period apart, the first one falls within the first period after start, and the keys are a
steady trickle spread over the period instead of a burst. A key learnt mid-period is resynced at
its next phase, at most one period later. Coalescing absorbs a resync that meets a pending event.
"""

from __future__ import annotations

import logging
import math
import random
import time
import zlib
from collections.abc import Callable

from polycrate.daemon_loop import DaemonLoop
from polycrate.keys import ObjectKey

log = logging.getLogger(__name__)


class Resyncer(DaemonLoop):
    """Walks the known keys, each at its own phase of the period, on a daemon thread."""

    thread_name = "resync"

    def __init__(
        self,
        keys: Callable[[], list[ObjectKey]],
        resync_key: Callable[[ObjectKey], bool],
        *,
        period: float,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
        tick: float | None = None,
    ):
        if period <= 0:
            raise ValueError("resync period must be positive")
        super().__init__()
        self._keys = keys
        self._resync_key = resync_key
        self.period = period
        self._salt = (rng or random.Random()).getrandbits(32).to_bytes(4, "big")
        self._clock = clock
        self._tick = tick if tick is not None else min(1.0, period / 100)
        self._phases: dict[ObjectKey, float] = {}
        self.cycles_completed = 0

    def phase(self, key: ObjectKey) -> float:
        """Seconds into each period at which `key` is resynced."""
        phase = self._phases.get(key)
        if phase is None:
            phase = zlib.crc32(self._salt + str(key).encode()) / 2**32 * self.period
            self._phases[key] = phase
        return phase

    def _run(self) -> None:
        started = self._clock()
        done_until = 0.0
        while not self._stop.wait(self._tick):
            now = self._clock() - started
            self.resync_between(done_until, now)
            done_until = now
            self.cycles_completed = int(now // self.period)

    def resync_between(self, after: float, until: float) -> int:
        """Enqueue every known key whose phase falls in (after, until] seconds since start; return how many."""
        keys = self._keys()
        if len(self._phases) > 2 * len(keys) + 100:
            present = set(keys)
            self._phases = {key: phase for key, phase in self._phases.items() if key in present}
        enqueued = 0
        for key in keys:
            phase = self.phase(key)
            if math.floor((until - phase) / self.period) > math.floor((after - phase) / self.period):
                if self._stop.is_set():
                    break
                if self._resync_key(key):
                    enqueued += 1
        if enqueued:
            log.debug("resync enqueued %d of %d keys", enqueued, len(keys))
        return enqueued
