"""Member roles of GitLab and Harbor: one table, read by the models (and so the CRD enums) and
by the workers, so a role the CRD admits is always one the worker can grant.

GitLab access levels follow doc/api/members.md; 15 (Planner) is in the current API's
`access_level` enums (see specs/gitlab-v4-endpoints.md). Harbor's role ids come from its
project member API; 5 (limitedGuest) is real although the spec's text only names 1-4.
"""

from __future__ import annotations

from typing import Literal, get_args

GitLabAccessLevel = Literal["guest", "planner", "reporter", "developer", "maintainer", "owner"]
"""GitLab member roles by name, as the CRDs spell them (`accessLevel: developer`)."""

GITLAB_ACCESS_LEVELS: dict[str, int] = {
    "guest": 10,
    "planner": 15,
    "reporter": 20,
    "developer": 30,
    "maintainer": 40,
    "owner": 50,
}

HarborRole = Literal["projectAdmin", "maintainer", "developer", "guest", "limitedGuest"]
"""Harbor project member roles by name."""

HARBOR_ROLE_IDS: dict[str, int] = {
    "projectAdmin": 1,
    "maintainer": 4,
    "developer": 2,
    "guest": 3,
    "limitedGuest": 5,
}

# The Literal types (for pydantic and the CRD enums) and the tables must name the same roles.
if set(get_args(GitLabAccessLevel)) != set(GITLAB_ACCESS_LEVELS):  # pragma: no cover - import-time guard
    raise ImportError("polycrate.roles: GitLabAccessLevel and GITLAB_ACCESS_LEVELS disagree")
if set(get_args(HarborRole)) != set(HARBOR_ROLE_IDS):  # pragma: no cover - import-time guard
    raise ImportError("polycrate.roles: HarborRole and HARBOR_ROLE_IDS disagree")


def choices(roles: dict[str, int]) -> str:
    """ "guest, planner, …, maintainer or owner": the roles of a table as a field description."""
    names = list(roles)
    return f"{', '.join(names[:-1])} or {names[-1]}"
