"""Benchmarks of the runtime: throughput, coalescing and cost, each against a baseline
measured in the same run on the same machine.

Everything is real: redis-server, the Kubernetes API emulator and the emulated Keycloak,
GitLab, Harbor and Argo CD over HTTP (each with injected latency, so a reconcile costs what
API round trips cost), `polycrate operator run --workers 0` as the watcher and
`polycrate operator worker` processes. Each Organization is a full tenant: a Keycloak group
with three role subgroups, a GitLab group, a Harbor project with quota, an Argo CD project.
Operator processes run as the ServiceAccount of deploy/ with its RBAC enforced. Numbers are medians of repeated
rounds; the machine is shared and noisy, so read the ratios, not the absolute seconds.

  throughput   N Organizations from creation to Ready: 1 worker process with concurrency 1
               (the seed's "max 1 concurrent reconcile per controller") vs 2 workers × 4.
  coalescing   U rapid spec updates to one Organization: reconciles run vs updates sent
               (the baseline of one task per event is U).
  cost         reconciles per object to converge, Redis commands per reconcile.

Usage: python benchmarks/run.py [--objects 100] [--updates 200] [--rounds 3] [--latency-ms 10]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
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


def platform(systems: EmulatedSystems) -> list[dict[str, Any]]:
    """The SDP `production` and its Secrets, pointed at the emulated systems."""
    state = systems.state()["systems"]

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


class World:
    """redis-server + Kubernetes emulator + CRDs; processes of the operator on demand."""

    def __init__(self, workdir: Path, latency_ms: float) -> None:
        self.workdir = workdir
        self.redis = LocalRedis(workdir / "redis").start()
        self.kube = KubeEmulator(latency_ms=latency_ms).start()
        self.systems = EmulatedSystems(latency_ms=latency_ms).start()
        self.kubeconfig = self.kube.write_kubeconfig(workdir / "kubeconfig")
        self.api_client = load_api_client(str(self.kubeconfig))
        self.custom = k8s.CustomObjectsApi(self.api_client)
        self.processes: list[subprocess.Popen[bytes]] = []
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
        install_crds(self.api_client, crd_manifests())
        k8s.CoreV1Api(self.api_client).create_namespace({"metadata": {"name": NAMESPACE}})
        apply(self.api_client, platform(self.systems))
        operator_kubeconfig(self.api_client, self.kubeconfig, self.operator_kubeconfig)

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

    def start_workers(self, workers: int, concurrency: int) -> list[int]:
        """`workers` worker processes, each serving /metrics; returns once all are ready."""
        ports = []
        for index in range(workers):
            ports.append(free_port())
            self.spawn("worker", "--concurrency", str(concurrency), "-n", f"bench{index}@%h",
                       "--metrics-bind-address", f"127.0.0.1:{ports[-1]}", log_name=f"worker{index}.log")  # fmt: skip
        deadline = time.monotonic() + 60
        for index in range(workers):
            while " ready." not in (self.workdir / f"worker{index}.log").read_text(errors="replace"):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"worker {index} not ready; see {self.workdir}/worker{index}.log")
                time.sleep(0.1)
        return ports

    def start_watcher(self) -> None:
        self.spawn(
            "run", "--workers", "0", "--metrics-bind-address", "0", "--health-probe-bind-address", "0",
            log_name="watcher.log",
        )  # fmt: skip

    def stop_processes(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        self.processes.clear()

    def create(self, count: int) -> None:
        for index in range(count):
            self.custom.create_namespaced_custom_object(
                GROUP, VERSION, NAMESPACE, "organizations", organization(f"org-{index:04d}")
            )

    def reconciled(self) -> int:
        items = self.custom.list_namespaced_custom_object(GROUP, VERSION, NAMESPACE, "organizations")["items"]
        return sum(
            1
            for o in items
            if (o.get("status") or {}).get("phase") == "Ready"
            and (o.get("status") or {}).get("observedGeneration") == o["metadata"].get("generation")
        )

    def behind(self) -> list[str]:
        """The Organizations not (yet) Ready at their generation, with their phase and message."""
        items = self.custom.list_namespaced_custom_object(GROUP, VERSION, NAMESPACE, "organizations")["items"]
        behind = []
        for o in items:
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

    def wait_reconciled(self, count: int, timeout: float) -> float:
        started = time.monotonic()
        while self.reconciled() < count:
            if time.monotonic() - started > timeout:
                raise TimeoutError(
                    f"only {self.reconciled()}/{count} reconciled after {timeout:.0f}s; behind: {self.behind()}"
                )
            time.sleep(0.2)
        return time.monotonic() - started

    def redis_commands(self) -> int:
        return int(redis.Redis.from_url(self.redis.url).info("stats")["total_commands_processed"])

    def close(self) -> None:
        self.stop_processes()
        self.kube.stop()
        self.systems.stop()
        self.redis.stop()


def succeeded_reconciles(metrics_ports: list[int]) -> float:
    """Organization reconciles that ran to success, summed over the workers' /metrics."""
    pattern = r'polycrate_reconciles_total\{kind="Organization",outcome="succeeded"\} ([0-9.e+]+)'
    total = 0.0
    for port in metrics_ports:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        total += sum(float(v) for v in re.findall(pattern, text))
    return total


def wait_metric_settles(metrics_ports: list[int], quiet: float = 2.0, timeout: float = 60.0) -> float:
    """The reconcile count once it stopped changing for `quiet` seconds."""
    value, since, deadline = -1.0, time.monotonic(), time.monotonic() + timeout
    while time.monotonic() < deadline:
        current = succeeded_reconciles(metrics_ports)
        if current != value:
            value, since = current, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return value
        time.sleep(0.2)
    return value


def bench_throughput(
    world: World, objects: int, workers: int, concurrency: int
) -> tuple[float, float, float]:
    """Seconds until `objects` Organizations are Ready (workers already up, clock starts with the
    watcher); reconciles per object; Redis commands per reconcile."""
    world.reset()
    world.create(objects)
    ports = world.start_workers(workers, concurrency)
    before_cmds = world.redis_commands()
    started = time.monotonic()
    world.start_watcher()
    world.wait_reconciled(objects, timeout=600)
    elapsed = time.monotonic() - started
    reconciles = max(1.0, wait_metric_settles(ports))
    cmds = (world.redis_commands() - before_cmds) / reconciles
    world.stop_processes()
    return elapsed, reconciles / objects, cmds


def bench_coalescing(world: World, updates: int) -> float:
    """Reconciles of one key after `updates` rapid spec updates (4 worker processes)."""
    world.reset()
    world.create(1)
    ports = world.start_workers(1, 4)
    world.start_watcher()
    world.wait_reconciled(1, timeout=120)
    before = wait_metric_settles(ports)
    for index in range(updates):
        world.custom.patch_namespaced_custom_object(
            GROUP, VERSION, NAMESPACE, "organizations", "org-0000", {"spec": {"displayName": f"v{index}"}}
        )
    world.wait_reconciled(1, timeout=120)
    after = wait_metric_settles(ports)
    world.stop_processes()
    return after - before


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--objects", type=int, default=100)
    parser.add_argument("--updates", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--latency-ms", type=float, default=10.0)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="polycrate-bench-") as tmp:
        world = World(Path(tmp), args.latency_ms)
        try:
            baseline, scaled, coalesced, per_object, cmds = [], [], [], [], []
            for round_no in range(1, args.rounds + 1):
                b, b_per_object, b_cmds = bench_throughput(world, args.objects, workers=1, concurrency=1)
                s, s_per_object, s_cmds = bench_throughput(world, args.objects, workers=2, concurrency=4)
                c = bench_coalescing(world, args.updates)
                baseline.append(b)
                scaled.append(s)
                coalesced.append(c)
                per_object += [b_per_object, s_per_object]
                cmds += [b_cmds, s_cmds]
                print(f"round {round_no}: baseline {b:.1f}s, scaled {s:.1f}s, coalescing {c:.0f}/{args.updates}",
                      flush=True)  # fmt: skip
        finally:
            world.close()

    b, s, c = statistics.median(baseline), statistics.median(scaled), statistics.median(coalesced)
    print()
    print(f"machine: {os.cpu_count()} cores; emulator latency {args.latency_ms:.0f} ms/request (all systems); "
          f"{args.rounds} rounds, medians")  # fmt: skip
    print(f"throughput  {args.objects} Organizations to Ready")
    print(f"  baseline  1 worker × 1 (one reconcile at a time)  {b:7.2f} s  {args.objects / b:6.1f}/s")
    print(f"  scaled    2 workers × 4                            {s:7.2f} s  {args.objects / s:6.1f}/s")
    print(f"  ratio     {b / s:.2f}x faster than baseline")
    print(f"coalescing  {args.updates} rapid updates to one Organization")
    print(
        f"  reconciles run: {c:.0f}  (baseline one-task-per-event: {args.updates}; ratio {c / args.updates:.3f})"
    )
    print(f"cost        reconciles per object (first convergence): {statistics.median(per_object):.2f}")
    print(f"            Redis commands per reconcile: {statistics.median(cmds):.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
