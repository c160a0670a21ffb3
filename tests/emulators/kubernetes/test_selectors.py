"""Label and field selector grammar and matching, with the real server's 400s."""

from __future__ import annotations

import pytest

from emulators.kubernetes.selectors import parse_field_selector, parse_label_selector
from emulators.kubernetes.status import ApiError


@pytest.mark.parametrize(
    ("selector", "labels", "expected"),
    [
        ("app=web", {"app": "web"}, True),
        ("app==web", {"app": "web"}, True),
        ("app!=web", {}, True),
        ("app!=web", {"app": "web"}, False),
        ("app in (web, api)", {"app": "api"}, True),
        ("app notin (web)", {}, True),
        ("app", {"app": ""}, True),
        ("!app", {"app": "x"}, False),
        ("replicas>2", {"replicas": "3"}, True),
        ("replicas<2", {"replicas": "x"}, False),
        ("app.kubernetes.io/name=web,tier in (a,b)", {"app.kubernetes.io/name": "web", "tier": "b"}, True),
        ("", {"anything": "goes"}, True),
    ],
)
def test_label_selector_matches_like_apimachinery(
    selector: str, labels: dict[str, str], expected: bool
) -> None:
    assert parse_label_selector(selector).matches(labels) is expected


@pytest.mark.parametrize("selector", ["app in web", "app=(x)", "app in (a", "a b", "replicas>x", "bad key=1"])
def test_malformed_label_selectors_are_400(selector: str) -> None:
    with pytest.raises(ApiError) as caught:
        parse_label_selector(selector)

    assert caught.value.code == 400


def test_field_selector_compares_nested_fields_as_strings() -> None:
    event = {"metadata": {"name": "e", "namespace": "ns"}, "involvedObject": {"name": "a,b", "uid": "u1"}}
    selector = parse_field_selector(
        r"involvedObject.name=a\,b,metadata.namespace==ns,involvedObject.uid!=u2",
        allowed=("involvedObject.name", "involvedObject.uid"),
        custom_resource=False,
    )

    assert selector.matches(event)


def test_field_selector_renders_booleans_like_go() -> None:
    pod = {"metadata": {"name": "p"}, "spec": {"hostNetwork": True}}
    selector = parse_field_selector(
        "spec.hostNetwork=true", allowed=("spec.hostNetwork",), custom_resource=False
    )

    assert selector.matches(pod)


def test_unsupported_field_labels_are_400_with_the_real_wording() -> None:
    with pytest.raises(ApiError) as builtin:
        parse_field_selector("spec.color=red", allowed=(), custom_resource=False)
    with pytest.raises(ApiError) as custom:
        parse_field_selector("spec.color=red", allowed=(), custom_resource=True)

    assert builtin.value.message == "field label not supported: spec.color"
    assert (
        custom.value.message
        == '"spec.color" is not a known field selector: only "metadata.name", "metadata.namespace"'
    )
