"""The one-command sandbox: an emulated cluster and systems, Redis, watcher and workers.

`Sandbox.run()` starts, in order: a local redis-server, the Kubernetes API emulator, the five
system emulators (Keycloak, GitLab, Harbor, Argo CD, Polycrate API), installs the CRDs, applies
the manifests in `sandbox/manifests/` (the spec's examples, with the SDP and OperatorConfig
pointed at the emulators and the Secrets holding the emulators' real credentials), then starts
`polycrate operator run` as its own process over real HTTP and Redis, as the operator's
ServiceAccount with exactly the RBAC of deploy/rbac.yaml (the emulator enforces it; the
sandbox itself sets up the world as the admin), and Flower (behind basic auth, as in
deploy/) to watch the tasks, and waits until every applied polycrate.io object is
reconciled (phase Ready and observedGeneration = generation).
The kubeconfig and the emulators' state file land in the sandbox directory so kubectl and
the official clients can be pointed at everything while it runs.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gitlab
import requests
import yaml
from keycloak import KeycloakAdmin, KeycloakOpenIDConnection
from kubernetes import dynamic
from kubernetes.client import ApiClient, CoreV1Api
from kubernetes.dynamic.exceptions import NotFoundError

from emulators.kubernetes import KubeEmulator
from polycrate.crds import crd_manifests, install_crds
from polycrate.graceful_stop import stop_gracefully
from polycrate.kubeclient.config import load_api_client
from polycrate.models import API_VERSION, KINDS
from polycrate.redis_server import LocalRedis, free_port
from polycrate.settings import redact_url
from sandbox.service_account import operator_kubeconfig
from sandbox.systems import EmulatedSystems

log = logging.getLogger(__name__)

MANIFESTS_DIR = Path(__file__).parent / "manifests"
# CRDs of third-party operators whose objects the sandbox's manifests contain (CloudNativePG).
THIRD_PARTY_CRDS_DIR = Path(__file__).parent / "crds"
SETTLED_PHASES = {"Ready", "Synced", "synced", "Discovered"}
# What discovery must have produced from sandbox/manifests/60-discovery-sources.yaml.
EXPECTED_DISCOVERED = {"Endpoint": 2, "K8sApp": 1, "Artifact": 2, "Backup": 1, "BackupSchedule": 1}


@dataclass
class SandboxOptions:
    workdir: Path = Path(".sandbox")
    workers: int = 32  # threads of the one worker process, as `polycrate operator worker` runs by default
    timeout: float = 120.0
    latency_ms: float = 0.0
    kube_port: int = 0
    port_base: int = 0
    redis_url: str | None = None
    flower_port: int = 0


@dataclass
class ObjectState:
    kind: str
    namespace: str
    name: str
    phase: str | None
    settled: bool
    message: str = ""


@dataclass
class SandboxReport:
    kubeconfig: Path
    state_file: Path
    operator_log: Path
    objects: list[ObjectState] = field(default_factory=list)

    @property
    def ready(self) -> bool:
        return bool(self.objects) and all(o.settled for o in self.objects)


def third_party_crds(directory: Path = THIRD_PARTY_CRDS_DIR) -> list[dict[str, Any]]:
    return [yaml.safe_load(path.read_text(encoding="utf-8")) for path in sorted(directory.glob("*.yaml"))]


def load_manifests(directory: Path = MANIFESTS_DIR) -> list[dict[str, Any]]:
    documents: list[dict[str, Any]] = []
    for path in sorted(directory.glob("*.yaml")):
        documents += [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]
    return documents


def point_at_emulators(documents: list[dict[str, Any]], systems: EmulatedSystems) -> list[dict[str, Any]]:
    """The manifests with URLs and Secret values of the emulators running in this process."""
    return point_at_state(documents, systems.state()["systems"], add_realm=systems.keycloak.add_realm)


def point_at_state(
    documents: list[dict[str, Any]], state: dict[str, Any], *, add_realm: Callable[[str], object]
) -> list[dict[str, Any]]:
    """The manifests with URLs and Secret values of the emulators in `state` (the state file's
    "systems"); `add_realm` creates the SDP's Keycloak realm in the emulator.

    The SDP keeps the spec's realm, secret names and keys; only what differs between a real
    installation and the sandbox changes: URLs and the credential values inside the Secrets.
    """
    secret_values = {
        ("keycloak-creds", "client-id"): state["keycloak"]["client_id"],
        ("keycloak-creds", "client-secret"): state["keycloak"]["client_secret"],
        ("gitlab-creds", "token"): state["gitlab"]["token"],
        ("harbor-creds", "username"): state["harbor"]["username"],
        ("harbor-creds", "password"): state["harbor"]["password"],
        ("argocd-creds", "token"): state["argocd"]["token"],
        ("polycrate-api-creds", "token"): state["polycrate_api"]["token"],
    }
    out = []
    for doc in documents:
        doc = yaml.safe_load(yaml.safe_dump(doc))  # deep copy
        kind, name = doc.get("kind"), doc["metadata"]["name"]
        if kind == "Secret":
            data = doc.setdefault("stringData", {})
            for key in list(data):
                data[key] = secret_values.get((name, key), data[key])
        elif kind == "SoftwareDeliveryPlatform":
            for system in ("keycloak", "gitlab", "harbor", "argocd"):
                if system in doc["spec"]:
                    doc["spec"][system]["url"] = state[system]["url"]
            realm = doc["spec"].get("keycloak", {}).get("realm")
            if realm:
                add_realm(realm)
        elif kind == "OperatorConfig" and "api_sync" in doc.get("spec", {}):
            doc["spec"]["api_sync"]["api_url"] = state["polycrate_api"]["url"]
        out.append(doc)
    return out


def seed_users(documents: list[dict[str, Any]], systems: EmulatedSystems) -> list[str]:
    """Create the people the Contacts name in the emulators running in this process."""
    return seed_users_of_state(documents, systems.state()["systems"])


def seed_users_of_state(documents: list[dict[str, Any]], state: dict[str, Any]) -> list[str]:
    """Create the people the Contacts name in Keycloak and GitLab, through their official APIs.

    In a real installation users appear in Keycloak and GitLab at their first login; the
    sandbox plays that login so the Contacts have someone to map.
    """
    seeded = []
    for doc in documents:
        if doc.get("kind") != "Contact":
            continue
        person = (doc.get("spec") or {}).get("keycloak") or {}
        username, email = person.get("username"), person.get("email")
        if not username:
            continue
        realms = {
            (d.get("spec") or {}).get("keycloak", {}).get("realm")
            for d in documents
            if d.get("kind") == "SoftwareDeliveryPlatform"
        } - {None}
        for realm in sorted(realms):
            admin = KeycloakAdmin(
                connection=KeycloakOpenIDConnection(
                    server_url=state["keycloak"]["url"],
                    realm_name=realm,
                    client_id=state["keycloak"]["client_id"],
                    client_secret_key=state["keycloak"]["client_secret"],
                )
            )
            if not admin.get_users({"username": username, "exact": True}):
                admin.create_user({"username": username, "email": email, "enabled": True})
        gl = gitlab.Gitlab(state["gitlab"]["url"], private_token=state["gitlab"]["token"])
        if not gl.users.list(username=username):
            gl.users.create(
                {"username": username, "email": email or f"{username}@example.com", "name": username,
                 "password": secrets.token_urlsafe(16), "skip_confirmation": True}
            )  # fmt: skip
        seeded.append(username)
    return seeded


def apply(api_client: ApiClient, documents: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    """Create or merge-patch every document (what `kubectl apply` does, minus its bookkeeping)."""
    client = dynamic.DynamicClient(api_client)
    applied = []
    for doc in documents:
        resource = client.resources.get(api_version=doc["apiVersion"], kind=doc["kind"])
        namespace = doc["metadata"].get("namespace") if resource.namespaced else None
        try:
            resource.get(name=doc["metadata"]["name"], namespace=namespace)
        except NotFoundError:
            resource.create(body=doc, namespace=namespace)
            if doc.get("status") and doc["kind"] == "Node":
                # What a kubelet reports; the API ignores status on create.
                CoreV1Api(api_client).patch_node_status(
                    doc["metadata"]["name"], {"status": doc["status"]}, _preload_content=False
                )
            elif doc.get("status"):
                # What another operator (CloudNativePG) reports, through the status subresource.
                resource.status.patch(
                    body={"status": doc["status"]},
                    name=doc["metadata"]["name"],
                    namespace=namespace,
                    content_type="application/merge-patch+json",
                )
        else:
            resource.patch(
                body=doc,
                name=doc["metadata"]["name"],
                namespace=namespace,
                content_type="application/merge-patch+json",
            )
        # Kinds of other API groups are group-qualified, so CloudNativePG's Backup is no polycrate.io Backup.
        group = doc["apiVersion"].rpartition("/")[0]
        kind = doc["kind"] if group in ("", API_VERSION.partition("/")[0]) else f"{group}/{doc['kind']}"
        applied.append((kind, namespace or "", doc["metadata"]["name"]))
    return applied


def apply_examples(api_client: ApiClient, state_file: Path) -> list[tuple[str, str, str]]:
    """Apply the sandbox's examples to a running cluster, pointed at emulators running elsewhere
    (their state file), e.g. the docker-compose stack's."""
    state = json.loads(state_file.read_text())["systems"]

    def add_realm(name: str) -> None:
        response = requests.post(
            f"{state['keycloak']['url']}/_emulator/realms", json={"name": name}, timeout=10
        )
        response.raise_for_status()

    documents = point_at_state(load_manifests(), state, add_realm=add_realm)
    seed_users_of_state(documents, state)
    install_crds(api_client, third_party_crds())  # the examples hold CloudNativePG objects too
    return apply(api_client, documents)


def discovered_keys(api_client: ApiClient) -> list[tuple[str, str, str]]:
    """The polycrate.io objects discovery has created so far, of the kinds the sandbox expects."""
    client = dynamic.DynamicClient(api_client)
    keys = []
    for kind in EXPECTED_DISCOVERED:
        for obj in client.resources.get(api_version=API_VERSION, kind=kind).get().to_dict()["items"]:
            keys.append((kind, obj["metadata"].get("namespace", ""), obj["metadata"]["name"]))
    return keys


def object_states(api_client: ApiClient, keys: list[tuple[str, str, str]]) -> list[ObjectState]:
    client = dynamic.DynamicClient(api_client)
    states = []
    for kind, namespace, name in keys:
        if kind not in KINDS:
            continue
        resource = client.resources.get(api_version=API_VERSION, kind=kind)
        try:
            obj = resource.get(name=name, namespace=namespace or None).to_dict()
        except NotFoundError:
            states.append(ObjectState(kind, namespace, name, None, False, "not found"))
            continue
        status = obj.get("status") or {}
        phase = status.get("phase")
        observed = status.get("observedGeneration")
        settled = phase in SETTLED_PHASES and observed == obj["metadata"].get("generation")
        messages = [c.get("message", "") for c in status.get("conditions") or [] if c.get("status") != "True"]
        states.append(ObjectState(kind, namespace, name, phase, settled, "; ".join(m for m in messages if m)))
    return states


class Sandbox:
    """Everything the demo runs; use as a context manager or call `run()`."""

    def __init__(self, options: SandboxOptions, *, echo: Callable[[str], None] = print) -> None:
        self.options = options
        self.echo = echo
        self.workdir = options.workdir.resolve()
        self.kubeconfig = self.workdir / "kubeconfig"
        self.operator_kubeconfig = self.workdir / "operator-kubeconfig"
        self.state_file = self.workdir / "emulators.json"
        self.operator_log = self.workdir / "operator.log"
        self._stack = ExitStack()
        self._operator: subprocess.Popen[bytes] | None = None
        self._flower: subprocess.Popen[bytes] | None = None
        self.flower_log = self.workdir / "flower.log"
        self.flower_url = ""
        self.flower_credentials = ("sandbox", secrets.token_urlsafe(12))
        self.systems: EmulatedSystems | None = None
        self.kube: KubeEmulator | None = None
        self.redis_url = options.redis_url or ""
        self.applied: list[tuple[str, str, str]] = []

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        if not self.redis_url:
            redis_server = LocalRedis(self.workdir).start()
            self._stack.callback(redis_server.stop)
            self.redis_url = redis_server.url
        self.echo(f"redis          {redact_url(self.redis_url)}")

        self.kube = KubeEmulator(port=self.options.kube_port, latency_ms=self.options.latency_ms)
        self.kube.start()
        self._stack.callback(self.kube.stop)
        self.kube.write_kubeconfig(self.kubeconfig)
        self.echo(f"kubernetes     {self.kube.url}   (kubeconfig {self.kubeconfig})")

        self.systems = EmulatedSystems(port_base=self.options.port_base, latency_ms=self.options.latency_ms)
        self.systems.start()
        self._stack.callback(self.systems.stop)
        for name in self.systems.servers:
            self.echo(f"{name:<14} {self.systems.url(name)}")
        self.systems.write_state(
            self.state_file,
            extra={
                "kubernetes": {"url": self.kube.url, "kubeconfig": str(self.kubeconfig)},
                "redis": {"url": self.redis_url},
                "flower": {
                    "url": self._flower_address(),
                    "username": self.flower_credentials[0],
                    "password": self.flower_credentials[1],
                },
            },
        )

        api_client = load_api_client(str(self.kubeconfig))
        install_crds(api_client, crd_manifests())
        others = install_crds(api_client, third_party_crds())
        self.echo(f"installed {len(KINDS)} CRDs, and {', '.join(crd.name for crd in others)}")
        documents = point_at_emulators(load_manifests(), self.systems)
        seeded = seed_users(documents, self.systems)
        if seeded:
            self.echo(f"users who logged in once (Keycloak, GitLab): {', '.join(seeded)}")
        self.applied = apply(api_client, documents)
        self.echo(f"applied {len(self.applied)} objects from {MANIFESTS_DIR}")

        operator_kubeconfig(api_client, self.kubeconfig, self.operator_kubeconfig)
        self.echo(f"operator RBAC  deploy/rbac.yaml (kubeconfig {self.operator_kubeconfig})")

        self._start_flower()  # first, so it sees the operator's first tasks
        self._start_operator()

    def _flower_address(self) -> str:
        if not self.flower_url:
            self.flower_url = f"http://127.0.0.1:{self.options.flower_port or free_port()}"
        return self.flower_url

    def _start_flower(self) -> None:
        port = self._flower_address().rsplit(":", 1)[1]
        user, password = self.flower_credentials
        env = {**os.environ, "REDIS_URL": self.redis_url}
        command = [
            sys.executable, "-m", "celery", "-A", "tasks.app", "flower",
            "--address=127.0.0.1", f"--port={port}", f"--basic-auth={user}:{password}",
        ]  # fmt: skip
        self._flower = self._spawn(command, env, self.flower_log, grace=10)
        self.echo(f"flower         {self.flower_url}   (user {user}, password in {self.state_file})")

    def _spawn(
        self, command: list[str], env: dict[str, str], log_path: Path, *, grace: float
    ) -> subprocess.Popen[bytes]:
        """A child writing to `log_path`, stopped when the sandbox closes (SIGKILL after `grace` s)."""
        log_file = log_path.open("ab")
        process = subprocess.Popen(
            command, env=env, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        self._stack.callback(stop_gracefully, process, grace)
        return process

    def _start_operator(self) -> None:
        env = {**os.environ, "REDIS_URL": self.redis_url, "KUBECONFIG": str(self.operator_kubeconfig)}
        command = [
            sys.executable, "-m", "cli", "operator", "run",
            "--kubeconfig", str(self.operator_kubeconfig),
            "--workers", str(self.options.workers),
            "--metrics-bind-address", f"127.0.0.1:{free_port()}",
            "--health-probe-bind-address", f"127.0.0.1:{free_port()}",
        ]  # fmt: skip
        self._operator = self._spawn(command, env, self.operator_log, grace=40)
        self.echo(f"operator       pid {self._operator.pid}, log {self.operator_log}")

    def wait_until_reconciled(self) -> SandboxReport:
        report = SandboxReport(self.kubeconfig, self.state_file, self.operator_log)
        api_client = load_api_client(str(self.kubeconfig))
        deadline = time.monotonic() + self.options.timeout
        while True:
            discovered = discovered_keys(api_client)
            report.objects = object_states(api_client, self.applied + discovered)
            counts = {kind: sum(1 for k in discovered if k[0] == kind) for kind in EXPECTED_DISCOVERED}
            complete = all(counts[kind] >= wanted for kind, wanted in EXPECTED_DISCOVERED.items())
            if (report.ready and complete) or time.monotonic() > deadline:
                return report
            if self._operator is not None and self._operator.poll() is not None:
                raise RuntimeError(
                    f"the operator exited with code {self._operator.returncode}; see {self.operator_log}"
                )
            time.sleep(0.5)

    def stop(self) -> None:
        self._stack.close()
