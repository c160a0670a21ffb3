"""`polycrate operator health`: one line, and the exit code says healthy or not."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from click.testing import CliRunner

from cli import main
from watcher.probes import ProbeServer


class Switch:
    def __init__(self, ok: bool, detail: str = "") -> None:
        self.ok = ok
        self.detail = detail

    def __call__(self) -> tuple[bool, str]:
        return self.ok, self.detail


@pytest.fixture
def ready() -> Switch:
    return Switch(True)


@pytest.fixture
def probe_url(ready: Switch) -> Iterator[str]:
    server = ProbeServer(
        ("127.0.0.1", 0), health_checks={"informers": Switch(True)}, ready_checks={"lists": ready}
    )
    server.start()
    yield server.url
    server.stop()


def run_health(*args: str):
    return CliRunner().invoke(main, ["operator", "health", *args])


def test_a_live_and_ready_operator_exits_0(probe_url: str) -> None:
    result = run_health("--url", probe_url)

    assert result.exit_code == 0, result.output
    assert result.output == f"healthy: operator at {probe_url} is live and ready\n"


def test_a_not_ready_operator_exits_1_naming_the_failed_check(probe_url: str, ready: Switch) -> None:
    ready.ok, ready.detail = False, "waiting for the initial list of pods"

    result = run_health("--url", probe_url)

    assert result.exit_code == 1
    assert result.output.strip() == (
        f"error: operator at {probe_url} is not ready: lists failed: waiting for the initial list of pods"
    )


def test_no_operator_listening_exits_1_with_one_line() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    result = run_health("--url", f"http://127.0.0.1:{port}", "--timeout", "1")

    assert result.exit_code == 1
    assert result.output.count("\n") == 1
    assert "does not answer: ConnectionError" in result.output
