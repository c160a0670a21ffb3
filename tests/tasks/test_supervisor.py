"""The worker supervisor with stand-in children: restart on exit, replace when not consuming."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from tasks.supervisor import WorkerSupervisor


def wait_until(condition, timeout: float, message: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, message
        time.sleep(0.05)


def test_a_child_that_exits_is_restarted(tmp_path: Path) -> None:
    supervisor = WorkerSupervisor([sys.executable, "-c", "raise SystemExit(3)"], tmp_path / "beat")
    supervisor.start()
    try:
        wait_until(lambda: supervisor.restarts >= 1, 10, "no restart")
    finally:
        supervisor.stop()


def test_a_child_that_stops_consuming_fails_liveness_and_is_replaced(tmp_path: Path) -> None:
    beat = tmp_path / "beat"
    # Beats for a moment, then hangs: alive, but no longer consuming.
    child = f"import pathlib, time; pathlib.Path({str(beat)!r}).touch(); time.sleep(600)"
    supervisor = WorkerSupervisor([sys.executable, "-c", child], beat, stale_after=1.5, ready_within=1.0)
    supervisor.start()
    try:
        wait_until(lambda: supervisor.consuming_for_readiness()[0], 10, "never ready")
        assert supervisor.consuming_for_liveness()[0]

        wait_until(lambda: not supervisor.consuming_for_liveness()[0], 10, "liveness never failed")
        assert "has not consumed" in supervisor.consuming_for_liveness()[1]
        wait_until(lambda: supervisor.restarts >= 1, 20, "the hung child was not replaced")
    finally:
        supervisor.stop()
