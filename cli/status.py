"""`polycrate operator status`: one view of every operator resource and the work queue.

The table follows the spec: the cluster URL, SoftwareDeliveryPlatforms with their phase and a
✓/✗ per system (from the SDP status; "-" when the SDP does not configure that system),
Organizations with their SDP, then every other kind that has objects, with the kind's own
printer columns, and finally the work queue (pending and running keys, messages waiting per
queue). An object whose Ready condition is not True shows that condition's message (what is
wrong, or what it waits for) in a MESSAGE column. `-o json` gives the same data for scripts.
It reads the cluster and Redis and changes nothing. It needs nothing but the cluster: an
unreachable cluster is one line and exit 1, while without a reachable Redis (no REDIS_URL, or
one that does not answer) the resources are still listed and the queue section says
"unknown (Redis unreachable)".
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import click
import redis

from cli.options import kubeconfig_option
from cli.root import CliError, operator
from polycrate.errors import PolycrateError
from polycrate.kubeclient.api import KubeClient
from polycrate.kubeclient.config import load_api_client
from polycrate.kubeclient.errors import KubeError, KubeUnreachableError, NotFound
from polycrate.kubeclient.resources import resource_for
from polycrate.models import KINDS, KindInfo
from polycrate.settings import Settings, redact_url
from tasks.queue import KeyQueue
from tasks.routing import QUEUES

SDP_SYSTEMS: tuple[tuple[str, str, str], ...] = (
    # (column, spec section, status flag)
    ("KEYCLOAK", "keycloak", "keycloakReady"),
    ("GITLAB", "gitlab", "gitlabReady"),
    ("HARBOR", "harbor", "harborReady"),
    ("ARGOCD", "argocd", "argoCDReady"),
)
SECTION_TITLES = {"SoftwareDeliveryPlatform": "SoftwareDeliveryPlatforms", "Organization": "Organizations"}


@dataclass
class KindReport:
    """The objects of one kind, or why there are none to show."""

    info: KindInfo
    installed: bool = True
    objects: list[dict[str, Any]] = field(default_factory=list)


def _lookup(obj: dict[str, Any], json_path: str) -> Any:
    """Value at a simple CRD printer-column path such as `.status.api_sync.workspace_name`."""
    value: Any = obj
    for part in json_path.strip(".").split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def _cell(value: Any) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(str(item) for item in value) or "-"
    return str(value)


def _sdp_systems(obj: dict[str, Any]) -> dict[str, bool | None]:
    """Per system: True/False from the status flag, None when the SDP does not configure it."""
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    return {
        section: (bool(status.get(flag)) if spec.get(section) else None) for _, section, flag in SDP_SYSTEMS
    }


def _columns(info: KindInfo) -> list[tuple[str, str]]:
    """(header, json path) of the kind's default printer columns; Age is not a status."""
    return [
        (column.name.upper(), column.json_path)
        for column in info.printer_columns
        if column.priority == 0 and column.type != "date"
    ]


def _read_kinds(api: KubeClient) -> list[KindReport]:
    reports = []
    for info in KINDS.values():
        report = KindReport(info)
        try:
            listing = api.get(resource_for(info.kind).path(""))
        except NotFound:
            report.installed = False
        except KubeUnreachableError as exc:
            raise CliError(f"Kubernetes API at {api.host} is unreachable: {exc}") from None
        except KubeError as exc:
            raise CliError(f"cannot list {info.crd_name} at {api.host}: {exc}") from None
        else:
            report.objects = sorted(
                listing.get("items") or [],
                key=lambda obj: (obj["metadata"].get("namespace", ""), obj["metadata"]["name"]),
            )
        reports.append(report)
    return reports


def _read_queue(settings: Settings) -> dict[str, Any]:
    """The work queue's counters, or {"reachable": False, "error": ...} when Redis does not answer."""
    client = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=3, socket_timeout=5)
    try:
        queue = KeyQueue(client, prefix=settings.redis_prefix)
        return {
            "reachable": True,
            "pending": len(queue.pending()),
            "processing": len(queue.processing()),
            "messages": {name: int(client.llen(name)) for name in QUEUES},
        }
    except redis.RedisError as exc:
        return {
            "reachable": False,
            "error": f"Redis at {redact_url(settings.redis_url)} is unreachable: {exc}",
        }
    finally:
        client.close()


def _ready_message(obj: dict[str, Any]) -> str | None:
    """The Ready condition's message while it is not True: the error, or what the object waits for."""
    conditions = (obj.get("status") or {}).get("conditions") or []
    ready = next((c for c in conditions if c.get("type") == "Ready"), None)
    if ready is None or ready.get("status") == "True":
        return None
    return str(ready.get("message") or "") or None


def _object_entry(info: KindInfo, obj: dict[str, Any]) -> dict[str, Any]:
    metadata, status = obj.get("metadata") or {}, obj.get("status") or {}
    ready = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), {})
    entry: dict[str, Any] = {
        "name": metadata.get("name"),
        "namespace": metadata.get("namespace", ""),
        "phase": status.get("phase"),
        "generation": metadata.get("generation"),
        "observedGeneration": status.get("observedGeneration"),
        "message": ready.get("message"),
        "columns": {header: _lookup(obj, path) for header, path in _columns(info)},
    }
    if info.kind == "SoftwareDeliveryPlatform":
        entry["systems"] = _sdp_systems(obj)
    return entry


def _as_json(cluster: str, reports: list[KindReport], queue: dict[str, Any]) -> str:
    return json.dumps(
        {
            "cluster": cluster,
            "kinds": {
                report.info.kind: {
                    "installed": report.installed,
                    "objects": [_object_entry(report.info, obj) for obj in report.objects],
                }
                for report in reports
            },
            "queue": queue,
        },
        indent=2,
        ensure_ascii=False,
    )


def _table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(row[index]) for row in rows) for index in range(len(rows[0]))]
    return [
        "  " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]


def _section(title: str, rows: list[list[str]], empty: str) -> list[str]:
    lines = ["", title, "-" * len(title)]
    lines += _table(rows) if len(rows) > 1 else [f"  {empty}"]
    return lines


def _kind_rows(report: KindReport) -> list[list[str]]:
    rows = _kind_columns(report)
    messages = [_ready_message(obj) for obj in report.objects]
    if not any(messages):
        return rows  # every object is fine: the spec's table, unchanged
    return [rows[0] + ["MESSAGE"]] + [
        row + [message or "-"] for row, message in zip(rows[1:], messages, strict=True)
    ]


def _kind_columns(report: KindReport) -> list[list[str]]:
    info = report.info
    if info.kind == "SoftwareDeliveryPlatform":
        header = ["NAME", "NAMESPACE", "PHASE", *(column for column, _, _ in SDP_SYSTEMS)]
        marks = {True: "✓", False: "✗", None: "-"}
        return [header] + [
            [
                obj["metadata"]["name"],
                obj["metadata"].get("namespace", ""),
                _cell((obj.get("status") or {}).get("phase")),
                *(marks[flag] for flag in _sdp_systems(obj).values()),
            ]
            for obj in report.objects
        ]
    columns = _columns(info)
    header = ["NAME", *(["NAMESPACE"] if info.namespaced else []), *(name for name, _ in columns)]
    return [header] + [
        [
            obj["metadata"]["name"],
            *([obj["metadata"].get("namespace", "")] if info.namespaced else []),
            *(_cell(_lookup(obj, path)) for _, path in columns),
        ]
        for obj in report.objects
    ]


def _as_table(cluster: str, reports: list[KindReport], queue: dict[str, Any]) -> str:
    lines = ["Polycrate Operator Status", "=========================", f"Cluster: {cluster}"]
    for report in reports:
        title = SECTION_TITLES.get(report.info.kind, f"{report.info.kind}s")
        always_shown = report.info.kind in SECTION_TITLES
        if not report.installed:
            if always_shown:
                lines += _section(title, [], f"CRD {report.info.crd_name} is not installed")
            continue
        if report.objects or always_shown:
            lines += _section(title, _kind_rows(report), "none")
    lines += ["", "Work queue", "----------"]
    if not queue["reachable"]:
        lines += ["  unknown (Redis unreachable)", f"  {queue['error']}"]
        return "\n".join(lines)
    messages = ", ".join(f"{name} {count}" for name, count in queue["messages"].items())
    lines += [
        f"  pending keys: {queue['pending']}   running: {queue['processing']}",
        f"  messages waiting: {messages}",
    ]
    return "\n".join(lines)


@operator.command("status")
@kubeconfig_option
@click.option("-o", "--output", type=click.Choice(["table", "json"]), default="table", show_default=True)
def status(kubeconfig: str | None, output: str) -> None:
    """Show every operator resource with its phase, and the work queue."""
    try:
        settings = Settings.from_env()
        api = KubeClient(load_api_client(kubeconfig or settings.kubeconfig))
    except PolycrateError as exc:
        raise CliError(str(exc)) from None
    reports = _read_kinds(api)
    queue = _read_queue(settings)
    render = _as_json if output == "json" else _as_table
    click.echo(render(api.host, reports, queue))
