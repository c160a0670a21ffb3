"""Every emulator keeps HTTP/1.1 connections open, as the real servers do.

Each scenario sends its requests over one `http.client.HTTPConnection` and checks after every
answer that the connection is still the first one: success and error answers (401 with a
request body the server never read, 404, 409 or the system's own conflict status), a response
slowed by injected latency, and (Kubernetes) a chunked watch stream followed by another request.
"""

from __future__ import annotations

import base64
import http.client
import json
import socket
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest

from emulators.harbor import HarborEmulator
from emulators.keycloak import MASTER_REALM


class OneConnection:
    """An HTTP/1.1 client connection that fails the test if the server ever closes it."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
        self.socket: socket.socket | None = None
        self.headers: dict[str, str] = {}

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        form: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        sent = {**self.headers, **(headers or {})}
        payload = None
        if form is not None:
            payload, sent["Content-Type"] = urlencode(form), "application/x-www-form-urlencoded"
        elif body is not None:
            payload, sent["Content-Type"] = json.dumps(body), "application/json"
        self.connection.request(method, path, body=payload, headers=sent)
        response = self.connection.getresponse()
        raw = response.read()
        assert response.version == 11
        assert (response.getheader("Connection") or "").lower() != "close", f"{method} {path}"
        if self.socket is None:
            self.socket = self.connection.sock
        # http.client drops its socket when the server announced or performed a close.
        assert self.connection.sock is not None and self.connection.sock is self.socket, f"{method} {path}"
        try:
            return response.status, json.loads(raw) if raw else None
        except ValueError:
            return response.status, raw

    def close(self) -> None:
        self.connection.close()


def test_keycloak_keeps_the_connection_across_login_errors_and_latency(keycloak_emulator):
    one = OneConnection(keycloak_emulator.url)
    realm = keycloak_emulator.realm
    groups = f"/admin/realms/{realm}/groups"
    # 401: the body of the refused request is never read by the handler.
    assert one.request("POST", groups, {"name": "acme"}, headers={"Authorization": "Bearer wrong"})[0] == 401
    status, token = one.request(
        "POST",
        f"/realms/{MASTER_REALM}/protocol/openid-connect/token",
        form={
            "grant_type": "password",
            "client_id": "admin-cli",
            "username": keycloak_emulator.admin_username,
            "password": keycloak_emulator.admin_password,
        },
    )
    assert status == 200
    one.headers["Authorization"] = f"Bearer {token['access_token']}"
    assert one.request("POST", groups, {"name": "acme"})[0] == 201
    assert one.request("POST", groups, {"name": "acme"})[0] == 409
    assert one.request("GET", f"{groups}/00000000-0000-0000-0000-000000000000")[0] == 404
    keycloak_emulator.set_faults(latency_ms=50)
    assert one.request("GET", groups)[0] == 200
    one.close()


def test_gitlab_keeps_the_connection_across_errors_and_latency(gitlab_emulator):
    one = OneConnection(gitlab_emulator.url)
    assert one.request("POST", "/api/v4/groups", {"name": "acme", "path": "acme"})[0] == 401
    one.headers["PRIVATE-TOKEN"] = gitlab_emulator.admin_token
    assert one.request("POST", "/api/v4/groups", {"name": "acme", "path": "acme"})[0] == 201
    # GitLab answers a taken group path with 400 "has already been taken".
    assert one.request("POST", "/api/v4/groups", {"name": "acme", "path": "acme"})[0] == 400
    assert one.request("GET", "/api/v4/groups/missing")[0] == 404
    gitlab_emulator.set_faults(latency_ms=50)
    assert one.request("GET", "/api/v4/groups/acme")[0] == 200
    one.close()


def test_harbor_keeps_the_connection_across_errors_and_latency(harbor):
    one = OneConnection(harbor.url)
    project = {"project_name": "acme", "metadata": {"public": "false"}}
    assert one.request("POST", "/api/v2.0/projects", project)[0] == 401
    basic = base64.b64encode(f"{harbor.admin_username}:{harbor.admin_password}".encode()).decode()
    one.headers["Authorization"] = f"Basic {basic}"
    assert one.request("POST", "/api/v2.0/projects", project)[0] == 201
    assert one.request("POST", "/api/v2.0/projects", project)[0] == 409
    assert one.request("GET", "/api/v2.0/projects/missing")[0] == 404
    harbor.set_faults(latency_ms=50)
    assert one.request("GET", "/api/v2.0/projects/acme")[0] == 200
    one.close()


def test_argocd_keeps_the_connection_across_errors_and_latency(argocd):
    one = OneConnection(argocd.url)
    project = {"project": {"metadata": {"name": "acme"}, "spec": {"description": "one"}}}
    assert one.request("POST", "/api/v1/projects", project)[0] == 401
    one.headers["Authorization"] = f"Bearer {argocd.token}"
    assert one.request("POST", "/api/v1/projects", project)[0] == 200
    changed = {"project": {"metadata": {"name": "acme"}, "spec": {"description": "two"}}}
    # Argo CD refuses a create that differs from the existing project with InvalidArgument (400).
    assert one.request("POST", "/api/v1/projects", changed)[0] == 400
    assert one.request("GET", "/api/v1/projects/missing")[0] == 404
    argocd.set_faults(latency_ms=50)
    assert one.request("GET", "/api/v1/projects/acme")[0] == 200
    one.close()


def test_polycrate_api_keeps_the_connection_across_errors_and_latency(polycrate_api):
    one = OneConnection(polycrate_api.url)
    assert one.request("POST", "/api/v1/blocks/", {"name": "acme"})[0] == 401
    one.headers["Authorization"] = f"Token {polycrate_api.token}"
    assert one.request("GET", f"/api/v1/workspaces/{polycrate_api.workspace_id}/")[0] == 200
    assert one.request("GET", "/api/v1/workspaces/00000000-0000-0000-0000-000000000000/")[0] == 404
    polycrate_api.set_faults(latency_ms=50)
    assert one.request("GET", "/api/v1/workspaces/")[0] == 200
    one.close()


def test_a_refused_request_whose_large_body_was_never_read_leaves_the_connection_usable(harbor):
    one = OneConnection(harbor.url)
    for _ in range(2):
        assert one.request("POST", "/api/v2.0/projects", {"project_name": "x" * 200_000})[0] == 401
    assert one.request("GET", "/api/v2.0/health")[0] == 200
    one.close()


def test_kubernetes_keeps_the_connection_across_errors_latency_and_a_watch(kube_emulator):
    one = OneConnection(kube_emulator.url)
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "acme"}}
    assert (
        one.request("POST", "/api/v1/namespaces", namespace, headers={"Authorization": "Bearer wrong"})[0]
        == 401
    )
    one.headers["Authorization"] = f"Bearer {kube_emulator.access.admin_token}"
    assert one.request("POST", "/api/v1/namespaces", namespace)[0] == 201
    assert one.request("POST", "/api/v1/namespaces", namespace)[0] == 409
    assert one.request("GET", "/api/v1/namespaces/missing")[0] == 404
    # A watch is one chunked answer; once it ends the same connection serves the next request.
    status, events = one.request("GET", "/api/v1/namespaces?watch=true&timeoutSeconds=1")
    assert status == 200
    assert "acme" in [json.loads(line)["object"]["metadata"]["name"] for line in events.splitlines()]
    kube_emulator.latency_ms = 50
    assert one.request("GET", "/api/v1/namespaces/acme")[0] == 200
    one.close()


def test_a_stopped_emulator_drops_its_idle_connections():
    with HarborEmulator() as harbor:
        one = OneConnection(harbor.url)
        assert one.request("GET", "/api/v2.0/health")[0] == 200
        harbor.stop()
        with pytest.raises((ConnectionError, http.client.HTTPException)):
            one.request("GET", "/api/v2.0/ping")
        one.close()
