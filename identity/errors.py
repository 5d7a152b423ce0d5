"""Errors of ``identity``: a caller who is not who they say, or may not touch what they ask for."""

from __future__ import annotations

from base.errors import LiveCartError


class IdentityError(LiveCartError):
    """The root of ``identity``'s errors."""


class InvalidToken(IdentityError):
    """No bearer token, or one that does not verify (expired, altered, another purpose's)."""

    default_code = "unauthorized"


class NotPermitted(IdentityError):
    """A valid caller who may not do this (another host's room, someone else's order, a viewer's call to a
    host-only endpoint)."""

    default_code = "forbidden"


class InvalidInvite(IdentityError):
    """An invite, share code or invite token that does not admit the caller to the room."""

    default_code = "invalid_invite"
