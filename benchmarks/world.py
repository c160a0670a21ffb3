"""The benchmarks' world: tenants, the platform they live on, and the operator's processes.

`organization()` is a full tenant (a Keycloak group with three role subgroups, a GitLab group,
a Harbor project with quota, an Argo CD project), `platform()` the SoftwareDeliveryPlatform
and its Secrets pointed at the emulated systems. `OperatorWorld` starts the operator as it
runs in a cluster: `polycrate operator run --workers 0` as the watcher and `polycrate operator
worker` processes, all as the ServiceAccount of deploy/ with its RBAC enforced. `World` hosts
redis-server, the Kubernetes API emulator and the emulated systems for the recovery benchmark,
which restarts the API server in place; run.py's cost benchmark runs the emulators in their
own processes instead (benchmarks.separate), so their CPU is not mixed with anyone else's.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import redis
from kubernetes import client as k8s

from emulators.kubernetes import KubeEmulator
from polycrate.crds import crd_manifests, install_crds
from polycrate.kubeclient.config import load_api_client
from polycrate.redis_server import LocalRedis, free_port
from sandbox.demo import apply
from sandbox.service_account import operator_kubeconfig
from sandbox.systems import EmulatedSystems

GROUP, VERSION, NAMESPACE = "polycrate.io", "v1alpha1", "bench"


def organization(name: str) -> dict[str, Any]:
    """A tenant in all four systems, like the spec's acme-corp."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Organization",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "sdp": "production",
            "displayName": name,
            "keycloak": {"groupName": name},
            "gitlab": {"enabled": True, "groupPath": name, "visibility": "private"},
            "harbor": {"enabled": True, "projectName": name, "storageQuota": "10Gi"},
            "argocd": {
                "enabled": True,
                "projectName": name,
                "sourceRepos": [f"https://gitlab.example.com/{name}/*"],
                "roleBindings": [{"role": "admin", "keycloakGroups": [f"{name}-admins"]}],
            },
        },
    }


def platform(state: dict[str, Any]) -> list[dict[str, Any]]:
    """The SDP `production` and its Secrets, pointed at the emulated systems of a state file
    (`EmulatedSystems.state()`, the format `polycrate operator emulators` writes)."""
    state = state["systems"]

    def secret(name: str, data: dict[str, str]) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name, "namespace": NAMESPACE},
            "stringData": data,
        }

    return [
        secret("kc", {"client-id": state["keycloak"]["client_id"], "client-secret": state["keycloak"]["client_secret"]}),
        secret("gl", {"token": state["gitlab"]["token"]}),
        secret("hb", {"username": state["harbor"]["username"], "password": state["harbor"]["password"]}),
        secret("ac", {"token": state["argocd"]["token"]}),
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "SoftwareDeliveryPlatform",
            "metadata": {"name": "production", "namespace": NAMESPACE},
            "spec": {
                "keycloak": {"url": state["keycloak"]["url"], "realm": state["keycloak"]["realm"],
                             "credentialsRef": {"secretName": "kc"}},
                "gitlab": {"url": state["gitlab"]["url"], "credentialsRef": {"secretName": "gl"}},
                "harbor": {"url": state["harbor"]["url"], "credentialsRef": {"secretName": "hb"}},
                "argocd": {
                    "url": state["argocd"]["url"],
                    "credentialsRef": {"secretName": "ac"},
                    "roles": {"admin": {"policies": ["p, proj:{project}:admin, applications, *, {project}/*, allow"]}},
                },
                # The benchmark measures the operator, not a polite client: no request throttling.
                "settings": {"rateLimit": {"requestsPerSecond": 10000, "burst": 10000}},
            },
        },
    ]  # fmt: skip


def http_ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


class OperatorWorld:
    """Operator processes (watcher, workers) against a Kubernetes API and Redis set up by a subclass.

    A subclass sets `workdir`, `redis` (LocalRedis), `custom` (CustomObjectsApi as the admin)
    and `env` (REDIS_URL and the operator's KUBECONFIG)."""

    workdir: Path
    redis: LocalRedis
    custom: k8s.CustomObjectsApi
    env: dict[str, str]

    def __init__(self) -> None:
        self.processes: list[subprocess.Popen[bytes]] = []
        self.roles: dict[int, str] = {}  # pid of each operator process -> "watcher" | "worker"
        self.metrics_ports: list[int] = []

    def spawn(self, *args: str, log_name: str) -> subprocess.Popen[bytes]:
        log = (self.workdir / log_name).open("ab")
        process = subprocess.Popen(
            [sys.executable, "-m", "cli", "operator", *args],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        self.processes.append(process)
        return process

    def spawn_workers(
        self, workers: int, concurrency: int | None = None, pool: str | None = None
    ) -> list[int]:
        """Start `workers` worker processes, each serving /metrics (the CLI's defaults for
        what is None); returns their metrics ports without waiting."""
        ports = []
        for index in range(workers):
            ports.append(free_port())
            shape = (["--concurrency", str(concurrency)] if concurrency else []) + (
                ["--pool", pool] if pool else []
            )
            process = self.spawn("worker", *shape, "-n", f"bench{index}@%h",
                                 "--metrics-bind-address", f"127.0.0.1:{ports[-1]}", log_name=f"worker{index}.log")  # fmt: skip
            self.roles[process.pid] = "worker"
        self.metrics_ports = ports
        return ports

    def wait_workers(self, workers: int, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        for index in range(workers):
            while " ready." not in (self.workdir / f"worker{index}.log").read_text(errors="replace"):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"worker {index} not ready; see {self.workdir}/worker{index}.log")
                time.sleep(0.1)

    def start_workers(
        self, workers: int, concurrency: int | None = None, pool: str | None = None
    ) -> list[int]:
        """`workers` worker processes, each serving /metrics; returns once all are ready."""
        ports = self.spawn_workers(workers, concurrency, pool)
        self.wait_workers(workers)
        return ports

    def spawn_watcher(self) -> int:
        """Start the watcher; returns its probe port (/readyz answers once its lists are done)."""
        probe_port = free_port()
        process = self.spawn(
            "run", "--workers", "0", "--metrics-bind-address", "0",
            "--health-probe-bind-address", f"127.0.0.1:{probe_port}", log_name="watcher.log",
        )  # fmt: skip
        self.roles[process.pid] = "watcher"
        return probe_port

    def start_watcher(self) -> None:
        self.spawn_watcher()

    def wait_watcher(self, probe_port: int, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while not http_ready(f"http://127.0.0.1:{probe_port}/readyz"):
            if time.monotonic() > deadline:
                raise TimeoutError(f"watcher not ready; see {self.workdir}/watcher.log")
            time.sleep(0.1)

    def stop_processes(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        self.processes.clear()
        self.roles.clear()

    def create(self, count: int, *, threads: int = 1) -> None:
        """Create `count` Organizations, from `threads` client threads (a burst, as `kubectl apply -f`
        of many files in parallel would)."""

        def create_one(index: int) -> None:
            self.custom.create_namespaced_custom_object(
                GROUP, VERSION, NAMESPACE, "organizations", organization(f"org-{index:04d}")
            )

        with ThreadPoolExecutor(max_workers=threads) as pool:
            list(pool.map(create_one, range(count)))

    def organizations(self) -> list[dict[str, Any]]:
        return self.custom.list_namespaced_custom_object(GROUP, VERSION, NAMESPACE, "organizations")["items"]  # type: ignore[no-any-return]

    def reconciled(self) -> int:
        return sum(
            1
            for o in self.organizations()
            if (o.get("status") or {}).get("phase") == "Ready"
            and (o.get("status") or {}).get("observedGeneration") == o["metadata"].get("generation")
        )

    def behind(self) -> list[str]:
        """The Organizations not (yet) Ready at their generation, with their phase and message."""
        behind = []
        for o in self.organizations():
            status = o.get("status") or {}
            if (
                status.get("phase") == "Ready"
                and status.get("observedGeneration") == o["metadata"]["generation"]
            ):
                continue
            ready = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), {})
            behind.append(
                f"{o['metadata']['name']} (generation {o['metadata']['generation']}, observed "
                f"{status.get('observedGeneration')}, {status.get('phase')}: {ready.get('message')})"
            )
        return behind

    def wait_reconciled(self, count: int, timeout: float, poll: float = 0.2) -> float:
        started = time.monotonic()
        while self.reconciled() < count:
            if time.monotonic() - started > timeout:
                raise TimeoutError(
                    f"only {self.reconciled()}/{count} reconciled after {timeout:.0f}s; behind: {self.behind()}"
                )
            time.sleep(poll)
        return time.monotonic() - started

    def wait_platform_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while True:
            sdp = self.custom.get_namespaced_custom_object(
                GROUP, VERSION, NAMESPACE, "softwaredeliveryplatforms", "production"
            )
            if (sdp.get("status") or {}).get("phase") == "Ready":
                return
            if time.monotonic() > deadline:
                raise TimeoutError("the SoftwareDeliveryPlatform never became Ready")
            time.sleep(0.2)

    def redis_commands(self) -> int:
        return int(redis.Redis.from_url(self.redis.url).info("stats")["total_commands_processed"])


class World(OperatorWorld):
    """redis-server, the Kubernetes emulator and the emulated systems hosted in this process,
    with CRDs and the platform; operator processes on demand."""

    def __init__(self, workdir: Path, latency_ms: float) -> None:
        super().__init__()
        self.workdir = workdir
        self.latency_ms = latency_ms
        self.redis = LocalRedis(workdir / "redis").start()
        self.kube = KubeEmulator(latency_ms=int(latency_ms)).start()
        self.systems = EmulatedSystems(latency_ms=latency_ms).start()
        self.kubeconfig = self.kube.write_kubeconfig(workdir / "kubeconfig")
        self.api_client = load_api_client(str(self.kubeconfig))
        self.custom = k8s.CustomObjectsApi(self.api_client)
        # Operator processes run as the ServiceAccount of deploy/ (RBAC enforced by the emulator).
        self.operator_kubeconfig = workdir / "operator-kubeconfig"
        self.env = {
            **os.environ,
            "REDIS_URL": self.redis.url,
            "KUBECONFIG": str(self.operator_kubeconfig),
            "POLYCRATE_RESYNC_PERIOD": "3600",
        }

    def reset(self) -> None:
        self.stop_processes()
        self.kube.reset()
        redis.Redis.from_url(self.redis.url).flushall()
        for server in self.systems.servers.values():
            server.reset()
            # reset() also clears the fault plan, latency included: put the latency back.
            server.set_faults(latency_ms=self.latency_ms)
        install_crds(self.api_client, crd_manifests())
        k8s.CoreV1Api(self.api_client).create_namespace({"metadata": {"name": NAMESPACE}})
        apply(self.api_client, platform(self.systems.state()))
        operator_kubeconfig(self.api_client, self.kubeconfig, self.operator_kubeconfig)

    def close(self) -> None:
        self.stop_processes()
        self.kube.stop()
        self.systems.stop()
        self.redis.stop()


def reconciles_by_outcome(metrics_ports: list[int], kind: str = "Organization") -> dict[str, float]:
    """Reconcile task runs of `kind` by outcome, summed over the workers' /metrics."""
    pattern = rf'polycrate_reconciles_total\{{kind="{kind}",outcome="([a-z]+)"\}} ([0-9.e+]+)'
    totals: dict[str, float] = {}
    for port in metrics_ports:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        for outcome, value in re.findall(pattern, text):
            totals[outcome] = totals.get(outcome, 0.0) + float(value)
    return totals


def succeeded_reconciles(metrics_ports: list[int]) -> float:
    """Organization reconciles that ran to success, summed over the workers' /metrics."""
    return reconciles_by_outcome(metrics_ports).get("succeeded", 0.0)


def wait_metric_settles(metrics_ports: list[int], quiet: float = 2.0, timeout: float = 60.0) -> float:
    """The reconcile count once it stopped changing for `quiet` seconds."""
    value, since, deadline = -1.0, time.monotonic(), time.monotonic() + timeout
    while time.monotonic() < deadline:
        current = sum(reconciles_by_outcome(metrics_ports).values())
        if current != value:
            value, since = current, time.monotonic()
        elif time.monotonic() - since >= quiet:
            break
        time.sleep(0.2)
    return succeeded_reconciles(metrics_ports)
