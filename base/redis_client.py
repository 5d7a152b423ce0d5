"""The one place a Redis client is built (the app, the CLI and the tools all use it)."""

from __future__ import annotations

from redis.asyncio import BlockingConnectionPool, Redis

from base.settings import Settings


def redis_client(url: str, settings: Settings) -> Redis:
    """A client on a bounded pool that makes a burst wait for a free connection (within the commit
    timeout) instead of failing it: redis-py's default pool raises once 100 connections are in use. Every
    command is bounded by the same timeout, so a hung Redis fails a request (503) instead of hanging it."""
    timeout = settings.commit_timeout_seconds
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=settings.redis_max_connections,
        timeout=timeout,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        health_check_interval=30,
    )
    return Redis.from_pool(pool)
