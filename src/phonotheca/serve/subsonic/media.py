"""Bytes: ``stream``, ``download`` and ``getCoverArt``.

Audio is served as stored, straight from its tar volume with Range, HEAD and ETag
support (:func:`phonotheca.serve.media.ranged_response`), unless ``stream`` asks for a
lower ``maxBitRate`` or another ``format``: then it is re-encoded as it is sent
(:mod:`phonotheca.serve.transcode`), or, when every transcoding slot is busy, answered
with error 0 and HTTP 503 with ``Retry-After``. ``download`` always sends the stored file. A
track whose bytes this server does not hold is error 70, with a message naming the
torrent that has it, so that a user knows what to fetch. With ``[serve] on_demand`` such a
track is fetched from the swarm as it is played; a fetch that fails or cannot start
within ``on_demand_timeout`` is error 70 naming the torrent. Covers are served at their
stored size (``size`` is ignored).

A ``stream`` from the start of a track (no ``Range``, or one from byte 0: not a seek) is
noted as what the user's player (``c``) is playing now, for ``getNowPlaying``.
"""

from __future__ import annotations

import re

from starlette.responses import Response, StreamingResponse

from phonotheca.serve import transcode
from phonotheca.serve.media import (
    INCOMPLETE,
    NOT_ARCHIVED,
    CoverMedia,
    MediaLibrary,
    TrackMedia,
    ranged_response,
)
from phonotheca.serve.ondemand import OnDemandError
from phonotheca.serve.subsonic.activity import note_playing
from phonotheca.serve.subsonic.call import Call, Handler, expect_id, split_id
from phonotheca.serve.subsonic.envelope import GENERIC, NOT_FOUND, SubsonicError


def _library(call: Call) -> MediaLibrary:
    library: MediaLibrary = call.ctx.media
    return library


def _why_not(media: TrackMedia) -> str:
    if media.reason == NOT_ARCHIVED:
        return f"track {media.track_id!r} has no archived audio (metadata only): nothing to stream"
    if media.reason == INCOMPLETE:
        return (
            f"track {media.track_id!r} is in torrent {media.torrent}, whose pieces holding it"
            " are not downloaded and verified on this mirror yet"
        )
    return (
        f"track {media.track_id!r} is not on this mirror: it is in torrent {media.torrent}"
        " (mirror that collection to play it here)"
    )


def _track(call: Call) -> TrackMedia:
    public_id = expect_id(call.require("id"), "track")
    media = _library(call).locate(public_id)
    if media is None:
        raise SubsonicError(NOT_FOUND, f"no song with id {public_id!r} in this catalog")
    if not media.playable and not media.swarm:
        raise SubsonicError(NOT_FOUND, _why_not(media))
    return media


def _swarm_error(media: TrackMedia, exc: OnDemandError) -> SubsonicError:
    return SubsonicError(
        NOT_FOUND,
        f"track {media.track_id!r} could not be fetched from the swarm (torrent"
        f" {exc.torrent or media.torrent}): {exc}",
    )


_FROM_START = re.compile(r"\s*bytes\s*=\s*0+\s*-")


def _begins_play(call: Call) -> bool:
    """A request for the track from its first byte (GET, or POST as py-sonic sends every
    call): a play, not a seek or a HEAD."""
    if call.request.method == "HEAD":
        return False
    header = call.request.headers.get("range")
    return header is None or _FROM_START.match(header) is not None


def stream(call: Call) -> Response:
    media = _track(call)
    target = transcode.choose(
        media.codec, media.bitrate, call.get("format"), call.integer("maxBitRate", low=0)
    )
    response: Response
    if target is None:
        try:
            response = _library(call).response(call.request, media)
        except OnDemandError as exc:
            raise _swarm_error(media, exc) from exc
    else:
        headers = {"Accept-Ranges": "none", "Cache-Control": "no-store"}
        if call.request.method == "HEAD":
            return Response(media_type=target.content_type, headers=headers)
        try:
            media = _library(call).whole_file(media)
        except OnDemandError as exc:
            raise _swarm_error(media, exc) from exc
        assert media.path is not None  # held here, or now in the cache
        try:
            live = transcode.LiveTranscode(media.path, media.offset, media.length, target)
        except transcode.TranscodeBusy as exc:
            raise SubsonicError(
                GENERIC,
                str(exc),
                http_status=503,
                headers={"Retry-After": str(transcode.RETRY_AFTER)},
            ) from exc
        except transcode.TranscodeError as exc:
            raise SubsonicError(
                GENERIC, f"track {media.track_id!r} cannot be transcoded: {exc}"
            ) from exc
        response = StreamingResponse(iter(live), media_type=target.content_type, headers=headers)
    if response.status_code < 400 and _begins_play(call):
        note_playing(call, media.track_id)
    return response


def download(call: Call) -> Response:
    media = _track(call)
    try:
        return _library(call).response(call.request, media, attachment=True)
    except OnDemandError as exc:
        raise _swarm_error(media, exc) from exc


def _album_of_track(call: Call, public_id: str) -> str | None:
    row = call.conn.execute(
        "SELECT a.public_id FROM tracks t JOIN albums a ON a.id = t.album_id WHERE t.public_id = ?",
        (public_id,),
    ).fetchone()
    return None if row is None else str(row[0])


def get_cover_art(call: Call) -> Response:
    raw = call.require("id")
    kind, public_id = split_id(raw)
    album = public_id if kind == "album" else None
    if kind == "track":
        album = _album_of_track(call, public_id)
    cover: CoverMedia | None = _library(call).cover(album) if album is not None else None
    if cover is None or cover.path is None:
        raise SubsonicError(NOT_FOUND, f"no cover art for {raw!r} on this server")
    return ranged_response(call.request, cover)


ENDPOINTS: dict[str, Handler] = {
    "stream": stream,
    "download": download,
    "getCoverArt": get_cover_art,
}
