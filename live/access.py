"""Who is calling: signed bearer tokens for hosts and viewers, and the checks that go with them.

Tokens are signed with itsdangerous, one salt per purpose, so a token made for one purpose never verifies
as another; verification accepts every key in ``Settings.signing_keys`` (rotation) and compares in
constant time. A viewer token names its room and its referrer, so the buy path needs no SQL read to know
who buys and for whom.
"""

from __future__ import annotations

from dataclasses import dataclass

from itsdangerous import BadSignature, SignatureExpired, URLSafeSerializer, URLSafeTimedSerializer
from starlette.requests import HTTPConnection

from live.errors import InvalidToken
from livecart.errors import Forbidden

HOST_SALT = "livecart.host.v1"
VIEWER_SALT = "livecart.viewer.v1"
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


class TokenSigner:
    def __init__(self, signing_keys: list[str], *, viewer_max_age: int = VIEWER_TOKEN_MAX_AGE) -> None:
        keys = list(reversed(signing_keys))  # itsdangerous signs with the last key, verifies with all
        self._host = URLSafeSerializer(keys, salt=HOST_SALT)
        self._viewer = URLSafeTimedSerializer(keys, salt=VIEWER_SALT)
        self._viewer_max_age = viewer_max_age

    def host_token(self, host_id: str) -> str:
        return "h." + str(self._host.dumps(host_id))

    def viewer_token(self, viewer_id: str, room_id: str, referrer_id: str | None) -> str:
        return "v." + str(self._viewer.dumps([viewer_id, room_id, referrer_id]))

    def verify(self, token: str) -> Identity:
        kind, _, body = token.partition(".")
        try:
            if kind == "h":
                host_id = self._host.loads(body)
                if isinstance(host_id, str):
                    return HostIdentity(host_id)
            elif kind == "v":
                value = self._viewer.loads(body, max_age=self._viewer_max_age)
                if isinstance(value, list) and len(value) == 3:
                    return ViewerIdentity(value[0], value[1], value[2])
        except SignatureExpired as exc:
            raise InvalidToken("This token has expired; join the room again.", code="token_expired") from exc
        except BadSignature as exc:
            raise InvalidToken("This token is not valid.") from exc
        raise InvalidToken("This token is not valid.")


def bearer(conn: HTTPConnection) -> str | None:
    header = conn.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def identify(conn: HTTPConnection, signer: TokenSigner) -> Identity:
    token = bearer(conn)
    if token is None:
        raise InvalidToken("Send 'Authorization: Bearer <token>'.")
    return signer.verify(token)


def require_host(conn: HTTPConnection, signer: TokenSigner) -> HostIdentity:
    who = identify(conn, signer)
    if not isinstance(who, HostIdentity):
        raise Forbidden("Only a host may do this.")
    return who


def require_viewer(conn: HTTPConnection, signer: TokenSigner) -> ViewerIdentity:
    who = identify(conn, signer)
    if not isinstance(who, ViewerIdentity):
        raise Forbidden("Only a viewer of the room may do this; join the room first.")
    return who
