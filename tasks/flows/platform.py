"""SoftwareDeliveryPlatform: prove that every configured system answers with the SDP's credentials.

Before any tenant is provisioned, the SDP itself is reconciled by logging in to each configured
system and making one cheap authenticated read. The result is one status flag per system
(`keycloakReady`, `gitlabReady`, `harborReady`, `argoCDReady`), which `kubectl get sdp` and
`polycrate operator status` show. A system that is down or rate-limiting is a transient error
(retried with backoff); wrong credentials or a missing Secret are permanent (phase Error, a
message naming the system and what to fix) until the SDP or the resync brings the key back.
The flags are written even when a check fails, so the status shows which system is at fault.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from polycrate.errors import PolycrateError
from polycrate.keys import ObjectKey
from polycrate.kubeclient.api import JsonObject
from polycrate.models import KINDS
from polycrate.models.platform import SoftwareDeliveryPlatformSpec
from tasks.context import WorkerContext
from tasks.flows.connections import PlatformConnections
from tasks.flows.kit import combined_error
from tasks.handlers import CustomResourceHandler
from tasks.status import StatusUpdate

log = logging.getLogger(__name__)

# status field → how to get the system's client from the connections
SYSTEM_CHECKS: dict[str, Callable[[PlatformConnections], Any]] = {
    "keycloakReady": PlatformConnections.keycloak,
    "gitlabReady": PlatformConnections.gitlab,
    "harborReady": PlatformConnections.harbor,
    "argoCDReady": PlatformConnections.argocd,
}


class PlatformHandler(CustomResourceHandler):
    """Checks access to each system of an SDP and records it per system."""

    kind = "SoftwareDeliveryPlatform"

    def provision(
        self, ctx: WorkerContext, key: ObjectKey, obj: JsonObject, spec: BaseModel
    ) -> dict[str, Any]:
        assert isinstance(spec, SoftwareDeliveryPlatformSpec)
        connections = PlatformConnections(ctx, key.namespace, key.name, spec)
        flags: dict[str, bool | None] = {}
        failures: list[PolycrateError] = []
        for field_name, client_for in SYSTEM_CHECKS.items():
            try:
                client = client_for(connections)
                if client is None:
                    flags[field_name] = None  # not configured: no flag
                    continue
                client.check_access()
                flags[field_name] = True
            except PolycrateError as exc:
                flags[field_name] = False
                failures.append(exc)
        if failures:
            ctx.status.write(key, StatusUpdate(fields=flags), current=obj)
            raise combined_error(failures)
        return flags


def handlers() -> list[CustomResourceHandler]:
    return [PlatformHandler(KINDS["SoftwareDeliveryPlatform"])]
