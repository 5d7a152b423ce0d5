"""The base of every request body model, and the text field types they use.

Bodies are validated strictly (no ``"1"`` for ``1``, no ``1`` for ``true``); unknown fields are ignored so
that clients may send more than this version reads. Text is bounded, stripped, and storable in every
supported database.

PostgreSQL refuses NUL characters and lone surrogates in text (the statement fails), SQLite stores them:
both are refused at the edge with a 422, so an input is either valid everywhere or nowhere.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, StringConstraints


class RequestBody(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_CONTROL_BUT_LINES = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _storable(value: str, control: re.Pattern[str]) -> str:
    if control.search(value):
        raise ValueError("must not contain control characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text (no lone surrogates)") from None
    return value


def _line(value: str) -> str:
    return _storable(value, _CONTROL)


def _multiline(value: str) -> str:
    return _storable(value, _CONTROL_BUT_LINES)


Title = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200), AfterValidator(_line)
]
HostName = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100), AfterValidator(_line)
]
Label = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100), AfterValidator(_line)
]
DisplayName = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64), AfterValidator(_line)
]
Token = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200), AfterValidator(_line)
]
Identifier = Annotated[str, StringConstraints(min_length=1, max_length=40, pattern=r"^[0-9A-Za-z_-]+$")]
TrackingNumber = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100), AfterValidator(_line)
]
Description = Annotated[str, StringConstraints(max_length=5000), AfterValidator(_multiline)]
Url = Annotated[str, StringConstraints(max_length=2000, pattern=r"^https?://[^\s]+$")]
