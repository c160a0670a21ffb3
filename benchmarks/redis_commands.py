"""Where a tenant's Redis commands go: every command during N Organizations' first convergence
(or during a touch of every converged one), captured with MONITOR and grouped by command and
key, per Organization.

Round trips (commands a client sent) and the commands Lua scripts ran inside the server are
counted apart: Redis' own totals (`INFO stats`, what benchmarks/run.py reads) include both.
The default shape of benchmarks/run.py (2 worker processes with the CLI's default pool and
concurrency, the watcher), its SeparateWorld and tenants, emulators at `--latency-ms`.

Usage: python benchmarks/redis_commands.py [--objects 10] [--latency-ms 50] [--touch]
"""

from __future__ import annotations

import argparse
import collections
import re
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.separate import SeparateWorld  # noqa: E402
from benchmarks.world import GROUP, NAMESPACE, VERSION, wait_metric_settles  # noqa: E402


def _shape(argument: str) -> str:
    """A key with its per-object parts folded, so one row stands for all tenants."""
    argument = re.sub(r"[0-9a-f]{8}-[0-9a-f-]{27,}", "<uuid>", argument)
    return re.sub(r"org-\d+", "<org>", argument)[:60]


def _row(command: str) -> tuple[str, str]:
    parts = command.split(" ")
    name = parts[0].upper()
    if name in ("EVALSHA", "EVAL") and len(parts) > 3:
        return f"{name}:{parts[1][:10]}", _shape(parts[3])
    return name, _shape(parts[1]) if len(parts) > 1 else ""


def capture(world: SeparateWorld, objects: int, touch: bool) -> tuple[list[dict[str, Any]], float]:
    """The MONITOR lines of one convergence (or touch) of `objects` Organizations, and the reconciles."""
    world.reset()
    world.start_operator(2, None, None)
    ports = world.metrics_ports
    if touch:
        world.create(objects, threads=8)
        world.wait_reconciled(objects, timeout=600)
    wait_metric_settles(ports)
    lines: list[dict[str, Any]] = []
    stop = threading.Event()

    def monitor() -> None:
        with redis.Redis.from_url(world.redis.url).monitor() as stream:
            for command in stream.listen():
                lines.append(command)
                if stop.is_set():
                    return

    threading.Thread(target=monitor, daemon=True).start()
    time.sleep(0.5)
    before = wait_metric_settles(ports)
    if touch:
        for index in range(objects):
            world.custom.patch_namespaced_custom_object(
                GROUP, VERSION, NAMESPACE, "organizations", f"org-{index:04d}",
                {"metadata": {"annotations": {"bench.polycrate.io/touched": str(time.time())}}},
            )  # fmt: skip
    else:
        world.create(objects, threads=8)
        world.wait_reconciled(objects, timeout=600)
    reconciles = wait_metric_settles(ports) - before
    stop.set()
    redis.Redis.from_url(world.redis.url).ping()  # one more line, so the monitor loop sees `stop`
    time.sleep(0.3)
    world.stop_processes()
    return lines, reconciles


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--objects", type=int, default=10)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument(
        "--touch", action="store_true", help="measure an annotation change of converged tenants"
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="polycrate-bench-") as tmp:
        world = SeparateWorld(Path(tmp), args.latency_ms)
        try:
            lines, reconciles = capture(world, args.objects, args.touch)
        finally:
            world.close()

    n = args.objects
    sent = [line for line in lines if line.get("client_type") != "lua"]
    scripted = [line for line in lines if line.get("client_type") == "lua"]
    what = "touch (annotation change)" if args.touch else "first convergence"
    print(f"{n} Organizations, {what}: {reconciles:.0f} reconciles ({reconciles / n:.2f} per Organization)")
    print(f"  round trips (commands sent)   {len(sent) / n:6.1f} per Organization")
    print(f"  commands run inside scripts   {len(scripted) / n:6.1f} per Organization")
    print(f"  total (what INFO counts)      {(len(sent) + len(scripted)) / n:6.1f} per Organization")
    for title, group in (("round trips", sent), ("inside scripts", scripted)):
        print(f"\n{title}, by command and key:")
        rows = collections.Counter(_row(line["command"]) for line in group)
        for (name, key), count in rows.most_common(40):
            print(f"  {count / n:6.2f}  {name:20s} {key}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
