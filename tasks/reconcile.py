"""The reconcile task: one run of one key, exclusive, retried with backoff, never lost.

`polycrate.reconcile(key)` receives only the key. It takes the key's lock (a key already being
reconciled elsewhere reschedules this task's ticket in Redis for about when that lock would
expire: not dropped, not a failure, and not a countdown held in this worker's memory), claims
the key in the queue (a task whose key has nothing pending is a duplicate and ends), reads the
object fresh from the API (gone: done), and hands it to the kind's handler under the lock's
fence: once the lock is lost or cannot be renewed in time, the next write raises FencedError,
the run ends without reporting and the key is run again by whoever holds the lock next.
A TransientError (or any unexpected exception) schedules the next run with the per-key backoff,
honouring a server's Retry-After up to a cap; the retry waits in Redis (tasks.queue) and is
published when due. After the run, the declared watches of the key's kind wake their keys
(tasks.watches). A PermanentError is reported in status and Events and is not retried until
the object changes. The Normal Events of a run are written as one at its end (tasks.events).
Success resets the backoff. The lock is released before a follow-up task
due now is published, so that follow-up never finds the key still locked.

A run that failed (retrying or parked) ends its Celery task in FAILURE with the key and the
reason (`ReconcileFailed`), after the queue's bookkeeping is done, so Flower and
`celery events` show failures as failures. The exception is declared in `throws` (logged without
a traceback) and Celery does not retry it: the next run is our queue's follow-up, and the
message is acknowledged as any finished task.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass
from typing import Literal

from celery import Task

from polycrate.errors import PermanentError, PolycrateError, TransientError
from polycrate.fence import FencedError, fenced, time_limit
from polycrate.keys import ObjectKey
from polycrate.kubeclient.api import JsonObject
from tasks import metrics
from tasks.app import RECONCILE_TASK_NAME, app
from tasks.context import PerProcess, WorkerContext, process_context
from tasks.dispatch import HandlerRegistry, KindHandler, Requeue
from tasks.events import aggregated_events
from tasks.locking import KeyLock
from tasks.queue import KeyQueue, celery_sender
from tasks.registration import build_registry
from tasks.retry import BackoffPolicy, RetryTracker
from tasks.watches import SourceRun, noting, wake_watchers

log = logging.getLogger(__name__)

Result = Literal["succeeded", "retrying", "failed", "deferred", "skipped", "gone", "fenced"]


@dataclass(frozen=True)
class Outcome:
    """How one task run ended; `countdown` is the delay of a deferral or a scheduled retry."""

    result: Result
    countdown: float | None = None
    message: str = ""


@dataclass(frozen=True)
class _RunResult:
    outcome: Outcome
    retry_in: float | None = None
    requeue_delay: float = 0.0
    requeue_after: float | None = None


class Reconciler:
    """Everything the task does except talking to Celery, so it can be driven directly in tests."""

    def __init__(
        self,
        context: WorkerContext,
        registry: HandlerRegistry,
        queue: KeyQueue,
        retries: RetryTracker,
        *,
        rng: random.Random | None = None,
    ) -> None:
        self.context = context
        self.registry = registry
        self.queue = queue
        context.use_queue(queue)  # wakes (ctx.enqueue) go through this queue and its sender
        self.retries = retries
        self._rng = rng or random.Random()

    @classmethod
    def for_context(cls, context: WorkerContext) -> Reconciler:
        settings = context.settings
        policy = BackoffPolicy(
            base=settings.retry_base_seconds,
            cap=settings.retry_cap_seconds,
            jitter=settings.retry_jitter,
            max_retry_after=settings.retry_after_cap_seconds,
        )
        return cls(
            context,
            build_registry(),
            KeyQueue(
                context.redis,
                prefix=settings.redis_prefix,
                stale_after=settings.pending_stale_after_seconds,
                sender=celery_sender(app),
            ),
            RetryTracker(context.redis, policy, prefix=settings.redis_prefix),
        )

    def run(self, key_text: str, task_id: str) -> Outcome:
        key = ObjectKey.parse(key_text)
        settings = self.context.settings
        lock = KeyLock(self.context.redis, key, ttl=settings.lock_ttl_seconds, prefix=settings.redis_prefix)
        claim = self.queue.claim(key, task_id, lock)  # the lock and the queue's claim, one round trip
        if claim.locked_elsewhere:
            # Come back when the lock would expire: right after it if its holder died, and
            # only every TTL or so (not every second) while a live holder keeps renewing it.
            countdown = max(settings.lock_defer_seconds, claim.lock_ttl) + self._rng.uniform(
                0, settings.lock_defer_seconds
            )
            if self.queue.defer(key, task_id, countdown):
                log.debug("%s is being reconciled elsewhere; deferring %s by %.1fs", key, task_id, countdown)
                metrics.RECONCILES.labels(key.kind, "deferred").inc()
                return Outcome("deferred", countdown)
            log.debug("%s is being reconciled elsewhere and task %s is not its ticket; skipped", key, task_id)
            metrics.RECONCILES.labels(key.kind, "skipped").inc()
            return Outcome("skipped")
        follow_up = None
        try:
            if not claim.claimed:
                log.debug("%s has nothing pending; task %s is a duplicate", key, task_id)
                result = _RunResult(Outcome("skipped"))
            else:
                # Celery's time limits hold only in the prefork pool; the fence holds in any pool.
                with (
                    fenced(lock.check, time_limit(settings.reconcile_time_limit_seconds, key.describe())),
                    aggregated_events() as events,
                ):
                    result = self._run_claimed(key)
                    if result.outcome.result == "fenced":
                        events.discard()
                # Releases the lock too (one round trip); the `finally` then finds nothing to do.
                follow_up = self.queue.finish(
                    key, task_id, retry_in=result.retry_in, requeue_delay=result.requeue_delay, lock=lock
                )
                if result.requeue_after is not None:
                    self.queue.requeue_after(key, result.requeue_after)
        finally:
            lock.release()
        if follow_up is not None:
            self.queue.send(follow_up)
        metrics.RECONCILES.labels(key.kind, result.outcome.result).inc()
        return result.outcome

    def _run_claimed(self, key: ObjectKey) -> _RunResult:
        try:
            handler = self.registry.handler_for(key.kind)
        except PermanentError as error:
            log.error("cannot reconcile %s: %s", key, error)
            metrics.FAILURES.labels(key.kind, "permanent").inc()
            return _RunResult(Outcome("failed", message=str(error)))
        with noting() as notes:
            result, obj = self._run_handler(handler, key)
        watches = self.registry.watches_of(key.kind)
        if obj is None or not watches or result.outcome.result not in ("succeeded", "retrying", "failed"):
            return result
        run = SourceRun(key, obj, succeeded=result.outcome.result == "succeeded", notes=notes)
        try:
            wake_watchers(self.context, watches, run)
        except TransientError as error:
            if run.succeeded:  # the wake was not recorded anywhere: run the source again to redo it
                return self._retry(handler, key, obj, error)
            log.warning("the wake-ups after the failed run of %s were not recorded: %s", key, error)
        return result

    def _run_handler(self, handler: KindHandler, key: ObjectKey) -> tuple[_RunResult, JsonObject | None]:
        obj: JsonObject | None = None
        started = time.monotonic()
        try:
            obj = handler.fetch(self.context, key)
            if obj is None:
                self.retries.reset(key)
                return _RunResult(Outcome("gone")), None
            requeue = handler.reconcile(self.context, key, obj)
        except FencedError as error:
            # Another worker may own the key now: report nothing, write nothing, run it again.
            log.warning("reconcile of %s stopped by its lock's fence: %s", key, error)
            metrics.FENCED.labels(key.kind).inc()
            return _RunResult(Outcome("fenced"), retry_in=0.0), obj
        except PermanentError as error:
            return self._park(handler, key, obj, error), obj
        except TransientError as error:
            return self._retry(handler, key, obj, error), obj
        except Exception as error:  # an unclassified failure may be a blip; retry it, loudly
            log.exception("unexpected error reconciling %s", key)
            wrapped = TransientError(f"{key.describe()}: unexpected {type(error).__name__}: {error}")
            return self._retry(handler, key, obj, wrapped), obj
        finally:
            metrics.DURATION.labels(key.kind).observe(time.monotonic() - started)
        self.retries.reset(key)
        if isinstance(requeue, Requeue):
            log.info("reconciled %s; it runs again in %.0fs", key, requeue.after)
            return _RunResult(Outcome("succeeded"), requeue_after=requeue.after), obj
        log.info("reconciled %s", key)
        return _RunResult(Outcome("succeeded")), obj

    def _retry(
        self, handler: KindHandler, key: ObjectKey, obj: JsonObject | None, error: TransientError
    ) -> _RunResult:
        plan = self.retries.record_failure(key, retry_after=error.retry_after)
        log.warning(
            "reconcile of %s failed (attempt %d), retrying in %.1fs: %s",
            key,
            plan.attempt,
            plan.countdown,
            error,
        )
        metrics.FAILURES.labels(key.kind, "transient").inc()
        metrics.RETRIES.labels(key.kind).inc()
        self._report(handler, key, obj, error, retrying=True)
        return _RunResult(Outcome("retrying", plan.countdown, str(error)), retry_in=plan.countdown)

    def _park(
        self, handler: KindHandler, key: ObjectKey, obj: JsonObject | None, error: PermanentError
    ) -> _RunResult:
        # Not retried; but if an event (e.g. our own Error status write) arrived during this
        # run, the rerun it asks for waits out the backoff, so a failure cannot loop hot.
        plan = self.retries.record_failure(key)
        log.warning("reconcile of %s failed permanently (%s): %s", key, error.reason, error)
        metrics.FAILURES.labels(key.kind, "permanent").inc()
        self._report(handler, key, obj, error, retrying=False)
        return _RunResult(Outcome("failed", message=str(error)), requeue_delay=plan.countdown)

    def _report(
        self,
        handler: KindHandler,
        key: ObjectKey,
        obj: JsonObject | None,
        error: PolycrateError,
        *,
        retrying: bool,
    ) -> None:
        try:
            handler.report_failure(self.context, key, obj, error, retrying=retrying)
        except FencedError:
            log.warning("the failure of %s is not reported: the run lost its lock meanwhile", key)
        except Exception:  # reporting must never hide the failure being reported
            log.exception("could not report the failure of %s", key)


_process_reconciler = PerProcess(lambda: Reconciler.for_context(process_context()))


def process_reconciler() -> Reconciler:
    """The reconciler of this worker process (built after fork, handler modules loaded once)."""
    return _process_reconciler.get()


class ReconcileFailed(Exception):
    """The task's run of a key failed; raised only after the run's bookkeeping is complete.

    Constructed from its message alone, so Celery can serialise it into the task-failed event.
    """

    @classmethod
    def of(cls, key: str, outcome: Outcome) -> ReconcileFailed:
        then = f"retrying in {outcome.countdown:.1f}s" if outcome.result == "retrying" else "not retried"
        return cls(f"reconcile {key} failed: {outcome.message or outcome.result} ({then})")


@app.task(
    name=RECONCILE_TASK_NAME,
    bind=True,
    max_retries=None,
    acks_late=True,
    reject_on_worker_lost=True,
    throws=(ReconcileFailed,),
)
def reconcile(self: Task, key: str) -> str:
    """Reconcile the object named by `key` ("Kind/namespace/name")."""
    outcome = process_reconciler().run(key, self.request.id)
    if outcome.result in ("failed", "retrying"):
        raise ReconcileFailed.of(key, outcome)
    return outcome.result
