"""K8sCluster: register an external cluster in its SDP's Argo CD, with credentials from a Secret.

The Secret (a service account token, or a whole kubeconfig) is read fresh on every reconcile,
so a rotated token reaches Argo CD at the next reconcile; Argo CD hides stored credentials, and
the Argo CD client compares a digest of them instead. The servers registered for the object
are remembered in its `polycrate.io/operator-state` annotation before each registration, so a
changed apiServer unregisters the old one and deletion removes every one, even after a crash
in between. When the cluster becomes Ready (or its spec changed) or is deleted, the
ArgoCDProjects of the namespace that name it in `destinations[].clusterRef` are woken (the watch
`projects_using_cluster`), so they converge at once.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from pydantic import BaseModel

from polycrate.errors import DependencyNotFoundError
from polycrate.keys import ObjectKey
from polycrate.kubeclient.api import JsonObject
from polycrate.models import KINDS
from polycrate.models.cluster import K8sClusterSpec
from tasks.context import WorkerContext
from tasks.flows.connections import platform
from tasks.flows.kit import list_objects
from tasks.flows.state import OperatorState
from tasks.handlers import CustomResourceHandler
from tasks.watches import SourceRun, Watch, note
from workers.argocd import ArgoCDClient, ClusterCredentials

log = logging.getLogger(__name__)

SERVERS_SECTION = "argoCDServers"
UNREGISTERED = "unregistered"  # noted by a cleanup that took the cluster out of Argo CD
NAMESPACE_LABEL = "polycrate.io/namespace"
NAME_LABEL = "polycrate.io/k8scluster"


def cluster_credentials(ctx: WorkerContext, key: ObjectKey, spec: K8sClusterSpec) -> ClusterCredentials:
    """How Argo CD authenticates to the cluster, from the Secret the spec names."""
    auth = spec.authentication
    credential = auth.serviceAccountToken or auth.kubeconfig
    assert credential is not None  # the model requires exactly one
    ref = credential.secretRef
    # The value is what this reconcile syncs, so a cached copy would hide a rotation.
    ctx.secrets.invalidate(key.namespace, ref.name)
    try:
        value = ctx.secrets.get(key.namespace, ref.name, ref.key)
    except DependencyNotFoundError as exc:
        method = "serviceAccountToken" if auth.serviceAccountToken else "kubeconfig"
        raise DependencyNotFoundError(
            f"{key.describe()}: spec.authentication.{method}.secretRef: {exc}"
        ) from None
    if auth.serviceAccountToken is not None:
        token = value.strip()
        if not token:
            raise DependencyNotFoundError(
                f'{key.describe()}: Secret {key.namespace}/{ref.name} key "{ref.key}" holds an empty token'
            )
        credentials = ClusterCredentials(bearer_token=token)
    else:
        _, credentials = ClusterCredentials.from_kubeconfig(value)
    if spec.caCertificate:
        credentials = dataclasses.replace(credentials, ca_pem=spec.caCertificate)
    return credentials


def projects_using_cluster(ctx: WorkerContext, run: SourceRun) -> list[ObjectKey]:
    """A K8sCluster that became Ready or was unregistered wakes the ArgoCDProjects of the
    namespace whose destinations name it in clusterRef (deleted: they report it missing)."""
    if not (run.became_ready() or run.notes.get(UNREGISTERED)):
        return []
    namespace, cluster = run.key.namespace, run.key.name
    keys = []
    for obj in list_objects(ctx, "ArgoCDProject", namespace):
        spec = obj.get("spec") or {}
        if any(
            isinstance(d, dict) and d.get("clusterRef") == cluster for d in spec.get("destinations") or []
        ):
            keys.append(ObjectKey("ArgoCDProject", namespace, obj["metadata"]["name"]))
    return keys


def _server_version(argocd: ArgoCDClient, server: str) -> str | None:
    """The cluster's Kubernetes version as Argo CD last saw it (absent until it connected)."""
    registered = argocd.get_cluster(server) or {}
    version = (registered.get("info") or {}).get("serverVersion") or registered.get("serverVersion")
    return str(version) if version else None


class K8sClusterHandler(CustomResourceHandler):
    """Registers the cluster in the SDP's Argo CD and keeps its credentials current."""

    kind = "K8sCluster"

    def provision(
        self, ctx: WorkerContext, key: ObjectKey, obj: JsonObject, spec: BaseModel
    ) -> dict[str, Any]:
        assert isinstance(spec, K8sClusterSpec)
        connections = platform(ctx, key.namespace, spec.sdp, referrer=f"{key.describe()}: spec.sdp")
        argocd = connections.argocd()
        fields: dict[str, Any]
        if argocd is None:
            # Nothing to register in; the cluster is still a valid target for discovery.
            fields = {"argoCDClusterRegistered": False, "kubernetesVersion": None}
        else:
            server = spec.apiServer
            credentials = cluster_credentials(ctx, key, spec)
            state = OperatorState(ctx, key, obj)
            previous = [str(s) for s in state.get(SERVERS_SECTION) or []]
            state.set(SERVERS_SECTION, sorted({*previous, server}))
            argocd.ensure_cluster(
                server,
                spec.displayName or key.name,
                credentials,
                labels={NAMESPACE_LABEL: key.namespace, NAME_LABEL: key.name},
            )
            for old in previous:
                if old != server:
                    argocd.delete_cluster(old)
                    log.info("%s: unregistered %s from Argo CD (apiServer changed)", key, old)
            state.set(SERVERS_SECTION, [server])
            # lastConnectedAt is not written: a time that changes every run would loop reconciles.
            fields = {"argoCDClusterRegistered": True, "kubernetesVersion": _server_version(argocd, server)}
        return fields

    def cleanup(self, ctx: WorkerContext, key: ObjectKey, obj: JsonObject) -> None:
        spec = obj.get("spec") or {}
        servers = {str(s) for s in OperatorState(ctx, key, obj).get(SERVERS_SECTION) or []}
        if spec.get("apiServer"):
            servers.add(str(spec["apiServer"]))
        argocd: ArgoCDClient | None = None
        try:
            if not spec.get("sdp"):
                raise DependencyNotFoundError(f"{key.describe()}: spec.sdp is empty")
            connections = platform(
                ctx, key.namespace, str(spec["sdp"]), referrer=f"{key.describe()}: spec.sdp"
            )
            argocd = connections.argocd()
        except DependencyNotFoundError as exc:
            # The SDP or its Secret is gone (e.g. the namespace is being deleted): Argo CD cannot
            # be reached any more, and waiting would keep the finalizer forever.
            message = f"cleanup skipped, Argo CD cannot be reached: {exc}"
            log.warning("%s: %s", key, message)
            ctx.events.record(obj, "Warning", "CleanupSkipped", message)
        if argocd is not None:
            for server in sorted(servers):
                argocd.delete_cluster(server)
        # Projects that deploy to this cluster must now report the missing K8sCluster.
        note(UNREGISTERED, True)


def handlers() -> list[CustomResourceHandler]:
    return [K8sClusterHandler(KINDS["K8sCluster"])]


def watches() -> list[Watch]:
    return [Watch("K8sCluster", projects_using_cluster, "ArgoCDProjects deploying to it")]
