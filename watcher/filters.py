"""OperatorConfig discovery filters: which discovery sources are watched, and in which namespaces.

The OperatorConfig singleton (polycrate/default) has one section per discovery type. A missing
section (or no OperatorConfig at all) means that discovery is off; a present section is on
unless `enabled: false`. Within a section an empty `watch_namespaces` means all namespaces and
`ignore_namespaces` always wins. Velero objects are also confined to `velero_namespace`,
CloudNativePG backups need `backup_discovery.cnpg_enabled` as well, and
`node_discovery.label_selector` narrows the Node watch server-side. The filters are re-read on
every OperatorConfig event; `update` reports which sections changed so the watcher can start,
stop or relist exactly those sources. An OperatorConfig that fails validation leaves the
previous filters in force (its own reconcile reports the error), so a typo never widens scope.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from pydantic import BaseModel, ValidationError

from polycrate.models.config import SINGLETON_NAME, SINGLETON_NAMESPACE, OperatorConfigSpec
from watcher.sources import WatchSource

log = logging.getLogger(__name__)


DISCOVERY_SECTIONS: tuple[str, ...] = (
    "endpoint_discovery",
    "app_discovery",
    "node_discovery",
    "backup_discovery",
    "certificate_discovery",
    "artifact_discovery",
)


def _section_state(spec: OperatorConfigSpec | None, section: str) -> dict[str, Any] | None:
    if spec is None:
        return None
    value: BaseModel | None = getattr(spec, section)
    return None if value is None else value.model_dump(mode="json")


class DiscoveryFilters:
    """The discovery sections currently in force; safe to read from every informer thread."""

    def __init__(self, spec: OperatorConfigSpec | None = None):
        self._lock = threading.Lock()
        self._spec = spec

    def update(self, operator_config: dict[str, Any] | None) -> frozenset[str]:
        """Adopt the OperatorConfig object (None: it was deleted); return the changed sections."""
        if operator_config is None:
            new_spec = None
        else:
            try:
                new_spec = OperatorConfigSpec.model_validate(operator_config.get("spec") or {})
            except ValidationError as exc:
                log.warning(
                    "OperatorConfig %s/%s is invalid (%d problems, first: %s at %s); keeping the previous discovery filters",
                    SINGLETON_NAMESPACE,
                    SINGLETON_NAME,
                    exc.error_count(),
                    exc.errors()[0]["msg"],
                    ".".join(str(part) for part in exc.errors()[0]["loc"]) or "spec",
                )
                return frozenset()
        with self._lock:
            old_spec, self._spec = self._spec, new_spec
        return frozenset(
            section
            for section in DISCOVERY_SECTIONS
            if _section_state(old_spec, section) != _section_state(new_spec, section)
        )

    def _section(self, name: str) -> Any:
        with self._lock:
            spec = self._spec
        return None if spec is None else getattr(spec, name)

    def is_watched(self, source: WatchSource) -> bool:
        """Whether the source should be list-watched at all (its discovery section is on)."""
        if source.discovery_section is None:
            return True
        section = self._section(source.discovery_section)
        if section is None or not section.enabled:
            return False
        return source.section_switch is None or bool(getattr(section, source.section_switch))

    def admits(self, source: WatchSource, namespace: str) -> bool:
        """Whether an object of `source` in `namespace` ("" when cluster-scoped) is in scope."""
        if source.discovery_section is None:
            return True
        if not self.is_watched(source):
            return False
        section = self._section(source.discovery_section)
        if section is None:
            return False  # switched off between the two reads
        if not source.namespaced:
            return True
        if source.section_namespace is not None and namespace != getattr(section, source.section_namespace):
            return False
        return bool(section.watches(namespace))

    def label_selector(self, source: WatchSource) -> str:
        """The server-side label selector for the source's list and watch requests."""
        parts = [source.label_selector] if source.label_selector else []
        if source.discovery_section == "node_discovery":
            section = self._section("node_discovery")
            if section is not None and section.label_selector:
                parts.append(section.label_selector)
        return ",".join(parts)
