"""Server-side `Table` rendering, which is what `kubectl get` prints.

kubectl asks for `application/json;as=Table;g=meta.k8s.io;v=v1` and prints the server's
columns verbatim; without this it could only show NAME and AGE. Built-in kinds get the columns
the real server's printers produce (pods' READY/STATUS/RESTARTS, nodes' ROLES, ...). Custom
resources get NAME plus their CRD's `additionalPrinterColumns`, evaluated with the JSONPath
subset CRDs use (fields, indexes, `[*]`, `[?(@.type=="Ready")]` filters); only the first match
is shown and `date` columns become ages, like apiextensions-apiserver's table convertor. Rows
carry `PartialObjectMetadata` so kubectl can add NAMESPACE (`-A`) and LABELS columns itself.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from emulators.kubernetes.resources import ResourceType

JsonObject = dict[str, Any]


# --- ages --------------------------------------------------------------------------------


def parse_timestamp(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def human_duration(seconds_total: float) -> str:
    """apimachinery's duration.HumanDuration."""
    seconds = int(seconds_total)
    if seconds < -1:
        return "<invalid>"
    if seconds < 0:
        return "0s"
    if seconds < 120:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 10:
        rest = seconds % 60
        return f"{minutes}m{rest}s" if rest else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = seconds // 3600
    if hours < 8:
        rest = minutes % 60
        return f"{hours}h{rest}m" if rest else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        rest = hours % 24
        return f"{hours // 24}d{rest}h" if rest else f"{hours // 24}d"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        rest = (hours // 24) % 365
        return f"{hours // 24 // 365}y{rest}d" if rest else f"{hours // 24 // 365}y"
    return f"{hours // 24 // 365}y"


def age(timestamp: str | None) -> str:
    parsed = parse_timestamp(timestamp)
    if parsed is None:
        return "<unknown>"
    return human_duration((datetime.now(UTC) - parsed).total_seconds())


# --- JSONPath (the subset printer columns use) ---------------------------------------------


class JsonPathError(ValueError):
    pass


def _parse_jsonpath(expression: str) -> list[tuple[str, Any]]:
    text = expression.strip()
    if text.startswith("{") and text.endswith("}"):
        text = text[1:-1].strip()
    if text.startswith("$"):
        text = text[1:]
    steps: list[tuple[str, Any]] = []
    position = 0
    while position < len(text):
        char = text[position]
        if char == ".":
            position += 1
            name: list[str] = []
            while position < len(text) and text[position] not in ".[":
                if text[position] == "\\" and position + 1 < len(text):
                    position += 1
                name.append(text[position])
                position += 1
            if name:
                steps.append(("field", "".join(name)))
        elif char == "[":
            depth, end = 0, position
            while end < len(text):
                if text[end] == "[":
                    depth += 1
                elif text[end] == "]":
                    depth -= 1
                    if depth == 0:
                        break
                end += 1
            if end >= len(text):
                raise JsonPathError(f"unterminated [ in {expression!r}")
            steps.append(_bracket_step(text[position + 1 : end].strip(), expression))
            position = end + 1
        else:
            raise JsonPathError(f"unexpected {char!r} in {expression!r}")
    return steps


_FILTER = re.compile(r"^\?\(@\.([\w.\-/]+)\s*(==|!=)?\s*(?:\"([^\"]*)\"|'([^']*)'|([\w.\-]+))?\)$")


def _bracket_step(inner: str, expression: str) -> tuple[str, Any]:
    if inner == "*":
        return ("all", None)
    if re.fullmatch(r"-?\d+", inner):
        return ("index", int(inner))
    if re.fullmatch(r"-?\d*:-?\d*", inner):
        start, _, stop = inner.partition(":")
        return ("slice", (int(start) if start else None, int(stop) if stop else None))
    if inner[:1] in "'\"" and inner[-1:] == inner[:1]:
        return ("field", inner[1:-1])
    match = _FILTER.match(inner)
    if match:
        literal = match[3] if match[3] is not None else match[4] if match[4] is not None else match[5]
        return ("filter", (match[1].split("."), match[2], literal))
    raise JsonPathError(f"unsupported JSONPath element [{inner}] in {expression!r}")


def _filter_matches(item: Any, field_path: list[str], operator: str | None, literal: str | None) -> bool:
    current = item
    for part in field_path:
        if not isinstance(current, dict) or part not in current:
            return False
        current = current[part]
    if operator is None:
        return True
    rendered = _render_scalar(current)
    return (rendered == literal) == (operator == "==")


def jsonpath(obj: Any, expression: str) -> list[Any]:
    nodes = [obj]
    for kind, argument in _parse_jsonpath(expression):
        following: list[Any] = []
        for node in nodes:
            if kind == "field":
                if isinstance(node, dict) and argument in node:
                    following.append(node[argument])
            elif kind == "index":
                if isinstance(node, list) and -len(node) <= argument < len(node):
                    following.append(node[argument])
            elif kind == "slice":
                if isinstance(node, list):
                    following.extend(node[argument[0] : argument[1]])
            elif kind == "all":
                if isinstance(node, list):
                    following.extend(node)
                elif isinstance(node, dict):
                    following.extend(node.values())
            elif kind == "filter" and isinstance(node, list):
                following.extend(item for item in node if _filter_matches(item, *argument))
        nodes = following
    return nodes


def _render_scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(value, separators=(",", ":"))


# --- columns --------------------------------------------------------------------------------

Column = dict[str, Any]
RowFunction = Callable[[JsonObject], list[Any]]


def _column(
    name: str, description: str, *, type_: str = "string", format_: str = "", priority: int = 0
) -> Column:
    return {"name": name, "type": type_, "format": format_, "description": description, "priority": priority}


NAME_COLUMN = _column(
    "Name",
    "Name must be unique within a namespace. Is required when creating resources, although some resources "
    "may allow a client to request the generation of an appropriate name automatically.",
    format_="name",
)
AGE_COLUMN = _column(
    "Age", "CreationTimestamp is a timestamp representing the server time when this object was created."
)


def _meta(obj: JsonObject) -> JsonObject:
    return obj.get("metadata") or {}


def _created(obj: JsonObject) -> str:
    return age(_meta(obj).get("creationTimestamp"))


def _pod_row(pod: JsonObject) -> list[Any]:
    spec, status = pod.get("spec") or {}, pod.get("status") or {}
    reason = status.get("reason") or status.get("phase") or "Pending"
    ready = 0
    restarts = 0
    for container in reversed(status.get("containerStatuses") or []):
        restarts += int(container.get("restartCount") or 0)
        state = container.get("state") or {}
        if (state.get("waiting") or {}).get("reason"):
            reason = state["waiting"]["reason"]
        elif (state.get("terminated") or {}).get("reason"):
            reason = state["terminated"]["reason"]
        elif state.get("terminated"):
            terminated = state["terminated"]
            reason = (
                f"Signal:{terminated['signal']}"
                if terminated.get("signal")
                else f"ExitCode:{terminated.get('exitCode', 0)}"
            )
        elif container.get("ready") and "running" in state:
            ready += 1
    if _meta(pod).get("deletionTimestamp"):
        reason = "Unknown" if status.get("reason") == "NodeLost" else "Terminating"
    gates = spec.get("readinessGates") or []
    return [
        _meta(pod).get("name"),
        f"{ready}/{len(spec.get('containers') or [])}",
        reason,
        restarts,
        _created(pod),
        status.get("podIP") or "<none>",
        spec.get("nodeName") or "<none>",
        status.get("nominatedNodeName") or "<none>",
        f"{len(gates)}/{len(gates)}" if gates else "<none>",
    ]


def _node_row(node: JsonObject) -> list[Any]:
    status = node.get("status") or {}
    ready = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), None)
    state = (
        "Unknown"
        if ready is None
        else {"True": "Ready", "False": "NotReady"}.get(ready.get("status"), "Unknown")
    )
    if (node.get("spec") or {}).get("unschedulable"):
        state += ",SchedulingDisabled"
    labels = _meta(node).get("labels") or {}
    roles = sorted(
        {key.split("/", 1)[1] for key in labels if key.startswith("node-role.kubernetes.io/") and "/" in key}
        | ({labels["kubernetes.io/role"]} if labels.get("kubernetes.io/role") else set())
    )
    addresses = status.get("addresses") or []
    info = status.get("nodeInfo") or {}

    def address(kind: str) -> str:
        return next((a.get("address") for a in addresses if a.get("type") == kind), None) or "<none>"

    return [
        _meta(node).get("name"),
        state,
        ",".join(roles) or "<none>",
        _created(node),
        info.get("kubeletVersion", ""),
        address("InternalIP"),
        address("ExternalIP"),
        info.get("osImage") or "<unknown>",
        info.get("kernelVersion") or "<unknown>",
        info.get("containerRuntimeVersion") or "<unknown>",
    ]


def _event_row(event: JsonObject) -> list[Any]:
    involved = event.get("involvedObject") or {}
    last = (
        (event.get("series") or {}).get("lastObservedTime")
        or event.get("lastTimestamp")
        or event.get("eventTime")
    )
    source = event.get("source") or {}
    source_text = ", ".join(part for part in (source.get("component"), source.get("host")) if part)
    return [
        age(last or _meta(event).get("creationTimestamp")),
        event.get("type", ""),
        event.get("reason", ""),
        f"{str(involved.get('kind', '')).lower()}/{involved.get('name', '')}",
        involved.get("fieldPath", ""),
        source_text or event.get("reportingComponent", ""),
        event.get("message", ""),
        age(event.get("firstTimestamp") or event.get("eventTime") or _meta(event).get("creationTimestamp")),
        int(event.get("count") or 1),
        _meta(event).get("name"),
    ]


def _ingress_row(ingress: JsonObject) -> list[Any]:
    spec = ingress.get("spec") or {}
    hosts = [rule.get("host") for rule in spec.get("rules") or [] if rule.get("host")]
    balancers = ((ingress.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    addresses = [
        entry.get("ip") or entry.get("hostname")
        for entry in balancers
        if entry.get("ip") or entry.get("hostname")
    ]
    return [
        _meta(ingress).get("name"),
        spec.get("ingressClassName") or "<none>",
        ",".join(hosts) or "*",
        ",".join(addresses),
        "80, 443" if spec.get("tls") else "80",
        _created(ingress),
    ]


def _service_row(service: JsonObject) -> list[Any]:
    spec = service.get("spec") or {}
    ports = ",".join(
        f"{port.get('port')}{':' + str(port['nodePort']) if port.get('nodePort') else ''}/{port.get('protocol', 'TCP')}"
        for port in spec.get("ports") or []
    )
    selector = ",".join(f"{key}={value}" for key, value in sorted((spec.get("selector") or {}).items()))
    return [
        _meta(service).get("name"),
        spec.get("type", "ClusterIP"),
        spec.get("clusterIP") or "<none>",
        ",".join(spec.get("externalIPs") or []) or "<none>",
        ports or "<none>",
        _created(service),
        selector or "<none>",
    ]


def _endpoints_row(endpoints: JsonObject) -> list[Any]:
    addresses = [
        f"{address.get('ip')}:{port.get('port')}"
        for subset in endpoints.get("subsets") or []
        for address in subset.get("addresses") or []
        for port in subset.get("ports") or [{}]
    ]
    shown = ",".join(addresses[:3]) + (f" + {len(addresses) - 3} more..." if len(addresses) > 3 else "")
    return [_meta(endpoints).get("name"), shown or "<none>", _created(endpoints)]


def _endpoint_slice_row(endpoint_slice: JsonObject) -> list[Any]:
    ports = ",".join(str(port.get("port", "")) for port in endpoint_slice.get("ports") or [])
    addresses = [
        a for endpoint in endpoint_slice.get("endpoints") or [] for a in endpoint.get("addresses") or []
    ]
    shown = ",".join(addresses[:3]) + (f" + {len(addresses) - 3} more..." if len(addresses) > 3 else "")
    return [
        _meta(endpoint_slice).get("name"),
        endpoint_slice.get("addressType", ""),
        ports or "<unset>",
        shown or "<unset>",
        _created(endpoint_slice),
    ]


_BUILTIN_TABLES: dict[tuple[str, str], tuple[list[Column], RowFunction]] = {
    ("", "namespaces"): (
        [NAME_COLUMN, _column("Status", "The status of the namespace"), AGE_COLUMN],
        lambda o: [_meta(o).get("name"), (o.get("status") or {}).get("phase", ""), _created(o)],
    ),
    ("", "configmaps"): (
        [NAME_COLUMN, _column("Data", "Data contains the configuration data.", type_="integer"), AGE_COLUMN],
        lambda o: [
            _meta(o).get("name"),
            len(o.get("data") or {}) + len(o.get("binaryData") or {}),
            _created(o),
        ],
    ),
    ("", "secrets"): (
        [
            NAME_COLUMN,
            _column("Type", "Used to facilitate programmatic handling of secret data."),
            _column("Data", "Data contains the secret data.", type_="integer"),
            AGE_COLUMN,
        ],
        lambda o: [_meta(o).get("name"), o.get("type", "Opaque"), len(o.get("data") or {}), _created(o)],
    ),
    ("", "pods"): (
        [
            NAME_COLUMN,
            _column("Ready", "The aggregate readiness state of this pod for accepting traffic."),
            _column("Status", "The aggregate status of the containers in this pod."),
            _column(
                "Restarts",
                "The number of times the containers in this pod have been restarted.",
                type_="string",
            ),
            AGE_COLUMN,
            _column("IP", "IP address allocated to the pod.", priority=1),
            _column("Node", "Name of the Node this pod runs on.", priority=1),
            _column("Nominated Node", "Name of the node nominated by the scheduler.", priority=1),
            _column("Readiness Gates", "Pod readiness gates.", priority=1),
        ],
        _pod_row,
    ),
    ("", "nodes"): (
        [
            NAME_COLUMN,
            _column("Status", "The status of the node"),
            _column("Roles", "The roles of the node"),
            AGE_COLUMN,
            _column("Version", "Kubelet Version reported by the node."),
            _column("Internal-IP", "List of internal IPs.", priority=1),
            _column("External-IP", "List of external IPs.", priority=1),
            _column("OS-Image", "OS Image reported by the node.", priority=1),
            _column("Kernel-Version", "Kernel Version reported by the node.", priority=1),
            _column("Container-Runtime", "Container Runtime Version reported by the node.", priority=1),
        ],
        _node_row,
    ),
    ("", "events"): (
        [
            _column("Last Seen", "Time when last event occurred"),
            _column("Type", "Type of this event."),
            _column("Reason", "Reason is why the action was taken."),
            _column("Object", "The object that this event is about."),
            _column("Subobject", "The subobject this event is about.", priority=1),
            _column("Source", "The component reporting this event.", priority=1),
            _column("Message", "A human-readable description of the status of this operation."),
            _column("First Seen", "The time at which the event was first recorded.", priority=1),
            _column("Count", "The number of times this event has occurred.", type_="integer", priority=1),
            {**NAME_COLUMN, "priority": 1},
        ],
        _event_row,
    ),
    ("", "services"): (
        [
            NAME_COLUMN,
            _column("Type", "The type of the service."),
            _column("Cluster-IP", "The IP address of the service."),
            _column("External-IP", "The external IP addresses of the service."),
            _column("Port(s)", "The ports the service exposes."),
            AGE_COLUMN,
            _column("Selector", "Route service traffic to pods with matching labels.", priority=1),
        ],
        _service_row,
    ),
    ("", "endpoints"): (
        [NAME_COLUMN, _column("Endpoints", "Endpoints of the service."), AGE_COLUMN],
        _endpoints_row,
    ),
    ("discovery.k8s.io", "endpointslices"): (
        [
            NAME_COLUMN,
            _column("AddressType", "The IP protocol for this slice."),
            _column("Ports", "The ports of the endpoints."),
            _column("Endpoints", "The addresses of the endpoints."),
            AGE_COLUMN,
        ],
        _endpoint_slice_row,
    ),
    ("networking.k8s.io", "ingresses"): (
        [
            NAME_COLUMN,
            _column("Class", "The name of the IngressClass resource."),
            _column("Hosts", "Hosts that incoming requests are matched against."),
            _column("Address", "Address is a list containing ingress points for the load-balancer."),
            _column("Ports", "Ports of TLS configurations that open."),
            AGE_COLUMN,
        ],
        _ingress_row,
    ),
    ("coordination.k8s.io", "leases"): (
        [NAME_COLUMN, _column("Holder", "The holder of the lease."), AGE_COLUMN],
        lambda o: [_meta(o).get("name"), (o.get("spec") or {}).get("holderIdentity", ""), _created(o)],
    ),
    ("apiextensions.k8s.io", "customresourcedefinitions"): (
        [NAME_COLUMN, _column("Created At", "The time the CRD was created.", type_="date")],
        lambda o: [_meta(o).get("name"), _meta(o).get("creationTimestamp", "")],
    ),
}


def _custom_cell(column: JsonObject, obj: JsonObject) -> Any:
    try:
        results = jsonpath(obj, column.get("jsonPath", ""))
    except JsonPathError:
        return None
    if not results or results[0] is None:
        return None
    value = results[0]
    column_type = column.get("type", "string")
    if column_type == "string":
        return _render_scalar(value)
    if column_type == "integer" and isinstance(value, int | float) and not isinstance(value, bool):
        return int(value)
    if column_type == "number" and isinstance(value, int | float) and not isinstance(value, bool):
        return value
    if column_type == "boolean" and isinstance(value, bool):
        return value
    if column_type == "date" and isinstance(value, str):
        return age(value) if parse_timestamp(value) else "<invalid>"
    return None


def columns_and_rows(rt: ResourceType) -> tuple[list[Column], RowFunction]:
    builtin = _BUILTIN_TABLES.get((rt.group, rt.plural))
    if builtin is not None:
        return builtin
    if not rt.printer_columns:
        return [NAME_COLUMN, AGE_COLUMN], lambda o: [_meta(o).get("name"), _created(o)]
    columns = [NAME_COLUMN] + [
        _column(
            column["name"],
            column.get("description", ""),
            type_=column.get("type", "string"),
            format_=column.get("format", ""),
            priority=int(column.get("priority", 0)),
        )
        for column in rt.printer_columns
    ]

    def row(obj: JsonObject) -> list[Any]:
        return [_meta(obj).get("name")] + [_custom_cell(column, obj) for column in rt.printer_columns]

    return columns, row


def partial_object_metadata(obj: JsonObject, api_version: str = "meta.k8s.io/v1") -> JsonObject:
    return {"kind": "PartialObjectMetadata", "apiVersion": api_version, "metadata": obj.get("metadata") or {}}


def table(
    rt: ResourceType,
    objects: list[JsonObject],
    *,
    list_metadata: JsonObject,
    api_version: str = "meta.k8s.io/v1",
    include_object: str = "Metadata",
    include_headers: bool = True,
) -> JsonObject:
    columns, row_of = columns_and_rows(rt)
    rows = []
    for obj in objects:
        row: JsonObject = {"cells": row_of(obj)}
        if include_object == "Object":
            row["object"] = obj
        elif include_object != "None":
            row["object"] = partial_object_metadata(obj, api_version)
        rows.append(row)
    rendered: JsonObject = {"kind": "Table", "apiVersion": api_version, "metadata": list_metadata}
    if include_headers:
        rendered["columnDefinitions"] = columns
    rendered["rows"] = rows
    return rendered
