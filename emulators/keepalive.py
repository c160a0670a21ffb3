"""HTTP/1.1 persistent connections for the emulators' Werkzeug servers, as the real servers keep them.

Werkzeug's development server answers every request with `Connection: close` (it cannot tell
where an unread request body ends), so every client call would pay for a new TCP connection,
which no real Keycloak, GitLab, Harbor, Argo CD or kube-apiserver does. `KeepAliveHandler`
serves many requests per connection: it frames each response (Content-Length, or chunked when
the length is unknown, e.g. a watch stream), reads what the application left of the request
body before the next request line, and closes only when the client asks, the request is
HTTP/1.0, the body cannot be skipped, a response broke off midway, or the connection idles
past `IDLE_TIMEOUT`. `KeepAliveServer` keeps the open connections so `close_connections()`
can cut them when an emulator stops (a stopped system must not go on answering idle sockets).
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import traceback
from typing import Any

from werkzeug.exceptions import InternalServerError
from werkzeug.serving import ThreadedWSGIServer, WSGIRequestHandler
from werkzeug.wsgi import LimitedStream

# Idle keep-alive connections are closed after this long, as nginx (75 s) and Go servers do;
# clients' pools notice a closed idle connection before reusing it.
IDLE_TIMEOUT = 60.0
# A request body the application did not read is skipped up to this size; beyond, the
# connection is closed instead (reading it would cost more than a new connection).
MAX_SKIPPED_BODY = 16 * 1024 * 1024

_DROPPED = (ConnectionError, socket.timeout, ssl.SSLEOFError)


class _UnframedBody(Exception):
    """The request body's end cannot be found (e.g. a malformed Content-Length)."""


class KeepAliveHandler(WSGIRequestHandler):
    """A WSGI request handler that keeps HTTP/1.1 connections open between requests."""

    protocol_version = "HTTP/1.1"
    # Responses leave in small writes (headers, then body); Nagle would hold the second
    # until the client's delayed ACK, some 40 ms per request on a persistent connection.
    disable_nagle_algorithm = True
    timeout = IDLE_TIMEOUT

    def setup(self) -> None:
        super().setup()
        track = getattr(self.server, "track", None)
        if track is not None:
            track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            track = getattr(self.server, "track", None)
            if track is not None:
                track(self.connection, False)

    def run_wsgi(self) -> None:
        if self.headers.get("Expect", "").lower().strip(" \t") == "100-continue":
            self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        self.environ = environ = self.make_environ()
        try:
            body = _request_body(environ)
        except _UnframedBody:
            body = None
            self.close_connection = True
        response = _ResponseWriter(self, environ)
        try:
            response.execute(self.server.app)
        except _DROPPED as exc:
            self.close_connection = True
            self.connection_dropped(exc, environ)
            return
        except Exception:
            if self.server.passthrough_errors:
                raise
            self.server.log(
                "error", f"Error on request {self.command} {self.path}:\n{traceback.format_exc()}"
            )
            if response.headers_sent:
                # The client holds a partial answer: only closing tells it so.
                self.close_connection = True
            else:
                try:
                    _ResponseWriter(self, environ).execute(InternalServerError())
                except Exception:  # noqa: BLE001 - the connection is beyond saving
                    self.close_connection = True
        if not self.close_connection and not _skip_rest(body):
            self.close_connection = True


def _request_body(environ: dict[str, Any]) -> Any:
    """The stream the application reads the body from, wrapped so its unread rest can be skipped."""
    if environ.get("wsgi.input_terminated"):
        return environ["wsgi.input"]  # chunked: Werkzeug's DechunkedInput ends at the last chunk
    raw_length = environ.get("CONTENT_LENGTH")
    if not raw_length:
        return None  # an HTTP/1.1 request without Content-Length or chunking has no body
    try:
        length = int(raw_length)
    except ValueError:
        raise _UnframedBody(raw_length) from None
    if length < 0:
        raise _UnframedBody(raw_length)
    stream = LimitedStream(environ["wsgi.input"], length)
    environ["wsgi.input"] = stream
    return stream


def _skip_rest(body: Any) -> bool:
    """Read what the application left of the body; False when the connection cannot be reused."""
    if body is None:
        return True
    skipped = 0
    try:
        while skipped <= MAX_SKIPPED_BODY:
            chunk = body.read(64 * 1024)
            if not chunk:
                return True
            skipped += len(chunk)
    except Exception:  # noqa: BLE001 - a broken or truncated body: the connection is done
        return False
    return False


class _ResponseWriter:
    """start_response/write for one response, framed so the connection stays usable."""

    def __init__(self, handler: KeepAliveHandler, environ: dict[str, Any]) -> None:
        self.handler = handler
        self.environ = environ
        self.status: str | None = None
        self.headers: list[tuple[str, str]] = []
        self.headers_sent = False
        self.chunked = False

    def start_response(self, status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        if exc_info and self.headers_sent:
            raise exc_info[1].with_traceback(exc_info[2])
        self.status, self.headers = status, list(headers)
        return self.write

    def _send_headers(self) -> None:
        handler = self.handler
        code_text, _, message = (self.status or "500").partition(" ")
        code = int(code_text)
        handler.send_response(code, message)
        names = set()
        for name, value in self.headers:
            # send_header notes an application's `Connection: close` in close_connection.
            handler.send_header(name, value)
            names.add(name.lower())
        has_body = not (self.environ["REQUEST_METHOD"] == "HEAD" or 100 <= code < 200 or code in (204, 304))
        if has_body and "content-length" not in names and "transfer-encoding" not in names:
            if handler.request_version >= "HTTP/1.1":
                self.chunked = True
                handler.send_header("Transfer-Encoding", "chunked")
            else:
                handler.close_connection = True  # an HTTP/1.0 body ends with the connection
        if handler.close_connection and "connection" not in names:
            handler.send_header("Connection", "close")
        handler.end_headers()
        self.headers_sent = True

    def write(self, data: bytes) -> None:
        if not self.headers_sent:
            self._send_headers()
        if data:
            if self.chunked:
                data = b"%x\r\n%s\r\n" % (len(data), data)
            self.handler.wfile.write(data)
        self.handler.wfile.flush()

    def execute(self, app: Any) -> None:
        iterable = app(self.environ, self.start_response)
        try:
            for data in iterable:
                self.write(data)
            if not self.headers_sent:
                self.write(b"")
            if self.chunked:
                self.handler.wfile.write(b"0\r\n\r\n")
                self.handler.wfile.flush()
        finally:
            close = getattr(iterable, "close", None)
            if close is not None:
                close()


class KeepAliveServer(ThreadedWSGIServer):
    """A threaded WSGI server (one thread per connection) that can cut its open connections.

    `fd` is an already bound listening socket, which the server duplicates, so binding errors
    stay the caller's to report.
    """

    daemon_threads = True

    def __init__(
        self, listener: socket.socket, app: Any, handler: type[KeepAliveHandler] = KeepAliveHandler
    ) -> None:
        self.open_connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        host, port = listener.getsockname()[:2]
        super().__init__(host, port, app, handler=handler, fd=listener.fileno())

    def track(self, connection: socket.socket, is_open: bool) -> None:
        with self._connections_lock:
            if is_open:
                self.open_connections.add(connection)
            else:
                self.open_connections.discard(connection)

    def close_connections(self) -> None:
        """Shut every open connection down (its thread ends; its client sees the connection drop)."""
        with self._connections_lock:
            connections = list(self.open_connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
