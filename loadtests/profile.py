"""``make loadtest``: the documented headless locust profile against a freshly started ``livecart serve``.

    .venv/bin/python loadtests/profile.py                       # 200 users, 50/s, 25 s, one worker
    .venv/bin/python loadtests/profile.py --workers 2 -u 1000 -r 100 -t 60s
    .venv/bin/python loadtests/profile.py --target https://shop.example.com   # an existing deployment

Without ``--target`` it starts ``livecart serve`` on a free port with a fresh SQLite database in a temporary
directory (``LIVECART_DATABASE_URL`` and ``LIVECART_REDIS_URL`` from the environment are used when set;
otherwise the app's embedded Redis; ``LIVECART_LIMITS_SCALE=100000`` unless the environment says otherwise,
as every user of the scenario signs in from this one address), waits for ``/readyz``, runs locust headless
with ``loadtests/locustfile.py`` and stops the server. The exit status is locust's: 0 only with zero failures
and a passing end-of-run check. ``--report DIR`` keeps locust's CSV and HTML report there.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
sys.path.insert(0, str(HERE.parent))

from loadtests.harness import Port, ServeProcess  # noqa: E402


@contextlib.contextmanager
def fresh_server(workers: int, log: Path) -> Iterator[str]:
    port = Port()
    with tempfile.TemporaryDirectory(prefix="livecart-loadtest-") as tmp:
        env = {
            "LIVECART_DATABASE_URL": f"sqlite+aiosqlite:///{tmp}/livecart.db",
            "LIVECART_LOG_LEVEL": "WARNING",
            # Every locust user signs in from this one address (production allows 10 codes an hour).
            "LIVECART_LIMITS_SCALE": "100000",
            **os.environ,
            "LIVECART_DATA_DIR": f"{tmp}/data",
            "LIVECART_BASE_URL": port.url,
        }
        with ServeProcess(env, workers=workers, log=log, port=port) as server:
            try:
                asyncio.run(server.wait_ready("/readyz", within=60.0, every=0.1))
            except RuntimeError as e:
                raise SystemExit(str(e)) from None
            yield server.url


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
