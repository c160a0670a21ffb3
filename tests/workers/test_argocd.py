"""workers.argocd against the Argo CD emulator over real HTTP: every step, every failure class."""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import requests
import yaml
from werkzeug.wrappers import Request, Response

from emulators.argocd import ArgocdEmulator
from polycrate.errors import DependencyNotFoundError, InvalidSpecError, PermanentError, TransientError
from polycrate.httppolicy import HttpPolicy
from polycrate.ratelimit import RateLimiter
from tests.fixtures.argocd import fail_on_violations, take_violations
from workers.argocd import (
    CONFIG_DIGEST_ANNOTATION,
    ArgoCDClient,
    ClusterCredentials,
    Destination,
    get_client,
    render_roles,
    resolve_destinations,
    role_groups,
)
from workers.change import Change
from workers.ownership import Owner

ROLE_TEMPLATES = {
    "admin": {
        "policies": [
            "p, proj:{project}:admin, applications, *, {project}/*, allow",
            "p, proj:{project}:admin, repositories, *, {project}/*, allow",
        ]
    },
    "developer": {
        "policies": [
            "p, proj:{project}:developer, applications, get, {project}/*, allow",
            "p, proj:{project}:developer, applications, sync, {project}/*, allow",
        ]
    },
    "viewer": {"policies": ["p, proj:{project}:viewer, applications, get, {project}/*, allow"]},
}
ORG_ROLE_BINDINGS = [
    {"role": "admin", "keycloakGroups": ["acme-corp-admins"]},
    {"role": "developer", "keycloakGroups": ["acme-corp-developers"]},
]
SERVER = "https://api.prod.example.com:6443"
CA_PEM = "-----BEGIN CERTIFICATE-----\nMIIBfakeCA\n-----END CERTIFICATE-----\n"


@pytest.fixture
def client(argocd: ArgocdEmulator) -> Iterator[ArgoCDClient]:
    argocd_client = ArgoCDClient(argocd.url, argocd.token)
    yield argocd_client
    argocd_client.close()


def acme_roles(project: str = "acme-corp") -> list:
    return render_roles(ROLE_TEMPLATES, project, role_groups(role_bindings=ORG_ROLE_BINDINGS))


def ensure_acme(client: ArgoCDClient, **overrides: Any) -> Change:
    arguments = {
        "description": "ACME Corporation",
        "source_repos": ["https://gitlab.example.com/acme-corp/*"],
        "destinations": [Destination(server="https://kubernetes.default.svc", namespace="*")],
        "roles": acme_roles(),
        **overrides,
    }
    return client.ensure_project("acme-corp", **arguments)


def writes(argocd: ArgocdEmulator) -> int:
    return sum(count for call, count in argocd.calls.items() if not call.startswith("GET "))


# --- roles and destinations, rendered from the CRs -----------------------------------------------


def test_role_templates_are_rendered_with_the_project_name_and_bound_groups():
    roles = {role.name: role for role in acme_roles()}
    assert roles["admin"].policies[0] == "p, proj:acme-corp:admin, applications, *, acme-corp/*, allow"
    assert roles["admin"].groups == ("acme-corp-admins",)
    assert roles["viewer"].groups == ()


def test_access_control_entries_bind_groups_like_role_bindings():
    groups = role_groups(
        role_bindings=[{"role": "admin", "keycloakGroups": ["a"]}],
        access_control=[
            {"keycloakGroup": "platform-admins", "role": "admin"},
            {"keycloakGroup": "a", "role": "admin"},
        ],
    )
    assert groups == {"admin": ["a", "platform-admins"]}


def test_binding_to_a_role_the_sdp_does_not_define_is_an_invalid_spec():
    with pytest.raises(InvalidSpecError, match=r"role 'ops' is bound.*defined: admin, developer, viewer"):
        render_roles(ROLE_TEMPLATES, "acme-corp", {"ops": ["acme-corp-ops"]})


def test_cluster_ref_destination_resolves_to_the_k8scluster_api_server():
    destinations = resolve_destinations(
        [
            {"server": "https://kubernetes.default.svc", "namespace": "*"},
            {"clusterRef": "prod", "namespace": "*"},
        ],
        {"prod": SERVER},
    )
    assert [d.server for d in destinations] == ["https://kubernetes.default.svc", SERVER]


def test_cluster_ref_to_a_missing_k8scluster_is_a_missing_dependency():
    with pytest.raises(DependencyNotFoundError, match='K8sCluster "staging"'):
        resolve_destinations([{"clusterRef": "staging", "namespace": "*"}], {})


# --- projects ---------------------------------------------------------------------------------------


def test_ensure_project_creates_it_with_roles_groups_repos_and_destinations(argocd, client):
    assert ensure_acme(client) == Change("created", id="acme-corp")
    spec = argocd.projects["acme-corp"]["spec"]
    assert spec["sourceRepos"] == ["https://gitlab.example.com/acme-corp/*"]
    assert spec["destinations"] == [{"server": "https://kubernetes.default.svc", "namespace": "*"}]
    assert [(r["name"], r.get("groups")) for r in spec["roles"]] == [
        ("admin", ["acme-corp-admins"]),
        ("developer", ["acme-corp-developers"]),
        ("viewer", None),
    ]


def test_ensure_project_a_second_time_changes_nothing_and_writes_nothing(argocd, client):
    ensure_acme(client)
    argocd.calls.clear()
    assert ensure_acme(client).action == "unchanged"
    assert writes(argocd) == 0


def test_an_owned_project_is_created_in_one_call_and_read_once_when_recorded(argocd, client):
    owner = Owner(uid="0b7c-uid", ref="Organization polycrate/acme-corp")
    assert ensure_acme(client, owner=owner).action == "created"
    assert dict(argocd.calls) == {"POST /api/v1/projects": 1}
    argocd.calls.clear()

    assert ensure_acme(client, owner=owner, recorded=True).action == "unchanged"
    assert dict(argocd.calls) == {"GET /api/v1/projects/{name}": 1}


def test_a_create_that_meets_a_different_unmarked_project_reads_it_and_changes_nothing(argocd, client):
    ensure_acme(client, description="made by hand")
    argocd.calls.clear()
    owner = Owner(uid="0b7c-uid", ref="Organization polycrate/acme-corp")

    with pytest.raises(PermanentError, match="already exists"):
        ensure_acme(client, owner=owner)

    assert dict(argocd.calls) == {"POST /api/v1/projects": 1, "GET /api/v1/projects/{name}": 1}
    assert client.get_project("acme-corp")["spec"]["description"] == "made by hand"


def test_ensure_project_updates_what_differs_and_keeps_what_argocd_owns(argocd, client):
    ensure_acme(client)
    token = requests.post(
        f"{argocd.url}/api/v1/projects/acme-corp/roles/admin/token",
        json={"project": "acme-corp", "role": "admin"},
        headers={"Authorization": f"Bearer {argocd.token}"},
        timeout=5,
    ).json()["token"]
    argocd.projects["acme-corp"]["spec"]["clusterResourceWhitelist"] = [{"group": "*", "kind": "Namespace"}]

    change = ensure_acme(
        client, source_repos=["https://gitlab.example.com/acme-corp/*", "https://charts.example.com"]
    )

    assert (change.action, change.detail) == ("updated", "sourceRepos")
    stored = argocd.projects["acme-corp"]
    assert stored["spec"]["sourceRepos"][1] == "https://charts.example.com"
    assert len(stored["spec"]["roles"][0]["jwtTokens"]) == 1
    assert stored["status"]["jwtTokensByRole"]["admin"]["items"]
    assert stored["spec"]["clusterResourceWhitelist"] == [{"group": "*", "kind": "Namespace"}]
    assert token in argocd.sessions


def test_ensure_project_replaces_role_groups_when_bindings_change(argocd, client):
    ensure_acme(client)
    roles = render_roles(ROLE_TEMPLATES, "acme-corp", {"admin": ["platform-admins"]})
    assert ensure_acme(client, roles=roles).action == "updated"
    groups = {r["name"]: r.get("groups") for r in argocd.projects["acme-corp"]["spec"]["roles"]}
    assert groups == {"admin": ["platform-admins"], "developer": None, "viewer": None}


class ConcurrentWriterArgocd(ArgocdEmulator):
    """Argo CD where someone else updates the project right before our first update lands."""

    def update_project(self, request: Request, name: str) -> Response:
        if not getattr(self, "_raced", False):
            self._raced = True
            with self.lock:
                self.projects[name]["spec"]["description"] = "written by someone else"
                self._bump(self.projects[name], spec_changed=True)
        return super().update_project(request, name)


def test_update_that_loses_a_race_rereads_and_converges():
    with ConcurrentWriterArgocd() as racing:
        racing_client = ArgoCDClient(racing.url, racing.token)
        ensure_acme(racing_client)
        change = ensure_acme(racing_client, description="ACME Corp.")
        racing_client.close()
        assert change.action == "updated"
        assert racing.projects["acme-corp"]["spec"]["description"] == "ACME Corp."
        assert racing.calls["PUT /api/v1/projects/{project.metadata.name}"] == 2
        fail_on_violations(racing)


def test_policy_template_for_another_role_is_a_permanent_error_with_argocds_reason(client):
    templates = {
        "developer": {"policies": ["p, proj:{project}:admin, applications, get, {project}/*, allow"]}
    }
    with pytest.raises(PermanentError, match="policy subject must be: 'proj:acme-corp:developer'") as failure:
        ensure_acme(client, roles=render_roles(templates, "acme-corp"))
    assert failure.value.status_code == 400


def test_get_project_of_a_missing_project_is_none(client):
    assert client.get_project("ghost") is None


def test_delete_project_deletes_then_reports_already_gone(argocd, client):
    ensure_acme(client)
    assert client.delete_project("acme-corp") is True
    assert client.delete_project("acme-corp") is False
    assert "acme-corp" not in argocd.projects


# --- clusters ---------------------------------------------------------------------------------------


def test_ensure_cluster_registers_it_with_the_bearer_token_and_ca(argocd, client):
    credentials = ClusterCredentials(bearer_token="sa-token", ca_pem=CA_PEM)
    assert client.ensure_cluster(SERVER, "production-cluster", credentials) == Change("created", id=SERVER)
    stored = argocd.clusters[SERVER]
    assert stored["config"]["bearerToken"] == "sa-token"
    assert base64.b64decode(stored["config"]["tlsClientConfig"]["caData"]).decode() == CA_PEM
    assert stored["labels"]["app.kubernetes.io/managed-by"] == "polycrate-operator"


def test_ensure_cluster_again_is_unchanged_although_argocd_hides_credentials(argocd, client):
    credentials = ClusterCredentials(bearer_token="sa-token", ca_pem=CA_PEM)
    client.ensure_cluster(SERVER, "production-cluster", credentials)
    argocd.calls.clear()
    assert client.ensure_cluster(SERVER, "production-cluster", credentials).action == "unchanged"
    assert writes(argocd) == 0


def test_rotated_token_updates_the_registered_credentials(argocd, client):
    client.ensure_cluster(SERVER, "production-cluster", ClusterCredentials(bearer_token="old-token"))
    digest = argocd.clusters[SERVER]["annotations"][CONFIG_DIGEST_ANNOTATION]
    change = client.ensure_cluster(SERVER, "production-cluster", ClusterCredentials(bearer_token="new-token"))
    assert change.action == "updated"
    assert argocd.clusters[SERVER]["config"]["bearerToken"] == "new-token"
    assert argocd.clusters[SERVER]["annotations"][CONFIG_DIGEST_ANNOTATION] != digest


def test_cluster_registered_by_hand_is_taken_over_with_our_credentials(argocd, client):
    requests.post(
        f"{argocd.url}/api/v1/clusters",
        json={"server": SERVER, "name": "manual", "config": {"bearerToken": "someone-elses"}},
        headers={"Authorization": f"Bearer {argocd.token}"},
        timeout=5,
    )
    change = client.ensure_cluster(SERVER, "production-cluster", ClusterCredentials(bearer_token="sa-token"))
    assert change.action == "updated"
    assert (argocd.clusters[SERVER]["name"], argocd.clusters[SERVER]["config"]["bearerToken"]) == (
        "production-cluster",
        "sa-token",
    )


def kubeconfig(user: dict[str, Any], **cluster: Any) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "current-context": "prod",
            "clusters": [{"name": "prod", "cluster": {"server": SERVER, **cluster}}],
            "users": [{"name": "admin", "user": user}],
            "contexts": [{"name": "prod", "context": {"cluster": "prod", "user": "admin"}}],
        }
    )


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_kubeconfig_client_certificates_become_the_cluster_tls_config(argocd, client):
    document = kubeconfig(
        {"client-certificate-data": b64("CERT"), "client-key-data": b64("KEY")},
        **{"certificate-authority-data": b64(CA_PEM)},
    )
    server, credentials = ClusterCredentials.from_kubeconfig(document)
    client.ensure_cluster(server, "production-cluster", credentials)
    tls = argocd.clusters[SERVER]["config"]["tlsClientConfig"]
    assert (tls["certData"], tls["keyData"], tls["caData"]) == (b64("CERT"), b64("KEY"), b64(CA_PEM))


def test_kubeconfig_with_exec_credentials_is_an_invalid_spec():
    with pytest.raises(InvalidSpecError, match="exec/auth-provider"):
        ClusterCredentials.from_kubeconfig(kubeconfig({"exec": {"command": "aws"}}))


def test_kubeconfig_parse_error_names_the_line_but_not_the_content():
    with pytest.raises(InvalidSpecError) as failure:
        ClusterCredentials.from_kubeconfig("users:\n  - token: hunter2-secret\n  bad: [unclosed\n")
    assert "line" in str(failure.value)
    assert "hunter2" not in str(failure.value)


def test_delete_cluster_removes_the_registration_then_reports_already_gone(argocd, client):
    client.ensure_cluster(SERVER, "production-cluster", ClusterCredentials(bearer_token="sa-token"))
    assert client.delete_cluster(SERVER) is True
    assert client.delete_cluster(SERVER) is False
    assert SERVER not in argocd.clusters


# --- failures and their classification ----------------------------------------------------------------


def test_wrong_token_is_a_permanent_unauthorized_error(argocd):
    bad = ArgoCDClient(argocd.url, "not-a-valid-token")
    with pytest.raises(PermanentError, match="HTTP 401.*invalid session") as failure:
        bad.get_project("acme-corp")
    bad.close()
    assert (failure.value.status_code, failure.value.reason) == (401, "Unauthorized")


def test_429_is_transient_and_carries_the_retry_after_hint(argocd, client):
    argocd.set_faults(rate_limit={"count": 1, "retry_after": 7})
    with pytest.raises(TransientError) as failure:
        client.get_project("acme-corp")
    assert (failure.value.status_code, failure.value.retry_after) == (429, 7.0)


@pytest.mark.parametrize("status", [500, 502, 503])
def test_server_errors_are_transient(argocd, client, status):
    argocd.set_faults(error_rate=1.0, error_status=status)
    with pytest.raises(TransientError, match=f'Argo CD: get project "acme-corp": HTTP {status}'):
        ensure_acme(client)


def test_outage_window_is_transient_and_later_converges(argocd, client):
    argocd.set_faults(outage_seconds=0.2)
    with pytest.raises(TransientError):
        ensure_acme(client)
    time.sleep(0.25)
    assert ensure_acme(client).action == "created"


def test_slow_answer_beyond_the_read_timeout_is_transient(argocd):
    argocd.set_faults(slow_path="^/api/v1/projects", slow_ms=600)
    impatient = ArgoCDClient(argocd.url, argocd.token, policy=HttpPolicy(read_timeout=0.2))
    with pytest.raises(TransientError, match="timed out"):
        impatient.get_project("acme-corp")
    impatient.close()


def test_unreachable_server_is_transient():
    nowhere = ArgoCDClient("http://127.0.0.1:9", "token", policy=HttpPolicy(connect_timeout=0.5))
    with pytest.raises(TransientError, match="cannot connect"):
        nowhere.version()
    nowhere.close()


def test_a_request_the_swagger_does_not_allow_is_caught_by_the_validator(argocd):
    response = requests.get(
        f"{argocd.url}/api/v1/clusters",
        params={"project": "acme-corp"},
        headers={"Authorization": f"Bearer {argocd.token}"},
        timeout=5,
    )
    assert response.status_code == 400
    assert take_violations(argocd)[0]["problems"] == [
        "GET /api/v1/clusters (ClusterService_List): query parameter 'project' is not in the spec"
    ]


# --- scale manners ----------------------------------------------------------------------------------------


def test_two_workers_share_one_request_budget_per_sdp(argocd, redis_url):
    shared = redis.Redis.from_url(redis_url)
    workers = [
        ArgoCDClient(
            argocd.url,
            argocd.token,
            limiter=RateLimiter(shared, system="argocd", scope="polycrate/production", rate=20, burst=1),
        )
        for _ in range(2)
    ]
    started = time.monotonic()
    for i in range(10):
        workers[i % 2].get_project("acme-corp")
    elapsed = time.monotonic() - started
    for worker in workers:
        worker.close()
    # GCRA lets the first two through at once; the other 8 wait one 50 ms interval each.
    assert elapsed >= 0.38
    assert shared.keys("polycrate:ratelimit:argocd:*") == [b"polycrate:ratelimit:argocd:polycrate/production"]
    shared.close()


def test_one_client_per_sdp_and_token_is_reused_and_a_rotated_token_replaces_it(argocd):
    first = get_client("polycrate/production", argocd.url, argocd.token)
    again = get_client("polycrate/production", argocd.url + "/", argocd.token)
    other_sdp = get_client("polycrate/staging", argocd.url, argocd.token)
    rotated = get_client("polycrate/production", argocd.url, "rotated-token")
    assert first is again
    assert other_sdp is not first
    assert rotated is not first


def test_empty_token_is_refused_before_any_request(argocd):
    with pytest.raises(PermanentError, match="token is empty"):
        get_client("polycrate/production", argocd.url, "")


# --- no secret leaves the process ---------------------------------------------------------------------------

MARKER = "MARKER-7f3c-secret"


def test_no_secret_appears_in_logs_errors_or_redis_keys(argocd, redis_url, caplog):
    caplog.set_level(logging.DEBUG)
    argocd.sessions[f"{MARKER}-api-token"] = "admin"
    shared = redis.Redis.from_url(redis_url)
    limiter = RateLimiter(shared, system="argocd", scope="polycrate/production", rate=1000, burst=100)
    client = ArgoCDClient(argocd.url, f"{MARKER}-api-token", limiter=limiter)
    credentials = ClusterCredentials(
        bearer_token=f"{MARKER}-sa-token", client_key_pem=f"{MARKER}-key", password=f"{MARKER}-pw"
    )
    messages = [repr(credentials)]

    ensure_acme(client)
    client.ensure_cluster(SERVER, "production-cluster", credentials)
    client.ensure_cluster(SERVER, "production-cluster", credentials)
    for fault in ({"rate_limit": {"count": 1, "retry_after": 1}}, {"error_rate": 1.0, "error_status": 500}):
        argocd.set_faults(**fault)
        with pytest.raises(TransientError) as failure:
            client.ensure_cluster(SERVER, "production-cluster", credentials)
        messages.append(str(failure.value))
        argocd.set_faults(error_rate=0.0)
    with pytest.raises(PermanentError) as refused:
        ArgoCDClient(argocd.url, f"{MARKER}-wrong-token").get_project("acme-corp")
    messages.append(str(refused.value))
    client.delete_cluster(SERVER)
    client.close()

    assert "/api/v1/clusters" in caplog.text  # urllib3 and the emulator did log every request
    assert MARKER not in caplog.text
    assert not [m for m in messages if MARKER in m]
    assert not [k for k in shared.scan_iter() if MARKER.encode() in k]
    shared.close()
