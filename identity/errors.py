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


class SignInRequired(IdentityError):
    """A verified room admits signed-in customers only; the caller sent no (valid) customer token."""

    default_code = "sign_in_required"


class InvalidCode(IdentityError):
    """A sign-in code that is wrong, expired or already used (or a WeChat code the API refused)."""

    default_code = "invalid_code"


class InvalidPhone(IdentityError):
    """A phone number that does not parse or is not a valid number."""

    default_code = "invalid_phone"


class SignInUnavailable(IdentityError):
    """This way of signing in is not configured on this server (no SMS provider, no WeChat AppID)."""

    default_code = "sign_in_unavailable"


class ProviderFailed(IdentityError):
    """The SMS provider or WeChat refused or failed the call; nothing was changed, a retry is safe."""

    default_code = "provider_failed"


class InvalidState(IdentityError):
    """A WeChat sign-in's ``state`` that is altered, not made here, too old, or from another browser."""

    default_code = "invalid_state"
