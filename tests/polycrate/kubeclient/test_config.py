"""Finding a cluster like kubectl does, with a connection pool sized for the threads that share it."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from kubernetes import client

from polycrate.errors import PermanentError
from polycrate.kubeclient.config import (
    DEFAULT_POOL_MAXSIZE,
    kubeconfig_available,
    load_api_client,
    server_url,
)
from polycrate.kubeclient.errors import KubeConfigError, translate_api_errors


def write_kubeconfig(path: Path, servers: dict[str, str], current: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {"name": name, "cluster": {"server": server}} for name, server in servers.items()
                ],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": name, "context": {"cluster": name, "user": "u"}} for name in servers],
                "current-context": current,
            }
        )
    )
    return path


@pytest.fixture
def clean_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No KUBECONFIG, no in-cluster variables, and an empty home directory."""
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_explicit_kubeconfig_wins(
    tmp_path: Path, clean_environment: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    explicit = write_kubeconfig(tmp_path / "explicit", {"a": "https://explicit.example.com"}, "a")
    env = write_kubeconfig(tmp_path / "env", {"a": "https://env.example.com"}, "a")
    monkeypatch.setenv("KUBECONFIG", str(env))
    assert server_url(load_api_client(explicit)) == "https://explicit.example.com"


def test_kubeconfig_variable_comes_next(
    tmp_path: Path, clean_environment: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_kubeconfig(clean_environment / ".kube" / "config", {"a": "https://home.example.com"}, "a")
    env = write_kubeconfig(tmp_path / "env", {"a": "https://env.example.com"}, "a")
    monkeypatch.setenv("KUBECONFIG", str(env))
    assert server_url(load_api_client()) == "https://env.example.com"


def test_home_kubeconfig_is_the_fallback(clean_environment: Path) -> None:
    write_kubeconfig(clean_environment / ".kube" / "config", {"a": "https://home.example.com"}, "a")
    assert server_url(load_api_client()) == "https://home.example.com"


def test_context_selects_the_cluster(tmp_path: Path, clean_environment: Path) -> None:
    path = write_kubeconfig(
        tmp_path / "config", {"prod": "https://prod.example.com", "dev": "https://dev.example.com"}, "prod"
    )
    assert server_url(load_api_client(path)) == "https://prod.example.com"
    assert server_url(load_api_client(path, context="dev")) == "https://dev.example.com"


def test_loading_leaves_the_library_default_configuration_alone(
    tmp_path: Path, clean_environment: Path
) -> None:
    before = client.Configuration.get_default_copy().host
    load_api_client(write_kubeconfig(tmp_path / "config", {"a": "https://other.example.com"}, "a"))
    assert client.Configuration.get_default_copy().host == before


def test_missing_explicit_file_is_a_permanent_kubeconfig_error(tmp_path: Path) -> None:
    with pytest.raises(KubeConfigError, match=r"kubeconfig .*missing.yaml does not exist") as caught:
        load_api_client(tmp_path / "missing.yaml")
    assert isinstance(caught.value, PermanentError)


def test_kubeconfig_variable_naming_no_file_is_an_error(
    tmp_path: Path, clean_environment: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "gone"))
    with pytest.raises(KubeConfigError, match="names no existing file"):
        load_api_client()


def test_nothing_configured_says_what_to_do(clean_environment: Path) -> None:
    assert not kubeconfig_available()
    with pytest.raises(KubeConfigError, match="pass --kubeconfig, set KUBECONFIG"):
        load_api_client()


def test_kubeconfig_without_the_expected_shape_is_reported_by_type(tmp_path: Path) -> None:
    path = tmp_path / "list.yaml"
    path.write_text("- just\n- a list\n")
    with pytest.raises(KubeConfigError, match="is not a kubeconfig"):
        load_api_client(path)


# --- against a cluster (the emulator, or POLYCRATE_TEST_KUBECONFIG) ----------------------------------


def test_loaded_client_talks_to_the_cluster(kubeconfig: str) -> None:
    api_client = load_api_client(kubeconfig)
    with translate_api_errors(api_client, "list namespaces"):
        names = [ns.metadata.name for ns in client.CoreV1Api(api_client).list_namespace().items]
    assert "default" in names


def test_the_pool_holds_a_connection_per_worker_thread_by_default(
    tmp_path: Path, clean_environment: Path
) -> None:
    path = write_kubeconfig(tmp_path / "config", {"a": "https://a.example.com"}, "a")
    assert (
        load_api_client(path).rest_client.pool_manager.connection_pool_kw["maxsize"] == DEFAULT_POOL_MAXSIZE
    )
    assert load_api_client(path, pool_maxsize=40).rest_client.pool_manager.connection_pool_kw["maxsize"] == 40


def test_tls_verification_stays_on_unless_the_kubeconfig_turns_it_off(
    tmp_path: Path, clean_environment: Path
) -> None:
    path = write_kubeconfig(tmp_path / "config", {"a": "https://a.example.com"}, "a")
    assert load_api_client(path).configuration.verify_ssl is True


def test_a_static_token_is_sent_without_reloading_the_kubeconfig_before_each_request(tmp_path: Path) -> None:
    api_client = load_api_client(write_kubeconfig(tmp_path / "config", {"a": "https://a.example.com"}, "a"))

    assert api_client.configuration.refresh_api_key_hook is None
    assert api_client.configuration.auth_settings()["BearerToken"]["value"] == "Bearer t"


def test_a_token_with_an_expiry_keeps_its_refresh(tmp_path: Path) -> None:
    path = write_kubeconfig(tmp_path / "config", {"a": "https://a.example.com"}, "a")
    document = yaml.safe_load(path.read_text())
    credential = (
        '{"apiVersion": "client.authentication.k8s.io/v1beta1", "kind": "ExecCredential", '
        '"status": {"token": "short-lived", "expirationTimestamp": "2099-01-01T00:00:00Z"}}'
    )
    exec_plugin = {"apiVersion": "client.authentication.k8s.io/v1beta1", "command": "sh"}
    exec_plugin["args"] = ["-c", f"echo '{credential}'"]
    document["users"] = [{"name": "u", "user": {"exec": exec_plugin}}]
    path.write_text(yaml.safe_dump(document))

    api_client = load_api_client(path)

    assert api_client.configuration.auth_settings()["BearerToken"]["value"] == "Bearer short-lived"
    assert api_client.configuration.refresh_api_key_hook is not None
