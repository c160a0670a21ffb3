"""K8sApp and Artifact discovery: meta Secrets and Pods → K8sApp and Artifact CRs → Polycrate API.

The Kubernetes emulator (Secrets and Pods are built in), the Polycrate API emulator over HTTP,
the reconciler driven directly, and a clock the test moves for last_seen_at and stale cleanup.
"""

from __future__ import annotations

import base64
import logging
from typing import Any

import pytest
import requests

from polycrate.keys import ObjectKey
from tasks.flows.discovery_apps import ArtifactHandler, K8sAppHandler, MetaSecretHandler, PodHandler
from tests.tasks.flows.discovery_world import DiscoveryWorld, world_fixture  # noqa: F401

NGINX = "cargo.ayedo.cloud/library/nginx:1.25.3"
NGINX_ARTIFACT = ObjectKey("Artifact", "", "cargo-ayedo-cloud-library-nginx-1-25-3")
REDIS = "redis:7.2"
REDIS_ARTIFACT = ObjectKey("Artifact", "", "docker-io-library-redis-7-2")

SPEC_EXAMPLE_META = {
    "organization": "acme-corp",
    "workspace": "production",
    "block": "nginx-ingress",
    "name": "nginx-ingress",
    "display_name": "NGINX Ingress Controller",
    "version": "1.2.0",
    "app_version": "1.9.6",
    "from": "cargo.ayedo.cloud/ayedo/k8s/nginx-ingress",
    "type": "ingress-controller",
    "flavor": "nginx",
    "kind": "helm",
    "chart_name": "ingress-nginx",
    "chart_version": "4.9.0",
    "chart_repo_url": "https://kubernetes.github.io/ingress-nginx",
    "action_name": "install",
    "action_status": "success",
    "action_last_executed_at": "2025-12-20T10:00:00Z",
}


@pytest.fixture
def flows(world: DiscoveryWorld) -> DiscoveryWorld:
    world.install("K8sApp", "Artifact")
    world.use(
        MetaSecretHandler(),
        PodHandler(),
        K8sAppHandler(clock=world.clock),
        ArtifactHandler(clock=world.clock),
    )
    return world


def _meta_secret(
    flows: DiscoveryWorld,
    data: dict[str, str] | None = None,
    *,
    name: str = "nginx-ingress.poly",
    namespace: str | None = None,
    labelled: bool = True,
) -> ObjectKey:
    namespace = namespace or flows.namespace
    encoded = {k: base64.b64encode(v.encode()).decode() for k, v in (data or SPEC_EXAMPLE_META).items()}
    labels = {"app.kubernetes.io/managed-by": "polycrate"}
    if labelled:
        labels["polycrate.io/type"] = "meta"
    flows.core.create_namespaced_secret(
        namespace,
        {
            "metadata": {
                "name": name,
                "labels": labels,
            },
            "data": encoded,
        },
    )
    return ObjectKey("Secret", namespace, name)


def _pod(
    flows: DiscoveryWorld, name: str, *images: str, namespace: str | None = None, init: str | None = None
) -> ObjectKey:
    namespace = namespace or flows.namespace
    spec: dict[str, Any] = {
        "containers": [{"name": f"c{i}", "image": image} for i, image in enumerate(images)]
    }
    if init:
        spec["initContainers"] = [{"name": "init", "image": init}]
    flows.core.create_namespaced_pod(namespace, {"metadata": {"name": name}, "spec": spec})
    return ObjectKey("Pod", namespace, name)


def _delete_pod(flows: DiscoveryWorld, key: ObjectKey) -> None:
    flows.core.delete_namespaced_pod(key.name, key.namespace, grace_period_seconds=0)


def _apps(flows: DiscoveryWorld, **section: Any) -> None:
    flows.operator_config(app_discovery=section, artifact_discovery={})


def _artifacts(flows: DiscoveryWorld, **section: Any) -> None:
    flows.operator_config(artifact_discovery=section)


def _add_block(flows: DiscoveryWorld, name: str) -> str:
    answer = requests.post(
        f"{flows.api.url}/api/v1/blocks/",
        json={"workspace": flows.api.workspace_id, "name": name},
        headers={"Authorization": f"Token {flows.api.token}"},
        timeout=10,
    )
    answer.raise_for_status()
    return str(answer.json()["id"])


# --- meta Secret → K8sApp --------------------------------------------------------------------------------


def test_meta_secret_becomes_the_spec_example_k8sapp_with_labels_and_owner(flows: DiscoveryWorld) -> None:
    _apps(flows)
    source = _meta_secret(flows)

    assert flows.reconcile(source).result == "succeeded"

    app = flows.get(ObjectKey("K8sApp", flows.namespace, "nginx-ingress"))
    assert app["metadata"]["labels"] == {
        "k8sapps.polycrate.io/block": "nginx-ingress",
        "k8sapps.polycrate.io/kind": "helm",
        "k8sapps.polycrate.io/type": "ingress-controller",
        "operator.polycrate.io/discovered": "true",
    }
    secret = flows.get(source)
    assert app["metadata"]["ownerReferences"] == [
        {"apiVersion": "v1", "kind": "Secret", "name": "nginx-ingress.poly", "uid": secret["metadata"]["uid"]}
    ]
    assert app["spec"] == {
        "block": {
            "name": "nginx-ingress",
            "display_name": "NGINX Ingress Controller",
            "version": "1.2.0",
            "app_version": "1.9.6",
            "from": "cargo.ayedo.cloud/ayedo/k8s/nginx-ingress",
            "type": "ingress-controller",
            "flavor": "nginx",
            "chart": {
                "name": "ingress-nginx",
                "version": "4.9.0",
                "repo_url": "https://kubernetes.github.io/ingress-nginx",
            },
        },
        "workspace": {"name": "production", "organization": "acme-corp"},
        "action": {"name": "install", "status": "success", "last_executed_at": "2025-12-20T10:00:00Z"},
    }


def test_minimal_meta_secret_of_the_spec_becomes_a_k8sapp(flows: DiscoveryWorld) -> None:
    _apps(flows)
    minimal = {
        "organization": "acme-corp",
        "workspace": "production",
        "block": "myapp",
        "name": "myapp",
        "namespace": "production",
    }

    flows.reconcile(_meta_secret(flows, minimal, name="polycrate-myapp-meta"))

    app = flows.get(ObjectKey("K8sApp", flows.namespace, "myapp"))
    assert app["spec"] == {
        "block": {"name": "myapp"},
        "workspace": {"name": "production", "organization": "acme-corp"},
    }


def test_meta_secret_lacking_keys_is_an_error_naming_the_keys_but_no_value(
    flows: DiscoveryWorld, caplog: pytest.LogCaptureFixture
) -> None:
    _apps(flows)
    caplog.set_level(logging.DEBUG)
    source = _meta_secret(flows, {"organization": "secret-org-marker", "name": "myapp"})

    assert flows.reconcile(source).result == "failed"

    [event] = flows.cluster.events(source)
    assert event["type"] == "Warning" and "data lacks workspace, block" in event["message"]
    assert not any("secret-org-marker" in text for text in [event["message"], caplog.text])
    assert flows.get(ObjectKey("K8sApp", flows.namespace, "myapp")) is None


def test_meta_secret_named_poly_without_the_label_becomes_a_k8sapp(flows: DiscoveryWorld) -> None:
    _apps(flows)
    source = _meta_secret(flows, name="nginx-ingress.poly", labelled=False)

    assert flows.reconcile(source).result == "succeeded"

    app = flows.get(ObjectKey("K8sApp", flows.namespace, "nginx-ingress"))
    assert app is not None and app["spec"]["block"]["name"] == "nginx-ingress"


def test_secret_neither_named_poly_nor_labelled_is_no_meta_secret(flows: DiscoveryWorld) -> None:
    _apps(flows)
    source = _meta_secret(flows, name="nginx-ingress-settings", labelled=False)

    assert flows.reconcile(source).result == "succeeded"

    assert flows.get(ObjectKey("K8sApp", flows.namespace, "nginx-ingress")) is None


def test_secret_that_stops_being_a_meta_secret_loses_its_k8sapp(flows: DiscoveryWorld) -> None:
    _apps(flows)
    source = _meta_secret(flows, name="nginx-ingress-meta")  # a meta Secret by its label only
    flows.reconcile(source)
    flows.core.patch_namespaced_secret(
        source.name, source.namespace, {"metadata": {"labels": {"polycrate.io/type": None}}}
    )

    flows.reconcile(source)

    assert flows.get(ObjectKey("K8sApp", flows.namespace, "nginx-ingress")) is None


def test_renamed_block_instance_replaces_its_k8sapp(flows: DiscoveryWorld) -> None:
    _apps(flows)
    source = _meta_secret(flows)
    flows.reconcile(source)
    renamed = base64.b64encode(b"nginx-ingress-v2").decode()
    flows.core.patch_namespaced_secret(source.name, source.namespace, {"data": {"name": renamed}})

    flows.reconcile(source)

    assert flows.get(ObjectKey("K8sApp", flows.namespace, "nginx-ingress")) is None
    assert flows.get(ObjectKey("K8sApp", flows.namespace, "nginx-ingress-v2")) is not None


def test_meta_secret_in_an_ignored_namespace_is_not_discovered(flows: DiscoveryWorld) -> None:
    _apps(flows, ignore_namespaces=[flows.namespace])

    flows.reconcile(_meta_secret(flows))

    assert flows.get(ObjectKey("K8sApp", flows.namespace, "nginx-ingress")) is None


# --- K8sApp → API ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("action", "status", "flag"),
    [
        ("install", "success", "installed"),
        ("install", "running", "installation_running"),
        ("install", "failed", "installation_failed"),
        ("uninstall", "success", "uninstalled"),
    ],
)
def test_installation_state_follows_the_last_action(
    flows: DiscoveryWorld, action: str, status: str, flag: str
) -> None:
    _apps(flows)
    flows.reconcile(
        _meta_secret(flows, {**SPEC_EXAMPLE_META, "action_name": action, "action_status": status})
    )
    key = ObjectKey("K8sApp", flows.namespace, "nginx-ingress")

    flows.reconcile(key)

    flags = ("installed", "installation_running", "installation_failed", "uninstalled")
    assert {f: flows.get(key)["status"][f] for f in flags} == {f: f == flag for f in flags}
    [stored] = flows.api_objects("k8sapps")
    assert {f: stored[f] for f in flags} == {f: f == flag for f in flags}


def test_k8sapp_is_synced_with_the_block_id_resolved_from_workspace_and_block_name(
    flows: DiscoveryWorld,
) -> None:
    _apps(flows)
    block_id = _add_block(flows, "nginx-ingress")
    flows.reconcile(_meta_secret(flows))
    key = ObjectKey("K8sApp", flows.namespace, "nginx-ingress")

    assert flows.reconcile(key).result == "succeeded"

    [stored] = flows.api_objects("k8sapps")
    status = flows.get(key)["status"]
    assert (status["phase"], status["sync_status"], status["api_id"], status["block_id"]) == (
        "Synced",
        "synced",
        stored["id"],
        block_id,
    )
    assert {
        k: stored[k] for k in ("cluster", "namespace", "name", "block", "block_name", "block_version")
    } == {
        "cluster": flows.cluster_id,
        "namespace": flows.namespace,
        "name": "nginx-ingress",
        "block": block_id,
        "block_name": "nginx-ingress",
        "block_version": "1.2.0",
    }
    assert stored["chart"] == {
        "name": "ingress-nginx",
        "version": "4.9.0",
        "repo_url": "https://kubernetes.github.io/ingress-nginx",
    }
    assert (stored["workspace_name"], stored["organization_name"], stored["action_name"]) == (
        "production",
        "acme-corp",
        "install",
    )


def test_k8sapp_carries_the_uuids_of_the_meta_secret_organization_and_workspace(
    flows: DiscoveryWorld,
) -> None:
    _apps(flows)
    staging = flows.api.add_workspace("staging")  # another workspace of the token's organization
    flows.reconcile(_meta_secret(flows, {**SPEC_EXAMPLE_META, "workspace": "staging"}))
    key = ObjectKey("K8sApp", flows.namespace, "nginx-ingress")

    assert flows.reconcile(key).result == "succeeded"

    [stored] = flows.api_objects("k8sapps")
    assert (stored["workspace_name"], stored["organization_name"]) == ("staging", "acme-corp")
    assert (stored["workspace_id"], stored["organization_id"]) == (staging["id"], flows.api.organization_id)
    assert stored["workspace_id"] != flows.api.workspace_id, "the meta Secret's workspace, not the token's"
    status = flows.get(key)["status"]
    assert (status["workspace_id"], status["organization_id"]) == (staging["id"], flows.api.organization_id)


def test_k8sapp_naming_an_unknown_workspace_is_synced_with_only_the_organization_resolved(
    flows: DiscoveryWorld,
) -> None:
    _apps(flows)
    flows.reconcile(_meta_secret(flows, {**SPEC_EXAMPLE_META, "workspace": "nowhere"}))
    key = ObjectKey("K8sApp", flows.namespace, "nginx-ingress")

    assert flows.reconcile(key).result == "succeeded"

    [stored] = flows.api_objects("k8sapps")
    assert (stored["workspace_id"], stored["organization_id"], stored["block"]) == (
        None,
        flows.api.organization_id,
        None,
    )


def test_k8sapp_of_an_unknown_block_is_synced_without_block_id(flows: DiscoveryWorld) -> None:
    _apps(flows)
    flows.reconcile(_meta_secret(flows))
    key = ObjectKey("K8sApp", flows.namespace, "nginx-ingress")

    assert flows.reconcile(key).result == "succeeded"

    assert flows.api_objects("k8sapps")[0]["block"] is None
    assert flows.get(key)["status"]["phase"] == "Synced"


def test_deleted_meta_secret_removes_the_k8sapp_from_cluster_and_api(flows: DiscoveryWorld) -> None:
    _apps(flows)
    source = _meta_secret(flows)
    flows.reconcile(source)
    key = ObjectKey("K8sApp", flows.namespace, "nginx-ingress")
    flows.reconcile(key)

    flows.core.delete_namespaced_secret(source.name, source.namespace)
    flows.reconcile(key)

    assert flows.get(key) is None
    assert flows.api_objects("k8sapps") == []


# --- Pods → Artifacts -------------------------------------------------------------------------------------


def test_images_of_a_pod_become_artifacts_with_the_spec_labels(flows: DiscoveryWorld) -> None:
    _artifacts(flows)
    pod = _pod(flows, "web-1", NGINX, init=REDIS)

    assert flows.reconcile(pod).result == "succeeded"

    nginx = flows.get(NGINX_ARTIFACT)
    assert nginx["metadata"]["labels"] == {
        "artifacts.polycrate.io/registry": "cargo.ayedo.cloud",
        "artifacts.polycrate.io/repository": "library-nginx",
        "artifacts.polycrate.io/tag": "1.25.3",
        "operator.polycrate.io/discovered": "true",
    }
    assert "ownerReferences" not in nginx["metadata"]
    assert nginx["spec"] == {
        "image": NGINX,
        "registry": {"hostname": "cargo.ayedo.cloud", "port": 443, "scheme": "https"},
        "repository": {"path": "library/nginx", "name": "nginx", "namespace": "library"},
        "tag": "1.25.3",
    }
    assert flows.get(REDIS_ARTIFACT)["spec"]["repository"] == {
        "path": "library/redis",
        "name": "redis",
        "namespace": "library",
    }


def test_one_image_spelt_two_ways_is_one_artifact_keeping_the_first_spelling(flows: DiscoveryWorld) -> None:
    _artifacts(flows)
    artifact = ObjectKey("Artifact", "", "docker-io-library-nginx-1-25")
    flows.reconcile(_pod(flows, "short", "nginx:1.25"))
    before = flows.get(artifact)

    flows.reconcile(_pod(flows, "long", "docker.io/library/nginx:1.25"))
    flows.reconcile(artifact)

    after = flows.get(artifact)
    assert after["spec"]["image"] == "nginx:1.25"
    assert after["metadata"]["generation"] == before["metadata"]["generation"]
    assert after["status"]["total_pod_count"] == 2


def test_excluded_registry_and_ignored_namespace_make_no_artifact(flows: DiscoveryWorld) -> None:
    ignored = flows.extra_namespace("system")
    _artifacts(flows, exclude_registries=["registry.k8s.io"], ignore_namespaces=[ignored])

    flows.reconcile(_pod(flows, "pause", "registry.k8s.io/pause:3.9"))
    flows.reconcile(_pod(flows, "web-1", REDIS, namespace=ignored))

    assert flows.get(ObjectKey("Artifact", "", "registry-k8s-io-pause-3-9")) is None
    assert flows.get(REDIS_ARTIFACT) is None


def test_artifact_counts_active_pods_per_namespace_and_is_synced_to_the_api(flows: DiscoveryWorld) -> None:
    staging = flows.extra_namespace("staging")
    _artifacts(flows)
    pods = [_pod(flows, f"web-{i}", NGINX) for i in range(3)] + [
        _pod(flows, "web-1", f"docker.io/{REDIS}", NGINX, namespace=staging)
    ]
    for pod in pods:
        flows.reconcile(pod)

    assert flows.reconcile(NGINX_ARTIFACT).result == "succeeded"

    status = flows.get(NGINX_ARTIFACT)["status"]
    now = "2026-01-06T14:30:00Z"
    assert status["used_in_namespaces"] == [
        {"name": flows.namespace, "pod_count": 3, "first_seen_at": now, "last_seen_at": now},
        {"name": staging, "pod_count": 1, "first_seen_at": now, "last_seen_at": now},
    ]
    assert (status["total_pod_count"], status["first_discovered_at"], status["last_seen_at"]) == (4, now, now)
    assert (status["phase"], status["sync_status"]) == ("Discovered", "synced")
    [stored] = flows.api_objects("artifacts")
    assert status["api_id"] == stored["id"]
    assert {k: stored[k] for k in ("cluster", "image", "tag", "total_pod_count", "last_seen_at")} == {
        "cluster": flows.cluster_id,
        "image": NGINX,
        "tag": "1.25.3",
        "total_pod_count": 4,
        "last_seen_at": now,
    }
    assert stored["used_in_namespaces"] == [
        {"name": flows.namespace, "pod_count": 3},
        {"name": staging, "pod_count": 1},
    ]


def test_finished_pods_do_not_count(flows: DiscoveryWorld) -> None:
    _artifacts(flows)
    flows.reconcile(_pod(flows, "web-1", NGINX))
    job = _pod(flows, "job-1", NGINX)
    flows.core.patch_namespaced_pod_status(job.name, job.namespace, {"status": {"phase": "Succeeded"}})

    flows.reconcile(NGINX_ARTIFACT)

    assert flows.get(NGINX_ARTIFACT)["status"]["total_pod_count"] == 1


def test_last_seen_at_moves_only_when_the_pods_change(flows: DiscoveryWorld) -> None:
    _artifacts(flows)
    flows.reconcile(_pod(flows, "web-1", NGINX))
    flows.reconcile(NGINX_ARTIFACT)
    steady = flows.get(NGINX_ARTIFACT)

    flows.clock.advance(minutes=10)
    flows.reconcile(NGINX_ARTIFACT)
    unchanged = flows.get(NGINX_ARTIFACT)
    flows.clock.advance(minutes=10)
    flows.reconcile(_pod(flows, "web-2", NGINX))
    flows.reconcile(NGINX_ARTIFACT)
    grown = flows.get(NGINX_ARTIFACT)

    assert unchanged["metadata"]["resourceVersion"] == steady["metadata"]["resourceVersion"]
    assert (steady["status"]["last_seen_at"], grown["status"]["last_seen_at"]) == (
        "2026-01-06T14:30:00Z",
        "2026-01-06T14:50:00Z",
    )
    assert grown["status"]["used_in_namespaces"][0]["first_seen_at"] == "2026-01-06T14:30:00Z"


def test_deleted_pod_wakes_the_artifacts_of_its_namespace(flows: DiscoveryWorld) -> None:
    _artifacts(flows)
    pod = _pod(flows, "web-1", NGINX)
    flows.settle([pod, NGINX_ARTIFACT])
    _delete_pod(flows, pod)

    assert flows.reconcile(pod).result == "gone"

    assert NGINX_ARTIFACT in flows.woken()


def test_artifact_without_pods_is_deleted_after_the_stale_threshold_but_kept_in_the_api(
    flows: DiscoveryWorld,
) -> None:
    _artifacts(flows, cleanup={"enabled": True, "stale_threshold_hours": 1})
    pod = _pod(flows, "web-1", NGINX)
    flows.settle([pod, NGINX_ARTIFACT])
    _delete_pod(flows, pod)
    flows.clock.advance(minutes=5)
    flows.reconcile(NGINX_ARTIFACT)
    assert flows.get(NGINX_ARTIFACT)["status"]["last_seen_at"] == "2026-01-06T14:35:00Z"

    flows.clock.advance(minutes=59)
    flows.reconcile(NGINX_ARTIFACT)
    assert flows.get(NGINX_ARTIFACT) is not None, "not stale for an hour yet"
    flows.clock.advance(minutes=1)
    flows.reconcile(NGINX_ARTIFACT)
    flows.reconcile(NGINX_ARTIFACT)

    assert flows.get(NGINX_ARTIFACT) is None
    [archived] = flows.api_objects("artifacts")
    assert (archived["image"], archived["total_pod_count"]) == (NGINX, 0)


def test_artifact_is_reconciled_again_the_moment_it_turns_stale(flows: DiscoveryWorld) -> None:
    _artifacts(flows, cleanup={"enabled": True, "stale_threshold_hours": 1})
    pod = _pod(flows, "web-1", NGINX)
    flows.settle([pod, NGINX_ARTIFACT])
    queue, client = flows.cluster.queue, flows.cluster.redis
    assert NGINX_ARTIFACT not in queue.timers(), "in use: nothing comes due with time alone"
    _delete_pod(flows, pod)
    flows.clock.advance(minutes=5)
    flows.reconcile(NGINX_ARTIFACT)  # last seen 14:35: stale at 15:35
    seconds, microseconds = client.time()
    redis_now = seconds + microseconds / 1e6
    assert queue.timers()[NGINX_ARTIFACT] - redis_now == pytest.approx(3600, abs=5)

    flows.clock.advance(minutes=60)  # the threshold: the operator's clock, and the timer's
    client.zadd("polycrate:queue:timers", {str(NGINX_ARTIFACT): redis_now})
    [(key, task_id)] = [(k, t) for k, t, cause in queue.heal(lost_after=3600) if cause == "requeue-due"]
    flows.cluster.reconciler.run(str(key), task_id)

    assert key == NGINX_ARTIFACT
    assert flows.get(NGINX_ARTIFACT) is None or flows.get(NGINX_ARTIFACT)["metadata"].get("deletionTimestamp")
    [archived] = flows.api_objects("artifacts")
    assert (archived["image"], archived["total_pod_count"]) == (NGINX, 0)


def test_artifact_without_pods_stays_when_cleanup_is_disabled(flows: DiscoveryWorld) -> None:
    _artifacts(flows, cleanup={"enabled": False})
    pod = _pod(flows, "web-1", NGINX)
    flows.settle([pod, NGINX_ARTIFACT])
    _delete_pod(flows, pod)
    flows.reconcile(NGINX_ARTIFACT)

    flows.clock.advance(hours=5)
    flows.reconcile(NGINX_ARTIFACT)

    assert flows.get(NGINX_ARTIFACT)["status"]["total_pod_count"] == 0


def test_artifact_is_not_sent_to_the_api_when_sync_to_api_is_off(flows: DiscoveryWorld) -> None:
    _artifacts(flows, sync_to_api=False)
    flows.reconcile(_pod(flows, "web-1", NGINX))

    flows.reconcile(NGINX_ARTIFACT)

    status = flows.get(NGINX_ARTIFACT)["status"]
    assert (status["phase"], status["sync_status"], status["total_pod_count"]) == ("Discovered", "pending", 1)
    assert flows.api_objects("artifacts") == []


# --- K8sApp ↔ Artifact ---------------------------------------------------------------------------------------


def test_k8sapps_and_artifacts_are_linked_by_namespace_in_both_directions(flows: DiscoveryWorld) -> None:
    other = flows.extra_namespace("other")
    _apps(flows)
    secret = _meta_secret(flows)
    pods = [
        _pod(flows, "web-1", NGINX),
        _pod(flows, "web-2", NGINX, init=REDIS),
        _pod(flows, "cache", REDIS, namespace=other),
    ]

    flows.settle(
        [secret, *pods, ObjectKey("K8sApp", flows.namespace, "nginx-ingress"), NGINX_ARTIFACT, REDIS_ARTIFACT]
    )

    app = flows.get(ObjectKey("K8sApp", flows.namespace, "nginx-ingress"))["status"]
    assert app["artifacts"] == [
        {"name": NGINX_ARTIFACT.name, "image": NGINX, "pod_count": 2},
        {"name": REDIS_ARTIFACT.name, "image": REDIS, "pod_count": 1},
    ]
    assert app["artifact_count"] == 2
    for artifact in (NGINX_ARTIFACT, REDIS_ARTIFACT):
        assert flows.get(artifact)["status"]["used_by_k8sapps"] == [
            {"name": "nginx-ingress", "namespace": flows.namespace, "k8s_app_id": app["api_id"]}
        ]


def test_pods_leaving_a_namespace_unlink_its_k8sapp(flows: DiscoveryWorld) -> None:
    _apps(flows)
    secret = _meta_secret(flows)
    pod = _pod(flows, "web-1", NGINX)
    app_key = ObjectKey("K8sApp", flows.namespace, "nginx-ingress")
    flows.settle([secret, pod, app_key, NGINX_ARTIFACT])

    _delete_pod(flows, pod)
    flows.settle([pod])

    app = flows.get(app_key)["status"]
    assert (app["artifacts"], app["artifact_count"]) == ([], 0)
    assert flows.get(NGINX_ARTIFACT)["status"]["used_by_k8sapps"] == []
