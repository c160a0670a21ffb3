"""The ownership rules: whose an existing external object is, and when it may be taken over."""

from __future__ import annotations

import gitlab as python_gitlab
import pytest
import requests

from emulators.argocd import ArgocdEmulator
from emulators.gitlab import GitLabEmulator
from polycrate.errors import PermanentError
from workers.argocd import ArgoCDClient
from workers.gitlab import GitLabClient
from workers.ownership import Mark, Owner, claim, strip_description_marker

UID = "0f7c6a52-6c7e-4e59-9a55-2d0b8c1d6f00"
OTHER = "9a1b2c3d-0000-4e59-9a55-2d0b8c1d6f00"
ACME = Owner(UID, "Organization polycrate/acme-corp")


def _obj(annotations: dict[str, str] | None = None) -> dict[str, object]:
    return {
        "kind": "Organization",
        "metadata": {
            "name": "acme-corp",
            "namespace": "polycrate",
            "uid": UID,
            "annotations": annotations or {},
        },
    }


def test_owner_of_an_object_names_kind_namespace_and_name_and_reads_the_adopt_annotation() -> None:
    owner = Owner.of(_obj({"polycrate.io/adopt": "true"}))

    assert (owner.uid, owner.ref, owner.adopt) == (UID, "Organization polycrate/acme-corp", "true")


def test_an_object_marked_with_the_own_uid_is_claimed_without_marking_again() -> None:
    assert claim(ACME, Mark(UID, ACME.ref), what="group", recorded=False) is False


def test_an_unmarked_object_recorded_in_status_is_claimed_and_marked() -> None:
    assert claim(ACME, Mark(), what="group", recorded=True) is True


def test_an_unmarked_unrecorded_object_needs_the_adopt_annotation() -> None:
    with pytest.raises(PermanentError) as refused:
        claim(ACME, Mark(), what='Keycloak group "/legacy"', recorded=False)

    assert refused.value.reason == "AdoptionRequired"
    assert 'add the annotation polycrate.io/adopt: "true" to Organization polycrate/acme-corp' in str(
        refused.value
    )
    assert claim(Owner(UID, ACME.ref, adopt="true"), Mark(), what="group", recorded=False) is True


def test_an_object_marked_by_another_owner_is_refused_naming_it_even_with_adopt_true() -> None:
    with pytest.raises(PermanentError) as refused:
        claim(
            Owner(UID, ACME.ref, adopt="true"),
            Mark(OTHER, "Organization polycrate/beta"),
            what="g",
            recorded=True,
        )

    assert refused.value.reason == "OwnedByAnother"
    assert "managed by Organization polycrate/beta" in str(refused.value)


def test_naming_the_previous_owners_uid_takes_over_from_an_orphaning_owner() -> None:
    assert claim(Owner(UID, ACME.ref, adopt=OTHER), Mark(OTHER, "gone"), what="g", recorded=False) is True


def test_the_gitlab_description_marker_round_trips_and_replaces_an_older_one() -> None:
    described = ACME.gitlab_description("Our team")
    again = ACME.gitlab_description(Owner(OTHER, "x").gitlab_description("Our team"))

    assert described == f"Our team\n\n[polycrate.io/owner: {UID} (Organization polycrate/acme-corp)]"
    assert Mark.from_gitlab(described) == Mark(UID, "Organization polycrate/acme-corp")
    assert again == described
    assert strip_description_marker(described) == "Our team"
    assert Mark.from_gitlab("Our team") == Mark()


def test_the_gitlab_description_marker_fits_gitlabs_limit_with_a_long_owner_name() -> None:
    owner = Owner(UID, "Organization " + "n" * 63 + "/" + "x" * 253)

    described = owner.gitlab_description("d" * 155)  # the longest description the CRD allows

    assert len(described) <= 255, "GitLab's limit (Namespace::Detail validates description to 255)"
    assert Mark.from_gitlab(described).uid == UID


# --- the marks in the systems, through the steps and the systems' own APIs -----------------------


def test_gitlab_group_created_for_an_owner_carries_the_marker_and_a_stranger_cannot_take_it(
    gitlab_emulator: GitLabEmulator,
) -> None:
    client = GitLabClient(gitlab_emulator.url, gitlab_emulator.admin_token)
    created = client.ensure_group("acme-corp", description="Team", owner=ACME)

    with pytest.raises(PermanentError) as refused:
        client.ensure_group("acme-corp", owner=Owner(OTHER, "GitLabGroup polycrate/other", adopt="true"))

    admin = python_gitlab.Gitlab(gitlab_emulator.url, private_token=gitlab_emulator.admin_token)
    assert Mark.from_gitlab(admin.groups.get(created.id).description) == Mark(UID, ACME.ref)
    assert "managed by Organization polycrate/acme-corp" in str(refused.value)


def test_an_unmarked_gitlab_group_is_adopted_only_with_the_annotation(
    gitlab_emulator: GitLabEmulator,
) -> None:
    admin = python_gitlab.Gitlab(gitlab_emulator.url, private_token=gitlab_emulator.admin_token)
    existing = admin.groups.create({"name": "legacy", "path": "legacy", "description": "by hand"})
    client = GitLabClient(gitlab_emulator.url, gitlab_emulator.admin_token)

    with pytest.raises(PermanentError, match="AdoptionRequired|did not create it"):
        client.ensure_group("legacy", owner=ACME)
    assert admin.groups.get(existing.id).description == "by hand"

    change = client.ensure_group("legacy", owner=Owner(UID, ACME.ref, adopt="true"))

    assert (change.action, change.id) == ("updated", existing.id)
    assert "adopted" in change.detail
    assert admin.groups.get(existing.id).description.startswith("by hand\n\n[polycrate.io/owner: ")


def test_argocd_project_created_for_an_owner_carries_label_and_annotation(argocd: ArgocdEmulator) -> None:
    client = ArgoCDClient(argocd.url, argocd.token)
    client.ensure_project("acme-corp", owner=ACME)

    metadata = requests.get(
        f"{argocd.url}/api/v1/projects/acme-corp",
        headers={"Authorization": f"Bearer {argocd.token}"},
        timeout=5,
    ).json()["metadata"]
    assert metadata["labels"]["polycrate.io/owner-uid"] == UID
    assert metadata["annotations"]["polycrate.io/owner"] == ACME.ref
    with pytest.raises(PermanentError, match="managed by Organization polycrate/acme-corp"):
        client.ensure_project("acme-corp", owner=Owner(OTHER, "ArgoCDProject polycrate/x", adopt="true"))
