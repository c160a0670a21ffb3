"""What a wave of reconciles costs, read from outside the processes that pay it.

A `Snapshot` reads, at one moment: the CPU time of each process tree (/proc/<pid>/stat utime +
stime of every process in the tree, plus cutime + cstime, the CPU of children it has reaped, so
a pool child that ended mid-wave is still counted), the calls per command of redis-server (INFO
commandstats), the calls per operation each emulated system counted (GET /_emulator/calls),
and the workers' reconcile counters (/metrics). The cost of a wave is the difference of two
snapshots, divided by the tenants it created; nothing is sampled in between, so the
measurement itself costs two INFO commands and a few HTTP reads outside the counted paths.
"""

from __future__ import annotations

import json
import os
import resource
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Mutating methods that change nothing in the system: logging in.
AUTH_PATHS = ("/protocol/openid-connect/token", "/api/v1/session")


def _children(pid: int) -> list[int]:
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return []
    found: list[int] = []
    for task in tasks:
        try:
            found += [int(c) for c in Path(f"/proc/{pid}/task/{task}/children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return found


def process_tree(pid: int) -> list[int]:
    """`pid` and all its descendants (a worker: its supervisor, the Celery child, pool children)."""
    pending, seen = [pid], []
    while pending:
        current = pending.pop()
        seen.append(current)
        pending += _children(current)
    return seen


def process_cpu_seconds(pid: int) -> float | None:
    """utime + stime + cutime + cstime of one process, None once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # Fields after the command name in parentheses (which may hold spaces): state is field 3,
    # utime/stime/cutime/cstime are fields 14-17.
    fields = stat.rsplit(")", 1)[1].split()
    return sum(int(value) for value in fields[11:15]) / CLOCK_TICKS


def tree_cpu(roots: Iterable[int]) -> dict[int, float]:
    """CPU seconds of every live process in the trees of `roots`, by pid."""
    seconds: dict[int, float] = {}
    for root in roots:
        for pid in process_tree(root):
            value = process_cpu_seconds(pid)
            if value is not None:
                seconds[pid] = value
    return seconds


def cpu_delta(before: Mapping[int, float], after: Mapping[int, float]) -> float:
    """CPU seconds spent between two `tree_cpu` readings (a process born in between counts whole)."""
    return sum(value - before.get(pid, 0.0) for pid, value in after.items())


def redis_command_calls(url: str) -> Counter[str]:
    """Calls per Redis command since the server started (INFO commandstats)."""
    with redis.Redis.from_url(url, socket_timeout=5) as client:
        stats = client.info("commandstats")
    return Counter({name.removeprefix("cmdstat_"): int(value["calls"]) for name, value in stats.items()})


def _numeric_leaves(document: Any, prefix: str = "") -> dict[str, float]:
    """{"GET /x": 3} as it is; nested counters ({"GET /x": {"count": 3}}) flattened by path."""
    if isinstance(document, bool):
        return {}
    if isinstance(document, int | float):
        return {prefix or "total": float(document)}
    if isinstance(document, dict):
        leaves: dict[str, float] = {}
        for key, value in document.items():
            name = key if not prefix else prefix if key in ("count", "calls", "total") else f"{prefix} {key}"
            leaves.update(_numeric_leaves(value, name))
        return leaves
    return {}


def emulator_calls(urls: Mapping[str, str]) -> dict[str, Counter[str] | None]:
    """Requests each emulated system counted, per operation ("METHOD /path/template").

    None for a system whose counter cannot be read (an emulator without /_emulator/calls):
    the report then says "unknown" rather than a made-up zero."""
    calls: dict[str, Counter[str] | None] = {}
    for system, url in urls.items():
        try:
            with urllib.request.urlopen(f"{url}/_emulator/calls", timeout=10) as response:
                calls[system] = Counter(_numeric_leaves(json.loads(response.read())))
        except (urllib.error.URLError, OSError, ValueError):
            calls[system] = None
    return calls


def is_write(operation: str) -> bool:
    """A request that changes the system: a mutating method that is not a log-in."""
    method, _, path = operation.partition(" ")
    return method.upper() in WRITE_METHODS and not any(auth in path for auth in AUTH_PATHS)


@dataclass
class Snapshot:
    """Cumulative counters at one moment; `Cost.between(a, b)` is what happened in between."""

    at: float
    cpu: dict[str, dict[int, float]]  # role -> pid -> CPU seconds
    redis_commands: Counter[str]
    calls: dict[str, Counter[str] | None]
    reconciles: dict[str, float]  # outcome -> count (Organization)
    benchmark_cpu: float

    @classmethod
    def take(
        cls,
        roles: Mapping[str, Iterable[int]],
        redis_url: str,
        emulator_urls: Mapping[str, str],
        reconciles: Callable[[], dict[str, float]],
    ) -> Snapshot:
        own = resource.getrusage(resource.RUSAGE_SELF)
        return cls(
            at=time.monotonic(),
            cpu={role: tree_cpu(pids) for role, pids in roles.items()},
            redis_commands=redis_command_calls(redis_url),
            calls=emulator_calls(emulator_urls),
            reconciles=reconciles(),
            benchmark_cpu=own.ru_utime + own.ru_stime,
        )


@dataclass
class Cost:
    """The difference of two snapshots, in absolute numbers (per-tenant figures divide by N)."""

    seconds: float
    cpu_seconds: dict[str, float]
    redis_commands: Counter[str]
    calls: dict[str, Counter[str] | None]
    reconciles: dict[str, float]
    benchmark_cpu_seconds: float
    notes: list[str] = field(default_factory=list)

    @classmethod
    def between(cls, before: Snapshot, after: Snapshot) -> Cost:
        commands = after.redis_commands.copy()
        commands.subtract(before.redis_commands)
        # The first snapshot's own INFO is counted in the second one; it is not the operator's.
        commands["info"] -= 1
        calls: dict[str, Counter[str] | None] = {}
        for system, counted in after.calls.items():
            earlier = before.calls.get(system)
            if counted is None or earlier is None:
                calls[system] = None
                continue
            delta = counted.copy()
            delta.subtract(earlier)
            calls[system] = Counter({op: n for op, n in delta.items() if n})
        return cls(
            seconds=after.at - before.at,
            cpu_seconds={role: cpu_delta(before.cpu.get(role, {}), pids) for role, pids in after.cpu.items()},
            redis_commands=Counter({name: n for name, n in commands.items() if n > 0}),
            calls=calls,
            reconciles={
                o: after.reconciles.get(o, 0.0) - before.reconciles.get(o, 0.0) for o in after.reconciles
            },
            benchmark_cpu_seconds=after.benchmark_cpu - before.benchmark_cpu,
        )

    def calls_total(self, *, writes_only: bool = False) -> float | None:
        known = [c for c in self.calls.values() if c is not None]
        if not known:
            return None
        return float(sum(n for c in known for op, n in c.items() if not writes_only or is_write(op)))

    def writes_by_operation(self) -> dict[str, float]:
        return {
            f"{system} {op}": float(n)
            for system, counted in self.calls.items()
            if counted is not None
            for op, n in counted.items()
            if is_write(op)
        }

    def per_tenant(self, tenants: int) -> dict[str, Any]:
        """The report's figures for a wave that created (or touched) `tenants` tenants."""
        n = max(1, tenants)
        ms = {role: 1000 * s / n for role, s in self.cpu_seconds.items()}
        operator = ms.get("watcher", 0.0) + ms.get("workers", 0.0)
        emulators = ms.get("kube_emulator", 0.0) + ms.get("system_emulators", 0.0)
        total_calls = self.calls_total()
        writes = self.calls_total(writes_only=True)
        return {
            "cpu_ms_per_tenant": {
                "operator": operator,
                "watcher": ms.get("watcher", 0.0),
                "workers": ms.get("workers", 0.0),
                "emulators": emulators,
                "kube_emulator": ms.get("kube_emulator", 0.0),
                "system_emulators": ms.get("system_emulators", 0.0),
                "redis": ms.get("redis", 0.0),
                "benchmark_client": 1000 * self.benchmark_cpu_seconds / n,
            },
            "external_calls_per_tenant": {
                "total": None if total_calls is None else total_calls / n,
                "writes": None if writes is None else writes / n,
                "by_system": {
                    system: None if counted is None else sum(counted.values()) / n
                    for system, counted in self.calls.items()
                },
            },
            "external_calls_by_operation": {
                system: None if counted is None else {op: c / n for op, c in sorted(counted.items())}
                for system, counted in self.calls.items()
            },
            "redis_commands_per_tenant": sum(self.redis_commands.values()) / n,
            "redis_commands_by_name": {
                name: c / n for name, c in sorted(self.redis_commands.items(), key=lambda item: -item[1])
            },
            "reconciles_per_tenant": self.reconciles.get("succeeded", 0.0) / n,
            "reconcile_runs_by_outcome": {o: c / n for o, c in sorted(self.reconciles.items()) if c},
        }
