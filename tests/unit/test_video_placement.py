"""Which worker serves a video request (``live/video_rules.py``): the owner record, the forward token, the
placement decision, and the settings that ``livecart serve --workers N`` hands each worker."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from base.settings import Settings
from live.errors import ForgedForward
from live.video_rules import (
    Owner,
    Serve,
    Sibling,
    forward_token,
    is_forwarded,
    must_find_owner,
    place,
)
from livecart.edge import status_of

ME = "http://127.0.0.1:40001"
OTHER = "http://127.0.0.1:40002"


def test_only_a_client_request_to_a_worker_of_several_without_the_ingest_asks_for_the_owner() -> None:
    assert must_find_owner(clustered=True, forwarded=False, held_here=False)
    assert not must_find_owner(clustered=False, forwarded=False, held_here=False)  # one process: as before
    assert not must_find_owner(clustered=True, forwarded=True, held_here=False)  # never forwarded twice
    assert not must_find_owner(clustered=True, forwarded=False, held_here=True)  # this one is the owner
    assert not must_find_owner(clustered=True, forwarded=True, held_here=True)


def test_a_request_goes_to_the_sibling_that_holds_the_ingest_and_is_served_here_otherwise() -> None:
    assert place(Owner(OTHER, "whip_1"), me=ME) == Sibling(OTHER)
    assert place(Owner(ME, "whip_1"), me=ME) == Serve()  # a record of this worker's (an ingest just gone)
    assert place(None, me=ME) == Serve()  # nobody holds the room: WHIP publishes here, WHEP finds nothing


def test_the_owner_record_is_exact_text_and_anything_else_reads_as_no_owner() -> None:
    owner = Owner(OTHER, "whip_1")
    assert owner.encode() == '{"url":"http://127.0.0.1:40002","ingest":"whip_1"}'
    assert Owner.decode(owner.encode()) == owner
    assert Owner.decode(owner.encode().encode()) == owner  # as redis-py returns it
    for damaged in [b"", b"not json", b"[]", b'{"url": "x"}', b"\xff"]:
        assert Owner.decode(damaged) is None


def test_the_forward_token_is_the_deployments_own() -> None:
    token = forward_token("secret", "group1")
    assert token == forward_token("secret", "group1")
    assert token != forward_token("secret", "group2")  # another serve sharing the Redis
    assert token != forward_token("other secret", "group1")
    assert "secret" not in token and len(token) == 64


def test_a_claim_to_be_forwarded_must_carry_the_token() -> None:
    token = forward_token("secret", "group1")
    assert is_forwarded(None, token=token) is False
    assert is_forwarded(None, token=None) is False
    assert is_forwarded(token, token=token) is True
    for forged in [
        "",
        "yes",
        "1",
        token[:-1],
        token.upper(),
        forward_token("secret", "group2"),
        "\u00e9t\u00e9",
    ]:
        with pytest.raises(ForgedForward) as caught:
            is_forwarded(forged, token=token)
        assert (status_of(type(caught.value)), caught.value.code) == (403, "forged_forward")
    with pytest.raises(ForgedForward):
        is_forwarded(token, token=None)  # a single worker forwards nothing, and takes nothing as forwarded


def test_the_worker_address_and_group_come_together() -> None:
    both = Settings(worker_url=ME, worker_group="g")
    assert (both.worker_url, both.worker_group) == (ME, "g")
    assert Settings().worker_url is None and Settings().video_forward_timeout_seconds == 10.0
    with pytest.raises(ValidationError, match="set together"):
        Settings(worker_url=ME)
    with pytest.raises(ValidationError, match="set together"):
        Settings(worker_group="g")
    with pytest.raises(ValidationError):
        Settings(video_forward_timeout_seconds=0)
