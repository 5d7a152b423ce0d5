"""WeChat for buyers (SPEC §8): web authorization (网页授权, scope ``snsapi_base``: no consent screen, the
buyer's ``openid`` in this Official Account, and ``unionid`` when WeChat gives one) and the JS-SDK's
signature for the share set-up (``wx.config``) of the room page.

The flow: ``/auth/wechat/start`` sends the browser to WeChat's authorize URL with a signed ``state``
(the room, the same-origin path to return to and a nonce also kept in a short-lived cookie, so a callback
link made by someone else signs no one in); WeChat sends it back to ``/auth/wechat/callback`` with a
``code``, which :meth:`WeChat.sign_in` exchanges for the ``openid``.

WeChat's API is called with httpx directly: wechatpy, the usual Python client, has had no release since
2021 (unmaintained), and what is needed here is three GET requests. Its base URL is a setting
(``LIVECART_WECHAT_API_BASE``), so tests point it at a local server that answers in WeChat's format.
The JS-SDK ticket (and the access token it is fetched with) are kept in Redis until shortly before they
expire, for every worker: WeChat caps how often a day either may be fetched.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import secrets
import string
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx
from itsdangerous import BadData, SignatureExpired, URLSafeTimedSerializer
from redis.asyncio import Redis

from base.settings import Settings
from identity.errors import InvalidCode, InvalidState, ProviderFailed

log = logging.getLogger("livecart.wechat")

STATE_SALT = "livecart.wechat-state.v1"
#: How long a sign-in started at WeChat may take to come back.
STATE_MAX_AGE = 600
#: The cookie that ties a callback to the browser that started it (one per browser: a second start
#: supersedes the first).
NONCE_COOKIE = "lc_wx_state"
#: A path on this site to return to: ``/`` then no ``/`` or ``\\`` (``//host`` and ``/\\host`` would be
#: another site), printable ASCII only. The same text in Python's ``re`` and Rust's ``regex`` (pydantic).
NEXT_PATTERN = r"^/(?:[!-.0-\[\]-~][!-\[\]-~]*)?$"
NEXT_MAX = 512
_NEXT = re.compile(NEXT_PATTERN)
#: ``errcode``s of ``sns/oauth2/access_token`` that mean the buyer's code is bad (invalid, used, missing);
#: any other says the server's set-up is (AppID, secret, IP allowlist) or WeChat is busy: 502.
CODE_ERRCODES = frozenset({40029, 40163, 41008})
#: ``errcode``s of ``getticket`` that mean the access token is no longer valid: fetch a new one once.
TOKEN_ERRCODES = frozenset({40001, 40014, 42001})
#: A cached token or ticket is dropped this long before WeChat's ``expires_in`` says it ends.
EXPIRY_MARGIN_SECONDS = 300
NONCE_ALPHABET = string.ascii_letters + string.digits
_SECRET_PARAM = re.compile(r"([?&]secret=)[^&\s\"]*")


class RedactSecret(logging.Filter):
    """httpx logs each request's URL (at INFO), and WeChat takes the AppSecret in the query string: the
    secret is blanked out of those lines before any handler sees them."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "secret=" in message:
            record.msg, record.args = _SECRET_PARAM.sub(r"\1***", message), ()
        return True


def _redact_httpx_logs() -> None:
    httpx_log = logging.getLogger("httpx")
    if not any(isinstance(f, RedactSecret) for f in httpx_log.filters):
        httpx_log.addFilter(RedactSecret())


def safe_next(path: str) -> bool:
    """Whether ``path`` is a path of this site (no open redirect)."""
    return len(path) <= NEXT_MAX and _NEXT.fullmatch(path) is not None


def js_sdk_signature(*, ticket: str, nonce: str, timestamp: int, url: str) -> str:
    """The ``signature`` of ``wx.config`` (JS-SDK 附录1): SHA-1 of the four fields in this order, the page
    URL without its ``#`` fragment."""
    page = url.split("#", 1)[0]
    text = f"jsapi_ticket={ticket}&noncestr={nonce}&timestamp={timestamp}&url={page}"
    return hashlib.sha1(text.encode()).hexdigest()  # noqa: S324 - WeChat's algorithm


def new_nonce(length: int = 16) -> str:
    return "".join(secrets.choice(NONCE_ALPHABET) for _ in range(length))


@dataclass(frozen=True, slots=True)
class SignInState:
    """What the signed ``state`` carries through WeChat and back."""

    room_id: str
    next: str
    nonce: str


class StateSigner:
    """Signs the ``state`` parameter with the server's keys (each one verifies: key rotation)."""

    def __init__(self, signing_keys: list[str], *, max_age: int = STATE_MAX_AGE) -> None:
        self._serializer = URLSafeTimedSerializer(list(reversed(signing_keys)), salt=STATE_SALT)
        self._max_age = max_age

    def sign(self, state: SignInState) -> str:
        return str(self._serializer.dumps([state.room_id, state.next, state.nonce]))

    def verify(self, token: str, *, nonce_cookie: str | None) -> SignInState:
        """The state, or ``InvalidState`` (400): altered, not made here, too old, or started in another
        browser."""
        try:
            value = self._serializer.loads(token, max_age=self._max_age)
        except SignatureExpired as exc:
            raise InvalidState("This WeChat sign-in took too long; start again.") from exc
        except BadData as exc:
            raise InvalidState("This WeChat sign-in link is not valid: it was not made here.") from exc
        if not (isinstance(value, list) and len(value) == 3 and all(isinstance(v, str) for v in value)):
            raise InvalidState("This WeChat sign-in link is not valid.")
        state = SignInState(*value)
        if not safe_next(state.next):
            raise InvalidState("This WeChat sign-in link is not valid.")
        if nonce_cookie is None or not secrets.compare_digest(nonce_cookie, state.nonce):
            raise InvalidState(
                "This WeChat sign-in was started in another browser (or its cookie was refused); "
                "start again here."
            )
        return state


@dataclass(frozen=True, slots=True)
class WeChatUser:
    openid: str
    unionid: str | None


class WeChat:
    """One Official Account's web authorization and JS-SDK ticket (``app_id``, ``app_secret``)."""

    def __init__(
        self,
        redis: Redis,
        *,
        app_id: str,
        app_secret: str,
        api_base: str = "https://api.weixin.qq.com",
        authorize_url: str = "https://open.weixin.qq.com/connect/oauth2/authorize",
        timeout: float = 5.0,
    ) -> None:
        self.app_id = app_id
        self._secret = app_secret
        self._authorize_url = authorize_url
        self._redis = redis
        self._http = httpx.AsyncClient(base_url=api_base.rstrip("/"), timeout=timeout)
        _redact_httpx_logs()
        self._refreshing = asyncio.Lock()  # one fetch per process when the cached ticket has expired

    async def close(self) -> None:
        await self._http.aclose()

    def authorize_url(self, *, redirect_uri: str, state: str) -> str:
        """Where the browser goes to be signed in (``snsapi_base``); WeChat comes back to ``redirect_uri``
        with ``code`` and ``state``."""
        query = urlencode(
            {
                "appid": self.app_id,
                "redirect_uri": redirect_uri,
                "response_type": "code",
                "scope": "snsapi_base",
                "state": state,
            }
        )
        return f"{self._authorize_url}?{query}#wechat_redirect"

    async def sign_in(self, code: str) -> WeChatUser:
        """Exchange the callback's ``code`` for the buyer: ``InvalidCode`` (401) when WeChat refuses the
        code, ``ProviderFailed`` (502) when it refuses us or cannot be reached."""
        answer = await self._get(
            "/sns/oauth2/access_token",
            {
                "appid": self.app_id,
                "secret": self._secret,
                "code": code,
                "grant_type": "authorization_code",
            },
        )
        errcode = _errcode(answer)
        if errcode in CODE_ERRCODES:
            raise InvalidCode(
                f"WeChat did not accept this sign-in (errcode {errcode}); start again.",
                extra={"errcode": errcode},
            )
        if errcode:
            raise self._refused("sns/oauth2/access_token", answer)
        openid, unionid = answer.get("openid"), answer.get("unionid")
        if not _identifier(openid):
            raise ProviderFailed("WeChat answered without a valid openid; try again.")
        return WeChatUser(str(openid), str(unionid) if _identifier(unionid) else None)

    async def jsapi_ticket(self) -> str:
        """The JS-SDK ticket, from Redis while it lasts, else fetched (with an access token, also kept)."""
        key = self._key("jsapi_ticket")
        cached = await self._redis.get(key)
        if cached is not None:
            return _text(cached)
        async with self._refreshing:
            cached = await self._redis.get(key)
            if cached is not None:
                return _text(cached)
            for attempt in range(2):
                token = await self._access_token()
                answer = await self._get(
                    "/cgi-bin/ticket/getticket", {"access_token": token, "type": "jsapi"}
                )
                errcode = _errcode(answer)
                if errcode in TOKEN_ERRCODES and attempt == 0:
                    await self._redis.delete(self._key("access_token"))
                    continue
                ticket = answer.get("ticket")
                if errcode or not isinstance(ticket, str) or not ticket:
                    raise self._refused("cgi-bin/ticket/getticket", answer)
                await self._redis.set(key, ticket, ex=_keep_seconds(answer))
                return ticket
        raise AssertionError("unreachable")  # pragma: no cover

    async def _access_token(self) -> str:
        key = self._key("access_token")
        cached = await self._redis.get(key)
        if cached is not None:
            return _text(cached)
        answer = await self._get(
            "/cgi-bin/token",
            {"grant_type": "client_credential", "appid": self.app_id, "secret": self._secret},
        )
        token = answer.get("access_token")
        if _errcode(answer) or not isinstance(token, str) or not token:
            raise self._refused("cgi-bin/token", answer)
        await self._redis.set(key, token, ex=_keep_seconds(answer))
        return token

    def _key(self, what: str) -> str:
        return f"livecart:wechat:{self.app_id}:{what}"

    async def _get(self, path: str, params: dict[str, str]) -> dict[str, Any]:
        """One call; its JSON object (WeChat answers ``text/plain`` at times, so the type is not read)."""
        try:
            response = await self._http.get(path, params=params)
        except httpx.HTTPError as exc:
            log.warning("WeChat %s failed: %s", path, type(exc).__name__)
            raise ProviderFailed(f"WeChat could not be reached ({type(exc).__name__}); try again.") from None
        if response.status_code != 200:
            log.warning("WeChat %s answered HTTP %d", path, response.status_code)
            raise ProviderFailed(f"WeChat answered HTTP {response.status_code}; try again.")
        try:
            answer = json.loads(response.content)
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            raise ProviderFailed("WeChat answered something that is not its JSON; try again.")
        return answer

    def _refused(self, call: str, answer: dict[str, Any]) -> ProviderFailed:
        errcode, errmsg = answer.get("errcode"), str(answer.get("errmsg", ""))[:120]
        log.warning("WeChat %s refused: errcode %s %s", call, errcode, errmsg)
        return ProviderFailed(f"WeChat refused the call (errcode {errcode}: {errmsg}); try again later.")


def _errcode(answer: dict[str, Any]) -> int:
    code = answer.get("errcode", 0)
    return code if isinstance(code, int) and not isinstance(code, bool) else -1


def _identifier(value: object) -> bool:
    return isinstance(value, str) and 0 < len(value) <= 64 and value.isascii() and value.isprintable()


def _keep_seconds(answer: dict[str, Any]) -> int:
    expires_in = answer.get("expires_in")
    seconds = expires_in if isinstance(expires_in, int) and expires_in > 0 else 7200
    return max(1, seconds - EXPIRY_MARGIN_SECONDS if seconds > 2 * EXPIRY_MARGIN_SECONDS else seconds // 2)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def check_wechat(settings: Settings) -> None:
    """Refuse, at start, half a WeChat set-up (an AppID without its secret or the other way round)."""
    if bool(settings.wechat_app_id) != bool(settings.wechat_app_secret):
        raise ValueError("WeChat sign-in needs both LIVECART_WECHAT_APP_ID and LIVECART_WECHAT_APP_SECRET")


def wechat_client(settings: Settings, redis: Redis) -> WeChat | None:
    """The WeChat client when an AppID and secret are set, else ``None`` (WeChat sign-in off)."""
    check_wechat(settings)
    if not (settings.wechat_app_id and settings.wechat_app_secret):
        return None
    return WeChat(
        redis,
        app_id=settings.wechat_app_id,
        app_secret=settings.wechat_app_secret.get_secret_value(),
        api_base=settings.wechat_api_base,
        authorize_url=settings.wechat_authorize_url,
        timeout=settings.sign_in_provider_timeout_seconds,
    )
