"""The base of every request body model, and the field types they use: each type validates a value and
documents exactly what it validates (its JSON Schema, which ``/openapi.json`` shows).

Bodies are validated strictly (no ``"1"`` for ``1``, no ``1.0`` for ``1``, no ``1`` for ``true``); unknown
fields are ignored so that clients may send more than this version reads. Text is bounded, stripped, and
storable in every supported database.

PostgreSQL refuses NUL characters and lone surrogates in text (the statement fails), SQLite stores them:
both are refused at the edge with a 422, so an input is either valid everywhere or nowhere.

Text on one line (:class:`OneLine`) is trimmed of surrounding whitespace first (pydantic's
``strip_whitespace``: the characters of Unicode's White_Space property), then holds 1 to ``max_length``
characters, none of them a control character. Its JSON Schema says exactly that with one ``pattern``
(``tests/unit/test_openapi.py`` checks the two agree), since a ``maxLength`` would count the whitespace that
the trim removes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    PlainValidator,
    StringConstraints,
    WithJsonSchema,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, core_schema


class RequestBody(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)


#: Regex character-class bodies (the same text in Python's ``re``, Rust's ``regex`` and ECMA 262):
#: Unicode White_Space, which ``strip_whitespace`` trims; the control characters refused in text.
WHITESPACE = r"\t-\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
CONTROL = r"\x00-\x1f\x7f"
CONTROL_BUT_LINES = r"\x00-\x08\x0b\x0c\x0e-\x1f\x7f"  # a description keeps \t, \n and \r

_CONTROL = re.compile(f"[{CONTROL}]")
_CONTROL_BUT_LINES = re.compile(f"[{CONTROL_BUT_LINES}]")


def _storable(value: str, control: re.Pattern[str]) -> str:
    if control.search(value):
        raise ValueError("must not contain control characters")
    return _unicode(value)


def _unicode(value: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text (no lone surrogates)") from None
    return value


def _line(value: str) -> str:
    return _storable(value, _CONTROL)


def _multiline(value: str) -> str:
    return _storable(value, _CONTROL_BUT_LINES)


def one_line_pattern(max_length: int) -> str:
    """The JSON Schema ``pattern`` of :class:`OneLine` text: any surrounding whitespace, then 1 to
    ``max_length`` characters that are not control characters, the first and last not whitespace."""
    assert max_length >= 2
    edge = f"[^{CONTROL}{WHITESPACE}]"
    return f"^[{WHITESPACE}]*{edge}(?:[^{CONTROL}]{{0,{max_length - 2}}}{edge})?[{WHITESPACE}]*$"


@dataclass(frozen=True)
class OneLine:
    """Text on one line: trimmed, then 1 to ``max_length`` characters, no control characters."""

    max_length: int

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        return core_schema.no_info_after_validator_function(
            _line,
            core_schema.str_schema(strip_whitespace=True, min_length=1, max_length=self.max_length),
        )

    def __get_pydantic_json_schema__(
        self, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {"type": "string", "minLength": 1, "pattern": one_line_pattern(self.max_length)}


@dataclass(frozen=True)
class Multiline:
    """Text kept as sent: up to ``max_length`` characters, no control characters but tab and line breaks."""

    max_length: int

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        return core_schema.no_info_after_validator_function(
            _multiline, core_schema.str_schema(max_length=self.max_length)
        )

    def __get_pydantic_json_schema__(
        self, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {"type": "string", "maxLength": self.max_length, "pattern": f"^[^{CONTROL_BUT_LINES}]*$"}


Title = Annotated[str, OneLine(200)]
HostName = Annotated[str, OneLine(100)]
Label = Annotated[str, OneLine(100)]
DisplayName = Annotated[str, OneLine(64)]
Token = Annotated[str, OneLine(200)]
TrackingNumber = Annotated[str, OneLine(100)]
Identifier = Annotated[str, StringConstraints(min_length=1, max_length=40, pattern=r"^[0-9A-Za-z_-]+$")]
Description = Annotated[str, Multiline(5000)]
#: An http(s) URL: no whitespace and no control characters anywhere in it (so none reaches SQL).
URL_PATTERN = f"^https?://[^{CONTROL} {WHITESPACE}]+$"
Url = Annotated[str, StringConstraints(max_length=2000, pattern=URL_PATTERN), AfterValidator(_unicode)]


# -- query strings (validated laxly: every value is text) -----------------------------------------------

_DIGITS = re.compile(r"[0-9]+")


def _query_int(value: object) -> object:
    """A query value written as decimal digits, and nothing else (no sign, space, fraction or ``_``)."""
    if isinstance(value, str):
        if not _DIGITS.fullmatch(value):
            raise ValueError("must be a whole number written with the digits 0-9")
        return int(value)
    return value


#: A whole number in a query string (its schema is the integer's, with the field's bounds).
QueryInt = Annotated[int, BeforeValidator(_query_int)]


# -- instants -------------------------------------------------------------------------------------------

#: RFC 3339 ``date-time`` (the JSON Schema format), a year from 1000 to 9998: with any UTC offset it stays
#: a year Python's ``datetime`` and every database hold, so it reads back as the same ISO text.
INSTANT_YEARS = r"(?:[1-8][0-9]{3}|9[0-8][0-9]{2}|99[0-8][0-9]|999[0-8])"
INSTANT_PATTERN = f"^{INSTANT_YEARS}-"
_INSTANT = re.compile(
    INSTANT_YEARS
    + r"-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?(?:[Zz]|[+-][0-9]{2}:[0-9]{2})"
)


def _instant(value: object) -> datetime:
    message = "must be an RFC 3339 date-time with a UTC offset (2030-01-01T20:00:00+08:00), year 1000-9998"
    if not isinstance(value, str) or not _INSTANT.fullmatch(value):
        raise ValueError(message)
    try:
        # fromisoformat checks the calendar and the clock (no February 30, no hour 24, no leap second).
        return datetime.fromisoformat(value.upper()).astimezone(UTC)
    except ValueError:
        raise ValueError(message) from None


Instant = Annotated[
    datetime,
    PlainValidator(_instant),
    WithJsonSchema({"type": "string", "format": "date-time", "pattern": INSTANT_PATTERN}),
]
