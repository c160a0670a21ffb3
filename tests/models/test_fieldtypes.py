"""Constrained values: what they accept, and the one-line error for what they do not."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ValidationError

from polycrate.models.fieldtypes import (
    GitLabPath,
    HarborProjectName,
    HttpURL,
    ObjectName,
    Quantity,
    SdpNames,
)


class Holder(BaseModel):
    quota: Quantity | None = None
    name: ObjectName | None = None
    url: HttpURL | None = None
    path: GitLabPath | None = None
    project: HarborProjectName | None = None
    sdp: SdpNames | None = None


@pytest.mark.parametrize("value", ["50Gi", "100Gi", "1.5Ti", "500M", "1024", "10K", "10k", "1e9", "2Ei"])
def test_quantity_accepts_binary_and_decimal_suffixes(value: str) -> None:
    assert Holder(quota=value).quota == value


def test_quantity_beyond_kubernetes_range_is_refused_with_the_range() -> None:
    with pytest.raises(ValidationError) as caught:
        Holder(quota="9Ei")
    assert caught.value.errors()[0]["msg"] == (
        '"9Ei" is out of the range of a Kubernetes quantity (0 to just under 8Ei)'
    )


@pytest.mark.parametrize("value", ["100m", "0.5", "1.5", "1e-1"])
def test_quantity_that_is_not_whole_bytes_is_refused_as_a_likely_typo(value: str) -> None:
    with pytest.raises(ValidationError) as caught:
        Holder(quota=value)
    assert caught.value.errors()[0]["msg"] == (
        f'"{value}" is not a whole number of bytes (m is milli; use e.g. 100Mi)'
    )


def test_quantity_written_as_yaml_number_becomes_its_string() -> None:
    assert Holder.model_validate({"quota": 50}).quota == "50"


@pytest.mark.parametrize("value", ["50Gx", "50 Gi", "-1Gi", "Gi", "50gi"])
def test_quantity_error_shows_the_value_and_an_example(value: str) -> None:
    with pytest.raises(ValidationError) as caught:
        Holder(quota=value)
    assert caught.value.errors()[0]["msg"] == f'"{value}" is not a quantity (use e.g. 50Gi)'


@pytest.mark.parametrize("value", ["acme-corp", "a", "prod.eu-1"])
def test_object_name_accepts_kubernetes_names(value: str) -> None:
    assert Holder(name=value).name == value


@pytest.mark.parametrize("value", ["Acme", "-acme", "acme_corp", "acme-", "a" * 254])
def test_object_name_rejects_what_kubernetes_rejects(value: str) -> None:
    with pytest.raises(ValidationError, match="is not a Kubernetes object name"):
        Holder(name=value)


def test_url_is_kept_verbatim_without_a_trailing_slash() -> None:
    assert Holder(url="https://keycloak.example.com").url == "https://keycloak.example.com"


@pytest.mark.parametrize("value", ["keycloak.example.com", "ftp://x", "https://", "https://a b"])
def test_url_must_be_absolute_http_or_https(value: str) -> None:
    with pytest.raises(ValidationError, match="is not an http"):
        Holder(url=value)


def test_gitlab_path_allows_subgroups_but_not_leading_punctuation() -> None:
    assert Holder(path="acme-corp/team_a").path == "acme-corp/team_a"
    with pytest.raises(ValidationError, match="is not a GitLab group path"):
        Holder(path="/acme")


def test_harbor_project_name_follows_harbors_rule() -> None:
    assert Holder(project="shared-images").project == "shared-images"
    with pytest.raises(ValidationError, match="is not a Harbor project name"):
        Holder(project="Shared--Images")


def test_sdp_list_needs_one_entry_and_no_duplicates() -> None:
    with pytest.raises(ValidationError):
        Holder(sdp=[])
    with pytest.raises(ValidationError, match="lists production more than once"):
        Holder(sdp=["production", "staging", "production"])
