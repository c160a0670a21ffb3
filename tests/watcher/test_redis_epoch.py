"""Redis-wipe detection on a real redis-server: an emptied Redis gets every known key again at once."""

from __future__ import annotations

import logging

import pytest
import redis

from polycrate.keys import ObjectKey
from watcher.metrics import WatcherMetrics
from watcher.redis_epoch import RedisEpoch

KNOWN = [ObjectKey("Organization", "polycrate", f"org-{index}") for index in range(5)]


def epoch_watch(client: redis.Redis, readded: list[ObjectKey], metrics: WatcherMetrics) -> RedisEpoch:
    return RedisEpoch(client, lambda: list(KNOWN), readded.append, metrics)


def test_first_check_writes_the_epoch_and_re_adds_nothing(redis_client: redis.Redis) -> None:
    readded: list[ObjectKey] = []
    epoch = epoch_watch(redis_client, readded, WatcherMetrics())

    assert epoch.check() is None
    assert epoch.check() is None
    assert redis_client.exists("polycrate:epoch") and readded == []


def test_emptied_redis_gets_every_known_key_again_with_one_log_line(
    redis_client: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    readded: list[ObjectKey] = []
    metrics = WatcherMetrics()
    epoch = epoch_watch(redis_client, readded, metrics)
    epoch.check()

    redis_client.flushdb()  # redis-server restarted without persistence
    with caplog.at_level(logging.WARNING, logger="watcher.redis_epoch"):
        assert epoch.check() == len(KNOWN)

    assert readded == KNOWN
    assert [record.message for record in caplog.records] == [
        "Redis came back empty (its epoch key was gone); re-adding all 5 known keys"
    ]
    assert metrics.registry.get_sample_value("polycrate_watcher_redis_wipes_total") == 1
    assert epoch.check() is None, "once"


def test_a_second_watcher_adopts_the_epoch_instead_of_reporting_a_wipe(redis_client: redis.Redis) -> None:
    first_readds: list[ObjectKey] = []
    second_readds: list[ObjectKey] = []
    epoch_watch(redis_client, first_readds, WatcherMetrics()).check()

    assert epoch_watch(redis_client, second_readds, WatcherMetrics()).check() is None
    assert second_readds == []
