"""The table of kinds: one entry per kind, checked at import, and everything derived from it."""

from __future__ import annotations

import pytest

from polycrate.kinds import (
    KIND_TABLE,
    OPERATOR_CONFIG_KEY,
    POLYCRATE_API_QUEUE,
    POLYCRATE_KIND_QUEUES,
    KindEntry,
    KindTableError,
    build_table,
    discovery_sources,
    polycrate_entries,
)
from polycrate.kubeclient.resources import SOURCE_RESOURCES, resource_for
from polycrate.models import KINDS
from polycrate.rbac import Scope, granted
from tasks.flows.operator_config import SOURCE_SECTIONS
from tasks.routing import QUEUE_BY_KIND, queue_for
from watcher.sources import DISCOVERY_SOURCES, WatchSource, all_sources

TOY = KindEntry(
    "example.com/Widget",
    "example.com",
    "v1alpha1",
    "widgets",
    True,
    POLYCRATE_API_QUEUE,
    discovery_section="widget_discovery",
    object_filter=lambda obj: (obj.get("metadata") or {}).get("name", "").startswith("w-"),
)


def toy_table() -> dict[str, KindEntry]:
    """The product's table plus one toy discovery source, as a new kind would be added."""
    return build_table([*KIND_TABLE.values(), TOY])


def test_a_toy_kind_is_one_table_entry_and_the_watcher_derives_its_list_watch() -> None:
    sources = {source.key_kind: source for source in all_sources(toy_table())}

    widget = sources["example.com/Widget"]
    assert widget.collection_path == "/apis/example.com/v1alpha1/widgets"
    assert widget.discovery_section == "widget_discovery"
    assert widget.selects({"metadata": {"name": "w-1"}})
    assert not widget.selects({"metadata": {"name": "other"}})
    assert widget.key_for({"metadata": {"namespace": "team-a", "name": "w-1"}}).describe() == (
        "example.com/Widget team-a/w-1"
    )
    assert set(sources) == set(KIND_TABLE) | {"example.com/Widget"}


def test_a_toy_kind_names_its_queue_in_its_entry() -> None:
    assert {kind: entry.queue for kind, entry in toy_table().items()}["example.com/Widget"] == "polycrate-api"


def test_a_kind_with_an_unknown_queue_fails_when_the_table_is_built() -> None:
    with pytest.raises(KindTableError, match="names queue 'widgets'; choose from default"):
        build_table([KindEntry("Widget", "example.com", "v1", "widgets", True, "widgets")])


def test_a_polycrate_kind_without_a_queue_fails_when_the_table_is_built() -> None:
    queues = {kind: queue for kind, queue in POLYCRATE_KIND_QUEUES.items() if kind != "Contact"}
    with pytest.raises(KindTableError, match="Contact have no queue"):
        polycrate_entries(queues)


def test_a_kind_listed_twice_fails_when_the_table_is_built() -> None:
    with pytest.raises(KindTableError, match="twice"):
        build_table([TOY, TOY])


def test_every_polycrate_kind_and_discovery_source_is_in_the_table() -> None:
    assert set(KIND_TABLE) == set(KINDS) | {entry.key_kind for entry in discovery_sources()}


def test_watcher_routing_object_api_filters_and_rbac_agree_with_the_table() -> None:
    discovery = {entry.key_kind: entry for entry in discovery_sources()}
    assert {source.key_kind for source in DISCOVERY_SOURCES} == set(discovery)
    assert {source.key_kind for source in all_sources()} == set(KIND_TABLE)
    assert set(SOURCE_RESOURCES) == set(discovery)
    assert {kind: entry.discovery_section for kind, entry in discovery.items()} == SOURCE_SECTIONS
    for kind, entry in KIND_TABLE.items():
        assert queue_for(kind) == QUEUE_BY_KIND[kind] == entry.queue
        resource = resource_for(kind)
        assert (resource.group, resource.version, resource.plural, resource.namespaced) == (
            entry.group,
            entry.version,
            entry.plural,
            entry.namespaced,
        )
        scope = Scope.WATCHED if entry.namespaced else Scope.CLUSTER
        assert all(granted(entry.group, entry.plural, verb, scope) for verb in ("get", "list", "watch"))


def test_watch_sources_carry_every_field_of_their_entry() -> None:
    source = WatchSource.of(KIND_TABLE["Secret"])
    assert (source.metadata_only, source.object_filter, source.discovery_section) == (
        True,
        KIND_TABLE["Secret"].object_filter,
        "app_discovery",
    )


def test_the_operator_config_key_is_the_singleton_both_watcher_and_flows_use() -> None:
    assert OPERATOR_CONFIG_KEY.describe() == "OperatorConfig polycrate/default"
