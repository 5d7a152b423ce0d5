"""A room's HLS recording on disk: ``LIVECART_DATA_DIR/hls/ROOM/``. Any worker of the deployment reads it;
only the worker whose encoder records the room writes it.

- ``seg-NNNNNN.ts``: the segments (MPEG-TS, H.264 and AAC), written by the encoder under a temporary name
  and renamed when complete, so a half-written segment is never served.
- ``segments.jsonl``: one JSON record per finished segment (``Segment``), appended in order: the truth the
  playlists are written from, and what places a moment of the show in the video (the replay's timeline).
- ``live.m3u8`` (the last ``window`` segments) and ``full.m3u8`` (all of them: the replay), rewritten
  whole (temporary file and rename: a reader sees the old or the new one) after each segment.
- ``ended``: the show ended; both playlists carry ``#EXT-X-ENDLIST``.
- ``hidden``: the host hid the replay; the replay playlist and the segments are not served.

Blocking file I/O: the async callers run these methods in a thread.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

from live.hls_rules import FULL_PLAYLIST, LIVE_PLAYLIST, Segment, playlist

RECORDS = "segments.jsonl"
ENDED = "ended"
HIDDEN = "hidden"
_ROOM_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class HlsStore:
    def __init__(self, root: Path, *, target_seconds: float = 2.0, window: int = 6) -> None:
        self.root = root
        self.target_seconds = target_seconds
        self.window = window

    def room_dir(self, room_id: str) -> Path:
        if not _ROOM_ID.match(room_id):  # ids come from the router's ``id`` converter; never a path
            raise ValueError(f"not a room id: {room_id!r}")
        return self.root / room_id

    # -- reading -----------------------------------------------------------------------------------------

    def exists(self, room_id: str) -> bool:
        return (self.room_dir(room_id) / RECORDS).exists()

    def segments(self, room_id: str) -> list[Segment]:
        """The room's finished segments in order (none when it has no recording). A record torn by a crash
        mid-write (the last line) is skipped: its segment is not in any playlist either."""
        try:
            text = (self.room_dir(room_id) / RECORDS).read_text()
        except FileNotFoundError:
            return []
        found = []
        for line in text.splitlines():
            try:
                found.append(Segment(**json.loads(line)))
            except (ValueError, TypeError):
                continue
        return found

    def is_ended(self, room_id: str) -> bool:
        return (self.room_dir(room_id) / ENDED).exists()

    def is_hidden(self, room_id: str) -> bool:
        return (self.room_dir(room_id) / HIDDEN).exists()

    def size_bytes(self, room_id: str) -> int:
        folder = self.room_dir(room_id)
        return sum(p.stat().st_size for p in folder.iterdir() if p.is_file()) if folder.exists() else 0

    def rooms(self) -> Iterator[str]:
        """The rooms that have a recording directory."""
        if self.root.exists():
            for folder in self.root.iterdir():
                if folder.is_dir() and _ROOM_ID.match(folder.name):
                    yield folder.name

    # -- writing (the recording worker) ------------------------------------------------------------------

    def prepare(self, room_id: str) -> Path:
        folder = self.room_dir(room_id)
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def add(self, room_id: str, segment: Segment, segments: list[Segment]) -> None:
        """Record a finished segment (its file already in place): append its record, then rewrite both
        playlists from ``segments`` (every segment so far, this one last)."""
        folder = self.prepare(room_id)
        with (folder / RECORDS).open("a") as records:
            records.write(json.dumps(asdict(segment), separators=(",", ":")) + "\n")
        # The show may have ended meanwhile (its end reached another worker): the playlists stay finished.
        self.write_playlists(room_id, segments, ended=self.is_ended(room_id))

    def finish(self, room_id: str) -> None:
        """The show ended: both playlists get ``#EXT-X-ENDLIST``; the recording stays as the replay."""
        folder = self.prepare(room_id)
        (folder / ENDED).touch()
        self.write_playlists(room_id, self.segments(room_id), ended=True)

    def write_playlists(self, room_id: str, segments: list[Segment], *, ended: bool) -> None:
        folder = self.prepare(room_id)
        target = self.target_seconds
        _replace(
            folder / LIVE_PLAYLIST, playlist(segments, target_seconds=target, ended=ended, window=self.window)
        )
        _replace(folder / FULL_PLAYLIST, playlist(segments, target_seconds=target, ended=ended))

    def set_hidden(self, room_id: str, hidden: bool) -> None:
        marker = self.prepare(room_id) / HIDDEN
        if hidden:
            marker.touch()
        else:
            marker.unlink(missing_ok=True)

    def delete(self, room_id: str) -> None:
        shutil.rmtree(self.room_dir(room_id), ignore_errors=True)


def _replace(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)
