"""`polycrate operator run` as a real process for tests: start it, read its probes, kill it.

Each process gets free ports for probes and metrics, logs to a file in the test's tmp dir,
and runs in its own session so SIGKILL takes its embedded worker down with it, as a dying pod
would. Tests read its state from the outside: /readyz, /metrics and the cluster.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import requests

REPOSITORY_ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class OperatorProcess:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    probe_url: str
    metrics_url: str

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def _get(self, url: str) -> requests.Response | None:
        try:
            return requests.get(url, timeout=2)
        except requests.RequestException:
            return None

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n{self.log()}")
            response = self._get(self.probe_url + "/readyz")
            if response is not None and response.status_code == 200:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name} not ready after {timeout} s:\n{self.log()}")
            time.sleep(0.05)

    def metric(self, sample: str) -> float:
        """Value of one sample line, e.g. 'polycrate_watcher_is_leader'; 0 when absent."""
        response = self._get(self.metrics_url + "/metrics")
        if response is None:
            return 0.0
        match = re.search(rf"^{re.escape(sample)} (\S+)$", response.text, re.MULTILINE)
        return float(match.group(1)) if match else 0.0

    @property
    def is_leader(self) -> bool:
        return self.metric("polycrate_watcher_is_leader") == 1.0

    def kill(self) -> None:
        """SIGKILL the whole process group: no Lease release, no warm shutdown."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def terminate(self, timeout: float = 15.0) -> int:
        """SIGTERM (what the kubelet sends) and wait for the exit code."""
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)


class OperatorProcesses:
    """Starts operator processes for one test and kills whatever still runs at the end."""

    def __init__(self, directory: Path, kubeconfig: str, redis_url: str) -> None:
        self.directory = directory
        self.kubeconfig = kubeconfig
        self.redis_url = redis_url
        self.started: list[OperatorProcess] = []

    def start(self, *args: str, environment: dict[str, str | None] | None = None) -> OperatorProcess:
        """Start `run` with `args`; a None value in `environment` removes that variable."""
        name = f"operator{len(self.started) + 1}"
        probe_port, metrics_port = free_port(), free_port()
        command = [
            sys.executable, "-m", "cli", "operator", "run",
            "--kubeconfig", self.kubeconfig,
            "--health-probe-bind-address", f"127.0.0.1:{probe_port}",
            "--metrics-bind-address", f"127.0.0.1:{metrics_port}",
            *args,
        ]  # fmt: skip
        overrides = {
            **os.environ,
            "REDIS_URL": self.redis_url,
            "PYTHONPATH": str(REPOSITORY_ROOT),
            **(environment or {}),
        }
        env = {name: value for name, value in overrides.items() if value is not None}
        log_path = self.directory / f"{name}.log"
        with log_path.open("wb") as log_file:
            process = subprocess.Popen(
                command,
                cwd=REPOSITORY_ROOT,
                env=env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        operator = OperatorProcess(
            name, process, log_path, f"http://127.0.0.1:{probe_port}", f"http://127.0.0.1:{metrics_port}"
        )
        self.started.append(operator)
        return operator

    def kill_all(self) -> None:
        for operator in self.started:
            operator.kill()
