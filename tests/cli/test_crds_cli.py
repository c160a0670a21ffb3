"""`polycrate operator crds` and `install-crds` from a user's terminal: output, files, errors."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result

from cli import main
from polycrate.crds import crd_manifest, render_yaml
from polycrate.models import KINDS
from tests.spec_examples import EXAMPLES_DIR


def run(*args: str, env: dict[str, str | None] | None = None) -> Result:
    return CliRunner().invoke(main, ["operator", *args], env=env)


def no_kubernetes_config(home: Path) -> dict[str, str | None]:
    """An environment in which nothing points at a cluster."""
    return {"HOME": str(home), "KUBECONFIG": None, "KUBERNETES_SERVICE_HOST": None}


def assert_one_line_error(result: Result, *fragments: str) -> None:
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    for fragment in fragments:
        assert fragment in lines[0]
    assert "Traceback" not in result.output


def write_kubeconfig(path: Path, server: str, token: str = "kubeconfig-token-value") -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": server}}],
                "users": [{"name": "u", "user": {"token": token}}],
                "contexts": [{"name": "ctx", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "ctx",
            }
        )
    )
    return path


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- crds ------------------------------------------------------------------------------------------


def test_crds_prints_all_fifteen_crds_for_kubectl_apply() -> None:
    result = run("crds")
    assert result.exit_code == 0
    documents = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    assert [doc["spec"]["names"]["kind"] for doc in documents] == list(KINDS)
    assert {doc["kind"] for doc in documents} == {"CustomResourceDefinition"}


@pytest.mark.parametrize("name", ["Organization", "org", "organizations"])
def test_crds_kind_prints_only_that_crd(name: str) -> None:
    result = run("crds", "--kind", name)
    assert result.exit_code == 0
    assert result.stdout == render_yaml([crd_manifest(KINDS["Organization"])])


def test_crds_kind_can_be_repeated() -> None:
    result = run("crds", "--kind", "OperatorConfig", "--kind", "art")
    names = [doc["metadata"]["name"] for doc in yaml.safe_load_all(result.stdout) if doc]
    assert names == ["operatorconfigs.polycrate.io", "artifacts.polycrate.io"]


def test_crds_unknown_kind_is_one_line_naming_the_valid_kinds() -> None:
    result = run("crds", "--kind", "Tenant")
    assert_one_line_error(result, 'unknown kind "Tenant"', "SoftwareDeliveryPlatform", "Artifact")


def test_crds_list_shows_names_short_names_and_scope() -> None:
    result = run("crds", "--list")
    assert result.exit_code == 0
    rows = [line.split() for line in result.stdout.strip().splitlines()]
    assert rows[0] == ["NAME", "KIND", "SHORTNAMES", "SCOPE"]
    assert len(rows) == 16
    assert ["operatorconfigs.polycrate.io", "OperatorConfig", "oc,opcfg", "Namespaced"] in rows
    assert ["artifacts.polycrate.io", "Artifact", "art", "Cluster"] in rows


def test_crds_output_dir_writes_the_same_files_as_deploy(tmp_path: Path) -> None:
    result = run("crds", "--output-dir", str(tmp_path / "crds"))
    assert result.exit_code == 0
    written = sorted(path.name for path in (tmp_path / "crds").iterdir())
    deployed = sorted(
        path.name for path in (Path(__file__).resolve().parents[2] / "deploy" / "crds").iterdir()
    )
    assert written == deployed
    assert len(result.stdout.splitlines()) == len(written)


def test_crds_output_dir_that_is_a_file_is_one_line(tmp_path: Path) -> None:
    target = tmp_path / "taken"
    target.write_text("")
    result = run("crds", "--output-dir", str(target))
    assert result.exit_code != 0
    assert "Traceback" not in result.output


@pytest.mark.parametrize("command", ["crds", "install-crds"])
def test_help_shows_usage_and_examples(command: str) -> None:
    result = run(command, "--help")
    assert result.exit_code == 0
    assert f"polycrate operator {command}" in result.stdout
    assert "--kind" in result.stdout


# --- install-crds without a usable cluster ----------------------------------------------------------


def test_install_with_missing_kubeconfig_file_is_one_line(tmp_path: Path) -> None:
    result = run("install-crds", "--kubeconfig", str(tmp_path / "nope.yaml"))
    assert_one_line_error(result, "nope.yaml does not exist")


def test_install_with_broken_kubeconfig_is_one_line_without_its_contents(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("users:\n- name: u\n  user: {token: very-secret-token\n")
    result = run("install-crds", "--kubeconfig", str(broken))
    assert_one_line_error(result, "broken.yaml is not valid YAML")
    assert "very-secret-token" not in result.output


def test_install_with_unknown_context_is_one_line(tmp_path: Path) -> None:
    kubeconfig = write_kubeconfig(tmp_path / "config", f"http://127.0.0.1:{closed_port()}")
    result = run("install-crds", "--kubeconfig", str(kubeconfig), "--context", "staging")
    assert_one_line_error(result, "not usable", "staging")


def test_install_against_an_unreachable_cluster_is_one_line(tmp_path: Path) -> None:
    port = closed_port()
    kubeconfig = write_kubeconfig(tmp_path / "config", f"http://127.0.0.1:{port}")
    result = run("install-crds", "--kubeconfig", str(kubeconfig))
    assert_one_line_error(
        result, f"cannot reach the Kubernetes API at http://127.0.0.1:{port}", "Connection refused"
    )
    assert "kubeconfig-token-value" not in result.output


def test_install_without_any_configuration_says_how_to_provide_one(tmp_path: Path) -> None:
    result = run("install-crds", env=no_kubernetes_config(tmp_path))
    assert_one_line_error(result, "no Kubernetes configuration found", "--kubeconfig", "KUBECONFIG")


def test_install_uses_the_kubeconfig_environment_variable(tmp_path: Path) -> None:
    port = closed_port()
    kubeconfig = write_kubeconfig(tmp_path / "config", f"http://127.0.0.1:{port}")
    result = run("install-crds", env={**no_kubernetes_config(tmp_path), "KUBECONFIG": str(kubeconfig)})
    assert_one_line_error(result, f"127.0.0.1:{port}")


def test_dry_run_without_configuration_lists_what_would_be_applied(tmp_path: Path) -> None:
    result = run("install-crds", "--dry-run", env=no_kubernetes_config(tmp_path))
    assert result.exit_code == 0
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 15
    assert lines[1] == "customresourcedefinition.apiextensions.k8s.io/organizations.polycrate.io (dry run)"
    assert "not compared" in result.stderr


def test_install_unknown_kind_is_one_line(tmp_path: Path) -> None:
    result = run("install-crds", "--kind", "nope", env=no_kubernetes_config(tmp_path))
    assert_one_line_error(result, 'unknown kind "nope"')


# --- install-crds against a cluster (the emulator, or POLYCRATE_TEST_KUBECONFIG) -------------------


def test_install_creates_every_crd_and_waits_until_established(kubeconfig: str, kubectl) -> None:
    result = run("install-crds", "--kubeconfig", kubeconfig)
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    prefix = "customresourcedefinition.apiextensions.k8s.io/"
    reported = [line.removeprefix(prefix).split() for line in lines[:15]]
    assert [name for name, _ in reported] == [info.crd_name for info in KINDS.values()]
    # A real cluster from an earlier run may already have them; the emulator starts empty.
    assert {action for _, action in reported} <= {"created", "unchanged"}
    assert lines[-1].startswith("15 CustomResourceDefinitions established on ")
    established = kubectl(
        "get",
        "crd",
        "-l",
        "app.kubernetes.io/part-of=polycrate",
        "-o",
        "jsonpath={range .items[*]}{.metadata.name}={.status.conditions[?(@.type=='Established')].status}{'\\n'}{end}",
    ).stdout.split()
    assert sorted(established) == sorted(f"{info.crd_name}=True" for info in KINDS.values())


def test_second_install_changes_nothing(kubeconfig: str) -> None:
    run("install-crds", "--kubeconfig", kubeconfig)
    result = run("install-crds", "--kubeconfig", kubeconfig, "--kind", "org", "--kind", "art")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[:2] == [
        "customresourcedefinition.apiextensions.k8s.io/organizations.polycrate.io unchanged",
        "customresourcedefinition.apiextensions.k8s.io/artifacts.polycrate.io unchanged",
    ]


def test_install_updates_a_crd_that_differs(kubeconfig: str, kubectl) -> None:
    run("install-crds", "--kubeconfig", kubeconfig, "--kind", "Organization")
    kubectl(
        "label",
        "crd",
        "organizations.polycrate.io",
        "app.kubernetes.io/part-of=something-else",
        "--overwrite",
    )
    dry = run("install-crds", "--kubeconfig", kubeconfig, "--kind", "Organization", "--dry-run")
    assert (
        dry.stdout.strip()
        == "customresourcedefinition.apiextensions.k8s.io/organizations.polycrate.io updated (dry run)"
    )
    result = run("install-crds", "--kubeconfig", kubeconfig, "--kind", "Organization")
    assert (
        result.stdout.splitlines()[0]
        == "customresourcedefinition.apiextensions.k8s.io/organizations.polycrate.io updated"
    )
    label = kubectl(
        "get",
        "crd",
        "organizations.polycrate.io",
        "-o",
        "jsonpath={.metadata.labels.app\\.kubernetes\\.io/part-of}",
    )
    assert label.stdout == "polycrate"


def test_dry_run_writes_nothing(kube_emulator, kube_emulator_kubeconfig: str, kubectl) -> None:
    result = run("install-crds", "--kubeconfig", kube_emulator_kubeconfig, "--dry-run")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[1] == (
        "customresourcedefinition.apiextensions.k8s.io/organizations.polycrate.io created (dry run)"
    )
    assert kubectl("get", "crd", "-o", "name").stdout.count("polycrate.io") == 0


def test_kubectl_get_shows_the_columns_of_the_specs_outputs(kubeconfig: str, kubectl) -> None:
    run("install-crds", "--kubeconfig", kubeconfig)
    kubectl("apply", "-f", str(EXAMPLES_DIR / "00-namespaces.yaml"))
    app = yaml.safe_load((EXAMPLES_DIR / "k8sapp-nginx-ingress.yaml").read_text())
    # Its owner, the Meta-Secret, is not part of the example; the garbage collector would take it.
    del app["metadata"]["ownerReferences"]
    kubectl("apply", "-f", "-", input=yaml.safe_dump(app))
    kubectl("apply", "-f", str(EXAMPLES_DIR / "artifact-cargo-ayedo-cloud-library-nginx-1-25-3.yaml"))
    kubectl("apply", "-f", str(EXAMPLES_DIR / "organization-acme-corp.yaml"))
    apps = kubectl("get", "k8sapps", "-A").stdout.splitlines()
    assert apps[0].split() == ["NAMESPACE", "NAME", "BLOCK", "VERSION", "ARTIFACTS", "PHASE", "AGE"]
    assert apps[1].split()[:4] == ["production", "nginx-ingress", "nginx-ingress", "1.2.0"]
    artifacts = kubectl("get", "art").stdout.splitlines()
    assert artifacts[0].split() == ["NAME", "IMAGE", "PODS", "PHASE"]
    assert artifacts[1].split()[:2] == [
        "cargo-ayedo-cloud-library-nginx-1-25-3",
        "cargo.ayedo.cloud/library/nginx:1.25.3",
    ]
    organizations = kubectl("get", "org", "-n", "polycrate").stdout.splitlines()
    assert organizations[0].split() == ["NAME", "SDP", "PHASE", "AGE"]
    assert organizations[1].split()[:2] == ["acme-corp", "production"]


def test_the_cluster_rejects_what_the_models_reject(kubeconfig: str, kubectl) -> None:
    run("install-crds", "--kubeconfig", kubeconfig, "--kind", "HarborProject")
    broken = yaml.safe_load((EXAMPLES_DIR / "harborproject-shared-images.yaml").read_text())
    broken["spec"]["storageQuota"] = "50Gx"
    kubectl("apply", "-f", str(EXAMPLES_DIR / "00-namespaces.yaml"))
    result = kubectl("apply", "-f", "-", input=yaml.safe_dump(broken), check=False)
    assert result.returncode != 0
    assert "storageQuota" in result.stderr
