"""HTTP endpoints for Kubernetes probes and Prometheus: /healthz, /readyz, /metrics.

/healthz answers 200 while every loop of the watcher is alive (a crashed informer thread or
leader loop turns it 503, so the kubelet restarts the pod). /readyz answers 200 once the
initial lists of all installed sources completed and Redis takes keys, or while the process is
a standby waiting for the Lease (it is ready to take over). Both list their checks in the body,
`[+]name ok` / `[-]name failed: why`, as the API server does. /metrics renders the watcher's
own registry, behind a bearer token when one is configured (polycrate.metrics_auth). Bind
addresses use controller-runtime's form: ":8081" (all interfaces),
"127.0.0.1:0" (ephemeral port, see `.port`), "0" to disable.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from polycrate.metrics_auth import MetricsToken

log = logging.getLogger(__name__)

CheckResult = tuple[bool, str]
Check = Callable[[], CheckResult]


def parse_bind_address(address: str) -> tuple[str, int] | None:
    """ ":8080" → ("", 8080); "127.0.0.1:0" → ("127.0.0.1", 0); "0" or "" → None (disabled)."""
    address = address.strip()
    if address in ("", "0"):
        return None
    host, separator, port = address.rpartition(":")
    if not separator or not port.isdigit():
        raise ValueError(f"bind address {address!r} is not of the form [host]:port (e.g. :8081)")
    return host.strip("[]"), int(port)


class ProbeServer:
    """One threaded HTTP server serving any of the three endpoints."""

    def __init__(
        self,
        address: tuple[str, int],
        *,
        health_checks: dict[str, Check] | None = None,
        ready_checks: dict[str, Check] | None = None,
        registry: CollectorRegistry | None = None,
        metrics_token: MetricsToken | None = None,
    ):
        self._metrics_token = metrics_token
        self._health_checks = health_checks
        self._ready_checks = ready_checks
        self._registry = registry
        self._server = ThreadingHTTPServer(address, self._handler_class())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        host = str(self._server.server_address[0])
        return f"http://{'127.0.0.1' if host in ('', '0.0.0.0') else host}:{self.port}"

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="probe-server",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _respond(self, path: str, authorization: str | None = None) -> tuple[int, str, bytes]:
        if path == "/metrics" and self._registry is not None:
            if self._metrics_token is not None and not self._metrics_token.allows(authorization):
                return 401, "text/plain; charset=utf-8", b"401 Unauthorized: a bearer token is required\n"
            return 200, CONTENT_TYPE_LATEST, generate_latest(self._registry)
        checks = {"/healthz": self._health_checks, "/readyz": self._ready_checks}.get(path)
        if checks is None:
            return 404, "text/plain; charset=utf-8", b"404 page not found\n"
        lines, all_ok = [], True
        for name, check in checks.items():
            try:
                ok, detail = check()
            except Exception as exc:  # a failing check must answer "failed", not kill the probe
                ok, detail = False, f"{type(exc).__name__}: {exc}"
            all_ok = all_ok and ok
            lines.append(
                f"[+]{name} ok" + (f": {detail}" if detail else "") if ok else f"[-]{name} failed: {detail}"
            )
        lines.append(f"{path[1:]} check {'passed' if all_ok else 'failed'}")
        return (200 if all_ok else 503), "text/plain; charset=utf-8", ("\n".join(lines) + "\n").encode()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        respond = self._respond

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                status, content_type, body = respond(
                    self.path.split("?", 1)[0], self.headers.get("Authorization")
                )
                self.send_response(status)
                if status == 401:
                    self.send_header("WWW-Authenticate", 'Bearer realm="metrics"')
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - inherited name
                log.debug("probe %s", format % args)

        return Handler
