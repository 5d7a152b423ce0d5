"""One-time sign-in codes in Redis: six digits, valid ``sign_in_code_seconds``, used once; after
``sign_in_max_wrong_codes`` wrong guesses the phone is locked for ``sign_in_lock_seconds`` (429 ``locked``).

Only an HMAC of the code is stored (keyed by the server's secret), so reading Redis does not sign anyone
in. Checking is one Lua call: parallel guesses cannot get past the lock. A scope keeps codes apart: a
customer's code at one host's shop (``c:HOST``) does not sign them in at another, nor as a host (``host``).
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
from pathlib import Path

from redis.asyncio import Redis

from base.errors import RateLimited
from identity.errors import InvalidCode

CHECK_LUA = (Path(__file__).parent / "lua" / "check_code.lua").read_text()


def _keys(scope: str, phone: str) -> list[str]:
    tag = f"{{signin:{scope}:{phone}}}"  # one hash slot for the three (Redis Cluster)
    return [f"{tag}:code", f"{tag}:wrong", f"{tag}:lock"]


def new_code() -> str:
    return f"{secrets.randbelow(1_000_000):06d}"


class SignInCodes:
    def __init__(
        self, redis: Redis, *, secret: bytes, code_seconds: int, max_wrong: int, lock_seconds: int
    ) -> None:
        self._redis = redis
        self._secret = secret
        self._code_ms = code_seconds * 1000
        self._max_wrong = max_wrong
        self._lock_ms = lock_seconds * 1000
        self._check = redis.register_script(CHECK_LUA)

    def _mac(self, scope: str, phone: str, code: str) -> str:
        return hmac.new(self._secret, f"{scope}|{phone}|{code}".encode(), hashlib.sha256).hexdigest()

    async def issue(self, scope: str, phone: str) -> str:
        """A new code for the phone (replacing any earlier one); refused while the phone is locked."""
        code_key, _, lock_key = _keys(scope, phone)
        await self._refuse_if_locked(lock_key)
        code = new_code()
        await self._redis.set(code_key, self._mac(scope, phone, code), px=self._code_ms)
        return code

    async def forget(self, scope: str, phone: str) -> None:
        """Drop the code just issued (the SMS could not be sent: nothing may be left to guess)."""
        await self._redis.delete(_keys(scope, phone)[0])

    async def check(self, scope: str, phone: str, code: str) -> None:
        """Return when ``code`` is the phone's current code (it is then used up); raise ``InvalidCode``
        (401) or ``RateLimited`` with code ``locked`` (429) otherwise."""
        guess = self._mac(scope, phone, code.strip())
        outcome = await self._check(keys=_keys(scope, phone), args=[guess, self._max_wrong, self._lock_ms])
        kind = outcome[0].decode() if isinstance(outcome[0], bytes) else outcome[0]
        if kind == "ok":
            return
        if kind == "locked":
            raise _locked(int(outcome[1]))
        if kind == "no_code":
            raise InvalidCode(
                "No code is waiting for this number (it expired or was used); ask for a new one."
            )
        left = int(outcome[1])
        if left == 0:
            raise InvalidCode(
                "Wrong code. Too many wrong codes: this number is locked for "
                f"{math.ceil(self._lock_ms / 60000)} minutes.",
                extra={"attempts_left": 0},
            )
        raise InvalidCode(f"Wrong code; {left} tries left.", extra={"attempts_left": left})

    async def _refuse_if_locked(self, lock_key: str) -> None:
        ttl = await self._redis.pttl(lock_key)
        if ttl > 0:
            raise _locked(ttl)


def _locked(ms_left: int) -> RateLimited:
    seconds = max(1, math.ceil(ms_left / 1000))
    return RateLimited(
        f"Too many wrong codes: this number is locked; try again in {math.ceil(seconds / 60)} min.",
        retry_after=seconds,
        code="locked",
    )
