"""Certificate discovery: cert-manager Certificates → polycrate.io Certificate CRs → /certificates/.

Each cert-manager Certificate in scope of `certificate_discovery` (namespaces, issuer filter)
is mirrored into `certmanager-<ns>-<name>` next to it and owned by it, per the spec's API and
Status mapping tables. `certificate_status` is judged against the current time (expired after
notAfter, expiring_soon within 30 days of it) but is a state, not a clock reading: it moves
only when a threshold is crossed, so steady reconciles write nothing. The handler asks to run
again at the next threshold (`Requeue`), so the crossing shows at that moment, not at the next
periodic resync. The Certificate handler syncs to the API and deletes the API object with the CR.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel

from polycrate.keys import ObjectKey
from polycrate.kubeclient.api import JsonObject
from polycrate.models import DISCOVERED_LABEL, CertificateSpec
from polycrate.models.config import CertificateDiscovery
from polycrate.models.discovery import CertificateState
from tasks.context import WorkerContext
from tasks.dispatch import KindHandler, Requeue
from tasks.flows.discovered import (
    Clock,
    ScopedDiscoveredHandler,
    apply_discovered,
    bounded_name,
    delete_discovered,
    label_value,
    moment,
    owner_reference,
    serialized_spec,
)
from tasks.flows.operator_config import ApiTarget, read_operator_config
from tasks.status import timestamp, utc_now
from workers.polycrate_api import PolycrateApiClient, ResourceCollection

SOURCE_KIND = "cert-manager.io/Certificate"
SECTION = "certificate_discovery"
CERT_MANAGER_GROUP = "cert-manager.io"
EXPIRING_SOON = timedelta(days=30)

ISSUER_LABEL = "certificates.polycrate.io/issuer"
SOURCE_LABEL = "certificates.polycrate.io/source"
READY_LABEL = "certificates.polycrate.io/ready"


def certificate_name(namespace: str, name: str) -> str:
    """The CR of cert-manager Certificate production/api-example-com-tls is
    certmanager-production-api-example-com-tls."""
    return bounded_name(f"certmanager-{namespace}-{name}")


def _condition(source: JsonObject, condition_type: str) -> JsonObject:
    conditions = (source.get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c.get("type") == condition_type), {})


def certificate_state(source: JsonObject, now: datetime) -> tuple[bool, CertificateState]:
    """(is_ready, certificate_status) of a cert-manager Certificate, per the Status-Mapping table.

    Ready=True is ready, expiring_soon within 30 days of notAfter, expired after it.
    Ready=False is failed when cert-manager says Failed (on Ready or on Issuing), expired when
    notAfter has passed, and pending otherwise (issuing, or not issued yet). Without a Ready
    verdict the state is unknown.
    """
    ready = _condition(source, "Ready")
    issuing = _condition(source, "Issuing")
    not_after = moment((source.get("status") or {}).get("notAfter"))
    expired = not_after is not None and not_after <= now
    if ready.get("status") == "True":
        if expired:
            return True, "expired"
        if not_after is not None and not_after <= now + EXPIRING_SOON:
            return True, "expiring_soon"
        return True, "ready"
    if ready.get("status") == "False":
        if "Failed" in (ready.get("reason"), issuing.get("reason")):
            return False, "failed"
        return False, "expired" if expired else "pending"
    if issuing.get("status") == "True":
        return False, "pending"
    return False, "unknown"


def next_threshold(source: JsonObject, now: datetime) -> datetime | None:
    """The next moment `certificate_state` changes with time alone: the start of expiring-soon
    (30 days before notAfter) or notAfter itself, whichever is still ahead; None when both passed."""
    not_after = moment((source.get("status") or {}).get("notAfter"))
    if not_after is None:
        return None
    return next((t for t in (not_after - EXPIRING_SOON, not_after) if t > now), None)


def issuer_name(source: JsonObject) -> str:
    return str(((source.get("spec") or {}).get("issuerRef") or {}).get("name") or "")


def out_of_scope(section: CertificateDiscovery, namespace: str, issuer: str) -> str | None:
    """Why `certificate_discovery` leaves a certificate out, or None when it is discovered."""
    if not section.watches(namespace):
        return f"namespace {namespace} is not watched by spec.{SECTION}"
    if not section.issuer_filter.includes(issuer):
        return f'issuer "{issuer}" is excluded by spec.{SECTION}.issuer_filter'
    return None


def desired_certificate(source: JsonObject, now: datetime) -> JsonObject:
    """The polycrate.io Certificate that mirrors `source` (metadata and spec)."""
    metadata = source.get("metadata") or {}
    namespace, name = str(metadata["namespace"]), str(metadata["name"])
    spec = source.get("spec") or {}
    status = source.get("status") or {}
    issuer_ref = spec.get("issuerRef") or {}
    dns_names = list(spec.get("dnsNames") or [])
    is_ready, state = certificate_state(source, now)
    fields = {
        "name": name,
        "display_name": spec.get("commonName") or (dns_names[0] if dns_names else name),
        "namespace": namespace,
        "secret_name": spec.get("secretName"),
        "dns_names": dns_names,
        "ip_addresses": list(spec.get("ipAddresses") or []),
        "issuer_name": issuer_ref.get("name"),
        "issuer_kind": str(issuer_ref.get("kind") or "Issuer").lower(),
        "issuer_group": issuer_ref.get("group") or CERT_MANAGER_GROUP,
        "certificate_status": state,
        "is_ready": is_ready,
        "not_before": status.get("notBefore"),
        "not_after": status.get("notAfter"),
        "renewal_time": status.get("renewalTime"),
        "source_cert_manager": {
            "name": name,
            "namespace": namespace,
            "uid": metadata.get("uid"),
            "revision": status.get("revision"),
        },
    }
    return {
        "metadata": {
            "name": certificate_name(namespace, name),
            "namespace": namespace,
            "labels": {
                ISSUER_LABEL: label_value(issuer_name(source)),
                SOURCE_LABEL: label_value(name),
                READY_LABEL: "true" if is_ready else "false",
                DISCOVERED_LABEL: "true",
            },
            "ownerReferences": [owner_reference(source)],
        },
        "spec": serialized_spec(CertificateSpec, fields, f"cert-manager Certificate {namespace}/{name}"),
    }


class CertManagerCertificateHandler(KindHandler):
    """First stage: one cert-manager Certificate → its polycrate.io Certificate (or none)."""

    kind = SOURCE_KIND

    def __init__(self, *, clock: Clock = utc_now) -> None:
        self.clock = clock

    def reconcile(self, ctx: WorkerContext, key: ObjectKey, obj: JsonObject) -> Requeue | None:
        config = read_operator_config(ctx)
        section = config.section(SECTION) if config else None
        if section is None or (obj.get("metadata") or {}).get("deletionTimestamp"):
            return None  # discovery off, or going away: the garbage collector takes its CR along
        excluded = out_of_scope(section, key.namespace, issuer_name(obj))
        if excluded:
            cr_key = ObjectKey("Certificate", key.namespace, certificate_name(key.namespace, key.name))
            delete_discovered(ctx, cr_key, reason=excluded)
            return None
        now = self.clock()
        apply_discovered(ctx, "Certificate", desired_certificate(obj, now))
        # Come back when the certificate crosses a threshold, not at the next resync.
        threshold = next_threshold(obj, now)
        return Requeue(after=(threshold - now).total_seconds()) if threshold else None


class CertificateHandler(ScopedDiscoveredHandler):
    """Second stage: a polycrate.io Certificate → the Polycrate API's /certificates/."""

    kind = "Certificate"
    section = SECTION

    def collection(self, client: PolycrateApiClient) -> ResourceCollection:
        return client.certificates

    def out_of_scope(self, section: Any, key: ObjectKey, obj: JsonObject, spec: BaseModel) -> str | None:
        assert isinstance(spec, CertificateSpec)
        return out_of_scope(section, key.namespace, spec.issuer_name or "")

    def payload(
        self, ctx: WorkerContext, key: ObjectKey, obj: JsonObject, spec: BaseModel, target: ApiTarget
    ) -> dict[str, Any]:
        assert isinstance(spec, CertificateSpec)
        return {
            "cluster": target.cluster_id,
            "namespace": spec.namespace or key.namespace,
            "name": spec.name,
            "display_name": spec.display_name,
            "secret_name": spec.secret_name,
            "dns_names": spec.dns_names,
            "ip_addresses": spec.ip_addresses,
            "issuer_name": spec.issuer_name,
            "issuer_kind": spec.issuer_kind,
            "issuer_group": spec.issuer_group,
            "certificate_status": spec.certificate_status,
            "is_ready": spec.is_ready,
            "not_before": _when(spec.not_before),
            "not_after": _when(spec.not_after),
            "renewal_time": _when(spec.renewal_time),
        }


def _when(moment: datetime | None) -> str | None:
    return timestamp(moment) if moment else None


def handlers() -> list[KindHandler]:
    return [CertManagerCertificateHandler(), CertificateHandler()]
