"""A loop on a daemon thread: started once, stopped on request, and honest about its health.

The background loops (the watcher's leader election, resync and Redis-wipe detection, the
worker's self-healing loop) share this lifecycle. The guarantee: `healthy` is False only when the
loop's thread died without being asked to stop, so the liveness probe restarts a process whose
loop crashed, and never one that is merely shutting down or was never started.
"""

from __future__ import annotations

import threading


class DaemonLoop:
    """Runs `_run` on a daemon thread named `thread_name`; `_run` returns once `_stop` is set."""

    thread_name = "loop"

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def healthy(self) -> bool:
        return self._thread is None or self._thread.is_alive() or self._stop.is_set()

    def _run(self) -> None:
        raise NotImplementedError
