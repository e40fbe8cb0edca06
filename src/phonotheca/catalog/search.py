"""Full-text search ordered by popularity, and true shuffle.

The FTS5 index's rowids are *rank keys*: ``key = bucket << 40 | n`` where ``bucket``
orders by popularity, then by the order of magnitude of listens (:data:`BUCKET_SQL`),
and ``n`` is the catalog order inside a bucket. "Most popular matches first" is then
``ORDER BY rowid LIMIT n``, which FTS5 answers by walking doclists in rowid order and
stopping early, instead of ranking every match (docs/DESIGN.md: 0.05 ms instead of 775 ms for
a common word).

The index is contentless with ``detail='none'`` (rowids only: we never run phrase or
NEAR queries, because user text is always taken as plain words) and has prefix
indexes for 1-4 characters, so search-as-you-type answers ``l*`` from a prefix doclist
instead of merging the doclists of every word that starts with "l" (measured at 10 M
tracks: a 4-letter prefix took up to 10 ms without its index, 0.4 ms with it; the
fourth index makes a full rebuild 10 % slower). Longer prefixes walk the 4-letter
prefix's matches (:func:`_long_prefix`).
"""

from __future__ import annotations

import random
import re
import sqlite3
import unicodedata
from dataclasses import dataclass, field

from phonotheca.catalog import schema

BUCKET_SHIFT = 40
# The bucket of a track: popularity first, then the order of magnitude of its listens
# (number of decimal digits). Inside a bucket tracks keep catalog order, which an import
# can extend by appending; so an index maintained batch by batch and one rebuilt from
# scratch are identical.
BUCKET_SQL = "((100 - coalesce(t.popularity, -1)) * 32 + 20 - length(coalesce(t.listens, 0)))"
FTS_TABLE = "track_search"
FTS_DDL = (
    f"CREATE VIRTUAL TABLE {FTS_TABLE} USING fts5(title, artists, album,"
    " content='', columnsize=0, detail='none', prefix='1 2 3 4',"
    " tokenize='unicode61 remove_diacritics 2')"
)
FTS_HASH_SIZE = 128 * 2**20
"""Bytes of pending terms FTS5 holds in memory before writing a segment (while rebuilding
and while an import maintains the index; the setting is stored with the index)."""
MAX_KEY = 1 << 62
"""Larger than any rank key (``bucket << 40 | n``): the bound a keyset link may carry."""
MAX_QUERY_TOKENS = 16
MAX_LIMIT = 1000
# Words as the unicode61 tokenizer sees them: runs of letters and digits.
_TOKEN = re.compile(r"[^\W_]+")


@dataclass
class TrackHit:
    """A track as search and shuffle return it (the ``--json`` shape)."""

    id: str
    title: str
    artists: list[str]
    album: str | None
    album_id: str | None
    isrc: str | None
    duration_ms: int | None
    popularity: int | None
    listens: int | None
    track_number: int | None = None
    disc_number: int | None = None
    extra: dict[str, object] = field(default_factory=dict)

    def to_json(self) -> dict[str, object]:
        out = {k: v for k, v in self.__dict__.items() if k != "extra"}
        out.update(self.extra)
        return out


# -- the index -----------------------------------------------------------------------------


# The artists column: the printed credit, then the aliases of the credited artists, so
# "Floyd" or "ピンク・フロイド" finds Pink Floyd. Whatever changes an alias must unindex
# the artist's tracks first (the loader does, see EntityWriter._before_artist_change): a
# contentless index forgets a row only when told the text it indexed. With
# detail='none' only the set of words counts, not their order.
ARTISTS_SQL = (
    "t.artist_credit || coalesce((SELECT ' ' || group_concat(aa.name, ' ')"
    " FROM track_artists ta JOIN artist_aliases aa ON aa.artist_id = ta.artist_id"
    " WHERE ta.track_id = t.id), '')"
)
# The title column: the title, then the track's own aliases (track_aliases: a MusicBrainz
# recording's other names). What changes them must unindex the track first, as above:
# the loader replaces them with the track's record, recording documents unindex first.
TITLE_SQL = (
    "t.title || coalesce((SELECT ' ' || group_concat(tl.name, ' ')"
    " FROM track_aliases tl WHERE tl.track_id = t.id), '')"
)
_FTS_ROWS = f"""
    SELECT r.key, {TITLE_SQL}, {ARTISTS_SQL}, coalesce(a.title, '')
    FROM search_rank r JOIN tracks t ON t.id = r.track_id
    LEFT JOIN albums a ON a.id = t.album_id
"""
_MASK = (1 << BUCKET_SHIFT) - 1


def mark_search_stale(conn: sqlite3.Connection) -> None:
    """Record (in the caller's transaction) that the index needs a full rebuild; until
    then imports skip maintaining it."""
    schema.set_meta(conn, "search_stale", "1")
    schema.set_meta(conn, BUILD_KEY, None)


BUILD_KEY = "search_build"
"""``meta`` key of a rebuild cut short: ``<step done> <catalog stamp>`` (see
:func:`rebuild_search`)."""
_STEPS = ("rows",)


def _stamp(conn: sqlite3.Connection) -> str:
    """What changes whenever anything may have changed the indexed tracks since: every
    command that writes tracks is an import, which adds a row to ``imports`` or moves
    one's progress (a small table: this reads it whole)."""
    row = conn.execute(
        "SELECT coalesce(max(id), 0), total(lines_done), count(finished_at) FROM imports"
    ).fetchone()
    return f"{row[0]}:{int(row[1])}:{row[2]}"


def _steps_done(conn: sqlite3.Connection) -> int:
    """How many of :data:`_STEPS` a rebuild cut short finished, on the same catalog."""
    value = schema.get_meta(conn, BUILD_KEY)
    if value is None or not _has_index(conn):
        return 0
    step, _, stamp = value.partition(" ")
    if step not in _STEPS or stamp != _stamp(conn):
        return 0
    return _STEPS.index(step) + 1


def _has_index(conn: sqlite3.Connection, table: str = FTS_TABLE) -> bool:
    found = conn.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (table,)).fetchone()
    return found is not None


def search_is_stale(conn: sqlite3.Connection) -> bool:
    """True when the index is missing or a rebuild was cut short."""
    return not _has_index(conn) or schema.get_meta(conn, "search_stale") == "1"


PROGRESS_EVERY = 4096
"""A rebuild reports progress about once per this many tracks: one Python call per
sample of the track ids (ids divisible by it), so that it costs nothing measurable."""


def refresh_search(
    conn: sqlite3.Connection, *, force: bool = False, progress: schema.StepProgress | None = None
) -> bool:
    """Rebuild the search index if it is missing or stale (resuming a rebuild cut short
    on the same catalog), or from scratch with ``force``; True if it did."""
    if not force and not search_is_stale(conn):
        return False
    rebuild_search(conn, progress=progress, resume=not force)
    return True


def rebuild_search(
    conn: sqlite3.Connection,
    *,
    progress: schema.StepProgress | None = None,
    resume: bool = False,
) -> None:
    """Rebuild rank keys and the FTS5 index from scratch, in two steps that each commit:
    the keys and the FTS5 rows (:func:`_fill`), then the index of the tracks' keys.

    With ``resume``, a first step that a rebuild killed in the second finished is not
    done again (:data:`BUILD_KEY` records it, with a stamp of the catalog that a later
    import changes, see :func:`_stamp`); until the last step the index stays stale.
    ``progress(step, done, total)`` hears of each step it does; while the FTS5 index is
    filled (most of the time) ``done`` estimates the tracks indexed so far from the
    sampled ids.
    """
    report = progress or (lambda step, done, total: None)
    with schema.big_sorts(conn):
        if not (resume and _steps_done(conn)):
            with schema.transaction(conn):
                _fill(conn, report)
                schema.set_meta(conn, "search_stale", "1")
                schema.set_meta(conn, BUILD_KEY, f"{_STEPS[0]} {_stamp(conn)}")
        with schema.transaction(conn):
            report("search rank index", None, None)
            conn.execute("CREATE UNIQUE INDEX search_rank_track ON search_rank(track_id)")
            schema.set_meta(conn, "search_stale", None)
            schema.set_meta(conn, BUILD_KEY, None)


# The rank keys and the FTS5 rows come out of one sort of the tracks: each row of it goes
# to both tables through this view's trigger (a statement inserts into one table only).
_FEED_DDL = (
    "CREATE TEMP VIEW IF NOT EXISTS search_feed(key, track_id, title, artists, album)"
    " AS SELECT NULL, NULL, NULL, NULL, NULL",
    "CREATE TEMP TRIGGER IF NOT EXISTS search_feed_rows INSTEAD OF INSERT ON search_feed"
    " BEGIN"
    " INSERT INTO search_rank(key, track_id) VALUES (new.key, new.track_id);"
    f" INSERT INTO {FTS_TABLE}(rowid, title, artists, album)"
    " VALUES (new.key, new.title, new.artists, new.album);"
    " END",
)


def _fill(conn: sqlite3.Connection, report: schema.StepProgress) -> None:
    """Empty the index, then fill ``search_rank`` and the FTS5 table from every track in
    rank-key order, and merge the FTS5 segments (the caller's transaction)."""
    done = total = 0

    def tick() -> int:
        nonlocal done
        done = min(total, done + PROGRESS_EVERY)
        report("search index", done, total)
        return 1

    # Registered before the FTS5 table is touched: SQLite refuses to replace a function
    # while any statement is active, and FTS5 keeps some of its own open meanwhile.
    conn.create_function("phonotheca_progress", 0, tick)
    conn.execute(f"DROP TABLE IF EXISTS {FTS_TABLE}")
    conn.execute("DROP INDEX IF EXISTS search_rank_track")
    conn.execute("DELETE FROM search_rank")
    conn.execute(FTS_DDL)
    # One ascending pass, then one merge: cheaper than merging as segments pile up.
    conn.execute(f"INSERT INTO {FTS_TABLE}({FTS_TABLE}, rank) VALUES ('automerge', 0)")
    # Terms collect in memory up to this many bytes before a segment is written (FTS5's
    # default is 1 MiB): 2 M tracks give one segment instead of hundreds, and the insert
    # takes a quarter less time (16.1 s -> 11.8 s measured, 'optimize' 1.7 s -> 0).
    conn.execute(f"INSERT INTO {FTS_TABLE}({FTS_TABLE}, rank) VALUES ('hashsize', {FTS_HASH_SIZE})")
    # Without any alias the subquery adds nothing but a lookup per track: skip it.
    has_aliases = conn.execute("SELECT 1 FROM artist_aliases LIMIT 1").fetchone() is not None
    artists = ARTISTS_SQL if has_aliases else "t.artist_credit"
    has_titles = conn.execute("SELECT 1 FROM track_aliases LIMIT 1").fetchone() is not None
    title = TITLE_SQL if has_titles else "t.title"
    # max(id) reads the end of the rowid B-tree; count(*) would read the whole table.
    total = int(conn.execute("SELECT coalesce(max(id), 0) FROM tracks").fetchone()[0])
    # Evaluated on the rows as they come out of the sort, i.e. as they are indexed: a
    # WHERE inside the windowed query would run during the scan, before the sort.
    sampled = f"(id % {PROGRESS_EVERY}) != 0 OR phonotheca_progress()"
    for ddl in _FEED_DDL:
        conn.execute(ddl)
    report("search index", 0, total)
    # Tracks are read in rowid order and sorted once (the window); reading them in key
    # order instead would cost a random access per track.
    conn.execute(
        f"""INSERT INTO temp.search_feed(key, track_id, title, artists, album)
        SELECT key, id, title, credit, album FROM (
            SELECT (bucket << {BUCKET_SHIFT})
                   + row_number() OVER (PARTITION BY bucket ORDER BY id) AS key,
                   id, title, credit, album
            FROM (SELECT t.id, {BUCKET_SQL} AS bucket, {title} AS title,
                         {artists} AS credit, coalesce(a.title, '') AS album
                  FROM tracks t LEFT JOIN albums a ON a.id = t.album_id))
        WHERE {sampled}"""
    )
    conn.execute("DROP TRIGGER temp.search_feed_rows")
    conn.execute("DROP VIEW temp.search_feed")
    report("search index", total, total)
    conn.execute(f"INSERT INTO {FTS_TABLE}({FTS_TABLE}) VALUES ('optimize')")
    conn.execute(f"INSERT INTO {FTS_TABLE}({FTS_TABLE}, rank) VALUES ('automerge', 4)")


def index_tracks(conn: sqlite3.Connection, where: str, params: tuple[object, ...] = ()) -> None:
    """Add tracks (``where`` selects them from ``tracks t``) to the index, in the caller's
    transaction. Each goes at the end of its bucket; none may be indexed already."""
    conn.execute("DROP TABLE IF EXISTS temp.new_keys")
    conn.execute(
        f"""CREATE TEMP TABLE new_keys AS
        WITH picked AS (
            SELECT t.id, {BUCKET_SQL} AS bucket FROM tracks t WHERE {where}
        ), bases AS (
            SELECT bucket,
                   coalesce((SELECT max(key) & {_MASK} FROM search_rank
                             WHERE key BETWEEN (bucket << {BUCKET_SHIFT})
                                           AND (bucket << {BUCKET_SHIFT}) + {_MASK}), 0) AS base
            FROM (SELECT DISTINCT bucket FROM picked)
        )
        SELECT (p.bucket << {BUCKET_SHIFT}) + b.base
               + row_number() OVER (PARTITION BY p.bucket ORDER BY p.id) AS key,
               p.id AS track_id
        FROM picked p JOIN bases b USING (bucket)""",
        params,
    )
    conn.execute(
        "INSERT INTO search_rank(key, track_id)"
        " SELECT key, track_id FROM temp.new_keys ORDER BY key"
    )
    conn.execute(
        f"INSERT INTO {FTS_TABLE}(rowid, title, artists, album) {_FTS_ROWS}"
        " WHERE r.key IN (SELECT key FROM temp.new_keys) ORDER BY r.key"
    )
    conn.execute("DROP TABLE temp.new_keys")


def unindex_tracks(conn: sqlite3.Connection, where: str, params: tuple[object, ...] = ()) -> None:
    """Remove tracks (``where`` on ``t``) from the index, in the caller's transaction.

    Must run *before* their title, credit or album changes: a contentless FTS5 index
    forgets a row only when told the exact text it indexed.
    """
    conn.execute(
        f"INSERT INTO {FTS_TABLE}({FTS_TABLE}, rowid, title, artists, album)"
        f" SELECT 'delete', * FROM ({_FTS_ROWS} WHERE {where})",
        params,
    )
    conn.execute(
        f"DELETE FROM search_rank WHERE track_id IN (SELECT t.id FROM tracks t WHERE {where})",
        params,
    )


# -- queries -------------------------------------------------------------------------------


def _words(text: str) -> tuple[list[str], str | None] | None:
    """(whole words, last word when it is typed as a prefix), or None without any word.

    Typing "love so" means "love" and a word starting with "so"; "love so " (a separator
    at the end) means both are whole words.
    """
    normal = unicodedata.normalize("NFC", text)
    tokens = _TOKEN.findall(normal)[:MAX_QUERY_TOKENS]
    if not tokens:
        return None
    if _TOKEN.fullmatch(normal[-1]):
        return tokens[:-1], tokens[-1]
    return tokens, None


def fts_query(text: str) -> str | None:
    """Turn any user text into a safe FTS5 query: every word must match, the last as a prefix.

    Words are quoted, so FTS5 syntax in the input (``"``, ``*``, ``-``, ``NEAR``, ``OR``,
    parentheses, column filters) is searched as text and never parsed. Returns None
    when the text has no word at all.
    """
    parsed = _words(text)
    if parsed is None:
        return None
    words, prefix = parsed
    return _match(words, prefix)


def _match(words: list[str], prefix: str | None) -> str:
    quoted = [f'"{w}"' for w in words]
    if prefix is not None:
        quoted.append(f'"{prefix}"*')
    return " ".join(quoted)


def fold(text: str) -> str:
    """Lower case without diacritics, as the ``unicode61 remove_diacritics 2`` tokenizer
    sees text.

    Only combining marks go: the decomposition is canonical (NFD) and what is left is
    composed again (NFC). A compatibility decomposition (NFKD) would change what the
    tokenizer keeps as it is: "¼" would become "1⁄4", two tokens, and a Hangul syllable
    its jamo, which the index does not hold.
    """
    decomposed = unicodedata.normalize("NFD", text.lower())
    bare = "".join(c for c in decomposed if not unicodedata.combining(c))
    return unicodedata.normalize("NFC", bare)


_HIT_SQL = """
    SELECT t.id, t.public_id, t.title, a.title, a.public_id, t.isrc, t.duration_ms,
           t.popularity, t.listens, t.track_number, t.disc_number, t.artist_credit
    FROM tracks t LEFT JOIN albums a ON a.id = t.album_id
"""


def _hits(conn: sqlite3.Connection, rows: list[tuple[object, ...]]) -> list[TrackHit]:
    if not rows:
        return []
    ids = [r[0] for r in rows]
    names: dict[int, list[str]] = {}
    marks = ",".join("?" * len(ids))
    for tid, name in conn.execute(
        "SELECT ta.track_id, coalesce(ta.credited_as, ar.name) FROM track_artists ta"
        f" JOIN artists ar ON ar.id = ta.artist_id WHERE ta.track_id IN ({marks})"
        " ORDER BY ta.track_id, ta.position",
        ids,
    ):
        names.setdefault(tid, []).append(name)
    return [
        TrackHit(
            id=str(r[1]),
            title=str(r[2]),
            artists=names.get(r[0], []),  # type: ignore[call-overload]
            album=r[3],  # type: ignore[arg-type]
            album_id=r[4],  # type: ignore[arg-type]
            isrc=r[5],  # type: ignore[arg-type]
            duration_ms=r[6],  # type: ignore[arg-type]
            popularity=r[7],  # type: ignore[arg-type]
            listens=r[8],  # type: ignore[arg-type]
            track_number=r[9],  # type: ignore[arg-type]
            disc_number=r[10],  # type: ignore[arg-type]
        )
        for r in rows
    ]


@dataclass(frozen=True)
class WordIndex:
    """A contentless FTS5 index searched the same way as the tracks' (words, the last one
    a prefix, prefix indexes of 1-4 letters): its table, and a query of its rows' text
    by rowid (``{marks}``: the rowids' placeholders) for prefixes longer than that."""

    table: str
    texts_sql: str

    @property
    def match_sql(self) -> str:
        return self.bounded_sql(None)

    def bounded_sql(self, bound: Bound | None) -> str:
        """The matching rowids past ``bound`` (one parameter more, after the query's),
        nearest the bound first; FTS5 starts its walk of the doclists at the bound."""
        if bound is None:
            return f"SELECT rowid FROM {self.table} WHERE {self.table} MATCH ? ORDER BY rowid"
        op, order = (">", "ASC") if bound.after else ("<", "DESC")
        return (
            f"SELECT rowid FROM {self.table} WHERE {self.table} MATCH ? AND rowid {op} ?"
            f" ORDER BY rowid {order}"
        )


@dataclass(frozen=True)
class Bound:
    """Where a keyset page starts: the matches after ``key`` (``after``), or those before
    it (the previous page, returned in rowid order all the same)."""

    key: int
    after: bool = True


TRACK_INDEX = WordIndex(FTS_TABLE, _FTS_ROWS + " WHERE r.key IN ({marks})")
# A prefix longer than the longest prefix index is first looked for among the matches of
# its first letters (which have a prefix index) in rank order, up to this many of them.
LONG_PREFIX_SCAN = 256
_PREFIX_INDEX_MAX = 4


def search_keys(
    conn: sqlite3.Connection,
    text: str,
    limit: int = 20,
    offset: int = 0,
    index: WordIndex = TRACK_INDEX,
    bound: Bound | None = None,
) -> list[int]:
    """Rank keys of the matching tracks, most popular first (or, of another ``index``,
    its matching rowids in rowid order).

    With a ``bound`` (keyset paging), the ``limit`` matches just after (or just before)
    its key, in rank order: any page costs what the first does, where ``offset`` skips
    its matches one by one."""
    parsed = _words(text)
    if parsed is None or not _has_index(conn, index.table):
        return []
    words, prefix = parsed
    limit = max(0, min(limit, MAX_LIMIT))
    offset = max(0, offset)
    keys: list[int] | None = None
    if prefix is not None and len(fold(prefix)) > _PREFIX_INDEX_MAX:
        found = _long_prefix(conn, index, words, fold(prefix), limit + offset, bound)
        if found is not None:
            keys = found[offset : offset + limit]
    if keys is None:
        params: tuple[object, ...] = (_match(words, prefix),)
        if bound is not None:
            params += (bound.key,)
        keys = [
            r[0]
            for r in conn.execute(
                f"{index.bounded_sql(bound)} LIMIT ? OFFSET ?", (*params, limit, offset)
            )
        ]
    return keys if bound is None or bound.after else keys[::-1]


def _long_prefix(
    conn: sqlite3.Connection,
    index: WordIndex,
    words: list[str],
    prefix: str,
    need: int,
    bound: Bound | None = None,
) -> list[int] | None:
    """Keys matching ``words`` and a word starting with ``prefix`` (5+ letters), or None.

    FTS5 answers a prefix without a prefix index by merging the doclists of every word
    that starts with it before returning anything: "lovel*" costs as much as all of
    "lovely", "lovelier", "lovelorn"... (hundreds of ms for common stems at 10 M).
    Instead, walk the matches of the first four letters, which have a prefix index and come in rank
    order, and keep those whose text has a word starting with the whole prefix: for a
    common prefix the first page is enough. When the first :data:`LONG_PREFIX_SCAN`
    candidates do not hold enough matches the prefix is rare among them, which is
    when the plain query is cheap: return None and let the caller run it.
    """
    head = prefix[:_PREFIX_INDEX_MAX]
    if not _TOKEN.fullmatch(head):
        return None  # not one token as the index sees it: let the plain query answer
    params: tuple[object, ...] = (_match(words, head),)
    cursor = conn.execute(index.bounded_sql(bound), params + ((bound.key,) if bound else ()))
    found: list[int] = []
    scanned = 0
    while len(found) < need:
        # Pages grow from a little more than what is still needed: a common prefix is
        # answered from the first page, a rare one gives up after few lookups.
        page = [r[0] for r in cursor.fetchmany(min(256, max(32, 2 * (need - len(found)), scanned)))]
        if not page:
            return found  # every candidate seen: the answer is complete
        scanned += len(page)
        marks = ",".join("?" * len(page))
        texts = {
            r[0]: " ".join(r[1:]) for r in conn.execute(index.texts_sql.format(marks=marks), page)
        }
        for key in page:
            if any(w.startswith(prefix) for w in _TOKEN.findall(fold(texts.get(key, "")))):
                found.append(key)
        if len(found) < need and scanned >= LONG_PREFIX_SCAN:
            cursor.close()
            return None
    cursor.close()
    return found


def search(conn: sqlite3.Connection, text: str, limit: int = 20, offset: int = 0) -> list[TrackHit]:
    """Tracks whose title, artists or album contain every word of ``text``.

    Case- and diacritics-insensitive; the last word matches as a prefix; most popular
    first. Any text is accepted.
    """
    keys = search_keys(conn, text, limit, offset)
    if not keys:
        return []
    marks = ",".join("?" * len(keys))
    rows = conn.execute(
        f"SELECT r.key, t.id FROM search_rank r JOIN tracks t ON t.id = r.track_id"
        f" WHERE r.key IN ({marks})",
        keys,
    ).fetchall()
    by_key = {k: tid for k, tid in rows}
    ordered = [by_key[k] for k in keys if k in by_key]
    return _fetch(conn, ordered)


def _fetch(conn: sqlite3.Connection, track_ids: list[int]) -> list[TrackHit]:
    if not track_ids:
        return []
    marks = ",".join("?" * len(track_ids))
    rows = {r[0]: r for r in conn.execute(f"{_HIT_SQL} WHERE t.id IN ({marks})", track_ids)}
    return _hits(conn, [rows[t] for t in track_ids if t in rows])


def get_tracks(conn: sqlite3.Connection, public_ids: list[str]) -> list[TrackHit]:
    """Tracks by public id, in the order asked (unknown ids are left out)."""
    marks = ",".join("?" * len(public_ids))
    found = dict(
        conn.execute(f"SELECT public_id, id FROM tracks WHERE public_id IN ({marks})", public_ids)
    )
    return _fetch(conn, [found[p] for p in public_ids if p in found])


def shuffle(
    conn: sqlite3.Connection, n: int = 1, rng: random.Random | None = None
) -> list[TrackHit]:
    """``n`` tracks, each drawn uniformly over the whole catalog (with replacement).

    Track rowids are dense (assigned max+1, never reused), so a pick is one random
    integer and one primary-key lookup: O(1) whatever the catalog size. Holes, if any,
    are skipped by drawing again, which keeps every track equally likely.
    """
    rng = rng or random.Random()
    # Two queries: SQLite answers min() or max() alone from the end of the rowid B-tree,
    # but scans the whole table for both in one SELECT.
    lo = conn.execute("SELECT min(id) FROM tracks").fetchone()[0]
    hi = conn.execute("SELECT max(id) FROM tracks").fetchone()[0]
    if lo is None or hi is None:
        return []
    lo, hi = int(lo), int(hi)
    picked: list[int] = []
    tries = 0
    while len(picked) < n and tries < 100 * n + 100:
        tries += 1
        tid = rng.randint(lo, hi)
        if conn.execute("SELECT 1 FROM tracks WHERE id = ?", (tid,)).fetchone():
            picked.append(tid)
    return _fetch_many(conn, picked)


def _fetch_many(conn: sqlite3.Connection, track_ids: list[int]) -> list[TrackHit]:
    """Like :func:`_fetch` but keeps repeats (shuffle draws with replacement)."""
    unique = list(dict.fromkeys(track_ids))
    by_id = {h_id: h for h_id, h in zip(unique, _fetch(conn, unique), strict=True)}
    return [by_id[t] for t in track_ids]
