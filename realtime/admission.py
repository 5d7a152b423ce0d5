"""Who may join a room's socket: the token and the room checked, before anything is sent.

A bad token is refused with 4401, a token for another room (or another host's room) with 4403, a room that
does not exist with 4404. A room's host is read once per process (a room never changes hands), so a show's
start, a storm of connections to one room, costs no SQL.
"""

from __future__ import annotations

from identity.errors import InvalidToken
from identity.tokens import HostIdentity, TokenSigner, ViewerIdentity
from realtime.errors import CloseCode, RealtimeError
from realtime.hub import Connection, Hub
from realtime.source import RoomSource


class Admission:
    def __init__(self, signer: TokenSigner, rooms: RoomSource, hub: Hub) -> None:
        self.signer = signer
        self.rooms = rooms
        self.hub = hub
        self._room_hosts: dict[str, str] = {}  # room id -> its host

    async def admit(self, token: str, room_id: str) -> Connection:
        """The new connection, joined to the hub as syncing; if refused, ``RealtimeError`` with the code."""
        try:
            who = self.signer.verify(token)
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
            return self.hub.join(room_id, None)
        assert isinstance(who, ViewerIdentity)
        if who.room_id != room_id:
            raise RealtimeError(CloseCode.FORBIDDEN, "not a viewer of this room")
        return self.hub.join(room_id, who.viewer_id)
