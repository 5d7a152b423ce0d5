"""``make loadtest``: the documented headless locust profile against a freshly started ``livecart serve``.

    .venv/bin/python loadtests/profile.py                       # 200 users, 50/s, 25 s, one worker
    .venv/bin/python loadtests/profile.py --workers 2 -u 1000 -r 100 -t 60s
    .venv/bin/python loadtests/profile.py --target https://shop.example.com   # an existing deployment

Without ``--target`` it starts ``livecart serve`` on a free port with a fresh SQLite database in a temporary
directory (``LIVECART_DATABASE_URL`` and ``LIVECART_REDIS_URL`` from the environment are used when set;
otherwise the app's embedded Redis), waits for ``/readyz``, runs locust headless with
``loadtests/locustfile.py`` and stops the server. The exit status is locust's: 0 only with zero failures
and a passing end-of-run check. ``--report DIR`` keeps locust's CSV and HTML report there.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(url: str, server: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"livecart serve exited with {server.returncode}")
        with (
            contextlib.suppress(OSError, urllib.error.URLError),
            urllib.request.urlopen(f"{url}/readyz", timeout=2) as response,  # noqa: S310 (our own server)
        ):
            if response.status == 200:
                return
        time.sleep(0.1)
    raise SystemExit(f"livecart serve was not ready after {timeout:.0f} s")


@contextlib.contextmanager
def fresh_server(workers: int, log: Path) -> Iterator[str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="livecart-loadtest-") as tmp:
        env = {
            "LIVECART_DATABASE_URL": f"sqlite+aiosqlite:///{tmp}/livecart.db",
            "LIVECART_LOG_LEVEL": "WARNING",
            **os.environ,
            "LIVECART_DATA_DIR": f"{tmp}/data",
            "LIVECART_BASE_URL": url,
        }
        with log.open("ab") as out:
            server = subprocess.Popen(
                [str(BIN / "livecart"), "serve", "--port", str(port), "--workers", str(workers)],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        try:
            wait_ready(url, server)
            yield url
        finally:
            server.terminate()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-u", "--users", type=int, default=200)
    parser.add_argument("-r", "--spawn-rate", type=float, default=50)
    parser.add_argument("-t", "--run-time", default="25s")
    parser.add_argument("--workers", type=int, default=1, help="livecart serve --workers")
    parser.add_argument("--target", help="an existing deployment's URL (no server is started)")
    parser.add_argument("--report", type=Path, help="keep locust's CSV and HTML report in this directory")
    parser.add_argument(
        "--server-log", type=Path, default=Path(tempfile.gettempdir()) / "livecart-loadtest.log"
    )
    args, locust_args = parser.parse_known_args()

    def run_locust(url: str) -> int:
        command = [
            str(BIN / "locust"),
            "-f",
            str(HERE / "locustfile.py"),
            "--headless",
            "--only-summary",
            "-u",
            str(args.users),
            "-r",
            str(args.spawn_rate),
            "-t",
            args.run_time,
            "--host",
            url,
            *locust_args,
        ]
        if args.report is not None:
            args.report.mkdir(parents=True, exist_ok=True)
            command += ["--csv", str(args.report / "locust"), "--html", str(args.report / "locust.html")]
        return subprocess.call(command)

    if args.target:
        return run_locust(args.target.rstrip("/"))
    with fresh_server(args.workers, args.server_log) as url:
        return run_locust(url)


if __name__ == "__main__":
    sys.exit(main())
