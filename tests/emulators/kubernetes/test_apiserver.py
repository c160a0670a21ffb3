"""What each verb does, seen through the official Python client (emulator or real cluster).

Every test here uses only `kube_api_client`, `kube_namespace` and CRDs installed through the
API, so the module runs unchanged against a real cluster when POLYCRATE_TEST_KUBECONFIG is set.
"""

from __future__ import annotations

import base64
import json
import threading
from typing import Any

import kubernetes
import pytest
from kubernetes.client import ApiException

from tests.emulators.kubernetes.conftest import GROUP, VERSION
from tests.fixtures.kube import wait_until

MERGE = "application/merge-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"


def widget(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Widget",
        "metadata": {"name": name},
        "spec": {"color": "red", **spec},
    }


def status_of(error: ApiException) -> dict[str, Any]:
    return json.loads(error.body)


@pytest.fixture
def core(kube_api_client: kubernetes.client.ApiClient) -> kubernetes.client.CoreV1Api:
    return kubernetes.client.CoreV1Api(kube_api_client)


@pytest.fixture
def custom(kube_api_client: kubernetes.client.ApiClient) -> kubernetes.client.CustomObjectsApi:
    return kubernetes.client.CustomObjectsApi(kube_api_client)


@pytest.fixture
def widgets(custom: kubernetes.client.CustomObjectsApi, kube_namespace: str, widget_crd: dict[str, Any]):
    """Short-hands for widget calls in the test namespace."""

    class Widgets:
        namespace = kube_namespace

        def create(self, body: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
            return custom.create_namespaced_custom_object(
                GROUP, VERSION, kube_namespace, "widgets", body, **kwargs
            )

        def get(self, name: str) -> dict[str, Any]:
            return custom.get_namespaced_custom_object(GROUP, VERSION, kube_namespace, "widgets", name)

        def replace(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
            return custom.replace_namespaced_custom_object(
                GROUP, VERSION, kube_namespace, "widgets", name, body
            )

        def patch(self, name: str, body: Any, content_type: str = MERGE) -> dict[str, Any]:
            return custom.patch_namespaced_custom_object(
                GROUP, VERSION, kube_namespace, "widgets", name, body, _content_type=content_type
            )

        def patch_status(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
            return custom.patch_namespaced_custom_object_status(
                GROUP, VERSION, kube_namespace, "widgets", name, body, _content_type=MERGE
            )

        def delete(self, name: str, **kwargs: Any) -> dict[str, Any]:
            return custom.delete_namespaced_custom_object(
                GROUP, VERSION, kube_namespace, "widgets", name, **kwargs
            )

        def list(self, **kwargs: Any) -> dict[str, Any]:
            return custom.list_namespaced_custom_object(GROUP, VERSION, kube_namespace, "widgets", **kwargs)

        def names(self, **kwargs: Any) -> list[str]:
            return [item["metadata"]["name"] for item in self.list(**kwargs)["items"]]

        def exists(self, name: str) -> bool:
            try:
                self.get(name)
            except ApiException as error:
                if error.status == 404:
                    return False
                raise
            return True

    return Widgets()


# --- create ---------------------------------------------------------------------------------


def test_created_object_gets_uid_timestamp_generation_and_resource_version(widgets) -> None:
    created = widgets.create(widget("alpha"))

    metadata = created["metadata"]
    assert metadata["uid"] and metadata["creationTimestamp"].endswith("Z")
    assert metadata["generation"] == 1
    assert int(metadata["resourceVersion"]) > 0
    assert metadata["namespace"] == widgets.namespace
    assert widgets.get("alpha") == created


def test_creating_an_existing_name_is_409_already_exists(widgets) -> None:
    widgets.create(widget("alpha"))

    with pytest.raises(ApiException) as caught:
        widgets.create(widget("alpha"))

    assert caught.value.status == 409
    status = status_of(caught.value)
    assert status["reason"] == "AlreadyExists"
    assert status["message"] == 'widgets.testing.polycrate.io "alpha" already exists'


def test_generate_name_appends_a_random_five_character_suffix(widgets) -> None:
    body = widget("")
    body["metadata"] = {"generateName": "auto-"}

    first, second = widgets.create(body), widgets.create(body)

    assert (
        first["metadata"]["name"].startswith("auto-") and len(first["metadata"]["name"]) == len("auto-") + 5
    )
    assert first["metadata"]["name"] != second["metadata"]["name"]


def test_creating_in_a_missing_namespace_is_404(core: kubernetes.client.CoreV1Api) -> None:
    with pytest.raises(ApiException) as caught:
        core.create_namespaced_config_map("no-such-namespace", {"metadata": {"name": "cfg"}})

    assert caught.value.status == 404
    assert status_of(caught.value)["message"] == 'namespaces "no-such-namespace" not found'


def test_secret_string_data_is_stored_base64_encoded(
    core: kubernetes.client.CoreV1Api, kube_namespace: str
) -> None:
    core.create_namespaced_secret(
        kube_namespace, {"metadata": {"name": "creds"}, "stringData": {"token": "s3cr3t"}}
    )

    secret = core.read_namespaced_secret("creds", kube_namespace)

    assert secret.type == "Opaque"
    assert secret.string_data is None
    assert base64.b64decode(secret.data["token"]) == b"s3cr3t"


# --- update and patch -----------------------------------------------------------------------


def test_update_with_a_stale_resource_version_is_409_conflict(widgets) -> None:
    stale = widgets.create(widget("alpha"))
    widgets.patch("alpha", {"spec": {"size": 2}})

    stale["spec"]["size"] = 3
    with pytest.raises(ApiException) as caught:
        widgets.replace("alpha", stale)

    assert caught.value.status == 409
    status = status_of(caught.value)
    assert status["reason"] == "Conflict"
    assert (
        "the object has been modified; please apply your changes to the latest version" in status["message"]
    )
    assert widgets.get("alpha")["spec"]["size"] == 2


def test_lease_update_with_a_stale_resource_version_is_409_conflict(
    kube_api_client: kubernetes.client.ApiClient, kube_namespace: str
) -> None:
    leases = kubernetes.client.CoordinationV1Api(kube_api_client)
    lease = leases.create_namespaced_lease(
        kube_namespace,
        {"metadata": {"name": "leader"}, "spec": {"holderIdentity": "a", "leaseDurationSeconds": 15}},
    )
    lease.spec.holder_identity = "b"
    leases.replace_namespaced_lease("leader", kube_namespace, lease)

    lease.spec.holder_identity = "c"
    with pytest.raises(ApiException) as caught:
        leases.replace_namespaced_lease("leader", kube_namespace, lease)

    assert caught.value.status == 409
    assert leases.read_namespaced_lease("leader", kube_namespace).spec.holder_identity == "b"


def test_update_that_changes_nothing_keeps_the_resource_version(widgets) -> None:
    created = widgets.create(widget("alpha"))

    replaced = widgets.replace("alpha", created)

    assert replaced["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]


def test_merge_patch_removes_keys_set_to_null(widgets) -> None:
    widgets.create(widget("alpha", handle="abc", tags=["a", "b"]))

    patched = widgets.patch("alpha", {"spec": {"handle": None, "tags": ["c"]}})

    assert "handle" not in patched["spec"]
    assert patched["spec"]["tags"] == ["c"]


def test_json_patch_applies_operations_and_a_failed_test_is_422(widgets) -> None:
    widgets.create(widget("alpha", tags=["a"]))

    patched = widgets.patch(
        "alpha",
        [
            {"op": "add", "path": "/spec/tags/-", "value": "b"},
            {"op": "replace", "path": "/spec/color", "value": "blue"},
        ],
        JSON_PATCH,
    )
    assert patched["spec"]["tags"] == ["a", "b"] and patched["spec"]["color"] == "blue"

    with pytest.raises(ApiException) as caught:
        widgets.patch("alpha", [{"op": "test", "path": "/spec/color", "value": "red"}], JSON_PATCH)
    assert caught.value.status == 422


def test_strategic_merge_patch_merges_pod_containers_by_name(
    core: kubernetes.client.CoreV1Api, kube_namespace: str
) -> None:
    core.create_namespaced_pod(
        kube_namespace,
        {
            "metadata": {"name": "web"},
            "spec": {
                "containers": [
                    {"name": "app", "image": "app:1", "env": [{"name": "A", "value": "1"}]},
                    {"name": "sidecar", "image": "proxy:1"},
                ]
            },
        },
    )

    core.patch_namespaced_pod(
        "web",
        kube_namespace,
        {"spec": {"containers": [{"name": "app", "env": [{"name": "B", "value": "2"}]}]}},
        _content_type=STRATEGIC,
    )

    containers = core.read_namespaced_pod("web", kube_namespace).spec.containers
    assert [c.name for c in containers] == ["app", "sidecar"]
    assert [(e.name, e.value) for e in containers[0].env] == [("A", "1"), ("B", "2")]


def test_strategic_merge_patch_on_a_custom_resource_is_415(widgets) -> None:
    widgets.create(widget("alpha"))

    with pytest.raises(ApiException) as caught:
        widgets.patch("alpha", {"spec": {"size": 2}}, STRATEGIC)

    assert caught.value.status == 415
    assert status_of(caught.value)["reason"] == "UnsupportedMediaType"


# --- status subresource and generation ------------------------------------------------------


def test_status_write_does_not_bump_generation_but_a_spec_change_does(widgets) -> None:
    widgets.create(widget("alpha"))

    after_status = widgets.patch_status("alpha", {"status": {"phase": "Ready", "observedGeneration": 1}})
    assert after_status["metadata"]["generation"] == 1
    assert after_status["status"]["phase"] == "Ready"

    after_spec = widgets.patch("alpha", {"spec": {"size": 5}})
    assert after_spec["metadata"]["generation"] == 2

    after_label = widgets.patch("alpha", {"metadata": {"labels": {"tier": "gold"}}})
    assert after_label["metadata"]["generation"] == 2


def test_main_endpoint_ignores_status_and_status_endpoint_ignores_spec(widgets) -> None:
    widgets.create(widget("alpha"))

    widgets.patch("alpha", {"status": {"phase": "Hacked"}})
    widgets.patch_status("alpha", {"spec": {"color": "blue"}, "status": {"phase": "Ready"}})

    current = widgets.get("alpha")
    assert current["spec"]["color"] == "red"
    assert current["status"] == {"phase": "Ready"}


def test_status_sent_on_create_is_dropped_when_a_status_subresource_exists(widgets) -> None:
    body = widget("alpha")
    body["status"] = {"phase": "Ready"}

    assert "status" not in widgets.create(body)


def test_every_non_metadata_change_bumps_generation_without_a_status_subresource(
    custom: kubernetes.client.CustomObjectsApi, gadget_crd: dict[str, Any]
) -> None:
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Gadget",
        "metadata": {"name": "g1"},
        "spec": {"a": 1},
    }
    custom.create_cluster_custom_object(GROUP, VERSION, "gadgets", body)
    try:
        patched = custom.patch_cluster_custom_object(
            GROUP, VERSION, "gadgets", "g1", {"status": {"ok": True}}, _content_type=MERGE
        )
        assert patched["metadata"]["generation"] == 2
        assert "namespace" not in patched["metadata"]
    finally:
        custom.delete_cluster_custom_object(GROUP, VERSION, "gadgets", "g1")


# --- deletion -------------------------------------------------------------------------------


def test_finalizer_keeps_a_deleted_object_until_it_is_removed(widgets) -> None:
    body = widget("alpha")
    body["metadata"]["finalizers"] = ["testing.polycrate.io/cleanup"]
    widgets.create(body)

    widgets.delete("alpha")
    pending = widgets.get("alpha")
    assert pending["metadata"]["deletionTimestamp"]

    with pytest.raises(ApiException) as caught:
        widgets.patch("alpha", {"metadata": {"finalizers": ["testing.polycrate.io/cleanup", "another"]}})
    assert caught.value.status == 422

    widgets.patch("alpha", {"metadata": {"finalizers": None}})
    wait_until(lambda: not widgets.exists("alpha"))


def _owned_config_map(name: str, owner: dict[str, Any]) -> dict[str, Any]:
    reference = {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "blockOwnerDeletion": True,
    }
    return {"metadata": {"name": name, "ownerReferences": [reference]}, "data": {"k": "v"}}


def _config_map_exists(core: kubernetes.client.CoreV1Api, name: str, namespace: str) -> bool:
    try:
        core.read_namespaced_config_map(name, namespace)
    except ApiException as error:
        if error.status == 404:
            return False
        raise
    return True


def test_deleting_an_owner_deletes_its_dependents(widgets, core: kubernetes.client.CoreV1Api) -> None:
    owner = widgets.create(widget("owner"))
    core.create_namespaced_config_map(widgets.namespace, _owned_config_map("child", owner))

    widgets.delete("owner")

    wait_until(lambda: not _config_map_exists(core, "child", widgets.namespace))


def test_foreground_deletion_keeps_the_owner_until_dependents_are_gone(
    widgets, core: kubernetes.client.CoreV1Api
) -> None:
    owner = widgets.create(widget("owner"))
    child = _owned_config_map("child", owner)
    child["metadata"]["finalizers"] = ["testing.polycrate.io/hold"]
    core.create_namespaced_config_map(widgets.namespace, child)

    widgets.delete("owner", propagation_policy="Foreground")

    held = widgets.get("owner")
    assert "foregroundDeletion" in held["metadata"]["finalizers"]
    assert core.read_namespaced_config_map("child", widgets.namespace).metadata.deletion_timestamp

    core.patch_namespaced_config_map(
        "child", widgets.namespace, {"metadata": {"finalizers": None}}, _content_type=MERGE
    )
    wait_until(lambda: not widgets.exists("owner"))


def test_orphan_deletion_keeps_dependents_and_drops_their_owner_reference(
    widgets, core: kubernetes.client.CoreV1Api
) -> None:
    owner = widgets.create(widget("owner"))
    core.create_namespaced_config_map(widgets.namespace, _owned_config_map("child", owner))

    widgets.delete("owner", propagation_policy="Orphan")

    wait_until(lambda: not widgets.exists("owner"))
    orphan = wait_until(
        lambda: (
            (cm := core.read_namespaced_config_map("child", widgets.namespace)).metadata.owner_references
            is None
            and cm
        )
    )
    assert orphan.data == {"k": "v"}


def test_deleting_a_namespace_deletes_its_objects(core: kubernetes.client.CoreV1Api) -> None:
    core.create_namespace({"metadata": {"name": "doomed-ns"}})
    core.create_namespaced_config_map("doomed-ns", {"metadata": {"name": "cfg"}})

    core.delete_namespace("doomed-ns")

    def gone() -> bool:
        try:
            core.read_namespace("doomed-ns")
        except ApiException as error:
            return error.status == 404
        return False

    wait_until(gone, timeout=60)
    assert not core.list_namespaced_config_map("doomed-ns").items


def test_deleting_a_namespace_whose_objects_own_each_other_collects_each_once(
    core: kubernetes.client.CoreV1Api,
) -> None:
    core.create_namespace({"metadata": {"name": "owned-ns"}})
    owner = core.create_namespaced_secret("owned-ns", {"metadata": {"name": "a-owner"}})
    core.create_namespaced_config_map(
        "owned-ns",
        {
            "metadata": {
                "name": "z-dependent",
                "ownerReferences": [
                    {"apiVersion": "v1", "kind": "Secret", "name": "a-owner", "uid": owner.metadata.uid}
                ],
            }
        },
    )

    core.delete_namespace("owned-ns")  # the sweep meets the dependent after collecting it with its owner

    assert not core.list_namespaced_config_map("owned-ns").items
    assert not core.list_namespaced_secret("owned-ns").items


def test_a_terminating_namespace_refuses_new_content_and_waits_for_finalizers(
    core: kubernetes.client.CoreV1Api, kube_namespace: str
) -> None:
    core.create_namespaced_config_map(
        kube_namespace, {"metadata": {"name": "held", "finalizers": ["x.io/hold"]}}
    )

    core.delete_namespace(kube_namespace)

    assert core.read_namespace(kube_namespace).status.phase == "Terminating"
    with pytest.raises(ApiException) as caught:
        core.create_namespaced_config_map(kube_namespace, {"metadata": {"name": "late"}})
    assert caught.value.status == 403
    assert "because it is being terminated" in status_of(caught.value)["message"]

    core.patch_namespaced_config_map(
        "held", kube_namespace, {"metadata": {"finalizers": None}}, _content_type=MERGE
    )

    def namespace_gone() -> bool:
        try:
            core.read_namespace(kube_namespace)
        except ApiException as error:
            return error.status == 404
        return False

    wait_until(namespace_gone, timeout=60)


def test_an_object_whose_owners_are_all_gone_is_garbage_collected(
    core: kubernetes.client.CoreV1Api, kube_namespace: str
) -> None:
    ghost_owner = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "name": "ghost",
        "uid": "00000000-0000-0000-0000-000000000000",
    }
    core.create_namespaced_config_map(
        kube_namespace, {"metadata": {"name": "orphan", "ownerReferences": [ghost_owner]}}
    )

    wait_until(lambda: not _config_map_exists(core, "orphan", kube_namespace), timeout=60)


# --- reading: selectors and paging ----------------------------------------------------------


def test_label_selectors_support_equality_and_set_based_requirements(widgets) -> None:
    for name, labels in {"a": {"tier": "gold", "env": "prod"}, "b": {"tier": "silver"}, "c": {}}.items():
        body = widget(name)
        body["metadata"]["labels"] = labels
        widgets.create(body)

    assert widgets.names(label_selector="tier=gold") == ["a"]
    assert widgets.names(label_selector="tier in (gold,silver),env!=prod") == ["b"]
    assert widgets.names(label_selector="!tier") == ["c"]
    assert widgets.names(label_selector="tier,tier notin (gold)") == ["b"]


def test_field_selectors_find_events_of_one_object(
    core: kubernetes.client.CoreV1Api, kube_namespace: str
) -> None:
    for index, target in enumerate(["alpha", "beta", "alpha"]):
        core.create_namespaced_event(
            kube_namespace,
            {
                "metadata": {"name": f"ev-{index}"},
                "involvedObject": {"kind": "Widget", "name": target, "namespace": kube_namespace},
                "reason": "Tested",
                "message": f"event {index}",
                "type": "Normal",
            },
        )

    found = core.list_namespaced_event(
        kube_namespace, field_selector=f"involvedObject.name=alpha,involvedObject.namespace={kube_namespace}"
    )

    assert sorted(event.metadata.name for event in found.items) == ["ev-0", "ev-2"]


def test_an_unsupported_field_selector_is_400(widgets) -> None:
    with pytest.raises(ApiException) as caught:
        widgets.list(field_selector="spec.color=red")

    assert caught.value.status == 400


def test_metadata_name_field_selector_works_for_custom_resources(widgets) -> None:
    widgets.create(widget("alpha"))
    widgets.create(widget("beta"))

    assert widgets.names(field_selector="metadata.name=beta") == ["beta"]


def test_lists_page_with_limit_and_continue(widgets) -> None:
    for index in range(5):
        widgets.create(widget(f"w{index}"))

    first = widgets.list(limit=2)
    second = widgets.list(limit=2, _continue=first["metadata"]["continue"])
    third = widgets.list(limit=2, _continue=second["metadata"]["continue"])

    pages = [[item["metadata"]["name"] for item in page["items"]] for page in (first, second, third)]
    assert pages == [["w0", "w1"], ["w2", "w3"], ["w4"]]
    assert not third["metadata"].get("continue")


def test_delete_collection_removes_only_the_selected_objects(
    core: kubernetes.client.CoreV1Api, kube_namespace: str
) -> None:
    for name, tier in (("a", "gold"), ("b", "gold"), ("c", "silver")):
        core.create_namespaced_config_map(
            kube_namespace, {"metadata": {"name": name, "labels": {"tier": tier}}}
        )

    core.delete_collection_namespaced_config_map(kube_namespace, label_selector="tier=gold")

    remaining = wait_until(
        lambda: (
            (names := [cm.metadata.name for cm in core.list_namespaced_config_map(kube_namespace).items])
            == ["c"]
            and names
        )
    )
    assert remaining == ["c"]


def test_dry_run_create_validates_and_returns_the_object_without_storing_it(widgets) -> None:
    answered = widgets.create(widget("dry"), dry_run="All")

    assert answered["metadata"]["name"] == "dry" and answered["spec"]["size"] == 1
    assert not widgets.exists("dry")
    with pytest.raises(ApiException) as caught:
        widgets.create(widget("dry", color="purple"), dry_run="All")
    assert caught.value.status == 422


# --- custom resource schemas ----------------------------------------------------------------


def test_an_object_violating_its_crd_schema_is_422_with_causes(widgets) -> None:
    bad = widget("alpha", color="purple", size=11)
    del bad["spec"]["color"]

    with pytest.raises(ApiException) as caught:
        widgets.create({**bad, "spec": {**bad["spec"], "handle": "NOT-lower"}})

    assert caught.value.status == 422
    status = status_of(caught.value)
    assert status["reason"] == "Invalid"
    assert status["details"]["kind"] == "Widget" and status["details"]["group"] == GROUP
    fields = {cause["field"]: cause["reason"] for cause in status["details"]["causes"]}
    assert fields == {
        "spec.color": "FieldValueRequired",
        "spec.size": "FieldValueInvalid",
        "spec.handle": "FieldValueInvalid",
    }
    assert status["message"].startswith('Widget.testing.polycrate.io "alpha" is invalid: [')
    assert "spec.color: Required value" in status["message"]


def test_enum_violation_names_the_supported_values(widgets) -> None:
    with pytest.raises(ApiException) as caught:
        widgets.create(widget("alpha", color="purple"))

    assert status_of(caught.value)["message"] == (
        'Widget.testing.polycrate.io "alpha" is invalid: spec.color: Unsupported value: "purple": '
        'supported values: "red", "green", "blue"'
    )


def test_schema_defaults_are_applied_and_unknown_fields_pruned(widgets) -> None:
    created = widgets.create(
        widget("alpha", owner={"name": "ann"}, bogus=True, extra={"anything": {"goes": 1}})
    )

    assert created["spec"]["size"] == 1
    assert created["spec"]["owner"] == {"name": "ann", "team": "platform"}
    assert "bogus" not in created["spec"]
    assert created["spec"]["extra"] == {"anything": {"goes": 1}}


def test_strict_field_validation_rejects_unknown_fields_with_400(widgets) -> None:
    with pytest.raises(ApiException) as caught:
        widgets.create(widget("alpha", bogus=True), field_validation="Strict")

    assert caught.value.status == 400
    assert 'strict decoding error: unknown field "spec.bogus"' in status_of(caught.value)["message"]


def test_int_or_string_accepts_both(widgets) -> None:
    assert widgets.create(widget("a", port=8080))["spec"]["port"] == 8080
    assert widgets.create(widget("b", port="http"))["spec"]["port"] == "http"
    with pytest.raises(ApiException) as caught:
        widgets.create(widget("c", port=True))
    assert caught.value.status == 422


def test_crd_reports_established_and_names_accepted_right_after_creation(widget_crd: dict[str, Any]) -> None:
    conditions = {c["type"]: c["status"] for c in widget_crd["status"]["conditions"]}

    assert conditions["Established"] == "True"
    assert conditions["NamesAccepted"] == "True"
    assert widget_crd["status"]["acceptedNames"]["shortNames"] == ["wg"]


def test_a_crd_makes_its_resource_discoverable_with_short_names(
    kube_api_client: kubernetes.client.ApiClient, widget_crd: dict[str, Any]
) -> None:
    resources = kubernetes.client.CustomObjectsApi(kube_api_client).get_api_resources(GROUP, VERSION)

    by_name = {resource.name: resource for resource in resources.resources}
    assert by_name["widgets"].short_names == ["wg"]
    assert by_name["widgets"].namespaced is True
    assert "widgets/status" in by_name


def test_of_concurrent_writers_with_the_same_resource_version_exactly_one_wins(widgets) -> None:
    base = widgets.create(widget("contested"))
    outcomes: list[int] = []
    lock = threading.Lock()

    def write(size: int) -> None:
        attempt = {**base, "spec": {**base["spec"], "size": size}}
        try:
            widgets.replace("contested", attempt)
            result = 200
        except ApiException as error:
            result = error.status
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=write, args=(size,)) for size in range(2, 10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(outcomes) == [200] + [409] * 7
    assert widgets.get("contested")["metadata"]["generation"] == 2
