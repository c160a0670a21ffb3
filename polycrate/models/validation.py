"""Turns pydantic validation errors into the one line a user reads in `kubectl describe`.

A message names the object, the field path and the fix, e.g.
`HarborProject polycrate/shared-images: spec.storageQuota "50Gx" is not a quantity (use e.g. 50Gi)`.
Hints come from the field descriptions, the same text `kubectl explain` shows, so there is one
place to word them. Unknown fields are reported with the closest known name, and values are
shown only for scalar fields (never a whole object that might hold something sensitive).
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails

from polycrate.errors import InvalidSpecError
from polycrate.models.fieldtypes import shown_value

MAX_REPORTED_ERRORS = 3


def object_label(obj: dict[str, Any]) -> str:
    """`Organization polycrate/acme-corp`, or `Artifact nginx` for cluster-scoped objects."""
    metadata = obj.get("metadata") or {}
    name = metadata.get("name") or metadata.get("generateName") or "<unnamed>"
    namespace = metadata.get("namespace")
    kind = obj.get("kind") or "object"
    return f"{kind} {namespace}/{name}" if namespace else f"{kind} {name}"


def invalid_spec_error(
    label: str, model: type[BaseModel], error: ValidationError, root: str
) -> InvalidSpecError:
    """One InvalidSpecError for all problems of `error`; `root` is the path prefix, e.g. `spec`."""
    problems = [describe_problem(model, detail, root) for detail in error.errors()]
    shown = "; ".join(problems[:MAX_REPORTED_ERRORS])
    if len(problems) > MAX_REPORTED_ERRORS:
        shown += f" (and {len(problems) - MAX_REPORTED_ERRORS} more)"
    return InvalidSpecError(f"{label}: {shown}")


def describe_problem(model: type[BaseModel], detail: ErrorDetails, root: str) -> str:
    loc = _field_loc(detail["loc"])
    path = _render_path(root, loc)
    kind = detail["type"]
    value = detail.get("input")
    field = _field_at(model, loc)
    hint = f" ({field.description})" if field is not None and field.description else ""
    if kind == "missing":
        return f"{path} is required{hint}"
    if kind == "extra_forbidden":
        return f"{path} is not a known field{_did_you_mean(model, loc)}"
    if kind.startswith("polycrate_"):
        return f"{path} {detail['msg']}"
    if kind in ("value_error", "assertion_error"):
        message = detail["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
        return f"{path} {message}"
    if kind == "literal_error":
        expected = str(detail.get("ctx", {}).get("expected", "")).replace("'", "")
        return f"{path} {_render_value(value)} is not allowed (use {expected})"
    if kind == "string_pattern_mismatch":
        pattern = detail.get("ctx", {}).get("pattern", "")
        return f"{path} {_render_value(value)} does not match {pattern}{hint}"
    message = detail["msg"].replace("Input should be", "must be").replace("Input should have", "must have")
    if isinstance(value, str | int | float | bool) or value is None:
        return f"{path} {_render_value(value)} {_lower_first(message)}"
    return f"{path} {_lower_first(message)}"


def _field_loc(loc: Sequence[int | str]) -> list[int | str]:
    # Validators wrapped around a type add pseudo-segments like "function-after[check(), str]".
    return [part for part in loc if not (isinstance(part, str) and "[" in part and part.endswith("]"))]


def _render_path(root: str, loc: Sequence[int | str]) -> str:
    path = root
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def _render_value(value: object) -> str:
    if isinstance(value, str):
        return f'"{shown_value(value)}"'
    return "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]


def _model_fields_by_name(model: type[BaseModel]) -> dict[str, FieldInfo]:
    return {(info.alias or name): info for name, info in model.model_fields.items()}


def _inner_models(annotation: object) -> list[type[BaseModel]]:
    """Models reachable through Optional, list, dict and Annotated wrappers of an annotation."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return _inner_models(args[0])
    if origin in (typing.Union, types.UnionType, list, dict, tuple):
        return [model for arg in args for model in _inner_models(arg)]
    return []


def _walk(
    model: type[BaseModel], loc: Sequence[int | str]
) -> tuple[type[BaseModel] | None, FieldInfo | None]:
    """The model that owns the last named segment of `loc`, and that segment's FieldInfo."""
    current: type[BaseModel] | None = model
    owner: type[BaseModel] | None = model
    field: FieldInfo | None = None
    for part in loc:
        if isinstance(part, int) or current is None:
            continue
        fields = _model_fields_by_name(current)
        if part not in fields:
            # A dict key: stay on the value type of the dict field we are in.
            continue
        owner, field = current, fields[part]
        inner = _inner_models(field.annotation)
        current = inner[0] if inner else None
    return owner, field


def _field_at(model: type[BaseModel], loc: Sequence[int | str]) -> FieldInfo | None:
    if not loc or not isinstance(loc[-1], str):
        return None
    owner, field = _walk(model, loc)
    if owner is None or loc[-1] not in _model_fields_by_name(owner):
        return None
    return field


def _did_you_mean(model: type[BaseModel], loc: Sequence[int | str]) -> str:
    parent_loc = list(loc[:-1])
    parent: type[BaseModel] | None = model
    if parent_loc:
        _, field = _walk(model, parent_loc)
        inner = _inner_models(field.annotation) if field is not None else []
        parent = inner[0] if inner else None
    if parent is None or not loc or not isinstance(loc[-1], str):
        return ""
    known = list(_model_fields_by_name(parent))
    close = difflib.get_close_matches(loc[-1], known, n=1)
    if close:
        return f" (did you mean {close[0]}?)"
    return f" (known fields: {', '.join(known)})"
