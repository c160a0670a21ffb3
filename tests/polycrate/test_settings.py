"""Settings from the environment: defaults of the spec, one clear line for a bad value."""

from __future__ import annotations

import pytest

from polycrate.settings import Settings, SettingsError, redact_url


def test_defaults_are_the_production_values() -> None:
    settings = Settings.from_env({})

    assert settings.redis_url == "redis://127.0.0.1:6379/0"
    assert (settings.retry_base_seconds, settings.retry_cap_seconds) == (5, 60)
    assert settings.handler_modules == ()
    assert settings.kubeconfig is None


def test_values_are_read_from_their_variables() -> None:
    settings = Settings.from_env(
        {
            "REDIS_URL": "redis://redis:6379/1",
            "POLYCRATE_LOCK_TTL": "2.5",
            "POLYCRATE_HANDLER_MODULES": "acme.handlers, tests.tasks.handlers",
            "POLYCRATE_KUBECONFIG": "",
        }
    )

    assert settings.redis_url == "redis://redis:6379/1"
    assert settings.lock_ttl_seconds == 2.5
    assert settings.handler_modules == ("acme.handlers", "tests.tasks.handlers")
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
    settings = Settings(lock_ttl_seconds=2, handler_modules=("a", "b"), kubeconfig="/tmp/kubeconfig")

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
