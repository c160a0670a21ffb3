"""Custom resources against their CRD's structural openAPIV3Schema, as the real server does it.

Order matters and follows kube-apiserver: (1) prune — unknown fields are dropped (or, with
`fieldValidation=Strict`, reported) unless `x-kubernetes-preserve-unknown-fields`, and nulls of
non-nullable fields are dropped; (2) default — `default` fills missing properties of objects
that exist; (3) validate — types, required, enum, pattern, format, bounds, list types, and
anyOf/allOf/oneOf/not. Errors are `FieldError`s whose rendering matches apimachinery's
`field.Error` (`spec.sdp: Required value`), so the 422 body reads like the real one. Object
metadata (name, labels, annotations) is validated here too, for every kind.
"""

from __future__ import annotations

import base64
import binascii
import copy
import ipaddress
import json
import re
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any
from urllib.parse import urlparse

from emulators.kubernetes.status import FieldCause

_OMITTED = object()

_TYPE_LABELS = {
    "FieldValueRequired": "Required value",
    "FieldValueInvalid": "Invalid value",
    "FieldValueTypeInvalid": "Invalid value",
    "FieldValueNotSupported": "Unsupported value",
    "FieldValueDuplicate": "Duplicate value",
    "FieldValueForbidden": "Forbidden",
    "FieldValueTooLong": "Too long",
    "FieldValueTooMany": "Too many",
}
# Types whose body never shows the offending value (apimachinery's ErrorBody rules).
_VALUELESS_TYPES = {"FieldValueRequired", "FieldValueForbidden", "FieldValueTooLong"}


def go_value(value: Any) -> str:
    """The value as Go's %v / %q shows it in apimachinery messages."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, int | float):
        return str(value)
    if value is None:
        return '"null"'
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


@dataclass(frozen=True)
class FieldError:
    type: str
    field: str
    detail: str = ""
    bad_value: Any = _OMITTED

    def body(self) -> str:
        text = _TYPE_LABELS[self.type]
        if self.type not in _VALUELESS_TYPES and self.bad_value is not _OMITTED:
            text = f"{text}: {go_value(self.bad_value)}"
        return f"{text}: {self.detail}" if self.detail else text

    def render(self) -> str:
        return f"{self.field}: {self.body()}" if self.field else self.body()

    def cause(self) -> FieldCause:
        return FieldCause(self.type, self.body(), self.field)


# --- object metadata -----------------------------------------------------------------------

DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")

_SUBDOMAIN_DETAIL = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and "
    "must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is "
    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)
_LABEL_DETAIL = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start "
    "and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is "
    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
)
_LABEL_VALUE_DETAIL = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must "
    "start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used "
    "for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
)
_QUALIFIED_NAME_DETAIL = (
    "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
    "alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is "
    "'([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
)
_ANNOTATIONS_LIMIT = 256 * 1024


def validate_name(name: str, *, dns_label: bool, path: str = "metadata.name") -> list[FieldError]:
    if dns_label:
        if len(name) > 63:
            return [FieldError("FieldValueInvalid", path, "must be no more than 63 characters", name)]
        if not DNS1123_LABEL.match(name):
            return [FieldError("FieldValueInvalid", path, _LABEL_DETAIL, name)]
        return []
    if len(name) > 253:
        return [FieldError("FieldValueInvalid", path, "must be no more than 253 characters", name)]
    if not DNS1123_SUBDOMAIN.match(name):
        return [FieldError("FieldValueInvalid", path, _SUBDOMAIN_DETAIL, name)]
    return []


def _qualified_name_errors(key: str, path: str) -> list[FieldError]:
    prefix, slash, name = key.rpartition("/")
    errors: list[FieldError] = []
    if slash and (not prefix or len(prefix) > 253 or not DNS1123_SUBDOMAIN.match(prefix)):
        errors.append(FieldError("FieldValueInvalid", path, "prefix part " + _SUBDOMAIN_DETAIL, key))
    if not name or len(name) > 63 or not _LABEL_NAME.match(name):
        errors.append(FieldError("FieldValueInvalid", path, _QUALIFIED_NAME_DETAIL, key))
    return errors


def validate_object_meta(metadata: dict[str, Any], *, dns_label_name: bool) -> list[FieldError]:
    errors: list[FieldError] = []
    name = metadata.get("name")
    if name:
        errors += validate_name(name, dns_label=dns_label_name)
    labels = metadata.get("labels") or {}
    if not isinstance(labels, dict):
        return errors + [
            FieldError("FieldValueTypeInvalid", "metadata.labels", "must be a map", type_name(labels))
        ]
    for key, value in labels.items():
        errors += _qualified_name_errors(key, "metadata.labels")
        if not isinstance(value, str) or len(value) > 63 or not _LABEL_VALUE.match(value):
            errors.append(FieldError("FieldValueInvalid", "metadata.labels", _LABEL_VALUE_DETAIL, value))
    annotations = metadata.get("annotations") or {}
    if not isinstance(annotations, dict):
        return errors + [
            FieldError(
                "FieldValueTypeInvalid", "metadata.annotations", "must be a map", type_name(annotations)
            )
        ]
    for key in annotations:
        errors += [
            FieldError(error.type, "metadata.annotations", error.detail, error.bad_value)
            for error in _qualified_name_errors(key.lower(), "metadata.annotations")
        ]
    if sum(len(key) + len(str(value)) for key, value in annotations.items()) > _ANNOTATIONS_LIMIT:
        errors.append(
            FieldError(
                "FieldValueTooLong", "metadata.annotations", f"must have at most {_ANNOTATIONS_LIMIT} bytes"
            )
        )
    return errors


# --- structural schemas --------------------------------------------------------------------

OBJECT_META_FIELDS = frozenset(
    {
        "name",
        "generateName",
        "namespace",
        "selfLink",
        "uid",
        "resourceVersion",
        "generation",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "labels",
        "annotations",
        "ownerReferences",
        "finalizers",
        "managedFields",
    }
)


def type_name(value: Any) -> str:
    """The JSON type name kube-openapi reports for a value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


@dataclass
class SchemaOutcome:
    """The object after pruning and defaulting, with what was dropped and what is wrong."""

    obj: dict[str, Any]
    unknown_fields: list[str] = field(default_factory=list)
    errors: list[FieldError] = field(default_factory=list)


def process_custom_resource(obj: dict[str, Any], schema: dict[str, Any] | None) -> SchemaOutcome:
    """Prune, default and validate a custom resource (a copy; the input is not changed)."""
    if schema is None:
        return SchemaOutcome(copy.deepcopy(obj))
    unknown: list[str] = []
    pruned = _prune_root(obj, schema, unknown)
    _apply_defaults(pruned, schema, root=True)
    errors = _validate(pruned, schema, "", root=True)
    return SchemaOutcome(pruned, unknown, errors)


def _prune_root(obj: dict[str, Any], schema: dict[str, Any], unknown: list[str]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    properties = schema.get("properties") or {}
    for key, value in obj.items():
        if key in ("apiVersion", "kind"):
            result[key] = value
        elif key == "metadata":
            if isinstance(value, dict):
                for meta_key in value:
                    if meta_key not in OBJECT_META_FIELDS:
                        unknown.append(f"metadata.{meta_key}")
                result[key] = {k: copy.deepcopy(v) for k, v in value.items() if k in OBJECT_META_FIELDS}
            else:
                result[key] = value
        elif key in properties:
            if value is None and not properties[key].get("nullable"):
                continue
            result[key] = _prune(value, properties[key], key, unknown)
        elif schema.get("x-kubernetes-preserve-unknown-fields"):
            result[key] = copy.deepcopy(value)
        else:
            unknown.append(key)
    return result


def _prune(value: Any, schema: dict[str, Any], path: str, unknown: list[str]) -> Any:
    if isinstance(value, dict):
        properties = schema.get("properties") or {}
        additional = schema.get("additionalProperties")
        preserve = schema.get("x-kubernetes-preserve-unknown-fields") or additional is True
        embedded = schema.get("x-kubernetes-embedded-resource")
        result: dict[str, Any] = {}
        for key, item in value.items():
            child = _join(path, key)
            if key in properties:
                if item is None and not properties[key].get("nullable"):
                    continue
                result[key] = _prune(item, properties[key], child, unknown)
            elif isinstance(additional, dict):
                result[key] = _prune(item, additional, child, unknown)
            elif preserve or (embedded and key in ("apiVersion", "kind", "metadata")):
                result[key] = copy.deepcopy(item)
            else:
                unknown.append(child)
        return result
    if isinstance(value, list):
        items = schema.get("items")
        if isinstance(items, dict):
            return [_prune(item, items, f"{path}[{index}]", unknown) for index, item in enumerate(value)]
    return copy.deepcopy(value)


def _apply_defaults(value: Any, schema: dict[str, Any], *, root: bool = False) -> None:
    if isinstance(value, dict):
        properties = schema.get("properties") or {}
        for key, child_schema in properties.items():
            if root and key in ("apiVersion", "kind", "metadata"):
                continue
            if key not in value and "default" in child_schema:
                value[key] = copy.deepcopy(child_schema["default"])
            if key in value:
                _apply_defaults(value[key], child_schema)
        additional = schema.get("additionalProperties")
        if isinstance(additional, dict):
            for key, item in value.items():
                if key not in properties:
                    _apply_defaults(item, additional)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for item in value:
            _apply_defaults(item, schema["items"])


def _type_matches(value: Any, expected: str) -> bool:
    if expected == "object":
        return isinstance(value, dict)
    if expected == "array":
        return isinstance(value, list)
    if expected == "string":
        return isinstance(value, str)
    if expected == "boolean":
        return isinstance(value, bool)
    if expected == "integer":
        return (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, float) and value.is_integer()
        )
    if expected == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    return True


def _validate(value: Any, schema: dict[str, Any], path: str, *, root: bool = False) -> list[FieldError]:
    errors: list[FieldError] = []
    if value is None:
        if schema.get("nullable"):
            return []
        expected = schema.get("type")
        if expected:
            return [
                FieldError(
                    "FieldValueTypeInvalid",
                    path,
                    f'{path} in body must be of type {expected}: "null"',
                    "null",
                )
            ]
        return []
    if schema.get("x-kubernetes-int-or-string"):
        if not (isinstance(value, str) or _type_matches(value, "integer")):
            return [
                FieldError(
                    "FieldValueTypeInvalid",
                    path,
                    f'{path} in body must be of type integer,string: "{type_name(value)}"',
                    type_name(value),
                )
            ]
    else:
        expected = schema.get("type")
        if expected and not _type_matches(value, expected):
            return [
                FieldError(
                    "FieldValueTypeInvalid",
                    path,
                    f'{path} in body must be of type {expected}: "{type_name(value)}"',
                    type_name(value),
                )
            ]
    if "enum" in schema and value not in schema["enum"]:
        supported = ", ".join(go_value(option) for option in schema["enum"])
        errors.append(FieldError("FieldValueNotSupported", path, f"supported values: {supported}", value))
    if isinstance(value, str):
        errors += _string_errors(value, schema, path)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        errors += _number_errors(value, schema, path)
    elif isinstance(value, list):
        errors += _array_errors(value, schema, path)
    elif isinstance(value, dict):
        errors += _object_errors(value, schema, path, root=root)
    errors += _combinator_errors(value, schema, path)
    return errors


def _string_errors(value: str, schema: dict[str, Any], path: str) -> list[FieldError]:
    errors: list[FieldError] = []
    if "maxLength" in schema and len(value) > schema["maxLength"]:
        errors.append(
            FieldError("FieldValueTooLong", path, f"may not be more than {schema['maxLength']} bytes", value)
        )
    if "minLength" in schema and len(value) < schema["minLength"]:
        errors.append(
            FieldError(
                "FieldValueInvalid",
                path,
                f"{path} in body should be at least {schema['minLength']} chars long",
                value,
            )
        )
    if "pattern" in schema and not re.search(schema["pattern"], value):
        errors.append(
            FieldError("FieldValueInvalid", path, f"{path} in body should match '{schema['pattern']}'", value)
        )
    format_name = schema.get("format")
    if format_name and not _format_ok(format_name, value):
        errors.append(
            FieldError(
                "FieldValueInvalid",
                path,
                f"{path} in body must be of type {format_name}: {go_value(value)}",
                value,
            )
        )
    return errors


def _number_errors(value: float, schema: dict[str, Any], path: str) -> list[FieldError]:
    errors: list[FieldError] = []
    shown = int(value) if isinstance(value, float) and value.is_integer() else value
    if "minimum" in schema:
        bound = schema["minimum"]
        if schema.get("exclusiveMinimum") and value <= bound:
            errors.append(
                FieldError("FieldValueInvalid", path, f"{path} in body should be greater than {bound}", shown)
            )
        elif value < bound:
            errors.append(
                FieldError(
                    "FieldValueInvalid",
                    path,
                    f"{path} in body should be greater than or equal to {bound}",
                    shown,
                )
            )
    if "maximum" in schema:
        bound = schema["maximum"]
        if schema.get("exclusiveMaximum") and value >= bound:
            errors.append(
                FieldError("FieldValueInvalid", path, f"{path} in body should be less than {bound}", shown)
            )
        elif value > bound:
            errors.append(
                FieldError(
                    "FieldValueInvalid",
                    path,
                    f"{path} in body should be less than or equal to {bound}",
                    shown,
                )
            )
    multiple = schema.get("multipleOf")
    if multiple and (value / multiple) != int(value / multiple):
        errors.append(
            FieldError("FieldValueInvalid", path, f"{path} in body should be a multiple of {multiple}", shown)
        )
    return errors


def _identity(item: Any) -> str:
    return json.dumps(item, sort_keys=True)


def _array_errors(value: list[Any], schema: dict[str, Any], path: str) -> list[FieldError]:
    errors: list[FieldError] = []
    if "maxItems" in schema and len(value) > schema["maxItems"]:
        errors.append(
            FieldError("FieldValueTooMany", path, f"must have at most {schema['maxItems']} items", len(value))
        )
    if "minItems" in schema and len(value) < schema["minItems"]:
        errors.append(
            FieldError(
                "FieldValueInvalid",
                path,
                f"{path} in body should have at least {schema['minItems']} items",
                len(value),
            )
        )
    list_type = schema.get("x-kubernetes-list-type")
    if schema.get("uniqueItems") or list_type == "set":
        seen: set[str] = set()
        for index, item in enumerate(value):
            identity = _identity(item)
            if identity in seen:
                errors.append(FieldError("FieldValueDuplicate", f"{path}[{index}]", "", item))
            seen.add(identity)
    if list_type == "map":
        keys = schema.get("x-kubernetes-list-map-keys") or []
        seen_keys: set[str] = set()
        for index, item in enumerate(value):
            if not isinstance(item, dict):
                continue
            identity = _identity({key: item.get(key) for key in keys})
            if identity in seen_keys:
                errors.append(
                    FieldError(
                        "FieldValueDuplicate", f"{path}[{index}]", "", {key: item.get(key) for key in keys}
                    )
                )
            seen_keys.add(identity)
    items = schema.get("items")
    if isinstance(items, dict):
        for index, item in enumerate(value):
            errors += _validate(item, items, f"{path}[{index}]")
    return errors


def _object_errors(
    value: dict[str, Any], schema: dict[str, Any], path: str, *, root: bool
) -> list[FieldError]:
    errors: list[FieldError] = []
    for key in schema.get("required") or ():
        if key not in value:
            errors.append(FieldError("FieldValueRequired", _join(path, key)))
    if "maxProperties" in schema and len(value) > schema["maxProperties"]:
        errors.append(
            FieldError(
                "FieldValueTooMany", path, f"must have at most {schema['maxProperties']} items", len(value)
            )
        )
    if "minProperties" in schema and len(value) < schema["minProperties"]:
        errors.append(
            FieldError(
                "FieldValueInvalid",
                path,
                f"{path} in body should have at least {schema['minProperties']} properties",
                len(value),
            )
        )
    properties = schema.get("properties") or {}
    additional = schema.get("additionalProperties")
    for key, item in value.items():
        if root and key in ("apiVersion", "kind", "metadata"):
            continue
        if key in properties:
            errors += _validate(item, properties[key], _join(path, key))
        elif isinstance(additional, dict):
            errors += _validate(item, additional, _join(path, key))
    return errors


def _combinator_errors(value: Any, schema: dict[str, Any], path: str) -> list[FieldError]:
    errors: list[FieldError] = []
    for sub in schema.get("allOf") or ():
        errors += _validate(value, sub, path)
    any_of = schema.get("anyOf")
    if any_of and all(_validate(value, sub, path) for sub in any_of):
        errors.append(
            FieldError("FieldValueInvalid", path, "must validate at least one schema (anyOf)", value)
        )
        errors += _validate(value, any_of[0], path)
    one_of = schema.get("oneOf")
    if one_of and sum(1 for sub in one_of if not _validate(value, sub, path)) != 1:
        errors.append(
            FieldError("FieldValueInvalid", path, "must validate one and only one schema (oneOf)", value)
        )
    if "not" in schema and not _validate(value, schema["not"], path):
        errors.append(FieldError("FieldValueInvalid", path, "must not validate the schema (not)", value))
    return errors


# --- formats (the subset kube-openapi's strfmt registry validates) -------------------------

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_MAC = re.compile(r"^([0-9A-Fa-f]{2}[:-]){5}[0-9A-Fa-f]{2}$")
_DURATION = re.compile(r"^\s*((\d+(\.\d+)?)\s*(ns|us|µs|ms|s|m|h|d|w)\s*)+$")
_HEXCOLOR = re.compile(r"^#?([0-9a-fA-F]{3}|[0-9a-fA-F]{6})$")
_DATE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")


def _format_ok(format_name: str, value: str) -> bool:
    checks = {
        "uri": _is_uri,
        "email": lambda text: bool(_EMAIL.match(text)),
        "hostname": lambda text: len(text) <= 253 and bool(DNS1123_SUBDOMAIN.match(text.lower())),
        "ipv4": lambda text: _parses(lambda: ipaddress.IPv4Address(text)),
        "ipv6": lambda text: _parses(lambda: ipaddress.IPv6Address(text)),
        "cidr": lambda text: "/" in text and _parses(lambda: ipaddress.ip_network(text, strict=False)),
        "mac": lambda text: bool(_MAC.match(text)),
        "uuid": lambda text: _parses(lambda: uuid.UUID(text)),
        "uuid3": lambda text: _parses(lambda: uuid.UUID(text)) and uuid.UUID(text).version == 3,
        "uuid4": lambda text: _parses(lambda: uuid.UUID(text)) and uuid.UUID(text).version == 4,
        "uuid5": lambda text: _parses(lambda: uuid.UUID(text)) and uuid.UUID(text).version == 5,
        "byte": lambda text: _parses(lambda: base64.b64decode(text, validate=True)),
        "date": lambda text: _parses(lambda: date.fromisoformat(text)) and len(text) == 10,
        "date-time": lambda text: (
            bool(_DATE_TIME.match(text))
            and _parses(lambda: datetime.fromisoformat(text.replace("z", "Z").replace("Z", "+00:00")))
        ),
        "datetime": lambda text: bool(_DATE_TIME.match(text)),
        "duration": lambda text: bool(_DURATION.match(text)),
        "hexcolor": lambda text: bool(_HEXCOLOR.match(text)),
    }
    check = checks.get(format_name)
    return check(value) if check else True


def _parses(parse: Any) -> bool:
    try:
        parse()
    except (ValueError, binascii.Error):
        return False
    return True


def _is_uri(text: str) -> bool:
    if text.startswith("/"):
        return True
    parsed = urlparse(text)
    return bool(parsed.scheme) and not any(char.isspace() for char in text)
