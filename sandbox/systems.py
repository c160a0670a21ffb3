"""All five emulated external systems in one process, and the state file that describes them.

`EmulatedSystems` starts Keycloak, GitLab, Harbor, Argo CD and the Polycrate API emulators
(on consecutive ports from `port_base`, or free ports) and renders the state file whose keys
scripts and the sandbox rely on:

    {"systems": {"keycloak": {url, realm, client_id, client_secret},
                 "gitlab": {url, token}, "harbor": {url, username, password},
                 "argocd": {url, token}, "polycrate_api": {url, token}}}

The file holds credentials of throw-away emulators only, and is written with mode 0600.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from emulators.argocd import ArgocdEmulator
from emulators.gitlab import GitLabEmulator
from emulators.harbor import HarborEmulator
from emulators.keycloak import KeycloakEmulator
from emulators.polycrate_api import PolycrateApiEmulator
from emulators.server import EmulatorServer

SYSTEM_ORDER = ("keycloak", "gitlab", "harbor", "argocd", "polycrate_api")


class EmulatedSystems:
    """Start/stop the five system emulators together; `state()` describes them for clients."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port_base: int = 0,
        latency_ms: float = 0.0,
        advertise_host: str | None = None,
    ) -> None:
        def port(offset: int) -> int:
            return port_base + offset if port_base else 0

        self.advertise_host = advertise_host
        self.keycloak = KeycloakEmulator(host, port(0), latency_ms=latency_ms)
        self.gitlab = GitLabEmulator(host, port(1), latency_ms=latency_ms)
        self.harbor = HarborEmulator(host, port(2), latency_ms=latency_ms)
        self.argocd = ArgocdEmulator(host, port(3), latency_ms=latency_ms)
        self.polycrate_api = PolycrateApiEmulator(host, port(4), latency_ms=latency_ms)

    @property
    def servers(self) -> dict[str, EmulatorServer]:
        return {name: getattr(self, name) for name in SYSTEM_ORDER}

    def start(self) -> EmulatedSystems:
        started: list[EmulatorServer] = []
        try:
            for server in self.servers.values():
                server.start()
                started.append(server)
        except BaseException:
            for server in started:
                server.stop()
            raise
        return self

    def stop(self) -> None:
        for server in self.servers.values():
            server.stop()

    def __enter__(self) -> EmulatedSystems:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def url(self, name: str) -> str:
        server = self.servers[name]
        if self.advertise_host:
            return f"http://{self.advertise_host}:{server.port}"
        return server.url

    def state(self) -> dict[str, Any]:
        return {
            "systems": {
                "keycloak": {
                    "url": self.url("keycloak"),
                    "realm": self.keycloak.realm,
                    "client_id": self.keycloak.client_id,
                    "client_secret": self.keycloak.client_secret,
                },
                "gitlab": {"url": self.url("gitlab"), "token": self.gitlab.admin_token},
                "harbor": {
                    "url": self.url("harbor"),
                    "username": self.harbor.admin_username,
                    "password": self.harbor.admin_password,
                },
                "argocd": {"url": self.url("argocd"), "token": self.argocd.token},
                "polycrate_api": {"url": self.url("polycrate_api"), "token": self.polycrate_api.token},
            }
        }

    def write_state(self, path: str | Path, extra: dict[str, Any] | None = None) -> Path:
        """Write the state file atomically (0600), merged with `extra` top-level keys."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        document = {**self.state(), **(extra or {})}
        tmp = path.with_suffix(path.suffix + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(document, handle, indent=2)
        tmp.replace(path)
        return path
