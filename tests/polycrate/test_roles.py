"""One role table for the CRDs and the workers."""

from __future__ import annotations

from typing import get_args

from polycrate.models import GitLabGroupSpec, HarborProjectSpec
from polycrate.roles import GITLAB_ACCESS_LEVELS, HARBOR_ROLE_IDS, GitLabAccessLevel, HarborRole, choices
from workers.gitlab import parse_access_level
from workers.harbor import ROLE_NAMES


def test_gitlab_roles_map_to_the_apis_access_levels_including_planner() -> None:
    assert GITLAB_ACCESS_LEVELS == {
        "guest": 10,
        "planner": 15,
        "reporter": 20,
        "developer": 30,
        "maintainer": 40,
        "owner": 50,
    }
    assert set(get_args(GitLabAccessLevel)) == set(GITLAB_ACCESS_LEVELS)


def test_harbor_roles_map_to_harbors_role_ids() -> None:
    assert HARBOR_ROLE_IDS == {
        "projectAdmin": 1,
        "developer": 2,
        "guest": 3,
        "maintainer": 4,
        "limitedGuest": 5,
    }
    assert set(get_args(HarborRole)) == set(HARBOR_ROLE_IDS)


def test_every_role_the_crd_admits_is_one_the_worker_grants() -> None:
    access_schema = GitLabGroupSpec.model_json_schema()["$defs"]["GitLabGroupAccess"]["properties"][
        "accessLevel"
    ]
    assert {name: parse_access_level(name) for name in access_schema["enum"]} == GITLAB_ACCESS_LEVELS
    role_schema = HarborProjectSpec.model_json_schema()["$defs"]["HarborProjectAccess"]["properties"]["role"]
    assert {ROLE_NAMES[HARBOR_ROLE_IDS[name]] for name in role_schema["enum"]} == set(HARBOR_ROLE_IDS)


def test_choices_lists_the_roles_for_a_field_description() -> None:
    assert choices({"guest": 10, "owner": 50}) == "guest or owner"
    assert choices(GITLAB_ACCESS_LEVELS) == "guest, planner, reporter, developer, maintainer or owner"
