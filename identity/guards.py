"""Who is calling, from the request's bearer token, and what they may touch: every ownership check of the
house is one of these functions (a host acts only on their own rooms; a viewer only in their room and on
their own orders).

``Authenticator`` reads the caller: a viewer's token alone says who they are (no I/O, the buy path's
case); a host's session token is checked against its session in SQL (expired or revoked: 401); a stream
key is accepted where OBS calls (WHIP) and nowhere else."""

from __future__ import annotations

from starlette.requests import HTTPConnection

from identity.errors import InvalidToken, NotPermitted
from identity.sessions import STREAM_KEY_PREFIX, HostSessions, StreamKeys
from identity.tokens import CustomerIdentity, HostIdentity, Identity, TokenSigner, ViewerIdentity

#: What a host or viewer endpoint accepts (a customer token only signs in and joins).
Caller = HostIdentity | ViewerIdentity


def bearer(conn: HTTPConnection) -> str | None:
    header = conn.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


class Authenticator:
    def __init__(self, signer: TokenSigner, host_sessions: HostSessions, stream_keys: StreamKeys) -> None:
        self.signer = signer
        self.host_sessions = host_sessions
        self.stream_keys = stream_keys

    async def verify(self, token: str) -> Identity:
        """Any bearer token (host session, customer, viewer), its session checked when it is a host's."""
        who = self.signer.verify(token)
        if isinstance(who, HostIdentity):
            await self.host_sessions.check(who)
        return who

    async def identify(self, conn: HTTPConnection) -> Caller:
        who = await self.verify(_required_bearer(conn))
        if isinstance(who, CustomerIdentity):
            raise NotPermitted("Join the room first: a customer token only signs in and joins.")
        return who

    async def require_host(self, conn: HTTPConnection) -> HostIdentity:
        who = await self.identify(conn)
        if not isinstance(who, HostIdentity):
            raise NotPermitted("Only a host may do this.")
        return who

    async def require_streamer(self, conn: HTTPConnection) -> HostIdentity:
        """A host by session token (the console) or by stream key (OBS): who may publish video."""
        token = _required_bearer(conn)
        if token.startswith(STREAM_KEY_PREFIX):
            return await self.stream_keys.host_of(token)
        return await self.require_host(conn)

    def require_viewer(self, conn: HTTPConnection) -> ViewerIdentity:
        return require_viewer(conn, self.signer)

    def customer(self, conn: HTTPConnection, *, cookie: str | None = None) -> CustomerIdentity | None:
        """The customer the request is signed in as (bearer first, else the cookie named), or ``None``.
        An invalid or other kind of token reads as no customer."""
        for token in (bearer(conn), conn.cookies.get(cookie) if cookie else None):
            if not token:
                continue
            try:
                who = self.signer.verify(token)
            except InvalidToken:
                continue
            if isinstance(who, CustomerIdentity):
                return who
        return None


def _required_bearer(conn: HTTPConnection) -> str:
    token = bearer(conn)
    if token is None:
        raise InvalidToken("Send 'Authorization: Bearer <token>'.")
    return token


def require_viewer(conn: HTTPConnection, signer: TokenSigner) -> ViewerIdentity:
    """The viewer a request's token names: a signature check, no I/O (the buy path)."""
    who = signer.verify(_required_bearer(conn))
    if not isinstance(who, ViewerIdentity):
        raise NotPermitted("Only a viewer of the room may do this; join the room first.")
    return who


def require_room_owner(host: HostIdentity, owner_id: str, *, what: str = "room") -> None:
    """The host acts on their own room (or a card, order or product in one): 403 otherwise."""
    if owner_id != host.host_id:
        raise NotPermitted(f"This {what} belongs to another host.")


def require_in_room(who: Caller, room_id: str, owner_id: str, *, what: str = "room") -> None:
    """Who may see a room's things: its host, or a viewer of that room (403 otherwise)."""
    if isinstance(who, HostIdentity):
        require_room_owner(who, owner_id, what=what)
    elif who.room_id != room_id:
        raise NotPermitted(
            f"You are not a viewer of this {what}'s room."
            if what != "room"
            else "You are not a viewer of this room."
        )


def require_buyer(viewer: ViewerIdentity, buyer_id: str) -> None:
    """A viewer acts on their own orders only (403 otherwise)."""
    if buyer_id != viewer.viewer_id:
        raise NotPermitted("This is not your order.")
