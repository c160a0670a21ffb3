"""A KubeClient on the emulator (or a real cluster), and the emulator's fault knobs reset after each test."""

from __future__ import annotations

from collections.abc import Iterator

import kubernetes
import pytest

from emulators.faults import FaultPlan
from emulators.kubernetes import KubeEmulator
from polycrate.kubeclient.api import KubeClient


@pytest.fixture
def kube_client(kube_api_client: kubernetes.client.ApiClient) -> KubeClient:
    return KubeClient(kube_api_client)


@pytest.fixture
def faults(kube_emulator: KubeEmulator) -> Iterator[FaultPlan]:
    """The emulator's injected failures; the next request after `update(...)` meets them."""
    yield kube_emulator.app.faults
    kube_emulator.app.faults = FaultPlan()
