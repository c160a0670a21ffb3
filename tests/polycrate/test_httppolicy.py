"""The shared HTTP policy: timeouts, TLS defaults, error classification."""

import http.server
import logging
import threading

import pytest
import requests
from prometheus_client import REGISTRY, generate_latest

from polycrate import httppolicy
from polycrate.errors import PermanentError, TransientError
from polycrate.httppolicy import (
    HttpPolicy,
    classify_status,
    json_body,
    new_session,
    parse_retry_after,
    raise_for_response,
    transport_errors,
)


def test_tls_verification_is_on_by_default_and_a_ca_bundle_wins():
    assert new_session().verify is True
    assert new_session(HttpPolicy(ca_bundle="/etc/ssl/private-ca.pem")).verify == "/etc/ssl/private-ca.pem"


def test_the_pool_keeps_as_many_connections_per_host_as_the_setting_says(monkeypatch):
    assert HttpPolicy().pool_maxsize == 32  # the default thread concurrency of a worker
    monkeypatch.setenv("POLYCRATE_HTTP_POOL_SIZE", "64")
    session = new_session()
    assert session.get_adapter("https://harbor.example.com")._pool_maxsize == 64


def test_requests_of_many_threads_reuse_pooled_keep_alive_connections(harbor, caplog):
    session = new_session(system="harbor")
    threads = 32
    start = threading.Barrier(threads)

    def ping() -> list[int]:
        start.wait()
        return [session.get(f"{harbor.url}/api/v2.0/health").status_code for _ in range(5)]

    with caplog.at_level(logging.DEBUG, logger="urllib3.connectionpool"):
        workers = [threading.Thread(target=ping) for _ in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()

    opened = [r for r in caplog.records if r.getMessage().startswith("Starting new HTTP connection")]
    assert harbor.calls["GET /api/v2.0/health"] == threads * 5
    assert len(opened) <= threads, "each thread's connection is reused for its next requests"
    assert not [r for r in caplog.records if "pool is full" in r.getMessage()]


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_server_side_and_throttling_statuses_are_transient(status):
    assert isinstance(classify_status(status, what="GitLab: get group"), TransientError)


@pytest.mark.parametrize(
    "status,reason",
    [(400, "BadRequest"), (403, "Forbidden"), (404, "NotFound"), (409, "Conflict"), (422, "Unprocessable")],
)
def test_client_errors_are_permanent_with_a_reason(status, reason):
    error = classify_status(status, what="Harbor: create project", detail="name taken")
    assert isinstance(error, PermanentError)
    assert error.reason == reason
    assert str(error) == f"Harbor: create project: HTTP {status}: name taken"


def test_retry_after_accepts_seconds_and_http_dates():
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480.0) == 10.0
    assert parse_retry_after("soon") is None


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - http.server's naming
        if self.path == "/slow":
            threading.Event().wait(1.0)
        self.send_response(429)
        self.send_header("Retry-After", "3")
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"message": "slow down"}')

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()
    httpd.server_close()


def test_429_carries_the_servers_retry_after_and_message(server):
    response = new_session().get(f"{server}/x")
    with pytest.raises(TransientError) as caught:
        raise_for_response(response, what="Argo CD: get project")
    assert caught.value.retry_after == 3.0
    assert "slow down" in str(caught.value)


def test_read_timeout_becomes_transient(server):
    session = new_session(HttpPolicy(read_timeout=0.2))
    with pytest.raises(TransientError, match="timed out"), transport_errors("Harbor: get project"):
        session.get(f"{server}/slow")


def test_refused_connection_becomes_transient():
    with pytest.raises(TransientError, match="cannot connect"), transport_errors("Keycloak: login"):
        requests.get("http://127.0.0.1:9/", timeout=1)


def test_before_send_runs_for_every_request(server):
    sent = []
    session = new_session(before_send=lambda: sent.append(1))
    session.get(f"{server}/a")
    session.get(f"{server}/b")
    assert len(sent) == 2


def test_a_successful_answer_that_is_not_json_is_worth_a_retry():
    response = requests.Response()
    response.status_code = 200
    response._content = b"<html>502 from the load balancer</html>"
    with pytest.raises(TransientError, match="answer is not JSON"):
        json_body(response, what="Harbor: get project")


def test_an_empty_successful_answer_decodes_to_an_empty_object():
    response = requests.Response()
    response.status_code = 204
    response._content = b""
    assert json_body(response, what="Argo CD: delete project") == {}


def _calls(system: str, method: str, outcome: str) -> float:
    labels = {"system": system, "method": method, "outcome": outcome}
    return REGISTRY.get_sample_value("polycrate_external_requests_total", labels) or 0.0


def _latency_count(system: str, method: str, outcome: str) -> float:
    labels = {"system": system, "method": method, "outcome": outcome}
    return REGISTRY.get_sample_value("polycrate_external_request_duration_seconds_count", labels) or 0.0


def test_every_request_is_counted_and_timed_by_system_method_and_outcome(server):
    throttled, timeouts = _calls("harbor", "GET", "throttled"), _calls("harbor", "GET", "timeout")
    refused = _calls("harbor", "DELETE", "connection_error")
    timed = _latency_count("harbor", "GET", "throttled")
    session = new_session(HttpPolicy(read_timeout=0.2), system="harbor")

    session.get(f"{server}/projects/acme-corp")
    with pytest.raises(requests.Timeout):
        session.get(f"{server}/slow")
    with pytest.raises(requests.ConnectionError):
        session.delete("http://127.0.0.1:9/projects/acme-corp")

    assert _calls("harbor", "GET", "throttled") == throttled + 1
    assert _latency_count("harbor", "GET", "throttled") == timed + 1
    assert _calls("harbor", "GET", "timeout") == timeouts + 1
    assert _calls("harbor", "DELETE", "connection_error") == refused + 1


def test_call_metrics_never_carry_urls_or_credentials(server):
    session = new_session(system="gitlab")
    session.headers["PRIVATE-TOKEN"] = "glpat-s3cret"
    session.get(f"{server}/groups/acme-corp?private_token=s3cret")

    exposition = generate_latest(REGISTRY).decode()
    assert "s3cret" not in exposition
    assert "acme-corp" not in exposition


def test_the_environments_proxies_and_ca_bundle_apply_as_requests_applies_them(monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example.com:3128")
    monkeypatch.setenv("NO_PROXY", "internal.example.com")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/env-ca.pem")
    ours, plain = new_session(), requests.Session()

    for url in (
        "https://harbor.example.com/api/v2.0/projects",
        "https://internal.example.com/x",
        "http://a.example/",
    ):
        for _ in range(2):
            assert ours.merge_environment_settings(
                url, {}, None, None, None
            ) == plain.merge_environment_settings(url, {}, None, None, None)
    settings = ours.merge_environment_settings("https://harbor.example.com/x", {}, None, None, None)
    assert settings["proxies"]["https"] == "http://proxy.example.com:3128"
    assert settings["verify"] == "/etc/ssl/env-ca.pem"
    assert (
        "https"
        not in ours.merge_environment_settings("https://internal.example.com/", {}, None, None, None)[
            "proxies"
        ]
    )


def test_the_environment_is_scanned_for_proxies_once_per_host_not_per_request(monkeypatch, server):
    scans = []
    real = httppolicy.get_environ_proxies
    monkeypatch.setattr(
        httppolicy, "get_environ_proxies", lambda *a, **k: scans.append(a[0]) or real(*a, **k)
    )
    session = new_session()

    for _ in range(5):
        session.get(f"{server}/a")

    assert len(scans) == 1
