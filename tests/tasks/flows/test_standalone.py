"""GitLabGroup, HarborProject and ArgoCDProject, reconciled against the emulators over HTTP.

The reconciler runs the real handlers; the stage is set and the result checked through each
system's official API (python-keycloak, python-gitlab, requests for Harbor and Argo CD).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import gitlab
import kubernetes
import pytest
import redis
import requests
from keycloak import KeycloakAdmin

from emulators.argocd import ArgocdEmulator
from emulators.gitlab import GitLabEmulator
from emulators.harbor import HarborEmulator
from polycrate.keys import ObjectKey
from polycrate.kubeclient.api import JsonObject
from polycrate.models import FINALIZER
from tasks.flows.state import STATE_ANNOTATION
from tests.tasks.flows.test_platform import _platform, _secret
from tests.tasks.support import CRDS, example, without_spec_validation
from tests.tasks.test_handlers import Cluster
from workers import keycloak as keycloak_worker

SPEC_ROLES = {
    "admin": {
        "policies": [
            "p, proj:{project}:admin, applications, *, {project}/*, allow",
            "p, proj:{project}:admin, repositories, *, {project}/*, allow",
        ]
    },
    "developer": {
        "policies": [
            "p, proj:{project}:developer, applications, get, {project}/*, allow",
            "p, proj:{project}:developer, applications, sync, {project}/*, allow",
        ]
    },
    "viewer": {"policies": ["p, proj:{project}:viewer, applications, get, {project}/*, allow"]},
}


@pytest.fixture
def cluster(
    kube_api_client: kubernetes.client.ApiClient,
    redis_client: redis.Redis,
    kube_namespace: str,
    kube_install_crd: Callable[..., dict[str, Any]],
) -> Cluster:
    for plural in ("softwaredeliveryplatforms", "organizations", "contactgroups", "k8sclusters"):
        kube_install_crd(CRDS / f"{plural}.polycrate.io.yaml")
    return Cluster(kube_api_client, redis_client, kube_namespace)


def production_platform(
    cluster: Cluster, systems: dict[str, Any], kube_api_client: kubernetes.client.ApiClient
) -> ObjectKey:
    """The spec's SDP "production" on the emulators, with the spec's Argo CD role templates."""
    key = _platform(cluster, systems, kube_api_client)
    cluster.custom.patch_namespaced_custom_object(
        "polycrate.io",
        "v1alpha1",
        key.namespace,
        "softwaredeliveryplatforms",
        key.name,
        # A generous rate limit: the default would pace the many small calls of these tests.
        {
            "spec": {
                "argocd": {"roles": SPEC_ROLES},
                "settings": {"rateLimit": {"requestsPerSecond": 1000, "burst": 1000}},
            }
        },
    )
    return key


@pytest.fixture
def production(
    cluster: Cluster, systems: dict[str, Any], kube_api_client: kubernetes.client.ApiClient
) -> ObjectKey:
    return production_platform(cluster, systems, kube_api_client)


@pytest.fixture(scope="module")
def second_gitlab_server() -> Iterator[GitLabEmulator]:
    with GitLabEmulator(latency_ms=0) as server:
        yield server


@pytest.fixture
def second_gitlab(second_gitlab_server: GitLabEmulator) -> Iterator[GitLabEmulator]:
    """A second GitLab, for an SDP of its own."""
    second_gitlab_server.reset()
    yield second_gitlab_server
    assert second_gitlab_server.take_violations() == []


# --- the stage ----------------------------------------------------------------------------------


def _keycloak_user(stage: KeycloakAdmin, username: str, *groups: str) -> str:
    user_id = stage.create_user({"username": username, "enabled": True, "email": f"{username}@example.com"})
    for path in groups:
        stage.group_user_add(user_id, stage.get_group_by_path(path)["id"])
    return user_id


def _keycloak_groups(stage: KeycloakAdmin) -> None:
    """platform-admins (a ContactGroup's group) and acme-corp with its role subgroups."""
    stage.create_group({"name": "platform-admins"})
    parent = stage.create_group({"name": "acme-corp"})
    for role in ("admins", "developers", "viewers"):
        stage.create_group({"name": f"acme-corp-{role}"}, parent=parent)


def _gitlab_user(emulator: GitLabEmulator, username: str) -> int:
    admin = gitlab.Gitlab(emulator.url, private_token=emulator.admin_token)
    user = admin.users.create(
        {
            "username": username,
            "name": username.title(),
            "email": f"{username}@example.com",
            "password": "x" * 12,
        }
    )
    return int(user.id)


def _gitlab_members(emulator: GitLabEmulator, path: str) -> dict[str, int]:
    admin = gitlab.Gitlab(emulator.url, private_token=emulator.admin_token)
    return {m.username: m.access_level for m in admin.groups.get(path).members.list(get_all=True)}


def _organization(cluster: Cluster) -> ObjectKey:
    return cluster.create("organizations", example("organization-acme-corp.yaml", cluster.namespace))


def _ready_condition(obj: JsonObject) -> JsonObject:
    return next(c for c in obj["status"]["conditions"] if c["type"] == "Ready")


def _writes(emulator: Any, before: dict[str, int]) -> list[str]:
    """Operations other than reads the emulator served since `before` was taken."""
    return [
        op for op, count in emulator.calls.items() if count > before.get(op, 0) and not op.startswith("GET ")
    ]


def _harbor(emulator: HarborEmulator, path: str, **params: Any) -> Any:
    response = requests.get(
        f"{emulator.url}/api/v2.0{path}",
        params=params,
        auth=(emulator.admin_username, emulator.admin_password),
        headers={"X-Is-Resource-Name": "true"},
        timeout=5,
    )
    response.raise_for_status()
    return response.json()


def _harbor_groups(emulator: HarborEmulator, project: str) -> dict[str, int]:
    return {
        m["entity_name"]: m["role_id"]
        for m in _harbor(emulator, f"/projects/{project}/members")
        if m["entity_type"] == "g"
    }


def _argocd_project(emulator: ArgocdEmulator, name: str) -> requests.Response:
    return requests.get(
        f"{emulator.url}/api/v1/projects/{name}",
        headers={"Authorization": f"Bearer {emulator.token}"},
        timeout=5,
    )


def _delete(cluster: Cluster, plural: str, key: ObjectKey) -> None:
    cluster.custom.delete_namespaced_custom_object(
        "polycrate.io", "v1alpha1", key.namespace, plural, key.name
    )


def _patch_spec(cluster: Cluster, plural: str, key: ObjectKey, spec: JsonObject) -> None:
    cluster.custom.patch_namespaced_custom_object(
        "polycrate.io", "v1alpha1", key.namespace, plural, key.name, {"spec": spec}
    )


# --- GitLabGroup --------------------------------------------------------------------------------


@pytest.fixture
def gitlab_stage(
    cluster: Cluster, keycloak_stage: KeycloakAdmin, systems: dict[str, Any], production: ObjectKey
) -> None:
    """alice and carol are platform admins, bob an acme-corp developer; carol never used GitLab."""
    _keycloak_groups(keycloak_stage)
    _keycloak_user(keycloak_stage, "alice", "platform-admins")
    _keycloak_user(keycloak_stage, "carol", "platform-admins")
    _keycloak_user(keycloak_stage, "bob", "acme-corp/acme-corp-developers")
    _gitlab_user(systems["gitlab"], "alice")
    _gitlab_user(systems["gitlab"], "bob")
    _organization(cluster)


@pytest.fixture
def gitlab_groups(cluster: Cluster, kube_install_crd: Callable[..., dict[str, Any]]) -> None:
    kube_install_crd(CRDS / "gitlabgroups.polycrate.io.yaml")


def test_gitlab_group_example_gets_the_people_of_its_keycloak_group_and_organization_as_members(
    cluster: Cluster, gitlab_groups: None, gitlab_stage: None, systems: dict[str, Any]
) -> None:
    key = cluster.create("gitlabgroups", example("gitlabgroup-shared-libs.yaml", cluster.namespace))

    assert cluster.reconcile(key).result == "succeeded"

    admin = gitlab.Gitlab(systems["gitlab"].url, private_token=systems["gitlab"].admin_token)
    group = admin.groups.get("shared-libs")
    assert group.visibility == "internal"
    members = _gitlab_members(systems["gitlab"], "shared-libs")
    assert (members["alice"], members["bob"]) == (50, 30)
    assert "carol" not in members
    obj = cluster.get(key)
    assert obj["status"]["phase"] == "Ready"
    assert obj["status"]["gitlabGroupIDs"] == {"production": group.id}
    warnings = [e for e in cluster.events(key) if e["type"] == "Warning"]
    assert [(e["reason"], "carol" in e["message"]) for e in warnings] == [("UserNotInGitLab", True)]


def test_gitlab_group_second_reconcile_writes_nothing_anywhere(
    cluster: Cluster, gitlab_groups: None, gitlab_stage: None, systems: dict[str, Any]
) -> None:
    key = cluster.create("gitlabgroups", example("gitlabgroup-shared-libs.yaml", cluster.namespace))
    cluster.reconcile(key)
    before = cluster.get(key)
    calls = dict(systems["gitlab"].calls)

    assert cluster.reconcile(key).result == "succeeded"

    assert cluster.get(key)["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    assert _writes(systems["gitlab"], calls) == []


def test_gitlab_group_adds_updates_and_removes_only_the_members_it_added(
    cluster: Cluster,
    gitlab_groups: None,
    gitlab_stage: None,
    systems: dict[str, Any],
    keycloak_stage: KeycloakAdmin,
) -> None:
    key = cluster.create("gitlabgroups", example("gitlabgroup-shared-libs.yaml", cluster.namespace))
    cluster.reconcile(key)
    # A human makes dave a reporter; later dave joins platform-admins, and alice leaves it.
    dave = _gitlab_user(systems["gitlab"], "dave")
    admin = gitlab.Gitlab(systems["gitlab"].url, private_token=systems["gitlab"].admin_token)
    admin.groups.get("shared-libs").members.create({"user_id": dave, "access_level": 20})
    _keycloak_user(keycloak_stage, "dave", "platform-admins")
    alice = keycloak_stage.get_users({"username": "alice", "exact": True})[0]["id"]
    keycloak_stage.group_user_remove(alice, keycloak_stage.get_group_by_path("platform-admins")["id"])

    assert cluster.reconcile(key).result == "succeeded"

    members = _gitlab_members(systems["gitlab"], "shared-libs")
    assert "alice" not in members, "the operator added alice, and she left platform-admins"
    assert members["dave"] == 20, "a human added dave: the operator leaves his membership alone"
    assert members["bob"] == 30
    state = json.loads(cluster.get(key)["metadata"]["annotations"][STATE_ANNOTATION])
    assert set(state["gitlabMembers"]["production"]) == {"bob"}

    keycloak_stage.group_user_remove(
        keycloak_stage.get_users({"username": "dave", "exact": True})[0]["id"],
        keycloak_stage.get_group_by_path("platform-admins")["id"],
    )
    assert cluster.reconcile(key).result == "succeeded"
    assert _gitlab_members(systems["gitlab"], "shared-libs")["dave"] == 20


def test_gitlab_group_deletion_deletes_the_group_then_releases_the_object(
    cluster: Cluster, gitlab_groups: None, gitlab_stage: None, systems: dict[str, Any]
) -> None:
    key = cluster.create("gitlabgroups", example("gitlabgroup-shared-libs.yaml", cluster.namespace))
    cluster.reconcile(key)
    _delete(cluster, "gitlabgroups", key)

    assert cluster.reconcile(key).result == "succeeded"

    assert cluster.get(key) is None
    admin = gitlab.Gitlab(systems["gitlab"].url, private_token=systems["gitlab"].admin_token)
    assert [g.full_path for g in admin.groups.list(get_all=True)] == []


def test_gitlab_group_in_two_sdps_is_created_in_both_gitlabs_from_both_realms(
    cluster: Cluster,
    gitlab_groups: None,
    gitlab_stage: None,
    systems: dict[str, Any],
    second_gitlab: GitLabEmulator,
    kube_api_client: kubernetes.client.ApiClient,
) -> None:
    keycloak = systems["keycloak"]
    keycloak.add_realm("staging")
    staging_admin = keycloak_worker.get_client(
        "test/staging",
        keycloak.url,
        "staging",
        keycloak_worker.KeycloakCredentials(keycloak.client_id, keycloak.client_secret),
    )
    staging_admin.ensure_group("platform-admins")
    erin = staging_admin.admin.create_user({"username": "erin", "enabled": True})
    staging_admin.add_user_to_group(erin, staging_admin.find_group_by_path("platform-admins").id)
    _gitlab_user(second_gitlab, "erin")
    core = kubernetes.client.CoreV1Api(kube_api_client)
    _secret(core, cluster.namespace, "staging-gitlab-creds", {"token": second_gitlab.admin_token})
    cluster.create(
        "softwaredeliveryplatforms",
        {
            "apiVersion": "polycrate.io/v1alpha1",
            "kind": "SoftwareDeliveryPlatform",
            "metadata": {"name": "staging"},
            "spec": {
                "keycloak": {
                    "url": keycloak.url,
                    "realm": "staging",
                    "credentialsRef": {"secretName": "keycloak-creds"},
                },
                "gitlab": {
                    "url": second_gitlab.url,
                    "credentialsRef": {"secretName": "staging-gitlab-creds"},
                },
            },
        },
    )
    group = example("gitlabgroup-shared-libs.yaml", cluster.namespace)
    group["spec"]["sdp"] = ["production", "staging"]
    group["spec"]["organizationAccess"] = []
    key = cluster.create("gitlabgroups", group)

    assert cluster.reconcile(key).result == "succeeded"

    assert _gitlab_members(systems["gitlab"], "shared-libs").keys() - {"root"} == {"alice"}
    assert _gitlab_members(second_gitlab, "shared-libs").keys() - {"root"} == {"erin"}
    ids = cluster.get(key)["status"]["gitlabGroupIDs"]
    assert set(ids) == {"production", "staging"}

    _patch_spec(cluster, "gitlabgroups", key, {"sdp": ["production"]})
    assert cluster.reconcile(key).result == "succeeded"

    assert cluster.get(key)["status"]["gitlabGroupIDs"].keys() == {"production"}
    second = gitlab.Gitlab(second_gitlab.url, private_token=second_gitlab.admin_token)
    assert second.groups.list(get_all=True) == [], "dropping an SDP cleans up there"


def test_keycloak_group_a_contact_group_is_still_creating_is_waited_for_with_retries(
    cluster: Cluster, gitlab_groups: None, production: ObjectKey, systems: dict[str, Any]
) -> None:
    cluster.create("contactgroups", example("contactgroup-platform-admins.yaml", cluster.namespace))
    group = example("gitlabgroup-shared-libs.yaml", cluster.namespace)
    group["spec"]["organizationAccess"] = []
    key = cluster.create("gitlabgroups", group)

    outcome = cluster.reconcile(key)

    assert outcome.result == "retrying"
    message = _ready_condition(cluster.get(key))["message"]
    assert 'Keycloak group "platform-admins"' in message and 'ContactGroup "platform-admins"' in message


def test_keycloak_group_nobody_creates_is_an_error_naming_the_field(
    cluster: Cluster, gitlab_groups: None, production: ObjectKey, systems: dict[str, Any]
) -> None:
    group = example("gitlabgroup-shared-libs.yaml", cluster.namespace)
    group["spec"]["organizationAccess"] = []
    key = cluster.create("gitlabgroups", group)

    assert cluster.reconcile(key).result == "failed"

    ready = _ready_condition(cluster.get(key))
    assert ready["reason"] == "DependencyNotFound"
    assert "spec.accessControl[0].keycloakGroup" in ready["message"] and "platform-admins" in ready["message"]


def test_organization_access_to_a_missing_organization_names_it(
    cluster: Cluster, gitlab_groups: None, production: ObjectKey, systems: dict[str, Any]
) -> None:
    group = example("gitlabgroup-shared-libs.yaml", cluster.namespace)
    group["spec"]["accessControl"] = []
    key = cluster.create("gitlabgroups", group)

    assert cluster.reconcile(key).result == "failed"

    message = _ready_condition(cluster.get(key))["message"]
    assert 'Organization "acme-corp" not found' in message and "spec.organizationAccess[0]" in message


# --- HarborProject ------------------------------------------------------------------------------


@pytest.fixture
def harbor_projects(
    cluster: Cluster, production: ObjectKey, kube_install_crd: Callable[..., dict[str, Any]]
) -> None:
    kube_install_crd(CRDS / "harborprojects.polycrate.io.yaml")
    _organization(cluster)


def test_harbor_project_example_gets_quota_and_oidc_groups_with_their_roles(
    cluster: Cluster, harbor_projects: None, systems: dict[str, Any]
) -> None:
    key = cluster.create("harborprojects", example("harborproject-shared-images.yaml", cluster.namespace))

    assert cluster.reconcile(key).result == "succeeded"

    project = _harbor(systems["harbor"], "/projects/shared-images")
    assert project["metadata"]["public"] == "false"
    [quota] = _harbor(
        systems["harbor"], "/quotas", reference="project", reference_id=str(project["project_id"])
    )
    assert quota["hard"]["storage"] == 100 * 2**30
    assert _harbor_groups(systems["harbor"], "shared-images") == {"platform-admins": 1, "acme-corp": 2}
    assert cluster.get(key)["status"]["harborProjectIDs"] == {"production": project["project_id"]}


def test_harbor_project_second_reconcile_writes_nothing_anywhere(
    cluster: Cluster, harbor_projects: None, systems: dict[str, Any]
) -> None:
    key = cluster.create("harborprojects", example("harborproject-shared-images.yaml", cluster.namespace))
    cluster.reconcile(key)
    cluster.reconcile(key)
    before = cluster.get(key)
    calls = dict(systems["harbor"].calls)

    assert cluster.reconcile(key).result == "succeeded"

    assert cluster.get(key)["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    assert _writes(systems["harbor"], calls) == []


def test_harbor_project_changes_only_the_groups_it_added(
    cluster: Cluster, harbor_projects: None, systems: dict[str, Any]
) -> None:
    key = cluster.create("harborprojects", example("harborproject-shared-images.yaml", cluster.namespace))
    cluster.reconcile(key)
    hb = systems["harbor"]
    requests.post(  # a human grants the auditors group guest access
        f"{hb.url}/api/v2.0/projects/shared-images/members",
        json={"role_id": 3, "member_group": {"group_name": "auditors", "group_type": 3}},
        auth=(hb.admin_username, hb.admin_password),
        headers={"X-Is-Resource-Name": "true"},
        timeout=5,
    ).raise_for_status()

    _patch_spec(
        cluster,
        "harborprojects",
        key,
        {
            "accessControl": [
                {"keycloakGroup": "platform-admins", "role": "maintainer"},
                {"keycloakGroup": "auditors", "role": "developer"},
            ],
            "organizationAccess": [],
        },
    )
    assert cluster.reconcile(key).result == "succeeded"

    assert _harbor_groups(hb, "shared-images") == {"platform-admins": 4, "auditors": 3}

    _patch_spec(cluster, "harborprojects", key, {"accessControl": []})
    assert cluster.reconcile(key).result == "succeeded"

    assert _harbor_groups(hb, "shared-images") == {"auditors": 3}


def test_harbor_project_with_a_bad_quota_ends_in_error_naming_the_field(
    cluster: Cluster,
    production: ObjectKey,
    kube_install_crd: Callable[..., dict[str, Any]],
    systems: dict[str, Any],
) -> None:
    kube_install_crd(without_spec_validation(CRDS / "harborprojects.polycrate.io.yaml"))
    project = example("harborproject-shared-images.yaml", cluster.namespace)
    project["spec"]["storageQuota"] = "50Gx"
    key = cluster.create("harborprojects", project)

    assert cluster.reconcile(key).result == "failed"

    ready = _ready_condition(cluster.get(key))
    assert ready["reason"] == "InvalidSpec"
    assert 'storageQuota "50Gx" is not a quantity (use e.g. 50Gi)' in ready["message"]
    assert _harbor(systems["harbor"], "/projects", name="shared-images") == []


def test_harbor_project_deletion_deletes_the_project(
    cluster: Cluster, harbor_projects: None, systems: dict[str, Any]
) -> None:
    key = cluster.create("harborprojects", example("harborproject-shared-images.yaml", cluster.namespace))
    cluster.reconcile(key)
    _delete(cluster, "harborprojects", key)

    assert cluster.reconcile(key).result == "succeeded"

    assert cluster.get(key) is None
    assert _harbor(systems["harbor"], "/projects", name="shared-images") == []


# --- ArgoCDProject ------------------------------------------------------------------------------


@pytest.fixture
def argocd_projects(
    cluster: Cluster, production: ObjectKey, kube_install_crd: Callable[..., dict[str, Any]]
) -> None:
    kube_install_crd(CRDS / "argocdprojects.polycrate.io.yaml")


def _infrastructure_without_cluster_ref(namespace: str) -> JsonObject:
    project = example("argocdproject-infrastructure.yaml", namespace)
    project["spec"]["destinations"] = [d for d in project["spec"]["destinations"] if "server" in d]
    return project


def test_argocd_project_gets_the_sdps_roles_bound_to_its_keycloak_groups(
    cluster: Cluster, argocd_projects: None, systems: dict[str, Any]
) -> None:
    key = cluster.create("argocdprojects", _infrastructure_without_cluster_ref(cluster.namespace))

    assert cluster.reconcile(key).result == "succeeded"

    spec = _argocd_project(systems["argocd"], "infrastructure").json()["spec"]
    assert spec["description"] == "Shared infrastructure applications"
    assert spec["sourceRepos"] == ["https://gitlab.example.com/infrastructure/*"]
    assert spec["destinations"] == [{"server": "https://kubernetes.default.svc", "namespace": "*"}]
    roles = {r["name"]: r for r in spec["roles"]}
    assert set(roles) == {"admin", "developer", "viewer"}
    assert roles["admin"]["groups"] == ["platform-admins"]
    assert (
        "p, proj:infrastructure:admin, applications, *, infrastructure/*, allow" in roles["admin"]["policies"]
    )
    obj = cluster.get(key)
    assert obj["status"]["argoCDProjectsCreated"] == {"production": True}
    assert FINALIZER in obj["metadata"]["finalizers"]


def test_argocd_project_second_reconcile_writes_nothing_anywhere(
    cluster: Cluster, argocd_projects: None, systems: dict[str, Any]
) -> None:
    key = cluster.create("argocdprojects", _infrastructure_without_cluster_ref(cluster.namespace))
    cluster.reconcile(key)
    before = cluster.get(key)
    calls = dict(systems["argocd"].calls)

    assert cluster.reconcile(key).result == "succeeded"

    assert cluster.get(key)["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    assert _writes(systems["argocd"], calls) == []


def test_argocd_project_with_a_role_the_sdp_does_not_define_lists_the_defined_ones(
    cluster: Cluster, argocd_projects: None, systems: dict[str, Any]
) -> None:
    project = _infrastructure_without_cluster_ref(cluster.namespace)
    project["spec"]["accessControl"] = [{"keycloakGroup": "platform-admins", "role": "operator"}]
    key = cluster.create("argocdprojects", project)

    assert cluster.reconcile(key).result == "failed"

    ready = _ready_condition(cluster.get(key))
    assert ready["reason"] == "InvalidSpec"
    assert "'operator'" in ready["message"] and "admin, developer, viewer" in ready["message"]


def test_argocd_project_deletion_deletes_the_project(
    cluster: Cluster, argocd_projects: None, systems: dict[str, Any]
) -> None:
    key = cluster.create("argocdprojects", _infrastructure_without_cluster_ref(cluster.namespace))
    cluster.reconcile(key)
    _delete(cluster, "argocdprojects", key)

    assert cluster.reconcile(key).result == "succeeded"

    assert cluster.get(key) is None
    assert _argocd_project(systems["argocd"], "infrastructure").status_code == 404


# --- names: renames in place, names that cannot change ------------------------------------------


def test_gitlab_group_path_change_moves_the_group_in_place_with_its_members(
    cluster: Cluster, gitlab_groups: None, gitlab_stage: None, systems: dict[str, Any]
) -> None:
    key = cluster.create("gitlabgroups", example("gitlabgroup-shared-libs.yaml", cluster.namespace))
    cluster.reconcile(key)
    group_id = cluster.get(key)["status"]["gitlabGroupIDs"]["production"]

    _patch_spec(cluster, "gitlabgroups", key, {"groupPath": "shared-libraries"})
    assert cluster.reconcile(key).result == "succeeded"

    admin = gitlab.Gitlab(systems["gitlab"].url, private_token=systems["gitlab"].admin_token)
    assert [(g.id, g.full_path) for g in admin.groups.list(get_all=True)] == [(group_id, "shared-libraries")]
    members = _gitlab_members(systems["gitlab"], "shared-libraries")
    assert (members["alice"], members["bob"]) == (50, 30)
    assert cluster.get(key)["status"]["gitlabGroupIDs"] == {"production": group_id}


def test_harbor_project_name_change_is_refused_by_the_api_server_and_past_it_by_an_error(
    cluster: Cluster, harbor_projects: None, systems: dict[str, Any]
) -> None:
    project = example("harborproject-shared-images.yaml", cluster.namespace)
    key = cluster.create("harborprojects", project)
    with pytest.raises(kubernetes.client.ApiException) as refused:
        _patch_spec(cluster, "harborprojects", key, {"projectName": "images"})
    assert refused.value.status == 422
    assert "spec.projectName: Invalid value" in json.loads(refused.value.body)["message"]
    # Past validation: from defaulted (metadata.name) to set is no transition the rule sees.
    _patch_spec(cluster, "harborprojects", key, {"projectName": None})
    cluster.reconcile(key)
    calls = dict(systems["harbor"].calls)
    _patch_spec(cluster, "harborprojects", key, {"projectName": "images"})

    assert cluster.reconcile(key).result == "failed"

    obj = cluster.get(key)
    message = _ready_condition(obj)["message"]
    assert obj["status"]["phase"] == "Error"
    assert 'spec.projectName "images": the Harbor project "shared-images" cannot be renamed' in message
    assert [e["reason"] for e in cluster.events(key) if e["type"] == "Warning"] == ["ImmutableField"]
    assert _writes(systems["harbor"], calls) == []


def test_argocd_project_records_its_name_and_refuses_a_name_change_past_the_api_server(
    cluster: Cluster, argocd_projects: None, systems: dict[str, Any]
) -> None:
    project = _infrastructure_without_cluster_ref(cluster.namespace)
    del project["spec"]["projectName"]
    key = cluster.create("argocdprojects", project)
    cluster.reconcile(key)
    assert cluster.get(key)["status"]["argoCDProjectNames"] == {"production": "infrastructure"}
    calls = dict(systems["argocd"].calls)

    _patch_spec(cluster, "argocdprojects", key, {"projectName": "infra"})
    assert cluster.reconcile(key).result == "failed"

    assert (
        'the Argo CD project "infrastructure" cannot be renamed'
        in _ready_condition(cluster.get(key))["message"]
    )
    assert _writes(systems["argocd"], calls) == []
    assert _argocd_project(systems["argocd"], "infra").status_code == 404
