"""The fence belongs to one run: with Celery's threads pool, a fenced task stops writing while
another task running at the same time in the same process writes on."""

from __future__ import annotations

import threading

import pytest
from celery.concurrency.thread import TaskPool

from polycrate.fence import FencedError, check_fence, check_fence_for, fenced, time_limit
from polycrate.httppolicy import new_session

HARBOR_PROJECTS = "/api/v2.0/projects"


def _lost_lock() -> None:
    raise FencedError("lock lost to another worker")


def test_outside_a_run_nothing_is_fenced():
    check_fence()
    check_fence_for("POST")


def test_reads_pass_a_closed_fence_and_writes_do_not():
    with fenced(_lost_lock):
        check_fence_for("GET")
        with pytest.raises(FencedError):
            check_fence_for("DELETE")
    check_fence_for("DELETE")


def test_a_run_past_its_time_limit_is_fenced_while_one_within_it_writes():
    with fenced(time_limit(300, "Organization acme/acme-corp")):
        check_fence_for("POST")
    with (
        fenced(lambda: None, time_limit(0, "Organization acme/acme-corp")),
        pytest.raises(FencedError, match="acme-corp: ran longer than its time limit of 0s"),
    ):
        check_fence_for("POST")


def test_two_concurrent_tasks_in_one_threads_pool_only_the_fenced_one_is_stopped(harbor):
    """Both tasks POST to Harbor at the same moment through the HTTP policy; the fenced one's
    request never leaves, the other one's arrives."""
    both_inside = threading.Barrier(2, timeout=10)
    outcomes: dict[str, str] = {}
    session = new_session(system="harbor")
    session.auth = (harbor.admin_username, harbor.admin_password)

    def task(name: str, fence: bool) -> None:
        def create_project() -> None:
            both_inside.wait()  # the other task is running now, its fence (or none) in place
            response = session.post(
                harbor.url + HARBOR_PROJECTS, json={"project_name": name, "metadata": {"public": "false"}}
            )
            outcomes[name] = str(response.status_code)

        try:
            if fence:
                with fenced(_lost_lock):
                    create_project()
            else:
                create_project()
        except FencedError:
            outcomes[name] = "fenced"

    pool = TaskPool(limit=2)
    pool.start()
    try:
        results = [
            pool.apply_async(task, args=(name, fence)) for name, fence in (("stale", True), ("fresh", False))
        ]
        for result in results:
            result.wait(timeout=30)
    finally:
        pool.stop()

    assert outcomes == {"stale": "fenced", "fresh": "201"}
    assert [p["name"] for p in harbor.snapshot()["projects"]] == ["library", "fresh"]


def test_a_pool_thread_carries_no_fence_into_its_next_task():
    seen: list[tuple[int, str]] = []

    def fenced_task() -> None:
        with fenced(_lost_lock):
            seen.append((threading.get_ident(), "fenced"))

    def next_task() -> None:
        check_fence_for("POST")
        seen.append((threading.get_ident(), "wrote"))

    pool = TaskPool(limit=1)
    pool.start()
    try:
        for task in (fenced_task, next_task):
            pool.apply_async(task).wait(timeout=10)
    finally:
        pool.stop()

    assert [what for _, what in seen] == ["fenced", "wrote"]
    assert seen[0][0] == seen[1][0], "both tasks ran on the pool's one thread"
