"""Backup discovery: Velero Backup/Schedule and CloudNativePG Backup/ScheduledBackup →
polycrate.io Backup/BackupSchedule → Polycrate API.

The Kubernetes emulator with Velero's and CloudNativePG's CRDs (the test namespace plays Velero's
namespace), the Polycrate API emulator over HTTP, and the reconciler driven directly.
"""

from __future__ import annotations

from typing import Any

import pytest

from polycrate.keys import ObjectKey
from polycrate.kubeclient.api import JsonObject
from tasks.flows.discovery_backups import (
    BackupHandler,
    BackupScheduleHandler,
    CnpgBackupHandler,
    CnpgScheduledBackupHandler,
    VeleroBackupHandler,
    VeleroScheduleHandler,
)
from tests.fixtures.kube import (
    CNPG_BACKUP_CRD,
    CNPG_SCHEDULED_BACKUP_CRD,
    VELERO_BACKUP_CRD,
    VELERO_SCHEDULE_CRD,
)
from tests.tasks.flows.discovery_world import DiscoveryWorld, world_fixture  # noqa: F401


@pytest.fixture
def flows(world: DiscoveryWorld) -> DiscoveryWorld:
    world.install(
        "Backup",
        "BackupSchedule",
        foreign=[VELERO_BACKUP_CRD, VELERO_SCHEDULE_CRD, CNPG_BACKUP_CRD, CNPG_SCHEDULED_BACKUP_CRD],
    )
    world.use(
        VeleroBackupHandler(),
        VeleroScheduleHandler(),
        CnpgBackupHandler(),
        CnpgScheduledBackupHandler(),
        BackupHandler(clock=world.clock),
        BackupScheduleHandler(clock=world.clock),
    )
    return world


def _velero(flows: DiscoveryWorld, **section: Any) -> None:
    flows.operator_config(backup_discovery={"velero_namespace": flows.namespace, **section})


def _backup(
    flows: DiscoveryWorld,
    name: str = "daily-20260106020000",
    *,
    phase: str = "Completed",
    schedule: str | None = "daily",
    namespace: str | None = None,
    started: str = "2026-01-06T02:00:00Z",
) -> ObjectKey:
    namespace = namespace or flows.namespace
    metadata: JsonObject = {"name": name}
    if schedule:
        metadata["labels"] = {"velero.io/schedule-name": schedule}
    flows.custom.create_namespaced_custom_object(
        "velero.io",
        "v1",
        namespace,
        "backups",
        {
            "apiVersion": "velero.io/v1",
            "kind": "Backup",
            "metadata": metadata,
            "spec": {"ttl": "720h0m0s", "includedNamespaces": ["*"]},
            "status": {
                "phase": phase,
                "startTimestamp": started,
                "completionTimestamp": "2026-01-06T02:05:00Z",
                "progress": {"itemsBackedUp": 421, "totalItems": 421},
            },
        },
    )
    return ObjectKey("velero.io/Backup", namespace, name)


def _schedule(
    flows: DiscoveryWorld, name: str = "daily", *, last_backup: Any = None, paused: bool = False
) -> ObjectKey:
    where = ("velero.io", "v1", flows.namespace, "schedules")
    flows.custom.create_namespaced_custom_object(
        *where,
        {
            "apiVersion": "velero.io/v1",
            "kind": "Schedule",
            "metadata": {"name": name},
            "spec": {"schedule": "0 2 * * *", "paused": paused, "template": {"ttl": "720h0m0s"}},
        },
    )
    if last_backup is not None:
        flows.custom.patch_namespaced_custom_object_status(
            *where, name, {"status": {"phase": "Enabled", "lastBackup": last_backup}}
        )
    return ObjectKey("velero.io/Schedule", flows.namespace, name)


def _mirror(flows: DiscoveryWorld, kind: str, velero_name: str) -> ObjectKey:
    return ObjectKey(kind, flows.namespace, f"velero-{velero_name}")


# --- the Backup-Mapping table ------------------------------------------------------------------------


def test_velero_backup_is_mirrored_per_the_backup_mapping_table(flows: DiscoveryWorld) -> None:
    _velero(flows)
    source = _backup(flows)

    assert flows.reconcile(source).result == "succeeded"

    mirror = flows.get(_mirror(flows, "Backup", source.name))
    uid = flows.get(source)["metadata"]["uid"]
    assert mirror["spec"] == {
        "name": "daily-20260106020000",
        "source_velero": {"name": "daily-20260106020000", "namespace": flows.namespace, "uid": uid},
        "status": "completed",
        "retention_policy": "720h0m0s",
        "started_at": "2026-01-06T02:00:00Z",
        "completed_at": "2026-01-06T02:05:00Z",
        "items_backed_up": 421,
        "schedule_name": "daily",
    }
    assert mirror["metadata"]["labels"]["operator.polycrate.io/discovered"] == "true"
    assert mirror["metadata"]["ownerReferences"][0] == {
        "apiVersion": "velero.io/v1",
        "kind": "Backup",
        "name": source.name,
        "uid": uid,
    }


@pytest.mark.parametrize(
    ("phase", "status"),
    [
        ("Completed", "completed"),
        ("Failed", "failed"),
        ("InProgress", "in_progress"),
        ("PartiallyFailed", "partially_failed"),
    ],
)
def test_velero_phase_maps_to_the_backup_status(flows: DiscoveryWorld, phase: str, status: str) -> None:
    _velero(flows)
    source = _backup(flows, phase=phase)

    flows.reconcile(source)

    assert flows.get(_mirror(flows, "Backup", source.name))["spec"]["status"] == status


def test_backup_of_a_schedule_wakes_that_schedule(flows: DiscoveryWorld) -> None:
    _velero(flows)
    source = _backup(flows, schedule="daily")
    flows.woken()

    flows.reconcile(source)

    assert ObjectKey("velero.io/Schedule", flows.namespace, "daily") in flows.woken()


# --- the Schedule-Mapping table ------------------------------------------------------------------------


def test_velero_schedule_is_mirrored_with_its_newest_backup(flows: DiscoveryWorld) -> None:
    _velero(flows)
    _backup(flows, "daily-20260105020000", started="2026-01-05T02:00:00Z")
    _backup(flows, "daily-20260106020000", started="2026-01-06T02:00:00Z")
    _backup(flows, "weekly-20260106030000", schedule="weekly", started="2026-01-06T03:00:00Z")
    source = _schedule(flows, last_backup="2026-01-06T02:00:00Z", paused=True)

    flows.reconcile(source)

    spec = flows.get(_mirror(flows, "BackupSchedule", "daily"))["spec"]
    assert {
        k: spec[k] for k in ("name", "schedule_cron", "paused", "last_backup_at", "last_backup_name")
    } == {
        "name": "daily",
        "schedule_cron": "0 2 * * *",
        "paused": True,
        "last_backup_at": "2026-01-06T02:00:00Z",
        "last_backup_name": "daily-20260106020000",
    }


def test_schedule_that_never_ran_has_no_last_backup(flows: DiscoveryWorld) -> None:
    _velero(flows)

    flows.reconcile(_schedule(flows))

    spec = flows.get(_mirror(flows, "BackupSchedule", "daily"))["spec"]
    assert "last_backup_at" not in spec and "last_backup_name" not in spec
    assert spec["paused"] is False


# --- filters ---------------------------------------------------------------------------------------------


def test_backups_outside_the_velero_namespace_are_not_discovered(flows: DiscoveryWorld) -> None:
    _velero(flows)
    elsewhere = flows.extra_namespace("apps")
    source = _backup(flows, namespace=elsewhere)

    flows.reconcile(source)

    assert flows.get(ObjectKey("Backup", elsewhere, f"velero-{source.name}")) is None


def test_ignored_velero_namespace_is_not_discovered(flows: DiscoveryWorld) -> None:
    _velero(flows, ignore_namespaces=[flows.namespace])
    source = _backup(flows)

    flows.reconcile(source)

    assert flows.get(_mirror(flows, "Backup", source.name)) is None


# --- the API -----------------------------------------------------------------------------------------------


def test_backup_and_schedule_are_synced_to_the_api(flows: DiscoveryWorld) -> None:
    _velero(flows)
    backup = _backup(flows)
    schedule = _schedule(flows, last_backup="2026-01-06T02:00:00Z")
    flows.reconcile(backup)
    flows.reconcile(schedule)

    assert flows.reconcile(_mirror(flows, "Backup", backup.name)).result == "succeeded"
    assert flows.reconcile(_mirror(flows, "BackupSchedule", "daily")).result == "succeeded"

    [stored_backup] = flows.api_objects("backups")
    [stored_schedule] = flows.api_objects("backup-schedules")
    common = {"cluster": flows.cluster_id, "namespace": flows.namespace, "source": "velero"}
    assert {
        k: stored_backup[k]
        for k in (*common, "name", "status", "retention_policy", "items_backed_up", "schedule_name")
    } == {
        **common,
        "name": backup.name,
        "status": "completed",
        "retention_policy": "720h0m0s",
        "items_backed_up": 421,
        "schedule_name": "daily",
    }
    assert (stored_backup["started_at"], stored_backup["completed_at"]) == (
        "2026-01-06T02:00:00Z",
        "2026-01-06T02:05:00Z",
    )
    assert {
        k: stored_schedule[k] for k in (*common, "name", "schedule_cron", "paused", "last_backup_name")
    } == {
        **common,
        "name": "daily",
        "schedule_cron": "0 2 * * *",
        "paused": False,
        "last_backup_name": backup.name,
    }
    for key, stored in (
        (_mirror(flows, "Backup", backup.name), stored_backup),
        (_mirror(flows, "BackupSchedule", "daily"), stored_schedule),
    ):
        status = flows.get(key)["status"]
        assert (status["phase"], status["sync_status"], status["api_id"]) == (
            "Synced",
            "synced",
            stored["id"],
        )


def test_backup_expired_by_velero_is_deleted_from_the_api(flows: DiscoveryWorld) -> None:
    _velero(flows)
    source = _backup(flows)
    flows.reconcile(source)
    flows.reconcile(_mirror(flows, "Backup", source.name))

    flows.custom.delete_namespaced_custom_object("velero.io", "v1", flows.namespace, "backups", source.name)
    flows.reconcile(_mirror(flows, "Backup", source.name))

    assert flows.get(_mirror(flows, "Backup", source.name)) is None
    assert flows.api_objects("backups") == []


def test_velero_namespace_moved_elsewhere_removes_the_old_mirrors(flows: DiscoveryWorld) -> None:
    _velero(flows)
    source = _backup(flows)
    flows.reconcile(source)
    flows.reconcile(_mirror(flows, "Backup", source.name))

    flows.operator_config(backup_discovery={"velero_namespace": "velero-elsewhere"})
    flows.reconcile(_mirror(flows, "Backup", source.name))
    flows.reconcile(_mirror(flows, "Backup", source.name))

    assert flows.get(_mirror(flows, "Backup", source.name)) is None
    assert flows.api_objects("backups") == []


# --- CloudNativePG ---------------------------------------------------------------------------------------

CNPG = ("postgresql.cnpg.io", "v1")


def _cnpg(flows: DiscoveryWorld, **section: Any) -> None:
    flows.operator_config(backup_discovery={"cnpg_enabled": True, **section})


def _cnpg_backup(
    flows: DiscoveryWorld,
    name: str = "pg-main-20260106020000",
    *,
    status: JsonObject | None = None,
    schedule: str | None = "pg-main-nightly",
    method: str = "barmanObjectStore",
) -> ObjectKey:
    """A CloudNativePG Backup as its operator leaves it; status through the status subresource."""
    metadata: JsonObject = {"name": name}
    if schedule:
        metadata["labels"] = {"cnpg.io/cluster": "pg-main", "cnpg.io/scheduled-backup": schedule}
    flows.custom.create_namespaced_custom_object(
        *CNPG,
        flows.namespace,
        "backups",
        {
            "apiVersion": "postgresql.cnpg.io/v1",
            "kind": "Backup",
            "metadata": metadata,
            "spec": {"cluster": {"name": "pg-main"}, "method": method},
        },
    )
    if status is not None:
        flows.custom.patch_namespaced_custom_object_status(
            *CNPG, flows.namespace, "backups", name, {"status": status}
        )
    return ObjectKey("postgresql.cnpg.io/Backup", flows.namespace, name)


COMPLETED = {
    "phase": "completed",
    "method": "barmanObjectStore",
    "startedAt": "2026-01-06T02:00:00Z",
    "stoppedAt": "2026-01-06T02:03:00Z",
    "backupId": "20260106T020000",
}


def _cnpg_schedule(
    flows: DiscoveryWorld, name: str = "pg-main-nightly", *, suspend: bool = False, last: str | None = None
) -> ObjectKey:
    flows.custom.create_namespaced_custom_object(
        *CNPG,
        flows.namespace,
        "scheduledbackups",
        {
            "apiVersion": "postgresql.cnpg.io/v1",
            "kind": "ScheduledBackup",
            "metadata": {"name": name},
            "spec": {"cluster": {"name": "pg-main"}, "schedule": "0 0 2 * * *", "suspend": suspend},
        },
    )
    if last:
        flows.custom.patch_namespaced_custom_object_status(
            *CNPG, flows.namespace, "scheduledbackups", name, {"status": {"lastScheduleTime": last}}
        )
    return ObjectKey("postgresql.cnpg.io/ScheduledBackup", flows.namespace, name)


def _cnpg_mirror(flows: DiscoveryWorld, kind: str, name: str) -> ObjectKey:
    return ObjectKey(kind, flows.namespace, f"cnpg-{name}")


def test_cnpg_backup_is_mirrored_with_cluster_method_phase_times_and_schedule(flows: DiscoveryWorld) -> None:
    _cnpg(flows)
    source = _cnpg_backup(flows, status=COMPLETED)

    assert flows.reconcile(source).result == "succeeded"

    mirror = flows.get(_cnpg_mirror(flows, "Backup", source.name))
    uid = flows.get(source)["metadata"]["uid"]
    assert mirror["spec"] == {
        "name": source.name,
        "source_cnpg": {"name": source.name, "namespace": flows.namespace, "uid": uid},
        "status": "completed",
        "started_at": "2026-01-06T02:00:00Z",
        "completed_at": "2026-01-06T02:03:00Z",
        "schedule_name": "pg-main-nightly",
        "postgres_cluster": "pg-main",
        "method": "barmanObjectStore",
    }
    assert mirror["metadata"]["ownerReferences"][0]["kind"] == "Backup"
    assert mirror["metadata"]["ownerReferences"][0]["uid"] == uid
    assert (
        ObjectKey("postgresql.cnpg.io/ScheduledBackup", flows.namespace, "pg-main-nightly") in flows.woken()
    )


@pytest.mark.parametrize(
    ("phase", "status"),
    [
        (None, "new"),
        ("pending", "new"),
        ("running", "in_progress"),
        ("finalizing", "in_progress"),
        ("completed", "completed"),
        ("failed", "failed"),
        ("walArchivingFailing", "failed"),
    ],
)
def test_cnpg_phase_maps_to_the_backup_status(flows: DiscoveryWorld, phase: str | None, status: str) -> None:
    _cnpg(flows)
    source = _cnpg_backup(flows, status={"phase": phase} if phase else None)

    flows.reconcile(source)

    assert flows.get(_cnpg_mirror(flows, "Backup", source.name))["spec"]["status"] == status


def test_failed_cnpg_backup_carries_its_error_to_the_api(flows: DiscoveryWorld) -> None:
    _cnpg(flows)
    error = "can't execute backup: barman-cloud-backup exited with code 4"
    source = _cnpg_backup(
        flows, status={"phase": "failed", "error": error, "startedAt": "2026-01-06T02:00:00Z"}, schedule=None
    )
    flows.reconcile(source)

    assert flows.reconcile(_cnpg_mirror(flows, "Backup", source.name)).result == "succeeded"

    [stored] = flows.api_objects("backups")
    assert (stored["status"], stored["error"], stored["completed_at"], stored["schedule_name"]) == (
        "failed",
        error,
        None,
        None,
    )


def test_cnpg_scheduled_backup_is_mirrored_with_its_newest_backup(flows: DiscoveryWorld) -> None:
    _cnpg(flows)
    _cnpg_backup(flows, "pg-main-20260105020000", status={**COMPLETED, "startedAt": "2026-01-05T02:00:00Z"})
    _cnpg_backup(flows, "pg-main-20260106020000", status=COMPLETED)
    _cnpg_backup(
        flows, "pg-main-manual", status={**COMPLETED, "startedAt": "2026-01-06T09:00:00Z"}, schedule=None
    )
    source = _cnpg_schedule(flows, suspend=True, last="2026-01-06T02:00:00Z")

    assert flows.reconcile(source).result == "succeeded"

    spec = flows.get(_cnpg_mirror(flows, "BackupSchedule", "pg-main-nightly"))["spec"]
    assert {k: v for k, v in spec.items() if k != "source_cnpg"} == {
        "name": "pg-main-nightly",
        "schedule_cron": "0 0 2 * * *",
        "paused": True,
        "last_backup_at": "2026-01-06T02:00:00Z",
        "last_backup_name": "pg-main-20260106020000",
        "postgres_cluster": "pg-main",
        "method": "barmanObjectStore",
    }


def test_cnpg_backup_and_schedule_reach_the_api_and_leave_it_with_their_sources(
    flows: DiscoveryWorld,
) -> None:
    _cnpg(flows)
    backup = _cnpg_backup(flows, status=COMPLETED)
    schedule = _cnpg_schedule(flows, last="2026-01-06T02:00:00Z")
    flows.reconcile(backup)
    flows.reconcile(schedule)

    assert flows.reconcile(_cnpg_mirror(flows, "Backup", backup.name)).result == "succeeded"
    assert flows.reconcile(_cnpg_mirror(flows, "BackupSchedule", "pg-main-nightly")).result == "succeeded"

    [stored_backup] = flows.api_objects("backups")
    [stored_schedule] = flows.api_objects("backup-schedules")
    common = {"cluster": flows.cluster_id, "namespace": flows.namespace, "source": "cnpg"}
    assert {
        k: stored_backup[k]
        for k in (*common, "name", "status", "postgres_cluster", "method", "schedule_name", "error")
    } == {
        **common,
        "name": backup.name,
        "status": "completed",
        "postgres_cluster": "pg-main",
        "method": "barmanObjectStore",
        "schedule_name": "pg-main-nightly",
        "error": None,
    }
    assert (stored_backup["started_at"], stored_backup["completed_at"]) == (
        "2026-01-06T02:00:00Z",
        "2026-01-06T02:03:00Z",
    )
    assert {
        k: stored_schedule[k] for k in (*common, "name", "schedule_cron", "paused", "last_backup_name")
    } == {
        **common,
        "name": "pg-main-nightly",
        "schedule_cron": "0 0 2 * * *",
        "paused": False,
        "last_backup_name": backup.name,
    }

    # CloudNativePG deletes them (retention, or by hand): the CRs go with them, the API follows.
    flows.custom.delete_namespaced_custom_object(*CNPG, flows.namespace, "backups", backup.name)
    flows.custom.delete_namespaced_custom_object(*CNPG, flows.namespace, "scheduledbackups", schedule.name)
    flows.reconcile(_cnpg_mirror(flows, "Backup", backup.name))
    flows.reconcile(_cnpg_mirror(flows, "BackupSchedule", "pg-main-nightly"))

    assert flows.get(_cnpg_mirror(flows, "Backup", backup.name)) is None
    assert flows.api_objects("backups") == []
    assert flows.api_objects("backup-schedules") == []


def test_cnpg_backups_are_not_discovered_unless_cnpg_enabled(flows: DiscoveryWorld) -> None:
    _velero(flows)  # backup_discovery on, cnpg_enabled left at its default (false)
    source = _cnpg_backup(flows, status=COMPLETED)

    flows.reconcile(source)

    assert flows.get(_cnpg_mirror(flows, "Backup", source.name)) is None


def test_switching_cnpg_off_removes_the_mirrors_and_their_api_objects(flows: DiscoveryWorld) -> None:
    _cnpg(flows)
    source = _cnpg_backup(flows, status=COMPLETED)
    flows.reconcile(source)
    flows.reconcile(_cnpg_mirror(flows, "Backup", source.name))
    assert len(flows.api_objects("backups")) == 1

    flows.operator_config(backup_discovery={"cnpg_enabled": False})
    flows.reconcile(_cnpg_mirror(flows, "Backup", source.name))
    flows.reconcile(_cnpg_mirror(flows, "Backup", source.name))

    assert flows.get(_cnpg_mirror(flows, "Backup", source.name)) is None
    assert flows.api_objects("backups") == []


def test_cnpg_backups_in_an_ignored_namespace_are_not_discovered(flows: DiscoveryWorld) -> None:
    _cnpg(flows, ignore_namespaces=[flows.namespace])
    source = _cnpg_backup(flows, status=COMPLETED)

    flows.reconcile(source)

    assert flows.get(_cnpg_mirror(flows, "Backup", source.name)) is None
