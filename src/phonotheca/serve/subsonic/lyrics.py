"""Lyrics from the archived audio files' tags: ``getLyricsBySongId`` (OpenSubsonic
``songLyrics``) and ``getLyrics`` (by artist and title).

The file is read where ``stream`` serves it from: its slice of a tar volume, through a
file object that sees only that slice, so mutagen reads the tags (at the start of the
file, or near its end) and nothing else is loaded. Lyrics are found in:

- Vorbis comments (Ogg Vorbis, Ogg Opus, FLAC): ``LYRICS``, ``UNSYNCEDLYRICS`` (also
  ``UNSYNCED LYRICS``, ``SYNCEDLYRICS``), language from ``LANGUAGE``;
- ID3 (MP3, WAV, AIFF): ``USLT`` (each with its language) and ``SYLT`` in milliseconds;
- MP4 ``©lyr``, APEv2 ``Lyrics``, ASF ``WM/Lyrics``.

Text in LRC form (``[mm:ss.xx]line``) is synced: one line per time stamp, ordered by
time, with ``[offset:±ms]`` as the offset and ``[ar:]``/``[ti:]`` as the names to show;
other text is unsynced, one line per line. A language that is not a 2-3 letter code is
``xxx`` (unknown, as taggers write it). A song whose bytes this server does not hold, or
whose file has no lyrics, has none: an empty list, not an error.
"""

from __future__ import annotations

import io
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mutagen
from mutagen.id3 import ID3

from phonotheca.catalog import search
from phonotheca.serve.media import MediaLibrary, TrackMedia
from phonotheca.serve.subsonic.call import Call, Handler, expect_id
from phonotheca.serve.subsonic.envelope import MISSING_PARAMETER, NOT_FOUND, Payload, SubsonicError

UNKNOWN_LANGUAGE = "xxx"
VORBIS_KEYS = ("LYRICS", "UNSYNCEDLYRICS", "UNSYNCED LYRICS", "SYNCEDLYRICS")
SEARCH_HITS = 20
"""Songs of the catalog search looked at for ``getLyrics``."""
FILES_READ = 5
"""Files ``getLyrics`` opens at most looking for lyrics."""
MAX_LINES = 10_000
"""Lines of one text kept at most (a tag may hold anything)."""

_STAMP = re.compile(r"\[(\d{1,4}):(\d{1,2})(?:[.:](\d{1,3}))?\]")
_LRC_TAG = re.compile(r"\[([A-Za-z#]+)\s*:(.*)\]\s*$")
_WORD_STAMP = re.compile(r"<\d{1,4}:\d{1,2}(?:[.:]\d{1,3})?>")
_LANGUAGE = re.compile(r"[A-Za-z]{2,3}")


@dataclass
class Lyrics:
    """One text of lyrics, in the shape of OpenSubsonic ``structuredLyrics``."""

    lang: str
    synced: bool
    lines: list[tuple[int | None, str]]
    """(start in ms, or None when unsynced; the text of the line)."""
    offset: int = 0
    artist: str | None = None
    """The artist to show, when the lyrics name one (LRC ``[ar:]``)."""
    title: str | None = None

    def text(self) -> str:
        return "\n".join(value for _, value in self.lines)

    def payload(self, artist: str, title: str) -> Payload:
        return {
            "displayArtist": self.artist or artist,
            "displayTitle": self.title or title,
            "lang": self.lang,
            "offset": self.offset,
            "synced": self.synced,
            "line": [
                {"value": value} if start is None else {"start": start, "value": value}
                for start, value in self.lines
            ],
        }


# -- LRC ---------------------------------------------------------------------------------


def _millis(minutes: str, seconds: str, fraction: str | None) -> int:
    ms = (int(minutes) * 60 + int(seconds)) * 1000
    if fraction:
        ms += int(fraction.ljust(3, "0")[:3])  # ".5" 500 ms, ".05" 50 ms, ".005" 5 ms
    return ms


def _language(code: str | None) -> str | None:
    return code.lower() if code and _LANGUAGE.fullmatch(code.strip()) else None


def parse_lyrics(text: str, lang: str | None = None) -> Lyrics | None:
    """Lyrics from a tag's text: synced when it is LRC, else one line per line; None when
    it holds no words."""
    timed: list[tuple[int, int, str]] = []
    plain: list[str] = []
    meta: dict[str, str] = {}
    for raw in text.splitlines()[:MAX_LINES]:
        line = raw.strip()
        stamps: list[int] = []
        position = 0
        while (stamp := _STAMP.match(line, position)) is not None:
            stamps.append(_millis(*stamp.groups()))
            position = stamp.end()
        if stamps:
            value = _WORD_STAMP.sub("", line[position:]).strip()
            timed.extend((start, len(timed), value) for start in stamps)
        elif (tag := _LRC_TAG.match(line)) is not None:
            meta[tag.group(1).lower()] = tag.group(2).strip()
        else:
            plain.append(raw.rstrip())
    try:
        offset = int(meta.get("offset", "0").replace("+", "", 1))
    except ValueError:
        offset = 0
    language = _language(meta.get("la") or meta.get("lang") or meta.get("language")) or lang
    lyrics = Lyrics(
        lang=language or UNKNOWN_LANGUAGE,
        synced=bool(timed),
        lines=[(start, value) for start, _, value in sorted(timed)],
        offset=offset if timed else 0,
        artist=meta.get("ar") or None,
        title=meta.get("ti") or None,
    )
    if not timed:
        while plain and not plain[-1].strip():
            plain.pop()
        while plain and not plain[0].strip():
            plain.pop(0)
        lyrics.lines = [(None, value) for value in plain]
    return lyrics if lyrics.lines else None


# -- tags ----------------------------------------------------------------------------------


class _Slice(io.RawIOBase):
    """``length`` bytes at ``offset`` of a file, as a file of their own (read-only)."""

    def __init__(self, path: Path, offset: int, length: int) -> None:
        super().__init__()
        self._fd = os.open(path, os.O_RDONLY)
        self._offset = offset
        self._length = length
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, position: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._length}[whence]
        if base + position < 0:
            raise OSError(f"seek to {base + position}, before the start")
        self._position = base + position
        return self._position

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        want = max(0, min(len(view), self._length - self._position))
        data = os.pread(self._fd, want, self._offset + self._position) if want else b""
        view[: len(data)] = data
        self._position += len(data)
        return len(data)

    def close(self) -> None:
        if not self.closed:
            os.close(self._fd)
        super().close()


def _texts(tags: Any) -> list[tuple[str, str | None]]:
    """(text, language) of every lyrics tag mutagen found (Vorbis, MP4, APEv2, ASF)."""
    out: list[tuple[str, str | None]] = []
    try:
        language = _language(str(tags["LANGUAGE"][0]))
    except (KeyError, IndexError, TypeError, ValueError):
        language = None
    for key in (*VORBIS_KEYS, "\xa9lyr", "WM/Lyrics", "Lyrics"):
        try:
            values = tags[key]
        except (KeyError, ValueError, TypeError):
            continue
        if isinstance(values, str | bytes) or not isinstance(values, list | tuple):
            values = [values]
        out.extend((str(v), language) for v in values)
    return out


def _id3(tags: Any) -> list[Lyrics]:
    found: list[Lyrics] = []
    for frame in tags.getall("SYLT"):
        lang = _language(frame.lang) or UNKNOWN_LANGUAGE
        entries = [(str(text), int(time)) for text, time in frame.text]
        if frame.format == 2 and entries:  # milliseconds (1 is MPEG frames: not kept synced)
            lines = _sylt_lines(entries)
            found.append(Lyrics(lang=lang, synced=True, lines=sorted(lines, key=_start)))
        elif entries:
            found.append(
                Lyrics(lang=lang, synced=False, lines=[(None, t.strip()) for t, _ in entries])
            )
    for frame in tags.getall("USLT"):
        parsed = parse_lyrics(str(frame.text), _language(frame.lang))
        if parsed is not None:
            found.append(parsed)
    return found


def _start(line: tuple[int | None, str]) -> int:
    return line[0] or 0


def _sylt_lines(entries: list[tuple[str, int]]) -> list[tuple[int | None, str]]:
    """SYLT entries as lines: each entry one line, or, when entries are syllables (a line
    break starts a new line), the syllables of a line joined."""
    if not any(text.startswith(("\n", "\r")) for text, _ in entries[1:]):
        return [(time, text.strip()) for text, time in entries]
    lines: list[tuple[int | None, str]] = []
    for text, time in entries:
        if not lines or text.startswith(("\n", "\r")):
            lines.append((time, text.strip()))
        else:
            start, so_far = lines[-1]
            lines[-1] = (start, so_far + text)
    return lines


def read_lyrics(path: Path, offset: int, length: int) -> list[Lyrics]:
    """The lyrics in the tags of the audio file at ``offset`` of ``path`` (``length``
    bytes); an empty list when there are none or the file cannot be read."""
    try:
        with _Slice(path, offset, length) as fileobj:
            audio = mutagen.File(fileobj)
    except Exception:  # mutagen's parsers raise many kinds on malformed files
        return []
    tags = getattr(audio, "tags", None)
    if tags is None:
        return []
    found: list[Lyrics] = []
    if isinstance(tags, ID3):  # MP3, WAV, AIFF
        found = _id3(tags)
    else:
        for text, lang in _texts(tags):
            parsed = parse_lyrics(text, lang)
            if parsed is not None:
                found.append(parsed)
    unique: list[Lyrics] = []
    for lyrics in found:
        if lyrics not in unique:
            unique.append(lyrics)
    return unique


def track_lyrics(media: TrackMedia) -> list[Lyrics]:
    if not media.playable or media.path is None:
        return []
    return read_lyrics(media.path, media.offset, media.length)


# -- calls ---------------------------------------------------------------------------------


def _library(call: Call) -> MediaLibrary:
    library: MediaLibrary = call.ctx.media
    return library


def get_lyrics_by_song_id(call: Call) -> Payload:
    public_id = expect_id(call.require("id"), "track")
    media = _library(call).locate(public_id)
    if media is None:
        raise SubsonicError(NOT_FOUND, f"no song with id {public_id!r} in this catalog")
    return {
        "lyricsList": {
            "structuredLyrics": [
                lyrics.payload(media.artist_credit, media.title) for lyrics in track_lyrics(media)
            ]
        }
    }


def _candidates(call: Call, artist: str, title: str) -> list[TrackMedia]:
    """Songs titled ``title`` (by ``artist``, when given) that this server plays, from the
    catalog search (every word of both), most popular first."""
    want_title, want_artist = search.fold(title.strip()), search.fold(artist.strip())
    hits = search.search(call.conn, f"{artist} {title} ", SEARCH_HITS)
    names = {hit.id: [search.fold(name) for name in hit.artists] for hit in hits}
    media = _library(call).locate_many(
        [hit.id for hit in hits if search.fold(hit.title) == want_title]
    )
    ordered = [media[hit.id] for hit in hits if hit.id in media]
    return [
        found
        for found in ordered
        if found.playable
        and (
            not want_artist
            or want_artist in names[found.track_id]
            or want_artist in search.fold(found.artist_credit)
        )
    ]


def get_lyrics(call: Call) -> Payload:
    artist = call.get("artist") or ""
    title = call.get("title") or ""
    if not title.strip():
        raise SubsonicError(MISSING_PARAMETER, "required parameter 'title' is missing")
    for media in _candidates(call, artist, title)[:FILES_READ]:
        found = track_lyrics(media)
        if found:
            return {
                "lyrics": {
                    "artist": media.artist_credit,
                    "title": media.title,
                    "value": found[0].text(),
                }
            }
    return {"lyrics": {}}


ENDPOINTS: dict[str, Handler] = {
    "getLyricsBySongId": get_lyrics_by_song_id,
    "getLyrics": get_lyrics,
}
