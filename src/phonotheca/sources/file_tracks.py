"""Catalog rows for the tracks that audio files create when they match nothing.

A new track gets its title, artists, album, numbers and ISRC from the file's tags and
is written through the normal loader (:class:`~phonotheca.catalog.load.Loader`), so
search, export and the planner see it like any other. Its public id is derived from
the tags (``derived_id("track", credit, title, album)``), so the same tags give the same
id on any machine; a file without a title tag, or whose derived id is taken by a
track it did not match (a duration more than 3 s off), gets
``derived_id("track", "sha256", <file hash>)`` instead. Before a track is made,
:meth:`TrackMaker.existing` looks for the one these ids name: an identical untagged file,
or tags with a title and no artist, find the track an earlier file made.

Albums are looked up before one is made: by MusicBrainz release id, then by title and
album artist through the search index; a new album gets the derived id the JSONL
import gives to albums without one. Artists get derived ids from their names. Rows
that exist already are never rewritten: a file does not overwrite what a metadata
source said.
"""

from __future__ import annotations

import re
import sqlite3
import unicodedata
from pathlib import Path

import msgspec
import zstandard

from phonotheca.audio.probe import StreamInfo, Tags
from phonotheca.catalog.batch import (
    RECORD_REF_LINES,
    AlbumRow,
    ArtistRow,
    Batch,
    fingerprint,
    fingerprint_bytes,
)
from phonotheca.catalog.isrc import parse_isrc
from phonotheca.catalog.record import RecordError, derived_id, parse_date
from phonotheca.sources.matching import (
    MAX_CANDIDATES,
    MAX_QUERY_WORDS,
    Candidate,
    FileFacts,
    close_durations,
    fold,
    main_artist,
    split_credit,
)

SOURCE_KIND = "files"
RECORDS_PER_CHUNK = 1000
_DATE = re.compile(r"\d{4}(?:-\d{2}(?:-\d{2})?)?")
_WORD = re.compile(r"[^\W_]+")
Credits = tuple[tuple[str, str | None, str], ...]


class _Record(msgspec.Struct, omit_defaults=True):
    """The source record kept for a created track: what the file said (never its path)."""

    sha256: str
    container: str
    codec: str
    duration_ms: int
    tags: dict[str, object]


_encode = msgspec.json.Encoder().encode


class TrackMaker:
    """Collects the rows of new tracks for one batch; :meth:`take` hands them over."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self._artists_known: set[str] = set()
        self._albums: dict[tuple[str, str, str, str], tuple[str, str]] = {}
        self.invalid_isrc = 0
        self._reset()

    def _reset(self) -> None:
        self._batch = Batch(first_line=0, last_line=0)
        self._lines: list[bytes] = []
        self._pending: dict[str, int | None] = {}  # public id -> duration of new tracks

    # -- artists and albums -------------------------------------------------------------

    def _credits(self, credit_names: list[tuple[str, str]]) -> tuple[Credits, str]:
        """Artist credits (public id, credited as, join phrase) and the printed credit;
        artists not in the catalog yet are added to the batch."""
        out = []
        printed = []
        for name, join in credit_names:
            pid = derived_id("artist", name)
            if pid not in self._artists_known:
                exists = self.conn.execute(
                    "SELECT 1 FROM artists WHERE public_id = ?", (pid,)
                ).fetchone()
                if exists is None and pid not in self._batch.artists:
                    row = ArtistRow(name)
                    self._batch.artists[pid] = (fingerprint(row), row)
                elif exists is not None:
                    self._artists_known.add(pid)
            out.append((pid, None, join))
            printed += [name, join]
        return tuple(out), "".join(printed)

    def _album(self, tags: Tags, track_names: list[tuple[str, str]]) -> tuple[str, str] | None:
        """(public id, title) of the file's album: found in the catalog or added."""
        if not tags.album:
            return None
        names = (
            [
                (n, ", " if i < len(tags.album_artists) - 1 else "")
                for i, n in enumerate(tags.album_artists)
            ]
            if tags.album_artists
            else track_names
        )
        credit_text = "".join(n + j for n, j in names)
        date = None
        precision = None
        m = _DATE.match(tags.date or "")
        if m:
            try:
                date, precision = parse_date(m.group(0), None)
            except RecordError:
                date = None
        key = (
            fold(tags.album),
            fold(main_artist(credit_text)),
            tags.musicbrainz_release or "",
            date or "",
        )
        hit = self._albums.get(key)
        if hit is not None:
            return hit
        found = self._find_album(tags.album, credit_text, tags.musicbrainz_release)
        if found is None:
            pid = derived_id("album", credit_text, tags.album, date or "")
            if self.conn.execute("SELECT 1 FROM albums WHERE public_id = ?", (pid,)).fetchone():
                found = (pid, tags.album)
            else:
                credits, printed = self._credits(names)
                row = AlbumRow(
                    title=tags.album,
                    artist_credit=printed,
                    credits=credits,
                    release_date=date,
                    release_date_precision=precision,
                    total_tracks=tags.track_total,
                    total_discs=tags.disc_total,
                    external_ids=(
                        (("musicbrainz_release", tags.musicbrainz_release),)
                        if tags.musicbrainz_release
                        else ()
                    ),
                )
                self._batch.albums[pid] = (fingerprint(row), row)
                found = (pid, tags.album)
        self._albums[key] = found
        return found

    def _find_album(self, title: str, credit: str, mbid: str | None) -> tuple[str, str] | None:
        if mbid:
            row = self.conn.execute(
                "SELECT a.public_id, a.title FROM external_ids e JOIN albums a"
                " ON a.id = e.entity_id WHERE e.entity = 'album'"
                " AND e.scheme = 'musicbrainz_release' AND e.value = ? ORDER BY a.id LIMIT 1",
                (mbid,),
            ).fetchone()
            if row is not None:
                return str(row[0]), str(row[1])
        artist = main_artist(credit)
        words = (
            _WORD.findall(unicodedata.normalize("NFC", title))
            + _WORD.findall(unicodedata.normalize("NFC", artist))
        )[:MAX_QUERY_WORDS]
        if not words:
            return None
        want = (fold(title), fold(artist))
        try:
            rows = self.conn.execute(
                "SELECT DISTINCT a.public_id, a.title, a.artist_credit FROM tracks t"
                " JOIN albums a ON a.id = t.album_id"
                " WHERE t.id IN (SELECT track_id FROM search_rank WHERE key IN"
                " (SELECT rowid FROM track_search WHERE track_search MATCH ?"
                "  ORDER BY rowid LIMIT ?)) ORDER BY a.id",
                (" ".join(f'"{w}"' for w in words), MAX_CANDIDATES),
            ).fetchall()
        except sqlite3.OperationalError:
            return None
        for pid, atitle, acredit in rows:
            if (fold(atitle), fold(main_artist(acredit))) == want:
                return str(pid), str(atitle)
        return None

    # -- tracks -------------------------------------------------------------------------

    @staticmethod
    def tag_id(facts: FileFacts) -> str | None:
        """The id a file's tags give its track (None without a title tag)."""
        if not facts.tags.title:
            return None
        return derived_id("track", facts.credit, facts.tags.title, facts.tags.album or "")

    @staticmethod
    def sha_id(sha256: str) -> str:
        return derived_id("track", "sha256", sha256)

    def _duration(self, pid: str) -> tuple[bool, int | None]:
        """(exists, duration) of a track by public id, in this batch or the catalog."""
        if pid in self._pending:
            return True, self._pending[pid]
        row = self.conn.execute(
            "SELECT duration_ms FROM tracks WHERE public_id = ?", (pid,)
        ).fetchone()
        return (False, None) if row is None else (True, row[0])

    def existing(self, facts: FileFacts, sha256: str) -> tuple[str, str] | None:
        """(public id, method) of the track this file would create, when it exists already:
        the same tags (``name``; a title without an artist cannot match by name) or the
        same bytes of an untagged file (``sha256``), with a duration within tolerance."""
        for pid, method in ((self.tag_id(facts), "name"), (self.sha_id(sha256), "sha256")):
            if pid is None:
                continue
            exists, duration = self._duration(pid)
            if exists and close_durations(duration, facts.duration_ms):
                return pid, method
        return None

    def _track_id(self, facts: FileFacts, sha256: str) -> str:
        for pid in (self.tag_id(facts), self.sha_id(sha256)):
            if pid is not None and not self._duration(pid)[0]:
                return pid
        return derived_id("track", "sha256", sha256, facts.path)

    def add(self, facts: FileFacts, sha256: str, stream: StreamInfo) -> Candidate:
        """Rows for a new track made from the file's tags; returns it as a match candidate."""
        tags = facts.tags
        title = tags.title or Path(facts.path).stem
        names = (
            split_credit(tags.artists[0])
            if len(tags.artists) == 1
            else [
                (n, ", " if i < len(tags.artists) - 1 else "") for i, n in enumerate(tags.artists)
            ]
        )
        credits, printed = self._credits(names)
        album = self._album(tags, names)
        pid = self._track_id(facts, sha256)
        isrc = None
        if tags.isrc:
            isrc, valid = parse_isrc(tags.isrc)
            self.invalid_isrc += not valid
        index = len(self._batch.tracks)
        line = _encode(
            _Record(
                sha256=sha256,
                container=stream.container,
                codec=stream.codec,
                duration_ms=stream.duration_ms,
                tags={
                    f: getattr(tags, f)
                    for f in tags.__struct_fields__
                    if getattr(tags, f) not in (None, ())
                },
            )
        )
        ref = (index // RECORDS_PER_CHUNK) * RECORD_REF_LINES + index % RECORDS_PER_CHUNK
        self._lines.append(line)
        self._batch.tracks.append(
            (
                pid,
                title,
                printed,
                album[0] if album else None,
                tags.disc_number,
                tags.track_number,
                stream.duration_ms,
                isrc,
                None,
                None,
                None,
                None,
                None,
                fingerprint_bytes(line),
                ref,
            )
        )
        self._batch.credits += [(index, pos, *c) for pos, c in enumerate(credits)]
        if tags.musicbrainz_recording:
            self._batch.external_ids.append(
                (index, "musicbrainz_recording", tags.musicbrainz_recording)
            )
        self._pending[pid] = stream.duration_ms
        return Candidate(pid, None, title, printed, album[1] if album else None, stream.duration_ms)

    def take(self) -> Batch | None:
        """The batch of new rows (None when no file created a track); starts a new one."""
        batch = self._batch
        lines = self._lines
        self._reset()
        if not batch.tracks:
            return None
        cctx = zstandard.ZstdCompressor(level=3)
        batch.chunks = [
            cctx.compress(b"\n".join(lines[i : i + RECORDS_PER_CHUNK]))
            for i in range(0, len(lines), RECORDS_PER_CHUNK)
        ]
        batch.read = batch.last_line = len(batch.tracks)
        batch.first_line = 1
        return batch
