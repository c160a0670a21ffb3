"""What `kubectl describe organization` shows after a run: one Normal Event per reconcile that
changed something, naming every object it created, and a Warning for each failure.

The reconciler is driven as a worker drives it (tasks.reconcile), against the four emulated
systems; Events are read back from the Kubernetes API.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import kubernetes
import pytest
import redis

from polycrate.keys import ObjectKey
from tests.tasks.flows.test_tenancy import _organization, tenancy_cluster
from tests.tasks.test_handlers import Cluster


@pytest.fixture
def cluster(
    kube_api_client: kubernetes.client.ApiClient,
    redis_client: redis.Redis,
    kube_namespace: str,
    kube_install_crd: Callable[..., dict[str, Any]],
    systems: dict[str, Any],
) -> Cluster:
    return tenancy_cluster(kube_api_client, redis_client, kube_namespace, kube_install_crd, systems)


def _normal(cluster: Cluster, key: ObjectKey) -> list[dict[str, Any]]:
    return [event for event in cluster.events(key) if event["type"] == "Normal"]


def test_first_reconcile_of_a_full_tenant_writes_one_normal_event_naming_each_created_object(
    cluster: Cluster,
) -> None:
    key = _organization(cluster)

    assert cluster.reconcile(key).result == "succeeded"

    [event] = _normal(cluster, key)
    assert event["reason"] == "Ready"
    message = event["message"]
    assert message.startswith(f"{key.describe()}: All organization resources provisioned; created ")
    for created in (
        'Keycloak group "/acme-corp"',
        'Keycloak group "/acme-corp/acme-corp-admins"',
        'Keycloak group "/acme-corp/acme-corp-developers"',
        'Keycloak group "/acme-corp/acme-corp-viewers"',
        'GitLab group "acme-corp"',
        'Harbor project "acme-corp"',
        'Argo CD project "acme-corp"',
    ):
        assert created in message, f"{created} is not named in: {message}"
    assert event["count"] == 1


def test_a_converged_re_reconcile_writes_no_event(cluster: Cluster) -> None:
    key = _organization(cluster)
    cluster.reconcile(key)
    before = [(event["metadata"]["name"], event["count"]) for event in cluster.events(key)]

    assert cluster.reconcile(key).result == "succeeded"

    assert [(event["metadata"]["name"], event["count"]) for event in cluster.events(key)] == before


def test_a_failure_writes_a_warning_after_one_event_for_what_was_created_before_it(
    cluster: Cluster, systems: dict[str, Any]
) -> None:
    key = _organization(cluster)
    systems["argocd"].set_faults(outage_seconds=60)

    assert cluster.reconcile(key).result == "retrying"

    # In the order they were written (the emulator's resourceVersions count up).
    events = sorted(cluster.events(key), key=lambda event: int(event["metadata"]["resourceVersion"]))
    assert [(event["type"], event["reason"]) for event in events] == [
        ("Normal", "Created"),
        ("Warning", "Retrying"),
    ]
    assert "Argo CD" in events[1]["message"]
    assert events[0]["message"].startswith('created Keycloak group "/acme-corp", ')
    assert 'Harbor project "acme-corp"' in events[0]["message"]
    assert "Argo CD" not in events[0]["message"]
