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
