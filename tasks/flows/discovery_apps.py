"""K8sApp and Artifact discovery: meta Secrets and Pods → K8sApp and Artifact CRs → the API.

A meta Secret (data keys in `META_KEYS`) becomes a K8sApp owned by it; its handler derives the
installation flags, resolves the block id and syncs to /k8sapps/. Each image of an active Pod
becomes a cluster-scoped Artifact (no owner) counting its Pods per namespace; `last_seen_at`
moves only when the counts do, and an Artifact without Pods for `stale_threshold_hours` is
deleted while the API keeps it as an archive (its handler asks to run again at that moment,
`comes_due`, not at the next resync). K8sApps and Artifacts are linked by namespace;
each side wakes the other after its own status write, so neither reads a stale partner.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import functools
import logging
import re
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel

from polycrate.errors import InvalidSpecError
from polycrate.keys import ObjectKey
from polycrate.kubeclient.api import JsonObject
from polycrate.kubeclient.errors import Conflict, NotFound
from polycrate.models import (
    API_VERSION,
    DISCOVERED_LABEL,
    ArtifactSpec,
    K8sAppSpec,
    artifact_name,
    parse_image,
)
from polycrate.models.config import ArtifactDiscovery
from polycrate.models.discovery import is_meta_secret
from polycrate.models.fieldtypes import OBJECT_NAME_PATTERN
from tasks.context import WorkerContext
from tasks.dispatch import KindHandler
from tasks.flows.discovered import (
    ScopedDiscoveredHandler,
    apply_discovered,
    delete_discovered,
    label_value,
    moment,
    owner_reference,
    serialized_spec,
)
from tasks.flows.operator_config import (
    SNAKE_CASE_SYNC,
    ApiTarget,
    read_operator_config,
)
from tasks.status import timestamp
from workers.polycrate_api import PolycrateApiClient, ResourceCollection

log = logging.getLogger(__name__)

APP_SECTION = "app_discovery"
ARTIFACT_SECTION = "artifact_discovery"

BLOCK_LABEL = "k8sapps.polycrate.io/block"
BLOCK_KIND_LABEL = "k8sapps.polycrate.io/kind"
BLOCK_TYPE_LABEL = "k8sapps.polycrate.io/type"
REGISTRY_LABEL = "artifacts.polycrate.io/registry"
REPOSITORY_LABEL = "artifacts.polycrate.io/repository"
TAG_LABEL = "artifacts.polycrate.io/tag"

REQUIRED_META_KEYS = ("organization", "workspace", "block", "name")
# Every key a meta Secret's data may hold; `kind` (e.g. helm) only labels the K8sApp.
META_KEYS = (
    *REQUIRED_META_KEYS,
    "namespace",
    "display_name",
    "version",
    "app_version",
    "from",
    "type",
    "flavor",
    "kind",
    "chart_name",
    "chart_version",
    "chart_repo_url",
    "action_name",
    "action_status",
    "action_last_executed_at",
)
FINISHED_POD_PHASES = frozenset({"Succeeded", "Failed"})


def _listed(ctx: WorkerContext, kind: str, namespace: str = "", label_selector: str = "") -> list[JsonObject]:
    """The objects of `kind`; none when its CRD is not installed yet."""
    try:
        return ctx.objects.list(kind, namespace, label_selector=label_selector)
    except NotFound:
        return []


def _status(obj: JsonObject) -> JsonObject:
    return obj.get("status") or {}


def _name(obj: JsonObject) -> str:
    return str((obj.get("metadata") or {})["name"])


# --- meta Secret → K8sApp -------------------------------------------------------------------------


def meta_data(secret: JsonObject) -> dict[str, str]:
    """The known keys of the meta Secret's data, decoded; other keys are never read.

    Errors name the key, never a value.
    """
    metadata = secret.get("metadata") or {}
    data = secret.get("data") or {}
    decoded: dict[str, str] = {}
    for key in META_KEYS:
        if key not in data:
            continue
        try:
            decoded[key] = base64.b64decode(data[key], validate=True).decode().strip()
        except (binascii.Error, UnicodeDecodeError):
            raise InvalidSpecError(
                f"meta Secret {metadata.get('namespace')}/{metadata.get('name')}: "
                f"data.{key} is not base64-encoded UTF-8 text"
            ) from None
    return decoded


def _optional(data: dict[str, str], fields: dict[str, str]) -> dict[str, str]:
    """{field: data[key]} for each field → key whose key is present and non-empty."""
    return {field: data[key] for field, key in fields.items() if data.get(key)}


def desired_k8sapp(secret: JsonObject) -> JsonObject:
    """The K8sApp that a meta Secret describes (metadata and spec)."""
    metadata = secret.get("metadata") or {}
    where = f"meta Secret {metadata['namespace']}/{metadata['name']}"
    data = meta_data(secret)
    missing = [key for key in REQUIRED_META_KEYS if not data.get(key)]
    if missing:
        raise InvalidSpecError(
            f"{where}: data lacks {', '.join(missing)} (a meta Secret names {', '.join(REQUIRED_META_KEYS)})"
        )
    if len(data["name"]) > 253 or not re.match(OBJECT_NAME_PATTERN, data["name"]):
        raise InvalidSpecError(
            f"{where}: data.name is not a Kubernetes object name (lower-case letters, digits, '-' and '.')"
        )
    block: dict[str, Any] = {
        "name": data["block"],
        **_optional(
            data,
            {
                "display_name": "display_name",
                "version": "version",
                "app_version": "app_version",
                "from": "from",
                "type": "type",
                "flavor": "flavor",
            },
        ),
    }
    if data.get("chart_name"):
        block["chart"] = {
            "name": data["chart_name"],
            **_optional(data, {"version": "chart_version", "repo_url": "chart_repo_url"}),
        }
    fields: dict[str, Any] = {
        "block": block,
        "workspace": {"name": data["workspace"], "organization": data["organization"]},
    }
    if data.get("action_name"):
        fields["action"] = {
            "name": data["action_name"],
            **_optional(data, {"status": "action_status", "last_executed_at": "action_last_executed_at"}),
        }
    labels = {BLOCK_LABEL: label_value(data["block"]), DISCOVERED_LABEL: "true"}
    if data.get("kind"):
        labels[BLOCK_KIND_LABEL] = label_value(data["kind"])
    if data.get("type"):
        labels[BLOCK_TYPE_LABEL] = label_value(data["type"])
    return {
        "metadata": {
            "name": data["name"],
            "namespace": metadata["namespace"],
            "labels": labels,
            "ownerReferences": [owner_reference(secret)],
        },
        "spec": serialized_spec(K8sAppSpec, fields, where),
    }


def _owned_by(obj: JsonObject, uid: str) -> bool:
    return any(ref.get("uid") == uid for ref in (obj.get("metadata") or {}).get("ownerReferences") or [])


class MetaSecretHandler(KindHandler):
    """First stage: a meta Secret → its K8sApp; a Secret that stops being one loses it."""

    kind = "Secret"

    def reconcile(self, ctx: WorkerContext, key: ObjectKey, obj: JsonObject) -> None:
        config = read_operator_config(ctx)
        section = config.section(APP_SECTION) if config else None
        if section is None:
            return
        wanted = None
        gone = bool((obj.get("metadata") or {}).get("deletionTimestamp"))
        if is_meta_secret(obj) and not gone and section.watches(key.namespace):
            desired = desired_k8sapp(obj)
            apply_discovered(ctx, "K8sApp", desired)
            wanted = desired["metadata"]["name"]
        uid = str((obj.get("metadata") or {}).get("uid"))
        # A renamed block (data.name), or a Secret that is no meta Secret any more.
        for app in _listed(ctx, "K8sApp", key.namespace, f"{DISCOVERED_LABEL}=true"):
            if _owned_by(app, uid) and _name(app) != wanted:
                delete_discovered(
                    ctx,
                    ObjectKey("K8sApp", key.namespace, _name(app)),
                    reason=f"{key.describe()} no longer names it",
                )


# --- Pod → Artifact ---------------------------------------------------------------------------------


def pod_images(pod: JsonObject) -> list[str]:
    """The images of the pod's containers and init containers."""
    spec = pod.get("spec") or {}
    containers = [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]
    return list(dict.fromkeys(str(c["image"]) for c in containers if c.get("image")))


def pod_is_active(pod: JsonObject) -> bool:
    return _status(pod).get("phase") not in FINISHED_POD_PHASES


@functools.lru_cache(maxsize=4096)
def image_artifact(image: str) -> ArtifactSpec | None:
    """The Artifact spec of an image reference; None for one no runtime could pull."""
    try:
        return parse_image(image)
    except ValueError:
        return None


def artifact_name_of(image: str) -> str | None:
    spec = image_artifact(image)
    return artifact_name(spec) if spec else None


def registry_excluded(section: ArtifactDiscovery, spec: ArtifactSpec) -> bool:
    registry = spec.registry
    return bool({registry.hostname, f"{registry.hostname}:{registry.port}"} & set(section.exclude_registries))


def desired_artifact(spec: ArtifactSpec) -> JsonObject:
    """The cluster-scoped Artifact of an image, with the spec's labels."""
    labels = {
        REGISTRY_LABEL: label_value(spec.registry.hostname),
        REPOSITORY_LABEL: label_value(spec.repository.path),
        DISCOVERED_LABEL: "true",
    }
    if spec.tag:
        labels[TAG_LABEL] = label_value(spec.tag)
    return {
        "metadata": {"name": artifact_name(spec), "labels": labels},
        "spec": spec.model_dump(mode="json", exclude_none=True),
    }


def artifacts_used_in(ctx: WorkerContext, namespace: str) -> list[ObjectKey]:
    return [
        ObjectKey("Artifact", "", _name(artifact))
        for artifact in _listed(ctx, "Artifact")
        if any(usage.get("name") == namespace for usage in _status(artifact).get("used_in_namespaces") or [])
    ]


class PodHandler(KindHandler):
    """First stage: a running Pod's images → Artifacts (created, or woken to count again)."""

    kind = "Pod"

    def fetch(self, ctx: WorkerContext, key: ObjectKey) -> JsonObject | None:
        pod = ctx.objects.get(key)
        if pod is None:
            # A deleted Pod no longer says which images it ran: recount those used in its namespace.
            config = read_operator_config(ctx)
            if config and config.section(ARTIFACT_SECTION):
                ctx.enqueue(artifacts_used_in(ctx, key.namespace), reason=f"{key} deleted")
        return pod

    def reconcile(self, ctx: WorkerContext, key: ObjectKey, obj: JsonObject) -> None:
        config = read_operator_config(ctx)
        section = config.section(ARTIFACT_SECTION) if config else None
        if section is None or not section.watches(key.namespace):
            return
        recount: list[ObjectKey] = []
        for image in pod_images(obj):
            spec = image_artifact(image)
            if spec is None:
                log.warning("%s: image %r is not a pullable reference; no Artifact for it", key, image)
                continue
            if registry_excluded(section, spec):
                continue
            artifact_key = ObjectKey("Artifact", "", artifact_name(spec))
            if ctx.objects.get(artifact_key) is not None:
                recount.append(artifact_key)
            elif pod_is_active(obj):
                recount += self._create(ctx, artifact_key, spec)
        ctx.enqueue(recount, reason=f"{key} changed")

    @staticmethod
    def _create(ctx: WorkerContext, key: ObjectKey, spec: ArtifactSpec) -> list[ObjectKey]:
        """Create the Artifact (its creation wakes it); one created meanwhile is woken instead.

        An existing Artifact's spec is never rewritten: pods may spell one image differently
        (nginx, docker.io/library/nginx:latest), and the first spelling seen stays.
        """
        try:
            ctx.objects.create(
                "Artifact", {"apiVersion": API_VERSION, "kind": "Artifact", **desired_artifact(spec)}
            )
        except Conflict:
            return [key]
        log.info("created %s", key)
        return []


# --- the K8sApp handler -------------------------------------------------------------------------------


def _artifact_keys(status: JsonObject) -> set[ObjectKey]:
    return {ObjectKey("Artifact", "", str(a["name"])) for a in status.get("artifacts") or [] if a.get("name")}


class K8sAppHandler(ScopedDiscoveredHandler):
    """Second stage: a K8sApp → /k8sapps/ with its block id, plus the images of its namespace."""

    kind = "K8sApp"
    section = APP_SECTION

    def collection(self, client: PolycrateApiClient) -> ResourceCollection:
        return client.k8sapps

    def out_of_scope(self, section: Any, key: ObjectKey, obj: JsonObject, spec: BaseModel) -> str | None:
        if not section.watches(key.namespace):
            return f"namespace {key.namespace} is not watched by spec.{APP_SECTION}"
        return None

    def observe(
        self, ctx: WorkerContext, key: ObjectKey, obj: JsonObject, spec: BaseModel, section: Any
    ) -> dict[str, Any]:
        assert isinstance(spec, K8sAppSpec)
        artifacts = []
        for artifact in _listed(ctx, "Artifact"):
            pods = {
                u.get("name"): u.get("pod_count") for u in _status(artifact).get("used_in_namespaces") or []
            }
            if key.namespace in pods:
                artifacts.append(
                    {
                        "name": _name(artifact),
                        "image": (artifact.get("spec") or {}).get("image"),
                        "pod_count": pods[key.namespace],
                    }
                )
        artifacts.sort(key=lambda a: a["name"])
        return {**spec.installation_flags(), "artifacts": artifacts, "artifact_count": len(artifacts)}

    def payload(
        self, ctx: WorkerContext, key: ObjectKey, obj: JsonObject, spec: BaseModel, target: ApiTarget
    ) -> dict[str, Any]:
        assert isinstance(spec, K8sAppSpec)
        block, action = spec.block, spec.action
        # The spec's K8sApp steps: resolve the meta Secret's organization and workspace names
        # to their UUIDs (API lookups), then create or update the K8sAppInstance with them.
        names = target.client.resolve_workspace(spec.workspace.name, spec.workspace.organization)
        return {
            "cluster": target.cluster_id,
            "namespace": key.namespace,
            "name": key.name,
            "block": target.client.resolve_block_id(
                spec.workspace.name, spec.workspace.organization, block.name
            ),
            "block_name": block.name,
            "block_version": block.version,
            "app_version": block.app_version,
            "display_name": block.display_name,
            "block_source": block.from_,
            "block_type": block.type,
            "flavor": block.flavor,
            "chart": block.chart.model_dump(mode="json") if block.chart else None,
            "workspace_name": spec.workspace.name,
            "organization_name": spec.workspace.organization,
            "workspace_id": names.workspace_id,
            "organization_id": names.organization_id,
            "action_name": action.name if action else None,
            "action_status": action.status if action else None,
            "last_executed_at": timestamp(action.last_executed_at)
            if action and action.last_executed_at
            else None,
            **spec.installation_flags(),
        }

    def status_from_payload(self, payload: dict[str, Any]) -> dict[str, Any]:
        return {
            "block_id": payload["block"],
            "workspace_id": payload["workspace_id"],
            "organization_id": payload["organization_id"],
        }

    def after_write(self, ctx: WorkerContext, key: ObjectKey, before: JsonObject, after: JsonObject) -> None:
        # The Artifacts of its namespace list it with its API id: tell them when it appears or changes.
        if not _status(before).get("phase") or _status(before).get("api_id") != _status(after).get("api_id"):
            ctx.enqueue(_artifact_keys(_status(after)), reason=f"{key} appeared")

    def cleanup(self, ctx: WorkerContext, key: ObjectKey, obj: JsonObject) -> None:
        super().cleanup(ctx, key, obj)
        ctx.enqueue(_artifact_keys(_status(obj)), reason=f"{key} deleted")


# --- the Artifact handler -------------------------------------------------------------------------------


def _usage_of(status: JsonObject) -> dict[str, Any]:
    return {u.get("name"): u.get("pod_count") for u in status.get("used_in_namespaces") or []}


def _app_keys(status: JsonObject) -> set[ObjectKey]:
    return {
        ObjectKey("K8sApp", str(app["namespace"]), str(app["name"]))
        for app in status.get("used_by_k8sapps") or []
        if app.get("name") and app.get("namespace")
    }


class ArtifactHandler(ScopedDiscoveredHandler):
    """Second stage: where an image runs, its K8sApps, stale cleanup, and /artifacts/ (never deleted)."""

    kind = "Artifact"
    section = ARTIFACT_SECTION
    names = dataclasses.replace(SNAKE_CASE_SYNC, synced_phase="Discovered")
    delete_from_api = False

    def collection(self, client: PolycrateApiClient) -> ResourceCollection:
        return client.artifacts

    def out_of_scope(self, section: Any, key: ObjectKey, obj: JsonObject, spec: BaseModel) -> str | None:
        assert isinstance(spec, ArtifactSpec)
        if registry_excluded(section, spec):
            return f"registry {spec.registry.hostname} is in spec.{ARTIFACT_SECTION}.exclude_registries"
        return None

    def not_synced_because(self, section: Any) -> str | None:
        return None if section.sync_to_api else f"spec.{ARTIFACT_SECTION}.sync_to_api false"

    def _pod_counts(self, ctx: WorkerContext, section: ArtifactDiscovery, name: str) -> dict[str, int]:
        """Active pods per watched namespace whose images include this Artifact's."""
        if section.watch_namespaces:
            pods = [pod for ns in section.watch_namespaces for pod in _listed(ctx, "Pod", ns)]
        else:
            pods = _listed(ctx, "Pod")
        counts: dict[str, int] = {}
        for pod in pods:
            namespace = str((pod.get("metadata") or {}).get("namespace") or "")
            if not pod_is_active(pod) or not section.watches(namespace):
                continue
            if any(artifact_name_of(image) == name for image in pod_images(pod)):
                counts[namespace] = counts.get(namespace, 0) + 1
        return counts

    def observe(
        self, ctx: WorkerContext, key: ObjectKey, obj: JsonObject, spec: BaseModel, section: Any
    ) -> dict[str, Any]:
        if section is None:
            return {}  # discovery is off: the last observation stands
        counts = self._pod_counts(ctx, section, key.name)
        status = _status(obj)
        now = timestamp(self.clock())
        previous = {u.get("name"): u for u in status.get("used_in_namespaces") or []}
        used_in = []
        for namespace, count in sorted(counts.items()):
            before = previous.get(namespace) or {}
            unchanged = before.get("pod_count") == count and before.get("last_seen_at")
            used_in.append(
                {
                    "name": namespace,
                    "pod_count": count,
                    "first_seen_at": before.get("first_seen_at") or now,
                    "last_seen_at": before["last_seen_at"] if unchanged else now,
                }
            )
        apps = sorted(
            (
                {"name": _name(app), "namespace": str(app["metadata"]["namespace"])}
                | ({"k8s_app_id": _status(app)["api_id"]} if _status(app).get("api_id") else {})
                for app in _listed(ctx, "K8sApp")
                if (app.get("metadata") or {}).get("namespace") in counts
            ),
            key=lambda app: (app["namespace"], app["name"]),
        )
        pods_changed = _usage_of(status) != counts or not status.get("last_seen_at")
        return {
            "used_in_namespaces": used_in,
            "used_by_k8sapps": apps,
            "total_pod_count": sum(counts.values()),
            "first_discovered_at": status.get("first_discovered_at") or now,
            "last_seen_at": now if pods_changed else status["last_seen_at"],
        }

    def retire_reason(self, section: Any, obj: JsonObject, observed: dict[str, Any]) -> str | None:
        stale_at = self.comes_due(section, observed)
        if stale_at is None or self.clock() < stale_at:
            return None
        return (
            f"no pod has run it for {section.cleanup.stale_threshold_hours}h "
            f"(spec.{ARTIFACT_SECTION}.cleanup.stale_threshold_hours); the Polycrate API keeps it as an archive"
        )

    def comes_due(self, section: Any, observed: Mapping[str, Any]) -> datetime | None:
        """An Artifact without Pods turns stale `stale_threshold_hours` after it was last seen."""
        cleanup = section.cleanup
        last_seen = moment(observed.get("last_seen_at"))
        if not cleanup.enabled or observed.get("total_pod_count") != 0 or last_seen is None:
            return None
        return last_seen + timedelta(hours=cleanup.stale_threshold_hours)

    def payload(
        self, ctx: WorkerContext, key: ObjectKey, obj: JsonObject, spec: BaseModel, target: ApiTarget
    ) -> dict[str, Any]:
        assert isinstance(spec, ArtifactSpec)
        status = _status(obj)
        return {
            "cluster": target.cluster_id,
            "image": spec.image,
            "registry": spec.registry.model_dump(mode="json"),
            "repository": spec.repository.model_dump(mode="json"),
            "tag": spec.tag,
            "digest": spec.digest,
            "used_in_namespaces": [
                {"name": u["name"], "pod_count": u["pod_count"]}
                for u in status.get("used_in_namespaces") or []
            ],
            "total_pod_count": status.get("total_pod_count") or 0,
            "first_discovered_at": status.get("first_discovered_at"),
            "last_seen_at": status.get("last_seen_at"),
        }

    def after_write(self, ctx: WorkerContext, key: ObjectKey, before: JsonObject, after: JsonObject) -> None:
        # K8sApps list the images of their namespace with pod counts: tell those whose view changed.
        if _usage_of(_status(before)) != _usage_of(_status(after)):
            moved = _app_keys(_status(before)) | _app_keys(_status(after))
            ctx.enqueue(moved, reason=f"{key} runs elsewhere now")

    def cleanup(self, ctx: WorkerContext, key: ObjectKey, obj: JsonObject) -> None:
        super().cleanup(ctx, key, obj)
        ctx.enqueue(_app_keys(_status(obj)), reason=f"{key} deleted")


def handlers() -> list[KindHandler]:
    return [MetaSecretHandler(), PodHandler(), K8sAppHandler(), ArtifactHandler()]
