"""The embedded worker of plain `run`: a supervised `polycrate operator worker` child process."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import pytest

from tasks.heartbeat import HEARTBEAT_FILE_VARIABLE
from tests.cli.operator_process import free_port
from tests.watcher.kube_objects import wait_until
from watcher.embedded_worker import EmbeddedWorker


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie has exited; it only waits to be reaped.
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().split()[2] != "Z"


def descendants(pid: int) -> list[str]:
    """Every process below `pid` (children are listed per thread, so every thread is read)."""
    found: list[str] = []
    parents = [str(pid)]
    while parents:
        for children in Path(f"/proc/{parents.pop()}/task").glob("*/children"):
            try:
                pids = children.read_text().split()
            except FileNotFoundError:
                continue
            found += pids
            parents += pids
    return found


def consumer_heartbeat(pid: int) -> bool:
    """Whether the Celery child below the worker command `pid` has written its consumer heartbeat."""
    for child in descendants(pid):
        try:
            environ = Path(f"/proc/{child}/environ").read_bytes().split(b"\0")
        except (FileNotFoundError, ProcessLookupError):
            continue
        for variable in environ:
            name, _, value = variable.partition(b"=")
            if name == HEARTBEAT_FILE_VARIABLE.encode() and Path(value.decode()).exists():
                return True
    return False


@pytest.mark.slow
def test_a_worker_that_dies_is_restarted_and_logged(
    caplog: pytest.LogCaptureFixture, kubeconfig: str
) -> None:
    caplog.set_level(logging.ERROR, logger="watcher.embedded_worker")
    # No Redis on this port: the worker exits at start-up, as it would after a crash.
    worker = EmbeddedWorker(
        1, kubeconfig=kubeconfig, env={"REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}, stop_grace_period=5
    )
    worker.start()
    try:
        wait_until(lambda: worker.restarts >= 1, timeout=20, message="a restart")
        assert worker.healthy
        assert "embedded worker exited with code 1; restarting" in caplog.text
    finally:
        worker.stop()


@pytest.mark.slow
def test_stop_ends_the_worker_with_a_warm_shutdown(redis_url: str, kubeconfig: str) -> None:
    worker = EmbeddedWorker(1, kubeconfig=kubeconfig, env={"REDIS_URL": redis_url}, stop_grace_period=15)
    worker.start()
    try:
        pid = wait_until(lambda: worker.pid, message="the worker process")
        # Celery is up once its consumer beats (the file the worker command gave its Celery child).
        wait_until(lambda: consumer_heartbeat(pid), timeout=60, message="the Celery consumer")
    except AssertionError:
        worker.stop()  # leave no worker behind
        raise

    started = time.monotonic()
    worker.stop()

    assert not process_alive(pid)
    assert time.monotonic() - started < 15, "SIGTERM, not the SIGKILL fallback, ended it"
    assert worker.restarts == 0
