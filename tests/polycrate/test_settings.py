"""Settings from the environment: defaults of the spec, one clear line for a bad value."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest

from polycrate import settings as settings_module
from polycrate.settings import ENVIRONMENT_VARIABLES, Settings, SettingsError, redact_url


def test_defaults_are_the_production_values() -> None:
    settings = Settings.from_env({})

    assert settings.redis_url == "redis://127.0.0.1:6379/0"
    assert (settings.retry_base_seconds, settings.retry_cap_seconds) == (5, 60)
    assert settings.kubeconfig is None


def test_values_are_read_from_their_variables() -> None:
    settings = Settings.from_env(
        {
            "REDIS_URL": "redis://redis:6379/1",
            "POLYCRATE_LOCK_TTL": "2.5",
            "POLYCRATE_KUBECONFIG": "",
        }
    )

    assert settings.redis_url == "redis://redis:6379/1"
    assert settings.lock_ttl_seconds == 2.5
    assert settings.kubeconfig is None


def test_bad_value_names_the_variable_in_one_line() -> None:
    with pytest.raises(SettingsError) as raised:
        Settings.from_env({"POLYCRATE_LOCK_TTL": "soon"})

    assert str(raised.value).startswith("invalid setting POLYCRATE_LOCK_TTL='soon'")
    assert "\n" not in str(raised.value)


def test_retry_cap_below_base_is_rejected() -> None:
    with pytest.raises(SettingsError, match="retry cap"):
        Settings.from_env({"POLYCRATE_RETRY_BASE": "10", "POLYCRATE_RETRY_CAP": "5"})


def test_redis_password_never_appears_in_messages() -> None:
    assert redact_url("redis://:s3cret@redis:6379/0") == "redis://:***@redis:6379/0"
    assert redact_url("redis://redis:6379/0") == "redis://redis:6379/0"


def test_settings_round_trip_through_the_environment_of_child_processes() -> None:
    settings = Settings(lock_ttl_seconds=2, namespaces=("a", "b"), kubeconfig="/tmp/kubeconfig")

    assert Settings.from_env(settings.environment()) == settings


def test_namespaces_are_a_comma_separated_list_of_namespace_names() -> None:
    assert Settings.from_env({}).namespaces == ()
    assert Settings.from_env({"POLYCRATE_NAMESPACES": "team-a, team-b,team-a"}).namespaces == (
        "team-a",
        "team-b",
    )
    with pytest.raises(SettingsError) as bad:
        Settings.from_env({"POLYCRATE_NAMESPACES": "Team_A"})
    assert "POLYCRATE_NAMESPACES='Team_A'" in str(bad.value)
    assert Settings(namespaces=("ops",)).environment()["POLYCRATE_NAMESPACES"] == "ops"


def test_operator_namespace_comes_from_the_downward_api(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setattr(settings_module, "SERVICE_ACCOUNT_NAMESPACE_FILE", tmp_path / "absent")

    assert Settings.from_env({"POD_NAMESPACE": "ops"}).operator_namespace == "ops"
    assert Settings.from_env({"POD_NAMESPACE": ""}).operator_namespace == "polycrate"


def test_operator_namespace_falls_back_to_the_service_account_namespace(
    monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    namespace_file = tmp_path / "namespace"
    namespace_file.write_text("tenant-ops")
    monkeypatch.setattr(settings_module, "SERVICE_ACCOUNT_NAMESPACE_FILE", namespace_file)

    assert Settings.from_env({}).operator_namespace == "tenant-ops"


def test_operator_namespace_must_be_a_namespace_name() -> None:
    with pytest.raises(SettingsError, match="POD_NAMESPACE='Ops_1'"):
        Settings.from_env({"POD_NAMESPACE": "Ops_1"})


def _readme_configuration_table() -> dict[str, str]:
    """variable -> default cell of the README's configuration table."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        match = re.fullmatch(r"`([A-Z_]+)`", cells[0]) if len(cells) == 3 else None
        if match:
            rows[match[1]] = cells[1]
    return rows


def _cli_environment_variables() -> set[str]:
    from cli import main

    found: set[str] = set()
    pending: list[click.Command] = [main]
    while pending:
        command = pending.pop()
        found |= {p.envvar for p in command.params if isinstance(p.envvar, str)}
        if isinstance(command, click.Group):
            pending += list(command.commands.values())
    return found


def test_every_settings_variable_is_documented_in_the_readme_with_its_default() -> None:
    table = _readme_configuration_table()

    assert set(ENVIRONMENT_VARIABLES.values()) <= set(table), "undocumented settings"
    defaults = Settings()
    for field, variable in ENVIRONMENT_VARIABLES.items():
        value = getattr(defaults, field)
        if isinstance(value, float):
            assert f"`{value:g}`" in table[variable], f"{variable}: README says {table[variable]}"


def test_the_readme_documents_no_variable_that_nothing_reads() -> None:
    known = set(ENVIRONMENT_VARIABLES.values()) | _cli_environment_variables()
    # Read by libraries: the kubernetes client and prometheus_client.
    known |= {"KUBECONFIG", "PROMETHEUS_MULTIPROC_DIR"}

    assert set(_readme_configuration_table()) <= known
