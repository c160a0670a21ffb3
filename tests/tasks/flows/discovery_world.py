"""The world the discovery tests run in: the Kubernetes emulator with the CRDs, the Polycrate API
emulator, and an OperatorConfig whose identity is already resolved.

The OperatorConfig handler (tasks/operator_config.py) is not driven here: `DiscoveryWorld`
writes the status it would write (workspace and local cluster, the cluster registered in the
API over HTTP), so these tests exercise only the discovery flows. Handlers are registered with a
clock the test moves and with the test's key queue, so the keys a flow wakes can be inspected
and run. Import `world_fixture` into a test module to get the `world` fixture.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import kubernetes
import pytest
import redis

from emulators.polycrate_api import PolycrateApiEmulator
from polycrate.keys import ObjectKey
from polycrate.kubeclient.api import JsonObject
from polycrate.models import KINDS
from polycrate.models.discovery import is_meta_secret
from tasks.context import WorkerContext
from tasks.dispatch import KindHandler
from tasks.reconcile import Outcome
from tests.tasks.support import CRDS
from tests.tasks.test_handlers import Cluster
from workers.polycrate_api import PolycrateApiClient, clear_clients

CONFIG_NAMESPACE = "polycrate"
TOKEN_SECRET = "polycrate-api-creds"


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


class DiscoveryWorld:
    """A cluster with the discovery CRDs, the API emulator and the singleton OperatorConfig."""

    def __init__(
        self,
        cluster: Cluster,
        api_client: kubernetes.client.ApiClient,
        api: PolycrateApiEmulator,
        install: Callable[..., dict[str, Any]],
    ) -> None:
        self.cluster = cluster
        self.namespace = cluster.namespace
        self.source_namespaces = [cluster.namespace]
        self._seen = 0
        self._own_tasks: set[str] = set()
        self.api = api
        self.clock = FakeClock(datetime(2026, 1, 6, 14, 30, tzinfo=UTC))
        self.core = kubernetes.client.CoreV1Api(api_client)
        self.custom = kubernetes.client.CustomObjectsApi(api_client)
        self._install = install
        self.install("OperatorConfig")
        self._ensure_namespace(CONFIG_NAMESPACE)
        self.client = PolycrateApiClient(api.url, api.token)
        self.cluster_id = str(self.client.clusters.ensure({"name": "test-cluster"}).id)
        self.core.create_namespaced_secret(
            CONFIG_NAMESPACE,
            {
                "metadata": {"name": TOKEN_SECRET},
                "data": {"token": base64.b64encode(api.token.encode()).decode()},
            },
        )

    def install(self, *kinds: str, foreign: Iterable[Path] = ()) -> None:
        """Install the CRDs of these polycrate.io kinds and the `foreign` CRD files (Velero, cert-manager)."""
        for kind in kinds:
            self._install(CRDS / f"{KINDS[kind].crd_name}.yaml")
        for crd in foreign:
            self._install(crd)

    @property
    def context(self) -> WorkerContext:
        return self.cluster.reconciler.context

    @property
    def objects(self) -> Any:
        return self.context.objects

    def _ensure_namespace(self, name: str) -> None:
        try:
            self.core.create_namespace({"metadata": {"name": name}})
        except kubernetes.client.ApiException as exc:
            if exc.status != 409:
                raise

    def extra_namespace(self, suffix: str) -> str:
        """A further namespace for the test, deleted (after its sources) at the end."""
        name = f"{self.namespace}-{suffix}"
        self._ensure_namespace(name)
        self.source_namespaces.append(name)
        return name

    # -- handlers ------------------------------------------------------------------------

    def use(self, *handlers: KindHandler) -> None:
        """Let these handlers (built with `clock=world.clock`) run."""
        for handler in handlers:
            self.cluster.reconciler.registry.register(handler, replace=True)

    def reconcile(self, key: ObjectKey) -> Outcome:
        """An event for `key` and the run of its task (the one already waiting, if a flow woke it)."""
        self.cluster.fire_due()
        self.cluster.queue.add(key)
        task_id = next(t for k, t, _ in reversed(self.cluster.sender.sent) if k == key)
        self._own_tasks.add(task_id)
        return self.cluster.reconciler.run(str(key), task_id)

    def woken(self) -> set[ObjectKey]:
        """Keys sent to the queue since the last call (the reconciles the flows asked for)."""
        sent = self.cluster.sender.sent
        new, self._seen = sent[self._seen :], len(sent)
        return {key for key, task_id, _ in new if task_id not in self._own_tasks}

    def settle(self, keys: Iterable[ObjectKey], *, rounds: int = 5) -> None:
        """Reconcile `keys` in order, then whatever they woke, until nothing more is woken."""
        pending = list(dict.fromkeys(keys))
        for _ in range(rounds):
            self.woken()
            for key in pending:
                self.reconcile(key)
            pending = sorted(self.woken())
            if not pending:
                return
        raise AssertionError(f"still waking {sorted(pending)} after {rounds} rounds")

    # -- the OperatorConfig --------------------------------------------------------------

    def operator_config(self, *, api_sync: bool = True, resolved: bool = True, **sections: Any) -> None:
        """(Re)write the singleton with these discovery sections, e.g. certificate_discovery={}."""
        spec: dict[str, Any] = dict(sections)
        if api_sync:
            spec["api_sync"] = {
                "enabled": True,
                "api_url": self.api.url,
                "credentials_ref": {"secret_name": TOKEN_SECRET, "token_key": "token"},
            }
        key = ObjectKey("OperatorConfig", CONFIG_NAMESPACE, "default")
        where = ("polycrate.io", "v1alpha1", CONFIG_NAMESPACE, "operatorconfigs")
        current = self.objects.get(key)
        if current is None:
            manifest = {
                "apiVersion": "polycrate.io/v1alpha1",
                "kind": "OperatorConfig",
                "metadata": {"name": "default"},
            }
            self.custom.create_namespaced_custom_object(*where, {**manifest, "spec": spec})
        else:
            self.custom.replace_namespaced_custom_object(*where, "default", {**current, "spec": spec})
        status: dict[str, Any] = {"api_sync": None, "local_cluster": None}
        if api_sync and resolved:
            status = {
                "api_sync": {
                    "workspace_id": self.api.workspace_id,
                    "workspace_name": self.api.workspace_name,
                    "organization_id": self.api.organization_id,
                    "organization_name": self.api.organization_name,
                    "resolved_at": "2026-01-06T14:00:00Z",
                },
                "local_cluster": {"cluster_id": self.cluster_id, "cluster_name": "test-cluster"},
            }
        self.objects.patch(key, {"status": status}, subresource="status")

    # -- reading ---------------------------------------------------------------------------

    def get(self, key: ObjectKey) -> JsonObject | None:
        return self.objects.get(key)

    def api_objects(self, family: str) -> list[dict[str, Any]]:
        with self.api.lock:
            return [dict(o) for o in self.api.objects[family].values()]

    def remove_sources(self) -> None:
        """Delete the sources (and so, by garbage collection, their CRs) before the namespaces go.

        The Kubernetes emulator's namespace deletion fails with a 500 when it meets a dependent
        the garbage collector removed a moment earlier in the same sweep.
        """
        for group, plural in (
            ("cert-manager.io", "certificates"),
            ("velero.io", "backups"),
            ("velero.io", "schedules"),
            ("postgresql.cnpg.io", "backups"),
            ("postgresql.cnpg.io", "scheduledbackups"),
        ):
            for namespace in self.source_namespaces:
                try:
                    listed = self.custom.list_namespaced_custom_object(group, "v1", namespace, plural)
                except kubernetes.client.ApiException as exc:
                    if exc.status == 404:
                        continue  # the test did not install this CRD
                    raise
                for item in listed.get("items") or []:
                    self.custom.delete_namespaced_custom_object(
                        group, "v1", namespace, plural, item["metadata"]["name"]
                    )
        for namespace in self.source_namespaces:
            for secret in self.core.list_namespaced_secret(namespace).items:
                if is_meta_secret(
                    {"metadata": {"name": secret.metadata.name, "labels": secret.metadata.labels}}
                ):
                    self.core.delete_namespaced_secret(secret.metadata.name, namespace)
        for namespace in self.source_namespaces[1:]:
            self.core.delete_namespace(namespace)


@pytest.fixture(name="world")
def world_fixture(
    kube_api_client: kubernetes.client.ApiClient,
    redis_client: redis.Redis,
    kube_namespace: str,
    polycrate_api: PolycrateApiEmulator,
    kube_install_crd: Callable[..., dict[str, Any]],
) -> Iterator[DiscoveryWorld]:
    """The discovery world of one test (import `world_fixture` into a test module to use `world`)."""
    clear_clients()
    world = DiscoveryWorld(
        Cluster(kube_api_client, redis_client, kube_namespace),
        kube_api_client,
        polycrate_api,
        kube_install_crd,
    )
    yield world
    world.remove_sources()
