"""Where a track's or a cover's bytes are, and whether this archive or mirror holds them.

Every id comes from the URL and is looked up in the catalog; the file to read is then
built from catalog values only (collection and volume names, checked against their
formats), under one of the roots' ``torrents/`` directories. So no text a client sends
ever becomes part of a path.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from phonotheca.audio.loudness import replaygain
from phonotheca.blobs import blob_path, sniff_image
from phonotheca.config import Settings
from phonotheca.mirror.session import SessionOptions
from phonotheca.serve.availability import MirrorState, is_mirror, pieces_of, verified_path
from phonotheca.serve.context import ServeContext
from phonotheca.serve.ondemand import OnDemand, TrackFetch
from phonotheca.serve.ondemand.engine import SwarmTrack
from phonotheca.serve.playable import PlayableSampler
from phonotheca.serve.streaming import (
    ByteSlice,
    content_disposition,
    etag_of,
    ranged_response,
    read_slice,
)

__all__ = [
    "ByteSlice",
    "CoverMedia",
    "MediaLibrary",
    "TrackMedia",
    "content_disposition",
    "etag_of",
    "ranged_response",
]

_COLLECTION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_SHA256 = re.compile(r"[0-9a-f]{64}")

CODEC_TYPES: dict[str, tuple[str, str]] = {
    # codec: (Content-Type, file extension)
    "opus": ("audio/ogg; codecs=opus", "opus"),
    "vorbis": ("audio/ogg; codecs=vorbis", "ogg"),
    "flac": ("audio/flac", "flac"),
    "mp3": ("audio/mpeg", "mp3"),
    "aac": ("audio/mp4", "m4a"),
    "alac": ("audio/mp4", "m4a"),
    "mp4": ("audio/mp4", "m4a"),
    "wav": ("audio/wav", "wav"),
    "pcm": ("audio/wav", "wav"),
    "aiff": ("audio/aiff", "aiff"),
    "wavpack": ("audio/x-wavpack", "wv"),
    "ape": ("audio/x-ape", "ape"),
}
OCTET_STREAM = "application/octet-stream"
IMMUTABLE = "public, max-age=31536000, immutable"
PRIVATE_IMMUTABLE = "private, max-age=31536000, immutable"
"""A cover of a catalog that is not public: browsers keep it, shared caches must not."""
PRIVATE = "private, max-age=86400"

# Reasons a track cannot be played here (TrackMedia.reason).
NOT_ARCHIVED = "not_archived"
"""Metadata only: the plan did not keep its audio, or it is not built yet."""
NOT_IN_MIRROR = "not_in_mirror"
"""Its collection is not on this server's disks."""
INCOMPLETE = "incomplete"
"""Its collection is here but the pieces holding this track are not verified yet."""

CATALOG_DURATION_SLACK_MS = 2000
"""The catalog's duration is shown beside the file's when the two differ by more."""


def codec_type(codec: str | None) -> tuple[str, str]:
    """(Content-Type, extension) for a ledger codec name."""
    return CODEC_TYPES.get((codec or "").lower(), (OCTET_STREAM, "bin"))


def durations(catalog_ms: int | None, file_ms: int | None) -> tuple[int | None, int | None]:
    """``(duration, catalog_duration)`` to report for a track, in milliseconds.

    The duration is the archived file's when it is known (what a player plays, draws its
    seek bar and schedules gapless playback from), else the catalog's; the catalog's is
    given too when it is more than :data:`CATALOG_DURATION_SLACK_MS` away from the file's.
    """
    if file_ms is None:
        return catalog_ms, None
    if catalog_ms is not None and abs(catalog_ms - file_ms) > CATALOG_DURATION_SLACK_MS:
        return file_ms, catalog_ms
    return file_ms, None


def download_name(artist: str, title: str, ext: str) -> str:
    """``Artist - Title.ext`` with characters file systems refuse replaced."""
    text = f"{artist} - {title}" if artist else title
    text = unicodedata.normalize("NFC", text)
    safe = "".join("_" if c in '/\\:*?"<>|' or ord(c) < 0x20 else c for c in text).strip(" .")
    return f"{safe[:180] or 'track'}.{ext}"


@dataclass(frozen=True, slots=True)
class TrackMedia:
    """A track's audio: where its bytes are, what they are, and whether they are here."""

    track_id: str
    """The track's public id."""
    collection: str | None
    volume: str | None
    path: Path | None
    """The volume file on this server, when the collection is here."""
    offset: int
    length: int
    sha256: str
    codec: str | None
    bitrate: int | None
    duration_ms: int | None
    """Length of the archived file, in ms (the ledger's, measured at build), known for a
    packed track whether or not this server holds its bytes; None when not packed."""
    content_type: str
    extension: str
    title: str
    artist_credit: str
    playable: bool
    reason: str | None
    """None when playable, else :data:`NOT_ARCHIVED`, :data:`NOT_IN_MIRROR` or
    :data:`INCOMPLETE`."""
    torrent: str | None
    """``<collection>.torrent``: the torrent that holds the file."""
    levels: tuple[float | None, float | None, float | None, float | None, float | None] = (
        None,
    ) * 5
    """EBU R128 figures from the ledger: loudness, true peak, range, album loudness and
    album true peak."""
    swarm: bool = False
    """Not held here but played from the swarm when asked (``[serve] on_demand``)."""

    def loudness(self) -> dict[str, float | None] | None:
        """The API's ``loudness`` object (:class:`~phonotheca.serve.models.Loudness`), or
        None when the track was not measured."""
        lufs, peak, lra, album_lufs, album_peak = self.levels
        if lufs is None:
            return None
        return {
            "integrated_lufs": lufs,
            "true_peak_dbtp": peak,
            "range_lu": lra,
            "album_lufs": album_lufs,
            "album_true_peak_dbtp": album_peak,
            "track_gain_db": replaygain(lufs),
            "album_gain_db": replaygain(album_lufs),
        }

    @property
    def filename(self) -> str:
        """The download name, ``Artist - Title.ext``."""
        return download_name(self.artist_credit, self.title, self.extension)

    @property
    def etag(self) -> str:
        return etag_of(self.sha256)

    @property
    def cache_control(self) -> str:
        # The bytes of a sha256 never change, but access depends on the signed-in user.
        return PRIVATE


@dataclass(frozen=True, slots=True)
class CoverMedia:
    """An album's front cover: a blob, or a member of a covers collection's volume."""

    album_id: str
    path: Path | None
    offset: int
    length: int
    sha256: str
    content_type: str
    filename: str | None = None
    public: bool = True
    """Whether anyone may see it (``[serve] public_catalog``)."""

    @property
    def etag(self) -> str:
        return etag_of(self.sha256)

    @property
    def cache_control(self) -> str:
        # A shared cache (a proxy) would hand a private catalog's covers to anyone.
        return IMMUTABLE if self.public else PRIVATE_IMMUTABLE


_TRACK_FROM = """
    t.public_id, t.title, t.artist_credit, l.status, l.collection, l.volume, l.offset,
    l.length, l.sha256, l.codec, l.bitrate, l.duration_ms, l.loudness_lufs, l.true_peak_dbtp,
    l.loudness_range_lu, al.loudness_lufs, al.true_peak_dbtp
    FROM tracks t LEFT JOIN ledger l ON l.track_id = t.id
    LEFT JOIN album_loudness al ON al.album_id = t.album_id
"""
_TRACK_SQL = f"SELECT {_TRACK_FROM}"

_COVER_SQL = """
    SELECT i.blob_sha256, p.collection, p.volume, p.offset, p.length
    FROM albums a JOIN images i ON i.album_id = a.id
    LEFT JOIN packed_images p ON p.sha256 = i.blob_sha256
    WHERE a.public_id = ? AND i.blob_sha256 IS NOT NULL
    ORDER BY i.kind != 'front', i.position
"""


class MediaLibrary:
    """Finds tracks' and covers' bytes under the server's roots."""

    def __init__(self, ctx: ServeContext) -> None:
        self.ctx = ctx
        self._mirror = MirrorState()
        self.sampler = PlayableSampler(self)
        serve = ctx.settings.serve
        self.on_demand = (
            OnDemand(ctx.roots, serve, _peer_options(ctx.settings)) if serve.on_demand else None
        )

    # -- tracks ------------------------------------------------------------------------------

    def locate(self, track_public_id: str) -> TrackMedia | None:
        """The track's media, or None when no track has that id."""
        row = (
            self.ctx.catalog()
            .execute(f"{_TRACK_SQL} WHERE t.public_id = ?", (track_public_id,))
            .fetchone()
        )
        return None if row is None else self._media(row)

    def locate_many(self, track_public_ids: list[str]) -> dict[str, TrackMedia]:
        """:meth:`locate` for many tracks in one query (unknown ids are left out)."""
        unique = list(dict.fromkeys(track_public_ids))
        if not unique:
            return {}
        marks = ",".join("?" * len(unique))
        rows = self.ctx.catalog().execute(f"{_TRACK_SQL} WHERE t.public_id IN ({marks})", unique)
        return {str(row[0]): self._media(row) for row in rows}

    def playable_rowids(self, rowids: list[int], *, swarm: bool = False) -> set[int]:
        """The tracks among ``rowids`` (catalog rowids) whose bytes this server holds;
        with ``swarm``, those it plays from the swarm too."""
        unique = list(dict.fromkeys(rowids))
        if not unique:
            return set()
        marks = ",".join("?" * len(unique))
        rows = self.ctx.catalog().execute(
            f"SELECT t.id, {_TRACK_FROM} WHERE t.id IN ({marks})", unique
        )
        return {
            int(row[0])
            for row in rows
            if (m := self._media(row[1:])).playable or (swarm and m.swarm)
        }

    @staticmethod
    def valid_collection(name: str) -> bool:
        return _COLLECTION.fullmatch(name) is not None

    def _media(self, row: tuple[Any, ...]) -> TrackMedia:
        (
            public_id,
            title,
            credit,
            status,
            collection,
            volume,
            offset,
            length,
            sha256,
            codec,
            bitrate,
            duration_ms,
            *levels,
        ) = row
        track_public_id = str(public_id)
        content_type, ext = codec_type(codec)
        packed = (
            status == "packed"
            and isinstance(collection, str)
            and isinstance(volume, str)
            and _COLLECTION.fullmatch(collection) is not None
            and _volume_ok(collection, volume)
            and isinstance(offset, int)
            and isinstance(length, int)
            and isinstance(sha256, str)
            and _SHA256.fullmatch(sha256) is not None
        )
        if not packed:
            return TrackMedia(
                track_id=track_public_id,
                collection=None,
                volume=None,
                path=None,
                offset=0,
                length=0,
                sha256=sha256 if isinstance(sha256, str) else "",
                codec=codec,
                bitrate=bitrate,
                duration_ms=None,
                content_type=content_type,
                extension=ext,
                title=title or "",
                artist_credit=credit or "",
                playable=False,
                reason=NOT_ARCHIVED,
                torrent=None,
            )
        path, reason = self._find_volume(collection, volume, offset, length)
        return TrackMedia(
            track_id=track_public_id,
            collection=collection,
            volume=volume,
            path=path,
            offset=offset,
            length=length,
            sha256=sha256,
            codec=codec,
            bitrate=bitrate,
            duration_ms=duration_ms if isinstance(duration_ms, int) else None,
            content_type=content_type,
            extension=ext,
            title=title or "",
            artist_credit=credit or "",
            playable=reason is None,
            reason=reason,
            torrent=f"{collection}.torrent",
            levels=tuple(levels),
            swarm=reason is not None and self.on_demand is not None,
        )

    # -- playing -----------------------------------------------------------------------------

    def _swarm_open(self, media: TrackMedia) -> Path | TrackFetch:
        """The track's cache file, or the fetch getting it."""
        assert self.on_demand is not None and media.collection and media.volume
        track = SwarmTrack(
            media.track_id, media.collection, media.volume, media.offset, media.length, media.sha256
        )
        return self.on_demand.open(track)

    def _swarm_chunks(self, media: TrackMedia, start: int, count: int) -> Iterator[bytes]:
        """Bytes of a track played from the swarm: the track is opened (a fetch started)
        only when they are read, so a ``HEAD`` or a ``304`` fetches nothing."""
        found = self._swarm_open(media)
        if isinstance(found, Path):
            yield from read_slice(found, start, count)
        else:
            yield from found.chunks(start, count)

    def response(
        self, request: Request, media: TrackMedia, *, attachment: bool = False
    ) -> Response:
        """The track's bytes for ``request``: from this server's disks, or, for a track
        played from the swarm, from the cache or as they are fetched (OnDemandError when
        they cannot be). The caller has checked access and ``playable or swarm``."""
        if media.playable:
            return ranged_response(request, media, attachment=attachment)
        reader = _SwarmReader(self, media)
        served = replace(media, path=None, offset=0)
        return ranged_response(request, served, attachment=attachment, reader=reader)

    def whole_file(self, media: TrackMedia) -> TrackMedia:
        """The media with its bytes in one file (a swarm track waits for its whole fetch),
        for readers that need a file, such as the transcoder."""
        if media.playable:
            return media
        found = self._swarm_open(media)
        path = found if isinstance(found, Path) else found.wait_done()
        return replace(media, path=path, offset=0)

    def _find_volume(
        self, collection: str, volume: str, offset: int, length: int
    ) -> tuple[Path | None, str | None]:
        """(volume path, None) when the bytes are here, else (path or None, reason)."""
        best: tuple[Path | None, str] = (None, NOT_IN_MIRROR)
        for root in self.ctx.roots:
            path = root / "torrents" / collection / "data" / volume
            try:
                size = path.stat().st_size
            except OSError:
                continue
            if size < offset + length:
                best = (path, INCOMPLETE)
                continue
            if not is_mirror(root) or self._pieces_verified(
                root, collection, volume, offset, length
            ):
                return path, None
            best = (path, INCOMPLETE)
        return best

    def _pieces_verified(
        self, root: Path, collection: str, volume: str, offset: int, length: int
    ) -> bool:
        bits = self._mirror.verified(verified_path(root, collection))
        if bits is None:
            return False
        if bits.complete:
            return True
        layout = None
        for candidate in (root, *self.ctx.roots):
            layout = self._mirror.layout(candidate / "torrents" / f"{collection}.torrent")
            if layout is not None:
                break
        if layout is None or layout.piece_length != bits.piece_length:
            return False
        pieces = pieces_of(layout, f"data/{volume}", offset, length)
        return pieces is not None and all(bits.has(p) for p in pieces)

    # -- covers ------------------------------------------------------------------------------

    def cover(self, album_public_id: str) -> CoverMedia | None:
        """The album's front cover (else its first image) if this server holds its bytes."""
        rows = self.ctx.catalog().execute(_COVER_SQL, (album_public_id,)).fetchall()
        for sha256, collection, volume, offset, length in rows:
            if not isinstance(sha256, str) or _SHA256.fullmatch(sha256) is None:
                continue
            found = self._blob(album_public_id, sha256)
            if found is None and isinstance(collection, str) and isinstance(volume, str):
                found = self._packed_cover(
                    album_public_id, sha256, collection, volume, offset, length
                )
            if found is not None:
                return replace(found, public=self.ctx.settings.serve.public_catalog)
        return None

    def _blob(self, album_id: str, sha256: str) -> CoverMedia | None:
        for root in self.ctx.roots:
            path = blob_path(root / "blobs", sha256)
            try:
                size = path.stat().st_size
            except OSError:
                continue
            return CoverMedia(album_id, path, 0, size, sha256, _sniff_type(path, 0))
        return None

    def _packed_cover(
        self,
        album_id: str,
        sha256: str,
        collection: str,
        volume: str,
        offset: object,
        length: object,
    ) -> CoverMedia | None:
        if (
            _COLLECTION.fullmatch(collection) is None
            or not _volume_ok(collection, volume)
            or not isinstance(offset, int)
            or not isinstance(length, int)
        ):
            return None
        path, reason = self._find_volume(collection, volume, offset, length)
        if path is None or reason is not None:
            return None
        return CoverMedia(album_id, path, offset, length, sha256, _sniff_type(path, offset))


@dataclass(frozen=True)
class _SwarmReader:
    """The :class:`~phonotheca.serve.streaming.SliceReader` of a swarm track."""

    library: MediaLibrary
    media: TrackMedia

    def chunks(self, start: int, count: int) -> Iterator[bytes]:
        return self.library._swarm_chunks(self.media, start, count)


def _peer_options(settings: Settings) -> SessionOptions | None:
    """The on-demand peers' session: ``[mirror]``'s discovery settings and address, on an
    ephemeral port (each server process has its own session)."""
    if not settings.serve.on_demand_peers:
        return None
    host = settings.mirror.listen.rsplit(":", 1)[0]
    return SessionOptions.from_settings(settings.mirror, listen=f"{host}:0")


def _volume_ok(collection: str, volume: str) -> bool:
    """A volume name is ``<collection>.NNNN.tar`` (docs/FORMAT.md §9): nothing else is read."""
    prefix = collection + "."
    number = volume[len(prefix) : -len(".tar")]
    return (
        volume.startswith(prefix)
        and volume.endswith(".tar")
        and len(number) == 4
        and number.isdigit()
        and number.isascii()
    )


def _sniff_type(path: Path, offset: int) -> str:
    try:
        with path.open("rb") as f:
            f.seek(offset)
            head = f.read(64)
    except OSError:
        return OCTET_STREAM
    info = sniff_image(head)
    return info.mime if info is not None else OCTET_STREAM
