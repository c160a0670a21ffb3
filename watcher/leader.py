"""Leader election on a coordination.k8s.io/v1 Lease, following client-go's rules.

Only the leader enqueues; a second watcher stands by. The leader renews the Lease every retry
period and steps down if it could not renew for `renew_deadline` (shorter than the lease
duration, so it stops before anyone else may start). A candidate judges expiry by its own
monotonic clock from the moment it last saw the Lease record change, never by comparing the
holder's timestamps with its own clock, so clock skew between nodes cannot cause two leaders.
Updates carry the resourceVersion, so of two candidates racing for a free Lease exactly one
wins. A clean shutdown releases the Lease (empty holder, leaseDurationSeconds=1) so the standby
takes over at once instead of after the lease duration.
"""

from __future__ import annotations

import logging
import math
import random
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from polycrate.daemon_loop import DaemonLoop
from polycrate.kubeclient.api import KubeClient
from polycrate.kubeclient.errors import Conflict, KubeError, NotFound
from polycrate.kubeclient.resources import LEASES
from polycrate.kubeclient.retrying import NO_RETRY

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LeaseSettings:
    """Where the Lease lives and its timing (client-go's defaults: 15 s / 10 s / 2 s)."""

    namespace: str = "polycrate"
    name: str = "polycrate-operator"
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0

    def __post_init__(self) -> None:
        if not self.retry_period < self.renew_deadline < self.lease_duration:
            raise ValueError("leader election needs retry_period < renew_deadline < lease_duration")

    @property
    def path(self) -> str:
        return LEASES.path(self.namespace, self.name)


def default_identity() -> str:
    """Unique per process, readable in `kubectl get lease -o yaml`: hostname_uuid, as client-go."""
    return f"{socket.gethostname()}_{uuid.uuid4()}"


def _micro_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _record(spec: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(
        spec.get(field)
        for field in (
            "holderIdentity",
            "leaseDurationSeconds",
            "acquireTime",
            "renewTime",
            "leaseTransitions",
        )
    )


class LeaderElector(DaemonLoop):
    """Acquires, renews and releases the Lease on a daemon thread."""

    thread_name = "leader-election"

    def __init__(
        self,
        api: KubeClient,
        settings: LeaseSettings,
        *,
        identity: str | None = None,
        on_started_leading: Callable[[], None],
        on_stopped_leading: Callable[[], None],
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ):
        super().__init__()
        self._api = api
        self.settings = settings
        self.identity = identity or default_identity()
        self._on_started_leading = on_started_leading
        self._on_stopped_leading = on_stopped_leading
        self._clock = clock
        self._now = now
        self._leading = threading.Event()
        self._observed_record: tuple[Any, ...] | None = None
        self._observed_at = 0.0
        self._last_error = ""

    @property
    def is_leader(self) -> bool:
        return self._leading.is_set()

    def wait_for_leadership(self, timeout: float) -> bool:
        return self._leading.wait(timeout)

    def stop(self, timeout: float = 5.0, *, release: bool = True) -> None:
        """Stop campaigning; a leader releases the Lease (unless `release=False`)."""
        super().stop(timeout)
        if release and self._leading.is_set():
            self._release()
        self._leading.clear()

    # -- the loop ----------------------------------------------------------------------------

    def _run(self) -> None:
        settings = self.settings
        log.info(
            "waiting to become leader (Lease %s/%s, identity %s)",
            settings.namespace,
            settings.name,
            self.identity,
        )
        while not self._stop.is_set():
            attempt_started = self._clock()
            if self._try_acquire_or_renew(deadline=attempt_started + self._attempt_budget):
                break
            self._stop.wait(settings.retry_period * random.uniform(1.0, 1.2))
        if self._stop.is_set():
            return
        log.info("became leader (Lease %s/%s)", settings.namespace, settings.name)
        self._leading.set()
        self._on_started_leading()
        # Counted from the start of the successful attempt: the Lease may have been written
        # at any moment of it, so this errs on the side of stepping down early.
        last_renewal = attempt_started
        while not self._stop.wait(settings.retry_period):
            attempt_started = self._clock()
            # An attempt may not run past the renew deadline, or a hanging API server would
            # keep us leading after our Lease could have expired for the others.
            deadline = min(attempt_started + self._attempt_budget, last_renewal + settings.renew_deadline)
            if deadline > attempt_started and self._try_acquire_or_renew(deadline=deadline):
                last_renewal = attempt_started
            elif self._clock() - last_renewal >= settings.renew_deadline:
                log.error(
                    "lost leadership: Lease %s/%s not renewed within %.1f s (%s)",
                    settings.namespace,
                    settings.name,
                    settings.renew_deadline,
                    self._last_error or "held by another",
                )
                self._leading.clear()
                self._on_stopped_leading()
                return

    @property
    def _attempt_budget(self) -> float:
        return max(self.settings.retry_period, 0.5)

    def _try_acquire_or_renew(self, *, deadline: float) -> bool:
        settings = self.settings

        def timeout() -> float:
            return max(0.05, deadline - self._clock())

        try:
            try:
                # Sent once: the renew deadline is this loop's retry policy.
                lease = self._api.get(settings.path, timeout=timeout(), retry=NO_RETRY)
            except NotFound:
                return self._create(timeout())
            return self._take(lease, timeout())
        except KubeError as exc:
            if str(exc) != self._last_error:
                log.warning(
                    "leader election: cannot read or write Lease %s/%s: %s",
                    settings.namespace,
                    settings.name,
                    exc,
                )
            self._last_error = str(exc)
            return False

    def _lease_spec(self, *, acquire_time: str, transitions: int) -> dict[str, Any]:
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": max(1, math.ceil(self.settings.lease_duration)),
            "acquireTime": acquire_time,
            "renewTime": _micro_time(self._now()),
            "leaseTransitions": transitions,
        }

    def _observe(self, spec: dict[str, Any]) -> None:
        record = _record(spec)
        if record != self._observed_record:
            self._observed_record = record
            self._observed_at = self._clock()

    def _create(self, timeout: float) -> bool:
        body = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": self.settings.name, "namespace": self.settings.namespace},
            "spec": self._lease_spec(acquire_time=_micro_time(self._now()), transitions=0),
        }
        try:
            created = self._api.create(
                LEASES.path(self.settings.namespace), body, timeout=timeout, retry=NO_RETRY
            )
        except Conflict:
            return False
        self._observe(created.get("spec") or {})
        self._last_error = ""
        return True

    def _take(self, lease: dict[str, Any], timeout: float) -> bool:
        spec = lease.get("spec") or {}
        self._observe(spec)
        holder = spec.get("holderIdentity") or ""
        duration = float(spec.get("leaseDurationSeconds") or self.settings.lease_duration)
        if holder and holder != self.identity and self._observed_at + duration > self._clock():
            return False
        transitions = int(spec.get("leaseTransitions") or 0)
        if holder == self.identity:
            new_spec = self._lease_spec(
                acquire_time=spec.get("acquireTime") or _micro_time(self._now()), transitions=transitions
            )
        else:
            new_spec = self._lease_spec(acquire_time=_micro_time(self._now()), transitions=transitions + 1)
        lease["spec"] = {**spec, **new_spec}
        try:
            updated = self._api.replace(self.settings.path, lease, timeout=timeout, retry=NO_RETRY)
        except Conflict:
            return False
        self._observe(updated.get("spec") or {})
        self._last_error = ""
        return True

    def _release(self) -> None:
        settings = self.settings
        try:
            lease = self._api.get(settings.path, timeout=settings.retry_period, retry=NO_RETRY)
            spec = lease.get("spec") or {}
            if spec.get("holderIdentity") != self.identity:
                return
            now = _micro_time(self._now())
            lease["spec"] = {
                **spec,
                "holderIdentity": "",
                "leaseDurationSeconds": 1,
                "acquireTime": now,
                "renewTime": now,
            }
            self._api.replace(settings.path, lease, timeout=settings.retry_period, retry=NO_RETRY)
            log.info("released Lease %s/%s", settings.namespace, settings.name)
        except KubeError as exc:
            log.warning(
                "could not release Lease %s/%s (%s); the standby takes over when it expires",
                settings.namespace,
                settings.name,
                exc,
            )
