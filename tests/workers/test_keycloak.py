"""The production Keycloak client against the emulated Keycloak, over real HTTP.

Every step the operator takes (groups, subgroups, attributes, users, membership), how it fails
(not found, duplicate, wrong credentials, missing rights, 429, 5xx, timeout, no server) and how
that failure is classified, pagination, token reuse, the Redis-shared rate limit, the contract
check that catches an off-spec request, and that no secret leaks into logs, errors or Redis.
"""

from __future__ import annotations

import logging
import socket
import threading
import time

import pytest
import redis
from keycloak.exceptions import KeycloakGetError
from prometheus_client import REGISTRY, generate_latest

from emulators.keycloak import KeycloakEmulator
from polycrate.errors import DependencyNotFoundError, InvalidSpecError, PermanentError, TransientError
from polycrate.httppolicy import HttpPolicy
from polycrate.ratelimit import RateLimiter
from workers.change import Change
from workers.keycloak import SYSTEM, KeycloakClient, KeycloakCredentials, clear_clients, get_client

POLICY = HttpPolicy(connect_timeout=2, read_timeout=5)


def client_for(emulator: KeycloakEmulator, **kwargs) -> KeycloakClient:
    credentials = kwargs.pop("credentials", KeycloakCredentials(emulator.client_id, emulator.client_secret))
    kwargs.setdefault("policy", POLICY)
    return KeycloakClient(emulator.url, emulator.realm, credentials, **kwargs)


def token_requests(emulator: KeycloakEmulator) -> int:
    return emulator.calls[f"POST /realms/{emulator.realm}/protocol/openid-connect/token"]


@pytest.fixture
def client(keycloak_emulator: KeycloakEmulator) -> KeycloakClient:
    return client_for(keycloak_emulator)


@pytest.fixture
def stage(keycloak_stage):
    """Users are set up the way a person would: through the admin API, as the master admin."""

    def create_user(username: str, email: str | None = None) -> str:
        user = {"username": username, "enabled": True} | ({"email": email} if email else {})
        return keycloak_stage.create_user(user)

    return create_user


# -- groups ---------------------------------------------------------------------------------------


def test_ensure_group_creates_it_once_then_reports_unchanged(keycloak_emulator, client):
    first = client.ensure_group("acme-corp", {"description": ["Main organization group"]})
    second = client.ensure_group("acme-corp", {"description": ["Main organization group"]})
    assert first.action == "created"
    assert second == Change("unchanged", first.id)
    found = client.find_group_by_path("/acme-corp")
    assert (found.id, found.path, found.attributes) == (
        first.id,
        "/acme-corp",
        {"description": ["Main organization group"]},
    )


def test_ensure_group_sets_named_attributes_and_keeps_foreign_ones(client):
    client.ensure_group("acme-corp", {"owner": ["someone-else"], "description": ["old"]})
    change = client.ensure_group("acme-corp", {"description": ["new"]})
    assert (change.action, change.detail) == ("updated", "attributes description")
    assert client.find_group_by_path("acme-corp").attributes == {
        "owner": ["someone-else"],
        "description": ["new"],
    }


def test_ensure_subgroup_creates_under_the_parent(client):
    parent = client.ensure_group("acme-corp")
    created = client.ensure_subgroup("acme-corp", "acme-corp-admins", {"role": ["admin"]})
    again = client.ensure_subgroup("/acme-corp/", "acme-corp-admins", {"role": ["admin"]})
    found = client.find_group_by_path("acme-corp/acme-corp-admins")
    assert (created.action, again.action) == ("created", "unchanged")
    assert (found.id, found.parent_id, found.attributes) == (created.id, parent.id, {"role": ["admin"]})


def test_ensure_subgroup_without_its_parent_is_a_missing_dependency(client):
    with pytest.raises(DependencyNotFoundError, match='parent group "/acme-corp" does not exist'):
        client.ensure_subgroup("acme-corp", "acme-corp-admins")


def test_group_name_with_a_slash_is_an_invalid_spec(client):
    with pytest.raises(InvalidSpecError, match='contains "/"'):
        client.ensure_group("acme/corp")


def test_find_group_by_path_returns_none_when_missing(client):
    assert client.find_group_by_path("nobody/here") is None


def test_update_group_attributes_changes_only_what_differs(client):
    client.ensure_group("acme-corp", {"tier": ["gold"]})
    assert client.update_group_attributes("acme-corp", {"tier": ["gold"]}).action == "unchanged"
    assert client.update_group_attributes("acme-corp", {"tier": ["silver"]}).action == "updated"
    with pytest.raises(DependencyNotFoundError):
        client.update_group_attributes("missing", {"tier": ["gold"]})


def test_delete_group_removes_it_with_subgroups_and_is_false_when_gone(keycloak_emulator, client):
    client.ensure_group("acme-corp")
    client.ensure_subgroup("acme-corp", "acme-corp-admins")
    assert client.delete_group("acme-corp") is True
    assert client.delete_group("acme-corp") is False
    assert keycloak_emulator.snapshot()["realms"][keycloak_emulator.realm]["groups"] == []


def test_list_subgroups_follows_pagination(keycloak_emulator):
    client = client_for(keycloak_emulator, page_size=2)
    client.ensure_group("acme-corp")
    for role in ("admins", "developers", "viewers"):
        client.ensure_subgroup("acme-corp", f"acme-corp-{role}")
    names = [g.name for g in client.list_subgroups("acme-corp")]
    assert names == ["acme-corp-admins", "acme-corp-developers", "acme-corp-viewers"]
    assert keycloak_emulator.calls["GET /admin/realms/{realm}/groups/{group-id}/children"] == 2


def test_concurrent_ensure_of_one_group_converges_on_one_group(keycloak_emulator):
    clients = [client_for(keycloak_emulator), client_for(keycloak_emulator)]
    for each in clients:
        each.find_group_by_path("warm-up")  # log in first, so both race on the group itself
    # Creating is slow, so each racer has looked before the other one has written.
    keycloak_emulator.set_faults(slow_path=r"/groups$", slow_ms=300)
    start = threading.Barrier(2)
    results: list[Change] = []

    def ensure(each: KeycloakClient) -> None:
        start.wait()
        results.append(each.ensure_group("acme-corp"))

    threads = [threading.Thread(target=ensure, args=(each,)) for each in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(r.action for r in results) == ["created", "unchanged"]
    assert results[0].id == results[1].id
    assert keycloak_emulator.calls["POST /admin/realms/{realm}/groups"] == 2  # one of them got the 409


# -- users and membership --------------------------------------------------------------------------


def test_find_user_matches_the_exact_username_case_insensitively(client, stage):
    stage("john.doe", "john@example.com")
    stage("john.doerr", "doerr@example.com")
    found = client.find_user("John.Doe")
    assert (found.username, found.email) == ("john.doe", "john@example.com")


def test_find_user_falls_back_to_email(client, stage):
    user_id = stage("jdoe", "john.doe@example.com")
    assert client.find_user("john.doe", email="John.Doe@example.com").id == user_id
    assert client.find_user("john.doe", email="nobody@example.com") is None


def test_find_user_needs_a_username_or_an_email(client):
    with pytest.raises(InvalidSpecError):
        client.find_user(None, None)


def test_adding_and_removing_membership_is_idempotent(client, stage):
    user_id = stage("john.doe")
    group_id = client.ensure_group("acme-corp").id
    assert client.add_user_to_group(user_id, group_id).action == "created"
    assert client.add_user_to_group(user_id, group_id).action == "unchanged"
    assert [u.username for u in client.list_group_members(group_id)] == ["john.doe"]
    assert client.remove_user_from_group(user_id, group_id).action == "deleted"
    assert client.remove_user_from_group(user_id, group_id).action == "absent"
    assert client.list_user_groups(user_id) == []


def test_removing_a_vanished_user_is_absent(client):
    group_id = client.ensure_group("acme-corp").id
    assert client.remove_user_from_group("no-such-user", group_id) == Change("absent", group_id)


def test_adding_to_a_missing_group_is_permanent_not_found(client, stage):
    user_id = stage("john.doe")
    with pytest.raises(PermanentError) as failure:
        client.add_user_to_group(user_id, "no-such-group")
    assert (failure.value.status_code, failure.value.reason) == (404, "NotFound")
    assert "Group not found" in str(failure.value)


def test_group_members_and_user_groups_follow_pagination(keycloak_emulator, stage):
    client = client_for(keycloak_emulator, page_size=2)
    group_id = client.ensure_group("acme-corp").id
    user_ids = [stage(f"user-{index}") for index in range(5)]
    for user_id in user_ids:
        client.add_user_to_group(user_id, group_id)
    team_ids = [client.ensure_subgroup("acme-corp", f"team-{index}").id for index in range(4)]
    for team_id in team_ids:
        client.add_user_to_group(user_ids[0], team_id)
    keycloak_emulator.calls.clear()

    members = client.list_group_members(group_id)
    groups = client.list_user_groups(user_ids[0])

    assert sorted(u.id for u in members) == sorted(user_ids)
    assert len(groups) == 5
    assert keycloak_emulator.calls["GET /admin/realms/{realm}/groups/{group-id}/members"] == 3
    assert keycloak_emulator.calls["GET /admin/realms/{realm}/users/{user-id}/groups"] == 3


# -- tokens ---------------------------------------------------------------------------------------


def test_many_reconciles_cost_one_login(keycloak_emulator, client):
    for _ in range(5):
        client.ensure_group("acme-corp", {"tier": ["gold"]})
        client.ensure_subgroup("acme-corp", "acme-corp-admins")
    assert token_requests(keycloak_emulator) == 1
    assert client.login_count == 1


def test_token_is_renewed_shortly_before_it_expires():
    with KeycloakEmulator(token_lifetime=2) as short_lived:
        client = client_for(short_lived)
        client.find_group_by_path("acme-corp")
        client.find_group_by_path("acme-corp")
        assert client.login_count == 1
        time.sleep(1.05)  # renewal is due at 90 % of the lifetime: int(0.9 * 2 s) = 1 s
        client.find_group_by_path("acme-corp")
        assert (client.login_count, token_requests(short_lived)) == (2, 2)
        assert short_lived.violations == []


def test_revoked_token_costs_one_new_login_and_the_call_succeeds(keycloak_emulator, client):
    client.ensure_group("acme-corp")
    keycloak_emulator.revoke_tokens()
    assert client.ensure_group("acme-corp").action == "unchanged"
    assert client.login_count == 2


@pytest.fixture
def empty_client_cache():
    clear_clients()
    yield
    clear_clients()


def test_get_client_reuses_one_client_per_sdp_until_credentials_change(keycloak_emulator, empty_client_cache):
    credentials = KeycloakCredentials(keycloak_emulator.client_id, keycloak_emulator.client_secret)
    first = get_client("polycrate/production", keycloak_emulator.url, keycloak_emulator.realm, credentials)
    again = get_client(
        "polycrate/production", keycloak_emulator.url + "/", keycloak_emulator.realm, credentials
    )
    rotated = KeycloakCredentials(keycloak_emulator.client_id, "rotated-secret")
    renewed = get_client("polycrate/production", keycloak_emulator.url, keycloak_emulator.realm, rotated)
    assert first is again
    assert renewed is not first


def test_reconciles_that_each_ask_get_client_share_one_login(keycloak_emulator, empty_client_cache):
    credentials = KeycloakCredentials(keycloak_emulator.client_id, keycloak_emulator.client_secret)
    for _ in range(10):
        reconcile_client = get_client(
            "polycrate/production", keycloak_emulator.url, keycloak_emulator.realm, credentials, policy=POLICY
        )
        reconcile_client.ensure_group("acme-corp")
    assert token_requests(keycloak_emulator) == 1


# -- failures and their classification --------------------------------------------------------------


def test_wrong_client_secret_is_permanent_unauthorized(keycloak_emulator):
    client = client_for(
        keycloak_emulator, credentials=KeycloakCredentials(keycloak_emulator.client_id, "wrong")
    )
    with pytest.raises(PermanentError) as failure:
        client.ensure_group("acme-corp")
    assert (failure.value.status_code, failure.value.reason) == (401, "Unauthorized")
    assert "Invalid client or Invalid client credentials" in str(failure.value)
    assert "credentialsRef" in str(failure.value)


def test_service_account_without_realm_rights_is_permanent_forbidden(keycloak_emulator):
    keycloak_emulator.add_client(keycloak_emulator.realm, "reader", "reader-secret", realm_admin=False)
    client = client_for(keycloak_emulator, credentials=KeycloakCredentials("reader", "reader-secret"))
    with pytest.raises(PermanentError) as failure:
        client.find_group_by_path("acme-corp")
    assert (failure.value.status_code, failure.value.reason) == (403, "Forbidden")


def test_429_is_transient_and_carries_retry_after(keycloak_emulator, client):
    client.find_group_by_path("acme-corp")
    keycloak_emulator.set_faults(rate_limit={"count": 1, "retry_after": 7})
    with pytest.raises(TransientError) as failure:
        client.ensure_group("acme-corp")
    assert (failure.value.status_code, failure.value.retry_after) == (429, 7.0)
    assert client.ensure_group("acme-corp").action == "created"


def test_429_on_the_token_endpoint_is_transient_too(keycloak_emulator, client):
    keycloak_emulator.set_faults(rate_limit={"count": 1, "retry_after": 3})
    with pytest.raises(TransientError) as failure:
        client.find_group_by_path("acme-corp")
    assert failure.value.retry_after == 3.0


def test_server_error_is_transient(keycloak_emulator, client):
    keycloak_emulator.set_faults(error_rate=1.0, error_status=503)
    with pytest.raises(TransientError) as failure:
        client.ensure_group("acme-corp")
    assert failure.value.status_code == 503
    assert str(failure.value).startswith('Keycloak realm "polycrate": ensure group "/acme-corp": HTTP 503')


def test_slow_answer_is_a_transient_timeout(keycloak_emulator):
    client = client_for(keycloak_emulator, policy=HttpPolicy(connect_timeout=1, read_timeout=0.2))
    client.find_group_by_path("warm-up")
    keycloak_emulator.set_faults(slow_path="/group-by-path/", slow_ms=1000)
    with pytest.raises(TransientError, match="timed out"):
        client.find_group_by_path("acme-corp")


def test_unreachable_server_is_transient():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = KeycloakClient(
        f"http://127.0.0.1:{port}", "polycrate", KeycloakCredentials("id", "secret"), policy=POLICY
    )
    with pytest.raises(TransientError, match="cannot connect"):
        client.find_group_by_path("acme-corp")


# -- shared rate limit ------------------------------------------------------------------------------


def test_rate_limit_is_shared_by_every_client_of_one_sdp(keycloak_emulator, redis_url):
    def limited_client() -> KeycloakClient:
        limiter = RateLimiter(
            redis.Redis.from_url(redis_url), system=SYSTEM, scope="polycrate/production", rate=20, burst=1
        )
        return client_for(keycloak_emulator, limiter=limiter)

    worker_a, worker_b = limited_client(), limited_client()
    started = time.monotonic()
    for _ in range(5):
        worker_a.find_group_by_path("acme-corp")
        worker_b.find_group_by_path("acme-corp")
    elapsed = time.monotonic() - started
    # 12 requests (2 logins + 10 reads) at 20/s with no burst need at least 11 intervals of 50 ms.
    assert elapsed >= 0.5
    assert redis.Redis.from_url(redis_url).keys("*") == [b"polycrate:ratelimit:keycloak:polycrate/production"]


# -- the contract check bites ---------------------------------------------------------------------


def test_request_the_spec_does_not_allow_is_refused_and_recorded(keycloak_emulator, client):
    group = client.ensure_group("acme-corp")
    # `q` (attribute search) exists on GET /groups but not on a group's children.
    with pytest.raises(KeycloakGetError) as failure:
        client.admin.get_group_children(group.id, query={"q": "tier:gold"})
    violations = keycloak_emulator.take_violations()
    assert failure.value.response_code == 400
    assert [v["problems"] for v in violations] == [
        [
            "GET /admin/realms/{realm}/groups/{group-id}/children "
            "(get /admin/realms/{realm}/groups/{group-id}/children): query parameter 'q' is not in the spec"
        ]
    ]


# -- secrets ------------------------------------------------------------------------------------------


def test_no_secret_reaches_logs_errors_or_redis(keycloak_emulator, redis_url, caplog, stage):
    caplog.set_level(logging.DEBUG)
    marker = "marker-secret-7f3c9a"
    keycloak_emulator.add_client(keycloak_emulator.realm, "marked", marker)
    limiter = RateLimiter(redis.Redis.from_url(redis_url), system=SYSTEM, scope="polycrate/production")
    client = client_for(keycloak_emulator, credentials=KeycloakCredentials("marked", marker), limiter=limiter)
    wrong = client_for(keycloak_emulator, credentials=KeycloakCredentials("marked", marker + "-wrong"))
    messages: list[str] = [repr(client), repr(KeycloakCredentials("marked", marker))]

    user_id = stage("john.doe", "john@example.com")
    group = client.ensure_group("acme-corp", {"description": ["x"]})
    client.ensure_subgroup("acme-corp", "acme-corp-admins")
    client.add_user_to_group(user_id, group.id)
    client.list_group_members(group.id)
    client.find_user("john.doe")
    keycloak_emulator.set_faults(rate_limit={"count": 1, "retry_after": 1})
    for failing in (lambda: client.delete_group("acme-corp"), lambda: wrong.find_group_by_path("acme-corp")):
        with pytest.raises((TransientError, PermanentError)) as failure:
            failing()
        messages += [str(failure.value), repr(failure.value)]
    keycloak_emulator.revoke_tokens()
    client.delete_group("acme-corp")

    store = redis.Redis.from_url(redis_url)
    stored = [key.decode() for key in store.keys("*")] + [str(store.get(key)) for key in store.keys("*")]
    assert caplog.records, "expected DEBUG records from the HTTP stack"
    assert all(marker not in record.getMessage() for record in caplog.records)
    assert marker not in caplog.text
    assert all(marker not in text for text in messages)
    assert all(marker not in text for text in stored)


def test_every_call_of_the_library_is_counted_under_keycloak_without_names(client, keycloak_emulator):
    def calls(method: str) -> float:
        return sum(
            REGISTRY.get_sample_value(
                "polycrate_external_requests_total",
                {"system": "keycloak", "method": method, "outcome": outcome},
            )
            or 0.0
            for outcome in ("success", "client_error")
        )

    posts, gets = calls("POST"), calls("GET")
    client.ensure_group("metrics-tenant")
    client.find_group_by_path("metrics-tenant")

    # python-keycloak's own sessions: the token request and the admin calls.
    assert calls("POST") > posts
    assert calls("GET") > gets
    assert "metrics-tenant" not in generate_latest(REGISTRY).decode()
