"""`polycrate operator plan` as a user runs it: a subprocess against the emulated cluster and
systems, with the spec's examples; nothing may be written, the exit code tells whether a
reconcile would change anything, and the emulators' own call counters are the proof."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gitlab as python_gitlab
import kubernetes
import pytest
import redis
import requests
import yaml

from emulators.argocd import ArgocdEmulator
from emulators.gitlab import GitLabEmulator
from emulators.harbor import HarborEmulator
from emulators.keycloak import KeycloakEmulator
from polycrate.keys import ObjectKey
from tests.tasks.flows.test_tenancy import _contact_group, _john_doe, _organization, _ready, tenancy_cluster
from tests.tasks.support import CRDS, example
from tests.tasks.test_handlers import Cluster
from workers import argocd as argocd_worker
from workers import gitlab as gitlab_worker
from workers import harbor as harbor_worker
from workers import keycloak as keycloak_worker


@pytest.fixture
def systems(
    keycloak_emulator: KeycloakEmulator,
    gitlab_emulator: GitLabEmulator,
    harbor: HarborEmulator,
    argocd: ArgocdEmulator,
) -> dict[str, Any]:
    for module in (keycloak_worker, gitlab_worker, harbor_worker, argocd_worker):
        module.clear_clients()
    return {"keycloak": keycloak_emulator, "gitlab": gitlab_emulator, "harbor": harbor, "argocd": argocd}


@pytest.fixture
def cluster(
    kube_api_client: kubernetes.client.ApiClient,
    redis_client: redis.Redis,
    kube_namespace: str,
    kube_install_crd: Callable[..., dict[str, Any]],
    systems: dict[str, Any],
) -> Cluster:
    return tenancy_cluster(kube_api_client, redis_client, kube_namespace, kube_install_crd, systems)


@pytest.fixture
def plan(kubeconfig: str, redis_url: str) -> Callable[..., subprocess.CompletedProcess[str]]:
    def run(*args: str, redis_at: str = redis_url) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "KUBECONFIG": kubeconfig, "REDIS_URL": redis_at}
        env.pop("POLYCRATE_KUBECONFIG", None)
        command = [sys.executable, "-m", "cli", "operator", "plan", *args]
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)

    return run


def _emulator_writes(systems: dict[str, Any]) -> Counter[str]:
    """Every non-GET call each emulator counted, read from its /_emulator/calls."""
    writes: Counter[str] = Counter()
    for name, system in systems.items():
        calls = requests.get(f"{system.url}/_emulator/calls", timeout=5).json()
        writes.update(
            {
                f"{name} {call}": n
                for call, n in calls.items()
                if not call.startswith("GET ") and not call.endswith("/openid-connect/token")  # a login
            }
        )
    return writes


def _changed_example(namespace: str, tmp_path: Path) -> Path:
    org = example("organization-acme-corp.yaml", namespace)
    org["spec"]["keycloak"]["groupName"] = "acme-inc"
    org["spec"]["harbor"]["storageQuota"] = "100Gi"
    org["spec"]["argocd"]["roleBindings"].append({"role": "viewer", "keycloakGroups": ["auditors"]})
    path = tmp_path / "organization.yaml"
    path.write_text(yaml.safe_dump(org))
    return path


def test_plan_of_a_changed_example_prints_the_diff_per_system_and_writes_nothing(
    cluster: Cluster, systems: dict[str, Any], plan: Callable[..., Any], tmp_path: Path
) -> None:
    key = _organization(cluster)
    cluster.reconcile(key)
    status_before = _ready(cluster, key)
    writes_before = _emulator_writes(systems)

    result = plan("-f", str(_changed_example(cluster.namespace, tmp_path)))

    assert result.returncode == 2, result.stderr
    out = result.stdout
    assert f"Organization {cluster.namespace}/acme-corp" in out
    assert 'Keycloak:\n  ~ update Keycloak group "/acme-corp" (renamed "/acme-corp" → "/acme-inc")' in out
    assert 'renamed "/acme-corp/acme-corp-admins" → "/acme-inc/acme-inc-admins"' in out
    assert 'Harbor:\n  ~ update Set storage quota of project "acme-corp" (50Gi → 100Gi)' in out
    assert 'Argo CD:\n  ~ update Update project "acme-corp" (role viewer: +group auditors)' in out
    assert "Plan: 0 to create," in out
    assert _emulator_writes(systems) == writes_before, "plan wrote to a system"
    after = cluster.get(key)
    assert after["metadata"]["resourceVersion"] == status_before["metadata"]["resourceVersion"]


def test_plan_of_a_converged_object_says_no_changes_and_exits_0(
    cluster: Cluster, systems: dict[str, Any], plan: Callable[..., Any]
) -> None:
    key = _organization(cluster)
    cluster.reconcile(key)
    writes_before = _emulator_writes(systems)

    live = plan(f"organization/{key.name}", "-n", cluster.namespace)
    from_file = plan(
        "-f", str(Path("examples/organization-acme-corp.yaml").resolve()), "-n", cluster.namespace
    )

    for result in (live, from_file):
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stdout.rstrip().endswith("no changes")
    assert _emulator_writes(systems) == writes_before


def test_plan_of_a_new_object_lists_everything_it_would_create(
    cluster: Cluster, systems: dict[str, Any], plan: Callable[..., Any], tmp_path: Path
) -> None:
    org = example("organization-acme-corp.yaml", cluster.namespace)
    path = tmp_path / "new.yaml"
    path.write_text(yaml.safe_dump(org))
    writes_before = _emulator_writes(systems)

    result = plan("-f", str(path))

    assert result.returncode == 2, result.stderr
    for line in (
        '+ create Keycloak group "/acme-corp"',
        '+ create Keycloak group "/acme-corp/acme-corp-developers"',
        '+ create GitLab group "acme-corp"',
        '+ create Create project "acme-corp"',
    ):
        assert line in result.stdout
    assert "Plan: 7 to create, 0 to change, 0 to delete." in result.stdout
    assert _emulator_writes(systems) == writes_before
    assert cluster.get(ObjectKey("Organization", cluster.namespace, "acme-corp")) is None


def test_plan_of_a_refused_rename_exits_1_with_the_reason(
    cluster: Cluster, plan: Callable[..., Any], tmp_path: Path
) -> None:
    spec = example("organization-acme-corp.yaml", cluster.namespace)
    del spec["spec"]["harbor"]["projectName"]
    key = cluster.create("organizations", spec)
    cluster.reconcile(key)
    spec["spec"]["harbor"]["projectName"] = "acme-new"
    path = tmp_path / "org.yaml"
    path.write_text(yaml.safe_dump(spec))

    result = plan("-f", str(path))

    assert result.returncode == 1
    assert "error: Organization" in result.stdout and "spec.harbor.projectName" in result.stdout


def test_plan_without_a_reachable_redis_still_plans_and_says_so(
    cluster: Cluster, plan: Callable[..., Any]
) -> None:
    key = _organization(cluster)
    cluster.reconcile(key)

    result = plan(f"org/{key.name}", "-n", cluster.namespace, redis_at="redis://127.0.0.1:1/0")

    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.rstrip().endswith("no changes")
    assert "planning without the shared rate limit" in result.stderr


def test_plan_of_a_new_standalone_harbor_project_lists_the_project_and_its_group_members(
    cluster: Cluster,
    systems: dict[str, Any],
    plan: Callable[..., Any],
    tmp_path: Path,
    kube_install_crd: Callable[..., dict[str, Any]],
) -> None:
    kube_install_crd(CRDS / "harborprojects.polycrate.io.yaml")
    cluster.reconcile(_organization(cluster))
    path = tmp_path / "project.yaml"
    path.write_text(yaml.safe_dump(example("harborproject-shared-images.yaml", cluster.namespace)))
    writes_before = _emulator_writes(systems)

    result = plan("-f", str(path))

    assert result.returncode == 2, result.stdout + result.stderr
    assert (
        'Harbor:\n  + create Create project "shared-images" in SDP "production" (public=false, storage quota 100Gi)'
        in result.stdout
    )
    assert (
        '+ create Add group "platform-admins" to project "shared-images" in SDP "production" (group platform-admins as projectAdmin)'
        in result.stdout
    )
    assert (
        '+ create Add group "acme-corp" to project "shared-images" in SDP "production" (group acme-corp as developer)'
        in result.stdout
    )
    assert _emulator_writes(systems) == writes_before


def test_plan_of_a_contacts_role_change_lists_the_membership_changes(
    cluster: Cluster,
    systems: dict[str, Any],
    plan: Callable[..., Any],
    tmp_path: Path,
    keycloak_stage: Any,
    gitlab_emulator: GitLabEmulator,
) -> None:
    admin = python_gitlab.Gitlab(gitlab_emulator.url, private_token=gitlab_emulator.admin_token)
    _john_doe(keycloak_stage, admin)
    cluster.reconcile(_organization(cluster))
    cluster.reconcile(_contact_group(cluster))
    contact = example("contact-john-doe.yaml", cluster.namespace)
    cluster.reconcile(cluster.create("contacts", contact))
    contact["spec"]["organizations"][0]["role"] = "admin"
    path = tmp_path / "contact.yaml"
    path.write_text(yaml.safe_dump(contact))
    writes_before = _emulator_writes(systems)

    result = plan("-f", str(path))

    assert result.returncode == 2, result.stdout + result.stderr
    out = result.stdout
    assert '+ create membership of john.doe in Keycloak group "/acme-corp/acme-corp-admins"' in out
    assert '- delete membership of john.doe in Keycloak group "/acme-corp/acme-corp-developers"' in out
    assert (
        '~ update membership of john.doe in GitLab group "acme-corp" (access level developer → maintainer)'
        in out
    )
    assert _emulator_writes(systems) == writes_before
