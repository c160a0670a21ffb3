"""The Harbor emulator answers like Harbor: status codes, error format, paging, quirks.

Requests go over real HTTP with `requests`; the `harbor` fixture fails any test whose traffic
breaks Harbor's official swagger. The last test is a property-based run (schemathesis) of every
operation the emulator implements against that swagger.
"""

from __future__ import annotations

import base64

import hypothesis
import pytest
import requests
import schemathesis
from hypothesis import strategies as st
from schemathesis.config import SchemathesisConfig

from emulators.contract import SPEC_DIR
from emulators.harbor import HARBOR_VERSION, SPEC_DEVIATIONS, HarborEmulator
from tests.fixtures.emulation import CONFORMANCE_EXAMPLES
from tests.fixtures.harbor import take_violations

BY_NAME = {"X-Is-Resource-Name": "true"}


@pytest.fixture
def api(harbor: HarborEmulator) -> requests.Session:
    session = requests.Session()
    session.auth = (harbor.admin_username, harbor.admin_password)
    return session


def url(harbor: HarborEmulator, path: str) -> str:
    return f"{harbor.url}/api/v2.0{path}"


def create_project(api: requests.Session, harbor: HarborEmulator, name: str, **extra: object) -> int:
    response = api.post(url(harbor, "/projects"), json={"project_name": name, **extra}, timeout=5)
    assert response.status_code == 201, response.text
    return int(response.headers["Location"].rsplit("/", 1)[-1])


# -- projects ----------------------------------------------------------------------------------


def test_create_project_answers_201_with_the_location_of_its_id(api, harbor):
    response = api.post(url(harbor, "/projects"), json={"project_name": "acme-corp"}, timeout=5)
    assert (response.status_code, response.content) == (201, b"")
    project_id = int(response.headers["Location"].rsplit("/", 1)[-1])
    assert api.get(url(harbor, f"/projects/{project_id}"), timeout=5).json()["name"] == "acme-corp"


def test_create_project_can_put_the_name_into_the_location(api, harbor):
    response = api.post(
        url(harbor, "/projects"),
        json={"project_name": "acme-corp"},
        headers={"X-Resource-Name-In-Location": "true"},
        timeout=5,
    )
    assert response.headers["Location"] == "/api/v2.0/projects/acme-corp"


def test_duplicate_project_is_409_in_harbors_error_format(api, harbor):
    create_project(api, harbor, "acme-corp")
    response = api.post(url(harbor, "/projects"), json={"project_name": "acme-corp"}, timeout=5)
    assert response.status_code == 409
    assert response.json() == {
        "errors": [{"code": "CONFLICT", "message": "The project named acme-corp already exists"}]
    }


@pytest.mark.parametrize("name", ["Acme", "acme--corp", "-acme", "acme corp", ""])
def test_project_names_follow_harbors_rule(api, harbor, name):
    response = api.post(url(harbor, "/projects"), json={"project_name": name}, timeout=5)
    assert response.status_code == 400
    assert response.json()["errors"][0]["code"] == "BAD_REQUEST"


def test_new_project_is_private_with_an_unlimited_quota_unless_told_otherwise(api, harbor):
    create_project(api, harbor, "acme-corp")
    project = api.get(url(harbor, "/projects/acme-corp"), timeout=5).json()
    summary = api.get(url(harbor, "/projects/acme-corp/summary"), timeout=5).json()
    assert project["metadata"] == {"public": "false"}
    assert summary["quota"] == {"hard": {"storage": -1}, "used": {"storage": 0}}


def test_every_answer_carries_a_request_id_echoing_the_callers(api, harbor):
    echoed = api.get(url(harbor, "/projects"), headers={"X-Request-Id": "trace-42"}, timeout=5)
    fresh = api.get(url(harbor, "/projects/nope"), timeout=5)
    assert echoed.headers["X-Request-Id"] == "trace-42"
    assert fresh.headers["X-Request-Id"]


@pytest.mark.parametrize(
    "credentials", [None, ("admin", "wrong"), ("someone", "Harbor12345")], ids=["none", "password", "user"]
)
def test_requests_without_valid_basic_auth_are_401_in_harbors_error_format(harbor, credentials):
    response = requests.get(url(harbor, "/projects"), auth=credentials, timeout=5)
    assert response.status_code == 401
    assert response.json() == {"errors": [{"code": "UNAUTHORIZED", "message": "unauthorized"}]}


def test_head_project_tells_whether_a_name_exists(api, harbor):
    assert (
        api.head(url(harbor, "/projects"), params={"project_name": "library"}, timeout=5).status_code == 200
    )
    assert api.head(url(harbor, "/projects"), params={"project_name": "nope"}, timeout=5).status_code == 404


def test_a_name_made_of_digits_needs_x_is_resource_name(api, harbor):
    create_project(api, harbor, "1")
    assert api.get(url(harbor, "/projects/1"), timeout=5).json()["name"] == "library"
    assert api.get(url(harbor, "/projects/1"), headers=BY_NAME, timeout=5).json()["name"] == "1"


def test_unknown_name_is_404_but_403_when_emulating_harbor_up_to_2_8(api, harbor):
    assert api.get(url(harbor, "/projects/nope"), timeout=5).status_code == 404
    harbor.unknown_project_name_status = 403
    response = api.get(url(harbor, "/projects/nope"), timeout=5)
    assert (response.status_code, response.json()["errors"][0]["code"]) == (403, "FORBIDDEN")
    assert api.get(url(harbor, "/projects/999"), timeout=5).status_code == 404


def test_project_list_pages_with_total_count_and_harbors_link_header(api, harbor):
    for index in range(4):
        create_project(api, harbor, f"team-{index}")
    response = api.get(url(harbor, "/projects"), params={"page": 2, "page_size": 2}, timeout=5)
    assert [p["name"] for p in response.json()] == ["team-1", "team-2"]
    assert response.headers["X-Total-Count"] == "5"
    assert response.headers["Link"] == (
        '</api/v2.0/projects?page=1&page_size=2>; rel="prev" , </api/v2.0/projects?page=3&page_size=2>; rel="next"'
    )


def test_project_list_pages_by_harbors_default_page_size(api, harbor):
    harbor.default_page_size = 3
    for index in range(4):
        create_project(api, harbor, f"team-{index}")
    response = api.get(url(harbor, "/projects"), timeout=5)
    assert len(response.json()) == 3
    assert response.links["next"]["url"] == "/api/v2.0/projects?page=2&page_size=3"


def test_project_list_filters_by_name_public_and_q(api, harbor):
    create_project(api, harbor, "acme-corp")
    create_project(api, harbor, "acme-corp-images", metadata={"public": "true"})

    def names(**params: object) -> list[str]:
        return [p["name"] for p in api.get(url(harbor, "/projects"), params=params, timeout=5).json()]

    assert names(name="acme") == ["acme-corp", "acme-corp-images"]
    assert names(public="true") == ["library", "acme-corp-images"]
    assert names(q="name=acme-corp") == ["acme-corp"]
    assert names(q="name=~images") == ["acme-corp-images"]
    assert names(q="name={library acme-corp}") == ["library", "acme-corp"]
    assert names(q="project_id=[2~3]", sort="-name") == ["acme-corp-images", "acme-corp"]
    assert api.get(url(harbor, "/projects"), params={"q": "name"}, timeout=5).status_code == 400


def test_public_flag_is_the_string_true_or_false(api, harbor):
    create_project(api, harbor, "acme-corp")
    made_public = api.put(
        url(harbor, "/projects/acme-corp"), json={"metadata": {"public": "true"}}, timeout=5
    )
    garbled = api.put(url(harbor, "/projects/acme-corp"), json={"metadata": {"public": "yes"}}, timeout=5)
    assert made_public.status_code == 200
    assert garbled.status_code == 400
    assert api.get(url(harbor, "/projects/acme-corp"), timeout=5).json()["metadata"]["public"] == "true"


def test_a_boolean_public_flag_breaks_the_spec_and_is_recorded(api, harbor):
    create_project(api, harbor, "acme-corp")
    response = api.put(url(harbor, "/projects/acme-corp"), json={"metadata": {"public": True}}, timeout=5)
    assert response.status_code == 400
    (violation,) = take_violations(harbor)
    assert violation["kind"] == "request"
    assert "metadata.public" in violation["problems"][0]


def test_the_creator_is_the_first_project_admin_member(api, harbor):
    create_project(api, harbor, "acme-corp")
    (member,) = api.get(url(harbor, "/projects/acme-corp/members"), timeout=5).json()
    assert (member["entity_name"], member["entity_type"], member["role_name"]) == (
        "admin",
        "u",
        "projectAdmin",
    )


def test_deleting_a_project_that_holds_repositories_is_412(api, harbor):
    create_project(api, harbor, "acme-corp")
    staged = requests.post(
        f"{harbor.url}/_emulator/repositories", json={"project": "acme-corp", "count": 2}, timeout=5
    )
    assert staged.status_code == 200
    response = api.delete(url(harbor, "/projects/acme-corp"), timeout=5)
    assert (response.status_code, response.json()["errors"][0]["code"]) == (412, "PRECONDITION")
    harbor.set_repository_count("acme-corp", 0)
    assert api.delete(url(harbor, "/projects/acme-corp"), timeout=5).status_code == 200
    assert api.get(url(harbor, "/projects/acme-corp"), timeout=5).status_code == 404


def test_summary_counts_members_per_role_and_shows_the_quota(api, harbor):
    create_project(api, harbor, "acme-corp", storage_limit=1024)
    for name, role_id in (("devs", 2), ("guests", 5)):
        api.post(
            url(harbor, "/projects/acme-corp/members"),
            json={"role_id": role_id, "member_group": {"group_name": name, "group_type": 3}},
            timeout=5,
        )
    summary = api.get(url(harbor, "/projects/acme-corp/summary"), timeout=5).json()
    assert (summary["project_admin_count"], summary["developer_count"], summary["limited_guest_count"]) == (
        1,
        1,
        1,
    )
    assert summary["quota"]["hard"] == {"storage": 1024}


# -- metadata ----------------------------------------------------------------------------------


def test_metadata_takes_one_known_key_at_a_time_and_normalizes_booleans(api, harbor):
    create_project(api, harbor, "acme-corp")
    base = url(harbor, "/projects/acme-corp/metadatas/")
    assert api.post(base, json={"auto_scan": "1"}, timeout=5).status_code == 200
    assert api.post(base, json={"auto_scan": "true"}, timeout=5).status_code == 409
    assert api.post(base, json={"auto_scan": "true", "public": "true"}, timeout=5).status_code == 400
    assert api.post(base, json={"colour": "blue"}, timeout=5).status_code == 400
    assert api.put(f"{base}severity", json={"severity": "HIGH"}, timeout=5).status_code == 200
    assert api.get(f"{base}auto_scan", timeout=5).json() == {"auto_scan": "true"}
    assert api.delete(f"{base}auto_scan", timeout=5).status_code == 200
    assert api.get(base, timeout=5).json() == {"public": "false", "severity": "high"}


# -- quotas ------------------------------------------------------------------------------------


def test_quota_is_found_by_project_reference_and_updated_with_hard_storage(api, harbor):
    project_id = create_project(api, harbor, "acme-corp", storage_limit=53687091200)
    (quota,) = api.get(
        url(harbor, "/quotas"), params={"reference": "project", "reference_id": project_id}, timeout=5
    ).json()
    assert quota["ref"]["name"] == "acme-corp"
    assert quota["hard"] == {"storage": 53687091200}
    assert api.put(url(harbor, f"/quotas/{quota['id']}"), json={"hard": {"storage": -1}}, timeout=5).ok
    assert api.get(url(harbor, f"/quotas/{quota['id']}"), timeout=5).json()["hard"] == {"storage": -1}


@pytest.mark.parametrize("hard", [{"storage": 0}, {"storage": -2}, {"count": 5}, {}])
def test_quota_accepts_only_a_positive_storage_or_minus_one(api, harbor, hard):
    response = api.put(url(harbor, "/quotas/1"), json={"hard": hard}, timeout=5)
    assert response.status_code == 400


def test_unknown_quota_is_404(api, harbor):
    assert api.get(url(harbor, "/quotas/99"), timeout=5).status_code == 404


# -- members -----------------------------------------------------------------------------------


def test_an_oidc_group_member_is_onboarded_as_an_oidc_user_group(api, harbor):
    create_project(api, harbor, "acme-corp")
    response = api.post(
        url(harbor, "/projects/acme-corp/members"),
        json={"role_id": 2, "member_group": {"group_name": "acme-devs", "group_type": 3}},
        timeout=5,
    )
    assert response.status_code == 201
    assert response.headers["Location"].startswith("/api/v2.0/projects/acme-corp/members/")
    (group,) = api.get(url(harbor, "/usergroups"), params={"group_name": "acme"}, timeout=5).json()
    assert (group["group_name"], group["group_type"]) == ("acme-devs", 3)


def test_an_ldap_group_member_is_found_by_its_dn(api, harbor):
    create_project(api, harbor, "acme-corp")
    dn = "cn=acme-devs,ou=groups,dc=example,dc=com"
    member = {"role_id": 4, "member_group": {"ldap_group_dn": dn, "group_name": "acme-devs", "group_type": 1}}
    assert api.post(url(harbor, "/projects/acme-corp/members"), json=member, timeout=5).status_code == 201
    (group,) = api.get(url(harbor, "/usergroups"), timeout=5).json()
    assert (group["group_type"], group["ldap_group_dn"]) == (1, dn)


def test_member_twice_is_409(api, harbor):
    create_project(api, harbor, "acme-corp")
    member = {"role_id": 3, "member_group": {"group_name": "acme-devs", "group_type": 3}}
    api.post(url(harbor, "/projects/acme-corp/members"), json=member, timeout=5)
    response = api.post(url(harbor, "/projects/acme-corp/members"), json=member, timeout=5)
    assert (response.status_code, response.json()["errors"][0]["code"]) == (409, "CONFLICT")


@pytest.mark.parametrize(("role_id", "status"), [(1, 201), (4, 201), (5, 201), (0, 400), (6, 400)])
def test_roles_1_to_5_are_accepted_as_real_harbor_does(api, harbor, role_id, status):
    """Role 5 (limitedGuest) is not in the spec's text but Harbor's member controller takes it."""
    create_project(api, harbor, "acme-corp")
    response = api.post(
        url(harbor, "/projects/acme-corp/members"),
        json={"role_id": role_id, "member_group": {"group_name": "acme-devs", "group_type": 3}},
        timeout=5,
    )
    assert response.status_code == status


def test_an_unknown_username_is_404_a_documented_spec_deviation(api, harbor):
    create_project(api, harbor, "acme-corp")
    response = api.post(
        url(harbor, "/projects/acme-corp/members"),
        json={"role_id": 2, "member_user": {"username": "ghost"}},
        timeout=5,
    )
    assert response.json() == {"errors": [{"code": "NOT_FOUND", "message": "user ghost is not found"}]}
    assert ("POST", "/projects/{project_name_or_id}/members", 404) in SPEC_DEVIATIONS
    assert harbor.violations == []


def test_member_list_filters_by_exact_entityname_but_counts_all_members_like_harbor(api, harbor):
    create_project(api, harbor, "acme-corp")
    for name in ("acme-devs", "acme-devs-2"):
        api.post(
            url(harbor, "/projects/acme-corp/members"),
            json={"role_id": 2, "member_group": {"group_name": name, "group_type": 3}},
            timeout=5,
        )
    response = api.get(
        url(harbor, "/projects/acme-corp/members"), params={"entityname": "acme-devs"}, timeout=5
    )
    assert [m["entity_name"] for m in response.json()] == ["acme-devs"]
    assert response.headers["X-Total-Count"] == "3"


def test_member_role_is_updated_and_the_member_removed(api, harbor):
    create_project(api, harbor, "acme-corp")
    created = api.post(
        url(harbor, "/projects/acme-corp/members"),
        json={"role_id": 3, "member_group": {"group_name": "acme-devs", "group_type": 3}},
        timeout=5,
    )
    member_url = f"{harbor.url}{created.headers['Location']}"
    assert api.put(member_url, json={"role_id": 2}, timeout=5).status_code == 200
    assert api.get(member_url, timeout=5).json()["role_name"] == "developer"
    assert api.delete(member_url, timeout=5).status_code == 200
    assert api.get(member_url, timeout=5).status_code == 404
    # Harbor deletes with a plain SQL DELETE: gone twice is still 200.
    assert api.delete(member_url, timeout=5).status_code == 200


# -- user groups and users ---------------------------------------------------------------------


def test_user_groups_are_created_searched_renamed_and_deleted(api, harbor):
    created = api.post(url(harbor, "/usergroups"), json={"group_name": "ops", "group_type": 3}, timeout=5)
    group_url = f"{harbor.url}{created.headers['Location']}"
    duplicate = api.post(url(harbor, "/usergroups"), json={"group_name": "ops", "group_type": 3}, timeout=5)
    assert (created.status_code, duplicate.status_code) == (201, 409)
    assert (
        api.get(url(harbor, "/usergroups/search"), params={"groupname": "op"}, timeout=5).json()[0][
            "group_name"
        ]
        == "ops"
    )
    assert api.put(group_url, json={"group_name": "platform-ops"}, timeout=5).status_code == 200
    assert api.get(group_url, timeout=5).json() == {"group_name": "platform-ops", "group_type": 3}
    assert api.delete(group_url, timeout=5).status_code == 200
    assert api.get(group_url, timeout=5).status_code == 404


def test_users_created_through_the_api_can_be_searched_and_read(api, harbor):
    created = api.post(
        url(harbor, "/users"),
        json={"username": "jane", "email": "jane@example.com", "realname": "Jane", "password": "Secret123"},
        timeout=5,
    )
    assert created.status_code == 201
    (found,) = api.get(url(harbor, "/users/search"), params={"username": "jan"}, timeout=5).json()
    user = api.get(f"{harbor.url}{created.headers['Location']}", timeout=5).json()
    assert found == {"user_id": user["user_id"], "username": "jane"}
    assert "password" not in user


def test_weak_passwords_and_duplicate_users_are_refused(api, harbor):
    jane = {"username": "jane", "email": "jane@example.com", "realname": "Jane", "password": "Secret123"}
    assert api.post(url(harbor, "/users"), json={**jane, "password": "secret"}, timeout=5).status_code == 400
    assert api.post(url(harbor, "/users"), json=jane, timeout=5).status_code == 201
    assert api.post(url(harbor, "/users"), json=jane, timeout=5).status_code == 409


def test_reset_restores_the_built_in_library_project_and_the_knobs(api, harbor):
    create_project(api, harbor, "acme-corp")
    harbor.default_page_size = 1
    harbor.admin_password = "changed"
    requests.post(f"{harbor.url}/_emulator/reset", timeout=5)
    assert [p["name"] for p in api.get(url(harbor, "/projects"), timeout=5).json()] == ["library"]
    assert harbor.default_page_size == 10


# -- the reads clients start with ---------------------------------------------------------------


def test_health_answers_without_credentials(harbor):
    response = requests.get(url(harbor, "/health"), timeout=5)
    assert (response.status_code, response.json()["status"]) == (200, "healthy")
    assert {c["status"] for c in response.json()["components"]} == {"healthy"}


@pytest.mark.parametrize("credentials", [None, ("admin", "wrong")])
def test_systeminfo_shows_anonymous_callers_only_the_public_part(harbor, credentials):
    info = requests.get(url(harbor, "/systeminfo"), auth=credentials, timeout=5).json()
    assert (info["auth_mode"], info["harbor_version"]) == ("oidc_auth", HARBOR_VERSION)
    assert "external_url" not in info and "registry_url" not in info


def test_systeminfo_shows_a_logged_in_caller_the_urls(api, harbor):
    info = api.get(url(harbor, "/systeminfo"), timeout=5).json()
    assert (info["external_url"], info["registry_url"], info["read_only"]) == (
        harbor.url,
        harbor.url.split("://")[1],
        False,
    )


def test_current_user_is_the_administrator_who_logged_in(api, harbor):
    me = api.get(url(harbor, "/users/current"), timeout=5).json()
    assert (me["username"], me["sysadmin_flag"], "password" in me) == (harbor.admin_username, True, False)
    assert requests.get(url(harbor, "/users/current"), timeout=5).status_code == 401


def test_new_project_has_no_repositories_and_an_unknown_project_is_404(api, harbor):
    create_project(api, harbor, "acme-corp")
    response = api.get(url(harbor, "/projects/acme-corp/repositories"), timeout=5)
    assert (response.status_code, response.json(), response.headers["X-Total-Count"]) == (200, [], "0")
    assert api.get(url(harbor, "/projects/nowhere/repositories"), timeout=5).status_code == 404


def test_repositories_of_a_project_holding_images_are_listed_in_pages(api, harbor):
    create_project(api, harbor, "acme-corp")
    harbor.set_repository_count("acme-corp", 3)
    response = api.get(url(harbor, "/projects/acme-corp/repositories"), params={"page_size": 2}, timeout=5)
    assert [r["name"] for r in response.json()] == ["acme-corp/repository-1", "acme-corp/repository-2"]
    assert (response.headers["X-Total-Count"], 'rel="next"' in response.headers["Link"]) == ("3", True)
    filtered = api.get(url(harbor, "/projects/acme-corp/repositories"), params={"q": "name=~-3"}, timeout=5)
    assert [r["name"] for r in filtered.json()] == ["acme-corp/repository-3"]


# -- conformance with Harbor's swagger ---------------------------------------------------------

IMPLEMENTED = [
    "listProjects",
    "headProject",
    "createProject",
    "getProject",
    "updateProject",
    "deleteProject",
    "getProjectSummary",
    "listProjectMembers",
    "createProjectMember",
    "getProjectMember",
    "updateProjectMember",
    "deleteProjectMember",
    "listProjectMetadatas",
    "addProjectMetadatas",
    "getProjectMetadata",
    "updateProjectMetadata",
    "deleteProjectMetadata",
    "listQuotas",
    "getQuota",
    "updateQuota",
    "listUserGroups",
    "createUserGroup",
    "searchUserGroups",
    "getUserGroup",
    "updateUserGroup",
    "deleteUserGroup",
    "createUser",
    "searchUsers",
    "getUser",
    "getCurrentUserInfo",
    "listRepositories",
    "getHealth",
    "getSystemInfo",
]

# Positive data only: the question is whether valid requests get answers the spec allows. That
# invalid requests are refused is the contract checker's job (tests/emulators/test_contract.py).
_CONFIG = SchemathesisConfig.from_dict(
    {"generation": {"mode": "positive"}, "phases": {"stateful": {"enabled": False}}}
)
schema = schemathesis.openapi.from_path(SPEC_DIR / "harbor-v2.0-swagger.yaml", config=_CONFIG).include(
    operation_id=IMPLEMENTED
)

# Path parameters that name what the stage holds, so generated requests reach the happy paths too.
_KNOWN = {
    "project_name_or_id": ["acme-corp", "2", "library"],
    "project_name": ["acme-corp", "images", "library"],
    "mid": [2, 3],
    "meta_name": ["public", "auto_scan"],
    "id": [1, 2],
    "group_id": [1],
    "user_id": [1, 2],
}


@schema.hook("flatmap_path_parameters")
def sometimes_known_objects(context, path_parameters):
    path_parameters = path_parameters or {}
    known = {name: st.sampled_from(values) for name, values in _KNOWN.items() if name in path_parameters}
    if not known:
        return st.just(path_parameters)
    return st.one_of(
        st.just(path_parameters), st.fixed_dictionaries(known).map(lambda k: {**path_parameters, **k})
    )


# Valid documents per operation: random ones rarely pass Harbor's own rules (name pattern,
# password policy, known roles), so these make sure the 201/200 answers are checked as well.
_VALID_BODIES: dict[str, list[object]] = {
    "POST /projects": [{"project_name": "team-x", "metadata": {"public": "true"}, "storage_limit": 2048}],
    "POST /projects/{project_name_or_id}/members": [
        {"role_id": 5, "member_group": {"group_name": "acme-guests", "group_type": 3}},
        {"role_id": 2, "member_user": {"username": "jane"}},
    ],
    "PUT /projects/{project_name_or_id}/members/{mid}": [{"role_id": 4}],
    "POST /projects/{project_name_or_id}/metadatas/": [{"auto_scan": "true"}],
    "PUT /projects/{project_name_or_id}/metadatas/{meta_name}": [{"public": "true"}, {"auto_scan": "0"}],
    "PUT /quotas/{id}": [{"hard": {"storage": 4096}}],
    "POST /usergroups": [{"group_name": "ops", "group_type": 3}],
    "PUT /usergroups/{group_id}": [{"group_name": "platform-ops"}],
    "POST /users": [
        {"username": "joe", "email": "joe@example.com", "realname": "Joe", "password": "Secret123"}
    ],
}
_VALID_QUERIES: dict[str, list[dict[str, object]]] = {
    "HEAD /projects": [{"project_name": "acme-corp"}],
    "GET /projects": [{"name": "acme", "page": 1, "page_size": 1}],
}


def _label(context) -> str:
    return f"{context.operation.method.upper()} {context.operation.path}"


@schema.hook("flatmap_body")
def sometimes_a_valid_body(context, body):
    valid = _VALID_BODIES.get(_label(context))
    return st.one_of(st.just(body), st.sampled_from(valid)) if valid else st.just(body)


@schema.hook("flatmap_query")
def sometimes_a_valid_query(context, query):
    valid = _VALID_QUERIES.get(_label(context))
    return st.one_of(st.just(query), st.sampled_from(valid)) if valid else st.just(query)


_CHECKS = [
    schemathesis.checks.not_a_server_error,
    schemathesis.checks.status_code_conformance,
    schemathesis.checks.content_type_conformance,
    schemathesis.checks.response_headers_conformance,
    schemathesis.checks.response_schema_conformance,
]


def _stage(harbor: HarborEmulator) -> None:
    session = requests.Session()
    session.auth = (harbor.admin_username, harbor.admin_password)
    create_project(session, harbor, "acme-corp", storage_limit=1024)
    # A project holding images (it may outlive a deleted acme-corp, so it is created unchecked).
    session.post(url(harbor, "/projects"), json={"project_name": "images"}, timeout=5)
    harbor.set_repository_count("images", 3)
    session.post(
        url(harbor, "/projects/acme-corp/members"),
        json={"role_id": 2, "member_group": {"group_name": "acme-devs", "group_type": 3}},
        timeout=5,
    )
    session.post(
        url(harbor, "/users"),
        json={"username": "jane", "email": "jane@example.com", "realname": "Jane", "password": "Secret123"},
        timeout=5,
    )


@schema.parametrize()
@hypothesis.settings(
    max_examples=CONFORMANCE_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(hypothesis.HealthCheck),
)
def test_every_answer_conforms_to_harbors_swagger(case, harbor):
    if not any(p["name"] == "acme-corp" for p in harbor.projects.values()):
        _stage(harbor)
    token = base64.b64encode(f"{harbor.admin_username}:{harbor.admin_password}".encode()).decode()
    response = case.call(base_url=f"{harbor.url}/api/v2.0", headers={"Authorization": f"Basic {token}"})
    deviation = (case.operation.method.upper(), case.operation.path, response.status_code) in SPEC_DEVIATIONS
    checks = [c for c in _CHECKS if not (deviation and c is schemathesis.checks.status_code_conformance)]
    case.validate_response(response, checks=checks)
