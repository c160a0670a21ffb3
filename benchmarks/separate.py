"""The cost benchmark's world: every emulator in its own process, so CPU is attributed right.

redis-server, `polycrate operator kube-emulator` (the Kubernetes API) and `polycrate operator
emulators` (Keycloak, GitLab, Harbor, Argo CD, Polycrate API) are each their own process, and
the operator's watcher and workers are theirs; the benchmark process only creates objects,
polls their status and reads counters. Each `reset()` starts a fresh Kubernetes API (it has no
reset over HTTP), empties Redis and resets the systems over /_emulator/reset (then puts the
injected latency back, which a reset clears).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import redis
from kubernetes import client as k8s

from benchmarks.costs import Snapshot
from benchmarks.world import NAMESPACE, OperatorWorld, platform, reconciles_by_outcome
from polycrate.crds import crd_manifests, install_crds
from polycrate.kubeclient.config import load_api_client
from polycrate.redis_server import LocalRedis
from sandbox.demo import apply
from sandbox.service_account import operator_kubeconfig

EXTERNAL_SYSTEMS = ("keycloak", "gitlab", "harbor", "argocd", "polycrate_api")


def _wait_file(path: Path, process: subprocess.Popen[bytes], what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not start in {timeout:.0f}s")
        time.sleep(0.05)


def _post_json(url: str, document: dict[str, Any]) -> None:
    request = urllib.request.Request(
        url, data=json.dumps(document).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    urllib.request.urlopen(request, timeout=10).close()


class SeparateWorld(OperatorWorld):
    """redis-server, the Kubernetes API emulator and the system emulators as separate processes."""

    def __init__(self, workdir: Path, latency_ms: float) -> None:
        super().__init__()
        self.workdir = workdir
        self.latency_ms = latency_ms
        self.redis = LocalRedis(workdir / "redis").start()
        self.kube_process: subprocess.Popen[bytes] | None = None
        self.generation = 0
        state_file = workdir / "emulators.json"
        self.systems_process = self._spawn_tool(
            "emulators", "--state-file", str(state_file), "--latency-ms", str(latency_ms), log="emulators.log"
        )
        self._spawn_kube()  # starts meanwhile; a new one is empty, so the first reset keeps it
        self.kube_fresh = True
        _wait_file(state_file, self.systems_process, "polycrate operator emulators")
        self.state = json.loads(state_file.read_text())
        self.system_urls = {name: self.state["systems"][name]["url"] for name in EXTERNAL_SYSTEMS}
        self.operator_kubeconfig = workdir / "operator-kubeconfig"
        self.env = {
            **os.environ,
            "REDIS_URL": self.redis.url,
            "KUBECONFIG": str(self.operator_kubeconfig),
            "POLYCRATE_RESYNC_PERIOD": "3600",
        }

    def spawn(self, *args: str, log_name: str) -> subprocess.Popen[bytes]:
        """An operator process in its own process group, so `stop_processes` ends its whole tree."""
        log = (self.workdir / log_name).open("ab")
        process = subprocess.Popen(
            [sys.executable, "-m", "cli", "operator", *args],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.processes.append(process)
        return process

    def stop_processes(self) -> None:
        """SIGKILL each operator process group: the wave is measured, and a graceful Celery
        shutdown would cost seconds per shape; the next reset empties Redis and the cluster."""
        for process in self.processes:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
        for process in self.processes:
            process.wait()
        self.processes.clear()
        self.roles.clear()

    def _spawn_tool(self, *args: str, log: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-m", "cli", "operator", *args],
            stdout=(self.workdir / log).open("ab"),
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )

    def _spawn_kube(self) -> None:
        self.generation += 1
        self.kubeconfig = self.workdir / f"kubeconfig-{self.generation}"
        self.kube_process = self._spawn_tool(
            "kube-emulator", "--kubeconfig-out", str(self.kubeconfig),
            "--latency-ms", str(int(self.latency_ms)), log="kube-emulator.log",
        )  # fmt: skip

    def _start_kube(self) -> None:
        if not self.kube_fresh:
            self._stop_kube()
            self._spawn_kube()
        self.kube_fresh = False
        assert self.kube_process is not None
        _wait_file(self.kubeconfig, self.kube_process, "polycrate operator kube-emulator")
        self.api_client = load_api_client(str(self.kubeconfig), pool_maxsize=16)
        self.custom = k8s.CustomObjectsApi(self.api_client)

    def _stop_kube(self) -> None:
        if self.kube_process is not None:
            self.kube_process.terminate()
            try:
                self.kube_process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kube_process.kill()
            self.kube_process = None

    def reset(self) -> None:
        """An empty cluster with CRDs, namespace, platform and the operator's RBAC; empty Redis; empty systems."""
        self.stop_processes()
        self._start_kube()
        redis.Redis.from_url(self.redis.url).flushall()
        for url in self.system_urls.values():
            _post_json(f"{url}/_emulator/reset", {})
            _post_json(f"{url}/_emulator/faults", {"latency_ms": self.latency_ms})
        install_crds(self.api_client, crd_manifests())
        k8s.CoreV1Api(self.api_client).create_namespace({"metadata": {"name": NAMESPACE}})
        apply(self.api_client, platform(self.state))
        operator_kubeconfig(self.api_client, self.kubeconfig, self.operator_kubeconfig)

    def start_operator(self, workers: int, concurrency: int | None, pool: str | None) -> None:
        """Watcher and workers started together; returns once all are ready and the platform is Ready."""
        self.spawn_workers(workers, concurrency, pool)
        probe_port = self.spawn_watcher()
        self.wait_workers(workers)
        self.wait_watcher(probe_port)
        self.wait_platform_ready()

    def snapshot(self) -> Snapshot:
        assert self.kube_process is not None and self.redis.pid is not None
        roles = {
            "watcher": [pid for pid, role in self.roles.items() if role == "watcher"],
            "workers": [pid for pid, role in self.roles.items() if role == "worker"],
            "kube_emulator": [self.kube_process.pid],
            "system_emulators": [self.systems_process.pid],
            "redis": [self.redis.pid],
        }
        ports = list(self.metrics_ports)
        return Snapshot.take(roles, self.redis.url, self.system_urls, lambda: reconciles_by_outcome(ports))

    def close(self) -> None:
        self.stop_processes()
        self._stop_kube()
        self.systems_process.terminate()
        try:
            self.systems_process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.systems_process.kill()
        self.redis.stop()
