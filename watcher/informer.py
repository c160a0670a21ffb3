"""One list-watch loop per source, on its own thread, that misses no object.

The loop lists (paged) and then watches from the list's resourceVersion with bookmarks. Every
watch is bounded twice: the server ends it after `timeoutSeconds` (jittered so restarts do not
synchronise), and each socket read gives up after an inactivity timeout, so a stream that goes
silent while its connection stays open is detected and replaced. A normal end, a silent stream
or a broken connection resumes the watch from the last resourceVersion seen (after exponential
backoff with jitter when the server was unreachable: this loop is the retry policy, so its
requests are sent once); 410 Gone relists, and the relist is
compared with the known keys so deletions that happened meanwhile are enqueued too. A resource
the server does not serve (CRD not installed) is logged once, re-checked periodically and
picked up when it appears. The loop holds no objects: each one is handed to the handler.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from polycrate.keys import ObjectKey
from polycrate.kubeclient.api import JSON, KubeClient
from polycrate.kubeclient.errors import Gone, InactiveStreamError, KubeError, NotFound
from polycrate.kubeclient.retrying import NO_RETRY
from polycrate.kubeclient.watching import METADATA_LIST, METADATA_WATCH, WatchStream, open_watch
from watcher.metrics import WatcherMetrics
from watcher.sources import WatchSource

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WatchTiming:
    """Timeouts and backoff of the list-watch loops.

    The inactivity timeout is below the server timeout on purpose: API servers send a bookmark
    to watchers that allow them about once a minute, so two silent minutes mean a stuck stream.
    On a server that sends no bookmarks an idle watch is simply resumed every two minutes.
    """

    server_timeout: float = 300.0
    inactivity_timeout: float = 120.0
    connect_timeout: float = 10.0
    page_size: int = 500
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    absent_recheck: float = 30.0


class SourceHandler(Protocol):
    """What the informer reports to (`watcher.enqueuer.KeyEnqueuer`)."""

    def listed(self, source: WatchSource, obj: dict[str, Any]) -> ObjectKey: ...

    def list_complete(self, source: WatchSource, seen: list[ObjectKey]) -> None: ...

    def event(self, source: WatchSource, event_type: str, obj: dict[str, Any]) -> None: ...


class _NotServedError(Exception):
    """The API server answered 404 for the collection: the resource is not installed."""


class _RelistRequestedError(Exception):
    """Someone asked for a fresh list (the source's filters changed)."""


class _StoppedError(Exception):
    """The informer is shutting down."""


class Backoff:
    """Exponential delays with ±20 % jitter, reset after a success."""

    def __init__(self, initial: float, maximum: float, rng: random.Random):
        self._initial = initial
        self._maximum = maximum
        self._rng = rng
        self._next = initial
        self.failures = 0

    def next_delay(self) -> float:
        delay = self._next * self._rng.uniform(0.8, 1.2)
        self._next = min(self._next * 2, self._maximum)
        self.failures += 1
        return delay

    def reset(self) -> None:
        self._next = self._initial
        self.failures = 0


class Informer:
    """The list-watch loop of one source; `start()` runs it on a daemon thread."""

    def __init__(
        self,
        source: WatchSource,
        api: KubeClient,
        handler: SourceHandler,
        metrics: WatcherMetrics,
        *,
        timing: WatchTiming = WatchTiming(),
        label_selector: Callable[[], str] | None = None,
        rng: random.Random | None = None,
    ):
        self.source = source
        self._api = api
        self._handler = handler
        self._metrics = metrics
        self._timing = timing
        self._label_selector = label_selector or (lambda: source.label_selector)
        self._rng = rng or random.Random()
        self._backoff = Backoff(timing.backoff_initial, timing.backoff_max, self._rng)
        self._stop = threading.Event()
        self._relist = threading.Event()
        self._recheck = threading.Event()
        self._synced = threading.Event()
        self._stream_lock = threading.Lock()
        self._stream: WatchStream | None = None
        self._thread: threading.Thread | None = None
        self._served: bool | None = None
        self._crashed: BaseException | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._run_guarded, name=f"informer-{self.source.display_name}", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._recheck.set()
        self._cut_stream()
        if self._thread is not None:
            self._thread.join(timeout)

    def recheck_now(self) -> None:
        """The resource may be served now (its CRD was just installed): look without waiting."""
        self._recheck.set()

    def request_relist(self) -> None:
        """List again from scratch soon (new filters), cutting the current watch."""
        self._relist.set()
        self._cut_stream()

    @property
    def synced(self) -> bool:
        """True once the first list completed, or the resource turned out not to be served."""
        return self._synced.is_set()

    def wait_synced(self, timeout: float) -> bool:
        return self._synced.wait(timeout)

    @property
    def served(self) -> bool | None:
        """Whether the API server serves this resource (None: not asked yet)."""
        return self._served

    @property
    def healthy(self) -> bool:
        """False when the loop died of an unexpected error (liveness should restart us)."""
        return self._crashed is None and (
            self._thread is None or self._thread.is_alive() or self._stop.is_set()
        )

    # -- the loop ----------------------------------------------------------------------------

    def _run_guarded(self) -> None:
        try:
            self._run()
        except BaseException as exc:
            self._crashed = exc
            log.exception("informer for %s stopped by an unexpected error", self.source.display_name)

    def _run(self) -> None:
        resource_version: str | None = None
        while not self._stop.is_set():
            try:
                if resource_version is None or self._relist.is_set():
                    self._relist.clear()
                    resource_version = self._list()
                resource_version = self._watch(resource_version)
            except _StoppedError:
                return
            except _NotServedError:
                resource_version = None
                self._recheck.wait(self._timing.absent_recheck)
                self._recheck.clear()
            except _RelistRequestedError:
                self._metrics.watch_restarts.labels(self.source.key_kind, "relist").inc()
                resource_version = None
            except Gone:
                log.info(
                    "%s: resourceVersion %s expired (410); relisting",
                    self.source.display_name,
                    resource_version,
                )
                self._metrics.watch_restarts.labels(self.source.key_kind, "gone").inc()
                resource_version = None
            except KubeError as exc:
                self._metrics.watch_restarts.labels(self.source.key_kind, "error").inc()
                delay = self._backoff.next_delay()
                level = logging.WARNING if self._backoff.failures == 1 else logging.DEBUG
                log.log(
                    level,
                    "%s: list-watch failed (%s); retrying in %.1f s",
                    self.source.display_name,
                    exc,
                    delay,
                )
                self._stop.wait(delay)
            except Exception:
                # A bug or an answer nobody expected must not end the watch for good: log it
                # with its traceback, then start over with a fresh list after the backoff.
                self._metrics.watch_restarts.labels(self.source.key_kind, "error").inc()
                delay = self._backoff.next_delay()
                log.exception(
                    "%s: unexpected error in list-watch; relisting in %.1f s", self.source.display_name, delay
                )
                resource_version = None
                self._stop.wait(delay)

    def _note_served(self, served: bool) -> None:
        if served != self._served:
            if served and self._served is False:
                log.info("%s is served now; watching it", self.source.display_name)
            elif not served:
                log.info(
                    "%s is not served by the API server (CRD not installed); skipping it, checking again every %.0f s",
                    self.source.display_name,
                    self._timing.absent_recheck,
                )
            self._served = served
        self._metrics.source_installed.labels(self.source.key_kind).set(1 if served else 0)
        if not self._synced.is_set():
            self._synced.set()
            self._metrics.source_synced.labels(self.source.key_kind).set(1)

    def _recovered(self) -> None:
        if self._backoff.failures:
            log.info(
                "%s: list-watch works again after %d failures",
                self.source.display_name,
                self._backoff.failures,
            )
        self._backoff.reset()

    def _selector_query(self) -> dict[str, str]:
        selector = self._label_selector()
        return {"labelSelector": selector} if selector else {}

    def _list(self) -> str:
        seen: list[ObjectKey] = []
        resource_version = ""
        continue_token = ""
        while True:
            query: dict[str, str | int] = {"limit": self._timing.page_size, **self._selector_query()}
            if continue_token:
                query["continue"] = continue_token
            try:
                page = self._api.get(
                    self.source.collection_path,
                    query=query,
                    accept=METADATA_LIST if self.source.metadata_only else JSON,
                    retry=NO_RETRY,
                )
            except NotFound as exc:
                self._note_served(False)
                raise _NotServedError from exc
            metadata = page.get("metadata") or {}
            resource_version = resource_version or str(metadata.get("resourceVersion", ""))
            for item in page.get("items") or []:
                if self._stop.is_set():
                    raise _StoppedError
                seen.append(self._handler.listed(self.source, item))
            continue_token = str(metadata.get("continue") or "")
            if not continue_token:
                break
        if self._stop.is_set():
            raise _StoppedError
        self._handler.list_complete(self.source, seen)
        self._recovered()
        self._note_served(True)
        log.debug(
            "%s: listed %d objects at resourceVersion %s",
            self.source.display_name,
            len(seen),
            resource_version,
        )
        return resource_version

    def _watch(self, resource_version: str) -> str:
        try:
            stream = open_watch(
                self._api,
                self.source.collection_path,
                resource_version=resource_version,
                query=self._selector_query(),
                server_timeout=int(self._timing.server_timeout * self._rng.uniform(1.0, 1.2)),
                inactivity_timeout=self._timing.inactivity_timeout,
                connect_timeout=self._timing.connect_timeout,
                accept=METADATA_WATCH if self.source.metadata_only else JSON,
                retry=NO_RETRY,
            )
        except NotFound as exc:
            self._note_served(False)
            raise _NotServedError from exc
        with self._stream_lock:
            self._stream = stream
        try:
            self._recovered()
            # A stop or relist that raced with opening the stream would not have cut it.
            if self._stop.is_set() or self._relist.is_set():
                stream.close()
            for event in stream:
                resource_version = self._dispatch(event, resource_version)
                if self._relist.is_set():
                    raise _RelistRequestedError
        except InactiveStreamError:
            log.info(
                "%s: watch silent for %.0f s; restarting it",
                self.source.display_name,
                self._timing.inactivity_timeout,
            )
            self._metrics.watch_restarts.labels(self.source.key_kind, "inactivity").inc()
            return resource_version
        finally:
            with self._stream_lock:
                self._stream = None
            stream.close()
        if self._stop.is_set():
            raise _StoppedError
        if self._relist.is_set():
            raise _RelistRequestedError
        self._metrics.watch_restarts.labels(self.source.key_kind, "expired").inc()
        return resource_version

    def _dispatch(self, event: dict[str, Any], resource_version: str) -> str:
        event_type = str(event.get("type", ""))
        obj = event.get("object") or {}
        if event_type in ("ADDED", "MODIFIED", "DELETED"):
            self._handler.event(self.source, event_type, obj)
        elif event_type != "BOOKMARK":
            log.debug("%s: ignoring watch event of type %r", self.source.display_name, event_type)
        return str((obj.get("metadata") or {}).get("resourceVersion") or resource_version)

    def _cut_stream(self) -> None:
        with self._stream_lock:
            stream = self._stream
        if stream is not None:
            stream.close()
