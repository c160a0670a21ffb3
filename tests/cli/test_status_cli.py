"""`polycrate operator status`: the spec's table (✓/✗ per SDP system), JSON for scripts, one-line errors."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import redis
from click.testing import CliRunner, Result

from cli import main
from polycrate.keys import ObjectKey
from tasks.queue import KeyQueue
from tests.cli.operator_process import free_port
from tests.fixtures.kube import Kubectl

REPOSITORY_ROOT = Path(__file__).resolve().parents[2]
CRDS = REPOSITORY_ROOT / "deploy" / "crds"
EXAMPLES = REPOSITORY_ROOT / "examples"

STAGING_SDP = """
apiVersion: polycrate.io/v1alpha1
kind: SoftwareDeliveryPlatform
metadata:
  name: staging
  namespace: polycrate
spec:
  keycloak:
    url: https://keycloak.staging.example.com
    realm: staging
    credentialsRef: {secretName: keycloak-creds, clientIdKey: client-id, clientSecretKey: client-secret}
"""


def status(kubeconfig: str, redis_url: str, *args: str) -> Result:
    return CliRunner().invoke(
        main, ["operator", "status", "--kubeconfig", kubeconfig, *args], env={"REDIS_URL": redis_url}
    )


def write_status(kubectl: Kubectl, resource: str, name: str, body: dict) -> None:
    kubectl(
        "patch", resource, name, "-n", "polycrate", "--subresource", "status", "--type", "merge",
        "-p", json.dumps({"status": body}),
    )  # fmt: skip


@pytest.fixture
def cluster(kubectl: Kubectl, kube_install_crd: Callable[..., dict]) -> Kubectl:
    kubectl("apply", "-f", str(EXAMPLES / "00-namespaces.yaml"))
    for plural in ("softwaredeliveryplatforms", "organizations", "harborprojects"):
        kube_install_crd(CRDS / f"{plural}.polycrate.io.yaml")
    kubectl("apply", "-f", str(EXAMPLES / "softwaredeliveryplatform-production.yaml"))
    kubectl("apply", "-f", "-", input=STAGING_SDP)
    kubectl("apply", "-f", str(EXAMPLES / "organization-acme-corp.yaml"))
    write_status(
        kubectl,
        "sdp",
        "production",
        {
            "phase": "Ready",
            "keycloakReady": True,
            "gitlabReady": True,
            "harborReady": False,
            "argoCDReady": True,
        },
    )
    write_status(kubectl, "sdp", "staging", {"phase": "Error", "keycloakReady": False})
    write_status(kubectl, "org", "acme-corp", {"phase": "Ready", "observedGeneration": 1})
    return kubectl


def rows_of(output: str, title: str) -> list[list[str]]:
    """The table rows (header first) of one section of the status output."""
    lines = output.splitlines()
    start = lines.index(title) + 2
    rows = []
    for line in lines[start:]:
        if not line.strip():
            break
        rows.append(line.split())
    return rows


def test_the_table_shows_sdps_with_a_mark_per_system_and_organizations_with_their_sdp(
    cluster: Kubectl, kubeconfig: str, redis_url: str
) -> None:
    result = status(kubeconfig, redis_url)

    assert result.exit_code == 0, result.output
    assert rows_of(result.output, "SoftwareDeliveryPlatforms") == [
        ["NAME", "NAMESPACE", "PHASE", "KEYCLOAK", "GITLAB", "HARBOR", "ARGOCD"],
        ["production", "polycrate", "Ready", "✓", "✓", "✗", "✓"],
        ["staging", "polycrate", "Error", "✗", "-", "-", "-"],
    ]
    assert rows_of(result.output, "Organizations") == [
        ["NAME", "NAMESPACE", "SDP", "PHASE"],
        ["acme-corp", "polycrate", "production", "Ready"],
    ]


def test_other_kinds_appear_with_their_printer_columns_once_they_have_objects(
    cluster: Kubectl, kubeconfig: str, redis_url: str
) -> None:
    assert "HarborProjects" not in status(kubeconfig, redis_url).output

    cluster("apply", "-f", str(EXAMPLES / "harborproject-shared-images.yaml"))
    result = status(kubeconfig, redis_url)

    assert rows_of(result.output, "HarborProjects") == [
        ["NAME", "NAMESPACE", "PROJECT", "PUBLIC", "QUOTA", "PHASE"],
        ["shared-images", "polycrate", "shared-images", "false", "100Gi", "-"],
    ]


def test_the_work_queue_section_counts_pending_keys(
    cluster: Kubectl, kubeconfig: str, redis_url: str, redis_client: redis.Redis
) -> None:
    queue = KeyQueue(redis_client, sender=lambda key, task_id, countdown: None)
    queue.add(ObjectKey("Organization", "polycrate", "acme-corp"))
    queue.add(ObjectKey("Contact", "polycrate", "john-doe"))

    result = status(kubeconfig, redis_url)

    assert "  pending keys: 2   running: 0" in result.output.splitlines()


def test_json_output_carries_phases_generations_and_systems(
    cluster: Kubectl, kubeconfig: str, redis_url: str
) -> None:
    result = status(kubeconfig, redis_url, "-o", "json")

    report = json.loads(result.output)
    production = report["kinds"]["SoftwareDeliveryPlatform"]["objects"][0]
    assert production["systems"] == {"keycloak": True, "gitlab": True, "harbor": False, "argocd": True}
    organization = report["kinds"]["Organization"]["objects"][0]
    assert (organization["name"], organization["phase"], organization["observedGeneration"]) == (
        "acme-corp",
        "Ready",
        1,
    )
    assert report["kinds"]["Contact"] == {"installed": False, "objects": []}
    assert report["queue"]["pending"] == 0


def test_a_missing_crd_is_named_in_the_table(kubectl: Kubectl, kubeconfig: str, redis_url: str) -> None:
    result = status(kubeconfig, redis_url)

    assert result.exit_code == 0, result.output
    assert "  CRD softwaredeliveryplatforms.polycrate.io is not installed" in result.output.splitlines()


def test_an_unreachable_cluster_is_one_line_and_exit_1(tmp_path: Path, redis_url: str) -> None:
    port = free_port()
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        f"""
apiVersion: v1
kind: Config
clusters: [{{name: gone, cluster: {{server: "http://127.0.0.1:{port}"}}}}]
users: [{{name: someone, user: {{}}}}]
contexts: [{{name: gone, context: {{cluster: gone, user: someone}}}}]
current-context: gone
"""
    )

    result = status(str(kubeconfig), redis_url)

    assert result.exit_code == 1
    assert result.output.count("\n") == 1
    assert f"Kubernetes API at http://127.0.0.1:{port} is unreachable" in result.output


def test_an_unreachable_redis_still_lists_the_resources_and_marks_the_queue_unknown(
    cluster: Kubectl, kubeconfig: str
) -> None:
    port = free_port()

    result = status(kubeconfig, f"redis://:hunter2@127.0.0.1:{port}/0")

    assert result.exit_code == 0, result.output
    assert ["acme-corp", "polycrate", "production", "Ready"] in rows_of(result.output, "Organizations")
    lines = result.output.splitlines()
    assert lines[lines.index("Work queue") + 2] == "  unknown (Redis unreachable)"
    assert f"Redis at redis://:***@127.0.0.1:{port}/0 is unreachable" in result.output
    assert "hunter2" not in result.output


def test_without_redis_url_status_needs_nothing_but_the_cluster(cluster: Kubectl, kubeconfig: str) -> None:
    # No REDIS_URL: the default localhost Redis is tried; here nothing answers there either.
    result = CliRunner().invoke(
        main,
        ["operator", "status", "--kubeconfig", kubeconfig, "-o", "json"],
        env={"REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"},
    )
    unset = CliRunner().invoke(
        main, ["operator", "status", "--kubeconfig", kubeconfig], env={"REDIS_URL": None}
    )

    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["queue"]["reachable"] is False and "is unreachable" in report["queue"]["error"]
    assert report["kinds"]["Organization"]["objects"][0]["phase"] == "Ready"
    assert unset.exit_code == 0, unset.output
    assert "SoftwareDeliveryPlatforms" in unset.output and "Work queue" in unset.output


def test_the_table_shows_why_an_object_is_not_ready(
    cluster: Kubectl, kubeconfig: str, redis_url: str
) -> None:
    message = (
        "SoftwareDeliveryPlatform polycrate/staging: Keycloak: Secret polycrate/keycloak-creds not found"
    )
    write_status(
        cluster,
        "sdp",
        "staging",
        {
            "phase": "Error",
            "conditions": [
                {
                    "type": "Ready", "status": "False", "reason": "DependencyNotFound", "message": message,
                    "lastTransitionTime": "2026-01-06T14:30:00Z",
                }
            ],
        },
    )  # fmt: skip

    result = status(kubeconfig, redis_url)

    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    header = lines[lines.index("SoftwareDeliveryPlatforms") + 2]
    assert header.split() == [
        "NAME",
        "NAMESPACE",
        "PHASE",
        "KEYCLOAK",
        "GITLAB",
        "HARBOR",
        "ARGOCD",
        "MESSAGE",
    ]
    staging = next(line for line in lines if line.strip().startswith("staging"))
    assert staging.rstrip().endswith(message)
    production = next(line for line in lines if line.strip().startswith("production"))
    assert production.split()[-1] == "-"
    assert rows_of(result.output, "Organizations")[0] == ["NAME", "NAMESPACE", "SDP", "PHASE"], (
        "a section whose objects are all fine keeps the spec's columns"
    )
