"""`polycrate operator apply-examples`: docker-compose's one-shot step, against a real emulated
cluster and emulators that run elsewhere (known only from their state file)."""

from __future__ import annotations

import json
from pathlib import Path

import kubernetes
from click.testing import CliRunner
from keycloak import KeycloakAdmin, KeycloakOpenIDConnection

from cli import main
from polycrate.crds import crd_manifests, install_crds
from sandbox.systems import EmulatedSystems
from tests.fixtures.kube import Kubectl


def test_examples_are_applied_pointed_at_the_emulators_of_the_state_file(
    kubeconfig: str, kubectl: Kubectl, kube_api_client: kubernetes.client.ApiClient, tmp_path: Path
) -> None:
    install_crds(kube_api_client, crd_manifests())
    with EmulatedSystems() as systems:
        state_file = systems.write_state(tmp_path / "emulators.json")

        result = CliRunner().invoke(
            main,
            ["operator", "apply-examples", "--kubeconfig", kubeconfig, "--state-file", str(state_file)],
        )

        assert result.exit_code == 0, result.output
        assert result.output.startswith("applied ")
        state = json.loads(state_file.read_text())["systems"]
        sdp = json.loads(kubectl("get", "sdp", "-n", "polycrate", "-o", "json").stdout)["items"][0]
        assert sdp["spec"]["gitlab"]["url"] == state["gitlab"]["url"]
        assert kubectl("get", "org", "acme-corp", "-n", "polycrate", "-o", "name").stdout.strip()
        # The SDP's realm exists and the Contacts' people have logged in once.
        keycloak = KeycloakAdmin(
            connection=KeycloakOpenIDConnection(
                server_url=state["keycloak"]["url"],
                realm_name=sdp["spec"]["keycloak"]["realm"],
                client_id=state["keycloak"]["client_id"],
                client_secret_key=state["keycloak"]["client_secret"],
            )
        )
        assert keycloak.get_user_id("john.doe")


def test_without_a_state_file_it_says_what_it_waited_for(kubeconfig: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main,
        ["operator", "apply-examples", "--kubeconfig", kubeconfig, "--state-file", str(tmp_path / "none.json"),
         "--timeout", "0"],
    )  # fmt: skip

    assert result.exit_code == 1
    assert "waiting for the state file" in result.output
