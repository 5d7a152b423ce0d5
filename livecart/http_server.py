"""How LiveCart is served over HTTP by uvicorn: ``livecart serve`` (one process or ``--workers N``) and the
test harness's ``LiveServer`` all build their server from ``server_options(settings)`` and ``ServerConfig``,
so the limits below hold for every one of them.

Which limit lives where (SPEC §13; ``deploy/nginx.conf`` is the proxy's side):

- **Header-read timeout** (``LIVECART_HTTP_HEADER_TIMEOUT_SECONDS``, 10 s): here. uvicorn has none for its
  HTTP/1.1 protocols, so ``HttpToolsProtocol`` (the one ``uvicorn[standard]`` picks) and ``H11Protocol``
  add it: a connection must send each request's complete header within that long of connecting, or of the
  request's first byte on a kept-alive connection; else it is closed (with a 408 when part of a request
  came). A slow-loris client cannot hold a connection by trickling header lines.
- **Header size cap** (``LIVECART_HTTP_MAX_HEADER_BYTES``, 16 KiB): here, 431 and close. The request line
  and the fields are counted as they are parsed, and the bytes of a header not yet complete as they arrive,
  so an 8 MB header is refused after about the cap plus one read, not buffered. (For h11 it is also
  uvicorn's own ``h11_max_incomplete_event_size``.)
- **Connection cap** (``LIVECART_MAX_CONNECTIONS``, per process): uvicorn's ``limit_concurrency``. It counts
  every open connection of the process, idle keep-alive ones and websockets included, and every running
  request; a request whose header completes while the process is at the cap gets uvicorn's 503 (and a
  websocket upgrade, which uvicorn would let through, gets the same 503 here). The connection asking counts
  itself, so uvicorn is given the cap + 1: ``max_connections`` connections are served, the next gets 503.
  Connections are still accepted past the cap (to be told 503); a proxy in front bounds them per client IP.
- **Keep-alive idle timeout** (``LIVECART_HTTP_KEEPALIVE_SECONDS``): uvicorn's ``timeout_keep_alive``.
- **Websocket frames** (``LIVECART_WS_MAX_FRAME_BYTES``, pings): uvicorn's ``ws_*`` options.
- **Who the client is**: with ``proxy_headers`` uvicorn takes the client address from ``X-Forwarded-For``
  when the connection comes from an address in ``FORWARDED_ALLOW_IPS`` (uvicorn's own environment variable,
  default ``127.0.0.1,::1``): per-IP rate limits then count the real client behind the proxy.

Logs carry no secrets: ``ServerConfig`` puts ``redact_secrets`` on uvicorn's loggers, which would
otherwise print every websocket URL, ``?token=...`` included (``"WebSocket /ws/rooms/..?token=.."
[accepted]``), and the access log's paths.

This module is in ``livecart``, the layer that runs the app, because it is about the server the app runs
in, not about the app: no package below imports uvicorn's HTTP side (``realtime.uvicorn_ws`` is the hub's
websocket protocol, and only the server names it).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Callable
from typing import Any

import h11
import httptools
import uvicorn
from uvicorn.protocols.http import h11_impl, httptools_impl
from uvicorn.server import ServerState

from base.settings import Settings
from realtime.uvicorn_ws import WS_PROTOCOL

HTTP_PROTOCOL = "livecart.http_server:HttpToolsProtocol"
H11_PROTOCOL = "livecart.http_server:H11Protocol"
#: Query parameters whose values never reach a log line.
SECRET_PARAMS = ("token", "access_token", "invite", "code")
DEFAULT_HEADER_TIMEOUT = 10.0

_SECRET_QUERY = re.compile(r"([?&;](?:" + "|".join(SECRET_PARAMS) + r")=)[^&#\s\"']+", re.IGNORECASE)
_HEAD_END = re.compile(rb"\n\r?\n")
#: uvicorn's own answer past ``limit_concurrency`` (``flow_control.service_unavailable``), to the byte.
_UNAVAILABLE = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"content-length: 19\r\nconnection: close\r\n\r\nService Unavailable"
)


def server_options(settings: Settings) -> dict[str, Any]:
    """The uvicorn options of every LiveCart server (``ServerConfig(app, **server_options(settings))``)."""
    return {
        "http": HTTP_PROTOCOL,
        "header_timeout": settings.http_header_timeout_seconds,
        "h11_max_incomplete_event_size": settings.http_max_header_bytes,
        "limit_concurrency": settings.max_connections + 1,  # the connection asking counts itself
        "timeout_keep_alive": settings.http_keepalive_seconds,
        "proxy_headers": True,
        "log_config": None,
        "access_log": False,
        "timeout_graceful_shutdown": 10,
        "ws": WS_PROTOCOL,
        "ws_per_message_deflate": False,  # the hub writes pre-built frames (realtime/uvicorn_ws.py)
        "ws_max_size": settings.ws_max_frame_bytes,
        "ws_ping_interval": settings.ws_ping_interval_seconds,
        "ws_ping_timeout": settings.ws_ping_timeout_seconds,
    }


class ServerConfig(uvicorn.Config):
    """uvicorn's ``Config`` with the header-read timeout (``header_timeout``, seconds) that this module's
    protocols read, and uvicorn's loggers redacted (``redact_secrets``)."""

    def __init__(self, *args: Any, header_timeout: float = DEFAULT_HEADER_TIMEOUT, **kwargs: Any) -> None:
        self.header_timeout = header_timeout
        super().__init__(*args, **kwargs)

    def configure_logging(self) -> None:
        super().configure_logging()
        if self.access_log:  # uvicorn turns the access log off for good; a server that wants it gets it
            logging.getLogger("uvicorn.access").propagate = True
        redact_secrets()


# -- logs -----------------------------------------------------------------------------------------------


def redact(text: str) -> str:
    """``text`` with the value of every secret query parameter (``SECRET_PARAMS``) replaced."""
    return _SECRET_QUERY.sub(r"\1[redacted]", text)


class RedactSecrets(logging.Filter):
    """Replaces secret query values in a record's message and its string arguments (the shape of the
    arguments is kept: uvicorn's access formatter reads them by position)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        return True


_redacting = RedactSecrets()


def redact_secrets() -> None:
    """Put the filter on uvicorn's loggers (idempotent): they log request paths with their query."""
    for name in ("uvicorn.access", "uvicorn.error"):
        logger = logging.getLogger(name)
        if _redacting not in logger.filters:
            logger.addFilter(_redacting)


# -- the HTTP protocols ---------------------------------------------------------------------------------

#: How long a refused connection goes on being read (and what it sends discarded) after its answer: closing
#: with unread bytes would make the kernel send a reset, which can destroy the answer before the client
#: reads it (nginx's "lingering close").
LINGER_SECONDS = 2.0


class _HeadTooLarge(Exception):
    """Raised from a parser callback to stop parsing a header past the cap."""


class _Guard:
    """One connection's header limits: the deadline of the header being received, and a refusal that
    answers, then stops reading requests and closes."""

    __slots__ = ("_linger", "_loop", "_on_timeout", "_seconds", "_timer", "refused", "transport")

    def __init__(
        self, loop: asyncio.AbstractEventLoop, seconds: float, on_timeout: Callable[[], None]
    ) -> None:
        self._loop = loop
        self._seconds = seconds
        self._on_timeout = on_timeout
        self._timer: asyncio.TimerHandle | None = None
        self._linger: asyncio.TimerHandle | None = None
        self.transport: asyncio.Transport | None = None
        #: answered with an error: whatever else the client sends is discarded
        self.refused = False

    def start(self) -> None:
        """The header is due from now (idempotent: a deadline already running keeps its time)."""
        if self._timer is None and not self.refused:
            self._timer = self._loop.call_later(self._seconds, self._expired)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expired(self) -> None:
        self._timer = None
        self._on_timeout()

    def refuse(self, response: bytes) -> None:
        """Answer ``response`` and close: at once where the transport cannot half-close, else once the
        client closes or ``LINGER_SECONDS`` have passed."""
        transport = self.transport
        self.stop()
        if self.refused or transport is None or transport.is_closing():
            return
        self.refused = True
        transport.write(response)
        if transport.can_write_eof():
            transport.write_eof()
            self._linger = self._loop.call_later(LINGER_SECONDS, transport.close)
        else:
            transport.close()

    def lost(self) -> None:
        self.stop()
        if self._linger is not None:
            self._linger.cancel()
            self._linger = None


def _error(status: int, error: str, detail: str) -> bytes:
    """A complete response ``{"error": error, "detail": detail}`` that closes the connection."""
    body = json.dumps({"error": error, "detail": detail}).encode()
    return b"".join(
        [
            httptools_impl.STATUS_LINE[status],
            b"content-type: application/json\r\ncontent-length: ",
            str(len(body)).encode(),
            b"\r\nconnection: close\r\n\r\n",
            body,
        ]
    )


def _too_large(max_head: int) -> bytes:
    return _error(431, "request_header_too_large", f"The request's header is larger than {max_head} bytes.")


def _timed_out(seconds: float) -> bytes:
    return _error(408, "request_timeout", f"The request's header did not arrive within {seconds:g} s.")


def _header_timeout(config: uvicorn.Config) -> float:
    return float(getattr(config, "header_timeout", DEFAULT_HEADER_TIMEOUT))


def _max_head(config: uvicorn.Config) -> int:
    return config.h11_max_incomplete_event_size or 16 * 1024  # h11's own default


class _HeadLimits:
    """What both protocols add to uvicorn's: a ``_Guard`` that holds a request's header to its timeout from
    the connection's start, stopped when the connection is lost (each protocol says when a header ends)."""

    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport

    def _limit_heads(self, config: uvicorn.Config) -> None:
        self.max_head = _max_head(config)
        self.head_timeout = _header_timeout(config)
        self.guard = _Guard(self.loop, self.head_timeout, self._head_timed_out)

    def _head_timed_out(self) -> None:
        raise NotImplementedError

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[misc]
        self.guard.transport = self.transport
        self.guard.start()  # the first request's header is due from now on

    def connection_lost(self, exc: Exception | None) -> None:
        self.guard.lost()
        super().connection_lost(exc)  # type: ignore[misc]


class HttpToolsProtocol(_HeadLimits, httptools_impl.HttpToolsProtocol):
    """uvicorn's httptools protocol with the header-read timeout, the header size cap, and the connection
    cap on websocket upgrades too."""

    def __init__(
        self,
        config: uvicorn.Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._limit_heads(config)
        self.in_head = False  # from a request's first byte until its header is complete
        self.head_bytes = 0  # of the header parsed so far
        self.raw_head_bytes = 0  # received while a header was incomplete
        self.head_too_large = False

    def data_received(self, data: bytes) -> None:
        """uvicorn's, except that a header past the cap is answered 431 (not 400), and nothing more is
        parsed on a connection that was refused."""
        if self.guard.refused:
            return
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        except httptools.HttpParserError:
            if self.head_too_large:
                self.guard.refuse(_too_large(self.max_head))
                return
            msg = "Invalid HTTP request received."
            self.logger.warning(msg)
            self.send_400_response(msg)
            return
        if self.in_head:  # the header is not complete yet: its bytes so far, without waiting for a field
            self.raw_head_bytes += len(data)
            if self.raw_head_bytes > self.max_head:
                self.guard.refuse(_too_large(self.max_head))

    # parser callbacks

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.in_head = True
        self.head_bytes = 0
        self.guard.start()  # a request on a kept-alive connection: its header is due from its first byte

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        self._count(len(url) + 16)  # with the method and the version

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)  # with ": " and CRLF
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self.guard.stop()
        self.in_head = False
        self.raw_head_bytes = 0
        super().on_headers_complete()

    def handle_websocket_upgrade(self) -> None:
        if self.limit_concurrency is not None and len(self.connections) >= self.limit_concurrency:
            self.logger.warning("Exceeded concurrency limit.")
            self.guard.refuse(_UNAVAILABLE)
            return
        super().handle_websocket_upgrade()

    def _count(self, n: int) -> None:
        self.head_bytes += n
        if self.head_bytes > self.max_head:
            self.head_too_large = True
            raise _HeadTooLarge

    def _head_timed_out(self) -> None:
        if self.in_head:  # part of a request came: tell the client why it is cut off
            self.guard.refuse(_timed_out(self.head_timeout))
        elif not self.transport.is_closing():
            self.transport.close()


class H11Protocol(_HeadLimits, h11_impl.H11Protocol):
    """uvicorn's h11 protocol with the same limits (``livecart serve`` runs on httptools; this one is for
    a server without it)."""

    def __init__(
        self,
        config: uvicorn.Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._limit_heads(config)

    def data_received(self, data: bytes) -> None:
        if self.guard.refused:
            return
        if self.conn.their_state is h11.IDLE:  # a request's header is (being) received
            self.guard.start()
            head = self.conn.trailing_data[0] + data
            end = _HEAD_END.search(head)
            if (end.start() if end else len(head)) > self.max_head:
                self.guard.refuse(_too_large(self.max_head))
                return
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:
            self.guard.stop()

    def handle_websocket_upgrade(self, event: h11.Request) -> None:
        self.guard.stop()
        if self.limit_concurrency is not None and len(self.connections) >= self.limit_concurrency:
            self.logger.warning("Exceeded concurrency limit.")
            self.guard.refuse(_UNAVAILABLE)
            return
        super().handle_websocket_upgrade(event)

    def _head_timed_out(self) -> None:
        if self.conn.their_state is h11.IDLE and self.conn.trailing_data[0]:
            self.guard.refuse(_timed_out(self.head_timeout))
        elif not self.transport.is_closing():
            self.transport.close()
