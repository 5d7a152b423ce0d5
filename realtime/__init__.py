"""The websocket hub: per-room channels, snapshot + sequenced deltas, coalesced live stock, honest presence,
fan-out across processes through a broker (Redis, or memory for a single process).

One idea per module:

- ``hub``: the pure fan-out core (which connection gets which frame); ``frames``: server frames, built once.
- ``broker``: the ``Broker`` protocol; ``broker_redis`` and ``broker_memory`` implement it; ``keys``: the
  Redis key layout of a room.
- ``publisher``: what the domain calls (``base.events.Events``); ``stock``: the coalesced stock counters.
- ``service``: ``Realtime``, the process's facade (lifecycle, presence numbers, each connection's life);
  ``admission``: who may join; ``snapshot``: the snapshot frame and its cache; ``presence``: who watches,
  in Redis and SQL; ``socket_cap``: at most so many sockets per viewer, across processes; ``client_frames``:
  what a client may send (chat and its limits); ``sockets``: the socket adapters behind one
  ``Peer``; ``uvicorn_ws``: the uvicorn protocol that gives the hub raw sockets; ``endpoint``: the route.
- ``source``: what realtime needs from the domain, as protocols the domain implements (realtime imports
  only ``base`` and ``identity``).
- ``close_codes`` and ``errors``: how a socket ends; ``models``: the SQL record of viewers.
"""
