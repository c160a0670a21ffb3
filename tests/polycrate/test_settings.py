"""Settings from the environment: defaults of the spec, one clear line for a bad value."""

from __future__ import annotations

import pytest

from polycrate import settings as settings_module
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
