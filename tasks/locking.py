"""One reconcile at a time per key, across every worker process on every host.

A `KeyLock` is a Redis key set with `SET NX PX` to a random owner token. While it is held a
daemon thread renews the expiry every third of the TTL (at most a second), so a reconcile may
run longer than the TTL; one such thread per process and Redis client renews all the locks the
process holds, in one script run per round (`_Renewer`), not one thread and round trip per lock; when the worker dies the renewals stop and the lock expires by itself, freeing the key for
the redelivered task. Renewal and release compare the token first (Lua), so a worker whose lock
already expired can never extend or delete the lock of the worker that took the key over; such
a worker finds `lost` set and knows its run was not exclusive to the end.

The lock is also the run's fence (`polycrate.fence`): the holder keeps a local deadline, the
moment its lock could have expired by the last renewal it knows succeeded, less a safety
margin of a third of the TTL. `check()` raises FencedError once the lock is known lost or that
deadline passed without a renewal (its link to Redis stalled), so the run stops before another
worker can have taken the key, and before its next write. Clients have socket timeouts, so a
stalled renewal fails in seconds instead of hanging past the deadline.
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
import time

import redis

from polycrate.fence import FencedError
from polycrate.keys import ObjectKey
from tasks import metrics

log = logging.getLogger(__name__)

# KEYS: lock names   ARGV: token, TTL in ms, for each lock in turn   Returns 1/0 per lock.
_RENEW_EACH_IF_OWNED = """
local renewed = {}
for i = 1, #KEYS do
  if redis.call('GET', KEYS[i]) == ARGV[2 * i - 1] then
    renewed[i] = redis.call('PEXPIRE', KEYS[i], ARGV[2 * i])
  else
    renewed[i] = 0
  end
end
return renewed
"""

# Releases any token-held Redis key (a key lock, the healer lease): only its holder may delete it,
# so a holder whose key expired and was taken over cannot free the new holder's.
DELETE_IF_OWNED = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


def lock_key_prefix(prefix: str) -> str:
    """What every lock's Redis key starts with."""
    return f"{prefix}:lock:"


def lock_key(prefix: str, key: ObjectKey) -> str:
    """The Redis key of `key`'s lock; the queue's scripts read it to tell live runs from dead ones."""
    return f"{lock_key_prefix(prefix)}{key}"


# Seconds between renewals of a held lock, at most.
RENEW_AT_LEAST_EVERY = 1.0


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
        self._delete = client.register_script(DELETE_IF_OWNED)
        self._held = False
        self._lost = threading.Event()
        # At least every second, not only every third of the TTL: a lock can also vanish at once (Redis
        # restarted empty) and another worker take the key; the fence must close before that run starts.
        self._interval = min(self.ttl_ms / 3000, RENEW_AT_LEAST_EVERY)
        self._next_renewal = 0.0
        self._renewer: _Renewer | None = None
        # Monotonic time until which the lock is surely still ours, by the last successful renewal.
        self._valid_until = 0.0
        self._loss_counted = False

    @property
    def held(self) -> bool:
        return self._held and not self._lost.is_set()

    @property
    def lost(self) -> bool:
        """True once a renewal found the lock expired or owned by someone else."""
        return self._lost.is_set()

    @property
    def fence_deadline(self) -> float:
        """Monotonic time after which the holder may no longer write (a third of the TTL before
        the lock could expire by the last renewal known to have succeeded)."""
        return self._valid_until - self.ttl_ms / 3000

    def check(self) -> None:
        """The fence: raise FencedError when the lock is lost or its renewal is overdue."""
        if self.lost:
            self._count_loss()
            raise FencedError(f"{self.key.describe()}: lock lost to another worker; this run stops writing")
        if time.monotonic() >= self.fence_deadline:
            self._count_loss()
            raise FencedError(
                f"{self.key.describe()}: lock could not be renewed in time (Redis unreachable?); "
                "this run stops writing"
            )

    def _count_loss(self) -> None:
        if not self._loss_counted:
            self._loss_counted = True
            metrics.LOCK_LOSSES.labels(self.key.kind).inc()

    def acquire(self) -> bool:
        """Take the lock if it is free; on success start renewing it."""
        if self._held:
            raise RuntimeError(f"lock of {self.key} is already held by this object")
        asked_at = time.monotonic()
        if not self._client.set(self.name, self.token, nx=True, px=self.ttl_ms):
            return False
        self.taken(asked_at)
        return True

    def taken(self, asked_at: float) -> None:
        """A script set this lock (`SET name token NX PX ttl`, asked at monotonic `asked_at`) in the
        same round trip as other work (tasks.queue claims a key so): hold and renew it from now."""
        if self._held:
            raise RuntimeError(f"lock of {self.key} is already held by this object")
        self._valid_until = asked_at + self.ttl_ms / 1000
        self._loss_counted = False
        self._held = True
        self._lost.clear()
        self._next_renewal = asked_at + self._interval
        self._renewer = _Renewer.of(self._client)
        self._renewer.add(self)

    def remaining_ttl(self) -> float:
        """Seconds until the lock of this key expires unless renewed (0 when it is free)."""
        milliseconds = self._client.pttl(self.name)
        return max(0.0, milliseconds / 1000) if milliseconds and milliseconds > 0 else 0.0

    def release(self) -> bool:
        """Stop renewing and delete the lock if we still own it; False if it was no longer ours."""
        if not self._held:
            return False
        self.releasing()
        return self.released(bool(self._delete(keys=[self.name], args=[self.token])))

    def releasing(self) -> None:
        """Stop renewing: a release follows at once (here, or in a script that also does other
        work, which deletes the lock only if its value is still `token`)."""
        if self._renewer is not None:
            self._renewer.remove(self)  # waits for a renewal round in flight
            self._renewer = None

    def released(self, deleted: bool) -> bool:
        """The release is done; `deleted` says whether the lock was still ours to delete."""
        self._held = False
        if not deleted:
            log.warning("lock of %s had expired or changed owner before release", self.key)
        return deleted

    def _renewed(self, asked_at: float) -> None:
        self._valid_until = asked_at + self.ttl_ms / 1000
        self._next_renewal = time.monotonic() + self._interval

    def _not_renewed(self) -> None:
        log.warning("lock of %s expired while held; another worker may run the key now", self.key)
        self._lost.set()
        self._count_loss()

    def _renewal_failed(self, exc: Exception) -> bool:
        """The round failed; True once the lock has surely expired (nothing left to renew)."""
        if time.monotonic() >= self._valid_until:
            # The lock has expired by now whatever Redis says later: nothing left to renew.
            log.warning("lock of %s expired while Redis was unreachable (%s)", self.key, exc)
            self._lost.set()
            self._count_loss()
            return True
        # Keep trying: the fence deadline is near, and Redis may answer again before the lock expires.
        log.warning("could not renew lock of %s: %s", self.key, exc)
        self._next_renewal = time.monotonic() + min(self._interval, 1.0)
        return False

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


class _Renewer:
    """Renews every lock one process holds through one Redis client: one thread, and one script
    run per round for all the locks due, instead of a thread and a round trip per lock.

    Each lock keeps its own schedule, token check, deadline and loss (the same as renewing it
    alone). A release waits for a round in flight, so a lock is never renewed after it was
    released (nor counted lost because its own release deleted it).
    """

    _by_client: dict[int, tuple[int, redis.Redis, _Renewer]] = {}
    _registry_lock = threading.Lock()

    def __init__(self, client: redis.Redis) -> None:
        self._script = client.register_script(_RENEW_EACH_IF_OWNED)
        self._locks: dict[int, KeyLock] = {}
        self._changed = threading.Condition()
        self._round = threading.Lock()
        self._thread: threading.Thread | None = None

    @classmethod
    def of(cls, client: redis.Redis) -> _Renewer:
        """The renewer of `client` in this process (a forked child builds its own)."""
        with cls._registry_lock:
            entry = cls._by_client.get(id(client))
            if entry is None or entry[0] != os.getpid() or entry[1] is not client:
                entry = (os.getpid(), client, cls(client))
                cls._by_client[id(client)] = entry
            return entry[2]

    def add(self, lock: KeyLock) -> None:
        with self._changed:
            self._locks[id(lock)] = lock
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="lock-renewal", daemon=True)
                self._thread.start()
            self._changed.notify()

    def remove(self, lock: KeyLock) -> None:
        with self._round, self._changed:
            self._locks.pop(id(lock), None)

    def _run(self) -> None:
        while True:
            with self._changed:
                if not self._locks:
                    self._thread = None
                    self._forget()
                    return
                wait = min(lock._next_renewal for lock in self._locks.values()) - time.monotonic()
                if wait > 0:
                    self._changed.wait(wait)
                    continue
            with self._round:
                self._renew_due()

    def _forget(self) -> None:
        # An idle renewer holds no client: the next lock of this client makes a new one.
        with _Renewer._registry_lock:
            for client_id, entry in list(_Renewer._by_client.items()):
                if entry[2] is self:
                    del _Renewer._by_client[client_id]

    def _renew_due(self) -> None:
        with self._changed:
            # Locks due within a fifth of their interval join this round (renewing early only
            # extends them): at most about five rounds a second however many locks a busy process
            # holds, for about a tenth more renewals.
            now = time.monotonic()
            due = [lock for lock in self._locks.values() if lock._next_renewal <= now + lock._interval / 5]
        if not due:
            return
        asked_at = time.monotonic()
        try:
            renewed = self._script(
                keys=[lock.name for lock in due],
                args=[value for lock in due for value in (lock.token, lock.ttl_ms)],
            )
        except Exception as exc:  # noqa: BLE001 - a renewer that died would stop renewing every lock
            ended = [lock for lock in due if lock._renewal_failed(exc)]
        else:
            ended = []
            for lock, ok in zip(due, renewed, strict=True):
                if ok:
                    lock._renewed(asked_at)
                else:
                    lock._not_renewed()
                    ended.append(lock)
        with self._changed:
            for lock in ended:
                self._locks.pop(id(lock), None)
