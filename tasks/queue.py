"""Coalescing key queue on Redis: controller-runtime's workqueue guarantees across processes.

A key is *pending* (an event arrived, a task is on its way) and/or *processing* (a worker runs
it). Each transition is one Lua script, so watcher and workers never race each other:
- many adds while a key is pending send one task (`coalesced`);
- an add while the key is processing only marks it pending (`deferred`); when that run
  finishes it sends exactly one more task, so no update is lost and runs never pile up;
- a task that finds its key neither pending nor processing is a duplicate (an old redelivery,
  a re-send) and is skipped, because whatever it was sent for has already been reconciled;
- a pending key whose task has not started `stale_after` seconds after it was due (a crash
  between the script and the Celery send), or a processing key whose lock has expired (a dead
  worker), is sent again on the next add or resync, so nothing stays stuck.
Times come from the Redis server's clock, so hosts with skewed clocks agree.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import redis
from celery import Celery

from tasks import metrics
from tasks.keys import ObjectKey
from tasks.locking import lock_key
from tasks.routing import queue_for

log = logging.getLogger(__name__)

AddOutcome = Literal["enqueued", "coalesced", "deferred"]

# (key, task id, countdown in seconds) -> publishes the reconcile task.
TaskSender = Callable[[ObjectKey, str, float], None]

_NOW = """
local function now()
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end
"""

# KEYS: pending, due, processing, lock   ARGV: key, stale_after, new task id
_ADD = (
    _NOW
    + """
local key = ARGV[1]
if redis.call('HEXISTS', KEYS[3], key) == 1 then
  if redis.call('EXISTS', KEYS[4]) == 1 then
    if redis.call('HEXISTS', KEYS[1], key) == 1 then
      return 'coalesced'
    end
    redis.call('HSET', KEYS[1], key, '')
    return 'deferred'
  end
  -- The worker that was processing the key died: its lock expired without a release.
  redis.call('HDEL', KEYS[3], key)
end
local ticket = redis.call('HGET', KEYS[1], key)
if ticket and ticket ~= '' then
  local due = tonumber(redis.call('ZSCORE', KEYS[2], key))
  if due and now() - due < tonumber(ARGV[2]) then
    return 'coalesced'
  end
end
redis.call('HSET', KEYS[1], key, ARGV[3])
redis.call('ZADD', KEYS[2], now(), key)
return 'enqueued'
"""
)

# KEYS: pending, due, processing   ARGV: key, task id
# Returns {0} for a duplicate, else {1, seconds since the key was due ('' if it was not pending)}.
_BEGIN = (
    _NOW
    + """
local key = ARGV[1]
if redis.call('HEXISTS', KEYS[1], key) == 0 and redis.call('HEXISTS', KEYS[3], key) == 0 then
  return {0}
end
local due = redis.call('ZSCORE', KEYS[2], key)
local waited = ''
if due then waited = tostring(now() - tonumber(due)) end
-- Pending: this run covers the events. Processing without pending: the previous run died
-- (the caller holds the key's lock, so that run is not alive) and must be redone.
redis.call('HDEL', KEYS[1], key)
redis.call('ZREM', KEYS[2], key)
redis.call('HSET', KEYS[3], key, ARGV[2])
return {1, waited}
"""
)

# KEYS: pending, due, processing   ARGV: key, task id, follow-up task id, retry_in (-1 = none), requeue_delay
_FINISH = (
    _NOW
    + """
local key = ARGV[1]
if redis.call('HGET', KEYS[3], key) ~= ARGV[2] then
  return {'superseded', '', '0'}
end
redis.call('HDEL', KEYS[3], key)
local retry_in = tonumber(ARGV[4])
local delay
if retry_in >= 0 then
  delay = retry_in
elseif redis.call('HEXISTS', KEYS[1], key) == 1 then
  delay = tonumber(ARGV[5])
else
  return {'idle', '', '0'}
end
redis.call('HSET', KEYS[1], key, ARGV[3])
redis.call('ZADD', KEYS[2], now() + delay, key)
return {'scheduled', ARGV[3], tostring(delay)}
"""
)

# KEYS: pending, due   ARGV: key, task id
_FORGET_UNSENT = """
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  redis.call('HSET', KEYS[1], ARGV[1], '')
  redis.call('ZREM', KEYS[2], ARGV[1])
  return 1
end
return 0
"""


@dataclass(frozen=True)
class FollowUp:
    """A run that `finish` scheduled; `KeyQueue.send` publishes it (after the lock is released)."""

    key: ObjectKey
    task_id: str
    countdown: float


def celery_sender(celery_app: Celery) -> TaskSender:
    """A sender that publishes `polycrate.reconcile(key)` with `celery_app` on the key's queue."""
    from tasks.app import RECONCILE_TASK_NAME

    def send(key: ObjectKey, task_id: str, countdown: float) -> None:
        celery_app.send_task(
            RECONCILE_TASK_NAME,
            args=[str(key)],
            task_id=task_id,
            queue=queue_for(key.kind),
            countdown=countdown if countdown > 0 else None,
            # Flower and the worker's log show `reconcile` with the key as its argument.
            shadow="reconcile",
            argsrepr=str(key),
        )

    return send


def send_reconcile_task(key: ObjectKey, task_id: str, countdown: float) -> None:
    """The default sender: the process's Celery app, configured from the environment."""
    from tasks.app import app

    celery_sender(app)(key, task_id, countdown)


class KeyQueue:
    """The watcher adds keys; the reconcile task brackets each run with `begin` and `finish`."""

    def __init__(
        self,
        redis: redis.Redis,
        *,
        prefix: str = "polycrate",
        stale_after: float = 300.0,
        sender: TaskSender | None = None,
    ) -> None:
        self.prefix = prefix
        self.stale_after = stale_after
        self._redis = redis
        self._send = sender or send_reconcile_task
        self._pending = f"{prefix}:queue:pending"
        self._due = f"{prefix}:queue:due"
        self._processing = f"{prefix}:queue:processing"
        self._add = redis.register_script(_ADD)
        self._begin = redis.register_script(_BEGIN)
        self._finish = redis.register_script(_FINISH)
        self._forget_unsent = redis.register_script(_FORGET_UNSENT)

    def add(self, key: ObjectKey, *, reason: str = "event") -> AddOutcome:
        """Ask for a reconcile of `key`; at most one task per key is ever waiting."""
        task_id = str(uuid.uuid4())
        outcome = self._add(
            keys=[self._pending, self._due, self._processing, lock_key(self.prefix, key)],
            args=[str(key), self.stale_after, task_id],
        )
        outcome = outcome.decode() if isinstance(outcome, bytes) else outcome
        if outcome == "enqueued":
            self._publish(key, task_id, 0.0)
        log.debug("%s %s (%s)", outcome, key, reason)
        return outcome

    def begin(self, key: ObjectKey, task_id: str) -> bool:
        """Mark `key` processing by `task_id`; False means the task is a duplicate to skip.

        Call it only while holding the key's lock.
        """
        claimed, *waited = self._begin(
            keys=[self._pending, self._due, self._processing], args=[str(key), task_id]
        )
        if waited and waited[0]:
            # Started before its due time by a few ms of timer slack counts as no wait.
            metrics.QUEUE_WAIT.labels(queue_for(key.kind)).observe(max(0.0, float(waited[0])))
        return bool(claimed)

    def finish(
        self,
        key: ObjectKey,
        task_id: str,
        *,
        retry_in: float | None = None,
        requeue_delay: float = 0.0,
    ) -> FollowUp | None:
        """End `task_id`'s run of `key` and say whether it must run again.

        `retry_in` (a failed run): run again after that many seconds; events that arrived during
        the run are folded into that retry. Otherwise the key runs again only if an event
        arrived during the run, after `requeue_delay` seconds (0 after success; the backoff after
        a permanent failure, so a status write that triggers an event cannot make a hot loop).
        """
        outcome, follow_up_id, delay = self._finish(
            keys=[self._pending, self._due, self._processing],
            args=[
                str(key),
                task_id,
                str(uuid.uuid4()),
                -1 if retry_in is None else max(0.0, retry_in),
                max(0.0, requeue_delay),
            ],
        )
        if outcome in (b"superseded", "superseded"):
            log.warning("run %s of %s was taken over by another task after its lock expired", task_id, key)
        if not follow_up_id:
            return None
        follow_up_id = follow_up_id.decode() if isinstance(follow_up_id, bytes) else follow_up_id
        return FollowUp(key=key, task_id=follow_up_id, countdown=float(delay))

    def send(self, follow_up: FollowUp) -> None:
        """Publish a follow-up run scheduled by `finish`."""
        self._publish(follow_up.key, follow_up.task_id, follow_up.countdown)

    def _publish(self, key: ObjectKey, task_id: str, countdown: float) -> None:
        try:
            self._send(key, task_id, countdown)
        except Exception:
            # Leave the key pending without a task: the next add or resync sends it again.
            self._forget_unsent(keys=[self._pending, self._due], args=[str(key), task_id])
            raise

    def pending(self) -> set[ObjectKey]:
        """Keys waiting for a run (a task is on its way, or will be sent when a run ends)."""
        return {ObjectKey.parse(raw.decode()) for raw in self._redis.hkeys(self._pending)}

    def processing(self) -> set[ObjectKey]:
        """Keys a worker is reconciling right now (or was, if it died and its lock has not expired)."""
        return {ObjectKey.parse(raw.decode()) for raw in self._redis.hkeys(self._processing)}
