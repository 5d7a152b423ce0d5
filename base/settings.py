"""The one Settings object, read from ``LIVECART_*`` environment variables (SPEC §7).

Built once by the entry point (``livecart serve``, the app factory) and passed down; tests build their own.
"""

from __future__ import annotations

import hashlib
import string
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_SECRET_KEY = "dev-insecure-secret-change-me"  # noqa: S105 - refused outside dev
#: Every secret key that ships in this repository (settings, compose, docs, tests): refused in prod, also
#: among the previous keys, since anyone can read them.
DEV_SECRET_KEYS = frozenset(
    {
        DEV_SECRET_KEY,
        "test-secret-key",
        "bench-secret-key-not-for-production",
        "bench-hub-secret",
    }
)
MIN_PROD_SECRET_BYTES = 32


def _url_template_problem(template: str, *, allowed: set[str]) -> str | None:
    """What is wrong with a URL template of ``str.format`` fields, or ``None``; ``{room}`` is required."""
    if not template.startswith(("https://", "http://")):
        return "must be an http(s) URL"
    try:
        fields = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as exc:
        return f"is not a valid template: {exc}"
    if not fields <= allowed:
        return f"may only use {', '.join('{' + f + '}' for f in sorted(allowed))}"
    if "room" not in fields:
        return "must contain {room}"
    return None


class IceServer(BaseModel):
    """One STUN or TURN server, as in WebRTC's ``RTCIceServer``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    urls: str | list[str]
    username: str | None = None
    credential: str | None = None


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LIVECART_", extra="ignore", frozen=True)

    env: Literal["dev", "prod"] = "dev"
    database_url: str = "sqlite+aiosqlite:///./livecart.db"
    #: ``None`` means: start a private, embedded redis-server in ``data_dir`` and stop it on shutdown.
    redis_url: str | None = None
    secret_key: SecretStr = SecretStr(DEV_SECRET_KEY)
    #: Older keys still accepted when verifying tokens, newest first (key rotation).
    previous_secret_keys: list[SecretStr] = Field(default_factory=list)
    base_url: str = "http://127.0.0.1:8000"
    currency: str = "CNY"
    data_dir: Path = Path(".livecart")

    #: ``None``: on in dev, off in prod.
    open_signup: bool | None = None
    #: The built-in dev payment provider's simulator. ``None``: on in dev, off in prod.
    dev_payments: bool | None = None
    #: HMAC secret of the payment webhook; derived from ``secret_key`` when unset.
    payment_webhook_secret: SecretStr | None = None
    webhook_tolerance_seconds: int = Field(default=300, ge=1)
    #: One-level commission paid to the referring promoter, in basis points of the order amount: the
    #: default of every shop (a shop's own rate, a leader's or a card's wins over it).
    commission_rate_bps: int = Field(default=1000, ge=0, le=10_000)
    #: A customer stays with the leader (or sharing customer) who first brought them to a host this many
    #: days (0: for ever), SPEC §9.
    binding_days: float = Field(default=365.0, ge=0)
    #: The after-sale window (七天无理由): a refund inside it claws back commission; a payout includes an
    #: order's commission only after it; after it the commission is final.
    after_sale_days: float = Field(default=7.0, ge=0)

    # --- money (SPEC §10): each provider is on when its keys are set; every API base is a setting ---
    #: WeChat Pay API v3: merchant id, the AppID payments are made in (the Official Account of JSAPI), the
    #: APIv3 key (32 bytes), the merchant's API private key (PEM file) and its certificate serial.
    wechatpay_mchid: str | None = None
    wechatpay_appid: str | None = None
    wechatpay_apiv3_key: SecretStr | None = None
    wechatpay_merchant_key_file: Path | None = None
    wechatpay_merchant_serial: str | None = None
    #: "WeChat Pay public key" mode (微信支付公钥): the key (PEM file) and its id (``PUB_KEY_ID_...``). Unset:
    #: platform-certificate mode, where the certificates are fetched from the API and kept in
    #: ``wechatpay_platform_cert_dir``.
    wechatpay_platform_public_key_file: Path | None = None
    wechatpay_platform_public_key_id: str | None = None
    wechatpay_platform_cert_dir: Path | None = None
    wechatpay_api_base: str = "https://api.mch.weixin.qq.com"
    #: Alipay (RSA2): the app id, the app's private key and Alipay's public key (PEM files), the gateway.
    alipay_app_id: str | None = None
    alipay_private_key_file: Path | None = None
    alipay_public_key_file: Path | None = None
    alipay_api_base: str = "https://openapi.alipay.com/gateway.do"
    #: Stripe: the secret API key, the webhook endpoint's signing secret (``whsec_...``), the API base.
    stripe_secret_key: SecretStr | None = None
    stripe_webhook_secret: SecretStr | None = None
    stripe_api_base: str = "https://api.stripe.com"
    #: How long one call to a payment provider may take.
    payment_provider_timeout_seconds: float = Field(default=10.0, gt=0)
    #: A provider payment with no notification after this long is queried at the provider (then again
    #: every as long, until it is settled or its order is over).
    payment_query_after_seconds: float = Field(default=60.0, gt=0)
    #: A provider refund that failed is tried again after this long, doubling up to an hour, for ever: it is
    #: shown to the host meanwhile, never dropped.
    refund_retry_seconds: float = Field(default=60.0, gt=0)
    #: A shipped order the buyer has not confirmed is completed this many days after it was shipped.
    auto_complete_days: float = Field(default=10.0, gt=0)

    #: ``None``: on in dev, off in prod (run ``alembic upgrade head`` yourself there).
    migrate_on_start: bool | None = None
    sweep_interval_seconds: float = Field(default=1.0, gt=0)
    #: A reservation in Redis with no SQL row is returned to the sale after this long.
    orphan_grace_seconds: float = Field(default=30.0, gt=0)
    #: How long a buy waits for its order row to commit before it gives up and releases the stock.
    commit_timeout_seconds: float = Field(default=5.0, gt=0)
    #: Redis connections per process; a request beyond them waits (up to the commit timeout) for one.
    redis_max_connections: int = Field(default=64, ge=2, le=10_000)
    max_body_bytes: int = Field(default=64 * 1024, ge=1024)
    #: How long an idle keep-alive HTTP connection stays open. A buyer taps every few seconds during a show:
    #: uvicorn's 5 s default closed their connections between two sales, and a tap sent just as the server
    #: closed one failed on the client (longer than a load balancer's usual 60 s idle timeout).
    http_keepalive_seconds: float = Field(default=65.0, gt=0)
    max_order_quantity: int = Field(default=100, ge=1)
    #: Origins allowed to open the room websocket ("*" for any; empty: the origin of ``base_url``).
    ws_allowed_origins: list[str] = Field(default_factory=list)
    ws_ping_interval_seconds: float = Field(default=20.0, gt=0)
    ws_ping_timeout_seconds: float = Field(default=20.0, gt=0)
    #: Largest frame a client may send (chat); larger ones close the socket with 1009.
    ws_max_frame_bytes: int = Field(default=4096, ge=256)
    #: Room events kept for reconnecting viewers (``since``).
    ws_history: int = Field(default=1000, ge=10)
    #: Unsent bytes after which a viewer is closed as too slow (4408).
    ws_max_backlog_bytes: int = Field(default=1 << 20, ge=4096)
    #: How room events reach the sockets: ``redis`` (streams shared by every process) or ``memory`` (this
    #: process alone, no Redis round trip; refused with ``livecart serve --workers`` N > 1).
    realtime_broker: Literal["redis", "memory"] = "redis"
    #: STUN/TURN servers of the server's WebRTC peers (WHIP, WHEP) and of the pages' peers (which ask
    #: ``GET /api/rooms/{room}/video``), a JSON list of ``{urls, username?, credential?}``. None by default:
    #: no third-party server is contacted; a host with a reachable address needs none.
    ice_servers: list[IceServer] = Field(default_factory=list)
    #: WHEP viewers per room that this process encodes video for (aiortc encodes once per viewer).
    whep_max_viewers: int = Field(default=10, ge=0)
    #: An external video engine, a URL template with ``{room}`` and optionally ``{kind}`` (``whip``/``whep``).
    video_external_url: str | None = None
    #: ``overflow``: WHEP viewers past the cap are redirected there; ``always``: WHIP and WHEP both are.
    video_external_mode: Literal["overflow", "always"] = "overflow"
    # --- video for the whole audience: HLS and replays (SPEC §11, docs/video.md) ---
    #: Encode every live WHIP ingest once into HLS (``LIVECART_DATA_DIR``/hls/ROOM), for any number of
    #: viewers and for the replay. Off: WHEP only, up to ``whep_max_viewers``.
    hls_enabled: bool = True
    #: The longest an HLS segment lasts (a keyframe starts each one); the live delay is about three of them.
    hls_segment_seconds: float = Field(default=2.0, ge=1.0, le=6.0)
    #: Segments in the live playlist (the replay playlist has them all).
    hls_live_window: int = Field(default=6, ge=3, le=60)
    #: Frames are scaled down so that their shorter side is at most this (720: 1280x720, or 720x1280 from a
    #: phone held upright); never scaled up.
    hls_max_short_side: int = Field(default=720, ge=144, le=2160)
    #: H.264 (libx264) bit-rate cap and preset, and the AAC bit rate.
    hls_video_kbps: int = Field(default=1500, ge=100, le=20_000)
    hls_x264_preset: Literal["ultrafast", "superfast", "veryfast", "faster", "fast", "medium"] = "veryfast"
    hls_audio_kbps: int = Field(default=96, ge=32, le=320)
    #: Frames waiting for an encoder that fell behind; past it the oldest are dropped (ingest never waits).
    hls_queue_frames: int = Field(default=8, ge=1, le=120)
    #: A crashed encoder is restarted after this long, doubling (up to 30 s) while it keeps crashing.
    hls_restart_seconds: float = Field(default=0.5, gt=0)
    #: A signed playlist URL is valid this long at least; its expiry is rounded up to a multiple of
    #: ``hls_grant_bucket_seconds``, so every viewer of a room gets the same URL for a while (one cache entry
    #: at a CDN).
    hls_grant_seconds: int = Field(default=3600, ge=60)
    hls_grant_bucket_seconds: int = Field(default=600, ge=1)
    #: Memory each process may keep recent HLS segments in, so that its players are answered without a read.
    hls_cache_mb: int = Field(default=64, ge=0, le=4096)
    #: Replays are kept this many days after their show ends (a shop may choose its own); 0: deleted when
    #: the show ends.
    replay_keep_days: int = Field(default=30, ge=0, le=3650)
    #: How long a worker waits for the sibling that holds a room's video to answer a forwarded WHIP/WHEP
    #: request (its negotiation included) before it answers ``503``.
    video_forward_timeout_seconds: float = Field(default=10.0, gt=0)
    #: Set by ``livecart serve --workers N`` in each worker, not by operators: the worker's private loopback
    #: address, where its siblings forward the video signalling of the rooms it holds, and the id shared by
    #: the workers of one ``serve`` (it scopes their Redis records and their forward token).
    worker_url: str | None = None
    worker_group: str | None = None
    log_level: str = "INFO"
    log_json: bool = True

    # --- who is who (SPEC §8) ---
    #: A host's session token lives this long after its last use (sliding), then the host signs in again.
    host_session_days: float = Field(default=30.0, gt=0)
    #: A customer's token (and cookie) lives this long after sign-in.
    customer_token_days: float = Field(default=365.0, gt=0)
    #: Where the phone sign-in code is sent: ``dev`` (the code is in the response and the log; dev only),
    #: ``aliyun`` (the Aliyun SMS service through its SDK) or ``none`` (phone sign-in off).
    sms_provider: Literal["dev", "aliyun", "none"] | None = None
    #: Aliyun SMS: the API endpoint (host, or ``http(s)://host:port`` for a gateway in its format), keys,
    #: sign name and the template whose ``${code}`` gets the code.
    aliyun_sms_endpoint: str = "dysmsapi.aliyuncs.com"
    aliyun_access_key_id: str | None = None
    aliyun_access_key_secret: SecretStr | None = None
    aliyun_sms_sign_name: str | None = None
    aliyun_sms_template_code: str | None = None
    #: Region of phone numbers written without a country code.
    default_phone_region: str = "CN"
    #: How long a sign-in code is valid (a test sets a few seconds to see one expire).
    sign_in_code_seconds: int = Field(default=300, ge=1)
    #: Wrong codes for one phone before it is locked, and for how long.
    sign_in_max_wrong_codes: int = Field(default=5, ge=1)
    sign_in_lock_seconds: int = Field(default=900, ge=1)
    #: WeChat web authorization (网页授权, ``snsapi_base``): on when an AppID and secret are set.
    wechat_app_id: str | None = None
    wechat_app_secret: SecretStr | None = None
    wechat_api_base: str = "https://api.weixin.qq.com"
    wechat_authorize_url: str = "https://open.weixin.qq.com/connect/oauth2/authorize"
    #: How long one call to the SMS provider or to WeChat's API may take before the request answers 502.
    sign_in_provider_timeout_seconds: float = Field(default=5.0, gt=0)

    # --- limits (SPEC §13): each rate is "N/period" as the ``limits`` library parses it ---
    #: Multiplies every rate limit's N at once (a load test against staging sets e.g. 1000).
    limits_scale: float = Field(default=1.0, gt=0)
    limit_signup_per_ip: str = "10/hour"
    limit_sign_in_code_per_phone: str = "1/minute"
    limit_sign_in_code_per_ip: str = "10/hour"
    limit_sign_in_per_ip: str = "30/hour"
    limit_join_per_ip: str = "60/minute"
    limit_join_per_customer: str = "20/minute"
    limit_orders_per_ip: str = "600/minute"
    limit_orders_per_customer: str = "60/minute"
    limit_chat_per_customer: str = "10/10seconds"
    limit_chat_per_ip: str = "60/10seconds"
    #: A host's reads of the customer list, the roster, the commission report and payouts (CSV included).
    limit_reports_per_host: str = "300/minute"
    #: A host's payouts and roster changes.
    limit_settlement_per_host: str = "60/minute"
    #: A customer's reads of their own orders, customers and earnings (``/api/me``).
    limit_me_per_customer: str = "120/minute"
    #: Leader links (``/j/{code}``) and their QR codes opened from one address.
    limit_leader_link_per_ip: str = "120/minute"
    #: A buyer's after-sale requests and withdrawals (per customer, or per viewer for a guest).
    limit_after_sale_per_customer: str = "20/hour"
    #: Checkouts (``POST /api/orders/{order}/pay``, each one a call to the provider) and checkout options
    #: one customer (or guest viewer) asks for.
    limit_checkout_per_customer: str = "30/minute"
    #: Payment notifications from one address (a provider sends from a few: generous, so a show's rush of
    #: payments is never refused; a refused genuine one is redelivered, and the query settles it anyway).
    limit_notify_per_ip: str = "6000/minute"
    #: HLS playlists and segments fetched from one address (a player asks about once a second; a CDN or a
    #: carrier NAT in front puts many players behind one address: raise it there).
    limit_hls_per_ip: str = "3000/minute"
    #: A customer's (or guest viewer's) reads of a replay; a host's replay changes (publish, hide, delete).
    limit_replay_per_customer: str = "120/minute"
    limit_replay_per_host: str = "60/minute"
    #: Sockets one viewer may hold open at once; opening one more closes their oldest (close code 4509).
    ws_max_per_viewer: int = Field(default=3, ge=1)
    #: WHEP sessions one viewer may hold (a new one replaces the old); an offer never answered by ICE is
    #: freed after ``whep_unanswered_seconds``.
    whep_max_per_viewer: int = Field(default=1, ge=1)
    whep_unanswered_seconds: float = Field(default=10.0, gt=0)
    #: A client must send a request's whole header within this long, and at most this many bytes of it.
    http_header_timeout_seconds: float = Field(default=10.0, gt=0)
    http_max_header_bytes: int = Field(default=16 * 1024, ge=1024)
    #: Open connections (HTTP and websocket) one process serves at once; past it new ones get 503.
    max_connections: int = Field(default=20_000, ge=10)

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if self.env == "prod":
            self._check_prod_secrets()
        if self.commit_timeout_seconds * 2 >= self.orphan_grace_seconds:
            # The orphan sweeper may only release a reservation whose SQL write can no longer land.
            raise ValueError(
                "LIVECART_ORPHAN_GRACE_SECONDS must exceed twice LIVECART_COMMIT_TIMEOUT_SECONDS"
            )
        if self.video_external_url is not None:
            problem = _url_template_problem(self.video_external_url, allowed={"room", "kind"})
            if problem:
                raise ValueError(f"LIVECART_VIDEO_EXTERNAL_URL: {problem}")
        elif self.video_external_mode == "always":
            raise ValueError("LIVECART_VIDEO_EXTERNAL_MODE=always needs LIVECART_VIDEO_EXTERNAL_URL")
        if (self.worker_url is None) != (self.worker_group is None):
            raise ValueError(
                "LIVECART_WORKER_URL and LIVECART_WORKER_GROUP are set together (by livecart serve)"
            )
        if self.wechatpay_enabled and self.wechat_app_id and self.wechat_app_id != self.wechatpay_appid:
            # A buyer's openid belongs to one Official Account; JSAPI pays with it in that account only.
            raise ValueError(
                "LIVECART_WECHATPAY_APPID must be LIVECART_WECHAT_APP_ID, the Official Account that signs "
                "buyers in: WeChat Pay JSAPI takes the openid it gave"
            )
        return self

    def _check_prod_secrets(self) -> None:
        keys = [("LIVECART_SECRET_KEY", self.secret_key)] + [
            ("LIVECART_PREVIOUS_SECRET_KEYS", k) for k in self.previous_secret_keys
        ]
        for name, key in keys:
            value = key.get_secret_value()
            if value in DEV_SECRET_KEYS:
                raise ValueError(
                    f"{name} holds a development key, published in this repository; set a private one"
                )
            if len(value.encode()) < MIN_PROD_SECRET_BYTES:
                raise ValueError(
                    f"{name} is shorter than {MIN_PROD_SECRET_BYTES} bytes; "
                    "use e.g. `python -c 'import secrets; print(secrets.token_urlsafe(48))'`"
                )
        if self.sms_provider == "dev":
            raise ValueError("LIVECART_SMS_PROVIDER=dev shows sign-in codes to anyone; it is refused in prod")

    @property
    def sms(self) -> str:
        """The SMS provider in use: the setting, else ``dev`` in dev and ``none`` in prod."""
        if self.sms_provider is not None:
            return self.sms_provider
        return "dev" if self.is_dev else "none"

    @property
    def wechat_enabled(self) -> bool:
        return bool(self.wechat_app_id and self.wechat_app_secret)

    @property
    def origins(self) -> list[str]:
        if self.ws_allowed_origins:
            return self.ws_allowed_origins
        from urllib.parse import urlsplit

        base = urlsplit(self.base_url)
        return [f"{base.scheme}://{base.netloc}"]

    @property
    def is_dev(self) -> bool:
        return self.env == "dev"

    @property
    def signup_open(self) -> bool:
        return self.is_dev if self.open_signup is None else self.open_signup

    @property
    def wechatpay_enabled(self) -> bool:
        return bool(
            self.wechatpay_mchid
            and self.wechatpay_appid
            and self.wechatpay_apiv3_key
            and self.wechatpay_merchant_key_file
            and self.wechatpay_merchant_serial
        )

    @property
    def alipay_enabled(self) -> bool:
        return bool(self.alipay_app_id and self.alipay_private_key_file and self.alipay_public_key_file)

    @property
    def stripe_enabled(self) -> bool:
        return bool(self.stripe_secret_key and self.stripe_webhook_secret)

    @property
    def dev_payments_enabled(self) -> bool:
        return self.is_dev if self.dev_payments is None else self.dev_payments

    @property
    def migrations_on_start(self) -> bool:
        return self.is_dev if self.migrate_on_start is None else self.migrate_on_start

    @property
    def signing_keys(self) -> list[str]:
        """Token signing keys, newest first: the first signs, all verify."""
        return [
            self.secret_key.get_secret_value(),
            *(k.get_secret_value() for k in self.previous_secret_keys),
        ]

    @property
    def webhook_secret(self) -> bytes:
        if self.payment_webhook_secret is not None:
            return self.payment_webhook_secret.get_secret_value().encode()
        return hashlib.sha256(b"livecart-webhook:" + self.secret_key.get_secret_value().encode()).digest()
