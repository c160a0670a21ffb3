"""The OperatorConfig handler: auto workspace resolution, local cluster registration, waking discovery.

The Kubernetes emulator holds the OperatorConfig and the agent token's Secret, the Polycrate API
emulator answers over real HTTP, and the reconciler is driven directly. Keys the handler
enqueues go to a second KeyQueue whose publishes are recorded, so tests can see what woke up.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import kubernetes
import pytest
import redis

from emulators.polycrate_api import PolycrateApiEmulator
from polycrate.keys import ObjectKey
from tasks.flows.operator_config import OPERATOR_CONFIG_KEY, OperatorConfigHandler
from tests.tasks.support import CRDS
from tests.tasks.test_handlers import Cluster
from workers import polycrate_api

NAMESPACE = "polycrate"


class WokenKeys:
    """Records the keys a reconcile wakes up (`ctx.enqueue`) instead of publishing tasks for them."""

    def __init__(self) -> None:
        self.keys: list[ObjectKey] = []

    def add(self, key: ObjectKey, *, reason: str = "event") -> str:
        self.keys.append(key)
        return "enqueued"


class DiscoveryWorld:
    """The cluster (reconciler and objects), the Polycrate API, and the queue discovery wakes up."""

    def __init__(
        self,
        cluster: Cluster,
        api: PolycrateApiEmulator,
        api_client: kubernetes.client.ApiClient,
        redis_client: redis.Redis,
        install: Callable[..., dict[str, Any]],
    ) -> None:
        self.cluster = cluster
        self.api = api
        self.api_client = api_client
        self.core = kubernetes.client.CoreV1Api(api_client)
        self.install = install
        self.woken = WokenKeys()
        cluster.reconciler.registry.register(OperatorConfigHandler(), replace=True)
        # The wakes (ctx.enqueue) are recorded instead of published.
        cluster.reconciler.context.use_queue(self.woken)  # type: ignore[arg-type]
        install(CRDS / "operatorconfigs.polycrate.io.yaml")
        self.ensure_namespace(NAMESPACE)

    def ensure_namespace(self, name: str) -> None:
        try:
            self.core.create_namespace({"metadata": {"name": name}})
        except kubernetes.client.ApiException as exc:
            if exc.status != 409:
                raise

    def agent_token_secret(self, token: str, *, name: str = "polycrate-api-creds") -> None:
        data = {"token": base64.b64encode(token.encode()).decode()}
        self.core.create_namespaced_secret(NAMESPACE, {"metadata": {"name": name}, "data": data})

    def operator_config(
        self, spec: dict[str, Any] | None = None, *, name: str = "default", namespace: str = NAMESPACE
    ) -> ObjectKey:
        """Create the OperatorConfig: api_sync to the emulator and a local cluster unless `spec` says otherwise."""
        if spec is None:
            spec = {
                "api_sync": {
                    "enabled": True,
                    "api_url": self.api.url,
                    "credentials_ref": {"secret_name": "polycrate-api-creds", "token_key": "token"},
                },
                "local_cluster": {"enabled": True, "cluster_name": "my-workspace"},
            }
        self.ensure_namespace(namespace)
        self.cluster.custom.create_namespaced_custom_object(
            "polycrate.io",
            "v1alpha1",
            namespace,
            "operatorconfigs",
            {
                "apiVersion": "polycrate.io/v1alpha1",
                "kind": "OperatorConfig",
                "metadata": {"name": name},
                "spec": spec,
            },
        )
        return ObjectKey("OperatorConfig", namespace, name)

    def patch_operator_config(self, spec: dict[str, Any]) -> None:
        self.cluster.custom.patch_namespaced_custom_object(
            "polycrate.io", "v1alpha1", NAMESPACE, "operatorconfigs", "default", {"spec": spec}
        )

    def resolved(self, **spec: Any) -> dict[str, Any]:
        """An OperatorConfig with api_sync and local cluster, reconciled; returns its status."""
        self.agent_token_secret(self.api.token)
        base = {
            "api_sync": {
                "enabled": True,
                "api_url": self.api.url,
                "credentials_ref": {"secret_name": "polycrate-api-creds"},
            },
            "local_cluster": {"enabled": True, "cluster_name": "my-workspace"},
        }
        key = self.operator_config({**base, **spec})
        assert self.cluster.reconcile(key).result == "succeeded"
        stored = self.cluster.get(key)
        assert stored is not None
        return stored["status"]

    def woken_keys(self) -> set[ObjectKey]:
        return set(self.woken.keys)


@pytest.fixture(autouse=True)
def fresh_api_clients() -> None:
    polycrate_api.clear_clients()


@pytest.fixture
def world(
    kube_api_client: kubernetes.client.ApiClient,
    redis_client: redis.Redis,
    kube_namespace: str,
    polycrate_api: PolycrateApiEmulator,
    kube_install_crd: Callable[..., dict[str, Any]],
) -> DiscoveryWorld:
    cluster = Cluster(kube_api_client, redis_client, kube_namespace)
    return DiscoveryWorld(cluster, polycrate_api, kube_api_client, redis_client, kube_install_crd)


def test_agent_token_resolves_workspace_and_organization_into_status(world: DiscoveryWorld) -> None:
    status = world.resolved()

    api = world.api
    assert status["phase"] == "Ready"
    assert {k: v for k, v in status["api_sync"].items() if k != "resolved_at"} == {
        "workspace_id": api.workspace_id,
        "workspace_name": "production",
        "organization_id": api.organization_id,
        "organization_name": "acme-corp",
    }
    assert status["api_sync"]["resolved_at"].endswith("Z")
    report = api.snapshot()["health_reports"][-1]
    assert report["cluster_name"] == "my-workspace"
    assert report["controllers"]["EndpointDiscoveryController"] == "disabled"


def test_local_cluster_is_created_with_its_name_when_the_workspace_has_none(world: DiscoveryWorld) -> None:
    status = world.resolved()

    clusters = world.api.snapshot()["clusters"]
    assert [c["name"] for c in clusters] == ["my-workspace"]
    assert status["local_cluster"]["cluster_id"] == clusters[0]["id"]
    assert status["local_cluster"]["cluster_name"] == "my-workspace"
    assert status["local_cluster"]["created"] is True


def test_cluster_the_api_already_has_wins_over_cluster_name(world: DiscoveryWorld) -> None:
    existing = polycrate_api.PolycrateApiClient(world.api.url, world.api.token).clusters.ensure(
        {"name": "prod-cluster"}
    )

    status = world.resolved()

    assert [c["name"] for c in world.api.snapshot()["clusters"]] == ["prod-cluster"]
    assert status["local_cluster"] | {"resolved_at": None} == {
        "cluster_id": existing.id,
        "cluster_name": "prod-cluster",
        "created": False,
        "resolved_at": None,
    }


def test_without_cluster_name_and_without_api_cluster_no_cluster_is_created(world: DiscoveryWorld) -> None:
    status = world.resolved(local_cluster={"enabled": True})

    assert world.api.snapshot()["clusters"] == []
    assert "local_cluster" not in status
    assert status["phase"] == "Ready"


def test_unchanged_identity_keeps_resolved_at_and_writes_nothing(world: DiscoveryWorld) -> None:
    world.resolved()
    before = world.cluster.get(OPERATOR_CONFIG_KEY)
    assert before is not None

    assert world.cluster.reconcile(OPERATOR_CONFIG_KEY).result == "succeeded"

    after = world.cluster.get(OPERATOR_CONFIG_KEY)
    assert after is not None
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    assert len(world.api.snapshot()["health_reports"]) == 2, "every reconcile reports health"


def test_another_token_moves_the_identity_and_resolved_at(world: DiscoveryWorld) -> None:
    first = world.resolved()["api_sync"]
    staging = world.api.add_workspace("staging")
    world.agent_token_secret(world.api.issue_token(staging["id"]), name="staging-creds")
    world.patch_operator_config({"api_sync": {"credentials_ref": {"secret_name": "staging-creds"}}})

    assert world.cluster.reconcile(OPERATOR_CONFIG_KEY).result == "succeeded"

    status = world.cluster.get(OPERATOR_CONFIG_KEY)["status"]
    assert status["api_sync"]["workspace_name"] == "staging"
    assert status["api_sync"]["workspace_id"] == staging["id"]
    assert status["api_sync"]["resolved_at"] >= first["resolved_at"]
    assert status["api_sync"]["workspace_id"] != first["workspace_id"]


def test_wrong_agent_token_is_an_error_naming_the_api_and_no_secret_value(world: DiscoveryWorld) -> None:
    world.agent_token_secret("not-the-token")
    key = world.operator_config()

    assert world.cluster.reconcile(key).result == "failed"

    status = world.cluster.get(key)["status"]
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert status["phase"] == "Error"
    assert "Polycrate API" in ready["message"] and "401" in ready["message"]
    assert "not-the-token" not in ready["message"]


def test_missing_token_secret_is_an_error_naming_the_secret(world: DiscoveryWorld) -> None:
    key = world.operator_config()

    assert world.cluster.reconcile(key).result == "failed"

    ready = next(c for c in world.cluster.get(key)["status"]["conditions"] if c["type"] == "Ready")
    assert "Secret polycrate/polycrate-api-creds not found" in ready["message"]


def test_operator_config_outside_the_singleton_name_is_an_error_explaining_the_singleton(
    world: DiscoveryWorld,
) -> None:
    key = world.operator_config({}, name="other")

    assert world.cluster.reconcile(key).result == "failed"

    stored = world.cluster.get(key)
    ready = next(c for c in stored["status"]["conditions"] if c["type"] == "Ready")
    assert stored["status"]["phase"] == "Error"
    assert "singleton" in ready["message"] and "polycrate/default" in ready["message"]
    assert not stored["metadata"].get("finalizers")


def test_without_api_sync_the_config_is_ready_and_reports_nothing(world: DiscoveryWorld) -> None:
    key = world.operator_config({"endpoint_discovery": {"enabled": True}})

    assert world.cluster.reconcile(key).result == "succeeded"

    status = world.cluster.get(key)["status"]
    assert status["phase"] == "Ready"
    assert "api_sync" not in status
    assert world.api.snapshot()["health_reports"] == []


def test_first_resolution_wakes_discovered_objects_and_sources_in_scope(world: DiscoveryWorld) -> None:
    world.install(CRDS / "endpoints.polycrate.io.yaml")
    world.ensure_namespace("production")
    networking = kubernetes.client.NetworkingV1Api(world.api_client)
    for namespace in ("production", "kube-system"):
        networking.create_namespaced_ingress(
            namespace, {"metadata": {"name": "webapp"}, "spec": {"rules": [{"host": "app.example.com"}]}}
        )
    world.cluster.custom.create_namespaced_custom_object(
        "polycrate.io",
        "v1alpha1",
        "production",
        "endpoints",
        {
            "apiVersion": "polycrate.io/v1alpha1",
            "kind": "Endpoint",
            "metadata": {"name": "app-example-com"},
            "spec": {"remoteAddress": "app.example.com"},
        },
    )

    world.resolved(endpoint_discovery={"ignore_namespaces": ["kube-system"]})

    assert world.woken_keys() == {
        ObjectKey("Endpoint", "production", "app-example-com"),
        ObjectKey("Ingress", "production", "webapp"),
    }


def test_resync_of_a_resolved_config_wakes_nothing(world: DiscoveryWorld) -> None:
    kubernetes.client.NetworkingV1Api(world.api_client).create_namespaced_ingress(
        "default", {"metadata": {"name": "webapp"}, "spec": {"rules": [{"host": "app.example.com"}]}}
    )
    world.resolved(endpoint_discovery={})
    assert world.woken_keys() == {ObjectKey("Ingress", "default", "webapp")}
    world.woken.keys.clear()

    world.cluster.reconcile(OPERATOR_CONFIG_KEY)

    assert world.woken.keys == []
