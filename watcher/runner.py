"""The watcher process: sources → informers → KeyEnqueuer → KeyQueue, plus probes, resync and
Redis-wipe detection.

Without leader election the process leads at once. With it, informers and resync run only
while this process holds the Lease: on becoming leader it starts from an empty key set, reads
the OperatorConfig, starts one informer per watched source (whose initial lists enqueue
everything, coalescing absorbs the repeats), the resync and, given a Redis client, the epoch
check that re-adds every known key when Redis comes back empty; on losing the Lease it stops them
before anyone else may lead and `wait()` reports the loss so the process exits, as
controller-runtime does. OperatorConfig changes start, stop or relist exactly the discovery
sources whose section changed; a CRD informer wakes sources the moment their CRD is
installed. Probes and metrics serve throughout, leader or standby.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis
from prometheus_client import CollectorRegistry

from polycrate.kinds import OPERATOR_CONFIG_KEY
from polycrate.kubeclient.api import KubeClient
from polycrate.kubeclient.errors import KubeError, NotFound
from polycrate.kubeclient.resources import resource_for
from polycrate.metrics_auth import MetricsToken
from watcher.crd_arrivals import CRD_SOURCE, CrdArrivals
from watcher.embedded_worker import EmbeddedWorker
from watcher.enqueuer import KeyEnqueuer, KeySink
from watcher.filters import DiscoveryFilters
from watcher.informer import Informer, WatchTiming
from watcher.known_keys import KnownKeys
from watcher.leader import LeaderElector, LeaseSettings
from watcher.metrics import WatcherMetrics
from watcher.probes import Check, CheckResult, ProbeServer, parse_bind_address
from watcher.redis_epoch import RedisEpoch
from watcher.resync import Resyncer
from watcher.sources import WatchSource, all_sources

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WatcherOptions:
    """Everything `polycrate operator run` can set."""

    leader_elect: bool = False
    lease: LeaseSettings = field(default_factory=LeaseSettings)
    metrics_bind_address: str = ":8080"
    health_probe_bind_address: str = ":8081"
    resync_period: float = 600.0
    watch: WatchTiming = field(default_factory=WatchTiming)
    embedded_workers: int = 0
    kubeconfig: str | None = None
    sources: tuple[WatchSource, ...] = field(default_factory=all_sources)
    # /metrics answers only requests bearing this file's content (None: open).
    metrics_token_file: str | None = None


class Watcher:
    """Owns every thread of the watcher process; `start()`, then `wait()`, then `stop()`."""

    def __init__(
        self,
        api: KubeClient,
        sink: KeySink,
        options: WatcherOptions,
        *,
        metrics: WatcherMetrics | None = None,
        broker_ping: Callable[[], Any] | None = None,
        identity: str | None = None,
        redis_client: redis.Redis | None = None,
        redis_prefix: str = "polycrate",
    ):
        self.api = api
        self.options = options
        self.metrics = metrics or WatcherMetrics()
        self.known = KnownKeys()
        self.filters = DiscoveryFilters()
        self._broker_ping = broker_ping
        self._stop = threading.Event()
        self._lost_leadership = threading.Event()
        self._ended = threading.Event()
        self._lock = threading.RLock()
        self._informers: dict[str, Informer] = {}
        self._initial_informers: list[Informer] = []
        self._crd_informer: Informer | None = None
        self._initially_synced = threading.Event()
        self._leading = threading.Event()
        self._resyncer: Resyncer | None = None
        self._redis_client = redis_client
        self._redis_prefix = redis_prefix
        self._epoch: RedisEpoch | None = None
        self._probe_servers: list[ProbeServer] = []
        self._probe_names: list[str] = []
        self.enqueuer = KeyEnqueuer(
            sink,
            self.known,
            self.filters,
            self.metrics,
            stop=self._stop,
            is_leader=self._leading.is_set,
            on_operator_config=self._operator_config_changed,
        )
        self.elector: LeaderElector | None = None
        if options.leader_elect:
            self.elector = LeaderElector(
                api,
                options.lease,
                identity=identity,
                on_started_leading=self._start_leading,
                on_stopped_leading=self._leadership_lost,
            )
        self.worker: EmbeddedWorker | None = None
        if options.embedded_workers > 0:
            self.worker = EmbeddedWorker(options.embedded_workers, kubeconfig=options.kubeconfig)

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        self._start_probe_servers()
        if self.worker is not None:
            self.worker.start()
        if self.elector is not None:
            self.metrics.is_leader.set(0)
            self.elector.start()
        else:
            self._start_leading()

    def wait(self, timeout: float | None = None) -> str | None:
        """Block until `request_stop()`/`stop()` or a lost Lease.

        Returns "stopped", "lost-leadership", or None when `timeout` passed first.
        """
        if not self._ended.wait(timeout):
            return None
        return "lost-leadership" if self._lost_leadership.is_set() else "stopped"

    def request_stop(self) -> None:
        """Ask `wait()` to return (signal handlers call this); `stop()` does the shutdown."""
        self._stop.set()
        self._ended.set()

    def stop(self) -> None:
        """Clean shutdown: stop enqueueing, release the Lease, stop the worker and probes."""
        self.request_stop()
        self._stop_leading()
        if self.elector is not None:
            self.elector.stop(release=True)
        self.metrics.is_leader.set(0)
        if self.worker is not None:
            self.worker.stop()
        for server in self._probe_servers:
            server.stop()
        self._probe_servers.clear()

    @property
    def is_leader(self) -> bool:
        return self._leading.is_set()

    @property
    def probe_urls(self) -> dict[str, str]:
        return {name: server.url for name, server in zip(self._probe_names, self._probe_servers, strict=True)}

    def _running_informers(self) -> list[Informer]:
        with self._lock:
            return list(self._informers.values())

    def informer(self, identity: str) -> Informer | None:
        """The informer of a source identity: its key kind, or `Kind@namespace` when confined."""
        with self._lock:
            return self._informers.get(identity)

    # -- leadership --------------------------------------------------------------------------

    def _start_leading(self) -> None:
        with self._lock:
            if self._stop.is_set():
                return
            self.known.clear()
            self._leading.set()
            self.metrics.is_leader.set(1)
            self.filters.update(self._read_operator_config())
            for source in self.options.sources:
                if self.filters.is_watched(source):
                    self._start_informer(source)
            self._initial_informers = list(self._informers.values())
            self._crd_informer = Informer(
                CRD_SOURCE,
                self.api,
                CrdArrivals(self._running_informers),
                self.metrics,
                timing=self.options.watch,
            )
            self._crd_informer.start()
            self._resyncer = Resyncer(
                self.known.keys,
                self.enqueuer.resync,
                period=self.options.resync_period,
            )
            self._resyncer.start()
            if self._redis_client is not None:
                self._epoch = RedisEpoch(
                    self._redis_client,
                    self.known.keys,
                    self.enqueuer.readd_after_wipe,
                    self.metrics,
                    prefix=self._redis_prefix,
                )
                self._epoch.start()

    def _stop_leading(self) -> None:
        with self._lock:
            self._leading.clear()
            informers = list(self._informers.values())
            self._informers.clear()
            if self._crd_informer is not None:
                informers.append(self._crd_informer)
                self._crd_informer = None
            resyncer, self._resyncer = self._resyncer, None
            epoch, self._epoch = self._epoch, None
        for informer in informers:
            informer.stop()
        if resyncer is not None:
            resyncer.stop()
        if epoch is not None:
            epoch.stop()

    def _leadership_lost(self) -> None:
        self.metrics.is_leader.set(0)
        self._stop_leading()
        self._lost_leadership.set()
        self._ended.set()

    def _read_operator_config(self) -> dict[str, Any] | None:
        key = OPERATOR_CONFIG_KEY
        try:
            return self.api.get(resource_for(key.kind).path(key.namespace, key.name))
        except NotFound:
            return None  # no OperatorConfig (yet): discovery stays off until one is created
        except KubeError as exc:
            log.warning("cannot read OperatorConfig yet (%s); discovery waits for its watch event", exc)
        return None

    # -- informers ---------------------------------------------------------------------------

    def _start_informer(self, source: WatchSource) -> None:
        informer = Informer(
            source,
            self.api,
            self.enqueuer,
            self.metrics,
            timing=self.options.watch,
            label_selector=lambda: self.filters.label_selector(source),
        )
        self._informers[source.identity] = informer
        informer.start()

    def _operator_config_changed(self, operator_config: dict[str, Any] | None) -> None:
        changed = self.filters.update(operator_config)
        if not changed:
            return
        log.info("OperatorConfig discovery sections changed: %s", ", ".join(sorted(changed)))
        with self._lock:
            if not self._leading.is_set():
                return
            for source in self.options.sources:
                if source.discovery_section not in changed:
                    continue
                running = self._informers.get(source.identity)
                if self.filters.is_watched(source):
                    if running is None:
                        self._start_informer(source)
                    else:
                        running.request_relist()
                elif running is not None:
                    del self._informers[source.identity]
                    running.stop()
                    self.known.forget_kind(source.key_kind)
                    self.metrics.known_keys.labels(source.key_kind).set(0)

    # -- probes ------------------------------------------------------------------------------

    def _start_probe_servers(self) -> None:
        health: dict[str, Check] = {
            "informers": self._check_informers_alive,
            "leader-election": self._check_elector_alive,
        }
        if self.worker is not None:
            health["embedded-worker"] = self._check_worker_alive
        ready: dict[str, Check] = {"initial-lists": self._check_initial_lists, "redis": self._check_broker}
        metrics_address = parse_bind_address(self.options.metrics_bind_address)
        probe_address = parse_bind_address(self.options.health_probe_bind_address)
        # One server for both only when the same fixed port is asked for twice; two ":0"
        # addresses mean two ephemeral ports.
        if probe_address is not None and probe_address == metrics_address and probe_address[1] != 0:
            self._add_server("probes+metrics", probe_address, health, ready, self.metrics.registry)
            return
        if probe_address is not None:
            self._add_server("probes", probe_address, health, ready, None)
        if metrics_address is not None:
            self._add_server("metrics", metrics_address, None, None, self.metrics.registry)

    def _add_server(
        self,
        name: str,
        address: tuple[str, int],
        health: dict[str, Check] | None,
        ready: dict[str, Check] | None,
        registry: CollectorRegistry | None,
    ) -> None:
        token = MetricsToken(self.options.metrics_token_file) if self.options.metrics_token_file else None
        server = ProbeServer(
            address, health_checks=health, ready_checks=ready, registry=registry, metrics_token=token
        )
        server.start()
        self._probe_servers.append(server)
        self._probe_names.append(name)
        log.info("serving %s on %s", name, server.url)

    def _check_informers_alive(self) -> CheckResult:
        with self._lock:
            informers = list(self._informers.items())
            if self._crd_informer is not None:
                informers.append((CRD_SOURCE.key_kind, self._crd_informer))
        dead = [kind for kind, informer in informers if not informer.healthy]
        return (not dead, f"crashed: {', '.join(dead)}" if dead else "")

    def _check_elector_alive(self) -> CheckResult:
        if self.elector is None:
            return True, "disabled"
        return self.elector.healthy, "" if self.elector.healthy else "leader election loop stopped"

    def _check_worker_alive(self) -> CheckResult:
        assert self.worker is not None
        return self.worker.healthy, "" if self.worker.healthy else "supervisor stopped"

    def _check_initial_lists(self) -> CheckResult:
        if not self._leading.is_set():
            if self.elector is not None and not self._lost_leadership.is_set():
                return True, "standby, waiting for the Lease"
            return False, "not leading"
        if self._initially_synced.is_set():
            return True, ""
        with self._lock:
            pending = [
                informer.source.display_name for informer in self._initial_informers if not informer.synced
            ]
        if pending:
            return False, f"waiting for the initial list of {', '.join(sorted(pending))}"
        self._initially_synced.set()
        return True, ""

    def _check_broker(self) -> CheckResult:
        if not self.enqueuer.broker_reachable:
            return False, "Redis does not answer; keys are held back until it does"
        if self._broker_ping is not None:
            try:
                self._broker_ping()
            except Exception as exc:  # any failure to ping means "not ready", with the reason
                return False, f"Redis does not answer: {type(exc).__name__}"
        return True, ""
