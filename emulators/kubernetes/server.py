"""`KubeEmulator`: the emulated Kubernetes API served over real HTTP, in a thread or a process.

A threaded Werkzeug server (HTTP/1.1 with persistent connections as kube-apiserver keeps
them, chunked watch streams) serves `KubeApiApp`. The emulator
owns the cluster state, so it survives `restart()`: every open connection is shut down (watch
streams end abruptly, as when an apiserver restarts), the port stops answering for a moment,
and the server comes back on the same port with the same objects and revisions unless
`keep_state=False`. `start()` returns only once `/healthz` answers; `write_kubeconfig()` gives
kubectl and the Python client a context named `polycrate-emulator` (plain HTTP, the admin's
bearer token; `kubeconfig(token=...)` writes one for a ServiceAccount token instead). RBAC is
enforced for ServiceAccount tokens (access.py).
"""

from __future__ import annotations

import http.client
import logging
import os
import socket
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml

from emulators.keepalive import KeepAliveHandler, KeepAliveServer
from emulators.kubernetes.access import AccessControl
from emulators.kubernetes.apiserver import ApiServer
from emulators.kubernetes.app import KubeApiApp
from emulators.kubernetes.resources import ResourceRegistry
from emulators.kubernetes.store import ObjectStore

logger = logging.getLogger("emulators.kubernetes")

CONTEXT_NAME = "polycrate-emulator"


class _QuietHandler(KeepAliveHandler):
    """Logs requests and dropped connections at debug level."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        logger.debug("%s %s -> %s", self.command, self.path, code)

    def log_error(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
        logger.debug("kube emulator connection: " + format, *args)


class _Server(KeepAliveServer):
    def __init__(self, listener: socket.socket, app: KubeApiApp):
        # Werkzeug adopts (duplicates) an already bound socket, so bind errors stay ours.
        super().__init__(listener, app, _QuietHandler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        logger.debug("kube emulator: connection from %s ended with an error", client_address, exc_info=True)


class KubeEmulator:
    """An emulated Kubernetes API server for tests, the sandbox and `polycrate operator kube-emulator`."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        latency_ms: int = 0,
        watch_history: int = 1000,
        bookmark_interval: float = 1.0,
        anonymous_admin: bool = True,
    ):
        self.host = host
        self.port = port
        self.latency_ms = latency_ms
        self.bookmark_interval = bookmark_interval
        self.store = ObjectStore(history_limit=watch_history)
        self.registry = ResourceRegistry()
        self.api = ApiServer(self.store, self.registry)
        self.access = AccessControl(self.store, anonymous_admin=anonymous_admin)
        self._epoch = 0
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._lifecycle = threading.Lock()
        self.app = KubeApiApp(
            self.api,
            latency_seconds=lambda: self.latency_ms / 1000.0,
            epoch=lambda: self._epoch,
            bookmark_interval=lambda: self.bookmark_interval,
            server_address=lambda: f"{self.host}:{self.port}",
            access=self.access,
        )

    # --- serving ----------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._server is not None

    def _listen(self) -> socket.socket:
        listener = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET, socket.SOCK_STREAM)
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((self.host, self.port))
            listener.listen(128)
        except OSError:
            listener.close()
            raise
        return listener

    def _bind(self, retry_for: float) -> _Server:
        deadline = time.monotonic() + retry_for
        while True:
            try:
                listener = self._listen()
            except OSError:
                # After a restart the port may stay busy for a moment; a first start fails fast.
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.05)
                continue
            try:
                return _Server(listener, self.app)
            finally:
                listener.close()

    def _serve(self, retry_for: float = 0.0) -> None:
        server = self._bind(retry_for)
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"kube-emulator-{self.port}",
            daemon=True,
        )
        self._thread.start()
        self._wait_until_answering()

    def _wait_until_answering(self, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            connection = http.client.HTTPConnection(self.host, self.port, timeout=1.0)
            try:
                connection.request("GET", "/healthz")
                if connection.getresponse().status == 200:
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
            finally:
                connection.close()

    def _stop_serving(self) -> None:
        server, thread = self._server, self._thread
        if server is None:
            return
        self._server = self._thread = None
        server.shutdown()
        # Cut connections (idle keep-alive ones too) before waking the watch streams, so they
        # end abruptly (no final chunk), as they do when a real apiserver goes away.
        server.close_connections()
        self._epoch += 1
        with self.store.changed:
            self.store.changed.notify_all()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5.0)

    def start(self) -> KubeEmulator:
        with self._lifecycle:
            if self._server is None:
                # The port of an earlier run (stop/start) may linger briefly; a new one fails fast.
                self._serve(retry_for=5.0 if self._epoch else 0.0)
        return self

    def stop(self) -> None:
        with self._lifecycle:
            self._stop_serving()

    def restart(self, keep_state: bool = True, down_for: float = 0.2) -> None:
        """Drop every connection, refuse connections for `down_for` seconds, serve again on the same port."""
        with self._lifecycle:
            self._stop_serving()
            if not keep_state:
                self.api.reset()
            time.sleep(down_for)
            self._serve(retry_for=5.0)

    def __enter__(self) -> KubeEmulator:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()

    # --- state knobs ------------------------------------------------------------------

    def reset(self) -> None:
        """Drop every object and CRD (the default namespaces come back) and every issued token; keep serving."""
        self.api.reset()
        self.access.reset()

    def expire_history(self) -> None:
        """Compact the history: watches and continue tokens from older revisions get 410."""
        self.store.expire_history()

    # --- clients ----------------------------------------------------------------------

    def kubeconfig(
        self, namespace: str = "default", *, server: str | None = None, token: str | None = None
    ) -> dict[str, Any]:
        """A kubeconfig for this emulator, as the admin unless `token` (e.g. a ServiceAccount's) is given.

        `server` overrides the URL (e.g. a container's host name).
        """
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": CONTEXT_NAME, "cluster": {"server": server or self.url}}],
            "users": [{"name": CONTEXT_NAME, "user": {"token": token or self.access.admin_token}}],
            "contexts": [
                {
                    "name": CONTEXT_NAME,
                    "context": {"cluster": CONTEXT_NAME, "user": CONTEXT_NAME, "namespace": namespace},
                }
            ],
            "current-context": CONTEXT_NAME,
            "preferences": {},
        }

    def write_kubeconfig(
        self, path: str | os.PathLike[str], *, server: str | None = None, token: str | None = None
    ) -> str:
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(yaml.safe_dump(self.kubeconfig(server=server, token=token), sort_keys=False))
        target.chmod(0o600)
        return str(target)
