"""Periodic resync: every known key once per cycle, spread evenly, none before the first period."""

from __future__ import annotations

import random
import threading
import time

from tasks.keys import ObjectKey
from watcher.resync import Resyncer

KEYS = [ObjectKey("Organization", "polycrate", f"org-{index}") for index in range(10)]


class ResyncRecorder:
    """Remembers when each key was resynced; knows only the keys in `known`."""

    def __init__(self, known: list[ObjectKey]) -> None:
        self.known = list(known)
        self.calls: list[tuple[float, ObjectKey]] = []
        self.lock = threading.Lock()

    def keys(self) -> list[ObjectKey]:
        return list(self.known)

    def resync(self, key: ObjectKey) -> bool:
        with self.lock:
            self.calls.append((time.monotonic(), key))
        return key in self.known


def test_a_cycle_enqueues_every_key_once_spread_over_the_cycle() -> None:
    recorder = ResyncRecorder(KEYS)
    resyncer = Resyncer(recorder.keys, recorder.resync, period=60)

    started = time.monotonic()
    enqueued = resyncer.run_cycle(0.5)
    elapsed = time.monotonic() - started

    assert enqueued == len(KEYS)
    assert sorted(key for _, key in recorder.calls) == sorted(KEYS)
    offsets = [moment - started for moment, _ in recorder.calls]
    assert offsets[0] < 0.05
    assert 0.4 <= offsets[-1] < 0.5, "keys are paced over the cycle, not sent in one burst"
    assert elapsed >= 0.5


def test_keys_that_vanished_during_the_cycle_are_not_counted() -> None:
    recorder = ResyncRecorder(KEYS)
    snapshot_at_cycle_start = recorder.keys()
    recorder.known = KEYS[:4]
    resyncer = Resyncer(lambda: list(snapshot_at_cycle_start), recorder.resync, period=60)

    assert resyncer.run_cycle(0.05) == 4
    assert len(recorder.calls) == len(KEYS)


def test_cycle_length_varies_within_the_jitter() -> None:
    resyncer = Resyncer(list, lambda key: True, period=600, jitter=0.1, rng=random.Random(7))

    lengths = [resyncer.cycle_length() for _ in range(200)]

    assert all(540 <= length <= 660 for length in lengths)
    assert max(lengths) - min(lengths) > 60, "jitter must actually spread the cycles"


def test_the_first_cycle_starts_one_period_after_start_and_cycles_repeat() -> None:
    recorder = ResyncRecorder(KEYS[:2])
    resyncer = Resyncer(recorder.keys, recorder.resync, period=0.3, jitter=0.0)

    started = time.monotonic()
    resyncer.start()
    time.sleep(1.05)
    resyncer.stop()

    first_call = recorder.calls[0][0] - started
    assert 0.28 <= first_call < 0.45
    assert resyncer.cycles_completed >= 2
    assert len(recorder.calls) >= 4
