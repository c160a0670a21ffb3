"""OperatorConfig discovery filters: which sources are watched and which namespaces are in scope."""

from __future__ import annotations

from typing import Any

from watcher.filters import DiscoveryFilters
from watcher.sources import DISCOVERY_SOURCES, WatchSource, polycrate_sources

SOURCES = {source.key_kind: source for source in DISCOVERY_SOURCES + polycrate_sources()}
INGRESS = SOURCES["Ingress"]
META_SECRET = SOURCES["Secret"]
NODE = SOURCES["Node"]
VELERO_BACKUP = SOURCES["velero.io/Backup"]
CNPG_BACKUP = SOURCES["postgresql.cnpg.io/Backup"]
CNPG_SCHEDULED_BACKUP = SOURCES["postgresql.cnpg.io/ScheduledBackup"]
ORGANIZATION = SOURCES["Organization"]


def operator_config(**sections: Any) -> dict[str, Any]:
    return {
        "apiVersion": "polycrate.io/v1alpha1",
        "kind": "OperatorConfig",
        "metadata": {"name": "default", "namespace": "polycrate"},
        "spec": sections,
    }


def filters_for(**sections: Any) -> DiscoveryFilters:
    filters = DiscoveryFilters()
    filters.update(operator_config(**sections))
    return filters


def test_without_operator_config_discovery_is_off_but_polycrate_kinds_are_watched() -> None:
    filters = DiscoveryFilters()

    assert not filters.is_watched(INGRESS)
    assert not filters.admits(INGRESS, "production")
    assert filters.is_watched(ORGANIZATION)
    assert filters.admits(ORGANIZATION, "anywhere")


def test_a_missing_section_is_off_and_a_present_one_is_on_unless_disabled() -> None:
    filters = filters_for(endpoint_discovery={}, app_discovery={"enabled": False})

    assert filters.is_watched(INGRESS)
    assert not filters.is_watched(META_SECRET)
    assert not filters.is_watched(NODE)


def test_empty_watch_namespaces_means_all_except_the_ignored() -> None:
    filters = filters_for(endpoint_discovery={"watch_namespaces": [], "ignore_namespaces": ["kube-system"]})

    assert filters.admits(INGRESS, "production")
    assert filters.admits(INGRESS, "staging")
    assert not filters.admits(INGRESS, "kube-system")


def test_ignore_namespaces_wins_over_watch_namespaces() -> None:
    filters = filters_for(
        app_discovery={"watch_namespaces": ["prod", "staging"], "ignore_namespaces": ["staging"]}
    )

    assert filters.admits(META_SECRET, "prod")
    assert not filters.admits(META_SECRET, "staging")
    assert not filters.admits(META_SECRET, "dev")


def test_velero_objects_count_only_in_the_velero_namespace() -> None:
    filters = filters_for(backup_discovery={"velero_namespace": "velero"})

    assert filters.admits(VELERO_BACKUP, "velero")
    assert not filters.admits(VELERO_BACKUP, "production")


def test_cloudnativepg_backups_need_cnpg_enabled_and_live_in_any_watched_namespace() -> None:
    off = filters_for(backup_discovery={"velero_namespace": "velero"})
    on = filters_for(backup_discovery={"cnpg_enabled": True, "ignore_namespaces": ["scratch"]})

    assert off.is_watched(VELERO_BACKUP) and not off.is_watched(CNPG_BACKUP)
    assert not off.admits(CNPG_BACKUP, "databases")
    assert on.is_watched(CNPG_BACKUP) and on.is_watched(CNPG_SCHEDULED_BACKUP)
    assert on.admits(CNPG_BACKUP, "databases"), "not confined to the Velero namespace"
    assert not on.admits(CNPG_SCHEDULED_BACKUP, "scratch")
    assert not on.admits(VELERO_BACKUP, "databases")


def test_switching_cnpg_on_reports_backup_discovery_as_changed() -> None:
    filters = filters_for(backup_discovery={})

    assert filters.update(operator_config(backup_discovery={"cnpg_enabled": True})) == {"backup_discovery"}


def test_node_label_selector_is_added_to_the_server_side_selector() -> None:
    filters = filters_for(node_discovery={"label_selector": "node-role.kubernetes.io/worker"})

    assert filters.label_selector(NODE) == "node-role.kubernetes.io/worker"
    assert filters.admits(NODE, "")
    assert filters.label_selector(META_SECRET) == "", "meta Secrets named *.poly carry no label to select"


def test_a_secret_is_a_meta_secret_by_its_poly_name_or_its_label() -> None:
    def secret(name: str, labels: dict[str, str]) -> dict:
        return {"metadata": {"name": name, "namespace": "prod", "labels": labels}}

    assert META_SECRET.selects(secret("myapp.poly", {}))
    assert META_SECRET.selects(secret("myapp-meta", {"polycrate.io/type": "meta"}))
    assert not META_SECRET.selects(secret("db-password", {}))
    assert not META_SECRET.selects(secret("poly", {"polycrate.io/type": "other"}))


def test_update_reports_exactly_the_sections_that_changed() -> None:
    filters = filters_for(endpoint_discovery={}, node_discovery={})

    changed = filters.update(
        operator_config(endpoint_discovery={"ignore_namespaces": ["kube-system"]}, node_discovery={})
    )
    assert changed == {"endpoint_discovery"}

    assert filters.update(None) == {"endpoint_discovery", "node_discovery"}
    assert not filters.is_watched(INGRESS)


def test_an_invalid_operator_config_keeps_the_previous_filters() -> None:
    filters = filters_for(endpoint_discovery={"ignore_namespaces": ["kube-system"]})

    changed = filters.update(operator_config(endpoint_discovery={"watch_namespace": ["typo"]}))

    assert changed == frozenset()
    assert filters.is_watched(INGRESS)
    assert not filters.admits(INGRESS, "kube-system")


def test_polycrate_kinds_ignore_discovery_sections() -> None:
    filters = filters_for(endpoint_discovery={"watch_namespaces": ["only-here"]})

    source: WatchSource = SOURCES["Endpoint"]
    assert filters.admits(source, "elsewhere")
