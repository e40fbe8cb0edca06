"""Web passwords: scrypt hashes, their cost, and raising the cost of older hashes.

A hash is ``scrypt$<N>$<r>$<p>$<salt hex>$<hash hex>`` (``hashlib.scrypt``, a random
16-byte salt, a 32-byte hash). The cost is stored with each hash, so a hash made at a
lower N keeps working; :func:`needs_rehash` tells when one is weaker than the current
setting, and the state store rehashes it at the next successful sign-in, when the
password is known.

The default is N = 2^17, r = 8, p = 1: 128 MiB of memory and about a third of a second
of one core per hash, which makes each guess against a stolen ``state.sqlite3`` costly.
``hashlib.scrypt`` refuses more than 32 MiB unless told (``maxmem``), and a server
could be made to run many hashes at once, so at most :data:`CONCURRENT_HASHES` run at a
time in a process; the others wait their turn.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import secrets
import threading

DEFAULT_COST = 17
"""log2 of scrypt's N for new hashes: ``[serve] password_cost``."""
MIN_COST, MAX_COST = 10, 20
"""Costs the setting accepts (below 14 only for throwaway test archives), and the most a
stored hash may ask for (2^20: 1 GiB), so a tampered hash cannot exhaust the memory."""
SCRYPT_R, SCRYPT_P = 8, 1
CONCURRENT_HASHES = 2
"""scrypt computations running at once per process, each 128 MiB at the default cost."""

_hashing = threading.BoundedSemaphore(CONCURRENT_HASHES)


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int, dklen: int) -> bytes:
    # OpenSSL needs 128·r·(N + p + 2) bytes; a little more leaves room for its bookkeeping.
    maxmem = 128 * r * (n + p + 2) + (1 << 20)
    with _hashing:
        return hashlib.scrypt(
            password.encode("utf-8"), salt=salt, n=n, r=r, p=p, dklen=dklen, maxmem=maxmem
        )


def hash_password(password: str, cost: int = DEFAULT_COST, salt: bytes | None = None) -> str:
    """A new hash of ``password`` at N = 2^``cost``."""
    n = 1 << cost
    salt = salt if salt is not None else secrets.token_bytes(16)
    digest = _scrypt(password, salt, n, SCRYPT_R, SCRYPT_P, 32)
    return f"scrypt${n}${SCRYPT_R}${SCRYPT_P}${salt.hex()}${digest.hex()}"


def _parse(stored: str) -> tuple[int, int, int, bytes, str] | None:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        values = int(n), int(r), int(p), bytes.fromhex(salt), digest
    except ValueError:
        return None
    n_, r_, p_ = values[:3]
    if (
        scheme != "scrypt"
        or n_ < 2
        or n_ & (n_ - 1)
        or n_ > 1 << MAX_COST
        or not 1 <= r_ <= 32
        or not 1 <= p_ <= 16
        or not 16 <= len(digest) <= 128
    ):
        return None
    return values


def check_password(password: str, stored: str) -> bool:
    """Whether ``password`` matches ``stored`` (at the cost the hash was made with)."""
    parsed = _parse(stored)
    if parsed is None:
        return False
    n, r, p, salt, digest = parsed
    try:
        got = _scrypt(password, salt, n, r, p, len(digest) // 2)
    except (ValueError, MemoryError):
        return False
    return hmac.compare_digest(got.hex(), digest.lower())


def needs_rehash(stored: str, cost: int = DEFAULT_COST) -> bool:
    """Whether ``stored`` is weaker than a new hash at ``cost`` (never the other way)."""
    parsed = _parse(stored)
    return parsed is None or parsed[0] < 1 << cost


@functools.cache
def dummy_hash(cost: int = DEFAULT_COST) -> str:
    """A hash no password matches, checked for unknown users so that they cost as much
    time as real ones: timing does not tell which names exist."""
    return hash_password(secrets.token_hex(16), cost, b"\0" * 16)
