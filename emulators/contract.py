"""Requests and responses checked against a system's official API specification.

An emulator is only useful if it refuses what the real system would refuse and the operator
only sends what the real API allows. `ApiContract` loads a Swagger 2.0 or OpenAPI 3.0 document
and answers, for one request, the list of ways it breaks the spec: unknown path or method,
missing or mistyped path/query/header parameters, unknown query parameters, and a JSON body
that does not match the operation's schema. Responses are checked the same way (status code
declared, body matches its schema). Schemas are validated with `jsonschema`, with the spec's
`$ref`s resolved inside the document and OpenAPI's `nullable` mapped to JSON Schema.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

SPEC_DIR = Path(__file__).parent / "specs"
_SPEC_URI = "urn:polycrate-emulator:spec"
_HTTP_METHODS = ("get", "put", "post", "delete", "patch", "head", "options")


@dataclass(frozen=True)
class Parameter:
    name: str
    location: str  # path, query, header, body, formData
    required: bool
    schema: dict[str, Any]


@dataclass
class Operation:
    method: str
    template: str
    operation_id: str
    parameters: list[Parameter]
    body_schema: dict[str, Any] | None
    body_required: bool
    responses: dict[str, dict[str, Any]]
    pattern: re.Pattern[str] = field(repr=False, default=None)  # type: ignore[assignment]

    @property
    def literal_weight(self) -> tuple[int, int]:
        """Sort key: more literal segments first, so /groups/count beats /groups/{id}."""
        segments = self.template.strip("/").split("/")
        literals = sum(1 for s in segments if "{" not in s)
        return (-literals, -len(segments))


def _to_jsonschema(node: Any) -> Any:
    """OpenAPI schema dialect → JSON Schema draft 4 (nullable, x-nullable, file)."""
    if isinstance(node, list):
        return [_to_jsonschema(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _to_jsonschema(value) for key, value in node.items()}
    if out.pop("nullable", False) or out.pop("x-nullable", False):
        kind = out.get("type")
        if isinstance(kind, str):
            out["type"] = [kind, "null"]
        elif "$ref" in out or "allOf" in out:
            out = {"anyOf": [{k: v for k, v in out.items()}, {"type": "null"}]}
    if out.get("type") == "file":
        out.pop("type")
    return out


class ApiContract:
    """The operations of one API specification, with request/response validation."""

    def __init__(self, document: dict[str, Any], *, base_path: str | None = None) -> None:
        self.document = _to_jsonschema(copy.deepcopy(document))
        self.is_swagger2 = "swagger" in document
        if base_path is None:
            base_path = document.get("basePath", "") if self.is_swagger2 else ""
        self.base_path = base_path.rstrip("/")
        self._registry = Registry().with_resource(
            _SPEC_URI, Resource(contents=self.document, specification=DRAFT4)
        )
        self.operations = self._load_operations()

    @classmethod
    def from_file(cls, path: str | Path, *, base_path: str | None = None) -> ApiContract:
        path = Path(path)
        if not path.is_absolute():
            path = SPEC_DIR / path
        text = path.read_text()
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml is ~10x faster on 300 KB specs
        document = json.loads(text) if path.suffix == ".json" else yaml.load(text, Loader=loader)  # noqa: S506
        return cls(document, base_path=base_path)

    # -- loading -------------------------------------------------------------------------

    def _resolve(self, node: dict[str, Any]) -> dict[str, Any]:
        while isinstance(node, dict) and "$ref" in node:
            pointer = node["$ref"].lstrip("#/").split("/")
            target: Any = self.document
            for part in pointer:
                target = target[part.replace("~1", "/").replace("~0", "~")]
            node = target
        return node

    def _schema(self, schema: dict[str, Any]) -> dict[str, Any]:
        """A schema whose `$ref`s point into the registered spec document."""

        def rebase(node: Any) -> Any:
            if isinstance(node, dict):
                return {
                    k: (
                        f"{_SPEC_URI}{v}"
                        if k == "$ref" and isinstance(v, str) and v.startswith("#")
                        else rebase(v)
                    )
                    for k, v in node.items()
                }
            if isinstance(node, list):
                return [rebase(i) for i in node]
            return node

        return rebase(schema)

    def _load_operations(self) -> list[Operation]:
        operations: list[Operation] = []
        for template, item in self.document.get("paths", {}).items():
            shared = [self._resolve(p) for p in item.get("parameters", [])]
            for method in _HTTP_METHODS:
                if method not in item:
                    continue
                op = item[method]
                params: dict[tuple[str, str], dict[str, Any]] = {(p["name"], p["in"]): p for p in shared}
                for raw in op.get("parameters", []):
                    p = self._resolve(raw)
                    params[(p["name"], p["in"])] = p
                body_schema, body_required = None, False
                parameters: list[Parameter] = []
                for p in params.values():
                    if p["in"] == "body":
                        body_schema, body_required = p.get("schema", {}), bool(p.get("required"))
                        continue
                    schema = p.get("schema") or {
                        k: v for k, v in p.items() if k in ("type", "enum", "format", "items")
                    }
                    parameters.append(
                        Parameter(p["name"], p["in"], bool(p.get("required") or p["in"] == "path"), schema)
                    )
                if "requestBody" in op:
                    rb = self._resolve(op["requestBody"])
                    content = rb.get("content", {})
                    media = content.get("application/json") or next(iter(content.values()), {})
                    body_schema, body_required = media.get("schema", {}), bool(rb.get("required"))
                operation = Operation(
                    method=method.upper(),
                    template=template,
                    operation_id=op.get("operationId", f"{method} {template}"),
                    parameters=parameters,
                    body_schema=body_schema,
                    body_required=body_required,
                    responses={
                        str(code): self._resolve(resp) for code, resp in op.get("responses", {}).items()
                    },
                )
                # JAX-RS `{path: .*}` parameters (Keycloak's group-by-path) span several segments.
                spanning = {
                    p.name
                    for p in parameters
                    if p.location == "path" and p.schema.get("pattern") in (".*", ".+")
                }
                operation.pattern = self._path_pattern(template, spanning)
                operations.append(operation)
        operations.sort(key=lambda o: o.literal_weight)
        return operations

    @staticmethod
    def _path_pattern(template: str, spanning: set[str] | frozenset[str] = frozenset()) -> re.Pattern[str]:
        parts = re.split(r"(\{[^}]+\})", template)
        regex = "".join(
            (f"(?P<p{i}>.+)" if part[1:-1] in spanning else f"(?P<p{i}>[^/]+)")
            if part.startswith("{")
            else re.escape(part)
            for i, part in enumerate(parts)
        )
        return re.compile(f"^{regex}/?$")

    @cached_property
    def templates(self) -> set[str]:
        return {o.template for o in self.operations}

    # -- matching ------------------------------------------------------------------------

    def _strip_base(self, path: str) -> str | None:
        if not self.base_path:
            return path
        if path == self.base_path or path.startswith(self.base_path + "/"):
            return path[len(self.base_path) :] or "/"
        return None

    def match(self, method: str, path: str) -> tuple[Operation | None, dict[str, str]]:
        """The operation for (method, path) and its path parameters, or (None, {})."""
        local = self._strip_base(path)
        if local is None:
            return None, {}
        for op in self.operations:
            if op.method != method.upper():
                continue
            found = op.pattern.match(local)
            if found:
                names = re.findall(r"\{([^}]+)\}", op.template)
                return op, dict(zip(names, found.groups(), strict=True))
        return None, {}

    # -- validation ----------------------------------------------------------------------

    def _errors(self, schema: dict[str, Any], value: Any, where: str) -> list[str]:
        validator = jsonschema.Draft4Validator(self._schema(schema), registry=self._registry)
        return [
            f"{where}{'.' + '.'.join(str(p) for p in e.absolute_path) if e.absolute_path else ''}: {e.message}"
            for e in validator.iter_errors(value)
        ]

    @staticmethod
    def _coerce(raw: str, schema: dict[str, Any]) -> Any:
        kind = schema.get("type")
        if isinstance(kind, list):
            kind = next((k for k in kind if k != "null"), None)
        try:
            if kind == "integer":
                return int(raw)
            if kind == "number":
                return float(raw)
        except ValueError:
            return raw
        if kind == "boolean":
            return {"true": True, "false": False}.get(raw.lower(), raw)
        return raw

    def validate_request(
        self,
        method: str,
        path: str,
        *,
        query: dict[str, list[str]] | None = None,
        headers: dict[str, str] | None = None,
        body: Any = None,
        has_body: bool = False,
    ) -> list[str]:
        """Every way this request breaks the spec (empty list = allowed)."""
        op, path_params = self.match(method, path)
        if op is None:
            allowed = sorted(
                {o.method for o in self.operations if o.pattern.match(self._strip_base(path) or "")}
            )
            if allowed:
                return [f"{method} {path}: method not in the spec (allowed: {', '.join(allowed)})"]
            return [f"{method} {path}: path not in the spec"]
        where = f"{op.method} {op.template} ({op.operation_id})"
        query = query or {}
        lowered_headers = {k.lower(): v for k, v in (headers or {}).items()}
        problems: list[str] = []
        declared_query = {p.name for p in op.parameters if p.location == "query"}
        for name in query:
            if name not in declared_query:
                problems.append(f"{where}: query parameter '{name}' is not in the spec")
        for param in op.parameters:
            if param.location == "path":
                values = [path_params.get(param.name)] if param.name in path_params else []
            elif param.location == "query":
                values = query.get(param.name, [])
            elif param.location == "header":
                values = (
                    [lowered_headers[param.name.lower()]] if param.name.lower() in lowered_headers else []
                )
            else:
                continue
            if not values:
                if param.required:
                    problems.append(f"{where}: required {param.location} parameter '{param.name}' missing")
                continue
            if param.schema.get("type") == "array":
                coerced: Any = [
                    self._coerce(v, param.schema.get("items", {}))
                    for raw in values
                    for v in str(raw).split(",")
                ]
            else:
                coerced = self._coerce(str(values[-1]), param.schema)
            problems += self._errors(
                param.schema, coerced, f"{where}: {param.location} parameter '{param.name}'"
            )
        if op.body_schema is not None:
            if not has_body:
                if op.body_required:
                    problems.append(f"{where}: request body required")
            else:
                problems += self._errors(op.body_schema, body, f"{where}: body")
        elif has_body and body not in (None, {}, ""):
            problems.append(f"{where}: the spec declares no request body")
        return problems

    def validate_response(
        self, method: str, path: str, status: int, body: Any, *, has_body: bool
    ) -> list[str]:
        """Every way this response breaks the spec: undeclared status or body off-schema."""
        op, _ = self.match(method, path)
        if op is None:
            return []
        where = f"{op.method} {op.template} → {status}"
        declared = op.responses.get(str(status)) or op.responses.get("default")
        if declared is None:
            return [f"{where}: status {status} not declared (declared: {', '.join(sorted(op.responses))})"]
        if self.is_swagger2:
            schema = declared.get("schema")
        else:
            content = declared.get("content", {})
            media = content.get("application/json") or next(iter(content.values()), {})
            schema = media.get("schema")
        if schema is None or not has_body:
            return []
        return self._errors(schema, body, f"{where}: body")
