"""Structural-schema pruning, defaulting and validation, with apimachinery's error wording."""

from __future__ import annotations

from typing import Any

import pytest

from emulators.kubernetes.validation import process_custom_resource, validate_object_meta

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "spec": {
            "type": "object",
            "required": ["name"],
            "properties": {
                "name": {"type": "string", "pattern": "^[a-z]+$", "minLength": 2, "maxLength": 8},
                "replicas": {"type": "integer", "minimum": 1, "maximum": 5, "default": 1},
                "ratio": {"type": "number", "exclusiveMaximum": True, "maximum": 1},
                "mode": {"type": "string", "enum": ["a", "b"]},
                "url": {"type": "string", "format": "uri"},
                "when": {"type": "string", "format": "date-time"},
                "items": {"type": "array", "maxItems": 2, "items": {"type": "string"}},
                "unique": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
                "byName": {
                    "type": "array",
                    "x-kubernetes-list-type": "map",
                    "x-kubernetes-list-map-keys": ["name"],
                    "items": {"type": "object", "properties": {"name": {"type": "string"}}},
                },
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                "nested": {
                    "type": "object",
                    "properties": {
                        "level": {"type": "string", "default": "info"},
                        "optional": {"type": "string"},
                    },
                },
                "nullable": {"type": "string", "nullable": True},
                "either": {
                    "anyOf": [{"type": "integer"}, {"type": "string"}],
                    "x-kubernetes-int-or-string": True,
                },
            },
        }
    },
}


def process(spec: dict[str, Any]) -> Any:
    return process_custom_resource(
        {"apiVersion": "x/v1", "kind": "X", "metadata": {"name": "n"}, "spec": spec}, SCHEMA
    )


def rendered(spec: dict[str, Any]) -> list[str]:
    return [error.render() for error in process(spec).errors]


def test_a_valid_object_gets_defaults_and_keeps_its_values() -> None:
    outcome = process({"name": "abc", "nested": {}, "labels": {"a": "b"}})

    assert outcome.errors == []
    assert outcome.obj["spec"] == {
        "name": "abc",
        "replicas": 1,
        "nested": {"level": "info"},
        "labels": {"a": "b"},
    }


def test_unknown_fields_are_pruned_and_reported_unless_preserved() -> None:
    outcome = process({"name": "abc", "bogus": 1, "nested": {"deeper": 2}, "free": {"any": {"thing": 1}}})

    assert outcome.unknown_fields == ["spec.bogus", "spec.nested.deeper"]
    assert outcome.obj["spec"]["free"] == {"any": {"thing": 1}}
    assert "bogus" not in outcome.obj["spec"]


def test_nulls_of_non_nullable_fields_are_dropped_before_defaulting() -> None:
    outcome = process({"name": "abc", "replicas": None, "nullable": None})

    assert outcome.errors == []
    assert outcome.obj["spec"]["replicas"] == 1
    assert outcome.obj["spec"]["nullable"] is None


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({}, "spec.name: Required value"),
        ({"name": "ABC"}, "spec.name: Invalid value: \"ABC\": spec.name in body should match '^[a-z]+$'"),
        ({"name": "a"}, 'spec.name: Invalid value: "a": spec.name in body should be at least 2 chars long'),
        ({"name": "abcdefghij"}, "spec.name: Too long: may not be more than 8 bytes"),
        (
            {"name": "ab", "replicas": "3"},
            'spec.replicas: Invalid value: "string": spec.replicas in body must be of type integer: "string"',
        ),
        (
            {"name": "ab", "replicas": 9},
            "spec.replicas: Invalid value: 9: spec.replicas in body should be less than or equal to 5",
        ),
        (
            {"name": "ab", "ratio": 1},
            "spec.ratio: Invalid value: 1: spec.ratio in body should be less than 1",
        ),
        ({"name": "ab", "mode": "c"}, 'spec.mode: Unsupported value: "c": supported values: "a", "b"'),
        (
            {"name": "ab", "url": "not a url"},
            'spec.url: Invalid value: "not a url": spec.url in body must be of type uri: "not a url"',
        ),
        (
            {"name": "ab", "when": "yesterday"},
            'spec.when: Invalid value: "yesterday": spec.when in body must be of type date-time: "yesterday"',
        ),
        ({"name": "ab", "items": ["a", "b", "c"]}, "spec.items: Too many: 3: must have at most 2 items"),
        ({"name": "ab", "unique": ["a", "a"]}, 'spec.unique[1]: Duplicate value: "a"'),
        (
            {"name": "ab", "labels": {"a": 1}},
            'spec.labels.a: Invalid value: "integer": spec.labels.a in body must be of type string: "integer"',
        ),
    ],
)
def test_violations_render_like_the_real_server(spec: dict[str, Any], message: str) -> None:
    assert rendered(spec) == [message]


def test_list_map_keys_must_be_unique() -> None:
    errors = process({"name": "ab", "byName": [{"name": "x"}, {"name": "x"}]}).errors

    assert [(error.type, error.field) for error in errors] == [("FieldValueDuplicate", "spec.byName[1]")]


def test_int_or_string_accepts_both_but_nothing_else() -> None:
    assert process({"name": "ab", "either": 3}).errors == []
    assert process({"name": "ab", "either": "3"}).errors == []
    assert rendered({"name": "ab", "either": [3]})[0].startswith('spec.either: Invalid value: "array"')


def test_causes_carry_reason_message_and_field() -> None:
    cause = process({}).errors[0].cause()

    assert cause.to_dict() == {
        "reason": "FieldValueRequired",
        "message": "Required value",
        "field": "spec.name",
    }


def test_unknown_metadata_fields_are_pruned_too() -> None:
    outcome = process_custom_resource(
        {"metadata": {"name": "n", "colour": "red"}, "spec": {"name": "ab"}}, SCHEMA
    )

    assert outcome.unknown_fields == ["metadata.colour"]
    assert outcome.obj["metadata"] == {"name": "n"}


@pytest.mark.parametrize(
    ("metadata", "dns_label", "field"),
    [
        ({"name": "Upper"}, False, "metadata.name"),
        ({"name": "has.dot"}, True, "metadata.name"),
        ({"name": "ok", "labels": {"bad key": "v"}}, False, "metadata.labels"),
        ({"name": "ok", "labels": {"k": "bad value!"}}, False, "metadata.labels"),
        ({"name": "ok", "annotations": {"-bad": "v"}}, False, "metadata.annotations"),
    ],
)
def test_object_metadata_is_validated(metadata: dict[str, Any], dns_label: bool, field: str) -> None:
    errors = validate_object_meta(metadata, dns_label_name=dns_label)

    assert errors and errors[0].field == field


def test_valid_object_metadata_passes() -> None:
    metadata = {
        "name": "a.b-c",
        "labels": {"app.kubernetes.io/name": "web", "empty": ""},
        "annotations": {"x/y": "any"},
    }

    assert validate_object_meta(metadata, dns_label_name=False) == []
