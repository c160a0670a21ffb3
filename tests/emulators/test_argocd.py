"""The Argo CD emulator answers like argocd-server, and every answer conforms to Argo CD's swagger."""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import quote

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

from emulators.argocd import ArgocdEmulator
from emulators.contract import SPEC_DIR
from tests.fixtures.argocd import fail_on_violations, take_violations
from tests.fixtures.emulation import CONFORMANCE_EXAMPLES

ADMIN_POLICY = "p, proj:acme:admin, applications, *, acme/*, allow"


def api(argocd: ArgocdEmulator, method: str, path: str, **kwargs: Any) -> requests.Response:
    headers = {"Authorization": f"Bearer {argocd.token}", **kwargs.pop("headers", {})}
    return requests.request(method, f"{argocd.url}{path}", headers=headers, timeout=5, **kwargs)


def project_body(name: str = "acme", **spec: Any) -> dict[str, Any]:
    spec = spec or {
        "sourceRepos": ["https://gitlab.example.com/acme/*"],
        "roles": [{"name": "admin", "policies": [ADMIN_POLICY], "groups": ["acme-admins"]}],
    }
    return {"metadata": {"name": name}, "spec": spec}


def cluster_url(server: str) -> str:
    return f"/api/v1/clusters/{quote(server, safe='')}"


# --- authentication -----------------------------------------------------------------------------


def test_request_without_token_is_unauthenticated_in_grpc_gateway_shape(argocd):
    response = requests.get(f"{argocd.url}/api/v1/projects", timeout=5)
    assert response.status_code == 401
    assert response.json() == {
        "error": "no session information",
        "code": 16,
        "message": "no session information",
        "details": [],
    }


def test_session_login_issues_a_working_bearer_token(argocd):
    login = requests.post(
        f"{argocd.url}/api/v1/session",
        json={"username": argocd.username, "password": argocd.password},
        timeout=5,
    )
    token = login.json()["token"]
    listing = requests.get(
        f"{argocd.url}/api/v1/projects", headers={"Authorization": f"Bearer {token}"}, timeout=5
    )
    assert listing.status_code == 200
    assert token.count(".") == 2  # a JWT, like argocd-server's


def test_session_login_with_a_wrong_password_is_refused(argocd):
    login = requests.post(
        f"{argocd.url}/api/v1/session", json={"username": argocd.username, "password": "nope"}, timeout=5
    )
    assert (login.status_code, login.json()["code"]) == (401, 16)


def test_version_tells_anonymous_callers_only_the_version(argocd):
    anonymous = requests.get(f"{argocd.url}/api/version", timeout=5).json()
    full = api(argocd, "GET", "/api/version").json()
    assert set(anonymous) == {"Version"}
    assert {"Version", "GoVersion", "Platform"} <= set(full)


# --- projects -------------------------------------------------------------------------------------


def test_default_project_exists_and_cannot_be_deleted(argocd):
    assert api(argocd, "GET", "/api/v1/projects/default").status_code == 200
    response = api(argocd, "DELETE", "/api/v1/projects/default")
    assert (response.status_code, response.json()["code"]) == (400, 3)


def test_missing_project_is_not_found_with_the_kubernetes_message(argocd):
    response = api(argocd, "GET", "/api/v1/projects/ghost")
    assert response.status_code == 404
    assert response.json()["code"] == 5
    assert response.json()["message"] == 'appprojects.argoproj.io "ghost" not found'


def test_create_returns_the_project_with_server_owned_metadata(argocd):
    created = api(argocd, "POST", "/api/v1/projects", json={"project": project_body()}).json()
    assert created["metadata"]["namespace"] == "argocd"
    assert created["metadata"]["resourceVersion"]
    assert created["spec"]["roles"][0]["groups"] == ["acme-admins"]


def test_create_of_an_existing_project_with_equal_spec_returns_it(argocd):
    first = api(argocd, "POST", "/api/v1/projects", json={"project": project_body()}).json()
    again = api(argocd, "POST", "/api/v1/projects", json={"project": project_body()})
    assert again.status_code == 200
    assert again.json()["metadata"]["uid"] == first["metadata"]["uid"]


def test_create_of_an_existing_project_with_a_different_spec_needs_upsert(argocd):
    api(argocd, "POST", "/api/v1/projects", json={"project": project_body()})
    changed = project_body(sourceRepos=["https://other.example.com/*"])
    refused = api(argocd, "POST", "/api/v1/projects", json={"project": changed})
    upserted = api(argocd, "POST", "/api/v1/projects", json={"project": changed, "upsert": True})
    assert (refused.status_code, refused.json()["code"]) == (400, 3)
    assert "use upsert flag" in refused.json()["message"]
    assert upserted.json()["spec"] == {"sourceRepos": ["https://other.example.com/*"]}


def test_update_with_a_stale_resource_version_is_aborted_409(argocd):
    created = api(argocd, "POST", "/api/v1/projects", json={"project": project_body()}).json()
    stale = json.loads(json.dumps(created))
    created["spec"]["description"] = "first writer"
    assert api(argocd, "PUT", "/api/v1/projects/acme", json={"project": created}).status_code == 200
    stale["spec"]["description"] = "second writer"
    response = api(argocd, "PUT", "/api/v1/projects/acme", json={"project": stale})
    assert (response.status_code, response.json()["code"]) == (409, 10)
    assert "the object has been modified" in response.json()["message"]


def test_update_without_resource_version_is_invalid(argocd):
    api(argocd, "POST", "/api/v1/projects", json={"project": project_body()})
    response = api(argocd, "PUT", "/api/v1/projects/acme", json={"project": project_body()})
    assert (response.status_code, response.json()["code"]) == (400, 3)


@pytest.mark.parametrize(
    ("policy", "complaint"),
    [
        ("p, proj:acme:viewer, applications, get, acme/*, allow", "policy subject must be"),
        ("p, proj:acme:admin, applications, get, other/*, allow", "object must be of form"),
        ("p, proj:acme:admin, secrets, get, acme/*, allow", "project resource must be"),
        ("p, proj:acme:admin, applications, get, acme/*", "must be of the form"),
    ],
)
def test_project_policies_are_validated_like_argocd(argocd, policy, complaint):
    body = project_body(roles=[{"name": "admin", "policies": [policy]}])
    response = api(argocd, "POST", "/api/v1/projects", json={"project": body})
    assert response.status_code == 400
    assert complaint in response.json()["message"]


def test_policies_are_stored_normalized(argocd):
    body = project_body(
        roles=[{"name": "admin", "policies": ["p,proj:acme:admin,applications,*,acme/*,allow"]}]
    )
    created = api(argocd, "POST", "/api/v1/projects", json={"project": body}).json()
    assert created["spec"]["roles"][0]["policies"] == [ADMIN_POLICY]


def test_duplicate_role_is_already_exists_409(argocd):
    role = {"name": "admin", "policies": [ADMIN_POLICY]}
    response = api(argocd, "POST", "/api/v1/projects", json={"project": project_body(roles=[role, role])})
    assert (response.status_code, response.json()["code"]) == (409, 6)


def test_project_token_is_recorded_on_the_role_and_authenticates(argocd):
    api(argocd, "POST", "/api/v1/projects", json={"project": project_body()})
    issued = api(
        argocd, "POST", "/api/v1/projects/acme/roles/admin/token", json={"project": "acme", "role": "admin"}
    ).json()
    project = api(argocd, "GET", "/api/v1/projects/acme").json()
    assert len(project["spec"]["roles"][0]["jwtTokens"]) == 1
    assert project["status"]["jwtTokensByRole"]["admin"]["items"][0]["id"]
    with_token = requests.get(
        f"{argocd.url}/api/v1/projects/acme",
        headers={"Authorization": f"Bearer {issued['token']}"},
        timeout=5,
    )
    assert with_token.status_code == 200


def test_delete_removes_the_project(argocd):
    api(argocd, "POST", "/api/v1/projects", json={"project": project_body()})
    assert api(argocd, "DELETE", "/api/v1/projects/acme").json() == {}
    assert api(argocd, "GET", "/api/v1/projects/acme").status_code == 404


# --- clusters -------------------------------------------------------------------------------------

SERVER = "https://api.prod.example.com:6443"


def register(argocd: ArgocdEmulator, **extra: Any) -> requests.Response:
    cluster = {"server": SERVER, "name": "prod", "config": {"bearerToken": "sa-token"}, **extra}
    return api(argocd, "POST", "/api/v1/clusters", json=cluster)


def test_registered_cluster_never_shows_its_credentials(argocd):
    register(
        argocd, config={"bearerToken": "sa-token", "tlsClientConfig": {"keyData": "a2V5", "caData": "Y2E="}}
    )
    shown = api(argocd, "GET", cluster_url(SERVER), params={"id.type": "url"}).json()
    assert shown["config"] == {"tlsClientConfig": {"caData": "Y2E="}}
    assert shown["connectionState"]["status"] == "Successful"
    assert argocd.clusters[SERVER]["config"]["bearerToken"] == "sa-token"


def test_cluster_is_found_by_name_and_in_filtered_lists(argocd):
    register(argocd)
    by_name = api(argocd, "GET", "/api/v1/clusters/prod", params={"id.type": "name"})
    listing = api(argocd, "GET", "/api/v1/clusters", params={"server": SERVER}).json()
    assert by_name.json()["server"] == SERVER
    assert [c["name"] for c in listing["items"]] == ["prod"]


def test_unknown_cluster_is_permission_denied_not_not_found(argocd):
    response = api(argocd, "GET", cluster_url("https://nowhere:6443"), params={"id.type": "url"})
    assert response.status_code == 403
    assert response.json()["message"] == "permission denied"


def test_cluster_create_with_a_different_spec_needs_upsert(argocd):
    register(argocd)
    refused = register(argocd, name="renamed")
    upserted = api(
        argocd,
        "POST",
        "/api/v1/clusters",
        params={"upsert": "true"},
        json={"server": SERVER, "name": "renamed"},
    )
    assert (refused.status_code, refused.json()["code"]) == (400, 3)
    assert upserted.json()["name"] == "renamed"


def test_cluster_update_with_updated_fields_changes_only_those(argocd):
    register(argocd, namespaces=["apps"])
    api(
        argocd,
        "PUT",
        cluster_url(SERVER),
        params={"id.type": "url", "updatedFields": "name"},
        json={"server": SERVER, "name": "renamed", "namespaces": ["other"]},
    )
    stored = argocd.clusters[SERVER]
    assert (stored["name"], stored["namespaces"], stored["config"]["bearerToken"]) == (
        "renamed",
        ["apps"],
        "sa-token",
    )


def test_cluster_delete_then_delete_again_is_permission_denied(argocd):
    register(argocd)
    assert api(argocd, "DELETE", cluster_url(SERVER), params={"id.type": "url"}).status_code == 200
    assert api(argocd, "DELETE", cluster_url(SERVER), params={"id.type": "url"}).status_code == 403


def test_detailed_project_lists_the_clusters_scoped_to_it(argocd):
    api(argocd, "POST", "/api/v1/projects", json={"project": project_body()})
    register(argocd, project="acme")
    detailed = api(argocd, "GET", "/api/v1/projects/acme/detailed").json()
    assert detailed["project"]["metadata"]["name"] == "acme"
    assert [c["server"] for c in detailed["clusters"]] == [SERVER]


# --- what the UI and the CLI ask first ---------------------------------------------------------------


def test_userinfo_names_the_logged_in_subject(argocd):
    assert api(argocd, "GET", "/api/v1/session/userinfo").json() == {
        "loggedIn": True,
        "username": "admin",
        "iss": "argocd",
    }


def test_userinfo_of_a_project_token_names_the_role(argocd):
    api(argocd, "POST", "/api/v1/projects", json={"project": project_body()})
    issued = api(
        argocd, "POST", "/api/v1/projects/acme/roles/admin/token", json={"project": "acme", "role": "admin"}
    ).json()
    info = requests.get(
        f"{argocd.url}/api/v1/session/userinfo",
        headers={"Authorization": f"Bearer {issued['token']}"},
        timeout=5,
    )
    assert info.json()["username"] == "proj:acme:admin"


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer not-a-session"}])
def test_userinfo_without_a_valid_session_is_an_empty_answer_not_an_error(argocd, headers):
    response = requests.get(f"{argocd.url}/api/v1/session/userinfo", headers=headers, timeout=5)
    assert (response.status_code, response.json()) == (200, {})


def test_settings_show_anonymous_callers_less_than_logged_in_ones(argocd):
    anonymous = requests.get(f"{argocd.url}/api/v1/settings", timeout=5).json()
    logged_in = api(argocd, "GET", "/api/v1/settings").json()
    assert (anonymous["url"], anonymous["appLabelKey"]) == (argocd.url, "app.kubernetes.io/instance")
    assert "controllerNamespace" not in anonymous and "passwordPattern" not in anonymous
    assert (logged_in["controllerNamespace"], logged_in["trackingMethod"]) == ("argocd", "annotation")


def test_application_list_is_empty_whatever_the_filters_and_needs_a_session(argocd):
    filters = {"projects": ["acme", "default"], "selector": "team=a", "repo": "https://git.example.com/x"}
    listing = api(argocd, "GET", "/api/v1/applications", params=filters)
    assert (listing.status_code, listing.json()["items"]) == (200, [])
    assert listing.json()["metadata"]["resourceVersion"]
    assert requests.get(f"{argocd.url}/api/v1/applications", timeout=5).status_code == 401


# --- the contract ---------------------------------------------------------------------------------


def test_request_off_the_spec_is_refused_and_recorded(argocd):
    response = api(argocd, "GET", "/api/v1/projects", params={"limit": "5"})
    assert response.status_code == 400
    assert take_violations(argocd)[0]["problems"] == [
        "GET /api/v1/projects (ProjectService_List): query parameter 'limit' is not in the spec"
    ]


def test_injected_429_uses_the_grpc_resource_exhausted_shape(argocd):
    argocd.set_faults(rate_limit={"count": 1, "retry_after": 3})
    response = api(argocd, "GET", "/api/v1/projects")
    assert (response.status_code, response.headers["Retry-After"], response.json()["code"]) == (429, "3", 8)


IMPLEMENTED_OPERATIONS = [
    "VersionService_Version",
    "SessionService_Create",
    "SessionService_GetUserInfo",
    "SettingsService_Get",
    "ApplicationService_List",
    "ProjectService_List",
    "ProjectService_Create",
    "ProjectService_Get",
    "ProjectService_GetDetailedProject",
    "ProjectService_Update",
    "ProjectService_Delete",
    "ProjectService_CreateToken",
    "ClusterService_List",
    "ClusterService_Create",
    "ClusterService_Get",
    "ClusterService_Update",
    "ClusterService_Delete",
]


def _without_dotted_path_names(document: dict[str, Any]) -> dict[str, Any]:
    """Rename path parameters like `{id.value}` to `{id_value}`.

    Schemathesis formats path templates with str.format, which reads a dot as attribute access;
    the rename changes no URL, only the placeholder's name.
    """
    renamed_paths = {}
    for template, item in document["paths"].items():
        for operation in item.values():
            for parameter in operation.get("parameters", []) if isinstance(operation, dict) else []:
                if parameter.get("in") == "path":
                    parameter["name"] = parameter["name"].replace(".", "_")
        renamed_paths[re.sub(r"\{([^}]+)\}", lambda m: "{" + m[1].replace(".", "_") + "}", template)] = item
    return {**document, "paths": renamed_paths}


conformance_schema = schemathesis.openapi.from_dict(
    _without_dotted_path_names(json.loads((SPEC_DIR / "argocd-swagger.json").read_text()))
).include(operation_id=IMPLEMENTED_OPERATIONS)
conformance_schema.config.phases.update(phases=["examples", "fuzzing"])
conformance_schema.config.generation.update(
    modes=[schemathesis.GenerationMode.POSITIVE],
    max_examples=CONFORMANCE_EXAMPLES,
    deterministic=True,
    allow_x00=False,
)


@conformance_schema.parametrize()
def test_every_answer_conforms_to_the_argocd_swagger(case, argocd_server):
    # Hypothesis calls this many times per operation, so violations are checked per request
    # here; answers for existing objects are checked the same way in the tests above.
    response = case.call(
        base_url=argocd_server.url, headers={"Authorization": f"Bearer {argocd_server.token}"}
    )
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
    fail_on_violations(argocd_server)
