"""Which catalog track an audio file is a copy of.

In order, the first that finds something decides:

1. ``mbid``: the MusicBrainz recording id tag equals a track's ``musicbrainz_recording``
   external id.
2. ``isrc``: the (valid, normalised) ISRC tag equals a track's ISRC (or one of the ISRCs
   kept as its ``isrc`` external ids).
3. ``name``: normalised title and main artist are equal (case, diacritics, punctuation
   and "feat." / "ft." / "featuring" forms folded) and the durations are within
   :data:`DURATION_TOLERANCE_MS`. When several tracks remain, those on an album of the
   same (normalised) title are preferred.
4. ``fingerprint``: when several remain still, the file's Chromaprint fingerprint is
   compared with those of the files already known for each candidate (computed on first
   need and stored); the candidate whose files sound the same wins.

A file that matches none of these but whose tags, or bytes when untagged, give the id of
a track made from an earlier file (:meth:`TrackMaker.existing
<phonotheca.sources.file_tracks.TrackMaker.existing>`) is matched to it (``name`` or
``sha256``).

When ids or fingerprints leave a tie, the candidate with the closest duration, then the
most popular, then the oldest in the catalog is taken. Candidates by name come from the
search index (every word of the title and of the main artist), so matching costs one
indexed query per file whatever the size of the catalog. Tracks created from earlier
files of the same batch, not yet committed, are candidates too.
"""

from __future__ import annotations

import json
import logging
import re
import sqlite3
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

from phonotheca.audio import fingerprint as chroma
from phonotheca.audio.probe import Tags
from phonotheca.catalog.isrc import parse_isrc

DURATION_TOLERANCE_MS = 3000
MAX_CANDIDATES = 100
MAX_QUERY_WORDS = 16
METHODS = ("mbid", "isrc", "name", "fingerprint", "sha256")
log = logging.getLogger(__name__)

# "Song (feat. X)", "Song [ft. X]", "Song feat. X", "A featuring B"
_FEAT = re.compile(r"(?:\s*[(\[{]\s*|\s+)(?:featuring|feat\.?|ft\.?)\s+", re.IGNORECASE)
# Separators between the main artist and the others in a printed credit.
_SEPARATORS = re.compile(r"\s*(?:,|;|/|&|\+|\s(?:and|und|et|y|x|vs\.?|with)\s)\s*", re.IGNORECASE)
_NOT_WORD = re.compile(r"[\W_]+")
_WORD = re.compile(r"[^\W_]+")


def fold(text: str | None) -> str:
    """Case, diacritics and punctuation folded: ``"Café  Del-Mar!"`` -> ``"cafe del mar"``."""
    if not text:
        return ""
    if not text.isascii():  # most titles are: they need no decomposition
        decomposed = unicodedata.normalize("NFKD", text)
        text = "".join(c for c in decomposed if not unicodedata.combining(c))
    return _NOT_WORD.sub(" ", text.casefold().replace("&", " and ")).strip()


def title_core(title: str) -> str:
    """The title without a "(feat. X)" part."""
    return _FEAT.split(title, maxsplit=1)[0]


def main_artist(credit: str) -> str:
    """The first artist of a printed credit: ``"A feat. B"``, ``"A & B"``, ``"A, B"`` -> A."""
    head = _FEAT.split(credit, maxsplit=1)[0]
    return _SEPARATORS.split(head, maxsplit=1)[0]


def name_key(title: str, credit: str) -> tuple[str, str]:
    """What two tracks must share to match by name: folded core title and main artist."""
    return fold(title_core(title)), fold(main_artist(credit))


def split_credit(credit: str) -> list[tuple[str, str]]:
    """A credit as (name, join phrase) pairs, split at "feat." forms only (``"A & B"``
    may be one duo's name, so other separators are kept)."""
    out: list[tuple[str, str]] = []
    pos = 0
    for m in _FEAT.finditer(credit):
        name = credit[pos : m.start()].strip()
        if name:
            out.append((name, " feat. "))
        pos = m.end()
    last = credit[pos:].strip().rstrip(")]}").strip()
    if last:
        out.append((last, ""))
    elif out:
        out[-1] = (out[-1][0], "")
    return out


@dataclass
class FileFacts:
    """What matching needs to know of a file."""

    path: str
    tags: Tags
    duration_ms: int | None
    source_file_id: int | None = None
    """Its row in ``source_files`` when it has one already (a changed file)."""

    @property
    def credit(self) -> str:
        return ", ".join(self.tags.artists)

    @property
    def isrc(self) -> str | None:
        if not self.tags.isrc:
            return None
        value, valid = parse_isrc(self.tags.isrc)
        return value if valid else None


@dataclass
class Candidate:
    public_id: str
    rowid: int | None
    """None for a track created from an earlier file of the batch, not yet written."""
    title: str
    credit: str
    album: str | None
    duration_ms: int | None
    popularity: int | None = None
    listens: int | None = None
    paths: list[str] = field(default_factory=list)
    """Files of a pending track (known files of catalog tracks are read from the table)."""


@dataclass
class Match:
    public_id: str | None
    method: str | None
    chromaprint: str | None = None
    """The file's own fingerprint, when one was computed to decide."""


_CANDIDATE_SQL = """
    SELECT t.id, t.public_id, t.title, t.artist_credit, a.title, t.duration_ms,
           t.popularity, t.listens
    FROM tracks t LEFT JOIN albums a ON a.id = t.album_id
"""


class Matcher:
    """Matches files against one catalog connection (inside the writer's transaction)."""

    def __init__(self, conn: sqlite3.Connection, *, fingerprints: bool = True) -> None:
        self.conn = conn
        self.use_fingerprints = fingerprints and chroma.available()
        self._by_mbid: dict[str, list[Candidate]] = {}
        self._known_mbid: dict[str, list[Candidate]] = {}  # prefetched from the catalog
        self._known_isrc: dict[str, list[Candidate]] = {}
        self._by_isrc: dict[str, list[Candidate]] = {}
        self._by_name: dict[tuple[str, str], list[Candidate]] = {}
        self._pending_files: dict[str, list[str]] = {}
        self._prints: dict[str, str | None] = {}  # path -> fingerprint, for this scan
        self.stored_prints: list[tuple[str, int]] = []
        """(fingerprint, source file id) computed for known files: the caller saves them."""

    # -- the batch in progress ----------------------------------------------------------

    def add_pending(self, cand: Candidate, facts: FileFacts) -> None:
        """A track created from ``facts`` in this batch: later files may match it."""
        tags = facts.tags
        if tags.musicbrainz_recording:
            self._by_mbid.setdefault(tags.musicbrainz_recording, []).append(cand)
        if facts.isrc:
            self._by_isrc.setdefault(facts.isrc, []).append(cand)
        self._by_name.setdefault(name_key(cand.title, cand.credit), []).append(cand)
        self.note_file(cand.public_id, facts.path)

    def note_file(self, public_id: str, path: str) -> None:
        """A file of this batch that became a copy of ``public_id``."""
        self._pending_files.setdefault(public_id, []).append(path)

    def end_batch(self) -> None:
        """The batch is committed: everything pending is in the catalog now."""
        self._by_mbid.clear()
        self._by_isrc.clear()
        self._known_mbid = {}
        self._known_isrc = {}
        self._by_name.clear()
        self._pending_files.clear()
        self.stored_prints = []

    # -- matching -----------------------------------------------------------------------

    def prefetch(self, batch: list[FileFacts]) -> None:
        """Look up the MusicBrainz ids and ISRCs of a whole batch in two queries (instead
        of one or two per file); :meth:`match` then reads them from memory."""
        mbids = sorted({m for f in batch if (m := f.tags.musicbrainz_recording)})
        isrcs = sorted({i for f in batch if (i := f.isrc)})
        self._known_mbid = {m: [] for m in mbids}
        self._known_isrc = {i: [] for i in isrcs}
        for key, cand in self._keyed(
            "e.value",
            " JOIN external_ids e ON e.entity = 'track' AND e.entity_id = t.id"
            " WHERE e.scheme = 'musicbrainz_recording'"
            " AND e.value IN (SELECT value FROM json_each(?))",
            (json.dumps(mbids),),
        ):
            self._known_mbid[key] = [*self._known_mbid[key], cand]
        # A recording's other ISRCs (MusicBrainz lists several) are external ids.
        for key, cand in self._keyed(
            "t.isrc",
            " WHERE t.isrc IN (SELECT value FROM json_each(?))",
            (json.dumps(isrcs),),
        ) + self._keyed(
            "e.value",
            " JOIN external_ids e ON e.entity = 'track' AND e.entity_id = t.id"
            " WHERE e.scheme = 'isrc' AND e.value IN (SELECT value FROM json_each(?))",
            (json.dumps(isrcs),),
        ):
            if all(c.rowid != cand.rowid for c in self._known_isrc[key]):
                self._known_isrc[key] = [*self._known_isrc[key], cand]

    def _keyed(
        self, key: str, where: str, params: tuple[object, ...]
    ) -> list[tuple[str, Candidate]]:
        sql = _CANDIDATE_SQL.replace("SELECT ", f"SELECT {key}, ", 1) + where
        return [
            (str(r[0]), Candidate(str(r[2]), r[1], r[3], r[4], r[5], r[6], r[7], r[8]))
            for r in self.conn.execute(sql, params)
        ]

    def match(self, facts: FileFacts) -> Match:
        tags = facts.tags
        mbid = tags.musicbrainz_recording
        if mbid:
            found = self._known_mbid.get(mbid)
            if found is None:
                self.prefetch([facts])
                found = self._known_mbid[mbid]
            cands = found + self._by_mbid.get(mbid, [])
            if cands:
                return Match(self._best(cands, facts).public_id, "mbid")
        isrc = facts.isrc
        if isrc:
            found = self._known_isrc.get(isrc)
            if found is None:
                self.prefetch([facts])
                found = self._known_isrc[isrc]
            cands = found + self._by_isrc.get(isrc, [])
            if cands:
                return Match(self._best(cands, facts).public_id, "isrc")
        if tags.title and tags.artists:
            return self._by_names(facts)
        return Match(None, None)

    def _by_names(self, facts: FileFacts) -> Match:
        title = facts.tags.title or ""
        key = name_key(title, facts.credit)
        if not key[0] or not key[1]:
            return Match(None, None)
        cands = [
            c
            for c in self._name_candidates(title_core(title), main_artist(facts.credit))
            + self._by_name.get(key, [])
            if name_key(c.title, c.credit) == key
            and close_durations(c.duration_ms, facts.duration_ms)
        ]
        if not cands:
            return Match(None, None)
        if len(cands) > 1 and facts.tags.album:
            album = fold(facts.tags.album)
            cands = [c for c in cands if fold(c.album) == album] or cands
        if len(cands) == 1:
            return Match(cands[0].public_id, "name")
        by_print = self._by_fingerprint(cands, facts)
        if by_print is not None:
            return by_print
        return Match(self._best(cands, facts).public_id, "name", self._prints.get(facts.path))

    def _query(self, where: str, params: tuple[object, ...]) -> list[Candidate]:
        return [
            Candidate(str(r[1]), r[0], r[2], r[3], r[4], r[5], r[6], r[7])
            for r in self.conn.execute(_CANDIDATE_SQL + where, params)
        ]

    def _name_candidates(self, title: str, artist: str) -> list[Candidate]:
        words = (
            _WORD.findall(unicodedata.normalize("NFC", title))
            + _WORD.findall(unicodedata.normalize("NFC", artist))
        )[:MAX_QUERY_WORDS]
        if not words:
            return []
        query = " ".join(f'"{w}"' for w in words)
        try:
            return self._query(
                " WHERE t.id IN (SELECT track_id FROM search_rank WHERE key IN"
                " (SELECT rowid FROM track_search WHERE track_search MATCH ?"
                "  ORDER BY rowid LIMIT ?))",
                (query, MAX_CANDIDATES),
            )
        except sqlite3.OperationalError as exc:  # no search index yet
            log.debug("name candidates: %s", exc)
            return []

    def _best(self, cands: list[Candidate], facts: FileFacts) -> Candidate:
        """The tie-break: same album title, closest duration, most popular, oldest."""
        if len(cands) == 1:
            return cands[0]
        album = fold(facts.tags.album)

        def rank(c: Candidate) -> tuple[int, int, int, int, int]:
            gap = (
                abs(c.duration_ms - facts.duration_ms)
                if c.duration_ms is not None and facts.duration_ms is not None
                else 1 << 40
            )
            same_album = 0 if album and fold(c.album) == album else 1
            rowid = c.rowid if c.rowid is not None else 1 << 62
            return same_album, gap, -(c.popularity or -1), -(c.listens or -1), rowid

        return min(cands, key=rank)

    # -- fingerprints -------------------------------------------------------------------

    def _print_of(self, path: str) -> str | None:
        if path not in self._prints:
            try:
                self._prints[path] = chroma.fingerprint_file(Path(path))
            except chroma.FingerprintError as exc:
                log.info("no fingerprint for %s: %s", path, exc)
                self._prints[path] = None
        return self._prints[path]

    def _known_prints(self, cand: Candidate, exclude: str) -> list[str]:
        """Fingerprints of the files known for a candidate (computed and kept if missing)."""
        prints: list[str] = []
        for path in self._pending_files.get(cand.public_id, []):
            fp = self._print_of(path) if path != exclude else None
            if fp:
                prints.append(fp)
        if cand.rowid is None:
            return prints
        for sid, path, stored in self.conn.execute(
            "SELECT id, path, chromaprint FROM source_files"
            " WHERE track_id = ? AND status = 'ok' ORDER BY id LIMIT 5",
            (cand.rowid,),
        ):
            if path == exclude:
                continue
            if stored:
                prints.append(stored)
                continue
            fp = self._print_of(path)
            if fp:
                self.stored_prints.append((fp, sid))
                prints.append(fp)
        return prints

    def _by_fingerprint(self, cands: list[Candidate], facts: FileFacts) -> Match | None:
        if not self.use_fingerprints:
            return None
        mine = self._print_of(facts.path)
        if not mine:
            return None
        scored: list[tuple[float, Candidate]] = []
        for c in cands:
            sims = [chroma.similarity(mine, fp) for fp in self._known_prints(c, facts.path)]
            scored.append((max(sims, default=0.0), c))
        scored.sort(key=lambda s: -s[0])
        best, cand = scored[0]
        runner_up = scored[1][0] if len(scored) > 1 else 0.0
        if best >= chroma.SAME_RECORDING and runner_up < chroma.SAME_RECORDING:
            return Match(cand.public_id, "fingerprint", mine)
        return None


def close_durations(a: int | None, b: int | None) -> bool:
    """Durations within the tolerance; an unknown duration does not rule a track out."""
    return a is None or b is None or abs(a - b) <= DURATION_TOLERANCE_MS
