"""GitLabGroup, HarborProject and ArgoCDProject: multi-SDP, roles in each system's own words."""

from __future__ import annotations

import pytest

from polycrate.errors import InvalidSpecError
from polycrate.models import ArgoCDProjectSpec, GitLabGroupSpec, HarborProjectSpec, parse_spec
from tests.spec_examples import example


def obj(kind: str, spec: dict) -> dict:
    return {
        "apiVersion": "polycrate.io/v1alpha1",
        "kind": kind,
        "metadata": {"name": "shared", "namespace": "polycrate"},
        "spec": spec,
    }


def test_gitlab_group_example_grants_keycloak_groups_and_organizations() -> None:
    spec = parse_spec(example("gitlabgroup-shared-libs.yaml"))
    assert isinstance(spec, GitLabGroupSpec)
    assert (spec.groupPath, spec.visibility) == ("shared-libs", "internal")
    assert spec.accessControl[0].accessLevel == "owner"
    assert spec.organizationAccess[0].organization == "acme-corp"


@pytest.mark.parametrize("level", ["guest", "reporter", "developer", "maintainer", "owner"])
def test_gitlab_access_levels_are_gitlabs_role_names(level: str) -> None:
    spec = obj(
        "GitLabGroup",
        {"sdp": ["production"], "accessControl": [{"keycloakGroup": "g", "accessLevel": level}]},
    )
    assert isinstance(parse_spec(spec), GitLabGroupSpec)


def test_unknown_gitlab_access_level_lists_the_valid_ones() -> None:
    spec = obj(
        "GitLabGroup",
        {"sdp": ["production"], "accessControl": [{"keycloakGroup": "g", "accessLevel": "admin"}]},
    )
    with pytest.raises(InvalidSpecError) as caught:
        parse_spec(spec)
    assert str(caught.value) == (
        'GitLabGroup polycrate/shared: spec.accessControl[0].accessLevel "admin" is not allowed '
        "(use guest, planner, reporter, developer, maintainer or owner)"
    )


def test_visibility_is_private_internal_or_public() -> None:
    with pytest.raises(InvalidSpecError, match='spec.visibility "hidden" is not allowed'):
        parse_spec(obj("GitLabGroup", {"sdp": ["production"], "visibility": "hidden"}))


def test_harbor_project_example_parses() -> None:
    spec = parse_spec(example("harborproject-shared-images.yaml"))
    assert isinstance(spec, HarborProjectSpec)
    assert (spec.projectName, spec.public, spec.storageQuota) == ("shared-images", False, "100Gi")
    assert spec.accessControl[0].role == "projectAdmin"


@pytest.mark.parametrize("role", ["projectAdmin", "maintainer", "developer", "guest", "limitedGuest"])
def test_harbor_roles_are_harbors_role_names(role: str) -> None:
    spec = obj(
        "HarborProject", {"sdp": ["production"], "organizationAccess": [{"organization": "o", "role": role}]}
    )
    assert isinstance(parse_spec(spec), HarborProjectSpec)


def test_harbor_quota_typo_names_field_and_fix() -> None:
    broken = example("harborproject-shared-images.yaml")
    broken["spec"]["storageQuota"] = "50Gx"
    with pytest.raises(InvalidSpecError) as caught:
        parse_spec(broken)
    assert str(caught.value) == (
        'HarborProject polycrate/shared-images: spec.storageQuota "50Gx" is not a quantity (use e.g. 50Gi)'
    )


def test_argocd_project_example_has_server_and_cluster_destinations() -> None:
    spec = parse_spec(example("argocdproject-infrastructure.yaml"))
    assert isinstance(spec, ArgoCDProjectSpec)
    assert [(d.server, d.clusterRef) for d in spec.destinations] == [
        ("https://kubernetes.default.svc", None),
        (None, "production-cluster"),
    ]


@pytest.mark.parametrize(
    "destination",
    [
        {"namespace": "*"},
        {"server": "https://kubernetes.default.svc", "clusterRef": "prod", "namespace": "*"},
    ],
    ids=["neither", "both"],
)
def test_destination_needs_exactly_one_of_server_or_cluster_ref(destination: dict) -> None:
    with pytest.raises(
        InvalidSpecError, match=r"spec.destinations\[0\] needs exactly one of server or clusterRef"
    ):
        parse_spec(obj("ArgoCDProject", {"sdp": ["production"], "destinations": [destination]}))
