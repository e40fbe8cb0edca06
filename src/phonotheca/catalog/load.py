"""Write :class:`~phonotheca.catalog.batch.Batch` rows into the catalog, set-wise.

The writer is the one process an import cannot parallelise, so it does as little
Python per row as possible. A batch's tracks and their links arrive as a SQLite image
built by the worker that parsed them (:func:`~phonotheca.catalog.batch.stage_rows`):
attached, each table moves with one ``INSERT ... SELECT``, public ids becoming rowids
inside SQL (``rowid + base`` for the batch's new tracks, a primary-key subquery for
albums and artists). Ids that already exist take a slower per-id path, and so does a
batch whose new tracks *take over* album-less tracks they claim (:attr:`Batch.claims`,
docs/FORMAT.md §6.4). Artists and albums go first (:mod:`phonotheca.catalog.entities`).
The search index is maintained in the same transaction. Callers own the transaction, so
a batch and the import's progress commit together."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from phonotheca.catalog.batch import (
    RECORD_REF_LINES,
    STAGE_TABLES,
    Batch,
    TrackTuple,
    stage_rows,
)
from phonotheca.catalog.entities import ALBUM_ID, ARTIST_OF_C3, EntityWriter, lookup
from phonotheca.catalog.playlist_record import PlaylistCounts, PlaylistRow
from phonotheca.catalog.records import cut_chunks
from phonotheca.catalog.schema import next_id
from phonotheca.catalog.search import index_tracks, search_is_stale, unindex_tracks
from phonotheca.sources.jsonl import newer_or_same

_TRACK_COLUMNS = (
    "public_id, title, artist_credit, album_id, disc_number, track_number, duration_ms,"
    " isrc, explicit, popularity, listens, markets, updated_at, fingerprint, record_ref"
)
STAGE = "phonotheca_stage"
"""The schema name of the attached in-memory database that holds a batch's image."""


@dataclass
class WriteResult:
    loaded: int = 0
    """Records written or merged into the catalog (superseded ones included)."""
    superseded: int = 0
    """Records older (``updated_at``) than another record of their id, or replaced by
    a later line of the same import."""
    taken_over: int = 0
    """Album-less tracks whose row a claiming track took over (:attr:`Batch.claims`)."""
    playlists: PlaylistCounts = field(default_factory=PlaylistCounts)


class PlaylistSink(Protocol):
    """Writes a batch's playlists (matching their entries): returns their counts and
    how many were superseded by a later record of their id in the batch."""

    def write(self, rows: list[PlaylistRow]) -> tuple[PlaylistCounts, int]: ...


class Loader:
    """Writes batches into one catalog connection."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        import_id: int,
        kind: str,
        playlists: PlaylistSink | None = None,
    ) -> None:
        self.conn = conn
        self.import_id = import_id
        self.kind = kind
        self.playlists = playlists
        self._images = 0  # batch images attached so far
        if STAGE not in {row[1] for row in conn.execute("PRAGMA database_list")}:
            conn.execute(f"ATTACH ':memory:' AS {STAGE}")
        # A bulk load marks the index stale and rebuilds it once at the end; otherwise
        # each batch keeps it current.
        self.maintain_search = not search_is_stale(conn)
        self.entities = EntityWriter(conn, maintain_search=self.maintain_search)

    def write(self, batch: Batch) -> WriteResult:
        """Write one batch; the caller commits."""
        stage = self._attach_image(batch)
        self.entities.write(batch.artists, batch.albums, stage)
        chunk_base = self._write_chunks(batch.chunks)
        result = self._write_tracks(batch, chunk_base, stage)
        if batch.playlists:
            if self.playlists is None:
                raise ValueError("a batch with playlists needs a loader with a playlist sink")
            result.playlists, superseded = self.playlists.write(batch.playlists)
            result.loaded += len(batch.playlists)
            result.superseded += superseded
        return result

    # -- source records -----------------------------------------------------------------

    def _write_chunks(self, chunks: list[bytes]) -> int:
        if not chunks:
            return 0
        base = next_id(self.conn, "source_chunks")
        self.conn.executemany(
            "INSERT INTO source_chunks(id, import_id, kind, data) VALUES (?,?,?,?)",
            [(base + i, self.import_id, self.kind, c) for i, c in enumerate(chunks)],
        )
        return base

    # -- tracks -------------------------------------------------------------------------

    def _write_tracks(self, batch: Batch, chunk_base: int, stage: str) -> WriteResult:
        count = batch.track_count
        result = WriteResult(loaded=count + batch.superseded, superseded=batch.superseded)
        if not count:
            if self.maintain_search:
                self._reindex_pending()
            return result
        takeover = self._takeovers(batch.claims) if batch.claims else {}
        if takeover:
            self._upsert_tracks(self._staged_rows(batch, stage), chunk_base, result, takeover)
            return result
        base = next_id(self.conn, "tracks")
        self.conn.execute("SAVEPOINT tracks")
        try:
            self.conn.execute(
                f"INSERT INTO tracks(id, {_TRACK_COLUMNS}) SELECT rowid - 1 + {base},"
                " c1, c2, c3, (SELECT id FROM albums WHERE public_id = c4), c5, c6, c7, c8,"
                f" c9, c10, c11, c12, c13, c14, c15 + {chunk_base * RECORD_REF_LINES}"
                f" FROM {stage}tracks ORDER BY rowid"
            )
        except sqlite3.IntegrityError:
            # Some ids exist already: the rare path, done per id.
            self.conn.execute("ROLLBACK TO tracks")
            self.conn.execute("RELEASE tracks")
            self._upsert_tracks(self._staged_rows(batch, stage), chunk_base, result, {})
            return result
        self.conn.execute("RELEASE tracks")
        self._insert_links(stage, base)
        if self.maintain_search:
            index_tracks(self.conn, "t.id BETWEEN ? AND ?", (base, base + count - 1))
            self._reindex_pending()
        return result

    def _attach_image(self, batch: Batch) -> str:
        """Make a batch's track rows and links the tables of the attached stage database
        (a worker staged them, else this process does, see :func:`stage_rows`); return
        the prefix of its tables for the SQL that reads them.

        Every image has the same schema, so SQLite would not re-prepare a statement
        compiled against an earlier one, and such a statement reads stale pages (seen:
        wrong counts). The prefix carries a comment numbering the images: the text of
        each statement differs, so none is reused from the statement cache.
        """
        self.conn.deserialize(stage_rows(batch).image, name=STAGE)
        self._images += 1
        return f"/* image {self._images} */ {STAGE}."

    def _takeovers(self, claims: list[tuple[int, str]]) -> dict[int, int]:
        """{track index: rowid of the album-less track it takes over} for the claims whose
        track is in the catalog; the first claimant of an id wins."""
        ids = [pid for _, pid in claims]
        # One probe of the public-id index: with no track in the claims' range at all
        # (the common case: no standalone recording loaded), the batch costs nothing more.
        probe = "SELECT 1 FROM tracks WHERE public_id BETWEEN ? AND ? LIMIT 1"
        if self.conn.execute(probe, (min(ids), max(ids))).fetchone() is None:
            return {}
        out: dict[int, int] = {}
        taken: set[int] = set()
        for key, rowid in self.conn.execute(
            "SELECT j.key, t.id FROM json_each(?) j JOIN tracks t ON t.public_id = j.value"
            " WHERE t.album_id IS NULL ORDER BY j.key",
            (json.dumps(ids),),
        ):
            if rowid not in taken:
                taken.add(rowid)
                out.setdefault(claims[key][0], rowid)
        return out

    def _staged_rows(self, batch: Batch, stage: str) -> Batch:
        """The attached image's rows as lists again (for the per-id path)."""
        out = Batch(first_line=batch.first_line, last_line=batch.last_line, chunks=batch.chunks)
        for table, width in STAGE_TABLES.items():
            columns = ", ".join(f"c{i}" for i in range(1, width + 1))
            rows = self.conn.execute(f"SELECT {columns} FROM {stage}{table} ORDER BY rowid")
            setattr(out, table, rows.fetchall())
        return out

    def _insert_links(self, stage: str, base: int) -> None:
        """Credits, genres and external ids of the attached image's tracks; track ``i``
        has rowid ``base + i`` (the per-id path stages rowids in place of indexes, base 0).
        """
        self.conn.execute(
            "INSERT INTO track_artists(track_id, position, artist_id, credited_as, join_phrase)"
            f" SELECT c1 + {base}, c2, {ARTIST_OF_C3}, c4, c5 FROM {stage}credits"
            " ORDER BY rowid"
        )
        if self.conn.execute(f"SELECT 1 FROM {stage}genres LIMIT 1").fetchone():
            self.entities.genre_ids(
                g for (g,) in self.conn.execute(f"SELECT c2 FROM {stage}genres ORDER BY rowid")
            )
            self.conn.execute(
                "INSERT OR IGNORE INTO track_genres(track_id, genre_id) SELECT c1 + "
                f"{base}, (SELECT id FROM genres WHERE name = c2) FROM {stage}genres"
                " ORDER BY rowid"
            )
        self.conn.execute(
            "INSERT OR IGNORE INTO external_ids(entity, entity_id, scheme, value)"
            f" SELECT 'track', c1 + {base}, c2, c3 FROM {stage}external_ids ORDER BY rowid"
        )
        if self.conn.execute(f"SELECT 1 FROM {stage}aliases LIMIT 1").fetchone():
            self.conn.execute(
                "INSERT OR IGNORE INTO track_aliases(track_id, name, sort_name, locale)"
                f" SELECT c1 + {base}, c2, c3, c4 FROM {stage}aliases ORDER BY rowid"
            )

    def _upsert_tracks(
        self, batch: Batch, chunk_base: int, result: WriteResult, takeover: dict[int, int]
    ) -> None:
        """The per-id path: new ids are inserted, known ones replaced (§1.6), and a new
        track in ``takeover`` replaces the album-less track whose row it takes."""
        tracks: list[TrackTuple] = batch.tracks
        found = {
            str(pid): (int(tid), ua, fp)  # type: ignore[call-overload]
            for pid, tid, ua, fp in lookup(
                self.conn, "tracks", "id, updated_at, fingerprint", [t[0] for t in tracks]
            )
        }
        fresh = next_id(self.conn, "tracks")
        rowid: dict[int, int] = {}  # batch index -> rowid
        new: list[int] = []
        replace: list[int] = []
        taken: list[int] = []
        for i, t in enumerate(tracks):
            hit = found.get(t[0])
            if hit is None and i in takeover:
                rowid[i] = takeover[i]
                replace.append(i)
                taken.append(i)
            elif hit is None:
                rowid[i] = fresh
                fresh += 1
                new.append(i)
            elif hit[2] == t[13]:
                pass  # the very record the catalog holds: nothing to do
            elif newer_or_same(t[12], hit[1]):  # type: ignore[arg-type]
                rowid[i] = hit[0]
                replace.append(i)
            else:
                result.superseded += 1
        if batch.chunks:
            tracks = self._keep_loaded_lines(batch.chunks, chunk_base, tracks, (*new, *replace))
        if new:
            self.conn.executemany(
                f"INSERT INTO tracks(id, {_TRACK_COLUMNS}) VALUES"
                f" (?, ?,?,?,{ALBUM_ID},?,?,?,?,?,?,?,?,?,?,? + {chunk_base * RECORD_REF_LINES})",
                [(rowid[i], *tracks[i]) for i in new],
            )
        if taken:
            self._keep_placeholders([rowid[i] for i in taken])
            result.taken_over += len(taken)
        if replace:
            ids = json.dumps([rowid[i] for i in replace])
            if self.maintain_search:
                unindex_tracks(self.conn, "t.id IN (SELECT value FROM json_each(?))", (ids,))
            self.conn.executemany(
                "UPDATE tracks SET public_id=?, title=?, artist_credit=?,"
                f" album_id={ALBUM_ID}, disc_number=?, track_number=?, duration_ms=?, isrc=?,"
                " explicit=?, popularity=?, listens=?, markets=?, updated_at=?, fingerprint=?,"
                f" record_ref=? + {chunk_base * RECORD_REF_LINES} WHERE id=?",
                [(*tracks[i], rowid[i]) for i in replace],
            )
            for table in ("track_artists", "track_genres", "track_aliases"):
                self.conn.execute(
                    f"DELETE FROM {table} WHERE track_id IN (SELECT value FROM json_each(?))",
                    (ids,),
                )
            self.conn.execute(
                "DELETE FROM external_ids WHERE entity='track'"
                " AND entity_id IN (SELECT value FROM json_each(?))",
                (ids,),
            )
        done = sorted(new + replace)
        relinked = Batch(
            first_line=batch.first_line,
            last_line=batch.last_line,
            credits=[(rowid[c[0]], *c[1:]) for c in batch.credits if c[0] in rowid],
            genres=[(rowid[g[0]], g[1]) for g in batch.genres if g[0] in rowid],
            external_ids=[(rowid[e[0]], *e[1:]) for e in batch.external_ids if e[0] in rowid],
            aliases=[(rowid[a[0]], *a[1:]) for a in batch.aliases if a[0] in rowid],
        )
        self._insert_links(self._attach_image(relinked), 0)
        if taken:
            self._restore_placeholders()
        if self.maintain_search:
            if done:
                index_tracks(
                    self.conn,
                    "t.id IN (SELECT value FROM json_each(?))",
                    (json.dumps([rowid[i] for i in done]),),
                )
            self._reindex_pending()

    # What a track of a recording knows that a release's record of it does not: the
    # recording's ISRCs and aliases (from its recording document), a duration, and the
    # listens a listens import gave it. The record taking over keeps them, so the catalog
    # is the same whichever was imported first (a release, then its recordings update
    # its tracks the same way: §6.4).
    _PLACEHOLDER_DDL = (
        "CREATE TEMP TABLE IF NOT EXISTS takeover(track_id INTEGER PRIMARY KEY, isrc,"
        " duration_ms, listens, listeners, listens_import, popularity, popularity_derived)",
        "CREATE TEMP TABLE IF NOT EXISTS takeover_isrcs(track_id, value)",
        "CREATE TEMP TABLE IF NOT EXISTS takeover_aliases(track_id, name, sort_name, locale)",
    )

    def _keep_placeholders(self, rowids: list[int]) -> None:
        """Save what the album-less tracks about to be taken over hold (see above)."""
        for ddl in self._PLACEHOLDER_DDL:
            self.conn.execute(ddl)
        for table in ("takeover", "takeover_isrcs", "takeover_aliases"):
            self.conn.execute(f"DELETE FROM temp.{table}")
        ids = json.dumps(rowids)
        self.conn.execute(
            "INSERT INTO temp.takeover SELECT id, isrc, duration_ms, listens, listeners,"
            " listens_import, popularity, popularity_derived FROM tracks"
            " WHERE id IN (SELECT value FROM json_each(?))",
            (ids,),
        )
        self.conn.execute(
            "INSERT INTO temp.takeover_isrcs SELECT entity_id, value FROM external_ids"
            " WHERE entity = 'track' AND scheme = 'isrc'"
            " AND entity_id IN (SELECT value FROM json_each(?))",
            (ids,),
        )
        self.conn.execute(
            "INSERT INTO temp.takeover_aliases SELECT track_id, name, sort_name, locale"
            " FROM track_aliases WHERE track_id IN (SELECT value FROM json_each(?))",
            (ids,),
        )

    def _restore_placeholders(self) -> None:
        """Give the taken-over rows back what :meth:`_keep_placeholders` saved: the
        recording's ISRCs (its first one in ``isrc``) and aliases when it had any, its
        duration when the new record has none, and its listens and popularity when the
        new record brings neither."""
        self.conn.execute(
            "UPDATE tracks SET isrc = coalesce(o.isrc, tracks.isrc),"
            " duration_ms = coalesce(tracks.duration_ms, o.duration_ms)"
            " FROM temp.takeover o WHERE tracks.id = o.track_id"
        )
        self.conn.execute(
            "UPDATE tracks SET listens = o.listens, listeners = o.listeners,"
            " listens_import = o.listens_import, popularity = o.popularity,"
            " popularity_derived = o.popularity_derived FROM temp.takeover o"
            " WHERE tracks.id = o.track_id AND tracks.listens IS NULL"
            " AND tracks.popularity IS NULL"
        )
        self.conn.execute(
            "DELETE FROM external_ids WHERE entity = 'track' AND scheme = 'isrc'"
            " AND entity_id IN (SELECT track_id FROM temp.takeover_isrcs)"
        )
        self.conn.execute(
            "DELETE FROM track_aliases"
            " WHERE track_id IN (SELECT track_id FROM temp.takeover_aliases)"
        )
        self.conn.execute(
            "INSERT OR IGNORE INTO external_ids(entity, entity_id, scheme, value)"
            " SELECT 'track', track_id, 'isrc', value FROM temp.takeover_isrcs"
        )
        self.conn.execute(
            "INSERT OR IGNORE INTO track_aliases(track_id, name, sort_name, locale)"
            " SELECT track_id, name, sort_name, locale FROM temp.takeover_aliases"
        )

    def _keep_loaded_lines(
        self,
        chunks: list[bytes],
        chunk_base: int,
        tracks: list[TrackTuple],
        loaded: Sequence[int],
    ) -> list[TrackTuple]:
        """Store only the source lines of the tracks loaded: a re-imported file's chunk
        where a few records changed keeps those few (records.cut_chunks). Returns the
        tracks with their record refs moved to match."""
        kept, moved = cut_chunks(chunks, [t[14] for t in tracks], [tracks[i][14] for i in loaded])
        dropped = [(chunk_base + c,) for c, data in enumerate(kept) if data is None]
        if dropped:
            self.conn.executemany("DELETE FROM source_chunks WHERE id = ?", dropped)
        cut = [
            (data, chunk_base + c)
            for c, (data, whole) in enumerate(zip(kept, chunks, strict=True))
            if data is not None and data is not whole
        ]
        if cut:
            self.conn.executemany("UPDATE source_chunks SET data = ? WHERE id = ?", cut)
        if not moved:
            return tracks
        return [(*t[:14], moved[t[14]]) if t[14] in moved else t for t in tracks]

    def _reindex_pending(self) -> None:
        """Re-add tracks taken out of the index because their album was retitled or their
        artists' aliases changed."""
        exists = self.conn.execute(
            "SELECT 1 FROM sqlite_temp_master WHERE name = 'reindex'"
        ).fetchone()
        if exists is None:
            return
        self.conn.execute(
            "DELETE FROM temp.reindex WHERE track_id IN (SELECT track_id FROM search_rank)"
        )
        index_tracks(self.conn, "t.id IN (SELECT track_id FROM temp.reindex)")
        self.conn.execute("DELETE FROM temp.reindex")
