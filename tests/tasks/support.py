"""Helpers shared by the tasks tests: a recording stand-in for the Celery publish, the CRDs and
the spec's examples from the repository, and a way to open up a CRD's spec schema so objects the
schema would reject (as an older, looser CRD let them in) reach the operator's own validation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from polycrate.keys import ObjectKey
from polycrate.kubeclient.api import JsonObject

REPOSITORY_ROOT = Path(__file__).resolve().parents[2]
CRDS = REPOSITORY_ROOT / "deploy" / "crds"
EXAMPLES = REPOSITORY_ROOT / "examples"


class RecordingSender:
    """Stands in for the Celery publish: remembers what would have been sent."""

    def __init__(self) -> None:
        self.sent: list[tuple[ObjectKey, str, float]] = []
        self.fail_next = False

    def __call__(self, key: ObjectKey, task_id: str, countdown: float) -> None:
        if self.fail_next:
            self.fail_next = False
            raise ConnectionError("broker unreachable")
        self.sent.append((key, task_id, countdown))

    def task_ids(self) -> list[str]:
        return [task_id for _, task_id, _ in self.sent]


def without_spec_validation(crd_path: Path) -> dict[str, Any]:
    """The CRD with its spec schema opened up, as if the object predates a stricter schema."""
    crd = yaml.safe_load(crd_path.read_text())
    for version in crd["spec"]["versions"]:
        properties = version["schema"]["openAPIV3Schema"]["properties"]
        properties["spec"] = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
        version["schema"]["openAPIV3Schema"].pop("required", None)
    return crd


def example(name: str, namespace: str) -> JsonObject:
    """A spec example from examples/, without its status block, placed in `namespace`."""
    obj = yaml.safe_load((EXAMPLES / name).read_text())
    obj.pop("status", None)
    obj["metadata"]["namespace"] = namespace
    return obj


def platform_manifests(
    namespace: str, name: str, *, keycloak: Any, gitlab: Any, harbor: Any, argocd: Any
) -> list[JsonObject]:
    """Secrets and a SoftwareDeliveryPlatform `name` whose four systems are the given emulators."""

    def secret(secret_name: str, data: dict[str, str]) -> JsonObject:
        return {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": secret_name, "namespace": namespace},
            "stringData": data,
        }

    return [
        secret("keycloak-creds", {"client-id": keycloak.client_id, "client-secret": keycloak.client_secret}),
        secret("gitlab-creds", {"token": gitlab.admin_token}),
        secret("harbor-creds", {"username": harbor.admin_username, "password": harbor.admin_password}),
        secret("argocd-creds", {"token": argocd.token}),
        {
            "apiVersion": "polycrate.io/v1alpha1",
            "kind": "SoftwareDeliveryPlatform",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "keycloak": {
                    "url": keycloak.url,
                    "realm": keycloak.realm,
                    "credentialsRef": {"secretName": "keycloak-creds"},
                },
                "gitlab": {"url": gitlab.url, "credentialsRef": {"secretName": "gitlab-creds"}},
                "harbor": {"url": harbor.url, "credentialsRef": {"secretName": "harbor-creds"}},
                "argocd": {
                    "url": argocd.url,
                    "credentialsRef": {"secretName": "argocd-creds"},
                    "roles": {
                        "admin": {
                            "policies": ["p, proj:{project}:admin, applications, *, {project}/*, allow"]
                        },
                        "developer": {
                            "policies": ["p, proj:{project}:developer, applications, get, {project}/*, allow"]
                        },
                    },
                },
            },
        },
    ]
