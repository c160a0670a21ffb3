"""Fixtures every flow test shares: the four emulated systems, and per-process client caches
emptied between tests (a cached client would carry one test's emulator token into the next)."""

from __future__ import annotations

from typing import Any

import pytest

from emulators.argocd import ArgocdEmulator
from emulators.gitlab import GitLabEmulator
from emulators.harbor import HarborEmulator
from emulators.keycloak import KeycloakEmulator
from workers import argocd as argocd_worker
from workers import gitlab as gitlab_worker
from workers import harbor as harbor_worker
from workers import keycloak as keycloak_worker


@pytest.fixture(autouse=True)
def fresh_client_caches() -> None:
    for module in (keycloak_worker, gitlab_worker, harbor_worker, argocd_worker):
        module.clear_clients()


@pytest.fixture
def systems(
    keycloak_emulator: KeycloakEmulator,
    gitlab_emulator: GitLabEmulator,
    harbor: HarborEmulator,
    argocd: ArgocdEmulator,
) -> dict[str, Any]:
    return {"keycloak": keycloak_emulator, "gitlab": gitlab_emulator, "harbor": harbor, "argocd": argocd}
