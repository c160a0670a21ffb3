"""Pick up a source the moment its CRD is installed, instead of at the next periodic re-check.

Sources whose resource is not served wait `absent_recheck` seconds between looks, which is
fine for a CRD that arrives someday but slow for the common case of `install-crds` right
after `run`. This handler rides an informer on CustomResourceDefinitions and, whenever one is
added or changes (a real API server marks it Established a moment after creating it), wakes
the informer waiting for exactly that group and plural. It enqueues nothing. Without RBAC to
watch CRDs it just keeps retrying in the background and the periodic re-check still works.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from polycrate.keys import ObjectKey
from watcher.informer import Informer
from watcher.sources import WatchSource

CRD_SOURCE = WatchSource(
    key_kind="CustomResourceDefinition",
    group="apiextensions.k8s.io",
    version="v1",
    plural="customresourcedefinitions",
    namespaced=False,
)


class CrdArrivals:
    """Informer handler that wakes the informers waiting for a CRD that was just installed."""

    def __init__(self, informers: Callable[[], Iterable[Informer]]):
        self._informers = informers

    def listed(self, source: WatchSource, obj: dict[str, Any]) -> ObjectKey:
        self._wake_waiting_for(obj)
        return source.key_for(obj)

    def list_complete(self, source: WatchSource, seen: list[ObjectKey]) -> None:
        """Nothing to compare: CRDs are not keys of ours."""

    def event(self, source: WatchSource, event_type: str, obj: dict[str, Any]) -> None:
        if event_type != "DELETED":
            self._wake_waiting_for(obj)

    def _wake_waiting_for(self, crd: dict[str, Any]) -> None:
        spec = crd.get("spec") or {}
        group, plural = spec.get("group"), (spec.get("names") or {}).get("plural")
        for informer in self._informers():
            if informer.served is False and (informer.source.group, informer.source.plural) == (
                group,
                plural,
            ):
                informer.recheck_now()
