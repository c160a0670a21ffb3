"""The Celery application: broker, queues, routing and the delivery guarantees of the runtime.

Tasks are acknowledged only after they finish (`acks_late`) and requeued when the process
running them dies (`reject_on_worker_lost`), so a reconcile is delivered at least once; each
worker process reserves one task at a time (`prefetch 1`) so a long reconcile never hides
queued work from idle workers. The Redis transport redelivers an unacknowledged task after the
visibility timeout, which therefore sits far above the reconcile time limit and the 60 s retry
cap: a shorter one would run healthy long tasks twice. Recovery does not wait for it: the
self-healing loop (tasks.healing) re-sends what a dead worker held within seconds. Workers keep
reconnecting to a broker that went away, with socket timeouts so a stalled link fails fast.
Messages are JSON and carry only the object key; Flower shows `reconcile` with the argument
`Organization/polycrate/acme-corp`.
"""

from __future__ import annotations

from typing import Any

from celery import Celery, signals
from kombu import Queue

from polycrate.keys import ObjectKey
from polycrate.logformat import log_key
from polycrate.settings import Settings
from tasks.routing import DEFAULT_QUEUE, QUEUES, queue_for

RECONCILE_TASK_NAME = "polycrate.reconcile"


def route_task(
    name: str, args: Any, kwargs: Any, options: Any, task: Any = None, **extra: Any
) -> dict | None:
    """Celery router: a reconcile goes to the queue of the system its kind talks to."""
    if name != RECONCILE_TASK_NAME or not args:
        return None
    try:
        kind = ObjectKey.parse(str(args[0])).kind
    except ValueError:
        return {"queue": DEFAULT_QUEUE}
    return {"queue": queue_for(kind)}


def configure(app: Celery, settings: Settings) -> None:
    """Apply the runtime's Celery configuration for `settings` to `app`."""
    app.conf.update(
        broker_url=settings.redis_url,
        broker_connection_retry_on_startup=True,
        # Keep reconnecting for as long as the broker is away; giving up would end the worker.
        broker_connection_max_retries=None,
        broker_transport_options={
            "visibility_timeout": settings.visibility_timeout_seconds,
            # Sweep for messages of dead workers often enough that redelivery happens soon after
            # the visibility timeout, not up to 100 s later (kombu's 10 s x 10 default).
            "unacked_restore_interval": min(60.0, max(1.0, settings.visibility_timeout_seconds / 10)),
            "unacked_restore_throttle": 1,
            # A stalled link fails within seconds instead of hanging the consumer or a publish.
            "socket_timeout": 30.0,
            "socket_connect_timeout": 10.0,
            "socket_keepalive": True,
            "health_check_interval": 25,
            # Broadcast (remote control) messages only reach workers that listen to them.
            "fanout_prefix": True,
            "fanout_patterns": True,
        },
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        task_ignore_result=True,
        result_backend=None,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_acks_on_failure_or_timeout=True,
        worker_prefetch_multiplier=1,
        # With acks_late the running tasks are redelivered anyway when the broker connection
        # drops; cancelling them avoids running them twice at the same time.
        worker_cancel_long_running_tasks_on_connection_loss=True,
        task_time_limit=settings.reconcile_time_limit_seconds,
        task_soft_time_limit=settings.reconcile_time_limit_seconds * 0.9,
        task_default_queue=DEFAULT_QUEUE,
        task_queues=[Queue(name, routing_key=name) for name in QUEUES],
        task_create_missing_queues=False,
        task_routes=(route_task,),
        # Flower and `celery events` see tasks from publish to finish.
        task_send_sent_event=True,
        worker_send_task_events=True,
        worker_hijack_root_logger=False,
        enable_utc=True,
        timezone="UTC",
    )


def create_app(settings: Settings | None = None) -> Celery:
    """A Celery app for `settings` (default: from the environment), with the reconcile task."""
    from tasks.heartbeat import ConsumerHeartbeat

    celery_app = Celery("polycrate", include=["tasks.reconcile"])
    configure(celery_app, settings or Settings.from_env())
    celery_app.steps["consumer"].add(ConsumerHeartbeat)
    return celery_app


@signals.task_prerun.connect
def _log_lines_carry_the_key(task: Any = None, args: Any = None, **extra: Any) -> None:
    """Every log line of a reconcile names its key (the `key` field of `--log-format json`)."""
    if task is not None and task.name == RECONCILE_TASK_NAME and args:
        log_key.set(str(args[0]))


@signals.task_postrun.connect
def _forget_the_key(**extra: Any) -> None:
    log_key.set(None)


app = create_app()
