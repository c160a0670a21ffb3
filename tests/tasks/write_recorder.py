"""An external system for tests that only records the writes it receives, and when.

Each PUT is recorded with its arrival time and JSON body (the test handler sends the version it
reconciled and its pid); `/status` writes are kept apart. Tests read `writes()` to check that
two runs of one key never wrote at the same time and that the last write is the last version.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Write:
    at: float
    path: str
    body: dict[str, Any]


class WriteRecorder:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._writes: list[Write] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_PUT(self) -> None:  # noqa: N802 - http.server's naming
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                with recorder._lock:
                    recorder._writes.append(Write(time.time(), self.path, body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - inherited name
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/state"

    def __enter__(self) -> WriteRecorder:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def writes(self) -> list[Write]:
        with self._lock:
            return list(self._writes)

    def state_writes(self) -> list[Write]:
        return [write for write in self.writes() if write.path == "/state"]

    def status_writes(self) -> list[Write]:
        return [write for write in self.writes() if write.path == "/state/status"]
