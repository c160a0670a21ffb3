"""The watch table confined to namespaces: one list-watch per namespace for namespaced sources."""

from __future__ import annotations

from watcher.sources import all_sources, in_namespaces


def test_without_namespaces_every_source_watches_the_whole_cluster() -> None:
    sources = in_namespaces(all_sources(), ())
    assert sources == all_sources()
    organizations = next(s for s in sources if s.key_kind == "Organization")
    assert organizations.collection_path == "/apis/polycrate.io/v1alpha1/organizations"
    assert organizations.identity == "Organization"


def test_namespaced_sources_become_one_watch_per_namespace_and_cluster_scoped_ones_stay() -> None:
    sources = in_namespaces(all_sources(), ("team-a", "team-b"))

    secrets = [s for s in sources if s.key_kind == "Secret"]
    assert [s.collection_path for s in secrets] == [
        "/api/v1/namespaces/team-a/secrets",
        "/api/v1/namespaces/team-b/secrets",
    ]
    assert [s.identity for s in secrets] == ["Secret@team-a", "Secret@team-b"]
    assert all(s.metadata_only and s.object_filter is not None for s in secrets)
    nodes = [s for s in sources if s.key_kind == "Node"]
    artifacts = [s for s in sources if s.key_kind == "Artifact"]
    assert [s.collection_path for s in nodes + artifacts] == [
        "/api/v1/nodes",
        "/apis/polycrate.io/v1alpha1/artifacts",
    ]
    assert len({s.identity for s in sources}) == len(sources)


def test_what_the_flows_write_for_themselves_is_bookkeeping_and_what_users_write_is_not() -> None:
    """The watcher skips the operator's own writes by these names; a flow's new one must be listed."""
    from polycrate.kinds import is_operator_annotation, is_operator_finalizer
    from polycrate.models import FINALIZER
    from tasks.flows import discovery_endpoints
    from tasks.flows.state import STATE_ANNOTATION
    from workers.ownership import ADOPT_ANNOTATION

    assert is_operator_annotation(STATE_ANNOTATION)
    assert all(
        is_operator_annotation(name)
        for name in (
            discovery_endpoints.HOST_API_ID_ANNOTATION,
            discovery_endpoints.HOST_CONFIG_HASH_ANNOTATION,
            discovery_endpoints.HOST_SYNCED_AT_ANNOTATION,
        )
    )
    assert all(
        is_operator_finalizer(name)
        for name in (FINALIZER, discovery_endpoints.HOST_FINALIZER, discovery_endpoints.ENDPOINT_FINALIZER)
    )
    assert not is_operator_annotation(ADOPT_ANNOTATION)
    assert not is_operator_annotation("kubectl.kubernetes.io/last-applied-configuration")
    assert not is_operator_finalizer("kubernetes.io/pv-protection")
