"""The common body of every emulated system: a threaded HTTP/1.1 server with a contract check.

Each request passes the same pipeline: count it, apply injected faults, authenticate like
the real system, validate it against the official API spec (a violation is recorded and
answered 400, so the test that caused it fails), route it to the system's handler, and
check the response against the spec as well. The admin endpoints under `/_emulator/` let a
test or a person inspect state, reset it, read call counts and violations, and change the
fault plan. Subclasses supply routes, authentication, state and the system's error format.
"""

from __future__ import annotations

import abc
import json
import logging
import socket
import threading
from collections import Counter
from typing import Any

from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from emulators.contract import ApiContract
from emulators.faults import FaultPlan
from emulators.keepalive import KeepAliveHandler, KeepAliveServer

log = logging.getLogger(__name__)

ADMIN_PREFIX = "/_emulator"


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    body = "" if data is None else json.dumps(data)
    response = Response(body, status=status, headers=headers or {})
    if data is not None:
        response.content_type = "application/json"
    return response


class _QuietHandler(KeepAliveHandler):
    def log_request(self, code="-", size="-") -> None:  # noqa: ARG002 - werkzeug's signature
        log.debug("%s %s -> %s", self.command, self.path.split("?")[0], code)


def serve_wsgi(
    host: str, port: int, app: Any, handler: type[KeepAliveHandler] = _QuietHandler
) -> KeepAliveServer:
    """A threaded WSGI server with persistent connections bound to (host, port); a busy port
    raises OSError.

    Werkzeug prints and calls sys.exit() when it cannot bind, which would kill a test run or
    turn the CLI's one-line error into two lines; binding the socket here first avoids that.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host, port))
        listener.listen(128)
        return KeepAliveServer(listener, app, handler)
    finally:
        listener.close()  # the server holds its own duplicate of the descriptor


class EmulatorServer(abc.ABC):
    """Base class: subclasses set `system`, `contract_file`, and implement the hooks."""

    system = "emulator"
    contract_file: str | None = None
    # Paths not covered by the official spec (e.g. Keycloak's token endpoint) skip validation.
    unchecked_prefixes: tuple[str, ...] = ()
    _contracts: dict[str, ApiContract] = {}

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, latency_ms: float = 0.0) -> None:
        self.host = host
        self.port = port
        self.faults = FaultPlan(latency_ms=latency_ms)
        self.lock = threading.RLock()
        self.calls: Counter[str] = Counter()
        self.violations: list[dict[str, Any]] = []
        self.url_map = Map(self.routes(), strict_slashes=False, merge_slashes=False)
        self._server: KeepAliveServer | None = None
        self._thread: threading.Thread | None = None
        self.reset_state()

    # -- hooks for subclasses -------------------------------------------------------------

    @abc.abstractmethod
    def routes(self) -> list[Rule]:
        """Werkzeug rules whose endpoint is the name of a method `handler(request, **values)`."""

    @abc.abstractmethod
    def reset_state(self) -> None:
        """Forget everything the system holds (called at start and by /_emulator/reset)."""

    @abc.abstractmethod
    def snapshot(self) -> dict[str, Any]:
        """The whole state as JSON, for /_emulator/state."""

    def authenticate(self, request: Request) -> Response | None:
        """None when the request carries valid credentials, else the system's 401 answer."""
        return None

    def error(self, status: int, message: str) -> Response:
        """An error answer in the system's own format."""
        return json_response({"error": message}, status)

    # -- contract -------------------------------------------------------------------------

    @property
    def contract(self) -> ApiContract | None:
        if not self.contract_file:
            return None
        cached = EmulatorServer._contracts.get(self.contract_file)
        if cached is None:
            cached = EmulatorServer._contracts[self.contract_file] = ApiContract.from_file(self.contract_file)
        return cached

    def _checked(self, path: str) -> bool:
        return self.contract is not None and not any(path.startswith(p) for p in self.unchecked_prefixes)

    def _record_violation(self, kind: str, request: Request, problems: list[str]) -> None:
        with self.lock:
            self.violations.append(
                {"kind": kind, "method": request.method, "path": request.path, "problems": problems}
            )
        log.warning(
            "%s %s violation: %s %s: %s", self.system, kind, request.method, request.path, "; ".join(problems)
        )

    # -- lifecycle ------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> EmulatorServer:
        self._server = serve_wsgi(self.host, self.port, self.wsgi_app)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, name=f"{self.system}-emulator", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            # Idle keep-alive connections would otherwise go on being answered.
            self._server.close_connections()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def reset(self) -> None:
        with self.lock:
            self.reset_state()
            self.calls.clear()
            self.violations.clear()
            self.faults = FaultPlan()

    def take_violations(self) -> list[dict[str, Any]]:
        """Return and clear the recorded violations (for a test that provokes one on purpose)."""
        with self.lock:
            taken = list(self.violations)
            self.violations.clear()
        return taken

    def set_faults(self, **settings: Any) -> None:
        self.faults.update(settings)

    # -- the pipeline -----------------------------------------------------------------------

    def wsgi_app(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        response = self._admin(request) if request.path.startswith(ADMIN_PREFIX) else self._serve(request)
        return response(environ, start_response)

    def _operation_name(self, request: Request) -> str:
        if self.contract is not None:
            op, _ = self.contract.match(request.method, request.path)
            if op is not None:
                return f"{op.method} {self.contract.base_path}{op.template}"
        return f"{request.method} {request.path}"

    def _serve(self, request: Request) -> Response:
        with self.lock:
            self.calls[self._operation_name(request)] += 1
        fault = self.faults.decide(request.path)
        if fault.delay:
            threading.Event().wait(fault.delay)
        if fault.status is not None:
            response = self.error(fault.status, fault.message)
            if fault.retry_after is not None:
                response.headers["Retry-After"] = str(int(round(fault.retry_after)))
            return response
        denied = self.authenticate(request)
        if denied is not None:
            return denied
        body, has_body, parse_error = self._body(request)
        if parse_error:
            return self.error(400, parse_error)
        if self._checked(request.path):
            problems = self.contract.validate_request(  # type: ignore[union-attr]
                request.method,
                request.path,
                query={k: request.args.getlist(k) for k in request.args},
                headers=dict(request.headers),
                body=body,
                has_body=has_body,
            )
            if problems:
                self._record_violation("request", request, problems)
                return self.error(400, f"request violates the {self.system} API spec: {'; '.join(problems)}")
        try:
            endpoint, values = self.url_map.bind_to_environ(request.environ).match()
            response = getattr(self, endpoint)(request, **values)
        except NotFound:
            response = self.error(404, f"{request.path} not found")
        except MethodNotAllowed:
            response = self.error(405, f"{request.method} not allowed on {request.path}")
        except HTTPException as exc:
            response = self.error(exc.code or 500, exc.description or "error")
        if self._checked(request.path) and response.status_code < 500:
            self._check_response(request, response)
        return response

    @staticmethod
    def _body(request: Request) -> tuple[Any, bool, str | None]:
        raw = request.get_data(cache=True)
        if not raw:
            return None, False, None
        if request.mimetype in ("application/x-www-form-urlencoded", "multipart/form-data"):
            return request.form.to_dict(), True, None
        try:
            return json.loads(raw), True, None
        except ValueError:
            return None, True, "request body is not valid JSON"

    def _check_response(self, request: Request, response: Response) -> None:
        has_body = bool(response.get_data()) and response.mimetype == "application/json"
        body = json.loads(response.get_data()) if has_body else None
        problems = self.contract.validate_response(  # type: ignore[union-attr]
            request.method, request.path, response.status_code, body, has_body=has_body
        )
        if problems:
            self._record_violation("response", request, problems)

    def _admin(self, request: Request) -> Response:
        action = request.path[len(ADMIN_PREFIX) :].strip("/")
        if action == "state" and request.method == "GET":
            with self.lock:
                return json_response(self.snapshot())
        if action == "reset" and request.method == "POST":
            self.reset()
            return json_response({"reset": True})
        if action == "calls":
            if request.method == "DELETE":
                with self.lock:
                    self.calls.clear()
            with self.lock:
                return json_response(dict(self.calls))
        if action == "violations":
            with self.lock:
                if request.method == "DELETE":
                    self.violations.clear()
                return json_response(list(self.violations))
        if action == "faults":
            if request.method in ("POST", "PUT"):
                try:
                    self.faults.update(request.get_json(force=True) or {})
                except (ValueError, TypeError) as exc:
                    return json_response({"error": str(exc)}, 400)
            return json_response(self.faults.as_dict())
        return json_response({"error": f"unknown admin endpoint {request.path}"}, 404)
