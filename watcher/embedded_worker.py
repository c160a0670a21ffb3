"""The worker that plain `polycrate operator run` starts next to the watcher.

A small installation or a laptop should need one command, so `run` also starts
`polycrate operator worker` as a child process (a Celery worker belongs in its own process:
its pool forks and handles signals). The watcher supervises it: a worker that dies is
restarted with backoff and logged, and stopping the watcher stops the worker with SIGTERM
(Celery's warm shutdown lets running reconciles finish), then SIGKILL after a grace period;
an unfinished reconcile is redelivered because tasks are acknowledged late. The scaled
deployment runs `run --workers 0` and worker pods of its own.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading

log = logging.getLogger(__name__)


class EmbeddedWorker:
    """A supervised `polycrate operator worker` child process."""

    def __init__(
        self,
        concurrency: int,
        *,
        kubeconfig: str | None = None,
        stop_grace_period: float = 30.0,
        env: dict[str, str] | None = None,
    ):
        if concurrency < 1:
            raise ValueError("an embedded worker needs concurrency >= 1")
        self._command = [
            sys.executable,
            "-m",
            "cli",
            "operator",
            "worker",
            "--concurrency",
            str(concurrency),
        ]
        if kubeconfig:
            self._command += ["--kubeconfig", kubeconfig]
        self._env = {**os.environ, **(env or {})}
        self._grace = stop_grace_period
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None
        self._thread: threading.Thread | None = None
        self.restarts = 0

    @property
    def pid(self) -> int | None:
        with self._lock:
            return None if self._process is None else self._process.pid

    @property
    def healthy(self) -> bool:
        return self._thread is not None and (self._thread.is_alive() or self._stop.is_set())

    def start(self) -> None:
        self._thread = threading.Thread(target=self._supervise, name="embedded-worker", daemon=True)
        self._thread.start()

    def _spawn(self) -> subprocess.Popen[bytes]:
        # The child shares our stderr so its log lines appear in the operator's log.
        process = subprocess.Popen(self._command, env=self._env, stdin=subprocess.DEVNULL)
        log.info("started embedded worker (pid %d): %s", process.pid, " ".join(self._command[1:]))
        return process

    def _supervise(self) -> None:
        delay = 1.0
        while not self._stop.is_set():
            with self._lock:
                if self._stop.is_set():
                    return
                self._process = process = self._spawn()
            returncode = process.wait()
            if self._stop.is_set():
                return
            self.restarts += 1
            log.error("embedded worker exited with code %d; restarting in %.0f s", returncode, delay)
            if self._stop.wait(delay):
                return
            delay = min(delay * 2, 60.0)

    def stop(self) -> None:
        """Warm shutdown (SIGTERM), then SIGKILL after the grace period."""
        self._stop.set()
        with self._lock:
            process = self._process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(self._grace)
            except subprocess.TimeoutExpired:
                log.warning("embedded worker did not stop within %.0f s; killing it", self._grace)
                process.kill()
                process.wait()
        if self._thread is not None:
            self._thread.join(5)
