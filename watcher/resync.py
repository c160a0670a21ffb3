"""Periodic resync: every known key is enqueued again once per period, spread out with jitter.

Reconciles are level-triggered, so re-running each key now and then repairs drift that no event
announces (someone changed a group in Keycloak by hand, an external call failed silently). Each
cycle lasts the period ± jitter and walks a shuffled snapshot of the known keys at an even pace,
so resync is a steady trickle instead of a burst that would flood the queues every ten
minutes. Keys that vanished meanwhile are skipped; coalescing absorbs a resync that meets a
pending event. The first cycle starts one period after the initial lists, which already
enqueued everything.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable

from tasks.keys import ObjectKey

log = logging.getLogger(__name__)


class Resyncer:
    """Walks the known keys once per period on a daemon thread."""

    def __init__(
        self,
        keys: Callable[[], list[ObjectKey]],
        resync_key: Callable[[ObjectKey], bool],
        *,
        period: float,
        jitter: float = 0.1,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        if period <= 0:
            raise ValueError("resync period must be positive")
        self._keys = keys
        self._resync_key = resync_key
        self._period = period
        self._jitter = jitter
        self._rng = rng or random.Random()
        self._clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.cycles_completed = 0

    def cycle_length(self) -> float:
        return self._period * self._rng.uniform(1 - self._jitter, 1 + self._jitter)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="resync", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def healthy(self) -> bool:
        return self._thread is None or self._thread.is_alive() or self._stop.is_set()

    def _run(self) -> None:
        if self._stop.wait(self.cycle_length()):
            return
        while not self._stop.is_set():
            self.run_cycle(self.cycle_length())

    def run_cycle(self, length: float) -> int:
        """Enqueue every known key once, evenly over `length` seconds; return how many."""
        started = self._clock()
        keys = self._keys()
        self._rng.shuffle(keys)
        enqueued = 0
        for index, key in enumerate(keys):
            due = started + length * index / len(keys)
            wait = due - self._clock()
            if wait > 0 and self._stop.wait(wait):
                return enqueued
            if self._stop.is_set():
                return enqueued
            if self._resync_key(key):
                enqueued += 1
        remaining = started + length - self._clock()
        if remaining > 0:
            self._stop.wait(remaining)
        self.cycles_completed += 1
        log.debug("resync cycle enqueued %d of %d keys", enqueued, len(keys))
        return enqueued
