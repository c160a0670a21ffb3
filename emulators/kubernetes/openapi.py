"""Minimal OpenAPI v3 documents, enough for kubectl's server-side field validation probe.

Before `kubectl apply/create` sends `fieldValidation=Strict`, it reads /openapi/v3 and the
group-version document of the object's kind and checks that the kind's PATCH operation declares
the `fieldValidation` query parameter; without that it would fall back to client-side
validation against /openapi/v2, which we do not serve (404; kubectl then computes strategic
merge patches from its compiled-in types, as it does for any server without v2). The documents
carry each kind's item paths with `x-kubernetes-group-version-kind`, the patch content types
the server accepts, and for custom resources their CRD schema. The `hash` in each URL changes
with the served resources so kubectl's disk cache never serves a stale document.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from emulators.kubernetes.resources import ResourceRegistry, ResourceType

JsonObject = dict[str, Any]

_QUERY_PARAMETERS = ("dryRun", "fieldManager", "fieldValidation", "force")
_PATCH_SCHEMA = "io.k8s.apimachinery.pkg.apis.meta.v1.Patch"


def _gv_path(group: str, version: str) -> str:
    return f"apis/{group}/{version}" if group else f"api/{version}"


def schema_name(rt: ResourceType) -> str:
    """The definition name the real server uses, e.g. io.polycrate.v1alpha1.Organization."""
    if not rt.group:
        return f"io.k8s.api.core.{rt.version}.{rt.kind}"
    reversed_group = ".".join(reversed(rt.group.split(".")))
    return f"{reversed_group}.{rt.version}.{rt.kind}"


def _operation(rt: ResourceType, action: str, *, patch_types: list[str] | None = None) -> JsonObject:
    gvk = {"group": rt.group, "version": rt.version, "kind": rt.kind}
    reference = {"$ref": f"#/components/schemas/{schema_name(rt)}"}
    operation: JsonObject = {
        "operationId": f"{action}{rt.kind}",
        "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": reference}}}},
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": gvk,
    }
    if action in ("put", "patch"):
        operation["parameters"] = [
            {"name": name, "in": "query", "schema": {"type": "string", "uniqueItems": True}}
            for name in _QUERY_PARAMETERS
        ]
    if patch_types is not None:
        patch_reference = {"$ref": f"#/components/schemas/{_PATCH_SCHEMA}"}
        operation["requestBody"] = {
            "content": {media_type: {"schema": patch_reference} for media_type in patch_types},
            "required": True,
        }
    return operation


def _path_parameters(rt: ResourceType) -> list[JsonObject]:
    parameters = [
        {"name": "name", "in": "path", "required": True, "schema": {"type": "string", "uniqueItems": True}}
    ]
    if rt.namespaced:
        parameters.append(
            {
                "name": "namespace",
                "in": "path",
                "required": True,
                "schema": {"type": "string", "uniqueItems": True},
            }
        )
    return parameters


def group_version_document(registry: ResourceRegistry, group: str, version: str) -> JsonObject | None:
    types = registry.resources_in(group, version)
    if not types:
        return None
    paths: JsonObject = {}
    schemas: JsonObject = {
        _PATCH_SCHEMA: {
            "type": "object",
            "description": "Patch is provided to give a concrete name and type to the Kubernetes PATCH request body.",
        }
    }
    for rt in types:
        prefix = f"/{_gv_path(group, version)}"
        if rt.namespaced:
            prefix += "/namespaces/{namespace}"
        item = f"{prefix}/{rt.plural}/{{name}}"
        # kubectl only needs the non-strategic types declared to choose server-side validation.
        patch_types = [
            "application/json-patch+json",
            "application/merge-patch+json",
            "application/apply-patch+yaml",
        ]
        paths[item] = {
            "get": _operation(rt, "get"),
            "put": _operation(rt, "put"),
            "patch": _operation(rt, "patch", patch_types=patch_types),
            "delete": _operation(rt, "delete"),
            "parameters": _path_parameters(rt),
        }
        if rt.status_subresource:
            paths[f"{item}/status"] = {
                "get": _operation(rt, "get"),
                "put": _operation(rt, "put"),
                "patch": _operation(rt, "patch", patch_types=patch_types),
                "parameters": _path_parameters(rt),
            }
        schema = dict(rt.schema) if rt.schema else {"type": "object"}
        schema["x-kubernetes-group-version-kind"] = [
            {"group": rt.group, "version": rt.version, "kind": rt.kind}
        ]
        schemas[schema_name(rt)] = schema
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.32.0"},
        "paths": paths,
        "components": {"schemas": schemas},
    }


def document_hash(document: JsonObject) -> str:
    return hashlib.sha512(json.dumps(document, sort_keys=True).encode()).hexdigest()[:64].upper()


def root_document(registry: ResourceRegistry) -> JsonObject:
    paths: JsonObject = {}
    for group, versions in registry.groups():
        for version in versions:
            document = group_version_document(registry, group, version)
            if document is None:
                continue
            gv = _gv_path(group, version)
            paths[gv] = {"serverRelativeURL": f"/openapi/v3/{gv}?hash={document_hash(document)}"}
    return {"paths": paths}
