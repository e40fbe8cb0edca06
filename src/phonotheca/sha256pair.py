"""SHA-256 of the same bytes twice, for the price of once where the CPU allows.

Packing hashes every member's data with SHA-256 twice: for the member (checked against
the ledger) and as part of its tar volume (the bag manifest). One SHA-256 stream leaves
half of a core's hashing unit idle, waiting on its own last round; the compiled
``phonotheca._sha256pair`` runs two streams over the same blocks side by side, as fast
as one (x86-64 with the SHA extensions). Elsewhere, or where it was not built, hashlib
does the two in turn: the same digests, twice the CPU time.
"""

from __future__ import annotations

import hashlib
from typing import Protocol

try:
    from phonotheca import _sha256pair

    PAIRED = _sha256pair.AVAILABLE
except ImportError:  # not compiled (no C compiler at install): hashlib alone
    PAIRED = False


class Digest(Protocol):
    """What packing uses of a hash object (hashlib's or the compiled one)."""

    def update(self, data: bytes | bytearray | memoryview, /) -> None: ...
    def digest(self) -> bytes: ...
    def hexdigest(self) -> str: ...


def sha256() -> Digest:
    """A new SHA-256 object that :func:`update_both` can pair with another."""
    return _sha256pair.Sha256() if PAIRED else hashlib.sha256()


def update_both(a: Digest, b: Digest, data: bytes | bytearray | memoryview) -> None:
    """``a.update(data)`` and ``b.update(data)``: in one pass over the data when both
    come from :func:`sha256` with the compiled module, and both stand at a 64-byte
    boundary (each member's data starts on one in its volume); in two otherwise."""
    if PAIRED:
        _sha256pair.update_both(a, b, data)
    else:
        a.update(data)
        b.update(data)
