"""End to end through real processes: kubectl → emulator → watcher → Redis → embedded worker →
status in the cluster → `kubectl get` and `polycrate operator status`.

One `polycrate operator run --workers 1` process (watcher plus embedded Celery worker) against
the Kubernetes emulator and the test's redis-server, running as the ServiceAccount of deploy/
with exactly the RBAC of deploy/rbac.yaml; everything is applied with the real kubectl (admin).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import kubernetes
import pytest
import yaml
from click.testing import CliRunner

from cli import main
from sandbox.service_account import operator_kubeconfig
from tests.cli.operator_process import OperatorProcess, OperatorProcesses
from tests.fixtures.kube import Kubectl
from tests.tasks.support import platform_manifests

REPOSITORY_ROOT = Path(__file__).resolve().parents[2]
CRDS = REPOSITORY_ROOT / "deploy" / "crds"
EXAMPLES = REPOSITORY_ROOT / "examples"


def wait_for(condition: Callable[[], Any], timeout: float, what: str, operator: OperatorProcess) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout} s waiting for {what}; operator log:\n{operator.log()}"
            )
        time.sleep(0.1)


def get_json(kubectl: Kubectl, *args: str) -> dict[str, Any]:
    return json.loads(kubectl("get", *args, "-o", "json").stdout)


def reconciled(kubectl: Kubectl, resource: str, name: str) -> dict[str, Any] | None:
    obj = get_json(kubectl, resource, name, "-n", "polycrate")
    status = obj.get("status") or {}
    if status.get("observedGeneration") == obj["metadata"]["generation"] and status.get("phase"):
        return obj
    return None


def without_quota_pattern(crd: dict[str, Any]) -> dict[str, Any]:
    """The HarborProject CRD as an older release shipped it: storageQuota not yet checked by the API."""
    quota = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"][
        "storageQuota"
    ]
    del quota["pattern"]
    return crd


@pytest.fixture
def world(
    kubectl: Kubectl,
    kube_install_crd: Callable[..., dict],
    tmp_path: Path,
    kubeconfig: str,
    redis_url: str,
    keycloak_emulator: Any,
    gitlab_emulator: Any,
    harbor: Any,
    argocd: Any,
) -> Iterator[Callable[..., OperatorProcess]]:
    """The cluster with the SDP; `world(*args, namespaces=...)` starts the operator as its ServiceAccount."""
    kubectl("apply", "-f", str(EXAMPLES / "00-namespaces.yaml"))
    kube_install_crd(CRDS / "organizations.polycrate.io.yaml")
    kube_install_crd(CRDS / "softwaredeliveryplatforms.polycrate.io.yaml")
    # The Organization's SDP "production", its systems being the emulators over HTTP.
    platform = platform_manifests(
        "polycrate",
        "production",
        keycloak=keycloak_emulator,
        gitlab=gitlab_emulator,
        harbor=harbor,
        argocd=argocd,
    )
    kubectl("apply", "-f", "-", input=yaml.safe_dump_all(platform))
    kube_install_crd(
        without_quota_pattern(yaml.safe_load((CRDS / "harborprojects.polycrate.io.yaml").read_text()))
    )
    processes: list[OperatorProcesses] = []

    def start(*args: str, namespaces: tuple[str, ...] = ()) -> OperatorProcess:
        with kubernetes.config.new_client_from_config(config_file=kubeconfig) as admin:
            as_service_account = operator_kubeconfig(
                admin, kubeconfig, tmp_path / "operator-kubeconfig", namespaces=namespaces
            )
        processes.append(OperatorProcesses(tmp_path, str(as_service_account), redis_url))
        operator = processes[-1].start(*args, *(f"--namespace={ns}" for ns in namespaces))
        operator.wait_ready()
        return operator

    yield start
    for started in processes:
        started.kill_all()


@pytest.fixture
def operator(world: Callable[..., OperatorProcess]) -> OperatorProcess:
    return world("--workers", "1")


@pytest.mark.slow
def test_an_organization_applied_with_kubectl_is_reconciled_and_shown_everywhere(
    operator: OperatorProcess, kubectl: Kubectl, kubeconfig: str, redis_url: str
) -> None:
    kubectl("apply", "-f", str(EXAMPLES / "organization-acme-corp.yaml"))

    org = wait_for(lambda: reconciled(kubectl, "org", "acme-corp"), 45, "the Organization's status", operator)
    assert org["status"]["phase"] == "Ready"
    assert org["status"]["observedGeneration"] == org["metadata"]["generation"] == 1
    ready = {c["type"]: c for c in org["status"]["conditions"]}["Ready"]
    assert ready["status"] == "True"
    table = kubectl("get", "org", "-n", "polycrate").stdout.splitlines()
    assert table[0].split()[:3] == ["NAME", "SDP", "PHASE"]
    assert table[1].split()[:3] == ["acme-corp", "production", "Ready"]

    status = CliRunner().invoke(
        main, ["operator", "status", "--kubeconfig", kubeconfig], env={"REDIS_URL": redis_url}
    )
    assert status.exit_code == 0, status.output
    rows = [line.split() for line in status.output.splitlines()]
    assert ["acme-corp", "polycrate", "production", "Ready"] in rows
    assert status.output.startswith(
        "Polycrate Operator Status\n=========================\nCluster: http://127.0.0.1:"
    )

    kubectl(
        "patch",
        "org",
        "acme-corp",
        "-n",
        "polycrate",
        "--type",
        "merge",
        "-p",
        '{"spec":{"displayName":"ACME"}}',
    )
    updated = wait_for(
        lambda: (
            (obj := reconciled(kubectl, "org", "acme-corp")) and obj["metadata"]["generation"] == 2 and obj
        ),
        30,
        "the second generation to be observed",
        operator,
    )
    as_json = CliRunner().invoke(
        main, ["operator", "status", "--kubeconfig", kubeconfig, "-o", "json"], env={"REDIS_URL": redis_url}
    )
    entry = json.loads(as_json.output)["kinds"]["Organization"]["objects"][0]
    assert (entry["name"], entry["phase"], entry["observedGeneration"]) == ("acme-corp", "Ready", 2)
    assert updated["status"]["observedGeneration"] == 2
    # Provisioned for real, not only validated: the Organization's group exists in the emulated GitLab.
    assert org["status"]["gitlabGroupID"]


@pytest.mark.slow
def test_an_invalid_harbor_project_ends_in_error_naming_the_field_with_an_event_and_no_hot_loop(
    operator: OperatorProcess, kubectl: Kubectl
) -> None:
    manifest = (EXAMPLES / "harborproject-shared-images.yaml").read_text().replace('"100Gi"', '"50Gx"')
    kubectl("apply", "-f", "-", input=manifest)

    project = wait_for(
        lambda: reconciled(kubectl, "hp", "shared-images"), 45, "the HarborProject's status", operator
    )
    assert project["status"]["phase"] == "Error"
    message = {c["type"]: c for c in project["status"]["conditions"]}["Ready"]["message"]
    assert "storageQuota" in message
    assert "50Gx" in message
    events = get_json(
        kubectl, "events", "-n", "polycrate", "--field-selector", "involvedObject.name=shared-images"
    )["items"]
    assert any("storageQuota" in event["message"] and event["type"] == "Warning" for event in events)

    settled_version = project["metadata"]["resourceVersion"]
    time.sleep(3)
    assert (
        get_json(kubectl, "hp", "shared-images", "-n", "polycrate")["metadata"]["resourceVersion"]
        == settled_version
    )
    events_later = get_json(
        kubectl, "events", "-n", "polycrate", "--field-selector", "involvedObject.name=shared-images"
    )["items"]
    assert sum(event.get("count", 1) for event in events_later) <= 2, "a permanent error is not retried"


@pytest.mark.slow
def test_a_namespaced_operator_under_the_role_variant_reconciles_its_namespace_and_not_others(
    world: Callable[..., OperatorProcess], kubectl: Kubectl
) -> None:
    operator = world("--workers", "1", namespaces=("polycrate",))
    kubectl("create", "namespace", "elsewhere")
    kubectl("apply", "-f", str(EXAMPLES / "organization-acme-corp.yaml"))
    kubectl("apply", "-f", "-", input=(EXAMPLES / "organization-acme-corp.yaml").read_text().replace(
        "namespace: polycrate", "namespace: elsewhere"))  # fmt: skip

    org = wait_for(lambda: reconciled(kubectl, "org", "acme-corp"), 45, "the Organization's status", operator)
    assert org["status"]["phase"] == "Ready"
    time.sleep(2)
    outside = get_json(kubectl, "org", "acme-corp", "-n", "elsewhere")
    assert "status" not in outside, "an operator serving polycrate never touches elsewhere"
    assert "finalizers" not in outside["metadata"]
    assert "forbidden" not in operator.log().lower(), "the Role variant grants every call it makes"
    assert "namespaces polycrate" in operator.log()
