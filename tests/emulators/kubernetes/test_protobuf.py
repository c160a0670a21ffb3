"""Protobuf bodies as kubectl's typed clients send them (`k8s\\x00` + runtime.Unknown)."""

from __future__ import annotations

import base64

import pytest

from emulators.kubernetes.protobuf import ProtobufError, decode_object


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def field(number: int, payload: bytes | int | str) -> bytes:
    if isinstance(payload, int):
        return varint(number << 3) + varint(payload)
    data = payload.encode() if isinstance(payload, str) else payload
    return varint(number << 3 | 2) + varint(len(data)) + data


def entry(key: str, value: bytes | str) -> bytes:
    return field(1, key) + field(2, value)


def envelope(api_version: str, kind: str, raw: bytes) -> bytes:
    return b"k8s\x00" + field(1, field(1, api_version) + field(2, kind)) + field(2, raw)


def test_a_secret_decodes_with_base64_data_labels_and_owner_references() -> None:
    metadata = (
        field(1, "creds")
        + field(2, "")
        + field(3, "ns")
        + field(11, entry("app", "web"))
        + field(
            13,
            field(1, "Organization")
            + field(3, "acme")
            + field(4, "uid-1")
            + field(5, "polycrate.io/v1alpha1")
            + field(6, 1),
        )
        + field(14, "polycrate.io/cleanup")
    )
    raw = (
        field(1, metadata)
        + field(2, entry("token", b"\x00\x01"))
        + field(3, "Opaque")
        + field(4, entry("plain", "text"))
    )

    secret = decode_object(envelope("v1", "Secret", raw))

    assert secret == {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": "creds",
            "namespace": "ns",
            "labels": {"app": "web"},
            "ownerReferences": [
                {
                    "kind": "Organization",
                    "name": "acme",
                    "uid": "uid-1",
                    "apiVersion": "polycrate.io/v1alpha1",
                    "controller": True,
                }
            ],
            "finalizers": ["polycrate.io/cleanup"],
        },
        "data": {"token": base64.b64encode(b"\x00\x01").decode()},
        "type": "Opaque",
        "stringData": {"plain": "text"},
    }


def test_a_zero_creation_timestamp_is_left_out() -> None:
    raw = field(1, field(1, "demo") + field(8, b""))

    assert decode_object(envelope("v1", "Namespace", raw))["metadata"] == {"name": "demo"}


def test_kinds_without_a_known_schema_are_refused_rather_than_guessed() -> None:
    with pytest.raises(ProtobufError, match="not Service"):
        decode_object(envelope("v1", "Service", field(1, field(1, "svc"))))


def test_a_body_without_the_magic_prefix_is_refused() -> None:
    with pytest.raises(ProtobufError):
        decode_object(b'{"kind": "ConfigMap"}')
