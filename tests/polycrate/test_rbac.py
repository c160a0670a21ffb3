"""The permission table against the code that makes the calls, and deploy/ against the table."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from cli import main
from polycrate.kubeclient.resources import EVENTS, SOURCE_RESOURCES, resource_for
from polycrate.models import GROUP, KINDS
from polycrate.rbac import PERMISSIONS, Scope, granted, rbac_manifests, render_yaml
from watcher.crd_arrivals import CRD_SOURCE
from watcher.leader import LeaseSettings
from watcher.sources import all_sources

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
WRITE_VERBS = {"create", "update", "patch", "delete", "deletecollection"}


def _scope(namespaced: bool) -> Scope:
    return Scope.WATCHED if namespaced else Scope.CLUSTER


def test_deploy_rbac_is_the_rendered_table() -> None:
    assert (DEPLOY / "rbac.yaml").read_text() == render_yaml(), (
        "regenerate: polycrate operator rbac -o deploy/rbac.yaml"
    )


def test_deploy_namespaced_rbac_is_the_rendered_table() -> None:
    assert (DEPLOY / "rbac-namespaced.yaml").read_text() == render_yaml(namespaces=["polycrate"]), (
        "regenerate: polycrate operator rbac --namespace polycrate -o deploy/rbac-namespaced.yaml"
    )


@pytest.mark.parametrize("source", [*all_sources(), CRD_SOURCE], ids=lambda s: s.display_name)
def test_every_watched_resource_may_be_listed_and_watched(source) -> None:
    for verb in ("list", "watch"):
        assert granted(source.group, source.plural, verb, _scope(source.namespaced)), (
            f"the watcher list-watches {source.display_name}: add {verb} to polycrate/rbac.py"
        )


@pytest.mark.parametrize("kind", [*KINDS, *SOURCE_RESOURCES])
def test_every_key_kind_may_be_read_by_the_worker_that_reconciles_it(kind: str) -> None:
    resource = resource_for(kind)
    assert granted(resource.group, resource.plural, "get", _scope(resource.namespaced))


@pytest.mark.parametrize("kind", list(KINDS))
def test_every_polycrate_kind_may_have_its_status_finalizers_and_annotations_patched(kind: str) -> None:
    info = KINDS[kind]
    scope = _scope(info.namespaced)
    assert granted(GROUP, f"{info.plural}/status", "patch", scope)
    assert granted(GROUP, info.plural, "patch", scope)


@pytest.mark.parametrize("kind", [kind for kind, info in KINDS.items() if info.discovered])
def test_discovered_kinds_may_be_created_and_deleted(kind: str) -> None:
    info = KINDS[kind]
    for verb in ("create", "delete"):
        assert granted(GROUP, info.plural, verb, _scope(info.namespaced))


@pytest.mark.parametrize("kind", [kind for kind, info in KINDS.items() if not info.discovered])
def test_kinds_users_create_are_never_created_or_deleted_by_the_operator(kind: str) -> None:
    info = KINDS[kind]
    for verb in ("create", "delete", "update"):
        assert not granted(GROUP, info.plural, verb, _scope(info.namespaced))


def test_nodes_and_ingresses_may_be_patched_for_the_cleanup_finalizer() -> None:
    assert granted("", "nodes", "patch", Scope.CLUSTER)
    assert granted("networking.k8s.io", "ingresses", "patch", Scope.WATCHED)


def test_events_may_be_created_and_bumped_wherever_objects_live() -> None:
    for scope in (Scope.WATCHED, Scope.EVENTS_OF_CLUSTER_OBJECTS):
        for verb in ("create", "get", "patch"):
            assert granted(EVENTS.group, EVENTS.plural, verb, scope)


def test_the_leader_lease_may_be_read_created_and_renewed_but_not_deleted() -> None:
    path = LeaseSettings().path  # /apis/coordination.k8s.io/v1/namespaces/<ns>/leases/<name>
    group, plural = path.split("/")[2], path.split("/")[-2]
    for verb in ("get", "create", "update"):
        assert granted(group, plural, verb, Scope.OPERATOR)
    assert not granted(group, plural, "delete", Scope.OPERATOR)


def test_secrets_and_third_party_objects_are_only_read() -> None:
    read_only = {("", "secrets"), ("", "pods"), ("velero.io", "backups"), ("velero.io", "schedules")}
    read_only |= {("cert-manager.io", "certificates"), ("apiextensions.k8s.io", "customresourcedefinitions")}
    for permission in PERMISSIONS:
        for resource in permission.resources:
            if (permission.group, resource) in read_only:
                assert not WRITE_VERBS & set(permission.verbs), (permission.group, resource)


def test_no_permission_is_a_wildcard() -> None:
    for permission in PERMISSIONS:
        assert "*" not in permission.verbs and "*" not in permission.group
        assert not any("*" in resource for resource in permission.resources)


@pytest.mark.parametrize("permission", PERMISSIONS, ids=lambda p: f"{p.group or 'core'}:{p.resources[0]}")
def test_every_permission_names_code_that_still_exists(permission) -> None:
    for reference in permission.used_by:
        module_name, _, attribute_path = reference.partition(":")
        target = importlib.import_module(module_name)
        for attribute in attribute_path.split("."):
            target = getattr(target, attribute)


def test_namespaced_variant_grants_namespaced_access_only_in_the_named_namespaces() -> None:
    manifests = rbac_manifests("ops", ["team-a", "team-b"])
    by_kind: dict[str, list[dict]] = {}
    for manifest in manifests:
        by_kind.setdefault(manifest["kind"], []).append(manifest)
    cluster_resources = {r for rule in by_kind["ClusterRole"][0]["rules"] for r in rule["resources"]}
    assert "secrets" not in cluster_resources and "organizations" not in cluster_resources
    assert {"nodes", "artifacts", "customresourcedefinitions"} <= cluster_resources
    roles = {(role["metadata"]["namespace"], role["metadata"]["name"]) for role in by_kind["Role"]}
    assert roles == {
        ("team-a", "polycrate-operator"),
        ("team-b", "polycrate-operator"),
        ("default", "polycrate-operator-events"),
        ("ops", "polycrate-operator-leader-election"),
    }
    for binding in by_kind["RoleBinding"] + by_kind["ClusterRoleBinding"]:
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": "polycrate-operator", "namespace": "ops"}
        ]


def test_rbac_command_prints_what_deploy_holds() -> None:
    result = CliRunner().invoke(main, ["operator", "rbac"])
    assert result.exit_code == 0, result.output
    assert result.output == (DEPLOY / "rbac.yaml").read_text()
    assert [d["kind"] for d in yaml.safe_load_all(result.output)][:3] == [
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
    ]
