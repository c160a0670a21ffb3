"""The API server's REST semantics on top of the store: what each verb does to an object.

Each request runs under the store's lock, so read-check-write is atomic and two writers with
the same resourceVersion cannot both win (the loser gets 409 Conflict). The rules are the real
server's: creates get uid/creationTimestamp/generation and 409 AlreadyExists; updates and
patches need a current resourceVersion, change `metadata.generation` only when the spec half
changes, and ignore the half owned by the other endpoint (main vs /status); a write that changes
nothing is not stored and emits no event. Deletion honours finalizers (deletionTimestamp first,
gone when the last finalizer is removed), propagation policies and ownerReference garbage
collection, Namespace termination, and CRD cleanup (its instances go first, then its resource
stops being served). Server-side apply is accepted as a merge of the applied configuration,
without field ownership (no managedFields, no removal of fields a manager stopped applying).
"""

from __future__ import annotations

import base64
import binascii
import copy
import json
import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import yaml

from emulators.kubernetes import status as statuses
from emulators.kubernetes.celrules import transition_errors
from emulators.kubernetes.patching import PatchError, json_merge_patch, json_patch, strategic_merge_patch
from emulators.kubernetes.resources import (
    CRD_RESOURCE,
    NAMESPACE_RESOURCE,
    ResourceRegistry,
    ResourceType,
    StorageKey,
)
from emulators.kubernetes.selectors import FieldSelector, LabelSelector
from emulators.kubernetes.status import ApiError
from emulators.kubernetes.store import HistoryExpired, ObjectStore
from emulators.kubernetes.strategies import (
    CRD_CLEANUP_FINALIZER,
    NAMESPACE_FINALIZER,
    prepare_for_create,
    prepare_for_update,
)
from emulators.kubernetes.validation import FieldError, process_custom_resource, validate_object_meta

JsonObject = dict[str, Any]

FOREGROUND_FINALIZER = "foregroundDeletion"
ORPHAN_FINALIZER = "orphan"
INITIAL_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
_GENERATE_NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
# Kinds whose PUT may omit metadata.resourceVersion (apimachinery's AllowUnconditionalUpdate).
_CONDITIONAL_UPDATE_ONLY = {("apiextensions.k8s.io", "customresourcedefinitions")}

MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"
CUSTOM_RESOURCE_PATCH_TYPES = [JSON_PATCH, MERGE_PATCH, APPLY_PATCH]
BUILTIN_PATCH_TYPES = [JSON_PATCH, MERGE_PATCH, STRATEGIC_MERGE_PATCH, APPLY_PATCH]


def now_timestamp() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class WriteOptions:
    dry_run: bool = False
    field_validation: str = "Warn"  # Strict, Warn or Ignore (the server's default is Warn)
    field_manager: str = ""
    force: bool = False


@dataclass(frozen=True)
class DeleteOptions:
    propagation_policy: str | None = None
    orphan_dependents: bool | None = None
    precondition_uid: str | None = None
    precondition_resource_version: str | None = None
    dry_run: bool = False


@dataclass
class WriteResult:
    obj: JsonObject
    created: bool = False
    warnings: list[str] = field(default_factory=list)


@dataclass
class ListResult:
    items: list[JsonObject]
    resource_version: str
    continue_token: str = ""
    remaining: int | None = None


def present(rt: ResourceType, obj: JsonObject) -> JsonObject:
    """The stored object as served at `rt`'s version (apiVersion/kind first, like the real server)."""
    rest = {key: value for key, value in obj.items() if key not in ("apiVersion", "kind")}
    return {"apiVersion": rt.api_version, "kind": rt.kind, **rest}


def _meta(obj: JsonObject) -> JsonObject:
    return obj["metadata"]


def _spec_half(obj: JsonObject, rt: ResourceType) -> JsonObject:
    """The part of an object whose change bumps metadata.generation."""
    excluded = {"metadata", "apiVersion", "kind"} | ({"status"} if rt.status_subresource else set())
    return {key: value for key, value in obj.items() if key not in excluded}


def _comparable(obj: JsonObject) -> JsonObject:
    metadata = {
        key: value
        for key, value in obj["metadata"].items()
        if key not in ("resourceVersion", "managedFields")
    }
    return {
        **{key: value for key, value in obj.items() if key not in ("apiVersion", "kind")},
        "metadata": metadata,
    }


def _json_type(value: Any) -> str:
    if isinstance(value, dict):
        return "object"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    return "null" if value is None else "array"


def _invalid(rt: ResourceType, name: str, errors: list[FieldError]) -> ApiError:
    return statuses.invalid(
        rt.kind, rt.group, name, [error.cause() for error in errors], [e.render() for e in errors]
    )


def encode_continue(revision: int, namespace: str, name: str) -> str:
    token = json.dumps({"v": "meta.k8s.io/v1", "rv": revision, "start": f"{namespace}/{name}\x00"})
    return base64.urlsafe_b64encode(token.encode()).decode().rstrip("=")


def decode_continue(token: str) -> tuple[int, tuple[str, str]]:
    try:
        padded = token + "=" * (-len(token) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode()))
        namespace, _, name = data["start"].rstrip("\x00").partition("/")
        return int(data["rv"]), (namespace, name)
    except (ValueError, KeyError, TypeError, binascii.Error) as error:
        raise statuses.bad_request(f"continue key is not valid: {error}") from error


class ApiServer:
    """Verbs on objects: get, list, create, update, patch, delete, deletecollection."""

    def __init__(self, store: ObjectStore, registry: ResourceRegistry):
        self.store = store
        self.registry = registry
        self._random = random.Random()
        self.bootstrap()

    # --- lifecycle of the emulated cluster ------------------------------------------------

    def bootstrap(self) -> None:
        with self.store.lock:
            for name in INITIAL_NAMESPACES:
                if self.store.get(NAMESPACE_RESOURCE.storage_key, "", name) is None:
                    self.create(NAMESPACE_RESOURCE, None, {"metadata": {"name": name}}, WriteOptions())

    def reset(self) -> None:
        with self.store.lock:
            self.store.reset()
            self.registry.reset()
            self.bootstrap()

    # --- reading ----------------------------------------------------------------------------

    def _current(self, rt: ResourceType, namespace: str | None, name: str) -> JsonObject:
        obj = self.store.get(rt.storage_key, namespace or "", name)
        if obj is None:
            raise statuses.not_found(rt.plural, rt.group, name)
        return obj

    def get(self, rt: ResourceType, namespace: str | None, name: str) -> JsonObject:
        with self.store.lock:
            return present(rt, self._current(rt, namespace, name))

    def list(
        self,
        rt: ResourceType,
        namespace: str | None,
        *,
        labels: LabelSelector,
        fields: FieldSelector,
        limit: int = 0,
        continue_token: str = "",
        resource_version: str = "",
        resource_version_match: str = "",
    ) -> ListResult:
        with self.store.lock:
            start_after: tuple[str, str] | None = None
            try:
                if continue_token:
                    revision, start_after = decode_continue(continue_token)
                    objects = self.store.snapshot(rt.storage_key, namespace, revision)
                elif resource_version_match == "Exact" and resource_version not in ("", "0"):
                    revision = int(resource_version)
                    objects = self.store.snapshot(rt.storage_key, namespace, revision)
                else:
                    revision = self.store.revision
                    objects = self.store.list(rt.storage_key, namespace)
            except HistoryExpired as error:
                if continue_token:
                    raise statuses.expired(
                        "The provided continue parameter is too old to display a consistent list result. You "
                        "can start a new list without the continue parameter, or use the continue token in this "
                        "response to retrieve the remainder of the results. Continuing with the provided token "
                        "results in an inconsistent list - objects that were created, modified, or deleted "
                        "between the time the first chunk was returned and now may show up in the list."
                    ) from error
                raise statuses.expired(str(error)) from error
            except ValueError as error:
                raise statuses.bad_request(f"invalid resourceVersion: {resource_version!r}") from error
        if start_after is not None:
            objects = [
                obj for obj in objects if (_meta(obj).get("namespace", ""), _meta(obj)["name"]) > start_after
            ]
        selected = [
            obj for obj in objects if labels.matches(_meta(obj).get("labels")) and fields.matches(obj)
        ]
        result = ListResult([present(rt, obj) for obj in selected], str(revision))
        if limit and len(selected) > limit:
            last = selected[limit - 1]
            result.items = result.items[:limit]
            result.continue_token = encode_continue(
                revision, _meta(last).get("namespace", ""), _meta(last)["name"]
            )
            if labels.empty and fields.empty:
                result.remaining = len(selected) - limit
        return result

    # --- create -------------------------------------------------------------------------------

    def _decode(self, rt: ResourceType, body: Any) -> JsonObject:
        if not isinstance(body, dict):
            raise statuses.bad_request(f"the body of the request was not a {rt.kind} object")
        obj = copy.deepcopy(body)
        api_version, kind = obj.get("apiVersion"), obj.get("kind")
        if rt.is_custom and not kind:
            raise statuses.bad_request(f"Object 'Kind' is missing in '{json.dumps(body)[:200]}'")
        if kind and kind != rt.kind:
            raise statuses.bad_request(
                f"the kind of the object ({kind}) does not match the kind of the request ({rt.kind})"
            )
        if api_version and api_version not in {
            version.api_version for version in self.registry.versions_of(rt.storage_key)
        }:
            raise statuses.bad_request(
                f"the API version in the data ({api_version}) does not match the expected API version ({rt.api_version})"
            )
        obj["apiVersion"], obj["kind"] = rt.api_version, rt.kind
        metadata = obj.setdefault("metadata", {})
        if not isinstance(metadata, dict):
            raise statuses.bad_request(
                f'{rt.kind} in version "{rt.version}" cannot be handled as a {rt.kind}: metadata must be an object'
            )
        return obj

    def _place(self, rt: ResourceType, obj: JsonObject, namespace: str | None) -> None:
        metadata = _meta(obj)
        if rt.namespaced:
            if metadata.get("namespace") and metadata["namespace"] != namespace:
                raise statuses.bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request"
                )
            metadata["namespace"] = namespace
        else:
            metadata.pop("namespace", None)

    def _require_namespace(self, rt: ResourceType, namespace: str | None, name: str) -> None:
        if not rt.namespaced:
            return
        ns = self.store.get(NAMESPACE_RESOURCE.storage_key, "", namespace or "")
        if ns is None:
            raise statuses.not_found("namespaces", "", namespace or "")
        if _meta(ns).get("deletionTimestamp"):
            raise statuses.forbidden(
                rt.plural,
                rt.group,
                name,
                f"unable to create new content in namespace {namespace} because it is being terminated",
                cause=statuses.FieldCause(
                    "NamespaceTerminating",
                    f"namespace {namespace} is being terminated",
                    "metadata.namespace",
                ),
            )

    def _require_served(self, rt: ResourceType, verb: str) -> None:
        if rt.crd_name:
            crd = self.store.get(CRD_RESOURCE.storage_key, "", rt.crd_name)
            if crd is not None and _meta(crd).get("deletionTimestamp"):
                raise ApiError(
                    405,
                    "MethodNotAllowed",
                    f"{verb} not allowed while custom resource definition is terminating",
                )

    def _schema_check(
        self, rt: ResourceType, obj: JsonObject, options: WriteOptions, old: JsonObject | None = None
    ) -> tuple[JsonObject, list[str]]:
        """Prune/default/validate a custom resource (with the CRD's CEL rules against `old` on an
        update); returns the object to store and warnings."""
        name = _meta(obj).get("name") or _meta(obj).get("generateName", "")
        outcome = process_custom_resource(obj, rt.schema if rt.is_custom else None)
        warnings: list[str] = []
        if outcome.unknown_fields and rt.is_custom:
            unknown = ", ".join(f'unknown field "{path}"' for path in outcome.unknown_fields)
            if options.field_validation == "Strict":
                raise statuses.bad_request(
                    f'{rt.kind} in version "{rt.version}" cannot be handled as a {rt.kind}: strict decoding error: {unknown}'
                )
            if options.field_validation != "Ignore":
                warnings = [f'unknown field "{path}"' for path in outcome.unknown_fields]
        errors = outcome.errors + validate_object_meta(
            _meta(outcome.obj), dns_label_name=rt.plural == "namespaces"
        )
        errors += self._owner_reference_errors(_meta(outcome.obj))
        if rt.is_custom and rt.schema is not None:
            errors += transition_errors(outcome.obj, old, rt.schema)
        if errors:
            raise _invalid(rt, name, errors)
        return outcome.obj, warnings

    @staticmethod
    def _owner_reference_errors(metadata: JsonObject) -> list[FieldError]:
        errors = []
        for index, reference in enumerate(metadata.get("ownerReferences") or []):
            for required in ("apiVersion", "kind", "name", "uid"):
                if not reference.get(required):
                    errors.append(
                        FieldError("FieldValueRequired", f"metadata.ownerReferences[{index}].{required}")
                    )
        return errors

    def _generate_name(self, rt: ResourceType, namespace: str, prefix: str) -> str:
        for _ in range(50):
            suffix = "".join(self._random.choice(_GENERATE_NAME_ALPHABET) for _ in range(5))
            candidate = f"{prefix[:58]}{suffix}"
            if self.store.get(rt.storage_key, namespace, candidate) is None:
                return candidate
        raise ApiError(
            409,
            "AlreadyExists",
            f'{rt.plural} "{prefix}" already exists, the server was not able to generate a unique name for the object',
        )

    def create(
        self, rt: ResourceType, namespace: str | None, body: Any, options: WriteOptions
    ) -> WriteResult:
        obj = self._decode(rt, body)
        self._place(rt, obj, namespace)
        metadata = _meta(obj)
        with self.store.lock:
            self._require_served(rt, "create")
            if not metadata.get("name"):
                if not metadata.get("generateName"):
                    raise _invalid(
                        rt,
                        "",
                        [
                            FieldError(
                                "FieldValueRequired", "metadata.name", "name or generateName is required"
                            )
                        ],
                    )
                metadata["name"] = self._generate_name(rt, namespace or "", metadata["generateName"])
            name = metadata["name"]
            if metadata.get("resourceVersion"):
                raise ApiError(
                    500,
                    "InternalError",
                    "Internal error occurred: resourceVersion should not be set on objects to be created",
                )
            self._require_namespace(rt, namespace, name)
            now = now_timestamp()
            errors = prepare_for_create(rt, obj, now)
            if errors:
                raise _invalid(rt, name, errors)
            obj, warnings = self._schema_check(rt, obj, options)
            if self.store.get(rt.storage_key, namespace or "", name) is not None:
                raise statuses.already_exists(rt.plural, rt.group, name)
            metadata = _meta(obj)
            metadata["uid"] = str(uuid.uuid4())
            metadata["creationTimestamp"] = now
            for transient in ("deletionTimestamp", "deletionGracePeriodSeconds", "selfLink"):
                metadata.pop(transient, None)
            if rt.has_generation:
                metadata["generation"] = 1
            else:
                metadata.pop("generation", None)
            if options.dry_run:
                return WriteResult(present(rt, obj), created=True, warnings=warnings)
            stored = self.store.put(rt.storage_key, obj)
            if rt.storage_key == CRD_RESOURCE.storage_key:
                self.registry.install_crd(stored)
            self._collect_if_orphaned(rt.storage_key, stored)
            return WriteResult(present(rt, stored), created=True, warnings=warnings)

    # --- update & patch -------------------------------------------------------------------

    def update(
        self,
        rt: ResourceType,
        namespace: str | None,
        name: str,
        body: Any,
        options: WriteOptions,
        *,
        subresource: str | None = None,
    ) -> WriteResult:
        obj = self._decode(rt, body)
        body_name = _meta(obj).get("name")
        if body_name and body_name != name:
            raise statuses.bad_request(
                f"the name of the object ({body_name}) does not match the name on the URL ({name})"
            )
        _meta(obj)["name"] = name
        self._place(rt, obj, namespace)
        with self.store.lock:
            current = self._current(rt, namespace, name)
            requested = _meta(obj).get("resourceVersion")
            if not requested and (rt.is_custom or rt.storage_key in _CONDITIONAL_UPDATE_ONLY):
                raise _invalid(
                    rt,
                    name,
                    [
                        FieldError(
                            "FieldValueInvalid",
                            "metadata.resourceVersion",
                            "must be specified for an update",
                            0,
                        )
                    ],
                )
            return self._write_update(rt, current, obj, options, subresource)

    def patch(
        self,
        rt: ResourceType,
        namespace: str | None,
        name: str,
        patch_body: bytes,
        content_type: str,
        options: WriteOptions,
        *,
        subresource: str | None = None,
    ) -> WriteResult:
        media_type = content_type.split(";")[0].strip().lower()
        accepted = CUSTOM_RESOURCE_PATCH_TYPES if rt.is_custom else BUILTIN_PATCH_TYPES
        if media_type not in accepted:
            raise statuses.unsupported_media_type(media_type, accepted)
        try:
            patch = (
                yaml.safe_load(patch_body) if media_type == APPLY_PATCH else json.loads(patch_body or b"null")
            )
        except (ValueError, yaml.YAMLError) as error:
            raise statuses.bad_request(f"error decoding patch: {error}") from error
        if media_type == APPLY_PATCH and not options.field_manager:
            raise statuses.bad_request(
                "PATCH, application/apply-patch+yaml requires fieldManager to be set in the query"
            )
        with self.store.lock:
            current = self.store.get(rt.storage_key, namespace or "", name)
            if current is None:
                if media_type == APPLY_PATCH and subresource is None:
                    if isinstance(patch, dict):
                        patch.setdefault("metadata", {})["name"] = name
                    return self.create(rt, namespace, patch, options)
                raise statuses.not_found(rt.plural, rt.group, name)
            base = present(rt, current)
            try:
                if media_type == MERGE_PATCH:
                    if not isinstance(patch, dict):
                        raise statuses.bad_request("merge patch must be a JSON object")
                    patched = json_merge_patch(base, patch)
                elif media_type == JSON_PATCH:
                    if not isinstance(patch, list):
                        # What Go's decoder says when a client sends a merge patch as a JSON patch.
                        raise statuses.bad_request(
                            f"json: cannot unmarshal {_json_type(patch)} into Go value of type jsonpatch.Patch"
                        )
                    patched = json_patch(base, patch)
                elif media_type == STRATEGIC_MERGE_PATCH:
                    patched = strategic_merge_patch(base, patch, rt.kind)
                else:
                    patched = self._apply(rt, base, patch)
            except PatchError as error:
                raise ApiError(422, "Invalid", str(error)) from error
            if not isinstance(patched, dict) or not isinstance(patched.get("metadata"), dict):
                raise statuses.bad_request("the patched object is not a valid object")
            if _meta(patched).get("name") != name:
                raise statuses.bad_request(
                    f"the name of the object ({_meta(patched).get('name')}) does not match the name on the URL ({name})"
                )
            patched = self._decode(rt, patched)
            self._place(rt, patched, namespace)
            return self._write_update(rt, current, patched, options, subresource)

    def _apply(self, rt: ResourceType, base: JsonObject, config: Any) -> JsonObject:
        """Server-side apply without field ownership: the applied config merged into the object."""
        if not isinstance(config, dict):
            raise statuses.bad_request("apply patch must be an object")
        config = {key: value for key, value in config.items() if key not in ("apiVersion", "kind")}
        if rt.is_custom:
            return json_merge_patch(base, config)
        return strategic_merge_patch(base, config, rt.kind)

    def _write_update(
        self,
        rt: ResourceType,
        current: JsonObject,
        new: JsonObject,
        options: WriteOptions,
        subresource: str | None,
    ) -> WriteResult:
        name = _meta(current)["name"]
        requested = _meta(new).get("resourceVersion")
        if requested and requested != _meta(current)["resourceVersion"]:
            raise statuses.conflict(rt.plural, rt.group, name, statuses.STALE_RESOURCE_VERSION)
        requested_uid = _meta(new).get("uid")
        if requested_uid and requested_uid != _meta(current)["uid"]:
            raise statuses.conflict(
                rt.plural,
                rt.group,
                name,
                f"Precondition failed: UID in precondition: {requested_uid}, UID in object meta: {_meta(current)['uid']}",
            )
        if subresource == "status":
            candidate = copy.deepcopy(current)
            if "status" in new:
                candidate["status"] = new["status"]
            else:
                candidate.pop("status", None)
        else:
            candidate = new
            if rt.status_subresource:
                if "status" in current:
                    candidate["status"] = copy.deepcopy(current["status"])
                else:
                    candidate.pop("status", None)
            metadata = _meta(candidate)
            for system_field in (
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "generation",
            ):
                if system_field in _meta(current):
                    metadata[system_field] = _meta(current)[system_field]
                else:
                    metadata.pop(system_field, None)
            metadata.pop("selfLink", None)
            errors = prepare_for_update(rt, current, candidate, now_timestamp())
            if errors:
                raise _invalid(rt, name, errors)
        candidate, warnings = self._schema_check(rt, candidate, options, old=current)
        metadata = _meta(candidate)
        if _meta(current).get("deletionTimestamp"):
            added = [
                f
                for f in metadata.get("finalizers") or []
                if f not in (_meta(current).get("finalizers") or [])
            ]
            if added:
                quoted = ", ".join(json.dumps(f) for f in added)
                raise _invalid(
                    rt,
                    name,
                    [
                        FieldError(
                            "FieldValueForbidden",
                            "metadata.finalizers",
                            f"no new finalizers can be added if the object is being deleted, found new finalizers []string{{{quoted}}}",
                        )
                    ],
                )
        if rt.has_generation and _spec_half(candidate, rt) != _spec_half(current, rt):
            metadata["generation"] = int(_meta(current).get("generation") or 1) + 1
        metadata["resourceVersion"] = _meta(current)["resourceVersion"]
        if not metadata.get("finalizers"):
            metadata.pop("finalizers", None)
        if _comparable(candidate) == _comparable(current):
            return WriteResult(present(rt, current), warnings=warnings)
        if options.dry_run:
            return WriteResult(present(rt, candidate), warnings=warnings)
        stored = self.store.put(rt.storage_key, candidate)
        if rt.storage_key == CRD_RESOURCE.storage_key:
            self.registry.install_crd(stored)
        if metadata.get("deletionTimestamp"):
            final = self._try_finalize(rt.storage_key, stored)
            if final is not None:
                return WriteResult(present(rt, final), warnings=warnings)
        elif _meta(current).get("ownerReferences") != metadata.get("ownerReferences"):
            self._collect_if_orphaned(rt.storage_key, stored)
        return WriteResult(present(rt, stored), warnings=warnings)

    # --- delete ---------------------------------------------------------------------------

    def delete(
        self, rt: ResourceType, namespace: str | None, name: str, options: DeleteOptions
    ) -> JsonObject:
        """Delete one object; the response body is the pending object, the final one or a Status."""
        with self.store.lock:
            current = self._current(rt, namespace, name)
            metadata = _meta(current)
            if options.precondition_uid and options.precondition_uid != metadata["uid"]:
                raise statuses.conflict(
                    rt.plural,
                    rt.group,
                    name,
                    f"Precondition failed: UID in precondition: {options.precondition_uid}, UID in object meta: {metadata['uid']}",
                )
            if (
                options.precondition_resource_version
                and options.precondition_resource_version != metadata["resourceVersion"]
            ):
                raise statuses.conflict(
                    rt.plural,
                    rt.group,
                    name,
                    "Precondition failed: ResourceVersion in precondition: "
                    f"{options.precondition_resource_version}, ResourceVersion in object meta: {metadata['resourceVersion']}",
                )
            if options.dry_run:
                return present(rt, current)
            policy = options.propagation_policy or ("Orphan" if options.orphan_dependents else "Background")
            if policy not in ("Background", "Foreground", "Orphan"):
                raise _invalid(
                    rt,
                    name,
                    [
                        FieldError(
                            "FieldValueNotSupported",
                            "propagationPolicy",
                            'supported values: "Foreground", "Background", "Orphan", "nil"',
                            policy,
                        )
                    ],
                )
            remaining = self._delete_object(rt.storage_key, current, policy)
            if remaining is not None:
                return present(rt, remaining)
            if rt.is_custom or rt.plural == "pods":
                # These kinds answer with the deleted object, the rest with a Success Status.
                return present(rt, current)
            return statuses.success_status(name, rt.group, rt.plural, metadata["uid"])

    def delete_collection(
        self,
        rt: ResourceType,
        namespace: str | None,
        *,
        labels: LabelSelector,
        fields: FieldSelector,
        options: DeleteOptions,
    ) -> ListResult:
        with self.store.lock:
            listed = self.list(rt, namespace, labels=labels, fields=fields)
            for item in listed.items:
                current = self.store.get(
                    rt.storage_key, _meta(item).get("namespace", ""), _meta(item)["name"]
                )
                if current is not None and not options.dry_run:
                    self._delete_object(rt.storage_key, current, options.propagation_policy or "Background")
            return listed

    def _resource_for_key(self, key: StorageKey) -> ResourceType | None:
        types = self.registry.versions_of(key)
        return types[0] if types else None

    def _delete_object(self, key: StorageKey, obj: JsonObject, policy: str) -> JsonObject | None:
        """Start deleting `obj`; returns its pending state, or None once it is gone."""
        metadata = _meta(obj)
        finalizers = list(metadata.get("finalizers") or [])
        if policy == "Orphan":
            self._orphan_dependents(metadata["uid"])
        if (
            policy == "Foreground"
            and self.store.dependents_of(metadata["uid"])
            and FOREGROUND_FINALIZER not in finalizers
        ):
            finalizers.append(FOREGROUND_FINALIZER)
        is_namespace = key == NAMESPACE_RESOURCE.storage_key
        if not finalizers and not is_namespace:
            final = self.store.remove(key, metadata.get("namespace", ""), metadata["name"])
            self._after_removal(key, final)
            return None
        if not metadata.get("deletionTimestamp") or finalizers != list(metadata.get("finalizers") or []):
            pending = copy.deepcopy(obj)
            pending_meta = _meta(pending)
            pending_meta.setdefault("deletionTimestamp", now_timestamp())
            pending_meta.setdefault("deletionGracePeriodSeconds", 0)
            if finalizers:
                pending_meta["finalizers"] = finalizers
            if is_namespace:
                pending.setdefault("status", {})["phase"] = "Terminating"
            if key == CRD_RESOURCE.storage_key:
                conditions = pending.setdefault("status", {}).setdefault("conditions", [])
                conditions.append(
                    {
                        "type": "Terminating",
                        "status": "True",
                        "lastTransitionTime": now_timestamp(),
                        "reason": "InstanceDeletionInProgress",
                        "message": "CustomResource deletion is in progress",
                    }
                )
            obj = self.store.put(key, pending)
        uid = _meta(obj)["uid"]
        if FOREGROUND_FINALIZER in finalizers:
            for dependent_key, dependent in self.store.dependents_of(uid):
                if not _meta(dependent).get("deletionTimestamp"):
                    self._delete_object(dependent_key, dependent, "Foreground")
        if is_namespace:
            for content_key, content in self.store.in_namespace(metadata["name"]):
                self._delete_if_still_there(content_key, content)
        if key == CRD_RESOURCE.storage_key:
            instance_key = (obj["spec"]["group"], obj["spec"]["names"]["plural"])
            for instance in self.store.list(instance_key):
                self._delete_if_still_there(instance_key, instance)
        current = self.store.by_uid(uid)
        if current is None or self._try_finalize(key, current[1]) is not None:
            return None
        still_there = self.store.by_uid(uid)
        return still_there[1] if still_there else None

    def _delete_if_still_there(self, key: StorageKey, listed: JsonObject) -> None:
        """Part of a sweep: garbage collection earlier in the same sweep may already have taken it."""
        current = self.store.by_uid(_meta(listed)["uid"])
        if current is not None and not _meta(current[1]).get("deletionTimestamp"):
            self._delete_object(key, current[1], "Background")

    def _try_finalize(self, key: StorageKey, obj: JsonObject) -> JsonObject | None:
        """Drop the system finalizers whose work is done; remove the object once none remain.

        Returns the final state if the object is now gone, else None.
        """
        metadata = _meta(obj)
        if not metadata.get("deletionTimestamp"):
            return None
        finalizers = list(metadata.get("finalizers") or [])
        if FOREGROUND_FINALIZER in finalizers and not self.store.dependents_of(metadata["uid"]):
            finalizers.remove(FOREGROUND_FINALIZER)
        if ORPHAN_FINALIZER in finalizers:
            self._orphan_dependents(metadata["uid"])
            finalizers.remove(ORPHAN_FINALIZER)
        if (
            CRD_CLEANUP_FINALIZER in finalizers
            and key == CRD_RESOURCE.storage_key
            and not self.store.count((obj["spec"]["group"], obj["spec"]["names"]["plural"]))
        ):
            finalizers.remove(CRD_CLEANUP_FINALIZER)
        namespace_pending = False
        if key == NAMESPACE_RESOURCE.storage_key:
            namespace_pending = bool(self.store.in_namespace(metadata["name"]))
        if finalizers != list(metadata.get("finalizers") or []):
            updated = copy.deepcopy(obj)
            if finalizers:
                _meta(updated)["finalizers"] = finalizers
            else:
                _meta(updated).pop("finalizers", None)
            obj = self.store.put(key, updated)
        if finalizers or namespace_pending:
            return None
        if key == NAMESPACE_RESOURCE.storage_key and obj.get("spec", {}).get("finalizers"):
            finalized = copy.deepcopy(obj)
            finalized["spec"]["finalizers"] = [
                f for f in finalized["spec"]["finalizers"] if f != NAMESPACE_FINALIZER
            ]
            obj = self.store.put(key, finalized)
        final = self.store.remove(key, metadata.get("namespace", ""), metadata["name"])
        self._after_removal(key, final)
        return final

    def _after_removal(self, key: StorageKey, final: JsonObject) -> None:
        metadata = _meta(final)
        if key == CRD_RESOURCE.storage_key:
            self.registry.remove_crd(metadata["name"])
        for dependent_key, dependent in self.store.dependents_of(metadata["uid"]):
            self._collect_if_orphaned(dependent_key, dependent)
        for reference in metadata.get("ownerReferences") or []:
            owner = self.store.by_uid(reference.get("uid", ""))
            if owner is not None and FOREGROUND_FINALIZER in (_meta(owner[1]).get("finalizers") or []):
                self._try_finalize(owner[0], owner[1])
        namespace = metadata.get("namespace")
        if namespace:
            ns = self.store.get(NAMESPACE_RESOURCE.storage_key, "", namespace)
            if ns is not None and _meta(ns).get("deletionTimestamp"):
                self._try_finalize(NAMESPACE_RESOURCE.storage_key, ns)
        rt = self._resource_for_key(key)
        if rt is not None and rt.crd_name:
            crd = self.store.get(CRD_RESOURCE.storage_key, "", rt.crd_name)
            if crd is not None and _meta(crd).get("deletionTimestamp"):
                self._try_finalize(CRD_RESOURCE.storage_key, crd)

    def _collect_if_orphaned(self, key: StorageKey, obj: JsonObject) -> None:
        """The garbage collector's decision for one dependent after an owner changed or vanished.

        Owners are matched by uid, as the real GC does; a dependent with at least one live owner
        only loses its dangling references, one with none left is deleted in the background.
        """
        references = _meta(obj).get("ownerReferences") or []
        if not references or _meta(obj).get("deletionTimestamp"):
            return
        live = [
            reference for reference in references if self.store.by_uid(reference.get("uid", "")) is not None
        ]
        if len(live) == len(references):
            return
        if live:
            trimmed = copy.deepcopy(obj)
            _meta(trimmed)["ownerReferences"] = live
            self.store.put(key, trimmed)
            return
        self._delete_object(key, obj, "Background")

    def _orphan_dependents(self, uid: str) -> None:
        for dependent_key, dependent in self.store.dependents_of(uid):
            orphaned = copy.deepcopy(dependent)
            references = [
                ref for ref in _meta(orphaned).get("ownerReferences") or [] if ref.get("uid") != uid
            ]
            if references:
                _meta(orphaned)["ownerReferences"] = references
            else:
                _meta(orphaned).pop("ownerReferences", None)
            self.store.put(dependent_key, orphaned)
