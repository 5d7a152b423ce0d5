"""Secure defaults (SPEC §7, §13; issue 11): in prod a secret key under 32 bytes, or one this repository
publishes (also among the previous keys), refuses to start; the dev SMS provider is refused; the Docker image
runs prod unless told otherwise, so a container started without compose is never a dev server whose public
key forges any host's token."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from base.settings import DEV_SECRET_KEY, DEV_SECRET_KEYS, MIN_PROD_SECRET_BYTES, Settings

ROOT = Path(__file__).resolve().parents[2]
GOOD = "k" * MIN_PROD_SECRET_BYTES


@pytest.mark.parametrize(
    "key",
    [DEV_SECRET_KEY, *sorted(DEV_SECRET_KEYS), "x", "short-but-private", "k" * (MIN_PROD_SECRET_BYTES - 1)],
)
def test_prod_refuses_dev_and_short_secret_keys(key: str) -> None:
    with pytest.raises(ValidationError, match="LIVECART_SECRET_KEY"):
        Settings(env="prod", secret_key=key)
    Settings(env="dev", secret_key=key)  # dev takes anything: it is a developer's own machine


@pytest.mark.parametrize("old", [DEV_SECRET_KEY, "x"])
def test_prod_refuses_them_among_previous_keys_too(old: str) -> None:
    with pytest.raises(ValidationError, match="LIVECART_PREVIOUS_SECRET_KEYS"):
        Settings(env="prod", secret_key=GOOD, previous_secret_keys=[old])


def test_a_private_key_of_32_bytes_starts_and_prod_keeps_dev_helpers_off() -> None:
    settings = Settings(env="prod", secret_key=GOOD, previous_secret_keys=["p" * 40])
    assert not settings.signup_open and not settings.dev_payments_enabled
    assert settings.sms == "none"  # no dev codes in prod unless a real provider is configured
    with pytest.raises(ValidationError, match="LIVECART_SMS_PROVIDER=dev"):
        Settings(env="prod", secret_key=GOOD, sms_provider="dev")
    assert Settings(env="prod", secret_key=GOOD, open_signup=True).signup_open  # only when asked for


def test_every_key_this_repository_ships_is_a_dev_key() -> None:
    """The keys in the tests, benchmarks, compose file and docs are public: each is on the refused list."""
    shipped: set[str] = set()
    pattern = re.compile(
        r"""(?:LIVECART_SECRET_KEY["']?\s*[:=,]\s*|secret_key["']?\s*[:=]\s*)["']([^"'$]{1,80})["']"""
    )
    for path in [*ROOT.glob("loadtests/**/*.py"), ROOT / "tests" / "conftest.py", ROOT / "compose.yaml"]:
        shipped.update(pattern.findall(path.read_text()))
    for name in ("SECRET", "SECRET_KEY"):
        for path in ROOT.glob("loadtests/*.py"):
            shipped.update(re.findall(rf'^{name} = "([^"]+)"', path.read_text(), re.M))
    assert shipped, "the scan found no key at all: the pattern is broken"
    assert shipped <= DEV_SECRET_KEYS, shipped - DEV_SECRET_KEYS


def test_the_docker_image_runs_prod() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    runtime = dockerfile.split("FROM python:3.11-slim-bookworm\n", 1)[1]  # the second stage
    assert re.search(r"^\s*LIVECART_ENV=prod\b", runtime, re.M), (
        "the runtime stage must set LIVECART_ENV=prod"
    )


def test_serve_refuses_to_start_in_prod_with_a_short_key(tmp_path: Path) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("LIVECART_")},
        "LIVECART_ENV": "prod",
        "LIVECART_SECRET_KEY": "x",
        "LIVECART_DATA_DIR": str(tmp_path),
    }
    done = subprocess.run(
        [sys.executable, "-m", "livecart.cli", "serve", "--port", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "LIVECART_SECRET_KEY is shorter than 32 bytes" in done.stderr


def test_wechat_pay_and_wechat_sign_in_must_be_one_official_account(tmp_path: Path) -> None:
    """JSAPI pays with the openid the sign-in's Official Account gave: another AppID would be refused by
    WeChat at every checkout, so it is refused at start."""
    key = tmp_path / "apiclient_key.pem"
    key.write_text("not read by the settings")
    pay = {
        "wechatpay_mchid": "1900000001",
        "wechatpay_appid": "wx1111111111111111",
        "wechatpay_apiv3_key": "k" * 32,
        "wechatpay_merchant_key_file": key,
        "wechatpay_merchant_serial": "ABC",
    }
    with pytest.raises(ValueError, match="LIVECART_WECHATPAY_APPID must be LIVECART_WECHAT_APP_ID"):
        Settings(**pay, wechat_app_id="wx2222222222222222", wechat_app_secret="s")
    assert Settings(**pay, wechat_app_id="wx1111111111111111", wechat_app_secret="s").wechatpay_enabled
    assert Settings(**pay).wechatpay_enabled  # no WeChat sign-in: Native and H5 only
