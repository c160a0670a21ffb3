"""Watches through the official Python client: event order, resumption, 410, selectors, timeouts.

Runs against a real cluster too, except the tests that need the emulator's knobs (compaction on
demand, fast bookmarks), which take the `kube_emulator` fixture and are skipped there.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

import kubernetes
import pytest
from kubernetes.client import ApiException

from emulators.kubernetes import KubeEmulator
from tests.emulators.kubernetes.conftest import GROUP, VERSION
from tests.fixtures.kube import real_cluster_kubeconfig

MERGE = "application/merge-patch+json"


@pytest.fixture
def custom(kube_api_client: kubernetes.client.ApiClient) -> kubernetes.client.CustomObjectsApi:
    return kubernetes.client.CustomObjectsApi(kube_api_client)


@pytest.fixture
def core(kube_api_client: kubernetes.client.ApiClient) -> kubernetes.client.CoreV1Api:
    return kubernetes.client.CoreV1Api(kube_api_client)


def config_map(name: str, labels: dict[str, str] | None = None, **data: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": labels or {}}, "data": data}


def watch_events(
    list_function: Callable[..., Any], *args: Any, until: Callable[[dict[str, Any]], bool], **kwargs: Any
) -> list[tuple[str, str]]:
    """(type, name) of each event until `until(event)` holds or the watch times out."""
    seen: list[tuple[str, str]] = []
    watch = kubernetes.watch.Watch()
    kwargs.setdefault("timeout_seconds", 5)
    for event in watch.stream(list_function, *args, **kwargs):
        raw = event["raw_object"]
        seen.append((event["type"], raw.get("metadata", {}).get("name", "")))
        if until(event):
            watch.stop()
            break
    return seen


def in_background(action: Callable[[], None], delay: float = 0.2) -> threading.Timer:
    timer = threading.Timer(delay, action)
    timer.start()
    return timer


def test_watch_streams_added_modified_deleted_as_they_happen(
    core: kubernetes.client.CoreV1Api, kube_namespace: str
) -> None:
    start = core.list_namespaced_config_map(kube_namespace).metadata.resource_version

    def changes() -> None:
        core.create_namespaced_config_map(kube_namespace, config_map("cfg", a="1"))
        core.patch_namespaced_config_map("cfg", kube_namespace, {"data": {"a": "2"}}, _content_type=MERGE)
        core.delete_namespaced_config_map("cfg", kube_namespace)

    timer = in_background(changes)
    events = watch_events(
        core.list_namespaced_config_map,
        kube_namespace,
        resource_version=start,
        until=lambda event: event["type"] == "DELETED",
    )
    timer.join()

    assert events == [("ADDED", "cfg"), ("MODIFIED", "cfg"), ("DELETED", "cfg")]


def test_watch_from_a_resource_version_replays_what_happened_after_it(
    core: kubernetes.client.CoreV1Api, kube_namespace: str
) -> None:
    first = core.create_namespaced_config_map(kube_namespace, config_map("one"))
    core.create_namespaced_config_map(kube_namespace, config_map("two"))
    core.delete_namespaced_config_map("one", kube_namespace)

    events = watch_events(
        core.list_namespaced_config_map,
        kube_namespace,
        resource_version=first.metadata.resource_version,
        until=lambda event: event["type"] == "DELETED",
    )

    assert events == [("ADDED", "two"), ("DELETED", "one")]


def test_deleted_event_carries_a_newer_resource_version(
    core: kubernetes.client.CoreV1Api, kube_namespace: str
) -> None:
    created = core.create_namespaced_config_map(kube_namespace, config_map("cfg"))
    core.delete_namespaced_config_map("cfg", kube_namespace)

    watch = kubernetes.watch.Watch()
    stream = watch.stream(
        core.list_namespaced_config_map,
        kube_namespace,
        resource_version=created.metadata.resource_version,
        timeout_seconds=5,
    )
    deleted = next(event for event in stream if event["type"] == "DELETED")
    watch.stop()

    assert int(deleted["raw_object"]["metadata"]["resourceVersion"]) > int(created.metadata.resource_version)


def test_watch_without_a_resource_version_starts_with_the_existing_objects(
    core: kubernetes.client.CoreV1Api, kube_namespace: str
) -> None:
    core.create_namespaced_config_map(kube_namespace, config_map("existing"))

    events = watch_events(core.list_namespaced_config_map, kube_namespace, until=lambda event: True)

    assert events == [("ADDED", "existing")]


def test_watch_from_an_expired_resource_version_gets_410(
    request: pytest.FixtureRequest, core: kubernetes.client.CoreV1Api, kube_namespace: str
) -> None:
    created = core.create_namespaced_config_map(kube_namespace, config_map("cfg"))
    old = created.metadata.resource_version
    if real_cluster_kubeconfig():
        old = "1"  # long compacted on any real cluster
    else:
        request.getfixturevalue("kube_emulator_session").expire_history()
    core.patch_namespaced_config_map("cfg", kube_namespace, {"data": {"a": "1"}}, _content_type=MERGE)

    with pytest.raises(ApiException) as caught:
        watch_events(
            core.list_namespaced_config_map, kube_namespace, resource_version=old, until=lambda e: True
        )

    assert caught.value.status == 410
    assert "Expired" in caught.value.reason


def test_label_selected_watch_sees_relabelling_as_added_and_deleted(
    core: kubernetes.client.CoreV1Api, kube_namespace: str
) -> None:
    start = core.create_namespaced_config_map(kube_namespace, config_map("cfg", {"tier": "gold"}))
    core.patch_namespaced_config_map(
        "cfg", kube_namespace, {"metadata": {"labels": {"tier": "silver"}}}, _content_type=MERGE
    )
    core.patch_namespaced_config_map(
        "cfg", kube_namespace, {"metadata": {"labels": {"tier": "gold"}}}, _content_type=MERGE
    )
    core.delete_namespaced_config_map("cfg", kube_namespace)

    seen: list[str] = []
    watch = kubernetes.watch.Watch()
    for event in watch.stream(
        core.list_namespaced_config_map,
        kube_namespace,
        label_selector="tier=gold",
        resource_version=start.metadata.resource_version,
        timeout_seconds=5,
    ):
        seen.append(event["type"])
        if len(seen) == 3:
            watch.stop()
            break

    assert seen == ["DELETED", "ADDED", "DELETED"]


def test_watch_ends_by_itself_after_timeout_seconds(
    core: kubernetes.client.CoreV1Api, kube_namespace: str
) -> None:
    start = core.list_namespaced_config_map(kube_namespace).metadata.resource_version

    events = watch_events(
        core.list_namespaced_config_map,
        kube_namespace,
        resource_version=start,
        timeout_seconds=1,
        until=lambda e: False,
    )

    assert events == []


def test_custom_resource_watch_reports_status_changes(
    custom: kubernetes.client.CustomObjectsApi, kube_namespace: str, widget_crd: dict[str, Any]
) -> None:
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Widget",
        "metadata": {"name": "w"},
        "spec": {"color": "red"},
    }
    created = custom.create_namespaced_custom_object(GROUP, VERSION, kube_namespace, "widgets", body)
    custom.patch_namespaced_custom_object_status(
        GROUP, VERSION, kube_namespace, "widgets", "w", {"status": {"phase": "Ready"}}, _content_type=MERGE
    )

    watch = kubernetes.watch.Watch()
    stream = watch.stream(
        custom.list_namespaced_custom_object,
        GROUP,
        VERSION,
        kube_namespace,
        "widgets",
        resource_version=created["metadata"]["resourceVersion"],
        timeout_seconds=5,
    )
    event = next(stream)
    watch.stop()

    assert event["type"] == "MODIFIED"
    assert event["object"]["status"] == {"phase": "Ready"}
    assert event["object"]["metadata"]["generation"] == 1


# --- emulator-only: knobs a real cluster does not offer ------------------------------------


def test_bookmarks_carry_the_latest_resource_version(
    kube_emulator: KubeEmulator, kube_api_client: kubernetes.client.ApiClient
) -> None:
    kube_emulator.bookmark_interval = 0.1
    core = kubernetes.client.CoreV1Api(kube_api_client)
    start = core.list_namespaced_config_map("default").metadata.resource_version
    core.create_namespace({"metadata": {"name": "elsewhere"}})

    response = core.list_namespaced_config_map(
        "default",
        watch=True,
        allow_watch_bookmarks=True,
        resource_version=start,
        timeout_seconds=1,
        _preload_content=False,
    )
    first_line = next(line for line in response.stream() if line.strip())
    response.close()

    assert b'"type":"BOOKMARK"' in first_line
    assert int(first_line.split(b'"resourceVersion":"')[1].split(b'"')[0]) > int(start)


def test_list_with_a_continue_token_older_than_the_history_gets_410(
    kube_emulator: KubeEmulator, core: kubernetes.client.CoreV1Api
) -> None:
    for index in range(3):
        core.create_namespaced_config_map("default", config_map(f"cfg{index}"))
    first = core.list_namespaced_config_map("default", limit=1)
    kube_emulator.expire_history()

    with pytest.raises(ApiException) as caught:
        core.list_namespaced_config_map("default", limit=1, _continue=first.metadata._continue)

    assert caught.value.status == 410


def test_pages_stay_consistent_with_the_first_page(
    core: kubernetes.client.CoreV1Api, kube_emulator: KubeEmulator
) -> None:
    for index in range(3):
        core.create_namespaced_config_map("default", config_map(f"cfg{index}"))
    first = core.list_namespaced_config_map("default", limit=1)
    core.delete_namespaced_config_map("cfg1", "default")
    core.create_namespaced_config_map("default", config_map("cfg3"))

    rest = core.list_namespaced_config_map("default", _continue=first.metadata._continue)

    assert [item.metadata.name for item in rest.items] == ["cfg1", "cfg2"]
    assert rest.metadata.resource_version == first.metadata.resource_version


def test_a_watcher_that_falls_behind_a_small_history_gets_410() -> None:
    with KubeEmulator(watch_history=4) as emulator:
        client = kubernetes.client.ApiClient(kubernetes.client.Configuration(host=emulator.url))
        core = kubernetes.client.CoreV1Api(client)
        start = core.list_namespaced_config_map("default").metadata.resource_version
        for index in range(10):
            core.create_namespaced_config_map("default", config_map(f"cfg{index}"))

        with pytest.raises(ApiException) as caught:
            watch_events(
                core.list_namespaced_config_map, "default", resource_version=start, until=lambda e: True
            )
        client.close()

    assert caught.value.status == 410


def test_send_initial_events_ends_the_initial_burst_with_a_marked_bookmark(
    kube_emulator: KubeEmulator, core: kubernetes.client.CoreV1Api
) -> None:
    core.create_namespaced_config_map("default", config_map("existing"))

    response = core.list_namespaced_config_map(
        "default",
        watch=True,
        send_initial_events=True,
        resource_version_match="NotOlderThan",
        allow_watch_bookmarks=True,
        timeout_seconds=1,
        _preload_content=False,
    )
    lines = [json.loads(line) for line in response.read().splitlines() if line.strip()]

    assert [event["type"] for event in lines[:2]] == ["ADDED", "BOOKMARK"]
    assert lines[1]["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}


def test_an_exact_resource_version_list_shows_the_state_at_that_version(
    kube_emulator: KubeEmulator, core: kubernetes.client.CoreV1Api
) -> None:
    then = core.create_namespaced_config_map("default", config_map("early")).metadata.resource_version
    core.create_namespaced_config_map("default", config_map("late"))

    listed = core.list_namespaced_config_map("default", resource_version=then, resource_version_match="Exact")

    assert [item.metadata.name for item in listed.items] == ["early"]
    assert listed.metadata.resource_version == then
