"""`polycrate operator run` as real processes: start-up errors are one line, only the leader
enqueues, a SIGKILLed leader is replaced within the lease duration, SIGTERM releases the Lease.

The watchers run with `--workers 0` (no embedded worker), so every key they enqueue stays
pending in Redis where the test can see it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import kubernetes
import pytest
import redis
import requests
from click.testing import CliRunner, Result

from cli import main
from polycrate.keys import ObjectKey
from sandbox.service_account import operator_kubeconfig
from tasks.queue import KeyQueue
from tests.cli.operator_process import OperatorProcesses, free_port
from tests.fixtures.kube import Kubectl

REPOSITORY_ROOT = Path(__file__).resolve().parents[2]
ORGANIZATION_CRD = REPOSITORY_ROOT / "deploy" / "crds" / "organizations.polycrate.io.yaml"
LEASE_DURATION = 2.0
LEADER_ELECTION = (
    "--leader-elect",
    "--leader-election-id", "cli-test",
    "--lease-duration", str(LEASE_DURATION),
    "--renew-deadline", "1.5",
    "--retry-period", "0.2",
)  # fmt: skip


def organization(name: str) -> str:
    return f"""
apiVersion: polycrate.io/v1alpha1
kind: Organization
metadata:
  name: {name}
  namespace: polycrate
spec:
  sdp: production
"""


def wait_for(condition: Callable[[], object], timeout: float, what: str) -> float:
    """Poll until `condition()` is truthy; return the seconds it took."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)
    return time.monotonic() - started


@pytest.fixture
def cluster(kubectl: Kubectl, kube_install_crd: Callable[..., dict]) -> Kubectl:
    """The emulator with the polycrate namespace (for the Lease) and the Organization CRD."""
    kubectl("create", "namespace", "polycrate")
    kube_install_crd(ORGANIZATION_CRD)
    return kubectl


@pytest.fixture
def operators(
    cluster: Kubectl,
    kube_api_client: kubernetes.client.ApiClient,
    tmp_path: Path,
    kubeconfig: str,
    redis_url: str,
) -> Iterator[OperatorProcesses]:
    """Operator processes running as the ServiceAccount of deploy/, with its RBAC (Lease included)."""
    as_service_account = operator_kubeconfig(kube_api_client, kubeconfig, tmp_path / "operator-kubeconfig")
    processes = OperatorProcesses(tmp_path, str(as_service_account), redis_url)
    yield processes
    processes.kill_all()


@pytest.fixture
def key_queue(redis_client: redis.Redis) -> KeyQueue:
    return KeyQueue(redis_client)


def run_cli(*args: str, env: dict[str, str]) -> Result:
    return CliRunner().invoke(main, ["operator", "run", *args], env=env)


def test_run_with_redis_unreachable_is_one_line_and_exit_1(kubeconfig: str) -> None:
    port = free_port()

    result = run_cli("--kubeconfig", kubeconfig, env={"REDIS_URL": f"redis://:s3cret@127.0.0.1:{port}/0"})

    assert result.exit_code == 1
    assert result.output.count("\n") == 1
    assert f"Redis at redis://:***@127.0.0.1:{port}/0 is unreachable" in result.output
    assert "s3cret" not in result.output


def test_run_with_the_cluster_unreachable_is_one_line_and_exit_1(tmp_path: Path, redis_url: str) -> None:
    port = free_port()
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        f"""
apiVersion: v1
kind: Config
clusters: [{{name: gone, cluster: {{server: "http://127.0.0.1:{port}"}}}}]
users: [{{name: someone, user: {{token: do-not-print-me}}}}]
contexts: [{{name: gone, context: {{cluster: gone, user: someone}}}}]
current-context: gone
"""
    )

    result = run_cli("--kubeconfig", str(kubeconfig), env={"REDIS_URL": redis_url})

    assert result.exit_code == 1
    assert result.output.count("\n") == 1
    assert f"Kubernetes API at http://127.0.0.1:{port} is unreachable" in result.output
    assert "do-not-print-me" not in result.output


def test_run_rejects_leader_timings_that_could_make_two_leaders(kubeconfig: str, redis_url: str) -> None:
    result = run_cli(
        "--kubeconfig",
        kubeconfig,
        "--lease-duration",
        "5",
        "--renew-deadline",
        "6",
        env={"REDIS_URL": redis_url},
    )

    assert result.exit_code == 1
    assert "retry_period < renew_deadline < lease_duration" in result.output


def test_only_the_leader_enqueues_and_a_killed_leader_is_replaced_within_the_lease_duration(
    cluster: Kubectl, operators: OperatorProcesses, key_queue: KeyQueue
) -> None:
    first = operators.start("--workers", "0", *LEADER_ELECTION)
    first.wait_ready()
    wait_for(lambda: first.is_leader, 10, "the first watcher to lead")
    second = operators.start("--workers", "0", *LEADER_ELECTION)
    second.wait_ready()

    cluster("apply", "-f", "-", input=organization("acme-corp"))
    enqueued = 'polycrate_watcher_keys_enqueued_total{kind="Organization"}'
    wait_for(lambda: first.metric(enqueued) >= 1, 10, "the leader to enqueue")
    assert ObjectKey("Organization", "polycrate", "acme-corp") in key_queue.pending()
    assert not second.is_leader
    assert second.metric('polycrate_watcher_events_total{kind="Organization",type="ADDED"}') == 0
    assert second.metric(enqueued) == 0

    first.kill()
    took = wait_for(lambda: second.is_leader, LEASE_DURATION + 3, "the standby to take over")

    assert took < LEASE_DURATION + 1.0
    cluster("apply", "-f", "-", input=organization("globex"))
    wait_for(
        lambda: ObjectKey("Organization", "polycrate", "globex") in key_queue.pending(),
        10,
        "new leader enqueues",
    )


def test_sigterm_releases_the_lease_and_exits_0(cluster: Kubectl, operators: OperatorProcesses) -> None:
    operator = operators.start("--workers", "0", *LEADER_ELECTION)
    operator.wait_ready()
    wait_for(lambda: operator.is_leader, 10, "leadership")

    assert operator.terminate() == 0
    holder = cluster(
        "get", "lease", "cli-test", "-n", "polycrate", "-o", "jsonpath={.spec.holderIdentity}"
    ).stdout
    assert holder == ""
    assert "released Lease polycrate/cli-test" in operator.log()


def test_health_cli_reports_a_running_operator_healthy_and_a_dead_one_not(
    cluster: Kubectl, operators: OperatorProcesses
) -> None:
    operator = operators.start("--workers", "0")
    operator.wait_ready()

    healthy = CliRunner().invoke(main, ["operator", "health", "--url", operator.probe_url])
    operator.kill()
    dead = CliRunner().invoke(main, ["operator", "health", "--url", operator.probe_url, "--timeout", "1"])

    assert healthy.exit_code == 0, healthy.output
    assert dead.exit_code == 1
    assert "does not answer" in dead.output


def test_the_lease_lives_in_the_operators_own_namespace_and_logs_are_json(
    kubectl: Kubectl,
    kube_install_crd: Callable[..., dict],
    kube_api_client: kubernetes.client.ApiClient,
    kubeconfig: str,
    redis_url: str,
    tmp_path: Path,
) -> None:
    # Installed into `ops` (deploy/ with an overlay): no `polycrate` namespace exists at all, and
    # the ServiceAccount's Lease Role lives in `ops` as kustomize's namespace transformer puts it.
    kube_install_crd(ORGANIZATION_CRD)
    as_service_account = operator_kubeconfig(
        kube_api_client, kubeconfig, tmp_path / "operator-kubeconfig", operator_namespace="ops"
    )
    operators = OperatorProcesses(tmp_path, str(as_service_account), redis_url)
    try:
        operator = operators.start(
            "--workers", "0", "--log-format", "json", *LEADER_ELECTION, environment={"POD_NAMESPACE": "ops"}
        )
        operator.wait_ready()
        wait_for(lambda: operator.is_leader, 10, "leadership")

        holder = kubectl(
            "get", "lease", "cli-test", "-n", "ops", "-o", "jsonpath={.spec.holderIdentity}"
        ).stdout
        assert holder
        scraped = requests.get(f"{operator.metrics_url}/metrics", timeout=5).text
        assert 'polycrate_queue_depth{queue="harbor"} 0.0' in scraped
        assert operator.terminate() == 0
        lines = [json.loads(line) for line in operator.log().splitlines() if line.strip()]
        assert lines
        assert all(set(line) >= {"time", "level", "logger", "message"} for line in lines)
        assert any(line["message"] == "became leader (Lease ops/cli-test)" for line in lines)
    finally:
        operators.kill_all()
