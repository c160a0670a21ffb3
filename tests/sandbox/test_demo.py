"""The newcomer's first command, end to end: everything starts and the examples reach Ready."""

import json
import subprocess
import sys

import pytest
import yaml

from sandbox.demo import load_manifests, point_at_emulators
from sandbox.systems import EmulatedSystems


@pytest.mark.slow
def test_sandbox_reconciles_every_example_and_exits_when_ready(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "polycrate", "operator", "sandbox", "--dir", str(tmp_path),
         "--exit-when-ready", "--timeout", "90"],
        capture_output=True,
        text=True,
        timeout=180,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr + (tmp_path / "operator.log").read_text()
    assert "✗ " not in result.stdout.split("Polycrate Operator Status")[0]
    assert "objects reconciled" in result.stdout
    kubeconfig = yaml.safe_load((tmp_path / "kubeconfig").read_text())
    assert kubeconfig["current-context"]
    state = json.loads((tmp_path / "emulators.json").read_text())
    assert set(state["systems"]) == {"keycloak", "gitlab", "harbor", "argocd", "polycrate_api"}


def test_manifests_are_pointed_at_the_running_emulators():
    with EmulatedSystems() as systems:
        documents = point_at_emulators(load_manifests(), systems)
        sdp = next(d for d in documents if d["kind"] == "SoftwareDeliveryPlatform")
        secrets = {d["metadata"]["name"]: d["stringData"] for d in documents if d["kind"] == "Secret"}
        assert sdp["spec"]["gitlab"]["url"] == systems.gitlab.url
        assert sdp["spec"]["keycloak"]["realm"] in systems.keycloak.realms
        assert secrets["gitlab-creds"]["token"] == systems.gitlab.admin_token
        assert secrets["keycloak-creds"]["client-secret"] == systems.keycloak.client_secret
        config = next(d for d in documents if d["kind"] == "OperatorConfig")
        assert config["spec"]["api_sync"]["api_url"] == systems.polycrate_api.url
