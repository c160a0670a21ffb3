"""Redis-wipe detection: a Redis that comes back empty gets every known key again at once.

The documented deployment runs Redis without persistence, so a restart of redis-server empties
it: queued tasks, pending tickets, scheduled retries, locks, all gone. Nothing in Redis can tell
the difference, but the watcher can: while it leads it keeps an *epoch* key in Redis holding a
random token and reads it every `interval` seconds (and so right after Redis answers again).
When the key is missing (or holds another token) although the watcher had written it, Redis was
emptied: the watcher writes a new epoch and re-adds every key it knows (it knows them all), logs
one line and counts the wipe. Runs that were in flight when Redis was emptied are mostly ended
by Celery when its broker connection drops (their keys are among the re-added ones, and their
steps must survive being cut off anywhere); one that goes on finds its lock gone, is stopped by
its fence and re-adds its own key (its finish is `superseded`), so nothing waits for the resync.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable

import redis

from polycrate.daemon_loop import DaemonLoop
from polycrate.keys import ObjectKey
from watcher.metrics import WatcherMetrics

log = logging.getLogger(__name__)


class RedisEpoch(DaemonLoop):
    """Writes the epoch key, notices when it vanished, and re-adds the known keys then."""

    thread_name = "redis-epoch"

    def __init__(
        self,
        client: redis.Redis,
        known_keys: Callable[[], list[ObjectKey]],
        readd: Callable[[ObjectKey], object],
        metrics: WatcherMetrics,
        *,
        prefix: str = "polycrate",
        interval: float = 2.0,
    ) -> None:
        super().__init__()
        self._client = client
        self._known_keys = known_keys
        self._readd = readd
        self._metrics = metrics
        self.key = f"{prefix}:epoch"
        self.interval = interval
        self._token: bytes | None = None
        self._unreachable = False

    def check(self) -> int | None:
        """Read the epoch; after a wipe re-add every known key and return how many (else None)."""
        current = self._client.get(self.key)
        if current is not None and current == self._token:
            return None
        if current is None:
            token = secrets.token_hex(16).encode()
            # NX: if another process wrote one meanwhile, adopt it rather than fight over it.
            if not self._client.set(self.key, token, nx=True):
                current = self._client.get(self.key)
                token = current if current is not None else token
            current = token
        first_sight = self._token is None
        self._token = current
        if first_sight:
            return None
        keys = self._known_keys()
        self._metrics.redis_wipes.inc()
        log.warning("Redis came back empty (its epoch key was gone); re-adding all %d known keys", len(keys))
        for key in keys:
            if self._stop.is_set():
                break
            self._readd(key)
        return len(keys)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.check()
                self._unreachable = False
            except redis.RedisError as exc:
                if not self._unreachable:
                    log.warning("cannot read the Redis epoch (%s); checking again when Redis answers", exc)
                    self._unreachable = True
            self._stop.wait(self.interval)
