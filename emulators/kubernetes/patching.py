"""The three PATCH dialects of the API server: JSON merge, strategic merge and JSON patch.

JSON merge patch follows RFC 7386 (null deletes, lists replace). JSON patch follows RFC 6902
with JSON pointers. Strategic merge patch is what kubectl sends for built-in kinds: lists with
a patch merge key (containers by `name`, conditions by `type`, ownerReferences by `uid`, ...)
merge element-wise, primitive lists with the merge strategy (finalizers) become unions, and the
directives kubectl's three-way patches use are honoured: `$patch: replace|delete|merge`,
`$retainKeys`, `$setElementOrder/<field>` and `$deleteFromPrimitiveList/<field>`. Inputs are
never mutated; every function returns a new document.
"""

from __future__ import annotations

import copy
from typing import Any

JsonObject = dict[str, Any]


class PatchError(ValueError):
    """The patch cannot be applied to the object (a 422 for JSON patch, 400 for bad syntax)."""


# --- JSON merge patch (RFC 7386) -----------------------------------------------------------


def json_merge_patch(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = json_merge_patch(result.get(key), value)
    return result


# --- JSON patch (RFC 6902) -----------------------------------------------------------------


def _pointer_tokens(pointer: str) -> list[str]:
    if pointer == "":
        return []
    if not pointer.startswith("/"):
        raise PatchError(f"JSON pointer must start with '/': {pointer!r}")
    return [token.replace("~1", "/").replace("~0", "~") for token in pointer[1:].split("/")]


def _list_index(container: list[Any], token: str, *, for_insert: bool) -> int:
    if token == "-" and for_insert:
        return len(container)
    if not token.isdigit() or (token != "0" and token.startswith("0")):
        raise PatchError(f"invalid array index {token!r}")
    index = int(token)
    limit = len(container) if for_insert else len(container) - 1
    if index > limit:
        raise PatchError(f"array index {index} out of bounds")
    return index


def _resolve_parent(doc: Any, tokens: list[str], pointer: str) -> tuple[Any, str]:
    current = doc
    for token in tokens[:-1]:
        if isinstance(current, dict):
            if token not in current:
                raise PatchError(f"doc is missing path: {pointer!r}")
            current = current[token]
        elif isinstance(current, list):
            current = current[_list_index(current, token, for_insert=False)]
        else:
            raise PatchError(f"doc is missing path: {pointer!r}")
    return current, tokens[-1]


def _get(doc: Any, pointer: str) -> Any:
    current = doc
    for token in _pointer_tokens(pointer):
        if isinstance(current, dict) and token in current:
            current = current[token]
        elif isinstance(current, list):
            current = current[_list_index(current, token, for_insert=False)]
        else:
            raise PatchError(f"doc is missing path: {pointer!r}")
    return current


def _add(doc: Any, pointer: str, value: Any) -> Any:
    tokens = _pointer_tokens(pointer)
    if not tokens:
        return value
    parent, last = _resolve_parent(doc, tokens, pointer)
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        parent.insert(_list_index(parent, last, for_insert=True), value)
    else:
        raise PatchError(f"doc is missing path: {pointer!r}")
    return doc


def _remove(doc: Any, pointer: str) -> tuple[Any, Any]:
    tokens = _pointer_tokens(pointer)
    if not tokens:
        raise PatchError("cannot remove the whole document")
    parent, last = _resolve_parent(doc, tokens, pointer)
    if isinstance(parent, dict):
        if last not in parent:
            raise PatchError(f"unable to remove nonexistent key: {last}: missing value")
        return doc, parent.pop(last)
    if isinstance(parent, list):
        return doc, parent.pop(_list_index(parent, last, for_insert=False))
    raise PatchError(f"doc is missing path: {pointer!r}")


def json_patch(document: Any, operations: Any) -> Any:
    if not isinstance(operations, list):
        raise PatchError("json patch must be a list of operations")
    doc = copy.deepcopy(document)
    for operation in operations:
        if not isinstance(operation, dict) or "op" not in operation or "path" not in operation:
            raise PatchError(f"invalid json patch operation: {operation!r}")
        op, path = operation["op"], operation["path"]
        if op == "add":
            doc = _add(doc, path, copy.deepcopy(operation.get("value")))
        elif op == "remove":
            doc, _ = _remove(doc, path)
        elif op == "replace":
            _get(doc, path)
            doc, _ = _remove(doc, path) if path else (doc, None)
            doc = _add(doc, path, copy.deepcopy(operation.get("value")))
        elif op == "move":
            doc, value = _remove(doc, operation["from"])
            doc = _add(doc, path, value)
        elif op == "copy":
            doc = _add(doc, path, copy.deepcopy(_get(doc, operation["from"])))
        elif op == "test":
            if _get(doc, path) != operation.get("value"):
                raise PatchError(f"testing value {path} failed: test failed")
        else:
            raise PatchError(f"Unexpected kind: {op}")
    return doc


# --- strategic merge patch -----------------------------------------------------------------

# Patch metadata per kind: field path (list indices dropped) -> merge key, or "" for a
# primitive list with the merge strategy. Lists not named here are replaced wholesale.
_METADATA_META: dict[tuple[str, ...], str] = {
    ("metadata", "finalizers"): "",
    ("metadata", "ownerReferences"): "uid",
}

_CONTAINER_META: dict[tuple[str, ...], str] = {
    ("env",): "name",
    ("ports",): "containerPort",
    ("volumeMounts",): "mountPath",
    ("volumeDevices",): "devicePath",
    ("resizePolicy",): "resourceName",
}

_POD_SPEC_META: dict[tuple[str, ...], str] = {
    ("volumes",): "name",
    ("imagePullSecrets",): "name",
    ("hostAliases",): "ip",
    ("topologySpreadConstraints",): "topologyKey",
    ("resourceClaims",): "name",
    ("schedulingGates",): "name",
}
for _containers in ("containers", "initContainers", "ephemeralContainers"):
    _POD_SPEC_META[(_containers,)] = "name"
    for _path, _key in _CONTAINER_META.items():
        _POD_SPEC_META[(_containers, *_path)] = _key


def _prefixed(prefix: tuple[str, ...], meta: dict[tuple[str, ...], str]) -> dict[tuple[str, ...], str]:
    return {(*prefix, *path): key for path, key in meta.items()}


PATCH_MERGE_KEYS: dict[str, dict[tuple[str, ...], str]] = {
    "Pod": {
        **_prefixed(("spec",), _POD_SPEC_META),
        ("status", "conditions"): "type",
        ("status", "podIPs"): "ip",
        ("status", "hostIPs"): "ip",
    },
    "Node": {
        ("spec", "podCIDRs"): "",
        ("status", "conditions"): "type",
        ("status", "addresses"): "type",
    },
    "Service": {("spec", "ports"): "port", ("status", "conditions"): "type"},
    "Namespace": {("status", "conditions"): "type"},
}


def merge_keys_for(kind: str) -> dict[tuple[str, ...], str]:
    return {**_METADATA_META, **PATCH_MERGE_KEYS.get(kind, {})}


_SET_ORDER = "$setElementOrder/"
_DELETE_FROM_PRIMITIVE = "$deleteFromPrimitiveList/"


def strategic_merge_patch(original: JsonObject, patch: JsonObject, kind: str) -> JsonObject:
    if not isinstance(patch, dict):
        raise PatchError("strategic merge patch must be a JSON object")
    merged = _merge_map(copy.deepcopy(original), copy.deepcopy(patch), (), merge_keys_for(kind))
    if merged is None:
        raise PatchError("strategic merge patch cannot delete the whole object")
    return merged


def _merge_map(
    original: Any, patch: JsonObject, path: tuple[str, ...], keys: dict[tuple[str, ...], str]
) -> JsonObject | None:
    directive = patch.pop("$patch", None)
    if directive == "delete":
        return None
    if directive == "replace":
        return _strip_directives(patch)
    if directive not in (None, "merge"):
        raise PatchError(f"Unknown patch type: {directive}")
    result: JsonObject = original if isinstance(original, dict) else {}
    retain = patch.pop("$retainKeys", None)
    orders = {key[len(_SET_ORDER) :]: patch.pop(key) for key in list(patch) if key.startswith(_SET_ORDER)}
    removals = {
        key[len(_DELETE_FROM_PRIMITIVE) :]: patch.pop(key)
        for key in list(patch)
        if key.startswith(_DELETE_FROM_PRIMITIVE)
    }
    for key, value in patch.items():
        child = (*path, key)
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict):
            merged = _merge_map(result.get(key), value, child, keys)
            if merged is None:
                result.pop(key, None)
            else:
                result[key] = merged
        elif isinstance(value, list) and child in keys:
            result[key] = _merge_list(result.get(key), value, child, keys)
        else:
            result[key] = _strip_directives(value)
    for key, values in removals.items():
        if isinstance(result.get(key), list):
            result[key] = [item for item in result[key] if item not in values]
    for key, order in orders.items():
        if isinstance(result.get(key), list):
            result[key] = _apply_order(result[key], order, keys.get((*path, key), ""))
    if isinstance(retain, list):
        result = {key: value for key, value in result.items() if key in retain}
    return result


def _merge_list(
    original: Any, patch: list[Any], path: tuple[str, ...], keys: dict[tuple[str, ...], str]
) -> list[Any]:
    merge_key = keys[path]
    current = list(original) if isinstance(original, list) else []
    if any(isinstance(item, dict) and item.get("$patch") == "replace" for item in patch):
        return [
            _strip_directives(item) for item in patch if not (isinstance(item, dict) and "$patch" in item)
        ]
    if not merge_key:
        for item in patch:
            if item not in current:
                current.append(item)
        return current
    for item in patch:
        if not isinstance(item, dict) or merge_key not in item:
            raise PatchError(f"map: {item!r} does not contain declared merge key: {merge_key}")
        position = next(
            (
                index
                for index, existing in enumerate(current)
                if isinstance(existing, dict) and existing.get(merge_key) == item[merge_key]
            ),
            None,
        )
        if item.get("$patch") == "delete":
            if position is not None:
                current.pop(position)
            continue
        if position is None:
            current.append(_strip_directives(item))
        else:
            merged = _merge_map(current[position], item, path, keys)
            if merged is None:
                current.pop(position)
            else:
                current[position] = merged
    return current


def _apply_order(items: list[Any], order: list[Any], merge_key: str) -> list[Any]:
    def identity(item: Any) -> Any:
        return item.get(merge_key) if merge_key and isinstance(item, dict) else item

    wanted = [identity(entry) if isinstance(entry, dict) else entry for entry in order]
    ranked = [item for item in items if identity(item) in wanted]
    ranked.sort(key=lambda item: wanted.index(identity(item)))
    return ranked + [item for item in items if identity(item) not in wanted]


def _strip_directives(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            key: _strip_directives(item)
            for key, item in value.items()
            if not key.startswith("$") and item is not None
        }
    if isinstance(value, list):
        return [_strip_directives(item) for item in value]
    return value
