"""The kind table: names from the spec's CRD table, lookups, and parse_spec's messages."""

from __future__ import annotations

import pytest

from polycrate.errors import InvalidSpecError
from polycrate.models import (
    API_VERSION,
    KINDS,
    OrganizationSpec,
    OrganizationStatus,
    StatusModel,
    UnknownKindError,
    check_argocd_roles,
    kind_info,
    parse_spec,
    parse_status,
)
from tests.spec_examples import example

# The spec's CRD table: kind and short names, in the spec's order.
SPEC_TABLE = [
    ("SoftwareDeliveryPlatform", ("sdp",)),
    ("Organization", ("org", "orgs")),
    ("Contact", ("ct",)),
    ("ContactGroup", ("cg",)),
    ("GitLabGroup", ("glg",)),
    ("HarborProject", ("hp",)),
    ("ArgoCDProject", ("acp",)),
    ("K8sCluster", ("k8sc",)),
    ("OperatorConfig", ("oc", "opcfg")),
    ("Endpoint", ("ep", "pep")),
    ("Backup", ("backup",)),
    ("BackupSchedule", ("bs",)),
    ("Certificate", ("cert", "pcert")),
    ("K8sApp", ("app", "pca")),
    ("Artifact", ("art",)),
]


def test_the_registry_has_the_specs_fifteen_kinds_and_short_names() -> None:
    assert [(info.kind, info.short_names) for info in KINDS.values()] == SPEC_TABLE


def test_only_artifact_is_cluster_scoped() -> None:
    assert [info.kind for info in KINDS.values() if not info.namespaced] == ["Artifact"]


def test_every_status_model_has_phase_conditions_and_observed_generation() -> None:
    for info in KINDS.values():
        assert issubclass(info.status_model, StatusModel), info.kind
        assert {"phase", "conditions", "observedGeneration"} <= set(info.status_model.model_fields)


def test_discovered_kinds_use_their_cleanup_finalizer() -> None:
    assert KINDS["Endpoint"].finalizer == "endpoints.polycrate.io/cleanup"
    assert KINDS["Organization"].finalizer == "polycrate.io/finalizer"
    discovered = [info.kind for info in KINDS.values() if info.discovered]
    assert discovered == ["Endpoint", "Backup", "BackupSchedule", "Certificate", "K8sApp", "Artifact"]


@pytest.mark.parametrize(
    "name", ["Organization", "organization", "organizations", "ORG", "organizations.polycrate.io"]
)
def test_kind_info_accepts_every_name_kubectl_accepts(name: str) -> None:
    assert kind_info(name).kind == "Organization"


@pytest.mark.parametrize(
    ("short", "kind"), [("opcfg", "OperatorConfig"), ("pep", "Endpoint"), ("pca", "K8sApp")]
)
def test_second_short_names_work_too(short: str, kind: str) -> None:
    assert kind_info(short).kind == kind


def test_unknown_kind_names_the_valid_kinds() -> None:
    with pytest.raises(UnknownKindError) as caught:
        kind_info("Organisation")
    message = str(caught.value)
    assert message.startswith('unknown kind "Organisation" (valid: SoftwareDeliveryPlatform, Organization,')
    assert "Artifact)" in message
    assert isinstance(caught.value, KeyError)


def test_missing_sdp_message_names_object_field_and_fix() -> None:
    obj = example("organization-acme-corp.yaml")
    del obj["spec"]["sdp"]
    with pytest.raises(InvalidSpecError) as caught:
        parse_spec(obj)
    assert str(caught.value) == (
        "Organization polycrate/acme-corp: spec.sdp is required (name of a SoftwareDeliveryPlatform)"
    )
    assert caught.value.reason == "InvalidSpec"


def test_missing_spec_is_an_invalid_spec() -> None:
    obj = example("organization-acme-corp.yaml")
    del obj["spec"]
    with pytest.raises(InvalidSpecError, match="Organization polycrate/acme-corp: spec is required"):
        parse_spec(obj)


def test_foreign_kinds_are_refused() -> None:
    with pytest.raises(InvalidSpecError, match=f"use apiVersion {API_VERSION}"):
        parse_spec(
            {"apiVersion": "cert-manager.io/v1", "kind": "Certificate", "metadata": {"name": "x"}, "spec": {}}
        )


def test_cluster_scoped_objects_are_labelled_without_namespace() -> None:
    obj = example("artifact-cargo-ayedo-cloud-library-nginx-1-25-3.yaml")
    obj["spec"]["registry"]["port"] = 0
    with pytest.raises(
        InvalidSpecError, match=r"^Artifact cargo-ayedo-cloud-library-nginx-1-25-3: spec.registry.port 0"
    ):
        parse_spec(obj)


def test_many_problems_are_summarised_in_one_line() -> None:
    obj = example("gitlabgroup-shared-libs.yaml")
    obj["spec"].update(visibility="hidden", groupPath="/x", sdp=[], accessControl=[{"accessLevel": "root"}])
    with pytest.raises(InvalidSpecError) as caught:
        parse_spec(obj)
    message = str(caught.value)
    assert "\n" not in message
    assert message.endswith("(and 2 more)")


def test_parse_status_returns_an_empty_status_for_new_objects() -> None:
    status = parse_status(example("organization-acme-corp.yaml"))
    assert isinstance(status, OrganizationStatus)
    assert status.phase is None and status.conditions == []


def test_spec_models_are_returned_typed() -> None:
    assert isinstance(parse_spec(example("organization-acme-corp.yaml")), OrganizationSpec)


def test_role_bindings_must_use_roles_of_the_sdp() -> None:
    organization = example("organization-acme-corp.yaml")
    check_argocd_roles(organization, ["admin", "developer", "viewer"])
    organization["spec"]["argocd"]["roleBindings"][1]["role"] = "deployer"
    with pytest.raises(InvalidSpecError) as caught:
        check_argocd_roles(organization, ["admin", "developer", "viewer"])
    assert str(caught.value) == (
        'Organization polycrate/acme-corp: spec.argocd.roleBindings[1].role "deployer" is not an Argo CD role '
        "of the SDP (use admin, developer, viewer)"
    )


def test_argocd_project_access_must_use_roles_of_the_sdp() -> None:
    project = example("argocdproject-infrastructure.yaml")
    with pytest.raises(InvalidSpecError, match="none defined: add spec.argocd.roles to the SDP"):
        check_argocd_roles(project, [])
