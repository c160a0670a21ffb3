"""Endpoint and Host discovery: Ingress hosts become Endpoint CRs and API endpoints, Nodes API hosts.

Stage one reads an Ingress and writes one Endpoint CR per rule host (name from the host, owned
by the Ingress, check settings from the endpoints.polycrate.io/* annotations); stage two, the
Endpoint handler, syncs each CR to the Polycrate API. The Ingress carries the finalizer
endpoints.polycrate.io/cleanup: when it is deleted, or leaves discovery (annotation, namespace
or class filter, endpoint_discovery off), its API endpoints are deleted and its Endpoint CRs
removed before the finalizer goes, so the API never keeps an endpoint nobody can see. A host
that leaves the Ingress takes its Endpoint with it. Wildcard hosts cannot be probed and are
skipped. Hosts have no CR (the spec maps Nodes straight to the API): as the spec's discovery
diagram says, the Node is annotated with the API id and payload hash and carries the finalizer
hosts.polycrate.io/cleanup, so a Node deleted while no worker ran still deletes its host.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from typing import Any

from pydantic import BaseModel

from polycrate.errors import InvalidSpecError, TransientError
from polycrate.keys import ObjectKey
from polycrate.kubeclient.api import JsonObject
from polycrate.kubeclient.errors import Conflict
from polycrate.models import DISCOVERED_LABEL, KINDS, EndpointSpec
from polycrate.models.config import EndpointDiscovery, NodeDiscovery
from polycrate.quantity import QuantityError, parse_quantity, quantity_to_bytes
from tasks.context import WorkerContext
from tasks.dispatch import KindHandler
from tasks.finalizers import ensure_finalizer, remove_finalizer
from tasks.flows.operator_config import (
    CAMEL_CASE_SYNC,
    ApiTarget,
    DiscoveredResourceHandler,
    DiscoveryConfig,
    api_client,
    api_target,
    read_operator_config,
    sync_resource,
)
from tasks.status import timestamp, utc_now
from workers.polycrate_api import PolycrateApiClient, ResourceCollection

log = logging.getLogger(__name__)

ENDPOINT_FINALIZER = KINDS["Endpoint"].finalizer  # endpoints.polycrate.io/cleanup
SOURCE_INGRESS_LABEL = "endpoints.polycrate.io/source-ingress"
ANNOTATION_PREFIX = "endpoints.polycrate.io/"
INGRESS_CLASS_ANNOTATION = "kubernetes.io/ingress.class"

HOST_FINALIZER = "hosts.polycrate.io/cleanup"
HOST_API_ID_ANNOTATION = "hosts.polycrate.io/api-id"
HOST_CONFIG_HASH_ANNOTATION = "hosts.polycrate.io/config-hash"
HOST_SYNCED_AT_ANNOTATION = "hosts.polycrate.io/synced-at"

# The spec's Endpoint example and its "Ergebnis" lines: every host is probed as
# https://<host>:443, whether or not the Ingress has a tls block (TLS may end in front of it).
HTTPS_PORT = 443
_MEBIBYTE = 2**20


def _metadata(obj: JsonObject) -> dict[str, Any]:
    return obj.get("metadata") or {}


def _is_deleting(obj: JsonObject) -> bool:
    return bool(_metadata(obj).get("deletionTimestamp"))


# --- Ingress -> Endpoint specs ----------------------------------------------------------------------


def endpoint_name(host: str) -> str:
    """The Endpoint CR name of a host: app.example.com -> app-example-com."""
    return re.sub(r"[^a-z0-9]+", "-", host.lower()).strip("-")


def ingress_class(ingress: JsonObject) -> str | None:
    """spec.ingressClassName, or the older kubernetes.io/ingress.class annotation."""
    spec_class = (ingress.get("spec") or {}).get("ingressClassName")
    return spec_class or (_metadata(ingress).get("annotations") or {}).get(INGRESS_CLASS_ANNOTATION)


def _flag(annotations: dict[str, str], name: str, default: bool) -> bool:
    value = annotations.get(ANNOTATION_PREFIX + name)
    return default if value is None else value.strip().lower() == "true"


def skip_reason(ingress: JsonObject, section: EndpointDiscovery | None) -> str | None:
    """Why the Ingress is not discovered, or None when it is."""
    metadata = _metadata(ingress)
    annotations = metadata.get("annotations") or {}
    if section is None:
        return "endpoint_discovery is off in OperatorConfig polycrate/default"
    if not section.watches(str(metadata.get("namespace") or "")):
        return f"namespace {metadata.get('namespace')} is not watched by endpoint_discovery"
    if section.ingress_classes and ingress_class(ingress) not in section.ingress_classes:
        return f"ingress class {ingress_class(ingress)!r} is not in endpoint_discovery.ingress_classes"
    if not _flag(annotations, "enabled", True):
        return f"annotation {ANNOTATION_PREFIX}enabled is false"
    if _flag(annotations, "ignore", False):
        return f"annotation {ANNOTATION_PREFIX}ignore is true"
    return None


def _seconds(label: str, annotations: dict[str, str], name: str, default: int) -> int:
    raw = annotations.get(ANNOTATION_PREFIX + name)
    if raw is None:
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        value = 0
    if value < 1:
        raise InvalidSpecError(
            f'{label}: annotation {ANNOTATION_PREFIX}{name} "{raw}" is not a number of seconds (use e.g. "{default}")'
        )
    return value


def _status_codes(label: str, annotations: dict[str, str]) -> list[int]:
    raw = annotations.get(ANNOTATION_PREFIX + "expected-status")
    if raw is None:
        return [200]
    try:
        codes = [int(part) for part in raw.split(",") if part.strip()]
    except ValueError:
        codes = []
    if not codes or any(not 100 <= code <= 599 for code in codes):
        raise InvalidSpecError(
            f'{label}: annotation {ANNOTATION_PREFIX}expected-status "{raw}" is not a list of HTTP status codes '
            '(use e.g. "200" or "200,302")'
        )
    return codes


def check_settings(ingress: JsonObject, section: EndpointDiscovery) -> dict[str, Any]:
    """The health-check fields of the annotations table, with their defaults."""
    metadata = _metadata(ingress)
    label = f"Ingress {metadata.get('namespace')}/{metadata.get('name')}"
    annotations = metadata.get("annotations") or {}
    path = annotations.get(ANNOTATION_PREFIX + "path", "/")
    if not path.startswith("/"):
        raise InvalidSpecError(
            f'{label}: annotation {ANNOTATION_PREFIX}path "{path}" must start with "/" (use e.g. "/health")'
        )
    settings: dict[str, Any] = {
        "path": path,
        "timeout": _seconds(label, annotations, "timeout", 30),
        "interval": _seconds(label, annotations, "interval", section.default_check_interval),
        "expectedStatusCodes": _status_codes(label, annotations),
    }
    body = annotations.get(ANNOTATION_PREFIX + "expected-body")
    if body:
        settings["expectedBody"] = body
    return settings


def ingress_hosts(ingress: JsonObject) -> list[str]:
    """The rule hosts that can be probed: each once, in order, no wildcards."""
    hosts: list[str] = []
    for rule in (ingress.get("spec") or {}).get("rules") or []:
        host = (rule or {}).get("host")
        if host and not host.startswith("*") and host not in hosts:
            hosts.append(host)
    return hosts


def desired_endpoints(ingress: JsonObject, section: EndpointDiscovery) -> dict[str, JsonObject]:
    """Endpoint CR name -> the Endpoint CR the Ingress asks for (metadata and spec)."""
    metadata = _metadata(ingress)
    settings = check_settings(ingress, section)
    owner = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "name": metadata["name"],
        "uid": metadata["uid"],
        "controller": True,
    }
    endpoints: dict[str, JsonObject] = {}
    for host in ingress_hosts(ingress):
        spec = EndpointSpec(
            displayName=host,
            remoteAddress=host,
            remotePort=HTTPS_PORT,
            kind="http",
            tls=True,
            **settings,
        )
        name = endpoint_name(host)
        endpoints[name] = {
            "apiVersion": "polycrate.io/v1alpha1",
            "kind": "Endpoint",
            "metadata": {
                "name": name,
                "namespace": metadata["namespace"],
                "labels": {SOURCE_INGRESS_LABEL: metadata["name"], DISCOVERED_LABEL: "true"},
                "ownerReferences": [owner],
            },
            "spec": spec.model_dump(mode="json", exclude_none=True),
        }
    return endpoints


def _endpoint_patch(current: JsonObject, desired: JsonObject) -> JsonObject:
    """The merge patch that turns `current` into `desired` (labels and owner ours, spec whole)."""
    patch: JsonObject = {}
    labels = _metadata(current).get("labels") or {}
    wanted_labels = desired["metadata"]["labels"]
    if any(labels.get(k) != v for k, v in wanted_labels.items()):
        patch.setdefault("metadata", {})["labels"] = wanted_labels
    owners = _metadata(current).get("ownerReferences") or []
    owner = desired["metadata"]["ownerReferences"][0]
    if not any(o.get("uid") == owner["uid"] for o in owners):
        patch.setdefault("metadata", {})["ownerReferences"] = [owner]
    spec = current.get("spec") or {}
    wanted = desired["spec"]
    spec_patch = {k: v for k, v in wanted.items() if spec.get(k) != v}
    spec_patch |= {k: None for k in EndpointSpec.model_fields if k not in wanted and spec.get(k) is not None}
    if spec_patch:
        patch["spec"] = spec_patch
    return patch


class IngressHandler(KindHandler):
    """Ingress -> one Endpoint CR per host; releases the Ingress when it leaves discovery."""

    kind = "Ingress"

    def reconcile(self, ctx: WorkerContext, key: ObjectKey, obj: JsonObject) -> None:
        config = read_operator_config(ctx)
        section = config.section("endpoint_discovery") if config else None
        if _is_deleting(obj) or skip_reason(obj, section) is not None:
            self._release(ctx, key, obj, config)
            return
        assert section is not None
        desired = desired_endpoints(obj, section)
        current = ensure_finalizer(ctx.objects, key, obj, ENDPOINT_FINALIZER)
        if current is None:
            return
        existing = {_metadata(e)["name"]: e for e in self._endpoints_of(ctx, key)}
        for name, endpoint in desired.items():
            self._apply(ctx, current, endpoint, existing.get(name))
        for name in existing.keys() - desired.keys():
            if ctx.objects.delete(ObjectKey("Endpoint", key.namespace, name)):
                ctx.events.record(
                    current,
                    "Normal",
                    "EndpointDeleted",
                    f"Endpoint {name} deleted: its host left the Ingress",
                )

    @staticmethod
    def _endpoints_of(ctx: WorkerContext, key: ObjectKey) -> list[JsonObject]:
        return ctx.objects.list(
            "Endpoint", key.namespace, label_selector=f"{SOURCE_INGRESS_LABEL}={key.name}"
        )

    def _apply(
        self, ctx: WorkerContext, ingress: JsonObject, desired: JsonObject, current: JsonObject | None
    ) -> None:
        endpoint_key = ObjectKey("Endpoint", desired["metadata"]["namespace"], desired["metadata"]["name"])
        if current is None:
            try:
                ctx.objects.create("Endpoint", desired)
            except Conflict:
                current = ctx.objects.get(endpoint_key)
                if current is None:
                    raise TransientError(
                        f"{endpoint_key.describe()} exists and vanished; trying again"
                    ) from None
            else:
                ctx.events.record(
                    ingress,
                    "Normal",
                    "EndpointCreated",
                    f"Endpoint {endpoint_key.name} created for host {desired['spec']['remoteAddress']}",
                )
                return
        source = (_metadata(current).get("labels") or {}).get(SOURCE_INGRESS_LABEL)
        if source != _metadata(ingress)["name"]:
            ctx.events.record(
                ingress,
                "Warning",
                "HostAlreadyDiscovered",
                f"host {desired['spec']['remoteAddress']} is already monitored as Endpoint {endpoint_key.name} "
                f"(from Ingress {source or 'unknown'}); this Ingress does not add a second one",
            )
            return
        if _is_deleting(current):
            # Recreate it once it is gone; its cleanup wakes this Ingress, the retry covers a race.
            raise TransientError(
                f"{endpoint_key.describe()} is still being deleted; recreating it afterwards"
            )
        patch = _endpoint_patch(current, desired)
        if patch:
            ctx.objects.patch(endpoint_key, patch)

    def _release(
        self, ctx: WorkerContext, key: ObjectKey, obj: JsonObject, config: DiscoveryConfig | None
    ) -> None:
        """Delete the Ingress's API endpoints and Endpoint CRs, then let the Ingress go."""
        if ENDPOINT_FINALIZER not in (_metadata(obj).get("finalizers") or []):
            return  # never discovered (or already released); ownerReferences collect any leftovers
        endpoints = self._endpoints_of(ctx, key)
        client = (
            api_client(ctx, config) if any((e.get("status") or {}).get("apiID") for e in endpoints) else None
        )
        for endpoint in endpoints:
            name = _metadata(endpoint)["name"]
            api_id = (endpoint.get("status") or {}).get("apiID")
            if api_id and client is not None:
                client.endpoints.delete(str(api_id))
            elif api_id:
                log.warning(
                    "Endpoint %s/%s: api_sync is off, API endpoint %s stays", key.namespace, name, api_id
                )
            ctx.objects.delete(ObjectKey("Endpoint", key.namespace, name))
        remove_finalizer(ctx.objects, key, obj, ENDPOINT_FINALIZER)


# --- Endpoint CR -> API endpoint --------------------------------------------------------------------


class EndpointHandler(DiscoveredResourceHandler):
    """Syncs an Endpoint CR to /api/v1/endpoints/ (phase "synced", apiID, configHash)."""

    kind = "Endpoint"
    section = "endpoint_discovery"
    names = CAMEL_CASE_SYNC

    def collection(self, client: PolycrateApiClient) -> ResourceCollection:
        return client.endpoints

    def reconcile(self, ctx: WorkerContext, key: ObjectKey, obj: JsonObject) -> None:
        if not _is_deleting(obj):
            obj = self._restore_from_ingress(ctx, key, obj)
        super().reconcile(ctx, key, obj)

    @staticmethod
    def _restore_from_ingress(ctx: WorkerContext, key: ObjectKey, obj: JsonObject) -> JsonObject:
        """Undo a hand edit of an operator-managed Endpoint before anything reaches the API.

        The spec says Endpoint CRs are not edited by hand: the Ingress and its annotations are
        the source. The Endpoint's own watch event brings it here, so the edit is reverted
        within one reconcile instead of being synced to the API until the Ingress's resync.
        """
        source = (_metadata(obj).get("labels") or {}).get(SOURCE_INGRESS_LABEL)
        if not source:
            return obj  # created by hand, not discovered: the user owns it
        ingress = ctx.objects.get(ObjectKey("Ingress", key.namespace, source))
        config = read_operator_config(ctx)
        section = config.section("endpoint_discovery") if config else None
        if ingress is None or _is_deleting(ingress) or skip_reason(ingress, section) is not None:
            return obj  # the Ingress handler retires it
        assert section is not None
        try:
            desired = desired_endpoints(ingress, section).get(key.name)
        except InvalidSpecError:
            return obj  # the Ingress's own reconcile reports its bad annotation
        if desired is None:
            return obj
        patch = _endpoint_patch(obj, desired)
        if not patch:
            return obj
        restored = ctx.objects.patch(key, patch)
        ctx.events.record(
            restored,
            "Warning",
            "ManualChangeReverted",
            f"{key.describe()} is managed by the operator from Ingress {key.namespace}/{source}; "
            f"restored {', '.join(sorted(patch.get('spec') or {})) or 'its labels'} "
            f"(change the Ingress's {ANNOTATION_PREFIX}* annotations instead)",
        )
        return restored

    def payload(
        self, ctx: WorkerContext, key: ObjectKey, obj: JsonObject, spec: BaseModel, target: ApiTarget
    ) -> dict[str, Any]:
        assert isinstance(spec, EndpointSpec)
        return {
            "cluster": target.cluster_id,
            "namespace": key.namespace,
            "name": key.name,
            "display_name": spec.displayName,
            "remote_address": spec.remoteAddress,
            "remote_port": spec.remotePort,
            "kind": spec.kind,
            "tls": spec.tls,
            "interval": spec.interval,
            "timeout": spec.timeout,
            "spec": {
                "http": {
                    "method": "GET",
                    "path": spec.path,
                    "expected_status_codes": spec.expectedStatusCodes,
                    "expected_body": spec.expectedBody,
                }
            },
            "source_ingress": (_metadata(obj).get("labels") or {}).get(SOURCE_INGRESS_LABEL),
        }

    def cleanup(self, ctx: WorkerContext, key: ObjectKey, obj: JsonObject) -> None:
        super().cleanup(ctx, key, obj)
        source = (_metadata(obj).get("labels") or {}).get(SOURCE_INGRESS_LABEL)
        if source:
            # A hand-deleted Endpoint comes back at once if its Ingress still has the host.
            ctx.enqueue([ObjectKey("Ingress", key.namespace, source)], reason="endpoint deleted")


# --- Node -> API host -------------------------------------------------------------------------------


def _ipv4(addresses: list[JsonObject], address_type: str) -> str | None:
    for address in addresses:
        if address.get("type") != address_type:
            continue
        try:
            if isinstance(ipaddress.ip_address(str(address.get("address"))), ipaddress.IPv4Address):
                return str(address["address"])
        except ValueError:
            continue
    return None


def cpu_cores(quantity: str | None) -> int | None:
    """status.capacity.cpu as whole cores: "4" -> 4, "3500m" -> 3."""
    if not quantity:
        return None
    try:
        return int(parse_quantity(quantity))
    except QuantityError:
        return None


def memory_mb(quantity: str | None) -> int | None:
    """status.capacity.memory in MB as Ansible's memtotal_mb counts them (MiB): "16Gi" -> 16384."""
    if not quantity:
        return None
    try:
        return quantity_to_bytes(quantity) // _MEBIBYTE
    except QuantityError:
        return None


def host_payload(node: JsonObject, cluster_id: str) -> dict[str, Any]:
    """The API host of a Node, as the spec's mapping table says."""
    name = _metadata(node)["name"]
    status = node.get("status") or {}
    addresses = status.get("addresses") or []
    capacity = status.get("capacity") or {}
    return {
        "cluster": cluster_id,
        "name": name,
        "hostname": name,
        "default_ipv4": _ipv4(addresses, "ExternalIP") or _ipv4(addresses, "InternalIP"),
        "resource_cpu_cores": cpu_cores(capacity.get("cpu")),
        "resource_memory": memory_mb(capacity.get("memory")),
        "resource_cpu_architecture": (status.get("nodeInfo") or {}).get("architecture") or None,
        "provider_id": (node.get("spec") or {}).get("providerID") or None,
    }


class NodeHandler(KindHandler):
    """Node -> API host; the Node keeps the host's id, and the finalizer until the host is gone."""

    kind = "Node"

    def reconcile(self, ctx: WorkerContext, key: ObjectKey, obj: JsonObject) -> None:
        config = read_operator_config(ctx)
        section: NodeDiscovery | None = config.section("node_discovery") if config else None
        target = None
        if not _is_deleting(obj) and section is not None and self._selected(ctx, key, section):
            target = api_target(ctx, config, referrer=key.describe())
        if target is None:
            self._release(ctx, key, obj, config)
            return
        current = ensure_finalizer(ctx.objects, key, obj, HOST_FINALIZER)
        if current is None:
            return
        annotations = _metadata(current).get("annotations") or {}
        result = sync_resource(
            target.client.hosts,
            host_payload(current, target.cluster_id),
            api_id=annotations.get(HOST_API_ID_ANNOTATION),
            last_hash=annotations.get(HOST_CONFIG_HASH_ANNOTATION),
        )
        wanted = {HOST_API_ID_ANNOTATION: result.api_id, HOST_CONFIG_HASH_ANNOTATION: result.config_hash}
        if result.written or not annotations.get(HOST_SYNCED_AT_ANNOTATION):
            wanted[HOST_SYNCED_AT_ANNOTATION] = timestamp(utc_now())
        changed = {k: v for k, v in wanted.items() if annotations.get(k) != v}
        if changed:
            ctx.objects.patch(key, {"metadata": {"annotations": changed}})

    @staticmethod
    def _selected(ctx: WorkerContext, key: ObjectKey, section: NodeDiscovery) -> bool:
        """Whether node_discovery.label_selector matches the Node (the API server evaluates it)."""
        if not section.label_selector:
            return True
        matching = ctx.objects.list(
            "Node", label_selector=section.label_selector, field_selector=f"metadata.name={key.name}"
        )
        return bool(matching)

    @staticmethod
    def _release(ctx: WorkerContext, key: ObjectKey, obj: JsonObject, config: DiscoveryConfig | None) -> None:
        """Delete the Node's host from the API, then drop our annotations and finalizer."""
        metadata = _metadata(obj)
        annotations = metadata.get("annotations") or {}
        api_id = annotations.get(HOST_API_ID_ANNOTATION)
        if HOST_FINALIZER not in (metadata.get("finalizers") or []) and not api_id:
            return
        if api_id:
            client = api_client(ctx, config)
            if client is not None:
                client.hosts.delete(str(api_id))
            else:
                log.warning("%s: api_sync is off, API host %s stays", key.describe(), api_id)
        remove_finalizer(ctx.objects, key, obj, HOST_FINALIZER)
        ours = (HOST_API_ID_ANNOTATION, HOST_CONFIG_HASH_ANNOTATION, HOST_SYNCED_AT_ANNOTATION)
        if not _is_deleting(obj) and any(name in annotations for name in ours):
            ctx.objects.patch(key, {"metadata": {"annotations": dict.fromkeys(ours)}})


def handlers() -> list[KindHandler]:
    return [IngressHandler(), EndpointHandler(), NodeHandler()]
