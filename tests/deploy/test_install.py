"""`kubectl apply -k deploy/` and an overlay into another namespace: what kustomize renders is valid,
meets Pod Security `restricted`, and names no namespace but the one it is installed into."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tasks.routing import QUEUES

REPO = Path(__file__).resolve().parents[2]
KUBECTL = shutil.which("kubectl") or "/usr/bin/kubectl"
OVERLAY = REPO / "overlays" / "example-ops"
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "Job"}
OPERATOR_DEPLOYMENTS = ("polycrate-watcher", "polycrate-worker", "polycrate-flower")
# Pod Security `restricted` allows only these volume types.
RESTRICTED_VOLUME_TYPES = {
    "configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret",
}  # fmt: skip

pytestmark = pytest.mark.skipif(not Path(KUBECTL).exists(), reason="kubectl is not installed")


def render(directory: Path) -> list[dict[str, Any]]:
    result = subprocess.run(
        [KUBECTL, "kustomize", str(directory)], capture_output=True, text=True, check=False, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


@pytest.fixture(scope="module")
def base() -> list[dict[str, Any]]:
    return render(REPO / "deploy")


@pytest.fixture(scope="module")
def overlay() -> list[dict[str, Any]]:
    return render(OVERLAY)


def by_kind_and_name(documents: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [d for d in documents if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def pod_templates(documents: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for document in documents:
        if document["kind"] in WORKLOAD_KINDS:
            yield f"{document['kind']}/{document['metadata']['name']}", document["spec"]["template"]


def all_containers(pod_spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        *pod_spec.get("initContainers", []),
        *pod_spec["containers"],
        *pod_spec.get("ephemeralContainers", []),
    ]


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {variable["name"]: variable for variable in container.get("env", [])}


@pytest.mark.parametrize("which", ["base", "overlay"])
def test_rendered_manifests_are_strictly_valid_kubernetes_objects(
    which: str, request: pytest.FixtureRequest
) -> None:
    documents = request.getfixturevalue(which)
    assert {d["kind"] for d in documents} >= {
        "Namespace",
        "CustomResourceDefinition",
        "Deployment",
        "Service",
    }
    for document in documents:
        kubernetes_validate.validate(document, "1.32", strict=True)


def _strings_naming_the_default_namespace(node: Any, path: str = "") -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "namespace" and value == "polycrate":
                yield f"{path}.{key}"
            yield from _strings_naming_the_default_namespace(value, f"{path}.{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _strings_naming_the_default_namespace(value, f"{path}[{index}]")
    elif isinstance(node, str) and re.search(r"\.polycrate(\.svc|:|/|$)", node):
        # A Service addressed across namespaces, e.g. polycrate-redis.polycrate:6379.
        yield f"{path} = {node!r}"


def test_overlay_names_no_polycrate_namespace(overlay: list[dict[str, Any]]) -> None:
    mentions = [
        f"{d['kind']}/{d['metadata']['name']}{where}"
        for d in overlay
        for where in _strings_naming_the_default_namespace(d)
    ]
    namespaces = [d["metadata"]["name"] for d in overlay if d["kind"] == "Namespace"]

    assert mentions == []
    assert namespaces == ["ops"]


def test_overlay_moves_every_namespaced_object_and_every_service_account_subject(
    overlay: list[dict[str, Any]],
) -> None:
    cluster_scoped = {"Namespace", "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding"}
    for document in overlay:
        if document["kind"] not in cluster_scoped:
            assert document["metadata"].get("namespace") == "ops", document["metadata"]["name"]
    subjects = [
        subject
        for d in overlay
        if d["kind"] in ("ClusterRoleBinding", "RoleBinding")
        for subject in d.get("subjects", [])
        if subject["kind"] == "ServiceAccount"
    ]
    assert subjects
    assert {s["namespace"] for s in subjects} == {"ops"}
    accounts = {d["metadata"]["name"] for d in overlay if d["kind"] == "ServiceAccount"}
    assert {s["name"] for s in subjects} <= accounts


@pytest.mark.parametrize("which", ["base", "overlay"])
def test_the_namespace_enforces_pod_security_restricted(which: str, request: pytest.FixtureRequest) -> None:
    [namespace] = [d for d in request.getfixturevalue(which) if d["kind"] == "Namespace"]

    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


@pytest.mark.parametrize("which", ["base", "overlay"])
def test_every_pod_meets_pod_security_restricted(which: str, request: pytest.FixtureRequest) -> None:
    templates = list(pod_templates(request.getfixturevalue(which)))
    assert len(templates) == 4  # watcher, worker, flower, redis

    for workload, template in templates:
        spec = template["spec"]
        pod = spec.get("securityContext", {})
        assert not (spec.get("hostNetwork") or spec.get("hostPID") or spec.get("hostIPC")), workload
        assert pod.get("runAsNonRoot") is True, workload
        assert pod.get("runAsUser", 1) != 0, workload
        assert pod.get("seccompProfile", {}).get("type") == "RuntimeDefault", workload
        for volume in spec.get("volumes", []):
            types = set(volume) - {"name"}
            assert types <= RESTRICTED_VOLUME_TYPES, f"{workload}: volume {volume['name']} is {types}"
        for container in all_containers(spec):
            where = f"{workload} container {container['name']}"
            context = container.get("securityContext", {})
            assert context.get("allowPrivilegeEscalation") is False, where
            assert context.get("privileged") is not True, where
            assert context.get("runAsNonRoot") is True, where
            assert context.get("runAsUser", 1) != 0, where
            assert context.get("capabilities", {}).get("drop") == ["ALL"], where
            assert set(context.get("capabilities", {}).get("add", [])) <= {"NET_BIND_SERVICE"}, where
            assert context.get("seccompProfile", {}).get("type") == "RuntimeDefault", where
            assert context.get("readOnlyRootFilesystem") is True, where
            assert all("hostPort" not in port for port in container.get("ports", [])), where
            writable = {m["mountPath"] for m in container.get("volumeMounts", [])}
            assert writable, f"{where} has a read-only root and no writable directory"


def test_operator_pods_reach_redis_in_their_own_namespace_with_the_password_from_a_secret(
    overlay: list[dict[str, Any]],
) -> None:
    for name in OPERATOR_DEPLOYMENTS:
        container = by_kind_and_name(overlay, "Deployment", name)["spec"]["template"]["spec"]["containers"][0]
        variables = [variable["name"] for variable in container["env"]]
        env = env_of(container)

        assert env["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
            "name": "polycrate-redis",
            "key": "password",
        }
        # Kubernetes expands $(VAR) only from variables defined earlier in the list.
        assert variables.index("REDIS_PASSWORD") < variables.index("REDIS_URL")
        assert env["REDIS_URL"]["value"] == "redis://:$(REDIS_PASSWORD)@polycrate-redis:6379/0", name


def test_watcher_and_worker_read_their_namespace_from_the_downward_api(overlay: list[dict[str, Any]]) -> None:
    for name in ("polycrate-watcher", "polycrate-worker"):
        container = by_kind_and_name(overlay, "Deployment", name)["spec"]["template"]["spec"]["containers"][0]

        assert env_of(container)["POD_NAMESPACE"]["valueFrom"] == {
            "fieldRef": {"fieldPath": "metadata.namespace"}
        }
        assert "--leader-election-namespace" not in container["args"]


def test_redis_requires_the_password_and_has_a_memory_limit_with_a_policy(base: list[dict[str, Any]]) -> None:
    container = by_kind_and_name(base, "Deployment", "polycrate-redis")["spec"]["template"]["spec"][
        "containers"
    ][0]
    args = container["args"]

    assert args[args.index("--requirepass") + 1] == "$(REDIS_PASSWORD)"
    assert env_of(container)["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "polycrate-redis"
    assert re.fullmatch(r"\d+mb", args[args.index("--maxmemory") + 1])
    assert args[args.index("--maxmemory-policy") + 1] == "noeviction"
    # Redis's own overhead (buffers, fragmentation) must fit between maxmemory and the limit.
    assert container["resources"]["limits"]["memory"] == "320Mi"


def test_only_the_operators_pods_may_connect_to_redis(base: list[dict[str, Any]]) -> None:
    policy = by_kind_and_name(base, "NetworkPolicy", "polycrate-redis")
    redis_labels = by_kind_and_name(base, "Deployment", "polycrate-redis")["spec"]["template"]["metadata"][
        "labels"
    ]

    assert policy["spec"]["policyTypes"] == ["Ingress"]
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= redis_labels.items()
    [rule] = policy["spec"]["ingress"]
    [peer] = rule["from"]
    assert set(peer) == {"podSelector"}  # no namespaceSelector: only pods of this namespace
    [expression] = peer["podSelector"]["matchExpressions"]
    assert (expression["key"], expression["operator"]) == ("app.kubernetes.io/name", "In")
    assert sorted(expression["values"]) == sorted(OPERATOR_DEPLOYMENTS)
    for name in OPERATOR_DEPLOYMENTS:
        labels = by_kind_and_name(base, "Deployment", name)["spec"]["template"]["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] in expression["values"]
    assert rule["ports"] == [{"protocol": "TCP", "port": 6379}]


def test_flower_asks_for_basic_auth_from_a_secret(base: list[dict[str, Any]]) -> None:
    container = by_kind_and_name(base, "Deployment", "polycrate-flower")["spec"]["template"]["spec"][
        "containers"
    ][0]

    assert "--basic-auth=$(FLOWER_BASIC_AUTH)" in container["command"]
    assert env_of(container)["FLOWER_BASIC_AUTH"]["valueFrom"]["secretKeyRef"] == {
        "name": "polycrate-flower",
        "key": "basic-auth",
    }


@pytest.mark.parametrize("name", ["polycrate-watcher", "polycrate-worker"])
def test_watcher_and_worker_have_a_disruption_budget_and_probes(
    name: str, base: list[dict[str, Any]]
) -> None:
    deployment = by_kind_and_name(base, "Deployment", name)
    budget = by_kind_and_name(base, "PodDisruptionBudget", name)
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    args = container["args"]

    assert budget["spec"]["selector"] == deployment["spec"]["selector"]
    assert budget["spec"]["maxUnavailable"] == 1
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "probes"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "probes"}
    assert args[args.index("--health-probe-bind-address") + 1] == f":{ports['probes']}"
    assert args[args.index("--metrics-bind-address") + 1] == f":{ports['metrics']}"
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(ports["metrics"])


def test_make_image_builds_the_image_that_deploy_runs(base: list[dict[str, Any]]) -> None:
    result = subprocess.run(
        ["make", "--no-print-directory", "--dry-run", "--always-make", "image"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    version = re.search(r'^version = "(.+)"$', (REPO / "pyproject.toml").read_text(), re.M)
    assert version is not None
    images = {
        container["image"]
        for _, template in pod_templates(base)
        for container in all_containers(template["spec"])
        if not container["image"].startswith("redis:")
    }

    assert result.stdout.strip() == f"docker build --tag polycrate-operator:{version[1]} ."
    assert images == {f"polycrate-operator:{version[1]}"}


def test_dockerfile_installs_every_package_and_runs_as_the_deployments_user(
    base: list[dict[str, Any]],
) -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    pyproject = (REPO / "pyproject.toml").read_text()
    packages = re.findall(r'"(\w+)\*"', re.search(r"\[tool.setuptools.packages.find\]\n(.+)", pyproject)[1])
    users = {
        template["spec"]["securityContext"]["runAsUser"]
        for _, template in pod_templates(base)
        if not template["spec"]["containers"][0]["image"].startswith("redis:")
    }

    for package in packages:
        assert f"COPY {package} ./{package}" in dockerfile
    assert "USER 65532:65532" in dockerfile
    assert users == {65532}


def test_keda_overlay_scales_workers_on_every_queue_of_the_redis_in_its_own_namespace() -> None:
    documents = render(REPO / "overlays" / "example-ops-keda")
    scaled = by_kind_and_name(documents, "ScaledObject", "polycrate-worker")
    authentication = by_kind_and_name(documents, "TriggerAuthentication", "polycrate-redis")
    keda_access = by_kind_and_name(documents, "NetworkPolicy", "polycrate-redis-keda")

    triggers = scaled["spec"]["triggers"]
    assert [t["metadata"]["listName"] for t in triggers] == list(QUEUES)
    assert {t["metadata"]["address"] for t in triggers} == {"polycrate-redis.ops.svc:6379"}
    assert {t["authenticationRef"]["name"] for t in triggers} == {"polycrate-redis"}
    assert authentication["spec"]["secretTargetRef"] == [
        {"parameter": "password", "name": "polycrate-redis", "key": "password"}
    ]
    assert (
        scaled["spec"]["scaleTargetRef"]["name"]
        == by_kind_and_name(documents, "Deployment", "polycrate-worker")["metadata"]["name"]
    )
    assert keda_access["metadata"]["namespace"] == "ops"
    mentions = [where for d in documents for where in _strings_naming_the_default_namespace(d)]
    assert mentions == []
    for document in documents:
        if not document["apiVersion"].startswith("keda.sh/"):
            kubernetes_validate.validate(document, "1.32", strict=True)
