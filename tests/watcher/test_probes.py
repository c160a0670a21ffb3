"""The probe server: /healthz and /readyz list their checks, /metrics renders the registry."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from polycrate.metrics_auth import MetricsToken
from watcher.metrics import WatcherMetrics
from watcher.probes import ProbeServer, parse_bind_address


class Switch:
    """A check whose answer the test flips."""

    def __init__(self, ok: bool, detail: str = "") -> None:
        self.ok = ok
        self.detail = detail

    def __call__(self) -> tuple[bool, str]:
        return self.ok, self.detail


@pytest.fixture
def lists_done() -> Switch:
    return Switch(False, "waiting for the initial list of organizations.polycrate.io")


@pytest.fixture
def metrics() -> WatcherMetrics:
    return WatcherMetrics()


@pytest.fixture
def server(lists_done: Switch, metrics: WatcherMetrics) -> Iterator[ProbeServer]:
    server = ProbeServer(
        ("127.0.0.1", 0),
        health_checks={"informers": Switch(True)},
        ready_checks={"initial-lists": lists_done, "redis": Switch(True)},
        registry=metrics.registry,
    )
    server.start()
    yield server
    server.stop()


@pytest.mark.parametrize(
    ("address", "parsed"),
    [
        (":8081", ("", 8081)),
        ("127.0.0.1:0", ("127.0.0.1", 0)),
        ("[::1]:9090", ("::1", 9090)),
        ("0", None),
        ("", None),
    ],
)
def test_bind_addresses_use_controller_runtime_form(address: str, parsed: tuple[str, int] | None) -> None:
    assert parse_bind_address(address) == parsed


def test_a_bind_address_without_port_is_rejected_with_the_expected_form() -> None:
    with pytest.raises(ValueError, match=r"\[host\]:port"):
        parse_bind_address("localhost")


def test_readyz_fails_until_the_initial_lists_are_done(server: ProbeServer, lists_done: Switch) -> None:
    before = requests.get(f"{server.url}/readyz", timeout=5)
    lists_done.ok = True
    after = requests.get(f"{server.url}/readyz", timeout=5)

    assert before.status_code == 503
    assert (
        "[-]initial-lists failed: waiting for the initial list of organizations.polycrate.io" in before.text
    )
    assert "[+]redis ok" in before.text
    assert after.status_code == 200
    assert after.text.endswith("readyz check passed\n")


def test_healthz_answers_while_every_loop_is_alive(server: ProbeServer) -> None:
    response = requests.get(f"{server.url}/healthz", timeout=5)

    assert response.status_code == 200
    assert "[+]informers ok" in response.text


def test_a_check_that_raises_reports_failed_instead_of_breaking_the_probe(metrics: WatcherMetrics) -> None:
    def broken() -> tuple[bool, str]:
        raise RuntimeError("boom")

    server = ProbeServer(("127.0.0.1", 0), health_checks={"broken": broken})
    server.start()
    try:
        response = requests.get(f"{server.url}/healthz", timeout=5)
    finally:
        server.stop()

    assert response.status_code == 503
    assert "[-]broken failed: RuntimeError: boom" in response.text


def test_metrics_show_events_keys_and_restarts(server: ProbeServer, metrics: WatcherMetrics) -> None:
    metrics.events_seen.labels("Organization", "ADDED").inc(3)
    metrics.keys_enqueued.labels("Organization").inc(2)
    metrics.keys_coalesced.labels("Organization").inc()
    metrics.watch_restarts.labels("Pod", "gone").inc()

    body = requests.get(f"{server.url}/metrics", timeout=5).text

    assert 'polycrate_watcher_events_total{kind="Organization",type="ADDED"} 3.0' in body
    assert 'polycrate_watcher_keys_enqueued_total{kind="Organization"} 2.0' in body
    assert 'polycrate_watcher_keys_coalesced_total{kind="Organization"} 1.0' in body
    assert 'polycrate_watcher_watch_restarts_total{kind="Pod",reason="gone"} 1.0' in body


def test_unknown_paths_are_404(server: ProbeServer) -> None:
    assert requests.get(f"{server.url}/nope", timeout=5).status_code == 404


def test_metrics_behind_a_token_answer_only_the_bearer_and_probes_stay_open(
    metrics: WatcherMetrics, tmp_path
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("s3cret-scrape-token\n")
    server = ProbeServer(
        ("127.0.0.1", 0),
        health_checks={"informers": Switch(True)},
        registry=metrics.registry,
        metrics_token=MetricsToken(token_file),
    )
    server.start()
    try:
        anonymous = requests.get(f"{server.url}/metrics", timeout=5)
        wrong = requests.get(f"{server.url}/metrics", headers={"Authorization": "Bearer guess"}, timeout=5)
        bearer = {"Authorization": "Bearer s3cret-scrape-token"}
        allowed = requests.get(f"{server.url}/metrics", headers=bearer, timeout=5)
        token_file.write_text("rotated")  # read at every scrape: rotation needs no restart
        after_rotation = requests.get(f"{server.url}/metrics", headers=bearer, timeout=5)
        token_file.unlink()  # a broken mount closes the endpoint rather than opening it
        without_file = requests.get(f"{server.url}/metrics", headers=bearer, timeout=5)
        health = requests.get(f"{server.url}/healthz", timeout=5)
    finally:
        server.stop()

    assert (anonymous.status_code, wrong.status_code) == (401, 401)
    assert anonymous.headers["WWW-Authenticate"].startswith("Bearer")
    assert allowed.status_code == 200 and "polycrate_watcher_is_leader" in allowed.text
    assert (after_rotation.status_code, without_file.status_code) == (401, 401)
    assert health.status_code == 200
