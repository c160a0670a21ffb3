"""The production Harbor client against the Harbor emulator, over real HTTP.

Every operation the operator uses, the ways it fails (not found, duplicate, bad credentials,
429, 5xx, timeout, unreachable) and how each failure is classified; paging, the shared rate
limit through a real Redis, a request the spec forbids, and a planted secret that must not
leak. The `harbor` fixture fails any test whose traffic breaks Harbor's official swagger.
"""

from __future__ import annotations

import base64
import logging
import socket
import threading
import time
from collections.abc import Iterator

import pytest
import redis
import requests
from prometheus_client import REGISTRY

from emulators.harbor import HarborEmulator
from polycrate.errors import DependencyNotFoundError, InvalidSpecError, PermanentError, TransientError
from polycrate.httppolicy import HttpPolicy
from polycrate.ratelimit import RateLimiter
from tests.fixtures.harbor import take_violations
from workers.change import Change
from workers.harbor import HarborClient, ProjectMember, get_client, storage_quota_bytes

GiB = 2**30


@pytest.fixture
def client(harbor: HarborEmulator) -> Iterator[HarborClient]:
    harbor_client = HarborClient(
        harbor.url, harbor.admin_username, harbor.admin_password, policy=HttpPolicy(read_timeout=5)
    )
    yield harbor_client
    harbor_client.close()


def writes(harbor: HarborEmulator) -> list[str]:
    return [call for call in harbor.calls if not call.startswith(("GET", "HEAD"))]


def create_user(harbor: HarborEmulator, username: str) -> None:
    """Set the stage like a person would: through Harbor's own user endpoint."""
    response = requests.post(
        f"{harbor.url}/api/v2.0/users",
        auth=(harbor.admin_username, harbor.admin_password),
        json={
            "username": username,
            "email": f"{username}@example.com",
            "realname": username,
            "password": "Secret123",
        },
        timeout=5,
    )
    assert response.status_code == 201


def stored_project(harbor: HarborEmulator, name: str) -> dict:
    return next(p for p in harbor.snapshot()["projects"] if p["name"] == name)


# -- storage quotas as Kubernetes quantities ---------------------------------------------------


@pytest.mark.parametrize(
    ("quantity", "size"),
    [
        ("50Gi", 50 * GiB),
        ("100Mi", 100 * 2**20),
        ("1Ki", 1024),
        ("2Ti", 2 * 2**40),
        ("1Pi", 2**50),
        ("500M", 500 * 10**6),
        ("3k", 3000),
        ("3K", 3000),
        ("2G", 2 * 10**9),
        ("1T", 10**12),
        ("1P", 10**15),
        ("1.5Gi", 1610612736),
        ("1e9", 10**9),
        ("4096", 4096),
        (4096, 4096),
        ("0.5", 1),
        ("100m", 1),
        ("1E6", 10**6),
        ("-1", -1),
    ],
)
def test_storage_quota_takes_kubernetes_quantities(quantity, size):
    assert storage_quota_bytes(quantity, project="acme-corp") == size


@pytest.mark.parametrize("quantity", ["50Gx", "Gi", "", "50 Gi", "-5Gi", "1.2.3", "50gi", "ten"])
def test_a_storage_quota_that_is_no_quantity_names_the_value_and_the_fix(quantity):
    with pytest.raises(InvalidSpecError) as error:
        storage_quota_bytes(quantity, project="acme-corp")
    assert str(error.value) == (
        f'Harbor project "acme-corp": storageQuota "{quantity}" is not a quantity (use e.g. 50Gi)'
    )
    assert error.value.reason == "InvalidSpec"


def test_a_zero_storage_quota_is_refused_with_the_unlimited_hint():
    with pytest.raises(
        InvalidSpecError, match=r"must be more than zero \(use e.g. 50Gi, or -1 for no limit\)"
    ):
        storage_quota_bytes("0Gi", project="acme-corp")


# -- projects ----------------------------------------------------------------------------------


def test_ensure_project_creates_it_private_with_its_storage_quota(client, harbor):
    change = client.ensure_project("acme-corp", public=False, storage_quota="50Gi")

    assert change.action == "created"
    assert change.id == stored_project(harbor, "acme-corp")["project_id"]
    assert stored_project(harbor, "acme-corp")["metadata"] == {"public": "false"}
    assert client.get_storage_quota("acme-corp") == 50 * GiB


def test_ensure_project_a_second_time_changes_nothing_and_writes_nothing(client, harbor):
    first = client.ensure_project("acme-corp", public=True, storage_quota="50Gi")
    harbor.calls.clear()

    second = client.ensure_project("acme-corp", public=True, storage_quota="50Gi", recorded=True)

    assert second == Change("unchanged", id=first.id)
    assert writes(harbor) == []


def test_ensure_project_creates_with_its_quota_in_one_call_and_reads_only_what_exists(client, harbor):
    first = client.ensure_project("acme-corp", storage_quota="50Gi")
    assert dict(harbor.calls) == {"POST /api/v2.0/projects": 1}
    harbor.calls.clear()

    # Not recorded: the create is tried, and the 409 leads to the reads that compare.
    existing: list[str] = []
    second = client.ensure_project(
        "acme-corp", storage_quota="50Gi", on_existing=lambda p: existing.append(p.name)
    )
    assert second == Change("unchanged", id=first.id) and existing == ["acme-corp"]
    assert dict(harbor.calls) == {
        "POST /api/v2.0/projects": 1,
        "GET /api/v2.0/projects/{project_name_or_id}": 1,
        "GET /api/v2.0/quotas": 1,
    }
    harbor.calls.clear()

    # Known by its recorded id (read by the caller): only the quota is read.
    known = client.get_project_by_id(int(first.id))
    assert (
        client.ensure_project("acme-corp", storage_quota="50Gi", recorded=True, known=known).action
        == "unchanged"
    )
    assert dict(harbor.calls) == {"GET /api/v2.0/projects/{project_name_or_id}": 1, "GET /api/v2.0/quotas": 1}


def test_ensure_project_brings_public_flag_and_quota_in_line(client, harbor):
    client.ensure_project("acme-corp", public=False, storage_quota="50Gi")

    change = client.ensure_project("acme-corp", public=True, storage_quota="100Gi")

    assert change.action == "updated"
    assert change.detail == "public false → true; storage quota 50Gi → 100Gi"
    assert client.get_project("acme-corp").public is True
    assert client.get_storage_quota("acme-corp") == 100 * GiB


def test_ensure_project_without_a_quota_leaves_harbors_quota_alone(client, harbor):
    client.ensure_project("acme-corp", storage_quota="10Gi")
    harbor.calls.clear()

    assert client.ensure_project("acme-corp").action == "unchanged"
    assert not any("quotas" in call for call in harbor.calls)
    assert client.get_storage_quota("acme-corp") == 10 * GiB


def test_a_project_created_concurrently_is_read_back_instead_of_failing(harbor):
    harbor.set_faults(latency_ms=150)  # both workers read "absent" before either creates
    results: list[Change] = []

    def worker() -> None:
        worker_client = HarborClient(harbor.url, harbor.admin_username, harbor.admin_password)
        results.append(worker_client.ensure_project("acme-corp", public=False, storage_quota="1Gi"))

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)

    assert sorted(change.action for change in results) == ["created", "unchanged"]
    assert harbor.calls["POST /api/v2.0/projects"] == 2


def test_an_invalid_project_name_is_an_invalid_spec_before_any_request(client, harbor):
    with pytest.raises(InvalidSpecError, match=r'Harbor project "Acme_Corp": projectName must be lower-case'):
        client.ensure_project("Acme_Corp")
    assert not harbor.calls


def test_an_invalid_quota_is_an_invalid_spec_before_any_request(client, harbor):
    with pytest.raises(InvalidSpecError, match=r'storageQuota "50Gx" is not a quantity \(use e.g. 50Gi\)'):
        client.ensure_project("acme-corp", storage_quota="50Gx")
    assert not harbor.calls


def test_get_project_is_none_for_an_unknown_name(client):
    assert client.get_project("nope") is None


def test_a_project_named_with_digits_is_never_taken_for_an_id(client):
    """Project 1 is "library"; the project *named* "1" is another one."""
    client.ensure_project("1", public=False)

    project = client.get_project("1")

    assert (project.name, project.public) == ("1", False)
    assert project.id != 1


def test_get_project_asks_the_list_when_harbor_up_to_2_8_answers_403_for_unknown_names(client, harbor):
    harbor.unknown_project_name_status = 403
    client.ensure_project("acme-corp", public=True)

    assert client.get_project("nope") is None
    assert client.get_project("acme-corp").public is True
    assert harbor.calls["GET /api/v2.0/projects"] >= 1


def test_set_public_and_set_storage_quota_change_one_thing_each(client, harbor):
    client.ensure_project("acme-corp", public=False, storage_quota="1Gi")

    assert client.set_public("acme-corp", True).detail == "public false → true"
    assert client.set_public("acme-corp", True).action == "unchanged"
    assert client.set_storage_quota("acme-corp", "-1").detail == "storage quota 1Gi → unlimited"
    assert client.get_storage_quota("acme-corp") == -1


def test_changing_a_missing_project_is_dependency_not_found(client):
    with pytest.raises(DependencyNotFoundError, match=r'Harbor project "nope" does not exist'):
        client.set_storage_quota("nope", "1Gi")
    with pytest.raises(DependencyNotFoundError):
        client.set_public("nope", True)


def test_delete_project_removes_it_and_answers_false_when_already_gone(client, harbor):
    client.ensure_project("acme-corp")

    assert client.delete_project("acme-corp") is True
    assert client.get_project("acme-corp") is None
    assert client.delete_project("acme-corp") is False


def test_deleting_a_project_that_holds_images_is_permanent_and_names_the_fix(client, harbor):
    client.ensure_project("acme-corp")
    harbor.set_repository_count("acme-corp", 3)

    with pytest.raises(PermanentError) as error:
        client.delete_project("acme-corp")

    assert error.value.reason == "ProjectNotEmpty"
    assert str(error.value) == (
        'Harbor project "acme-corp" still holds 3 repositories; delete them in Harbor first, '
        "then the project is removed on the next attempt"
    )


# -- members -----------------------------------------------------------------------------------


def test_ensure_member_adds_an_oidc_group_once(client, harbor):
    client.ensure_project("acme-corp")

    first = client.ensure_member("acme-corp", group="acme-corp-admins", role="projectAdmin")
    second = client.ensure_member("acme-corp", group="acme-corp-admins", role="projectAdmin")

    assert first.action == "created"
    assert first.detail == "group acme-corp-admins as projectAdmin"
    assert second == Change("unchanged", id=first.id)
    (group,) = harbor.snapshot()["usergroups"]
    assert (group["group_name"], group["group_type"]) == ("acme-corp-admins", 3)


def test_ensure_member_changes_the_role_of_an_existing_member(client):
    client.ensure_project("acme-corp")
    created = client.ensure_member("acme-corp", group="acme-devs", role="guest")

    change = client.ensure_member("acme-corp", group="acme-devs", role="developer")

    assert change == Change("updated", id=created.id, detail="group acme-devs: role guest → developer")


def test_ensure_member_adds_a_user_by_username(client, harbor):
    client.ensure_project("acme-corp")
    create_user(harbor, "john.doe")

    assert client.ensure_member("acme-corp", user="john.doe", role="maintainer").action == "created"
    assert ("john.doe", "user", "maintainer") in [
        (m.entity_name, m.entity_type, m.role) for m in client.list_members("acme-corp")
    ]


def test_a_user_harbor_does_not_know_is_dependency_not_found_with_the_reason(client):
    client.ensure_project("acme-corp")

    with pytest.raises(
        DependencyNotFoundError, match=r'Harbor user "ghost" does not exist .*log in to Harbor once'
    ):
        client.ensure_member("acme-corp", user="ghost", role="developer")


def test_ensure_member_adds_an_ldap_group_by_its_dn(client, harbor):
    client.ensure_project("acme-corp")
    dn = "cn=ops,ou=groups,dc=example,dc=com"

    client.ensure_member("acme-corp", group="ops", group_type="ldap", ldap_group_dn=dn, role="guest")

    (group,) = harbor.snapshot()["usergroups"]
    assert (group["group_type"], group["ldap_group_dn"]) == (1, dn)


def test_an_ldap_group_without_dn_is_an_invalid_spec(client):
    client.ensure_project("acme-corp")
    with pytest.raises(InvalidSpecError, match="needs its ldap_group_dn"):
        client.ensure_member("acme-corp", group="ops", group_type="ldap", role="guest")


@pytest.mark.parametrize(
    ("role", "role_id"),
    [("projectAdmin", 1), ("developer", 2), ("guest", 3), ("maintainer", 4), ("limitedGuest", 5)],
)
def test_each_role_name_becomes_harbors_role_id(client, harbor, role, role_id):
    client.ensure_project("acme-corp")

    client.ensure_member("acme-corp", group="team", role=role)

    members = stored_project(harbor, "acme-corp")["members"]
    assert [(m["entity_name"], m["role_id"]) for m in members if m["entity_type"] == "g"] == [
        ("team", role_id)
    ]


def test_an_unknown_role_is_an_invalid_spec_naming_the_roles(client, harbor):
    with pytest.raises(InvalidSpecError) as error:
        client.ensure_member("acme-corp", group="team", role="owner")
    assert str(error.value) == (
        'Harbor project "acme-corp": role "owner" is not a Harbor role '
        "(use one of projectAdmin, maintainer, developer, guest, limitedGuest)"
    )
    assert not harbor.calls


def test_members_of_a_missing_project_are_dependency_not_found(client):
    with pytest.raises(DependencyNotFoundError, match=r'Harbor project "nope" does not exist'):
        client.ensure_member("nope", group="team", role="guest")


def test_remove_member_removes_it_and_answers_false_when_absent(client):
    client.ensure_project("acme-corp")
    client.ensure_member("acme-corp", group="acme-devs", role="developer")

    assert client.remove_member("acme-corp", group="acme-devs") is True
    assert client.remove_member("acme-corp", group="acme-devs") is False
    assert client.remove_member("nope", group="acme-devs") is False
    assert [m.entity_name for m in client.list_members("acme-corp")] == ["admin"]


def test_list_members_follows_every_page(harbor):
    paged = HarborClient(harbor.url, harbor.admin_username, harbor.admin_password, page_size=5)
    paged.ensure_project("acme-corp")
    for index in range(12):
        paged.ensure_member("acme-corp", group=f"team-{index:02d}", role="guest")
    harbor.calls.clear()

    members = paged.list_members("acme-corp")

    assert len(members) == 13  # the creator (admin) plus twelve groups
    assert members[0] == ProjectMember(
        id=members[0].id, entity_name="admin", entity_type="user", entity_id=1, role="projectAdmin", role_id=1
    )
    assert harbor.calls["GET /api/v2.0/projects/{project_name_or_id}/members"] == 3


# -- failures and how they are classified ------------------------------------------------------


def test_a_wrong_password_is_a_permanent_unauthorized_error(harbor):
    wrong = HarborClient(harbor.url, harbor.admin_username, "not-the-password")

    with pytest.raises(PermanentError) as error:
        wrong.get_project("library")

    assert (error.value.reason, error.value.status_code) == ("Unauthorized", 401)
    assert str(error.value) == 'Harbor: get project "library": HTTP 401: unauthorized'


def test_a_duplicate_member_from_a_concurrent_writer_is_read_back(client, harbor):
    client.ensure_project("acme-corp")
    harbor.set_faults(latency_ms=150)
    results: list[Change] = []

    def worker() -> None:
        results.append(client.ensure_member("acme-corp", group="acme-devs", role="developer"))

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)

    assert sorted(change.action for change in results) == ["created", "unchanged"]


def test_429_is_transient_and_carries_retry_after(client, harbor):
    harbor.set_faults(rate_limit={"count": 1, "retry_after": 7})

    with pytest.raises(TransientError) as error:
        client.get_project("library")

    assert (error.value.status_code, error.value.retry_after) == (429, 7.0)


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_server_errors_are_transient_and_name_the_operation(client, harbor, status):
    harbor.set_faults(error_rate=1.0, error_status=status)

    with pytest.raises(TransientError) as error:
        client.ensure_project("acme-corp")

    assert error.value.status_code == status
    assert str(error.value).startswith(f'Harbor: create project "acme-corp": HTTP {status}')


def test_a_slow_harbor_times_out_as_transient(harbor):
    impatient = HarborClient(
        harbor.url, harbor.admin_username, harbor.admin_password, policy=HttpPolicy(read_timeout=0.2)
    )
    harbor.set_faults(slow_path="/api/v2.0/projects/", slow_ms=600)

    with pytest.raises(TransientError, match=r'Harbor: get project "acme-corp": timed out'):
        impatient.get_project("acme-corp")


def test_an_unreachable_harbor_is_transient():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    unreachable = HarborClient(f"http://127.0.0.1:{port}", "admin", "Harbor12345")

    with pytest.raises(TransientError, match=r'Harbor: get project "acme-corp": cannot connect'):
        unreachable.get_project("acme-corp")


def test_a_request_the_spec_does_not_allow_is_refused_and_recorded(client, harbor):
    """The validator bites: `public` is the string "true" in Harbor's spec, not a boolean."""
    client.ensure_project("acme-corp")

    with pytest.raises(PermanentError) as error:
        client.http_request(
            "PUT",
            "/projects/acme-corp",
            what='update project "acme-corp"',
            json={"metadata": {"public": True}},
            by_name=True,
        )

    assert error.value.status_code == 400
    (violation,) = take_violations(harbor)
    assert (violation["kind"], violation["method"]) == ("request", "PUT")
    assert violation["problems"] == [
        "PUT /projects/{project_name_or_id} (updateProject): body.metadata.public: True is not of type 'string'"
    ]


# -- scale manners -----------------------------------------------------------------------------


def test_all_clients_of_one_sdp_share_one_rate_limit_through_redis(harbor, redis_url):
    def limited_client() -> HarborClient:
        limiter = RateLimiter(
            redis.Redis.from_url(redis_url), system="harbor", scope="polycrate/production", rate=20, burst=2
        )
        return HarborClient(harbor.url, harbor.admin_username, harbor.admin_password, limiter=limiter)

    first, second = limited_client(), limited_client()
    started = time.monotonic()
    for _ in range(4):
        first.get_project("library")
        second.get_project("library")
    elapsed = time.monotonic() - started

    # 8 requests at 20/s, burst 2: three go at once, the other five wait 50 ms each, whichever
    # client sends them.
    assert elapsed >= 0.24
    assert redis.Redis.from_url(redis_url).exists("polycrate:ratelimit:harbor:polycrate/production")


def test_get_client_keeps_one_client_per_sdp_until_the_credentials_rotate(harbor):
    url = harbor.url
    first = get_client("polycrate/production", url, "admin", "Harbor12345")

    assert get_client("polycrate/production", url, "admin", "Harbor12345") is first
    assert get_client("polycrate/staging", url, "admin", "Harbor12345") is not first
    rotated = get_client("polycrate/production", url, "admin", "Rotated123")
    assert rotated is not first
    assert get_client("polycrate/production", url, "admin", "Rotated123") is rotated


def test_get_client_refuses_empty_credentials_without_echoing_them(harbor):
    with pytest.raises(PermanentError, match="username or password is empty") as error:
        get_client("polycrate/production", harbor.url, "admin", "")
    assert error.value.reason == "InvalidCredentials"


# -- secrets -----------------------------------------------------------------------------------


def test_no_secret_reaches_a_log_line_an_error_message_or_a_redis_key(harbor, redis_url, caplog):
    caplog.set_level(logging.DEBUG)
    marker = "Marker9Secret7f3a"
    harbor.admin_password = marker
    encoded = base64.b64encode(f"{harbor.admin_username}:{marker}".encode()).decode()
    redis_client = redis.Redis.from_url(redis_url)
    limiter = RateLimiter(redis_client, system="harbor", scope="polycrate/production", rate=1000, burst=100)
    client = HarborClient(harbor.url, harbor.admin_username, marker, limiter=limiter)
    messages: list[str] = []

    client.ensure_project("acme-corp", public=True, storage_quota="5Gi")
    client.ensure_member("acme-corp", group="acme-devs", role="developer")
    client.list_members("acme-corp")

    def wrong_password() -> None:
        HarborClient(harbor.url, harbor.admin_username, f"wrong-{marker}").get_project("library")

    def unknown_user() -> None:
        client.ensure_member("acme-corp", user="ghost", role="guest")

    def server_error() -> None:
        harbor.set_faults(error_rate=1.0)
        try:
            client.get_project("library")
        finally:
            harbor.set_faults(error_rate=0.0)

    for failing in (wrong_password, unknown_user, server_error):
        with pytest.raises((PermanentError, TransientError)) as error:
            failing()
        messages.append(str(error.value))
    client.delete_project("acme-corp")

    assert caplog.records, "the run was expected to log (urllib3 at DEBUG, the client at INFO)"
    logged = "\n".join(f"{r.getMessage()} {r.args!r}" for r in caplog.records)
    for secret in (marker, encoded):
        assert secret not in logged
        assert not any(secret in message for message in messages)
        assert not any(secret.encode() in key for key in redis_client.scan_iter("*"))
    assert "Harbor: created project acme-corp" in caplog.text


def test_every_call_is_counted_and_timed_under_harbor(client):
    def timed() -> float:
        return sum(
            REGISTRY.get_sample_value(
                "polycrate_external_request_duration_seconds_count",
                {"system": "harbor", "method": "GET", "outcome": outcome},
            )
            or 0.0
            for outcome in ("success", "client_error")
        )

    before = timed()
    client.get_project("no-such-project-for-metrics")

    assert timed() > before
