"""A call RBAC denies: a clear permanent error that names the missing permission, never a crash or a retry storm.

The reconciler runs as the operator's ServiceAccount (a token from the Kubernetes emulator,
which enforces RBAC) with the generated RBAC minus one rule, one test per rule family; the test
sets up the world and reads the outcome as the admin. With the RBAC of deploy/ as it was before
the permission table, Node discovery fails with 403 on the Node; with the table's it succeeds.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import kubernetes
import pytest
import redis
import yaml

from emulators.polycrate_api import PolycrateApiEmulator
from polycrate.keys import ObjectKey
from polycrate.rbac import rbac_manifests
from polycrate.settings import Settings
from sandbox.service_account import apply_rbac, operator_kubeconfig
from tasks.context import WorkerContext
from tests.tasks.flows.test_discovery_endpoints import _node
from tests.tasks.flows.test_operator_config import DiscoveryWorld, fresh_api_clients  # noqa: F401
from tests.tasks.test_handlers import Cluster

PRE_FIX_RBAC = Path(__file__).parents[1] / "fixtures" / "rbac" / "before_least_privilege.yaml"
OPERATOR = "system:serviceaccount:polycrate:polycrate-operator"
CONFIG_KEY = ObjectKey("OperatorConfig", "polycrate", "default")


def without(group: str, resource: str, verb: str) -> list[dict[str, Any]]:
    """The generated RBAC with `verb` on `resource` taken out of every rule that grants it."""
    manifests = copy.deepcopy(rbac_manifests())
    for manifest in manifests:
        rules = []
        for rule in manifest.get("rules") or []:
            if group in rule["apiGroups"] and resource in rule["resources"] and verb in rule["verbs"]:
                others = [r for r in rule["resources"] if r != resource]
                if others:
                    rules.append({**rule, "resources": others})
                verbs = [v for v in rule["verbs"] if v != verb]
                if verbs:
                    rules.append({**rule, "resources": [resource], "verbs": verbs})
            else:
                rules.append(rule)
        if "rules" in manifest:
            manifest["rules"] = rules
    return manifests


class Operator:
    """The discovery world, with the reconciler acting as the operator's ServiceAccount."""

    def __init__(
        self, world: DiscoveryWorld, admin: kubernetes.client.ApiClient, account_client: Any
    ) -> None:
        self.world = world
        self.admin = admin
        self.core = kubernetes.client.CoreV1Api(admin)
        self.custom = kubernetes.client.CustomObjectsApi(admin)
        self.account_client = account_client

    def reconcile(self, key: ObjectKey) -> str:
        return self.world.cluster.reconcile(key).result

    def events(self, name: str, namespace: str) -> list[Any]:
        return self.core.list_namespaced_event(namespace, field_selector=f"involvedObject.name={name}").items

    def operator_config(self) -> dict[str, Any]:
        return self.custom.get_namespaced_custom_object(
            "polycrate.io", "v1alpha1", "polycrate", "operatorconfigs", "default"
        )


@pytest.fixture
def operator_as(
    kube_api_client: kubernetes.client.ApiClient,
    kubeconfig: str,
    redis_client: redis.Redis,
    kube_namespace: str,
    polycrate_api: PolycrateApiEmulator,
    kube_install_crd: Callable[..., dict[str, Any]],
    tmp_path: Path,
) -> Iterator[Callable[[list[dict[str, Any]]], Operator]]:
    clients: list[kubernetes.client.ApiClient] = []

    def start(manifests: list[dict[str, Any]]) -> Operator:
        target = operator_kubeconfig(kube_api_client, kubeconfig, tmp_path / "operator", manifests=manifests)
        account_client = kubernetes.config.new_client_from_config(config_file=str(target))
        clients.append(account_client)
        cluster = Cluster(kube_api_client, redis_client, kube_namespace)
        cluster.reconciler.context = WorkerContext(
            Settings(), redis_client=redis_client, api_client_factory=lambda _: account_client
        )
        world = DiscoveryWorld(cluster, polycrate_api, kube_api_client, redis_client, kube_install_crd)
        return Operator(world, kube_api_client, account_client)

    yield start
    for client in clients:
        client.close()


def test_under_the_pre_fix_cluster_role_node_discovery_fails_with_403_on_the_node(operator_as) -> None:
    operator = operator_as([d for d in yaml.safe_load_all(PRE_FIX_RBAC.read_text()) if d])
    operator.world.resolved(node_discovery={})
    operator.core.create_node(_node("worker-1"))

    assert operator.reconcile(ObjectKey("Node", "", "worker-1")) == "failed"  # permanent: parked, not retried

    (event,) = operator.events("worker-1", "default")
    assert (event.type, event.reason) == ("Warning", "Forbidden")
    assert (
        f'nodes "worker-1" is forbidden: User "{OPERATOR}" cannot patch resource "nodes" in API group "" '
        "at the cluster scope"
    ) in event.message
    assert "deploy/rbac.yaml" in event.message
    assert operator.world.api.snapshot()["hosts"] == [], "no host reaches the Polycrate API"

    apply_rbac(operator.admin, rbac_manifests())
    assert operator.reconcile(ObjectKey("Node", "", "worker-1")) == "succeeded"
    assert [host["name"] for host in operator.world.api.snapshot()["hosts"]] == ["worker-1"]


def test_without_patch_on_nodes_the_node_names_the_missing_permission(operator_as) -> None:
    operator = operator_as(without("", "nodes", "patch"))
    operator.world.resolved(node_discovery={})
    operator.core.create_node(_node("worker-1"))

    assert operator.reconcile(ObjectKey("Node", "", "worker-1")) == "failed"
    (event,) = operator.events("worker-1", "default")
    assert 'cannot patch resource "nodes" in API group "" at the cluster scope' in event.message


def test_without_get_on_secrets_the_object_is_in_error_naming_the_secret_and_the_permission(
    operator_as,
) -> None:
    operator = operator_as(without("", "secrets", "get"))
    operator.world.agent_token_secret(operator.world.api.token)
    operator.world.operator_config()

    assert operator.reconcile(CONFIG_KEY) == "failed"

    status = operator.operator_config()["status"]
    ready = {c["type"]: c for c in status["conditions"]}["Ready"]
    assert (status["phase"], ready["reason"]) == ("Error", "Forbidden")
    assert "Secret polycrate/polycrate-api-creds" in ready["message"]
    assert (
        f'secrets "polycrate-api-creds" is forbidden: User "{OPERATOR}" cannot get resource "secrets" '
        'in API group "" in the namespace "polycrate"'
    ) in ready["message"]
    (event,) = operator.events("default", "polycrate")
    assert event.type == "Warning" and 'cannot get resource "secrets"' in event.message


def test_without_patch_on_a_kinds_status_the_failure_is_an_event_naming_the_subresource(operator_as) -> None:
    operator = operator_as(without("polycrate.io", "operatorconfigs/status", "patch"))
    operator.world.agent_token_secret(operator.world.api.token)
    operator.world.operator_config()

    assert operator.reconcile(CONFIG_KEY) == "failed"

    assert "status" not in operator.operator_config() or not operator.operator_config()["status"].get("phase")
    (event,) = operator.events("default", "polycrate")
    assert (event.type, event.reason) == ("Warning", "Forbidden")
    assert (
        f'operatorconfigs.polycrate.io "default" is forbidden: User "{OPERATOR}" cannot patch resource '
        '"operatorconfigs/status" in API group "polycrate.io" in the namespace "polycrate"'
    ) in event.message


def test_without_create_on_events_the_reconcile_still_succeeds_and_the_log_names_the_permission(
    operator_as, caplog: pytest.LogCaptureFixture
) -> None:
    operator = operator_as(without("", "events", "create"))
    operator.world.agent_token_secret(operator.world.api.token)
    operator.world.operator_config()

    with caplog.at_level(logging.WARNING, logger="tasks.events"):
        assert operator.reconcile(CONFIG_KEY) == "succeeded"

    assert operator.operator_config()["status"]["phase"] == "Ready"
    assert operator.events("default", "polycrate") == []
    assert (
        f'User "{OPERATOR}" cannot create resource "events" in API group "" in the namespace "polycrate"'
        in (caplog.text)
    )
