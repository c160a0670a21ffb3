"""Error lines: object label, field path, the offending value and the fix, never a whole object."""

from __future__ import annotations

import pytest

from polycrate.errors import InvalidSpecError
from polycrate.models import object_label, parse_spec
from tests.spec_examples import example


def test_label_has_namespace_for_namespaced_objects() -> None:
    assert object_label(example("organization-acme-corp.yaml")) == "Organization polycrate/acme-corp"


def test_label_has_only_the_name_for_cluster_scoped_objects() -> None:
    obj = example("artifact-cargo-ayedo-cloud-library-nginx-1-25-3.yaml")
    assert object_label(obj) == "Artifact cargo-ayedo-cloud-library-nginx-1-25-3"


def test_typo_in_a_nested_field_suggests_the_right_name() -> None:
    obj = example("softwaredeliveryplatform-production.yaml")
    obj["spec"]["keycloak"]["credentialsRef"]["clientSecretkey"] = "x"
    with pytest.raises(InvalidSpecError) as caught:
        parse_spec(obj)
    assert (
        "spec.keycloak.credentialsRef.clientSecretkey is not a known field (did you mean clientSecretKey?)"
        in str(caught.value)
    )


def test_unrelated_unknown_field_lists_the_known_ones() -> None:
    obj = example("contact-john-doe.yaml")
    obj["spec"]["zzz"] = 1
    with pytest.raises(
        InvalidSpecError, match=r"spec.zzz is not a known field \(known fields: keycloak, organizations"
    ):
        parse_spec(obj)


def test_missing_field_inside_a_list_item_has_an_indexed_path() -> None:
    obj = example("contact-john-doe.yaml")
    del obj["spec"]["organizations"][0]["role"]
    with pytest.raises(
        InvalidSpecError, match=r"spec.organizations\[0\].role is required \(role in the organization"
    ):
        parse_spec(obj)


def test_dict_keys_appear_in_the_path() -> None:
    obj = example("softwaredeliveryplatform-production.yaml")
    obj["spec"]["argocd"]["roles"]["admin"]["policies"] = "p, *"
    with pytest.raises(InvalidSpecError, match="spec.argocd.roles.admin.policies"):
        parse_spec(obj)


def test_long_values_are_shortened() -> None:
    obj = example("harborproject-shared-images.yaml")
    obj["spec"]["storageQuota"] = "9" * 200 + "X"
    with pytest.raises(InvalidSpecError) as caught:
        parse_spec(obj)
    assert len(str(caught.value)) < 250


def test_wrong_type_for_an_object_field_does_not_echo_the_value() -> None:
    obj = example("k8scluster-production-cluster.yaml")
    obj["spec"]["authentication"] = ["secret-token-value"]
    with pytest.raises(InvalidSpecError) as caught:
        parse_spec(obj)
    assert "spec.authentication" in str(caught.value)
    assert "secret-token-value" not in str(caught.value)
