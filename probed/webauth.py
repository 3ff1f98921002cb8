"""Basic-auth credential checks for the web config (see :mod:`probed.webconfig`).

- User names are compared in constant time.
- Every uncached check costs the same: one bcrypt at the highest cost configured
  (an unknown user is checked against a dummy hash of that cost; a user whose hash
  is cheaper is padded with the dummy), so timing does not tell which users exist.
- bcrypt runs in a pool of its own (:data:`BCRYPT_WORKERS` threads, at most
  :data:`BCRYPT_QUEUE` checks waiting, at most :data:`BCRYPT_PER_CLIENT` of them
  from one client address); a check beyond that raises :class:`Overloaded` at
  once (the server answers 429) instead of queueing, so a flood from one address
  cannot keep another client's scrape out of the pool.
- A successful check is cached (bounded, keyed by an HMAC of the credentials), so
  a scrape with cached credentials never waits for the pool. A reload keeps the
  entries of users whose name and hash did not change.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import hmac
import secrets
from collections import OrderedDict
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor

from probed.serverstats import ServerStats

__all__ = [
    "BCRYPT_PER_CLIENT",
    "BCRYPT_QUEUE",
    "BCRYPT_WORKERS",
    "Authenticator",
    "BcryptPool",
    "Overloaded",
]

_BCRYPT_MAX_PASSWORD = 72  # bytes; bcrypt ignores (newer versions reject) anything longer

_CACHE_SIZE = 256
BCRYPT_WORKERS = 2
"""Threads checking bcrypt hashes at once."""
BCRYPT_QUEUE = 8
"""Checks that may wait for a worker; one more is refused, so the last in line waits a
fraction of a second at a usual bcrypt cost (bench/README.md has the figures)."""
BCRYPT_PER_CLIENT = 2
"""Checks one client address may have running or waiting at once."""


class Overloaded(Exception):
    """The bcrypt pool is busy and its queue full: answer 429 and let the client retry."""


class BcryptPool:
    """A bounded pool of bcrypt workers, shared by every :class:`Authenticator` of a server."""

    def __init__(
        self,
        stats: ServerStats | None = None,
        workers: int = BCRYPT_WORKERS,
        queue: int = BCRYPT_QUEUE,
        per_client: int = BCRYPT_PER_CLIENT,
    ) -> None:
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="bcrypt")
        self._limit = workers + queue
        self._per_client = per_client
        self.pending = 0
        """Checks running or waiting (only touched on the event loop)."""
        self._by_client: dict[str, int] = {}
        self.stats = stats if stats is not None else ServerStats()
        """``auth_overloaded`` counts the checks refused with :class:`Overloaded`."""

    async def check(
        self, password: bytes, hashed: bytes, pad: bytes | None, client: str = ""
    ) -> bool:
        """``bcrypt.checkpw`` in the pool, then ``pad`` too (equal work); may raise Overloaded.

        ``client`` (the peer's address) may hold at most ``per_client`` slots.
        """
        held = self._by_client.get(client, 0)
        if self.pending >= self._limit or held >= self._per_client:
            self.stats.auth_overloaded += 1
            raise Overloaded
        self.pending += 1
        self._by_client[client] = held + 1
        done = asyncio.wrap_future(self._executor.submit(_check, password, hashed, pad))
        done.add_done_callback(functools.partial(self._release, client))
        # shielded: a client that goes away does not free the slot before the thread does
        return await asyncio.shield(done)

    def _release(self, client: str, _: asyncio.Future[bool]) -> None:
        self.pending -= 1
        held = self._by_client.pop(client) - 1
        if held:
            self._by_client[client] = held

    def close(self) -> None:
        """Stop the workers (checks already submitted still finish)."""
        self._executor.shutdown(wait=False, cancel_futures=True)


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
    import bcrypt  # only basic auth needs it: not imported at start (RSS, start-up time)

    try:
        return bcrypt.checkpw(password, hashed)
    except ValueError:
        return False


def _check(password: bytes, hashed: bytes, pad: bytes | None) -> bool:
    ok = _checkpw(password, hashed)
    if pad is not None:
        _checkpw(password, pad)
    return ok


def _cost(hashed: bytes) -> int:
    return int(hashed[4:6])


def _dummy_hash(cost: int) -> bytes:
    """A well-formed hash no password matches, at ``cost``."""
    # gensalt() gives "$2b$NN$" and a random salt; the digest part is a constant
    # no real password hashes to, but bcrypt still does the full work to find out.
    import bcrypt

    return bcrypt.gensalt(rounds=cost) + b"." * 31


class Authenticator:
    """Checks basic-auth credentials against bcrypt hashes without leaking which users exist."""

    def __init__(
        self,
        users: Mapping[str, str],
        pool: BcryptPool | None = None,
        cache_size: int = _CACHE_SIZE,
        previous: Authenticator | None = None,
    ) -> None:
        # user names are compared as SHA-256 digests: equal length, constant time
        self._users = {
            hashlib.sha256(name.encode()).digest(): hashed.encode()
            for name, hashed in users.items()
        }
        self._cost = max(map(_cost, self._users.values()))
        self._dummy = _dummy_hash(self._cost)
        self._pool = pool if pool is not None else BcryptPool()
        self._cache_key = secrets.token_bytes(32)
        # HMAC of the credentials -> digest of the user name they belong to
        self._cache: OrderedDict[bytes, bytes] = OrderedDict()
        self._cache_size = cache_size
        if previous is not None:
            self._cache_key = previous._cache_key
            for key, user in previous._cache.items():
                if self._users.get(user) == previous._users[user]:
                    self._cache[key] = user

    def _lookup(self, user: bytes) -> tuple[bytes, bytes | None]:
        wanted = hashlib.sha256(user).digest()
        found: bytes | None = None
        for digest, hashed in self._users.items():  # no early exit: every name is compared
            if hmac.compare_digest(digest, wanted):
                found = hashed
        return wanted, found

    async def verify(self, header: str | None, client: str = "") -> bool:
        """Whether ``header`` carries the credentials of a configured user.

        Raises :class:`Overloaded` when an uncached check finds the pool full, or
        ``client``'s share of it taken.
        """
        credentials = _parse_basic(header)
        if credentials is None:
            return False
        user, password = credentials
        digest, hashed = self._lookup(user)
        # keyed by an HMAC (per-process key) of user and password: the cache never
        # holds the password, nor anything that can be checked without the key
        key = hmac.digest(self._cache_key, user + b":" + password, "sha256")
        if key in self._cache:
            self._cache.move_to_end(key)
            return True
        usable = hashed is not None and len(password) <= _BCRYPT_MAX_PASSWORD
        # one bcrypt check at the highest cost whatever happens: against the dummy for
        # an unknown user, padded with the dummy for a user whose hash is cheaper
        target = hashed if hashed is not None and usable else self._dummy
        pad = self._dummy if _cost(target) < self._cost else None
        ok = await self._pool.check(password[:_BCRYPT_MAX_PASSWORD], target, pad, client)
        if not (ok and usable):
            return False
        self._cache[key] = digest
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return True
