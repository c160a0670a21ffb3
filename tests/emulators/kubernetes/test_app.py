"""Injected failures answered as kube-apiserver answers them: a Status, Retry-After on a 429."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from emulators.faults import FaultPlan
from emulators.kubernetes import KubeEmulator
from tests.emulators.kubernetes.test_server import call


@pytest.fixture
def emulator(kube_emulator: KubeEmulator) -> Iterator[KubeEmulator]:
    yield kube_emulator
    kube_emulator.app.faults = FaultPlan()


def test_a_rate_limit_is_a_too_many_requests_status_with_retry_after(emulator: KubeEmulator) -> None:
    emulator.app.faults.update({"rate_limit": {"count": 1, "retry_after": 2}})
    status, headers, body = call(emulator, "GET", "/api/v1/namespaces")
    assert status == 429 and headers["Retry-After"] == "2"
    assert body["kind"] == "Status" and body["reason"] == "TooManyRequests" and body["code"] == 429
    assert body["details"] == {"retryAfterSeconds": 2}
    assert call(emulator, "GET", "/api/v1/namespaces")[0] == 200  # the budget is spent


def test_a_number_of_errors_is_answered_then_the_request_is_served(emulator: KubeEmulator) -> None:
    emulator.app.faults.update({"error_count": 2, "error_status": 503})
    answers = [call(emulator, "GET", "/api/v1/namespaces")[0] for _ in range(3)]
    assert answers == [503, 503, 200]
    assert call(emulator, "GET", "/api/v1/namespaces")[2]["kind"] == "NamespaceList"
