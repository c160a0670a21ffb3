"""Organization, Contact and ContactGroup as the spec writes them."""

from __future__ import annotations

import pytest

from polycrate.errors import InvalidSpecError
from polycrate.models import ContactGroupSpec, ContactSpec, OrganizationSpec, parse_spec
from tests.spec_examples import example


def obj(kind: str, spec: dict, name: str = "acme-corp") -> dict:
    return {
        "apiVersion": "polycrate.io/v1alpha1",
        "kind": kind,
        "metadata": {"name": name, "namespace": "polycrate"},
        "spec": spec,
    }


def test_organization_example_names_every_system() -> None:
    spec = parse_spec(example("organization-acme-corp.yaml"))
    assert isinstance(spec, OrganizationSpec)
    assert spec.sdp == "production"
    assert spec.keycloak and spec.keycloak.attributes == {"description": ["Main organization group"]}
    assert spec.gitlab and spec.gitlab.visibility == "private"
    assert spec.harbor and spec.harbor.storageQuota == "50Gi"
    assert spec.argocd and [b.role for b in spec.argocd.roleBindings] == ["admin", "developer"]


def test_minimal_organization_uses_its_name_and_creates_only_the_keycloak_group() -> None:
    spec = parse_spec(obj("Organization", {"sdp": "production"}))
    assert isinstance(spec, OrganizationSpec)
    assert spec.keycloak_group_name("acme-corp") == "acme-corp"
    assert spec.gitlab_group_path("acme-corp") is None
    assert spec.harbor_project_name("acme-corp") is None
    assert spec.argocd_project_name("acme-corp") is None


def test_enabled_sections_default_their_names_to_the_object_name() -> None:
    spec = parse_spec(obj("Organization", {"sdp": "production", "gitlab": {}, "harbor": {}, "argocd": {}}))
    assert isinstance(spec, OrganizationSpec)
    assert spec.gitlab_group_path("acme-corp") == "acme-corp"
    assert spec.harbor_project_name("acme-corp") == "acme-corp"
    assert spec.argocd_project_name("acme-corp") == "acme-corp"


def test_disabled_section_means_no_resource_in_that_system() -> None:
    spec = parse_spec(
        obj("Organization", {"sdp": "production", "harbor": {"enabled": False, "projectName": "x"}})
    )
    assert isinstance(spec, OrganizationSpec)
    assert spec.harbor_project_name("acme-corp") is None


def test_organization_sdp_is_a_single_name_not_a_list() -> None:
    with pytest.raises(InvalidSpecError, match="spec.sdp must be a valid string"):
        parse_spec(obj("Organization", {"sdp": ["production"]}))


def test_contact_example_maps_a_user_to_organizations_and_groups() -> None:
    spec = parse_spec(example("contact-john-doe.yaml"))
    assert isinstance(spec, ContactSpec)
    assert spec.keycloak.username == "john.doe"
    assert [(m.name, m.role) for m in spec.organizations] == [("acme-corp", "developer")]
    assert [g.contactGroup for g in spec.additionalGroups] == ["shared-developers"]


def test_contact_can_be_found_by_email_alone() -> None:
    spec = parse_spec(obj("Contact", {"keycloak": {"email": "jane@example.com"}}, name="jane"))
    assert isinstance(spec, ContactSpec) and spec.keycloak.username is None


def test_contact_needs_username_or_email() -> None:
    with pytest.raises(InvalidSpecError, match="spec.keycloak needs username or email"):
        parse_spec(obj("Contact", {"keycloak": {}}, name="nobody"))


def test_contact_group_examples_take_a_list_of_sdps() -> None:
    single = parse_spec(example("contactgroup-platform-admins.yaml"))
    multi = parse_spec(example("contactgroup-global-admins.yaml"))
    assert isinstance(single, ContactGroupSpec) and single.sdp == ["production"]
    assert isinstance(multi, ContactGroupSpec) and multi.sdp == ["production", "staging", "development"]
    assert multi.keycloak.groupName == "global-admins"


def test_contact_group_needs_at_least_one_sdp() -> None:
    with pytest.raises(InvalidSpecError, match="spec.sdp"):
        parse_spec(obj("ContactGroup", {"sdp": []}, name="empty"))
