"""`polycrate operator worker`: a Celery worker consuming the operator's reconcile queues.

Before Celery starts, the command checks what a worker cannot live without and says so in
one line: settings, the queue names, a reachable Redis, a loadable kubeconfig, importable
handler modules. Then it supervises: the Celery worker runs as a child that is restarted when
it exits or stops consuming (tasks.supervisor), the self-healing loop runs next to it
(tasks.healing), and `--health-probe-bind-address` serves /healthz (fails when the worker has
stopped consuming) and /readyz (the worker consumes now). The scaled deployment runs any number
of these (per-key locks make that safe), optionally restricted to some system queues so, say,
Harbor work can be scaled on its own. With `--metrics-bind-address` the reconcile metrics of all
pool processes are served aggregated.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
from pathlib import Path
from types import FrameType

import click
import redis

from cli.options import kubeconfig_option, log_format_option, metrics_token_file_option, use_kubeconfig
from cli.root import CliError, operator
from polycrate.errors import PolycrateError
from polycrate.logformat import LogFormat, use_log_format
from polycrate.settings import Settings, redact_url
from tasks.routing import QUEUES, parse_queue_list
from watcher.probes import ProbeServer, parse_bind_address

log = logging.getLogger(__name__)

_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")

# Reconciles spend their time waiting on the external systems and the API server, so one
# process per core with many threads beats a few forked processes, at a fraction of the memory.
DEFAULT_POOL = "threads"
DEFAULT_THREADS = 32


def _split_bind_address(address: str) -> tuple[str, int]:
    """Split a bind address: `:9090` listens on all interfaces, `127.0.0.1:9090` on one."""
    host, _, port = address.rpartition(":")
    if not port.isdigit():
        raise CliError(f"--metrics-bind-address {address!r} is not [host]:port")
    return host or "0.0.0.0", int(port)


def _check_redis(settings: Settings) -> None:
    client = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=3, socket_timeout=3)
    try:
        client.ping()
    except redis.RedisError as exc:
        raise CliError(f"Redis at {redact_url(settings.redis_url)} is unreachable: {exc}") from None
    finally:
        client.close()


def _check_kubeconfig(settings: Settings) -> None:
    from polycrate.kubeclient.config import load_api_client

    try:
        load_api_client(settings.kubeconfig).close()
    except PolycrateError as exc:
        raise CliError(str(exc)) from None


def _check_handler_plugins() -> None:
    """Load the handler plug-ins now, so a broken one stops the worker instead of every task."""
    from polycrate.kinds import KindTableError
    from tasks.registration import build_registry

    try:
        build_registry()
    except (PolycrateError, KindTableError) as exc:
        raise CliError(str(exc)) from None


def _serve_metrics(address: str, token_file: str | None = None) -> None:
    """Serve /metrics aggregated over the pool processes (prometheus multiprocess mode)."""
    host, port = _split_bind_address(address)
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not directory:
        directory = tempfile.mkdtemp(prefix="polycrate-worker-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
    else:
        # Files of a previous run would be added to this run's counters.
        shutil.rmtree(directory, ignore_errors=True)
        Path(directory).mkdir(parents=True, exist_ok=True)
    from wsgiref.simple_server import make_server

    from prometheus_client import CollectorRegistry, make_wsgi_app, values
    from prometheus_client.exposition import ThreadingWSGIServer, _SilentHandler
    from prometheus_client.multiprocess import MultiProcessCollector

    from polycrate.metrics_auth import MetricsToken

    # Other CLI modules may have imported prometheus_client before the directory was set; the
    # reconcile metrics' values are created later, in the pool processes, with this class.
    values.ValueClass = values.get_value_class()

    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=directory)
    app = make_wsgi_app(registry)
    if token_file:
        token = MetricsToken(token_file)
        metrics_app = app

        def app(environ, start_response):  # type: ignore[no-redef]
            if token.allows(environ.get("HTTP_AUTHORIZATION")):
                return metrics_app(environ, start_response)
            start_response(
                "401 Unauthorized",
                [
                    ("Content-Type", "text/plain; charset=utf-8"),
                    ("WWW-Authenticate", 'Bearer realm="metrics"'),
                ],
            )
            return [b"401 Unauthorized: a bearer token is required\n"]

    server = make_server(host, port, app, ThreadingWSGIServer, handler_class=_SilentHandler)
    threading.Thread(target=server.serve_forever, name="metrics-server", daemon=True).start()
    log.info("serving worker metrics on %s:%d/metrics%s", host, port, " (bearer token)" if token_file else "")


def _use_log_format(log_format: LogFormat) -> None:
    """The format for our loggers now, and for the loggers Celery sets up when the worker starts."""
    from celery import signals

    use_log_format(log_format)

    def format_celery_logger(logger: logging.Logger, **kwargs: object) -> None:
        use_log_format(log_format, logger)

    signals.after_setup_logger.connect(format_celery_logger, weak=False)
    signals.after_setup_task_logger.connect(format_celery_logger, weak=False)


@operator.command("worker")
@click.option(
    "--queues",
    "-Q",
    default=",".join(QUEUES),
    show_default=True,
    help="Comma-separated queues to consume.",
)
@click.option(
    "--concurrency",
    "-c",
    type=click.IntRange(min=1),
    default=None,
    help=f"Threads (--pool threads, default {DEFAULT_THREADS}) or processes (--pool prefork, default: "
    "number of CPUs) running reconciles.",
)
@kubeconfig_option
@click.option("--loglevel", "-l", type=click.Choice(_LOG_LEVELS, case_sensitive=False), default="INFO")
@click.option(
    "--pool",
    type=click.Choice(["prefork", "threads", "solo"]),
    default=DEFAULT_POOL,
    show_default=True,
    help="Celery execution pool.",
)
@click.option("--hostname", "-n", default=None, help="Worker node name (default: polycrate@<host>-<pid>).")
@click.option(
    "--metrics-bind-address",
    default="",
    help="Serve reconcile metrics, e.g. :9090 (default: off).",
)
@log_format_option("json: one object per line (time, level, logger, message, key of the reconcile).")
@metrics_token_file_option
@click.option(
    "--health-probe-bind-address",
    default="0",
    show_default=True,
    help="Serve /healthz (fails when the worker stopped consuming) and /readyz, e.g. :8081; 0 disables.",
)
@click.option("--supervised-child", is_flag=True, hidden=True, help="Internal: run Celery in this process.")
def worker(
    queues: str,
    concurrency: int | None,
    kubeconfig: str | None,
    loglevel: str,
    pool: str,
    hostname: str | None,
    metrics_bind_address: str,
    log_format: LogFormat,
    metrics_token_file: str | None,
    health_probe_bind_address: str,
    supervised_child: bool,
) -> None:
    """Run a Celery worker for the reconcile queues (default: all of them)."""
    _use_log_format(log_format)
    use_kubeconfig(kubeconfig)
    if pool == "threads":
        concurrency = concurrency or DEFAULT_THREADS
        # Every thread may use one SDP's client at once: the pools must hold that many
        # connections, or each request beyond the pool size opens (and drops) its own.
        pool_size = int(os.environ.get("POLYCRATE_HTTP_POOL_SIZE") or 0)
        if pool_size < concurrency:
            os.environ["POLYCRATE_HTTP_POOL_SIZE"] = str(concurrency)
    try:
        settings = Settings.from_env()
        queue_names = parse_queue_list(queues)
    except (PolycrateError, ValueError) as exc:
        raise CliError(str(exc)) from None
    logging.getLogger().setLevel(loglevel.upper())
    worker_name = hostname or f"polycrate@{socket.gethostname()}-{os.getpid()}"
    if supervised_child:
        _run_celery(queue_names, loglevel, pool, worker_name, concurrency, log_format)
        return
    _check_redis(settings)
    _check_kubeconfig(settings)
    _check_handler_plugins()
    try:
        probe_address = parse_bind_address(health_probe_bind_address)
    except ValueError as exc:
        raise CliError(f"--health-probe-bind-address: {exc}") from None
    if metrics_bind_address:
        _serve_metrics(metrics_bind_address, metrics_token_file)
    child = [
        sys.executable, "-m", "cli", "operator", "worker", "--supervised-child", "--log-format", log_format,
        "--queues", ",".join(queue_names), "--loglevel", loglevel, "--pool", pool, "--hostname", worker_name,
    ]  # fmt: skip
    if concurrency is not None:
        child += ["--concurrency", str(concurrency)]
    _supervise(settings, child, probe_address)


def _supervise(settings: Settings, child: list[str], probe_address: tuple[str, int] | None) -> None:
    """Run the Celery worker as a supervised child, the healing loop and the probes until SIGTERM."""
    # Imported only now: the app reads the settings (and the metrics their multiprocess mode)
    # from the environment prepared by the caller.
    from tasks.app import app
    from tasks.context import redis_client_for
    from tasks.healing import HealingLoop
    from tasks.queue import KeyQueue, celery_sender
    from tasks.supervisor import WorkerSupervisor

    heartbeat_dir = Path(tempfile.mkdtemp(prefix="polycrate-worker-"))
    supervisor = WorkerSupervisor(child, heartbeat_dir / "consumer-heartbeat")
    client = redis_client_for(settings)
    queue = KeyQueue(
        client,
        prefix=settings.redis_prefix,
        stale_after=settings.pending_stale_after_seconds,
        sender=celery_sender(app),
    )
    healer = HealingLoop(
        client,
        queue,
        interval=settings.heal_interval_seconds,
        lost_after=settings.lock_ttl_seconds,
        prefix=settings.redis_prefix,
    )
    probes = None
    if probe_address is not None:
        probes = ProbeServer(
            probe_address,
            health_checks={
                "consuming": supervisor.consuming_for_liveness,
                "supervisor": supervisor.supervising,
                "healing-loop": lambda: (healer.alive, "running" if healer.alive else "the loop ended"),
            },
            ready_checks={"consuming": supervisor.consuming_for_readiness},
        )
        try:
            probes.start()
        except OSError as exc:
            raise CliError(f"cannot listen for probes: {exc.strerror or exc}") from None
        log.info("serving worker probes on %s", probes.url)

    stopping = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        log.info("received %s; shutting down", signal.Signals(signum).name)
        stopping.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    log.info(
        "worker consuming %s from %s", child[child.index("--queues") + 1], redact_url(settings.redis_url)
    )
    supervisor.start()
    healer.start()
    try:
        while not stopping.wait(1.0):
            if supervisor.exited.is_set():
                break
    finally:
        healer.stop()
        returncode = supervisor.stop()
        if probes is not None:
            probes.stop()
        client.close()
        shutil.rmtree(heartbeat_dir, ignore_errors=True)
    if returncode not in (0, -signal.SIGTERM):
        raise SystemExit(returncode if returncode > 0 else 1)


def _run_celery(
    queue_names: tuple[str, ...] | list[str],
    loglevel: str,
    pool: str,
    worker_name: str,
    concurrency: int | None,
    log_format: LogFormat,
) -> None:
    """The supervised child: Celery's own worker, in this process."""
    from tasks.app import app

    argv = [
        "worker",
        f"--loglevel={loglevel.upper()}",
        f"--queues={','.join(queue_names)}",
        f"--pool={pool}",
        f"--hostname={worker_name}",
        # Mingle and gossip only slow start-up and chat over Redis; workers share nothing.
        "--without-mingle",
        "--without-gossip",
    ]
    if concurrency is not None:
        argv.append(f"--concurrency={concurrency}")
    if log_format == "json":
        argv.insert(0, "--quiet")  # no banner on stdout: every line is a JSON object
    app.worker_main(argv)
