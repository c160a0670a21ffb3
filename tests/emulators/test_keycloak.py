"""The Keycloak emulator behaves like Keycloak 26.6 and answers only what its spec allows.

Plain HTTP (requests) against the session's emulator: the token endpoint and its grants, token
expiry and rights, the admin operations with Keycloak's status codes and error bodies, and a
property-based (schemathesis) run of every emulated operation against the official spec.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import hypothesis.strategies as st
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from keycloak import KeycloakAdmin, KeycloakDeleteError, KeycloakGetError, KeycloakPutError
from schemathesis import GenerationMode
from schemathesis.checks import CheckContext, not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
)

from emulators.contract import SPEC_DIR, ApiContract
from emulators.keycloak import ADMIN_CLI, MASTER_REALM, UNDECLARED_ERROR_STATUSES, KeycloakEmulator
from tests.fixtures.emulation import CONFORMANCE_EXAMPLES

TIMEOUT = 5


def token_for(emulator: KeycloakEmulator, realm: str | None = None, **form: str) -> requests.Response:
    realm = realm or emulator.realm
    body = form or {
        "grant_type": "client_credentials",
        "client_id": emulator.client_id,
        "client_secret": emulator.client_secret,
    }
    return requests.post(
        f"{emulator.url}/realms/{realm}/protocol/openid-connect/token", data=body, timeout=TIMEOUT
    )


class Admin:
    """A tiny admin-API caller with a service-account token, for readable tests."""

    def __init__(self, emulator: KeycloakEmulator, realm: str | None = None) -> None:
        self.base = f"{emulator.url}/admin/realms/{realm or emulator.realm}"
        token = token_for(emulator, realm).json()["access_token"]
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {token}"

    def call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        return self.session.request(method, self.base + path, timeout=TIMEOUT, **kwargs)

    def create_group(self, name: str, parent: str | None = None, **extra: Any) -> str:
        path = f"/groups/{parent}/children" if parent else "/groups"
        response = self.call("POST", path, json={"name": name, **extra})
        assert response.status_code == 201, response.text
        return response.headers["Location"].rsplit("/", 1)[1]

    def create_user(self, username: str, **extra: Any) -> str:
        response = self.call("POST", "/users", json={"username": username, "enabled": True, **extra})
        assert response.status_code == 201, response.text
        return response.headers["Location"].rsplit("/", 1)[1]


@pytest.fixture
def admin(keycloak_emulator: KeycloakEmulator) -> Admin:
    return Admin(keycloak_emulator)


# -- the token endpoint ---------------------------------------------------------------------------


def test_client_credentials_grant_issues_a_bearer_token_with_its_lifetime(keycloak_emulator):
    response = token_for(keycloak_emulator)
    body = response.json()
    assert response.status_code == 200
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 300
    assert "refresh_token" not in body
    assert response.headers["Cache-Control"] == "no-store"


def test_client_may_authenticate_with_http_basic(keycloak_emulator):
    response = requests.post(
        f"{keycloak_emulator.url}/realms/{keycloak_emulator.realm}/protocol/openid-connect/token",
        data={"grant_type": "client_credentials"},
        auth=(keycloak_emulator.client_id, keycloak_emulator.client_secret),
        timeout=TIMEOUT,
    )
    assert response.status_code == 200


def test_wrong_client_secret_is_refused_like_keycloak(keycloak_emulator):
    response = token_for(
        keycloak_emulator,
        grant_type="client_credentials",
        client_id=keycloak_emulator.client_id,
        client_secret="no",
    )
    assert response.status_code == 401
    assert response.json() == {
        "error": "unauthorized_client",
        "error_description": "Invalid client or Invalid client credentials",
    }


def test_missing_grant_type_and_unknown_realm_are_refused(keycloak_emulator):
    assert token_for(keycloak_emulator, client_id="x").json()["error_description"] == (
        "Missing form parameter: grant_type"
    )
    assert token_for(keycloak_emulator, realm="nowhere").status_code == 404


def test_password_grant_gives_master_admin_a_refreshable_token(keycloak_emulator):
    login = token_for(
        keycloak_emulator,
        realm=MASTER_REALM,
        grant_type="password",
        client_id="admin-cli",
        username=keycloak_emulator.admin_username,
        password=keycloak_emulator.admin_password,
    ).json()
    refreshed = token_for(
        keycloak_emulator,
        realm=MASTER_REALM,
        grant_type="refresh_token",
        client_id="admin-cli",
        refresh_token=login["refresh_token"],
    )
    assert refreshed.status_code == 200
    groups = requests.get(
        f"{keycloak_emulator.url}/admin/realms/{keycloak_emulator.realm}/groups",
        headers={"Authorization": f"Bearer {refreshed.json()['access_token']}"},
        timeout=TIMEOUT,
    )
    assert groups.status_code == 200


def test_wrong_password_is_invalid_grant(keycloak_emulator):
    response = token_for(
        keycloak_emulator,
        realm=MASTER_REALM,
        grant_type="password",
        client_id="admin-cli",
        username=keycloak_emulator.admin_username,
        password="wrong",
    )
    assert (response.status_code, response.json()["error"]) == (401, "invalid_grant")


def test_admin_api_without_a_valid_token_answers_401(keycloak_emulator):
    url = f"{keycloak_emulator.url}/admin/realms/{keycloak_emulator.realm}/groups"
    missing = requests.get(url, timeout=TIMEOUT)
    unknown = requests.get(url, headers={"Authorization": "Bearer made-up"}, timeout=TIMEOUT)
    assert (missing.status_code, unknown.status_code) == (401, 401)
    assert unknown.json() == {"error": "HTTP 401 Unauthorized"}


def test_expired_token_is_refused():
    with KeycloakEmulator(token_lifetime=0.2) as short_lived:
        token = token_for(short_lived).json()["access_token"]
        url = f"{short_lived.url}/admin/realms/{short_lived.realm}/groups"
        headers = {"Authorization": f"Bearer {token}"}
        assert requests.get(url, headers=headers, timeout=TIMEOUT).status_code == 200
        time.sleep(0.25)
        assert requests.get(url, headers=headers, timeout=TIMEOUT).status_code == 401


def test_revoked_tokens_are_refused(keycloak_emulator, admin):
    requests.delete(f"{keycloak_emulator.url}/_emulator/tokens", timeout=TIMEOUT)
    assert admin.call("GET", "/groups").status_code == 401


def test_service_account_without_realm_rights_gets_403(keycloak_emulator):
    keycloak_emulator.add_client(keycloak_emulator.realm, "reader", "reader-secret", realm_admin=False)
    token = token_for(
        keycloak_emulator, grant_type="client_credentials", client_id="reader", client_secret="reader-secret"
    ).json()["access_token"]
    response = requests.get(
        f"{keycloak_emulator.url}/admin/realms/{keycloak_emulator.realm}/groups",
        headers={"Authorization": f"Bearer {token}"},
        timeout=TIMEOUT,
    )
    assert response.status_code == 403


def test_token_of_one_realm_does_not_administer_another(keycloak_emulator, admin):
    requests.post(f"{keycloak_emulator.url}/_emulator/realms", json={"name": "other"}, timeout=TIMEOUT)
    other = admin.session.get(f"{keycloak_emulator.url}/admin/realms/other/groups", timeout=TIMEOUT)
    assert other.status_code == 401
    assert Admin(keycloak_emulator, realm="other").call("GET", "/groups").status_code == 200


# -- groups -------------------------------------------------------------------------------------


def test_creating_a_group_answers_201_with_its_location(keycloak_emulator, admin):
    response = admin.call("POST", "/groups", json={"name": "acme-corp"})
    assert response.status_code == 201
    assert response.content == b""
    group_id = response.headers["Location"].rsplit("/", 1)[1]
    assert response.headers["Location"] == (
        f"{keycloak_emulator.url}/admin/realms/{keycloak_emulator.realm}/groups/{group_id}"
    )
    assert admin.call("GET", f"/groups/{group_id}").json()["path"] == "/acme-corp"


def test_duplicate_top_level_and_sibling_names_are_409(admin):
    parent = admin.create_group("acme-corp")
    admin.create_group("acme-corp-admins", parent=parent)
    top = admin.call("POST", "/groups", json={"name": "acme-corp"})
    sibling = admin.call("POST", f"/groups/{parent}/children", json={"name": "acme-corp-admins"})
    assert (top.status_code, top.json()) == (
        409,
        {"errorMessage": "Top level group named 'acme-corp' already exists."},
    )
    assert sibling.json() == {"errorMessage": "Sibling group named 'acme-corp-admins' already exists."}


def test_group_without_name_is_400(admin):
    response = admin.call("POST", "/groups", json={"attributes": {"a": ["b"]}})
    assert (response.status_code, response.json()) == (400, {"errorMessage": "Group name is missing"})


def test_group_by_path_finds_nested_groups_and_404s_like_keycloak(admin):
    parent = admin.create_group("acme-corp")
    child = admin.create_group("acme-corp-admins", parent=parent)
    found = admin.call("GET", "/group-by-path/acme-corp/acme-corp-admins").json()
    missing = admin.call("GET", "/group-by-path/acme-corp/nobody")
    assert (found["id"], found["parentId"], found["path"]) == (child, parent, "/acme-corp/acme-corp-admins")
    assert (missing.status_code, missing.json()) == (404, {"error": "Group path does not exist"})


def test_unknown_group_id_is_404_in_keycloak_format(admin):
    response = admin.call("GET", "/groups/00000000-0000-0000-0000-000000000000")
    assert (response.status_code, response.json()) == (404, {"error": "Could not find group by id"})


def test_update_replaces_attributes_and_refuses_a_taken_name(admin):
    admin.create_group("taken")
    group = admin.create_group("acme-corp", attributes={"old": ["1"]})
    updated = admin.call("PUT", f"/groups/{group}", json={"name": "acme-corp", "attributes": {"new": ["2"]}})
    renamed = admin.call("PUT", f"/groups/{group}", json={"name": "taken"})
    assert updated.status_code == 204
    assert admin.call("GET", f"/groups/{group}").json()["attributes"] == {"new": ["2"]}
    assert renamed.status_code == 409


def test_deleting_a_group_removes_its_subgroups_and_memberships(keycloak_emulator, admin):
    parent = admin.create_group("acme-corp")
    child = admin.create_group("acme-corp-admins", parent=parent)
    user = admin.create_user("john.doe")
    admin.call("PUT", f"/users/{user}/groups/{child}")
    assert admin.call("DELETE", f"/groups/{parent}").status_code == 204
    assert admin.call("GET", f"/groups/{child}").status_code == 404
    assert admin.call("GET", f"/users/{user}/groups").json() == []


def test_group_search_returns_roots_with_the_branch_to_each_match(admin):
    acme = admin.create_group("acme-corp")
    admin.create_group("acme-corp-admins", parent=acme)
    admin.create_group("acme-corp-viewers", parent=acme)
    admin.create_group("other")
    found = admin.call("GET", "/groups", params={"search": "ADMINS"}).json()
    assert [g["name"] for g in found] == ["acme-corp"]
    assert [s["name"] for s in found[0]["subGroups"]] == ["acme-corp-admins"]
    exact = admin.call("GET", "/groups", params={"search": "acme", "exact": "true"}).json()
    assert exact == []


def test_top_level_listing_pages_and_brief_omits_attributes(admin):
    for name in ("c", "a", "b"):
        admin.create_group(name, attributes={"k": ["v"]})
    page = admin.call("GET", "/groups", params={"first": 1, "max": 1}).json()
    full = admin.call("GET", "/groups", params={"briefRepresentation": "false", "max": 1}).json()
    assert [g["name"] for g in page] == ["b"]
    assert "attributes" not in page[0]
    assert full[0]["attributes"] == {"k": ["v"]}


def test_group_attribute_query_matches_key_and_value(admin):
    admin.create_group("tagged", attributes={"tier": ["gold"]})
    admin.create_group("plain")
    found = admin.call("GET", "/groups", params={"q": "tier:gold"}).json()
    assert [g["name"] for g in found] == ["tagged"]


def test_group_count_counts_all_or_top_level(admin):
    parent = admin.create_group("acme-corp")
    admin.create_group("acme-corp-admins", parent=parent)
    assert admin.call("GET", "/groups/count").json() == {"count": 2}
    assert admin.call("GET", "/groups/count", params={"top": "true"}).json() == {"count": 1}


def test_children_default_to_pages_of_ten(admin):
    parent = admin.create_group("acme-corp")
    for index in range(12):
        admin.create_group(f"team-{index:02d}", parent=parent)
    first = admin.call("GET", f"/groups/{parent}/children").json()
    rest = admin.call("GET", f"/groups/{parent}/children", params={"first": 10, "max": 10}).json()
    assert len(first) == 10
    assert [g["name"] for g in rest] == ["team-10", "team-11"]


def test_moving_a_group_under_another_answers_204(admin):
    target = admin.create_group("target")
    moved = admin.create_group("moved")
    response = admin.call("POST", f"/groups/{target}/children", json={"id": moved, "name": "moved"})
    assert response.status_code == 204
    assert admin.call("GET", f"/groups/{moved}").json()["path"] == "/target/moved"


def test_group_members_are_paged_and_sorted_by_username(admin):
    group = admin.create_group("acme-corp")
    for name in ("carol", "alice", "bob"):
        admin.call("PUT", f"/users/{admin.create_user(name)}/groups/{group}")
    page = admin.call("GET", f"/groups/{group}/members", params={"first": 1, "max": 5}).json()
    assert [u["username"] for u in page] == ["bob", "carol"]


# -- users --------------------------------------------------------------------------------------


def test_created_user_is_lowercased_and_duplicate_is_409(admin):
    user = admin.create_user("John.Doe", email="John@Example.com")
    again = admin.call("POST", "/users", json={"username": "john.doe"})
    same_email = admin.call("POST", "/users", json={"username": "other", "email": "john@example.com"})
    fetched = admin.call("GET", f"/users/{user}").json()
    assert (fetched["username"], fetched["email"]) == ("john.doe", "john@example.com")
    assert again.json() == {"errorMessage": "User exists with same username"}
    assert same_email.json() == {"errorMessage": "User exists with same email"}


def test_user_query_matches_substrings_unless_exact(admin):
    admin.create_user("john.doe", email="john@example.com")
    admin.create_user("john.doerr", email="jd@example.com")
    loose = admin.call("GET", "/users", params={"username": "john.doe"}).json()
    exact = admin.call("GET", "/users", params={"username": "john.doe", "exact": "true"}).json()
    by_email = admin.call("GET", "/users", params={"email": "jd@example.com", "exact": "true"}).json()
    assert [u["username"] for u in loose] == ["john.doe", "john.doerr"]
    assert [u["username"] for u in exact] == ["john.doe"]
    assert [u["username"] for u in by_email] == ["john.doerr"]


def test_user_search_is_prefix_infix_or_quoted_exact(admin):
    admin.create_user("john.doe", firstName="John")
    admin.create_user("mary.john")
    prefix = admin.call("GET", "/users", params={"search": "john"}).json()
    infix = admin.call("GET", "/users", params={"search": "*john*"}).json()
    quoted = admin.call("GET", "/users", params={"search": '"mary.john"'}).json()
    assert [u["username"] for u in prefix] == ["john.doe"]
    assert [u["username"] for u in infix] == ["john.doe", "mary.john"]
    assert [u["username"] for u in quoted] == ["mary.john"]
    assert admin.call("GET", "/users/count", params={"search": "*john*"}).json() == 2


def test_unknown_user_is_404_user_not_found(admin):
    response = admin.call("GET", "/users/nobody")
    assert (response.status_code, response.json()) == (404, {"error": "User not found"})


def test_joining_and_leaving_groups(admin):
    group = admin.create_group("acme-corp")
    user = admin.create_user("john.doe")
    assert admin.call("PUT", f"/users/{user}/groups/{group}").status_code == 204
    assert admin.call("PUT", f"/users/{user}/groups/{group}").status_code == 204
    assert admin.call("GET", f"/users/{user}/groups/count").json() == {"count": 1}
    assert admin.call("DELETE", f"/users/{user}/groups/{group}").status_code == 204
    assert admin.call("GET", f"/users/{user}/groups").json() == []
    missing = admin.call("PUT", f"/users/{user}/groups/no-such-group")
    assert (missing.status_code, missing.json()) == (404, {"error": "Group not found"})


def test_user_created_with_groups_and_password_can_log_in(keycloak_emulator, admin):
    admin.create_group("acme-corp")
    user = admin.create_user(
        "jane", groups=["/acme-corp"], credentials=[{"type": "password", "value": "pw", "temporary": False}]
    )
    assert [g["path"] for g in admin.call("GET", f"/users/{user}/groups").json()] == ["/acme-corp"]
    login = token_for(
        keycloak_emulator, grant_type="password", client_id="admin-cli", username="jane", password="pw"
    )
    assert login.status_code == 200


# -- the reads and writes python-keycloak users start with ---------------------------------------


def test_master_admin_sees_every_realm_and_a_realm_account_only_its_own(keycloak_emulator, keycloak_stage):
    assert [r["realm"] for r in keycloak_stage.get_realms()] == [MASTER_REALM, keycloak_emulator.realm]
    own = Admin(keycloak_emulator).session.get(f"{keycloak_emulator.url}/admin/realms", timeout=TIMEOUT)
    assert [r["realm"] for r in own.json()] == [keycloak_emulator.realm]


def test_realm_representation_names_the_realm_and_its_token_lifespan(keycloak_emulator, keycloak_stage):
    realm = keycloak_stage.get_realm(keycloak_emulator.realm)
    assert (realm["realm"], realm["enabled"], realm["accessTokenLifespan"]) == (
        keycloak_emulator.realm,
        True,
        int(keycloak_emulator.token_lifetime),
    )
    with pytest.raises(KeycloakGetError) as missing:
        keycloak_stage.get_realm("nowhere")
    assert missing.value.response_code == 404


def test_clients_list_the_service_account_client_without_its_secret(keycloak_emulator, keycloak_stage):
    clients = {c["clientId"]: c for c in keycloak_stage.get_clients()}
    assert set(clients) == {ADMIN_CLI, keycloak_emulator.client_id}
    service = clients[keycloak_emulator.client_id]
    assert (service["serviceAccountsEnabled"], service["publicClient"], "secret" in service) == (
        True,
        False,
        False,
    )
    internal_id = keycloak_stage.get_client_id(keycloak_emulator.client_id)
    assert keycloak_stage.get_client(internal_id)["clientId"] == keycloak_emulator.client_id
    assert keycloak_stage.get_client_id("no-such-client") is None
    assert keycloak_emulator.client_secret not in str(keycloak_stage.get_clients())


def test_update_user_without_attributes_changes_only_the_fields_sent(keycloak_stage: KeycloakAdmin):
    user_id = keycloak_stage.create_user(
        {"username": "jane", "email": "jane@example.com", "firstName": "Jane", "attributes": {"team": ["a"]}}
    )
    keycloak_stage.update_user(user_id, {"lastName": "Doe", "enabled": True})
    jane = keycloak_stage.get_user(user_id)
    assert (jane["email"], jane["firstName"], jane["lastName"], jane["enabled"], jane["attributes"]) == (
        "jane@example.com",
        "Jane",
        "Doe",
        True,
        {"team": ["a"]},
    )


def test_update_user_with_attributes_replaces_the_whole_profile(keycloak_stage: KeycloakAdmin):
    user_id = keycloak_stage.create_user(
        {"username": "jane", "email": "jane@example.com", "firstName": "Jane"}
    )
    keycloak_stage.update_user(user_id, {"attributes": {"team": ["b"]}})
    jane = keycloak_stage.get_user(user_id)
    assert ("email" in jane, "firstName" in jane, jane["attributes"]) == (False, False, {"team": ["b"]})


def test_update_user_refuses_a_new_username_and_a_taken_email(keycloak_stage: KeycloakAdmin):
    keycloak_stage.create_user({"username": "john", "email": "john@example.com"})
    user_id = keycloak_stage.create_user({"username": "jane"})
    with pytest.raises(KeycloakPutError) as renamed:
        keycloak_stage.update_user(user_id, {"username": "janet"})
    assert renamed.value.response_code == 400
    assert b"error-user-attribute-read-only" in renamed.value.response_body
    with pytest.raises(KeycloakPutError) as clash:
        keycloak_stage.update_user(user_id, {"email": "JOHN@example.com"})
    assert clash.value.response_code == 409


def test_deleted_user_leaves_its_groups_and_cannot_log_in(keycloak_emulator, keycloak_stage: KeycloakAdmin):
    group_id = keycloak_stage.create_group({"name": "acme-corp"})
    user_id = keycloak_stage.create_user(
        {"username": "jane", "enabled": True, "credentials": [{"type": "password", "value": "pw"}]}
    )
    keycloak_stage.group_user_add(user_id, group_id)
    assert token_for(
        keycloak_emulator, grant_type="password", client_id=ADMIN_CLI, username="jane", password="pw"
    ).ok
    keycloak_stage.delete_user(user_id)
    assert keycloak_stage.get_group_members(group_id) == []
    with pytest.raises(KeycloakDeleteError) as again:
        keycloak_stage.delete_user(user_id)
    assert again.value.response_code == 404
    login = token_for(
        keycloak_emulator, grant_type="password", client_id=ADMIN_CLI, username="jane", password="pw"
    )
    assert login.status_code == 401


def test_group_helpers_of_python_keycloak_find_nested_groups_and_remove_members(
    keycloak_stage: KeycloakAdmin,
):
    parent = keycloak_stage.create_group({"name": "acme-corp"})
    child = keycloak_stage.create_group({"name": "admins"}, parent=parent)
    user_id = keycloak_stage.create_user({"username": "jane"})
    keycloak_stage.group_user_add(user_id, child)
    tree = keycloak_stage.get_group_by_path("/acme-corp")
    assert keycloak_stage.get_subgroups(tree, "/acme-corp/admins")["id"] == child
    assert keycloak_stage.get_group_by_path("/acme-corp/admins")["id"] == child
    keycloak_stage.group_user_remove(user_id, child)
    assert keycloak_stage.get_user_groups(user_id) == []


# -- contract, admin endpoints ------------------------------------------------------------------


def test_request_off_the_spec_is_refused_and_recorded(keycloak_emulator, admin):
    response = admin.call("GET", "/groups", params={"name": "acme"})
    assert response.status_code == 400
    violations = keycloak_emulator.take_violations()
    assert violations[0]["problems"] == [
        "GET /admin/realms/{realm}/groups (get /admin/realms/{realm}/groups): query parameter 'name' is not in the spec"
    ]


def test_spec_operation_that_is_not_emulated_is_loud(keycloak_emulator, admin):
    response = admin.call("GET", "/roles")
    assert response.status_code == 501
    assert [v["kind"] for v in keycloak_emulator.take_violations()] == ["unimplemented"]


def test_group_by_path_parameter_spans_path_segments_in_the_contract():
    contract = ApiContract.from_file("keycloak-26.6-admin-openapi.json")
    operation, values = contract.match("GET", "/admin/realms/acme/group-by-path/a/b/c")
    assert operation is not None
    assert values == {"realm": "acme", "path": "a/b/c"}


def test_state_shows_groups_users_and_memberships_but_no_secrets(keycloak_emulator, admin):
    group = admin.create_group("acme-corp")
    admin.call("PUT", f"/users/{admin.create_user('john.doe')}/groups/{group}")
    state = requests.get(f"{keycloak_emulator.url}/_emulator/state", timeout=TIMEOUT)
    realm = state.json()["realms"][keycloak_emulator.realm]
    assert realm["memberships"] == [["john.doe", "/acme-corp"]]
    assert keycloak_emulator.client_secret not in state.text
    assert keycloak_emulator.admin_password not in state.text


def test_token_requests_are_counted_per_realm(keycloak_emulator):
    token_for(keycloak_emulator)
    token_for(keycloak_emulator)
    calls = requests.get(f"{keycloak_emulator.url}/_emulator/calls", timeout=TIMEOUT).json()
    assert calls[f"POST /realms/{keycloak_emulator.realm}/protocol/openid-connect/token"] == 2


# -- property-based conformance against the official spec ---------------------------------------

IMPLEMENTED = set(KeycloakEmulator.OPERATIONS)
# Ids and paths the generated requests use: the staged objects or random UUIDs (unknown → 404).
STAGE: dict[str, list[str]] = {"group-id": [], "user-id": [], "client-uuid": [], "path": []}

schema = schemathesis.openapi.from_path(SPEC_DIR / "keycloak-26.6-admin-openapi.json").include(
    lambda ctx: (ctx.operation.method.upper(), ctx.operation.path) in IMPLEMENTED
)
# Requests the spec allows (negative data would be refused and recorded as violations by design).
schema.config.generation.update(modes=[GenerationMode.POSITIVE])
# The fuzzing phase is bounded by max_examples; the coverage phase is not (and GroupRepresentation
# is recursive), so it stays off to keep the run well under a minute.
schema.config.phases.update(phases=["examples", "fuzzing"])


@schema.hook
def flatmap_path_parameters(context: Any, path_parameters: dict[str, Any] | None) -> st.SearchStrategy:
    if not path_parameters:  # GET /admin/realms names no realm
        return st.just(path_parameters)
    realm = st.just(STAGE["realm"][0])
    choices: dict[str, st.SearchStrategy] = {"realm": realm}
    for name in path_parameters:
        if name in ("group-id", "groupId"):
            choices[name] = st.sampled_from(STAGE["group-id"]) | st.uuids().map(str)
        elif name == "user-id":
            choices[name] = st.sampled_from(STAGE["user-id"]) | st.uuids().map(str)
        elif name == "client-uuid":
            choices[name] = st.sampled_from(STAGE["client-uuid"]) | st.uuids().map(str)
        elif name == "path":
            choices[name] = st.sampled_from(STAGE["path"]) | st.from_regex(
                r"[a-z]{1,8}(/[a-z]{1,8}){0,2}", fullmatch=True
            )
    return st.fixed_dictionaries(
        {name: choices.get(name, st.just(value)) for name, value in path_parameters.items()}
    )


def status_is_declared_or_a_known_keycloak_error(ctx: CheckContext, response: Any, case: Any) -> bool | None:
    """Like status_code_conformance, but allows the error statuses real Keycloak sends undeclared."""
    declared = case.operation.definition.raw.get("responses", {})
    if str(response.status_code) in declared or response.status_code in UNDECLARED_ERROR_STATUSES:
        return None
    raise AssertionError(f"status {response.status_code} is not declared for {case.operation.label}")


@pytest.fixture
def staged(keycloak_emulator: KeycloakEmulator) -> Iterator[str]:
    admin = Admin(keycloak_emulator)
    parent = admin.create_group("acme-corp", attributes={"tier": ["gold"]})
    child = admin.create_group("acme-corp-admins", parent=parent)
    user = admin.create_user("john.doe", email="john@example.com")
    admin.call("PUT", f"/users/{user}/groups/{child}")
    STAGE.update(
        {
            "realm": [keycloak_emulator.realm],
            "group-id": [parent, child],
            "user-id": [user],
            "client-uuid": [c.id for c in keycloak_emulator.realms[keycloak_emulator.realm].clients.values()],
            "path": ["acme-corp", "acme-corp/acme-corp-admins"],
        }
    )
    yield token_for(keycloak_emulator).json()["access_token"]


@schema.parametrize()
@settings(
    max_examples=CONFORMANCE_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None
)
def test_emulated_operations_conform_to_the_official_spec(case, keycloak_emulator, staged):
    response = case.call(
        base_url=keycloak_emulator.url, headers={"Authorization": f"Bearer {staged}"}, timeout=TIMEOUT
    )
    case.validate_response(
        response,
        checks=[
            not_a_server_error,
            status_is_declared_or_a_known_keycloak_error,
            content_type_conformance,
            response_headers_conformance,
            response_schema_conformance,
        ],
    )
    assert keycloak_emulator.violations == [], keycloak_emulator.violations
