"""ServiceAccount tokens and RBAC in the emulated API server, through the official client and kubectl."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes
import pytest
import requests

from emulators.kubernetes import KubeEmulator
from emulators.kubernetes.access import RequestAttributes, rule_allows
from tests.fixtures.kube import Kubectl

SA_USER = "system:serviceaccount:team-a:robot"


def _attributes(verb: str, resource: str, *, group: str = "", sub: str = "", name: str = "", ns: str = "x"):
    return RequestAttributes(
        verb, "/", group=group, resource=resource, subresource=sub, name=name, namespace=ns
    )


@pytest.mark.parametrize(
    ("rule", "request_attributes", "allowed"),
    [
        ({"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}, _attributes("get", "pods"), True),
        ({"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}, _attributes("list", "pods"), False),
        ({"apiGroups": [""], "resources": ["pods"], "verbs": ["*"]}, _attributes("delete", "pods"), True),
        ({"apiGroups": ["*"], "resources": ["ingresses"], "verbs": ["get"]},
         _attributes("get", "ingresses", group="networking.k8s.io"), True),
        ({"apiGroups": [""], "resources": ["ingresses"], "verbs": ["get"]},
         _attributes("get", "ingresses", group="networking.k8s.io"), False),
        ({"apiGroups": [""], "resources": ["*"], "verbs": ["get"]}, _attributes("get", "nodes/status"), True),
        ({"apiGroups": [""], "resources": ["nodes"], "verbs": ["patch"]}, _attributes("patch", "nodes/status"), False),
        ({"apiGroups": [""], "resources": ["nodes/status"], "verbs": ["patch"]},
         _attributes("patch", "nodes", sub="status"), True),
        ({"apiGroups": [""], "resources": ["*/status"], "verbs": ["patch"]},
         _attributes("patch", "pods", sub="status"), True),
        ({"apiGroups": [""], "resources": ["*/status"], "verbs": ["patch"]}, _attributes("patch", "pods"), False),
        ({"apiGroups": [""], "resources": ["pods/status"], "verbs": ["patch"]}, _attributes("patch", "pods"), False),
        ({"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"], "resourceNames": ["creds"]},
         _attributes("get", "secrets", name="creds"), True),
        ({"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"], "resourceNames": ["creds"]},
         _attributes("get", "secrets", name="other"), False),
        ({"apiGroups": [""], "resources": ["secrets"], "verbs": ["list"], "resourceNames": ["creds"]},
         _attributes("list", "secrets"), False),
        ({"nonResourceURLs": ["/metrics"], "verbs": ["get"]},
         RequestAttributes("get", "/metrics", resource_request=False), True),
        ({"nonResourceURLs": ["/debug/*"], "verbs": ["get"]},
         RequestAttributes("get", "/debug/pprof", resource_request=False), True),
        ({"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]},
         RequestAttributes("get", "/metrics", resource_request=False), False),
    ],
)  # fmt: skip
def test_rules_match_as_rbac_v1_defines_them(rule: dict[str, Any], request_attributes, allowed: bool) -> None:
    assert rule_allows(rule, request_attributes) is allowed


@pytest.fixture
def admin(
    kube_emulator: KubeEmulator, kube_emulator_kubeconfig: str
) -> Iterator[kubernetes.client.ApiClient]:
    with kubernetes.config.new_client_from_config(config_file=kube_emulator_kubeconfig) as client:
        core = kubernetes.client.CoreV1Api(client)
        for namespace in ("team-a", "team-b"):
            core.create_namespace({"metadata": {"name": namespace}})
        core.create_namespaced_service_account("team-a", {"metadata": {"name": "robot"}})
        for namespace in ("team-a", "team-b"):
            core.create_namespaced_secret(
                namespace, {"metadata": {"name": "creds"}, "stringData": {"k": "v"}}
            )
        yield client


@pytest.fixture
def robot_kubeconfig(admin: kubernetes.client.ApiClient, kube_emulator: KubeEmulator, tmp_path: Path) -> str:
    request = kubernetes.client.CoreV1Api(admin).create_namespaced_service_account_token(
        "robot", "team-a", {"spec": {"audiences": []}}
    )
    return kube_emulator.write_kubeconfig(tmp_path / "robot", token=request.status.token)


@pytest.fixture
def robot(robot_kubeconfig: str) -> Iterator[kubernetes.client.CoreV1Api]:
    with kubernetes.config.new_client_from_config(config_file=robot_kubeconfig) as client:
        yield kubernetes.client.CoreV1Api(client)


def _grant(admin: kubernetes.client.ApiClient, kind: str, namespace: str | None, rules: list[dict[str, Any]],
           *, role_kind: str | None = None, name: str = "robot") -> None:  # fmt: skip
    rbac = kubernetes.client.RbacAuthorizationV1Api(admin)
    role_kind = role_kind or ("Role" if kind == "RoleBinding" else "ClusterRole")
    role = {"metadata": {"name": name}, "rules": rules}
    if role_kind == "Role":
        rbac.create_namespaced_role(namespace, role)
    else:
        rbac.create_cluster_role(role)
    binding = {
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": "robot", "namespace": "team-a"}],
    }
    if kind == "RoleBinding":
        rbac.create_namespaced_role_binding(namespace, binding)
    else:
        rbac.create_cluster_role_binding(binding)


def _forbidden(call: Any, *args: Any) -> dict[str, Any]:
    with pytest.raises(kubernetes.client.ApiException) as raised:
        call(*args)
    assert raised.value.status == 403
    return json.loads(raised.value.body)


def test_a_service_account_without_bindings_is_forbidden_with_the_real_status(
    robot, kube_emulator: KubeEmulator
) -> None:
    status = _forbidden(robot.read_namespaced_secret, "creds", "team-a")
    assert list(kube_emulator.access.denials) == [status["message"]]
    assert status["reason"] == "Forbidden" and status["code"] == 403 and status["kind"] == "Status"
    assert status["message"] == (
        f'secrets "creds" is forbidden: User "{SA_USER}" cannot get resource "secrets" in API group "" '
        'in the namespace "team-a"'
    )
    assert status["details"] == {"name": "creds", "group": "", "kind": "secrets"}
    cluster = _forbidden(robot.list_node)
    assert cluster["message"] == (
        f'nodes is forbidden: User "{SA_USER}" cannot list resource "nodes" in API group "" at the cluster scope'
    )


def test_a_role_grants_only_its_verbs_names_and_namespace(admin, robot) -> None:
    _grant(admin, "RoleBinding", "team-a", [
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"], "resourceNames": ["creds"]},
    ])  # fmt: skip
    assert robot.read_namespaced_secret("creds", "team-a").data == {"k": "dg=="}
    _forbidden(robot.list_namespaced_secret, "team-a")
    _forbidden(robot.read_namespaced_secret, "creds", "team-b")
    _forbidden(robot.patch_namespaced_secret, "creds", "team-a", {"metadata": {"labels": {"x": "y"}}})


def test_a_cluster_role_bound_by_a_role_binding_applies_in_that_namespace_only(admin, robot) -> None:
    _grant(admin, "RoleBinding", "team-b", [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["list"]}],
           role_kind="ClusterRole")  # fmt: skip
    assert [s.metadata.name for s in robot.list_namespaced_secret("team-b").items] == ["creds"]
    _forbidden(robot.list_namespaced_secret, "team-a")
    _forbidden(robot.list_secret_for_all_namespaces)


def test_a_cluster_role_binding_grants_every_namespace_and_the_cluster_scope(admin, robot) -> None:
    _grant(admin, "ClusterRoleBinding", None, [
        {"apiGroups": [""], "resources": ["secrets", "nodes"], "verbs": ["list", "watch"]},
    ])  # fmt: skip
    assert len(robot.list_secret_for_all_namespaces().items) == 2
    robot.list_node()
    events = kubernetes.watch.Watch().stream(robot.list_secret_for_all_namespaces, timeout_seconds=1)
    assert {event["object"].metadata.namespace for event in events} == {"team-a", "team-b"}


def test_subresources_are_granted_separately(admin, robot) -> None:
    kubernetes.client.CoreV1Api(admin).create_node({"metadata": {"name": "n1"}})
    _grant(
        admin,
        "ClusterRoleBinding",
        None,
        [{"apiGroups": [""], "resources": ["nodes/status"], "verbs": ["patch"]}],
    )
    robot.patch_node_status("n1", {"status": {"capacity": {"cpu": "2"}}})
    status = _forbidden(robot.patch_node, "n1", {"metadata": {"labels": {"a": "b"}}})
    assert 'cannot patch resource "nodes" in API group "" at the cluster scope' in status["message"]


def test_group_subjects_match_the_service_accounts_groups(admin, robot) -> None:
    rbac = kubernetes.client.RbacAuthorizationV1Api(admin)
    rbac.create_cluster_role({"metadata": {"name": "readers"},
                              "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]})  # fmt: skip
    rbac.create_namespaced_role_binding("team-b", {
        "metadata": {"name": "readers"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "readers"},
        "subjects": [{"kind": "Group", "name": "system:serviceaccounts:team-a"}],
    })  # fmt: skip
    robot.read_namespaced_secret("creds", "team-b")


def test_discovery_and_version_are_open_to_every_service_account(robot) -> None:
    assert "secrets" in {resource.name for resource in robot.get_api_resources().resources}
    assert kubernetes.client.ApisApi(robot.api_client).get_api_versions().groups
    assert kubernetes.client.VersionApi(robot.api_client).get_code().git_version.startswith("v1.")


def test_unknown_tokens_and_tokens_of_deleted_accounts_are_unauthorized(
    admin, robot, kube_emulator: KubeEmulator
) -> None:
    bad = requests.get(
        f"{kube_emulator.url}/api/v1/namespaces", headers={"Authorization": "Bearer nope"}, timeout=5
    )
    assert bad.status_code == 401 and bad.json()["reason"] == "Unauthorized"
    kubernetes.client.CoreV1Api(admin).delete_namespaced_service_account("robot", "team-a")
    with pytest.raises(kubernetes.client.ApiException) as raised:
        robot.list_namespaced_secret("team-a")
    assert raised.value.status == 401


def test_the_admin_token_keeps_full_access(admin) -> None:
    core = kubernetes.client.CoreV1Api(admin)
    assert len(core.list_secret_for_all_namespaces().items) == 2
    core.delete_namespaced_secret("creds", "team-b")


def test_kubectl_create_token_issues_a_token_the_python_client_can_use(
    admin, kube_emulator: KubeEmulator, kube_emulator_kubeconfig: str, tmp_path: Path
) -> None:
    # kubectl sends no credentials over plain HTTP (client-go's rule), so against the emulator
    # it is the anonymous user, which the emulator treats as the admin by default.
    as_admin = Kubectl(kube_emulator_kubeconfig, str(tmp_path / "cache"))
    token = as_admin("create", "token", "robot", "-n", "team-a").stdout.strip()
    denied = requests.get(
        f"{kube_emulator.url}/api/v1/namespaces/team-a/secrets",
        headers={"Authorization": f"Bearer {token}"},
        timeout=5,
    )
    assert denied.status_code == 403
    assert denied.json()["message"].startswith(f'secrets is forbidden: User "{SA_USER}" cannot list resource')


def test_without_anonymous_admin_a_request_without_token_is_system_anonymous() -> None:
    with KubeEmulator(anonymous_admin=False) as emulator:
        anonymous = requests.get(f"{emulator.url}/api/v1/namespaces", timeout=5)
        assert anonymous.status_code == 403
        assert 'User "system:anonymous" cannot list resource "namespaces"' in anonymous.json()["message"]
        assert requests.get(f"{emulator.url}/version", timeout=5).status_code == 200
        admin = {"Authorization": f"Bearer {emulator.access.admin_token}"}
        assert requests.get(f"{emulator.url}/api/v1/namespaces", headers=admin, timeout=5).status_code == 200


def test_access_reviews_answer_with_the_same_rules(admin, robot) -> None:
    _grant(admin, "RoleBinding", "team-a", [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}])
    authorization = kubernetes.client.AuthorizationV1Api(robot.api_client)

    def may(verb: str, namespace: str) -> bool:
        review = {
            "spec": {"resourceAttributes": {"verb": verb, "resource": "secrets", "namespace": namespace}}
        }
        return authorization.create_self_subject_access_review(review).status.allowed

    assert may("get", "team-a") and not may("get", "team-b") and not may("delete", "team-a")
    asked_by_admin = kubernetes.client.AuthorizationV1Api(admin).create_subject_access_review(
        {
            "spec": {
                "user": SA_USER,
                "resourceAttributes": {"verb": "get", "resource": "secrets", "namespace": "team-a"},
            }
        }
    )
    assert asked_by_admin.status.allowed
    with pytest.raises(kubernetes.client.ApiException) as raised:
        authorization.create_subject_access_review(
            {"spec": {"user": "x", "nonResourceAttributes": {"verb": "get"}}}
        )
    assert raised.value.status == 403, "only the self-review is open to everyone"


def test_kubectl_applies_deploy_rbac_and_the_service_account_gets_exactly_its_rules(
    kube_emulator: KubeEmulator, kube_emulator_kubeconfig: str, tmp_path: Path
) -> None:
    kubectl = Kubectl(kube_emulator_kubeconfig, str(tmp_path / "cache"))
    kubectl("create", "namespace", "polycrate")
    applied = kubectl("apply", "-f", str(Path(__file__).parents[3] / "deploy" / "rbac.yaml")).stdout
    assert "clusterrole.rbac.authorization.k8s.io/polycrate-operator created" in applied
    assert kubectl("auth", "can-i", "patch", "nodes").stdout.strip() == "yes", "kubectl is the admin here"
    token = kubectl("create", "token", "polycrate-operator", "-n", "polycrate").stdout.strip()

    def may(verb: str, path: str) -> int:
        headers = {"Authorization": f"Bearer {token}"}
        return requests.request(
            verb, f"{kube_emulator.url}{path}", headers=headers, timeout=5, json={}
        ).status_code

    assert may("GET", "/api/v1/nodes") == 200
    assert may("GET", "/api/v1/namespaces/polycrate/secrets") == 200
    assert may("PUT", "/api/v1/namespaces/polycrate/secrets/x") == 403, "Secrets are read-only"
    assert may("DELETE", "/apis/coordination.k8s.io/v1/namespaces/polycrate/leases/x") == 403
    assert may("GET", "/apis/coordination.k8s.io/v1/namespaces/default/leases/x") == 403, "Lease only at home"
