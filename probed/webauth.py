"""Basic-auth credential checks for the web config (see :mod:`probed.webconfig`).

User names are compared in constant time, an unknown user costs the same bcrypt
check as a wrong password, bcrypt runs in a worker thread, and a successful
check is cached (bounded) so regular scrapes skip bcrypt.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import os
import secrets
from collections import Counter, OrderedDict
from collections.abc import Mapping

import bcrypt

__all__ = ["Authenticator"]

_BCRYPT_MAX_PASSWORD = 72  # bytes; bcrypt ignores (newer versions reject) anything longer

_CACHE_SIZE = 256
_BCRYPT_CONCURRENCY = max(1, (os.cpu_count() or 2) // 2)


def _parse_basic(header: str | None) -> tuple[bytes, bytes] | None:
    """``(user, password)`` from ``Authorization: Basic …``; ``None`` if absent or malformed."""
    if header is None:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(token.strip().encode("ascii"), validate=True)
    except ValueError:  # binascii.Error and UnicodeEncodeError are both ValueErrors
        return None
    user, colon, password = decoded.partition(b":")
    if not colon:
        return None
    return user, password


def _checkpw(password: bytes, hashed: bytes) -> bool:
    try:
        return bcrypt.checkpw(password, hashed)
    except ValueError:
        return False


def _dummy_hash(hashes: list[str]) -> bytes:
    """A well-formed hash no password matches, at the cost most configured users have."""
    costs = Counter(int(h[4:6]) for h in hashes)
    cost = max(costs, key=lambda c: (costs[c], c))
    # gensalt() gives "$2b$NN$" and a random salt; the digest part is a constant
    # no real password hashes to, but bcrypt still does the full work to find out.
    return bcrypt.gensalt(rounds=cost) + b"." * 31


class Authenticator:
    """Checks basic-auth credentials against bcrypt hashes without leaking which users exist."""

    def __init__(self, users: Mapping[str, str], cache_size: int = _CACHE_SIZE) -> None:
        # user names are compared as SHA-256 digests: equal length, constant time
        self._users = [
            (hashlib.sha256(name.encode()).digest(), hashed.encode())
            for name, hashed in users.items()
        ]
        self._dummy = _dummy_hash(list(users.values()))
        self._cache_key = secrets.token_bytes(32)
        self._cache: OrderedDict[bytes, None] = OrderedDict()
        self._cache_size = cache_size
        self._limit = asyncio.Semaphore(_BCRYPT_CONCURRENCY)

    def _lookup(self, user: bytes) -> bytes | None:
        wanted = hashlib.sha256(user).digest()
        found: bytes | None = None
        for digest, hashed in self._users:  # no early exit: every name is compared
            if hmac.compare_digest(digest, wanted):
                found = hashed
        return found

    async def verify(self, header: str | None) -> bool:
        """Whether ``header`` carries the credentials of a configured user."""
        credentials = _parse_basic(header)
        if credentials is None:
            return False
        user, password = credentials
        hashed = self._lookup(user)
        # keyed by an HMAC (per-process key) of user and password: the cache never
        # holds anything a memory dump could turn back into a password quickly
        key = hmac.digest(self._cache_key, user + b":" + password, "sha256")
        if key in self._cache:
            self._cache.move_to_end(key)
            return True
        usable = hashed is not None and len(password) <= _BCRYPT_MAX_PASSWORD
        # one bcrypt check whatever happens: against the dummy for an unknown user
        target = hashed if hashed is not None and usable else self._dummy
        async with self._limit:
            ok = await asyncio.to_thread(_checkpw, password[:_BCRYPT_MAX_PASSWORD], target)
        if not (ok and usable):
            return False
        self._cache[key] = None
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return True
