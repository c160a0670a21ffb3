"""ObjectKey: the string that names an object in Redis and in task arguments."""

from __future__ import annotations

import pytest

from polycrate.keys import ObjectKey


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("Organization/polycrate/acme-corp", ObjectKey("Organization", "polycrate", "acme-corp")),
        ("Node//node-1", ObjectKey("Node", "", "node-1")),
        ("velero.io/Backup/velero/nightly", ObjectKey("velero.io/Backup", "velero", "nightly")),
        (
            "cert-manager.io/Certificate/prod/api-tls",
            ObjectKey("cert-manager.io/Certificate", "prod", "api-tls"),
        ),
    ],
)
def test_key_round_trips_through_its_string_form(text: str, key: ObjectKey) -> None:
    assert ObjectKey.parse(text) == key
    assert str(key) == text


@pytest.mark.parametrize(
    "text", ["acme-corp", "Organization/acme-corp", "/polycrate/acme-corp", "Organization/ns/"]
)
def test_malformed_key_is_rejected(text: str) -> None:
    with pytest.raises(ValueError):
        ObjectKey.parse(text)


def test_description_names_kind_and_object_for_messages() -> None:
    assert (
        ObjectKey("HarborProject", "polycrate", "shared-images").describe()
        == "HarborProject polycrate/shared-images"
    )
    assert ObjectKey("Artifact", "", "nginx-1-25").describe() == "Artifact nginx-1-25"


def test_keys_sort_by_kind_namespace_name() -> None:
    keys = [
        ObjectKey("Organization", "b", "x"),
        ObjectKey("Contact", "z", "a"),
        ObjectKey("Organization", "a", "y"),
    ]

    assert [str(key) for key in sorted(keys)] == ["Contact/z/a", "Organization/a/y", "Organization/b/x"]
