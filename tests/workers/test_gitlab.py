"""workers.gitlab against the GitLab emulator over real HTTP, through python-gitlab.

Every step (groups, subgroups, members, users) with its idempotence, the failure classes the
retry policy relies on (not found, duplicate, auth, 429 with Retry-After, 5xx, timeout), GitLab
pagination, the shared Redis rate limit, and the promise that no token leaves the process.
"""

from __future__ import annotations

import logging
import time

import gitlab
import pytest
import redis

from emulators.gitlab import GitLabEmulator
from polycrate.errors import InvalidSpecError, PermanentError, TransientError
from polycrate.httppolicy import HttpPolicy
from polycrate.ratelimit import RateLimiter
from workers.change import Change
from workers.gitlab import GitLabClient, clear_clients, get_client, parse_access_level

ROOT_ID = 1  # the emulator's administrator, owner of every group it creates


@pytest.fixture
def client(gitlab_emulator: GitLabEmulator):
    gitlab_client = GitLabClient(gitlab_emulator.url, gitlab_emulator.admin_token)
    yield gitlab_client
    gitlab_client.close()


def add_user(emulator: GitLabEmulator, username: str) -> int:
    """Set the stage as an administrator would: POST /users through python-gitlab."""
    admin = gitlab.Gitlab(emulator.url, private_token=emulator.admin_token)
    user = admin.users.create(
        {
            "username": username,
            "name": username.title(),
            "email": f"{username}@example.com",
            "password": "s3cret-pass",
        }
    )
    return user.id


# --- groups ------------------------------------------------------------------------------------


def test_ensure_group_creates_it_with_visibility_and_description(client):
    change = client.ensure_group("acme-corp", visibility="internal", description="ACME Corporation")
    group = client.get_group("acme-corp")
    assert change == Change("created", id=group.id, detail="group acme-corp created")
    assert (group.full_path, group.visibility, group.description, group.parent_id) == (
        "acme-corp",
        "internal",
        "ACME Corporation",
        None,
    )


def test_ensure_group_a_second_time_changes_nothing_and_writes_nothing(gitlab_emulator, client):
    created = client.ensure_group("acme-corp", visibility="private", description="ACME")
    gitlab_emulator.calls.clear()
    again = client.ensure_group("acme-corp", visibility="private", description="ACME", group_id=created.id)
    assert again.action == "unchanged"
    assert dict(gitlab_emulator.calls) == {"GET /api/v4/groups/{id}": 1}


def test_ensure_group_creates_without_looking_first_and_reads_only_a_taken_path(gitlab_emulator, client):
    assert client.ensure_group("acme-corp", visibility="private").action == "created"
    assert dict(gitlab_emulator.calls) == {"POST /api/v4/groups": 1}
    gitlab_emulator.calls.clear()

    # Without a recorded id the create is tried; "has already been taken" leads to one read.
    assert client.ensure_group("acme-corp", visibility="private").action == "unchanged"
    assert dict(gitlab_emulator.calls) == {"POST /api/v4/groups": 1, "GET /api/v4/groups/{id}": 1}
    assert [g["full_path"] for g in gitlab_emulator.snapshot()["groups"]] == ["acme-corp"]


def test_ensure_group_creates_missing_parents_with_the_same_visibility(client):
    change = client.ensure_group("acme-corp/platform/team", visibility="internal")
    parents = [client.get_group(p) for p in ("acme-corp", "acme-corp/platform")]
    leaf = client.get_group("acme-corp/platform/team")
    assert change.action == "created" and change.id == leaf.id
    assert [(g.full_path, g.visibility) for g in parents] == [
        ("acme-corp", "internal"),
        ("acme-corp/platform", "internal"),
    ]
    assert leaf.parent_id == parents[1].id


def test_ensure_group_under_an_existing_parent_leaves_the_parent_alone(client):
    client.ensure_group("acme-corp", visibility="public", description="keep me")
    client.ensure_group("acme-corp/team", visibility="private")
    parent = client.get_group("acme-corp")
    assert (parent.visibility, parent.description) == ("public", "keep me")


def test_ensure_group_updates_only_what_differs(client):
    created = client.ensure_group("acme-corp", visibility="private", description="old")
    change = client.ensure_group("acme-corp", visibility="internal", description="old")
    assert change == Change("updated", id=created.id, detail="visibility 'private' → 'internal'")
    assert client.get_group("acme-corp").visibility == "internal"


def test_update_group_changes_visibility_and_description(client):
    client.ensure_group("acme-corp")
    change = client.update_group("acme-corp", visibility="internal", description="ACME")
    group = client.get_group("acme-corp")
    assert change.action == "updated"
    assert (group.visibility, group.description) == ("internal", "ACME")


def test_update_of_a_missing_group_is_a_permanent_not_found(client):
    with pytest.raises(PermanentError) as caught:
        client.update_group("nowhere", visibility="private")
    assert caught.value.reason == "NotFound"


def test_subgroup_more_visible_than_its_parent_is_a_permanent_error_with_gitlabs_reason(client):
    client.ensure_group("acme-corp", visibility="private")
    with pytest.raises(PermanentError) as caught:
        client.ensure_group("acme-corp/team", visibility="public")
    assert caught.value.status_code == 400
    assert "public is not allowed since the parent group has a private visibility" in str(caught.value)


def test_group_path_taken_by_a_user_is_a_permanent_conflict(gitlab_emulator, client):
    add_user(gitlab_emulator, "alice")
    with pytest.raises(PermanentError) as caught:
        client.ensure_group("alice")
    assert caught.value.reason == "Conflict"
    assert "choose another groupPath" in str(caught.value)


def test_create_that_loses_a_race_reads_the_winner_back(gitlab_emulator):
    # Two workers decide to create the same group; the second one's POST gets GitLab's 400.
    first = GitLabClient(gitlab_emulator.url, gitlab_emulator.admin_token)
    second = GitLabClient(gitlab_emulator.url, gitlab_emulator.admin_token)
    assert second.get_group("acme-corp") is None
    first.ensure_group("acme-corp", visibility="private")
    group, created = second._create_group("acme-corp", visibility="private", description=None, name=None)
    assert (created, group.full_path) == (False, "acme-corp")
    assert second.ensure_group("acme-corp", visibility="private").action == "unchanged"


@pytest.mark.parametrize(
    "path,visibility",
    [("", None), ("acme corp", None), ("-acme", None), ("acme/team.git", None), ("acme", "secret")],
)
def test_invalid_path_or_visibility_is_an_invalid_spec_before_any_request(
    gitlab_emulator, client, path, visibility
):
    with pytest.raises(InvalidSpecError):
        client.ensure_group(path, visibility=visibility)
    assert not gitlab_emulator.calls


def test_get_group_of_a_missing_group_is_none(client):
    assert client.get_group("nowhere") is None
    assert client.get_group(4242) is None


def test_get_group_by_numeric_id_matches_by_path(client):
    created = client.ensure_group("acme-corp/team")
    assert client.get_group(created.id) == client.get_group("acme-corp/team")


def test_delete_group_deletes_then_reports_already_gone(client):
    client.ensure_group("acme-corp/team")
    assert client.delete_group("acme-corp") is True
    assert client.get_group("acme-corp/team") is None
    assert client.delete_group("acme-corp") is False


def test_list_subgroups_follows_every_page(gitlab_emulator, client):
    gitlab_emulator.max_per_page = 2
    for name in ("a", "b", "c", "d", "e"):
        client.ensure_group(f"acme-corp/{name}")
    gitlab_emulator.calls.clear()
    assert sorted(g.path for g in client.list_subgroups("acme-corp")) == ["a", "b", "c", "d", "e"]
    assert gitlab_emulator.calls["GET /api/v4/groups/{id}/subgroups"] == 3


# --- members ------------------------------------------------------------------------------------


def test_ensure_member_adds_then_is_unchanged(gitlab_emulator, client):
    client.ensure_group("acme-corp")
    alice = add_user(gitlab_emulator, "alice")
    assert client.ensure_member("acme-corp", alice, "developer") == Change(
        "created", id=alice, detail="access level developer"
    )
    assert client.ensure_member("acme-corp", alice, 30) == Change("unchanged", id=alice)
    assert client.get_member("acme-corp", alice).access_level == 30


def test_ensure_member_changes_the_access_level(gitlab_emulator, client):
    client.ensure_group("acme-corp")
    alice = add_user(gitlab_emulator, "alice")
    client.ensure_member("acme-corp", alice, "developer")
    change = client.ensure_member("acme-corp", alice, "maintainer")
    assert change == Change("updated", id=alice, detail="access level developer → maintainer")
    assert client.get_member("acme-corp", alice).access_level == 40


def test_ensure_member_that_loses_a_race_converges_on_the_level(gitlab_emulator, client):
    client.ensure_group("acme-corp")
    alice = add_user(gitlab_emulator, "alice")
    other_worker = GitLabClient(gitlab_emulator.url, gitlab_emulator.admin_token)
    assert other_worker._add_member("acme-corp", alice, 30) is True
    assert other_worker._add_member("acme-corp", alice, 30) is False  # GitLab's 409
    assert client.ensure_member("acme-corp", alice, "owner").action == "updated"


def test_ensure_member_of_a_subgroup_addressed_by_id(gitlab_emulator, client):
    team = client.ensure_group("acme-corp/team")
    alice = add_user(gitlab_emulator, "alice")
    assert client.ensure_member(team.id, alice, "reporter").action == "created"
    assert [m.username for m in client.list_members("acme-corp/team") if m.user_id == alice] == ["alice"]


def test_adding_an_unknown_user_is_a_permanent_not_found(client):
    client.ensure_group("acme-corp")
    with pytest.raises(PermanentError) as caught:
        client.ensure_member("acme-corp", 4242, "developer")
    assert caught.value.reason == "NotFound"
    assert "404 User Not Found" in str(caught.value)


def test_unknown_access_level_is_an_invalid_spec_that_lists_the_choices():
    with pytest.raises(InvalidSpecError, match=r"developer \(30\)"):
        parse_access_level("superuser")
    assert [parse_access_level(v) for v in ("Owner", 40, "20")] == [50, 40, 20]


def test_remove_member_removes_then_reports_already_gone(gitlab_emulator, client):
    client.ensure_group("acme-corp")
    alice = add_user(gitlab_emulator, "alice")
    client.ensure_member("acme-corp", alice, "guest")
    assert client.remove_member("acme-corp", alice) is True
    assert client.get_member("acme-corp", alice) is None
    assert client.remove_member("acme-corp", alice) is False


def test_list_members_follows_every_page_and_can_include_inherited(gitlab_emulator, client):
    gitlab_emulator.max_per_page = 2
    client.ensure_group("acme-corp/team")
    users = [add_user(gitlab_emulator, f"user{i}") for i in range(5)]
    for user_id in users:
        client.ensure_member("acme-corp", user_id, "developer")
    client.ensure_member("acme-corp/team", users[0], "maintainer")
    direct = client.list_members("acme-corp")
    inherited = client.list_members("acme-corp/team", inherited=True)
    assert sorted(m.user_id for m in direct) == [ROOT_ID, *users]
    assert {m.user_id: m.access_level for m in inherited} == {
        ROOT_ID: 50,
        users[0]: 40,
        **{u: 30 for u in users[1:]},
    }


# --- users --------------------------------------------------------------------------------------


def test_find_user_by_username_case_insensitively(gitlab_emulator, client):
    alice = add_user(gitlab_emulator, "alice")
    found = client.find_user("Alice")
    assert (found.id, found.username, found.state) == (alice, "alice", "active")


def test_find_user_falls_back_to_email(gitlab_emulator, client):
    alice = add_user(gitlab_emulator, "alice")
    assert client.find_user("alice.smith", email="ALICE@example.com").id == alice


def test_find_user_that_does_not_exist_is_none(client):
    assert client.find_user("nobody", email="nobody@example.com") is None


# --- failures and their classes ---------------------------------------------------------------------


def test_wrong_token_is_a_permanent_unauthorized_error(gitlab_emulator):
    with pytest.raises(PermanentError) as caught:
        GitLabClient(gitlab_emulator.url, "glpat-not-valid").get_group("acme-corp")
    assert (caught.value.reason, caught.value.status_code) == ("Unauthorized", 401)
    assert "check the token" in str(caught.value)


def test_429_is_transient_and_carries_the_retry_after_hint(gitlab_emulator, client):
    gitlab_emulator.set_faults(rate_limit={"count": 1, "retry_after": 7})
    started = time.monotonic()
    with pytest.raises(TransientError) as caught:
        client.ensure_group("acme-corp")
    # python-gitlab would sleep the 7 s itself; the worker hands the wait to the retry policy.
    assert time.monotonic() - started < 2
    assert (caught.value.status_code, caught.value.retry_after) == (429, 7.0)
    assert client.ensure_group("acme-corp").action == "created"


@pytest.mark.parametrize("status", [500, 502, 503])
def test_server_errors_are_transient(gitlab_emulator, client, status):
    gitlab_emulator.set_faults(error_rate=1.0, error_status=status)
    with pytest.raises(TransientError) as caught:
        client.get_group("acme-corp")
    assert caught.value.status_code == status
    assert 'GitLab: get group "acme-corp"' in str(caught.value)


def test_outage_window_is_transient_and_later_converges(gitlab_emulator, client):
    gitlab_emulator.set_faults(outage_seconds=0.3)
    with pytest.raises(TransientError):
        client.ensure_group("acme-corp")
    time.sleep(0.35)
    assert client.ensure_group("acme-corp").action == "created"


def test_slow_answer_beyond_the_read_timeout_is_transient(gitlab_emulator):
    gitlab_emulator.set_faults(slow_path="/groups", slow_ms=800)
    impatient = GitLabClient(
        gitlab_emulator.url, gitlab_emulator.admin_token, policy=HttpPolicy(read_timeout=0.2)
    )
    with pytest.raises(TransientError, match="timed out"):
        impatient.get_group("acme-corp")


def test_unreachable_server_is_transient():
    with pytest.raises(TransientError, match="cannot connect"):
        GitLabClient("http://127.0.0.1:9", "glpat-x", policy=HttpPolicy(connect_timeout=0.5)).get_group(
            "acme-corp"
        )


def test_a_request_the_contract_does_not_allow_is_caught_by_the_validator(gitlab_emulator, client):
    # Misspelt field: real GitLab would silently ignore it and create a private group.
    with pytest.raises(gitlab.GitlabHttpError) as caught:
        client.gitlab.http_post("/groups", post_data={"name": "acme", "path": "acme", "visiblity": "public"})
    assert caught.value.response_code == 400
    [violation] = gitlab_emulator.take_violations()
    assert "'visiblity' was unexpected" in violation["problems"][0]


# --- scale manners ------------------------------------------------------------------------------------


def test_two_workers_share_one_request_budget_per_sdp(gitlab_emulator, redis_url):
    shared = redis.Redis.from_url(redis_url)
    workers = [
        GitLabClient(
            gitlab_emulator.url,
            gitlab_emulator.admin_token,
            limiter=RateLimiter(shared, system="gitlab", scope="polycrate/production", rate=20, burst=1),
        )
        for _ in range(2)
    ]
    started = time.monotonic()
    for i in range(10):
        workers[i % 2].get_group("acme-corp")
    elapsed = time.monotonic() - started
    for worker in workers:
        worker.close()
    # GCRA lets the first two through at once; the other 8 wait one 50 ms interval each.
    assert elapsed >= 0.38
    assert shared.keys("polycrate:ratelimit:gitlab:*") == [b"polycrate:ratelimit:gitlab:polycrate/production"]
    shared.close()


def test_one_client_per_sdp_and_token_is_reused_and_a_rotated_token_replaces_it(gitlab_emulator):
    clear_clients()
    first = get_client("polycrate/production", gitlab_emulator.url, gitlab_emulator.admin_token)
    again = get_client("polycrate/production", gitlab_emulator.url + "/", gitlab_emulator.admin_token)
    other_sdp = get_client("polycrate/staging", gitlab_emulator.url, gitlab_emulator.admin_token)
    rotated = get_client("polycrate/production", gitlab_emulator.url, "glpat-rotated")
    assert first is again
    assert other_sdp is not first
    assert rotated is not first
    clear_clients()


def test_the_latest_rate_limit_applies_to_a_cached_client(gitlab_emulator, redis_client):
    clear_clients()
    limiter = RateLimiter(redis_client, system="gitlab", scope="polycrate/production", rate=5, burst=1)
    client = get_client("polycrate/production", gitlab_emulator.url, gitlab_emulator.admin_token)
    assert (
        get_client("polycrate/production", gitlab_emulator.url, gitlab_emulator.admin_token, limiter=limiter)
        is client
    )
    client.get_group("acme-corp")
    assert redis_client.exists(limiter.key)
    clear_clients()


def test_empty_token_is_refused_before_any_request(gitlab_emulator):
    with pytest.raises(PermanentError, match="token is empty"):
        get_client("polycrate/production", gitlab_emulator.url, "")


# --- no secret leaves the process ---------------------------------------------------------------------

MARKER = "MARKER-5d1e-secret"


def test_no_secret_appears_in_logs_errors_or_redis_keys(gitlab_emulator, redis_url, caplog):
    caplog.set_level(logging.DEBUG)
    token = f"glpat-{MARKER}"
    gitlab_emulator.tokens[token] = ROOT_ID
    shared = redis.Redis.from_url(redis_url)
    limiter = RateLimiter(shared, system="gitlab", scope="polycrate/production", rate=1000, burst=100)
    client = GitLabClient(gitlab_emulator.url, token, limiter=limiter)
    messages = [repr(client)]

    alice = add_user(gitlab_emulator, "alice")
    client.ensure_group("acme-corp/team", visibility="internal")
    client.ensure_member("acme-corp/team", alice, "developer")
    client.list_members("acme-corp/team", inherited=True)
    client.find_user("alice")
    for fault in ({"rate_limit": {"count": 1, "retry_after": 1}}, {"error_rate": 1.0, "error_status": 500}):
        gitlab_emulator.set_faults(**fault)
        with pytest.raises(TransientError) as failure:
            client.ensure_member("acme-corp/team", alice, "maintainer")
        messages.append(str(failure.value))
        gitlab_emulator.set_faults(error_rate=0.0)
    for wrong in (f"glpat-{MARKER}-wrong", ""):
        with pytest.raises(PermanentError) as refused:
            get_client("polycrate/production", gitlab_emulator.url, wrong).get_group("acme-corp")
        messages.append(str(refused.value))
    client.delete_group("acme-corp")
    client.close()
    clear_clients()

    assert "/api/v4/groups" in caplog.text  # urllib3 and the emulator did log every request
    assert MARKER not in caplog.text
    assert not [m for m in messages if MARKER in m]
    assert not [k for k in shared.scan_iter() if MARKER.encode() in k]
    shared.close()
