"""Stand-ins for the sign-in providers outside LiveCart, each a real HTTP server on a held loopback port that
answers in the provider's documented format, so the app's real client code (the Aliyun SDK, httpx) runs
unchanged against it:

- :class:`FakeAliyunSms`: Aliyun's ``SendSms`` (RPC style, API version 2017-05-25). It checks every request's
  signature as Aliyun documents V3 (``ACS3-HMAC-SHA256``: canonical request, string to sign, HMAC-SHA256
  with the access key secret this fake made up), the freshness of ``x-acs-date`` and the one-time
  ``x-acs-signature-nonce``, then records the message it would have sent. It answers ``{"Code": "OK",
  "Message": "OK", "BizId", "RequestId"}``, or the error a test asks for (``isv.BUSINESS_LIMIT_CONTROL``,
  as Aliyun does: HTTP 200 with that ``Code``), or ``SignatureDoesNotMatch`` (HTTP 400).
- :class:`FakeWeChat`: WeChat's ``sns/oauth2/access_token`` (web authorization codes it hands out itself,
  each usable once, ``errcode`` 40029 otherwise), ``cgi-bin/token`` and ``cgi-bin/ticket/getticket``
  (counted, so a test sees the ticket being cached). WeChat answers JSON as ``text/plain``; so does this.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, quote

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from loadtests.harness import Port


class FakeServer:
    """A Starlette app behind uvicorn in the test's event loop, on a held port."""

    def __init__(self, app: Starlette) -> None:
        self._port = Port()
        self.url = self._port.url
        self.host = f"127.0.0.1:{self._port.number}"
        self._server = uvicorn.Server(uvicorn.Config(app, log_config=None, access_log=False, lifespan="off"))
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> FakeServer:
        self._task = asyncio.create_task(self._server.serve(sockets=[self._port.listen()]))
        while not self._server.started:
            if self._task.done():
                self._task.result()
            await asyncio.sleep(0.01)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._server.should_exit = True
        assert self._task is not None
        try:
            await self._task
        finally:
            self._port.close()


# -- Aliyun SMS ---------------------------------------------------------------------------------------


@dataclass
class SentSms:
    phone_numbers: str
    sign_name: str
    template_code: str
    template_param: dict[str, Any]


def rfc3986(text: str) -> str:
    """Percent-encoding as Aliyun's signature documentation asks: UTF-8, every byte but the unreserved
    characters ``A-Z a-z 0-9 - _ . ~`` encoded (a space is ``%20``, ``*`` is ``%2A``)."""
    return quote(text, safe="-_.~")


def canonical_query(raw_query: str) -> str:
    pairs = [(rfc3986(k), rfc3986(v)) for k, v in parse_qsl(raw_query, keep_blank_values=True)]
    return "&".join(f"{k}={v}" for k, v in sorted(pairs))


REQUIRED_SIGNED = {"host", "x-acs-action", "x-acs-version", "x-acs-date", "x-acs-signature-nonce"}


@dataclass
class FakeAliyunSms:
    access_key_id: str = field(default_factory=lambda: "LTAI" + secrets.token_hex(8))
    access_key_secret: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    #: Every message accepted (or refused with ``fail_with``), in order.
    sent: list[SentSms] = field(default_factory=list)
    #: Requests whose signature or credentials did not verify.
    bad_signatures: int = 0
    #: Answer the next sends with this ``Code`` (Aliyun's business errors come with HTTP 200).
    fail_with: str | None = None
    #: Seconds to wait before answering (a provider that hangs).
    delay: float = 0.0
    _nonces: set[str] = field(default_factory=set)

    def server(self) -> FakeServer:
        return FakeServer(Starlette(routes=[Route("/", self._endpoint, methods=["GET", "POST"])]))

    def codes_sent_to(self, phone_numbers: str) -> list[str]:
        return [str(m.template_param["code"]) for m in self.sent if m.phone_numbers == phone_numbers]

    async def _endpoint(self, request: Request) -> Response:
        body = await request.body()
        request_id = secrets.token_hex(16).upper()
        problem = self._verify(request, body)
        if problem is not None:
            self.bad_signatures += 1
            code, message = problem
            return JSONResponse(
                {
                    "RequestId": request_id,
                    "HostId": "dysmsapi.aliyuncs.com",
                    "Code": code,
                    "Message": message,
                },
                status_code=400 if code != "InvalidAccessKeyId.NotFound" else 404,
            )
        params = dict(parse_qsl(request.url.query, keep_blank_values=True))
        params.update(parse_qsl(body.decode(), keep_blank_values=True))
        message = SentSms(
            phone_numbers=params.get("PhoneNumbers", ""),
            sign_name=params.get("SignName", ""),
            template_code=params.get("TemplateCode", ""),
            template_param=json.loads(params.get("TemplateParam", "{}")),
        )
        self.sent.append(message)
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.fail_with is not None:
            return JSONResponse(
                {"Code": self.fail_with, "Message": "触发小时级流控Permits:5", "RequestId": request_id}
            )
        biz_id = f"{secrets.randbelow(10**15):015d}^0"
        return JSONResponse({"Code": "OK", "Message": "OK", "BizId": biz_id, "RequestId": request_id})

    def _verify(self, request: Request, body: bytes) -> tuple[str, str] | None:
        """Aliyun's V3 signature check; ``None`` when the request verifies, else (Code, Message)."""
        headers = request.headers
        algorithm, _, rest = headers.get("authorization", "").partition(" ")
        if algorithm != "ACS3-HMAC-SHA256":
            return "IncompleteSignature", f"unsupported signature algorithm {algorithm!r}"
        fields = dict(part.split("=", 1) for part in rest.split(",") if "=" in part)
        if fields.get("Credential") != self.access_key_id:
            return "InvalidAccessKeyId.NotFound", "Specified access key is not found."
        signed = fields.get("SignedHeaders", "").split(";")
        present = {name for name in headers if name.startswith("x-acs-")} | {"host"}
        if signed != sorted(signed) or not (REQUIRED_SIGNED | present) <= set(signed):
            return "IncompleteSignature", f"these headers must be signed: {sorted(present)}"
        if headers.get("x-acs-action") != "SendSms" or headers.get("x-acs-version") != "2017-05-25":
            return "InvalidAction.NotFound", "Specified api is not found, please check your url and method."
        if headers.get("x-acs-content-sha256") != hashlib.sha256(body).hexdigest():
            return "InvalidContent.Sha256", "x-acs-content-sha256 is not the payload's SHA-256."
        sent_at = datetime.strptime(headers.get("x-acs-date", ""), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        if abs(time.time() - sent_at.timestamp()) > 15 * 60:
            return "InvalidTimeStamp.Expired", "Specified time stamp or date value is expired."
        nonce = headers.get("x-acs-signature-nonce", "")
        if nonce in self._nonces:
            return "SignatureNonceUsed", "Specified signature nonce was used already."
        canonical_headers = "".join(f"{name}:{headers.get(name, '').strip()}\n" for name in signed)
        canonical_request = "\n".join(
            [
                request.method,
                request.url.path or "/",
                canonical_query(request.url.query),
                canonical_headers,
                ";".join(signed),
                hashlib.sha256(body).hexdigest(),
            ]
        )
        to_sign = "ACS3-HMAC-SHA256\n" + hashlib.sha256(canonical_request.encode()).hexdigest()
        expected = hmac.new(self.access_key_secret.encode(), to_sign.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, fields.get("Signature", "")):
            return "SignatureDoesNotMatch", "Specified signature does not match our calculation."
        self._nonces.add(nonce)
        return None


# -- WeChat -------------------------------------------------------------------------------------------


def _wechat_json(value: dict[str, Any]) -> Response:
    return Response(json.dumps(value), media_type="text/plain")


@dataclass
class FakeWeChat:
    app_id: str = field(default_factory=lambda: "wx" + secrets.token_hex(8))
    app_secret: str = field(default_factory=lambda: secrets.token_hex(16))
    #: ``expires_in`` of the access token and of the JS-SDK ticket it hands out.
    expires_in: int = 7200
    token_calls: int = 0
    ticket_calls: int = 0
    tickets: list[str] = field(default_factory=list)
    _codes: dict[str, tuple[str, str | None]] = field(default_factory=dict)
    _tokens: set[str] = field(default_factory=set)

    def server(self) -> FakeServer:
        return FakeServer(
            Starlette(
                routes=[
                    Route("/sns/oauth2/access_token", self._oauth2),
                    Route("/cgi-bin/token", self._token),
                    Route("/cgi-bin/ticket/getticket", self._ticket),
                ]
            )
        )

    def new_code(self, openid: str, unionid: str | None = None) -> str:
        """A web authorization code, as WeChat hands one to the callback after the authorize page."""
        code = secrets.token_hex(16)
        self._codes[code] = (openid, unionid)
        return code

    @property
    def ticket(self) -> str:
        return self.tickets[-1]

    async def _oauth2(self, request: Request) -> Response:
        q = request.query_params
        if q.get("appid") != self.app_id or q.get("secret") != self.app_secret:
            return _wechat_json({"errcode": 40125, "errmsg": "invalid appsecret"})
        if q.get("grant_type") != "authorization_code":
            return _wechat_json({"errcode": 40002, "errmsg": "invalid grant_type"})
        who = self._codes.pop(q.get("code", ""), None)
        if who is None:
            return _wechat_json({"errcode": 40029, "errmsg": "invalid code, rid: 6523a1b2-1a2b3c4d"})
        openid, unionid = who
        answer: dict[str, Any] = {
            "access_token": secrets.token_hex(20),
            "expires_in": 7200,
            "refresh_token": secrets.token_hex(20),
            "openid": openid,
            "scope": "snsapi_base",
            "is_snapshotuser": 0,
        }
        if unionid is not None:
            answer["unionid"] = unionid
        return _wechat_json(answer)

    async def _token(self, request: Request) -> Response:
        q = request.query_params
        self.token_calls += 1
        if q.get("appid") != self.app_id or q.get("secret") != self.app_secret:
            return _wechat_json({"errcode": 40125, "errmsg": "invalid appsecret"})
        token = secrets.token_hex(24)
        self._tokens.add(token)
        return _wechat_json({"access_token": token, "expires_in": self.expires_in})

    async def _ticket(self, request: Request) -> Response:
        q = request.query_params
        self.ticket_calls += 1
        if q.get("access_token") not in self._tokens:
            return _wechat_json({"errcode": 40001, "errmsg": "invalid credential"})
        if q.get("type") != "jsapi":
            return _wechat_json({"errcode": 40097, "errmsg": "invalid args"})
        self.tickets.append(secrets.token_urlsafe(60))
        return _wechat_json(
            {"errcode": 0, "errmsg": "ok", "ticket": self.ticket, "expires_in": self.expires_in}
        )
