"""The ``livecart`` command: ``serve``, ``migrate``, ``reconcile``, ``reconcile-payments``, ``create-host``,
``create-session``."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
import tempfile
from datetime import date

from base import db, logs
from base.clock import SystemClock
from base.embedded_redis import EmbeddedRedis
from base.settings import Settings
from livecart import schema
from livecart.http_server import ServerConfig, server_options
from livecart.workers import Supervisor


def _serve(args: argparse.Namespace) -> int:
    """The app behind uvicorn with every limit of ``livecart.http_server`` (header timeout and size, the
    connection cap, token-free logs), in this process or in ``--workers`` processes."""
    import uvicorn

    settings = Settings()
    if args.workers > 1 and settings.realtime_broker == "memory":
        # Each worker would have its own rooms: a viewer would miss every event published by the others.
        print(
            "livecart serve: LIVECART_REALTIME_BROKER=memory serves one process; "
            f"with --workers {args.workers} use LIVECART_REALTIME_BROKER=redis",
            file=sys.stderr,
        )
        return 2
    logs.configure(settings.log_level, as_json=settings.log_json)
    embedded: EmbeddedRedis | None = None
    if settings.redis_url is None and args.workers > 1:
        # Workers must share one Redis: the parent owns it and hands its address down.
        embedded = EmbeddedRedis(settings.data_dir)
        os.environ["LIVECART_REDIS_URL"] = embedded.start()
    if args.workers > 1:
        if settings.migrations_on_start:
            asyncio.run(_migrate(settings))
            os.environ["LIVECART_MIGRATE_ON_START"] = "false"
        os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="livecart-metrics-"))
    config = {
        **server_options(settings),
        "app": "livecart.app:create_app",
        "factory": True,
        "host": args.host,
        "port": args.port,
        "access_log": args.access_log,
    }
    try:
        if args.workers > 1:
            supervisor = Supervisor(
                host=args.host,
                port=args.port,
                workers=args.workers,
                config=config,
                log_level=settings.log_level,
                log_json=settings.log_json,
            )
            return supervisor.run()
        server = uvicorn.Server(ServerConfig(**config))
        server.run()
        if not server.started:
            return 3  # uvicorn's own exit status for a failed start
    finally:
        if embedded is not None:
            embedded.stop()
    return 0


async def _migrate(settings: Settings) -> None:
    engine = db.create_engine(settings.database_url)
    try:
        await schema.migrate(engine)
    finally:
        await engine.dispose()


async def _reconcile(settings: Settings) -> list[dict[str, object]]:
    from base.metrics import Metrics
    from base.redis_client import redis_client
    from shop.inventory.store import Inventory
    from shop.reconcile import Reconciler

    embedded: EmbeddedRedis | None = None
    url = settings.redis_url
    if url is None:
        embedded = EmbeddedRedis(settings.data_dir)
        url = embedded.start()
    engine = db.create_engine(settings.database_url)
    redis = redis_client(url, settings)
    try:
        reconciler = Reconciler(
            sessions=db.sessionmaker(engine),
            inventory=Inventory(redis),
            clock=SystemClock(),
            metrics=Metrics(),
            grace_ms=int(settings.orphan_grace_seconds * 1000),
        )
        reports = await reconciler.reconcile_all(trigger="cli")
        return [
            {
                "card_id": r.card_id,
                "stock_left_before": r.stock_left_before,
                "stock_left_after": r.stock_left_after,
                "drift": r.drift,
                "kept_in_flight": r.kept_in_flight,
                "dropped_orphans": r.dropped_orphans,
                "oversold": r.oversold,
            }
            for r in reports
        ]
    finally:
        await redis.aclose()
        await engine.dispose()
        if embedded is not None:
            embedded.stop()


async def _reconcile_payments(settings: Settings, day: date, names: list[str] | None) -> int:
    """``livecart reconcile-payments``: our ledger against each provider's statement of ``day``
    (``shop.payments.reconcile_payments``). Prints one JSON object per provider; 0 when nothing differs,
    1 when something does, 2 when a provider has no statement or cannot give it (said on stderr)."""
    from shop.payments.provider import HasStatement, ProviderError
    from shop.payments.reconcile_payments import NoStatement, reconcile_day, statement_provider
    from shop.payments.registry import Providers

    def fail(message: str) -> int:
        print(f"livecart reconcile-payments: {message}", file=sys.stderr)
        return 2

    try:
        # (WeChat Pay in platform-certificate mode may download its certificates here: off the loop)
        providers = await asyncio.to_thread(Providers.of, settings)
    except ValueError as exc:
        return fail(f"a payment provider is misconfigured: {exc}")
    engine = db.create_engine(settings.database_url)
    try:
        if names is None:
            names = [n for n in providers.names if isinstance(providers.find(n), HasStatement)]
            if not names:
                return fail(
                    "no configured payment provider has a statement "
                    f"(configured: {', '.join(providers.names) or 'none'}; with statements: wechat, stripe)"
                )
        for name in names:
            try:
                statement_provider(providers, name)
            except NoStatement as exc:
                return fail(str(exc))
        sessions = db.sessionmaker(engine)
        reports: list[dict[str, object]] = []
        status, differences = 0, 0
        for name in names:
            try:
                report = await reconcile_day(sessions, providers, name, day)
            except ProviderError as exc:
                status = fail(f"{name}: the statement of {day.isoformat()} could not be had: {exc}")
                continue
            reports.append(report.as_json())
            differences += len(report.differences)
            if report.differences and status == 0:
                status = 1
        print(
            json.dumps(
                {
                    "date": day.isoformat(),
                    "providers": reports,
                    "differences": differences,
                },
                indent=2,
                ensure_ascii=False,
            )
        )
        return status
    finally:
        await providers.aclose()
        await engine.dispose()


def _statement_day(text: str) -> date | None:
    """``YYYY-MM-DD`` as a date, or ``None``."""
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None


async def _host_session(settings: Settings, *, name: str | None, host_id: str | None) -> dict[str, str]:
    """A new host named ``name`` with a first session, or a new session of the existing ``host_id`` (an
    operator signs a host back in who has lost every device)."""
    from base.clock import iso
    from base.ids import new_id
    from identity.sessions import HostSessions
    from identity.tokens import TokenSigner
    from live.models import Host

    engine = db.create_engine(settings.database_url)
    clock = SystemClock()
    try:
        if settings.migrations_on_start:
            await schema.migrate(engine)
        sessions = db.sessionmaker(engine)
        host_sessions = HostSessions(
            sessions=sessions,
            signer=TokenSigner(settings.signing_keys),
            clock=clock,
            lifetime_days=settings.host_session_days,
        )
        async with sessions() as session, session.begin():
            if host_id is None:
                host = Host(id=new_id("hst"), name=name or "", created_ms=clock.now_ms())
                session.add(host)
                await session.flush()
            else:
                found = await session.get(Host, host_id)
                if found is None:
                    raise SystemExit(f"no host {host_id}")
                host = found
            new = await host_sessions.start(session, host.id, label="livecart cli")
    finally:
        await engine.dispose()
    return {
        "id": host.id,
        "name": host.name,
        "token": new.token,
        "session_id": new.id,
        "expires_at": iso(new.expires_ms) or "",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="livecart", description="LiveCart live-commerce backend")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the HTTP server")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1)
    serve.add_argument(
        "--access-log", action="store_true", help="log every request (uvicorn's access log, tokens redacted)"
    )
    sub.add_parser("migrate", help="apply database migrations")
    sub.add_parser("reconcile", help="rebuild every live sale's Redis state from SQL (idempotent)")
    create_host = sub.add_parser(
        "create-host", help="add a host account and print its first session token (sign-up closed)"
    )
    create_host.add_argument("name")
    create_session = sub.add_parser(
        "create-session", help="sign an existing host in: print a new session token for them"
    )
    create_session.add_argument("host_id")
    reconcile_payments = sub.add_parser(
        "reconcile-payments",
        help="compare one day of our payment ledger with each provider's statement (exit 1: differences)",
    )
    reconcile_payments.add_argument(
        "--date", required=True, help="the day, YYYY-MM-DD, in the provider's time zone"
    )
    reconcile_payments.add_argument(
        "--provider", help="wechat or stripe (default: every configured provider that has statements)"
    )
    args = parser.parse_args(argv)

    if args.command == "serve":
        return _serve(args)
    settings = Settings()
    logs.configure(settings.log_level, as_json=settings.log_json)
    if args.command == "migrate":
        asyncio.run(_migrate(settings))
        print("migrations applied")
        return 0
    if args.command == "create-host":
        name = args.name.strip()
        if not 1 <= len(name) <= 100:
            parser.error("the host name must be 1-100 characters")
        print(json.dumps(asyncio.run(_host_session(settings, name=name, host_id=None))))
        return 0
    if args.command == "create-session":
        print(json.dumps(asyncio.run(_host_session(settings, name=None, host_id=args.host_id))))
        return 0
    if args.command == "reconcile-payments":
        day = _statement_day(args.date)
        if day is None:
            print(
                f"livecart reconcile-payments: --date {args.date!r} is not a date YYYY-MM-DD", file=sys.stderr
            )
            return 2
        names = None if args.provider is None else [args.provider.strip()]
        return asyncio.run(_reconcile_payments(settings, day, names))
    reports = asyncio.run(_reconcile(settings))
    print(json.dumps({"cards": reports, "oversold": any(r["oversold"] for r in reports)}, indent=2))
    return 1 if any(r["oversold"] for r in reports) else 0


if __name__ == "__main__":
    sys.exit(main())
