"""Identifiers as fixed-width ASCII, built vectorised: decimal digits, UUIDs and UPCs."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from phonotheca.synth.draws import I64, U64, Draws

_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
ALNUM = np.frombuffer(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ", dtype=np.uint8)
"""Byte values of the characters of an ISRC registrant code."""
_DIGITS = np.frombuffer(b"0123456789", dtype=np.uint8)


def ascii_rows(rows: npt.NDArray[np.uint8]) -> list[str]:
    """Each row of an (n, width) byte array as a string."""
    width = rows.shape[1]
    strings: list[str] = (
        np.ascontiguousarray(rows).view(f"S{width}").ravel().astype(f"U{width}").tolist()
    )
    return strings


def decimal(values: I64, width: int) -> npt.NDArray[np.uint8]:
    """Zero-padded decimal digits of ``values`` as an (n, width) byte array."""
    powers = 10 ** np.arange(width - 1, -1, -1, dtype=np.int64)
    digits: npt.NDArray[np.uint8] = _DIGITS[(values[:, None] // powers) % 10]
    return digits


def uuids(hi: U64, lo: U64) -> list[str]:
    """Version-4-shaped UUIDs from 128 hashed bits."""
    hi = (hi & ~np.uint64(0xF000)) | np.uint64(0x4000)
    lo = (lo & np.uint64(0x3FFF_FFFF_FFFF_FFFF)) | np.uint64(0x8000_0000_0000_0000)
    shifts = np.arange(60, -4, -4, dtype=np.uint64)
    nibbles = np.concatenate(
        [(hi[:, None] >> shifts) & np.uint64(15), (lo[:, None] >> shifts) & np.uint64(15)], axis=1
    )
    hexed = _HEX[nibbles.astype(np.int64)]
    dash = np.full((len(hi), 1), ord("-"), dtype=np.uint8)
    rows = np.concatenate(
        [
            hexed[:, :8],
            dash,
            hexed[:, 8:12],
            dash,
            hexed[:, 12:16],
            dash,
            hexed[:, 16:20],
            dash,
            hexed[:, 20:],
        ],
        axis=1,
    )
    return ascii_rows(rows)


def upcs(d: Draws, k: U64) -> list[str]:
    """UPC-A (12 digits) or EAN-13 codes with a correct check digit, one per album."""
    long = d.chance("album.upc.ean", k, 0.25)
    body = (d.bits("album.upc", k) >> np.uint64(8)).astype(np.int64) % 10**12
    body = np.where(long, body, body % 10**11)
    digits = (body[:, None] // 10 ** np.arange(11, -1, -1, dtype=np.int64)) % 10
    weights = np.where(np.arange(12) % 2 == 1, 3, 1)  # rightmost body digit weighs 3
    check = (10 - (digits * weights).sum(axis=1) % 10) % 10
    rows = np.concatenate([_DIGITS[digits], _DIGITS[check][:, None]], axis=1)
    full = ascii_rows(rows)
    return [c if lg else c[1:] for c, lg in zip(full, long.tolist(), strict=True)]
