"""A tenant's life between create and delete: renames, names that cannot change, adoption of
existing objects and deletionPolicy Orphan — against the four emulated systems, checked through
each system's own client (python-keycloak, python-gitlab, plain HTTP for Harbor and Argo CD)."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import gitlab as python_gitlab
import kubernetes
import pytest
import redis
import requests
from keycloak import KeycloakAdmin
from keycloak.exceptions import KeycloakGetError

from emulators.gitlab import GitLabEmulator
from tests.tasks.flows.test_tenancy import (
    _argocd_project,
    _contact,
    _contact_group,
    _delete,
    _harbor_get,
    _john_doe,
    _keycloak_memberships,
    _message,
    _organization,
    _patch,
    _ready,
    _run_enqueued,
    _writes,
    tenancy_cluster,
)
from tests.tasks.support import example
from tests.tasks.test_handlers import Cluster

GROUP, VERSION = "polycrate.io", "v1alpha1"


@pytest.fixture
def cluster(
    kube_api_client: kubernetes.client.ApiClient,
    redis_client: redis.Redis,
    kube_namespace: str,
    kube_install_crd: Callable[..., dict[str, Any]],
    systems: dict[str, Any],
) -> Cluster:
    """The reconciler with the tenancy flows and the spec's SDP (as in test_tenancy)."""
    return tenancy_cluster(kube_api_client, redis_client, kube_namespace, kube_install_crd, systems)


@pytest.fixture
def gitlab_admin(gitlab_emulator: GitLabEmulator) -> python_gitlab.Gitlab:
    return python_gitlab.Gitlab(gitlab_emulator.url, private_token=gitlab_emulator.admin_token)


def _calls(systems: dict[str, Any]) -> dict[str, Counter[str]]:
    return {name: Counter(system.calls) for name, system in systems.items()}


def _writes_since(systems: dict[str, Any], before: dict[str, Counter[str]]) -> dict[str, list[str]]:
    return {
        name: writes
        for name, system in systems.items()
        if (writes := _writes(Counter(system.calls) - before[name]))
    }


def _organization_named(cluster: Cluster, name: str, spec: dict[str, Any]) -> Any:
    obj = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Organization",
        "metadata": {"name": name},
        "spec": {"sdp": "production", **spec},
    }
    return cluster.create("organizations", obj)


def _keycloak_gone(admin: KeycloakAdmin, path: str) -> bool:
    try:
        admin.get_group_by_path(path)
    except KeycloakGetError as exc:
        return exc.response_code == 404
    return False


# --- renames ----------------------------------------------------------------------------------


def test_renaming_keycloak_group_and_gitlab_path_keeps_ids_members_and_access(
    cluster: Cluster, keycloak_stage: KeycloakAdmin, gitlab_admin: python_gitlab.Gitlab
) -> None:
    keycloak_user, gitlab_user = _john_doe(keycloak_stage, gitlab_admin)
    org = _organization(cluster)
    cluster.reconcile(org)
    cluster.reconcile(_contact_group(cluster))
    cluster.reconcile(_contact(cluster))
    before = _ready(cluster, org)["status"]

    _patch(
        cluster,
        "organizations",
        "acme-corp",
        {"spec": {"keycloak": {"groupName": "acme-inc"}, "gitlab": {"groupPath": "acme-inc"}}},
    )
    assert cluster.reconcile(org).result == "succeeded"

    after = _ready(cluster, org)["status"]
    assert after["keycloakGroupID"] == before["keycloakGroupID"]
    assert after["keycloakSubgroupIDs"] == before["keycloakSubgroupIDs"]
    assert after["gitlabGroupID"] == before["gitlabGroupID"]
    group = keycloak_stage.get_group_by_path("acme-inc")
    assert group["id"] == before["keycloakGroupID"]
    assert _keycloak_gone(keycloak_stage, "acme-corp")
    subgroup = keycloak_stage.get_group_by_path("acme-inc/acme-inc-developers")
    assert subgroup["id"] == before["keycloakSubgroupIDs"]["developers"]
    assert "/acme-inc/acme-inc-developers" in _keycloak_memberships(keycloak_stage, keycloak_user)
    moved = gitlab_admin.groups.get(before["gitlabGroupID"])
    assert (moved.full_path, moved.name) == ("acme-inc", "acme-inc")
    with pytest.raises(python_gitlab.GitlabGetError):
        gitlab_admin.groups.get("acme-corp")
    assert moved.members.get(gitlab_user).access_level == 30, "john.doe stays developer"


def test_a_contact_keeps_track_of_its_memberships_across_a_rename_and_removes_them_on_delete(
    cluster: Cluster, keycloak_stage: KeycloakAdmin, gitlab_admin: python_gitlab.Gitlab
) -> None:
    keycloak_user, gitlab_user = _john_doe(keycloak_stage, gitlab_admin)
    org = _organization(cluster)
    cluster.reconcile(org)
    cluster.reconcile(_contact_group(cluster))
    contact = _contact(cluster)
    cluster.reconcile(contact)
    _patch(
        cluster,
        "organizations",
        "acme-corp",
        {"spec": {"keycloak": {"groupName": "acme-inc"}, "gitlab": {"groupPath": "acme-inc"}}},
    )
    cluster.reconcile(org)

    assert _run_enqueued(cluster, contact).result == "succeeded", "the Organization woke its Contact"

    status = _ready(cluster, contact)["status"]
    assert status["keycloakGroups"] == {"production": ["/acme-inc/acme-inc-developers", "/shared-developers"]}
    assert status["gitlabGroups"] == {"production": ["acme-inc"]}
    _delete(cluster, "contacts", "john-doe")
    assert cluster.reconcile(contact).result == "succeeded"
    assert _keycloak_memberships(keycloak_stage, keycloak_user) == []
    assert gitlab_user not in [m.id for m in gitlab_admin.groups.get("acme-inc").members.list(get_all=True)]


def test_renaming_a_contact_group_renames_its_keycloak_group_in_every_sdp(
    cluster: Cluster, keycloak_stage: KeycloakAdmin
) -> None:
    key = _contact_group(cluster, "shared-developers")
    cluster.reconcile(key)
    group_id = _ready(cluster, key)["status"]["keycloakGroupIDs"]["production"]
    member = keycloak_stage.create_user({"username": "erin", "enabled": True})
    keycloak_stage.group_user_add(member, group_id)

    _patch(cluster, "contactgroups", "shared-developers", {"spec": {"keycloak": {"groupName": "all-devs"}}})
    assert cluster.reconcile(key).result == "succeeded"

    assert keycloak_stage.get_group_by_path("all-devs")["id"] == group_id
    assert _keycloak_gone(keycloak_stage, "shared-developers")
    assert _keycloak_memberships(keycloak_stage, member) == ["/all-devs"]


# --- names that cannot change -------------------------------------------------------------------


def test_changing_harbor_project_name_is_refused_by_the_api_server(cluster: Cluster) -> None:
    org = _organization(cluster)

    with pytest.raises(kubernetes.client.ApiException) as refused:
        _patch(cluster, "organizations", org.name, {"spec": {"harbor": {"projectName": "acme-new"}}})

    assert refused.value.status == 422
    status = json.loads(refused.value.body)
    assert (
        'spec.harbor.projectName: Invalid value: "string": projectName is immutable; '
        "delete and recreate the Organization to change it"
    ) in status["message"]
    assert [cause["field"] for cause in status["details"]["causes"]] == ["spec.harbor.projectName"]


@pytest.mark.parametrize(
    ("section", "field", "what"),
    [
        ("harbor", "spec.harbor.projectName", "Harbor project"),
        ("argocd", "spec.argocd.projectName", "Argo CD project"),
    ],
)
def test_a_project_name_change_past_the_api_server_is_an_error_and_writes_nothing(
    cluster: Cluster, systems: dict[str, Any], section: str, field: str, what: str
) -> None:
    # Defaulted from metadata.name first: setting the field later passes the transition rule.
    spec = example("organization-acme-corp.yaml", cluster.namespace)["spec"]
    del spec[section]["projectName"]
    org = _organization_named(cluster, "acme-corp", spec)
    cluster.reconcile(org)
    before = _calls(systems)

    _patch(cluster, "organizations", "acme-corp", {"spec": {section: {"projectName": "acme-new"}}})
    assert cluster.reconcile(org).result == "failed"

    obj = cluster.get(org)
    assert obj["status"]["phase"] == "Error"
    message = _message(cluster, org)
    assert f'{field} "acme-new"' in message and f'{what} "acme-corp" cannot be renamed' in message
    assert "delete and recreate the Organization" in message
    warnings = [e for e in cluster.events(org) if e["type"] == "Warning"]
    assert [e["reason"] for e in warnings] == ["ImmutableField"]
    assert _writes_since(systems, before) == {}, "nothing is created or changed anywhere"
    assert _harbor_get(systems["harbor"], "/projects/acme-new").status_code == 404
    assert _argocd_project(systems["argocd"], "acme-new").status_code == 404


# --- adoption ---------------------------------------------------------------------------------


def _keycloak_only(cluster: Cluster, name: str, group: str) -> Any:
    disabled = {"enabled": False}
    spec = {"keycloak": {"groupName": group}, "gitlab": disabled, "harbor": disabled, "argocd": disabled}
    return _organization_named(cluster, name, spec)


def test_an_existing_unmarked_group_is_not_taken_silently(
    cluster: Cluster, keycloak_stage: KeycloakAdmin
) -> None:
    existing = keycloak_stage.create_group({"name": "legacy", "attributes": {"team": ["old"]}})
    key = _keycloak_only(cluster, "legacy", "legacy")

    assert cluster.reconcile(key).result == "failed"

    message = _message(cluster, key)
    assert 'Keycloak group "/legacy"' in message and "already exists" in message
    assert 'polycrate.io/adopt: "true"' in message
    assert keycloak_stage.get_group(existing)["attributes"] == {"team": ["old"]}, "left untouched"
    assert keycloak_stage.get_group_children(existing) == []


def test_with_the_adopt_annotation_an_existing_group_is_adopted_and_marked(
    cluster: Cluster, keycloak_stage: KeycloakAdmin
) -> None:
    existing = keycloak_stage.create_group({"name": "legacy"})
    key = _keycloak_only(cluster, "legacy", "legacy")
    cluster.reconcile(key)

    _patch(cluster, "organizations", "legacy", {"metadata": {"annotations": {"polycrate.io/adopt": "true"}}})
    assert cluster.reconcile(key).result == "succeeded"

    uid = cluster.get(key)["metadata"]["uid"]
    assert _ready(cluster, key)["status"]["keycloakGroupID"] == existing
    assert keycloak_stage.get_group(existing)["attributes"]["polycrate.io/owner-uid"] == [uid]
    # The run's one Normal Event names the adoption among its changes.
    assert any(
        e["type"] == "Normal" and "updated Keycloak group" in e["message"] and "adopted" in e["message"]
        for e in cluster.events(key)
    )


def test_a_group_managed_by_another_object_is_an_error_naming_that_object(
    cluster: Cluster, keycloak_stage: KeycloakAdmin
) -> None:
    first = _keycloak_only(cluster, "team-a", "shared")
    cluster.reconcile(first)
    second = _keycloak_only(cluster, "team-b", "shared")
    _patch(cluster, "organizations", "team-b", {"metadata": {"annotations": {"polycrate.io/adopt": "true"}}})

    assert cluster.reconcile(second).result == "failed"

    message = _message(cluster, second)
    assert f"is managed by Organization {cluster.namespace}/team-a" in message
    owner_uid = cluster.get(first)["metadata"]["uid"]
    assert keycloak_stage.get_group_by_path("shared")["attributes"]["polycrate.io/owner-uid"] == [owner_uid]


def test_an_existing_harbor_project_needs_the_adopt_annotation(
    cluster: Cluster, systems: dict[str, Any]
) -> None:
    harbor = systems["harbor"]
    requests.post(
        f"{harbor.url}/api/v2.0/projects",
        json={"project_name": "legacy", "metadata": {"public": "false"}},
        auth=(harbor.admin_username, harbor.admin_password),
        timeout=5,
    ).raise_for_status()
    disabled = {"enabled": False}
    key = _organization_named(
        cluster, "legacy", {"gitlab": disabled, "argocd": disabled, "harbor": {"projectName": "legacy"}}
    )

    assert cluster.reconcile(key).result == "failed"
    assert 'Harbor project "legacy" already exists' in _message(cluster, key)
    # The name written ahead of the create was withdrawn on Harbor's 409: a retry still refuses.
    assert "polycrate.io/operator-state" not in (cluster.get(key)["metadata"].get("annotations") or {})
    assert cluster.reconcile(key).result == "failed"

    _patch(cluster, "organizations", "legacy", {"metadata": {"annotations": {"polycrate.io/adopt": "true"}}})
    assert cluster.reconcile(key).result == "succeeded"
    project = _harbor_get(harbor, "/projects/legacy").json()
    assert _ready(cluster, key)["status"]["harborProjectID"] == project["project_id"]


# --- deletionPolicy ---------------------------------------------------------------------------


def test_orphan_deletion_removes_the_object_and_leaves_every_external_object_and_membership(
    cluster: Cluster,
    systems: dict[str, Any],
    keycloak_stage: KeycloakAdmin,
    gitlab_admin: python_gitlab.Gitlab,
) -> None:
    keycloak_user, gitlab_user = _john_doe(keycloak_stage, gitlab_admin)
    org = _organization(cluster)
    _patch(cluster, "organizations", "acme-corp", {"spec": {"deletionPolicy": "Orphan"}})
    cluster.reconcile(org)
    cluster.reconcile(_contact_group(cluster))
    contact = _contact(cluster)
    _patch(cluster, "contacts", "john-doe", {"spec": {"deletionPolicy": "Orphan"}})
    cluster.reconcile(contact)
    status = _ready(cluster, org)["status"]
    before = _calls(systems)

    for plural, key in (("contacts", contact), ("organizations", org)):
        _delete(cluster, plural, key.name)
        assert cluster.reconcile(key).result == "succeeded"
        assert cluster.get(key) is None

    assert _writes_since(systems, before) == {}
    assert keycloak_stage.get_group_by_path("acme-corp")["id"] == status["keycloakGroupID"]
    assert "/acme-corp/acme-corp-developers" in _keycloak_memberships(keycloak_stage, keycloak_user)
    assert gitlab_admin.groups.get(status["gitlabGroupID"]).members.get(gitlab_user).access_level == 30
    assert (
        _harbor_get(systems["harbor"], "/projects/acme-corp").json()["project_id"]
        == status["harborProjectID"]
    )
    assert _argocd_project(systems["argocd"], "acme-corp").status_code == 200
    orphaned = [e for e in cluster.events(org) if e["reason"] == "Orphaned"]
    assert orphaned and "left in place" in orphaned[0]["message"]


def test_a_harbor_project_recorded_by_another_object_is_an_error_naming_it_even_with_adopt(
    cluster: Cluster, systems: dict[str, Any]
) -> None:
    disabled = {"enabled": False}
    spec = {"keycloak": {"groupName": "x"}, "gitlab": disabled, "argocd": disabled}
    first = _organization_named(
        cluster, "team-a", {**spec, "keycloak": {"groupName": "team-a"}, "harbor": {"projectName": "shared"}}
    )
    cluster.reconcile(first)
    second = _organization_named(
        cluster, "team-b", {**spec, "keycloak": {"groupName": "team-b"}, "harbor": {"projectName": "shared"}}
    )
    _patch(cluster, "organizations", "team-b", {"metadata": {"annotations": {"polycrate.io/adopt": "true"}}})

    assert cluster.reconcile(second).result == "failed"

    assert f'Harbor project "shared" is managed by Organization {cluster.namespace}/team-a' in _message(
        cluster, second
    )
    assert "harborProjectID" not in (cluster.get(second).get("status") or {})


def test_a_harbor_project_whose_creation_was_interrupted_is_recognised_as_the_objects_own(
    cluster: Cluster, systems: dict[str, Any]
) -> None:
    # What a worker killed between Harbor's answer and the status write leaves behind: the
    # project, and the name written ahead in the operator-state annotation.
    harbor = systems["harbor"]
    requests.post(
        f"{harbor.url}/api/v2.0/projects",
        json={"project_name": "acme-corp", "metadata": {"public": "false"}},
        auth=(harbor.admin_username, harbor.admin_password),
        timeout=5,
    ).raise_for_status()
    key = _organization(cluster)
    state = json.dumps({"creating": {"harbor": "acme-corp"}})
    _patch(
        cluster,
        "organizations",
        "acme-corp",
        {"metadata": {"annotations": {"polycrate.io/operator-state": state}}},
    )

    assert cluster.reconcile(key).result == "succeeded"

    obj = _ready(cluster, key)
    assert obj["status"]["harborProjectID"] == _harbor_get(harbor, "/projects/acme-corp").json()["project_id"]
    assert "polycrate.io/operator-state" not in (obj["metadata"].get("annotations") or {})


def test_a_harbor_project_created_by_a_run_that_lost_its_lock_before_the_status_write_stays_the_objects_own(
    cluster: Cluster, systems: dict[str, Any]
) -> None:
    # Redis emptied mid-run: the lock vanishes after Harbor created the project; Argo CD answers
    # slowly, so the run's fence has closed by its next write, the final status write.
    harbor = systems["harbor"]
    systems["argocd"].set_faults(slow_path=r"^/api/v1/projects(/acme-corp)?$", slow_ms=3000)
    key = _organization(cluster)
    lock = f"polycrate:lock:{key}"

    def wipe_lock_once_harbor_has_the_project() -> None:
        deadline = time.monotonic() + 30
        while _harbor_get(harbor, "/projects/acme-corp").status_code != 200:
            if time.monotonic() > deadline:
                return
            time.sleep(0.01)
        cluster.redis.delete(lock)

    wiper = threading.Thread(target=wipe_lock_once_harbor_has_the_project)
    wiper.start()
    try:
        assert cluster.reconcile(key).result == "fenced"
    finally:
        wiper.join()
    assert cluster.get(key)["status"]["phase"] == "Provisioning", "stopped before its final status write"
    systems["argocd"].set_faults(slow_path="", slow_ms=0)

    assert _run_enqueued(cluster, key).result == "succeeded"

    obj = _ready(cluster, key)
    assert obj["status"]["harborProjectID"] == _harbor_get(harbor, "/projects/acme-corp").json()["project_id"]
