"""``live/hls_files.py`` on real files: what it keeps in memory, for how long, and what it forgets."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from live.hls_files import HlsFiles
from live.hls_rules import Segment
from live.hls_store import HlsStore

pytestmark = pytest.mark.integration


def recording(store: HlsStore, room_id: str, count: int, *, size: int = 1000) -> list[Segment]:
    segments: list[Segment] = []
    for seq in range(1, count + 1):
        segment = Segment(seq=seq, duration=2.0, start_ms=1_765_000_000_000 + seq * 2000, bytes=size)
        (store.prepare(room_id) / segment.name).write_bytes(bytes([seq]) * size)
        segments.append(segment)
        store.add(room_id, segment, segments)
    return segments


async def test_segments_are_kept_up_to_the_budget_and_read_once(tmp_path: Path) -> None:
    store = HlsStore(tmp_path / "hls")
    files = HlsFiles(store, cache_bytes=2800)  # a segment of up to a quarter of it is kept
    segments = recording(store, "rm_a", 5, size=700)
    for segment in segments:
        assert await files.segment("rm_a", segment.name) == bytes([segment.seq]) * 700
    assert files.held_bytes == 2800  # the four newest; the oldest left first
    # A held segment is answered from memory: its file may be gone (a replay deleted a moment ago).
    (store.room_dir("rm_a") / segments[-1].name).unlink()
    assert await files.segment("rm_a", segments[-1].name) == bytes([5]) * 700
    (store.room_dir("rm_a") / segments[0].name).unlink()
    with pytest.raises(FileNotFoundError):
        await files.segment("rm_a", segments[0].name)  # not held: read, and gone


async def test_a_playlist_is_read_again_after_half_a_second(tmp_path: Path) -> None:
    store = HlsStore(tmp_path / "hls", window=3)
    files = HlsFiles(store, cache_bytes=1 << 20, fresh_seconds=0.3)
    segments = recording(store, "rm_a", 2)
    first = await files.playlist("rm_a", "live.m3u8")
    segments += recording(store, "rm_b", 0)
    store.add(
        "rm_a", Segment(seq=3, duration=2.0, start_ms=1_765_000_006_000), [*segments, Segment(3, 2.0, 1)]
    )
    assert await files.playlist("rm_a", "live.m3u8") == first  # one read serves everyone for a moment
    await asyncio.sleep(0.35)
    assert b"seg-000003.ts" in await files.playlist("rm_a", "live.m3u8")


async def test_a_room_that_is_hidden_or_deleted_is_seen_so_and_forgotten(tmp_path: Path) -> None:
    store = HlsStore(tmp_path / "hls")
    files = HlsFiles(store, cache_bytes=1 << 20, fresh_seconds=0.2)
    segments = recording(store, "rm_a", 2)
    store.finish("rm_a")
    state = await files.room("rm_a")
    assert (state.exists, state.ended, state.hidden) == (True, True, False)
    await files.segment("rm_a", segments[0].name)
    store.set_hidden("rm_a", True)
    await asyncio.sleep(0.25)
    assert (await files.room("rm_a")).hidden
    store.delete("rm_a")
    await asyncio.sleep(0.25)
    assert not (await files.room("rm_a")).exists
    assert files.held_bytes == 0  # a deleted room's segments leave memory
    assert not (await files.room("rm_never")).exists
