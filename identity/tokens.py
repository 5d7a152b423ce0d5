"""Who is calling: signed bearer tokens for host sessions, customers and viewers, per-invitee invite tokens,
and the checks that go with them.

Every bearer token starts with its kind and carries its issue time (itsdangerous' timestamp):

    s.  a host session: [session id, host id]; whether the session still stands is SQL's
        (``identity/sessions.py``: expiry sliding on use, revocation)
    c.  a customer of one host's shop: [customer id, host id]; valid ``customer_token_days``
    v.  a viewer of one room: [viewer id, room id, referrer id, customer id]; valid 30 days
    h.  a v1 host token (no expiry, no revocation): refused, the host signs in again

Tokens are signed with itsdangerous, one salt per purpose, so a token made for one purpose never verifies
as another; verification accepts every key in ``Settings.signing_keys`` (rotation) and compares in
constant time. A viewer token names its room and its referrer, so the buy path needs no SQL read to know
who buys and for whom. An invite token (``i.``) names its invite and room and carries its expiry in the
signed body; it admits someone to join, it is never a bearer token. Its use count and revocation live in
SQL (``live/invites.py``).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from itsdangerous import BadData, BadSignature, SignatureExpired, URLSafeSerializer, URLSafeTimedSerializer

from identity.errors import InvalidInvite, InvalidToken

HOST_SALT = "livecart.host.v1"
HOST_SESSION_SALT = "livecart.host-session.v2"
CUSTOMER_SALT = "livecart.customer.v1"
VIEWER_SALT = "livecart.viewer.v1"
INVITE_SALT = "livecart.invite.v1"
INVITE_PREFIX = "i."
VIEWER_TOKEN_MAX_AGE = 30 * 24 * 3600


CUSTOMER_TOKEN_MAX_AGE = 365 * 24 * 3600


@dataclass(frozen=True, slots=True)
class HostIdentity:
    host_id: str
    #: The session the token names (``None`` only for a stream key, which has no session).
    session_id: str | None = None


@dataclass(frozen=True, slots=True)
class ViewerIdentity:
    viewer_id: str
    room_id: str
    referrer_id: str | None
    #: The signed-in customer this viewer is; ``None`` for a guest viewer.
    customer_id: str | None = None

    @property
    def buyer_key(self) -> str:
        """Who rate limits and per-person checks count: the customer, else (a guest) the viewer."""
        return self.customer_id or self.viewer_id


@dataclass(frozen=True, slots=True)
class CustomerIdentity:
    customer_id: str
    host_id: str


Identity = HostIdentity | ViewerIdentity | CustomerIdentity


@dataclass(frozen=True, slots=True)
class InviteClaim:
    """What a verified invite token says: which invite, for which room, valid until when (epoch ms)."""

    invite_id: str
    room_id: str
    expires_ms: int


def customer_cookie(host_id: str) -> str:
    """The cookie that keeps a device signed in as a customer of one host's shop (one per host, so being
    a customer of two shops on one phone keeps both)."""
    return f"lc_c_{host_id}"


def is_invite_token(value: str) -> bool:
    """Invite tokens are told apart from room invite codes and share codes (no dot in those) by prefix."""
    return value.startswith(INVITE_PREFIX)


class TokenSigner:
    """Signs and verifies host and viewer (bearer) tokens, and per-invitee invite tokens.

    A token that verified is remembered (up to ``cache_size`` of them, with its expiry), so the buy path of
    a viewer who buys again, or of a thousand viewers in a flash sale, does not redo the HMAC each time.
    Only tokens that verified are remembered: garbage cannot fill the cache, and a lookup is by the whole
    token, so it tells nothing about the signature of a token that is not in it."""

    def __init__(
        self,
        signing_keys: list[str],
        *,
        viewer_max_age: int = VIEWER_TOKEN_MAX_AGE,
        customer_max_age: int = CUSTOMER_TOKEN_MAX_AGE,
        cache_size: int = 100_000,
    ) -> None:
        keys = list(reversed(signing_keys))  # itsdangerous signs with the last key, verifies with all
        self._legacy_host = URLSafeSerializer(keys, salt=HOST_SALT)
        self._session = URLSafeTimedSerializer(keys, salt=HOST_SESSION_SALT)
        self._customer = URLSafeTimedSerializer(keys, salt=CUSTOMER_SALT)
        self._viewer = URLSafeTimedSerializer(keys, salt=VIEWER_SALT)
        self._invite = URLSafeSerializer(keys, salt=INVITE_SALT)
        self._viewer_max_age = viewer_max_age
        self._customer_max_age = customer_max_age
        self._cache_size = cache_size
        self._verified: dict[str, tuple[Identity, float]] = {}  # token -> (who, valid until, epoch s)

    def session_token(self, session_id: str, host_id: str) -> str:
        return "s." + str(self._session.dumps([session_id, host_id]))

    def customer_token(self, customer_id: str, host_id: str) -> str:
        return "c." + str(self._customer.dumps([customer_id, host_id]))

    def viewer_token(
        self, viewer_id: str, room_id: str, referrer_id: str | None, customer_id: str | None = None
    ) -> str:
        return "v." + str(self._viewer.dumps([viewer_id, room_id, referrer_id, customer_id]))

    def legacy_host_token(self, host_id: str) -> str:
        """A v1 host token, as v1 issued it: only for the test that shows it is refused now."""
        return "h." + str(self._legacy_host.dumps(host_id))

    def invite_token(self, invite_id: str, room_id: str, *, expires_ms: int) -> str:
        """Deterministic for the same invite and key, so the host's list shows the link it first got."""
        return INVITE_PREFIX + str(self._invite.dumps([invite_id, room_id, expires_ms]))

    def verify_invite(self, token: str, *, room_id: str, now_ms: int) -> InviteClaim:
        """Check an invite token's signature, purpose, room and expiry (nothing about its uses: that is
        SQL's). Raises ``InvalidInvite`` (403) with a reason a person can act on."""
        if not is_invite_token(token):
            raise InvalidInvite("This is not an invite token.")
        try:
            value = self._invite.loads(token[len(INVITE_PREFIX) :])
        except BadData as exc:
            raise InvalidInvite("This invite link is not valid: it was altered or not issued here.") from exc
        if not (
            isinstance(value, list)
            and len(value) == 3
            and all(isinstance(v, str) for v in value[:2])
            and isinstance(value[2], int)
            and not isinstance(value[2], bool)
        ):
            raise InvalidInvite("This invite link is not valid.")
        claim = InviteClaim(value[0], value[1], value[2])
        if claim.room_id != room_id:
            raise InvalidInvite("This invite is for another room.")
        if now_ms >= claim.expires_ms:
            raise InvalidInvite("This invite has expired; ask the host for a new one.")
        return claim

    def verify(self, token: str) -> Identity:
        known = self._verified.get(token)
        if known is not None and time.time() < known[1]:
            return known[0]
        who, valid_until = self._verify(token)
        if len(self._verified) >= self._cache_size:
            self._verified.clear()
        self._verified[token] = (who, valid_until)
        return who

    def _verify(self, token: str) -> tuple[Identity, float]:
        kind, _, body = token.partition(".")
        # Only "s.", "c." and "v." are bearer tokens; an invite token ("i.") admits a join and nothing else.
        try:
            if kind == "s":
                value = self._session.loads(body)
                if _strings(value, 2):
                    return HostIdentity(value[1], session_id=value[0]), math.inf  # expiry: SQL's
            elif kind == "c":
                value, signed_at = self._customer.loads(
                    body, max_age=self._customer_max_age, return_timestamp=True
                )
                if _strings(value, 2):
                    valid_until = signed_at.timestamp() + self._customer_max_age
                    return CustomerIdentity(value[0], value[1]), valid_until
            elif kind == "v":
                value, signed_at = self._viewer.loads(
                    body, max_age=self._viewer_max_age, return_timestamp=True
                )
                if isinstance(value, list) and len(value) in (3, 4):  # v1 tokens have no customer
                    valid_until = signed_at.timestamp() + self._viewer_max_age
                    customer = value[3] if len(value) == 4 else None
                    return ViewerIdentity(value[0], value[1], value[2], customer), valid_until
            elif kind == "h":
                self._legacy_host.loads(body)  # a forged one reads as invalid, a real one as retired
                raise InvalidToken(
                    "Host tokens of LiveCart v1 no longer sign in: sign in again for a session "
                    "(README, 'Moving to host sessions').",
                    code="token_expired",
                )
        except SignatureExpired as exc:
            raise InvalidToken("This token has expired; sign in again.", code="token_expired") from exc
        except BadSignature as exc:
            raise InvalidToken("This token is not valid.") from exc
        raise InvalidToken("This token is not valid.")


def _strings(value: object, n: int) -> bool:
    return isinstance(value, list) and len(value) == n and all(isinstance(v, str) for v in value)
