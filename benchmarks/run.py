"""What a tenant costs and how fast tenants converge, against one-reconcile-at-a-time in the same run.

Everything is real and each part is its own process: redis-server, the Kubernetes API emulator
(`polycrate operator kube-emulator`), the emulated Keycloak, GitLab, Harbor, Argo CD and
Polycrate API (`polycrate operator emulators`), the watcher (`polycrate operator run --workers
0`) and `polycrate operator worker` processes, as the ServiceAccount of deploy/ with its RBAC
enforced. Every emulated system, the Kubernetes API included, answers each request after the
injected latency (default 50 ms). Each Organization is a full tenant: a Keycloak group with
three role subgroups, a GitLab group, a Harbor project with quota, an Argo CD project.

A wave: the operator is up and idle with its platform Ready; N Organizations are created (8
client threads); the clock runs until all are Ready at their generation; the counters are read
once the reconcile count has been still for 2 s. Per tenant it reports the CPU of the operator
(watcher + every worker process and pool child), of the emulators and of redis-server (from
/proc), the external calls by system and operation (the emulators' counters), the Redis
commands (INFO commandstats) and the reconciles (the workers' /metrics); and tenants/s with the
ratio to the baseline. Shapes:

  baseline  1 worker × concurrency 1: one reconcile at a time, the spec's controller
  default   2 workers with `polycrate operator worker`'s default pool and concurrency
  prefork   2 workers × 4, --pool prefork (for comparison)
  threads   2 workers × 32, --pool threads (for comparison; not in the presets)

  touch       after the default wave, every converged tenant gets an annotation change: the
              external writes (target 0) and reconciles it caused
  coalescing  U rapid spec updates to one Organization: reconciles run vs updates sent

Numbers are medians of rounds; the machine is shared and noisy, so read ratios and per-tenant
counts rather than absolute seconds. --json writes the whole report (every round) for tools.

Usage: python benchmarks/run.py --quick            (about 3 minutes)
       python benchmarks/run.py [--rounds 3] [--objects 100] [--baseline-objects 15] [--latency-ms 50]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.costs import Cost  # noqa: E402
from benchmarks.separate import SeparateWorld  # noqa: E402
from benchmarks.world import (  # noqa: E402
    GROUP,
    NAMESPACE,
    VERSION,
    World,
    organization,
    reconciles_by_outcome,
    wait_metric_settles,
)

__all__ = ["GROUP", "NAMESPACE", "VERSION", "World", "organization", "main"]


@dataclass(frozen=True)
class Shape:
    label: str
    workers: int
    concurrency: int | None  # None: the CLI's default
    pool: str | None  # None: the CLI's default


def worker_defaults() -> dict[str, Any]:
    """`polycrate operator worker`'s own defaults, so the default shape follows the CLI."""
    from cli.worker import worker

    params = {p.name: p.default for p in worker.params}
    return {"pool": params.get("pool"), "concurrency": params.get("concurrency") or os.cpu_count()}


def shapes() -> dict[str, Shape]:
    default = worker_defaults()
    return {
        "baseline": Shape("1 worker × 1 (one reconcile at a time)", 1, 1, None),
        "default": Shape(
            f"2 workers, CLI default ({default['pool']} × {default['concurrency']})", 2, None, None
        ),
        "prefork": Shape("2 workers × 4, prefork", 2, 4, "prefork"),
        "threads": Shape("2 workers × 32, threads", 2, 32, "threads"),
    }


PRESETS: dict[str, dict[str, Any]] = {
    "quick": {"rounds": 1, "objects": 60, "baseline_objects": 6, "configs": "baseline,default", "updates": 0},
    "full": {"rounds": 3, "objects": 100, "baseline_objects": 15, "configs": "baseline,default,prefork",
             "updates": 200},
}  # fmt: skip
TOUCH_ANNOTATION = "benchmarks.polycrate.io/touched"
STARTED = time.monotonic()


def progress(message: str) -> None:
    """Where the run is, on stderr (the report goes to stdout)."""
    print(f"[{time.monotonic() - STARTED:6.1f}s] {message}", file=sys.stderr, flush=True)


def measure_wave(world: SeparateWorld, shape: Shape, objects: int, idle_seconds: float) -> dict[str, Any]:
    """One wave of `objects` new tenants on a fresh world; the operator stays up afterwards."""
    progress(f"{shape.label}: fresh world")
    world.reset()
    progress(f"{shape.label}: starting the operator")
    world.start_operator(shape.workers, shape.concurrency, shape.pool)
    progress(f"{shape.label}: operator ready, measuring idle")
    quiet = world.snapshot()
    time.sleep(idle_seconds)
    before = world.snapshot()
    idle = Cost.between(quiet, before)
    progress(f"{shape.label}: creating {objects} Organizations")
    started = time.monotonic()
    world.create(objects, threads=8)
    world.wait_reconciled(objects, timeout=max(120.0, 10.0 * objects), poll=0.25)
    elapsed = time.monotonic() - started
    progress(f"{shape.label}: all Ready after {elapsed:.1f}s; waiting for the reconciles to settle")
    wait_metric_settles(world.metrics_ports)
    cost = Cost.between(before, world.snapshot())
    idle_calls = idle.calls_total()
    return {
        "objects": objects,
        "seconds": elapsed,
        "tenants_per_s": objects / elapsed,
        **cost.per_tenant(objects),
        "idle": {
            "operator_cpu_ms_per_s": 1000
            * (idle.cpu_seconds.get("watcher", 0.0) + idle.cpu_seconds.get("workers", 0.0))
            / idle.seconds,
            "redis_commands_per_s": sum(idle.redis_commands.values()) / idle.seconds,
            "external_calls_per_s": None if idle_calls is None else idle_calls / idle.seconds,
        },
    }


def measure_touch(world: SeparateWorld, objects: int) -> dict[str, Any]:
    """Annotate every converged tenant; what did the operator do about it?"""
    progress(f"touching {objects} converged Organizations")
    before = world.snapshot()
    stamp = str(time.time())

    def touch(index: int) -> None:
        world.custom.patch_namespaced_custom_object(
            GROUP, VERSION, NAMESPACE, "organizations", f"org-{index:04d}",
            {"metadata": {"annotations": {TOUCH_ANNOTATION: stamp}}},
        )  # fmt: skip

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(touch, range(objects)))
    # Give the watcher time to see the changes (it may rightly do nothing), then let it settle.
    deadline, runs = time.monotonic() + 5.0, sum(before.reconciles.values())
    while time.monotonic() < deadline and sum(reconciles_by_outcome(world.metrics_ports).values()) == runs:
        time.sleep(0.2)
    wait_metric_settles(world.metrics_ports)
    cost = Cost.between(before, world.snapshot())
    figures = cost.per_tenant(objects)
    writes = cost.calls_total(writes_only=True)
    return {
        "objects": objects,
        "external_writes": writes,
        "external_writes_by_operation": cost.writes_by_operation(),
        "external_calls_per_tenant": figures["external_calls_per_tenant"],
        "external_calls_by_operation": figures["external_calls_by_operation"],
        "reconciles_per_tenant": figures["reconciles_per_tenant"],
        "reconcile_runs_by_outcome": figures["reconcile_runs_by_outcome"],
        "cpu_ms_per_tenant": figures["cpu_ms_per_tenant"],
        "redis_commands_per_tenant": figures["redis_commands_per_tenant"],
    }


def measure_coalescing(world: SeparateWorld, updates: int) -> float:
    """Reconciles of one key after `updates` rapid spec updates (1 worker × 4)."""
    world.reset()
    world.start_operator(1, 4, None)
    world.create(1)
    world.wait_reconciled(1, timeout=120)
    before = wait_metric_settles(world.metrics_ports)
    for index in range(updates):
        world.custom.patch_namespaced_custom_object(
            GROUP, VERSION, NAMESPACE, "organizations", "org-0000", {"spec": {"displayName": f"v{index}"}}
        )
    world.wait_reconciled(1, timeout=120)
    after = wait_metric_settles(world.metrics_ports)
    world.stop_processes()
    return after - before


def median_of(values: list[Any]) -> Any:
    """The median of each number across rounds, recursing into dicts (a key missing in a round
    counts 0 there: an operation not called); None (unknown) is skipped."""
    present = [v for v in values if v is not None]
    if not present:
        return None
    if all(isinstance(v, dict) for v in present):
        keys = dict.fromkeys(k for v in present for k in v)
        return {k: median_of([v.get(k, 0) for v in present]) for k in keys}
    if all(isinstance(v, int | float) for v in present):
        return statistics.median(present)
    return present[-1]


def targets(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets (issue 9) against this run's medians for the default shape."""
    default = report["results"].get("default")
    touch = report.get("touch")
    if default is None:
        return []

    def target(what: str, value: Any, limit: float, at_least: bool = False) -> dict[str, Any]:
        met = None if value is None else (value >= limit if at_least else value <= limit)
        return {"what": what, "target": f"{'≥' if at_least else '≤'} {limit:g}", "value": value, "met": met}

    return [
        target("tenants/s vs baseline (default shape)", report["ratios"].get("default"), 20, at_least=True),
        target("operator CPU ms per tenant", default["cpu_ms_per_tenant"]["operator"], 30),
        target("external calls per tenant", default["external_calls_per_tenant"]["total"], 13),
        target("Redis commands per tenant", default["redis_commands_per_tenant"], 40),
        target("reconciles per tenant", default["reconciles_per_tenant"], 1.1),
        target("external writes when every tenant is touched", None if touch is None else touch["external_writes"], 0),
    ]  # fmt: skip


def _fmt(value: Any, digits: int = 1) -> str:
    return "unknown" if value is None else f"{value:.{digits}f}"


def print_report(report: dict[str, Any]) -> None:
    machine, results = report["machine"], report["results"]
    names = list(results)
    print()
    print(f"machine: {machine['cpus']} cores (shared, noisy); {machine['latency_ms']:g} ms per request on every "
          f"emulated system and the Kubernetes API; {machine['rounds']} round(s), medians")  # fmt: skip
    for name in names:
        shape = report["shapes"][name]
        print(f"  {name:<9} {shape['label']}, {results[name]['objects']:.0f} Organizations")
    rows: list[tuple[str, Any]] = [
        ("tenants/s", lambda r: _fmt(r["tenants_per_s"], 2)),
        ("ratio to baseline", lambda r: None),
        ("operator CPU ms/tenant", lambda r: _fmt(r["cpu_ms_per_tenant"]["operator"])),
        ("  watcher", lambda r: _fmt(r["cpu_ms_per_tenant"]["watcher"])),
        ("  workers", lambda r: _fmt(r["cpu_ms_per_tenant"]["workers"])),
        ("emulators CPU ms/tenant", lambda r: _fmt(r["cpu_ms_per_tenant"]["emulators"])),
        ("  Kubernetes API", lambda r: _fmt(r["cpu_ms_per_tenant"]["kube_emulator"])),
        ("  systems", lambda r: _fmt(r["cpu_ms_per_tenant"]["system_emulators"])),
        ("redis-server CPU ms/tenant", lambda r: _fmt(r["cpu_ms_per_tenant"]["redis"])),
        ("benchmark client CPU ms/tenant", lambda r: _fmt(r["cpu_ms_per_tenant"]["benchmark_client"])),
        ("external calls/tenant", lambda r: _fmt(r["external_calls_per_tenant"]["total"])),
        *[
            (f"  {system}", lambda r, s=system: _fmt(r["external_calls_per_tenant"]["by_system"].get(s)))
            for system in ("keycloak", "gitlab", "harbor", "argocd", "polycrate_api")
        ],
        ("  of which writes", lambda r: _fmt(r["external_calls_per_tenant"]["writes"])),
        ("Redis commands/tenant", lambda r: _fmt(r["redis_commands_per_tenant"])),
        ("reconciles/tenant", lambda r: _fmt(r["reconciles_per_tenant"], 2)),
        ("idle operator CPU ms/s", lambda r: _fmt(r["idle"]["operator_cpu_ms_per_s"])),
        ("idle Redis commands/s", lambda r: _fmt(r["idle"]["redis_commands_per_s"])),
    ]
    print()
    print(f"{'':<31}" + "".join(f"{name:>12}" for name in names))
    for label, cell in rows:
        if label == "ratio to baseline":
            values = [
                _fmt(report["ratios"].get(name), 2) + "x" if name in report["ratios"] else "1x"
                for name in names
            ]
        else:
            values = [cell(results[name]) for name in names]
        print(f"{label:<31}" + "".join(f"{value:>12}" for value in values))
    for name in names:
        print()
        print(f"external calls per tenant by operation ({name}):")
        for system, operations in results[name]["external_calls_by_operation"].items():
            if operations is None:
                print(f"  {system:<14} (no per-operation counter)")
                continue
            for operation, count in operations.items():
                if count:
                    print(f"  {system:<14} {count:6.2f}  {operation}")
        top = list(results[name]["redis_commands_by_name"].items())[:8]
        print(f"Redis commands per tenant ({name}): " + ", ".join(f"{c} {n:.1f}" for c, n in top))
    touch = report.get("touch")
    if touch:
        print()
        print(
            f"touch: an annotation change on each of {touch['objects']:.0f} converged tenants (default shape)"
        )
        print(f"  external writes: {_fmt(touch['external_writes'], 0)} in total (target 0)"
              + "".join(f"; {op} {n:.0f}" for op, n in touch["external_writes_by_operation"].items()))  # fmt: skip
        print(f"  external calls/tenant {_fmt(touch['external_calls_per_tenant']['total'], 2)}, reconciles/tenant "
              f"{_fmt(touch['reconciles_per_tenant'], 2)}, operator CPU ms/tenant "
              f"{_fmt(touch['cpu_ms_per_tenant']['operator'])}, Redis commands/tenant "
              f"{_fmt(touch['redis_commands_per_tenant'])}")  # fmt: skip
    coalescing = report.get("coalescing")
    if coalescing:
        print()
        print(f"coalescing: {coalescing['updates']} rapid updates to one Organization -> "
              f"{coalescing['reconciles']:.0f} reconciles (one task per event would be {coalescing['updates']})")  # fmt: skip
    if report["targets"]:
        print()
        print("targets (issue 9), default shape:")
        for t in report["targets"]:
            state = {True: "met", False: "NOT met", None: "unknown"}[t["met"]]
            print(f"  {t['what']:<48} {t['target']:>6}   now {_fmt(t['value'], 2):>8}   {state}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=f"Presets: --quick {PRESETS['quick']}; without --quick {PRESETS['full']}",
    )  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="the quick preset (about 3 minutes)")
    parser.add_argument("--rounds", type=int, help="rounds per shape (median reported)")
    parser.add_argument(
        "--objects", type=int, help="Organizations per wave of the default and prefork shapes"
    )
    parser.add_argument(
        "--baseline-objects", type=int, help="Organizations per baseline wave (a rate is compared)"
    )
    parser.add_argument("--configs", help="comma-separated shapes: baseline,default,prefork,threads")
    parser.add_argument("--updates", type=int, help="rapid updates for the coalescing scenario (0: skip)")
    parser.add_argument("--no-touch", action="store_true", help="skip the touch scenario")
    parser.add_argument("--latency-ms", type=float, default=50.0, help="per request, every emulated system")
    parser.add_argument("--idle-seconds", type=float, default=3.0, help="idle measurement before each wave")
    parser.add_argument("--json", type=Path, help="write the whole report (every round) as JSON here")
    args = parser.parse_args(argv)
    preset = PRESETS["quick" if args.quick else "full"]
    for key, value in preset.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.preset = "quick" if args.quick else "full"
    return args


def run(args: argparse.Namespace) -> dict[str, Any]:
    known = shapes()
    names = [name.strip() for name in args.configs.split(",") if name.strip()]
    unknown = [name for name in names if name not in known]
    if unknown:
        raise SystemExit(f"unknown shape(s) {unknown}; choose from {list(known)}")
    rounds: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    touches: list[dict[str, Any]] = []
    coalesced: list[float] = []
    with tempfile.TemporaryDirectory(prefix="polycrate-bench-") as tmp:
        progress("starting redis-server and the emulated systems")
        world = SeparateWorld(Path(tmp), args.latency_ms)
        try:
            for round_no in range(1, args.rounds + 1):
                for name in names:
                    objects = args.baseline_objects if name == "baseline" else args.objects
                    result = measure_wave(world, known[name], objects, args.idle_seconds)
                    rounds[name].append(result)
                    line = (f"round {round_no} {name}: {objects} in {result['seconds']:.1f}s "
                            f"({result['tenants_per_s']:.2f}/s)")  # fmt: skip
                    if name == "default" and not args.no_touch:
                        touches.append(measure_touch(world, objects))
                        line += f"; touch: {_fmt(touches[-1]['external_writes'], 0)} external writes"
                    progress(f"{name}: stopping the operator")
                    world.stop_processes()
                    print(line, flush=True)
                if args.updates:
                    coalesced.append(measure_coalescing(world, args.updates))
                    print(f"round {round_no} coalescing: {coalesced[-1]:.0f}/{args.updates}", flush=True)
        finally:
            world.close()
    results = {name: median_of(values) for name, values in rounds.items()}
    ratios = {}
    if "baseline" in results:
        for name in names:
            if name != "baseline":
                ratios[name] = results[name]["tenants_per_s"] / results["baseline"]["tenants_per_s"]
    report: dict[str, Any] = {
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "preset": args.preset,
        "machine": {"cpus": os.cpu_count(), "latency_ms": args.latency_ms, "rounds": args.rounds},
        "shapes": {name: asdict(known[name]) for name in names},
        "results": results,
        "ratios": ratios,
        "touch": median_of(touches) if touches else None,
        "coalescing": {"updates": args.updates, "reconciles": statistics.median(coalesced)}
        if coalesced
        else None,
        "rounds": rounds,
    }
    report["targets"] = targets(report)
    return report


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    report = run(args)
    print_report(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
