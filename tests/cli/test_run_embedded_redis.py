"""`polycrate operator run --kubeconfig K` with nothing but a cluster: no REDIS_URL, so it starts
its own redis-server (loopback, password) and stops it with itself; with REDIS_URL it uses that.

Real processes throughout: the operator with its embedded worker, the redis-server it starts,
kubectl against the Kubernetes emulator, and the emulated systems of the Organization's SDP.
"""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml

from tests.cli.operator_process import OperatorProcess, OperatorProcesses
from tests.cli.test_operator_end_to_end import EXAMPLES, reconciled, wait_for
from tests.fixtures.kube import Kubectl
from tests.tasks.support import CRDS, platform_manifests

EMBEDDED = re.compile(
    r"REDIS_URL is not set: started an embedded redis-server \(pid (\d+)\) on 127\.0\.0\.1:(\d+)"
)


def _alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie waiting for its parent counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def _parent_and_command(pid: int) -> tuple[int, str]:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[1]), Path(f"/proc/{pid}/comm").read_text().strip()


def _listening_addresses(port: int) -> set[str]:
    """The local addresses with a listening TCP socket on `port` (IPv4 and IPv6)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, local_port = local.split(":")
            if state == "0A" and int(local_port, 16) == port:
                if len(address) == 8:
                    found.add(".".join(str(int(address[i : i + 2], 16)) for i in (6, 4, 2, 0)))
                else:
                    found.add(address)
    return found


@pytest.fixture
def stage(
    kubectl: Kubectl,
    kube_install_crd: Callable[..., dict],
    keycloak_emulator: Any,
    gitlab_emulator: Any,
    harbor: Any,
    argocd: Any,
) -> Kubectl:
    """The polycrate namespace, the CRDs, and the SDP "production" on the emulated systems."""
    kubectl("apply", "-f", str(EXAMPLES / "00-namespaces.yaml"))
    for plural in ("organizations", "softwaredeliveryplatforms"):
        kube_install_crd(CRDS / f"{plural}.polycrate.io.yaml")
    platform = platform_manifests(
        "polycrate",
        "production",
        keycloak=keycloak_emulator,
        gitlab=gitlab_emulator,
        harbor=harbor,
        argocd=argocd,
    )
    kubectl("apply", "-f", "-", input=yaml.safe_dump_all(platform))
    return kubectl


@pytest.fixture
def processes(tmp_path: Path, kubeconfig: str, redis_url: str) -> Iterator[OperatorProcesses]:
    started = OperatorProcesses(tmp_path, kubeconfig, redis_url)
    yield started
    started.kill_all()


def _embedded(operator: OperatorProcess) -> tuple[int, int]:
    match = wait_for(lambda: EMBEDDED.search(operator.log()), 20, "the embedded Redis line", operator)
    return int(match.group(1)), int(match.group(2))


@pytest.mark.slow
def test_run_without_redis_url_starts_its_own_redis_reconciles_and_leaves_none_behind_on_sigterm(
    stage: Kubectl, processes: OperatorProcesses
) -> None:
    operator = processes.start("--workers", "1", environment={"REDIS_URL": None})
    operator.wait_ready()
    pid, port = _embedded(operator)
    assert _parent_and_command(pid) == (operator.process.pid, "redis-server"), "a child of the operator"
    log = operator.log()
    assert len(EMBEDDED.findall(log)) == 1, "said once, in one line"
    # Loopback only and password-protected: no password, no entry.
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(host="127.0.0.1", port=port).ping()
    assert _listening_addresses(port) == {"127.0.0.1"}

    stage("apply", "-f", str(EXAMPLES / "organization-acme-corp.yaml"))
    org = wait_for(lambda: reconciled(stage, "org", "acme-corp"), 60, "the Organization's status", operator)

    assert org["status"]["phase"] == "Ready"
    assert operator.terminate(timeout=60) == 0
    deadline = time.monotonic() + 5
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(pid), "the embedded redis-server outlived the operator"


@pytest.mark.slow
def test_embedded_redis_dies_with_an_operator_that_is_killed_outright(
    stage: Kubectl, processes: OperatorProcesses
) -> None:
    operator = processes.start("--workers", "0", environment={"REDIS_URL": None})
    operator.wait_ready()
    pid, _ = _embedded(operator)

    os.kill(operator.process.pid, signal.SIGKILL)  # the operator alone: no shutdown code runs
    operator.process.wait()

    deadline = time.monotonic() + 10
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(pid), "a SIGKILLed operator left its redis-server behind"


def test_run_with_redis_url_uses_that_redis_and_starts_none(
    stage: Kubectl, processes: OperatorProcesses, redis_client: redis.Redis
) -> None:
    operator = processes.start("--workers", "0")
    operator.wait_ready()

    stage("apply", "-f", str(EXAMPLES / "organization-acme-corp.yaml"))
    wait_for(
        lambda: redis_client.keys("polycrate:queue:*"),
        20,
        "a key in the test's Redis",
        operator,
    )
    assert EMBEDDED.search(operator.log()) is None
