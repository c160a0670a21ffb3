"""Generated CRDs: structural, valid apiextensions/v1 objects, in sync with deploy/crds, and in
agreement with the models on every spec example and on the usual mistakes."""

from __future__ import annotations

import copy
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from kubernetes import client

from polycrate.crds import (
    KUSTOMIZATION_FILENAME,
    apply_crd,
    crd_filename,
    crd_manifest,
    crd_manifests,
    install_crds,
    render_kustomization,
    render_yaml,
    structural_violations,
    wait_established,
    write_crds,
)
from polycrate.errors import InvalidSpecError, PermanentError
from polycrate.kubeclient.config import load_api_client
from polycrate.models import KINDS, KindInfo, parse_spec, parse_status
from tests.spec_examples import EXAMPLES_DIR, REPO_ROOT, SANDBOX_DIR, documents, example

DEPLOY_CRDS = REPO_ROOT / "deploy" / "crds"
KUBERNETES_VERSION = "1.32.0"


def object_schema(kind: str) -> dict[str, Any]:
    return crd_manifest(KINDS[kind])["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def schema_errors(obj: dict[str, Any]) -> list[str]:
    """What the API server's schema validation would say, approximated with jsonschema (draft 4)."""
    validator = jsonschema.Draft4Validator(
        object_schema(obj["kind"]), format_checker=jsonschema.Draft4Validator.FORMAT_CHECKER
    )
    return [f"{'.'.join(map(str, error.path))}: {error.message}" for error in validator.iter_errors(obj)]


# --- generated files ----------------------------------------------------------------------------


@pytest.mark.parametrize("info", KINDS.values(), ids=lambda info: info.kind)
def test_deploy_crds_match_the_models(info: KindInfo) -> None:
    committed = (DEPLOY_CRDS / crd_filename(info)).read_text(encoding="utf-8")
    assert committed == render_yaml([crd_manifest(info)]), (
        f"deploy/crds/{crd_filename(info)} is stale: run `polycrate operator crds --output-dir deploy/crds`"
    )


def test_deploy_crds_holds_exactly_the_generated_files() -> None:
    expected = {crd_filename(info) for info in KINDS.values()} | {KUSTOMIZATION_FILENAME}
    assert {path.name for path in DEPLOY_CRDS.iterdir()} == expected
    assert (DEPLOY_CRDS / KUSTOMIZATION_FILENAME).read_text(encoding="utf-8") == render_kustomization(
        KINDS.values()
    )


def test_write_crds_writes_one_file_per_kind_and_a_kustomization(tmp_path) -> None:
    written = write_crds(tmp_path / "out", [KINDS["Organization"], KINDS["Artifact"]])
    assert [path.name for path in written] == [
        "organizations.polycrate.io.yaml",
        "artifacts.polycrate.io.yaml",
        KUSTOMIZATION_FILENAME,
    ]
    assert yaml.safe_load(written[0].read_text())["metadata"]["name"] == "organizations.polycrate.io"


def test_rendered_stream_parses_back_to_the_manifests() -> None:
    manifests = crd_manifests()
    assert [doc for doc in yaml.safe_load_all(render_yaml(manifests)) if doc] == manifests


# --- the CRD objects themselves -------------------------------------------------------------------


@pytest.mark.parametrize("manifest", crd_manifests(), ids=lambda manifest: manifest["spec"]["names"]["kind"])
def test_every_crd_is_a_valid_apiextensions_v1_object(manifest: dict[str, Any]) -> None:
    kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("info", KINDS.values(), ids=lambda info: info.kind)
def test_every_schema_is_structural(info: KindInfo) -> None:
    assert structural_violations(object_schema(info.kind)) == []


def test_structural_check_reports_what_the_api_server_would_reject() -> None:
    schema = {
        "type": "object",
        "properties": {
            "a": {"$ref": "#/defs/A"},
            "b": {"type": "object", "properties": {"x": {"type": "string"}}, "oneOf": [{"type": "string"}]},
            "c": {"type": "object", "properties": {}, "anyOf": [{"required": ["missing"]}]},
        },
    }
    problems = structural_violations(schema)
    assert ".a: $ref is not allowed" in problems
    assert ".a: type is missing" in problems
    assert any(problem.startswith(".b: oneOf may only hold value validations") for problem in problems)
    assert ".c: anyOf requires missing, which is not a declared property" in problems


@pytest.mark.parametrize("info", KINDS.values(), ids=lambda info: info.kind)
def test_crd_names_scope_and_status_subresource(info: KindInfo) -> None:
    spec = crd_manifest(info)["spec"]
    assert spec["group"] == "polycrate.io"
    assert spec["names"]["shortNames"] == list(info.short_names)
    assert spec["scope"] == ("Namespaced" if info.namespaced else "Cluster")
    (version,) = spec["versions"]
    assert (version["name"], version["served"], version["storage"]) == ("v1alpha1", True, True)
    assert version["subresources"] == {"status": {}}


def _schema_at(schema: dict[str, Any], json_path: str) -> dict[str, Any] | None:
    node: dict[str, Any] | None = schema
    for part in json_path.strip(".").split("."):
        node = (node or {}).get("properties", {}).get(part)
    return node


@pytest.mark.parametrize("info", KINDS.values(), ids=lambda info: info.kind)
def test_every_printer_column_points_at_a_schema_field(info: KindInfo) -> None:
    schema = object_schema(info.kind)
    for column in info.printer_columns:
        if column.json_path.startswith(".metadata."):
            continue
        assert _schema_at(schema, column.json_path) is not None, f"{info.kind} column {column.name}"


@pytest.mark.parametrize(
    ("kind", "columns"),
    [
        ("K8sApp", ["Block", "Version", "Artifacts", "Phase", "Age"]),  # kubectl get k8sapps -A
        ("Artifact", ["Image", "Pods", "Phase"]),  # kubectl get artifacts
        ("Organization", ["SDP", "Phase", "Age"]),  # polycrate operator status
        ("SoftwareDeliveryPlatform", ["Phase", "Keycloak", "GitLab", "Harbor", "ArgoCD", "Age"]),
    ],
)
def test_default_columns_match_the_specs_outputs(kind: str, columns: list[str]) -> None:
    shown = [column.name for column in KINDS[kind].printer_columns if column.priority == 0]
    assert shown == columns


def test_certificate_columns_cover_the_specs_custom_columns() -> None:
    names = [column.name for column in KINDS["Certificate"].printer_columns]
    assert {"Issuer", "Ready", "Status", "Sync", "API ID"} <= set(names)


def _defaults(schema: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any]]]:
    found = [(path, schema)] if "default" in schema else []
    for name, sub in schema.get("properties", {}).items():
        found += _defaults(sub, f"{path}.{name}")
    if isinstance(schema.get("items"), dict):
        found += _defaults(schema["items"], f"{path}[]")
    return found


@pytest.mark.parametrize("info", KINDS.values(), ids=lambda info: info.kind)
def test_defaults_are_valid_against_their_own_schema(info: KindInfo) -> None:
    # The API server refuses a CRD whose defaults do not validate.
    for path, node in _defaults(object_schema(info.kind)):
        checked = {key: value for key, value in node.items() if key != "default"}
        assert list(jsonschema.Draft4Validator(checked).iter_errors(node["default"])) == [], path


# --- the spec's examples -----------------------------------------------------------------------------

SPEC_EXAMPLES = documents(EXAMPLES_DIR)
SANDBOX_OBJECTS = documents(SANDBOX_DIR)


def test_every_kind_with_a_yaml_example_in_the_spec_is_carried() -> None:
    carried = sorted({obj["kind"] for _, obj in SPEC_EXAMPLES})
    without_example = {"Backup", "BackupSchedule"}  # the spec only has Velero mapping tables for these
    assert carried == sorted(set(KINDS) - without_example)
    assert len(SPEC_EXAMPLES) == 16


@pytest.mark.parametrize(("file_name", "obj"), SPEC_EXAMPLES + SANDBOX_OBJECTS, ids=lambda value: str(value))
def test_example_validates_against_its_crd_and_its_models(file_name: str, obj: dict[str, Any]) -> None:
    assert schema_errors(obj) == []
    parse_spec(obj)
    parse_status(obj)


STATUS_FRAGMENTS = [
    (  # "Status-Updates"
        "Organization",
        {
            "phase": "Ready",
            "keycloakGroupID": "abc-123",
            "gitlabGroupID": 42,
            "harborProjectID": 7,
            "argoCDProjectCreated": True,
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "Provisioned",
                    "message": "All organization resources provisioned",
                }
            ],
        },
    ),
    (  # "Auto Workspace Resolution"
        "OperatorConfig",
        {
            "api_sync": {
                "workspace_id": "550e8400-e29b-41d4-a716-446655440000",
                "workspace_name": "production",
                "organization_id": "6ba7b810-9dad-11d1-80b4-00c04fd430c8",
                "organization_name": "acme-corp",
                "resolved_at": "2026-01-06T14:30:00Z",
            }
        },
    ),
]


@pytest.mark.parametrize(("kind", "status"), STATUS_FRAGMENTS, ids=[kind for kind, _ in STATUS_FRAGMENTS])
def test_status_fragments_of_the_spec_validate(kind: str, status: dict[str, Any]) -> None:
    validator = jsonschema.Draft4Validator(
        object_schema(kind)["properties"]["status"], format_checker=jsonschema.Draft4Validator.FORMAT_CHECKER
    )
    assert [error.message for error in validator.iter_errors(status)] == []
    assert KINDS[kind].status_model.model_validate(status)


def test_sandbox_set_has_one_merged_operator_config_with_every_discovery() -> None:
    configs = [obj for _, obj in SANDBOX_OBJECTS if obj["kind"] == "OperatorConfig"]
    assert len(configs) == 1
    assert configs[0]["metadata"] == {"name": "default", "namespace": "polycrate"}
    sections = {key for key in configs[0]["spec"] if key.endswith("_discovery")}
    assert sections == {
        "endpoint_discovery",
        "app_discovery",
        "node_discovery",
        "backup_discovery",
        "certificate_discovery",
        "artifact_discovery",
    }


def test_sandbox_secrets_cover_every_secret_the_objects_reference() -> None:
    secrets = {
        doc["metadata"]["name"]
        for path in sorted(SANDBOX_DIR.glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
        if doc and doc["kind"] == "Secret"
    }
    referenced: set[str] = set()

    def collect(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("secretName", "secret_name") or (key == "secretRef" and isinstance(value, dict)):
                    referenced.add(value if isinstance(value, str) else value["name"])
                collect(value)
        elif isinstance(node, list):
            for item in node:
                collect(item)

    for _, obj in SANDBOX_OBJECTS:
        collect(obj["spec"])
    assert referenced and referenced <= secrets


def test_sandbox_references_resolve_within_the_set() -> None:
    names = {(obj["kind"], obj["metadata"]["name"]) for _, obj in SANDBOX_OBJECTS}
    contact = next(obj for _, obj in SANDBOX_OBJECTS if obj["kind"] == "Contact")
    assert ("ContactGroup", contact["spec"]["additionalGroups"][0]["contactGroup"]) in names
    assert ("Organization", contact["spec"]["organizations"][0]["name"]) in names
    assert ("ContactGroup", "platform-admins") in names and ("K8sCluster", "production-cluster") in names
    assert all(obj["metadata"].get("namespace") == "polycrate" for _, obj in SANDBOX_OBJECTS)


# --- server and operator agree on mistakes -------------------------------------------------------------


def mutated(file_name: str, change) -> dict[str, Any]:
    obj = copy.deepcopy(example(file_name))
    change(obj["spec"])
    return obj


INVALID = {
    "quota typo": mutated("harborproject-shared-images.yaml", lambda s: s.update(storageQuota="50Gx")),
    "unknown harbor role": mutated(
        "harborproject-shared-images.yaml", lambda s: s["accessControl"][0].update(role="admin")
    ),
    "visibility": mutated("gitlabgroup-shared-libs.yaml", lambda s: s.update(visibility="secret")),
    "gitlab access level": mutated(
        "gitlabgroup-shared-libs.yaml", lambda s: s["organizationAccess"][0].update(accessLevel="write")
    ),
    "missing sdp": mutated("organization-acme-corp.yaml", lambda s: s.pop("sdp")),
    "sdp list for organization": mutated(
        "organization-acme-corp.yaml", lambda s: s.update(sdp=["production"])
    ),
    "empty sdp list": mutated("contactgroup-platform-admins.yaml", lambda s: s.update(sdp=[])),
    "destination with both": mutated(
        "argocdproject-infrastructure.yaml",
        lambda s: s["destinations"][1].update(server="https://x.example.com"),
    ),
    "destination with neither": mutated(
        "argocdproject-infrastructure.yaml", lambda s: s["destinations"][0].pop("server")
    ),
    "two auth methods": mutated(
        "k8scluster-production-cluster.yaml",
        lambda s: s["authentication"].update(kubeconfig={"secretRef": {"name": "k", "key": "kubeconfig"}}),
    ),
    "no auth method": mutated("k8scluster-production-cluster.yaml", lambda s: s.update(authentication={})),
    "port out of range": mutated("endpoint-app-example-com.yaml", lambda s: s.update(remotePort=70000)),
    "path without slash": mutated("endpoint-app-example-com.yaml", lambda s: s.update(path="health")),
    "certificate state": mutated(
        "certificate-certmanager-production-api-example-com-tls.yaml",
        lambda s: s.update(certificate_status="ok"),
    ),
    "timestamp": mutated(
        "certificate-certmanager-production-api-example-com-tls.yaml",
        lambda s: s.update(not_after="next year"),
    ),
    "contact without username or email": mutated("contact-john-doe.yaml", lambda s: s.update(keycloak={})),
    "bad email": mutated("contact-john-doe.yaml", lambda s: s["keycloak"].update(email="john.doe")),
    "sdp without systems": mutated(
        "softwaredeliveryplatform-production.yaml",
        lambda s: [s.pop(system) for system in ("keycloak", "gitlab", "harbor", "argocd")],
    ),
    "uppercase object name": mutated(
        "contact-john-doe.yaml", lambda s: s["organizations"][0].update(name="ACME")
    ),
    "k8sapp action status": mutated("k8sapp-nginx-ingress.yaml", lambda s: s["action"].update(status="done")),
    "artifact scheme": mutated(
        "artifact-cargo-ayedo-cloud-library-nginx-1-25-3.yaml", lambda s: s["registry"].update(scheme="ftp")
    ),
}


@pytest.mark.parametrize("obj", INVALID.values(), ids=INVALID.keys())
def test_server_and_operator_both_reject(obj: dict[str, Any]) -> None:
    assert schema_errors(obj), "the CRD schema accepts what the model rejects"
    with pytest.raises(InvalidSpecError):
        parse_spec(obj)


VALID_VARIANTS = {
    "quota as a YAML number": mutated(
        "harborproject-shared-images.yaml", lambda s: s.update(storageQuota=100)
    ),
    "decimal quota": mutated("harborproject-shared-images.yaml", lambda s: s.update(storageQuota="1.5T")),
    "kubeconfig auth": mutated(
        "k8scluster-production-cluster.yaml",
        lambda s: s.update(authentication={"kubeconfig": {"secretRef": {"name": "k", "key": "kubeconfig"}}}),
    ),
    "contact by email": mutated("contact-john-doe.yaml", lambda s: s["keycloak"].pop("username")),
    "gitlab only sdp": mutated(
        "softwaredeliveryplatform-production.yaml",
        lambda s: [s.pop(system) for system in ("keycloak", "harbor", "argocd")],
    ),
    "rate limit": mutated(
        "softwaredeliveryplatform-production.yaml",
        lambda s: s["settings"].update(rateLimit={"requestsPerSecond": 0.5, "burst": 1}),
    ),
}


@pytest.mark.parametrize("obj", VALID_VARIANTS.values(), ids=VALID_VARIANTS.keys())
def test_server_and_operator_both_accept(obj: dict[str, Any]) -> None:
    assert schema_errors(obj) == []
    parse_spec(obj)


# --- in a cluster (the emulator, or POLYCRATE_TEST_KUBECONFIG) -----------------------------------------


def test_install_is_idempotent(kubeconfig: str) -> None:
    api_client = load_api_client(kubeconfig)
    manifests = crd_manifests([KINDS["Organization"], KINDS["Artifact"]])
    first = install_crds(api_client, manifests)
    second = install_crds(api_client, manifests)
    assert {result.action for result in first} <= {"created", "unchanged"}
    assert [result.action for result in second] == ["unchanged", "unchanged"]


def test_apply_crd_replaces_a_changed_definition(kubeconfig: str) -> None:
    api_client = load_api_client(kubeconfig)
    manifest = crd_manifest(KINDS["Contact"])
    install_crds(api_client, [manifest])
    changed = copy.deepcopy(manifest)
    changed["spec"]["versions"][0]["additionalPrinterColumns"].pop(0)
    assert apply_crd(api_client, changed).action == "updated"
    assert apply_crd(api_client, manifest).action == "updated"
    assert apply_crd(api_client, manifest, dry_run=True).action == "unchanged"


def test_the_cluster_accepts_every_spec_example_with_its_status(kubeconfig: str) -> None:
    api_client = load_api_client(kubeconfig)
    install_crds(api_client, crd_manifests())
    core, custom = client.CoreV1Api(api_client), client.CustomObjectsApi(api_client)
    for namespace in ("polycrate", "production", "default"):
        try:
            core.create_namespace({"metadata": {"name": namespace}})
        except client.ApiException as exc:
            assert exc.status == 409
    for index, (file_name, original) in enumerate(SPEC_EXAMPLES):
        obj = copy.deepcopy(original)
        info = KINDS[obj["kind"]]
        status = obj.pop("status", None)
        obj["metadata"].pop("ownerReferences", None)  # the owning Meta-Secret is not part of the example
        # The three OperatorConfig examples share one name; keep all of them side by side.
        name = obj["metadata"]["name"] = f"{obj['metadata']['name']}-{index}"
        group = ("polycrate.io", "v1alpha1")
        if info.namespaced:
            namespace = obj["metadata"].get("namespace", "default")
            custom.create_namespaced_custom_object(*group, namespace, info.plural, obj)
            if status is not None:
                stored = custom.patch_namespaced_custom_object_status(
                    *group, namespace, info.plural, name, {"status": status}
                )
                assert stored["status"] == status, file_name
        else:
            custom.create_cluster_custom_object(*group, info.plural, obj)
            if status is not None:
                stored = custom.patch_cluster_custom_object_status(
                    *group, info.plural, name, {"status": status}
                )
                assert stored["status"] == status, file_name


# Kinds whose spec values are written into Keycloak, GitLab, Harbor or Argo CD.
TENANT_KINDS = (
    "SoftwareDeliveryPlatform",
    "Organization",
    "Contact",
    "ContactGroup",
    "GitLabGroup",
    "HarborProject",
    "ArgoCDProject",
    "K8sCluster",
)


def _unbounded_strings(schema: dict[str, Any], path: str) -> list[str]:
    found = []
    if schema.get("type") == "string" and "maxLength" not in schema and "enum" not in schema:
        found.append(path)
    for name, sub in (schema.get("properties") or {}).items():
        found += _unbounded_strings(sub, f"{path}.{name}")
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            found += _unbounded_strings(schema[key], f"{path}[]")
    return found


@pytest.mark.parametrize("kind", TENANT_KINDS)
def test_every_free_text_field_a_system_receives_has_a_max_length(kind: str) -> None:
    spec = crd_manifest(KINDS[kind])["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]

    assert _unbounded_strings(spec, "spec") == []


@pytest.mark.parametrize(
    ("kind", "field"),
    [
        ("Organization", "harbor"),
        ("Organization", "argocd"),
        ("HarborProject", None),
        ("ArgoCDProject", None),
    ],
)
def test_project_names_that_systems_cannot_rename_are_immutable_in_the_crd(
    kind: str, field: str | None
) -> None:
    spec = crd_manifest(KINDS[kind])["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    section = spec["properties"][field] if field else spec

    (rule,) = section["properties"]["projectName"]["x-kubernetes-validations"]

    assert rule["rule"] == "self == oldSelf"
    assert rule["message"].startswith("projectName is immutable; delete and recreate the")


def test_wait_established_returns_once_the_crd_serves(kubeconfig: str) -> None:
    api_client = load_api_client(kubeconfig)
    install_crds(api_client, [crd_manifest(KINDS["Contact"])])
    wait_established(api_client, "contacts.polycrate.io", timeout=5)


def test_wait_established_for_a_missing_crd_fails_at_once(kubeconfig: str) -> None:
    with pytest.raises(PermanentError) as caught:
        wait_established(load_api_client(kubeconfig), "nothings.polycrate.io", timeout=5)
    assert caught.value.reason == "NotFound"
    assert "read CustomResourceDefinition nothings.polycrate.io" in str(caught.value)
