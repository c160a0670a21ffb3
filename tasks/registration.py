"""Handler registration in one place: which handler reconciles which kind, by plain imports.

Guarantee: every polycrate.io kind and every discovery source has exactly one handler, and the
flow of a kind replaces its generic handler in a fixed, visible order. It prevents the circle
that string-loaded flow modules used to hide (`dispatch` importing `handlers` importing
`dispatch`): the registry and the handler bases know nothing of the flows; only this module
imports them. The declared watches (which kind's reconcile wakes which keys) are listed here
too, in `WATCHES`, so who waits for whom is read in one place. Handler plug-ins (entry points
of the group `polycrate.handlers`, `dispatch.load_plugins`) are loaded last and may replace
built-in handlers of the table's kinds.
"""

from __future__ import annotations

from collections.abc import Iterable
from importlib.metadata import EntryPoint

from polycrate.kubeclient.resources import SOURCE_RESOURCES
from polycrate.models import KINDS
from tasks.dispatch import HandlerRegistry, load_plugins
from tasks.flows import (
    clusters,
    discovery_apps,
    discovery_backups,
    discovery_certificates,
    discovery_endpoints,
    operator_config,
    platform,
    standalone,
    tenancy,
)
from tasks.handlers import CustomResourceHandler, DiscoverySourceHandler

# Who waits for whom: a reconcile of each watch's source kind wakes the keys its mapping returns
# (evaluated by the reconciler after the run, tasks.watches).
WATCHES = (
    *tenancy.watches(),
    *clusters.watches(),
    *operator_config.watches(),
)

# Flows whose `handlers()` replace the generic handler of their kinds, in registration order.
FLOWS = (
    platform,
    operator_config,
    discovery_endpoints,
    discovery_certificates,
    discovery_backups,
    discovery_apps,
    standalone,
    clusters,
    tenancy,
)


def register_handlers(registry: HandlerRegistry) -> None:
    """The built-in handlers: the generic one per kind and source, then each flow's."""
    for info in KINDS.values():
        registry.register(CustomResourceHandler(info))
    for kind in SOURCE_RESOURCES:
        registry.register(DiscoverySourceHandler(kind))
    for flow in FLOWS:
        for handler in flow.handlers():
            registry.register(handler, replace=True)
    for watch in WATCHES:
        registry.watch(watch)


def build_registry(plugins: Iterable[EntryPoint] | None = None) -> HandlerRegistry:
    """The built-in handlers plus the plug-ins' (default: the installed `polycrate.handlers` entry points)."""
    registry = HandlerRegistry()
    register_handlers(registry)
    load_plugins(registry, plugins)
    return registry
