"""CustomResourceDefinitions generated from the pydantic models, never written by hand.

`crd_manifest(kind_info("Organization"))` turns the kind's spec and status models into an
apiextensions.k8s.io/v1 CRD whose openAPIV3Schema is *structural*, as the API server requires:
`$ref`s are inlined, Optional's `anyOf [X, null]` collapses to X (absent means unset),
junctors (oneOf/anyOf) carry nothing but `required`, and every node has a `type` or
`x-kubernetes-int-or-string`. The same models validate objects in the operator, so the
server and the workers accept exactly the same specs. deploy/crds/ holds the rendered files; a
test regenerates them in memory and fails when they drift. `apply_crd`/`install_crds` put them
into a cluster idempotently (created / updated / unchanged) and wait for Established.
"""

from __future__ import annotations

import copy
import functools
import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from kubernetes.client import ApiClient, ApiextensionsV1Api
from kubernetes.client.rest import ApiException
from pydantic import BaseModel

from polycrate.errors import PermanentError, TransientError
from polycrate.kubeclient.config import REQUEST_TIMEOUT
from polycrate.kubeclient.errors import KubeTimeoutError, translate_api_errors
from polycrate.models.registry import GROUP, KINDS, VERSION, KindInfo

CATEGORIES = ["polycrate"]
LABELS = {"app.kubernetes.io/name": "polycrate-operator", "app.kubernetes.io/part-of": "polycrate"}

# JSON-schema keywords pydantic emits that the Kubernetes OpenAPI v3 subset does not accept or need.
_DROPPED_KEYWORDS = {"title", "examples", "$schema"}
_JUNCTORS = ("oneOf", "anyOf", "allOf")
# Inside junctors the API server allows value validations only; we use just these.
_JUNCTOR_KEYWORDS = {"required", "pattern", "minimum", "maximum", "minLength", "maxLength", "enum", "format"}


class SchemaGenerationError(Exception):
    """A model cannot be expressed as a structural schema; the message names the path."""


def schema_for(model: type[BaseModel]) -> dict[str, Any]:
    """The structural OpenAPI v3 schema of a pydantic model (a fresh copy the caller may change)."""
    return copy.deepcopy(_schema_for(model))


@functools.cache
def _schema_for(model: type[BaseModel]) -> dict[str, Any]:
    raw = model.model_json_schema(by_alias=True, mode="validation")
    definitions = raw.pop("$defs", {})
    return _structural(raw, definitions, "")


def _structural(node: dict[str, Any], definitions: dict[str, Any], path: str) -> dict[str, Any]:
    node = _collapse_optional(dict(node))
    if "allOf" in node and len(node["allOf"]) == 1:
        node = {**node.pop("allOf")[0], **node}
    if "$ref" in node:
        name = node.pop("$ref").rsplit("/", 1)[-1]
        # Sibling keys (the field's description, default) describe this use and win over the model's.
        return _structural({**definitions[name], **node}, definitions, path)
    result: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROPPED_KEYWORDS:
            continue
        if key == "default" and value is None:
            continue
        if key == "additionalProperties" and value is False:
            # Pruning drops unknown fields; `false` next to `properties` is not allowed in v1.
            continue
        if key == "const":
            result["enum"] = [value]
        elif key == "exclusiveMinimum" and not isinstance(value, bool):
            result["minimum"], result["exclusiveMinimum"] = value, True
        elif key == "exclusiveMaximum" and not isinstance(value, bool):
            result["maximum"], result["exclusiveMaximum"] = value, True
        elif key == "properties":
            result[key] = {
                name: _structural(sub, definitions, f"{path}.{name}") for name, sub in value.items()
            }
        elif key == "items" or (key == "additionalProperties" and isinstance(value, dict)):
            result[key] = _structural(value, definitions, f"{path}[]")
        else:
            result[key] = copy.deepcopy(value)
    if "type" not in result and not result.get("x-kubernetes-int-or-string"):
        raise SchemaGenerationError(f"{path or '<root>'}: no single type in {sorted(node)} (not structural)")
    return _ordered(result)


# Readable files: the type and its description first, nested structure last.
_KEY_ORDER = [
    "type",
    "format",
    "description",
    "default",
    "enum",
    "pattern",
    "minLength",
    "maxLength",
    "minimum",
    "exclusiveMinimum",
    "maximum",
    "exclusiveMaximum",
    "minItems",
    "maxItems",
    "x-kubernetes-int-or-string",
    "x-kubernetes-list-type",
    "x-kubernetes-list-map-keys",
    "properties",
    "additionalProperties",
    "items",
    "required",
    "oneOf",
    "anyOf",
]


def _ordered(schema: dict[str, Any]) -> dict[str, Any]:
    rank = {key: index for index, key in enumerate(_KEY_ORDER)}
    return {key: schema[key] for key in sorted(schema, key=lambda key: (rank.get(key, len(rank)), key))}


def _collapse_optional(node: dict[str, Any]) -> dict[str, Any]:
    options = node.get("anyOf")
    if not options or {"type": "null"} not in options:
        return node
    rest = [option for option in options if option != {"type": "null"}]
    if len(rest) != 1:
        return node
    collapsed = {key: value for key, value in node.items() if key != "anyOf"}
    return {**rest[0], **collapsed}


def structural_violations(schema: dict[str, Any], path: str = "") -> list[str]:
    """Why a schema is not structural (empty when it is); mirrors the API server's rules we rely on."""
    problems: list[str] = []
    where = path or "<root>"
    if "$ref" in schema:
        problems.append(f"{where}: $ref is not allowed")
    int_or_string = schema.get("x-kubernetes-int-or-string") is True
    if "type" not in schema and not int_or_string and not schema.get("x-kubernetes-preserve-unknown-fields"):
        problems.append(f"{where}: type is missing")
    if schema.get("type") == "object" and "properties" in schema and "additionalProperties" in schema:
        problems.append(f"{where}: properties and additionalProperties are mutually exclusive")
    for junctor in _JUNCTORS:
        for option in schema.get(junctor, []):
            if int_or_string and junctor == "anyOf" and option in ({"type": "integer"}, {"type": "string"}):
                continue
            extra = set(option) - _JUNCTOR_KEYWORDS
            if extra:
                problems.append(f"{where}: {junctor} may only hold value validations, found {sorted(extra)}")
            for name in option.get("required", []):
                if name not in schema.get("properties", {}):
                    problems.append(f"{where}: {junctor} requires {name}, which is not a declared property")
    for name, sub in schema.get("properties", {}).items():
        problems.extend(structural_violations(sub, f"{path}.{name}"))
    if isinstance(schema.get("items"), dict):
        problems.extend(structural_violations(schema["items"], f"{path}[]"))
    if isinstance(schema.get("additionalProperties"), dict):
        problems.extend(structural_violations(schema["additionalProperties"], f"{path}.*"))
    return problems


def object_schema(info: KindInfo) -> dict[str, Any]:
    """The openAPIV3Schema of a kind: apiVersion, kind, metadata, spec (required) and status."""
    return {
        "type": "object",
        "description": (info.spec_model.__doc__ or info.kind).strip().splitlines()[0],
        "properties": {
            "apiVersion": {
                "type": "string",
                "description": "APIVersion of this object, polycrate.io/v1alpha1",
            },
            "kind": {"type": "string", "description": f"Kind of this object, {info.kind}"},
            "metadata": {"type": "object"},
            "spec": schema_for(info.spec_model),
            "status": schema_for(info.status_model),
        },
        "required": ["spec"],
    }


def crd_manifest(info: KindInfo) -> dict[str, Any]:
    """The apiextensions.k8s.io/v1 CustomResourceDefinition of one kind."""
    names: dict[str, Any] = {
        "kind": info.kind,
        "listKind": info.list_kind,
        "plural": info.plural,
        "singular": info.singular,
        "shortNames": list(info.short_names),
        "categories": list(CATEGORIES),
    }
    columns = []
    for column in info.printer_columns:
        rendered: dict[str, Any] = {"name": column.name, "type": column.type, "jsonPath": column.json_path}
        if column.priority:
            rendered["priority"] = column.priority
        if column.description:
            rendered["description"] = column.description
        columns.append(rendered)
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": info.crd_name, "labels": dict(LABELS)},
        "spec": {
            "group": GROUP,
            "names": names,
            "scope": "Namespaced" if info.namespaced else "Cluster",
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": columns,
                    "schema": {"openAPIV3Schema": object_schema(info)},
                }
            ],
        },
    }


def crd_manifests(kinds: Iterable[KindInfo] | None = None) -> list[dict[str, Any]]:
    """CRDs of the given kinds (default: all 15, in the registry's order)."""
    return [crd_manifest(info) for info in (kinds if kinds is not None else KINDS.values())]


def render_yaml(manifests: Iterable[dict[str, Any]]) -> str:
    """Manifests as one multi-document YAML stream, stable byte for byte."""
    documents = [
        yaml.safe_dump(manifest, sort_keys=False, default_flow_style=False, width=120, allow_unicode=True)
        for manifest in manifests
    ]
    return "---\n" + "---\n".join(documents)


def crd_filename(info: KindInfo) -> str:
    """`organizations.polycrate.io.yaml`"""
    return f"{info.crd_name}.yaml"


KUSTOMIZATION_FILENAME = "Kustomization"
"""Kustomize reads this name, and `kubectl apply -f <dir>` skips it (no .yaml suffix), so the
directory works both with `kubectl apply -f` and as a kustomize resource (`kubectl apply -k`)."""


def render_kustomization(kinds: Iterable[KindInfo]) -> str:
    resources = "".join(f"  - {crd_filename(info)}\n" for info in kinds)
    return f"apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n{resources}"


def write_crds(directory: Path, kinds: Iterable[KindInfo] | None = None) -> list[Path]:
    """Write one file per kind, plus a Kustomization listing them, into `directory`."""
    selected = list(kinds if kinds is not None else KINDS.values())
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for info in selected:
        path = directory / crd_filename(info)
        path.write_text(render_yaml([crd_manifest(info)]), encoding="utf-8")
        written.append(path)
    kustomization = directory / KUSTOMIZATION_FILENAME
    kustomization.write_text(render_kustomization(selected), encoding="utf-8")
    written.append(kustomization)
    return written


CrdAction = Literal["created", "updated", "unchanged"]


@dataclass(frozen=True)
class InstallResult:
    """What applying one CRD did (or, in a dry run, would do)."""

    name: str
    action: CrdAction
    dry_run: bool = False

    def __str__(self) -> str:
        suffix = " (dry run)" if self.dry_run and self.action != "unchanged" else ""
        return f"customresourcedefinition.apiextensions.k8s.io/{self.name} {self.action}{suffix}"


_WRITE_ATTEMPTS = 3


def apply_crd(api_client: ApiClient, manifest: dict[str, Any], *, dry_run: bool = False) -> InstallResult:
    """Create the CRD, or replace it when it differs; idempotent, nothing written when unchanged.

    Read, then create or compare-and-replace with the live resourceVersion, like `kubectl apply`
    without the annotation bookkeeping. A write that loses a race (409: someone created or
    changed it since our read) reads again and retries. In a dry run only reads are sent.
    """
    api = ApiextensionsV1Api(api_client)
    name = manifest["metadata"]["name"]
    for _ in range(_WRITE_ATTEMPTS):
        live = _read_crd(api_client, api, name)
        if live is None:
            if dry_run:
                return InstallResult(name, "created", dry_run=True)
            if _write(
                api_client,
                f"create CustomResourceDefinition {name}",
                lambda: api.create_custom_resource_definition(
                    body=manifest, _preload_content=False, _request_timeout=REQUEST_TIMEOUT
                ),
            ):
                return InstallResult(name, "created")
            continue
        if _contains(live.get("spec", {}), manifest["spec"]) and _contains(
            live.get("metadata", {}).get("labels") or {}, manifest["metadata"].get("labels") or {}
        ):
            return InstallResult(name, "unchanged", dry_run=dry_run)
        if dry_run:
            return InstallResult(name, "updated", dry_run=True)
        body = copy.deepcopy(manifest)
        body["metadata"]["resourceVersion"] = live["metadata"]["resourceVersion"]
        if _write(
            api_client,
            f"replace CustomResourceDefinition {name}",
            lambda body=body: api.replace_custom_resource_definition(
                name, body=body, _preload_content=False, _request_timeout=REQUEST_TIMEOUT
            ),
        ):
            return InstallResult(name, "updated")
    raise TransientError(f"CustomResourceDefinition {name} kept changing while it was applied; try again")


def install_crds(
    api_client: ApiClient, manifests: Iterable[dict[str, Any]], *, timeout: float = 60.0
) -> list[InstallResult]:
    """Apply every CRD, then wait until each is Established (so its kind can be used right away)."""
    results = [apply_crd(api_client, manifest) for manifest in manifests]
    for result in results:
        wait_established(api_client, result.name, timeout=timeout)
    return results


def _read_crd(api_client: ApiClient, api: ApiextensionsV1Api, name: str) -> dict[str, Any] | None:
    # Raw JSON rather than the generated models: the comparison must see what the server stored.
    with translate_api_errors(api_client, f"read CustomResourceDefinition {name}"):
        try:
            response = api.read_custom_resource_definition(
                name, _preload_content=False, _request_timeout=REQUEST_TIMEOUT
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
    return json.loads(response.data)


def _write(api_client: ApiClient, action: str, call: Callable[[], object]) -> bool:
    """Run one write; False when it lost a race (409), a PolycrateError for any other failure."""
    try:
        with translate_api_errors(api_client, action):
            call()
    except TransientError as exc:
        if exc.status_code == 409:
            return False
        raise
    return True


def _contains(live: Any, desired: Any) -> bool:
    """Whether `live` holds everything `desired` says; the server may add defaults we did not set."""
    if isinstance(desired, dict):
        return isinstance(live, dict) and all(
            key in live and _contains(live[key], value) for key, value in desired.items()
        )
    if isinstance(desired, list):
        return (
            isinstance(live, list)
            and len(live) == len(desired)
            and all(_contains(have, want) for have, want in zip(live, desired, strict=True))
        )
    return live == desired


def wait_established(
    api_client: ApiClient, name: str, *, timeout: float = 60.0, poll_interval: float = 0.2
) -> None:
    """Block until CustomResourceDefinition `name` has Established=True.

    Fails fast with a PermanentError when the server rejected the names (NamesAccepted=False),
    which no amount of waiting fixes; KubeTimeoutError after `timeout` seconds otherwise.
    """
    api = ApiextensionsV1Api(api_client)
    deadline = time.monotonic() + timeout
    last = "no conditions yet"
    while True:
        with translate_api_errors(api_client, f"read CustomResourceDefinition {name}"):
            crd = api.read_custom_resource_definition(name, _request_timeout=REQUEST_TIMEOUT)
        conditions = {c.type: c for c in (crd.status.conditions if crd.status else None) or []}
        established = conditions.get("Established")
        if established is not None and established.status == "True":
            return
        names = conditions.get("NamesAccepted")
        if names is not None and names.status == "False":
            raise PermanentError(
                f"CustomResourceDefinition {name}: names not accepted: {names.message or names.reason}",
                reason="NamesNotAccepted",
            )
        if established is not None:
            last = f"Established={established.status}: {established.reason or ''} {established.message or ''}".strip()
        if time.monotonic() >= deadline:
            raise KubeTimeoutError(
                f"CustomResourceDefinition {name} not Established after {timeout:g}s ({last})"
            )
        time.sleep(poll_interval)
