"""Fixtures of the watcher tests, on top of tests/fixtures/kube.py: a KubeClient on the emulator."""

from __future__ import annotations

import pytest

from emulators.kubernetes import KubeEmulator
from polycrate.kubeclient.api import KubeClient
from polycrate.kubeclient.config import load_api_client

# The informer tests call a stream silent after 1.5 s, so bookmarks must come more often.
BOOKMARK_INTERVAL = 0.5


@pytest.fixture
def kube_api(kube_emulator: KubeEmulator, kubeconfig: str) -> KubeClient:
    kube_emulator.bookmark_interval = BOOKMARK_INTERVAL
    return KubeClient(load_api_client(kubeconfig))
