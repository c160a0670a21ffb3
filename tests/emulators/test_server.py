"""The shared emulator pipeline: faults, contract checks, admin endpoints."""

import time

import pytest
import requests
from werkzeug.routing import Rule

from emulators.server import EmulatorServer, json_response


class TinyHarbor(EmulatorServer):
    """Just enough Harbor to exercise the pipeline."""

    system = "harbor"
    contract_file = "harbor-v2.0-swagger.yaml"

    def routes(self):
        return [Rule("/api/v2.0/projects", methods=["GET"], endpoint="list_projects")]

    def reset_state(self):
        self.projects = [{"project_id": 1, "name": "library"}]

    def snapshot(self):
        return {"projects": self.projects}

    def list_projects(self, request):
        return json_response(self.projects)


@pytest.fixture
def tiny():
    with TinyHarbor() as server:
        yield server


def test_valid_request_is_served_and_counted(tiny):
    assert requests.get(f"{tiny.url}/api/v2.0/projects", timeout=5).json()[0]["name"] == "library"
    assert requests.get(f"{tiny.url}/_emulator/calls", timeout=5).json() == {"GET /api/v2.0/projects": 1}


def test_request_off_the_spec_is_refused_and_recorded(tiny):
    response = requests.get(f"{tiny.url}/api/v2.0/projects", params={"bogus": "1"}, timeout=5)
    assert response.status_code == 400
    assert tiny.violations[0]["problems"] == [
        "GET /projects (listProjects): query parameter 'bogus' is not in the spec"
    ]


def test_rate_limit_fault_answers_429_with_retry_after(tiny):
    requests.post(
        f"{tiny.url}/_emulator/faults", json={"rate_limit": {"count": 1, "retry_after": 7}}, timeout=5
    )
    first = requests.get(f"{tiny.url}/api/v2.0/projects", timeout=5)
    second = requests.get(f"{tiny.url}/api/v2.0/projects", timeout=5)
    assert (first.status_code, first.headers["Retry-After"]) == (429, "7")
    assert second.status_code == 200


def test_faults_posted_over_http_are_applied_and_echoed_back(tiny):
    response = requests.post(f"{tiny.url}/_emulator/faults", json={"outage_seconds": 0.3}, timeout=5)

    assert response.status_code == 200
    assert response.json()["outage_until"] > time.time()
    assert requests.get(f"{tiny.url}/api/v2.0/projects", timeout=5).status_code == 503
    time.sleep(0.35)
    assert requests.get(f"{tiny.url}/api/v2.0/projects", timeout=5).status_code == 200
    assert requests.get(f"{tiny.url}/_emulator/faults", timeout=5).json()["latency_ms"] == 0.0


def test_outage_window_answers_503_until_it_ends(tiny):
    tiny.set_faults(outage_seconds=0.3)
    assert requests.get(f"{tiny.url}/api/v2.0/projects", timeout=5).status_code == 503
    time.sleep(0.35)
    assert requests.get(f"{tiny.url}/api/v2.0/projects", timeout=5).status_code == 200


def test_latency_is_added_to_every_request(tiny):
    tiny.set_faults(latency_ms=150)
    started = time.monotonic()
    requests.get(f"{tiny.url}/api/v2.0/projects", timeout=5)
    assert time.monotonic() - started >= 0.15


def test_reset_clears_state_calls_and_faults(tiny):
    tiny.projects.append({"project_id": 2, "name": "extra"})
    tiny.set_faults(error_rate=1.0)
    requests.post(f"{tiny.url}/_emulator/reset", timeout=5)
    assert requests.get(f"{tiny.url}/_emulator/state", timeout=5).json() == {
        "projects": [{"project_id": 1, "name": "library"}]
    }
    assert requests.get(f"{tiny.url}/api/v2.0/projects", timeout=5).status_code == 200


def test_unknown_fault_knob_is_refused(tiny):
    response = requests.post(f"{tiny.url}/_emulator/faults", json={"latency": 5}, timeout=5)
    assert response.status_code == 400
