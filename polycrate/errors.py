"""The two kinds of failure the runtime tells apart.

A reconcile either fails in a way that time can fix (a system is down, slow, rate-limiting)
or in a way only the user can fix (an invalid spec, a missing referenced object, a 4xx a retry
cannot change). The retry policy retries the first with exponential backoff and parks the
second in status `Error` until the object changes, so a bad spec never becomes a retry storm.
"""

from __future__ import annotations


class PolycrateError(Exception):
    """Base of every error the operator raises on purpose."""


class TransientError(PolycrateError):
    """Retry later: connection errors, timeouts, 429, 5xx.

    `retry_after` carries a server's Retry-After hint in seconds, when it gave one.
    """

    def __init__(self, message: str, *, retry_after: float | None = None, status_code: int | None = None):
        super().__init__(message)
        self.retry_after = retry_after
        self.status_code = status_code


class PermanentError(PolycrateError):
    """Do not retry until the object changes: the user has to fix something.

    `reason` is a CamelCase word for conditions and Events (e.g. InvalidSpec, NotFound).
    """

    def __init__(self, message: str, *, reason: str = "Failed", status_code: int | None = None):
        super().__init__(message)
        self.reason = reason
        self.status_code = status_code


class InvalidSpecError(PermanentError):
    """The custom resource's spec cannot be acted on; the message names field and fix."""

    def __init__(self, message: str):
        super().__init__(message, reason="InvalidSpec")


class DependencyNotFoundError(PermanentError):
    """A referenced object (SDP, Secret, Organization, K8sCluster) does not exist (yet)."""

    def __init__(self, message: str):
        super().__init__(message, reason="DependencyNotFound")


class DependencyNotReadyError(DependencyNotFoundError):
    """A referenced object exists but is still being provisioned: wait for it, do not alarm.

    Parked like its parent (the dependency wakes its dependents when it becomes Ready), but the
    waiting object shows phase Provisioning, not Error: there is nothing for the user to fix.
    """

    def __init__(self, message: str):
        super().__init__(message)
        self.reason = "DependencyNotReady"
