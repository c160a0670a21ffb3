"""Declared watches: which keys a reconcile of one kind wakes, evaluated by the runtime.

A flow does not enqueue the objects that wait for it; registration declares a `Watch` per
source kind with a mapping function (controller-runtime's `Watches(source, MapFunc)`), and the
reconciler evaluates the watches of the kind it just ran, after the run, also after a run that
failed halfway (a mapping decides from `SourceRun` whether that counts). A handler that knows
more than its object shows (e.g. which memberships it changed) `note`s it during the run, and
the mapping reads the notes. Failure prevented: wake-ups scattered through handlers, each with
its own queue and error policy, that a new dependent kind silently misses. Plan mode runs no
reconciler, so a plan wakes nobody; `note` outside a run is a no-op.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from polycrate.errors import TransientError
from polycrate.keys import ObjectKey
from polycrate.kubeclient.api import JsonObject
from tasks.context import WorkerContext

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SourceRun:
    """One reconcile of a watched object, as a mapping function sees it.

    `obj` is the object as the run fetched it (before the run wrote anything); `succeeded` is
    False for a run that failed (retrying or parked); `notes` are what the handler noted."""

    key: ObjectKey
    obj: JsonObject
    succeeded: bool
    notes: Mapping[str, Any] = field(default_factory=dict)

    @property
    def deleting(self) -> bool:
        return bool((self.obj.get("metadata") or {}).get("deletionTimestamp"))

    def became_ready(self) -> bool:
        """The run succeeded and made the object Ready: it was not Ready at this generation
        before (first time, after an error, or a new generation), and is not being deleted."""
        if not self.succeeded or self.deleting:
            return False
        status = self.obj.get("status") or {}
        generation = (self.obj.get("metadata") or {}).get("generation")
        return not (status.get("phase") == "Ready" and status.get("observedGeneration") == generation)


MapFunc = Callable[[WorkerContext, SourceRun], Iterable[ObjectKey]]


@dataclass(frozen=True)
class Watch:
    """A reconcile of a `source` object wakes the keys `map` returns (`name` says who waits)."""

    source: str
    map: MapFunc
    name: str


_notes: ContextVar[dict[str, Any] | None] = ContextVar("polycrate_run_notes", default=None)


def note(name: str, value: Any) -> None:
    """Tell this run's watches a fact the object does not show (a no-op outside a reconcile)."""
    notes = _notes.get()
    if notes is not None:
        notes[name] = value


@contextmanager
def noting() -> Iterator[dict[str, Any]]:
    """The notes of one run: what the handler `note`s inside ends up in the yielded dict."""
    notes: dict[str, Any] = {}
    token = _notes.set(notes)
    try:
        yield notes
    finally:
        _notes.reset(token)


def wake_watchers(ctx: WorkerContext, watches: Iterable[Watch], run: SourceRun) -> None:
    """Enqueue what each watch maps `run` to (`ctx.enqueue`, one error policy).

    A mapping that cannot read what it needs (the API is away) is logged, never raised: the
    dependents still converge at their own retry or resync, and the source's run is not failed
    for a wake-up. A TransientError of `ctx.enqueue` (Redis did not take a key, so nothing
    recorded the wake) is raised after every watch was tried, so the caller can retry the run.
    """
    refused: TransientError | None = None
    for watch in watches:
        try:
            keys = sorted(set(watch.map(ctx, run)))
        except Exception as exc:  # noqa: BLE001 - a wake-up never fails the source's run
            log.warning("could not map %s to its %s: %s", run.key, watch.name, type(exc).__name__)
            continue
        if not keys:
            continue
        try:
            ctx.enqueue(keys, reason=f"{run.key.describe()} changed ({watch.name})")
        except TransientError as exc:
            refused = exc
    if refused is not None:
        raise refused
