"""The aiortc adapter of the video edge (SPEC section 6): WHIP ingest sessions, WHEP playback sessions fed
through one ``MediaRelay`` per ingest, and their cleanup. Decisions (who is served where, what an offer must
be) are in ``live/video_rules.py``; who may publish or watch is checked by ``live/video_api.py``.

- One ingest per room: a new WHIP publish replaces the room's current one (OBS reconnecting after a network
  drop must not wait for ICE to notice that the old session is dead); the viewers of the old one are ended
  and reconnect to the new one.
- Every track of an ingest is always read by a drain, through the relay, so nothing backs up with zero
  viewers; the video drain also grabs the room's thumbnail every ``thumbnail_every`` seconds.
- A viewer gets a relay proxy per track that holds only the newest frame: a viewer whose encoder falls
  behind skips frames instead of queueing them.
- A session whose connection fails, closes, or is not connected ``connect_timeout`` seconds after its
  answer is removed (a WHEP session: the ``connect_timeout`` its ``play`` was given, so an offer whose client
  never completes ICE frees its slot of the room's cap soon); ending the room, deleting the ingest and
  shutting down close all of its peers.
- Encode once for everyone else: while an ingest lives, its frames also go to the room's HLS recording
  (``live/hls_encoder.py``: one encoder process per room, whatever the number of viewers), which ending the
  room finishes as the replay.
- One viewer holds at most ``max_per_viewer`` WHEP sessions of a room: their new offer replaces their
  oldest (``replaced_by``, decided by ``live.video_rules.sessions_to_replace``), whose peer is closed. Hosts
  are not held to it.

Sessions live in this process (the ``Video`` object is part of the app state). With several workers
(``livecart serve --workers N``) a room's ingest and all of its viewers are in the one process that took
the publish, its owner: given ``siblings``, an ingest records its owner in Redis while it lives (and stops
if another worker's publish took the room over), and the endpoints forward a room's requests to its owner
(``live/video_siblings.py``). Ending a room held by a sibling asks that sibling to close it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

import av
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.contrib.media import MediaRelay
from aiortc.mediastreams import MediaStreamError
from redis.exceptions import RedisError

from base.errors import LiveCartError
from base.ids import new_id
from base.metrics import Metrics
from base.settings import IceServer
from identity.tokens import HostIdentity, Identity, ViewerIdentity
from live.errors import InvalidSdp, NotLive, NotYourVideo, UnknownVideoSession, VideoUnavailable
from live.hls_encoder import EncoderOptions, Recorder
from live.hls_store import HlsStore
from live.thumbnail import jpeg
from live.video_rules import sessions_to_replace
from live.video_siblings import Siblings

log = logging.getLogger("livecart.video")

GONE_STATES = ("failed", "closed")


@dataclass(frozen=True, slots=True)
class Negotiated:
    session_id: str
    answer: str


@dataclass(eq=False)
class _Ingest:
    id: str
    room_id: str
    host_id: str
    pc: RTCPeerConnection
    tracks: dict[str, MediaStreamTrack]
    relay: MediaRelay = field(default_factory=MediaRelay)
    viewers: dict[str, _Playback] = field(default_factory=dict)  # negotiating ones included
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    stopped: bool = False
    #: Its HLS recording (``None``: HLS is off, or not started yet).
    recorder: Recorder | None = None
    #: Set once stopping it has finished (its recording's last segment written, its record dropped).
    finished: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass(eq=False)
class _Playback:
    id: str
    room_id: str
    owner: Identity
    ingest: _Ingest
    pc: RTCPeerConnection
    proxies: list[MediaStreamTrack] = field(default_factory=list)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    stopped: bool = False


class Video:
    """The WebRTC sessions of this process, by room. Built once per app; ``close()`` on shutdown."""

    def __init__(
        self,
        *,
        ice_servers: Sequence[IceServer] = (),
        metrics: Metrics | None = None,
        thumbnail_every: float = 3.0,
        connect_timeout: float = 20.0,
        siblings: Siblings | None = None,
        hls_store: HlsStore | None = None,
        hls_options: EncoderOptions | None = None,
    ) -> None:
        self._ice_servers = list(ice_servers)
        self._hls_store = hls_store
        self._hls_options = hls_options or EncoderOptions()
        self._siblings = siblings
        self._metrics = metrics
        self._thumbnail_every = thumbnail_every
        self._connect_timeout = connect_timeout
        self._ingests: dict[str, _Ingest] = {}  # by room
        self._playbacks: dict[str, _Playback] = {}  # by session, once answered
        self._thumbnails: dict[str, bytes] = {}  # by room
        self._replaced: set[asyncio.Task[None]] = set()  # replaced viewers' peers being closed
        self._ending: set[_Ingest] = set()  # ingests being stopped (no longer in ``_ingests``)
        self._closing = False
        self._count()  # both series exist (at 0) from the start

    # -- what endpoints read ----------------------------------------------------------------------------

    def configuration(self) -> RTCConfiguration:
        # Always an explicit list, even an empty one: given None, aiortc falls back to a public STUN server.
        return RTCConfiguration(
            iceServers=[
                RTCIceServer(urls=s.urls, username=s.username, credential=s.credential)
                for s in self._ice_servers
            ]
        )

    def is_live(self, room_id: str) -> bool:
        return room_id in self._ingests

    def viewers(self, room_id: str) -> int:
        """The room's WHEP sessions, those still negotiating included (they count against the cap)."""
        ingest = self._ingests.get(room_id)
        return len(ingest.viewers) if ingest else 0

    def replaced_by(self, room_id: str, who: Identity, *, max_per_viewer: int) -> list[str]:
        """The WHEP sessions (ids) that a new offer of ``who`` in the room would replace: their oldest, so
        that with the new one they hold at most ``max_per_viewer``; none for a host."""
        ingest = self._ingests.get(room_id)
        if ingest is None or not isinstance(who, ViewerIdentity):
            return []
        theirs = [  # oldest first: a dict keeps the order sessions were added in
            p.id
            for p in ingest.viewers.values()
            if isinstance(p.owner, ViewerIdentity) and p.owner.viewer_id == who.viewer_id
        ]
        return sessions_to_replace(theirs, max_per_viewer=max_per_viewer)

    def recorder(self, room_id: str) -> Recorder | None:
        """The HLS recording of the room's ingest in this process, while there is one."""
        ingest = self._ingests.get(room_id)
        return ingest.recorder if ingest is not None else None

    def thumbnail(self, room_id: str) -> bytes | None:
        """The newest JPEG grabbed from the room's video (kept across a re-publish, dropped when it ends)."""
        return self._thumbnails.get(room_id)

    # -- WHIP -------------------------------------------------------------------------------------------

    async def publish(self, room_id: str, *, host_id: str, offer: str) -> Negotiated:
        """Answer a WHIP offer: receive its first audio and first video track; replace a previous ingest."""
        self._check_open()
        pc = RTCPeerConnection(self.configuration())
        tracks: dict[str, MediaStreamTrack] = {}
        pc.on("track", lambda track: tracks.setdefault(track.kind, track))

        def receive_only() -> None:
            if not tracks:
                raise InvalidSdp("A WHIP offer must send audio or video (sendonly).")
            chosen = list(tracks.values())
            for transceiver in pc.getTransceivers():
                # Any other media section is answered inactive, so nothing is decoded that nobody reads.
                receiving = transceiver.receiver.track in chosen
                transceiver.direction = "recvonly" if receiving else "inactive"

        answer = await self._negotiate(pc, offer, receive_only)
        if self._closing:
            await pc.close()
            raise VideoUnavailable("The server is shutting down.")
        ingest = _Ingest(id=new_id("whip"), room_id=room_id, host_id=host_id, pc=pc, tracks=tracks)
        previous = self._ingests.get(room_id)
        self._ingests[room_id] = ingest
        for kind in tracks:
            self._spawn(ingest.tasks, self._drain(ingest, kind))
        self._watch(pc, ingest.tasks, lambda: self._stop_ingest(ingest, reason="connection lost"))
        self._count()
        log.info("room %s: ingest %s started (%s)", room_id, ingest.id, ", ".join(sorted(tracks)))
        if self._siblings is not None:
            await self._claim(self._siblings, ingest)
        if previous is not None:
            await self._stop_ingest(previous, reason="replaced by a new publish")
        await self._record(ingest)
        return Negotiated(ingest.id, answer)

    async def stop_publish(self, room_id: str, session_id: str, *, who: Identity) -> None:
        ingest = self._ingests.get(room_id)
        if ingest is None or ingest.id != session_id:
            raise UnknownVideoSession("This room has no such WHIP session.")
        if not (isinstance(who, HostIdentity) and who.host_id == ingest.host_id):
            raise NotYourVideo("Only the room's host may stop its video.")
        await self._stop_ingest(ingest, reason="deleted")

    # -- WHEP -------------------------------------------------------------------------------------------

    async def play(
        self,
        room_id: str,
        *,
        viewer: Identity,
        offer: str,
        replaces: Sequence[str] = (),
        connect_timeout: float | None = None,
    ) -> Negotiated:
        """Answer a WHEP offer with the room's ingest tracks, one relay proxy per track. The sessions in
        ``replaces`` (``replaced_by``) end first, and give up their slots at once; the new session is closed
        unless it connects within ``connect_timeout`` seconds of its answer (default: the constructor's)."""
        self._check_open()
        ingest = self._ingests.get(room_id)
        if ingest is None:
            raise NotLive("The host is not publishing video in this room now; try again when the show is on.")
        for session_id in replaces:  # before any await: the caller counted the slots without them
            old = ingest.viewers.get(session_id)
            if old is not None and self._drop_playback(old):
                log.info("room %s: WHEP session %s replaced by the same viewer's new offer", room_id, old.id)
                self._spawn(self._replaced, self._close_peer(old.pc))
        pc = RTCPeerConnection(self.configuration())
        playback = _Playback(id=new_id("whep"), room_id=room_id, owner=viewer, ingest=ingest, pc=pc)
        ingest.viewers[playback.id] = playback  # counted against the cap from here on (no await before)

        def send_only() -> None:
            for kind, source in ingest.tracks.items():
                if any(t.kind == kind and t.sender.track is None for t in pc.getTransceivers()):
                    proxy = ingest.relay.subscribe(source, buffered=False)
                    playback.proxies.append(proxy)
                    pc.addTrack(proxy)
            if not playback.proxies:
                raise InvalidSdp(f"The offer receives none of the room's media ({', '.join(ingest.tracks)}).")
            for transceiver in pc.getTransceivers():
                # What the viewer might send is refused (inactive/sendonly), so nothing of theirs is decoded.
                transceiver.direction = "sendonly" if transceiver.sender.track is not None else "inactive"

        try:
            answer = await self._negotiate(pc, offer, send_only)
        except BaseException as exc:
            stopped = playback.stopped  # closed under us: the ingest stopped meanwhile
            await self._stop_playback(playback)
            if stopped and isinstance(exc, Exception):
                raise NotLive("The host stopped publishing while this viewer was connecting.") from None
            raise
        if playback.stopped or ingest.stopped:
            await self._stop_playback(playback)
            raise NotLive("The host stopped publishing while this viewer was connecting.")
        self._playbacks[playback.id] = playback
        self._watch(pc, playback.tasks, lambda: self._stop_playback(playback), timeout=connect_timeout)
        self._count()
        return Negotiated(playback.id, answer)

    async def stop_play(self, room_id: str, session_id: str, *, who: Identity) -> None:
        playback = self._playbacks.get(session_id)
        if playback is None or playback.room_id != room_id:
            raise UnknownVideoSession("This room has no such WHEP session.")
        room_host = isinstance(who, HostIdentity) and who.host_id == playback.ingest.host_id
        if who != playback.owner and not room_host:
            raise NotYourVideo("This WHEP session is someone else's.")
        await self._stop_playback(playback)

    # -- lifecycle --------------------------------------------------------------------------------------

    async def end_room(self, room_id: str, *, ask_siblings: bool = True) -> None:
        """The show ended: close its ingest and every viewer of it, here or, when a sibling worker holds
        them and ``ask_siblings``, there; its HLS recording is finished (``#EXT-X-ENDLIST``) and stays as
        the replay. Never raises (commerce goes on)."""
        ingest = self._ingests.get(room_id)
        stopping = [i for i in self._ending if i.room_id == room_id]  # its publisher just went away
        if ingest is not None or stopping:
            try:
                for each in [*stopping, *([ingest] if ingest is not None else [])]:
                    await self._stop_ingest(each, reason="room ended")
            except Exception:
                log.exception("room %s: closing its video failed", room_id)
        elif ask_siblings and self._siblings is not None:
            try:
                elsewhere = await self._siblings.elsewhere(room_id)
            except (RedisError, OSError):
                elsewhere = None
            if elsewhere is not None:
                await self._siblings.end_room(room_id)  # that worker finishes the recording
                self._thumbnails.pop(room_id, None)
                return
        self._thumbnails.pop(room_id, None)
        await self._finish_recording(room_id)

    async def _finish_recording(self, room_id: str) -> None:
        store = self._hls_store
        if store is None:
            return
        try:
            if await asyncio.to_thread(store.exists, room_id):
                await asyncio.to_thread(store.finish, room_id)
        except OSError:
            log.exception("room %s: finishing its HLS recording failed", room_id)

    async def close(self) -> None:
        """Shutdown: refuse new sessions and close every peer connection."""
        self._closing = True
        ingests = list(self._ingests.values()) + list(self._ending)  # those stopping: their stop finishes
        await asyncio.gather(
            *(self._stop_ingest(i, reason="shutdown") for i in ingests), return_exceptions=True
        )
        await asyncio.gather(*self._replaced, return_exceptions=True)

    # -- internals --------------------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closing:
            raise VideoUnavailable("The server is shutting down.")

    async def _negotiate(self, pc: RTCPeerConnection, offer: str, prepare: Callable[[], None]) -> str:
        """Set the offer, let ``prepare`` attach or refuse media, answer. Non-trickle: aiortc's
        ``setLocalDescription`` returns once ICE gathering is complete, so the answer has every candidate.
        On any failure the peer is closed before the error goes up: a failed negotiation leaves nothing."""
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
            prepare()
            await pc.setLocalDescription(await pc.createAnswer())
        except BaseException as exc:
            await pc.close()
            if isinstance(exc, Exception) and not isinstance(exc, LiveCartError | OSError):
                # aiortc's parser and negotiation raise ValueError, KeyError, OperationError, ... on bad SDP.
                detail = str(exc)[:200] or type(exc).__name__
                raise InvalidSdp(f"The offer cannot be answered: {detail}") from exc
            raise
        assert pc.localDescription is not None
        return pc.localDescription.sdp

    def _watch(
        self,
        pc: RTCPeerConnection,
        tasks: set[asyncio.Task[None]],
        stop: Callable[[], Awaitable[None]],
        *,
        timeout: float | None = None,
    ) -> None:
        seconds = self._connect_timeout if timeout is None else timeout

        async def changed() -> None:
            if pc.connectionState in GONE_STATES:
                await stop()

        async def deadline() -> None:
            await asyncio.sleep(seconds)
            if pc.connectionState != "connected":
                log.info("a video peer did not connect within %ss; closing it", seconds)
                await stop()

        pc.on("connectionstatechange", changed)
        self._spawn(tasks, deadline())

    @staticmethod
    def _spawn(tasks: set[asyncio.Task[None]], coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    @staticmethod
    def _cancel(tasks: set[asyncio.Task[None]]) -> None:
        current = asyncio.current_task()
        for task in list(tasks):
            if task is not current:  # a deadline that stops its own session must finish doing so
                task.cancel()

    async def _drain(self, ingest: _Ingest, kind: str) -> None:
        """Read the ingest's track for as long as it lives; grab a thumbnail from the video now and then."""
        proxy = ingest.relay.subscribe(ingest.tracks[kind], buffered=False)
        loop = asyncio.get_running_loop()
        next_grab = loop.time()
        try:
            while True:
                frame = await proxy.recv()
                if ingest.recorder is not None and isinstance(frame, av.VideoFrame | av.AudioFrame):
                    ingest.recorder.feed(kind, frame)
                if isinstance(frame, av.VideoFrame) and loop.time() >= next_grab:
                    next_grab = loop.time() + self._thumbnail_every
                    try:
                        self._thumbnails[ingest.room_id] = await asyncio.to_thread(jpeg, frame)
                    except (av.FFmpegError, ValueError) as exc:
                        log.warning("room %s: no thumbnail from this frame: %s", ingest.room_id, exc)
        except MediaStreamError:
            pass  # the ingest ended
        finally:
            proxy.stop()

    async def _stop_ingest(self, ingest: _Ingest, *, reason: str) -> None:
        """Stop the ingest; when it is already stopping, wait until that has finished (so that ending the
        room, or shutting down, never finishes its recording before its last segment is written)."""
        if ingest.stopped:
            if asyncio.current_task() not in ingest.tasks:  # one of its own tasks would wait for itself
                await ingest.finished.wait()
            return
        ingest.stopped = True
        if self._ingests.get(ingest.room_id) is ingest:
            del self._ingests[ingest.room_id]
        self._ending.add(ingest)
        try:
            await self._end_ingest(ingest, reason=reason)
        finally:
            self._ending.discard(ingest)
            ingest.finished.set()

    async def _end_ingest(self, ingest: _Ingest, *, reason: str) -> None:
        log.info("room %s: ingest %s stopped: %s", ingest.room_id, ingest.id, reason)
        viewers = list(ingest.viewers.values())
        await asyncio.gather(*(self._stop_playback(p) for p in viewers), return_exceptions=True)
        self._cancel(ingest.tasks)
        await ingest.pc.close()
        self._count()
        if ingest.recorder is not None:
            await ingest.recorder.stop()  # its last segment is listed before the room's recording finishes
        if self._siblings is not None:
            try:
                await self._siblings.release(ingest.room_id, ingest.id)
            except (RedisError, OSError) as exc:  # the record expires on its own
                log.warning(
                    "room %s: could not drop the owner record of %s: %s", ingest.room_id, ingest.id, exc
                )

    async def _record(self, ingest: _Ingest) -> None:
        """Start the ingest's HLS recording (after the one it replaced has finished its last segment)."""
        if self._hls_store is None or ingest.stopped:
            return
        recorder = Recorder(
            ingest.room_id,
            self._hls_store,
            self._hls_options,
            kinds=ingest.tracks.keys(),
            metrics=self._metrics,
        )
        try:
            await recorder.start()
        except OSError:
            log.exception("room %s: the HLS recording could not start; WHEP goes on", ingest.room_id)
            return
        if ingest.stopped:  # it ended while the recording started
            await recorder.stop()
            return
        ingest.recorder = recorder

    async def _claim(self, siblings: Siblings, ingest: _Ingest) -> None:
        """Record this process as the owner of the room's ingest, and keep the record alive while it lives.
        Redis failing here leaves the ingest up (viewers reaching this worker still get it); the hold loop
        writes the record once Redis answers again."""
        try:
            await siblings.claim(ingest.room_id, ingest.id)
        except (RedisError, OSError) as exc:
            log.warning(
                "room %s: could not record ingest %s as this worker's: %s", ingest.room_id, ingest.id, exc
            )
        if not ingest.stopped:
            self._spawn(ingest.tasks, self._hold(siblings, ingest))

    async def _hold(self, siblings: Siblings, ingest: _Ingest) -> None:
        while True:
            await asyncio.sleep(siblings.hold_every)
            try:
                held = await siblings.hold(ingest.room_id, ingest.id)
            except (RedisError, OSError) as exc:
                log.warning("room %s: could not refresh the owner record: %s", ingest.room_id, exc)
                continue
            if not held:
                await self._stop_ingest(ingest, reason="another worker took the room's video over")
                return

    async def _stop_playback(self, playback: _Playback) -> None:
        if self._drop_playback(playback):
            await self._close_peer(playback.pc)

    def _drop_playback(self, playback: _Playback) -> bool:
        """Forget the session now (its slot is free from here on); whether it was still running. Its peer
        is left for the caller to close."""
        if playback.stopped:
            return False
        playback.stopped = True
        playback.ingest.viewers.pop(playback.id, None)
        self._playbacks.pop(playback.id, None)
        self._cancel(playback.tasks)
        for proxy in playback.proxies:
            proxy.stop()
        return True

    async def _close_peer(self, pc: RTCPeerConnection) -> None:
        await pc.close()
        self._count()

    def _count(self) -> None:
        if self._metrics is not None:
            self._metrics.video_sessions.labels("whip").set(len(self._ingests))
            self._metrics.video_sessions.labels("whep").set(len(self._playbacks))
