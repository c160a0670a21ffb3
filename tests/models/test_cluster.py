"""K8sCluster: API server plus exactly one way to authenticate, both from Secrets."""

from __future__ import annotations

import pytest

from polycrate.errors import InvalidSpecError
from polycrate.models import K8sClusterSpec, parse_spec
from tests.spec_examples import example


def cluster(authentication: dict) -> dict:
    obj = example("k8scluster-production-cluster.yaml")
    obj["spec"]["authentication"] = authentication
    return obj


def test_spec_example_authenticates_with_a_service_account_token() -> None:
    spec = parse_spec(example("k8scluster-production-cluster.yaml"))
    assert isinstance(spec, K8sClusterSpec)
    assert spec.sdp == "production"
    assert spec.authentication.serviceAccountToken is not None
    assert spec.authentication.serviceAccountToken.secretRef.name == "prod-cluster-token"
    assert spec.caCertificate and spec.caCertificate.startswith("-----BEGIN CERTIFICATE-----")


def test_the_commented_kubeconfig_alternative_is_valid_too() -> None:
    spec = parse_spec(
        cluster({"kubeconfig": {"secretRef": {"name": "prod-cluster-kubeconfig", "key": "kubeconfig"}}})
    )
    assert isinstance(spec, K8sClusterSpec)
    assert spec.authentication.kubeconfig is not None


@pytest.mark.parametrize(
    "authentication",
    [
        {},
        {
            "serviceAccountToken": {"secretRef": {"name": "t", "key": "token"}},
            "kubeconfig": {"secretRef": {"name": "k", "key": "kubeconfig"}},
        },
    ],
    ids=["none", "both"],
)
def test_authentication_needs_exactly_one_method(authentication: dict) -> None:
    with pytest.raises(
        InvalidSpecError, match="spec.authentication needs exactly one of serviceAccountToken or kubeconfig"
    ):
        parse_spec(cluster(authentication))


def test_api_server_must_be_a_url() -> None:
    obj = example("k8scluster-production-cluster.yaml")
    obj["spec"]["apiServer"] = "api.prod.example.com:6443"
    with pytest.raises(InvalidSpecError, match='spec.apiServer "api.prod.example.com:6443" is not an http'):
        parse_spec(obj)
