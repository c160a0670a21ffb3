"""OperatorConfig: the spec's three examples, namespace filtering, and the 0.29.0 migration."""

from __future__ import annotations

import pytest

from polycrate.errors import InvalidSpecError
from polycrate.models import OperatorConfigSpec, OperatorConfigStatus, parse_spec, parse_status
from polycrate.models.config import IssuerFilter, NamespaceFilter
from tests.spec_examples import example


def config_spec(file_name: str) -> OperatorConfigSpec:
    spec = parse_spec(example(file_name))
    assert isinstance(spec, OperatorConfigSpec)
    return spec


def test_main_example_configures_api_sync_and_four_discoveries() -> None:
    spec = config_spec("operatorconfig-default.yaml")
    assert spec.api_sync and spec.api_sync.credentials_ref.secret_name == "polycrate-api-creds"
    assert spec.local_cluster and spec.local_cluster.cluster_name == "my-workspace"
    assert spec.endpoint_discovery and spec.endpoint_discovery.default_check_interval == 60
    assert spec.backup_discovery and spec.backup_discovery.cnpg_enabled
    assert spec.node_discovery and spec.node_discovery.label_selector == ""
    assert spec.certificate_discovery is None and spec.artifact_discovery is None


def test_partial_examples_configure_only_their_section() -> None:
    certificates = config_spec("operatorconfig-default-certificate-discovery.yaml")
    artifacts = config_spec("operatorconfig-default-artifact-discovery.yaml")
    assert certificates.api_sync is None
    assert certificates.certificate_discovery
    assert certificates.certificate_discovery.issuer_filter.exclude_issuers == ["selfsigned-issuer"]
    assert artifacts.artifact_discovery and artifacts.artifact_discovery.cleanup.stale_threshold_hours == 1
    assert artifacts.artifact_discovery.exclude_registries == ["registry.k8s.io", "k8s.gcr.io"]


def test_empty_watch_list_means_all_namespaces_except_ignored() -> None:
    spec = config_spec("operatorconfig-default.yaml")
    assert spec.endpoint_discovery is not None
    assert spec.endpoint_discovery.watches("production")
    assert not spec.endpoint_discovery.watches("kube-system")


def test_ignore_namespaces_wins_over_watch_namespaces() -> None:
    namespaces = NamespaceFilter(watch_namespaces=["prod", "staging"], ignore_namespaces=["staging"])
    assert namespaces.watches("prod")
    assert not namespaces.watches("staging")
    assert not namespaces.watches("dev")


def test_issuer_filter_excludes_before_it_includes() -> None:
    issuers = IssuerFilter(include_issuers=["letsencrypt", "selfsigned"], exclude_issuers=["selfsigned"])
    assert issuers.includes("letsencrypt")
    assert not issuers.includes("selfsigned")
    assert not issuers.includes("vault")
    assert IssuerFilter().includes("anything")


def test_workspace_and_organization_ids_from_before_0_29_are_still_accepted() -> None:
    obj = example("operatorconfig-default.yaml")
    obj["spec"]["api_sync"]["workspace_id"] = "550e8400-e29b-41d4-a716-446655440000"
    obj["spec"]["api_sync"]["organization_id"] = "6ba7b810-9dad-11d1-80b4-00c04fd430c8"
    assert isinstance(parse_spec(obj), OperatorConfigSpec)


def test_snake_case_typo_suggests_the_spec_name() -> None:
    obj = example("operatorconfig-default.yaml")
    obj["spec"]["endpoint_discovery"]["ignore_namespace"] = ["kube-system"]
    with pytest.raises(
        InvalidSpecError, match=r"ignore_namespace is not a known field \(did you mean ignore_namespaces\?\)"
    ):
        parse_spec(obj)


def test_status_holds_what_the_token_resolved_to() -> None:
    obj = example("operatorconfig-default.yaml")
    obj["status"] = {
        "api_sync": {
            "workspace_id": "550e8400-e29b-41d4-a716-446655440000",
            "workspace_name": "production",
            "organization_id": "6ba7b810-9dad-11d1-80b4-00c04fd430c8",
            "organization_name": "acme-corp",
            "resolved_at": "2026-01-06T14:30:00Z",
        },
        "local_cluster": {"cluster_id": "c-1", "cluster_name": "my-workspace", "created": True},
    }
    status = parse_status(obj)
    assert isinstance(status, OperatorConfigStatus)
    assert status.api_sync and status.api_sync.organization_name == "acme-corp"
    assert status.local_cluster and status.local_cluster.created is True
