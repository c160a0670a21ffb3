"""A throw-away Redis: the machine's `redis-server` as a child process on a free loopback port.

`polycrate operator run` starts one when REDIS_URL is not set (so a kubeconfig is all a laptop
needs), the sandbox and the benchmarks start one for themselves. It listens on 127.0.0.1 only,
requires a random password, and persists nothing (no RDB, no AOF): the queue and locks are
rebuilt from the watcher's initial list. The configuration, password included, goes to the
child on stdin, so it never shows in `ps`. On Linux the child is also told to exit when its
parent dies (PR_SET_PDEATHSIG), so even a SIGKILLed operator leaves no redis-server behind.
"""

from __future__ import annotations

import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import redis

from polycrate.graceful_stop import stop_gracefully
from polycrate.parent_death import die_with_parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServerError(RuntimeError):
    """redis-server is missing or did not come up; the message says what to do."""


class LocalRedis:
    """`redis-server` as a child process; `url` (with its password) once started.

    `workdir` keeps its log (`redis.log`); without one a temporary directory is used and
    removed on `stop()`.
    """

    def __init__(self, workdir: Path | None = None, *, port: int = 0, password: str | None = None) -> None:
        self._own_workdir = workdir is None
        self.workdir = workdir if workdir is not None else Path(tempfile.mkdtemp(prefix="polycrate-redis-"))
        self.port = port or free_port()
        self.password = password if password is not None else secrets.token_urlsafe(24)
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def _config(self) -> bytes:
        lines = [
            f"port {self.port}",
            "bind 127.0.0.1",
            "protected-mode yes",
            'save ""',
            "appendonly no",
            f'dir "{self.workdir}"',
        ]
        if self.password:
            lines.append(f"requirepass {self.password}")
        return ("\n".join(lines) + "\n").encode()

    def start(self, *, timeout: float = 10.0) -> LocalRedis:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RedisServerError(
                "redis-server is not installed: `apt-get install redis-server` (or run `make sandbox`, "
                "which installs it), or point REDIS_URL at a running Redis"
            )
        self.workdir.mkdir(parents=True, exist_ok=True)
        log_path = self.workdir / "redis.log"
        with log_path.open("ab") as log:
            self._process = subprocess.Popen(
                [binary, "-"],  # "-": read the configuration from stdin
                stdin=subprocess.PIPE,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent(),  # noqa: PLW1509
            )
        assert self._process.stdin is not None
        self._process.stdin.write(self._config())
        self._process.stdin.close()
        client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + timeout
        try:
            while True:
                try:
                    client.ping()
                    return self
                except redis.ConnectionError as exc:
                    if self._process.poll() is not None or time.monotonic() > deadline:
                        tail = log_path.read_text(errors="replace").strip().splitlines()[-1:]
                        self.stop()
                        raise RedisServerError(
                            f"redis-server did not start on 127.0.0.1:{self.port}: {' '.join(tail) or exc}"
                        ) from None
                    time.sleep(0.05)
        finally:
            client.close()

    def kill(self) -> None:
        """SIGKILL, as a crash or an OOM kill would end it (tests and benchmarks of recovery);
        `start()` brings it back on the same port, empty."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()
        self._process = None

    def stop(self) -> None:
        stop_gracefully(self._process, grace=5)
        self._process = None
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
