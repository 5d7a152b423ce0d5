"""Who may join a room's socket: the token and the room checked, before anything is sent.

A bad token is refused with 4401, a token for another room (or another host's room) with 4403, a room that
does not exist with 4404. A room's host is read once per process (a room never changes hands), so a show's
start, a storm of connections to one room, costs no SQL.
"""

from __future__ import annotations

from identity.errors import InvalidToken
from identity.guards import Authenticator
from identity.tokens import HostIdentity, ViewerIdentity
from realtime.errors import CloseCode, RealtimeError
from realtime.hub import Connection, Hub
from realtime.source import RoomSource


def origin_allowed(origin: str | None, host: str | None, allowed: list[str]) -> bool:
    """Whether a socket's ``Origin`` may open it: none sent (not a browser), a page of this very server at
    whatever address it was opened (the origin's host and port are the request's ``Host``; scheme aside,
    since a TLS-terminating proxy makes https pages open ws sockets), or one of the allowlist (``*``: any).
    """
    if origin is None or "*" in allowed or origin in allowed:
        return True
    scheme, sep, netloc = origin.partition("://")
    if not sep or scheme not in ("http", "https") or not host:
        return False
    return _with_port(netloc.lower(), scheme) == _with_port(host.lower(), scheme)


def _with_port(netloc: str, scheme: str) -> str:
    if netloc.endswith("]") or ":" not in netloc.rpartition("]")[2]:  # no port: the scheme's default
        return f"{netloc}:{443 if scheme == 'https' else 80}"
    return netloc


class Admission:
    def __init__(self, auth: Authenticator, rooms: RoomSource, hub: Hub) -> None:
        self.auth = auth
        self.rooms = rooms
        self.hub = hub
        self._room_hosts: dict[str, str] = {}  # room id -> its host

    async def admit(self, token: str, room_id: str) -> tuple[Connection, HostIdentity | ViewerIdentity]:
        """The new connection, joined to the hub as syncing, and who it is; if refused, ``RealtimeError``
        with the code."""
        try:
            who = await self.auth.verify(token)  # a host's session is checked in SQL
        except InvalidToken:
            raise RealtimeError(CloseCode.UNAUTHORIZED, "bad token") from None
        host_id = self._room_hosts.get(room_id)
        if host_id is None:
            host_id = await self.rooms.room_host(room_id)
            if host_id is None:
                raise RealtimeError(CloseCode.NO_ROOM, "no such room")
            self._room_hosts[room_id] = host_id
        if isinstance(who, HostIdentity):
            if host_id != who.host_id:
                raise RealtimeError(CloseCode.FORBIDDEN, "not your room")
            return self.hub.join(room_id, None), who
        if not isinstance(who, ViewerIdentity):  # a customer token: join the room first
            raise RealtimeError(CloseCode.UNAUTHORIZED, "not a viewer token")
        if who.room_id != room_id:
            raise RealtimeError(CloseCode.FORBIDDEN, "not a viewer of this room")
        return self.hub.join(room_id, who.viewer_id), who
