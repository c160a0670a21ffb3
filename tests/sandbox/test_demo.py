"""The newcomer's first command, end to end: everything starts and the examples reach Ready."""

import json
import subprocess
import sys
import time

import pytest
import yaml

from sandbox.demo import load_manifests, point_at_emulators
from sandbox.systems import EmulatedSystems


@pytest.mark.slow
def test_sandbox_reconciles_every_example_and_exits_when_ready(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "cli", "operator", "sandbox", "--dir", str(tmp_path),
         "--exit-when-ready", "--timeout", "90"],
        capture_output=True,
        text=True,
        timeout=180,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr + (tmp_path / "operator.log").read_text()
    assert "✗ " not in result.stdout.split("Polycrate Operator Status")[0]
    assert "objects reconciled" in result.stdout
    assert "flower         http://127.0.0.1:" in result.stdout
    kubeconfig = yaml.safe_load((tmp_path / "kubeconfig").read_text())
    assert kubeconfig["current-context"]
    state = json.loads((tmp_path / "emulators.json").read_text())
    assert set(state["systems"]) == {"keycloak", "gitlab", "harbor", "argocd", "polycrate_api"}


def test_manifests_are_pointed_at_the_running_emulators():
    with EmulatedSystems() as systems:
        documents = point_at_emulators(load_manifests(), systems)
        sdp = next(d for d in documents if d["kind"] == "SoftwareDeliveryPlatform")
        secrets = {d["metadata"]["name"]: d["stringData"] for d in documents if d["kind"] == "Secret"}
        assert sdp["spec"]["gitlab"]["url"] == systems.gitlab.url
        assert sdp["spec"]["keycloak"]["realm"] in systems.keycloak.realms
        assert secrets["gitlab-creds"]["token"] == systems.gitlab.admin_token
        assert secrets["keycloak-creds"]["client-secret"] == systems.keycloak.client_secret
        config = next(d for d in documents if d["kind"] == "OperatorConfig")
        assert config["spec"]["api_sync"]["api_url"] == systems.polycrate_api.url


@pytest.mark.slow
def test_sandbox_provisions_the_spec_examples_in_every_system(tmp_path):
    """What a person sees through each system's own client once the sandbox is Ready."""
    import gitlab
    import requests
    from keycloak import KeycloakAdmin, KeycloakOpenIDConnection

    from sandbox.demo import Sandbox, SandboxOptions

    with Sandbox(SandboxOptions(workdir=tmp_path, timeout=120), echo=lambda _: None) as demo:
        demo.start()
        report = demo.wait_until_reconciled()
        assert report.ready, [(o.kind, o.name, o.phase, o.message) for o in report.objects if not o.settled]
        assert demo.kube is not None
        assert list(demo.kube.access.denials) == [], (
            "the operator's RBAC (deploy/rbac.yaml) covers every call"
        )
        systems = json.loads(report.state_file.read_text())["systems"]

        kc = systems["keycloak"]
        keycloak = KeycloakAdmin(
            connection=KeycloakOpenIDConnection(
                server_url=kc["url"],
                realm_name="acme",
                client_id=kc["client_id"],
                client_secret_key=kc["client_secret"],
            )
        )
        org_group = keycloak.get_group_by_path("/acme-corp")
        subgroups = {g["name"] for g in keycloak.get_group_children(org_group["id"])}
        assert subgroups == {"acme-corp-admins", "acme-corp-developers", "acme-corp-viewers"}
        john = keycloak.get_user_id("john.doe")
        john_groups = {g["path"] for g in keycloak.get_user_groups(john)}
        assert {"/acme-corp/acme-corp-developers", "/shared-developers"} <= john_groups

        gl = gitlab.Gitlab(systems["gitlab"]["url"], private_token=systems["gitlab"]["token"])
        assert gl.groups.get("acme-corp").visibility == "private"
        assert gl.groups.get("shared-libs").visibility == "internal"

        hb = systems["harbor"]
        auth = (hb["username"], hb["password"])
        summary = requests.get(
            f"{hb['url']}/api/v2.0/projects/acme-corp/summary", auth=auth, timeout=5
        ).json()
        assert summary["quota"]["hard"]["storage"] == 50 * 1024**3
        assert (
            requests.get(f"{hb['url']}/api/v2.0/projects/shared-images", auth=auth, timeout=5).status_code
            == 200
        )

        argocd = systems["argocd"]
        headers = {"Authorization": f"Bearer {argocd['token']}"}
        project = requests.get(
            f"{argocd['url']}/api/v1/projects/acme-corp", headers=headers, timeout=5
        ).json()
        roles = {role["name"]: role for role in project["spec"]["roles"]}
        assert "acme-corp-admins" in roles["admin"]["groups"]
        assert "p, proj:acme-corp:admin, applications, *, acme-corp/*, allow" in roles["admin"]["policies"]
        clusters = requests.get(f"{argocd['url']}/api/v1/clusters", headers=headers, timeout=5).json()[
            "items"
        ]
        assert "https://api.prod.example.com:6443" in {c["server"] for c in clusters}

        # Flower, behind basic auth, shows each reconcile as `reconcile` with its key.
        flower = json.loads(report.state_file.read_text())["flower"]
        flower_auth = (flower["username"], flower["password"])
        assert requests.get(f"{flower['url']}/api/tasks", timeout=5).status_code == 401
        deadline = time.monotonic() + 30
        while True:
            tasks = requests.get(f"{flower['url']}/api/tasks", auth=flower_auth, timeout=5).json()
            acme = [t for t in tasks.values() if t["args"] == "Organization/polycrate/acme-corp"]
            if any(t["state"] == "SUCCESS" for t in acme):
                break
            assert time.monotonic() < deadline, tasks
            time.sleep(0.5)
        # Celery's task-sent event carries the registered name (celery/app/amqp.py) and the worker's
        # events the shadow name; which one Flower keeps depends on the order the events arrive in.
        assert "reconcile" in {t["name"] for t in tasks.values()}
        assert {t["name"] for t in tasks.values()} <= {"reconcile", "polycrate.reconcile"}

        # The CloudNativePG backup and its schedule, discovered and in the Polycrate API.
        api = systems["polycrate_api"]
        token = {"Authorization": f"Token {api['token']}"}
        backups = requests.get(f"{api['url']}/api/v1/backups/", headers=token, timeout=5).json()["results"]
        assert {
            (b["name"], b["source"], b["namespace"], b["postgres_cluster"], b["method"], b["status"])
            for b in backups
        } == {
            (
                "pg-main-nightly-20260106020000",
                "cnpg",
                "databases",
                "pg-main",
                "barmanObjectStore",
                "completed",
            )
        }
        schedules = requests.get(f"{api['url']}/api/v1/backup-schedules/", headers=token, timeout=5).json()
        assert [(s["name"], s["schedule_cron"], s["last_backup_name"]) for s in schedules["results"]] == [
            ("pg-main-nightly", "0 0 2 * * *", "pg-main-nightly-20260106020000")
        ]
