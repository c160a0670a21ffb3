"""Status writes against the Kubernetes API (emulator, or a real cluster via POLYCRATE_TEST_KUBECONFIG)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import kubernetes
import pytest

from polycrate.keys import ObjectKey
from polycrate.kubeclient.api import KubeClient
from polycrate.kubeclient.objects import ObjectAPI
from tasks.status import ConditionUpdate, StatusUpdate, StatusWriter
from tests.tasks.support import CRDS


class SteppingClock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = datetime(2026, 1, 6, 14, 30, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def organization(
    kube_install_crd: Callable[..., dict[str, Any]],
    kube_api_client: kubernetes.client.ApiClient,
    kube_namespace: str,
) -> ObjectKey:
    kube_install_crd(CRDS / "organizations.polycrate.io.yaml")
    kubernetes.client.CustomObjectsApi(kube_api_client).create_namespaced_custom_object(
        "polycrate.io",
        "v1alpha1",
        kube_namespace,
        "organizations",
        {
            "apiVersion": "polycrate.io/v1alpha1",
            "kind": "Organization",
            "metadata": {"name": "acme-corp"},
            "spec": {"sdp": "production", "displayName": "ACME Corporation"},
        },
    )
    return ObjectKey("Organization", kube_namespace, "acme-corp")


@pytest.fixture
def objects(kube_api_client: kubernetes.client.ApiClient) -> ObjectAPI:
    return ObjectAPI(KubeClient(kube_api_client))


def ready(message: str = "all systems provisioned", status: str = "True") -> ConditionUpdate:
    return ConditionUpdate("Ready", status, "Provisioned" if status == "True" else "Failed", message)  # type: ignore[arg-type]


def test_status_write_sets_phase_condition_and_observed_generation(
    objects: ObjectAPI, organization: ObjectKey
) -> None:
    obj = objects.get(organization)
    assert obj is not None

    change = StatusWriter(objects).write(
        organization,
        StatusUpdate(phase="Ready", conditions=(ready(),), observed_generation=obj["metadata"]["generation"]),
    )

    stored = objects.get(organization)
    assert stored is not None
    assert change.written and change.previous_phase is None and change.phase == "Ready"
    assert stored["status"]["phase"] == "Ready"
    assert stored["status"]["observedGeneration"] == stored["metadata"]["generation"]
    assert stored["status"]["conditions"][0]["type"] == "Ready"
    assert stored["status"]["conditions"][0]["status"] == "True"
    assert stored["metadata"]["generation"] == obj["metadata"]["generation"], "status writes leave generation"


def test_unchanged_status_is_not_written_again(objects: ObjectAPI, organization: ObjectKey) -> None:
    writer = StatusWriter(objects)
    update = StatusUpdate(phase="Ready", conditions=(ready(),), observed_generation=1)
    writer.write(organization, update)
    before = objects.get(organization)
    assert before is not None

    change = writer.write(organization, update)

    after = objects.get(organization)
    assert after is not None
    assert not change.written
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]


def test_last_transition_time_moves_only_when_the_condition_status_changes(
    objects: ObjectAPI, organization: ObjectKey
) -> None:
    clock = SteppingClock()
    writer = StatusWriter(objects, clock=clock)

    writer.write(organization, StatusUpdate(conditions=(ready("first"),)))
    first = clock.now
    clock.advance(60)
    writer.write(organization, StatusUpdate(conditions=(ready("same status, new words"),)))
    kept = (objects.get(organization) or {})["status"]["conditions"][0]
    clock.advance(60)
    writer.write(organization, StatusUpdate(conditions=(ready("keycloak unreachable", status="False"),)))
    moved = (objects.get(organization) or {})["status"]["conditions"][0]

    assert kept["lastTransitionTime"] == first.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert kept["message"] == "same status, new words"
    assert moved["lastTransitionTime"] == clock.now.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert moved["status"] == "False"


def test_writer_with_a_stale_read_retries_and_keeps_the_other_writers_fields(
    objects: ObjectAPI, organization: ObjectKey
) -> None:
    stale = objects.get(organization)
    StatusWriter(objects).write(
        organization,
        StatusUpdate(
            fields={"keycloakGroupID": "abc-123"},
            conditions=(ConditionUpdate("KeycloakReady", "True", "Provisioned", "group exists"),),
        ),
    )

    StatusWriter(objects).write(
        organization,
        StatusUpdate(
            fields={"gitlabGroupID": 42},
            conditions=(ConditionUpdate("GitLabReady", "True", "Provisioned", "group exists"),),
        ),
        current=stale,
    )

    status = (objects.get(organization) or {})["status"]
    assert status["keycloakGroupID"] == "abc-123"
    assert status["gitlabGroupID"] == 42
    assert {c["type"] for c in status["conditions"]} == {"KeycloakReady", "GitLabReady"}


def test_two_concurrent_writers_of_different_fields_lose_nothing(
    kubeconfig: str, objects: ObjectAPI, organization: ObjectKey
) -> None:
    def writer(field: str, condition: str, values: list[Any]) -> None:
        with kubernetes.config.new_client_from_config(config_file=kubeconfig) as own_client:
            status = StatusWriter(ObjectAPI(KubeClient(own_client)), max_attempts=50)
            for n, value in enumerate(values):
                status.write(
                    organization,
                    StatusUpdate(
                        fields={field: value},
                        conditions=(ConditionUpdate(condition, "True", "Step", f"step {n}"),),
                    ),
                )

    threads = [
        threading.Thread(
            target=writer, args=("keycloakGroupID", "KeycloakReady", [f"group-{n}" for n in range(15)])
        ),
        threading.Thread(target=writer, args=("gitlabGroupID", "GitLabReady", list(range(100, 115)))),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    status = (objects.get(organization) or {})["status"]
    assert status["keycloakGroupID"] == "group-14"
    assert status["gitlabGroupID"] == 114
    conditions = {c["type"]: c["message"] for c in status["conditions"]}
    assert conditions == {"KeycloakReady": "step 14", "GitLabReady": "step 14"}


def test_writing_the_status_of_a_deleted_object_reports_it_gone(
    objects: ObjectAPI, organization: ObjectKey
) -> None:
    missing = ObjectKey("Organization", organization.namespace, "never-created")

    change = StatusWriter(objects).write(missing, StatusUpdate(phase="Ready"))

    assert not change.written and change.object is None
