"""Per-kind create/update rules, the emulator's version of the apiserver's registry strategies.

What the real server does to an object beyond storing it lives here: Secrets fold `stringData`
into base64 `data`, Namespaces get the `kubernetes` finalizer, phase Active and the
`kubernetes.io/metadata.name` label, Pods start Pending, Services get a cluster IP, status is
reset on create where a status subresource owns it (Nodes keep theirs), immutable ConfigMaps
and Secrets refuse changes, and CustomResourceDefinitions are validated and answered with
Established/NamesAccepted conditions. The API layer calls `prepare_for_create` /
`prepare_for_update` and turns the returned `FieldError`s into a 422.
"""

from __future__ import annotations

import base64
import binascii
import copy
import itertools
from typing import Any

from emulators.kubernetes.resources import ResourceType
from emulators.kubernetes.status import bad_request
from emulators.kubernetes.validation import DNS1123_LABEL, FieldError, validate_name

JsonObject = dict[str, Any]

CRD_CLEANUP_FINALIZER = "customresourcecleanup.apiextensions.k8s.io"
NAMESPACE_FINALIZER = "kubernetes"

_service_ips = itertools.count(1)


def _fold_string_data(secret: JsonObject) -> None:
    string_data = secret.pop("stringData", None) or {}
    data = secret.get("data") or {}
    for key, value in data.items():
        try:
            base64.b64decode(value or "", validate=True)
        except (binascii.Error, ValueError, TypeError) as error:
            raise bad_request(
                f'Secret in version "v1" cannot be handled as a Secret: illegal base64 data for {key!r}'
            ) from error
    for key, value in string_data.items():
        data[key] = base64.b64encode(str(value).encode()).decode()
    if data:
        secret["data"] = data


def _immutable_data_errors(old: JsonObject, new: JsonObject) -> list[FieldError]:
    if not old.get("immutable"):
        return []
    errors = []
    for field in ("data", "binaryData"):
        if (old.get(field) or {}) != (new.get(field) or {}):
            errors.append(
                FieldError("FieldValueForbidden", field, "field is immutable when `immutable` is set")
            )
    if new.get("immutable") is not True:
        errors.append(
            FieldError("FieldValueForbidden", "immutable", "field is immutable when `immutable` is set")
        )
    return errors


# --- CustomResourceDefinition ---------------------------------------------------------------


def validate_crd(crd: JsonObject) -> list[FieldError]:
    spec = crd.get("spec")
    if not isinstance(spec, dict):
        return [FieldError("FieldValueRequired", "spec")]
    errors: list[FieldError] = []
    group = spec.get("group") or ""
    names = spec.get("names") or {}
    plural = names.get("plural") or ""
    if not group:
        errors.append(FieldError("FieldValueRequired", "spec.group"))
    elif "." not in group:
        errors.append(
            FieldError("FieldValueInvalid", "spec.group", "should be a domain with at least one dot", group)
        )
    if not plural:
        errors.append(FieldError("FieldValueRequired", "spec.names.plural"))
    elif not DNS1123_LABEL.match(plural):
        errors += validate_name(plural, dns_label=True, path="spec.names.plural")
    if not names.get("kind"):
        errors.append(FieldError("FieldValueRequired", "spec.names.kind"))
    name = crd.get("metadata", {}).get("name", "")
    if group and plural and name != f"{plural}.{group}":
        errors.append(
            FieldError("FieldValueInvalid", "metadata.name", 'must be spec.names.plural+"."+spec.group', name)
        )
    if spec.get("scope") not in ("Namespaced", "Cluster"):
        errors.append(
            FieldError(
                "FieldValueNotSupported",
                "spec.scope",
                'supported values: "Cluster", "Namespaced"',
                spec.get("scope"),
            )
        )
    versions = spec.get("versions") or []
    if not versions:
        errors.append(
            FieldError(
                "FieldValueInvalid",
                "spec.versions",
                "must have exactly one version marked as storage version",
                [],
            )
        )
        return errors
    storage = [version for version in versions if version.get("storage")]
    if len(storage) != 1:
        errors.append(
            FieldError(
                "FieldValueInvalid",
                "spec.versions",
                "must have exactly one version marked as storage version",
                [version.get("name") for version in versions],
            )
        )
    for index, version in enumerate(versions):
        path = f"spec.versions[{index}]"
        if not version.get("name"):
            errors.append(FieldError("FieldValueRequired", f"{path}.name"))
        schema = (version.get("schema") or {}).get("openAPIV3Schema")
        if not isinstance(schema, dict):
            errors.append(
                FieldError("FieldValueRequired", f"{path}.schema.openAPIV3Schema", "schemas are required")
            )
        elif schema.get("type") != "object":
            errors.append(
                FieldError(
                    "FieldValueInvalid",
                    f"{path}.schema.openAPIV3Schema.type",
                    "must be object at the root",
                    schema.get("type", ""),
                )
            )
        for column_index, column in enumerate(version.get("additionalPrinterColumns") or []):
            column_path = f"{path}.additionalPrinterColumns[{column_index}]"
            for required in ("name", "type", "jsonPath"):
                if not column.get(required):
                    errors.append(FieldError("FieldValueRequired", f"{column_path}.{required}"))
    return errors


def _crd_defaults(crd: JsonObject) -> None:
    spec = crd["spec"]
    names = spec["names"]
    names.setdefault("singular", names["kind"].lower())
    names.setdefault("listKind", f"{names['kind']}List")
    spec.setdefault("conversion", {"strategy": "None"})
    for version in spec["versions"]:
        version.setdefault("served", True)


def crd_status(crd: JsonObject, now: str, previous: JsonObject | None = None) -> JsonObject:
    spec = crd["spec"]
    stored = list((previous or {}).get("status", {}).get("storedVersions") or [])
    for version in spec["versions"]:
        if version.get("storage") and version["name"] not in stored:
            stored.append(version["name"])
    accepted = {key: copy.deepcopy(value) for key, value in spec["names"].items()}
    conditions = [
        {
            "type": "NamesAccepted",
            "status": "True",
            "lastTransitionTime": now,
            "reason": "NoConflicts",
            "message": "no conflicts found",
        },
        {
            "type": "Established",
            "status": "True",
            "lastTransitionTime": now,
            "reason": "InitialNamesAccepted",
            "message": "the initial names have been accepted",
        },
    ]
    old_conditions = {c["type"]: c for c in (previous or {}).get("status", {}).get("conditions") or []}
    for condition in conditions:
        if condition["type"] in old_conditions:
            condition["lastTransitionTime"] = old_conditions[condition["type"]].get("lastTransitionTime", now)
    return {"conditions": conditions, "acceptedNames": accepted, "storedVersions": stored}


# --- the two entry points -------------------------------------------------------------------


def prepare_for_create(rt: ResourceType, obj: JsonObject, now: str) -> list[FieldError]:
    """Mutate a new object the way the real server does before storing it; return errors."""
    metadata = obj["metadata"]
    if rt.is_custom:
        if rt.status_subresource:
            obj.pop("status", None)
        return []
    errors: list[FieldError] = []
    if rt.plural == "secrets":
        _fold_string_data(obj)
        obj.setdefault("type", "Opaque")
    elif rt.plural == "namespaces":
        obj["spec"] = {"finalizers": [NAMESPACE_FINALIZER]}
        obj["status"] = {"phase": "Active"}
        metadata.setdefault("labels", {})["kubernetes.io/metadata.name"] = metadata.get("name", "")
    elif rt.plural == "pods":
        spec = obj.setdefault("spec", {})
        if not spec.get("containers"):
            errors.append(FieldError("FieldValueRequired", "spec.containers"))
        for index, container in enumerate(spec.get("containers") or []):
            if not container.get("name"):
                errors.append(FieldError("FieldValueRequired", f"spec.containers[{index}].name"))
            if not container.get("image"):
                errors.append(FieldError("FieldValueRequired", f"spec.containers[{index}].image"))
        spec.setdefault("restartPolicy", "Always")
        spec.setdefault("dnsPolicy", "ClusterFirst")
        spec.setdefault("schedulerName", "default-scheduler")
        spec.setdefault("terminationGracePeriodSeconds", 30)
        obj["status"] = {"phase": "Pending", "qosClass": "BestEffort"}
    elif rt.plural == "services":
        spec = obj.setdefault("spec", {})
        spec.setdefault("type", "ClusterIP")
        if not spec.get("clusterIP"):
            number = next(_service_ips)
            spec["clusterIP"] = f"10.96.{number // 250 % 250}.{number % 250 + 1}"
        for port in spec.get("ports") or []:
            port.setdefault("protocol", "TCP")
            port.setdefault("targetPort", port.get("port"))
        obj["status"] = {"loadBalancer": {}}
    elif rt.plural == "ingresses":
        obj["status"] = {"loadBalancer": {}}
    elif rt.plural == "customresourcedefinitions":
        errors += validate_crd(obj)
        if not errors:
            _crd_defaults(obj)
            finalizers = metadata.setdefault("finalizers", [])
            if CRD_CLEANUP_FINALIZER not in finalizers:
                finalizers.append(CRD_CLEANUP_FINALIZER)
            obj["status"] = crd_status(obj, now)
    return errors


def prepare_for_update(rt: ResourceType, old: JsonObject, new: JsonObject, now: str) -> list[FieldError]:
    """Mutate an updated object (main endpoint) like the real strategy; return errors."""
    if rt.is_custom:
        return []
    errors: list[FieldError] = []
    if rt.plural == "secrets":
        _fold_string_data(new)
        new.setdefault("type", old.get("type", "Opaque"))
        if new["type"] != old.get("type", "Opaque"):
            errors.append(FieldError("FieldValueInvalid", "type", "field is immutable", new["type"]))
        errors += _immutable_data_errors(old, new)
    elif rt.plural == "configmaps":
        errors += _immutable_data_errors(old, new)
    elif rt.plural == "namespaces":
        # spec.finalizers change only through the /finalize subresource.
        new["spec"] = copy.deepcopy(old.get("spec") or {})
        new["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = new["metadata"]["name"]
    elif rt.plural == "services":
        spec = new.setdefault("spec", {})
        old_ip = (old.get("spec") or {}).get("clusterIP")
        if not spec.get("clusterIP"):
            spec["clusterIP"] = old_ip
        elif spec["clusterIP"] != old_ip:
            errors.append(
                FieldError("FieldValueInvalid", "spec.clusterIP", "field is immutable", spec["clusterIP"])
            )
    elif rt.plural == "customresourcedefinitions":
        errors += validate_crd(new)
        if not errors:
            _crd_defaults(new)
            if new["spec"].get("scope") != old["spec"].get("scope"):
                errors.append(
                    FieldError("FieldValueInvalid", "spec.scope", "field is immutable", new["spec"]["scope"])
                )
            if (new["spec"]["group"], new["spec"]["names"]["plural"]) != (
                old["spec"]["group"],
                old["spec"]["names"]["plural"],
            ):
                errors.append(
                    FieldError(
                        "FieldValueInvalid",
                        "spec.names.plural",
                        "field is immutable",
                        new["spec"]["names"]["plural"],
                    )
                )
            new["status"] = crd_status(new, now, old)
    return errors
