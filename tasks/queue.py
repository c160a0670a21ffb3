"""Coalescing key queue on Redis: controller-runtime's workqueue guarantees across processes.

A key is *pending* (an event arrived, a task is on its way) and/or *processing* (a worker runs
it). Each transition is one Lua script, so watcher and workers never race each other:
- many adds while a key is pending send one task (`coalesced`);
- an add while the key is processing only marks it pending (`deferred`); when that run
  finishes it sends exactly one more task, so no update is lost and runs never pile up;
- a task that finds its key neither pending nor processing is a duplicate (an old redelivery,
  a re-send) and is skipped, because whatever it was sent for has already been reconciled;
- a delayed run (a retry's backoff, a deferral) is not a Celery countdown held in some worker's
  memory, which dies with that worker: it waits in Redis, in the `due` sorted set, as a
  *scheduled* ticket, and `heal` publishes it when due;
- `heal`, run every few seconds by one process (tasks.healing), also re-sends what a dead or
  partitioned process held: a processing key whose lock expired, and a sent task that is
  neither waiting in the broker nor recently delivered to a worker (it vanished with its
  worker). A task still waiting in a long queue is left alone, so a backlog is never doubled.
Pending values: '' (run again when the current run ends), a task id (sent), '@' + a task id
(scheduled, not yet sent). Times come from the Redis server's clock, so hosts agree.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import redis
from celery import Celery

from polycrate.keys import ObjectKey
from tasks import metrics
from tasks.locking import KeyLock, lock_key, lock_key_prefix
from tasks.routing import QUEUES, queue_for

log = logging.getLogger(__name__)

AddOutcome = Literal["enqueued", "coalesced", "deferred"]
HealCause = Literal["lock-expired", "retry-due", "lost-task", "requeue-due"]

# kombu's Redis transport keeps a queue's messages in one list per priority step, and the
# messages delivered to workers but not acknowledged yet in these two keys.
_PRIORITY_SEPARATOR = "\x06\x16"
_PRIORITY_STEPS = (3, 6, 9)
_UNACKED = "unacked"
_UNACKED_INDEX = "unacked_index"

# (key, task id, countdown in seconds) -> publishes the reconcile task.
TaskSender = Callable[[ObjectKey, str, float], None]

# One TIME per script run, however often it asks: every command inside a script counts.
_NOW = """
local now_cached
local function now()
  if not now_cached then
    local t = redis.call('TIME')
    now_cached = tonumber(t[1]) + tonumber(t[2]) / 1000000
  end
  return now_cached
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
  if string.sub(ticket, 1, 1) == '@' then
    -- Scheduled: the event joins the coming run; one due already (a failed publish) is sent now.
    if due and due > now() then
      return 'coalesced'
    end
  elseif due and now() - due < tonumber(ARGV[2]) then
    return 'coalesced'
  end
end
redis.call('HSET', KEYS[1], key, ARGV[3])
redis.call('ZADD', KEYS[2], now(), key)
return 'enqueued'
"""
)

# KEYS: pending, due, processing   ARGV: key, task id
# Returns {0} for a duplicate (or a stray copy of a run not due yet), else {1, the time the key
# was due ('' if it was not pending)}. TIME only for a scheduled ticket: the wait metric is taken
# by the caller's clock, so a plain claim costs no clock read in Redis.
_BEGIN_BODY = """
local key = ARGV[1]
local ticket = redis.call('HGET', KEYS[1], key)
if not ticket and redis.call('HEXISTS', KEYS[3], key) == 0 then
  return {0}
end
local due = redis.call('ZSCORE', KEYS[2], key)
if ticket and string.sub(ticket, 1, 1) == '@' and due and tonumber(due) > now() then
  -- A stray copy came early: the scheduled run (a retry's backoff) is published when due.
  return {0}
end
-- Pending: this run covers the events. Processing without pending: the previous run died
-- (the caller holds the key's lock, so that run is not alive) and must be redone.
redis.call('HDEL', KEYS[1], key)
redis.call('ZREM', KEYS[2], key)
redis.call('HSET', KEYS[3], key, ARGV[2])
return {1, due or ''}
"""
_BEGIN = _NOW + _BEGIN_BODY

# KEYS: pending, due, processing, lock   ARGV: key, task id, lock token, lock TTL in ms
# The key's lock (tasks.locking: SET NX PX, the same as KeyLock.acquire) and `begin` in one round
# trip. Returns {-1, the lock's remaining TTL in ms} when the key is locked elsewhere, else what
# `begin` returns (the lock is then ours, also for a duplicate).
_CLAIM = (
    _NOW
    + """
if not redis.call('SET', KEYS[4], ARGV[3], 'NX', 'PX', ARGV[4]) then
  return {-1, redis.call('PTTL', KEYS[4])}
end
"""
    + _BEGIN_BODY
)

# KEYS: pending, due, processing   ARGV: key, task id, follow-up task id, retry_in (-1 = none), requeue_delay
_FINISH_FUNCTION = """
local function finish()
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
if delay > 0 then
  redis.call('HSET', KEYS[1], key, '@' .. ARGV[3])
  redis.call('ZADD', KEYS[2], now() + delay, key)
  return {'scheduled', '', tostring(delay)}
end
redis.call('HSET', KEYS[1], key, ARGV[3])
redis.call('ZADD', KEYS[2], now(), key)
return {'scheduled', ARGV[3], '0'}
end
"""
_FINISH = _NOW + _FINISH_FUNCTION + "return finish()\n"

# KEYS: pending, due, processing, lock   ARGV: those of _FINISH, then the lock's token
# `finish`, then the release of the key's lock (tasks.locking: deleted only if the value is still
# our token) in the same round trip; a fourth value says whether the lock was deleted.
_FINISH_AND_RELEASE = (
    _NOW
    + _FINISH_FUNCTION
    + """
local result = finish()
if redis.call('GET', KEYS[4]) == ARGV[6] then
  redis.call('DEL', KEYS[4])
  table.insert(result, '1')
else
  table.insert(result, '0')
end
return result
"""
)

# KEYS: timers   ARGV: key, seconds from now
# A reconcile asked to run again at a time (Requeue): one timer per key, the latest run's wins.
_SET_TIMER = (
    _NOW
    + """
redis.call('ZADD', KEYS[1], now() + tonumber(ARGV[2]), ARGV[1])
return 1
"""
)

# KEYS: timers   ARGV: batch size
# Returns the keys whose timer is due, and removes those timers.
_POP_DUE_TIMERS = (
    _NOW
    + """
local keys = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now(), 'LIMIT', 0, tonumber(ARGV[1]))
for _, key in ipairs(keys) do
  redis.call('ZREM', KEYS[1], key)
end
return keys
"""
)

# KEYS: pending, due   ARGV: key, task id, delay
# The task `task id` was not (or will not be) sent: schedule its ticket `delay` seconds from now.
_RESCHEDULE = (
    _NOW
    + """
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  redis.call('HSET', KEYS[1], ARGV[1], '@' .. ARGV[2])
  redis.call('ZADD', KEYS[2], now() + tonumber(ARGV[3]), ARGV[1])
  return 1
end
return 0
"""
)

# KEYS: pending, due, processing, unacked, unacked_index, broker lists...
# ARGV: lock key prefix, lost_after, task id prefix, batch size
# Returns {key, task id, cause, ...}: the tasks to publish now.
_HEAL = (
    _NOW
    + """
local t = now()
local lost_after = tonumber(ARGV[2])
local out = {}
local serial = 0
local function resend(key, cause)
  serial = serial + 1
  local id = ARGV[3] .. '-' .. serial
  redis.call('HSET', KEYS[1], key, id)
  redis.call('ZADD', KEYS[2], t, key)
  table.insert(out, key)
  table.insert(out, id)
  table.insert(out, cause)
end

-- Runs whose lock expired: their process died or lost its link. A pending '' (an event during
-- the run) or a scheduled ticket is folded into the re-sent run.
local running = redis.call('HGETALL', KEYS[3])
for i = 1, #running, 2 do
  local key = running[i]
  if redis.call('EXISTS', ARGV[1] .. key) == 0 then
    redis.call('HDEL', KEYS[3], key)
    resend(key, 'lock-expired')
  end
end

-- Due tickets: publish the scheduled ones; collect sent ones that are long overdue.
local suspects = {}
local suspect_count = 0
local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', t, 'WITHSCORES', 'LIMIT', 0, tonumber(ARGV[4]))
for i = 1, #due, 2 do
  local key = due[i]
  local ticket = redis.call('HGET', KEYS[1], key)
  if not ticket then
    redis.call('ZREM', KEYS[2], key)
  elseif string.sub(ticket, 1, 1) == '@' then
    local id = string.sub(ticket, 2)
    redis.call('HSET', KEYS[1], key, id)
    redis.call('ZADD', KEYS[2], t, key)
    table.insert(out, key)
    table.insert(out, id)
    table.insert(out, 'retry-due')
  elseif ticket ~= '' and tonumber(due[i + 1]) <= t - lost_after then
    suspects[ticket] = key
    suspect_count = suspect_count + 1
  end
end
if suspect_count == 0 then
  return out
end

-- A sent task is alive while its message waits in a queue or was delivered to a worker
-- recently; otherwise it vanished with a worker that died before starting it.
for k = 6, #KEYS do
  local messages = redis.call('LRANGE', KEYS[k], 0, -1)
  for _, raw in ipairs(messages) do
    local ok, message = pcall(cjson.decode, raw)
    if ok and type(message) == 'table' and type(message['headers']) == 'table' then
      suspects[tostring(message['headers']['id'])] = nil
    end
  end
end
local delivered = redis.call('HGETALL', KEYS[4])
for i = 1, #delivered, 2 do
  local ok, entry = pcall(cjson.decode, delivered[i + 1])
  if ok and type(entry) == 'table' and type(entry[1]) == 'table' and type(entry[1]['headers']) == 'table' then
    local id = tostring(entry[1]['headers']['id'])
    local at = tonumber(redis.call('ZSCORE', KEYS[5], delivered[i]))
    if suspects[id] and at and at > t - lost_after then
      suspects[id] = nil
    end
  end
end
for _, key in pairs(suspects) do
  resend(key, 'lost-task')
end
return out
"""
)


@dataclass(frozen=True)
class Claim:
    """What `KeyQueue.claim` found: the key locked elsewhere (for `lock_ttl` more seconds), or
    the lock taken and the key `claimed` for this run (False: the task is a duplicate)."""

    locked_elsewhere: bool
    claimed: bool = False
    lock_ttl: float = 0.0


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
        # Timers are not pending entries: an event before the timer runs the key at once, as
        # always, and the timer's run later is one more level-triggered reconcile.
        self._timers = f"{prefix}:queue:timers"
        self._processing = f"{prefix}:queue:processing"
        self._add = redis.register_script(_ADD)
        self._begin = redis.register_script(_BEGIN)
        self._finish = redis.register_script(_FINISH)
        self._claim = redis.register_script(_CLAIM)
        self._finish_and_release = redis.register_script(_FINISH_AND_RELEASE)
        self._reschedule = redis.register_script(_RESCHEDULE)
        self._heal = redis.register_script(_HEAL)
        self._set_timer = redis.register_script(_SET_TIMER)
        self._pop_due_timers = redis.register_script(_POP_DUE_TIMERS)

    def add(self, key: ObjectKey, *, reason: str = "event") -> AddOutcome:
        """Ask for a reconcile of `key`; at most one task per key is ever waiting."""
        return self._add_key(key, str(uuid.uuid4()), reason)

    def _add_key(self, key: ObjectKey, task_id: str, reason: str) -> AddOutcome:
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
        claimed, *due = self._begin(
            keys=[self._pending, self._due, self._processing], args=[str(key), task_id]
        )
        self._observe_wait(key, due)
        return bool(claimed)

    def claim(self, key: ObjectKey, task_id: str, lock: KeyLock) -> Claim:
        """Take `lock` (the key's) and `begin` in one round trip.

        Unless the key is locked elsewhere, `lock` is held afterwards (renewed as by its
        `acquire`), also when the task turns out to be a duplicate; release it as usual.
        """
        asked_at = time.monotonic()
        status, *rest = self._claim(
            keys=[self._pending, self._due, self._processing, lock.name],
            args=[str(key), task_id, lock.token, lock.ttl_ms],
        )
        if int(status) < 0:
            milliseconds = int(rest[0])
            return Claim(locked_elsewhere=True, lock_ttl=max(0.0, milliseconds / 1000))
        lock.taken(asked_at)
        self._observe_wait(key, rest)
        return Claim(locked_elsewhere=False, claimed=bool(status))

    @staticmethod
    def _observe_wait(key: ObjectKey, due: list[bytes | str]) -> None:
        if due and due[0]:
            # By this host's clock against Redis' due time (a metric, so a skew of hosts only
            # shifts it); started before its due time by a few ms of timer slack counts as no wait.
            waited = time.time() - float(due[0])
            metrics.QUEUE_WAIT.labels(queue_for(key.kind)).observe(max(0.0, waited))

    def finish(
        self,
        key: ObjectKey,
        task_id: str,
        *,
        retry_in: float | None = None,
        requeue_delay: float = 0.0,
        lock: KeyLock | None = None,
    ) -> FollowUp | None:
        """End `task_id`'s run of `key` and say whether it must run again.

        `retry_in` (a failed run): run again after that many seconds; events that arrived during
        the run are folded into that retry. Otherwise the key runs again only if an event
        arrived during the run, after `requeue_delay` seconds (0 after success; the backoff after
        a permanent failure, so a status write that triggers an event cannot make a hot loop).
        Only a run due now is returned (publish it with `send` after releasing the lock); a
        delayed one waits in Redis until `heal` publishes it. A run that was taken over after its
        lock expired (`superseded`) adds the key again, so the last run sees the last version.
        With `lock` (the key's, held), the lock is released in the same round trip.
        """
        keys = [self._pending, self._due, self._processing]
        args = [
            str(key),
            task_id,
            str(uuid.uuid4()),
            -1 if retry_in is None else max(0.0, retry_in),
            max(0.0, requeue_delay),
        ]
        if lock is None:
            outcome, follow_up_id, delay = self._finish(keys=keys, args=args)
        else:
            lock.releasing()
            outcome, follow_up_id, delay, deleted = self._finish_and_release(
                keys=[*keys, lock.name], args=[*args, lock.token]
            )
            lock.released(deleted in (b"1", "1"))
        if outcome in (b"superseded", "superseded"):
            log.warning(
                "run %s of %s was taken over after its lock expired; adding the key again", task_id, key
            )
            metrics.SUPERSEDED.labels(key.kind).inc()
            self.add(key, reason="superseded")
            return None
        if not follow_up_id:
            return None
        follow_up_id = follow_up_id.decode() if isinstance(follow_up_id, bytes) else follow_up_id
        return FollowUp(key=key, task_id=follow_up_id, countdown=float(delay))

    def requeue_after(self, key: ObjectKey, seconds: float) -> None:
        """Add `key` again `seconds` from now (Redis server time); `heal` adds it when due."""
        self._set_timer(keys=[self._timers], args=[str(key), max(0.0, seconds)])

    def timers(self) -> dict[ObjectKey, float]:
        """Keys with a requeue timer, with when it is due (Redis server time)."""
        return {
            ObjectKey.parse(raw.decode()): due
            for raw, due in self._redis.zrange(self._timers, 0, -1, withscores=True)
        }

    def send(self, follow_up: FollowUp) -> None:
        """Publish a follow-up run scheduled by `finish`."""
        self._publish(follow_up.key, follow_up.task_id, follow_up.countdown)

    def defer(self, key: ObjectKey, task_id: str, delay: float) -> bool:
        """Task `task_id` found its key locked: run its ticket again in `delay` seconds.

        False when `task_id` is not the key's ticket (a stray copy); it can simply end.
        """
        return bool(
            self._reschedule(keys=[self._pending, self._due], args=[str(key), task_id, max(0.0, delay)])
        )

    def heal(self, *, lost_after: float, batch: int = 1000) -> list[tuple[ObjectKey, str, HealCause]]:
        """Publish due scheduled runs, add keys whose requeue timer is due, and re-send what dead
        processes held; return what was sent.

        `lost_after`: a sent task neither waiting in the broker nor delivered within this many
        seconds counts as lost (at least the lock TTL: a delivered task starts at once).
        """
        broker_lists = [
            name
            for queue in QUEUES
            for name in (queue, *(f"{queue}{_PRIORITY_SEPARATOR}{step}" for step in _PRIORITY_STEPS))
        ]
        raw = self._heal(
            keys=[self._pending, self._due, self._processing, _UNACKED, _UNACKED_INDEX, *broker_lists],
            args=[lock_key_prefix(self.prefix), lost_after, f"healed-{uuid.uuid4()}", batch],
        )
        sent: list[tuple[ObjectKey, str, HealCause]] = []
        for index in range(0, len(raw), 3):
            key_text, task_id, cause = (
                value.decode() if isinstance(value, bytes) else value for value in raw[index : index + 3]
            )
            key = ObjectKey.parse(key_text)
            self._publish(key, task_id, 0.0)
            sent.append((key, task_id, cause))  # type: ignore[arg-type]
        for raw_key in self._pop_due_timers(keys=[self._timers], args=[batch]):
            key = ObjectKey.parse(raw_key.decode() if isinstance(raw_key, bytes) else raw_key)
            task_id = str(uuid.uuid4())
            if self._add_key(key, task_id, "requeue-after") == "enqueued":
                sent.append((key, task_id, "requeue-due"))
        return sent

    def _publish(self, key: ObjectKey, task_id: str, countdown: float) -> None:
        try:
            self._send(key, task_id, countdown)
        except Exception:
            # Keep the ticket, scheduled now: the next `heal` (or add) publishes it again.
            self._reschedule(keys=[self._pending, self._due], args=[str(key), task_id, 0])
            raise

    def scheduled(self) -> dict[ObjectKey, float]:
        """Keys waiting in Redis for a delayed run, with when it is due (Redis server time)."""
        due = dict(self._redis.zrange(self._due, 0, -1, withscores=True))
        return {
            ObjectKey.parse(raw.decode()): due.get(raw, 0.0)
            for raw, ticket in self._redis.hgetall(self._pending).items()
            if ticket.startswith(b"@")
        }

    def pending(self) -> set[ObjectKey]:
        """Keys waiting for a run (a task is on its way, or will be sent when a run ends)."""
        return {ObjectKey.parse(raw.decode()) for raw in self._redis.hkeys(self._pending)}

    def processing(self) -> set[ObjectKey]:
        """Keys a worker is reconciling right now (or was, if it died and its lock has not expired)."""
        return {ObjectKey.parse(raw.decode()) for raw in self._redis.hkeys(self._processing)}
