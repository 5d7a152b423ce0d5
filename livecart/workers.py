"""``livecart serve --workers N``: N app processes on one port, each with a listening socket of its own.

Each worker binds the address with ``SO_REUSEPORT``, so the kernel hashes every new connection to one of
them: long-lived connections (keep-alive buyers, websocket viewers) spread evenly, which a single shared
socket does not do (whichever worker wakes first takes the next connection, and a burst of connections can
land mostly on one). The supervisor restarts a worker that dies, forwards SIGINT/SIGTERM for a graceful
stop, and gives up if workers keep dying at start (a port in use, a bad setting).

Each worker also serves the app on a private loopback socket of its own (a port the kernel picks), which it
tells the app as ``LIVECART_WORKER_URL``, with the id of this ``serve`` as ``LIVECART_WORKER_GROUP``: a
room's video lives in one worker, and its siblings forward the room's signalling there
(``live/video_siblings.py``).
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import socket
import time
from multiprocessing.process import BaseProcess
from typing import Any

from base.ids import random_code

log = logging.getLogger("livecart.workers")

#: A worker that dies sooner than this after its start counts as a failed start.
EARLY_DEATH_SECONDS = 5.0
MAX_EARLY_DEATHS = 3
STOP_SECONDS = 15.0


def listening_socket(host: str, port: int, *, backlog: int = 2048) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(backlog)
    return sock


def private_socket(*, backlog: int = 512) -> socket.socket:
    """A loopback listener on a free port, for this one process (no ``SO_REUSEPORT``: nobody shares it)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(backlog)
    return sock


def _worker(host: str, port: int, config: dict[str, Any], log_level: str, log_json: bool, group: str) -> None:
    import uvicorn

    from base import logs
    from livecart.http_server import ServerConfig

    logs.configure(log_level, as_json=log_json)
    sock = listening_socket(host, port)
    private = private_socket()
    # Read by this process's Settings when uvicorn builds the app (the factory runs after this).
    os.environ["LIVECART_WORKER_URL"] = f"http://127.0.0.1:{private.getsockname()[1]}"
    os.environ["LIVECART_WORKER_GROUP"] = group
    # ``livecart.http_server``'s config: the same limits and log redaction as a single process.
    uvicorn.Server(ServerConfig(**config)).run(sockets=[sock, private])


def _forget_live_metrics(pid: int | None) -> None:
    """A dead worker's live gauges (its video sessions) must not count in ``/metrics`` any more."""
    if pid is not None and os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]


class Supervisor:
    def __init__(
        self, *, host: str, port: int, workers: int, config: dict[str, Any], log_level: str, log_json: bool
    ) -> None:
        self.host, self.port, self.count = host, port, workers
        #: This ``serve``'s workers among any others sharing the Redis (their video records are apart).
        self.group = random_code(12)
        self.args = (host, port, config, log_level, log_json, self.group)
        self._ctx = multiprocessing.get_context("spawn")
        self._procs: list[tuple[BaseProcess, float]] = []
        self._stopping = False

    def _spawn(self, index: int) -> tuple[BaseProcess, float]:
        proc = self._ctx.Process(target=_worker, args=self.args, name=f"livecart-worker-{index}")
        proc.start()
        return proc, time.monotonic()

    def _request_stop(self, signum: int, _frame: object) -> None:
        self._stopping = True

    def run(self) -> int:
        # Fail fast, in the parent, if the address cannot be had at all.
        listening_socket(self.host, self.port).close()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._request_stop)
        self._procs = [self._spawn(i) for i in range(self.count)]
        early_deaths = 0
        try:
            while not self._stopping:
                time.sleep(0.2)
                for i, (proc, started) in enumerate(self._procs):
                    if proc.is_alive() or self._stopping:
                        continue
                    log.warning("worker %s exited with %s; restarting it", proc.pid, proc.exitcode)
                    _forget_live_metrics(proc.pid)
                    if time.monotonic() - started < EARLY_DEATH_SECONDS:
                        early_deaths += 1
                        if early_deaths >= MAX_EARLY_DEATHS:
                            log.error("workers keep dying at start; giving up")
                            return 1
                    self._procs[i] = self._spawn(i)
            return 0
        finally:
            self._stop_all()

    def _stop_all(self) -> None:
        for proc, _ in self._procs:
            if proc.is_alive() and proc.pid is not None:
                with contextlib.suppress(ProcessLookupError):  # uvicorn: finish requests, then shut down
                    os.kill(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_SECONDS
        for proc, _ in self._procs:
            proc.join(max(0.0, deadline - time.monotonic()))
            if proc.is_alive():
                proc.kill()
                proc.join()
