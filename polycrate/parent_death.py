"""Child processes that end when their parent dies: Linux's parent-death signal.

A child started by an operator process (redis-server by `operator run`, the Celery worker by
`operator worker`) must not outlive it: a SIGKILLed parent runs no cleanup, and an orphaned
Celery worker would go on consuming and reconciling unsupervised, an orphaned redis-server would
hold its port. So the child asks the kernel, between fork and exec, to be sent SIGTERM when its
parent dies (prctl PR_SET_PDEATHSIG). Linux counts the *thread* that forked as the parent: start
such a child from a thread that lives as long as the child should.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import signal
import sys
from collections.abc import Callable

_PR_SET_PDEATHSIG = 1


@functools.cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


def die_with_parent(sig: signal.Signals = signal.SIGTERM) -> Callable[[], None] | None:
    """A `preexec_fn` for subprocess.Popen that makes the child receive `sig` when the calling
    process dies; None where the kernel has no such signal (not Linux)."""
    if sys.platform != "linux":
        return None
    # Resolved here, in the parent: between fork and exec the child of a threaded process may
    # only do the little that cannot deadlock, and find_library runs other programs.
    prctl = _libc().prctl
    parent = os.getpid()

    def preexec() -> None:  # runs in the child between fork and exec
        prctl(_PR_SET_PDEATHSIG, int(sig))
        if os.getppid() != parent:  # the parent died before the signal was armed
            os.kill(os.getpid(), sig)

    return preexec
