"""One path builder: where the objects of every kind of the table live, for a watch, a get and a patch alike."""

from __future__ import annotations

import pytest

from polycrate.errors import PermanentError
from polycrate.kubeclient.resources import EVENTS, LEASES, Resource, resource_for, resource_path
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


@pytest.mark.parametrize(
    ("kind", "namespace", "name", "path"),
    [
        (
            "Organization",
            "team-a",
            "acme",
            "/apis/polycrate.io/v1alpha1/namespaces/team-a/organizations/acme",
        ),
        ("Organization", "", None, "/apis/polycrate.io/v1alpha1/organizations"),
        # Cluster-scoped kinds ignore a key's namespace.
        ("Artifact", "team-a", "nginx", "/apis/polycrate.io/v1alpha1/artifacts/nginx"),
        ("Node", "", "node-1", "/api/v1/nodes/node-1"),
        ("Secret", "team-a", "x.poly", "/api/v1/namespaces/team-a/secrets/x.poly"),
        ("velero.io/Backup", "velero", "daily", "/apis/velero.io/v1/namespaces/velero/backups/daily"),
        ("cert-manager.io/Certificate", "web", None, "/apis/cert-manager.io/v1/namespaces/web/certificates"),
    ],
)
def test_paths_of_namespaced_and_cluster_scoped_kinds_come_from_the_table_of_kinds(
    kind: str, namespace: str, name: str | None, path: str
) -> None:
    assert resource_for(kind).path(namespace, name) == path


def test_polycrate_kinds_have_a_status_subresource_and_sources_do_not() -> None:
    assert (
        resource_for("Organization").path("team-a", "acme", "status").endswith("/organizations/acme/status")
    )
    assert resource_for("Organization").status_subresource
    assert not resource_for("Ingress").status_subresource


def test_an_unknown_kind_is_a_permanent_error_naming_it() -> None:
    with pytest.raises(PermanentError, match="no Kubernetes resource is known for kind 'Gizmo'"):
        resource_for("Gizmo")


def test_the_operator_s_own_builtin_resources() -> None:
    assert EVENTS.path("team-a", "e1") == "/api/v1/namespaces/team-a/events/e1"
    assert LEASES.path("polycrate", "op") == "/apis/coordination.k8s.io/v1/namespaces/polycrate/leases/op"
    assert LEASES.api_version == "coordination.k8s.io/v1" and EVENTS.api_version == "v1"
