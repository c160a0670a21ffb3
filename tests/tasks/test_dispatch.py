"""The handler registry: built-in kinds, plugin modules from POLYCRATE_HANDLER_MODULES, replacement."""

from __future__ import annotations

import sys
import types
from collections.abc import Iterator

import pytest

from polycrate.errors import PermanentError
from polycrate.keys import ObjectKey
from polycrate.kubeclient.api import JsonObject
from polycrate.models import KINDS
from polycrate.settings import SettingsError
from tasks.context import WorkerContext
from tasks.dispatch import HandlerRegistry, KindHandler, load_handler_modules
from tasks.registration import build_registry
from tasks.routing import DISCOVERY_SOURCE_KINDS


class Replacement(KindHandler):
    kind = "Organization"

    def reconcile(self, ctx: WorkerContext, key: ObjectKey, obj: JsonObject) -> None:
        """Does nothing: only its identity matters here."""


@pytest.fixture
def plugin_module() -> Iterator[types.ModuleType]:
    """A module importable by name, as a deployment's plugin would be."""
    module = types.ModuleType("polycrate_test_plugin")

    def register_handlers(registry: HandlerRegistry) -> None:
        registry.register(Replacement(), replace=True)

    module.register_handlers = register_handlers  # type: ignore[attr-defined]
    sys.modules[module.__name__] = module
    yield module
    del sys.modules[module.__name__]


def test_every_polycrate_kind_and_discovery_source_has_a_built_in_handler() -> None:
    registry = build_registry()

    assert set(registry.kinds()) == set(KINDS) | set(DISCOVERY_SOURCE_KINDS)


def test_plugin_module_may_replace_a_built_in_handler(plugin_module: types.ModuleType) -> None:
    registry = build_registry([plugin_module.__name__])

    assert isinstance(registry.handler_for("Organization"), Replacement)


def test_registering_a_kind_twice_without_replace_is_an_error() -> None:
    registry = HandlerRegistry()
    registry.register(Replacement())

    with pytest.raises(ValueError, match="already registered"):
        registry.register(Replacement())


def test_unknown_kind_is_a_permanent_error_listing_the_known_ones() -> None:
    with pytest.raises(PermanentError, match="no handler is registered for kind 'Gadget'.*Organization"):
        build_registry().handler_for("Gadget")


def test_plugin_module_that_cannot_be_imported_is_named_in_one_line() -> None:
    with pytest.raises(SettingsError, match="POLYCRATE_HANDLER_MODULES: cannot import 'no.such.module'"):
        load_handler_modules(HandlerRegistry(), ["no.such.module"])


def test_plugin_module_without_register_handlers_is_rejected() -> None:
    with pytest.raises(SettingsError, match="has no register_handlers"):
        load_handler_modules(HandlerRegistry(), ["json"])
