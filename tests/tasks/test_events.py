"""Events against the Kubernetes API: one Event per occurrence, counted, visible in kubectl describe."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import kubernetes
import pytest
import yaml

from polycrate.keys import ObjectKey
from polycrate.kubeclient.api import JsonObject, KubeClient
from polycrate.kubeclient.objects import ObjectAPI
from tasks.events import EventRecorder, aggregated_events, summarize
from tests.tasks.support import CRDS, EXAMPLES


class SteppingClock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 6, 14, 30, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def objects(kube_api_client: kubernetes.client.ApiClient) -> ObjectAPI:
    return ObjectAPI(KubeClient(kube_api_client))


@pytest.fixture
def harbor_project(
    kube_install_crd: Callable[..., dict[str, Any]],
    kube_api_client: kubernetes.client.ApiClient,
    kube_namespace: str,
    objects: ObjectAPI,
) -> JsonObject:
    kube_install_crd(CRDS / "harborprojects.polycrate.io.yaml")
    kubernetes.client.CustomObjectsApi(kube_api_client).create_namespaced_custom_object(
        "polycrate.io",
        "v1alpha1",
        kube_namespace,
        "harborprojects",
        {
            "apiVersion": "polycrate.io/v1alpha1",
            "kind": "HarborProject",
            "metadata": {"name": "shared-images"},
            "spec": {"sdp": ["production"], "projectName": "shared-images", "storageQuota": "100Gi"},
        },
    )
    obj = objects.get(ObjectKey("HarborProject", kube_namespace, "shared-images"))
    assert obj is not None
    return obj


def events_of(objects: ObjectAPI, obj: JsonObject, namespace: str | None = None) -> list[JsonObject]:
    metadata = obj["metadata"]
    return objects.list_events(
        namespace or metadata.get("namespace") or "default",
        field_selector=f"involvedObject.name={metadata['name']}",
    )


def test_repeated_failure_bumps_one_event_instead_of_creating_more(
    objects: ObjectAPI, harbor_project: JsonObject
) -> None:
    clock = SteppingClock()
    recorder = EventRecorder(objects, clock=clock)

    for _ in range(3):
        recorder.record(harbor_project, "Warning", "Retrying", "Harbor unreachable: connection refused")
        clock.now += timedelta(seconds=60)

    [event] = events_of(objects, harbor_project)
    assert event["count"] == 3
    assert event["reason"] == "Retrying" and event["type"] == "Warning"
    assert event["firstTimestamp"] == "2026-01-06T14:30:00Z"
    assert event["lastTimestamp"] == "2026-01-06T14:32:00Z"
    assert event["involvedObject"]["uid"] == harbor_project["metadata"]["uid"]
    assert event["source"]["component"] == "polycrate-operator"


def test_a_different_reason_or_message_is_a_separate_event(
    objects: ObjectAPI, harbor_project: JsonObject
) -> None:
    recorder = EventRecorder(objects)

    recorder.record(harbor_project, "Warning", "Retrying", "Harbor unreachable")
    recorder.record(harbor_project, "Warning", "InvalidSpec", 'spec.storageQuota "50Gx" is not a quantity')
    recorder.record(harbor_project, "Normal", "Ready", "HarborProject is Ready")

    assert sorted(event["reason"] for event in events_of(objects, harbor_project)) == [
        "InvalidSpec",
        "Ready",
        "Retrying",
    ]


def test_event_of_a_cluster_scoped_object_lands_in_the_default_namespace(
    objects: ObjectAPI,
    kube_install_crd: Callable[..., dict[str, Any]],
    kube_api_client: kubernetes.client.ApiClient,
) -> None:
    kube_install_crd(CRDS / "artifacts.polycrate.io.yaml")
    example = yaml.safe_load((EXAMPLES / "artifact-cargo-ayedo-cloud-library-nginx-1-25-3.yaml").read_text())
    example.pop("status", None)
    kubernetes.client.CustomObjectsApi(kube_api_client).create_cluster_custom_object(
        "polycrate.io", "v1alpha1", "artifacts", example
    )
    artifact = objects.get(ObjectKey("Artifact", "", example["metadata"]["name"]))
    assert artifact is not None

    EventRecorder(objects).record(artifact, "Normal", "Ready", "Artifact is Ready")

    assert [event["reason"] for event in events_of(objects, artifact, "default")] == ["Ready"]


def test_events_show_up_in_kubectl_describe(objects: ObjectAPI, harbor_project: JsonObject, kubectl) -> None:
    recorder = EventRecorder(objects)
    for _ in range(2):
        recorder.record(
            harbor_project, "Warning", "InvalidSpec", 'spec.storageQuota "50Gx" is not a quantity'
        )

    described = kubectl(
        "describe", "harborproject", "shared-images", "-n", harbor_project["metadata"]["namespace"]
    ).stdout

    assert "InvalidSpec" in described
    assert 'spec.storageQuota "50Gx" is not a quantity' in described


def test_normal_events_of_a_run_become_one_event_and_a_warning_is_written_after_them(
    objects: ObjectAPI, harbor_project: JsonObject
) -> None:
    recorder = EventRecorder(objects)

    with aggregated_events():
        recorder.record(harbor_project, "Normal", "Created", 'Harbor project "shared-images" created (100Gi)')
        with aggregated_events():  # a nested scope joins the run's
            recorder.record(harbor_project, "Normal", "Updated", 'Harbor quota "shared-images" updated')
        assert events_of(objects, harbor_project) == [], "nothing is written before the run ends"
        recorder.record(harbor_project, "Warning", "Retrying", "Harbor unreachable")
        recorder.record(harbor_project, "Normal", "Ready", 'HarborProject "shared-images": provisioned')

    events = sorted(events_of(objects, harbor_project), key=lambda e: int(e["metadata"]["resourceVersion"]))
    assert [(e["type"], e["reason"], e["message"]) for e in events] == [
        (
            "Normal",
            "Reconciled",
            'created Harbor project "shared-images" (100Gi); updated Harbor quota "shared-images"',
        ),
        ("Warning", "Retrying", "Harbor unreachable"),
        ("Normal", "Ready", 'HarborProject "shared-images": provisioned'),
    ]


def test_a_discarded_run_writes_no_normal_event(objects: ObjectAPI, harbor_project: JsonObject) -> None:
    with aggregated_events() as events:
        EventRecorder(objects).record(harbor_project, "Normal", "Created", "Harbor project created")
        events.discard()

    assert events_of(objects, harbor_project) == []


def test_a_summary_puts_the_transition_first_and_groups_the_changes_by_action() -> None:
    records = [
        ("Created", 'Keycloak group "/acme-corp" created'),
        ("Created", 'Harbor project "acme-corp" created (50Gi)'),
        ("Deleted", 'GitLab group "old" deleted'),
        ("Ready", 'Organization "polycrate/acme-corp": All organization resources provisioned'),
    ]

    assert summarize(records) == (
        "Ready",
        'Organization "polycrate/acme-corp": All organization resources provisioned; '
        'created Keycloak group "/acme-corp", Harbor project "acme-corp" (50Gi); deleted GitLab group "old"',
    )
    assert summarize(records[:2])[0] == "Created"
    assert summarize(records[1:2]) == records[1]
