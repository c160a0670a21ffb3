"""The contract checker: what the official specs allow and refuse."""

import pytest

from emulators.contract import ApiContract


@pytest.fixture(scope="module")
def harbor() -> ApiContract:
    return ApiContract.from_file("harbor-v2.0-swagger.yaml")


@pytest.fixture(scope="module")
def keycloak() -> ApiContract:
    return ApiContract.from_file("keycloak-26.6-admin-openapi.json")


def test_valid_harbor_project_creation_passes(harbor):
    body = {"project_name": "acme", "metadata": {"public": "false"}, "storage_limit": 53687091200}
    assert harbor.validate_request("POST", "/api/v2.0/projects", body=body, has_body=True) == []


def test_harbor_public_flag_must_be_a_string(harbor):
    body = {"project_name": "acme", "metadata": {"public": False}}
    problems = harbor.validate_request("POST", "/api/v2.0/projects", body=body, has_body=True)
    assert problems and "metadata.public" in problems[0]


def test_unknown_query_parameter_is_a_violation(harbor):
    problems = harbor.validate_request("GET", "/api/v2.0/projects", query={"nmae": ["acme"]})
    assert problems == ["GET /projects (listProjects): query parameter 'nmae' is not in the spec"]


def test_mistyped_query_parameter_is_a_violation(harbor):
    problems = harbor.validate_request("GET", "/api/v2.0/projects", query={"page": ["first"]})
    assert any("'page'" in p for p in problems)


def test_unknown_path_and_method_are_violations(harbor):
    assert "path not in the spec" in harbor.validate_request("GET", "/api/v2.0/nothing-here")[0]
    assert "method not in the spec" in harbor.validate_request("PATCH", "/api/v2.0/projects/acme")[0]


def test_literal_segments_win_over_parameters(keycloak):
    op, params = keycloak.match("GET", "/admin/realms/acme/groups/count")
    assert op.template == "/admin/realms/{realm}/groups/count"
    assert params == {"realm": "acme"}


def test_openapi3_request_body_is_checked(keycloak):
    ok = keycloak.validate_request(
        "POST", "/admin/realms/acme/groups", body={"name": "g", "attributes": {"a": ["b"]}}, has_body=True
    )
    bad = keycloak.validate_request(
        "POST", "/admin/realms/acme/groups", body={"attributes": {"a": "b"}}, has_body=True
    )
    assert ok == []
    assert any("attributes.a" in p for p in bad)


def test_response_with_undeclared_status_or_wrong_field_type_is_a_violation(harbor):
    assert harbor.validate_response("DELETE", "/api/v2.0/projects/x", 418, None, has_body=False)
    problems = harbor.validate_response(
        "GET", "/api/v2.0/projects/x", 200, {"project_id": "7"}, has_body=True
    )
    assert any("project_id" in p for p in problems)
