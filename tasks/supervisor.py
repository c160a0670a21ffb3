"""The worker's supervisor: the Celery worker survives broker loss, or is restarted at once.

`polycrate operator worker` does not run Celery in its own process; it starts the Celery worker
as a child and watches it. Celery and kombu have failure modes on broker loss that end the
worker process (an AttributeError inside `restore_unacked` while reconnecting) or leave it alive
but no longer consuming. The supervisor restarts a child that exited (with backoff), and one
whose consumer heartbeat (tasks.heartbeat) is older than `stale_after` seconds, so a worker pod
goes back to consuming after a Redis restart without anyone restarting it from outside. The
same heartbeat answers the liveness probe: a worker that has stopped consuming fails it.
SIGTERM is passed on to the child (Celery's warm shutdown lets running reconciles finish); a
supervisor that dies without cleaning up (SIGKILL) takes the child with it (parent-death signal),
so no orphaned Celery worker goes on consuming unsupervised.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from polycrate.parent_death import die_with_parent
from tasks.heartbeat import HEARTBEAT_FILE_VARIABLE, heartbeat_age

log = logging.getLogger(__name__)

CheckResult = tuple[bool, str]


class WorkerSupervisor:
    """Runs `command` (the Celery worker) as a child process and keeps it consuming."""

    def __init__(
        self,
        command: Sequence[str],
        heartbeat_path: Path,
        *,
        env: Mapping[str, str] | None = None,
        stale_after: float = 60.0,
        ready_within: float = 15.0,
        stop_grace_period: float | None = None,
    ) -> None:
        self._command = list(command)
        self.heartbeat_path = heartbeat_path
        self._env = {**(env if env is not None else os.environ), HEARTBEAT_FILE_VARIABLE: str(heartbeat_path)}
        self.stale_after = stale_after
        self.ready_within = ready_within
        self._grace = stop_grace_period
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None
        self._started_at = 0.0
        self._thread: threading.Thread | None = None
        self.exited = threading.Event()
        self.restarts = 0

    @property
    def pid(self) -> int | None:
        with self._lock:
            return None if self._process is None else self._process.pid

    def start(self) -> None:
        self._thread = threading.Thread(target=self._supervise, name="worker-supervisor", daemon=True)
        self._thread.start()

    def stop(self) -> int:
        """Warm shutdown of the child (SIGTERM), SIGKILL after the grace period if one is set."""
        self._stop.set()
        with self._lock:
            process = self._process
        returncode = 0
        if process is not None:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
            try:
                returncode = process.wait(self._grace)
            except subprocess.TimeoutExpired:
                log.warning("Celery worker did not stop within %.0f s; killing it", self._grace)
                process.kill()
                returncode = process.wait()
        if self._thread is not None:
            self._thread.join(5)
        return returncode

    # -- probes ------------------------------------------------------------------------------

    def consuming_for_liveness(self) -> CheckResult:
        """Fails once the worker has not consumed for `stale_after` seconds."""
        age = self._silence()
        if age is None:
            return True, "starting"
        if age > self.stale_after:
            return False, f"the worker has not consumed for {age:.0f}s"
        return True, f"consumed {age:.0f}s ago"

    def consuming_for_readiness(self) -> CheckResult:
        age = self._silence()
        if age is None or age > self.ready_within:
            return False, "the worker is not consuming (starting, or the broker is away)"
        return True, f"consumed {age:.0f}s ago"

    def supervising(self) -> CheckResult:
        alive = self._thread is not None and (self._thread.is_alive() or self._stop.is_set())
        return alive, "supervising" if alive else "the supervisor thread ended"

    def _silence(self) -> float | None:
        """Seconds since the child's consumer last beat, counted from the child's start if it has not
        beaten yet; None while a fresh child is still within its start-up allowance."""
        now = time.time()
        with self._lock:
            started_at = self._started_at
        age = heartbeat_age(self.heartbeat_path, now=now)
        if age is None or now - age < started_at:  # no beat from the current child yet
            since_start = now - started_at
            return None if since_start <= self.stale_after else since_start
        return age

    # -- supervision -------------------------------------------------------------------------

    def _spawn(self) -> subprocess.Popen[bytes]:
        # Same process group and output as the supervisor: a pod's SIGKILL and its log cover both.
        # A SIGKILL of the supervisor alone must not orphan the child, still consuming unsupervised:
        # it gets SIGTERM (Celery's warm shutdown) when this thread's process dies.
        process = subprocess.Popen(
            self._command,
            env=self._env,
            stdin=subprocess.DEVNULL,
            preexec_fn=die_with_parent(),  # noqa: PLW1509
        )
        log.info("started Celery worker (pid %d)", process.pid)
        return process

    def _supervise(self) -> None:
        delay = 1.0
        try:
            while not self._stop.is_set():
                with self._lock:
                    if self._stop.is_set():
                        return
                    self._process = process = self._spawn()
                    self._started_at = time.time()
                returncode = self._wait_while_consuming(process)
                if time.time() - self._started_at > 60:
                    delay = 1.0  # it ran fine for a while: this is a new failure, not a crash loop
                # A stop requested together with the child's own exit (Ctrl-C reaches the whole
                # process group) is not a crash: give it the backoff delay to arrive.
                if self._stop.wait(delay):
                    return
                self.restarts += 1
                log.error("Celery worker ended (%s); restarted it after %.0f s", returncode, delay)
                delay = min(delay * 2, 30.0)
        finally:
            self.exited.set()

    def _wait_while_consuming(self, process: subprocess.Popen[bytes]) -> str:
        while True:
            with contextlib.suppress(subprocess.TimeoutExpired):
                return f"exit code {process.wait(1.0)}"
            if self._stop.is_set():
                # stop() has signalled the child. The child's parent-death signal fires when the
                # thread that started it (this one) ends, so outlive its warm shutdown.
                return f"stopped (exit code {process.wait()})"
            silence = self._silence()
            if silence is not None and silence > self.stale_after:
                log.error("Celery worker has not consumed for %.0f s; replacing it", silence)
                process.send_signal(signal.SIGQUIT)  # Celery's cold shutdown: it is stuck anyway
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
                return "stopped consuming"
