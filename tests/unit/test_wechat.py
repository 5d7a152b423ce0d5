"""WeChat's pure parts: the JS-SDK signature (checked against the worked example of WeChat's own
documentation, JS-SDK 附录1), the paths a sign-in may return to (no open redirect), and the signed
``state`` (altered, foreign, old or from another browser: refused)."""

from __future__ import annotations

import time

import pytest
from itsdangerous import TimestampSigner, URLSafeTimedSerializer

from identity.errors import InvalidState
from identity.wechat import STATE_SALT, SignInState, StateSigner, js_sdk_signature, new_nonce, safe_next


def test_the_js_sdk_signature_is_wechats_worked_example() -> None:
    signature = js_sdk_signature(
        ticket="sM4AOVdWfPE4DxkXGEs8VMCPGGVi4C3VM0P37wVUCFvkVAy_90u5h9nbSlYy3-Sl-HhTdfl2fzFy1AOcHKP7qg",
        nonce="Wm3WZYTPz0wzccnW",
        timestamp=1414587457,
        url="http://mp.weixin.qq.com?params=value",
    )
    assert signature == "0f9de62fce790f9a083d5c99e95740ceb90c27ed"


def test_the_signed_url_leaves_out_the_fragment() -> None:
    one = js_sdk_signature(ticket="t", nonce="n", timestamp=1, url="https://shop.example/r/abc?invite=x")
    assert one == js_sdk_signature(
        ticket="t", nonce="n", timestamp=1, url="https://shop.example/r/abc?invite=x#chat"
    )
    assert one != js_sdk_signature(
        ticket="t", nonce="n", timestamp=2, url="https://shop.example/r/abc?invite=x"
    )


def test_nonces_are_fresh_letters_and_digits() -> None:
    nonces = {new_nonce() for _ in range(100)}
    assert len(nonces) == 100 and all(n.isalnum() and len(n) == 16 for n in nonces)


@pytest.mark.parametrize("path", ["/", "/r/room_1", "/r/room_1?invite=abc&ref=X1", "/r/a#chat", "/host"])
def test_a_path_of_this_site_is_a_place_to_return_to(path: str) -> None:
    assert safe_next(path)


@pytest.mark.parametrize(
    "path",
    [
        "//evil.com",
        "//evil.com/r/x",
        "/\\evil.com",
        "/r/x\\..\\",
        "https://evil.com",
        "evil.com",
        "",
        "/r/ x",
        "/r/\nx",
        "/" + "a" * 600,
        "/r/房间",
    ],
)
def test_anything_else_is_not(path: str) -> None:
    assert not safe_next(path)


KEYS = ["current-key", "previous-key"]


def test_a_state_reads_back_with_its_cookie() -> None:
    signer = StateSigner(KEYS)
    state = SignInState("room_1", "/r/room_1?invite=x", "n0nce")
    assert signer.verify(signer.sign(state), nonce_cookie="n0nce") == state
    # signed with the previous key (a rotation in between): still good
    old = StateSigner(["previous-key"]).sign(state)
    assert signer.verify(old, nonce_cookie="n0nce") == state


def _refused(token: str, cookie: str | None = "n0nce") -> str:
    with pytest.raises(InvalidState) as caught:
        StateSigner(KEYS).verify(token, nonce_cookie=cookie)
    assert caught.value.code == "invalid_state"
    return caught.value.detail


def test_a_state_from_another_browser_altered_foreign_or_old_is_refused() -> None:
    state = SignInState("room_1", "/r/room_1", "n0nce")
    token = StateSigner(KEYS).sign(state)
    assert "another browser" in _refused(token, cookie=None)
    assert "another browser" in _refused(token, cookie="other")
    assert "not made here" in _refused(token[:-2] + ("AA" if not token.endswith("AA") else "BB"))
    assert "not made here" in _refused(StateSigner(["someone-elses-key"]).sign(state))

    class Old(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(time.time()) - 11 * 60

    old = URLSafeTimedSerializer("current-key", salt=STATE_SALT, signer=Old).dumps(
        ["room_1", "/r/room_1", "n0nce"]
    )
    assert "too long" in _refused(old)
    # signed here, but with a path to another site in it
    evil = URLSafeTimedSerializer("current-key", salt=STATE_SALT).dumps(["room_1", "//evil.com", "n0nce"])
    assert "not valid" in _refused(evil)
