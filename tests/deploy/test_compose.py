"""docker-compose.yml: a stack `docker compose up` can start — every `polycrate` command line in it
is one the CLI parses, the state volume is handed to the image's user first, the examples are
applied once the emulated cluster is ready — and, where docker compose is installed, it agrees."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

from cli import main

REPO = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}
SERVICE_KEYS = {
    "build", "image", "command", "entrypoint", "environment", "volumes", "ports", "depends_on",
    "healthcheck", "restart", "user",
}  # fmt: skip
IMAGE_USER = "65532"


def _image_entrypoint() -> list[str]:
    match = re.search(r"^ENTRYPOINT (\[.*\])$", (REPO / "Dockerfile").read_text(), re.M)
    assert match is not None
    return yaml.safe_load(match[1])


def polycrate_command_lines() -> list[tuple[str, list[str]]]:
    """(service, argv after `polycrate`) of every service that runs the image's entrypoint."""
    lines = []
    for name, service in SERVICES.items():
        if service.get("image", "").startswith("polycrate-operator") and "entrypoint" not in service:
            lines.append((name, [str(arg) for arg in service["command"]]))
    return lines


def parse_like_the_cli(argv: list[str]) -> click.Context:
    """Walk the click command tree along `argv` and parse the rest as the leaf command would,
    without running it: unknown commands, unknown flags and invalid values raise UsageError."""
    command: click.Command = main
    path = ["polycrate"]
    while isinstance(command, click.Group) and argv and not argv[0].startswith("-"):
        sub = command.get_command(click.Context(command), argv[0])
        if sub is None:
            raise click.UsageError(f"{' '.join(path)} has no command {argv[0]!r}")
        path.append(argv.pop(0))
        command = sub
    assert not isinstance(command, click.Group), f"{' '.join(path)} is a group, not a command"
    return command.make_context(" ".join(path), list(argv), resilient_parsing=False)


def test_every_service_has_only_keys_compose_knows_and_an_image() -> None:
    assert set(COMPOSE) <= {"services", "volumes", "x-operator"}
    for name, service in SERVICES.items():
        assert set(service) <= SERVICE_KEYS, f"{name}: {set(service) - SERVICE_KEYS}"
        assert "image" in service, name
        for key in ("command", "entrypoint"):
            assert isinstance(service.get(key, []), list), f"{name}.{key} must be an exec-form list"


def test_every_dependency_names_a_service_and_a_valid_condition() -> None:
    for name, service in SERVICES.items():
        for dependency, spec in service.get("depends_on", {}).items():
            assert dependency in SERVICES, f"{name} depends on unknown {dependency}"
            assert spec["condition"] in CONDITIONS, f"{name} -> {dependency}"
            if spec["condition"] == "service_healthy":
                assert "healthcheck" in SERVICES[dependency], f"{dependency} has no healthcheck"
            if spec["condition"] == "service_completed_successfully":
                assert SERVICES[dependency].get("restart") == "no", f"{dependency} must be one-shot"


def test_every_named_volume_is_declared() -> None:
    for name, service in SERVICES.items():
        for mount in service.get("volumes", []):
            source = mount.split(":", 1)[0]
            assert source in COMPOSE["volumes"], f"{name} mounts undeclared volume {source}"


@pytest.mark.parametrize(
    ("service", "argv"), polycrate_command_lines(), ids=lambda v: v if isinstance(v, str) else ""
)
def test_every_polycrate_command_and_flag_exists_in_the_cli(service: str, argv: list[str]) -> None:
    assert _image_entrypoint() == ["polycrate"]
    context = parse_like_the_cli(list(argv))

    assert context.command.name == argv[1]


def test_the_command_walk_rejects_unknown_commands_and_flags() -> None:
    with pytest.raises(click.UsageError):
        parse_like_the_cli(["operator", "watch"])
    with pytest.raises(click.UsageError):
        parse_like_the_cli(["operator", "worker", "--concurency", "2"])
    with pytest.raises(click.UsageError):
        parse_like_the_cli(["operator", "worker", "--log-format", "xml"])


def test_the_state_volume_is_handed_to_the_images_user_before_anyone_writes_to_it() -> None:
    assert f"USER {IMAGE_USER}:{IMAGE_USER}" in (REPO / "Dockerfile").read_text()
    owner = SERVICES["state-owner"]
    assert owner["user"] == "0:0"
    assert owner["entrypoint"] == ["chown", f"{IMAGE_USER}:{IMAGE_USER}", "/state"]
    assert owner["restart"] == "no"
    writers = [name for name, service in SERVICES.items() if "state:/state" in service.get("volumes", [])]
    for name in writers:
        if name == "state-owner":
            continue
        # Either directly after state-owner, or after a service that itself waits for it.
        chain, seen = [name], set()
        while chain:
            current = chain.pop()
            if current in seen:
                continue
            seen.add(current)
            chain += list(SERVICES[current].get("depends_on", {}))
        assert "state-owner" in seen, f"{name} may write /state before it is writable"
    assert SERVICES["kube"]["depends_on"]["state-owner"]["condition"] == "service_completed_successfully"


def test_examples_are_applied_once_when_the_cluster_and_emulators_are_ready() -> None:
    examples = SERVICES["examples"]

    assert examples["command"][:2] == ["operator", "apply-examples"]
    assert examples["restart"] == "no"
    assert examples["depends_on"]["crds"]["condition"] == "service_completed_successfully"
    assert examples["depends_on"]["emulators"]["condition"] == "service_healthy"
    assert SERVICES["crds"]["depends_on"]["kube"]["condition"] == "service_healthy"
    state_file = examples["command"][examples["command"].index("--state-file") + 1]
    emulators = SERVICES["emulators"]["command"]
    assert emulators[emulators.index("--state-file") + 1] == state_file


@pytest.mark.skipif(
    shutil.which("docker") is None
    or subprocess.run(["docker", "compose", "version"], capture_output=True, check=False).returncode != 0,
    reason="docker compose is not installed",
)
def test_docker_compose_accepts_the_file() -> None:
    result = subprocess.run(
        ["docker", "compose", "config", "--quiet"], cwd=REPO, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
