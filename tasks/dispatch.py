"""Which handler reconciles which key kind, and how handler plug-ins are loaded.

The reconcile task knows nothing about kinds: it asks the registry for the handler of a key's
kind and calls `fetch`, then `reconcile`, and `report_failure` when that raised. The built-in
handlers (tasks.registration) register first; then every installed package's entry point in
the group `polycrate.handlers` (Python packaging metadata, read with importlib.metadata, not a
module name in an environment variable) is loaded and called with the registry, and may replace
built-in handlers. A plug-in may only handle kinds of the table of kinds (polycrate/kinds.py):
another kind is refused while the registry is built, at the worker's start, because the runtime
would not know its queue. That is how tests run recording or failing handlers inside real
worker processes without test code in the product.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points

from polycrate.errors import PermanentError, PolycrateError
from polycrate.keys import ObjectKey
from polycrate.kinds import KIND_TABLE, KindTableError
from polycrate.kubeclient.api import JsonObject
from polycrate.settings import SettingsError
from tasks.context import WorkerContext
from tasks.watches import Watch

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Requeue:
    """A successful reconcile asks to run again `after` seconds from now.

    For state that changes with time alone (a certificate crossing its expiring-soon or expiry
    threshold): the key is reconciled at that moment instead of at the next periodic resync.
    """

    after: float


class KindHandler(ABC):
    """Reconciles the objects of one key kind."""

    kind: str

    def fetch(self, ctx: WorkerContext, key: ObjectKey) -> JsonObject | None:
        """The current object of `key`, or None when it is gone (then there is nothing to do)."""
        return ctx.objects.get(key)

    @abstractmethod
    def reconcile(self, ctx: WorkerContext, key: ObjectKey, obj: JsonObject) -> Requeue | None:
        """Drive the world toward `obj`; raise TransientError to retry, PermanentError to park.

        Return `Requeue(after=seconds)` when the outcome will change with time alone."""

    def report_failure(
        self,
        ctx: WorkerContext,
        key: ObjectKey,
        obj: JsonObject | None,
        error: PolycrateError,
        *,
        retrying: bool,
    ) -> None:
        """Make a failed reconcile visible; by default a Warning Event on the object."""
        if obj is not None:
            reason = "Retrying" if retrying else getattr(error, "reason", "Failed")
            ctx.events.record(obj, "Warning", reason, str(error))


class HandlerRegistry:
    """Key kind -> handler, and source kind -> the watches a reconcile of it wakes."""

    def __init__(self) -> None:
        self._handlers: dict[str, KindHandler] = {}
        self._watches: dict[str, list[Watch]] = {}

    def watch(self, watch: Watch) -> None:
        """Declare that a reconcile of a `watch.source` object wakes the keys `watch.map` returns."""
        if watch.source not in self._handlers:
            raise ValueError(
                f"watch {watch.name!r}: no handler is registered for its source {watch.source!r}"
            )
        self._watches.setdefault(watch.source, []).append(watch)

    def watches_of(self, kind: str) -> tuple[Watch, ...]:
        return tuple(self._watches.get(kind, ()))

    def register(self, handler: KindHandler, *, replace: bool = False) -> None:
        if handler.kind in self._handlers and not replace:
            raise ValueError(f"a handler for {handler.kind} is already registered (pass replace=True)")
        self._handlers[handler.kind] = handler

    def handler_for(self, kind: str) -> KindHandler:
        try:
            return self._handlers[kind]
        except KeyError:
            raise PermanentError(
                f"no handler is registered for kind {kind!r} (known: {', '.join(sorted(self._handlers))})",
                reason="NoHandler",
            ) from None

    def kinds(self) -> tuple[str, ...]:
        return tuple(sorted(self._handlers))

    def __contains__(self, kind: object) -> bool:
        return kind in self._handlers


PLUGIN_GROUP = "polycrate.handlers"
"""The entry-point group of handler plug-ins: each names a `register_handlers(registry)`."""


def load_plugins(registry: HandlerRegistry, plugins: Iterable[EntryPoint] | None = None) -> None:
    """Call each plug-in's `register_handlers(registry)` (default: the installed entry points)."""
    found = entry_points(group=PLUGIN_GROUP) if plugins is None else plugins
    for plugin in found:
        where = f"handler plug-in {plugin.name!r} ({plugin.value}, entry point group {PLUGIN_GROUP})"
        try:
            hook = plugin.load()
        except (ImportError, AttributeError) as exc:
            raise SettingsError(f"{where}: cannot load it: {exc}") from exc
        if not callable(hook):
            raise SettingsError(f"{where}: is not a callable register_handlers(registry)")
        before = set(registry.kinds())
        hook(registry)
        unknown = sorted(set(registry.kinds()) - before - set(KIND_TABLE))
        if unknown:
            raise KindTableError(
                f"{where} handles kind(s) {', '.join(unknown)}, which are not in the table of kinds "
                "(add a KindEntry with their queue to polycrate/kinds.py)"
            )
        log.info("handlers of %s registered", where)
