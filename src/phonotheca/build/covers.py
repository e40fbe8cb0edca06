"""Cover art for the packed audio: which images go into covers collections.

A mirror of the audio should be able to show covers without the builder's blobs, so
the images of every album with a packed track are packed too, once per content
(sha256), into ``<archive>_covers_<seq>`` collections: the same bag and tar layout,
with index lines keyed by the image's sha256 and naming the albums that show it
(docs/FORMAT.md §9.6).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import msgspec

from phonotheca.build.tarvolume import member_name

_MAGIC = (
    (b"\xff\xd8\xff", "image/jpeg", "jpg"),
    (b"\x89PNG\r\n\x1a\n", "image/png", "png"),
    (b"GIF87a", "image/gif", "gif"),
    (b"GIF89a", "image/gif", "gif"),
)


@dataclass(frozen=True, slots=True)
class CoverItem:
    sha256: str
    path: Path
    size: int
    mime: str
    ext: str
    width: int | None
    height: int | None
    albums: tuple[str, ...]

    @property
    def name(self) -> str:
        return member_name(self.sha256, self.ext)


def image_type(head: bytes) -> tuple[str, str] | None:
    """``(mime, extension)`` of JPEG, PNG, GIF or WebP data, from its first bytes."""
    for magic, mime, ext in _MAGIC:
        if head.startswith(magic):
            return mime, ext
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp", "webp"
    return None


_COVERS_SQL = """
    SELECT i.blob_sha256, max(i.width), max(i.height),
           (SELECT json_group_array(public_id) FROM
              (SELECT DISTINCT a.public_id FROM images j JOIN albums a ON a.id = j.album_id
               WHERE j.blob_sha256 = i.blob_sha256 ORDER BY a.public_id))
    FROM images i
"""


def _items(rows: list[tuple[object, ...]], blob_path: Callable[[str], Path]) -> list[CoverItem]:
    items = []
    for sha, width, height, albums in rows:
        path = blob_path(str(sha))
        try:
            with open(path, "rb") as f:
                head = f.read(16)
            size = path.stat().st_size
        except OSError:
            continue  # a blob that is gone cannot be packed; the album shows no cover
        kind = image_type(head)
        if kind is None:
            continue
        items.append(
            CoverItem(
                sha256=str(sha),
                path=path,
                size=size,
                mime=kind[0],
                ext=kind[1],
                width=width,  # type: ignore[arg-type]
                height=height,  # type: ignore[arg-type]
                albums=tuple(msgspec.json.decode(str(albums), type=list[str])),
            )
        )
    return items


def pending_covers(conn: sqlite3.Connection, blob_path: Callable[[str], Path]) -> list[CoverItem]:
    """Images of albums with packed tracks that no covers collection holds yet."""
    rows = conn.execute(
        _COVERS_SQL
        + """
        WHERE i.blob_sha256 IS NOT NULL
          AND i.album_id IN (SELECT t.album_id FROM ledger l JOIN tracks t ON t.id = l.track_id
                             WHERE l.status = 'packed')
          AND NOT EXISTS (SELECT 1 FROM packed_images p WHERE p.sha256 = i.blob_sha256)
        GROUP BY i.blob_sha256 ORDER BY i.blob_sha256
        """
    ).fetchall()
    return _items(rows, blob_path)


def assigned_covers(
    conn: sqlite3.Connection, collection: str, blob_path: Callable[[str], Path]
) -> list[CoverItem]:
    rows = conn.execute(
        _COVERS_SQL
        + """
        WHERE i.blob_sha256 IN (SELECT sha256 FROM packed_images WHERE collection = ?)
        GROUP BY i.blob_sha256 ORDER BY i.blob_sha256
        """,
        (collection,),
    ).fetchall()
    return _items(rows, blob_path)
