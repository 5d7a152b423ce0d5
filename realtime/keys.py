"""The Redis key layout of a room: every key of one room carries its hash tag (``{room:ID}``), so a room's
keys share one Redis Cluster slot and one script may touch them all. Every module that names a room key
takes it from here."""

from __future__ import annotations

import functools
from typing import NamedTuple

TAG_PREFIX = "{room:"


class RoomKeys(NamedTuple):
    #: string: the last seq given out
    seq: str
    #: stream: the room's events, id ``<seq>-0``, field ``f`` = the frame's JSON text
    events: str
    #: string: changes only when Redis lost the room (clients then need a snapshot)
    epoch: str
    #: hash: ``t:<gate>`` last publish (ms), ``v:<gate>`` last value published
    gate: str
    #: stream: personal frames, fields ``to`` = the viewer id, ``f`` = the frame's JSON text
    personal: str
    #: zset: the seqs of the chat lines retracted (deleted) from ``events``, score = the seq; only those
    #: still in the stream (``retract.lua`` drops the rest)
    retracted: str


class PresenceKeys(NamedTuple):
    #: zset: viewer id -> last seen (ms) on any process
    viewers: str
    #: hash: process id -> ``"<sockets>:<reported at ms>"``
    conns: str


class SocketKeys(NamedTuple):
    #: zset: one viewer's sockets open anywhere, ``<opened>:<process>:<connection>`` -> counts until (ms)
    sockets: str
    #: set: the room's sockets evicted past the cap, for the processes that hold them to close
    evicted: str


def _tag(room_id: str) -> str:
    return TAG_PREFIX + room_id + "}"


@functools.lru_cache(maxsize=4096)
def room_keys(room_id: str) -> RoomKeys:
    """The keys of the room's events, in the order ``publish.lua`` names them (then ``personal`` and
    ``retracted``)."""
    tag = _tag(room_id)
    return RoomKeys(
        f"{tag}:seq", f"{tag}:events", f"{tag}:epoch", f"{tag}:gate", f"{tag}:personal", f"{tag}:retracted"
    )


def presence_keys(room_id: str) -> PresenceKeys:
    """The keys ``presence.lua`` names."""
    tag = _tag(room_id)
    return PresenceKeys(f"{tag}:presence", f"{tag}:conns")


def socket_keys(room_id: str, viewer_id: str) -> SocketKeys:
    """The keys ``socket_admit.lua`` names (``socket_refresh.lua`` names the same, per viewer)."""
    tag = _tag(room_id)
    return SocketKeys(f"{tag}:sockets:{viewer_id}", f"{tag}:evicted")


def room_of(key: str) -> str:
    """The room id of one of the room's keys."""
    return key[len(TAG_PREFIX) : key.index("}")]
