"""Shared test CRDs for the Kubernetes emulator tests (installed through the real client)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

MANIFESTS = Path(__file__).parent / "manifests"
WIDGET_CRD = MANIFESTS / "widgets.testing.polycrate.io.yaml"
GADGET_CRD = MANIFESTS / "gadgets.testing.polycrate.io.yaml"
GROUP, VERSION = "testing.polycrate.io", "v1"


@pytest.fixture
def widget_crd(kube_install_crd: Callable[..., dict[str, Any]]) -> dict[str, Any]:
    """Namespaced `widgets.testing.polycrate.io` (status subresource, printer columns)."""
    return kube_install_crd(WIDGET_CRD)


@pytest.fixture
def gadget_crd(kube_install_crd: Callable[..., dict[str, Any]]) -> dict[str, Any]:
    """Cluster-scoped `gadgets.testing.polycrate.io` (no status subresource)."""
    return kube_install_crd(GADGET_CRD)
