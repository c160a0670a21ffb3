"""workers.polycrate_api against the Polycrate API emulator over real HTTP."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from werkzeug.wrappers import Request, Response

from emulators.polycrate_api import PolycrateApiEmulator
from polycrate.errors import PermanentError, TransientError
from polycrate.httppolicy import HttpPolicy
from polycrate.ratelimit import RateLimiter
from tests.fixtures.polycrate_api import fail_on_violations, take_violations
from workers.change import Change
from workers.polycrate_api import PolycrateApiClient, WorkspaceIdentity, get_client


@pytest.fixture
def client(polycrate_api: PolycrateApiEmulator) -> Iterator[PolycrateApiClient]:
    api_client = PolycrateApiClient(polycrate_api.url, polycrate_api.token)
    yield api_client
    api_client.close()


@pytest.fixture
def cluster_id(client: PolycrateApiClient) -> str:
    return str(client.clusters.ensure({"name": "my-workspace"}).id)


def endpoint(cluster: str, **overrides: Any) -> dict[str, Any]:
    return {
        "cluster": cluster,
        "namespace": "production",
        "name": "app-example-com",
        "display_name": "app.example.com",
        "remote_address": "app.example.com",
        "remote_port": 443,
        "tls": True,
        "interval": 60,
        "timeout": 30,
        "spec": {"http": {"method": "GET", "path": "/api/health", "expected_status_codes": [200]}},
        "source_ingress": "webapp",
        **overrides,
    }


def gets(emulator: PolycrateApiEmulator, path: str) -> int:
    return emulator.calls[f"GET {path}"]


# --- health report and the local cluster ------------------------------------------------------------


def test_health_report_resolves_the_workspace_and_organization_of_the_token(polycrate_api, client):
    identity = client.report_health({"operator_version": "0.29.0", "cluster_name": "my-workspace"})
    assert identity == WorkspaceIdentity(
        workspace_id=polycrate_api.workspace_id,
        workspace_name="production",
        organization_id=polycrate_api.organization_id,
        organization_name="acme-corp",
    )


def test_local_cluster_is_created_when_the_workspace_has_none(polycrate_api, client):
    change = client.register_local_cluster(polycrate_api.workspace_id, "my-workspace")
    assert change.action == "created"
    assert client.report_health({"operator_version": "0.29.0"}).cluster_id == change.id


def test_existing_cluster_of_the_workspace_wins_over_cluster_name(polycrate_api, client, cluster_id):
    change = client.register_local_cluster(polycrate_api.workspace_id, "another-name")
    assert change == Change(
        "unchanged", id=cluster_id, detail='the API already has cluster "my-workspace" for this workspace'
    )
    assert len(polycrate_api.objects["clusters"]) == 1


def test_without_cluster_and_cluster_name_no_cluster_is_registered(polycrate_api, client):
    assert client.register_local_cluster(polycrate_api.workspace_id, None).action == "absent"
    assert polycrate_api.objects["clusters"] == {}


def test_known_local_cluster_id_is_checked_with_one_read(polycrate_api, client, cluster_id):
    polycrate_api.calls.clear()
    assert (
        client.register_local_cluster(polycrate_api.workspace_id, "x", known_id=cluster_id).id == cluster_id
    )
    assert sum(polycrate_api.calls.values()) == 1


# --- ensure / delete per family ------------------------------------------------------------------------

PAYLOADS = {
    "endpoints": lambda cluster: endpoint(cluster),
    "k8sapps": lambda cluster: {
        "cluster": cluster,
        "namespace": "production",
        "name": "nginx-ingress",
        "block": None,
        "block_name": "nginx-ingress",
        "block_version": "1.2.0",
        "chart": {
            "name": "ingress-nginx",
            "version": "4.9.0",
            "repo_url": "https://kubernetes.github.io/ingress-nginx",
        },
        "action_name": "install",
        "action_status": "success",
        "last_executed_at": "2025-12-20T10:00:00Z",
        "installed": True,
    },
    "hosts": lambda cluster: {
        "cluster": cluster,
        "name": "node-1",
        "hostname": "node-1",
        "default_ipv4": "203.0.113.10",
        "resource_cpu_cores": 8,
        "resource_memory": 32768,
        "resource_cpu_architecture": "amd64",
        "provider_id": "hcloud://4711",
    },
    "backups": lambda cluster: {
        "cluster": cluster,
        "namespace": "velero",
        "name": "daily-20260106",
        "status": "completed",
        "retention_policy": "720h0m0s",
        "started_at": "2026-01-06T02:00:00Z",
        "completed_at": "2026-01-06T02:04:10Z",
        "items_backed_up": 1234,
    },
    "backup_schedules": lambda cluster: {
        "cluster": cluster,
        "namespace": "velero",
        "name": "daily",
        "schedule_cron": "0 2 * * *",
        "paused": False,
        "last_backup_name": "daily-20260106",
    },
    "certificates": lambda cluster: {
        "cluster": cluster,
        "namespace": "production",
        "name": "api-example-com-tls",
        "secret_name": "api-example-com-tls",
        "dns_names": ["api.example.com"],
        "issuer_name": "letsencrypt-production",
        "issuer_kind": "clusterissuer",
        "certificate_status": "ready",
        "is_ready": True,
        "not_after": "2024-04-01T00:00:00Z",
    },
    "artifacts": lambda cluster: {
        "cluster": cluster,
        "image": "cargo.ayedo.cloud/library/nginx:1.25.3",
        "registry": {"hostname": "cargo.ayedo.cloud", "port": 443, "scheme": "https"},
        "repository": {"path": "library/nginx", "name": "nginx", "namespace": "library"},
        "tag": "1.25.3",
        "used_in_namespaces": [{"name": "production", "pod_count": 3}],
        "total_pod_count": 3,
    },
}


@pytest.mark.parametrize("family", sorted(PAYLOADS))
def test_every_family_is_created_then_unchanged_then_deleted(polycrate_api, client, cluster_id, family):
    collection = getattr(client, family)
    payload = PAYLOADS[family](cluster_id)
    created = collection.ensure(payload)
    assert created.action == "created"
    assert collection.ensure(payload) == Change("unchanged", id=created.id)
    assert collection.delete(str(created.id)) is True
    assert collection.delete(str(created.id)) is False


def test_changed_fields_are_patched_and_named(polycrate_api, client, cluster_id):
    created = client.endpoints.ensure(endpoint(cluster_id))
    polycrate_api.calls.clear()
    change = client.endpoints.ensure(endpoint(cluster_id, interval=30, timeout=10), api_id=str(created.id))
    assert change == Change("updated", id=created.id, detail="interval, timeout")
    assert polycrate_api.calls["PATCH /api/v1/endpoints/{id}/"] == 1
    stored = polycrate_api.objects["endpoints"][created.id]
    assert (stored["interval"], stored["timeout"], stored["remote_address"]) == (30, 10, "app.example.com")


def test_kept_api_id_of_an_object_deleted_in_the_api_leads_to_recreation(polycrate_api, client, cluster_id):
    first = client.hosts.ensure(PAYLOADS["hosts"](cluster_id))
    del polycrate_api.objects["hosts"][first.id]
    again = client.hosts.ensure(PAYLOADS["hosts"](cluster_id), api_id=str(first.id))
    assert again.action == "created"
    assert again.id != first.id


def test_timestamps_in_another_notation_of_the_same_instant_are_unchanged(client, cluster_id):
    backup = PAYLOADS["backups"](cluster_id)
    client.backups.ensure(backup)
    same_instant = {**backup, "started_at": "2026-01-06T03:00:00+01:00"}
    assert client.backups.ensure(same_instant).action == "unchanged"


class RacingCreatorApi(PolycrateApiEmulator):
    """A Polycrate API where another worker creates the same host just before our create lands."""

    def create_object(self, request: Request, family: str) -> Response:
        if family == "hosts" and not getattr(self, "_raced", False):
            self._raced = True
            body = request.get_json()
            with self.lock:
                self.objects["hosts"]["raced"] = {
                    **body,
                    "resource_cpu_cores": 4,
                    "id": "6f1c3e2a-0000-4000-8000-000000000001",
                    "workspace": self.workspace_id,
                    "organization": self.organization_id,
                    "created_at": "2026-01-06T00:00:00Z",
                    "updated_at": "2026-01-06T00:00:00Z",
                }
        return super().create_object(request, family)


def test_create_that_loses_a_race_converges_on_the_winners_object():
    with RacingCreatorApi() as racing:
        racing_client = PolycrateApiClient(racing.url, racing.token)
        cluster = str(racing_client.clusters.ensure({"name": "c"}).id)
        change = racing_client.hosts.ensure(PAYLOADS["hosts"](cluster))
        racing_client.close()
        assert change == Change(
            "updated", id="6f1c3e2a-0000-4000-8000-000000000001", detail="resource_cpu_cores"
        )
        assert len(racing.objects["hosts"]) == 1
        fail_on_violations(racing)


# --- block-id resolution ---------------------------------------------------------------------------------


def test_block_id_is_resolved_through_workspace_and_block_lookups(polycrate_api, client):
    staging = polycrate_api.add_workspace("staging")
    block = client.call(
        "POST", "/api/v1/blocks/", "create block", body={"workspace": staging["id"], "name": "redis"}
    )
    assert client.resolve_block_id("staging", "acme-corp", "redis") == block["id"]
    assert client.resolve_block_id("staging", "acme-corp", "postgres") is None
    assert client.resolve_block_id("nowhere", "acme-corp", "redis") is None


def test_block_lookups_are_answered_from_the_cache_for_a_minute(polycrate_api, client):
    client.resolve_block_id("production", "acme-corp", "nginx-ingress")
    client.resolve_block_id("production", "acme-corp", "nginx-ingress")
    assert gets(polycrate_api, "/api/v1/workspaces/") == 1


# --- pagination ------------------------------------------------------------------------------------------


def test_lists_follow_every_page(polycrate_api, cluster_id):
    small_pages = PolycrateApiClient(polycrate_api.url, polycrate_api.token, page_size=2)
    for index in range(5):
        small_pages.hosts.ensure(
            {**PAYLOADS["hosts"](cluster_id), "name": f"node-{index}", "hostname": f"n{index}"}
        )
    polycrate_api.calls.clear()
    names = [host["name"] for host in small_pages.hosts.list(cluster=cluster_id)]
    small_pages.close()
    assert names == [f"node-{index}" for index in range(5)]
    assert gets(polycrate_api, "/api/v1/hosts/") == 3


class ForeignNextLinkApi(PolycrateApiEmulator):
    """A Polycrate API behind a proxy that writes `next` links with another scheme and host."""

    def _page(self, request: Request, items: list[dict[str, Any]]) -> Response:
        response = super()._page(request, items)
        response.set_data(response.get_data(as_text=True).replace(self.url, "https://elsewhere.example.com"))
        return response


def test_next_links_are_followed_on_our_own_url_only():
    with ForeignNextLinkApi(page_size=1) as proxied:
        proxied_client = PolycrateApiClient(proxied.url, proxied.token, page_size=1)
        cluster = str(proxied_client.clusters.ensure({"name": "c"}).id)
        for index in range(3):
            proxied_client.hosts.ensure(
                {"cluster": cluster, "name": f"node-{index}", "hostname": f"n{index}"}
            )
        assert len(list(proxied_client.hosts.list(cluster=cluster))) == 3
        proxied_client.close()
        fail_on_violations(proxied)


# --- failures and their classification ------------------------------------------------------------------


def test_invalid_token_is_a_permanent_unauthorized_error(polycrate_api):
    stranger = PolycrateApiClient(polycrate_api.url, "wrong-token")
    with pytest.raises(PermanentError, match="health report: HTTP 401: Invalid token.") as failure:
        stranger.report_health({"operator_version": "0.29.0"})
    stranger.close()
    assert failure.value.reason == "Unauthorized"


def test_unknown_cluster_reference_is_a_permanent_error_naming_the_field(client):
    with pytest.raises(PermanentError, match=r'create host "node-1": HTTP 400: cluster: Invalid pk'):
        client.hosts.ensure(PAYLOADS["hosts"]("0b8e6a56-0000-4000-8000-000000000000"))


def test_429_is_transient_and_carries_the_retry_after_hint(polycrate_api, client):
    polycrate_api.set_faults(rate_limit={"count": 1, "retry_after": 5})
    with pytest.raises(TransientError) as failure:
        client.report_health({"operator_version": "0.29.0"})
    assert (failure.value.status_code, failure.value.retry_after) == (429, 5.0)


@pytest.mark.parametrize("status", [500, 503])
def test_server_errors_are_transient(polycrate_api, client, cluster_id, status):
    polycrate_api.set_faults(error_rate=1.0, error_status=status)
    with pytest.raises(TransientError, match=f"HTTP {status}"):
        client.hosts.ensure(PAYLOADS["hosts"](cluster_id))


def test_slow_answer_beyond_the_read_timeout_is_transient(polycrate_api):
    polycrate_api.set_faults(slow_path="/operator/health/", slow_ms=600)
    impatient = PolycrateApiClient(
        polycrate_api.url, polycrate_api.token, policy=HttpPolicy(read_timeout=0.2)
    )
    with pytest.raises(TransientError, match="timed out"):
        impatient.report_health({"operator_version": "0.29.0"})
    impatient.close()


def test_a_payload_our_spec_does_not_allow_is_caught_by_the_validator(polycrate_api, client, cluster_id):
    with pytest.raises(PermanentError, match="HTTP 400"):
        client.hosts.ensure({**PAYLOADS["hosts"](cluster_id), "cpu_cores": 8})
    problems = take_violations(polycrate_api)[0]["problems"]
    assert "Additional properties are not allowed ('cpu_cores' was unexpected)" in problems[0]


# --- scale manners and secrets ----------------------------------------------------------------------------


def test_clients_share_one_request_budget_through_redis(polycrate_api, redis_url):
    shared = redis.Redis.from_url(redis_url)
    workers = [
        PolycrateApiClient(
            polycrate_api.url,
            polycrate_api.token,
            limiter=RateLimiter(shared, system="polycrate-api", scope="polycrate/default", rate=20, burst=1),
        )
        for _ in range(2)
    ]
    started = time.monotonic()
    for index in range(10):
        workers[index % 2].report_health({"operator_version": "0.29.0"})
    elapsed = time.monotonic() - started
    for worker in workers:
        worker.close()
    # GCRA lets the first two through at once; the other 8 wait one 50 ms interval each.
    assert elapsed >= 0.38
    shared.close()


def test_one_client_per_owner_and_token_is_reused(polycrate_api):
    first = get_client("polycrate/default", polycrate_api.url, polycrate_api.token)
    assert get_client("polycrate/default", polycrate_api.url, polycrate_api.token) is first
    assert get_client("polycrate/default", polycrate_api.url, "rotated") is not first


MARKER = "MARKER-91ab-agent-token"


def test_no_token_appears_in_logs_errors_or_redis_keys(polycrate_api, redis_url, caplog):
    caplog.set_level(logging.DEBUG)
    polycrate_api.tokens[MARKER] = polycrate_api.workspace_id
    shared = redis.Redis.from_url(redis_url)
    limiter = RateLimiter(shared, system="polycrate-api", scope="polycrate/default", rate=1000, burst=100)
    marked = PolycrateApiClient(polycrate_api.url, MARKER, limiter=limiter)
    messages = []

    marked.report_health({"operator_version": "0.29.0"})
    cluster = str(marked.register_local_cluster(polycrate_api.workspace_id, "my-workspace").id)
    marked.endpoints.ensure(endpoint(cluster))
    for fault in ({"rate_limit": {"count": 1, "retry_after": 1}}, {"error_rate": 1.0, "error_status": 502}):
        polycrate_api.set_faults(**fault)
        with pytest.raises(TransientError) as failure:
            marked.endpoints.ensure(endpoint(cluster))
        messages.append(str(failure.value))
        polycrate_api.set_faults(error_rate=0.0)
    with pytest.raises(PermanentError) as refused:
        PolycrateApiClient(polycrate_api.url, f"{MARKER}-revoked").report_health({"operator_version": "x"})
    messages.append(str(refused.value))
    marked.close()

    assert "/api/v1/endpoints/" in caplog.text  # urllib3 and the emulator did log every request
    assert MARKER not in caplog.text
    assert not [m for m in messages if MARKER in m]
    assert not [k for k in shared.scan_iter() if MARKER.encode() in k]
    shared.close()
