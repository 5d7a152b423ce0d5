"""Signatures, tested without an event loop or any I/O: payment webhook signatures
(shop/payments/signing.py) and bearer tokens (live/access.py TokenSigner)."""

from __future__ import annotations

import hashlib
import hmac
import time

import pytest

from base.settings import Settings
from identity.errors import InvalidToken
from identity.tokens import CustomerIdentity, HostIdentity, TokenSigner, ViewerIdentity
from livecart.edge import status_of
from shop.payments.signing import HEADER, SignatureError, sign, verify

SECRET = b"whsec-test"
BODY = b'{"id":"evt_1","type":"payment.succeeded","created":1800000000,"data":{"payment_id":"pay_1"}}'
T = 1_800_000_000
TOL = 300

# -- webhook signatures --------------------------------------------------------------------------------


def mac_of(body: bytes, t: int, secret: bytes = SECRET) -> str:
    return hmac.new(secret, f"{t}.".encode() + body, hashlib.sha256).hexdigest()


def test_header_name() -> None:
    assert HEADER == "LiveCart-Signature"


def test_sign_format_is_stripe_like() -> None:
    assert sign(BODY, secret=SECRET, timestamp=T) == f"t={T},v1={mac_of(BODY, T)}"


def test_round_trip() -> None:
    verify(BODY, sign(BODY, secret=SECRET, timestamp=T), secret=SECRET, now=T, tolerance=TOL)


def test_empty_body_round_trip() -> None:
    verify(b"", sign(b"", secret=SECRET, timestamp=T), secret=SECRET, now=T, tolerance=TOL)


@pytest.mark.parametrize("offset", [0, 1, TOL - 1, TOL, -1, -(TOL - 1), -TOL])
def test_tolerance_is_inclusive_both_ways(offset: int) -> None:
    """Signed ``offset`` seconds before now (positive) or after now (negative): still accepted."""
    verify(BODY, sign(BODY, secret=SECRET, timestamp=T - offset), secret=SECRET, now=T, tolerance=TOL)


@pytest.mark.parametrize(
    "offset",
    [TOL + 1, -(TOL + 1), 86_400, -86_400, T],  # T: a timestamp of 0
    ids=["301s-old", "301s-in-the-future", "a-day-old", "a-day-ahead", "epoch"],
)
def test_outside_the_tolerance_is_refused(offset: int) -> None:
    header = sign(BODY, secret=SECRET, timestamp=T - offset)
    with pytest.raises(SignatureError, match="tolerance"):
        verify(BODY, header, secret=SECRET, now=T, tolerance=TOL)


def test_wrong_secret_is_refused() -> None:
    with pytest.raises(SignatureError, match="does not match"):
        verify(BODY, sign(BODY, secret=b"other", timestamp=T), secret=SECRET, now=T, tolerance=TOL)


def test_tampered_body_is_refused() -> None:
    header = sign(BODY, secret=SECRET, timestamp=T)
    for tampered in (BODY.replace(b"succeeded", b"failed"), BODY + b" ", BODY[:-1], b""):
        with pytest.raises(SignatureError):
            verify(tampered, header, secret=SECRET, now=T, tolerance=TOL)


def test_timestamp_is_signed_too() -> None:
    """Moving ``t`` (to dodge the window) breaks the MAC."""
    with pytest.raises(SignatureError, match="does not match"):
        verify(BODY, f"t={T + 10},v1={mac_of(BODY, T)}", secret=SECRET, now=T, tolerance=TOL)


def test_any_of_several_v1_values_may_match() -> None:
    good, bad = mac_of(BODY, T), mac_of(BODY, T, b"old-secret")
    for header in (f"t={T},v1={bad},v1={good}", f"t={T},v1={good},v1={bad}", f"t={T}, v1={bad} , v1={good}"):
        verify(BODY, header, secret=SECRET, now=T, tolerance=TOL)
    with pytest.raises(SignatureError):
        verify(BODY, f"t={T},v1={bad},v1={bad[::-1]}", secret=SECRET, now=T, tolerance=TOL)


def test_order_of_fields_does_not_matter() -> None:
    verify(BODY, f"v1={mac_of(BODY, T)},t={T}", secret=SECRET, now=T, tolerance=TOL)


def test_other_schemes_are_ignored() -> None:
    good = mac_of(BODY, T)
    with pytest.raises(SignatureError):
        verify(BODY, f"t={T},v0={good}", secret=SECRET, now=T, tolerance=TOL)
    verify(BODY, f"t={T},v0=whatever,v1={good}", secret=SECRET, now=T, tolerance=TOL)


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "nonsense",
        ",,,",
        "t=",
        f"t={T}",  # no v1
        f"t={T},v1=",  # empty v1
        f"v1={mac_of(BODY, T)}",  # no t
        f"t=abc,v1={mac_of(BODY, T)}",
        f"t=1.8e9,v1={mac_of(BODY, T)}",
        f"t={T}.5,v1={mac_of(BODY, T)}",
        f"t={T};v1={mac_of(BODY, T)}",  # wrong separator
        f"T={T},V1={mac_of(BODY, T)}",  # names are case-sensitive
        f"t={T},v1={mac_of(BODY, T)[:-1]}",  # truncated MAC
        f"t={T},v1={mac_of(BODY, T)}00",  # extended MAC
        f"t={T},v1=ü{mac_of(BODY, T)[1:]}",  # non-ASCII in the MAC
    ],
    ids=lambda h: repr(h)[:40] if h is None or h.isascii() else "non-ascii-mac",
)
def test_malformed_headers_are_refused(header: str | None) -> None:
    with pytest.raises(SignatureError):
        verify(BODY, header, secret=SECRET, now=T, tolerance=TOL)


def test_first_timestamp_wins() -> None:
    """A second ``t`` appended by an attacker does not replace the signed one."""
    header = f"t={T},v1={mac_of(BODY, T)},t={T + 999}"
    verify(BODY, header, secret=SECRET, now=T, tolerance=TOL)
    with pytest.raises(SignatureError):
        verify(BODY, f"t={T - 999},t={T},v1={mac_of(BODY, T)}", secret=SECRET, now=T, tolerance=TOL)


def test_signature_error_is_a_value_error() -> None:
    assert issubclass(SignatureError, ValueError)


# -- bearer tokens (TokenSigner) -----------------------------------------------------------------------


def test_host_token_round_trip() -> None:
    signer = TokenSigner(["k-new"])
    token = signer.session_token("ses_1", "hst_1")
    assert token.startswith("s.")
    assert signer.verify(token) == HostIdentity("hst_1", "ses_1")


@pytest.mark.parametrize("referrer", [None, "vw_promoter"])
def test_viewer_token_round_trip(referrer: str | None) -> None:
    signer = TokenSigner(["k-new"])
    token = signer.viewer_token("vw_1", "rm_1", referrer)
    assert token.startswith("v.")
    assert signer.verify(token) == ViewerIdentity("vw_1", "rm_1", referrer)


def _flips(token: str) -> list[tuple[int, str]]:
    """Every token that differs from ``token`` by one bit in one ASCII character (after the kind prefix)."""
    out = []
    for i in range(2, len(token)):
        for bit in range(7):
            out.append((i, token[:i] + chr(ord(token[i]) ^ (1 << bit)) + token[i + 1 :]))
    return out


@pytest.mark.parametrize("kind", ["host", "viewer"])
def test_one_bit_flip_is_rejected(kind: str) -> None:
    signer = TokenSigner(["k-new"])
    token = (
        signer.session_token("ses_1", "hst_1")
        if kind == "host"
        else signer.viewer_token("vw_1", "rm_1", None)
    )
    identity = signer.verify(token)
    accepted = []
    for i, flipped in _flips(token):
        try:
            who = signer.verify(flipped)
        except InvalidToken:
            continue
        accepted.append(i)
        # base64 leaves the low bits of the last character of the MAC unused: such a flip changes the text,
        # never the signed content, so it can only ever name the same identity.
        assert who == identity and i == len(token) - 1, (i, flipped)
    assert len(accepted) <= 3  # at most the unused bits of the last character


def test_one_flip_in_payload_and_mac_middle_rejected() -> None:
    signer = TokenSigner(["k-new"])
    token = signer.session_token("ses_1", "hst_1")
    payload_i = 3
    mac_i = len(token) - 10
    for i in (payload_i, mac_i):
        flipped = token[:i] + ("A" if token[i] != "A" else "B") + token[i + 1 :]
        with pytest.raises(InvalidToken):
            signer.verify(flipped)


def test_wrong_purpose_is_rejected() -> None:
    """One salt per purpose: a host token's body presented as a viewer token (and back) does not verify."""
    signer = TokenSigner(["k-new"])
    host = signer.session_token("ses_1", "hst_1")
    viewer = signer.viewer_token("vw_1", "rm_1", None)
    customer = signer.customer_token("cus_1", "hst_1")
    for token in (
        "v." + host[2:],
        "s." + viewer[2:],
        "c." + host[2:],
        "s." + customer[2:],
        "v." + customer[2:],
    ):
        with pytest.raises(InvalidToken):
            signer.verify(token)


@pytest.mark.parametrize(
    "token",
    ["", ".", "h", "h.", "v.", "x.abc", "h.a.b", "v.a.b.c", "garbage", "h." + "A" * 5000, "h.é.ü", "\x00"],
    ids=lambda t: repr(t)[:20],
)
def test_malformed_tokens_are_invalid_tokens(token: str) -> None:
    with pytest.raises(InvalidToken) as raised:
        TokenSigner(["k-new"]).verify(token)
    assert status_of(type(raised.value)) == 401


def test_unknown_kind_with_a_valid_body_is_rejected() -> None:
    signer = TokenSigner(["k-new"])
    host = signer.session_token("ses_1", "hst_1")
    for kind in ("H", "x", "hv", ""):
        with pytest.raises(InvalidToken):
            signer.verify(kind + host[1:])


def test_token_of_another_server_is_rejected() -> None:
    token = TokenSigner(["someone-else"]).session_token("ses_1", "hst_1")
    with pytest.raises(InvalidToken):
        TokenSigner(["k-new"]).verify(token)


def test_key_rotation() -> None:
    """The first key signs; every listed key verifies; a key removed from the list stops verifying."""
    old_host = TokenSigner(["k-old"]).session_token("ses_1", "hst_1")
    old_viewer = TokenSigner(["k-old"]).viewer_token("vw_1", "rm_1", "vw_p")
    rotated = TokenSigner(["k-new", "k-old"])
    assert rotated.verify(old_host) == HostIdentity("hst_1", "ses_1")
    assert rotated.verify(old_viewer) == ViewerIdentity("vw_1", "rm_1", "vw_p")
    retired = TokenSigner(["k-new"])
    for token in (old_host, old_viewer):
        with pytest.raises(InvalidToken):
            retired.verify(token)
    # New tokens are signed with the newest key: they survive the old key's removal, not the new key's.
    fresh = rotated.session_token("ses_2", "hst_2")
    assert retired.verify(fresh) == HostIdentity("hst_2", "ses_2")
    with pytest.raises(InvalidToken):
        TokenSigner(["k-old"]).verify(fresh)


def test_settings_list_signing_keys_newest_first() -> None:
    settings = Settings(secret_key="k-new", previous_secret_keys=["k-old", "k-older"])
    assert settings.signing_keys == ["k-new", "k-old", "k-older"]
    old = TokenSigner(["k-older"]).session_token("ses_1", "hst_1")
    assert TokenSigner(settings.signing_keys).verify(old) == HostIdentity("hst_1", "ses_1")


def test_expired_viewer_token(monkeypatch: pytest.MonkeyPatch) -> None:
    """Viewer tokens carry their issue time (itsdangerous reads ``time.time``); a host session token's
    signature does not expire (its session in SQL does, sliding: ``test_host_sessions.py``)."""
    signer = TokenSigner(["k-new"], viewer_max_age=60)
    now = time.time()
    monkeypatch.setattr(time, "time", lambda: now - 61)
    token = signer.viewer_token("vw_1", "rm_1", None)
    monkeypatch.setattr(time, "time", lambda: now)
    with pytest.raises(InvalidToken) as raised:
        signer.verify(token)
    assert raised.value.code == "token_expired" and status_of(type(raised.value)) == 401
    # Session tokens' signatures do not expire.
    monkeypatch.setattr(time, "time", lambda: now - 10 * 365 * 86_400)
    host = signer.session_token("ses_1", "hst_1")
    monkeypatch.setattr(time, "time", lambda: now)
    assert signer.verify(host) == HostIdentity("hst_1", "ses_1")


def test_customer_token_round_trip_and_expiry(monkeypatch: pytest.MonkeyPatch) -> None:
    signer = TokenSigner(["k-new"], customer_max_age=3600)
    token = signer.customer_token("cus_1", "hst_1")
    assert token.startswith("c.")
    assert signer.verify(token) == CustomerIdentity("cus_1", "hst_1")
    now = time.time()
    monkeypatch.setattr(time, "time", lambda: now - 3601)
    old = signer.customer_token("cus_1", "hst_1")
    monkeypatch.setattr(time, "time", lambda: now)
    with pytest.raises(InvalidToken) as raised:
        signer.verify(old)
    assert raised.value.code == "token_expired"


def test_viewer_token_names_its_customer_and_v1_tokens_still_verify() -> None:
    signer = TokenSigner(["k-new"])
    token = signer.viewer_token("vw_1", "rm_1", "vw_p", "cus_1")
    assert signer.verify(token) == ViewerIdentity("vw_1", "rm_1", "vw_p", "cus_1")
    v1 = "v." + str(signer._viewer.dumps(["vw_2", "rm_1", None]))  # as v1 signed them: no customer
    assert signer.verify(v1) == ViewerIdentity("vw_2", "rm_1", None, None)


def test_v1_host_tokens_are_retired_and_forged_ones_invalid() -> None:
    """v1 host tokens never expired and could not be revoked: they no longer sign in (401 token_expired,
    telling the host to sign in again); a forged one is plainly invalid."""
    signer = TokenSigner(["k-new"])
    legacy = signer.legacy_host_token("hst_1")
    with pytest.raises(InvalidToken) as raised:
        signer.verify(legacy)
    assert raised.value.code == "token_expired" and "sign in again" in raised.value.detail
    with pytest.raises(InvalidToken) as forged:
        signer.verify(TokenSigner(["dev-insecure-secret-change-me"]).legacy_host_token("hst_1"))
    assert forged.value.code == "unauthorized"
