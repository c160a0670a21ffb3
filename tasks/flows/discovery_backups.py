"""Backup discovery: Velero and CloudNativePG backups → polycrate.io Backup/BackupSchedule → the API.

Velero objects in `backup_discovery.velero_namespace` (unless ignored) are mirrored into
`velero-<name>` next to them and owned by them, so a Backup that Velero expires takes its CR
and API object along. Velero records only the time of a Schedule's last backup, so its name is
that of the newest Backup labelled `velero.io/schedule-name` (the spec's `status.lastBackup.
{startTime,name}` object is read too), and a Backup wakes its Schedule.

With `backup_discovery.cnpg_enabled`, CloudNativePG's `postgresql.cnpg.io/v1` Backups and
ScheduledBackups (in any namespace the section watches) are mirrored the same way into
`cnpg-<name>`, with the same API shape plus what CloudNativePG adds: the PostgreSQL cluster,
the method and the error. A ScheduledBackup's last backup is the newest Backup labelled
`cnpg.io/scheduled-backup`. Clusters without CloudNativePG simply have no such sources: the
watcher skips them with one log line and picks them up when the CRDs arrive.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel

from polycrate.keys import ObjectKey
from polycrate.kubeclient.api import JsonObject
from polycrate.kubeclient.errors import NotFound
from polycrate.models import (
    DISCOVERED_LABEL,
    BackupScheduleSpec,
    BackupSpec,
    backup_state_from_cnpg,
    backup_state_from_velero,
)
from polycrate.models.config import BackupDiscovery
from polycrate.models.discovery import MirroredBackupSpec
from tasks.context import WorkerContext
from tasks.dispatch import KindHandler
from tasks.flows.discovered import (
    ScopedDiscoveredHandler,
    apply_discovered,
    bounded_name,
    delete_discovered,
    label_value,
    moment,
    owner_reference,
    serialized_spec,
)
from tasks.flows.operator_config import ApiTarget, read_operator_config
from tasks.status import timestamp
from workers.polycrate_api import PolycrateApiClient, ResourceCollection

SECTION = "backup_discovery"
VELERO_BACKUP = "velero.io/Backup"
VELERO_SCHEDULE = "velero.io/Schedule"
SCHEDULE_NAME_LABEL = "velero.io/schedule-name"
BACKUP_SOURCE_LABEL = "backups.polycrate.io/source"
SCHEDULE_SOURCE_LABEL = "backupschedules.polycrate.io/source"
CNPG_BACKUP = "postgresql.cnpg.io/Backup"
CNPG_SCHEDULED_BACKUP = "postgresql.cnpg.io/ScheduledBackup"
CNPG_SCHEDULE_LABEL = "cnpg.io/scheduled-backup"
CNPG_DEFAULT_METHOD = "barmanObjectStore"


def mirror_name(velero_name: str) -> str:
    """The CR of Velero Backup or Schedule `daily` is `velero-daily`."""
    return bounded_name(f"velero-{velero_name}")


def out_of_scope(section: BackupDiscovery, namespace: str) -> str | None:
    """Why `backup_discovery` leaves Velero objects in `namespace` out, or None."""
    if namespace != section.velero_namespace:
        return f"namespace {namespace} is not spec.{SECTION}.velero_namespace ({section.velero_namespace})"
    if not section.watches(namespace):
        return f"namespace {namespace} is not watched by spec.{SECTION}"
    return None


def cnpg_mirror_name(cnpg_name: str) -> str:
    """The CR of CloudNativePG Backup or ScheduledBackup `nightly` is `cnpg-nightly`."""
    return bounded_name(f"cnpg-{cnpg_name}")


def cnpg_out_of_scope(section: BackupDiscovery, namespace: str) -> str | None:
    """Why `backup_discovery` leaves CloudNativePG objects in `namespace` out, or None."""
    if not section.cnpg_enabled:
        return f"spec.{SECTION}.cnpg_enabled is false"
    if not section.watches(namespace):
        return f"namespace {namespace} is not watched by spec.{SECTION}"
    return None


def _source_ref(source: JsonObject) -> dict[str, Any]:
    metadata = source.get("metadata") or {}
    return {"name": metadata["name"], "namespace": metadata.get("namespace"), "uid": metadata.get("uid")}


def _mirror(
    source: JsonObject,
    model: type[BaseModel],
    fields: dict[str, Any],
    *,
    source_label: str,
    what: str,
    name_of: Callable[[str], str] = mirror_name,
) -> JsonObject:
    """The CR mirroring `source` (a `what`, e.g. "Velero Backup"): owned by it, labelled with its
    name, and `fields` as a `model` spec; a field the model rejects is named with the source."""
    metadata = source.get("metadata") or {}
    return {
        "metadata": {
            "name": name_of(str(metadata["name"])),
            "namespace": metadata["namespace"],
            "labels": {source_label: label_value(str(metadata["name"])), DISCOVERED_LABEL: "true"},
            "ownerReferences": [owner_reference(source)],
        },
        "spec": serialized_spec(model, fields, f"{what} {metadata['namespace']}/{metadata['name']}"),
    }


def _newest_of_schedule(
    backups: Iterable[JsonObject], schedule_label: str, schedule: str, started_field: str
) -> JsonObject | None:
    """The backup labelled as `schedule`'s that started last (one not yet started counts from its
    creation), or None; Velero and CloudNativePG differ only in the label and the status field."""

    def started(backup: JsonObject) -> datetime:
        return (
            moment((backup.get("status") or {}).get(started_field))
            or moment((backup.get("metadata") or {}).get("creationTimestamp"))
            or datetime.min.replace(tzinfo=UTC)
        )

    own = [
        b for b in backups if ((b.get("metadata") or {}).get("labels") or {}).get(schedule_label) == schedule
    ]
    return max(own, key=started, default=None)


def desired_backup(source: JsonObject) -> JsonObject:
    """The polycrate.io Backup that mirrors a Velero Backup, per the Backup-Mapping table."""
    metadata = source.get("metadata") or {}
    spec = source.get("spec") or {}
    status = source.get("status") or {}
    fields = {
        "name": metadata["name"],
        "source_velero": _source_ref(source),
        "status": backup_state_from_velero(status.get("phase")),
        "retention_policy": spec.get("ttl"),
        "started_at": status.get("startTimestamp"),
        "completed_at": status.get("completionTimestamp"),
        "items_backed_up": (status.get("progress") or {}).get("itemsBackedUp"),
        "schedule_name": (metadata.get("labels") or {}).get(SCHEDULE_NAME_LABEL),
    }
    return _mirror(source, BackupSpec, fields, source_label=BACKUP_SOURCE_LABEL, what="Velero Backup")


def last_backup(ctx: WorkerContext, schedule: JsonObject) -> tuple[str | None, str | None]:
    """(last_backup_at, last_backup_name) of a Velero Schedule."""
    metadata = schedule.get("metadata") or {}
    recorded = (schedule.get("status") or {}).get("lastBackup")
    if isinstance(recorded, dict):
        return recorded.get("startTime"), recorded.get("name")
    newest = _newest_of_schedule(
        ctx.objects.list(VELERO_BACKUP, str(metadata["namespace"])),
        SCHEDULE_NAME_LABEL,
        metadata["name"],
        "startTimestamp",
    )
    if newest is None:
        return recorded, None
    started = recorded or (newest.get("status") or {}).get("startTimestamp")
    return started, str(newest["metadata"]["name"])


def desired_schedule(ctx: WorkerContext, source: JsonObject) -> JsonObject:
    """The polycrate.io BackupSchedule that mirrors a Velero Schedule, per the Schedule-Mapping table."""
    metadata = source.get("metadata") or {}
    spec = source.get("spec") or {}
    last_at, last_name = last_backup(ctx, source)
    fields = {
        "name": metadata["name"],
        "source_velero": _source_ref(source),
        "schedule_cron": spec.get("schedule"),
        "paused": bool(spec.get("paused")),
        "last_backup_at": last_at,
        "last_backup_name": last_name,
    }
    return _mirror(
        source, BackupScheduleSpec, fields, source_label=SCHEDULE_SOURCE_LABEL, what="Velero Schedule"
    )


class _SourceMirrorHandler(KindHandler):
    """First stage: a backup tool's object → its polycrate.io mirror (`mirror_kind`), deleted when
    it falls out of scope; a backup made by a schedule wakes that schedule (`schedule_kind`)."""

    mirror_kind: str
    schedule_label: str | None = None
    schedule_kind: str | None = None

    @abstractmethod
    def mirror_name(self, name: str) -> str:
        """The name of the mirror CR of the source object `name`."""

    @abstractmethod
    def out_of_scope(self, section: BackupDiscovery, namespace: str) -> str | None:
        """Why `backup_discovery` leaves this tool's objects in `namespace` out, or None."""

    @abstractmethod
    def desired(self, ctx: WorkerContext, obj: JsonObject) -> JsonObject:
        """The mirror CR (metadata and spec) the source object should have."""

    def reconcile(self, ctx: WorkerContext, key: ObjectKey, obj: JsonObject) -> None:
        config = read_operator_config(ctx)
        section = config.section(SECTION) if config else None
        if section is None or (obj.get("metadata") or {}).get("deletionTimestamp"):
            return  # discovery off, or going away: the garbage collector takes its CR along
        excluded = self.out_of_scope(section, key.namespace)
        if excluded:
            mirror = ObjectKey(self.mirror_kind, key.namespace, self.mirror_name(key.name))
            delete_discovered(ctx, mirror, reason=excluded)
            return
        apply_discovered(ctx, self.mirror_kind, self.desired(ctx, obj))
        labels = (obj.get("metadata") or {}).get("labels") or {}
        schedule = labels.get(self.schedule_label) if self.schedule_label else None
        if schedule and self.schedule_kind:
            ctx.enqueue(
                [ObjectKey(self.schedule_kind, key.namespace, schedule)],
                reason="its backup changed",
            )


class _VeleroMirrorHandler(_SourceMirrorHandler):
    def mirror_name(self, name: str) -> str:
        return mirror_name(name)

    def out_of_scope(self, section: BackupDiscovery, namespace: str) -> str | None:
        return out_of_scope(section, namespace)


class VeleroBackupHandler(_VeleroMirrorHandler):
    """A Velero Backup → its polycrate.io Backup; wakes the Schedule that made it."""

    kind = VELERO_BACKUP
    mirror_kind = "Backup"
    schedule_label = SCHEDULE_NAME_LABEL
    schedule_kind = VELERO_SCHEDULE

    def desired(self, ctx: WorkerContext, obj: JsonObject) -> JsonObject:
        return desired_backup(obj)


class VeleroScheduleHandler(_VeleroMirrorHandler):
    """A Velero Schedule → its polycrate.io BackupSchedule."""

    kind = VELERO_SCHEDULE
    mirror_kind = "BackupSchedule"

    def desired(self, ctx: WorkerContext, obj: JsonObject) -> JsonObject:
        return desired_schedule(ctx, obj)


# --- CloudNativePG -------------------------------------------------------------------------------------


def _cnpg_common(source: JsonObject) -> dict[str, Any]:
    spec, status = source.get("spec") or {}, source.get("status") or {}
    return {
        "source_cnpg": _source_ref(source),
        "postgres_cluster": (spec.get("cluster") or {}).get("name"),
        "method": status.get("method") or spec.get("method") or CNPG_DEFAULT_METHOD,
    }


def desired_cnpg_backup(source: JsonObject) -> JsonObject:
    """The polycrate.io Backup that mirrors a CloudNativePG Backup, in the Velero mapping's shape."""
    metadata = source.get("metadata") or {}
    status = source.get("status") or {}
    fields = {
        "name": metadata["name"],
        **_cnpg_common(source),
        "status": backup_state_from_cnpg(status.get("phase")),
        "started_at": status.get("startedAt"),
        "completed_at": status.get("stoppedAt"),
        "schedule_name": (metadata.get("labels") or {}).get(CNPG_SCHEDULE_LABEL),
        "error": status.get("error") or None,
    }
    return _mirror(
        source,
        BackupSpec,
        fields,
        source_label=BACKUP_SOURCE_LABEL,
        what="CloudNativePG Backup",
        name_of=cnpg_mirror_name,
    )


def desired_cnpg_schedule(ctx: WorkerContext, source: JsonObject) -> JsonObject:
    """The polycrate.io BackupSchedule that mirrors a CloudNativePG ScheduledBackup.

    `schedule_cron` keeps CloudNativePG's six-field form (with seconds); `paused` is
    spec.suspend; the last backup is the time CloudNativePG last scheduled one and the newest
    Backup it labelled with this schedule.
    """
    metadata = source.get("metadata") or {}
    spec, status = source.get("spec") or {}, source.get("status") or {}
    try:
        listed = ctx.objects.list(CNPG_BACKUP, str(metadata["namespace"]))
    except NotFound:
        listed = []  # only ScheduledBackup's CRD is installed: no backups yet
    newest = _newest_of_schedule(listed, CNPG_SCHEDULE_LABEL, metadata["name"], "startedAt")
    fields = {
        "name": metadata["name"],
        **_cnpg_common(source),
        "schedule_cron": spec.get("schedule"),
        "paused": bool(spec.get("suspend")),
        "last_backup_at": status.get("lastScheduleTime")
        or ((newest.get("status") or {}).get("startedAt") if newest else None),
        "last_backup_name": str(newest["metadata"]["name"]) if newest else None,
    }
    return _mirror(
        source,
        BackupScheduleSpec,
        fields,
        source_label=SCHEDULE_SOURCE_LABEL,
        what="CloudNativePG ScheduledBackup",
        name_of=cnpg_mirror_name,
    )


class _CnpgMirrorHandler(_SourceMirrorHandler):
    def mirror_name(self, name: str) -> str:
        return cnpg_mirror_name(name)

    def out_of_scope(self, section: BackupDiscovery, namespace: str) -> str | None:
        return cnpg_out_of_scope(section, namespace)


class CnpgBackupHandler(_CnpgMirrorHandler):
    """A CloudNativePG Backup → its polycrate.io Backup; wakes its ScheduledBackup."""

    kind = CNPG_BACKUP
    mirror_kind = "Backup"
    schedule_label = CNPG_SCHEDULE_LABEL
    schedule_kind = CNPG_SCHEDULED_BACKUP

    def desired(self, ctx: WorkerContext, obj: JsonObject) -> JsonObject:
        return desired_cnpg_backup(obj)


class CnpgScheduledBackupHandler(_CnpgMirrorHandler):
    """A CloudNativePG ScheduledBackup → its polycrate.io BackupSchedule."""

    kind = CNPG_SCHEDULED_BACKUP
    mirror_kind = "BackupSchedule"

    def desired(self, ctx: WorkerContext, obj: JsonObject) -> JsonObject:
        return desired_cnpg_schedule(ctx, obj)


# --- the second stage: polycrate.io Backup/BackupSchedule → the API ---------------------------------


def _when(moment: datetime | None) -> str | None:
    return timestamp(moment) if moment else None


class _MirroredBackupHandler(ScopedDiscoveredHandler):
    section = SECTION

    def out_of_scope(self, section: Any, key: ObjectKey, obj: JsonObject, spec: BaseModel) -> str | None:
        assert isinstance(spec, MirroredBackupSpec)
        if spec.source_velero:
            return out_of_scope(section, key.namespace)
        return cnpg_out_of_scope(section, key.namespace)

    @staticmethod
    def _identity(key: ObjectKey, spec: MirroredBackupSpec, target: ApiTarget) -> dict[str, Any]:
        source = spec.source_velero or spec.source_cnpg
        return {
            "cluster": target.cluster_id,
            "namespace": (source.namespace if source else None) or key.namespace,
            "source": "velero" if spec.source_velero else "cnpg",
        }


class BackupHandler(_MirroredBackupHandler):
    """Second stage: a polycrate.io Backup → the Polycrate API's /backups/."""

    kind = "Backup"

    def collection(self, client: PolycrateApiClient) -> ResourceCollection:
        return client.backups

    def payload(
        self, ctx: WorkerContext, key: ObjectKey, obj: JsonObject, spec: BaseModel, target: ApiTarget
    ) -> dict[str, Any]:
        assert isinstance(spec, BackupSpec)
        return {
            **self._identity(key, spec, target),
            "name": spec.name,
            "status": spec.status,
            "retention_policy": spec.retention_policy,
            "started_at": _when(spec.started_at),
            "completed_at": _when(spec.completed_at),
            "items_backed_up": spec.items_backed_up,
            "schedule_name": spec.schedule_name,
            "postgres_cluster": spec.postgres_cluster,
            "method": spec.method,
            "error": spec.error,
        }


class BackupScheduleHandler(_MirroredBackupHandler):
    """Second stage: a polycrate.io BackupSchedule → the Polycrate API's /backup-schedules/."""

    kind = "BackupSchedule"

    def collection(self, client: PolycrateApiClient) -> ResourceCollection:
        return client.backup_schedules

    def payload(
        self, ctx: WorkerContext, key: ObjectKey, obj: JsonObject, spec: BaseModel, target: ApiTarget
    ) -> dict[str, Any]:
        assert isinstance(spec, BackupScheduleSpec)
        return {
            **self._identity(key, spec, target),
            "name": spec.name,
            "schedule_cron": spec.schedule_cron,
            "paused": spec.paused,
            "last_backup_at": _when(spec.last_backup_at),
            "last_backup_name": spec.last_backup_name,
            "postgres_cluster": spec.postgres_cluster,
            "method": spec.method,
        }


def handlers() -> list[KindHandler]:
    return [
        VeleroBackupHandler(),
        VeleroScheduleHandler(),
        CnpgBackupHandler(),
        CnpgScheduledBackupHandler(),
        BackupHandler(),
        BackupScheduleHandler(),
    ]
