"""Discovered kinds: the spec's examples and the pure mappings from their sources."""

from __future__ import annotations

import pytest

from polycrate.errors import InvalidSpecError
from polycrate.models import (
    ArtifactSpec,
    ArtifactStatus,
    BackupSpec,
    CertificateSpec,
    EndpointSpec,
    EndpointStatus,
    K8sAppSpec,
    K8sAppStatus,
    artifact_name,
    backup_state_from_velero,
    parse_image,
    parse_spec,
    parse_status,
)
from tests.spec_examples import example


def test_endpoint_example_parses_in_camel_case_with_status() -> None:
    obj = example("endpoint-app-example-com.yaml")
    spec, status = parse_spec(obj), parse_status(obj)
    assert isinstance(spec, EndpointSpec) and isinstance(status, EndpointStatus)
    assert (spec.remoteAddress, spec.remotePort, spec.path, spec.expectedStatusCodes) == (
        "app.example.com",
        443,
        "/api/health",
        [200],
    )
    assert status.apiID == "550e8400-e29b-41d4-a716-446655440000"


def test_endpoint_defaults_are_the_specs_minimal_ingress_result() -> None:
    spec = EndpointSpec(remoteAddress="app.example.com")
    assert (spec.path, spec.remotePort, spec.tls, spec.timeout, spec.interval) == ("/", 443, True, 30, 60)
    assert spec.expectedStatusCodes == [200] and spec.expectedBody is None


def test_endpoint_rejects_status_codes_outside_http() -> None:
    obj = example("endpoint-app-example-com.yaml")
    obj["spec"]["expectedStatusCodes"] = [200, 700]
    with pytest.raises(InvalidSpecError, match=r"expectedStatusCodes \[700\] are not HTTP status codes"):
        parse_spec(obj)


def test_certificate_example_is_snake_case() -> None:
    spec = parse_spec(example("certificate-certmanager-production-api-example-com-tls.yaml"))
    assert isinstance(spec, CertificateSpec)
    assert (spec.issuer_name, spec.certificate_status, spec.is_ready) == (
        "letsencrypt-production",
        "ready",
        True,
    )
    assert spec.source_cert_manager.revision == 1


def test_k8sapp_example_keeps_the_from_field_name() -> None:
    obj = example("k8sapp-nginx-ingress.yaml")
    spec = parse_spec(obj)
    assert isinstance(spec, K8sAppSpec)
    assert spec.block.from_ == "cargo.ayedo.cloud/ayedo/k8s/nginx-ingress"
    assert spec.model_dump(by_alias=True, exclude_none=True)["block"]["from"] == spec.block.from_
    status = parse_status(obj)
    assert isinstance(status, K8sAppStatus) and status.artifact_count == 2


@pytest.mark.parametrize(
    ("action", "flag"),
    [
        (("install", "success"), "installed"),
        (("install", "running"), "installation_running"),
        (("install", "failed"), "installation_failed"),
        (("uninstall", "success"), "uninstalled"),
    ],
)
def test_installation_state_follows_the_specs_table(action: tuple[str, str], flag: str) -> None:
    spec = parse_spec(example("k8sapp-nginx-ingress.yaml"))
    assert isinstance(spec, K8sAppSpec) and spec.action is not None
    spec.action.name, spec.action.status = action
    flags = spec.installation_flags()
    assert [name for name, value in flags.items() if value] == [flag]


def test_artifact_example_and_status_parse() -> None:
    obj = example("artifact-cargo-ayedo-cloud-library-nginx-1-25-3.yaml")
    spec, status = parse_spec(obj), parse_status(obj)
    assert isinstance(spec, ArtifactSpec) and isinstance(status, ArtifactStatus)
    assert spec.registry.hostname == "cargo.ayedo.cloud"
    assert [usage.name for usage in status.used_in_namespaces] == ["production", "staging"]
    assert status.total_pod_count == 4


@pytest.mark.parametrize(
    ("image", "registry", "repository", "tag", "digest"),
    [
        ("nginx:1.25", "docker.io", "library/nginx", "1.25", None),
        ("cargo.ayedo.cloud/ayedo/polycrate:0.28.0", "cargo.ayedo.cloud", "ayedo/polycrate", "0.28.0", None),
        ("ghcr.io/org/app@sha256:abc", "ghcr.io", "org/app", None, "sha256:abc"),
        ("redis", "docker.io", "library/redis", "latest", None),
        ("localhost:5000/team/app:v1", "localhost", "team/app", "v1", None),
    ],
)
def test_image_parsing_follows_the_specs_table(
    image: str, registry: str, repository: str, tag: str | None, digest: str | None
) -> None:
    spec = parse_image(image)
    assert (spec.registry.hostname, spec.repository.path, spec.tag, spec.digest) == (
        registry,
        repository,
        tag,
        digest,
    )
    assert spec.image == image


def test_registry_port_comes_from_the_image_reference() -> None:
    assert parse_image("localhost:5000/team/app:v1").registry.port == 5000
    assert parse_image("nginx:1.25").registry.port == 443


@pytest.mark.parametrize(
    ("image", "name"),
    [
        ("cargo.ayedo.cloud/library/nginx:1.25.3", "cargo-ayedo-cloud-library-nginx-1-25-3"),
        ("redis:7.2", "docker-io-library-redis-7-2"),
    ],
)
def test_artifact_names_match_the_specs_output(image: str, name: str) -> None:
    assert artifact_name(parse_image(image)) == name


def test_very_long_artifact_names_stay_valid_and_distinct() -> None:
    first = artifact_name(parse_image("registry.example.com/" + "a" * 300 + ":1"))
    second = artifact_name(parse_image("registry.example.com/" + "a" * 300 + ":2"))
    assert len(first) <= 253 and len(second) <= 253
    assert first != second


@pytest.mark.parametrize(
    ("phase", "state"),
    [
        ("Completed", "completed"),
        ("Failed", "failed"),
        ("PartiallyFailed", "partially_failed"),
        ("InProgress", "in_progress"),
        ("FailedValidation", "failed"),
        (None, "unknown"),
        ("Weird", "unknown"),
    ],
)
def test_velero_phases_map_to_backup_states(phase: str | None, state: str) -> None:
    assert backup_state_from_velero(phase) == state


def test_backup_mirrors_exactly_one_source() -> None:
    base = {
        "apiVersion": "polycrate.io/v1alpha1",
        "kind": "Backup",
        "metadata": {"name": "b", "namespace": "velero"},
    }
    valid = {**base, "spec": {"name": "daily-1", "status": "completed", "source_velero": {"name": "daily-1"}}}
    assert isinstance(parse_spec(valid), BackupSpec)
    with pytest.raises(InvalidSpecError, match="needs exactly one of source_velero or source_cnpg"):
        parse_spec({**base, "spec": {"name": "daily-1"}})
