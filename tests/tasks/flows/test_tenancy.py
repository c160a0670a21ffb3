"""The tenancy flows against all four emulated systems: Organization, ContactGroup and Contact.

The reconciler is driven directly (publishes are recorded), the SDP points at the emulators
through real Secrets, and every result is checked through each system's official API with its
usual client (python-keycloak, python-gitlab, requests), as an administrator would look.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

import gitlab as python_gitlab
import kubernetes
import kubernetes.watch
import pytest
import redis
import requests
from keycloak import KeycloakAdmin

from emulators.argocd import ArgocdEmulator
from emulators.gitlab import GitLabEmulator
from emulators.harbor import HarborEmulator
from emulators.keycloak import KeycloakEmulator
from polycrate.keys import ObjectKey
from polycrate.kubeclient.api import JsonObject
from polycrate.models import FINALIZER
from tasks.flows import tenancy
from tasks.reconcile import Outcome
from tests.tasks.flows.test_platform import _platform
from tests.tasks.support import CRDS, example
from tests.tasks.test_handlers import Cluster

GROUP, VERSION = "polycrate.io", "v1alpha1"
GIB = 2**30


@pytest.fixture
def cluster(
    kube_api_client: kubernetes.client.ApiClient,
    redis_client: redis.Redis,
    kube_namespace: str,
    kube_install_crd: Callable[..., dict[str, Any]],
    systems: dict[str, Any],
) -> Cluster:
    return tenancy_cluster(kube_api_client, redis_client, kube_namespace, kube_install_crd, systems)


def tenancy_cluster(
    kube_api_client: kubernetes.client.ApiClient,
    redis_client: redis.Redis,
    kube_namespace: str,
    kube_install_crd: Callable[..., dict[str, Any]],
    systems: dict[str, Any],
) -> Cluster:
    """The reconciler with the tenancy flows (their enqueues recorded) and the spec's SDP."""
    cluster = Cluster(kube_api_client, redis_client, kube_namespace)
    for handler in tenancy.handlers():
        cluster.reconciler.registry.register(handler, replace=True)
    for plural in ("softwaredeliveryplatforms", "organizations", "contactgroups", "contacts"):
        kube_install_crd(CRDS / f"{plural}.polycrate.io.yaml")
    sdp = _platform(cluster, systems, kube_api_client)
    spec_example = example("softwaredeliveryplatform-production.yaml", kube_namespace)["spec"]
    _patch(
        cluster,
        "softwaredeliveryplatforms",
        sdp.name,
        {
            "spec": {
                "argocd": {"roles": spec_example["argocd"]["roles"]},
                "settings": spec_example["settings"],
            }
        },
    )
    return cluster


@pytest.fixture
def gitlab_admin(gitlab_emulator: GitLabEmulator) -> python_gitlab.Gitlab:
    return python_gitlab.Gitlab(gitlab_emulator.url, private_token=gitlab_emulator.admin_token)


def _patch(cluster: Cluster, plural: str, name: str, body: JsonObject) -> None:
    cluster.custom.patch_namespaced_custom_object(GROUP, VERSION, cluster.namespace, plural, name, body)


def _delete(cluster: Cluster, plural: str, name: str) -> None:
    cluster.custom.delete_namespaced_custom_object(GROUP, VERSION, cluster.namespace, plural, name)


def _run_enqueued(cluster: Cluster, key: ObjectKey) -> Outcome:
    """Run the task that was published last for `key` (a retry once it is due), as a worker would."""
    cluster.fire_due()
    task_id = next(task for sent, task, _ in reversed(cluster.sender.sent) if sent == key)
    return cluster.reconciler.run(str(key), task_id)


def _organization(cluster: Cluster) -> ObjectKey:
    return cluster.create("organizations", example("organization-acme-corp.yaml", cluster.namespace))


def _contact_group(
    cluster: Cluster, name: str = "shared-developers", sdps: tuple[str, ...] = ("production",)
):
    group = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ContactGroup",
        "metadata": {"name": name},
        "spec": {"sdp": list(sdps), "keycloak": {"groupName": name}},
    }
    return cluster.create("contactgroups", group)


def _contact(cluster: Cluster) -> ObjectKey:
    return cluster.create("contacts", example("contact-john-doe.yaml", cluster.namespace))


def _john_doe(keycloak_stage: KeycloakAdmin, gitlab_admin: python_gitlab.Gitlab) -> tuple[str, int]:
    keycloak_id = keycloak_stage.create_user(
        {"username": "john.doe", "email": "john.doe@example.com", "enabled": True}
    )
    gitlab_user = gitlab_admin.users.create(
        {
            "username": "john.doe",
            "name": "John Doe",
            "email": "john.doe@example.com",
            "password": "S3cure-pass!",
        }
    )
    return keycloak_id, gitlab_user.id


def _ready(cluster: Cluster, key: ObjectKey) -> JsonObject:
    obj = cluster.get(key)
    assert obj is not None
    ready = next(c for c in obj["status"]["conditions"] if c["type"] == "Ready")
    assert (obj["status"]["phase"], ready["status"]) == ("Ready", "True"), ready["message"]
    return obj


def _message(cluster: Cluster, key: ObjectKey) -> str:
    obj = cluster.get(key)
    assert obj is not None
    return next(c for c in obj["status"]["conditions"] if c["type"] == "Ready")["message"]


# --- what the systems show, through their official APIs ---------------------------------------


def _keycloak_tree(admin: KeycloakAdmin) -> dict[str, list[str]]:
    """Top-level group name → names of its subgroups."""
    return {
        group["name"]: sorted(child["name"] for child in admin.get_group_children(group["id"]))
        for group in admin.get_groups()
    }


def _keycloak_memberships(admin: KeycloakAdmin, user_id: str) -> list[str]:
    return sorted(group["path"] for group in admin.get_user_groups(user_id))


def _gitlab_groups(admin: python_gitlab.Gitlab) -> dict[str, str]:
    return {group.full_path: group.visibility for group in admin.groups.list(get_all=True)}


def _harbor_get(emulator: HarborEmulator, path: str, **params: Any) -> requests.Response:
    return requests.get(
        f"{emulator.url}/api/v2.0{path}",
        params=params,
        auth=(emulator.admin_username, emulator.admin_password),
        headers={"X-Is-Resource-Name": "true"},
        timeout=5,
    )


def _argocd_project(emulator: ArgocdEmulator, name: str) -> requests.Response:
    return requests.get(
        f"{emulator.url}/api/v1/projects/{name}",
        headers={"Authorization": f"Bearer {emulator.token}"},
        timeout=5,
    )


def _writes(calls: Counter[str]) -> list[str]:
    return sorted(call for call, count in calls.items() if count and not call.startswith("GET "))


# --- Organization -----------------------------------------------------------------------------


def test_spec_example_organization_creates_exactly_the_spec_resources_in_all_four_systems(
    cluster: Cluster,
    systems: dict[str, Any],
    keycloak_stage: KeycloakAdmin,
    gitlab_admin: python_gitlab.Gitlab,
) -> None:
    key = _organization(cluster)

    assert cluster.reconcile(key).result == "succeeded"

    assert _keycloak_tree(keycloak_stage) == {
        "acme-corp": ["acme-corp-admins", "acme-corp-developers", "acme-corp-viewers"]
    }
    uid = cluster.get(key)["metadata"]["uid"]
    assert keycloak_stage.get_group_by_path("acme-corp")["attributes"] == {
        "description": ["Main organization group"],
        "polycrate.io/owner-uid": [uid],  # the ownership mark, written with the create
        "polycrate.io/owner": [f"Organization {key.namespace}/acme-corp"],
    }
    assert _gitlab_groups(gitlab_admin) == {"acme-corp": "private"}
    assert gitlab_admin.groups.get("acme-corp").description.endswith(
        f"[polycrate.io/owner: {uid} (Organization {key.namespace}/acme-corp)]"
    )
    project = _harbor_get(systems["harbor"], "/projects/acme-corp").json()
    [quota] = _harbor_get(
        systems["harbor"], "/quotas", reference="project", reference_id=str(project["project_id"])
    ).json()
    assert quota["hard"]["storage"] == 50 * GIB
    argo = _argocd_project(systems["argocd"], "acme-corp").json()["spec"]
    assert argo["sourceRepos"] == ["https://gitlab.example.com/acme-corp/*"]
    assert {role["name"]: role.get("groups", []) for role in argo["roles"]} == {
        "admin": ["acme-corp-admins"],
        "developer": ["acme-corp-developers"],
        "viewer": [],
    }
    admin_role = next(role for role in argo["roles"] if role["name"] == "admin")
    assert admin_role["policies"][0] == "p, proj:acme-corp:admin, applications, *, acme-corp/*, allow"
    status = _ready(cluster, key)["status"]
    assert status["keycloakGroupID"] == keycloak_stage.get_group_by_path("acme-corp")["id"]
    assert set(status["keycloakSubgroupIDs"]) == {"admins", "developers", "viewers"}
    assert status["gitlabGroupID"] == gitlab_admin.groups.get("acme-corp").id
    assert status["harborProjectID"] == project["project_id"]
    assert status["argoCDProjectCreated"] is True
    assert status["argoCDProjectName"] == "acme-corp"


def test_ready_organization_says_provisioned_in_the_spec_words_and_was_provisioning_meanwhile(
    cluster: Cluster,
) -> None:
    key = _organization(cluster)
    phases: list[str] = []
    watching = threading.Event()

    def watch_phases() -> None:
        stream = kubernetes.watch.Watch().stream(
            cluster.custom.list_namespaced_custom_object, GROUP, VERSION, cluster.namespace,
            "organizations", timeout_seconds=20,
        )  # fmt: skip
        watching.set()
        for event in stream:
            phase = (event["object"].get("status") or {}).get("phase")
            if phase and (not phases or phases[-1] != phase):
                phases.append(phase)
            if phase == "Ready":
                return

    watcher = threading.Thread(target=watch_phases, daemon=True)
    watcher.start()
    watching.wait(5)

    assert cluster.reconcile(key).result == "succeeded"
    watcher.join(20)

    assert phases == ["Provisioning", "Ready"]
    ready = next(c for c in _ready(cluster, key)["status"]["conditions"] if c["type"] == "Ready")
    assert (ready["reason"], ready["message"]) == ("Provisioned", "All organization resources provisioned")


def test_second_reconcile_of_a_ready_organization_only_reads(
    cluster: Cluster, systems: dict[str, Any]
) -> None:
    key = _organization(cluster)
    cluster.reconcile(key)
    before = {name: Counter(system.calls) for name, system in systems.items()}
    resource_version = cluster.get(key)["metadata"]["resourceVersion"]

    assert cluster.reconcile(key).result == "succeeded"

    for name, system in systems.items():
        assert _writes(Counter(system.calls) - before[name]) == [], f"{name} was written to"
    assert cluster.get(key)["metadata"]["resourceVersion"] == resource_version


def test_disabling_the_harbor_section_deletes_the_project_and_forgets_its_id(
    cluster: Cluster, systems: dict[str, Any], gitlab_admin: python_gitlab.Gitlab
) -> None:
    key = _organization(cluster)
    cluster.reconcile(key)

    _patch(cluster, "organizations", key.name, {"spec": {"harbor": {"enabled": False}}})
    assert cluster.reconcile(key).result == "succeeded"

    assert _harbor_get(systems["harbor"], "/projects/acme-corp").status_code == 404
    status = _ready(cluster, key)["status"]
    assert "harborProjectID" not in status
    assert status["gitlabGroupID"] and status["argoCDProjectCreated"] is True
    assert "acme-corp" in _gitlab_groups(gitlab_admin)


def test_system_the_sdp_no_longer_configures_keeps_its_project_forgotten_with_a_warning(
    cluster: Cluster, systems: dict[str, Any]
) -> None:
    key = _organization(cluster)
    cluster.reconcile(key)
    project_id = _ready(cluster, key)["status"]["harborProjectID"]

    _patch(cluster, "softwaredeliveryplatforms", "production", {"spec": {"harbor": None}})
    assert cluster.reconcile(key).result == "succeeded"

    assert _harbor_get(systems["harbor"], "/projects/acme-corp").status_code == 200, "left in place"
    status = _ready(cluster, key)["status"]
    assert "harborProjectID" not in status and status["argoCDProjectCreated"] is True
    [warning] = [e for e in cluster.events(key) if e["reason"] == "SystemNotConfigured"]
    assert warning["type"] == "Warning"
    assert warning["message"] == (
        f'SoftwareDeliveryPlatform "production" no longer configures Harbor: project {project_id} '
        "is left in place and no longer managed"
    )


def test_deletion_removes_argocd_then_harbor_then_gitlab_then_keycloak(
    cluster: Cluster,
    systems: dict[str, Any],
    keycloak_stage: KeycloakAdmin,
    gitlab_admin: python_gitlab.Gitlab,
) -> None:
    key = _organization(cluster)
    cluster.reconcile(key)
    _delete(cluster, "organizations", key.name)
    systems["harbor"].set_faults(outage_seconds=60)

    assert cluster.reconcile(key).result == "retrying"

    # Harbor is where it stopped: Argo CD (before it) is gone, GitLab and Keycloak (after it) remain.
    assert _argocd_project(systems["argocd"], "acme-corp").status_code == 404
    assert "acme-corp" in _gitlab_groups(gitlab_admin)
    assert "acme-corp" in _keycloak_tree(keycloak_stage)
    assert FINALIZER in cluster.get(key)["metadata"]["finalizers"], "held until cleanup succeeds"
    assert cluster.get(key)["status"]["phase"] == "Deleting", "a retried cleanup is no Error"

    systems["harbor"].set_faults(outage_seconds=0)
    assert _run_enqueued(cluster, key).result == "succeeded"

    assert _harbor_get(systems["harbor"], "/projects/acme-corp").status_code == 404
    assert _gitlab_groups(gitlab_admin) == {}
    assert _keycloak_tree(keycloak_stage) == {}
    assert cluster.get(key) is None


def test_argocd_outage_keeps_keycloak_gitlab_and_harbor_done_and_is_retried(
    cluster: Cluster, systems: dict[str, Any]
) -> None:
    key = _organization(cluster)
    systems["argocd"].set_faults(outage_seconds=60)

    outcome = cluster.reconcile(key)

    assert outcome.result == "retrying" and (outcome.countdown or 0) >= 4
    status = cluster.get(key)["status"]
    assert status["phase"] == "Provisioning", "an outage is retried, not something the user must fix"
    assert status["keycloakGroupID"] and status["gitlabGroupID"] and status["harborProjectID"]
    assert "argoCDProjectCreated" not in status
    assert "Argo CD" in _message(cluster, key)

    systems["argocd"].set_faults(outage_seconds=0)
    assert _run_enqueued(cluster, key).result == "succeeded"
    assert _ready(cluster, key)["status"]["argoCDProjectCreated"] is True


# --- ContactGroup -----------------------------------------------------------------------------


def test_contact_group_gets_a_keycloak_group_in_every_listed_sdp_and_loses_them_on_deletion(
    cluster: Cluster, systems: dict[str, Any], keycloak_stage: KeycloakAdmin
) -> None:
    kc: KeycloakEmulator = systems["keycloak"]
    kc.add_realm("staging")
    production = cluster.get(ObjectKey("SoftwareDeliveryPlatform", cluster.namespace, "production"))
    staging_spec = {"keycloak": {**production["spec"]["keycloak"], "realm": "staging"}}
    cluster.create(
        "softwaredeliveryplatforms",
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "SoftwareDeliveryPlatform",
            "metadata": {"name": "staging"},
        }
        | {"spec": staging_spec},
    )
    key = _contact_group(cluster, "global-admins", ("production", "staging"))

    assert cluster.reconcile(key).result == "succeeded"

    realms = kc.snapshot()["realms"]
    ids = {
        realm: [g["id"] for g in realms[realm]["groups"] if g["path"] == "/global-admins"]
        for realm in (kc.realm, "staging")
    }
    assert _ready(cluster, key)["status"]["keycloakGroupIDs"] == {
        "production": ids[kc.realm][0],
        "staging": ids["staging"][0],
    }

    _delete(cluster, "contactgroups", key.name)
    assert cluster.reconcile(key).result == "succeeded"

    realms = kc.snapshot()["realms"]
    assert realms[kc.realm]["groups"] == [] and realms["staging"]["groups"] == []
    assert cluster.get(key) is None


def test_contact_group_becoming_ready_enqueues_the_contacts_and_access_controls_that_name_it(
    cluster: Cluster, kube_install_crd: Callable[..., dict[str, Any]]
) -> None:
    kube_install_crd(CRDS / "gitlabgroups.polycrate.io.yaml")
    shared_libs = cluster.create("gitlabgroups", example("gitlabgroup-shared-libs.yaml", cluster.namespace))
    elsewhere = _contact(cluster)  # in shared-developers
    admin = example("contact-john-doe.yaml", cluster.namespace)
    admin["metadata"]["name"] = "jane-roe"
    admin["spec"]["additionalGroups"] = [{"contactGroup": "platform-admins"}]
    jane = cluster.create("contacts", admin)
    key = _contact_group(cluster, "platform-admins")

    assert cluster.reconcile(key).result == "succeeded"

    enqueued = {sent for sent, _, _ in cluster.sender.sent} - {key}
    assert enqueued == {jane, shared_libs}
    assert elsewhere not in enqueued


# --- Contact ----------------------------------------------------------------------------------


def test_contact_joins_the_role_subgroup_the_contact_group_and_the_gitlab_group(
    cluster: Cluster, keycloak_stage: KeycloakAdmin, gitlab_admin: python_gitlab.Gitlab
) -> None:
    keycloak_id, gitlab_id = _john_doe(keycloak_stage, gitlab_admin)
    cluster.reconcile(_organization(cluster))
    cluster.reconcile(_contact_group(cluster))
    key = _contact(cluster)

    assert cluster.reconcile(key).result == "succeeded"

    assert _keycloak_memberships(keycloak_stage, keycloak_id) == [
        "/acme-corp/acme-corp-developers",
        "/shared-developers",
    ]
    member = gitlab_admin.groups.get("acme-corp").members.get(gitlab_id)
    assert member.access_level == 30, "role developer → GitLab developer"
    status = _ready(cluster, key)["status"]
    assert status["keycloakGroups"] == {
        "production": ["/acme-corp/acme-corp-developers", "/shared-developers"]
    }
    assert status["keycloakUserIDs"] == {"production": keycloak_id}
    assert status["gitlabGroups"] == {"production": ["acme-corp"]}
    assert status["gitlabUserIDs"] == {"production": gitlab_id}


def test_contact_whose_keycloak_user_does_not_exist_yet_is_an_error_naming_the_username(
    cluster: Cluster,
) -> None:
    cluster.reconcile(_organization(cluster))
    cluster.reconcile(_contact_group(cluster))
    key = _contact(cluster)

    assert cluster.reconcile(key).result == "failed"

    assert cluster.get(key)["status"]["phase"] == "Error"
    assert 'username "john.doe"' in _message(cluster, key)
    assert [event["reason"] for event in cluster.events(key)] == ["DependencyNotFound"]


def test_removing_an_organization_entry_removes_the_memberships_the_operator_added(
    cluster: Cluster, keycloak_stage: KeycloakAdmin, gitlab_admin: python_gitlab.Gitlab
) -> None:
    keycloak_id, gitlab_id = _john_doe(keycloak_stage, gitlab_admin)
    cluster.reconcile(_organization(cluster))
    cluster.reconcile(_contact_group(cluster))
    key = _contact(cluster)
    cluster.reconcile(key)

    _patch(cluster, "contacts", key.name, {"spec": {"organizations": []}})
    assert cluster.reconcile(key).result == "succeeded"

    assert _keycloak_memberships(keycloak_stage, keycloak_id) == ["/shared-developers"]
    assert gitlab_id not in [m.id for m in gitlab_admin.groups.get("acme-corp").members.list(get_all=True)]
    status = _ready(cluster, key)["status"]
    assert status["keycloakGroups"] == {"production": ["/shared-developers"]}
    assert "gitlabGroups" not in status and "gitlabUserIDs" not in status


def test_membership_a_human_granted_stays_when_the_contact_stops_declaring_it(
    cluster: Cluster, keycloak_stage: KeycloakAdmin, gitlab_admin: python_gitlab.Gitlab
) -> None:
    keycloak_id, gitlab_id = _john_doe(keycloak_stage, gitlab_admin)
    cluster.reconcile(_organization(cluster))
    cluster.reconcile(_contact_group(cluster))
    developers = keycloak_stage.get_group_by_path("acme-corp/acme-corp-developers")["id"]
    keycloak_stage.group_user_add(keycloak_id, developers)
    gitlab_admin.groups.get("acme-corp").members.create({"user_id": gitlab_id, "access_level": 40})
    key = _contact(cluster)
    cluster.reconcile(key)

    _patch(cluster, "contacts", key.name, {"spec": {"organizations": []}})
    cluster.reconcile(key)

    assert "/acme-corp/acme-corp-developers" in _keycloak_memberships(keycloak_stage, keycloak_id)
    assert gitlab_admin.groups.get("acme-corp").members.get(gitlab_id).access_level == 40


def test_deleted_contact_leaves_every_group_the_operator_added_it_to(
    cluster: Cluster, keycloak_stage: KeycloakAdmin, gitlab_admin: python_gitlab.Gitlab
) -> None:
    keycloak_id, gitlab_id = _john_doe(keycloak_stage, gitlab_admin)
    cluster.reconcile(_organization(cluster))
    cluster.reconcile(_contact_group(cluster))
    key = _contact(cluster)
    cluster.reconcile(key)

    _delete(cluster, "contacts", key.name)
    assert cluster.reconcile(key).result == "succeeded"

    assert _keycloak_memberships(keycloak_stage, keycloak_id) == []
    assert gitlab_id not in [m.id for m in gitlab_admin.groups.get("acme-corp").members.list(get_all=True)]
    assert cluster.get(key) is None


def test_contact_created_before_its_organization_converges_once_the_organization_is_ready(
    cluster: Cluster, keycloak_stage: KeycloakAdmin, gitlab_admin: python_gitlab.Gitlab
) -> None:
    keycloak_id, _ = _john_doe(keycloak_stage, gitlab_admin)
    cluster.reconcile(_contact_group(cluster))
    key = _contact(cluster)
    assert cluster.reconcile(key).result == "failed"
    assert 'Organization "acme-corp" not found' in _message(cluster, key)

    assert cluster.reconcile(_organization(cluster)).result == "succeeded"

    assert _run_enqueued(cluster, key).result == "succeeded", "the Organization enqueued its Contact"
    assert "/acme-corp/acme-corp-developers" in _keycloak_memberships(keycloak_stage, keycloak_id)


def test_organization_becoming_ready_wakes_exactly_the_contacts_gitlab_groups_and_harbor_projects_naming_it(
    cluster: Cluster, kube_install_crd: Callable[..., dict[str, Any]]
) -> None:
    for plural in ("gitlabgroups", "harborprojects"):
        kube_install_crd(CRDS / f"{plural}.polycrate.io.yaml")
    contact = _contact(cluster)  # organizations: acme-corp
    libs = cluster.create("gitlabgroups", example("gitlabgroup-shared-libs.yaml", cluster.namespace))
    images = cluster.create("harborprojects", example("harborproject-shared-images.yaml", cluster.namespace))
    elsewhere = _gitlab_group(
        cluster, "other-libs", organizationAccess=[{"organization": "other-corp", "accessLevel": "developer"}]
    )
    key = _organization(cluster)

    sent = len(cluster.sender.sent)
    assert cluster.reconcile(key).result == "succeeded"
    assert {k for k, _, _ in cluster.sender.sent[sent:]} - {key} == {contact, libs, images}
    assert elsewhere not in {k for k, _, _ in cluster.sender.sent}

    sent = len(cluster.sender.sent)
    assert cluster.reconcile(key).result == "succeeded"  # a resync of a Ready Organization
    assert {k for k, _, _ in cluster.sender.sent[sent:]} - {key} == set(), "it wakes nobody"


def test_contact_waiting_for_an_organization_still_provisioning_is_provisioning_not_error(
    cluster: Cluster, keycloak_stage: KeycloakAdmin, gitlab_admin: python_gitlab.Gitlab
) -> None:
    _john_doe(keycloak_stage, gitlab_admin)
    cluster.reconcile(_contact_group(cluster))
    org = _organization(cluster)  # exists, not provisioned yet
    key = _contact(cluster)

    assert cluster.reconcile(key).result == "failed", "parked until the Organization wakes it"

    status = cluster.get(key)["status"]
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert status["phase"] == "Provisioning"
    assert (
        ready["reason"] == "DependencyNotReady"
        and 'Organization "acme-corp" is not Ready yet' in ready["message"]
    )

    assert cluster.reconcile(org).result == "succeeded"
    assert _run_enqueued(cluster, key).result == "succeeded"
    ready = next(c for c in _ready(cluster, key)["status"]["conditions"] if c["type"] == "Ready")
    assert (ready["reason"], ready["message"]) == ("Provisioned", "All contact resources provisioned")


def test_contact_of_an_organization_in_error_is_in_error_too(
    cluster: Cluster, keycloak_stage: KeycloakAdmin, gitlab_admin: python_gitlab.Gitlab
) -> None:
    _john_doe(keycloak_stage, gitlab_admin)
    cluster.reconcile(_contact_group(cluster))
    broken = example("organization-acme-corp.yaml", cluster.namespace)
    broken["spec"]["sdp"] = "nowhere"
    org = cluster.create("organizations", broken)
    assert cluster.reconcile(org).result == "failed"
    key = _contact(cluster)

    assert cluster.reconcile(key).result == "failed"

    assert cluster.get(key)["status"]["phase"] == "Error", (
        "nothing to wait for until someone fixes the Organization"
    )
    assert 'Organization "acme-corp" is in Error' in _message(cluster, key)


def _gitlab_group(cluster: Cluster, name: str, **access: list[dict[str, str]]) -> ObjectKey:
    group = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "GitLabGroup",
        "metadata": {"name": name},
        "spec": {"sdp": ["production"], **access},
    }
    return cluster.create("gitlabgroups", group)


def _gitlab_members(gitlab_admin: python_gitlab.Gitlab, path: str) -> dict[str, int]:
    return {m.username: m.access_level for m in gitlab_admin.groups.get(path).members.list(get_all=True)}


def test_contact_keycloak_membership_changes_wake_the_gitlab_groups_granting_through_those_groups(
    cluster: Cluster,
    kube_install_crd: Callable[..., dict[str, Any]],
    keycloak_stage: KeycloakAdmin,
    gitlab_admin: python_gitlab.Gitlab,
) -> None:
    kube_install_crd(CRDS / "gitlabgroups.polycrate.io.yaml")
    _john_doe(keycloak_stage, gitlab_admin)
    cluster.reconcile(_organization(cluster))
    cluster.reconcile(_contact_group(cluster))
    by_org = _gitlab_group(
        cluster, "org-libs", organizationAccess=[{"organization": "acme-corp", "accessLevel": "developer"}]
    )
    by_group = _gitlab_group(
        cluster,
        "shared-libs",
        accessControl=[{"keycloakGroup": "shared-developers", "accessLevel": "maintainer"}],
    )
    unrelated = _gitlab_group(
        cluster, "ops-libs", accessControl=[{"keycloakGroup": "acme-corp-admins", "accessLevel": "owner"}]
    )
    for key in (by_org, by_group, unrelated):
        assert cluster.reconcile(key).result == "succeeded"
    assert "john.doe" not in _gitlab_members(gitlab_admin, "shared-libs")

    contact = _contact(cluster)  # joins /acme-corp/acme-corp-developers and /shared-developers
    sent = len(cluster.sender.sent)
    assert cluster.reconcile(contact).result == "succeeded"

    woken = {key for key, _, _ in cluster.sender.sent[sent:]} - {contact}
    assert woken == {by_org, by_group}, "the GitLabGroups granting through the Contact's new groups, only"
    for key in woken:
        assert _run_enqueued(cluster, key).result == "succeeded"
    assert _gitlab_members(gitlab_admin, "org-libs")["john.doe"] == 30  # developer
    assert _gitlab_members(gitlab_admin, "shared-libs")["john.doe"] == 40  # maintainer
    assert "john.doe" not in _gitlab_members(gitlab_admin, "ops-libs")

    _patch(
        cluster, "contacts", contact.name, {"spec": {"additionalGroups": None}}
    )  # leaves /shared-developers
    sent = len(cluster.sender.sent)
    assert cluster.reconcile(contact).result == "succeeded"

    assert {key for key, _, _ in cluster.sender.sent[sent:]} - {contact} == {by_group}
    assert _run_enqueued(cluster, by_group).result == "succeeded"
    assert "john.doe" not in _gitlab_members(gitlab_admin, "shared-libs")
    assert _gitlab_members(gitlab_admin, "org-libs")["john.doe"] == 30


def test_unknown_role_is_an_invalid_spec_listing_the_valid_roles(
    cluster: Cluster, keycloak_stage: KeycloakAdmin, gitlab_admin: python_gitlab.Gitlab
) -> None:
    _john_doe(keycloak_stage, gitlab_admin)
    cluster.reconcile(_organization(cluster))
    cluster.reconcile(_contact_group(cluster))
    contact = example("contact-john-doe.yaml", cluster.namespace)
    contact["spec"]["organizations"][0]["role"] = "owner"
    key = cluster.create("contacts", contact)

    assert cluster.reconcile(key).result == "failed"

    message = _message(cluster, key)
    assert 'spec.organizations[0].role "owner"' in message
    assert "admins, developers, viewers" in message


@pytest.mark.parametrize(
    ("role", "access_level"),
    [
        ("admin", "maintainer"),
        ("admins", "maintainer"),
        ("developers", "developer"),
        ("viewer", "reporter"),
        ("maintainers", "maintainer"),
        ("auditors", "guest"),
    ],
)
def test_organization_roles_map_to_gitlab_access_levels(role: str, access_level: str) -> None:
    assert tenancy.gitlab_access_level(role) == access_level


def test_second_reconcile_of_a_ready_contact_writes_nowhere(
    cluster: Cluster,
    systems: dict[str, Any],
    keycloak_stage: KeycloakAdmin,
    gitlab_admin: python_gitlab.Gitlab,
) -> None:
    _john_doe(keycloak_stage, gitlab_admin)
    cluster.reconcile(_organization(cluster))
    cluster.reconcile(_contact_group(cluster))
    key = _contact(cluster)
    cluster.reconcile(key)
    before = {name: Counter(system.calls) for name, system in systems.items()}
    resource_version = cluster.get(key)["metadata"]["resourceVersion"]

    assert cluster.reconcile(key).result == "succeeded"

    for name, system in systems.items():
        assert _writes(Counter(system.calls) - before[name]) == [], f"{name} was written to"
    assert cluster.get(key)["metadata"]["resourceVersion"] == resource_version
