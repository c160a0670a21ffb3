"""Periodic resync: each key exactly once per period at its own phase, the first within the first period."""

from __future__ import annotations

import random
import threading
import time

import pytest

from polycrate.keys import ObjectKey
from watcher.resync import Resyncer

KEYS = [ObjectKey("Organization", "polycrate", f"org-{index}") for index in range(200)]


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


def test_every_key_is_resynced_once_within_the_first_period_spread_over_it() -> None:
    recorder = ResyncRecorder(KEYS)
    resyncer = Resyncer(recorder.keys, recorder.resync, period=600, rng=random.Random(5))

    assert resyncer.resync_between(0, 600) == len(KEYS)

    assert sorted(key for _, key in recorder.calls) == sorted(KEYS)
    phases = sorted(resyncer.phase(key) for key in KEYS)
    assert phases[0] < 30 and phases[-1] > 570, "keys are spread over the whole period"
    busiest_minute = max(
        sum(1 for phase in phases if minute * 60 <= phase < (minute + 1) * 60) for minute in range(10)
    )
    assert busiest_minute < len(KEYS) / 10 * 2, "a steady trickle, not a burst"


def test_two_resyncs_of_a_key_are_exactly_one_period_apart() -> None:
    recorder = ResyncRecorder(KEYS)
    resyncer = Resyncer(recorder.keys, recorder.resync, period=600, rng=random.Random(5))
    moments: dict[ObjectKey, list[float]] = {key: [] for key in KEYS}

    # Walk three periods in uneven steps, as a loaded machine's ticks would.
    elapsed, rng = 0.0, random.Random(1)
    while elapsed < 1800:
        step = rng.uniform(0.1, 7.0)
        for key in KEYS:
            phase = resyncer.phase(key)
            for occurrence in (phase, phase + 600, phase + 1200):
                if elapsed < occurrence <= elapsed + step:
                    moments[key].append(occurrence)
        resyncer.resync_between(elapsed, elapsed + step)
        elapsed += step

    assert len(recorder.calls) == 3 * len(KEYS)
    for key in KEYS:
        assert [later - earlier for earlier, later in zip(moments[key], moments[key][1:], strict=False)] == [
            pytest.approx(600)
        ] * 2


def test_a_key_learnt_mid_period_is_resynced_within_one_period() -> None:
    recorder = ResyncRecorder(KEYS[:10])
    resyncer = Resyncer(recorder.keys, recorder.resync, period=600, rng=random.Random(5))
    resyncer.resync_between(0, 300)
    newcomer = KEYS[150]
    recorder.known.append(newcomer)

    resyncer.resync_between(300, 900)

    assert newcomer in [key for _, key in recorder.calls]


def test_keys_that_vanished_are_not_counted() -> None:
    recorder = ResyncRecorder(KEYS)
    snapshot = recorder.keys()
    recorder.known = KEYS[:4]
    resyncer = Resyncer(lambda: list(snapshot), recorder.resync, period=60)

    assert resyncer.resync_between(0, 60) == 4
    assert len(recorder.calls) == len(KEYS)


def test_the_running_resyncer_repeats_every_period() -> None:
    recorder = ResyncRecorder(KEYS[:2])
    resyncer = Resyncer(recorder.keys, recorder.resync, period=0.3)

    started = time.monotonic()
    resyncer.start()
    time.sleep(1.05)
    resyncer.stop()

    per_key = {key: [moment - started for moment, seen in recorder.calls if seen == key] for key in KEYS[:2]}
    for moments in per_key.values():
        assert moments[0] < 0.3 + 0.05, "the first resync falls in the first period"
        assert len(moments) >= 3
    assert resyncer.cycles_completed >= 3
