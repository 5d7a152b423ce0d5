"""What a client may send (realtime/client_frames.py), pure: the chat bucket of one socket, the refusals that
close it, and the error frame a refused message gets."""

from __future__ import annotations

import json

import pytest

from realtime.client_frames import Chat, ChatLimiter, rate_limited_frame
from realtime.errors import CloseCode, RealtimeError


def test_the_bucket_takes_a_burst_then_its_rate_and_says_how_long_to_wait() -> None:
    bucket = ChatLimiter(0.0, burst=3, per_second=0.5)
    assert [bucket.take(0.0) for _ in range(3)] == [0, 0, 0]
    assert bucket.take(0.0) == 2  # one message refills in 2 s
    assert bucket.take(1.0) == 1  # half of it refilled
    assert bucket.take(2.0) == 0
    assert bucket.take(2.0) == 2
    assert [bucket.take(100.0) for _ in range(4)] == [0, 0, 0, 2]  # never more than the burst


def test_three_refusals_in_a_row_close_with_4429_and_a_message_that_goes_out_resets_them() -> None:
    chat = Chat(ChatLimiter(0.0, burst=1, per_second=1.0), "viewer", "Ann", buyer="cus_1")
    chat.refused()
    chat.refused()
    chat.went_out()
    chat.refused()
    chat.refused()
    with pytest.raises(RealtimeError) as closed:
        chat.refused()
    assert closed.value.code == CloseCode.RATE_LIMITED == 4429


def test_the_refusal_frame_says_when_to_try_again() -> None:
    frame = rate_limited_frame(7)
    assert frame[0] == 0x81  # one final text frame
    assert json.loads(frame[2:]) == {"type": "error", "error": "rate_limited", "retry_after": 7}
