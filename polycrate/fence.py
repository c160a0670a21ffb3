"""The fence of the running reconcile: a run that may have lost its key's lock writes nothing more.

A reconcile holds its key's lock only as long as it can renew it. When renewal stops (its link
to Redis stalled, the process was paused) another worker may take the key and run a newer
version; if the old run kept writing, the last writer would be the stale one. So the runtime
installs a fence for the duration of each run, and every write to an external system or to the
Kubernetes API checks it first (the HTTP policy's adapter for mutating requests, the KubeClient for
writes): past the fence's deadline the check raises `FencedError` and the write never leaves.
Reads stay allowed; they change nothing. Outside a run no fence is installed and nothing is
checked (CLI, sandbox set-up, tests of the clients).
"""

from __future__ import annotations

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


@contextmanager
def fenced(check: Callable[[], None]) -> Iterator[None]:
    """Install `check` as the fence of the code run inside the block (this thread or task only)."""
    token = _current.set(check)
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
