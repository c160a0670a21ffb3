"""Certificate discovery: cert-manager Certificate → polycrate.io Certificate → Polycrate API.

The Kubernetes emulator with cert-manager's CRD, the Polycrate API emulator over HTTP, and the
reconciler driven directly with a clock the test moves.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from polycrate.keys import ObjectKey
from polycrate.kubeclient.api import JsonObject
from tasks.flows.discovery_certificates import (
    CertificateHandler,
    CertManagerCertificateHandler,
    certificate_state,
    next_threshold,
)
from tasks.flows.operator_config import OperatorConfigHandler
from tests.fixtures.kube import CERT_MANAGER_CERTIFICATE_CRD
from tests.tasks.flows.discovery_world import DiscoveryWorld, world_fixture  # noqa: F401

NOW = datetime(2026, 1, 6, 14, 30, tzinfo=UTC)


def _at(offset: timedelta) -> str:
    return (NOW + offset).strftime("%Y-%m-%dT%H:%M:%SZ")


def _ready(status: str = "True", reason: str = "Ready") -> list[JsonObject]:
    return [
        {
            "type": "Ready",
            "status": status,
            "reason": reason,
            "message": "",
            "lastTransitionTime": _at(timedelta()),
        }
    ]


def _cert_manager_status(
    conditions: list[JsonObject], not_after: timedelta = timedelta(days=90)
) -> JsonObject:
    return {
        "notBefore": _at(not_after - timedelta(days=90)),
        "notAfter": _at(not_after),
        "renewalTime": _at(not_after - timedelta(days=30)),
        "revision": 1,
        "conditions": conditions,
    }


@pytest.fixture
def flows(world: DiscoveryWorld) -> DiscoveryWorld:
    world.install("Certificate", foreign=[CERT_MANAGER_CERTIFICATE_CRD])
    world.use(
        CertManagerCertificateHandler(clock=world.clock),
        CertificateHandler(clock=world.clock),
    )
    return world


def _source(
    world: DiscoveryWorld,
    name: str = "api-example-com-tls",
    *,
    issuer: str = "letsencrypt-production",
    namespace: str | None = None,
    status: JsonObject | None = None,
    dns_names: tuple[str, ...] = ("api.example.com",),
) -> ObjectKey:
    namespace = namespace or world.namespace
    where = ("cert-manager.io", "v1", namespace, "certificates")
    world.custom.create_namespaced_custom_object(
        *where,
        {
            "apiVersion": "cert-manager.io/v1",
            "kind": "Certificate",
            "metadata": {"name": name},
            "spec": {
                "secretName": name,
                "dnsNames": list(dns_names),
                "issuerRef": {"name": issuer, "kind": "ClusterIssuer", "group": "cert-manager.io"},
            },
        },
    )
    world.custom.patch_namespaced_custom_object_status(
        *where, name, {"status": status or _cert_manager_status(_ready())}
    )
    return ObjectKey("cert-manager.io/Certificate", namespace, name)


def _mirror(namespace: str, name: str = "api-example-com-tls") -> ObjectKey:
    return ObjectKey("Certificate", namespace, f"certmanager-{namespace}-{name}")


# --- the Status-Mapping table ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("conditions", "not_after", "expected"),
    [
        (_ready("True"), timedelta(days=90), (True, "ready")),
        (_ready("False", "Issuing"), timedelta(days=90), (False, "pending")),
        (_ready("False", "Failed"), timedelta(days=90), (False, "failed")),
        (_ready("True"), timedelta(days=-1), (True, "expired")),
        (_ready("True"), timedelta(days=29), (True, "expiring_soon")),
        ([], timedelta(days=90), (False, "unknown")),
    ],
    ids=["ready", "issuing-is-pending", "failed", "expired", "expiring-soon", "no-verdict-is-unknown"],
)
def test_status_mapping_table_row(
    conditions: list[JsonObject], not_after: timedelta, expected: tuple
) -> None:
    source = {"status": _cert_manager_status(conditions, not_after)}

    assert certificate_state(source, NOW) == expected


def test_failed_issuing_condition_makes_a_not_ready_certificate_failed() -> None:
    conditions = [
        *_ready("False", "DoesNotExist"),
        {"type": "Issuing", "status": "False", "reason": "Failed"},
    ]

    assert certificate_state({"status": _cert_manager_status(conditions)}, NOW) == (False, "failed")


# --- first stage: the mirror CR --------------------------------------------------------------------


def test_spec_example_certificate_is_mirrored_with_labels_owner_and_the_api_mapping(
    flows: DiscoveryWorld,
) -> None:
    flows.operator_config(certificate_discovery={})
    source = _source(flows)

    assert flows.reconcile(source).result == "succeeded"

    mirror = flows.get(_mirror(flows.namespace))
    assert mirror is not None
    assert mirror["metadata"]["labels"] == {
        "certificates.polycrate.io/issuer": "letsencrypt-production",
        "certificates.polycrate.io/source": "api-example-com-tls",
        "certificates.polycrate.io/ready": "true",
        "operator.polycrate.io/discovered": "true",
    }
    owner = flows.get(source)
    assert mirror["metadata"]["ownerReferences"] == [
        {
            "apiVersion": "cert-manager.io/v1",
            "kind": "Certificate",
            "name": "api-example-com-tls",
            "uid": owner["metadata"]["uid"],
        }
    ]
    assert mirror["spec"] == {
        "name": "api-example-com-tls",
        "display_name": "api.example.com",
        "namespace": flows.namespace,
        "secret_name": "api-example-com-tls",
        "dns_names": ["api.example.com"],
        "ip_addresses": [],
        "issuer_name": "letsencrypt-production",
        "issuer_kind": "clusterissuer",
        "issuer_group": "cert-manager.io",
        "certificate_status": "ready",
        "is_ready": True,
        "not_before": _at(timedelta()),
        "not_after": _at(timedelta(days=90)),
        "renewal_time": _at(timedelta(days=60)),
        "source_cert_manager": {
            "name": "api-example-com-tls",
            "namespace": flows.namespace,
            "uid": owner["metadata"]["uid"],
            "revision": 1,
        },
    }


def test_certificate_status_changes_only_when_the_clock_crosses_the_30_day_threshold(
    flows: DiscoveryWorld,
) -> None:
    flows.operator_config(certificate_discovery={})
    source = _source(flows, status=_cert_manager_status(_ready(), not_after=timedelta(days=40)))
    flows.reconcile(source)
    before = flows.get(_mirror(flows.namespace))

    flows.clock.advance(days=5)
    flows.reconcile(source)
    unchanged = flows.get(_mirror(flows.namespace))
    flows.clock.advance(days=6)
    flows.reconcile(source)
    crossed = flows.get(_mirror(flows.namespace))

    assert unchanged["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    assert (before["spec"]["certificate_status"], crossed["spec"]["certificate_status"]) == (
        "ready",
        "expiring_soon",
    )


def test_a_certificate_is_reconciled_again_the_moment_it_crosses_the_30_day_threshold(
    flows: DiscoveryWorld,
) -> None:
    flows.operator_config(certificate_discovery={})
    source = _source(flows, status=_cert_manager_status(_ready(), not_after=timedelta(days=40)))
    flows.reconcile(source)
    queue, client = flows.cluster.queue, flows.cluster.redis
    seconds, microseconds = client.time()
    redis_now = seconds + microseconds / 1e6
    assert queue.timers()[source] - redis_now == pytest.approx(timedelta(days=10).total_seconds(), abs=5)

    flows.clock.advance(days=10)  # the threshold: the operator's clock, and the timer's
    client.zadd("polycrate:queue:timers", {str(source): redis_now})
    [(key, task_id)] = [(k, t) for k, t, cause in queue.heal(lost_after=3600) if cause == "requeue-due"]
    flows.cluster.reconciler.run(str(key), task_id)

    assert key == source
    assert flows.get(_mirror(flows.namespace))["spec"]["certificate_status"] == "expiring_soon"
    assert queue.timers()[source] - redis_now == pytest.approx(timedelta(days=30).total_seconds(), abs=5), (
        "next: notAfter itself"
    )


def test_next_threshold_is_expiring_soon_then_expiry_then_none() -> None:
    source = _cert_manager_status(_ready(), not_after=timedelta(days=40))
    assert next_threshold({"status": source}, NOW) == NOW + timedelta(days=10)
    assert next_threshold({"status": source}, NOW + timedelta(days=10)) == NOW + timedelta(days=40)
    assert next_threshold({"status": source}, NOW + timedelta(days=40)) is None
    assert next_threshold({"status": {}}, NOW) is None


@pytest.mark.parametrize(
    ("section", "issuer", "discovered"),
    [
        ({"issuer_filter": {"exclude_issuers": ["selfsigned-issuer"]}}, "selfsigned-issuer", False),
        ({"issuer_filter": {"exclude_issuers": ["selfsigned-issuer"]}}, "letsencrypt-production", True),
        ({"issuer_filter": {"include_issuers": ["letsencrypt-production"]}}, "letsencrypt-staging", False),
        ({"issuer_filter": {"include_issuers": ["letsencrypt-production"]}}, "letsencrypt-production", True),
    ],
    ids=["excluded", "not-excluded", "not-included", "included"],
)
def test_issuer_filter_decides_which_certificates_are_discovered(
    flows: DiscoveryWorld, section: dict[str, Any], issuer: str, discovered: bool
) -> None:
    flows.operator_config(certificate_discovery=section)

    flows.reconcile(_source(flows, issuer=issuer))

    assert (flows.get(_mirror(flows.namespace)) is not None) is discovered


def test_ignored_namespace_is_not_discovered(flows: DiscoveryWorld) -> None:
    flows.operator_config(certificate_discovery={"ignore_namespaces": [flows.namespace]})

    flows.reconcile(_source(flows))

    assert flows.get(_mirror(flows.namespace)) is None


@pytest.mark.parametrize(
    "config",
    [None, {"certificate_discovery": {"enabled": False}}, {}],
    ids=["no-config", "disabled", "section-missing"],
)
def test_without_certificate_discovery_nothing_is_mirrored(
    flows: DiscoveryWorld, config: dict | None
) -> None:
    if config is not None:
        flows.operator_config(**config)

    assert flows.reconcile(_source(flows)).result == "succeeded"

    assert flows.get(_mirror(flows.namespace)) is None


# --- second stage: the API ---------------------------------------------------------------------------


def test_certificate_is_synced_to_the_api_with_the_mapped_fields(flows: DiscoveryWorld) -> None:
    flows.operator_config(certificate_discovery={})
    flows.reconcile(_source(flows))

    assert flows.reconcile(_mirror(flows.namespace)).result == "succeeded"

    status = flows.get(_mirror(flows.namespace))["status"]
    [stored] = flows.api_objects("certificates")
    assert status["phase"] == "Synced" and status["sync_status"] == "synced"
    assert status["api_id"] == stored["id"] and len(status["config_hash"]) == 64
    assert status["last_synced_at"] == "2026-01-06T14:30:00Z"
    assert {k: stored[k] for k in ("cluster", "namespace", "name", "secret_name", "dns_names")} == {
        "cluster": flows.cluster_id,
        "namespace": flows.namespace,
        "name": "api-example-com-tls",
        "secret_name": "api-example-com-tls",
        "dns_names": ["api.example.com"],
    }
    assert (
        stored["issuer_name"],
        stored["issuer_kind"],
        stored["certificate_status"],
        stored["is_ready"],
    ) == (
        "letsencrypt-production",
        "clusterissuer",
        "ready",
        True,
    )
    assert stored["not_after"] == _at(timedelta(days=90))


def test_unchanged_certificate_only_checks_that_the_api_object_exists(flows: DiscoveryWorld) -> None:
    flows.operator_config(certificate_discovery={})
    flows.reconcile(_source(flows))
    flows.reconcile(_mirror(flows.namespace))
    before = flows.get(_mirror(flows.namespace))
    [stored_before] = flows.api_objects("certificates")
    flows.clock.advance(hours=1)

    flows.reconcile(_mirror(flows.namespace))

    after = flows.get(_mirror(flows.namespace))
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    assert flows.api_objects("certificates")[0]["updated_at"] == stored_before["updated_at"]


def test_changed_source_reaches_the_api_and_moves_last_synced_at(flows: DiscoveryWorld) -> None:
    flows.operator_config(certificate_discovery={})
    source = _source(flows)
    flows.reconcile(source)
    flows.reconcile(_mirror(flows.namespace))
    flows.custom.patch_namespaced_custom_object(
        "cert-manager.io",
        "v1",
        flows.namespace,
        "certificates",
        source.name,
        {"spec": {"dnsNames": ["api.example.com", "www.example.com"]}},
    )
    flows.clock.advance(hours=1)

    flows.reconcile(source)
    flows.reconcile(_mirror(flows.namespace))

    assert flows.api_objects("certificates")[0]["dns_names"] == ["api.example.com", "www.example.com"]
    assert flows.get(_mirror(flows.namespace))["status"]["last_synced_at"] == "2026-01-06T15:30:00Z"


def test_api_object_deleted_by_hand_is_recreated_at_the_next_reconcile(flows: DiscoveryWorld) -> None:
    flows.operator_config(certificate_discovery={})
    flows.reconcile(_source(flows))
    flows.reconcile(_mirror(flows.namespace))
    old_id = flows.get(_mirror(flows.namespace))["status"]["api_id"]
    flows.client.certificates.delete(old_id)

    flows.reconcile(_mirror(flows.namespace))

    [stored] = flows.api_objects("certificates")
    assert stored["id"] != old_id
    assert flows.get(_mirror(flows.namespace))["status"]["api_id"] == stored["id"]


def test_without_api_sync_the_certificate_is_discovered_but_not_synced(flows: DiscoveryWorld) -> None:
    flows.operator_config(api_sync=False, certificate_discovery={})
    flows.reconcile(_source(flows))

    assert flows.reconcile(_mirror(flows.namespace)).result == "succeeded"

    status = flows.get(_mirror(flows.namespace))["status"]
    assert (status["phase"], status["sync_status"]) == ("Discovered", "pending")
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert "api_sync off" in ready["message"]
    assert flows.api_objects("certificates") == []


def test_unresolved_workspace_parks_the_certificate_naming_the_operator_config(flows: DiscoveryWorld) -> None:
    flows.operator_config(resolved=False, certificate_discovery={})
    flows.reconcile(_source(flows))

    assert flows.reconcile(_mirror(flows.namespace)).result == "failed"

    status = flows.get(_mirror(flows.namespace))["status"]
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert (status["phase"], status["sync_status"]) == ("Error", "error")
    assert "OperatorConfig polycrate/default" in ready["message"] and "workspace" in ready["message"]


# --- deletion ------------------------------------------------------------------------------------------


def test_deleted_source_takes_its_certificate_and_the_api_object_along(flows: DiscoveryWorld) -> None:
    flows.operator_config(certificate_discovery={})
    source = _source(flows)
    flows.reconcile(source)
    flows.reconcile(_mirror(flows.namespace))

    flows.custom.delete_namespaced_custom_object(
        "cert-manager.io", "v1", flows.namespace, "certificates", source.name
    )
    assert flows.get(_mirror(flows.namespace))["metadata"].get("deletionTimestamp"), (
        "garbage collector's turn"
    )
    flows.reconcile(_mirror(flows.namespace))

    assert flows.get(_mirror(flows.namespace)) is None
    assert flows.api_objects("certificates") == []


def test_issuer_excluded_later_removes_the_certificate_from_cluster_and_api(flows: DiscoveryWorld) -> None:
    flows.operator_config(certificate_discovery={})
    flows.reconcile(_source(flows))
    flows.reconcile(_mirror(flows.namespace))

    flows.operator_config(
        certificate_discovery={"issuer_filter": {"exclude_issuers": ["letsencrypt-production"]}}
    )
    flows.reconcile(_mirror(flows.namespace))
    flows.reconcile(_mirror(flows.namespace))

    assert flows.get(_mirror(flows.namespace)) is None
    assert flows.api_objects("certificates") == []


def test_parked_certificate_is_synced_as_soon_as_the_operator_config_resolves(flows: DiscoveryWorld) -> None:
    flows.use(OperatorConfigHandler())
    flows.operator_config(
        resolved=False, certificate_discovery={}, local_cluster={"cluster_name": "test-cluster"}
    )
    flows.reconcile(_source(flows))
    assert flows.reconcile(_mirror(flows.namespace)).result == "failed"

    assert flows.reconcile(ObjectKey("OperatorConfig", "polycrate", "default")).result == "succeeded"
    flows.settle(flows.woken())

    status = flows.get(_mirror(flows.namespace))["status"]
    assert (status["phase"], status["sync_status"]) == ("Synced", "synced")
    assert [c["name"] for c in flows.api_objects("certificates")] == ["api-example-com-tls"]
