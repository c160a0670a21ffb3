"""Stopping a child process: SIGTERM first, SIGKILL when it does not end within its grace time.

A child (redis-server, Flower, the operator the sandbox starts) gets the chance to shut down
cleanly, but one that hangs never keeps its parent from exiting or leaves a port taken.
"""

from __future__ import annotations

import subprocess


def stop_gracefully(process: subprocess.Popen[bytes] | None, grace: float) -> None:
    """End `process` (if it still runs): SIGTERM, then SIGKILL after `grace` seconds; reaped either way."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
