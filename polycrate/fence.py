"""The fence of the running reconcile: a run that may have lost its key's lock writes nothing more.

A reconcile holds its key's lock only as long as it can renew it. When renewal stops (its link
to Redis stalled, the process was paused) another worker may take the key and run a newer
version; if the old run kept writing, the last writer would be the stale one. So the runtime
installs a fence for the duration of each run, and every write to an external system or to the
Kubernetes API checks it first (the HTTP policy's adapter for mutating requests, the KubeClient for
writes): past the fence's deadline the check raises `FencedError` and the write never leaves.
Reads stay allowed; they change nothing. Outside a run no fence is installed and nothing is
checked (CLI, sandbox set-up, tests of the clients).

The fence is a context variable, so it is per task even when many tasks share a process (the
worker's threads pool: each thread has its own context). `time_limit` closes the fence of a
run that has run too long: Celery enforces its task time limits only in the prefork pool, so
in the threads pool this is what keeps a run past POLYCRATE_RECONCILE_TIME_LIMIT from writing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

# Raises FencedError when the current run may no longer write; None outside a run.
_current: ContextVar[Callable[[], None] | None] = ContextVar("polycrate_fence", default=None)

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class FencedError(Exception):
    """The run lost (or can no longer prove it holds) its key's lock and must stop writing.

    Deliberately not a PolycrateError: flows that collect PolycrateErrors per step to carry on
    with the next system must not swallow it; it ends the run.
    """


def time_limit(seconds: float, what: str) -> Callable[[], None]:
    """A check that raises FencedError once `seconds` have passed since it was made."""
    deadline = time.monotonic() + seconds

    def check() -> None:
        if time.monotonic() >= deadline:
            raise FencedError(
                f"{what}: ran longer than its time limit of {seconds:g}s; this run stops writing"
            )

    return check


@contextmanager
def fenced(*checks: Callable[[], None]) -> Iterator[None]:
    """Install `checks` as the fence of the code run inside the block (this thread or task only)."""

    def check() -> None:
        for each in checks:
            each()

    token = _current.set(checks[0] if len(checks) == 1 else check)
    try:
        yield
    finally:
        _current.reset(token)


def check_fence() -> None:
    """Raise FencedError if the current run may no longer write; a no-op outside a run."""
    check = _current.get()
    if check is not None:
        check()


def check_fence_for(method: str) -> None:
    """`check_fence()` for requests that change something (POST, PUT, PATCH, DELETE)."""
    if method.upper() in WRITE_METHODS:
        check_fence()
