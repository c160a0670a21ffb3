"""Label and field selectors with the real server's grammar, semantics and errors.

Label selectors accept the full set-based syntax (`a=b`, `a==b`, `a!=b`, `a in (x,y)`,
`a notin (x)`, `a`, `!a`, `a>1`, `a<1`); a requirement on a missing label matches only for
`!=`, `notin` and `!a`, exactly as in apimachinery. Field selectors accept `=`, `==`, `!=` with
backslash escapes and only the field labels a resource supports (always `metadata.name` and
`metadata.namespace`); anything else is a 400 like the real server's.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from emulators.kubernetes.status import ApiError, bad_request

_LABEL_TOKEN = re.compile(r"\s*(\(|\)|,|!=|==|=|!|<|>|[^\s(),!=<>]+)")
_QUALIFIED_NAME = re.compile(
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
)
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


@dataclass(frozen=True)
class LabelRequirement:
    key: str
    operator: str  # "=", "!=", "in", "notin", "exists", "!", ">", "<"
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        if self.operator in ("=", "in"):
            return present and value in self.values
        if self.operator in ("!=", "notin"):
            return not present or value not in self.values
        if self.operator == "exists":
            return present
        if self.operator == "!":
            return not present
        if not present:
            return False
        try:
            number = int(value or "")
        except ValueError:
            return False
        bound = int(self.values[0])
        return number > bound if self.operator == ">" else number < bound


@dataclass(frozen=True)
class LabelSelector:
    requirements: tuple[LabelRequirement, ...] = ()

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        labels = labels or {}
        return all(requirement.matches(labels) for requirement in self.requirements)

    @property
    def empty(self) -> bool:
        return not self.requirements


def _selector_error(selector: str, why: str) -> ApiError:
    return bad_request(f"unable to parse requirement: {why}") if selector else bad_request(why)


def parse_label_selector(text: str | None) -> LabelSelector:
    text = (text or "").strip()
    if not text:
        return LabelSelector()
    tokens = _LABEL_TOKEN.findall(text)
    if "".join(tokens).replace(" ", "") != text.replace(" ", ""):
        raise _selector_error(text, f"found invalid characters in selector {text!r}")
    requirements: list[LabelRequirement] = []
    position = 0

    def peek() -> str | None:
        return tokens[position] if position < len(tokens) else None

    def take() -> str:
        nonlocal position
        if position >= len(tokens):
            raise _selector_error(text, f"found end of selector, expected more in {text!r}")
        position += 1
        return tokens[position - 1]

    while position < len(tokens):
        token = take()
        if token == "!":
            key = take()
            _check_key(text, key)
            requirements.append(LabelRequirement(key, "!"))
        else:
            key = token
            _check_key(text, key)
            operator = peek()
            if operator is None or operator == ",":
                requirements.append(LabelRequirement(key, "exists"))
            else:
                take()
                if operator in ("=", "==", "!="):
                    value = peek()
                    if value is None or value == ",":
                        value = ""
                    else:
                        take()
                    _check_value(text, key, value)
                    requirements.append(LabelRequirement(key, "!=" if operator == "!=" else "=", (value,)))
                elif operator in ("in", "notin"):
                    if take() != "(":
                        raise _selector_error(text, f"found '{tokens[position - 1]}', expected: '('")
                    values: list[str] = []
                    while True:
                        item = take()
                        if item == ")":
                            break
                        if item == ",":
                            continue
                        _check_value(text, key, item)
                        values.append(item)
                    requirements.append(LabelRequirement(key, operator, tuple(values)))
                elif operator in (">", "<"):
                    bound = take()
                    if not re.fullmatch(r"-?\d+", bound):
                        raise _selector_error(
                            text, f"for 'Gt', 'Lt' operators, the value must be an integer: {bound!r}"
                        )
                    requirements.append(LabelRequirement(key, operator, (bound,)))
                else:
                    raise _selector_error(
                        text,
                        f"found '{operator}', expected: '=', '!=', '==', 'in', notin'",
                    )
        following = peek()
        if following is not None:
            if following != ",":
                raise _selector_error(text, f"found '{following}', expected: ',' or 'end of string'")
            take()
    return LabelSelector(tuple(requirements))


def _check_key(selector: str, key: str) -> None:
    if not _QUALIFIED_NAME.match(key) or len(key.rpartition("/")[2]) > 63:
        raise _selector_error(
            selector,
            f"key: Invalid value: {key!r}: name part must consist of alphanumeric characters, '-', '_' or '.'",
        )


def _check_value(selector: str, key: str, value: str) -> None:
    if len(value) > 63 or not _LABEL_VALUE.match(value):
        raise _selector_error(
            selector,
            f"values[0][{key}]: Invalid value: {value!r}: a valid label must be an empty string or consist "
            "of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character",
        )


# --- field selectors ----------------------------------------------------------------------


@dataclass(frozen=True)
class FieldRequirement:
    field: str
    negated: bool
    value: str


@dataclass(frozen=True)
class FieldSelector:
    requirements: tuple[FieldRequirement, ...] = ()

    def matches(self, obj: Mapping[str, Any]) -> bool:
        for requirement in self.requirements:
            actual = field_value(obj, requirement.field)
            if (actual == requirement.value) == requirement.negated:
                return False
        return True

    @property
    def empty(self) -> bool:
        return not self.requirements


def _split_unescaped(text: str, separator: str) -> list[str]:
    parts: list[str] = []
    current: list[str] = []
    escaped = False
    for char in text:
        if escaped:
            current.append("\\" + char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == separator:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    if escaped:
        raise bad_request(f"invalid field selector: {text!r}: trailing backslash")
    parts.append("".join(current))
    return parts


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


def parse_field_selector(
    text: str | None, *, allowed: tuple[str, ...], custom_resource: bool
) -> FieldSelector:
    text = (text or "").strip()
    if not text:
        return FieldSelector()
    allowed_fields = ("metadata.name", "metadata.namespace", *allowed)
    requirements: list[FieldRequirement] = []
    for term in _split_unescaped(text, ","):
        match = re.match(r"^((?:[^=!\\]|\\.)+?)(!=|==|=)(.*)$", term)
        if not match:
            raise bad_request(f"invalid selector: '{text}'; can't understand '{term}'")
        field_name = _unescape(match[1]).strip()
        if field_name not in allowed_fields:
            if custom_resource:
                quoted = ", ".join(f'"{name}"' for name in allowed_fields)
                raise bad_request(f'"{field_name}" is not a known field selector: only {quoted}')
            raise bad_request(f"field label not supported: {field_name}")
        requirements.append(FieldRequirement(field_name, match[2] == "!=", _unescape(match[3])))
    return FieldSelector(tuple(requirements))


def field_value(obj: Mapping[str, Any], path: str) -> str:
    """The string a field label compares against; missing fields compare as ""."""
    if path == "source":
        path = "source.component"
    current: Any = obj
    for part in path.split("."):
        if not isinstance(current, Mapping) or part not in current:
            return ""
        current = current[part]
    if isinstance(current, bool):
        return "true" if current else "false"
    if current is None:
        return ""
    return str(current)
