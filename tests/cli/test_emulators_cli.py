"""`polycrate operator emulators`: five systems in one process, a state file, clean shutdown."""

import json
import signal
import subprocess
import sys
import time

import gitlab
import requests
from keycloak import KeycloakAdmin, KeycloakOpenIDConnection


def _start(state_file):
    process = subprocess.Popen(
        [sys.executable, "-m", "cli", "operator", "emulators", "--state-file", str(state_file)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 30
    while not state_file.exists():
        assert process.poll() is None, process.stderr.read().decode()
        assert time.monotonic() < deadline, "no state file within 30 s"
        time.sleep(0.1)
    return process


def test_state_file_lets_each_official_client_drive_its_system(tmp_path):
    state_file = tmp_path / "emulators.json"
    process = _start(state_file)
    try:
        systems = json.loads(state_file.read_text())["systems"]
        assert set(systems) == {"keycloak", "gitlab", "harbor", "argocd", "polycrate_api"}
        assert oct(state_file.stat().st_mode & 0o777) == "0o600"

        kc = systems["keycloak"]
        keycloak = KeycloakAdmin(
            connection=KeycloakOpenIDConnection(
                server_url=kc["url"],
                realm_name=kc["realm"],
                client_id=kc["client_id"],
                client_secret_key=kc["client_secret"],
            )
        )
        keycloak.create_group({"name": "acme-corp"})
        assert [g["name"] for g in keycloak.get_groups()] == ["acme-corp"]

        gl = gitlab.Gitlab(systems["gitlab"]["url"], private_token=systems["gitlab"]["token"])
        gl.groups.create({"name": "acme-corp", "path": "acme-corp"})
        assert gl.groups.get("acme-corp").full_path == "acme-corp"

        hb = systems["harbor"]
        created = requests.post(
            f"{hb['url']}/api/v2.0/projects",
            json={"project_name": "acme-corp"},
            auth=(hb["username"], hb["password"]),
            timeout=5,
        )
        assert created.status_code == 201

        argocd = systems["argocd"]
        projects = requests.get(
            f"{argocd['url']}/api/v1/projects",
            headers={"Authorization": f"Bearer {argocd['token']}"},
            timeout=5,
        )
        assert projects.status_code == 200

        api = systems["polycrate_api"]
        unauthenticated = requests.get(f"{api['url']}/api/v1/clusters/", timeout=5)
        authenticated = requests.get(
            f"{api['url']}/api/v1/clusters/", headers={"Authorization": f"Token {api['token']}"}, timeout=5
        )
        assert (unauthenticated.status_code, authenticated.status_code) == (401, 200)
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=15) == 0


def test_sigterm_shuts_down_cleanly(tmp_path):
    process = _start(tmp_path / "state.json")
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=15) == 0
    assert b"stopping the emulators" in process.stderr.read()


def test_busy_port_is_one_line_and_non_zero(tmp_path):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "cli", "operator", "emulators", "--port-base", str(port),
             "--state-file", str(tmp_path / "s.json")],
            capture_output=True,
            text=True,
            timeout=60,
        )  # fmt: skip
    assert result.returncode != 0
    assert result.stderr.strip().count("\n") == 0
    assert result.stderr.startswith("error: cannot start the emulators")


def test_sigint_stops_it_even_when_started_in_the_background(tmp_path):
    # A shell's background job starts with SIGINT ignored; `kill -INT` must still stop it.
    state_file = tmp_path / "state.json"
    process = subprocess.Popen(
        [sys.executable, "-m", "cli", "operator", "emulators", "--state-file", str(state_file)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    deadline = time.monotonic() + 30
    while not state_file.exists():
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.1)
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=15) == 0
