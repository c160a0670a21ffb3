"""Decoding of the protobuf request bodies kubectl's typed clients send.

`kubectl create namespace|configmap|secret` post `application/vnd.kubernetes.protobuf`: the
`k8s\\x00` magic, then a `runtime.Unknown` envelope (TypeMeta + raw bytes) wrapping the object.
We decode the wire format generically and name fields with the field numbers of k8s.io/api's
generated.proto for the kinds those generators create, plus ObjectMeta and DeleteOptions.
Responses stay JSON (every client accepts it); any other protobuf kind is answered with 415 so
the client learns to send JSON instead of having fields silently dropped.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

PROTOBUF_MEDIA_TYPE = "application/vnd.kubernetes.protobuf"
_MAGIC = b"k8s\x00"


class ProtobufError(ValueError):
    """The body is not a Kubernetes protobuf object the emulator can read."""


@dataclass(frozen=True)
class Field:
    name: str
    kind: str  # string, bytes, int, bool, message, map, time
    repeated: bool = False
    schema: dict[int, Field] | None = None
    value_kind: str = "string"  # for maps: string or bytes (bytes become base64, as in JSON)


_TIME = "time"
_TYPE_META = {1: Field("apiVersion", "string"), 2: Field("kind", "string")}
_UNKNOWN = {
    1: Field("typeMeta", "message", schema=_TYPE_META),
    2: Field("raw", "bytes"),
    3: Field("contentEncoding", "string"),
    4: Field("contentType", "string"),
}
_OWNER_REFERENCE = {
    1: Field("kind", "string"),
    3: Field("name", "string"),
    4: Field("uid", "string"),
    5: Field("apiVersion", "string"),
    6: Field("controller", "bool"),
    7: Field("blockOwnerDeletion", "bool"),
}
_OBJECT_META = {
    1: Field("name", "string"),
    2: Field("generateName", "string"),
    3: Field("namespace", "string"),
    5: Field("uid", "string"),
    6: Field("resourceVersion", "string"),
    7: Field("generation", "int"),
    8: Field("creationTimestamp", _TIME),
    9: Field("deletionTimestamp", _TIME),
    10: Field("deletionGracePeriodSeconds", "int"),
    11: Field("labels", "map"),
    12: Field("annotations", "map"),
    13: Field("ownerReferences", "message", repeated=True, schema=_OWNER_REFERENCE),
    14: Field("finalizers", "string", repeated=True),
}
_METADATA = Field("metadata", "message", schema=_OBJECT_META)

KIND_SCHEMAS: dict[str, dict[int, Field]] = {
    "Namespace": {
        1: _METADATA,
        2: Field("spec", "message", schema={1: Field("finalizers", "string", repeated=True)}),
        3: Field("status", "message", schema={1: Field("phase", "string")}),
    },
    "ConfigMap": {
        1: _METADATA,
        2: Field("data", "map"),
        3: Field("binaryData", "map", value_kind="bytes"),
        4: Field("immutable", "bool"),
    },
    "Secret": {
        1: _METADATA,
        2: Field("data", "map", value_kind="bytes"),
        3: Field("type", "string"),
        4: Field("stringData", "map"),
        5: Field("immutable", "bool"),
    },
    # authentication.k8s.io/v1, what `kubectl create token` sends to serviceaccounts/<name>/token.
    "TokenRequest": {
        1: _METADATA,
        2: Field(
            "spec",
            "message",
            schema={
                1: Field("audiences", "string", repeated=True),
                3: Field(
                    "boundObjectRef",
                    "message",
                    schema={
                        1: Field("kind", "string"),
                        2: Field("apiVersion", "string"),
                        3: Field("name", "string"),
                        4: Field("uid", "string"),
                    },
                ),
                4: Field("expirationSeconds", "int"),
            },
        ),
    },
    # authorization.k8s.io/v1, what `kubectl auth can-i` sends.
    "SelfSubjectAccessReview": {
        1: _METADATA,
        2: Field(
            "spec",
            "message",
            schema={
                1: Field(
                    "resourceAttributes",
                    "message",
                    schema={
                        1: Field("namespace", "string"),
                        2: Field("verb", "string"),
                        3: Field("group", "string"),
                        4: Field("version", "string"),
                        5: Field("resource", "string"),
                        6: Field("subresource", "string"),
                        7: Field("name", "string"),
                    },
                ),
                2: Field(
                    "nonResourceAttributes",
                    "message",
                    schema={1: Field("path", "string"), 2: Field("verb", "string")},
                ),
            },
        ),
    },
}
DELETE_OPTIONS = {
    1: Field("gracePeriodSeconds", "int"),
    2: Field(
        "preconditions",
        "message",
        schema={1: Field("uid", "string"), 2: Field("resourceVersion", "string")},
    ),
    3: Field("orphanDependents", "bool"),
    4: Field("propagationPolicy", "string"),
    5: Field("dryRun", "string", repeated=True),
}


def _varint(data: bytes, position: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if position >= len(data):
            raise ProtobufError("truncated varint")
        byte = data[position]
        position += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, position
        shift += 7


def _wire_fields(data: bytes) -> Iterator[tuple[int, int, Any]]:
    position = 0
    while position < len(data):
        key, position = _varint(data, position)
        number, wire_type = key >> 3, key & 7
        if wire_type == 0:
            value, position = _varint(data, position)
        elif wire_type == 2:
            length, position = _varint(data, position)
            value, position = data[position : position + length], position + length
        elif wire_type == 1:
            value, position = data[position : position + 8], position + 8
        elif wire_type == 5:
            value, position = data[position : position + 4], position + 4
        else:
            raise ProtobufError(f"unsupported wire type {wire_type}")
        yield number, wire_type, value


def _timestamp(raw: bytes) -> str | None:
    parts = {number: value for number, _, value in _wire_fields(raw)}
    seconds = parts.get(1, 0)
    if not seconds:
        return None
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _map_entry(raw: bytes, value_kind: str) -> tuple[str, str]:
    entry = {number: value for number, _, value in _wire_fields(raw)}
    key = bytes(entry.get(1, b"")).decode()
    value = bytes(entry.get(2, b""))
    return key, base64.b64encode(value).decode() if value_kind == "bytes" else value.decode()


def decode_message(data: bytes, schema: dict[int, Field]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for number, _, raw in _wire_fields(data):
        field = schema.get(number)
        if field is None:
            continue
        if field.kind == "map":
            key, value = _map_entry(raw, field.value_kind)
            result.setdefault(field.name, {})[key] = value
            continue
        if field.kind == "string":
            value: Any = bytes(raw).decode()
        elif field.kind == "bytes":
            value = bytes(raw)
        elif field.kind == "int":
            value = raw - (1 << 64) if raw >= 1 << 63 else raw
        elif field.kind == "bool":
            value = bool(raw)
        elif field.kind == _TIME:
            value = _timestamp(raw)
            if value is None:
                continue
        else:
            value = decode_message(raw, field.schema or {})
        if field.repeated:
            result.setdefault(field.name, []).append(value)
        elif value not in ("", 0, False) or field.kind == "message":
            # Go writes zero scalars of non-pointer fields; JSON would omit them (omitempty).
            result[field.name] = value
    return result


def decode_envelope(body: bytes) -> tuple[str, str, bytes]:
    """(apiVersion, kind, raw object bytes) of a Kubernetes protobuf body."""
    if not body.startswith(_MAGIC):
        raise ProtobufError("missing the k8s protobuf magic prefix")
    envelope = decode_message(body[len(_MAGIC) :], _UNKNOWN)
    type_meta = envelope.get("typeMeta") or {}
    return type_meta.get("apiVersion", ""), type_meta.get("kind", ""), envelope.get("raw", b"")


def decode_object(body: bytes) -> dict[str, Any]:
    api_version, kind, raw = decode_envelope(body)
    schema = KIND_SCHEMAS.get(kind) if kind != "DeleteOptions" else DELETE_OPTIONS
    if schema is None:
        raise ProtobufError(
            f"the emulator reads protobuf only for {', '.join(sorted(KIND_SCHEMAS))} and DeleteOptions, not {kind or 'this body'}"
        )
    return {"apiVersion": api_version, "kind": kind, **decode_message(raw, schema)}
