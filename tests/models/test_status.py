"""Conditions behave as Kubernetes tools expect: one per type, transition time moves on change only."""

from __future__ import annotations

from datetime import UTC, datetime

from polycrate.models import OrganizationStatus

T0 = datetime(2025, 1, 1, 10, 0, 0, tzinfo=UTC)
T1 = datetime(2025, 1, 1, 11, 0, 0, tzinfo=UTC)


def test_set_condition_adds_a_condition_with_transition_time() -> None:
    status = OrganizationStatus()
    assert status.set_condition("Ready", "False", "Provisioning", "creating Keycloak group", now=T0)
    condition = status.condition("Ready")
    assert condition is not None
    assert (condition.status, condition.reason, condition.lastTransitionTime) == ("False", "Provisioning", T0)


def test_reasserting_the_same_condition_changes_nothing() -> None:
    status = OrganizationStatus()
    status.set_condition("Ready", "True", "Provisioned", "all done", now=T0)
    assert not status.set_condition("Ready", "True", "Provisioned", "all done", now=T1)
    assert status.conditions[0].lastTransitionTime == T0


def test_new_message_with_same_status_keeps_the_transition_time() -> None:
    status = OrganizationStatus()
    status.set_condition("Ready", "False", "Provisioning", "step 1", now=T0)
    assert status.set_condition("Ready", "False", "Provisioning", "step 2", now=T1)
    assert status.conditions[0].message == "step 2"
    assert status.conditions[0].lastTransitionTime == T0


def test_status_change_moves_the_transition_time() -> None:
    status = OrganizationStatus()
    status.set_condition("Ready", "False", "Provisioning", "working", now=T0)
    status.set_condition("Ready", "True", "Provisioned", "done", now=T1)
    assert len(status.conditions) == 1
    assert status.conditions[0].lastTransitionTime == T1


def test_status_serialises_timestamps_as_rfc3339_utc() -> None:
    status = OrganizationStatus(phase="Ready")
    status.set_condition("Ready", "True", "Provisioned", "done", now=T0)
    dumped = status.model_dump(mode="json", exclude_none=True)
    assert dumped["conditions"][0]["lastTransitionTime"] == "2025-01-01T10:00:00Z"


def test_status_ignores_fields_written_by_a_newer_operator() -> None:
    status = OrganizationStatus.model_validate({"phase": "Ready", "futureField": 1})
    assert status.phase == "Ready"
