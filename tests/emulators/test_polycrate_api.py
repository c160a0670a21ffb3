"""The Polycrate API emulator behaves like a DRF service and conforms to our polycrate-api.yaml."""

from __future__ import annotations

from typing import Any

import pytest
import requests
import schemathesis
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from emulators.contract import SPEC_DIR
from emulators.polycrate_api import PolycrateApiEmulator
from tests.fixtures.emulation import CONFORMANCE_EXAMPLES
from tests.fixtures.polycrate_api import fail_on_violations, take_violations


def api(emulator: PolycrateApiEmulator, method: str, path: str, *, token: str | None = None, **kwargs: Any):
    headers = {"Authorization": f"Token {token or emulator.token}"}
    return requests.request(method, f"{emulator.url}{path}", headers=headers, timeout=5, **kwargs)


def new_cluster(emulator: PolycrateApiEmulator, name: str = "production") -> str:
    return api(emulator, "POST", "/api/v1/clusters/", json={"name": name}).json()["id"]


def new_host(emulator: PolycrateApiEmulator, cluster: str, name: str) -> requests.Response:
    return api(emulator, "POST", "/api/v1/hosts/", json={"cluster": cluster, "name": name, "hostname": name})


def test_health_report_answers_the_tokens_workspace_and_organization(polycrate_api):
    answer = api(
        polycrate_api, "POST", "/api/v1/operator/health/", json={"operator_version": "0.29.0"}
    ).json()
    assert (answer["workspace_id"], answer["workspace_name"]) == (polycrate_api.workspace_id, "production")
    assert (answer["organization_id"], answer["organization_name"]) == (
        polycrate_api.organization_id,
        "acme-corp",
    )
    assert answer["cluster_id"] is None
    assert polycrate_api.health_reports[0]["operator_version"] == "0.29.0"


def test_missing_and_invalid_tokens_are_answered_like_drf(polycrate_api):
    missing = requests.get(f"{polycrate_api.url}/api/v1/clusters/", timeout=5)
    bearer = requests.get(
        f"{polycrate_api.url}/api/v1/clusters/",
        headers={"Authorization": f"Bearer {polycrate_api.token}"},
        timeout=5,
    )
    invalid = api(polycrate_api, "GET", "/api/v1/clusters/", token="wrong")
    assert missing.json() == {"detail": "Authentication credentials were not provided."}
    assert missing.headers["WWW-Authenticate"] == "Token"
    assert bearer.status_code == 401
    assert (invalid.status_code, invalid.json()) == (401, {"detail": "Invalid token."})


def test_created_object_has_every_declared_field_with_defaults(polycrate_api):
    cluster = new_cluster(polycrate_api)
    host = new_host(polycrate_api, cluster, "node-1")
    assert host.status_code == 201
    assert host.json()["workspace"] == polycrate_api.workspace_id
    assert host.json()["default_ipv4"] is None
    endpoint = api(
        polycrate_api,
        "POST",
        "/api/v1/endpoints/",
        json={
            "cluster": cluster,
            "namespace": "production",
            "name": "app-example-com",
            "remote_address": "app.example.com",
            "spec": {"http": {"path": "/api/health"}},
        },
    ).json()
    assert (endpoint["remote_port"], endpoint["tls"], endpoint["interval"], endpoint["timeout"]) == (
        443,
        True,
        60,
        30,
    )


def test_duplicate_natural_key_is_a_non_field_error(polycrate_api):
    cluster = new_cluster(polycrate_api)
    new_host(polycrate_api, cluster, "node-1")
    duplicate = new_host(polycrate_api, cluster, "node-1")
    assert duplicate.status_code == 400
    assert duplicate.json() == {"non_field_errors": ["The fields cluster, name must make a unique set."]}


def test_unknown_cluster_reference_is_a_field_error(polycrate_api):
    response = new_host(polycrate_api, "7d4e3c7a-0000-4000-8000-000000000000", "node-1")
    assert response.status_code == 400
    assert response.json()["cluster"] == [
        'Invalid pk "7d4e3c7a-0000-4000-8000-000000000000" - object does not exist.'
    ]


def test_lists_are_paginated_with_absolute_next_and_previous_links(polycrate_api):
    polycrate_api.page_size = 2
    cluster = new_cluster(polycrate_api)
    for index in range(5):
        new_host(polycrate_api, cluster, f"node-{index}")
    first = api(polycrate_api, "GET", "/api/v1/hosts/", params={"cluster": cluster}).json()
    second = requests.get(
        first["next"], headers={"Authorization": f"Token {polycrate_api.token}"}, timeout=5
    ).json()
    assert (first["count"], len(first["results"]), first["previous"]) == (5, 2, None)
    assert first["next"] == f"{polycrate_api.url}/api/v1/hosts/?cluster={cluster}&page=2"
    assert second["previous"] == f"{polycrate_api.url}/api/v1/hosts/?cluster={cluster}"
    assert [h["name"] for h in second["results"]] == ["node-2", "node-3"]


def test_page_past_the_end_is_invalid_page_404(polycrate_api):
    response = api(polycrate_api, "GET", "/api/v1/hosts/", params={"page": 2})
    assert (response.status_code, response.json()) == (404, {"detail": "Invalid page."})


def test_malformed_uuid_filter_is_a_field_error(polycrate_api):
    response = api(polycrate_api, "GET", "/api/v1/hosts/", params={"cluster": "not-a-uuid"})
    assert (response.status_code, response.json()) == (400, {"cluster": ["Enter a valid UUID."]})


def test_patch_changes_only_the_sent_fields(polycrate_api):
    cluster = new_cluster(polycrate_api)
    host = new_host(polycrate_api, cluster, "node-1").json()
    patched = api(
        polycrate_api, "PATCH", f"/api/v1/hosts/{host['id']}/", json={"resource_cpu_cores": 8}
    ).json()
    assert (patched["resource_cpu_cores"], patched["hostname"]) == (8, "node-1")
    assert patched["updated_at"] >= host["updated_at"]


def test_delete_answers_204_and_a_cluster_takes_its_discoveries_along(polycrate_api):
    cluster = new_cluster(polycrate_api)
    host = new_host(polycrate_api, cluster, "node-1").json()
    assert api(polycrate_api, "DELETE", f"/api/v1/clusters/{cluster}/").status_code == 204
    assert api(polycrate_api, "GET", f"/api/v1/hosts/{host['id']}/").status_code == 404


def test_other_workspaces_objects_are_invisible_but_their_blocks_are_not(polycrate_api):
    staging = polycrate_api.add_workspace("staging")
    staging_token = polycrate_api.issue_token(staging["id"])
    new_cluster(polycrate_api)
    block = api(
        polycrate_api, "POST", "/api/v1/blocks/", json={"workspace": staging["id"], "name": "nginx"}
    ).json()
    assert api(polycrate_api, "GET", "/api/v1/clusters/", token=staging_token).json()["count"] == 0
    found = api(polycrate_api, "GET", "/api/v1/blocks/", params={"workspace": staging["id"], "name": "nginx"})
    assert found.json()["results"] == [block]


def test_workspaces_are_found_by_name_and_organization_name(polycrate_api):
    polycrate_api.add_workspace("staging")
    found = api(
        polycrate_api,
        "GET",
        "/api/v1/workspaces/",
        params={"name": "staging", "organization_name": "acme-corp"},
    ).json()
    assert [w["name"] for w in found["results"]] == ["staging"]


def test_request_off_our_spec_is_refused_and_recorded(polycrate_api):
    cluster = new_cluster(polycrate_api)
    response = api(
        polycrate_api,
        "POST",
        "/api/v1/hosts/",
        json={"cluster": cluster, "name": "n", "hostname": "n", "cpu": 4},
    )
    assert response.status_code == 400
    assert (
        "Additional properties are not allowed ('cpu' was unexpected)"
        in take_violations(polycrate_api)[0]["problems"][0]
    )


conformance_schema = schemathesis.openapi.from_path(SPEC_DIR / "polycrate-api.yaml")
conformance_schema.config.phases.update(phases=["examples", "fuzzing"])
conformance_schema.config.generation.update(
    modes=[schemathesis.GenerationMode.POSITIVE],
    max_examples=CONFORMANCE_EXAMPLES,
    deterministic=True,
    allow_x00=False,
)


@pytest.fixture(scope="module")
def seeded_polycrate_api(polycrate_api_server: PolycrateApiEmulator) -> tuple[PolycrateApiEmulator, str]:
    """The emulator with a cluster for generated objects to point at."""
    polycrate_api_server.reset()
    return polycrate_api_server, new_cluster(polycrate_api_server)


def aim_at_existing_objects(case: Any, emulator: PolycrateApiEmulator, cluster: str) -> None:
    """Generated UUIDs name nothing, so point them at objects that exist to reach the success paths."""
    if isinstance(case.body, dict) and "cluster" in case.body:
        case.body["cluster"] = cluster
    family = case.path.split("/")[3]
    existing = list(emulator.objects.get(family, {}))
    if (
        "id" in (case.path_parameters or {})
        and existing
        and not (family == "clusters" and case.method == "DELETE")
    ):
        case.path_parameters["id"] = existing[0]


@conformance_schema.parametrize()
def test_every_answer_conforms_to_our_spec(case, seeded_polycrate_api):
    emulator, cluster = seeded_polycrate_api
    aim_at_existing_objects(case, emulator, cluster)
    response = case.call(base_url=emulator.url, headers={"Authorization": f"Token {emulator.token}"})
    case.validate_response(
        response,
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_headers_conformance,
            response_schema_conformance,
        ],
    )
    fail_on_violations(emulator)
