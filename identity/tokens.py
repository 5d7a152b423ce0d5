"""Who is calling: signed bearer tokens for hosts and viewers, per-invitee invite tokens, and the checks
that go with them.

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
VIEWER_SALT = "livecart.viewer.v1"
INVITE_SALT = "livecart.invite.v1"
INVITE_PREFIX = "i."
VIEWER_TOKEN_MAX_AGE = 30 * 24 * 3600


@dataclass(frozen=True, slots=True)
class HostIdentity:
    host_id: str


@dataclass(frozen=True, slots=True)
class ViewerIdentity:
    viewer_id: str
    room_id: str
    referrer_id: str | None


Identity = HostIdentity | ViewerIdentity


@dataclass(frozen=True, slots=True)
class InviteClaim:
    """What a verified invite token says: which invite, for which room, valid until when (epoch ms)."""

    invite_id: str
    room_id: str
    expires_ms: int


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
        cache_size: int = 100_000,
    ) -> None:
        keys = list(reversed(signing_keys))  # itsdangerous signs with the last key, verifies with all
        self._host = URLSafeSerializer(keys, salt=HOST_SALT)
        self._viewer = URLSafeTimedSerializer(keys, salt=VIEWER_SALT)
        self._invite = URLSafeSerializer(keys, salt=INVITE_SALT)
        self._viewer_max_age = viewer_max_age
        self._cache_size = cache_size
        self._verified: dict[str, tuple[Identity, float]] = {}  # token -> (who, valid until, epoch s)

    def host_token(self, host_id: str) -> str:
        return "h." + str(self._host.dumps(host_id))

    def viewer_token(self, viewer_id: str, room_id: str, referrer_id: str | None) -> str:
        return "v." + str(self._viewer.dumps([viewer_id, room_id, referrer_id]))

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
        # Only "h." and "v." are bearer tokens; an invite token ("i.") admits a join and nothing else.
        try:
            if kind == "h":
                host_id = self._host.loads(body)
                if isinstance(host_id, str):
                    return HostIdentity(host_id), math.inf
            elif kind == "v":
                value, signed_at = self._viewer.loads(
                    body, max_age=self._viewer_max_age, return_timestamp=True
                )
                if isinstance(value, list) and len(value) == 3:
                    valid_until = signed_at.timestamp() + self._viewer_max_age
                    return ViewerIdentity(value[0], value[1], value[2]), valid_until
        except SignatureExpired as exc:
            raise InvalidToken("This token has expired; join the room again.", code="token_expired") from exc
        except BadSignature as exc:
            raise InvalidToken("This token is not valid.") from exc
        raise InvalidToken("This token is not valid.")
