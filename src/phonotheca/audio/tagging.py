"""Write tags with mutagen, in the keys :mod:`phonotheca.audio.probe` reads back.

Used to make synthetic audio and test files: one :class:`~phonotheca.audio.probe.Tags`
value is written as Vorbis comments (Ogg, FLAC), ID3 (MP3, WAV, AIFF), MP4 atoms,
ASF attributes (WMA) or APEv2 (WavPack, Monkey's Audio), with the MusicBrainz Picard
key names for ids, so that what a tagger would write is what we test against.
"""

from __future__ import annotations

import base64
import importlib
import struct
from pathlib import Path
from typing import Any

import mutagen

from phonotheca.audio.probe import Tags

_KIND_CODE = {"front": 3, "back": 4, "medium": 6, "other": 0}


def _pairs(tags: Tags) -> dict[str, list[str]]:
    """Vorbis-comment style fields (also the APEv2 ones, renamed below)."""
    out: dict[str, list[str]] = {}

    def put(key: str, value: object) -> None:
        if value not in (None, (), ""):
            out[key] = [str(v) for v in value] if isinstance(value, tuple) else [str(value)]

    put("TITLE", tags.title)
    put("ARTIST", tags.artists)
    put("ALBUM", tags.album)
    put("ALBUMARTIST", tags.album_artists)
    put("TRACKNUMBER", tags.track_number)
    put("TRACKTOTAL", tags.track_total)
    put("DISCNUMBER", tags.disc_number)
    put("DISCTOTAL", tags.disc_total)
    put("DATE", tags.date)
    put("ISRC", tags.isrc)
    put("MUSICBRAINZ_TRACKID", tags.musicbrainz_recording)
    put("MUSICBRAINZ_ALBUMID", tags.musicbrainz_release)
    return out


def _module(name: str) -> Any:
    """A mutagen module, untyped (its frame and atom classes have no annotations)."""
    return importlib.import_module(name)


def _flac_picture(data: bytes, mime: str, kind: str) -> Any:
    pic = _module("mutagen.flac").Picture()
    pic.type = _KIND_CODE.get(kind, 0)
    pic.mime = mime
    pic.data = data
    return pic


def write_tags(
    path: Path,
    tags: Tags,
    picture: bytes | None = None,
    *,
    mime: str = "image/jpeg",
    picture_kind: str = "front",
) -> None:
    """Replace the file's tags with ``tags`` (and one embedded picture, if given).

    An empty :class:`Tags` without a picture removes every tag.
    """
    f = mutagen.File(path)
    if f is None:
        raise ValueError(f"{path}: not a format mutagen can tag")
    name = type(f).__name__
    if tags.is_empty() and picture is None:
        f.delete()
        return
    if f.tags is None:
        f.add_tags()
    else:
        f.tags.clear()
    t = f.tags
    pairs = _pairs(tags)
    if name in ("OggVorbis", "OggOpus", "OggFLAC", "FLAC"):
        for key, values in pairs.items():
            t[key] = values
        if picture is not None:
            pic = _flac_picture(picture, mime, picture_kind)
            if name == "FLAC":
                f.clear_pictures()
                f.add_picture(pic)
            else:
                t["METADATA_BLOCK_PICTURE"] = [base64.b64encode(pic.write()).decode("ascii")]
    elif name in ("MP3", "WAVE", "AIFF", "DSF"):
        _id3(t, tags, picture, mime, picture_kind)
    elif name == "MP4":
        _mp4(t, tags, picture, mime)
    elif name == "ASF":
        _asf(t, tags, picture, mime, picture_kind)
    else:  # APEv2: WavPack, Monkey's Audio, Musepack, ...
        renamed = {"ALBUMARTIST": "Album Artist", "TRACKNUMBER": "Track", "DISCNUMBER": "Disc"}
        for key, values in pairs.items():
            t[renamed.get(key, key.title() if key in ("TITLE", "ARTIST", "ALBUM") else key)] = (
                values
            )
        if picture is not None:
            apev2 = _module("mutagen.apev2")
            t["Cover Art (Front)"] = apev2.APEValue(b"cover.jpg\x00" + picture, apev2.BINARY)
    f.save()


def _id3(t: Any, tags: Tags, picture: bytes | None, mime: str, kind: str) -> None:
    id3 = _module("mutagen.id3")

    def number(n: int | None, total: int | None) -> str:
        return f"{n}/{total}" if total else str(n)

    text = {
        "TIT2": tags.title,
        "TALB": tags.album,
        "TDRC": tags.date,
        "TSRC": tags.isrc,
    }
    for frame, value in text.items():
        if value:
            t.add(getattr(id3, frame)(encoding=3, text=[value]))
    if tags.artists:
        t.add(id3.TPE1(encoding=3, text=list(tags.artists)))
    if tags.album_artists:
        t.add(id3.TPE2(encoding=3, text=list(tags.album_artists)))
    if tags.track_number:
        t.add(id3.TRCK(encoding=3, text=[number(tags.track_number, tags.track_total)]))
    if tags.disc_number:
        t.add(id3.TPOS(encoding=3, text=[number(tags.disc_number, tags.disc_total)]))
    if tags.musicbrainz_recording:
        t.add(id3.UFID(owner="http://musicbrainz.org", data=tags.musicbrainz_recording.encode()))
    if tags.musicbrainz_release:
        t.add(id3.TXXX(encoding=3, desc="MusicBrainz Album Id", text=[tags.musicbrainz_release]))
    if picture is not None:
        t.add(id3.APIC(encoding=3, mime=mime, type=_KIND_CODE.get(kind, 0), desc="", data=picture))


def _mp4(t: Any, tags: Tags, picture: bytes | None, mime: str) -> None:
    mp4 = _module("mutagen.mp4")

    itunes = "----:com.apple.iTunes:"
    simple = {"\xa9nam": tags.title, "\xa9alb": tags.album, "\xa9day": tags.date}
    for key, value in simple.items():
        if value:
            t[key] = [value]
    if tags.artists:
        t["\xa9ART"] = list(tags.artists)
    if tags.album_artists:
        t["aART"] = list(tags.album_artists)
    if tags.track_number:
        t["trkn"] = [(tags.track_number, tags.track_total or 0)]
    if tags.disc_number:
        t["disk"] = [(tags.disc_number, tags.disc_total or 0)]
    free = {
        "ISRC": tags.isrc,
        "MusicBrainz Track Id": tags.musicbrainz_recording,
        "MusicBrainz Album Id": tags.musicbrainz_release,
    }
    for key, value in free.items():
        if value:
            t[itunes + key] = [mp4.MP4FreeForm(value.encode())]
    if picture is not None:
        fmt = mp4.MP4Cover.FORMAT_PNG if mime == "image/png" else mp4.MP4Cover.FORMAT_JPEG
        t["covr"] = [mp4.MP4Cover(picture, imageformat=fmt)]


def _asf(t: Any, tags: Tags, picture: bytes | None, mime: str, kind: str) -> None:
    values = {
        "Title": tags.title,
        "WM/AlbumTitle": tags.album,
        "WM/Year": tags.date,
        "WM/ISRC": tags.isrc,
        "WM/TrackNumber": str(tags.track_number) if tags.track_number else None,
        "WM/PartOfSet": str(tags.disc_number) if tags.disc_number else None,
        "MusicBrainz/Track Id": tags.musicbrainz_recording,
        "MusicBrainz/Album Id": tags.musicbrainz_release,
    }
    for key, value in values.items():
        if value:
            t[key] = [value]
    if tags.artists:
        t["Author"] = list(tags.artists)
    if tags.album_artists:
        t["WM/AlbumArtist"] = list(tags.album_artists)
    if picture is not None:
        blob = (
            struct.pack("<BI", _KIND_CODE.get(kind, 0), len(picture))
            + mime.encode("utf-16-le")
            + b"\x00\x00"
            + b"\x00\x00"
            + picture
        )
        t["WM/Picture"] = [_module("mutagen.asf").ASFByteArrayAttribute(blob)]
