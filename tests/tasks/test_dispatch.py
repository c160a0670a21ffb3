"""The handler registry: built-in kinds, plug-ins from entry points (group polycrate.handlers), replacement."""

from __future__ import annotations

import sys
import types
from collections.abc import Iterator
from importlib.metadata import EntryPoint

import pytest

from polycrate.errors import PermanentError
from polycrate.keys import ObjectKey
from polycrate.kinds import KindTableError
from polycrate.kubeclient.api import JsonObject
from polycrate.models import KINDS
from polycrate.settings import SettingsError
from tasks.context import WorkerContext
from tasks.dispatch import PLUGIN_GROUP, HandlerRegistry, KindHandler, load_plugins
from tasks.registration import build_registry
from tasks.routing import DISCOVERY_SOURCE_KINDS


class Replacement(KindHandler):
    kind = "Organization"

    def reconcile(self, ctx: WorkerContext, key: ObjectKey, obj: JsonObject) -> None:
        """Does nothing: only its identity matters here."""


class Gadget(KindHandler):
    kind = "Gadget"

    def reconcile(self, ctx: WorkerContext, key: ObjectKey, obj: JsonObject) -> None:
        """Does nothing: its kind is not in the table of kinds."""


def plugin(value: str, name: str = "acme") -> EntryPoint:
    """An entry point as an installed package declares it in its metadata."""
    return EntryPoint(name=name, value=value, group=PLUGIN_GROUP)


@pytest.fixture
def plugin_module() -> Iterator[types.ModuleType]:
    """A module an installed plug-in package would provide."""
    module = types.ModuleType("polycrate_test_plugin")

    def register_handlers(registry: HandlerRegistry) -> None:
        registry.register(Replacement(), replace=True)

    def register_gadget(registry: HandlerRegistry) -> None:
        registry.register(Gadget())

    module.register_handlers = register_handlers  # type: ignore[attr-defined]
    module.register_gadget = register_gadget  # type: ignore[attr-defined]
    module.not_a_hook = 42  # type: ignore[attr-defined]
    sys.modules[module.__name__] = module
    yield module
    del sys.modules[module.__name__]


def test_every_polycrate_kind_and_discovery_source_has_a_built_in_handler() -> None:
    registry = build_registry()

    assert set(registry.kinds()) == set(KINDS) | set(DISCOVERY_SOURCE_KINDS)


def test_plugin_may_replace_a_built_in_handler(plugin_module: types.ModuleType) -> None:
    registry = build_registry([plugin(f"{plugin_module.__name__}:register_handlers")])

    assert isinstance(registry.handler_for("Organization"), Replacement)


def test_registering_a_kind_twice_without_replace_is_an_error() -> None:
    registry = HandlerRegistry()
    registry.register(Replacement())

    with pytest.raises(ValueError, match="already registered"):
        registry.register(Replacement())


def test_unknown_kind_is_a_permanent_error_listing_the_known_ones() -> None:
    with pytest.raises(PermanentError, match="no handler is registered for kind 'Gadget'.*Organization"):
        build_registry().handler_for("Gadget")


def test_plugin_that_cannot_be_imported_is_named_in_one_line() -> None:
    with pytest.raises(
        SettingsError, match="handler plug-in 'acme' \\(no.such.module:register_handlers.*cannot load"
    ):
        load_plugins(HandlerRegistry(), [plugin("no.such.module:register_handlers")])


def test_plugin_that_is_not_a_hook_is_rejected(plugin_module: types.ModuleType) -> None:
    with pytest.raises(SettingsError, match="is not a callable register_handlers"):
        load_plugins(HandlerRegistry(), [plugin(f"{plugin_module.__name__}:not_a_hook")])


def test_plugin_kind_outside_the_table_of_kinds_is_refused_when_the_registry_is_built(
    plugin_module: types.ModuleType,
) -> None:
    with pytest.raises(
        KindTableError, match="handles kind\\(s\\) Gadget, which are not in the table of kinds"
    ):
        build_registry([plugin(f"{plugin_module.__name__}:register_gadget")])


def test_no_plugin_installed_means_the_built_in_handlers_only() -> None:
    assert build_registry().kinds() == build_registry([]).kinds()
