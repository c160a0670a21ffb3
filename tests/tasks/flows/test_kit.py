"""The flows' kit: one way to combine per-SDP failures and to patch a per-SDP status map."""

from __future__ import annotations

import pytest

from polycrate.errors import (
    DependencyNotFoundError,
    DependencyNotReadyError,
    InvalidSpecError,
    PermanentError,
    TransientError,
)
from tasks.flows.kit import combined_error, status_map


def test_failures_that_all_need_a_fix_combine_into_one_permanent_error_with_every_message() -> None:
    error = combined_error([InvalidSpecError("a: bad"), InvalidSpecError("b: bad")])

    assert type(error) is InvalidSpecError
    assert str(error) == "a: bad; b: bad"


def test_permanent_failures_of_different_kinds_keep_the_first_reason() -> None:
    error = combined_error([DependencyNotReadyError("a: waits"), InvalidSpecError("b: bad")])

    assert type(error) is PermanentError
    assert error.reason == "DependencyNotReady"


def test_one_failure_that_may_pass_by_itself_makes_the_whole_transient_after_the_longest_retry_after() -> (
    None
):
    error = combined_error(
        [
            DependencyNotFoundError("a: missing"),
            TransientError("b: 429", retry_after=30),
            TransientError("c: 503", retry_after=5),
        ],
        message="three SDPs failed",
    )

    assert isinstance(error, TransientError)
    assert (str(error), error.retry_after) == ("three SDPs failed", 30)


@pytest.mark.parametrize(
    ("current", "desired", "patch"),
    [
        ({"production": 1, "staging": 2}, {"production": 1}, {"production": 1, "staging": None}),
        (None, {"production": 1}, {"production": 1}),
        ({"production": 1}, {}, None),
    ],
)
def test_status_map_patch_deletes_the_keys_no_longer_desired(
    current: dict[str, int] | None, desired: dict[str, int], patch: dict[str, int | None] | None
) -> None:
    assert status_map(current, desired) == patch
