"""Watch streams against the emulator: events from a resourceVersion on, bookmarks, 410 Gone, silence."""

from __future__ import annotations

import threading
import time

import pytest

from emulators.kubernetes import KubeEmulator
from polycrate.kubeclient.api import KubeClient
from polycrate.kubeclient.errors import Gone, InactiveStreamError
from polycrate.kubeclient.watching import open_watch

CONFIG_MAPS = "/api/v1/namespaces/default/configmaps"


def config_map(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}}


def list_version(client: KubeClient) -> str:
    return str(client.get(CONFIG_MAPS)["metadata"]["resourceVersion"])


def test_a_watch_delivers_what_changed_after_its_resource_version(kube_client: KubeClient) -> None:
    client = kube_client
    client.create(CONFIG_MAPS, config_map("before"))
    version = list_version(client)
    with open_watch(
        client, CONFIG_MAPS, resource_version=version, inactivity_timeout=5, server_timeout=5
    ) as stream:
        client.create(CONFIG_MAPS, config_map("after"))
        for event in stream:
            if event["type"] != "BOOKMARK":
                break
    assert event["type"] == "ADDED" and event["object"]["metadata"]["name"] == "after"


def test_bookmarks_carry_a_resource_version_to_resume_from(
    kube_emulator: KubeEmulator, kube_client: KubeClient
) -> None:
    kube_emulator.bookmark_interval = 0.2
    version = list_version(kube_client)
    with open_watch(kube_client, CONFIG_MAPS, resource_version=version, inactivity_timeout=5) as stream:
        bookmark = next(event for event in stream if event["type"] == "BOOKMARK")
    assert bookmark["object"]["metadata"]["resourceVersion"]


def test_a_compacted_resource_version_is_gone_and_a_relist_watches_again(
    kube_emulator: KubeEmulator, kube_client: KubeClient
) -> None:
    client = kube_client
    old = list_version(client)
    client.create(CONFIG_MAPS, config_map("one"))
    kube_emulator.expire_history()
    # Raised on opening, or as the stream's ERROR event.
    with (
        pytest.raises(Gone) as caught,
        open_watch(client, CONFIG_MAPS, resource_version=old, inactivity_timeout=5) as s,
    ):
        list(s)
    assert caught.value.code == 410
    # Relist: the list's resourceVersion is current, and a watch from it works again.
    with open_watch(
        client, CONFIG_MAPS, resource_version=list_version(client), inactivity_timeout=5
    ) as stream:
        client.create(CONFIG_MAPS, config_map("two"))
        names = next(e["object"]["metadata"]["name"] for e in stream if e["type"] == "ADDED")
    assert names == "two"


def test_a_silent_stream_raises_instead_of_hanging(
    kube_emulator: KubeEmulator, kube_client: KubeClient
) -> None:
    kube_emulator.bookmark_interval = 60  # nothing will come
    version = list_version(kube_client)
    started = time.monotonic()
    with (
        pytest.raises(InactiveStreamError),
        open_watch(
            kube_client, CONFIG_MAPS, resource_version=version, inactivity_timeout=0.5, bookmarks=False
        ) as stream,
    ):
        list(stream)
    assert time.monotonic() - started < 5


def test_close_from_another_thread_ends_the_iteration(kube_client: KubeClient) -> None:
    stream = open_watch(
        kube_client, CONFIG_MAPS, resource_version=list_version(kube_client), inactivity_timeout=30
    )
    threading.Timer(0.2, stream.close).start()
    started = time.monotonic()
    assert [e for e in stream if e["type"] != "BOOKMARK"] == []
    assert time.monotonic() - started < 5
