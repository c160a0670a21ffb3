"""The consumer heartbeat: proof, from outside the Celery process, that a worker still consumes.

A Celery worker can stay alive without consuming: after a broker outage it may hang in
reconnection, or its consumer may have stopped after an error it could not recover from (kombu
on broker loss has had several). The process looks healthy; only its queues grow. So while the
consumer runs, a step on its event loop touches a file every few seconds; the loop does not
turn while the consumer is disconnected or stuck, so the file's age is how long the worker has
not been consuming. The worker's supervisor (tasks.supervisor) reads it for the liveness probe
and restarts a worker that stopped consuming. Without POLYCRATE_WORKER_HEARTBEAT_FILE nothing is
written.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from celery import bootsteps

HEARTBEAT_FILE_VARIABLE = "POLYCRATE_WORKER_HEARTBEAT_FILE"
HEARTBEAT_INTERVAL_SECONDS = 2.0


def heartbeat_age(path: Path, *, now: float) -> float | None:
    """Seconds since the consumer last beat, None if it never did."""
    try:
        return max(0.0, now - path.stat().st_mtime)
    except FileNotFoundError:
        return None


class ConsumerHeartbeat(bootsteps.StartStopStep):
    """Touches the heartbeat file from the consumer's event loop while it consumes."""

    requires = {"celery.worker.consumer.tasks:Tasks"}

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self.path = (
            Path(os.environ[HEARTBEAT_FILE_VARIABLE]) if os.environ.get(HEARTBEAT_FILE_VARIABLE) else None
        )
        self._timer_entry: Any = None

    def start(self, parent: Any) -> None:
        if self.path is None:
            return
        self._beat()
        self._timer_entry = parent.timer.call_repeatedly(HEARTBEAT_INTERVAL_SECONDS, self._beat, priority=10)

    def stop(self, parent: Any) -> None:
        if self._timer_entry is not None:
            self._timer_entry.cancel()
            self._timer_entry = None

    shutdown = stop

    def _beat(self) -> None:
        if self.path is not None:
            self.path.touch()
