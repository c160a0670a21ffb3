"""Finding a cluster like kubectl does, and API failures as errors a user or the retry policy can act on."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

from polycrate.crds import crd_manifest, install_crds
from polycrate.errors import PermanentError, TransientError
from polycrate.kube import (
    KubeConfigError,
    KubeUnreachableError,
    api_error,
    kubeconfig_available,
    load_api_client,
    server_url,
    translate_api_errors,
    wait_established,
)
from polycrate.models import KINDS


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


def api_exception(
    status: int, reason: str, message: str = "", headers: dict[str, str] | None = None
) -> ApiException:
    exc = ApiException(status=status, reason=reason)
    exc.body = json.dumps({"kind": "Status", "message": message}) if message else None
    exc.headers = headers
    return exc


@pytest.mark.parametrize("status", [409, 429, 500, 503])
def test_conflicts_throttling_and_server_errors_are_transient(status: int) -> None:
    error = api_error(api_exception(status, "X"), "update Organization polycrate/acme-corp")
    assert isinstance(error, TransientError) and error.status_code == status


def test_retry_after_is_carried_over() -> None:
    error = api_error(api_exception(429, "Too Many Requests", headers={"Retry-After": "3"}), "list pods")
    assert isinstance(error, TransientError) and error.retry_after == 3.0


@pytest.mark.parametrize(
    ("status", "reason"), [(404, "NotFound"), (403, "Forbidden"), (422, "Invalid"), (400, "Failed")]
)
def test_client_errors_are_permanent_with_a_reason(status: int, reason: str) -> None:
    error = api_error(api_exception(status, "X"), "get Secret polycrate/gitlab-creds")
    assert isinstance(error, PermanentError) and error.reason == reason


def test_error_message_says_what_failed_and_what_the_server_said() -> None:
    exc = api_exception(
        422, "Unprocessable Entity", 'Organization.polycrate.io "x" is invalid: spec.sdp: Required value'
    )
    assert str(api_error(exc, "create Organization polycrate/x")) == (
        "cannot create Organization polycrate/x: 422 Unprocessable Entity: "
        'Organization.polycrate.io "x" is invalid: spec.sdp: Required value'
    )


def test_unreachable_server_is_transient_with_the_socket_reason(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    api_client = load_api_client(
        write_kubeconfig(tmp_path / "config", {"a": f"http://127.0.0.1:{port}"}, "a")
    )
    api_client.configuration.retries = 0
    with pytest.raises(KubeUnreachableError) as caught, translate_api_errors(api_client, "list namespaces"):
        client.CoreV1Api(client.ApiClient(api_client.configuration)).list_namespace(_request_timeout=(1, 1))
    assert (
        str(caught.value)
        == f"cannot reach the Kubernetes API at http://127.0.0.1:{port} to list namespaces: Connection refused"
    )
    assert isinstance(caught.value, TransientError)


# --- against a cluster (the emulator, or POLYCRATE_TEST_KUBECONFIG) ----------------------------------


def test_wait_established_returns_once_the_crd_serves(kubeconfig: str) -> None:
    api_client = load_api_client(kubeconfig)
    install_crds(api_client, [crd_manifest(KINDS["Contact"])])
    wait_established(api_client, "contacts.polycrate.io", timeout=5)


def test_wait_established_for_a_missing_crd_fails_at_once(kubeconfig: str) -> None:
    with pytest.raises(PermanentError) as caught:
        wait_established(load_api_client(kubeconfig), "nothings.polycrate.io", timeout=5)
    assert caught.value.reason == "NotFound"
    assert "read CustomResourceDefinition nothings.polycrate.io" in str(caught.value)


def test_loaded_client_talks_to_the_cluster(kubeconfig: str) -> None:
    api_client = load_api_client(kubeconfig)
    with translate_api_errors(api_client, "list namespaces"):
        names = [ns.metadata.name for ns in client.CoreV1Api(api_client).list_namespace().items]
    assert "default" in names
