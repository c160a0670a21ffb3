"""Fixtures of the watcher tests: the Kubernetes emulator (until tests/fixtures/kube.py lands) and a KubeApi."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from emulators.kubernetes import KubeEmulator
from polycrate.kube import load_api_client
from watcher.kubeapi import KubeApi


@pytest.fixture(scope="session")
def _session_kube_emulator() -> Iterator[KubeEmulator]:
    with KubeEmulator(bookmark_interval=0.5) as emulator:
        yield emulator


@pytest.fixture
def kube_emulator(_session_kube_emulator: KubeEmulator) -> KubeEmulator:
    _session_kube_emulator.reset()
    return _session_kube_emulator


@pytest.fixture
def kubeconfig(kube_emulator: KubeEmulator, tmp_path: Path) -> str:
    return kube_emulator.write_kubeconfig(tmp_path / "kubeconfig")


@pytest.fixture
def kube_api(kubeconfig: str) -> KubeApi:
    return KubeApi(load_api_client(kubeconfig))
