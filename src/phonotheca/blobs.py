"""The content-addressed store of small files (cover art): ``ARCHIVE/blobs/ab/cd/<sha256>``.

A blob's name is the SHA-256 of its bytes, so a cover embedded in twelve tracks and
also lying beside them as ``cover.jpg`` is stored once, and any mirror can check it.
Writes are atomic: ``<name>.<pid>.partial``, fsync, rename, fsync of the directory; two
processes storing the same blob at once both rename identical bytes into place.
"""

from __future__ import annotations

import hashlib
import os
import struct
from pathlib import Path
from typing import NamedTuple

from phonotheca.durable import sync_directory

BLOCK = 1 << 20


def blob_path(blobs_dir: Path, sha256: str) -> Path:
    """Where the blob of that hash lives: two levels of two hex digits, then the hash."""
    return blobs_dir / sha256[:2] / sha256[2:4] / sha256


def blob_url(sha256: str) -> str:
    """The blob's path relative to the archive root (what ``images.url`` holds for it)."""
    return f"blobs/{sha256[:2]}/{sha256[2:4]}/{sha256}"


def store_blob(blobs_dir: Path, data: bytes) -> tuple[str, bool]:
    """Store ``data``; return (sha256, True if it was written now, False if it was there)."""
    sha = hashlib.sha256(data).hexdigest()
    final = blob_path(blobs_dir, sha)
    if final.exists():
        return sha, False
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f"{sha}.{os.getpid()}.partial")
    with tmp.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(final)
    sync_directory(final.parent)
    return sha, True


def read_blob(blobs_dir: Path, sha256: str) -> bytes:
    return blob_path(blobs_dir, sha256).read_bytes()


class ImageInfo(NamedTuple):
    mime: str
    width: int | None
    height: int | None


def sniff_image(data: bytes) -> ImageInfo | None:
    """Type and size of a JPEG, PNG, GIF or WebP image from its first bytes; None if not one.

    Reads headers only (no decoding), so it costs nothing next to hashing the bytes.
    """
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        w, h = struct.unpack(">II", data[16:24])
        return ImageInfo("image/png", w, h)
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        w, h = struct.unpack("<HH", data[6:10])
        return ImageInfo("image/gif", w, h)
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return ImageInfo("image/webp", None, None)
    if data[:2] == b"\xff\xd8":
        return ImageInfo("image/jpeg", *_jpeg_size(data))
    return None


def _jpeg_size(data: bytes) -> tuple[int | None, int | None]:
    """Width and height from the first start-of-frame marker of a JPEG."""
    i = 2
    n = len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            return None, None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # markers without a length
            i += 2
            continue
        (length,) = struct.unpack(">H", data[i + 2 : i + 4])
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            if i + 9 > n:
                return None, None
            h, w = struct.unpack(">HH", data[i + 5 : i + 9])
            return w, h
        i += 2 + length
    return None, None
