"""The throw-away redis-server: loopback only, a password nobody can read from `ps`, nothing left."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from polycrate.redis_server import LocalRedis


@pytest.fixture
def server() -> Iterator[LocalRedis]:
    started = LocalRedis().start()
    yield started
    started.stop()


def test_it_answers_with_its_password_and_refuses_without(server: LocalRedis) -> None:
    assert redis.Redis.from_url(server.url).ping()
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(host="127.0.0.1", port=server.port).ping()


def test_its_password_is_not_on_its_command_line(server: LocalRedis) -> None:
    cmdline = Path(f"/proc/{server.pid}/cmdline").read_bytes().decode(errors="replace")

    assert server.password and server.password not in cmdline


def test_it_listens_on_loopback_only(server: LocalRedis) -> None:
    client = redis.Redis.from_url(server.url)

    assert client.config_get("bind")["bind"] == "127.0.0.1"
    assert client.config_get("save")["save"] == ""
    assert client.config_get("appendonly")["appendonly"] == "no"


def test_stop_ends_the_process_and_removes_its_temporary_directory() -> None:
    server = LocalRedis().start()
    pid, workdir = server.pid, server.workdir

    server.stop()

    assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]
    assert not workdir.exists()
