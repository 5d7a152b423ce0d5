"""Per-invitee invite tokens and the rules that refuse them, without an event loop or any I/O:
``TokenSigner.invite_token`` / ``verify_invite`` (live/access.py), ``refusal`` (live/invites.py) and the
request body (live/schemas.py)."""

from __future__ import annotations

from typing import Any

import pytest
from itsdangerous import URLSafeSerializer
from pydantic import ValidationError

from base.ids import random_code
from base.settings import Settings
from identity.errors import InvalidInvite, InvalidToken
from identity.tokens import INVITE_SALT, InviteClaim, TokenSigner, ViewerIdentity, is_invite_token
from live.invites import refusal
from live.models import Invite
from live.schemas import INVITE_DEFAULT_SECONDS, INVITE_MAX_SECONDS, InviteIn
from livecart.app import create_app
from livecart.edge import status_of
from tests.unit.test_signing import _flips

NOW = 1_800_000_000_000
LATER = NOW + 3_600_000
ROOM = "rm_01hzzzzzzzzzzzzzzzzzzzzzzz"
OTHER_ROOM = "rm_01hyyyyyyyyyyyyyyyyyyyyyyy"
INV = "inv_01hxxxxxxxxxxxxxxxxxxxxxxx"


def refused(signer: TokenSigner, token: str, *, room_id: str = ROOM, now_ms: int = NOW) -> str:
    """The detail of the refusal; fails the test when the token is accepted."""
    with pytest.raises(InvalidInvite) as raised:
        signer.verify_invite(token, room_id=room_id, now_ms=now_ms)
    assert status_of(type(raised.value)) == 403 and raised.value.code == "invalid_invite"
    return raised.value.detail


# -- the token -----------------------------------------------------------------------------------------


def test_round_trip() -> None:
    signer = TokenSigner(["k-new"])
    token = signer.invite_token(INV, ROOM, expires_ms=LATER)
    assert token.startswith("i.") and is_invite_token(token)
    assert len(token) <= 200  # fits the ``invite`` field of the join body
    assert signer.verify_invite(token, room_id=ROOM, now_ms=NOW) == InviteClaim(INV, ROOM, LATER)
    assert signer.invite_token(INV, ROOM, expires_ms=LATER) == token  # the host's list shows the same link


def test_expiry_is_exact_to_the_millisecond() -> None:
    signer = TokenSigner(["k-new"])
    token = signer.invite_token(INV, ROOM, expires_ms=LATER)
    assert signer.verify_invite(token, room_id=ROOM, now_ms=LATER - 1).expires_ms == LATER
    for now in (LATER, LATER + 1, LATER + 86_400_000):
        assert "expired" in refused(signer, token, now_ms=now)


def test_expiry_is_signed() -> None:
    """Moving the expiry in the payload (to extend the invite) breaks the signature."""
    signer = TokenSigner(["k-new"])
    short = signer.invite_token(INV, ROOM, expires_ms=NOW + 1)
    longer = signer.invite_token(INV, ROOM, expires_ms=NOW + 10**9)
    payload_short, _, mac_short = short[2:].rpartition(".")
    payload_long, _, _ = longer[2:].rpartition(".")
    assert payload_short != payload_long
    assert "altered" in refused(signer, f"i.{payload_long}.{mac_short}", now_ms=NOW + 10)


def test_another_room() -> None:
    signer = TokenSigner(["k-new"])
    token = signer.invite_token(INV, OTHER_ROOM, expires_ms=LATER)
    assert "another room" in refused(signer, token)


def test_one_bit_flip_is_refused() -> None:
    signer = TokenSigner(["k-new"])
    token = signer.invite_token(INV, ROOM, expires_ms=LATER)
    claim = signer.verify_invite(token, room_id=ROOM, now_ms=NOW)
    accepted = []
    for i, flipped in _flips(token):
        try:
            got = signer.verify_invite(flipped, room_id=ROOM, now_ms=NOW)
        except InvalidInvite:
            continue
        accepted.append(i)
        # Only the unused low bits of the MAC's last base64 character: same signed content, same claim.
        assert got == claim and i == len(token) - 1, (i, flipped)
    assert len(accepted) <= 3


def test_rotated_key_still_verifies_and_a_retired_or_unknown_key_does_not() -> None:
    old = TokenSigner(["k-old"]).invite_token(INV, ROOM, expires_ms=LATER)
    rotated = TokenSigner(["k-new", "k-old"])
    assert rotated.verify_invite(old, room_id=ROOM, now_ms=NOW) == InviteClaim(INV, ROOM, LATER)
    fresh = rotated.invite_token(INV, ROOM, expires_ms=LATER)
    assert fresh != old  # signed with the newest key
    assert TokenSigner(["k-new"]).verify_invite(fresh, room_id=ROOM, now_ms=NOW).invite_id == INV
    assert "altered" in refused(TokenSigner(["k-new"]), old)  # the old key was retired
    assert "altered" in refused(
        TokenSigner(["k-new"]), TokenSigner(["someone-else"]).invite_token(INV, ROOM, expires_ms=LATER)
    )


def test_settings_keys_sign_and_rotate() -> None:
    before = TokenSigner(Settings(secret_key="k-1").signing_keys).invite_token(INV, ROOM, expires_ms=LATER)
    after = TokenSigner(Settings(secret_key="k-2", previous_secret_keys=["k-1"]).signing_keys)
    assert after.verify_invite(before, room_id=ROOM, now_ms=NOW).room_id == ROOM


# -- purposes ------------------------------------------------------------------------------------------


def test_host_and_viewer_tokens_are_not_invites() -> None:
    signer = TokenSigner(["k-new"])
    host = signer.session_token("ses_1", "hst_1")
    viewer = signer.viewer_token("vw_1", ROOM, None)
    for token in (host, viewer):
        assert not is_invite_token(token)
        assert "not an invite" in refused(signer, token)
    for body in (host[2:], viewer[2:]):  # their signed bodies under the invite prefix
        assert "altered" in refused(signer, "i." + body)


def test_an_invite_is_never_a_bearer_token() -> None:
    signer = TokenSigner(["k-new"])
    token = signer.invite_token(INV, ROOM, expires_ms=LATER)
    for candidate in (token, "h." + token[2:], "v." + token[2:]):
        with pytest.raises(InvalidToken) as raised:
            signer.verify(candidate)
        assert status_of(type(raised.value)) == 401


def test_a_viewer_token_shaped_like_an_invite_is_still_only_a_viewer_token() -> None:
    """The salts differ, so even a viewer token whose payload has an invite's shape is not an invite."""
    signer = TokenSigner(["k-new"])
    token = signer.viewer_token(INV, ROOM, None)
    assert signer.verify(token) == ViewerIdentity(INV, ROOM, None)
    assert "altered" in refused(signer, "i." + token[2:])


@pytest.mark.parametrize(
    "payload",
    [
        [INV, ROOM],
        [INV, ROOM, LATER, "x"],
        [1, ROOM, LATER],
        [INV, 2, LATER],
        [INV, ROOM, "tomorrow"],
        [INV, ROOM, True],
        [INV, ROOM, float(LATER)],
        {"id": INV},
        INV,
        None,
    ],
    ids=repr,
)
def test_a_signed_body_of_the_wrong_shape_is_refused(payload: Any) -> None:
    """Signed with the right key and salt (as a bug elsewhere might), but not an invite: refused."""
    forged = "i." + str(URLSafeSerializer(["k-new"], salt=INVITE_SALT).dumps(payload))
    assert "not valid" in refused(TokenSigner(["k-new"]), forged)


@pytest.mark.parametrize("token", ["", "i.", "i.x", "i.a.b", "i..", "i.é.ü", "i." + "A" * 190, "\x00"])
def test_garbage_is_refused(token: str) -> None:
    refused(TokenSigner(["k-new"]), token)


def test_room_codes_and_share_codes_are_never_taken_for_invite_tokens() -> None:
    assert not any(is_invite_token(random_code(n)) for n in (10, 22) for _ in range(200))


# -- what SQL says (live/invites.py refusal) --------------------------------------------------------------


def invite(**overrides: Any) -> Invite:
    values: dict[str, Any] = {
        "id": INV, "room_id": ROOM, "label": None, "max_uses": 3, "uses": 0, "revoked": False,
        "expires_ms": LATER, "created_ms": NOW,
    }  # fmt: skip
    values.update(overrides)
    return Invite(**values)


CLAIM = InviteClaim(INV, ROOM, LATER)


def test_refusal_reasons() -> None:
    assert refusal(invite(), CLAIM, now_ms=NOW) == ""
    assert refusal(invite(uses=2), CLAIM, now_ms=NOW) == ""
    assert "3 of 3" in refusal(invite(uses=3), CLAIM, now_ms=NOW)
    assert refusal(invite(uses=3), CLAIM, now_ms=NOW, count_uses=False) == ""  # a returning viewer
    assert "revoked" in refusal(invite(revoked=True), CLAIM, now_ms=NOW)
    assert "revoked" in refusal(invite(revoked=True), CLAIM, now_ms=NOW, count_uses=False)
    assert "expired" in refusal(invite(), CLAIM, now_ms=LATER)
    assert "not valid" in refusal(None, CLAIM, now_ms=NOW)
    assert "not valid" in refusal(invite(room_id=OTHER_ROOM), CLAIM, now_ms=NOW)


# -- the request body ----------------------------------------------------------------------------------


def test_invite_body_defaults() -> None:
    body = InviteIn.model_validate({})
    assert (body.label, body.max_uses, body.expires_in_seconds) == (None, 1, INVITE_DEFAULT_SECONDS)
    assert InviteIn.model_validate({"label": "  Aunt Li ", "max_uses": 5}).label == "Aunt Li"


@pytest.mark.parametrize(
    "body",
    [
        {"max_uses": 0},
        {"max_uses": -1},
        {"max_uses": "3"},
        {"max_uses": True},
        {"max_uses": 1.5},
        {"max_uses": 10**9},
        {"expires_in_seconds": 0},
        {"expires_in_seconds": -5},
        {"expires_in_seconds": INVITE_MAX_SECONDS + 1},
        {"expires_in_seconds": "60"},
        {"label": ""},
        {"label": "x" * 101},
        {"label": "a\x00b"},
        {"label": 7},
    ],
    ids=repr,
)
def test_invite_body_refuses(body: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        InviteIn.model_validate(body)


def test_openapi_documents_the_invite_routes(tmp_path: Any) -> None:
    app = create_app(Settings(data_dir=tmp_path, secret_key="k"))
    paths = app.state.openapi["paths"]
    create = paths["/api/rooms/{room}/invites"]["post"]
    assert create["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/InviteIn")
    assert "201" in create["responses"] and "403" in create["responses"]
    assert paths["/api/rooms/{room}/invites"]["get"]["responses"]["200"]["content"]
    revoke = paths["/api/rooms/{room}/invites/{invite}"]["delete"]
    assert {p["name"] for p in revoke["parameters"]} == {"room", "invite"}
    assert "404" in revoke["responses"]
    assert set(app.state.openapi["components"]["schemas"]["InviteOut"]["properties"]) >= {
        "id", "room_id", "label", "token", "url", "max_uses", "uses", "expires_at", "revoked",
    }  # fmt: skip
