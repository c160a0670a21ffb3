"""Adding and removing our finalizer without losing anyone else's.

`metadata.finalizers` is one list and a merge patch replaces lists whole, so each change is a
read-modify-write that carries the resourceVersion it read: if another controller changed the
list in between, the API server answers 409 and we read again. The finalizer goes on before
the operator creates anything outside the cluster, and comes off only after cleanup succeeded,
so a deleted object can never orphan external state.
"""

from __future__ import annotations

from polycrate.errors import TransientError
from polycrate.keys import ObjectKey
from polycrate.kubeclient.api import JsonObject
from polycrate.kubeclient.errors import Conflict, NotFound
from polycrate.kubeclient.objects import ObjectAPI

_MAX_ATTEMPTS = 5


def _finalizers(obj: JsonObject) -> list[str]:
    return list((obj.get("metadata") or {}).get("finalizers") or [])


def _patch_finalizers(
    objects: ObjectAPI, key: ObjectKey, obj: JsonObject, finalizers: list[str]
) -> JsonObject:
    body = {"metadata": {"finalizers": finalizers, "resourceVersion": obj["metadata"]["resourceVersion"]}}
    return objects.patch(key, body)


def ensure_finalizer(
    objects: ObjectAPI, key: ObjectKey, obj: JsonObject, finalizer: str
) -> JsonObject | None:
    """`obj` with `finalizer` present (patched in if missing); None if the object is gone."""
    current: JsonObject | None = obj
    for _attempt in range(_MAX_ATTEMPTS):
        if current is None:
            return None
        if finalizer in _finalizers(current):
            return current
        try:
            return _patch_finalizers(objects, key, current, [*_finalizers(current), finalizer])
        except NotFound:
            return None
        except Conflict:
            current = objects.get(key)
    raise TransientError(f"{key.describe()}: finalizers kept changing while adding {finalizer}")


def remove_finalizer(objects: ObjectAPI, key: ObjectKey, obj: JsonObject, finalizer: str) -> None:
    """Take `finalizer` off the object (which may then disappear); nothing to do if absent or gone."""
    current: JsonObject | None = obj
    for _attempt in range(_MAX_ATTEMPTS):
        if current is None or finalizer not in _finalizers(current):
            return
        try:
            _patch_finalizers(
                objects, key, current, [name for name in _finalizers(current) if name != finalizer]
            )
            return
        except NotFound:
            return
        except Conflict:
            current = objects.get(key)
    raise TransientError(f"{key.describe()}: finalizers kept changing while removing {finalizer}")
