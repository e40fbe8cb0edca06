"""Write :class:`~phonotheca.catalog.batch.Batch` rows into the catalog, set-wise.

The writer is the one process an import cannot parallelise, so it does as little
Python per row as possible. A batch's tracks and their links arrive as a SQLite image
built by the worker that parsed them (:func:`~phonotheca.catalog.batch.stage_rows`):
attached, each table moves with one ``INSERT ... SELECT``, public ids becoming rowids
inside SQL (``rowid + base`` for the batch's new tracks, a primary-key subquery for
albums and artists). Ids that already exist take a slower per-id path. Artists and
albums, about a tenth of the rows, go through bounded caches. The search index is
maintained in the same transaction. Callers own the transaction, so a batch and the
import's progress commit together."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from phonotheca.catalog.batch import (
    RECORD_REF_LINES,
    STAGE_TABLES,
    AlbumRow,
    ArtistRow,
    Batch,
    TrackTuple,
    stage_rows,
)
from phonotheca.catalog.search import index_tracks, search_is_stale, unindex_tracks
from phonotheca.sources.jsonl import newer_or_same

# Caches are cleared when they pass this many entries: memory stays bounded whatever the
# catalog size, and input is usually grouped (an album's tracks are neighbours). A new
# album or artist is looked up in the catalog whether cached or not, so a larger cache
# saves only the lookups of ids seen again after a clear; 400,000 entries cost ~150 MB
# of the writer's memory by 10 M tracks for no measurable speed.
CACHE_LIMIT = 50_000

_TRACK_COLUMNS = (
    "public_id, title, artist_credit, album_id, disc_number, track_number, duration_ms,"
    " isrc, explicit, popularity, listens, markets, updated_at, fingerprint, record_ref"
)
_ALBUM_ID = "(SELECT id FROM albums WHERE public_id = ?)"
_ARTIST_ID = "(SELECT id FROM artists WHERE public_id = ?)"
_ALBUM_OF_C1 = "(SELECT id FROM albums WHERE public_id = c1)"
_ARTIST_OF_C3 = "(SELECT id FROM artists WHERE public_id = c3)"
STAGE = "phonotheca_stage"
"""The schema name of the attached in-memory database that holds a batch's image."""


@dataclass
class WriteResult:
    loaded: int = 0
    """Records written or merged into the catalog (superseded ones included)."""
    superseded: int = 0
    """Records older (``updated_at``) than another record of their id, or replaced by
    a later line of the same import."""


def _lookup(
    conn: sqlite3.Connection, table: str, columns: str, public_ids: Sequence[str]
) -> list[tuple[object, ...]]:
    """Rows of ``table`` for the given public ids, one query per 20k ids."""
    out: list[tuple[object, ...]] = []
    for i in range(0, len(public_ids), 20_000):
        chunk = json.dumps(public_ids[i : i + 20_000])
        out += conn.execute(
            f"SELECT public_id, {columns} FROM {table}"
            " WHERE public_id IN (SELECT value FROM json_each(?))",
            (chunk,),
        ).fetchall()
    return out


def _next_id(conn: sqlite3.Connection, table: str) -> int:
    return int(conn.execute(f"SELECT coalesce(max(id), 0) + 1 FROM {table}").fetchone()[0])


class Loader:
    """Writes batches into one catalog connection."""

    def __init__(self, conn: sqlite3.Connection, import_id: int, kind: str) -> None:
        self.conn = conn
        self.import_id = import_id
        self.kind = kind
        self._artists: dict[str, int] = {}  # public id -> fingerprint last written
        self._albums: dict[str, int] = {}
        self._genres: dict[str, int] = {}
        self._images = 0  # batch images attached so far
        if STAGE not in {row[1] for row in conn.execute("PRAGMA database_list")}:
            conn.execute(f"ATTACH ':memory:' AS {STAGE}")
        # A bulk load marks the index stale and rebuilds it once at the end; otherwise
        # each batch keeps it current.
        self.maintain_search = not search_is_stale(conn)

    def write(self, batch: Batch) -> WriteResult:
        """Write one batch; the caller commits."""
        for cache in (self._artists, self._albums, self._genres):
            if len(cache) > CACHE_LIMIT:
                cache.clear()
        self._write_artists(batch.artists)
        self._write_albums(batch.albums)
        chunk_base = self._write_chunks(batch.chunks)
        return self._write_tracks(batch, chunk_base)

    # -- artists and albums ------------------------------------------------------------

    def _split(
        self, table: str, cache: dict[str, int], rows: dict[str, tuple[int, object]]
    ) -> tuple[list[str], list[str]]:
        """Public ids to (insert, update): unknown ids are looked up first."""
        unknown = [pid for pid in rows if pid not in cache]
        for pid, fp in _lookup(self.conn, table, "fingerprint", unknown):
            cache[str(pid)] = int(fp or 0)  # type: ignore[call-overload]
        new: list[str] = []
        changed: list[str] = []
        for pid, (fp, _) in rows.items():
            old = cache.get(pid)
            if old is None:
                new.append(pid)
            elif old != fp:
                changed.append(pid)
            cache[pid] = fp
        return new, changed

    def _write_artists(self, artists: dict[str, tuple[int, ArtistRow]]) -> None:
        if not artists:
            return
        new, changed = self._split("artists", self._artists, artists)  # type: ignore[arg-type]
        if changed and self.maintain_search:
            self._before_artist_change(changed, artists)
        values = [
            (a.name, a.sort_name, a.disambiguation, fp, pid)
            for pid in (*new, *changed)
            for fp, a in (artists[pid],)
        ]
        if new:
            self.conn.executemany(
                "INSERT INTO artists(name, sort_name, disambiguation, fingerprint, public_id)"
                " VALUES (?,?,?,?,?)",
                values[: len(new)],
            )
        if changed:
            self.conn.executemany(
                "UPDATE artists SET name=?, sort_name=?, disambiguation=?, fingerprint=?"
                " WHERE public_id=?",
                values[len(new) :],
            )
            self.conn.executemany(
                f"DELETE FROM artist_aliases WHERE artist_id = {_ARTIST_ID}",
                [(p,) for p in changed],
            )
        aliases = [
            (pid, name, sort_name, locale)
            for pid in (*new, *changed)
            for name, sort_name, locale in artists[pid][1].aliases
        ]
        if aliases:
            self.conn.executemany(
                "INSERT OR REPLACE INTO artist_aliases(artist_id, name, sort_name, locale)"
                f" VALUES ({_ARTIST_ID},?,?,?)",
                aliases,
            )

    def _before_artist_change(
        self, changed: list[str], artists: dict[str, tuple[int, ArtistRow]]
    ) -> None:
        """Tracks of an artist whose aliases change leave the search index until re-added:
        the index holds the aliases of each track's credited artists."""
        old: dict[str, set[str]] = {pid: set() for pid in changed}
        for i in range(0, len(changed), 20_000):
            for pid, name in self.conn.execute(
                "SELECT ar.public_id, aa.name FROM artists ar"
                " JOIN artist_aliases aa ON aa.artist_id = ar.id"
                " WHERE ar.public_id IN (SELECT value FROM json_each(?))",
                (json.dumps(changed[i : i + 20_000]),),
            ):
                old[pid].add(name)
        realiased = [p for p in changed if old[p] != {a[0] for a in artists[p][1].aliases}]
        if realiased:
            self.conn.execute(
                "CREATE TEMP TABLE IF NOT EXISTS reindex(track_id INTEGER PRIMARY KEY)"
            )
            where = (
                "t.id IN (SELECT ta.track_id FROM track_artists ta"
                " JOIN artists ar ON ar.id = ta.artist_id"
                " WHERE ar.public_id IN (SELECT value FROM json_each(?)))"
            )
            params = (json.dumps(realiased),)
            unindex_tracks(self.conn, where, params)
            self.conn.execute(
                f"INSERT OR IGNORE INTO temp.reindex SELECT t.id FROM tracks t WHERE {where}",
                params,
            )

    def _genre_ids(self, names: Iterable[str]) -> dict[str, int]:
        missing = list({n for n in names if n not in self._genres})
        if missing:
            self.conn.executemany(
                "INSERT OR IGNORE INTO genres(name) VALUES (?)", [(n,) for n in missing]
            )
            # One lookup per new name (genres are few): any text, NUL included, is bound
            # as it is, where a JSON list would stop at the first NUL.
            for name in missing:
                row = self.conn.execute("SELECT id FROM genres WHERE name = ?", (name,)).fetchone()
                self._genres[name] = row[0]
        return self._genres

    def _write_albums(self, albums: dict[str, tuple[int, AlbumRow]]) -> None:
        if not albums:
            return
        new, changed = self._split("albums", self._albums, albums)  # type: ignore[arg-type]
        if changed and self.maintain_search:
            self._before_album_change(changed, albums)
        touched = [*new, *changed]
        if not touched:
            return
        values = [
            (
                a.title,
                a.artist_credit,
                a.album_type,
                a.release_date,
                a.release_date_precision,
                a.label,
                a.upc,
                a.total_tracks,
                a.total_discs,
                a.markets,
                a.status,
                a.packaging,
                a.country,
                a.original_release_date,
                a.original_release_date_precision,
                a.catalog_number,
                a.disambiguation,
                a.cover_art_count,
                fp,
                pid,
            )
            for pid in touched
            for fp, a in (albums[pid],)
        ]
        if new:
            self.conn.executemany(
                "INSERT INTO albums(title, artist_credit, album_type, release_date,"
                " release_date_precision, label, upc, total_tracks, total_discs, markets,"
                " status, packaging, country, original_release_date,"
                " original_release_date_precision, catalog_number, disambiguation,"
                " cover_art_count, fingerprint, public_id)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                values[: len(new)],
            )
        if changed:
            self.conn.executemany(
                "UPDATE albums SET title=?, artist_credit=?, album_type=?, release_date=?,"
                " release_date_precision=?, label=?, upc=?, total_tracks=?, total_discs=?,"
                " markets=?, status=?, packaging=?, country=?, original_release_date=?,"
                " original_release_date_precision=?, catalog_number=?, disambiguation=?,"
                " cover_art_count=?, fingerprint=? WHERE public_id=?",
                values[len(new) :],
            )
            ids = [(p,) for p in changed]
            for table in ("album_artists", "album_genres"):
                self.conn.executemany(f"DELETE FROM {table} WHERE album_id = {_ALBUM_ID}", ids)
            # Cover art found in audio files (blobs) is the archive's, not the record's.
            self.conn.executemany(
                f"DELETE FROM images WHERE album_id = {_ALBUM_ID} AND blob_sha256 IS NULL", ids
            )
            self.conn.executemany(
                f"DELETE FROM external_ids WHERE entity='album' AND entity_id = {_ALBUM_ID}", ids
            )
        genre_ids = self._genre_ids(g for p in touched for g in albums[p][1].genres)
        credits, genres, images, ext = [], [], [], []
        for pid in touched:
            a = albums[pid][1]
            credits += [(pid, pos, *c) for pos, c in enumerate(a.credits)]
            genres += [(pid, genre_ids[g]) for g in dict.fromkeys(a.genres)]
            images += [(pid, pos, *img) for pos, img in enumerate(a.images)]
            ext += [(pid, s, v) for s, v in a.external_ids]
        self._insert_staged(
            "INSERT INTO album_artists(album_id, position, artist_id, credited_as, join_phrase)",
            f"{_ALBUM_OF_C1}, c2, {_ARTIST_OF_C3}, c4, c5",
            credits,
            5,
        )
        self._insert_staged(
            "INSERT OR IGNORE INTO album_genres(album_id, genre_id)",
            f"{_ALBUM_OF_C1}, c2",
            genres,
            2,
        )
        self._insert_staged(
            "INSERT INTO images(album_id, position, kind, url, width, height)",
            f"{_ALBUM_OF_C1}, c2, c3, c4, c5, c6",
            images,
            6,
        )
        self._insert_staged(
            "INSERT OR IGNORE INTO external_ids(entity, entity_id, scheme, value)",
            f"'album', {_ALBUM_OF_C1}, c2, c3",
            ext,
            3,
        )
        if changed:
            self._renumber_blob_images(changed)

    def _renumber_blob_images(self, albums: list[str]) -> None:
        """Put the albums' cover art from files after the record's images again, in the
        order it was linked (by rowid: positions change as the statement runs)."""
        self.conn.execute(
            "UPDATE images SET position ="
            " (SELECT count(*) FROM images s"
            "  WHERE s.album_id = images.album_id AND s.blob_sha256 IS NULL)"
            " + (SELECT count(*) FROM images b WHERE b.album_id = images.album_id"
            "    AND b.blob_sha256 IS NOT NULL AND b.id < images.id)"
            " WHERE blob_sha256 IS NOT NULL AND album_id IN"
            " (SELECT id FROM albums WHERE public_id IN (SELECT value FROM json_each(?)))",
            (json.dumps(albums),),
        )

    def _before_album_change(
        self, changed: list[str], albums: dict[str, tuple[int, AlbumRow]]
    ) -> None:
        """Tracks of an album whose title changes leave the search index until re-added."""
        retitled = [
            str(pid)
            for pid, title in _lookup(self.conn, "albums", "title", changed)
            if title != albums[str(pid)][1].title
        ]
        if retitled:
            self.conn.execute(
                "CREATE TEMP TABLE IF NOT EXISTS reindex(track_id INTEGER PRIMARY KEY)"
            )
            where = (
                "t.album_id IN (SELECT id FROM albums WHERE public_id IN"
                " (SELECT value FROM json_each(?)))"
            )
            params = (json.dumps(retitled),)
            unindex_tracks(self.conn, where, params)
            self.conn.execute(
                f"INSERT OR IGNORE INTO temp.reindex SELECT t.id FROM tracks t WHERE {where}",
                params,
            )

    # -- source records -----------------------------------------------------------------

    def _write_chunks(self, chunks: list[bytes]) -> int:
        if not chunks:
            return 0
        base = _next_id(self.conn, "source_chunks")
        self.conn.executemany(
            "INSERT INTO source_chunks(id, import_id, kind, data) VALUES (?,?,?,?)",
            [(base + i, self.import_id, self.kind, c) for i, c in enumerate(chunks)],
        )
        return base

    # -- tracks -------------------------------------------------------------------------

    def _write_tracks(self, batch: Batch, chunk_base: int) -> WriteResult:
        count = batch.track_count
        result = WriteResult(loaded=count + batch.superseded, superseded=batch.superseded)
        if not count:
            if self.maintain_search:
                self._reindex_pending()
            return result
        stage = self._attach_image(batch)
        base = _next_id(self.conn, "tracks")
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
            self._upsert_tracks(self._staged_rows(batch, stage), chunk_base, result)
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
            f" SELECT c1 + {base}, c2, {_ARTIST_OF_C3}, c4, c5 FROM {stage}credits"
            " ORDER BY rowid"
        )
        if self.conn.execute(f"SELECT 1 FROM {stage}genres LIMIT 1").fetchone():
            self._genre_ids(g for (g,) in self.conn.execute(f"SELECT c2 FROM {stage}genres"))
            self.conn.execute(
                "INSERT OR IGNORE INTO track_genres(track_id, genre_id) SELECT c1 + "
                f"{base}, (SELECT id FROM genres WHERE name = c2) FROM {stage}genres"
                " ORDER BY rowid"
            )
        self.conn.execute(
            "INSERT OR IGNORE INTO external_ids(entity, entity_id, scheme, value)"
            f" SELECT 'track', c1 + {base}, c2, c3 FROM {stage}external_ids ORDER BY rowid"
        )

    def _insert_staged(
        self, insert: str, select: str, rows: Sequence[tuple[object, ...]], width: int
    ) -> None:
        """``insert SELECT select`` over ``rows``, staged in a temporary table whose
        columns are ``c1`` .. ``c<width>``, in order (so later rows meet earlier ones as
        they would row by row).

        Row by row, every row of a WITHOUT ROWID table is a statement that opens its
        cursors and seeks from the root; an ``executemany`` into a plain temporary table
        and one set-wise insert cost half as much (850k external ids: 2.8 s, 1.4 s).
        """
        if not rows:
            return
        table = f"temp.stage{width}"
        columns = ", ".join(f"c{i}" for i in range(1, width + 1))
        self.conn.execute(f"CREATE TEMP TABLE IF NOT EXISTS stage{width}({columns})")
        self.conn.execute(f"DELETE FROM {table}")
        self.conn.executemany(f"INSERT INTO {table} VALUES ({', '.join('?' * width)})", rows)
        self.conn.execute(f"{insert} SELECT {select} FROM {table} ORDER BY rowid")

    def _upsert_tracks(self, batch: Batch, chunk_base: int, result: WriteResult) -> None:
        tracks: list[TrackTuple] = batch.tracks
        found = {
            str(pid): (int(tid), ua, fp)  # type: ignore[call-overload]
            for pid, tid, ua, fp in _lookup(
                self.conn, "tracks", "id, updated_at, fingerprint", [t[0] for t in tracks]
            )
        }
        next_id = _next_id(self.conn, "tracks")
        rowid: dict[int, int] = {}  # batch index -> rowid
        new: list[int] = []
        replace: list[int] = []
        for i, t in enumerate(tracks):
            hit = found.get(t[0])
            if hit is None:
                rowid[i] = next_id
                next_id += 1
                new.append(i)
            elif hit[2] == t[13]:
                pass  # the very record the catalog holds: nothing to do
            elif newer_or_same(t[12], hit[1]):  # type: ignore[arg-type]
                rowid[i] = hit[0]
                replace.append(i)
            else:
                result.superseded += 1
        # Chunks whose every line was unchanged or older are not needed.
        used = {(tracks[i][14] or 0) // RECORD_REF_LINES for i in (*new, *replace)}
        unused = [(chunk_base + c,) for c in range(len(batch.chunks)) if c not in used]
        if unused:
            self.conn.executemany("DELETE FROM source_chunks WHERE id = ?", unused)
        if new:
            self.conn.executemany(
                f"INSERT INTO tracks(id, {_TRACK_COLUMNS}) VALUES"
                f" (?, ?,?,?,{_ALBUM_ID},?,?,?,?,?,?,?,?,?,?,? + {chunk_base * RECORD_REF_LINES})",
                [(rowid[i], *tracks[i]) for i in new],
            )
        if replace:
            ids = json.dumps([rowid[i] for i in replace])
            if self.maintain_search:
                unindex_tracks(self.conn, "t.id IN (SELECT value FROM json_each(?))", (ids,))
            self.conn.executemany(
                "UPDATE tracks SET public_id=?, title=?, artist_credit=?,"
                f" album_id={_ALBUM_ID}, disc_number=?, track_number=?, duration_ms=?, isrc=?,"
                " explicit=?, popularity=?, listens=?, markets=?, updated_at=?, fingerprint=?,"
                f" record_ref=? + {chunk_base * RECORD_REF_LINES} WHERE id=?",
                [(*tracks[i], rowid[i]) for i in replace],
            )
            for table in ("track_artists", "track_genres"):
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
        )
        self._insert_links(self._attach_image(relinked), 0)
        if self.maintain_search:
            if done:
                index_tracks(
                    self.conn,
                    "t.id IN (SELECT value FROM json_each(?))",
                    (json.dumps([rowid[i] for i in done]),),
                )
            self._reindex_pending()

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
