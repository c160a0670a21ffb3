"""What a reconcile may use: settings, Redis, and the Kubernetes object, status and Event writers.

One `WorkerContext` per worker process, built lazily after the fork: sockets (Redis connection
pools, the Kubernetes client's urllib3 pool) must never be shared between a prefork parent and
its children. The Kubernetes client is only created when a handler first touches the cluster,
so a worker process starts even while the API server is away and reports that as a transient
reconcile failure instead of dying at boot. The Redis client has connect and read timeouts
(`redis_client_for`): without them a stalled link would hang a lock renewal past the lock's
expiry instead of failing in seconds and letting the fence stop the run. `enqueue` is the one
way a flow or the runtime asks for another key's reconcile, with one error policy (see there).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterable
from functools import cached_property
from typing import TYPE_CHECKING, Generic, TypeVar

import redis

from polycrate.errors import TransientError
from polycrate.keys import ObjectKey
from polycrate.kubeclient.api import KubeClient
from polycrate.kubeclient.config import load_api_client
from polycrate.kubeclient.objects import ObjectAPI
from polycrate.secrets import SecretReader
from polycrate.settings import Settings
from tasks.events import EventRecorder
from tasks.queue import KeyQueue
from tasks.status import StatusWriter
from workers.plan import planning

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from kubernetes.client import ApiClient


def redis_client_for(settings: Settings) -> redis.Redis:
    """A coordination Redis client whose calls fail within the settings' timeout instead of hanging."""
    return redis.Redis.from_url(
        settings.redis_url,
        socket_timeout=settings.redis_timeout,
        socket_connect_timeout=settings.redis_timeout,
        socket_keepalive=True,
        health_check_interval=30,
    )


class WorkerContext:
    """Process-wide resources of the reconcile runtime, each created on first use."""

    def __init__(
        self,
        settings: Settings,
        *,
        redis_client: redis.Redis | None = None,
        api_client_factory: Callable[[str | None], ApiClient] | None = None,
        queue: KeyQueue | None = None,
    ) -> None:
        self.settings = settings
        self._redis_client = redis_client
        self._api_client_factory = api_client_factory
        if queue is not None:
            self.queue = queue

    @cached_property
    def redis(self) -> redis.Redis:
        return self._redis_client or redis_client_for(self.settings)

    @cached_property
    def queue(self) -> KeyQueue:
        """The work queue (the reconciler's own, `use_queue`, so its sender publishes the wakes)."""
        settings = self.settings
        return KeyQueue(
            self.redis, prefix=settings.redis_prefix, stale_after=settings.pending_stale_after_seconds
        )

    def use_queue(self, queue: KeyQueue) -> None:
        self.queue = queue

    def enqueue(self, keys: Iterable[ObjectKey], *, reason: str) -> None:
        """Ask for a reconcile of each key now, instead of at its resync; a plan wakes nobody.

        One error policy for every wake-up, because a lost wake leaves a dependent waiting up to
        its resync (10 minutes) while the reason it waited is long gone:
        - Redis did not take a key (the add failed): nothing recorded the wake, so this raises
          TransientError after trying the other keys, and the reconcile that asked is retried
          with backoff instead of reporting success with a wake dropped;
        - the broker refused the task after Redis took the key: not an error here, the key's
          ticket stays in Redis due now and the healing loop publishes it (`KeyQueue._publish`),
          so the wake is kept without failing the run.
        """
        if planning() is not None:
            return
        refused: list[str] = []
        for key in sorted(set(keys)):
            try:
                self.queue.add(key, reason=reason)
            except redis.RedisError as exc:
                refused.append(f"{key.describe()} ({type(exc).__name__})")
            except Exception as exc:  # the broker's errors differ by transport; the healer re-sends
                log.warning(
                    "wake of %s kept for the healer: the broker refused it (%s)", key, type(exc).__name__
                )
        if refused:
            raise TransientError(f"could not enqueue {', '.join(refused)}: Redis did not take it")

    @cached_property
    def objects(self) -> ObjectAPI:
        if self._api_client_factory is not None:
            api_client = self._api_client_factory(self.settings.kubeconfig)
        else:
            # One pool for all threads of this process: sized so none waits or is discarded.
            api_client = load_api_client(self.settings.kubeconfig, pool_maxsize=self.settings.http_pool_size)
        return ObjectAPI(KubeClient(api_client), namespaces=self.settings.namespaces)

    @cached_property
    def secrets(self) -> SecretReader:
        """Credentials read from Secrets at use, cached briefly in this process only."""
        return SecretReader(self.objects.client, namespaces=self.settings.namespaces)

    @cached_property
    def status(self) -> StatusWriter:
        return StatusWriter(self.objects)

    @cached_property
    def events(self) -> EventRecorder:
        return EventRecorder(self.objects)


T = TypeVar("T")


class PerProcess(Generic[T]):
    """One `build()` per process, built on first use and once only, even when threads race.

    A forked child (a Celery prefork worker) builds its own instead of using its parent's:
    connection pools and locks do not survive a fork.
    """

    def __init__(self, build: Callable[[], T]) -> None:
        self._build = build
        self._built: tuple[int, T] | None = None
        self._lock = threading.Lock()

    def get(self) -> T:
        with self._lock:
            if self._built is None or self._built[0] != os.getpid():
                self._built = (os.getpid(), self._build())
            return self._built[1]


_process_context = PerProcess(lambda: WorkerContext(Settings.from_env()))


def process_context() -> WorkerContext:
    """The context of this process, rebuilt in a forked child instead of inherited."""
    return _process_context.get()
