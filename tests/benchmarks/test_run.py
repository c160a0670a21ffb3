"""benchmarks/run.py end to end with tiny sizes: every figure docs/benchmarks.md quotes is in
the report (values are the benchmark's business; here only their presence and plausibility)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

# Two shapes, each with its own operator processes: about two minutes on the shared 2-core
# development machine, most of it the Python start-up of the watcher and worker processes.
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SYSTEMS = {"keycloak", "gitlab", "harbor", "argocd", "polycrate_api"}
CPU_ROLES = {
    "operator", "watcher", "workers", "emulators", "kube_emulator", "system_emulators", "redis", "benchmark_client",
}  # fmt: skip


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, str]:
    report_path = tmp_path_factory.mktemp("bench") / "report.json"
    completed = subprocess.run(
        [sys.executable, "benchmarks/run.py", "--configs", "baseline,default", "--rounds", "1",
         "--objects", "2", "--baseline-objects", "1", "--latency-ms", "0", "--idle-seconds", "0.5",
         "--updates", "0", "--json", str(report_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=280,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-4000:]
    return json.loads(report_path.read_text()), completed.stdout


@pytest.mark.timeout(300)
def test_each_shape_reports_cpu_by_process_calls_by_operation_redis_commands_and_reconciles(
    tiny_run: tuple[dict, str],
) -> None:
    report, _ = tiny_run
    assert set(report["results"]) == {"baseline", "default"}
    for figures in report["results"].values():
        assert set(figures["cpu_ms_per_tenant"]) == CPU_ROLES
        assert figures["cpu_ms_per_tenant"]["workers"] > 0  # a reconcile is not free
        calls = figures["external_calls_per_tenant"]
        assert set(calls["by_system"]) == SYSTEMS
        assert calls["writes"] >= 4  # a new tenant is created in four systems
        keycloak = figures["external_calls_by_operation"]["keycloak"]
        assert any(operation.startswith("POST /admin/realms/{realm}/groups") for operation in keycloak)
        assert figures["redis_commands_per_tenant"] > 0
        assert figures["redis_commands_by_name"]
        assert figures["reconciles_per_tenant"] >= 1
        assert set(figures["idle"]) == {
            "operator_cpu_ms_per_s",
            "redis_commands_per_s",
            "external_calls_per_s",
        }
        assert figures["tenants_per_s"] > 0


@pytest.mark.timeout(300)
def test_the_ratio_touch_scenario_and_targets_are_reported(tiny_run: tuple[dict, str]) -> None:
    report, stdout = tiny_run
    assert report["ratios"]["default"] > 0
    touch = report["touch"]
    assert touch["objects"] == 2
    assert touch["external_writes"] is not None
    assert set(touch["external_calls_per_tenant"]["by_system"]) == SYSTEMS
    assert "reconciles_per_tenant" in touch
    assert [t["what"] for t in report["targets"]] == [
        "tenants/s vs baseline (default shape)",
        "operator CPU ms per tenant",
        "external calls per tenant",
        "Redis commands per tenant",
        "reconciles per tenant",
        "external writes when every tenant is touched",
    ]
    assert all(t["value"] is not None for t in report["targets"])
    for line in (
        "operator CPU ms/tenant",
        "external calls/tenant",
        "Redis commands/tenant",
        "touch:",
        "targets",
    ):
        assert line in stdout
