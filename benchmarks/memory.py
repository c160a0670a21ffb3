"""Memory of the operator's processes, to size the Deployments' requests and limits.

Runs the sandbox (real redis-server, the Kubernetes emulator, the emulated systems, and
`polycrate operator run --workers C`, which starts `polycrate operator worker --concurrency C`
as a child) and samples every process of the operator from /proc: RSS and PSS (proportional
set size: pages shared between the worker's main process and its forked pool children are
split among them, so the PSS of a pod is the sum over its processes, while the sum of RSS
counts shared pages several times). Peak is the highest sum seen while the sandbox's examples
and then `--organizations` more full tenants (Keycloak, GitLab, Harbor, Argo CD) are
reconciled; idle is the mean over a quiet period afterwards.

  watcher   the `operator run` process (as in deploy/watcher.yaml, `run --workers 0`)
  worker    the `operator worker` process and its pool children (as in deploy/worker.yaml)

Usage: python benchmarks/memory.py [--concurrency 4] [--organizations 50] [--idle-seconds 10]
(Linux only)
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

MiB = 1024 * 1024


def _children(pid: int) -> list[int]:
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return []
    found: list[int] = []
    for task in tasks:
        try:
            found += [int(c) for c in Path(f"/proc/{pid}/task/{task}/children").read_text().split()]
        except FileNotFoundError:
            continue
    return found


def _descendants(pid: int) -> list[int]:
    pending, seen = [pid], []
    while pending:
        current = pending.pop()
        seen.append(current)
        pending += _children(current)
    return seen


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except FileNotFoundError:
        return []


def _memory(pid: int) -> tuple[int, int]:
    """(RSS, PSS) in bytes from smaps_rollup; (0, 0) for a process that is gone."""
    rss = pss = 0
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            name, _, value = line.partition(":")
            if name == "Rss":
                rss = int(value.split()[0]) * 1024
            elif name == "Pss":
                pss = int(value.split()[0]) * 1024
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        pass
    return rss, pss


def sample(sandbox_pid: int) -> dict[str, tuple[int, int]]:
    """Summed (RSS, PSS) per role of the operator processes under the sandbox.

    Pool children carry their parent's command line after fork, so each process is assigned
    its role by its own command line and counted once."""
    totals = {"watcher": [0, 0], "worker": [0, 0]}
    for pid in _descendants(sandbox_pid):
        args = _cmdline(pid)
        if "operator" not in args:
            continue
        role = "watcher" if "run" in args else "worker" if "worker" in args else None
        if role is None:
            continue
        rss, pss = _memory(pid)
        totals[role][0] += rss
        totals[role][1] += pss
    return {role: (rss, pss) for role, (rss, pss) in totals.items()}


def _reconcile_organizations(workdir: Path, count: int, timeout: float = 300.0) -> None:
    """Create `count` Organizations (full tenants) in the sandbox and wait until all are Ready."""
    from kubernetes import client as k8s

    from polycrate.kubeclient.config import load_api_client

    # benchmarks/ is not a package of the install: make the repository importable.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from benchmarks.world import GROUP, VERSION, organization

    api = k8s.CustomObjectsApi(load_api_client(str(workdir / "kubeconfig")))
    names = [f"memory-{n}" for n in range(count)]
    for name in names:
        body = organization(name)
        body["metadata"]["namespace"] = "polycrate"
        api.create_namespaced_custom_object(GROUP, VERSION, "polycrate", "organizations", body)
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        items = api.list_namespaced_custom_object(GROUP, VERSION, "polycrate", "organizations")["items"]
        ready = sum(
            1
            for o in items
            if o["metadata"]["name"] in names and (o.get("status") or {}).get("phase") == "Ready"
        )
        if ready == count:
            print(f"{count} more Organizations Ready in {time.monotonic() - started:.1f}s", flush=True)
            return
        time.sleep(1)
    print(f"only {ready} of {count} Organizations Ready after {timeout:.0f}s", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--organizations", type=int, default=50)
    parser.add_argument("--idle-seconds", type=float, default=10.0)
    options = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="polycrate-memory-"))
    command = [
        sys.executable, "-m", "cli", "operator", "sandbox",
        "--dir", str(workdir), "--workers", str(options.concurrency), "--timeout", "300",
    ]  # fmt: skip
    sandbox = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    ready = threading.Event()

    def follow_output() -> None:
        assert sandbox.stdout is not None
        for line in sandbox.stdout:
            if "objects reconciled in" in line or line.startswith("error:"):
                print(line.rstrip(), flush=True)
                ready.set()

    threading.Thread(target=follow_output, daemon=True).start()
    peak = {"watcher": (0, 0), "worker": (0, 0)}

    def sample_peak() -> None:
        for role, (rss, pss) in sample(sandbox.pid).items():
            peak[role] = (max(peak[role][0], rss), max(peak[role][1], pss))

    try:
        while not ready.is_set() and sandbox.poll() is None:
            sample_peak()
            time.sleep(0.2)
        if options.organizations and sandbox.poll() is None:
            load = threading.Thread(target=_reconcile_organizations, args=(workdir, options.organizations))
            load.start()
            while load.is_alive():
                sample_peak()
                time.sleep(0.2)
        idle_samples: list[dict[str, tuple[int, int]]] = []
        deadline = time.monotonic() + options.idle_seconds
        while time.monotonic() < deadline and sandbox.poll() is None:
            current = sample(sandbox.pid)
            idle_samples.append(current)
            for role, (rss, pss) in current.items():
                peak[role] = (max(peak[role][0], rss), max(peak[role][1], pss))
            time.sleep(0.5)
    finally:
        sandbox.terminate()
        sandbox.wait(timeout=60)
    if not idle_samples:
        print("the sandbox stopped before it was ready", file=sys.stderr)
        return 1
    print(f"{'process':<10} {'idle RSS':>10} {'idle PSS':>10} {'peak RSS':>10} {'peak PSS':>10}  (MiB)")
    for role in ("watcher", "worker"):
        idle_rss = sum(s[role][0] for s in idle_samples) / len(idle_samples)
        idle_pss = sum(s[role][1] for s in idle_samples) / len(idle_samples)
        label = role if role == "watcher" else f"worker×{options.concurrency}"
        print(
            f"{label:<10} {idle_rss / MiB:>10.0f} {idle_pss / MiB:>10.0f} "
            f"{peak[role][0] / MiB:>10.0f} {peak[role][1] / MiB:>10.0f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
