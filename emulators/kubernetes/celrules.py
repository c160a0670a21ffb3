"""`x-kubernetes-validations` of a CRD schema: the CEL rules the API server evaluates on writes.

The emulator evaluates the rules operators use to make a field immutable — the transition rules
`self == oldSelf` and `self != oldSelf` — with kube-apiserver's semantics: a transition rule runs
only on an update and only where the value exists in both the old and the new object (so setting
an optional field for the first time, or removing it, passes), and a failing rule is reported as
`<path>: Invalid value: "<type>": <message>` (the rule's `message`, else `failed rule: <rule>`),
with the rule's `reason` (FieldValueInvalid by default) as the cause type. Any other CEL
expression is reported as not supported instead of being silently accepted.
"""

from __future__ import annotations

from typing import Any

from emulators.kubernetes.validation import FieldError, type_name

_REASONS = {
    "FieldValueInvalid": "FieldValueInvalid",
    "FieldValueForbidden": "FieldValueForbidden",
    "FieldValueRequired": "FieldValueRequired",
    "FieldValueDuplicate": "FieldValueDuplicate",
}
_MISSING = object()


def _normalized(rule: str) -> str:
    return " ".join(rule.replace("(", " ( ").replace(")", " ) ").split())


def _evaluate(rule: str, new: Any, old: Any) -> bool | None:
    """The rule's result, or None when the emulator does not understand the expression."""
    text = _normalized(rule)
    if text in ("self == oldSelf", "oldSelf == self"):
        return bool(new == old)
    if text in ("self != oldSelf", "oldSelf != self"):
        return bool(new != old)
    return None


def _is_transition(rule: str) -> bool:
    return "oldSelf" in rule


def _rule_errors(schema: dict[str, Any], new: Any, old: Any, path: str) -> list[FieldError]:
    errors: list[FieldError] = []
    for rule in schema.get("x-kubernetes-validations") or ():
        expression = str(rule.get("rule", ""))
        if _is_transition(expression) and (old is _MISSING or rule.get("optionalOldSelf")):
            continue  # a transition rule needs an old value (optionalOldSelf is not emulated)
        result = _evaluate(expression, new, None if old is _MISSING else old)
        if result is None:
            errors.append(
                FieldError(
                    "FieldValueInvalid",
                    path,
                    f"compilation failed: the Kubernetes emulator evaluates only self == oldSelf and "
                    f"self != oldSelf, not {expression!r}",
                    type_name(new),
                )
            )
        elif not result:
            message = rule.get("message") or f"failed rule: {expression}"
            reason = _REASONS.get(str(rule.get("reason") or ""), "FieldValueInvalid")
            errors.append(FieldError(reason, path, str(message), type_name(new)))
    return errors


def transition_errors(new: Any, old: Any, schema: dict[str, Any], path: str = "") -> list[FieldError]:
    """Errors of every `x-kubernetes-validations` rule under `schema`, comparing `new` with `old`
    (`old` is the stored object on an update, None on a create)."""
    return _walk(new, _MISSING if old is None else old, schema, path, root=True)


def _walk(new: Any, old: Any, schema: dict[str, Any], path: str, *, root: bool = False) -> list[FieldError]:
    errors = [] if root else _rule_errors(schema, new, old, path)
    if isinstance(new, dict):
        properties = schema.get("properties") or {}
        additional = schema.get("additionalProperties")
        for key, value in new.items():
            if root and key in ("apiVersion", "kind", "metadata"):
                continue
            sub = (
                properties.get(key)
                if key in properties
                else additional
                if isinstance(additional, dict)
                else None
            )
            if sub is None:
                continue
            old_value = old.get(key, _MISSING) if isinstance(old, dict) else _MISSING
            errors += _walk(value, old_value, sub, f"{path}.{key}" if path else key)
    elif isinstance(new, list) and isinstance(schema.get("items"), dict):
        # Without list-map keys items have no identity across versions: only rules on self apply.
        for index, value in enumerate(new):
            errors += _walk(value, _MISSING, schema["items"], f"{path}[{index}]")
    return errors
