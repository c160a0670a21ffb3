"""Endpoint and Host discovery against the Kubernetes and Polycrate API emulators.

Each test drives the reconciler by hand, one key at a time, the way events would: an Ingress
becomes Endpoint CRs, each Endpoint CR becomes an API endpoint, a Node becomes an API host.
The Ingress examples are the spec's eight (tests/tasks/ingress_examples.yaml).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes
import pytest
import yaml

from polycrate.keys import ObjectKey
from polycrate.kubeclient.api import JsonObject
from polycrate.models import DISCOVERED_LABEL
from tasks.flows.discovery_endpoints import (
    ENDPOINT_FINALIZER,
    HOST_API_ID_ANNOTATION,
    HOST_FINALIZER,
    SOURCE_INGRESS_LABEL,
    EndpointHandler,
)
from tests.tasks.flows.test_operator_config import DiscoveryWorld, fresh_api_clients, world  # noqa: F401
from tests.tasks.support import CRDS

INGRESS_EXAMPLES = Path(__file__).parent / "ingress_examples.yaml"

# endpoint_discovery of the spec's OperatorConfig example.
SPEC_ENDPOINT_DISCOVERY = {
    "enabled": True,
    "watch_namespaces": [],
    "ignore_namespaces": ["kube-system", "kube-public", "polycrate"],
    "ingress_classes": [],
    "default_check_interval": 60,
}


class Discovery:
    """The world plus Ingress, Endpoint and Node shortcuts."""

    def __init__(self, base: DiscoveryWorld) -> None:
        self.world = base
        self.cluster = base.cluster
        self.api = base.api
        self.networking = kubernetes.client.NetworkingV1Api(base.api_client)
        base.install(CRDS / "endpoints.polycrate.io.yaml")
        base.cluster.reconciler.registry.register(EndpointHandler(), replace=True)
        for namespace in ("production", "staging"):
            base.ensure_namespace(namespace)

    def ingress(
        self,
        name: str,
        hosts: list[str],
        *,
        namespace: str = "production",
        annotations: dict[str, str] | None = None,
        tls_hosts: list[str] | None = None,
        ingress_class: str = "nginx",
    ) -> ObjectKey:
        body: JsonObject = {
            "metadata": {"name": name, "annotations": annotations or {}},
            "spec": {"ingressClassName": ingress_class, "rules": [{"host": host} for host in hosts]},
        }
        if tls_hosts:
            body["spec"]["tls"] = [{"hosts": tls_hosts, "secretName": f"{name}-tls"}]
        self.networking.create_namespaced_ingress(namespace, body)
        return ObjectKey("Ingress", namespace, name)

    def annotate(self, key: ObjectKey, annotations: dict[str, str | None]) -> None:
        self.networking.patch_namespaced_ingress(
            key.name, key.namespace, {"metadata": {"annotations": annotations}}
        )

    def reconcile(self, key: ObjectKey) -> str:
        return self.cluster.reconcile(key).result

    def endpoints(self, namespace: str = "production") -> dict[str, JsonObject]:
        items = self.cluster.reconciler.context.objects.list("Endpoint", namespace)
        return {item["metadata"]["name"]: item for item in items}

    def endpoint(self, name: str, namespace: str = "production") -> JsonObject:
        obj = self.cluster.get(ObjectKey("Endpoint", namespace, name))
        assert obj is not None, f"no Endpoint {namespace}/{name}"
        return obj

    def sync(self, name: str, namespace: str = "production") -> JsonObject:
        """Reconcile the Endpoint CR and return it."""
        assert self.reconcile(ObjectKey("Endpoint", namespace, name)) == "succeeded"
        return self.endpoint(name, namespace)

    def api_endpoints(self) -> dict[str, dict[str, Any]]:
        return {e["name"]: e for e in self.api.snapshot()["endpoints"]}

    def get_ingress(self, key: ObjectKey) -> JsonObject | None:
        return self.cluster.get(key)


@pytest.fixture
def discovery(world: DiscoveryWorld) -> Discovery:  # noqa: F811
    return Discovery(world)


def _check(endpoint: JsonObject) -> dict[str, Any]:
    spec = endpoint["spec"]
    return {
        k: spec.get(k)
        for k in ("remotePort", "tls", "path", "timeout", "interval", "expectedStatusCodes", "expectedBody")
    }


# --- the spec's examples ------------------------------------------------------------------------


def test_the_spec_ingress_examples_give_the_spec_results(discovery: Discovery) -> None:
    discovery.world.resolved(endpoint_discovery=SPEC_ENDPOINT_DISCOVERY)
    keys = []
    for ingress in yaml.safe_load_all(INGRESS_EXAMPLES.read_text()):
        discovery.world.ensure_namespace(ingress["metadata"]["namespace"])
        discovery.networking.create_namespaced_ingress(ingress["metadata"]["namespace"], ingress)
        keys.append(ObjectKey("Ingress", ingress["metadata"]["namespace"], ingress["metadata"]["name"]))

    for key in keys:
        assert discovery.reconcile(key) == "succeeded"

    endpoints = discovery.endpoints()
    # Example 1: "GET / auf https://app.example.com:443, Timeout 30s, Intervall 60s", although
    # its Ingress has neither annotations nor a tls block.
    assert _check(endpoints["app-example-com"]) == {
        "remotePort": 443, "tls": True, "path": "/", "timeout": 30, "interval": 60,
        "expectedStatusCodes": [200], "expectedBody": None,
    }  # fmt: skip
    assert _check(endpoints["api-example-com"]) == {
        "remotePort": 443, "tls": True, "path": "/api/health", "timeout": 30, "interval": 60,
        "expectedStatusCodes": [200], "expectedBody": None,
    }  # fmt: skip
    assert _check(endpoints["pay-example-com"]) == {
        "remotePort": 443, "tls": True, "path": "/health/ready", "timeout": 10, "interval": 30,
        "expectedStatusCodes": [200], "expectedBody": None,
    }  # fmt: skip
    assert _check(endpoints["db-api-example-com"]) == {
        "remotePort": 443, "tls": True, "path": "/health/deep", "timeout": 30, "interval": 60,
        "expectedStatusCodes": [200], "expectedBody": '"database":"connected"',
    }  # fmt: skip
    assert discovery.endpoints("kube-system") == {}, "example 5 is ignored"
    assert _check(endpoints["reports-example-com"]) == {
        "remotePort": 443, "tls": True, "path": "/api/health", "timeout": 120, "interval": 300,
        "expectedStatusCodes": [200], "expectedBody": None,
    }  # fmt: skip
    assert _check(endpoints["legacy-example-com"]) == {
        "remotePort": 443, "tls": True, "path": "/", "timeout": 30, "interval": 60,
        "expectedStatusCodes": [302], "expectedBody": None,
    }  # fmt: skip
    assert _check(endpoints["api-mycompany-com"]) == {
        "remotePort": 443, "tls": True, "path": "/api/v1/health", "timeout": 15, "interval": 30,
        "expectedStatusCodes": [200], "expectedBody": '"status":"healthy"',
    }  # fmt: skip
    assert len(endpoints) == 7

    for name in endpoints:
        discovery.sync(name)
    stored = discovery.api_endpoints()
    assert stored["api-mycompany-com"]["spec"]["http"] == {
        "method": "GET",
        "path": "/api/v1/health",
        "expected_status_codes": [200],
        "expected_body": '"status":"healthy"',
    }
    assert {name: (e["remote_address"], e["remote_port"], e["tls"]) for name, e in stored.items()} == {
        name: (e["spec"]["remoteAddress"], e["spec"]["remotePort"], e["spec"]["tls"])
        for name, e in endpoints.items()
    }


def test_host_without_annotations_or_tls_block_is_checked_over_https_on_443(discovery: Discovery) -> None:
    discovery.world.resolved(endpoint_discovery=SPEC_ENDPOINT_DISCOVERY)
    key = discovery.ingress("webapp", ["app.example.com"])  # the spec's example 1: no tls, no annotations

    assert discovery.reconcile(key) == "succeeded"
    endpoint = discovery.sync("app-example-com")

    assert (endpoint["spec"]["remotePort"], endpoint["spec"]["tls"]) == (443, True)
    stored = discovery.api_endpoints()["app-example-com"]
    assert (stored["remote_address"], stored["remote_port"], stored["tls"]) == ("app.example.com", 443, True)
    assert stored["spec"]["http"]["path"] == "/"


def test_endpoint_cr_is_named_after_the_host_labelled_and_owned_by_its_ingress(discovery: Discovery) -> None:
    discovery.world.resolved(endpoint_discovery={})
    key = discovery.ingress("webapp", ["app.example.com"], tls_hosts=["app.example.com"])

    assert discovery.reconcile(key) == "succeeded"

    endpoint = discovery.endpoint("app-example-com")
    ingress = discovery.get_ingress(key)
    assert ingress is not None
    assert endpoint["metadata"]["labels"] == {SOURCE_INGRESS_LABEL: "webapp", DISCOVERED_LABEL: "true"}
    assert [(o["kind"], o["name"], o["uid"]) for o in endpoint["metadata"]["ownerReferences"]] == [
        ("Ingress", "webapp", ingress["metadata"]["uid"])
    ]
    assert endpoint["spec"]["displayName"] == endpoint["spec"]["remoteAddress"] == "app.example.com"
    assert endpoint["spec"]["kind"] == "http"
    assert ENDPOINT_FINALIZER in ingress["metadata"]["finalizers"]


def test_one_endpoint_per_host_of_an_ingress_with_several_rules(discovery: Discovery) -> None:
    discovery.world.resolved(endpoint_discovery={})
    key = discovery.ingress("multi", ["a.example.com", "b.example.com", "a.example.com", "*.example.com"])

    discovery.reconcile(key)

    assert sorted(discovery.endpoints()) == ["a-example-com", "b-example-com"]


def test_synced_endpoint_records_phase_api_id_and_config_hash(discovery: Discovery) -> None:
    discovery.world.resolved(endpoint_discovery={})
    discovery.reconcile(discovery.ingress("webapp", ["app.example.com"]))

    endpoint = discovery.sync("app-example-com")

    stored = discovery.api_endpoints()["app-example-com"]
    status = endpoint["status"]
    assert status["phase"] == "synced"
    assert status["apiID"] == stored["id"]
    assert len(status["configHash"]) == 64
    assert (
        stored["cluster"]
        == discovery.world.cluster.get(ObjectKey("OperatorConfig", "polycrate", "default"))["status"][
            "local_cluster"
        ]["cluster_id"]
    )
    assert (stored["namespace"], stored["source_ingress"]) == ("production", "webapp")


def test_unchanged_endpoint_costs_one_api_read_and_no_write(discovery: Discovery) -> None:
    discovery.world.resolved(endpoint_discovery={})
    discovery.reconcile(discovery.ingress("webapp", ["app.example.com"]))
    before = discovery.sync("app-example-com")
    discovery.api.calls.clear()

    after = discovery.sync("app-example-com")

    assert dict(discovery.api.calls) == {"GET /api/v1/endpoints/{id}/": 1}
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]


def test_endpoint_deleted_in_the_api_is_created_again(discovery: Discovery) -> None:
    discovery.world.resolved(endpoint_discovery={})
    discovery.reconcile(discovery.ingress("webapp", ["app.example.com"]))
    first_id = discovery.sync("app-example-com")["status"]["apiID"]
    with discovery.api.lock:
        discovery.api.objects["endpoints"].clear()

    endpoint = discovery.sync("app-example-com")

    assert endpoint["status"]["apiID"] != first_id
    assert list(discovery.api_endpoints()) == ["app-example-com"]


def test_annotation_change_propagates_to_the_api(discovery: Discovery) -> None:
    discovery.world.resolved(endpoint_discovery={})
    key = discovery.ingress(
        "my-app", ["app.example.com"], annotations={"endpoints.polycrate.io/path": "/health"}
    )
    discovery.reconcile(key)
    before = discovery.sync("app-example-com")["status"]

    discovery.annotate(key, {"endpoints.polycrate.io/path": "/api/v2/health"})
    discovery.reconcile(key)
    after = discovery.sync("app-example-com")["status"]

    assert discovery.endpoint("app-example-com")["spec"]["path"] == "/api/v2/health"
    assert discovery.api_endpoints()["app-example-com"]["spec"]["http"]["path"] == "/api/v2/health"
    assert after["apiID"] == before["apiID"]
    assert after["configHash"] != before["configHash"]


def test_removed_expected_body_annotation_is_cleared_in_the_cr_and_the_api(discovery: Discovery) -> None:
    discovery.world.resolved(endpoint_discovery={})
    key = discovery.ingress(
        "db", ["db.example.com"], annotations={"endpoints.polycrate.io/expected-body": "ok"}
    )
    discovery.reconcile(key)
    discovery.sync("db-example-com")

    discovery.annotate(key, {"endpoints.polycrate.io/expected-body": None})
    discovery.reconcile(key)
    discovery.sync("db-example-com")

    assert "expectedBody" not in discovery.endpoint("db-example-com")["spec"]
    assert discovery.api_endpoints()["db-example-com"]["spec"]["http"]["expected_body"] is None


def test_interval_defaults_to_the_operator_config_default_check_interval(discovery: Discovery) -> None:
    discovery.world.resolved(endpoint_discovery={"default_check_interval": 120})

    discovery.reconcile(discovery.ingress("webapp", ["app.example.com"]))

    assert discovery.endpoint("app-example-com")["spec"]["interval"] == 120


# --- what is not discovered -----------------------------------------------------------------------


def test_ignore_annotation_creates_no_endpoint_and_no_finalizer(discovery: Discovery) -> None:
    discovery.world.resolved(endpoint_discovery={})
    key = discovery.ingress(
        "admin", ["admin.example.com"], annotations={"endpoints.polycrate.io/ignore": "true"}
    )

    assert discovery.reconcile(key) == "succeeded"

    assert discovery.endpoints() == {}
    assert not discovery.get_ingress(key)["metadata"].get("finalizers")


def test_ignore_annotation_on_a_discovered_ingress_removes_its_endpoints_from_the_api(
    discovery: Discovery,
) -> None:
    discovery.world.resolved(endpoint_discovery={})
    key = discovery.ingress("webapp", ["app.example.com"])
    discovery.reconcile(key)
    discovery.sync("app-example-com")

    discovery.annotate(key, {"endpoints.polycrate.io/enabled": "false"})
    assert discovery.reconcile(key) == "succeeded"

    assert discovery.api_endpoints() == {}
    assert not discovery.get_ingress(key)["metadata"].get("finalizers")
    assert discovery.reconcile(ObjectKey("Endpoint", "production", "app-example-com")) in (
        "succeeded",
        "gone",
    )
    assert discovery.endpoints() == {}


def test_namespace_filter_ignore_wins_over_watch(discovery: Discovery) -> None:
    discovery.world.resolved(
        endpoint_discovery={"watch_namespaces": ["production", "staging"], "ignore_namespaces": ["staging"]}
    )
    discovery.world.ensure_namespace("other")
    keys = [
        discovery.ingress("web", ["prod.example.com"], namespace="production"),
        discovery.ingress("web", ["staging.example.com"], namespace="staging"),
        discovery.ingress("web", ["other.example.com"], namespace="other"),
    ]

    for key in keys:
        assert discovery.reconcile(key) == "succeeded"

    assert [list(discovery.endpoints(ns)) for ns in ("production", "staging", "other")] == [
        ["prod-example-com"],
        [],
        [],
    ]


def test_ingress_class_filter(discovery: Discovery) -> None:
    discovery.world.resolved(endpoint_discovery={"ingress_classes": ["nginx"]})
    nginx = discovery.ingress("web", ["web.example.com"])
    traefik = discovery.ingress("other", ["other.example.com"], ingress_class="traefik")

    discovery.reconcile(nginx)
    discovery.reconcile(traefik)

    assert list(discovery.endpoints()) == ["web-example-com"]


def test_without_endpoint_discovery_nothing_is_created(discovery: Discovery) -> None:
    discovery.world.resolved()
    key = discovery.ingress("webapp", ["app.example.com"])

    assert discovery.reconcile(key) == "succeeded"

    assert discovery.endpoints() == {}


# --- changes and deletion -------------------------------------------------------------------------


def test_host_removed_from_the_ingress_deletes_its_endpoint(discovery: Discovery) -> None:
    discovery.world.resolved(endpoint_discovery={})
    key = discovery.ingress("web", ["a.example.com", "b.example.com"])
    discovery.reconcile(key)
    discovery.sync("b-example-com")
    discovery.networking.patch_namespaced_ingress(
        key.name, key.namespace, {"spec": {"rules": [{"host": "a.example.com"}]}}
    )

    discovery.reconcile(key)
    assert discovery.endpoint("b-example-com")["metadata"]["deletionTimestamp"]
    discovery.reconcile(ObjectKey("Endpoint", "production", "b-example-com"))

    assert list(discovery.endpoints()) == ["a-example-com"]
    assert "b-example-com" not in discovery.api_endpoints()


def test_ingress_deletion_cleans_the_api_then_removes_the_finalizer(discovery: Discovery) -> None:
    discovery.world.resolved(endpoint_discovery={})
    key = discovery.ingress("web", ["a.example.com", "b.example.com"])
    discovery.reconcile(key)
    discovery.sync("a-example-com")
    discovery.sync("b-example-com")
    assert len(discovery.api_endpoints()) == 2

    discovery.networking.delete_namespaced_ingress(key.name, key.namespace)
    assert discovery.get_ingress(key)["metadata"]["deletionTimestamp"]
    assert discovery.reconcile(key) == "succeeded"

    assert discovery.api_endpoints() == {}
    assert discovery.get_ingress(key) is None
    for name in ("a-example-com", "b-example-com"):
        discovery.reconcile(ObjectKey("Endpoint", "production", name))
    assert discovery.endpoints() == {}


def test_hand_deleted_endpoint_wakes_its_ingress_and_comes_back(discovery: Discovery) -> None:
    discovery.world.resolved(endpoint_discovery={})
    key = discovery.ingress("web", ["app.example.com"])
    discovery.reconcile(key)
    discovery.sync("app-example-com")
    discovery.world.woken.keys.clear()

    discovery.cluster.custom.delete_namespaced_custom_object(
        "polycrate.io", "v1alpha1", "production", "endpoints", "app-example-com"
    )
    discovery.reconcile(ObjectKey("Endpoint", "production", "app-example-com"))

    assert discovery.world.woken.keys == [key]
    assert discovery.api_endpoints() == {}
    discovery.reconcile(key)
    assert list(discovery.endpoints()) == ["app-example-com"]


def test_hand_edited_endpoint_is_restored_from_its_ingress_by_its_own_event_before_reaching_the_api(
    discovery: Discovery,
) -> None:
    discovery.world.resolved(endpoint_discovery={})
    key = discovery.ingress(
        "web", ["app.example.com"], annotations={"endpoints.polycrate.io/path": "/health"}
    )
    discovery.reconcile(key)
    synced = discovery.sync("app-example-com")["status"]
    discovery.world.woken.keys.clear()

    discovery.cluster.custom.patch_namespaced_custom_object(
        "polycrate.io", "v1alpha1", "production", "endpoints", "app-example-com",
        {"spec": {"path": "/edited", "remotePort": 8443, "interval": 5}},
    )  # fmt: skip
    # The edit's watch event enqueues the Endpoint itself; the Ingress is not involved.
    endpoint = discovery.sync("app-example-com")

    assert _check(endpoint) == {
        "remotePort": 443, "tls": True, "path": "/health", "timeout": 30, "interval": 60,
        "expectedStatusCodes": [200], "expectedBody": None,
    }  # fmt: skip
    assert endpoint["status"]["configHash"] == synced["configHash"], "the edit never reached the API"
    stored = discovery.api_endpoints()["app-example-com"]
    assert (stored["remote_port"], stored["spec"]["http"]["path"], stored["interval"]) == (443, "/health", 60)
    events = discovery.cluster.events(ObjectKey("Endpoint", "production", "app-example-com"))
    warnings = [e for e in events if e["type"] == "Warning"]
    assert [e["reason"] for e in warnings] == ["ManualChangeReverted"]
    assert "Ingress production/web" in warnings[0]["message"]
    assert discovery.world.woken.keys == []


def test_second_ingress_with_the_same_host_leaves_the_first_ones_endpoint_alone(discovery: Discovery) -> None:
    discovery.world.resolved(endpoint_discovery={})
    first = discovery.ingress(
        "first", ["app.example.com"], annotations={"endpoints.polycrate.io/path": "/one"}
    )
    second = discovery.ingress(
        "second", ["app.example.com"], annotations={"endpoints.polycrate.io/path": "/two"}
    )
    discovery.reconcile(first)

    assert discovery.reconcile(second) == "succeeded"

    endpoint = discovery.endpoint("app-example-com")
    assert endpoint["metadata"]["labels"][SOURCE_INGRESS_LABEL] == "first"
    assert endpoint["spec"]["path"] == "/one"
    warnings = [e for e in discovery.cluster.events(second) if e["type"] == "Warning"]
    assert [e["reason"] for e in warnings] == ["HostAlreadyDiscovered"]


def test_invalid_annotation_is_a_warning_event_naming_annotation_and_fix(discovery: Discovery) -> None:
    discovery.world.resolved(endpoint_discovery={})
    key = discovery.ingress(
        "web", ["app.example.com"], annotations={"endpoints.polycrate.io/timeout": "soon"}
    )

    assert discovery.reconcile(key) == "failed"

    (event,) = [e for e in discovery.cluster.events(key) if e["type"] == "Warning"]
    assert 'endpoints.polycrate.io/timeout "soon"' in event["message"]
    assert "use e.g." in event["message"]
    assert discovery.endpoints() == {}


# --- API sync states ------------------------------------------------------------------------------


def test_without_api_sync_endpoints_exist_but_say_they_are_not_synced(discovery: Discovery) -> None:
    key = discovery.world.operator_config({"endpoint_discovery": {}})
    discovery.reconcile(key)
    discovery.reconcile(discovery.ingress("webapp", ["app.example.com"]))

    endpoint = discovery.sync("app-example-com")

    assert endpoint["status"]["phase"] == "discovered"
    ready = next(c for c in endpoint["status"]["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "NotSynced" and "api_sync" in ready["message"]
    assert discovery.api.snapshot()["endpoints"] == []


def test_endpoint_waits_for_the_workspace_and_is_woken_when_it_resolves(discovery: Discovery) -> None:
    config = discovery.world.operator_config(
        {
            "api_sync": {
                "api_url": discovery.api.url,
                "credentials_ref": {"secret_name": "polycrate-api-creds"},
            },
            "local_cluster": {"cluster_name": "my-workspace"},
            "endpoint_discovery": {},
        }
    )
    discovery.reconcile(discovery.ingress("webapp", ["app.example.com"]))
    endpoint_key = ObjectKey("Endpoint", "production", "app-example-com")

    assert discovery.reconcile(endpoint_key) == "failed"
    ready = next(
        c for c in discovery.endpoint("app-example-com")["status"]["conditions"] if c["type"] == "Ready"
    )
    assert ready["reason"] == "DependencyNotFound" and "OperatorConfig polycrate/default" in ready["message"]

    discovery.world.agent_token_secret(discovery.api.token)
    assert discovery.reconcile(config) == "succeeded"
    assert endpoint_key in discovery.world.woken_keys()
    assert discovery.sync("app-example-com")["status"]["phase"] == "synced"


# --- Node -> Host ---------------------------------------------------------------------------------


def _node(
    name: str, *, labels: dict[str, str] | None = None, addresses: list[dict[str, str]] | None = None
) -> JsonObject:
    return {
        "metadata": {"name": name, "labels": labels or {}},
        "spec": {"providerID": f"hcloud://{name}"},
        "status": {
            "addresses": addresses
            if addresses is not None
            else [
                {"type": "InternalIP", "address": "10.0.0.5"},
                {"type": "ExternalIP", "address": "2a01:4f8::1"},
                {"type": "ExternalIP", "address": "203.0.113.7"},
                {"type": "Hostname", "address": name},
            ],
            "capacity": {"cpu": "4", "memory": "16393256Ki", "pods": "110"},
            "nodeInfo": {
                "architecture": "arm64",
                "bootID": "b1",
                "containerRuntimeVersion": "containerd://1.7.22",
                "kernelVersion": "6.8.0",
                "kubeProxyVersion": "",
                "kubeletVersion": "v1.32.0",
                "machineID": "m1",
                "operatingSystem": "linux",
                "osImage": "Ubuntu 24.04 LTS",
                "systemUUID": "u1",
            },
        },
    }


@pytest.fixture
def core(discovery: Discovery) -> kubernetes.client.CoreV1Api:
    return discovery.world.core


def test_node_becomes_an_api_host_as_the_mapping_table_says(discovery: Discovery, core) -> None:
    status = discovery.world.resolved(node_discovery={})
    core.create_node(_node("worker-1"))

    assert discovery.reconcile(ObjectKey("Node", "", "worker-1")) == "succeeded"

    (host,) = discovery.api.snapshot()["hosts"]
    assert {k: host[k] for k in (
        "cluster", "name", "hostname", "default_ipv4", "resource_cpu_cores", "resource_memory",
        "resource_cpu_architecture", "provider_id",
    )} == {
        "cluster": status["local_cluster"]["cluster_id"], "name": "worker-1", "hostname": "worker-1",
        "default_ipv4": "203.0.113.7", "resource_cpu_cores": 4, "resource_memory": 16009,
        "resource_cpu_architecture": "arm64", "provider_id": "hcloud://worker-1",
    }  # fmt: skip
    node = core.read_node("worker-1")
    assert node.metadata.annotations[HOST_API_ID_ANNOTATION] == host["id"]
    assert HOST_FINALIZER in node.metadata.finalizers


def test_node_without_external_ip_reports_its_internal_ip(discovery: Discovery, core) -> None:
    discovery.world.resolved(node_discovery={})
    core.create_node(_node("worker-2", addresses=[{"type": "InternalIP", "address": "10.0.0.6"}]))

    discovery.reconcile(ObjectKey("Node", "", "worker-2"))

    assert discovery.api.snapshot()["hosts"][0]["default_ipv4"] == "10.0.0.6"


def test_unchanged_node_costs_one_api_read(discovery: Discovery, core) -> None:
    discovery.world.resolved(node_discovery={})
    core.create_node(_node("worker-1"))
    key = ObjectKey("Node", "", "worker-1")
    discovery.reconcile(key)
    version = core.read_node("worker-1").metadata.resource_version
    discovery.api.calls.clear()

    discovery.reconcile(key)

    assert dict(discovery.api.calls) == {"GET /api/v1/hosts/{id}/": 1}
    assert core.read_node("worker-1").metadata.resource_version == version


def test_node_label_selector_limits_host_discovery(discovery: Discovery, core) -> None:
    discovery.world.resolved(node_discovery={"label_selector": "node-role.kubernetes.io/worker"})
    core.create_node(_node("worker-1", labels={"node-role.kubernetes.io/worker": ""}))
    core.create_node(_node("control-1", labels={"node-role.kubernetes.io/control-plane": ""}))

    discovery.reconcile(ObjectKey("Node", "", "worker-1"))
    discovery.reconcile(ObjectKey("Node", "", "control-1"))

    assert [h["name"] for h in discovery.api.snapshot()["hosts"]] == ["worker-1"]
    assert not core.read_node("control-1").metadata.finalizers


def test_deleted_node_deletes_its_host_then_goes(discovery: Discovery, core) -> None:
    discovery.world.resolved(node_discovery={})
    core.create_node(_node("worker-1"))
    key = ObjectKey("Node", "", "worker-1")
    discovery.reconcile(key)

    core.delete_node("worker-1")
    assert discovery.reconcile(key) == "succeeded"

    assert discovery.api.snapshot()["hosts"] == []
    with pytest.raises(kubernetes.client.ApiException) as gone:
        core.read_node("worker-1")
    assert gone.value.status == 404


def test_node_discovery_switched_off_releases_nodes_and_deletes_their_hosts(
    discovery: Discovery, core
) -> None:
    discovery.world.resolved(node_discovery={})
    core.create_node(_node("worker-1"))
    key = ObjectKey("Node", "", "worker-1")
    discovery.reconcile(key)
    discovery.world.patch_operator_config({"node_discovery": {"enabled": False}})
    discovery.world.woken.keys.clear()

    discovery.reconcile(ObjectKey("OperatorConfig", "polycrate", "default"))
    assert key in discovery.world.woken.keys
    discovery.reconcile(key)

    node = core.read_node("worker-1")
    assert discovery.api.snapshot()["hosts"] == []
    assert not node.metadata.finalizers
    assert HOST_API_ID_ANNOTATION not in (node.metadata.annotations or {})
