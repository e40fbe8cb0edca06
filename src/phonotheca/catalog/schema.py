"""The catalog database: connections, versioned migrations, and its indexes.

``catalog.sqlite3`` holds the catalog and the ledger. It is published (minus the
operator's source paths), so nothing about users ever goes in here.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

Migration = str
"""A migration is a script of DDL statements, run in one transaction."""
StepProgress = Callable[[str, int | None, int | None], None]
"""(step, done, total): what a long index build is doing, for progress bars. ``done`` and
``total`` count tracks, or are None for a step that cannot tell how far it is."""


class CatalogError(Exception):
    """A catalog that cannot be used as asked (missing, newer than this program, ...)."""


# Secondary indexes are dropped before a bulk load and built after it (docs/DESIGN.md:
# "bulk loads insert first and build indexes after"), so they live apart from the tables.
SECONDARY_INDEXES: dict[str, str] = {
    "tracks_album": "CREATE INDEX IF NOT EXISTS tracks_album"
    " ON tracks(album_id, disc_number, track_number)",
    "tracks_isrc": "CREATE INDEX IF NOT EXISTS tracks_isrc ON tracks(isrc) WHERE isrc IS NOT NULL",
    "track_artists_artist": "CREATE INDEX IF NOT EXISTS track_artists_artist"
    " ON track_artists(artist_id)",
    "album_artists_artist": "CREATE INDEX IF NOT EXISTS album_artists_artist"
    " ON album_artists(artist_id)",
    "external_ids_value": "CREATE INDEX IF NOT EXISTS external_ids_value"
    " ON external_ids(scheme, value)",
    "images_album": "CREATE INDEX IF NOT EXISTS images_album ON images(album_id)",
}
ALBUM_ORDER = "ORDER BY t.disc_number, t.track_number, t.id"
"""An album's tracks (``tracks t``) in the order of ``tracks_album`` (then the rowid): read
in order, never sorted per request. Tracks without a disc or track number come first
(SQLite's order of NULLs)."""


_V1 = """
        CREATE TABLE meta(
            key   TEXT PRIMARY KEY,
            value TEXT
        ) WITHOUT ROWID;

        CREATE TABLE artists(
            id             INTEGER PRIMARY KEY,
            public_id      TEXT NOT NULL,
            name           TEXT NOT NULL,
            sort_name      TEXT,
            disambiguation TEXT,
            fingerprint    INTEGER          -- hash of the sourced fields: skips no-op rewrites
        );
        CREATE UNIQUE INDEX artists_public_id ON artists(public_id);

        CREATE TABLE artist_aliases(
            artist_id INTEGER NOT NULL REFERENCES artists(id),
            name      TEXT NOT NULL,
            sort_name TEXT,
            locale    TEXT,
            PRIMARY KEY(artist_id, name)
        ) WITHOUT ROWID;

        CREATE TABLE albums(
            id                     INTEGER PRIMARY KEY,
            public_id              TEXT NOT NULL,
            title                  TEXT NOT NULL,
            artist_credit          TEXT NOT NULL DEFAULT '',
            album_type             TEXT,
            release_date           TEXT,   -- YYYY, YYYY-MM or YYYY-MM-DD
            release_date_precision TEXT CHECK(release_date_precision IN ('year','month','day')),
            label                  TEXT,
            upc                    TEXT,
            total_tracks           INTEGER,
            total_discs            INTEGER,
            markets                TEXT,   -- ISO 3166 codes separated by spaces
            status                 TEXT,   -- official, promotion, bootleg, ...
            packaging              TEXT,
            country                TEXT,
            fingerprint            INTEGER
        );
        CREATE UNIQUE INDEX albums_public_id ON albums(public_id);

        CREATE TABLE album_artists(
            album_id    INTEGER NOT NULL REFERENCES albums(id),
            position    INTEGER NOT NULL,
            artist_id   INTEGER NOT NULL REFERENCES artists(id),
            credited_as TEXT,
            join_phrase TEXT NOT NULL DEFAULT '',
            PRIMARY KEY(album_id, position)
        ) WITHOUT ROWID;

        CREATE TABLE tracks(
            id            INTEGER PRIMARY KEY,
            public_id     TEXT NOT NULL,
            title         TEXT NOT NULL,
            artist_credit TEXT NOT NULL DEFAULT '',
            album_id      INTEGER REFERENCES albums(id),
            disc_number   INTEGER,
            track_number  INTEGER,
            duration_ms   INTEGER,
            isrc          TEXT,            -- normalised; kept even when invalid
            isrc_valid    INTEGER GENERATED ALWAYS AS (  -- 1 valid, 0 invalid, NULL no ISRC
                CASE WHEN isrc IS NULL THEN NULL
                     WHEN isrc GLOB
                          '[A-Z][A-Z][A-Z0-9][A-Z0-9][A-Z0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9]'
                     THEN 1 ELSE 0 END) VIRTUAL,
            explicit      INTEGER,
            popularity    INTEGER CHECK(popularity BETWEEN 0 AND 100),
            listens       INTEGER,
            markets       TEXT,
            updated_at    TEXT,
            fingerprint   INTEGER,         -- hash of the source record: unchanged ones are skipped
            record_ref    INTEGER          -- source_chunks.id * 1024 + line: its source record
        );
        CREATE UNIQUE INDEX tracks_public_id ON tracks(public_id);

        CREATE TABLE track_artists(
            track_id    INTEGER NOT NULL REFERENCES tracks(id),
            position    INTEGER NOT NULL,
            artist_id   INTEGER NOT NULL REFERENCES artists(id),
            credited_as TEXT,
            join_phrase TEXT NOT NULL DEFAULT '',
            PRIMARY KEY(track_id, position)
        ) WITHOUT ROWID;

        CREATE TABLE genres(
            id   INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE
        );
        CREATE TABLE album_genres(
            album_id INTEGER NOT NULL REFERENCES albums(id),
            genre_id INTEGER NOT NULL REFERENCES genres(id),
            PRIMARY KEY(album_id, genre_id)
        ) WITHOUT ROWID;
        CREATE TABLE track_genres(
            track_id INTEGER NOT NULL REFERENCES tracks(id),
            genre_id INTEGER NOT NULL REFERENCES genres(id),
            PRIMARY KEY(track_id, genre_id)
        ) WITHOUT ROWID;

        CREATE TABLE images(
            id          INTEGER PRIMARY KEY,
            album_id    INTEGER NOT NULL REFERENCES albums(id),
            position    INTEGER NOT NULL,
            kind        TEXT NOT NULL DEFAULT 'front',
            url         TEXT,
            width       INTEGER,
            height      INTEGER,
            blob_sha256 TEXT             -- set when the image is stored under blobs/
        );

        -- Identifiers in other systems: MusicBrainz ids, Discogs ids, ... (ISRC and UPC
        -- also have columns of their own on tracks and albums).
        CREATE TABLE external_ids(
            entity    TEXT NOT NULL CHECK(entity IN ('track','album','artist')),
            entity_id INTEGER NOT NULL,
            scheme    TEXT NOT NULL,
            value     TEXT NOT NULL,
            PRIMARY KEY(entity, entity_id, scheme, value)
        ) WITHOUT ROWID;

        -- Source records as they were read, in zstd frames of up to 1000 lines; a track
        -- points at its line (tracks.record_ref), so that export
        -- reproduces what was imported. Lines no track points at any more (superseded
        -- by a newer record) are left in place.
        CREATE TABLE source_chunks(
            id        INTEGER PRIMARY KEY,
            import_id INTEGER NOT NULL REFERENCES imports(id),
            kind      TEXT NOT NULL,      -- the source format: 'jsonl', ...
            data      BLOB NOT NULL       -- zstd frame: lines joined by '\\n'
        );

        -- Progress of each import, committed with the rows it loaded (resume point).
        CREATE TABLE imports(
            id            INTEGER PRIMARY KEY,
            kind          TEXT NOT NULL,
            path          TEXT NOT NULL,
            fingerprint   TEXT NOT NULL,   -- size + hash of the first MiB
            started_at    TEXT NOT NULL,
            finished_at   TEXT,
            lines_done    INTEGER NOT NULL DEFAULT 0,
            read          INTEGER NOT NULL DEFAULT 0,
            loaded        INTEGER NOT NULL DEFAULT 0,
            rejected      INTEGER NOT NULL DEFAULT 0,
            invalid_isrc  INTEGER NOT NULL DEFAULT 0,
            superseded    INTEGER NOT NULL DEFAULT 0,
            rejects_file  TEXT,
            rejects_bytes INTEGER NOT NULL DEFAULT 0  -- length at the last commit
        );

        -- Audio files the operator holds (local scans). The path is the operator's and is
        -- dropped from the published catalog.
        CREATE TABLE source_files(
            id          INTEGER PRIMARY KEY,
            track_id    INTEGER REFERENCES tracks(id),   -- NULL until matched
            path        TEXT NOT NULL UNIQUE,
            size        INTEGER NOT NULL,
            mtime_ns    INTEGER NOT NULL,
            sha256      TEXT,
            container   TEXT,                 -- ogg, flac, mp3, mp4, ...
            codec       TEXT,                 -- vorbis, opus, flac, mp3, aac, ...
            lossless    INTEGER,
            bitrate     INTEGER,              -- bits per second
            sample_rate INTEGER,
            channels    INTEGER,
            duration_ms INTEGER,
            chromaprint TEXT,                 -- acoustic fingerprint, when one was computed
            status      TEXT NOT NULL DEFAULT 'ok' CHECK(status IN ('ok', 'missing', 'error')),
            match       TEXT,      -- how it was matched: mbid, isrc, name, fingerprint, new
            error       TEXT,
            scanned_at  TEXT
        );
        CREATE INDEX source_files_track ON source_files(track_id);

        -- The ledger: one row per planned track, the work queue of build and its record.
        CREATE TABLE plans(
            id         INTEGER PRIMARY KEY,
            created_at TEXT NOT NULL,
            budget     INTEGER NOT NULL,
            settings   TEXT NOT NULL,     -- JSON: the options the plan was made with
            report     TEXT               -- JSON: the coverage report
        );
        CREATE TABLE ledger(
            track_id       INTEGER PRIMARY KEY REFERENCES tracks(id),
            plan_id        INTEGER REFERENCES plans(id),
            status         TEXT NOT NULL,  -- planned, packed, skipped_duplicate, skipped_budget,
                                           -- missing_source, error_*
            tier           TEXT CHECK(tier IN ('original', 'opus', 'metadata')),
            planned_size   INTEGER,
            source_file_id INTEGER REFERENCES source_files(id),
            duplicate_of   INTEGER REFERENCES tracks(id),
            codec          TEXT,
            bitrate        INTEGER,
            size           INTEGER,        -- bytes as packed
            sha256         TEXT,
            collection     TEXT,
            volume         TEXT,
            offset         INTEGER,
            length         INTEGER
        );
        CREATE INDEX ledger_status ON ledger(status);

        -- Search: FTS5 rowids are "rank keys" that follow popularity, so the most popular
        -- matches come first in rowid order and a query stops after LIMIT rows.
        -- key = (100 - popularity) << 40 | position within that popularity.
        CREATE TABLE search_rank(
            key      INTEGER PRIMARY KEY,
            track_id INTEGER NOT NULL
        );
        CREATE UNIQUE INDEX search_rank_track ON search_rank(track_id);
"""


# v2: MusicBrainz releases (album fields) and listen counts (docs/FORMAT.md §6, §7).
_V2 = """
        ALTER TABLE albums ADD COLUMN original_release_date TEXT;  -- release group's first
        ALTER TABLE albums ADD COLUMN original_release_date_precision TEXT
            CHECK(original_release_date_precision IN ('year','month','day'));
        ALTER TABLE albums ADD COLUMN catalog_number TEXT;
        ALTER TABLE albums ADD COLUMN disambiguation TEXT;
        ALTER TABLE albums ADD COLUMN cover_art_count INTEGER;     -- Cover Art Archive images

        ALTER TABLE tracks ADD COLUMN listeners INTEGER;           -- distinct listeners
        -- imports.id of the listens import that set listens (NULL: the source record's)
        ALTER TABLE tracks ADD COLUMN listens_import INTEGER;
        -- 1 when popularity was derived from listens (FORMAT.md §7), NULL when sourced
        ALTER TABLE tracks ADD COLUMN popularity_derived INTEGER;

        -- A replaced source record brings its own listens and popularity: what a listens
        -- import set no longer applies (run the listens import again).
        CREATE TRIGGER tracks_record_replaced AFTER UPDATE OF record_ref ON tracks
        WHEN new.listens_import IS NOT NULL OR new.popularity_derived IS NOT NULL
             OR new.listeners IS NOT NULL
        BEGIN
            UPDATE tracks SET listens_import = NULL, popularity_derived = NULL,
                              listeners = NULL
            WHERE id = new.id;
        END;
"""


# v3: the build stage's collections and packed cover images (docs/FORMAT.md §4.6, §9).
_V3 = """
        -- One row per collection (one torrent), from the moment its tracks are assigned.
        CREATE TABLE collections(
            name           TEXT PRIMARY KEY,   -- <archive>_pop-050-100_0001, _covers_0001
            kind           TEXT NOT NULL CHECK(kind IN ('audio', 'covers', 'metadata')),
            band_low       INTEGER,            -- popularity band (audio only)
            band_high      INTEGER,
            seq            INTEGER NOT NULL,   -- the number at the end of the name
            plan_id        INTEGER REFERENCES plans(id),
            status         TEXT NOT NULL CHECK(status IN ('assigned', 'published')),
            items          INTEGER NOT NULL,   -- tracks (audio) or images (covers)
            files          INTEGER,            -- files in the torrent's payload
            payload_bytes  INTEGER,            -- bytes of the payload (the bag)
            listens        INTEGER,            -- listens the collection's tracks cover
            torrent_format TEXT CHECK(torrent_format IN ('v1', 'hybrid')),
            piece_length   INTEGER,
            infohash_v1    TEXT,               -- 40 hex digits
            infohash_v2    TEXT,               -- 64 hex digits (hybrid)
            built_at       TEXT,               -- when it was published (not in any file)
            obsolete       INTEGER NOT NULL DEFAULT 0
        );
        CREATE INDEX ledger_collection ON ledger(collection) WHERE collection IS NOT NULL;
        -- The duplicates a kept track stands for: their listens count for its collection.
        CREATE INDEX ledger_duplicate_of ON ledger(duplicate_of) WHERE duplicate_of IS NOT NULL;

        -- Cover images packed into covers collections, keyed by the blob's sha256.
        CREATE TABLE packed_images(
            sha256     TEXT PRIMARY KEY,
            collection TEXT NOT NULL REFERENCES collections(name),
            volume     TEXT,
            offset     INTEGER,
            length     INTEGER
        ) WITHOUT ROWID;
        CREATE INDEX images_blob ON images(blob_sha256) WHERE blob_sha256 IS NOT NULL;
"""


# v4: `phonotheca compact` moves source lines between chunks, which rewrites record_ref
# without a new record: the reset of listens applies to a new record only.
_V4 = """
        DROP TRIGGER tracks_record_replaced;
        CREATE TRIGGER tracks_record_replaced AFTER UPDATE OF record_ref ON tracks
        WHEN old.fingerprint IS NOT new.fingerprint
             AND (new.listens_import IS NOT NULL OR new.popularity_derived IS NOT NULL
                  OR new.listeners IS NOT NULL)
        BEGIN
            UPDATE tracks SET listens_import = NULL, popularity_derived = NULL,
                              listeners = NULL
            WHERE id = new.id;
        END;
"""


# v5: the length of each file as packed (docs/FORMAT.md §4.6): what the server reports as
# a track's duration. Rows packed before v5 take their source file's length, which is the
# packed file's for an original and the re-encoded audio's, to a few milliseconds, for Opus.
_V5 = """
        ALTER TABLE ledger ADD COLUMN duration_ms INTEGER;
        UPDATE ledger SET duration_ms = (
            SELECT s.duration_ms FROM source_files s WHERE s.id = ledger.source_file_id)
        WHERE status = 'packed';
"""


# v6: a track's place in its collection, so that a server draws a uniform random track of
# a collection with one index lookup (docs/FORMAT.md §4.5), not by skipping k rows.
_V6 = """
        ALTER TABLE ledger ADD COLUMN position INTEGER;  -- 0-based, within the collection
        UPDATE ledger SET position = r.position
        FROM (SELECT track_id,
                     row_number() OVER (PARTITION BY collection ORDER BY track_id) - 1 AS position
              FROM ledger WHERE collection IS NOT NULL) AS r
        WHERE ledger.track_id = r.track_id;
        CREATE INDEX ledger_position ON ledger(collection, position) WHERE collection IS NOT NULL;
"""


# v7: other names of tracks (a MusicBrainz recording's aliases), searched with the title,
# and tracks without an album of MusicBrainz recordings on no release (docs/FORMAT.md §6.4).
_V7 = """
        CREATE TABLE IF NOT EXISTS track_aliases(
            track_id  INTEGER NOT NULL REFERENCES tracks(id),
            name      TEXT NOT NULL,
            sort_name TEXT,
            locale    TEXT,
            PRIMARY KEY(track_id, name)
        ) WITHOUT ROWID;
"""


# v8: EBU R128 loudness measured at build (and by ``import files --loudness``), per packed
# track and per source file, and the album loudness gated over all of its packed tracks'
# blocks (docs/FORMAT.md §4.6). ``loudness_blocks`` is the histogram of the gating blocks
# (phonotheca.audio.loudness.encode_histogram) from which album loudness is computed.
_V8 = """
        ALTER TABLE ledger ADD COLUMN loudness_lufs REAL;
        ALTER TABLE ledger ADD COLUMN true_peak_dbtp REAL;
        ALTER TABLE ledger ADD COLUMN loudness_range_lu REAL;
        ALTER TABLE ledger ADD COLUMN loudness_blocks BLOB;
        ALTER TABLE source_files ADD COLUMN loudness_lufs REAL;
        ALTER TABLE source_files ADD COLUMN true_peak_dbtp REAL;
        ALTER TABLE source_files ADD COLUMN loudness_range_lu REAL;
        ALTER TABLE source_files ADD COLUMN loudness_blocks BLOB;
        CREATE TABLE album_loudness(
            album_id       INTEGER PRIMARY KEY REFERENCES albums(id),
            loudness_lufs  REAL,
            true_peak_dbtp REAL,
            tracks         INTEGER NOT NULL   -- packed tracks measured
        );
"""


# v9: public playlists (docs/FORMAT.md §4.8): imported from JSPF or the JSONL interchange
# format, each entry kept with the metadata it was given, matched to a track or not (a
# playlist is never shortened), and a small full-text index of their titles.
_V9 = """
        CREATE TABLE playlists(
            id           INTEGER PRIMARY KEY,
            public_id    TEXT NOT NULL,     -- 'pl:' + the source's id, or a hash of it
            title        TEXT NOT NULL,
            creator      TEXT,
            annotation   TEXT,
            created      TEXT,              -- the source's date (ISO 8601), as given
            identifier   TEXT,              -- the source's URL or URI for the playlist
            entries      INTEGER NOT NULL DEFAULT 0,
            matched      INTEGER NOT NULL DEFAULT 0,   -- entries matched to a track
            duration_ms  INTEGER,           -- sum of the entries' durations that are known
            extension    TEXT,              -- JSON: extension data kept as given
            fingerprint  INTEGER,           -- hash of the source record: no-op rewrites skipped
            record_ref   INTEGER            -- its source record (as tracks.record_ref)
        );
        CREATE UNIQUE INDEX playlists_public_id ON playlists(public_id);

        CREATE TABLE playlist_entries(
            playlist_id INTEGER NOT NULL REFERENCES playlists(id),
            position    INTEGER NOT NULL,   -- 0-based
            track_id    INTEGER REFERENCES tracks(id),  -- NULL: not matched
            match       TEXT,               -- mbid, isrc, name; NULL when not matched
            identifier  TEXT,               -- as given (a MusicBrainz recording URL, ...)
            title       TEXT,
            creator     TEXT,
            album       TEXT,
            duration_ms INTEGER,
            PRIMARY KEY(playlist_id, position)
        ) WITHOUT ROWID;
        CREATE INDEX playlist_entries_track ON playlist_entries(track_id)
            WHERE track_id IS NOT NULL;

        CREATE VIRTUAL TABLE playlist_search USING fts5(title, creator,
            content='', columnsize=0, detail='none', prefix='1 2 3 4',
            tokenize='unicode61 remove_diacritics 2');

        -- An import's counts of its own kind, JSON (a playlist import's: playlists,
        -- entries, entries matched by each rule, unmatched), kept with its progress.
        ALTER TABLE imports ADD COLUMN counts TEXT;
"""


# The ledger's counts by status and tier, kept by triggers as rows come, change and go, so
# that the stats page reads a handful of rows instead of counting the ledger (FORMAT.md
# §4). A writer that rewrites most of the ledger (the plan) drops the triggers for its
# transaction and sets the counts itself (:func:`stop_ledger_counts`).
LEDGER_COUNT_TRIGGERS = (
    "CREATE TRIGGER ledger_counts_insert AFTER INSERT ON ledger BEGIN"
    " INSERT INTO ledger_counts(status, tier, n) VALUES (new.status, coalesce(new.tier, ''), 1)"
    " ON CONFLICT(status, tier) DO UPDATE SET n = n + 1; END",
    "CREATE TRIGGER ledger_counts_delete AFTER DELETE ON ledger BEGIN"
    " UPDATE ledger_counts SET n = n - 1"
    " WHERE status = old.status AND tier = coalesce(old.tier, ''); END",
    "CREATE TRIGGER ledger_counts_update AFTER UPDATE OF status, tier ON ledger BEGIN"
    " UPDATE ledger_counts SET n = n - 1"
    " WHERE status = old.status AND tier = coalesce(old.tier, '');"
    " INSERT INTO ledger_counts(status, tier, n) VALUES (new.status, coalesce(new.tier, ''), 1)"
    " ON CONFLICT(status, tier) DO UPDATE SET n = n + 1; END",
)
_LEDGER_COUNT_TRIGGER_NAMES = (
    "ledger_counts_insert",
    "ledger_counts_delete",
    "ledger_counts_update",
)

# v10: the ledger's counts (see LEDGER_COUNT_TRIGGERS), counted once here.
_V10 = """
        CREATE TABLE ledger_counts(
            status TEXT NOT NULL,
            tier   TEXT NOT NULL,      -- '' for a row without a tier
            n      INTEGER NOT NULL,   -- ledger rows with this status and tier
            PRIMARY KEY(status, tier)
        ) WITHOUT ROWID;
        INSERT INTO ledger_counts(status, tier, n)
            SELECT status, coalesce(tier, ''), count(*) FROM ledger GROUP BY 1, 2;
""" + "".join(f"        {ddl};\n" for ddl in LEDGER_COUNT_TRIGGERS)


def stop_ledger_counts(conn: sqlite3.Connection) -> None:
    """Drop the ledger's counting triggers, in the caller's transaction, before a rewrite
    of most of the ledger: a trigger per row would triple the time of its bulk inserts,
    and stop ``DELETE FROM ledger`` from emptying the table at once. The caller sets
    ``ledger_counts`` right, then calls :func:`restart_ledger_counts`, in the same
    transaction."""
    for name in _LEDGER_COUNT_TRIGGER_NAMES:
        conn.execute(f"DROP TRIGGER IF EXISTS {name}")


def count_ledger(conn: sqlite3.Connection) -> None:
    """Set ``ledger_counts`` from a count of the whole ledger (after a copy of it)."""
    conn.execute("DELETE FROM ledger_counts")
    conn.execute(
        "INSERT INTO ledger_counts(status, tier, n)"
        " SELECT status, coalesce(tier, ''), count(*) FROM ledger GROUP BY 1, 2"
    )


def restart_ledger_counts(conn: sqlite3.Connection) -> None:
    """Create the ledger's counting triggers again (see :func:`stop_ledger_counts`)."""
    for ddl in LEDGER_COUNT_TRIGGERS:
        conn.execute(ddl)


# v11: the journal of what changed for the library file's lists (docs/FORMAT.md §14.1):
# the rows of tracks, albums and artists whose lists may have changed, so that the end of
# an import changes the library file in place instead of making it again.
_V11 = """
        CREATE TABLE library_changes(
            seq  INTEGER PRIMARY KEY AUTOINCREMENT,
            what INTEGER NOT NULL,     -- 0 track, 1 album, 2 artist; -1 everything
            id   INTEGER NOT NULL
        );
        -- While it has a row (a bulk load, a derived catalog) nothing is journaled, and
        -- the library file is made again in full.
        CREATE TABLE library_changes_off(reason TEXT PRIMARY KEY) WITHOUT ROWID;
        CREATE TRIGGER lib_tracks_new AFTER INSERT ON tracks
            WHEN NOT EXISTS (SELECT 1 FROM library_changes_off) BEGIN
            INSERT INTO library_changes(what, id) SELECT 0, new.id
                UNION ALL SELECT 1, new.album_id WHERE new.album_id IS NOT NULL;
        END;
        CREATE TRIGGER lib_tracks_changed AFTER UPDATE OF album_id, popularity, listens ON tracks
            WHEN NOT EXISTS (SELECT 1 FROM library_changes_off) BEGIN
            INSERT INTO library_changes(what, id) SELECT 0, new.id
                UNION ALL SELECT 1, old.album_id WHERE old.album_id IS NOT NULL
                UNION ALL SELECT 1, new.album_id WHERE new.album_id IS NOT NULL;
        END;
        CREATE TRIGGER lib_tracks_gone AFTER DELETE ON tracks
            WHEN NOT EXISTS (SELECT 1 FROM library_changes_off) BEGIN
            INSERT INTO library_changes(what, id) SELECT 0, old.id
                UNION ALL SELECT 1, old.album_id WHERE old.album_id IS NOT NULL;
        END;
        CREATE TRIGGER lib_track_artists_new AFTER INSERT ON track_artists
            WHEN NOT EXISTS (SELECT 1 FROM library_changes_off) BEGIN
            INSERT INTO library_changes(what, id) SELECT 0, new.track_id
                UNION ALL SELECT 2, new.artist_id;
        END;
        CREATE TRIGGER lib_track_artists_gone AFTER DELETE ON track_artists
            WHEN NOT EXISTS (SELECT 1 FROM library_changes_off) BEGIN
            INSERT INTO library_changes(what, id) SELECT 0, old.track_id
                UNION ALL SELECT 2, old.artist_id;
        END;
        CREATE TRIGGER lib_track_artists_changed AFTER UPDATE ON track_artists
            WHEN NOT EXISTS (SELECT 1 FROM library_changes_off) BEGIN
            INSERT INTO library_changes(what, id) SELECT 0, old.track_id
                UNION ALL SELECT 2, old.artist_id
                UNION ALL SELECT 0, new.track_id
                UNION ALL SELECT 2, new.artist_id;
        END;
        CREATE TRIGGER lib_track_genres_new AFTER INSERT ON track_genres
            WHEN NOT EXISTS (SELECT 1 FROM library_changes_off) BEGIN
            INSERT INTO library_changes(what, id) SELECT 0, new.track_id;
        END;
        CREATE TRIGGER lib_track_genres_gone AFTER DELETE ON track_genres
            WHEN NOT EXISTS (SELECT 1 FROM library_changes_off) BEGIN
            INSERT INTO library_changes(what, id) SELECT 0, old.track_id;
        END;
        CREATE TRIGGER lib_album_artists_new AFTER INSERT ON album_artists
            WHEN NOT EXISTS (SELECT 1 FROM library_changes_off) BEGIN
            INSERT INTO library_changes(what, id) SELECT 1, new.album_id
                UNION ALL SELECT 2, new.artist_id;
        END;
        CREATE TRIGGER lib_album_artists_gone AFTER DELETE ON album_artists
            WHEN NOT EXISTS (SELECT 1 FROM library_changes_off) BEGIN
            INSERT INTO library_changes(what, id) SELECT 1, old.album_id
                UNION ALL SELECT 2, old.artist_id;
        END;
        CREATE TRIGGER lib_album_artists_changed AFTER UPDATE ON album_artists
            WHEN NOT EXISTS (SELECT 1 FROM library_changes_off) BEGIN
            INSERT INTO library_changes(what, id) SELECT 1, old.album_id
                UNION ALL SELECT 2, old.artist_id
                UNION ALL SELECT 1, new.album_id
                UNION ALL SELECT 2, new.artist_id;
        END;
        CREATE TRIGGER lib_album_genres_new AFTER INSERT ON album_genres
            WHEN NOT EXISTS (SELECT 1 FROM library_changes_off) BEGIN
            INSERT INTO library_changes(what, id) SELECT 1, new.album_id;
        END;
        CREATE TRIGGER lib_album_genres_gone AFTER DELETE ON album_genres
            WHEN NOT EXISTS (SELECT 1 FROM library_changes_off) BEGIN
            INSERT INTO library_changes(what, id) SELECT 1, old.album_id;
        END;
        CREATE TRIGGER lib_albums_new AFTER INSERT ON albums
            WHEN NOT EXISTS (SELECT 1 FROM library_changes_off) BEGIN
            INSERT INTO library_changes(what, id) SELECT 1, new.id;
        END;
        CREATE TRIGGER lib_albums_changed
            AFTER UPDATE OF title, artist_credit, release_date ON albums
            WHEN NOT EXISTS (SELECT 1 FROM library_changes_off) BEGIN
            INSERT INTO library_changes(what, id) SELECT 1, new.id;
        END;
        CREATE TRIGGER lib_albums_gone AFTER DELETE ON albums
            WHEN NOT EXISTS (SELECT 1 FROM library_changes_off) BEGIN
            INSERT INTO library_changes(what, id) SELECT 1, old.id;
        END;
        CREATE TRIGGER lib_artists_new AFTER INSERT ON artists
            WHEN NOT EXISTS (SELECT 1 FROM library_changes_off) BEGIN
            INSERT INTO library_changes(what, id) SELECT 2, new.id;
        END;
        CREATE TRIGGER lib_artists_changed AFTER UPDATE OF name, public_id ON artists
            WHEN NOT EXISTS (SELECT 1 FROM library_changes_off) BEGIN
            INSERT INTO library_changes(what, id) SELECT 2, new.id;
        END;
        CREATE TRIGGER lib_artists_gone AFTER DELETE ON artists
            WHEN NOT EXISTS (SELECT 1 FROM library_changes_off) BEGIN
            INSERT INTO library_changes(what, id) SELECT 2, old.id;
        END;
"""


MIGRATIONS: list[Migration] = [_V1, _V2, _V3, _V4, _V5, _V6, _V7, _V8, _V9, _V10, _V11]
SCHEMA_VERSION = len(MIGRATIONS)


def connect(path: Path, *, readonly: bool = False) -> sqlite3.Connection:
    """Open the catalog with the settings every command relies on.

    Write connections use WAL so readers (the server) never block on an import,
    and ``synchronous=NORMAL``: a power cut may lose the last transaction, never
    corrupt the file.
    """
    if readonly:
        if not path.exists():
            raise CatalogError(f"no catalog at {path}: run 'phonotheca init' or an import first")
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    else:
        conn = sqlite3.connect(path)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
    conn.isolation_level = None  # we open transactions ourselves, explicitly
    conn.execute("PRAGMA foreign_keys=OFF")  # integrity is kept by the loader, set-wise
    conn.execute("PRAGMA cache_size=-262144")  # 256 MiB
    conn.execute("PRAGMA temp_store=FILE")
    conn.execute("PRAGMA busy_timeout=10000")
    return conn


_temp_lock = threading.Lock()
_temp_set = False


def use_temp_dir(conn: sqlite3.Connection, directory: Path) -> None:
    """Put SQLite's temporary files in ``directory`` (created if missing), for this process.

    An index build or a search-index rebuild sorts more than fits in the cache, and
    ``VACUUM`` copies the whole database: at 256 M tracks that is tens of GB of temporary
    files. SQLite would put them in ``/var/tmp`` (or ``/tmp``), often a small disk or a
    RAM-backed tmpfs, so a day-long import could fail at its very end; in the archive they
    go to the disk that must hold the catalog anyway. ``SQLITE_TMPDIR``, when set, wins:
    an operator may point the sorts at a faster disk.

    SQLite has one such setting per process (``PRAGMA temp_store_directory``), and
    changing it while another thread runs SQLite is undefined behaviour. So it is set
    once, by the first archive a process opens for writing, before any of its threads
    start; a command works on one archive. (Should that directory go away, SQLite falls
    back to its default directories.)
    """
    global _temp_set
    if os.environ.get("SQLITE_TMPDIR"):
        return
    with _temp_lock:
        if _temp_set:
            return
        _temp_set = True  # tried once per process, whatever comes of it
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError:
            return  # a read-only archive: nothing gets sorted into it anyway
        conn.execute("PRAGMA temp_store_directory = " + _quote(str(directory.resolve())))


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


@contextmanager
def transaction(conn: sqlite3.Connection, mode: str = "IMMEDIATE") -> Iterator[sqlite3.Connection]:
    """BEGIN ... COMMIT, rolled back on any exception."""
    conn.execute(f"BEGIN {mode}")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def next_id(conn: sqlite3.Connection, table: str) -> int:
    """The id after the largest in ``table`` (1 when empty): where a batch's rows start."""
    return int(conn.execute(f"SELECT coalesce(max(id), 0) + 1 FROM {table}").fetchone()[0])


def schema_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the catalog to :data:`SCHEMA_VERSION`, one transaction per migration."""
    version = schema_version(conn)
    if version > SCHEMA_VERSION:
        raise CatalogError(
            f"catalog schema v{version} is newer than this phonotheca (v{SCHEMA_VERSION}): "
            "upgrade phonotheca"
        )
    apply_migrations(conn, MIGRATIONS, version)
    if get_meta(conn, POSTPONED) is None:  # a bulk load builds them at its end, once
        ensure_indexes(conn)
    return SCHEMA_VERSION


def apply_migrations(conn: sqlite3.Connection, migrations: Sequence[str], version: int) -> None:
    """Run ``migrations[version:]`` in order, each in its own transaction that also sets
    ``PRAGMA user_version`` to its number (migration ``n`` is ``migrations[n - 1]``)."""
    for number in range(version + 1, len(migrations) + 1):
        # executescript() would commit an open transaction first, so the script
        # carries its own BEGIN and COMMIT.
        try:
            conn.executescript(
                f"BEGIN IMMEDIATE;\n{migrations[number - 1]}\n"
                f"PRAGMA user_version={number};\nCOMMIT;"
            )
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise


SORT_RUN_KIB = 8 * 1024
"""Sort runs of 8 MiB for the big sorts (index builds, the search index): see
:func:`big_sorts`."""


@contextmanager
def big_sorts(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """Settings for statements that sort millions of rows, restored afterwards.

    SQLite sorts in runs as large as the page cache (256 MiB here), then merges them. A
    run that large is a linked list far bigger than the CPU caches; runs of 8 MiB sort
    faster, and with ``PRAGMA threads`` helper threads sort them while the statement
    goes on reading. Measured on 2 cores, alternating runs: the indexes and search index
    after a bulk load of 2 M tracks took 18.4-21.2 s instead of 22.6-25.2 s; at 10 M,
    109-115 s against 106-130 s (no clear difference: the runs spill to files either
    way). The merge reads the runs back from temporary files (see :func:`use_temp_dir`),
    and the catalog's cache does not hold 256 MiB while it sorts.
    """
    cache = conn.execute("PRAGMA cache_size").fetchone()[0]
    threads = conn.execute("PRAGMA threads").fetchone()[0]
    conn.execute(f"PRAGMA cache_size = -{SORT_RUN_KIB}")
    conn.execute(f"PRAGMA threads = {min(4, os.cpu_count() or 1)}")
    try:
        yield conn
    finally:
        conn.execute(f"PRAGMA cache_size = {int(cache)}")
        conn.execute(f"PRAGMA threads = {int(threads)}")


POSTPONED = "indexes_postponed"
"""``meta`` key: set (to the id of its first import) while a bulk load has the secondary
indexes and the search index postponed, until :func:`~phonotheca.catalog.importer.
finish_import` has built them. While it is set, :func:`migrate` leaves the indexes
missing, so that an import resumed after a kill loads without them as the uninterrupted
one did."""


def postpone_indexes(conn: sqlite3.Connection, import_id: int) -> None:
    """Drop the secondary indexes for a bulk load by ``import_id`` (in the caller's
    transaction); the first import of a postponement stays recorded."""
    drop_secondary_indexes(conn)
    journal_off(conn, "bulk")
    if get_meta(conn, POSTPONED) is None:
        set_meta(conn, POSTPONED, str(import_id))


def journal_off(conn: sqlite3.Connection, reason: str) -> None:
    """Stop journaling changes for the library file (a load of most of the catalog, where
    a journal would cost as much as the load and a full build of the file follows): its
    next update makes it again in full (the ``-1`` row), as does any while it is off."""
    conn.execute("INSERT OR IGNORE INTO library_changes_off VALUES(?)", (reason,))
    conn.execute("INSERT INTO library_changes(what, id) VALUES(-1, 0)")


def journal_on(conn: sqlite3.Connection, reason: str) -> None:
    """Journal again, once the library file was made in full after :func:`journal_off`."""
    conn.execute("DELETE FROM library_changes_off WHERE reason = ?", (reason,))


def postponed_since(conn: sqlite3.Connection) -> int | None:
    """The first import whose index builds are still postponed, or None."""
    value = get_meta(conn, POSTPONED)
    return None if value is None else int(value)


def ensure_indexes(conn: sqlite3.Connection, progress: StepProgress | None = None) -> None:
    """Create any secondary index that is missing (after a bulk load, or one cut short).

    Each index commits on its own, so a build killed midway keeps the indexes it
    finished and a re-run builds only the others. ``progress(step, None, None)`` hears
    of each index as its build starts.
    """
    missing = missing_indexes(conn)
    if not missing:
        return
    with big_sorts(conn):
        for n, name in enumerate(missing, 1):
            if progress is not None:
                progress(f"index {name} ({n}/{len(missing)})", None, None)
            conn.execute(SECONDARY_INDEXES[name])


def missing_indexes(conn: sqlite3.Connection) -> list[str]:
    """Names of the secondary indexes that do not exist (dropped for a bulk load)."""
    have = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    return [name for name in SECONDARY_INDEXES if name not in have]


def drop_secondary_indexes(conn: sqlite3.Connection) -> None:
    for name in SECONDARY_INDEXES:
        conn.execute(f"DROP INDEX IF EXISTS {name}")


def get_meta(conn: sqlite3.Connection, key: str) -> str | None:
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return None if row is None else str(row[0])


def set_meta(conn: sqlite3.Connection, key: str, value: str | None) -> None:
    if value is None:
        conn.execute("DELETE FROM meta WHERE key = ?", (key,))
    else:
        conn.execute(
            "INSERT INTO meta(key, value) VALUES(?, ?)"
            " ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, value),
        )
