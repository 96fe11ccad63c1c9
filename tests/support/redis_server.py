"""A real Redis server for the test suite: ``redis-server`` on 127.0.0.1, a free port, no persistence.

Usage::

    from support.redis_server import redis_or_skip

    @pytest.fixture(scope="module")
    def redis_url():
        with redis_or_skip() as server:          # ~0.1 s to start
            yield server.url                     # redis://127.0.0.1:<port>/0

or ``RedisServer()`` directly (``start()`` / ``stop()``, or as a context manager).

The server runs in its own temporary directory (its working directory: nothing is written
anywhere else), in its own session, with ``--port N --bind 127.0.0.1 --save '' --appendonly no``;
it is ready when it answers PING (redis-py). ``stop()`` sends SIGTERM (SIGKILL after 10 s) and
removes the directory.

redis-server missing: ``redis_or_skip`` skips with the install command as the reason
(``scripts/install-redis.sh``), except with FLOWSCOPE_REQUIRE_REDIS=1 (CI), where that is a
failure.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

REQUIRE_VARIABLE = "FLOWSCOPE_REQUIRE_REDIS"
INSTALL_HINT = "redis-server is not installed: run scripts/install-redis.sh"
START_TIMEOUT = 15.0


class RedisNotInstalled(RuntimeError):
    pass


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RedisServer:
    """One private redis-server process (see the module docstring)."""

    def __init__(self, executable: str | None = None) -> None:
        found = executable or shutil.which("redis-server")
        if found is None:
            raise RedisNotInstalled("no redis-server on PATH")
        self.executable = found
        self.port: int | None = None
        self.process: subprocess.Popen | None = None
        self.directory: Path | None = None

    @property
    def url(self) -> str:
        if self.port is None:
            raise RuntimeError("the Redis server is not started")
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        self.directory = Path(tempfile.mkdtemp(prefix="flowscope-redis-"))
        problem = ""
        for _ in range(3):   # a free port can be taken between the probe and the server's bind
            self.port = _free_port()
            log = self.directory / "redis.log"
            self.process = subprocess.Popen(
                [self.executable, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no", "--dir", str(self.directory), "--logfile", str(log),
                 "--daemonize", "no", "--protected-mode", "yes"],
                cwd=self.directory, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.STDOUT, start_new_session=True)
            problem = self._wait_ready(log)
            if not problem:
                return self
            self._terminate()
        self.stop()
        raise RuntimeError(f"redis-server did not start: {problem}")

    def _wait_ready(self, log: Path) -> str:
        """'' once the server answers PING; else why not (the process exited, or a timeout)."""
        import redis

        client = redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=0.5, socket_timeout=1)
        deadline = time.monotonic() + START_TIMEOUT
        try:
            while True:
                assert self.process is not None
                if self.process.poll() is not None:
                    return f"exit {self.process.returncode}: {_tail(log)}"
                try:
                    if client.ping():
                        return ""
                except redis.exceptions.RedisError:
                    pass
                if time.monotonic() > deadline:
                    return f"no answer to PING on port {self.port} after {START_TIMEOUT:.0f} s: {_tail(log)}"
                time.sleep(0.05)
        finally:
            client.close()

    def _terminate(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)

    def stop(self) -> None:
        self._terminate()
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _tail(log: Path, lines: int = 5) -> str:
    try:
        return " | ".join(log.read_text(errors="replace").strip().splitlines()[-lines:]) or "(empty log)"
    except OSError:
        return "(no log)"


def new_server_or_skip() -> RedisServer:
    """A RedisServer not yet started; skips (fails under FLOWSCOPE_REQUIRE_REDIS=1) without redis-server."""
    try:
        return RedisServer()
    except RedisNotInstalled as err:
        if os.environ.get(REQUIRE_VARIABLE) == "1":
            pytest.fail(f"{REQUIRE_VARIABLE}=1 but {INSTALL_HINT} ({err})")
        pytest.skip(f"{INSTALL_HINT} ({err})")


@contextmanager
def redis_or_skip() -> Iterator[RedisServer]:
    """A started RedisServer for the ``with`` block (for a module- or session-scoped fixture)."""
    with new_server_or_skip() as server:
        yield server
