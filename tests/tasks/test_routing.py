"""Routing: every kind's reconcile runs on the queue of the external system it talks to."""

from __future__ import annotations

import pytest

from tasks.routing import QUEUES, parse_queue_list, queue_for


@pytest.mark.parametrize(
    ("kind", "queue"),
    [
        ("Contact", "keycloak"),
        ("ContactGroup", "keycloak"),
        ("GitLabGroup", "gitlab"),
        ("HarborProject", "harbor"),
        ("ArgoCDProject", "argocd"),
        ("K8sCluster", "argocd"),
        ("OperatorConfig", "polycrate-api"),
        ("Artifact", "polycrate-api"),
        ("Ingress", "polycrate-api"),
        ("velero.io/Backup", "polycrate-api"),
        ("cert-manager.io/Certificate", "polycrate-api"),
        ("Organization", "default"),
        ("SoftwareDeliveryPlatform", "default"),
        ("SomethingNew", "default"),
    ],
)
def test_kind_is_routed_to_its_system_queue(kind: str, queue: str) -> None:
    assert queue_for(kind) == queue


def test_queue_list_accepts_known_names_and_drops_repeats() -> None:
    assert parse_queue_list("harbor, keycloak,harbor") == ("harbor", "keycloak")


def test_unknown_queue_name_is_rejected_with_the_valid_names() -> None:
    with pytest.raises(ValueError, match="unknown queue.*harbour.*choose from default"):
        parse_queue_list("harbour")


def test_every_queue_name_is_unique() -> None:
    assert len(set(QUEUES)) == len(QUEUES) == 6
