"""Which handler reconciles which key kind, and how extra handler modules are plugged in.

The reconcile task knows nothing about kinds: it asks the registry for the handler of a key's
kind and calls `fetch`, then `reconcile`, and `report_failure` when that raised. The built-in
handlers (tasks.registration) register first; modules named in POLYCRATE_HANDLER_MODULES (comma
separated) are imported next and their `register_handlers(registry)` may add kinds or replace
built-in ones. That is how a deployment adds a kind, and how tests run recording or failing
handlers inside real worker processes without test code in the product.
"""

from __future__ import annotations

import importlib
import logging
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass

from polycrate.errors import PermanentError, PolycrateError
from polycrate.keys import ObjectKey
from polycrate.kubeclient.api import JsonObject
from polycrate.settings import SettingsError
from tasks.context import WorkerContext

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
    """Key kind -> handler."""

    def __init__(self) -> None:
        self._handlers: dict[str, KindHandler] = {}

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


def load_handler_modules(registry: HandlerRegistry, module_names: Iterable[str]) -> None:
    """Import each module and let its `register_handlers(registry)` add or replace handlers."""
    for name in module_names:
        try:
            module = importlib.import_module(name)
        except ImportError as exc:
            raise SettingsError(f"POLYCRATE_HANDLER_MODULES: cannot import {name!r}: {exc}") from exc
        hook = getattr(module, "register_handlers", None)
        if not callable(hook):
            raise SettingsError(
                f"POLYCRATE_HANDLER_MODULES: module {name!r} has no register_handlers(registry)"
            )
        hook(registry)
        log.info("handlers from %s registered", name)
