"""Handler registration in one place: which handler reconciles which kind, by plain imports.

Guarantee: every polycrate.io kind and every discovery source has exactly one handler, and the
flow of a kind replaces its generic handler in a fixed, visible order. It prevents the circle
that string-loaded flow modules used to hide (`dispatch` importing `handlers` importing
`dispatch`): the registry and the handler bases know nothing of the flows; only this module
imports them. Plug-in modules named in POLYCRATE_HANDLER_MODULES are loaded last
(`dispatch.load_handler_modules`) and may add kinds or replace built-in handlers.
"""

from __future__ import annotations

from collections.abc import Iterable

from polycrate.kubeclient.resources import SOURCE_RESOURCES
from polycrate.models import KINDS
from tasks.dispatch import HandlerRegistry, load_handler_modules
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


def build_registry(module_names: Iterable[str] = ()) -> HandlerRegistry:
    """The built-in handlers plus those of the plug-in modules `module_names`."""
    registry = HandlerRegistry()
    register_handlers(registry)
    load_handler_modules(registry, module_names)
    return registry
