"""Paths, Status bodies and Retry-After read one way for every Kubernetes client of the operator."""

from __future__ import annotations

import pytest

from polycrate.kubehttp import resource_path, retry_after, status_details
from tasks.objects import Resource
from watcher.sources import WatchSource


@pytest.mark.parametrize(
    ("args", "path"),
    [
        (("", "v1", "nodes"), "/api/v1/nodes"),
        (("", "v1", "secrets", "team-a"), "/api/v1/namespaces/team-a/secrets"),
        (("", "v1", "pods"), "/api/v1/pods"),
        (
            ("polycrate.io", "v1alpha1", "organizations", "team-a", "acme"),
            "/apis/polycrate.io/v1alpha1/namespaces/team-a/organizations/acme",
        ),
        (
            ("polycrate.io", "v1alpha1", "artifacts", "", "nginx", "status"),
            "/apis/polycrate.io/v1alpha1/artifacts/nginx/status",
        ),
    ],
)
def test_resource_paths_follow_the_api_layout(args: tuple, path: str) -> None:
    assert resource_path(*args) == path


def test_the_watcher_and_the_object_api_build_the_same_paths() -> None:
    watched = WatchSource("velero.io/Backup", "velero.io", "v1", "backups", True, namespace="velero")
    resource = Resource("velero.io", "v1", "backups", True)
    assert (
        watched.collection_path == resource.path("velero") == "/apis/velero.io/v1/namespaces/velero/backups"
    )
    assert Resource("", "v1", "nodes", False).path("ignored", "node-1") == "/api/v1/nodes/node-1"


def test_status_details_reads_reason_and_message_and_survives_garbage() -> None:
    assert status_details(
        b'{"kind":"Status","reason":"Conflict","message":"the object has been modified"}'
    ) == (
        "Conflict",
        "the object has been modified",
    )
    assert status_details(b"") == ("", "")
    assert status_details(b"<html>bad gateway</html>") == ("", "<html>bad gateway</html>")


def test_retry_after_takes_seconds_and_ignores_garbage() -> None:
    assert retry_after({"Retry-After": "7"}) == 7.0
    assert retry_after({"Retry-After": "soon"}) is None
    assert retry_after({}) is None
    assert retry_after(None) is None
