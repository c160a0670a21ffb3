"""`polycrate operator run`: the watcher, and (unless `--workers 0`) an embedded worker.

Before anything starts, the command checks what the watcher cannot live without and says so
in one line with exit 1: valid settings, a usable kubeconfig, an answering API server, an
answering Redis, free probe ports. Without REDIS_URL it needs no Redis of its own: it starts
an embedded `redis-server` child (loopback only, random password, gone with the operator) and
says so in one line; the scaled deployment sets REDIS_URL and shares one Redis. After that,
outages are survived rather than fatal: the informers reconnect and Redis writes are retried.
SIGTERM/SIGINT shut down cleanly (the Lease is released, the embedded worker gets a warm
shutdown, the embedded Redis stops last); losing the Lease exits with 1 so the Deployment
restarts the pod as a standby, as controller-runtime managers do.
"""

from __future__ import annotations

import logging
import os
import signal
from contextlib import ExitStack
from types import FrameType

import click
import redis

from cli.options import kubeconfig_option, log_format_option, metrics_token_file_option, use_kubeconfig
from cli.root import CliError, operator
from polycrate.errors import PolycrateError
from polycrate.kubeclient.api import KubeClient
from polycrate.kubeclient.config import load_api_client
from polycrate.kubeclient.errors import KubeError
from polycrate.logformat import LogFormat, use_log_format
from polycrate.redis_server import LocalRedis, RedisServerError
from polycrate.settings import ENVIRONMENT_VARIABLES, Settings, redact_url
from tasks.app import app as celery_app
from tasks.app import configure as configure_celery
from tasks.queue import KeyQueue
from tasks.queue_depth import QueueDepthCollector
from watcher.informer import WatchTiming
from watcher.leader import LeaseSettings
from watcher.metrics import WatcherMetrics
from watcher.runner import Watcher, WatcherOptions
from watcher.sources import all_sources, in_namespaces

log = logging.getLogger(__name__)


def _connect_redis(settings: Settings) -> redis.Redis:
    client = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=3, socket_timeout=10)
    try:
        client.ping()
    except redis.RedisError as exc:
        client.close()
        raise CliError(f"Redis at {redact_url(settings.redis_url)} is unreachable: {exc}") from None
    return client


REDIS_URL_VARIABLE = ENVIRONMENT_VARIABLES["redis_url"]


def _embedded_redis(settings: Settings, stack: ExitStack) -> Settings:
    """Start a private redis-server and return the settings pointing at it.

    Its URL (with the password) is also put into this process's environment, so the embedded
    worker, started as a child, reads the same Redis.
    """
    try:
        server = LocalRedis().start()
    except RedisServerError as exc:
        raise CliError(
            f"{REDIS_URL_VARIABLE} is not set and no embedded Redis could be started: {exc}"
        ) from None
    stack.callback(server.stop)
    os.environ[REDIS_URL_VARIABLE] = server.url
    settings = settings.model_copy(update={"redis_url": server.url})
    configure_celery(celery_app, settings)  # this process publishes the keys' tasks there too
    log.info(
        "%s is not set: started an embedded redis-server (pid %s) on 127.0.0.1:%d, password-protected, "
        "stopped with the operator",
        REDIS_URL_VARIABLE,
        server.pid,
        server.port,
    )
    return settings


def _connect_kubernetes(kubeconfig: str | None, watches: int) -> KubeClient:
    try:
        # One connection per watch stream plus room for lists, Leases and probes.
        api = KubeClient(load_api_client(kubeconfig, pool_maxsize=watches + 8))
    except PolycrateError as exc:
        raise CliError(str(exc)) from None
    try:
        api.get("/version", timeout=10)
    except KubeError as exc:
        raise CliError(f"Kubernetes API at {api.host} is unreachable: {exc}") from None
    return api


@operator.command("run")
@kubeconfig_option
@click.option(
    "--namespace",
    "namespaces",
    multiple=True,
    metavar="NS",
    help="Serve only this namespace (repeatable; default: all, or $POLYCRATE_NAMESPACES). Needs the RBAC "
    "of `polycrate operator rbac --namespace NS`; Nodes and Artifacts are still watched cluster-wide.",
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
    default=32,
    show_default=True,
    help="Threads of the embedded worker; 0 runs the watcher alone (workers run as their own pods).",
)
@click.option(
    "--leader-election-namespace",
    default=None,
    help="Namespace of the Lease (default: the operator's own, see POD_NAMESPACE).",
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
@log_format_option(
    "json: one object per line (time, level, logger, message, key); also for the embedded worker."
)
@metrics_token_file_option
def run(
    kubeconfig: str | None,
    namespaces: tuple[str, ...],
    leader_elect: bool,
    metrics_bind_address: str,
    health_probe_bind_address: str,
    workers: int,
    leader_election_namespace: str | None,
    leader_election_id: str,
    lease_duration: float,
    renew_deadline: float,
    retry_period: float,
    watch_timeout: float,
    watch_inactivity_timeout: float,
    log_format: LogFormat,
    metrics_token_file: str | None,
) -> None:
    """Run the operator: watch the cluster and enqueue keys for the workers."""
    use_log_format(log_format)
    os.environ["POLYCRATE_LOG_FORMAT"] = log_format  # the embedded worker logs the same way
    use_kubeconfig(kubeconfig)  # the embedded worker reads the same cluster
    if namespaces:
        os.environ["POLYCRATE_NAMESPACES"] = ",".join(namespaces)  # the embedded worker serves the same
    try:
        settings = Settings.from_env()
        lease = LeaseSettings(
            namespace=leader_election_namespace or settings.operator_namespace,
            name=leader_election_id,
            lease_duration=lease_duration,
            renew_deadline=renew_deadline,
            retry_period=retry_period,
        )
    except PolycrateError as exc:
        raise CliError(str(exc)) from None
    except ValueError as exc:
        raise CliError(f"--retry-period, --renew-deadline, --lease-duration: {exc}") from None

    sources = in_namespaces(all_sources(), settings.namespaces)
    api = _connect_kubernetes(settings.kubeconfig, len(sources))
    with ExitStack() as stack:  # what was started here stops in reverse order, also on errors
        if not os.environ.get(REDIS_URL_VARIABLE):
            settings = _embedded_redis(settings, stack)
        redis_client = _connect_redis(settings)
        stack.callback(redis_client.close)
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
            sources=sources,
            metrics_token_file=metrics_token_file,
        )
        metrics = WatcherMetrics()
        # Queue depth is served here, once per watcher, rather than by every worker replica.
        metrics.registry.register(QueueDepthCollector(redis_client, prefix=settings.redis_prefix))
        watcher = Watcher(
            api,
            queue,
            options,
            metrics=metrics,
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
            "watching %s (%s) with Redis at %s (%s)",
            api.host,
            f"namespaces {', '.join(settings.namespaces)}" if settings.namespaces else "all namespaces",
            redact_url(settings.redis_url),
            "leader election on" if leader_elect else "single instance",
        )
        outcome = watcher.wait()
        watcher.stop()
    if outcome == "lost-leadership":
        raise CliError(f"lost the leader Lease {lease.namespace}/{lease.name}; exiting to rejoin as standby")
