"""SoftwareDeliveryPlatform: the spec's example, its settings, and the rate limit default."""

from __future__ import annotations

import pytest

from polycrate.errors import InvalidSpecError
from polycrate.models import (
    DEFAULT_BURST,
    DEFAULT_REQUESTS_PER_SECOND,
    SoftwareDeliveryPlatformSpec,
    parse_spec,
)
from tests.spec_examples import example


def sdp(**spec: object) -> dict:
    return {
        "apiVersion": "polycrate.io/v1alpha1",
        "kind": "SoftwareDeliveryPlatform",
        "metadata": {"name": "production", "namespace": "polycrate"},
        "spec": spec,
    }


def test_spec_example_parses_with_all_four_systems() -> None:
    spec = parse_spec(example("softwaredeliveryplatform-production.yaml"))
    assert isinstance(spec, SoftwareDeliveryPlatformSpec)
    assert spec.keycloak and spec.keycloak.realm == "acme"
    assert spec.keycloak.credentialsRef.clientSecretKey == "client-secret"
    assert spec.harbor and spec.harbor.credentialsRef.usernameKey == "username"
    assert spec.argocd and sorted(spec.argocd.roles) == ["admin", "developer", "viewer"]
    assert spec.settings.defaultRoles == ["admins", "developers", "viewers"]


def test_role_template_renders_the_project_name() -> None:
    spec = parse_spec(example("softwaredeliveryplatform-production.yaml"))
    assert isinstance(spec, SoftwareDeliveryPlatformSpec) and spec.argocd
    assert spec.argocd.roles["viewer"].render("acme-corp") == [
        "p, proj:acme-corp:viewer, applications, get, acme-corp/*, allow"
    ]


def test_subgroup_names_follow_the_pattern() -> None:
    spec = parse_spec(example("softwaredeliveryplatform-production.yaml"))
    assert isinstance(spec, SoftwareDeliveryPlatformSpec)
    names = [spec.settings.subgroup_name("acme-corp", role) for role in spec.settings.defaultRoles]
    assert names == ["acme-corp-admins", "acme-corp-developers", "acme-corp-viewers"]


def test_settings_default_when_absent() -> None:
    spec = parse_spec(
        sdp(gitlab={"url": "https://gitlab.example.com", "credentialsRef": {"secretName": "gl"}})
    )
    assert isinstance(spec, SoftwareDeliveryPlatformSpec)
    assert spec.settings.autoCreateRoleSubgroups is True
    assert spec.settings.subgroupNamePattern == "{org}-{role}"
    assert spec.gitlab and spec.gitlab.credentialsRef.tokenKey == "token"


def test_rate_limit_defaults_and_can_be_set_per_sdp() -> None:
    gitlab = {"url": "https://gitlab.example.com", "credentialsRef": {"secretName": "gl"}}
    default = parse_spec(sdp(gitlab=gitlab))
    assert isinstance(default, SoftwareDeliveryPlatformSpec)
    limit = default.settings.effective_rate_limit()
    assert (limit.requestsPerSecond, limit.burst) == (DEFAULT_REQUESTS_PER_SECOND, DEFAULT_BURST)
    tuned = parse_spec(sdp(gitlab=gitlab, settings={"rateLimit": {"requestsPerSecond": 2.5, "burst": 5}}))
    assert isinstance(tuned, SoftwareDeliveryPlatformSpec)
    assert tuned.settings.effective_rate_limit().requestsPerSecond == 2.5


def test_rate_limit_must_be_positive() -> None:
    gitlab = {"url": "https://gitlab.example.com", "credentialsRef": {"secretName": "gl"}}
    with pytest.raises(InvalidSpecError, match="spec.settings.rateLimit.requestsPerSecond 0"):
        parse_spec(sdp(gitlab=gitlab, settings={"rateLimit": {"requestsPerSecond": 0}}))


def test_an_sdp_without_any_system_is_rejected() -> None:
    with pytest.raises(
        InvalidSpecError, match="spec needs at least one of keycloak, gitlab, harbor or argocd"
    ):
        parse_spec(sdp(settings={}))


def test_subgroup_pattern_without_role_placeholder_is_rejected() -> None:
    gitlab = {"url": "https://gitlab.example.com", "credentialsRef": {"secretName": "gl"}}
    with pytest.raises(InvalidSpecError, match=r"subgroupNamePattern \"\{org\}-team\" does not match"):
        parse_spec(sdp(gitlab=gitlab, settings={"subgroupNamePattern": "{org}-team"}))


def test_argocd_role_names_must_be_argocd_names() -> None:
    argocd = {
        "url": "https://argocd.example.com",
        "credentialsRef": {"secretName": "argo"},
        "roles": {"power user": {"policies": []}},
    }
    with pytest.raises(InvalidSpecError, match='role name "power user"'):
        parse_spec(sdp(argocd=argocd))


def test_credentials_live_in_secrets_so_an_inline_token_is_an_unknown_field() -> None:
    gitlab = {
        "url": "https://gitlab.example.com",
        "token": "glpat-secret",
        "credentialsRef": {"secretName": "gl"},
    }
    with pytest.raises(InvalidSpecError) as caught:
        parse_spec(sdp(gitlab=gitlab))
    assert "spec.gitlab.token is not a known field" in str(caught.value)
    assert "glpat-secret" not in str(caught.value)
