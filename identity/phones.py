"""Phone numbers as ``phonenumbers`` parses them: whatever a person types (``138 0013 8000``,
``+86 138-0013-8000``, ``008613800138000``) becomes one E.164 string, so the same phone is always the same
customer."""

from __future__ import annotations

import phonenumbers

from identity.errors import InvalidPhone

MAX_INPUT = 32


def normalise(raw: str, *, default_region: str) -> str:
    """The number in E.164 (``+8613800138000``), or ``InvalidPhone`` saying why not."""
    if len(raw) > MAX_INPUT:
        raise InvalidPhone("This is too long for a phone number.")
    try:
        number = phonenumbers.parse(raw, default_region)
    except phonenumbers.NumberParseException as exc:
        raise InvalidPhone("This is not a phone number.") from exc
    if not phonenumbers.is_valid_number(number):
        raise InvalidPhone("This phone number is not valid.")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def masked(e164: str) -> str:
    """For logs and lists: ``+86138****8000``."""
    return e164[:-8] + "****" + e164[-4:] if len(e164) > 8 else "****"
