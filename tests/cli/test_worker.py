"""`polycrate operator worker`: one clear line when it cannot start, metrics when asked."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import redis
import requests
from celery import Celery
from click.testing import CliRunner

from cli import main
from polycrate.keys import ObjectKey
from tasks.queue import KeyQueue, celery_sender
from tests.fixtures.workers import WorkerPool
from tests.tasks.handlers import RECORDED_KIND, RecordedObjects


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    # The command exports --kubeconfig for its pool processes; keep that out of other tests.
    monkeypatch.delenv("POLYCRATE_KUBECONFIG", raising=False)
    return CliRunner()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_unreachable_redis_is_one_line_and_exit_1(runner: CliRunner) -> None:
    result = runner.invoke(
        main, ["operator", "worker"], env={"REDIS_URL": f"redis://:hunter2@127.0.0.1:{free_port()}/0"}
    )

    assert result.exit_code == 1
    assert result.stderr.startswith("error: Redis at redis://:***@127.0.0.1:")
    assert "unreachable" in result.stderr and "hunter2" not in result.stderr
    assert result.stderr.count("\n") == 1


def test_unknown_queue_is_rejected_with_the_valid_names(runner: CliRunner) -> None:
    result = runner.invoke(main, ["operator", "worker", "--queues", "harbour"])

    assert result.exit_code == 1
    assert "unknown queue(s) harbour; choose from default, keycloak" in result.stderr


def test_missing_kubeconfig_is_one_line_and_exit_1(runner: CliRunner, redis_url: str, tmp_path: Path) -> None:
    result = runner.invoke(
        main,
        ["operator", "worker", "--kubeconfig", str(tmp_path / "absent.yaml")],
        env={"REDIS_URL": redis_url},
    )

    assert result.exit_code == 1
    assert "absent.yaml does not exist" in result.stderr
    assert result.stderr.count("\n") == 1


def test_handler_plugin_that_cannot_be_loaded_stops_the_worker(
    runner: CliRunner, redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    installed = tmp_path / "site"
    dist_info = installed / "acme_handlers-1.dist-info"
    dist_info.mkdir(parents=True)
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-handlers\nVersion: 1\n")
    (dist_info / "entry_points.txt").write_text(
        "[polycrate.handlers]\nacme = acme.missing_handlers:register_handlers\n"
    )
    monkeypatch.syspath_prepend(str(installed))  # as if the package were installed
    kubeconfig = WorkerPool(redis_url, tmp_path).kubeconfig
    result = runner.invoke(
        main, ["operator", "worker", "--kubeconfig", kubeconfig], env={"REDIS_URL": redis_url}
    )

    assert result.exit_code == 1
    assert "handler plug-in 'acme' (acme.missing_handlers:register_handlers" in result.stderr
    assert "cannot load it: No module named 'acme'" in result.stderr


def test_invalid_setting_is_one_line_and_exit_1(runner: CliRunner) -> None:
    result = runner.invoke(main, ["operator", "worker"], env={"POLYCRATE_LOCK_TTL": "-1"})

    assert result.exit_code == 1
    assert result.stderr.startswith("error: invalid setting POLYCRATE_LOCK_TTL='-1'")


@pytest.mark.slow
def test_worker_serves_reconcile_metrics_of_its_pool_processes(
    worker_pool: WorkerPool, redis_client: redis.Redis, celery_app: Celery
) -> None:
    port = free_port()
    worker_pool.start(1, concurrency=2, extra_args=("--metrics-bind-address", f"127.0.0.1:{port}"))
    objects = RecordedObjects(redis_client)
    queue = KeyQueue(redis_client, sender=celery_sender(celery_app))
    keys = [ObjectKey(RECORDED_KIND, "team-a", f"widget-{n}") for n in range(5)]
    for key in keys:
        objects.put(key, version=1)
        queue.add(key)

    expected = f'polycrate_reconciles_total{{kind="{RECORDED_KIND}",outcome="succeeded"}} 5.0'
    deadline = time.monotonic() + 20
    while expected not in (
        scraped := urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    ):
        assert time.monotonic() < deadline, f"metrics never counted the five reconciles:\n{scraped}"
        time.sleep(0.1)

    assert "widget" not in scraped, "object names never become label values"
    waits = re.findall(r'^polycrate_queue_wait_seconds_count\{queue="default"\} (\S+)$', scraped, re.M)
    assert waits == ["5.0"], "every run observed its time in the queue"


def test_worker_metrics_behind_a_token_file_answer_only_its_bearer(
    worker_pool: WorkerPool, tmp_path: Path
) -> None:
    port = free_port()
    token_file = tmp_path / "metrics-token"
    token_file.write_text("scrape-me")
    worker_pool.start(
        1,
        extra_args=("--metrics-bind-address", f"127.0.0.1:{port}", "--metrics-token-file", str(token_file)),
    )
    url = f"http://127.0.0.1:{port}/metrics"

    anonymous = requests.get(url, timeout=5)
    allowed = requests.get(url, headers={"Authorization": "Bearer scrape-me"}, timeout=5)

    assert anonymous.status_code == 401
    assert allowed.status_code == 200


@pytest.mark.slow
def test_worker_probes_report_consuming_and_the_healing_loop_publishes_its_metrics(
    worker_pool: WorkerPool, redis_client: redis.Redis
) -> None:
    probes, metrics = free_port(), free_port()
    worker_pool.start(
        1,
        extra_args=(
            "--health-probe-bind-address", f"127.0.0.1:{probes}",
            "--metrics-bind-address", f"127.0.0.1:{metrics}",
        ),
    )  # fmt: skip

    def get(port: int, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()

    deadline = time.monotonic() + 30
    while get(probes, "/readyz")[0] != 200:
        assert time.monotonic() < deadline, f"never ready: {get(probes, '/readyz')}"
        time.sleep(0.2)
    status, body = get(probes, "/healthz")
    assert status == 200 and "[+]consuming ok" in body and "[+]healing-loop ok" in body

    # A retry that became due is published by the loop and counted by cause.
    redis_client.hset("polycrate:queue:pending", f"{RECORDED_KIND}/team-a/late", "@a-retry")
    redis_client.zadd("polycrate:queue:due", {f"{RECORDED_KIND}/team-a/late": 0})
    expected = 'polycrate_healer_keys_resent_total{cause="retry-due"} 1.0'
    while expected not in (scraped := get(metrics, "/metrics")[1]):
        assert time.monotonic() < deadline + 30, f"the healing loop never published the retry:\n{scraped}"
        time.sleep(0.2)


@pytest.mark.slow
def test_a_celery_worker_that_dies_is_restarted_by_the_worker_command_and_consumes_again(
    worker_pool: WorkerPool, redis_client: redis.Redis, celery_app: Celery
) -> None:
    worker = worker_pool.start(1)[0]
    celery_main = worker.pool_children()[0]  # the supervisor's only child; its pool processes follow
    os.kill(celery_main, signal.SIGKILL)  # e.g. kombu giving up during a broker reconnect

    deadline = time.monotonic() + 90
    while worker.log().count(" ready.") < 2:
        assert worker.running(), f"the worker command itself ended:\n{worker.log()}"
        assert time.monotonic() < deadline, f"Celery was not restarted:\n{worker.log()}"
        time.sleep(0.2)
    assert "Celery worker ended (exit code -9)" in worker.log()

    key = ObjectKey(RECORDED_KIND, "team-a", "after-restart")
    RecordedObjects(redis_client).put(key, version=1)
    KeyQueue(redis_client, sender=celery_sender(celery_app)).add(key)
    while not RecordedObjects(redis_client).runs(key):
        assert time.monotonic() < deadline, "the restarted worker does not consume"
        time.sleep(0.2)


def _running(pid: int) -> bool:
    """Whether `pid` is a live process (a zombie nobody reaped has ended)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in ("Z", "X")


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="the parent-death signal is Linux's")
def test_a_supervisor_killed_alone_takes_its_celery_worker_with_it(worker_pool: WorkerPool) -> None:
    worker = worker_pool.start(1, concurrency=2)[0]
    celery = worker.pool_children()  # the Celery worker (a threads pool forks no pool process)
    assert len(celery) >= 1

    os.kill(worker.pid, signal.SIGKILL)  # the supervisor only, not its process group
    worker.process.wait()

    try:
        deadline = time.monotonic() + 15
        while orphans := [pid for pid in celery if _running(pid)]:
            assert time.monotonic() < deadline, f"Celery processes orphaned and still running: {orphans}"
            time.sleep(0.1)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(worker.pid, signal.SIGKILL)  # whatever is left of the group, should this fail
