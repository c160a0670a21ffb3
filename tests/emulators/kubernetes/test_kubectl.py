"""The real kubectl v1.32 against the cluster under test: apply, get, describe, patch, delete, watch.

kubectl was written by no one here, so these tests are the proof that the emulator speaks the
API the way kubectl expects (aggregated discovery, OpenAPI v3 field-validation probe, Tables,
strategic merge patches, watch-based waits). They run against a real cluster as well.
"""

from __future__ import annotations

import base64
import queue
import re
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.emulators.kubernetes.conftest import GADGET_CRD, WIDGET_CRD
from tests.fixtures.kube import CERT_MANAGER_CERTIFICATE_CRD, VELERO_BACKUP_CRD, VELERO_SCHEDULE_CRD, Kubectl

REPO = Path(__file__).resolve().parents[3]
SPEC_CRDS = REPO / "deploy" / "crds"
SPEC_EXAMPLES = REPO / "examples"


def manifest(tmp_path: Path, name: str, *documents: dict[str, Any]) -> str:
    path = tmp_path / name
    path.write_text(yaml.safe_dump_all(documents, sort_keys=False))
    return str(path)


def widget(name: str, namespace: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "testing.polycrate.io/v1",
        "kind": "Widget",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"color": "red", **spec},
    }


class LineReader:
    """Reads a long-running process's stdout on a thread so tests can wait for lines."""

    def __init__(self, process: subprocess.Popen[str]):
        self.process = process
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))

    def next_line(self, timeout: float = 10.0) -> str:
        return self.lines.get(timeout=timeout)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


@pytest.fixture
def widgets_ready(kubectl: Kubectl, kube_namespace: str) -> str:
    kubectl("apply", "-f", str(WIDGET_CRD))
    kubectl("wait", "--for=condition=Established", "crd/widgets.testing.polycrate.io", "--timeout=30s")
    return kube_namespace


def test_apply_creates_configures_and_leaves_unchanged(
    kubectl: Kubectl, widgets_ready: str, tmp_path: Path
) -> None:
    first = manifest(tmp_path, "w.yaml", widget("w1", widgets_ready))
    second = manifest(tmp_path, "w2.yaml", widget("w1", widgets_ready, size=3))

    assert kubectl("apply", "-f", first).stdout.strip() == "widget.testing.polycrate.io/w1 created"
    assert kubectl("apply", "-f", second).stdout.strip() == "widget.testing.polycrate.io/w1 configured"
    assert kubectl("apply", "-f", second).stdout.strip() == "widget.testing.polycrate.io/w1 unchanged"
    assert kubectl("get", "wg", "w1", "-n", widgets_ready, "-o", "jsonpath={.spec.size}").stdout == "3"


def test_get_prints_the_crds_printer_columns(kubectl: Kubectl, widgets_ready: str, tmp_path: Path) -> None:
    kubectl(
        "apply",
        "-f",
        manifest(tmp_path, "w.yaml", widget("w1", widgets_ready, size=4, url="https://x.example")),
    )
    kubectl(
        "patch", "wg", "w1", "-n", widgets_ready, "--subresource", "status", "--type", "merge",
        "-p", '{"status":{"conditions":[{"type":"Ready","status":"True"}]}}',
    )  # fmt: skip

    plain = kubectl("get", "wg", "-n", widgets_ready).stdout.splitlines()
    wide = kubectl("get", "wg", "-n", widgets_ready, "-o", "wide").stdout.splitlines()

    assert plain[0].split() == ["NAME", "COLOR", "SIZE", "READY", "AGE"]
    assert plain[1].split()[:4] == ["w1", "red", "4", "True"]
    assert wide[0].split() == ["NAME", "COLOR", "SIZE", "READY", "URL", "AGE"]
    assert "https://x.example" in wide[1]


def test_get_o_yaml_returns_the_stored_object(kubectl: Kubectl, widgets_ready: str, tmp_path: Path) -> None:
    kubectl("apply", "-f", manifest(tmp_path, "w.yaml", widget("w1", widgets_ready)))

    served = yaml.safe_load(kubectl("get", "widget", "w1", "-n", widgets_ready, "-o", "yaml").stdout)

    assert served["kind"] == "Widget" and served["spec"] == {"color": "red", "size": 1}
    assert "kubectl.kubernetes.io/last-applied-configuration" in served["metadata"]["annotations"]


def test_describe_shows_the_spec_and_the_objects_events(
    kubectl: Kubectl, widgets_ready: str, tmp_path: Path
) -> None:
    kubectl("apply", "-f", manifest(tmp_path, "w.yaml", widget("w1", widgets_ready)))
    uid = kubectl("get", "wg", "w1", "-n", widgets_ready, "-o", "jsonpath={.metadata.uid}").stdout
    event = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": "w1.provisioned", "namespace": widgets_ready},
        "involvedObject": {
            "apiVersion": "testing.polycrate.io/v1",
            "kind": "Widget",
            "name": "w1",
            "namespace": widgets_ready,
            "uid": uid,
        },
        "reason": "Provisioned",
        "message": "widget is ready",
        "type": "Normal",
        "source": {"component": "polycrate-operator"},
        "count": 1,
    }
    kubectl("create", "-f", manifest(tmp_path, "event.yaml", event))

    described = kubectl("describe", "wg", "w1", "-n", widgets_ready).stdout

    assert "Name:         w1" in described
    assert "Color:  red" in described
    assert "Provisioned" in described and "widget is ready" in described


def test_patch_merge_changes_the_spec_and_bumps_generation(
    kubectl: Kubectl, widgets_ready: str, tmp_path: Path
) -> None:
    kubectl("apply", "-f", manifest(tmp_path, "w.yaml", widget("w1", widgets_ready)))

    result = kubectl(
        "patch", "wg", "w1", "-n", widgets_ready, "--type", "merge", "-p", '{"spec":{"color":"blue"}}'
    )

    assert result.stdout.strip() == "widget.testing.polycrate.io/w1 patched"
    shown = kubectl(
        "get", "wg", "w1", "-n", widgets_ready, "-o", "jsonpath={.spec.color} {.metadata.generation}"
    )
    assert shown.stdout == "blue 2"


def test_delete_waits_until_the_last_finalizer_is_removed(
    kubectl: Kubectl, widgets_ready: str, tmp_path: Path
) -> None:
    held = widget("w1", widgets_ready)
    held["metadata"]["finalizers"] = ["testing.polycrate.io/cleanup"]
    kubectl("apply", "-f", manifest(tmp_path, "w.yaml", held))

    deleting = subprocess.Popen(
        kubectl.command("delete", "wg", "w1", "-n", widgets_ready),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(0.7)
        assert deleting.poll() is None, "kubectl delete returned although a finalizer is pending"
        pending = kubectl(
            "get", "wg", "w1", "-n", widgets_ready, "-o", "jsonpath={.metadata.deletionTimestamp}"
        )
        assert pending.stdout

        kubectl(
            "patch",
            "wg",
            "w1",
            "-n",
            widgets_ready,
            "--type",
            "merge",
            "-p",
            '{"metadata":{"finalizers":null}}',
        )
        stdout, _ = deleting.communicate(timeout=15)
    finally:
        if deleting.poll() is None:
            deleting.kill()
            deleting.wait()

    assert deleting.returncode == 0
    assert 'widget.testing.polycrate.io "w1" deleted' in stdout
    assert kubectl("get", "wg", "-n", widgets_ready, "-o", "name").stdout == ""


def test_get_watch_prints_a_row_for_each_change(kubectl: Kubectl, widgets_ready: str, tmp_path: Path) -> None:
    kubectl("apply", "-f", manifest(tmp_path, "w.yaml", widget("w1", widgets_ready)))
    watching = LineReader(kubectl.popen("get", "wg", "-n", widgets_ready, "-w"))
    try:
        assert watching.next_line().split()[:2] == ["NAME", "COLOR"]
        assert watching.next_line().split()[:2] == ["w1", "red"]

        kubectl(
            "patch", "wg", "w1", "-n", widgets_ready, "--type", "merge", "-p", '{"spec":{"color":"green"}}'
        )

        assert watching.next_line().split()[:2] == ["w1", "green"]
    finally:
        watching.stop()


def test_schema_violation_is_rejected_with_the_servers_422_message(
    kubectl: Kubectl, widgets_ready: str, tmp_path: Path
) -> None:
    bad = widget("bad", widgets_ready)
    del bad["spec"]["color"]

    result = kubectl("apply", "-f", manifest(tmp_path, "bad.yaml", bad), check=False)

    assert result.returncode == 1
    assert 'The Widget "bad" is invalid: spec.color: Required value' in result.stderr


def test_unknown_field_is_rejected_by_kubectls_strict_validation(
    kubectl: Kubectl, widgets_ready: str, tmp_path: Path
) -> None:
    path = manifest(tmp_path, "w.yaml", widget("w1", widgets_ready, bogus=1))

    rejected = kubectl("apply", "-f", path, check=False)
    accepted = kubectl("apply", "--validate=false", "-f", path)

    assert rejected.returncode == 1
    assert 'strict decoding error: unknown field "spec.bogus"' in rejected.stderr
    assert accepted.returncode == 0
    assert "bogus" not in kubectl("get", "wg", "w1", "-n", widgets_ready, "-o", "jsonpath={.spec}").stdout


def test_cluster_scoped_custom_resources_have_name_and_age_columns(kubectl: Kubectl, tmp_path: Path) -> None:
    kubectl("apply", "-f", str(GADGET_CRD))
    kubectl("wait", "--for=condition=Established", "crd/gadgets.testing.polycrate.io", "--timeout=30s")
    gadget = {
        "apiVersion": "testing.polycrate.io/v1",
        "kind": "Gadget",
        "metadata": {"name": "g1"},
        "spec": {"x": 1},
    }
    kubectl("apply", "-f", manifest(tmp_path, "g.yaml", gadget))
    try:
        listed = kubectl("get", "gd").stdout.splitlines()
        assert listed[0].split() == ["NAME", "AGE"]
        assert listed[1].split()[0] == "g1"
    finally:
        kubectl("delete", "gd", "g1")


def test_reapplying_a_configmap_removes_keys_through_a_strategic_merge_patch(
    kubectl: Kubectl, kube_namespace: str, tmp_path: Path
) -> None:
    def config_map(data: dict[str, str]) -> str:
        body = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "cfg", "namespace": kube_namespace},
        }
        return manifest(tmp_path, "cm.yaml", {**body, "data": data})

    kubectl("apply", "-f", config_map({"a": "1", "b": "2"}))
    kubectl("apply", "-f", config_map({"a": "1", "c": "3"}))

    data = kubectl("get", "cm", "cfg", "-n", kube_namespace, "-o", "jsonpath={.data}").stdout
    assert yaml.safe_load(data) == {"a": "1", "c": "3"}
    assert kubectl("get", "cm", "-n", kube_namespace).stdout.splitlines()[0].split() == [
        "NAME",
        "DATA",
        "AGE",
    ]


def test_velero_and_cert_manager_crds_serve_their_kinds(
    kubectl: Kubectl, kube_namespace: str, tmp_path: Path
) -> None:
    for crd in (VELERO_BACKUP_CRD, VELERO_SCHEDULE_CRD, CERT_MANAGER_CERTIFICATE_CRD):
        kubectl("apply", "-f", str(crd))
    kubectl("wait", "--for=condition=Established", "crd/certificates.cert-manager.io", "--timeout=30s")
    certificate = {
        "apiVersion": "cert-manager.io/v1",
        "kind": "Certificate",
        "metadata": {"name": "api-tls", "namespace": kube_namespace},
        "spec": {
            "secretName": "api-tls",
            "dnsNames": ["api.example.com"],
            "issuerRef": {"name": "letsencrypt"},
        },
    }
    backup = {
        "apiVersion": "velero.io/v1",
        "kind": "Backup",
        "metadata": {"name": "nightly-1", "namespace": kube_namespace},
        "spec": {"includedNamespaces": ["*"], "ttl": "720h0m0s"},
    }
    kubectl("apply", "-f", manifest(tmp_path, "objects.yaml", certificate, backup))
    kubectl(
        "patch", "certs", "api-tls", "-n", kube_namespace, "--subresource", "status", "--type", "merge",
        "-p", '{"status":{"conditions":[{"type":"Ready","status":"True","message":"issued"}]}}',
    )  # fmt: skip

    certificates = kubectl("get", "cert", "-n", kube_namespace, "-o", "wide").stdout.splitlines()
    backups = kubectl("get", "backups.velero.io", "-n", kube_namespace, "-o", "name").stdout

    assert certificates[0].split() == ["NAME", "READY", "SECRET", "ISSUER", "STATUS", "AGE"]
    assert certificates[1].split()[:5] == ["api-tls", "True", "api-tls", "letsencrypt", "issued"]
    assert backups.strip() == "backup.velero.io/nightly-1"


@pytest.mark.skipif(
    not SPEC_CRDS.is_dir() or not SPEC_EXAMPLES.is_dir(), reason="deploy/crds or examples missing"
)
def test_the_specs_crds_and_examples_work_with_kubectl(kubectl: Kubectl) -> None:
    kubectl("apply", "-f", str(SPEC_CRDS))
    kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
    applied = kubectl("apply", "-f", str(SPEC_EXAMPLES)).stdout
    assert "organization.polycrate.io/acme-corp created" in applied

    organizations = kubectl("get", "org", "-n", "polycrate").stdout.splitlines()
    assert organizations[0].split()[:2] == ["NAME", "SDP"]
    assert organizations[1].split()[:2] == ["acme-corp", "production"]

    platform = yaml.safe_load(kubectl("get", "sdp", "-n", "polycrate", "-o", "yaml").stdout)
    assert platform["items"][0]["spec"]["keycloak"]["realm"] == "acme"

    artifacts = kubectl("get", "art").stdout.splitlines()
    assert artifacts[1].split()[0] == "cargo-ayedo-cloud-library-nginx-1-25-3"
    assert "NAMESPACE" not in artifacts[0]

    described = kubectl("describe", "org", "acme-corp", "-n", "polycrate").stdout
    assert re.search(r"Display Name:\s+ACME Corporation", described)
    assert re.search(r"Deletion Policy:\s+Delete", described)  # the CRD's default

    watching = LineReader(kubectl.popen("get", "orgs", "-n", "polycrate", "-w"))
    try:
        watching.next_line()
        watching.next_line()
        kubectl(
            "patch", "org", "acme-corp", "-n", "polycrate", "--type", "merge",
            "-p", '{"metadata":{"finalizers":["polycrate.io/finalizer"]},"spec":{"displayName":"ACME"}}',
        )  # fmt: skip
        assert watching.next_line().split()[0] == "acme-corp"
    finally:
        watching.stop()

    kubectl("delete", "org", "acme-corp", "-n", "polycrate", "--wait=false")
    still_there = kubectl(
        "get", "org", "acme-corp", "-n", "polycrate", "-o", "jsonpath={.metadata.deletionTimestamp}"
    )
    assert still_there.stdout
    kubectl(
        "patch",
        "org",
        "acme-corp",
        "-n",
        "polycrate",
        "--type",
        "merge",
        "-p",
        '{"metadata":{"finalizers":null}}',
    )
    gone = kubectl("get", "org", "acme-corp", "-n", "polycrate", check=False)
    assert gone.returncode == 1 and "NotFound" in gone.stderr


def test_kubectl_create_generators_send_protobuf_that_the_server_reads(
    kubectl: Kubectl, kube_namespace: str
) -> None:
    kubectl("create", "configmap", "settings", "-n", kube_namespace, "--from-literal=mode=fast")
    kubectl("create", "secret", "generic", "creds", "-n", kube_namespace, "--from-literal=token=s3cr3t")

    data = kubectl("get", "cm", "settings", "-n", kube_namespace, "-o", "jsonpath={.data.mode}").stdout
    token = kubectl("get", "secret", "creds", "-n", kube_namespace, "-o", "jsonpath={.data.token}").stdout

    assert data == "fast"
    assert base64.b64decode(token) == b"s3cr3t"
