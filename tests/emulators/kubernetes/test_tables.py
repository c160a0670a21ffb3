"""Server-side Tables: JSONPath printer columns, ages, and the built-in kinds' columns."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from emulators.kubernetes.resources import BUILTIN_RESOURCES, ResourceType
from emulators.kubernetes.tables import human_duration, jsonpath, table

PODS = next(rt for rt in BUILTIN_RESOURCES if rt.plural == "pods")
NODES = next(rt for rt in BUILTIN_RESOURCES if rt.plural == "nodes")


def ago(**delta: float) -> str:
    return (datetime.now(UTC) - timedelta(**delta)).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (-5, "<invalid>"),
        (0, "0s"),
        (119, "119s"),
        (150, "2m30s"),
        (600, "10m"),
        (3 * 3600 + 60, "3h1m"),
        (30 * 3600, "30h"),
        (50 * 3600, "2d2h"),
        (400 * 86400, "400d"),
        (3 * 365 * 86400, "3y"),
    ],
)
def test_ages_read_like_kubectl(seconds: int, shown: str) -> None:
    assert human_duration(seconds) == shown


def test_jsonpath_handles_fields_indexes_wildcards_and_filters() -> None:
    obj = {
        "status": {
            "conditions": [{"type": "Synced", "status": "False"}, {"type": "Ready", "status": "True"}]
        },
        "spec": {"items": [{"n": 1}, {"n": 2}], "dotted.key": "v"},
    }

    assert jsonpath(obj, '.status.conditions[?(@.type=="Ready")].status') == ["True"]
    assert jsonpath(obj, ".spec.items[*].n") == [1, 2]
    assert jsonpath(obj, ".spec.items[-1].n") == [2]
    assert jsonpath(obj, "{.spec.dotted\\.key}") == ["v"]
    assert jsonpath(obj, ".spec.missing") == []


def custom_type(*columns: dict[str, Any]) -> ResourceType:
    return ResourceType(
        "example.com",
        "v1",
        "things",
        "thing",
        "Thing",
        True,
        crd_name="things.example.com",
        printer_columns=columns,
    )


def test_printer_columns_use_the_first_match_and_type_their_cells() -> None:
    rt = custom_type(
        {"name": "Ready", "type": "string", "jsonPath": '.status.conditions[?(@.type=="Ready")].status'},
        {"name": "Count", "type": "integer", "jsonPath": ".spec.count"},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
        {"name": "Missing", "type": "string", "jsonPath": ".spec.nothing", "priority": 1},
    )
    thing = {
        "metadata": {"name": "t", "namespace": "ns", "creationTimestamp": ago(minutes=5)},
        "spec": {"count": 3.0},
        "status": {"conditions": [{"type": "Ready", "status": "True"}]},
    }

    rendered = table(rt, [thing], list_metadata={"resourceVersion": "7"})

    assert [c["name"] for c in rendered["columnDefinitions"]] == ["Name", "Ready", "Count", "Age", "Missing"]
    assert rendered["columnDefinitions"][-1]["priority"] == 1
    assert rendered["rows"][0]["cells"] == ["t", "True", 3, "5m", None]
    assert rendered["rows"][0]["object"]["metadata"]["namespace"] == "ns"


def test_a_crd_without_printer_columns_shows_name_and_age() -> None:
    rendered = table(
        custom_type(), [{"metadata": {"name": "t", "creationTimestamp": ago(seconds=30)}}], list_metadata={}
    )

    assert [c["name"] for c in rendered["columnDefinitions"]] == ["Name", "Age"]
    assert rendered["rows"][0]["cells"] == ["t", "30s"]


def test_pod_rows_show_readiness_waiting_reasons_and_restarts() -> None:
    pod = {
        "metadata": {"name": "web", "creationTimestamp": ago(hours=1)},
        "spec": {"containers": [{"name": "a"}, {"name": "b"}], "nodeName": "node-1"},
        "status": {
            "phase": "Running",
            "podIP": "10.0.0.5",
            "containerStatuses": [
                {"name": "a", "ready": True, "restartCount": 2, "state": {"running": {}}},
                {
                    "name": "b",
                    "ready": False,
                    "restartCount": 1,
                    "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                },
            ],
        },
    }

    cells = table(PODS, [pod], list_metadata={})["rows"][0]["cells"]

    assert cells[:5] == ["web", "1/2", "CrashLoopBackOff", 3, "60m"]
    assert cells[5:7] == ["10.0.0.5", "node-1"]


def test_node_rows_show_status_roles_and_version() -> None:
    node = {
        "metadata": {
            "name": "n1",
            "labels": {"node-role.kubernetes.io/control-plane": ""},
            "creationTimestamp": ago(days=3),
        },
        "spec": {"unschedulable": True},
        "status": {
            "conditions": [{"type": "Ready", "status": "True"}],
            "nodeInfo": {"kubeletVersion": "v1.32.0"},
            "addresses": [{"type": "InternalIP", "address": "192.168.1.10"}],
        },
    }

    cells = table(NODES, [node], list_metadata={})["rows"][0]["cells"]

    assert cells[:6] == ["n1", "Ready,SchedulingDisabled", "control-plane", "3d", "v1.32.0", "192.168.1.10"]
