"""Phone numbers: whatever a person types becomes one E.164 string (the same phone is the same customer);
what is not a valid number is refused with ``invalid_phone``; logs see a masked number; Aliyun gets the
number in the form its ``SendSms`` documents."""

from __future__ import annotations

import pytest

from identity.errors import InvalidPhone
from identity.phones import masked, normalise
from identity.sms import aliyun_phone


@pytest.mark.parametrize(
    "typed",
    [
        "13800138000",
        "138 0013 8000",
        "+86 138-0013-8000",
        "008613800138000",
        "0086 138 0013 8000",
        " +8613800138000 ",
    ],
)
def test_every_way_of_typing_a_mainland_number_is_one_number(typed: str) -> None:
    assert normalise(typed, default_region="CN") == "+8613800138000"


def test_a_number_with_its_country_code_keeps_it_whatever_the_default_region() -> None:
    assert normalise("+852 5123 4567", default_region="CN") == "+85251234567"
    assert normalise("5123 4567", default_region="HK") == "+85251234567"
    assert normalise("+1 650 253 0000", default_region="CN") == "+16502530000"


@pytest.mark.parametrize(
    ("typed", "why"),
    [
        ("12", "not valid"),
        ("abc", "not a phone number"),
        ("1" * 40, "too long"),
        ("138001380001", "not valid"),  # one digit too many
        ("+86 000 0000 0000", "not valid"),
        ("", "not a phone number"),
    ],
)
def test_what_is_not_a_valid_number_is_refused(typed: str, why: str) -> None:
    with pytest.raises(InvalidPhone) as caught:
        normalise(typed, default_region="CN")
    assert caught.value.code == "invalid_phone" and why in caught.value.detail


def test_logs_see_only_a_masked_number() -> None:
    assert masked("+8613800138000") == "+86138****8000"
    assert "0013" not in masked("+8613800138000")
    assert masked("+1234") == "****"


@pytest.mark.parametrize(
    ("e164", "sent_as"),
    [
        ("+8613800138000", "13800138000"),  # mainland: the 11 digits, no +86
        ("+85251234567", "85251234567"),  # elsewhere: country code and number, no + or 00
        ("+16502530000", "16502530000"),
        ("+447400123456", "447400123456"),
    ],
)
def test_aliyun_gets_the_number_as_its_send_sms_documents(e164: str, sent_as: str) -> None:
    assert aliyun_phone(e164) == sent_as
