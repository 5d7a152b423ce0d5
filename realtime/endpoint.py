"""The room socket's route, ``/ws/rooms/{room}``: each connection is served by the process's ``Realtime``
(``realtime.service``), which the lifespan puts in the request state."""

from __future__ import annotations

from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket

import base.http  # noqa: F401  # registers the ``{x:id}`` path convertor used below
from realtime.service import Realtime


async def room_socket(websocket: WebSocket) -> None:
    realtime: Realtime = websocket.state.realtime
    await realtime.serve(websocket)


routes = [WebSocketRoute("/ws/rooms/{room:id}", room_socket)]
