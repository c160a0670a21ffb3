"""Test-only handlers, loaded into real worker processes as the plug-in of tests/plugins (entry point).

The recording handler stands in for the SoftwareDeliveryPlatform handler (a kind of the table
of kinds, so its keys are routed like a real kind's, on `default`; it declares no watches).
Its keys have no Kubernetes object: the "object" is the Redis hash `test:object:<key>`
that a test writes (`version`, `sleep` seconds, `fail` = transient|permanent, `fail_times` =
how many runs fail before one succeeds, -1 for always; `echo` = 1 adds the key again during the
run, as the watcher would on seeing the run's own status write; `write_url` with `writes` = N:
the run makes N external writes, PUT {version, pid} to that URL `sleep` seconds apart, then
PUTs its status to `<write_url>/status`, all through the production HTTP policy, so the run's
fence applies as it does to Keycloak or Harbor). Every run appends what it saw
to `test:runs:<key>` (start/end times, pid, version) and its key to `test:all-runs`, and every
reported failure to `test:failures:<key>`, so tests check ordering, overlap and retry behaviour
from the outside.
`RecordedObjects` is the tests' side of the same Redis layout.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from dataclasses import dataclass
from typing import Any

import redis

from polycrate.errors import PermanentError, PolycrateError, TransientError
from polycrate.httppolicy import new_session
from polycrate.keys import ObjectKey
from polycrate.kubeclient.api import JsonObject
from tasks.context import WorkerContext
from tasks.dispatch import HandlerRegistry, KindHandler
from tasks.queue import KeyQueue

RECORDED_KIND = "SoftwareDeliveryPlatform"
ALL_RUNS = "test:all-runs"


def _object_name(key: ObjectKey) -> str:
    return f"test:object:{key}"


def _runs_name(key: ObjectKey) -> str:
    return f"test:runs:{key}"


def _starts_name(key: ObjectKey) -> str:
    return f"test:starts:{key}"


def _failures_name(key: ObjectKey) -> str:
    return f"test:failures:{key}"


class RecordingHandler(KindHandler):
    """Sleeps, fails on demand, and records every run of a RECORDED_KIND key."""

    kind = RECORDED_KIND

    def fetch(self, ctx: WorkerContext, key: ObjectKey) -> JsonObject | None:
        fields = ctx.redis.hgetall(_object_name(key))
        if not fields:
            return None
        return {name.decode(): value.decode() for name, value in fields.items()}

    def reconcile(self, ctx: WorkerContext, key: ObjectKey, obj: JsonObject) -> None:
        start = time.time()
        attempt = ctx.redis.hincrby(_object_name(key), "attempts", 1)
        ctx.redis.rpush(_starts_name(key), json.dumps({"start": start, "pid": os.getpid()}))
        if obj.get("echo"):
            KeyQueue(ctx.redis, prefix=ctx.settings.redis_prefix).add(key, reason="echo of our own write")
        if obj.get("write_url"):
            self._write_externally(str(obj["write_url"]), obj)
            return
        time.sleep(float(obj.get("sleep") or 0))
        outcome = "succeeded"
        failure = obj.get("fail") or ""
        fail_times = int(obj.get("fail_times") or -1)
        failing = failure and (fail_times < 0 or attempt <= fail_times)
        if failing:
            outcome = failure
        ctx.redis.rpush(ALL_RUNS, str(key))
        ctx.redis.rpush(
            _runs_name(key),
            json.dumps(
                {
                    "start": start,
                    "end": time.time(),
                    "pid": os.getpid(),
                    "version": obj.get("version"),
                    "outcome": outcome,
                }
            ),
        )
        if failing and failure == "transient":
            retry_after = obj.get("retry_after")
            raise TransientError(
                f"{key.describe()}: system unavailable",
                retry_after=float(retry_after) if retry_after else None,
            )
        if failing and failure == "permanent":
            raise PermanentError(
                f"{key.describe()}: spec.field is invalid (use a valid value)", reason="InvalidSpec"
            )
        if failing:
            raise RuntimeError(f"{key.describe()}: unexpected {failure}")

    @staticmethod
    def _write_externally(url: str, obj: JsonObject) -> None:
        record = {"version": obj.get("version"), "pid": os.getpid(), "run": uuid.uuid4().hex}
        with new_session() as session:
            for _ in range(int(obj.get("writes") or 1)):
                time.sleep(float(obj.get("sleep") or 0))
                session.put(url, json=record, timeout=5).raise_for_status()
            session.put(f"{url}/status", json=record, timeout=5).raise_for_status()

    def report_failure(
        self,
        ctx: WorkerContext,
        key: ObjectKey,
        obj: JsonObject | None,
        error: PolycrateError,
        *,
        retrying: bool,
    ) -> None:
        ctx.redis.rpush(
            _failures_name(key),
            json.dumps({"time": time.time(), "retrying": retrying, "message": str(error)}),
        )


def register_handlers(registry: HandlerRegistry) -> None:
    """The plug-in's hook: the recording handler replaces the built-in one of RECORDED_KIND."""
    registry.register(RecordingHandler(), replace=True)


@dataclass(frozen=True)
class Run:
    start: float
    end: float
    pid: int
    version: str | None
    outcome: str


class RecordedObjects:
    """The test's side: write RECORDED_KIND objects, read back their runs and failures."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client

    def put(self, key: ObjectKey, **fields: Any) -> None:
        self.client.hset(_object_name(key), mapping={name: str(value) for name, value in fields.items()})

    def delete(self, key: ObjectKey) -> None:
        self.client.delete(_object_name(key))

    def runs(self, key: ObjectKey) -> list[Run]:
        return [Run(**json.loads(raw)) for raw in self.client.lrange(_runs_name(key), 0, -1)]

    def starts(self, key: ObjectKey) -> list[dict[str, Any]]:
        return [json.loads(raw) for raw in self.client.lrange(_starts_name(key), 0, -1)]

    def all_runs(self) -> list[str]:
        """Keys of every finished run, across all keys, in finishing order."""
        return [raw.decode() for raw in self.client.lrange(ALL_RUNS, 0, -1)]

    def failures(self, key: ObjectKey) -> list[dict[str, Any]]:
        return [json.loads(raw) for raw in self.client.lrange(_failures_name(key), 0, -1)]
