"""Recovery benchmark: how fast the runtime heals from the faults that used to wait for the resync.

Everything is real and runs with the production timings (lock TTL 30 s, visibility timeout
3,600 s, resync 600 s, healing loop every 5 s): redis-server, the Kubernetes API emulator, the
emulated Keycloak, GitLab, Harbor and Argo CD, `polycrate operator run --workers 0` and two
`polycrate operator worker` processes. Faults come from outside, as in a cluster.

  worker-kill  N Organizations created; once reconciles are in flight one of the two workers is
               SIGKILLed (its whole process group). Seconds from the kill until every
               Organization is Ready at its generation.
  retry-kill   Harbor answers one request with 429 and Retry-After: 60 (fault endpoint over
               HTTP); the worker that ran the key is SIGKILLed while the retry waits. Seconds
               from the retry's due time until the Organization is Ready.
  redis-wipe   N Organizations; mid-wave redis-server is SIGKILLed and started again empty one
               second later. Seconds from the restart until every Organization is Ready at its
               generation, and how many operator processes had to be restarted from outside (0).

  api-restart  (for the README's table) the Kubernetes API server restarts (2 s down, state kept)
               and an Organization's spec changes right after: seconds until it is Ready at
               its new generation (the watch reconnects and relists).
  system-down  Harbor answers 503 to everything for 30 s while N/5 Organizations are created:
               seconds from the end of the outage until all are Ready (their Harbor step
               backs off 5 → 60 s; Keycloak and GitLab work is not held up meanwhile).

The budget in each case is about one lock TTL plus one loop period; before the self-healing
runtime these took 240 s to over 12 minutes. Machine shared and noisy: read the magnitudes.

Usage: python benchmarks/recovery.py [--objects 100] [--rounds 1] [--latency-ms 10]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.world import GROUP, NAMESPACE, VERSION, World  # noqa: E402


class FaultyWorld(World):
    """The benchmark world, with operator processes in their own process groups so a whole
    worker can be SIGKILLed, and redis-server that can be killed and started again."""

    def __init__(self, workdir: Path, latency_ms: float) -> None:
        super().__init__(workdir, latency_ms)
        # Production timings: only the default settings.
        self.env.pop("POLYCRATE_RESYNC_PERIOD", None)

    def spawn(self, *args: str, log_name: str) -> subprocess.Popen[bytes]:
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

    def kill_group(self, process: subprocess.Popen[bytes]) -> None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.redis.url, socket_timeout=5)

    def processing(self) -> int:
        try:
            with self.client() as client:
                return int(client.hlen("polycrate:queue:processing"))
        except redis.RedisError:
            return 0

    def idle(self) -> bool:
        """Nothing pending or processing for two seconds."""
        with self.client() as client:
            for _ in range(20):
                if client.hlen("polycrate:queue:pending") or client.hlen("polycrate:queue:processing"):
                    return False
                time.sleep(0.1)
        return True

    def wait_platform_ready(self) -> None:
        deadline = time.monotonic() + 120
        while True:
            sdp = self.custom.get_namespaced_custom_object(
                GROUP, VERSION, NAMESPACE, "softwaredeliveryplatforms", "production"
            )
            if (sdp.get("status") or {}).get("phase") == "Ready":
                return
            if time.monotonic() > deadline:
                raise TimeoutError("the SoftwareDeliveryPlatform never became Ready")
            time.sleep(0.2)

    def redis_time(self) -> float:
        with self.client() as client:
            seconds, microseconds = client.time()
        return seconds + microseconds / 1e6


def wait_for(condition, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.05)


def bench_worker_kill(world: FaultyWorld, objects: int) -> float:
    world.reset()
    world.start_workers(2, 4)
    doomed = world.processes[0]
    world.start_watcher()
    world.create(objects)
    wait_for(lambda: world.processing() > 0, 120, "reconciles never started")
    time.sleep(0.5)
    world.kill_group(doomed)
    killed_at = time.monotonic()
    world.wait_reconciled(objects, timeout=600)
    elapsed = time.monotonic() - killed_at
    world.stop_processes()
    return elapsed


def bench_retry_kill(world: FaultyWorld) -> float:
    world.reset()
    world.start_workers(1, 2)
    doomed = world.processes[0]
    world.start_watcher()
    world.wait_platform_ready()
    wait_for(world.idle, 60, "the platform's follow-up runs never ended")
    request = urllib.request.Request(
        f"{world.systems.url('harbor')}/_emulator/faults",
        data=b'{"rate_limit": {"count": 1, "retry_after": 60}}',
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    urllib.request.urlopen(request, timeout=5).close()
    world.create(1)
    key = f"Organization/{NAMESPACE}/org-0000"
    with world.client() as client:

        def retry_scheduled() -> bool:
            ticket = client.hget("polycrate:queue:pending", key)
            return ticket is not None and ticket.startswith(b"@")

        wait_for(retry_scheduled, 120, "the retry was never scheduled")
        due = float(client.zscore("polycrate:queue:due", key) or 0)
    world.kill_group(doomed)
    world.start_workers(1, 2)
    world.wait_reconciled(1, timeout=600)
    elapsed = world.redis_time() - due
    world.stop_processes()
    return elapsed


def bench_redis_wipe(world: FaultyWorld, objects: int) -> tuple[float, int]:
    world.reset()
    world.start_workers(2, 4)
    world.start_watcher()
    world.create(objects)
    wait_for(lambda: world.reconciled() >= max(1, objects // 10), 300, "the wave never got going")
    world.redis.kill()
    time.sleep(1.0)
    world.redis.start()
    restarted_at = time.monotonic()
    world.wait_reconciled(objects, timeout=600)
    elapsed = time.monotonic() - restarted_at
    exited = sum(1 for process in world.processes if process.poll() is not None)
    world.stop_processes()
    return elapsed, exited


def bench_api_restart(world: FaultyWorld) -> float:
    world.reset()
    world.start_workers(1, 2)
    world.start_watcher()
    world.create(1)
    world.wait_reconciled(1, timeout=300)
    world.kube.restart(keep_state=True, down_for=2.0)
    restarted_at = time.monotonic()
    world.custom.patch_namespaced_custom_object(
        GROUP, VERSION, NAMESPACE, "organizations", "org-0000", {"spec": {"displayName": "after the restart"}}
    )
    world.wait_reconciled(1, timeout=600)
    elapsed = time.monotonic() - restarted_at
    world.stop_processes()
    return elapsed


def bench_system_down(world: FaultyWorld, objects: int, outage: float = 30.0) -> float:
    world.reset()
    world.start_workers(2, 4)
    world.start_watcher()
    world.wait_platform_ready()
    request = urllib.request.Request(
        f"{world.systems.url('harbor')}/_emulator/faults",
        data=f'{{"outage_seconds": {outage}}}'.encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    urllib.request.urlopen(request, timeout=5).close()
    outage_ends = time.monotonic() + outage
    world.create(objects)
    world.wait_reconciled(objects, timeout=600)
    elapsed = time.monotonic() - outage_ends
    world.stop_processes()
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--objects", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--latency-ms", type=float, default=10.0)
    parser.add_argument("--with-api-and-outage", action="store_true",
                        help="also measure an API server restart and a 30 s Harbor outage")  # fmt: skip
    args = parser.parse_args()

    kills, retries, wipes, exits, restarts, outages = [], [], [], [], [], []
    with tempfile.TemporaryDirectory(prefix="polycrate-recovery-") as tmp:
        world = FaultyWorld(Path(tmp), args.latency_ms)
        try:
            for round_no in range(1, args.rounds + 1):
                kills.append(bench_worker_kill(world, args.objects))
                retries.append(bench_retry_kill(world))
                wipe, exited = bench_redis_wipe(world, args.objects)
                wipes.append(wipe)
                exits.append(exited)
                print(f"round {round_no}: worker-kill {kills[-1]:.1f}s, retry-kill {retries[-1]:+.1f}s after due, "
                      f"redis-wipe {wipe:.1f}s ({exited} processes exited)", flush=True)  # fmt: skip
                if args.with_api_and_outage:
                    restarts.append(bench_api_restart(world))
                    outages.append(bench_system_down(world, max(1, args.objects // 5)))
                    print(f"round {round_no}: api-restart {restarts[-1]:.1f}s, "
                          f"system-down {outages[-1]:+.1f}s after the outage", flush=True)  # fmt: skip
        finally:
            world.close()

    print()
    print(f"machine: {os.cpu_count()} cores; emulator latency {args.latency_ms:.0f} ms/request; production timings "
          f"(lock TTL 30 s, visibility timeout 3600 s, resync 600 s); {args.rounds} round(s), medians")  # fmt: skip
    print(
        f"worker SIGKILLed mid-wave ({args.objects} Organizations)   all Ready {statistics.median(kills):6.1f} s after the kill"
    )
    print(
        f"retry (Retry-After 60 s) held by a killed worker    ran       {statistics.median(retries):6.1f} s after its due time"
    )
    print(f"redis-server restarted empty mid-wave               all Ready {statistics.median(wipes):6.1f} s after the restart"
          f"; processes restarted from outside: {max(exits)}")  # fmt: skip
    if restarts:
        print(
            f"API server restarted, spec changed                 Ready     {statistics.median(restarts):6.1f} s after the restart"
        )
        print(f"Harbor down for 30 s ({max(1, args.objects // 5)} Organizations)             all Ready "
              f"{statistics.median(outages):6.1f} s after it came back")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
