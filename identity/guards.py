"""Who is calling, from the request's bearer token, and what they may touch: every ownership check of the
house is one of these functions (a host acts only on their own rooms; a viewer only in their room and on
their own orders)."""

from __future__ import annotations

from starlette.requests import HTTPConnection

from identity.errors import InvalidToken, NotPermitted
from identity.tokens import HostIdentity, Identity, TokenSigner, ViewerIdentity


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
        raise NotPermitted("Only a host may do this.")
    return who


def require_viewer(conn: HTTPConnection, signer: TokenSigner) -> ViewerIdentity:
    who = identify(conn, signer)
    if not isinstance(who, ViewerIdentity):
        raise NotPermitted("Only a viewer of the room may do this; join the room first.")
    return who


def require_room_owner(host: HostIdentity, owner_id: str, *, what: str = "room") -> None:
    """The host acts on their own room (or a card, order or product in one): 403 otherwise."""
    if owner_id != host.host_id:
        raise NotPermitted(f"This {what} belongs to another host.")


def require_in_room(who: Identity, room_id: str, owner_id: str, *, what: str = "room") -> None:
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
