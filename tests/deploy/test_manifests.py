"""The deployment manifests and docker-compose: valid Kubernetes objects, commands the CLI accepts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from click.testing import CliRunner

from cli import main

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
# KEDA's kinds (deploy/autoscaling/) are not built in; their schemas are not in kubernetes-validate.
BUILT_IN_FILES = sorted(p for p in DEPLOY.glob("*.yaml") if p.name != "kustomization.yaml")


def _documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


@pytest.mark.parametrize("path", BUILT_IN_FILES, ids=lambda p: p.name)
def test_every_manifest_is_a_valid_kubernetes_object(path: Path) -> None:
    for document in _documents(path):
        kubernetes_validate.validate(document, "1.32", strict=True)


def _polycrate_commands() -> list[list[str]]:
    commands = []
    for path in BUILT_IN_FILES:
        for document in _documents(path):
            containers = (((document.get("spec") or {}).get("template") or {}).get("spec") or {}).get(
                "containers", []
            )
            commands += [c["args"] for c in containers if c.get("args", [""])[0] == "operator"]
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    for service in compose["services"].values():
        command = service.get("command")
        if command and command[0] == "operator" and "entrypoint" not in service:
            commands.append(command)
    return commands


@pytest.mark.parametrize("args", _polycrate_commands(), ids=lambda a: " ".join(a[:2]))
def test_every_deployed_command_line_is_one_the_cli_accepts(args: list[str]) -> None:
    # --help stops before running, but only after every other option was parsed and checked.
    result = CliRunner().invoke(main, [*args, "--help"])
    assert result.exit_code == 0, result.output


def test_kustomization_lists_files_that_exist() -> None:
    kustomization = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())
    for resource in kustomization["resources"]:
        assert (DEPLOY / resource).exists(), resource
