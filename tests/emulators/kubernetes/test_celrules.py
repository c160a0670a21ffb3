"""CRD `x-kubernetes-validations` transition rules, through kubectl and the real client."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from emulators.kubernetes.celrules import transition_errors
from polycrate.crds import crd_manifest
from polycrate.models import KINDS
from tests.fixtures.kube import Kubectl, KubectlFailed

IMMUTABLE = {
    "type": "object",
    "properties": {
        "spec": {
            "type": "object",
            "properties": {
                "name": {
                    "type": "string",
                    "x-kubernetes-validations": [{"rule": "self == oldSelf", "message": "name is immutable"}],
                }
            },
        }
    },
}


def _organization(namespace: str, spec: dict[str, Any]) -> str:
    return json.dumps(
        {
            "apiVersion": "polycrate.io/v1alpha1",
            "kind": "Organization",
            "metadata": {"name": "acme-corp", "namespace": namespace},
            "spec": {"sdp": "production", **spec},
        }
    )


@pytest.fixture
def organizations(kube_install_crd: Callable[..., dict[str, Any]]) -> None:
    kube_install_crd(crd_manifest(KINDS["Organization"]))


@pytest.mark.usefixtures("organizations")
def test_changing_an_immutable_field_is_refused_with_the_rules_message(
    kubectl: Kubectl, kube_namespace: str
) -> None:
    kubectl("apply", "-f", "-", input=_organization(kube_namespace, {"harbor": {"projectName": "acme"}}))

    with pytest.raises(KubectlFailed) as refused:
        kubectl(
            "patch", "org", "acme-corp", "-n", kube_namespace, "--type", "merge",
            "-p", '{"spec": {"harbor": {"projectName": "acme-renamed"}}}',
        )  # fmt: skip

    assert (
        'spec.harbor.projectName: Invalid value: "string": projectName is immutable; '
        "delete and recreate the Organization to change it"
    ) in str(refused.value)
    stored = json.loads(kubectl("get", "org", "acme-corp", "-n", kube_namespace, "-o", "json").stdout)
    assert stored["spec"]["harbor"]["projectName"] == "acme"


@pytest.mark.usefixtures("organizations")
def test_other_changes_and_setting_the_field_the_first_time_pass(
    kubectl: Kubectl, kube_namespace: str
) -> None:
    kubectl("apply", "-f", "-", input=_organization(kube_namespace, {"harbor": {"public": False}}))

    kubectl(
        "apply", "-f", "-",
        input=_organization(kube_namespace, {"harbor": {"projectName": "acme", "public": True}}),
    )  # fmt: skip
    kubectl(
        "apply", "-f", "-",
        input=_organization(kube_namespace, {"harbor": {"projectName": "acme", "public": False}}),
    )  # fmt: skip

    stored = json.loads(kubectl("get", "org", "acme-corp", "-n", kube_namespace, "-o", "json").stdout)
    assert stored["spec"]["harbor"] == {"enabled": True, "projectName": "acme", "public": False}


def test_a_transition_rule_is_not_evaluated_on_create() -> None:
    assert transition_errors({"spec": {"name": "a"}}, None, IMMUTABLE) == []


def test_a_failing_rule_without_message_names_the_rule() -> None:
    schema = json.loads(json.dumps(IMMUTABLE))
    del schema["properties"]["spec"]["properties"]["name"]["x-kubernetes-validations"][0]["message"]

    (error,) = transition_errors({"spec": {"name": "b"}}, {"spec": {"name": "a"}}, schema)

    assert error.render() == 'spec.name: Invalid value: "string": failed rule: self == oldSelf'


def test_an_expression_the_emulator_cannot_evaluate_is_refused_not_ignored() -> None:
    schema = json.loads(json.dumps(IMMUTABLE))
    schema["properties"]["spec"]["properties"]["name"]["x-kubernetes-validations"] = [
        {"rule": "size(self) < 5"}
    ]

    (error,) = transition_errors({"spec": {"name": "b"}}, {"spec": {"name": "a"}}, schema)

    assert "compilation failed" in error.render()


@pytest.mark.usefixtures("organizations")
def test_an_oversized_free_text_field_is_refused_naming_the_field(
    kubectl: Kubectl, kube_namespace: str
) -> None:
    with pytest.raises(KubectlFailed) as refused:
        kubectl("apply", "-f", "-", input=_organization(kube_namespace, {"displayName": "x" * 65536}))

    assert "spec.displayName: Too long: may not be more than 255 bytes" in str(refused.value)
