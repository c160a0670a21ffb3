"""One reconcile at a time per key, across every worker process on every host.

A `KeyLock` is a Redis key set with `SET NX PX` to a random owner token. While it is held a
daemon thread renews the expiry every third of the TTL, so a reconcile may run longer than the
TTL; when the worker dies the renewals stop and the lock expires by itself, freeing the key for
the redelivered task. Renewal and release compare the token first (Lua), so a worker whose lock
already expired can never extend or delete the lock of the worker that took the key over; such
a worker finds `lost` set and knows its run was not exclusive to the end.
"""

from __future__ import annotations

import logging
import secrets
import threading

import redis

from tasks.keys import ObjectKey

log = logging.getLogger(__name__)

_RENEW_IF_OWNED = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

_DELETE_IF_OWNED = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


def lock_key(prefix: str, key: ObjectKey) -> str:
    """The Redis key of `key`'s lock; the queue's scripts read it to tell live runs from dead ones."""
    return f"{prefix}:lock:{key}"


class KeyLock:
    """Exclusive, expiring, self-renewing ownership of one object key.

    `acquire()` never blocks: a task that finds its key locked is deferred by the caller, so a
    worker slot is not wasted waiting.
    """

    def __init__(self, client: redis.Redis, key: ObjectKey, *, ttl: float, prefix: str = "polycrate") -> None:
        if ttl <= 0:
            raise ValueError("lock ttl must be positive")
        self.key = key
        self.name = lock_key(prefix, key)
        self.ttl_ms = max(1, int(ttl * 1000))
        self.token = secrets.token_hex(16)
        self._client = client
        self._renew = client.register_script(_RENEW_IF_OWNED)
        self._delete = client.register_script(_DELETE_IF_OWNED)
        self._held = False
        self._lost = threading.Event()
        self._stop_renewing = threading.Event()
        self._renewer: threading.Thread | None = None

    @property
    def held(self) -> bool:
        return self._held and not self._lost.is_set()

    @property
    def lost(self) -> bool:
        """True once a renewal found the lock expired or owned by someone else."""
        return self._lost.is_set()

    def acquire(self) -> bool:
        """Take the lock if it is free; on success start renewing it."""
        if self._held:
            raise RuntimeError(f"lock of {self.key} is already held by this object")
        if not self._client.set(self.name, self.token, nx=True, px=self.ttl_ms):
            return False
        self._held = True
        self._lost.clear()
        self._stop_renewing.clear()
        self._renewer = threading.Thread(
            target=self._renew_until_released, name=f"lock-renewal {self.key}", daemon=True
        )
        self._renewer.start()
        return True

    def remaining_ttl(self) -> float:
        """Seconds until the lock of this key expires unless renewed (0 when it is free)."""
        milliseconds = self._client.pttl(self.name)
        return max(0.0, milliseconds / 1000) if milliseconds and milliseconds > 0 else 0.0

    def release(self) -> bool:
        """Stop renewing and delete the lock if we still own it; False if it was no longer ours."""
        if not self._held:
            return False
        self._stop_renewing.set()
        if self._renewer is not None:
            self._renewer.join()
            self._renewer = None
        self._held = False
        released = bool(self._delete(keys=[self.name], args=[self.token]))
        if not released:
            log.warning("lock of %s had expired or changed owner before release", self.key)
        return released

    def _renew_until_released(self) -> None:
        interval = self.ttl_ms / 3000
        while not self._stop_renewing.wait(interval):
            try:
                renewed = self._renew(keys=[self.name], args=[self.token, self.ttl_ms])
            except redis.RedisError as exc:
                # Keep trying: the lock survives until its TTL, and Redis may come back before that.
                log.warning("could not renew lock of %s: %s", self.key, exc)
                continue
            if not renewed:
                log.warning("lock of %s expired while held; another worker may run the key now", self.key)
                self._lost.set()
                return

    def __enter__(self) -> KeyLock:
        if not self.acquire():
            raise LockedError(self.key)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


class LockedError(Exception):
    """The key is being reconciled by someone else right now."""

    def __init__(self, key: ObjectKey):
        super().__init__(f"{key} is locked by another reconcile")
        self.key = key
