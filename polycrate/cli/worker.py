"""`polycrate operator worker`: a Celery worker consuming the operator's reconcile queues.

Before Celery takes over, the command checks what a worker cannot live without and says so in
one line: settings, the queue names, a reachable Redis, a loadable kubeconfig, importable
handler modules. The scaled
deployment runs any number of these (per-key locks make that safe), optionally restricted to
some system queues so, say, Harbor work can be scaled on its own. With
`--metrics-bind-address` the reconcile metrics of all pool processes are served aggregated.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import tempfile
import threading
from pathlib import Path

import click
import redis

from polycrate.cli.root import CliError, operator
from polycrate.errors import PolycrateError
from polycrate.logformat import LOG_FORMATS, LogFormat, use_log_format
from polycrate.settings import Settings, redact_url
from tasks.routing import QUEUES, parse_queue_list

log = logging.getLogger(__name__)

_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


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
    from polycrate.kube import load_api_client

    try:
        load_api_client(settings.kubeconfig).close()
    except PolycrateError as exc:
        raise CliError(str(exc)) from None


def _check_handler_modules(settings: Settings) -> None:
    """Import POLYCRATE_HANDLER_MODULES now, so a typo stops the worker instead of every task."""
    from tasks.dispatch import build_registry

    try:
        build_registry(settings.handler_modules)
    except PolycrateError as exc:
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
    help="Pool processes (default: number of CPUs).",
)
@click.option(
    "--kubeconfig",
    type=click.Path(dir_okay=False),
    default=None,
    help="Kubeconfig path (default: $KUBECONFIG, ~/.kube/config, in-cluster).",
)
@click.option("--loglevel", "-l", type=click.Choice(_LOG_LEVELS, case_sensitive=False), default="INFO")
@click.option(
    "--pool",
    type=click.Choice(["prefork", "threads", "solo"]),
    default="prefork",
    show_default=True,
    help="Celery execution pool.",
)
@click.option("--hostname", "-n", default=None, help="Worker node name (default: polycrate@<host>-<pid>).")
@click.option(
    "--metrics-bind-address",
    default="",
    help="Serve reconcile metrics, e.g. :9090 (default: off).",
)
@click.option(
    "--log-format",
    type=click.Choice(LOG_FORMATS),
    default="text",
    show_default=True,
    envvar="POLYCRATE_LOG_FORMAT",
    help="json: one object per line (time, level, logger, message, key of the reconcile).",
)
@click.option(
    "--metrics-token-file",
    type=click.Path(dir_okay=False),
    default=None,
    envvar="POLYCRATE_METRICS_TOKEN_FILE",
    help="Serve /metrics only to requests with 'Authorization: Bearer <this file's content>'.",
)
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
) -> None:
    """Run a Celery worker for the reconcile queues (default: all of them)."""
    _use_log_format(log_format)
    if kubeconfig:
        os.environ["POLYCRATE_KUBECONFIG"] = str(Path(kubeconfig).expanduser().resolve())
    try:
        settings = Settings.from_env()
        queue_names = parse_queue_list(queues)
    except (PolycrateError, ValueError) as exc:
        raise CliError(str(exc)) from None
    _check_redis(settings)
    _check_kubeconfig(settings)
    _check_handler_modules(settings)
    logging.getLogger().setLevel(loglevel.upper())
    if metrics_bind_address:
        _serve_metrics(metrics_bind_address, metrics_token_file)

    # Imported only now: the app reads the settings (and the metrics their multiprocess mode)
    # from the environment prepared above.
    from tasks.app import app

    argv = [
        "worker",
        f"--loglevel={loglevel.upper()}",
        f"--queues={','.join(queue_names)}",
        f"--pool={pool}",
        f"--hostname={hostname or f'polycrate@{socket.gethostname()}-{os.getpid()}'}",
        # Mingle and gossip only slow start-up and chat over Redis; workers share nothing.
        "--without-mingle",
        "--without-gossip",
    ]
    if concurrency is not None:
        argv.append(f"--concurrency={concurrency}")
    if log_format == "json":
        argv.insert(0, "--quiet")  # no banner on stdout: every line is a JSON object
    log.info("worker consuming %s from %s", ",".join(queue_names), redact_url(settings.redis_url))
    app.worker_main(argv)
