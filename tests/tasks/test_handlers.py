"""The built-in handlers, run by the reconciler against the Kubernetes API (emulator or real cluster).

The reconciler is driven directly (publishes are recorded, not sent), so each test shows one
key's journey: valid objects end Ready with our finalizer, invalid ones end in Error with a
message naming the field and a Warning Event, deleted ones lose the finalizer and disappear.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import kubernetes
import pytest
import redis
import yaml

from polycrate.keys import ObjectKey
from polycrate.kubeclient.api import JsonObject
from polycrate.kubeclient.resources import SOURCE_RESOURCES
from polycrate.models import FINALIZER, KINDS
from polycrate.settings import Settings
from tasks.context import WorkerContext
from tasks.dispatch import HandlerRegistry
from tasks.handlers import CustomResourceHandler, DiscoverySourceHandler
from tasks.queue import KeyQueue
from tasks.reconcile import Outcome, Reconciler
from tasks.registration import build_registry
from tasks.retry import BackoffPolicy, RetryTracker
from tests.tasks.support import CRDS, EXAMPLES, RecordingSender, example, without_spec_validation


class Cluster:
    """The reconciler with the built-in handlers, plus what a test needs to poke the cluster."""

    def __init__(
        self,
        api_client: kubernetes.client.ApiClient,
        redis_client: redis.Redis,
        namespace: str,
        registry: HandlerRegistry | None = None,
    ) -> None:
        self.namespace = namespace
        self.custom = kubernetes.client.CustomObjectsApi(api_client)
        self.sender = RecordingSender()
        self.redis = redis_client
        self.queue = KeyQueue(redis_client, sender=self.sender)
        self.reconciler = Reconciler(
            WorkerContext(Settings(), redis_client=redis_client, api_client_factory=lambda _: api_client),
            registry or build_registry(),
            self.queue,
            RetryTracker(redis_client, BackoffPolicy(), rng=random.Random(1)),
        )

    def create(self, plural: str, obj: JsonObject) -> ObjectKey:
        self.custom.create_namespaced_custom_object("polycrate.io", "v1alpha1", self.namespace, plural, obj)
        return ObjectKey(obj["kind"], self.namespace, obj["metadata"]["name"])

    def get(self, key: ObjectKey) -> JsonObject | None:
        return self.reconciler.context.objects.get(key)

    def reconcile(self, key: ObjectKey) -> Outcome:
        """An event for `key`, and the run of the task it sent."""
        assert self.queue.add(key) == "enqueued"
        _, task_id, _ = self.sender.sent[-1]
        return self.reconciler.run(str(key), task_id)

    def fire_due(self) -> None:
        """Time passes: every run waiting in the delay queue becomes due and is published, as the
        healing loop does when its time comes."""
        for key in self.queue.scheduled():
            self.redis.zadd("polycrate:queue:due", {str(key): 0})
        self.queue.heal(lost_after=3600)

    def events(self, key: ObjectKey) -> list[JsonObject]:
        return self.reconciler.context.objects.list_events(
            key.namespace or "default", field_selector=f"involvedObject.name={key.name}"
        )


def generic_registry() -> HandlerRegistry:
    """Every kind on the generic handler, without the per-system flows (they have their own tests)."""
    registry = HandlerRegistry()
    for info in KINDS.values():
        registry.register(CustomResourceHandler(info))
    for kind in SOURCE_RESOURCES:
        registry.register(DiscoverySourceHandler(kind))
    return registry


@pytest.fixture
def cluster(
    kube_api_client: kubernetes.client.ApiClient, redis_client: redis.Redis, kube_namespace: str
) -> Cluster:
    """The generic handler's journey: validate, finalize, report — what every flow builds on."""
    return Cluster(kube_api_client, redis_client, kube_namespace, generic_registry())


@pytest.fixture
def install(kube_install_crd: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
    return kube_install_crd


def test_valid_organization_ends_ready_with_finalizer_observed_generation_and_an_event(
    cluster: Cluster, install: Callable[..., dict[str, Any]]
) -> None:
    install(CRDS / "organizations.polycrate.io.yaml")
    key = cluster.create("organizations", example("organization-acme-corp.yaml", cluster.namespace))

    assert cluster.reconcile(key).result == "succeeded"

    obj = cluster.get(key)
    assert obj is not None
    assert FINALIZER in obj["metadata"]["finalizers"]
    assert obj["status"]["phase"] == "Ready"
    assert obj["status"]["observedGeneration"] == obj["metadata"]["generation"]
    ready = next(c for c in obj["status"]["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "True"
    assert [(e["type"], e["reason"]) for e in cluster.events(key)] == [("Normal", "Ready")]


def test_second_reconcile_of_an_unchanged_object_writes_nothing(
    cluster: Cluster, install: Callable[..., dict[str, Any]]
) -> None:
    install(CRDS / "organizations.polycrate.io.yaml")
    key = cluster.create("organizations", example("organization-acme-corp.yaml", cluster.namespace))
    cluster.reconcile(key)
    before = cluster.get(key)

    assert cluster.reconcile(key).result == "succeeded"

    after = cluster.get(key)
    assert before is not None and after is not None
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    assert [e["count"] for e in cluster.events(key)] == [1], "no new Event without a transition"


def test_spec_change_is_observed_in_the_next_reconcile(
    cluster: Cluster, install: Callable[..., dict[str, Any]]
) -> None:
    install(CRDS / "organizations.polycrate.io.yaml")
    key = cluster.create("organizations", example("organization-acme-corp.yaml", cluster.namespace))
    cluster.reconcile(key)
    cluster.custom.patch_namespaced_custom_object(
        "polycrate.io",
        "v1alpha1",
        key.namespace,
        "organizations",
        key.name,
        {"spec": {"displayName": "ACME"}},
    )

    cluster.reconcile(key)

    obj = cluster.get(key)
    assert obj is not None and obj["metadata"]["generation"] == 2
    assert obj["status"]["observedGeneration"] == 2


def test_harbor_project_with_invalid_quota_ends_in_error_naming_the_field_and_is_not_retried(
    cluster: Cluster, install: Callable[..., dict[str, Any]]
) -> None:
    install(without_spec_validation(CRDS / "harborprojects.polycrate.io.yaml"))
    project = example("harborproject-shared-images.yaml", cluster.namespace)
    project["spec"]["storageQuota"] = "50Gx"
    key = cluster.create("harborprojects", project)

    outcome = cluster.reconcile(key)

    assert outcome.result == "failed"
    assert len(cluster.sender.sent) == 1, "no retry scheduled"
    obj = cluster.get(key)
    assert obj is not None
    assert obj["status"]["phase"] == "Error"
    ready = next(c for c in obj["status"]["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "False" and ready["reason"] == "InvalidSpec"
    assert "storageQuota" in ready["message"] and "50Gx" in ready["message"]
    [event] = cluster.events(key)
    assert event["type"] == "Warning" and event["reason"] == "InvalidSpec"
    assert "storageQuota" in event["message"]
    assert FINALIZER not in (obj["metadata"].get("finalizers") or []), "nothing was provisioned"


def test_organization_without_sdp_ends_in_error_naming_sdp(
    cluster: Cluster, install: Callable[..., dict[str, Any]]
) -> None:
    install(without_spec_validation(CRDS / "organizations.polycrate.io.yaml"))
    organization = example("organization-acme-corp.yaml", cluster.namespace)
    del organization["spec"]["sdp"]
    key = cluster.create("organizations", organization)

    assert cluster.reconcile(key).result == "failed"

    obj = cluster.get(key)
    assert obj is not None and obj["status"]["phase"] == "Error"
    assert "sdp" in next(c for c in obj["status"]["conditions"] if c["type"] == "Ready")["message"]


def test_repeated_permanent_failure_bumps_the_same_event(
    cluster: Cluster, install: Callable[..., dict[str, Any]]
) -> None:
    install(without_spec_validation(CRDS / "harborprojects.polycrate.io.yaml"))
    project = example("harborproject-shared-images.yaml", cluster.namespace)
    project["spec"]["storageQuota"] = "50Gx"
    key = cluster.create("harborprojects", project)

    for _ in range(3):
        cluster.reconcile(key)

    assert [event["count"] for event in cluster.events(key)] == [3]


def test_deleted_organization_loses_its_finalizer_and_disappears(
    cluster: Cluster, install: Callable[..., dict[str, Any]]
) -> None:
    install(CRDS / "organizations.polycrate.io.yaml")
    key = cluster.create("organizations", example("organization-acme-corp.yaml", cluster.namespace))
    cluster.reconcile(key)
    cluster.custom.delete_namespaced_custom_object(
        "polycrate.io", "v1alpha1", key.namespace, "organizations", key.name
    )
    deleting = cluster.get(key)
    assert deleting is not None and deleting["metadata"].get("deletionTimestamp"), "held by our finalizer"

    assert cluster.reconcile(key).result == "succeeded"

    assert cluster.get(key) is None
    assert "Deleting" in [event["reason"] for event in cluster.events(key)]


def test_finalizers_of_other_controllers_are_kept(
    cluster: Cluster, install: Callable[..., dict[str, Any]]
) -> None:
    install(CRDS / "organizations.polycrate.io.yaml")
    organization = copy.deepcopy(example("organization-acme-corp.yaml", cluster.namespace))
    organization["metadata"]["finalizers"] = ["backup.example.com/protect"]
    key = cluster.create("organizations", organization)

    cluster.reconcile(key)
    cluster.custom.delete_namespaced_custom_object(
        "polycrate.io", "v1alpha1", key.namespace, "organizations", key.name
    )
    cluster.reconcile(key)

    obj = cluster.get(key)
    assert obj is not None
    assert obj["metadata"]["finalizers"] == ["backup.example.com/protect"]


def test_object_that_no_longer_exists_is_done(
    cluster: Cluster, install: Callable[..., dict[str, Any]]
) -> None:
    install(CRDS / "organizations.polycrate.io.yaml")

    assert cluster.reconcile(ObjectKey("Organization", cluster.namespace, "never-created")).result == "gone"


def test_discovery_source_is_read_and_acknowledged(
    cluster: Cluster, kube_api_client: kubernetes.client.ApiClient
) -> None:
    kubernetes.client.CoreV1Api(kube_api_client).create_namespaced_secret(
        cluster.namespace,
        {
            "metadata": {"name": "polycrate-myapp-meta", "labels": {"polycrate.io/type": "meta"}},
            "data": {"block": "bXlhcHA="},
        },
    )

    assert (
        cluster.reconcile(ObjectKey("Secret", cluster.namespace, "polycrate-myapp-meta")).result
        == "succeeded"
    )
    assert cluster.reconcile(ObjectKey("Secret", cluster.namespace, "absent")).result == "gone"


def test_unreachable_api_server_is_a_transient_failure(redis_client: redis.Redis, tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: x\n"
        "clusters: [{name: x, cluster: {server: 'http://127.0.0.1:9'}}]\n"
        "users: [{name: x, user: {}}]\ncontexts: [{name: x, context: {cluster: x, user: x}}]\n"
    )
    with kubernetes.config.new_client_from_config(config_file=str(kubeconfig)) as unreachable:
        cluster = Cluster(unreachable, redis_client, "polycrate")

        outcome = cluster.reconcile(ObjectKey("Organization", "polycrate", "acme-corp"))

    assert outcome.result == "retrying"
    assert 4.5 <= (outcome.countdown or 0) <= 5.5


def spec_example_of(kind: str) -> JsonObject:
    """The spec's YAML example of `kind`; Backup and BackupSchedule have none, so one is made up."""
    mirrored = {"name": "nightly", "source_velero": {"name": "nightly", "namespace": "velero"}}
    made_up = {
        "Backup": {"metadata": {"name": "nightly-20260106"}, "spec": {**mirrored, "status": "completed"}},
        "BackupSchedule": {
            "metadata": {"name": "nightly"},
            "spec": {**mirrored, "schedule_cron": "0 2 * * *"},
        },
    }
    if kind in made_up:
        return {"apiVersion": "polycrate.io/v1alpha1", "kind": kind, **made_up[kind]}
    for path in sorted(EXAMPLES.glob("*.yaml")):
        for obj in yaml.safe_load_all(path.read_text()):
            if obj and obj.get("kind") == kind:
                obj.pop("status", None)
                # An owner that does not exist would have the object garbage-collected at once.
                obj["metadata"].pop("ownerReferences", None)
                return obj
    raise AssertionError(f"no example of {kind}")


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_kind_reconciles_its_spec_example_to_ready(
    kind: str, cluster: Cluster, install: Callable[..., dict[str, Any]]
) -> None:
    info = KINDS[kind]
    install(CRDS / f"{info.crd_name}.yaml")
    obj = spec_example_of(kind)
    if info.namespaced:
        obj["metadata"]["namespace"] = cluster.namespace
        key = cluster.create(info.plural, obj)
    else:
        cluster.custom.create_cluster_custom_object("polycrate.io", "v1alpha1", info.plural, obj)
        key = ObjectKey(kind, "", obj["metadata"]["name"])

    assert cluster.reconcile(key).result == "succeeded"

    stored = cluster.get(key)
    assert stored is not None
    assert stored["status"]["phase"] == "Ready"
    assert stored["status"]["observedGeneration"] == stored["metadata"]["generation"]
    assert info.finalizer in stored["metadata"]["finalizers"]
