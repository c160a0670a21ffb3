"""`polycrate operator run`: the watcher, and (unless `--workers 0`) an embedded worker.

Before anything starts, the command checks what the watcher cannot live without and says so
in one line with exit 1: valid settings, a usable kubeconfig, an answering API server, an
answering Redis, free probe ports. After that, outages are survived rather than fatal: the
informers reconnect and Redis writes are retried. SIGTERM/SIGINT shut down cleanly (the Lease
is released, the embedded worker gets a warm shutdown); losing the Lease exits with 1 so the
Deployment restarts the pod as a standby, as controller-runtime managers do.
"""

from __future__ import annotations

import logging
import os
import signal
from pathlib import Path
from types import FrameType

import click
import redis

from polycrate.cli.root import CliError, operator
from polycrate.errors import PolycrateError
from polycrate.kube import load_api_client
from polycrate.settings import Settings, redact_url
from tasks.queue import KeyQueue
from watcher.informer import WatchTiming
from watcher.kubeapi import ApiUnreachableError, KubeApi, KubeApiError
from watcher.leader import LeaseSettings
from watcher.runner import Watcher, WatcherOptions
from watcher.sources import all_sources

log = logging.getLogger(__name__)


def _connect_redis(settings: Settings) -> redis.Redis:
    client = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=3, socket_timeout=10)
    try:
        client.ping()
    except redis.RedisError as exc:
        client.close()
        raise CliError(f"Redis at {redact_url(settings.redis_url)} is unreachable: {exc}") from None
    return client


def _connect_kubernetes(kubeconfig: str | None) -> KubeApi:
    try:
        # One connection per watch stream plus room for lists, Leases and probes.
        api = KubeApi(load_api_client(kubeconfig, pool_size=len(all_sources()) + 8))
    except PolycrateError as exc:
        raise CliError(str(exc)) from None
    try:
        api.get("/version", timeout=10)
    except (ApiUnreachableError, KubeApiError) as exc:
        raise CliError(f"Kubernetes API at {api.host} is unreachable: {exc}") from None
    return api


@operator.command("run")
@click.option(
    "--kubeconfig",
    type=click.Path(dir_okay=False),
    default=None,
    help="Kubeconfig path (default: $KUBECONFIG, ~/.kube/config, in-cluster).",
)
@click.option(
    "--leader-elect", is_flag=True, help="Elect a leader on a Lease; only the leader enqueues (for HA)."
)
@click.option(
    "--metrics-bind-address", default=":8080", show_default=True, help="Metrics endpoint; 0 disables."
)
@click.option(
    "--health-probe-bind-address",
    default=":8081",
    show_default=True,
    help="/healthz and /readyz; 0 disables.",
)
@click.option(
    "--workers",
    type=click.IntRange(min=0),
    default=2,
    show_default=True,
    help="Concurrency of the embedded worker; 0 runs the watcher alone (workers run as their own pods).",
)
@click.option(
    "--leader-election-namespace", default="polycrate", show_default=True, help="Namespace of the Lease."
)
@click.option(
    "--leader-election-id", default="polycrate-operator", show_default=True, help="Name of the Lease."
)
@click.option(
    "--lease-duration", type=click.FloatRange(min=1), default=15.0, show_default=True, help="Seconds."
)
@click.option(
    "--renew-deadline", type=click.FloatRange(min=0.1), default=10.0, show_default=True, help="Seconds."
)
@click.option(
    "--retry-period", type=click.FloatRange(min=0.05), default=2.0, show_default=True, help="Seconds."
)
@click.option(
    "--watch-timeout",
    type=click.FloatRange(min=1),
    default=300.0,
    show_default=True,
    help="Server-side timeoutSeconds of each watch (jittered up to +20%).",
)
@click.option(
    "--watch-inactivity-timeout",
    type=click.FloatRange(min=0.1),
    default=120.0,
    show_default=True,
    help="Restart a watch that delivered nothing, not even a bookmark, for this many seconds.",
)
def run(
    kubeconfig: str | None,
    leader_elect: bool,
    metrics_bind_address: str,
    health_probe_bind_address: str,
    workers: int,
    leader_election_namespace: str,
    leader_election_id: str,
    lease_duration: float,
    renew_deadline: float,
    retry_period: float,
    watch_timeout: float,
    watch_inactivity_timeout: float,
) -> None:
    """Run the operator: watch the cluster and enqueue keys for the workers."""
    if kubeconfig:
        # The embedded worker and anything else started from here read the same kubeconfig.
        os.environ["POLYCRATE_KUBECONFIG"] = str(Path(kubeconfig).expanduser().resolve())
    try:
        settings = Settings.from_env()
        lease = LeaseSettings(
            namespace=leader_election_namespace,
            name=leader_election_id,
            lease_duration=lease_duration,
            renew_deadline=renew_deadline,
            retry_period=retry_period,
        )
    except PolycrateError as exc:
        raise CliError(str(exc)) from None
    except ValueError as exc:
        raise CliError(f"--retry-period, --renew-deadline, --lease-duration: {exc}") from None

    api = _connect_kubernetes(settings.kubeconfig)
    redis_client = _connect_redis(settings)
    queue = KeyQueue(
        redis_client, prefix=settings.redis_prefix, stale_after=settings.pending_stale_after_seconds
    )
    options = WatcherOptions(
        leader_elect=leader_elect,
        lease=lease,
        metrics_bind_address=metrics_bind_address,
        health_probe_bind_address=health_probe_bind_address,
        resync_period=settings.resync_period_seconds,
        watch=WatchTiming(server_timeout=watch_timeout, inactivity_timeout=watch_inactivity_timeout),
        embedded_workers=workers,
        kubeconfig=settings.kubeconfig,
    )
    watcher = Watcher(
        api,
        queue,
        options,
        broker_ping=redis_client.ping,
        redis_client=redis_client,
        redis_prefix=settings.redis_prefix,
    )

    def request_stop(signum: int, frame: FrameType | None) -> None:
        log.info("received %s; shutting down", signal.Signals(signum).name)
        watcher.request_stop()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    try:
        watcher.start()
    except OSError as exc:
        watcher.stop()
        raise CliError(f"cannot listen for probes or metrics: {exc.strerror or exc}") from None
    except ValueError as exc:
        watcher.stop()
        raise CliError(str(exc)) from None
    log.info(
        "watching %s with Redis at %s (%s)",
        api.host,
        redact_url(settings.redis_url),
        "leader election on" if leader_elect else "single instance",
    )
    outcome = watcher.wait()
    watcher.stop()
    redis_client.close()
    if outcome == "lost-leadership":
        raise CliError(f"lost the leader Lease {lease.namespace}/{lease.name}; exiting to rejoin as standby")
