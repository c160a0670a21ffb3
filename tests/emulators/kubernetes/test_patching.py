"""The three patch dialects, with the directives kubectl's three-way patches use."""

from __future__ import annotations

import pytest

from emulators.kubernetes.patching import PatchError, json_merge_patch, json_patch, strategic_merge_patch


def pod(*containers: dict) -> dict:
    return {"metadata": {"name": "p", "finalizers": ["a"]}, "spec": {"containers": list(containers)}}


def test_merge_patch_deletes_nulls_replaces_lists_and_merges_maps() -> None:
    original = {"a": {"b": 1, "c": 2}, "list": [1, 2], "gone": True}

    patched = json_merge_patch(original, {"a": {"c": None, "d": 4}, "list": [3], "gone": None})

    assert patched == {"a": {"b": 1, "d": 4}, "list": [3]}
    assert original == {"a": {"b": 1, "c": 2}, "list": [1, 2], "gone": True}


def test_json_patch_supports_all_six_operations() -> None:
    document = {"a": [1, 2], "b": {"c": 1}, "d/e": "slash", "t~": "tilde"}

    patched = json_patch(
        document,
        [
            {"op": "add", "path": "/a/1", "value": 9},
            {"op": "remove", "path": "/a/0"},
            {"op": "replace", "path": "/b/c", "value": 2},
            {"op": "move", "from": "/d~1e", "path": "/moved"},
            {"op": "copy", "from": "/t~0", "path": "/copied"},
            {"op": "test", "path": "/b/c", "value": 2},
        ],
    )

    assert patched == {"a": [9, 2], "b": {"c": 2}, "moved": "slash", "t~": "tilde", "copied": "tilde"}


@pytest.mark.parametrize(
    "operation",
    [
        {"op": "remove", "path": "/missing"},
        {"op": "replace", "path": "/nested/missing", "value": 1},
        {"op": "add", "path": "/list/7", "value": 1},
        {"op": "test", "path": "/list/0", "value": 2},
        {"op": "frobnicate", "path": "/list"},
    ],
)
def test_json_patch_refuses_operations_that_do_not_apply(operation: dict) -> None:
    with pytest.raises(PatchError):
        json_patch({"list": [1], "nested": {}}, [operation])


def test_strategic_merge_merges_containers_by_name_and_env_by_name() -> None:
    original = pod(
        {"name": "app", "image": "a:1", "env": [{"name": "A", "value": "1"}]},
        {"name": "side", "image": "s:1"},
    )

    patched = strategic_merge_patch(
        original,
        {"spec": {"containers": [{"name": "app", "image": "a:2", "env": [{"name": "B", "value": "2"}]}]}},
        "Pod",
    )

    assert patched["spec"]["containers"] == [
        {"name": "app", "image": "a:2", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]},
        {"name": "side", "image": "s:1"},
    ]


def test_strategic_merge_honours_delete_replace_and_element_order_directives() -> None:
    original = pod({"name": "a", "image": "1"}, {"name": "b", "image": "2"}, {"name": "c", "image": "3"})

    deleted = strategic_merge_patch(
        original, {"spec": {"containers": [{"name": "b", "$patch": "delete"}]}}, "Pod"
    )
    replaced = strategic_merge_patch(
        original, {"spec": {"containers": [{"name": "z", "image": "9"}, {"$patch": "replace"}]}}, "Pod"
    )
    reordered = strategic_merge_patch(
        original,
        {"spec": {"$setElementOrder/containers": [{"name": "c"}, {"name": "a"}, {"name": "b"}]}},
        "Pod",
    )

    assert [c["name"] for c in deleted["spec"]["containers"]] == ["a", "c"]
    assert replaced["spec"]["containers"] == [{"name": "z", "image": "9"}]
    assert [c["name"] for c in reordered["spec"]["containers"]] == ["c", "a", "b"]


def test_strategic_merge_unions_finalizers_and_can_remove_from_them() -> None:
    original = pod()

    added = strategic_merge_patch(original, {"metadata": {"finalizers": ["b"]}}, "Pod")
    removed = strategic_merge_patch(
        added, {"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}}, "Pod"
    )

    assert added["metadata"]["finalizers"] == ["a", "b"]
    assert removed["metadata"]["finalizers"] == ["b"]


def test_strategic_merge_replaces_lists_without_a_merge_key_and_retains_listed_keys() -> None:
    original = {
        "metadata": {"name": "n"},
        "data": {"a": "1", "b": "2"},
        "spec": {"tolerations": [{"key": "x"}]},
    }

    patched = strategic_merge_patch(
        original,
        {"spec": {"tolerations": [{"key": "y"}]}, "data": {"$retainKeys": ["a"], "a": "3"}},
        "ConfigMap",
    )

    assert patched["spec"]["tolerations"] == [{"key": "y"}]
    assert patched["data"] == {"a": "3"}


def test_strategic_merge_requires_the_merge_key_in_each_element() -> None:
    with pytest.raises(PatchError, match="merge key: name"):
        strategic_merge_patch(pod({"name": "a"}), {"spec": {"containers": [{"image": "no-name"}]}}, "Pod")


def test_strategic_merge_merges_node_conditions_by_type() -> None:
    node = {"metadata": {"name": "n"}, "status": {"conditions": [{"type": "Ready", "status": "False"}]}}

    patched = strategic_merge_patch(
        node,
        {
            "status": {
                "conditions": [
                    {"type": "Ready", "status": "True"},
                    {"type": "DiskPressure", "status": "False"},
                ]
            }
        },
        "Node",
    )

    assert patched["status"]["conditions"] == [
        {"type": "Ready", "status": "True"},
        {"type": "DiskPressure", "status": "False"},
    ]
