"""Revisions, the bounded event history and its 410 window, and point-in-time snapshots."""

from __future__ import annotations

import pytest

from emulators.kubernetes.store import HistoryExpired, ObjectStore

KEY = ("", "configmaps")


def obj(name: str, uid: str, **extra: object) -> dict:
    return {"metadata": {"name": name, "namespace": "ns", "uid": uid}, **extra}


def test_every_write_takes_the_next_revision_and_records_an_event() -> None:
    store = ObjectStore()
    start = store.revision

    store.put(KEY, obj("a", "u1"))
    store.put(KEY, obj("a", "u1", data={"k": "v"}))
    final = store.remove(KEY, "ns", "a")

    events = store.events_after(start)
    assert [(event.type, event.revision) for event in events] == [
        ("ADDED", start + 1),
        ("MODIFIED", start + 2),
        ("DELETED", start + 3),
    ]
    assert final["metadata"]["resourceVersion"] == str(start + 3)
    assert events[1].previous["metadata"]["resourceVersion"] == str(start + 1)


def test_history_beyond_its_limit_expires_old_revisions() -> None:
    store = ObjectStore(history_limit=4)
    start = store.revision
    for index in range(10):
        store.put(KEY, obj(f"o{index}", f"u{index}"))

    with pytest.raises(HistoryExpired, match=f"too old resource version: {start}"):
        store.events_after(start)
    assert len(store.events_after(store.revision - 4)) == 4


def test_expire_history_makes_every_handed_out_revision_too_old_but_not_the_next_list() -> None:
    store = ObjectStore()
    store.put(KEY, obj("a", "u1"))
    handed_out = store.revision

    store.expire_history()

    with pytest.raises(HistoryExpired):
        store.events_after(handed_out)
    assert store.events_after(store.revision) == []


def test_snapshot_rebuilds_the_state_at_an_earlier_revision() -> None:
    store = ObjectStore()
    store.put(KEY, obj("a", "u1"))
    store.put(KEY, obj("b", "u2"))
    at = store.revision
    store.remove(KEY, "ns", "a")
    store.put(KEY, obj("b", "u2", data={"changed": "yes"}))
    store.put(KEY, obj("c", "u3"))

    snapshot = store.snapshot(KEY, "ns", at)

    assert [item["metadata"]["name"] for item in snapshot] == ["a", "b"]
    assert "data" not in snapshot[1]


def test_dependents_are_indexed_by_owner_uid() -> None:
    store = ObjectStore()
    store.put(KEY, obj("owner", "u-owner"))
    store.put(
        KEY,
        obj(
            "child",
            "u-child",
            metadata={
                "name": "child",
                "namespace": "ns",
                "uid": "u-child",
                "ownerReferences": [{"uid": "u-owner"}],
            },
        ),
    )

    assert [dependent["metadata"]["name"] for _, dependent in store.dependents_of("u-owner")] == ["child"]

    store.remove(KEY, "ns", "child")
    assert store.dependents_of("u-owner") == []
