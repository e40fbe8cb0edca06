"""Write playlists into the catalog: match their entries to tracks, keep every entry.

Entries are matched as ``import files`` matches a file (:mod:`.matching`): by MusicBrainz
recording id, then ISRC, then title, main artist and duration. The ids and ISRCs of a
whole batch of playlists are looked up in two queries; an entry left over costs one
query of the search index. An entry that matches nothing is kept with its metadata (a
playlist is never shortened) and counted. A playlist whose source record is the one the
catalog holds already is not written again, except that its unmatched entries are
matched again (tracks imported since may match them); a changed one replaces its row's
fields and all of its entries. The caller owns the transaction (docs/FORMAT.md §4.8).
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass

import zstandard

from phonotheca.audio.probe import Tags
from phonotheca.catalog.batch import RECORD_REF_LINES
from phonotheca.catalog.entities import lookup
from phonotheca.catalog.playlist_record import PlaylistCounts, PlaylistRow
from phonotheca.catalog.schema import next_id
from phonotheca.sources.matching import FileFacts, Matcher

CHUNK_LINES = 1000
CHUNK_BYTES = 4 << 20
"""A chunk of playlist records closes at this many lines or bytes (a playlist of
10,000 entries is ~3 MB of JSON)."""
CHUNK_LEVEL = 3


@dataclass
class _Stored:
    rowid: int
    fingerprint: int
    title: str
    creator: str | None
    complete: bool
    """Every entry is matched."""


class PlaylistWriter:
    """Writes the playlists of each batch through one catalog connection."""

    def __init__(self, conn: sqlite3.Connection, import_id: int) -> None:
        self.conn = conn
        self.import_id = import_id
        self.matcher = Matcher(conn, fingerprints=False)
        self.cctx = zstandard.ZstdCompressor(level=CHUNK_LEVEL)

    def write(self, rows: list[PlaylistRow]) -> tuple[PlaylistCounts, int]:
        """Write a batch's playlists; return their counts and how many records were
        superseded by a later one of the same id in the batch."""
        latest: dict[str, PlaylistRow] = {}
        for row in rows:
            latest[row.public_id] = row  # a later line of an id replaces an earlier one
        superseded = len(rows) - len(latest)
        stored = {
            str(pid): _Stored(
                int(rid),  # type: ignore[call-overload]
                int(fp or 0),  # type: ignore[call-overload]
                str(t),
                None if c is None else str(c),
                bool(complete),
            )
            for pid, rid, fp, t, c, complete in lookup(
                self.conn,
                "playlists",
                "id, fingerprint, title, creator, matched = entries",
                list(latest),
            )
        }
        unchanged = {p: stored[p] for p, r in latest.items() if _unchanged(stored.get(p), r)}
        rematch = [latest[p] for p, s in unchanged.items() if not s.complete]
        if rematch:
            for row, found in zip(rematch, self._match(rematch), strict=True):
                self._rematch(unchanged[row.public_id].rowid, found)
        counts = PlaylistCounts()
        if unchanged:
            counts.add(self._stored_counts([s.rowid for s in unchanged.values()]))
        changed = [r for p, r in latest.items() if p not in unchanged]
        if changed:
            matches = self._match(changed)
            refs = self._write_records(changed)
            for row, found, ref in zip(changed, matches, refs, strict=True):
                counts.add(self._write_one(row, found, ref, stored.get(row.public_id)))
        self.matcher.end_batch()
        return counts, superseded

    # -- matching -----------------------------------------------------------------------

    def _match(self, rows: list[PlaylistRow]) -> list[list[tuple[int | None, str | None]]]:
        """Per playlist, per entry: (track rowid, rule) or (None, None)."""
        facts = [
            [
                FileFacts(
                    path="",
                    tags=Tags(
                        title=title,
                        artists=(creator,) if creator else (),
                        album=album,
                        isrc=isrc,
                        musicbrainz_recording=mbid,
                    ),
                    duration_ms=duration,
                )
                for _, mbid, isrc, title, creator, album, duration in row.entries
            ]
            for row in rows
        ]
        self.matcher.prefetch([f for playlist in facts for f in playlist])
        found = [[self.matcher.match(f) for f in playlist] for playlist in facts]
        ids = sorted({m.public_id for playlist in found for m in playlist if m.public_id})
        rowid = {str(p): int(r) for p, r in lookup(self.conn, "tracks", "id", ids)}  # type: ignore[call-overload]
        return [
            [
                (rowid[m.public_id], m.method) if m.public_id in rowid else (None, None)
                for m in playlist
            ]
            for playlist in found
        ]

    # -- writing ------------------------------------------------------------------------

    def _write_records(self, rows: list[PlaylistRow]) -> list[int]:
        """Keep the source records in chunks of their kind; return each one's ref."""
        refs = [0] * len(rows)
        for kind in sorted({r.kind for r in rows}):
            group = [i for i, r in enumerate(rows) if r.kind == kind]
            start = 0
            while start < len(group):
                end, size = start, 0
                while end < len(group) and end - start < CHUNK_LINES and size < CHUNK_BYTES:
                    size += len(rows[group[end]].record)
                    end += 1
                chunk_id = next_id(self.conn, "source_chunks")
                data = self.cctx.compress(b"\n".join(rows[i].record for i in group[start:end]))
                self.conn.execute(
                    "INSERT INTO source_chunks(id, import_id, kind, data) VALUES (?,?,?,?)",
                    (chunk_id, self.import_id, kind, data),
                )
                for line, i in enumerate(group[start:end]):
                    refs[i] = chunk_id * RECORD_REF_LINES + line
                start = end
        return refs

    def _write_one(
        self,
        row: PlaylistRow,
        found: list[tuple[int | None, str | None]],
        ref: int,
        old: _Stored | None,
    ) -> PlaylistCounts:
        matched = sum(1 for track, _ in found if track is not None)
        durations = [e[6] for e in row.entries if e[6] is not None]
        values = (
            row.public_id,
            row.title,
            row.creator,
            row.annotation,
            row.created,
            row.identifier,
            len(row.entries),
            matched,
            sum(durations) if durations else None,
            row.extension,
            row.fingerprint,
            ref,
        )
        if old is None:
            rowid = next_id(self.conn, "playlists")
            self.conn.execute(
                "INSERT INTO playlists(public_id, title, creator, annotation, created,"
                " identifier, entries, matched, duration_ms, extension, fingerprint,"
                " record_ref, id) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (*values, rowid),
            )
        else:
            rowid = old.rowid
            self.conn.execute(
                "INSERT INTO playlist_search(playlist_search, rowid, title, creator)"
                " VALUES ('delete', ?, ?, ?)",
                (rowid, old.title, old.creator or ""),
            )
            self.conn.execute(
                "UPDATE playlists SET public_id=?, title=?, creator=?, annotation=?, created=?,"
                " identifier=?, entries=?, matched=?, duration_ms=?, extension=?,"
                " fingerprint=?, record_ref=? WHERE id=?",
                (*values, rowid),
            )
            self.conn.execute("DELETE FROM playlist_entries WHERE playlist_id = ?", (rowid,))
        self.conn.execute(
            "INSERT INTO playlist_search(rowid, title, creator) VALUES (?, ?, ?)",
            (rowid, row.title, row.creator or ""),
        )
        # One statement for all the entries (SQLite unpacks the JSON in C).
        self.conn.execute(
            "INSERT INTO playlist_entries(playlist_id, position, track_id, match, identifier,"
            " title, creator, album, duration_ms) SELECT ?, key, value->>0, value->>1,"
            " value->>2, value->>3, value->>4, value->>5, value->>6 FROM json_each(?)",
            (
                rowid,
                json.dumps(
                    [
                        (track, rule, ident, title, creator, album, duration)
                        for (ident, _, _, title, creator, album, duration), (track, rule) in zip(
                            row.entries, found, strict=True
                        )
                    ]
                ),
            ),
        )
        counts = PlaylistCounts(playlists=1, entries=len(row.entries))
        for track, rule in found:
            if track is None:
                counts.unmatched += 1
            else:
                setattr(counts, str(rule), getattr(counts, str(rule)) + 1)
        return counts

    def _rematch(self, rowid: int, found: list[tuple[int | None, str | None]]) -> None:
        """Give the unmatched entries of an unchanged playlist the tracks they match now;
        entries already matched keep theirs (one statement, and none when nothing new
        matched)."""
        new = [
            (track, rule, rowid, pos)
            for pos, (track, rule) in enumerate(found)
            if track is not None
        ]
        if not new:
            return
        cur = self.conn.execute(
            "UPDATE playlist_entries SET track_id = j.value->>0, match = j.value->>1"
            " FROM json_each(?) j WHERE playlist_id = j.value->>2"
            " AND position = j.value->>3 AND track_id IS NULL",
            (json.dumps(new),),
        )
        if cur.rowcount:
            self.conn.execute(
                "UPDATE playlists SET matched = matched + ? WHERE id = ?", (cur.rowcount, rowid)
            )

    def _stored_counts(self, rowids: list[int]) -> PlaylistCounts:
        """The counts of playlists the catalog holds as they are (read from the index of
        their entries: one query for the batch)."""
        counts = PlaylistCounts(playlists=len(rowids))
        for rule, n in self.conn.execute(
            "SELECT match, count(*) FROM playlist_entries"
            " WHERE playlist_id IN (SELECT value FROM json_each(?)) GROUP BY match",
            (json.dumps(rowids),),
        ):
            counts.entries += n
            if rule is None:
                counts.unmatched += n
            else:
                setattr(counts, rule, getattr(counts, rule) + n)
        return counts


def _unchanged(stored: _Stored | None, row: PlaylistRow) -> bool:
    return stored is not None and stored.fingerprint == row.fingerprint
